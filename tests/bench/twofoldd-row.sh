#!/usr/bin/env bash
# pambench hook for the row through twofoldd: the same records as twofold-row.sh writes (fresh
# before every measurement), then a fresh daemon of this checkout's release build serving them
# on a socket of its own, and a module config with store = "twofoldd".
set -euo pipefail
users_file=$1 dir=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -f "$dir.pid" ]; then kill "$(cat "$dir.pid")" 2>/dev/null || true; rm -f "$dir.pid"; fi
bash "$root/tests/bench/twofold-row.sh" "$users_file" "$dir"
# Top-level keys go before the tables twofold-row.sh wrote.
{ printf 'store = "twofoldd"\ndaemon_socket = "%s/twofoldd.sock"\n' "$dir"; cat "$dir/config.toml"; } >"$dir/config.new"
mv "$dir/config.new" "$dir/config.toml"
chmod 0600 "$dir/config.toml"
: >"$dir/twofoldd.toml"
# The daemon reads the same config; its own store key is ignored (its backend is the files).
"$root/target/release/twofoldd" --config "$dir/config.toml" --daemon-config "$dir/twofoldd.toml" \
  --listen "$dir/twofoldd.sock" </dev/null >/dev/null 2>&1 &
echo $! >"$dir.pid"
for _ in $(seq 200); do [ -S "$dir/twofoldd.sock" ] && exit 0; sleep 0.01; done
echo "twofoldd-row.sh: the daemon did not listen" >&2
exit 1
