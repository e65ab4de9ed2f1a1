#!/usr/bin/env bash
# Builds the RPMs with rpmbuild -bb from a tarball of the source tree (packaging/source-tarball.sh),
# with its _topdir under target/rpmbuild. Works on Debian's rpm too: --nodeps, because the rpm
# database there is empty and knows none of the build requirements.
#
# Output: the binary rpms (twofold, twofold-web) in $OUT_DIR (default target/packages/); the last
# two lines printed are the paths of twofold-web's rpm, then twofold's. CARGO_HOME and
# CARGO_TARGET_DIR are honoured as in build-deb.sh.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT_DIR:-$root/target/packages}
topdir=$root/target/rpmbuild
spec=$root/packaging/rpm/twofold.spec
fail() {
  echo "build-rpm.sh: $*" >&2
  exit 1
}

for tool in rpmbuild rpm cargo git; do
  command -v "$tool" >/dev/null || fail "$tool not found (apt-get install rpm; Rust from rustup)"
done
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
spec_version=$(rpmspec -q --srpm --qf '%{VERSION}' "$spec" 2>/dev/null ||
  sed -n 's/^Version: *//p' "$spec")
[ "$spec_version" = "$version" ] ||
  fail "packaging/rpm/twofold.spec is at $spec_version but Cargo.toml at $version"

rm -rf "$topdir"
mkdir -p "$topdir"/{BUILD,BUILDROOT,RPMS,SOURCES,SPECS,SRPMS}
bash "$root/packaging/source-tarball.sh" "$topdir/SOURCES/twofold-$version.tar.gz" "twofold-$version"

export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
[ -n "${RUSTUP_HOME:-}" ] || [ ! -d "$HOME/.rustup" ] || export RUSTUP_HOME=$HOME/.rustup
# --clean drops the unpacked tree afterwards (and with it a build in its own target/).
rpmbuild -bb --nodeps --clean --define "_topdir $topdir" "$spec"

shopt -s nullglob
mkdir -p "$out"
for name in twofold-web twofold; do
  rpms=("$topdir"/RPMS/*/"$name-$version"-*.rpm)
  [ ${#rpms[@]} -eq 1 ] || fail "expected one $name rpm in $topdir/RPMS, found ${#rpms[@]}"
  cp "${rpms[0]}" "$out/"
  echo "$out/$(basename "${rpms[0]}")"
done
