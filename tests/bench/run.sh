#!/usr/bin/env bash
# Benchmarks pam_twofold against google-authenticator, pam_oath and the pam_permit floor, through
# real Linux-PAM, with the shared harness in ../shared/bench. As root. Extra arguments go to the
# harness (default: -n 1000 -r 3).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
harness=$root/../shared/bench/run.sh
[ -x "$harness" ] || [ -f "$harness" ] || { echo "bench: $harness not found" >&2; exit 2; }
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libpam0g-dev libssl-dev \
  libpam-google-authenticator libpam-oath >/dev/null
(cd "$root" && cargo build --release --quiet)
dir=/tmp/pambench/tf
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-n 1000 -r 3)
# twofold looks the login user up in passwd (records are keyed by the account's own name), so the
# bench users exist, as users who log in do.
users=1000
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[$i]}" = -n ] && users=${args[$((i + 1))]}; done
bash "$(dirname "$harness")/mkusers.sh" "$users" >/dev/null
exec bash "$harness" "${args[@]}" --row \
  "twofold:pambench-twofold:hook=$root/tests/bench/twofold-row.sh:$dir:auth required $root/target/release/libpam_twofold.so config=$dir/config.toml"
