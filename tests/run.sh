#!/usr/bin/env bash
# Runs every test. As root on Debian it first installs what the tests need, because the next
# machine starts bare: Linux-PAM headers, pamtester, oathtool (an independent TOTP oracle) and
# zbarimg (an independent QR decoder). Root-only tests (real users, /etc/pam.d, pamtester) run
# when this runs as root; with CI=true they fail instead of skipping when they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."

# End-to-end: a real sshd with a paramiko client (Debian's python3) and real sudo. Packaging:
# dpkg-buildpackage with debhelper, lintian, pam-auth-update (libpam-runtime) and rpmbuild.
packages=(gcc libpam0g-dev libpam-modules libpam-runtime pamtester oathtool zbar-tools passwd
  openssh-server openssh-client sudo python3 python3-paramiko python3-venv
  build-essential debhelper lintian rpm git openssl slapd ldap-utils)
# twofold-web end to end (tests/web_e2e.rs): nginx in front, headless Chromium driven through
# chromedriver; wrk for tests/bench/web.sh.
packages+=(nginx chromium chromium-driver wrk)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# The FIDO2 oracle (tests/fido_oracle.rs): Yubico's fido2 from the Python package registry, in a venv, as Debian's
# python3-fido2 is too old. Made once, and again when it is missing or another version.
fido_python=target/fido-venv/bin/python
if ! "$fido_python" -c 'import sys, importlib.metadata as m, cryptography
sys.exit(m.version("fido2") != "2.2.1")' 2>/dev/null; then
  echo "tests/run.sh: making target/fido-venv with fido2 2.2.1"
  python3 -m venv --clear target/fido-venv
  target/fido-venv/bin/pip install -q --disable-pip-version-check fido2==2.2.1
fi

rm -rf target/root-tests-ran
cargo test --workspace --all-targets "$@"

# The layering guards: what the release module links, exports and weighs, and where unsafe lives.
bash tests/guards.sh

# The packages are built, installed, checked and purged as root (packaging/check.sh says how).
if [ "$(id -u)" = 0 ] && [ -f packaging/check.sh ]; then
  bash packaging/check.sh
elif [ "${CI:-}" = true ]; then
  echo "tests/run.sh: the packaging checks need root and packaging/check.sh" >&2
  exit 1
fi

# Every root-only test leaves a marker; in CI all of them must have run.
if [ "${CI:-}" = true ]; then
  # needs_root!() gates the root tests, web_test_starts the browser ones; each leaves a marker.
  expected=$(cat tests/*.rs | grep -cE 'needs_root!\(\);|if !(web::)?web_test_starts\(')
  ran=$(find target/root-tests-ran -type f 2>/dev/null | wc -l)
  if [ "$ran" -ne "$expected" ]; then
    echo "tests/run.sh: only $ran of $expected root-only tests ran" >&2
    exit 1
  fi
  echo "tests/run.sh: all $ran root-only tests ran"
fi
