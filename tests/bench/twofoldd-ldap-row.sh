#!/usr/bin/env bash
# pambench hook for the row through twofoldd with the directory backend: the same records as
# twofold-row.sh writes (fresh before every measurement), moved with `twofold migrate` into a
# private slapd on a free loopback port (Debian's slapd, a throwaway cn=config from LDIF with
# conf/ldap/twofold.ldif, as tests/ldap/mod.rs makes it; the system's slapd is never touched),
# then a fresh release twofoldd with backend = "ldap" on a socket of its own, and a module
# config with store = "twofoldd".
#
# Each call first stops the daemon and slapd of the call before, and appends the daemon's
# memory to DIR.mem: "rest" right after it started (no login yet, no directory connection),
# "after" once the measurement is over (VmRSS idle, VmHWM the peak under the logins).
# `twofoldd-ldap-row.sh --stop DIR` stops the last ones.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

# Stops the process whose pid is in FILE, and waits until it is gone.
stop() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  rm -f "$file"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 500); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.01; done
  kill -KILL "$pid" 2>/dev/null || true
}

# Appends "LABEL pid=PID VmRSS=.. VmHWM=.." for the daemon in DIR.pid to DIR.mem.
memory() {
  local dir=$1 label=$2 pid
  [ -f "$dir.pid" ] || return 0
  pid=$(cat "$dir.pid")
  [ -r "/proc/$pid/status" ] || return 0
  printf '%s pid=%s %s\n' "$label" "$pid" \
    "$(awk '/^Vm(RSS|HWM):/ {printf "%s=%s ", substr($1, 1, length($1) - 1), $2}' "/proc/$pid/status")" \
    >>"$dir.mem"
}

# Starts the release daemon on DIR's config and waits for its socket.
start_daemon() {
  local dir=$1
  rm -f "$dir/twofoldd.sock"
  "$root/target/release/twofoldd" --config "$dir/config.toml" --daemon-config "$dir/twofoldd.toml" \
    --listen "$dir/twofoldd.sock" </dev/null >/dev/null 2>>"$dir.err" &
  echo $! >"$dir.pid"
  for _ in $(seq 300); do [ -S "$dir/twofoldd.sock" ] && return 0; sleep 0.01; done
  echo "twofoldd-ldap-row.sh: the daemon did not listen (see $dir.err)" >&2
  exit 1
}

if [ "${1:-}" = --stop ]; then
  dir=$2
  memory "$dir" after
  stop "$dir.pid"
  stop "$dir-slapd/slapd.pid"
  exit 0
fi

users_file=$1 dir=$2
# slapd's files live beside DIR: twofold-row.sh starts DIR afresh.
ldap=$dir-slapd
base="dc=twofold,dc=bench"
bind_dn="cn=twofoldd,$base"
memory "$dir" after
stop "$dir.pid"
stop "$ldap/slapd.pid"
rm -rf "$ldap"
install -d -m 0700 "$ldap" "$ldap/slapd.d" "$ldap/db"

bash "$root/tests/bench/twofold-row.sh" "$users_file" "$dir"
# Top-level keys go before the tables twofold-row.sh wrote. The CLI (migrate) and the module
# read this file; the daemon reads it for the throttle.
{ printf 'store = "twofoldd"\ndaemon_socket = "%s/twofoldd.sock"\n' "$dir"; cat "$dir/config.toml"; } >"$dir/config.new"
mv "$dir/config.new" "$dir/config.toml"
chmod 0600 "$dir/config.toml"

# The directory: the same cn=config and ACLs as tests/ldap/mod.rs, one people entry per user,
# and the indexes any directory has: without objectClass eq, every subtree search for (uid=NAME)
# reads all the entries (back-mdb ORs the filter with (objectClass=referral)).
cat >"$ldap/config.ldif" <<EOF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $ldap/slapd.pid

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

include: file://$root/conf/ldap/twofold.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: $ldap/db
olcSuffix: $base
olcRootDN: cn=admin,$base
olcRootPW: admin-secret
olcDbMaxSize: 268435456
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcAccess: {0}to attrs=userPassword by anonymous auth by * none
olcAccess: {1}to attrs=twofoldRecord,twofoldState by dn.exact="$bind_dn" write by * none
olcAccess: {2}to * by dn.exact="$bind_dn" write by * read
EOF
python3 - "$users_file" "$base" "$bind_dn" >"$ldap/data.ldif" <<'PY'
import sys
users, base, bind_dn = sys.argv[1:4]
print(f"dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: twofold\no: twofold\n")
print(f"dn: {bind_dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
      f"cn: twofoldd\nuserPassword: bench-secret\n")
print(f"dn: ou=people,{base}\nobjectClass: organizationalUnit\nou: people\n")
for line in open(users):
    name = line.split()[0]
    print(f"dn: uid={name},ou=people,{base}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\nsn: {name}\n")
PY
/usr/sbin/slapadd -n0 -F "$ldap/slapd.d" -l "$ldap/config.ldif" >/dev/null 2>&1
/usr/sbin/slapadd -q -n1 -F "$ldap/slapd.d" -l "$ldap/data.ldif" >/dev/null 2>&1
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Without -d, slapd forks into the background and writes its pid file.
/usr/sbin/slapd -F "$ldap/slapd.d" -h "ldap://127.0.0.1:$port/" </dev/null >/dev/null 2>&1
for _ in $(seq 500); do
  [ -f "$ldap/slapd.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.01
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "twofoldd-ldap-row.sh: slapd did not listen" >&2; exit 1; }

install -m 0600 /dev/null "$dir/ldap.secret"
echo bench-secret >"$dir/ldap.secret"
cat >"$dir/twofoldd.toml" <<EOF
backend = "ldap"
[ldap]
servers = ["ldap://127.0.0.1:$port"]
base_dn = "$base"
bind_dn = "$bind_dn"
bind_password_file = "$dir/ldap.secret"
EOF
chmod 0600 "$dir/twofoldd.toml"

# Move every user's record into the directory through a daemon, then take the files away, so
# that the logins can only be served by the directory.
start_daemon "$dir"
mapfile -t names < <(awk '{print "--user"; print $1}' "$users_file")
moved=$("$root/target/release/twofold" --config "$dir/config.toml" migrate "${names[@]}" | grep -c ': moved$' || true)
want=$(wc -l <"$users_file")
[ "$moved" = "$want" ] || { echo "twofoldd-ldap-row.sh: migrate moved $moved of $want users" >&2; exit 1; }
stop "$dir.pid"
rm -rf "$dir/rec"
# A fresh daemon for the logins: its memory is its own, not the migration's.
start_daemon "$dir"
memory "$dir" rest
sync
