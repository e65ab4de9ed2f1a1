#!/usr/bin/env bash
# Measures twofold-web's forward-auth path with wrk on loopback, all in one run (issue 11):
#   1. /twofold/auth alone, straight to twofold-web, with a valid session cookie
#      (goal: at least 20,000 req/s on this machine);
#   2. nginx serving the stub wiki through auth_request (the example site), with the cookie;
#   3. the same nginx and stub wiki without auth_request: the baseline (goal: 2 reaches at least
#      60% of 3);
#   4. the login page (GET /twofold/login) through nginx.
# The stack is the end-to-end test's (tests/web): nginx running conf/nginx/twofold-wiki.conf,
# twofold-web, twofoldd and the stub wiki. The ignored test bench_stack_serves_until_its_info_file_is_removed
# starts it, signs a user in with headless Chromium, writes the ports and the cookie to a file,
# and serves until this script removes that file.
#
# As root (test accounts, /etc/pam.d), with the packages tests/run.sh installs.
# Usage: tests/bench/web.sh [-d DURATION] [-c CONNECTIONS] [-t THREADS]
#   defaults: -d 10s -c 64 -t 2. PROFILE=debug measures a debug build (default: release).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

duration=10s
connections=64
threads=2
while getopts d:c:t: opt; do
  case $opt in
    d) duration=$OPTARG ;;
    c) connections=$OPTARG ;;
    t) threads=$OPTARG ;;
    *) exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench: run as root (the stack makes test accounts)" >&2; exit 2; }

profile=${PROFILE:-release}
cargo_flags=(-q -p twofold-tests --test web_e2e)
[ "$profile" = release ] && cargo_flags=(--release "${cargo_flags[@]}")
cargo test "${cargo_flags[@]}" --no-run

info=$(mktemp -u /tmp/twofold-web-bench.XXXXXX)
log=$(mktemp /tmp/twofold-web-bench-log.XXXXXX)
TWOFOLD_WEB_BENCH_INFO=$info cargo test "${cargo_flags[@]}" -- --ignored --exact \
  bench_stack_serves_until_its_info_file_is_removed --nocapture </dev/null >"$log" 2>&1 &
stack=$!
# Removing the file stops the stack, which then removes its accounts and PAM service.
trap 'rm -f "$info"; wait "$stack" 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 600); do
  [ -f "$info" ] && break
  if ! kill -0 "$stack" 2>/dev/null; then
    cat "$log" >&2
    echo "bench: the stack did not start" >&2
    exit 1
  fi
  sleep 0.2
done
[ -f "$info" ] || { cat "$log" >&2; echo "bench: the stack took too long" >&2; exit 1; }
# nginx_port, baseline_port, web_port, cookie, wiki_page, user
# shellcheck disable=SC1090
. "$info"

# The status of one GET, from bash alone: each figure counts only if its requests succeed.
status() { # port path [cookie]
  local port=$1 path=$2 cookie=${3:-} line extra=""
  [ -n "$cookie" ] && extra="Cookie: $cookie"$'\r\n'
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'GET %s HTTP/1.1\r\nHost: localhost:%s\r\n%sConnection: close\r\n\r\n' \
    "$path" "$port" "$extra" >&3
  IFS= read -r line <&3 || true
  exec 3>&-
  awk '{print $2}' <<<"$line"
}

rows=()
# Runs wrk for one row: label, port, path, cookie (or ""), and the name its req/s is kept under.
bench() {
  local label=$1 port=$2 path=$3 cookie=$4 before after out rps p50 p99 errors
  before=$(status "$port" "$path" "$cookie")
  [ "$before" = 200 ] || { echo "bench: $label answered $before, not 200, before the run" >&2; exit 1; }
  local headers=(-H "Host: localhost:$port")
  [ -n "$cookie" ] && headers+=(-H "Cookie: $cookie")
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency "${headers[@]}" \
    "http://127.0.0.1:$port$path")
  after=$(status "$port" "$path" "$cookie")
  [ "$after" = 200 ] || { echo "bench: $label answered $after after the run" >&2; exit 1; }
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses:/ {n = $5} /Socket errors:/ {s = $0} END {print (n ? n " non-2xx" : "") (s ? " " s : "")}' <<<"$out")
  rows+=("$(printf '%-44s %12s req/s   p50 %9s   p99 %9s   %s' "$label" "$rps" "$p50" "$p99" "$errors")")
  eval "rps_$5=$rps"
}

echo "twofold-web bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $profile build, nginx $(nginx -v 2>&1 | sed 's|.*/||')"
echo "wrk -t$threads -c$connections -d$duration, loopback; user $user"
bench "/twofold/auth, direct, valid session" "$web_port" /twofold/auth "$cookie" auth
bench "wiki through nginx with auth_request" "$nginx_port" "$wiki_page" "$cookie" with
bench "wiki through nginx, no auth_request" "$baseline_port" "$wiki_page" "" without
bench "login page through nginx" "$nginx_port" /twofold/login "" login
printf '%s\n' "${rows[@]}"
# shellcheck disable=SC2154
awk -v a="$rps_auth" -v w="$rps_with" -v o="$rps_without" 'BEGIN {
  printf "auth_request keeps %.0f%% of the baseline (goal: 60%%); /twofold/auth %s 20,000 req/s\n",
    100 * w / o, (a >= 20000 ? "reaches" : "is under")
}'
