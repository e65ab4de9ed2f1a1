#!/usr/bin/env bash
# Writes a gzipped tarball of the source tree as it is on disk, every path under PREFIX/: the
# files git tracks plus new ones not yet committed, and nothing .gitignore excludes (target/,
# fuzz corpora). Both package builds start from it, so they see exactly what the tests saw and
# never a developer's build output.
#
# Usage: packaging/source-tarball.sh OUTPUT.tar.gz PREFIX
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 OUTPUT.tar.gz PREFIX" >&2
  exit 2
fi
out=$(realpath -m "$1")
prefix=$2
cd "$(dirname "$0")/.."
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "source-tarball.sh: $(pwd) is not a git checkout; the file list comes from git" >&2
  exit 1
fi

# git still lists a tracked file that was deleted and not yet committed; tar must not look for it.
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' path; do
    if [ -e "$path" ] || [ -L "$path" ]; then printf '%s\0' "$path"; fi
  done |
  sort -z |
  tar --null --files-from=- --owner=0 --group=0 --numeric-owner \
    --transform="s,^,$prefix/," -czf "$out"
