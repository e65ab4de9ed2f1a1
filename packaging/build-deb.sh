#!/usr/bin/env bash
# Builds the Debian packages: copies the source tree (packaging/source-tarball.sh) to a temporary
# directory, puts packaging/debian/ at its top, and runs dpkg-buildpackage there, so the
# checkout never gets a debian/ directory or build output of its own.
#
# Output: the two .debs (twofold, twofold-web), the .changes and the .buildinfo in $OUT_DIR
# (default target/packages/); the last two lines printed are the paths of twofold-web's .deb,
# then twofold's. CARGO_HOME (default ~/.cargo) is passed through so that the registry cache is
# reused; set CARGO_TARGET_DIR to keep compiled dependencies between runs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT_DIR:-$root/target/packages}
fail() {
  echo "build-deb.sh: $*" >&2
  exit 1
}

for tool in dpkg-buildpackage dpkg-parsechangelog dh cargo git; do
  command -v "$tool" >/dev/null || fail "$tool not found (apt-get install build-essential debhelper; Rust from rustup)"
done
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
deb_version=$(dpkg-parsechangelog -l "$root/packaging/debian/changelog" -S Version)
[ "${deb_version%-*}" = "$version" ] ||
  fail "packaging/debian/changelog is at $deb_version but Cargo.toml at $version; add a changelog entry"

work=$(mktemp -d "${TMPDIR:-/tmp}/twofold-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/twofold-$version
bash "$root/packaging/source-tarball.sh" "$work/source.tar.gz" "twofold-$version"
tar -xzf "$work/source.tar.gz" -C "$work"
cp -r "$root/packaging/debian" "$src/debian"

# Named outright, so that rustup's toolchain and the registry cache are found even where
# debhelper points HOME at a scratch directory (dh_auto_*, compat 13).
export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
[ -n "${RUSTUP_HOME:-}" ] || [ ! -d "$HOME/.rustup" ] || export RUSTUP_HOME=$HOME/.rustup
(cd "$src" && dpkg-buildpackage -b --no-sign)

mkdir -p "$out"
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
base=twofold_${deb_version}_$arch
web=twofold-web_${deb_version}_$arch.deb
for file in "$base.deb" "$web" "$base.changes" "$base.buildinfo"; do
  [ -f "$work/$file" ] || fail "dpkg-buildpackage did not produce $file"
  cp "$work/$file" "$out/"
done
echo "$out/$web"
echo "$out/$base.deb"
