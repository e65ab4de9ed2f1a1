#!/usr/bin/env bash
# pambench hook (../shared/bench/run.sh calls it before every measurement): writes a fresh twofold
# record for each "user BASE32" line of USERSFILE under DIR, like the harness does for the
# google-authenticator row (same secrets, five backup codes each, fresh state).
set -euo pipefail
users_file=$1 dir=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$dir"
install -d -m 0700 "$dir" "$dir/rec"
install -m 0600 /dev/null "$dir/rec/.twofold-store"
printf 'issuer = "pambench"\nrecords = "%s/rec/{user}.toml"\n[backup_codes]\ncount = 5\n' "$dir" >"$dir/config.toml"
chmod 0600 "$dir/config.toml"

# One real enrollment (through the CLI's google-authenticator import) supplies the backup-code
# hashes, every bench record carrying five as the GA files carry five scratch codes, and the
# fresh state file that an enrollment leaves (so logins update it in place, as in production).
template=$(mktemp -d)
printf 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n" DISALLOW_REUSE 1\n" TOTP_AUTH\n11111111\n22222222\n33333333\n44444444\n55555555\n' >"$template/ga"
install -d -m 0700 "$template/rec"
printf 'records = "%s/rec/{user}.toml"\n' "$template" >"$template/config.toml"
chmod 0600 "$template/config.toml"
"$root/target/release/twofold" --config "$template/config.toml" import google-authenticator "$template/ga" --user template >/dev/null

python3 - "$users_file" "$dir/rec" "$template/rec/template.toml" "$template/rec/template.state" <<'PY'
import os, sys
users, rec, template, state_file = sys.argv[1:5]
state = open(state_file, "rb").read()
codes = "".join(l for l in open(template) if l.startswith("[[backup_codes]]") or l.startswith("hash ="))
for line in open(users):
    name, secret = line.split()
    body = ('version = 1\n\n[totp]\nsecret = "%s"\nalgorithm = "SHA1"\ndigits = 6\nperiod = 30\n\n' % secret
            + codes.replace("hash =", "\nhash =").replace("\n\n", "\n"))
    fd = os.open(os.path.join(rec, name + ".toml"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, body.encode())
    os.close(fd)
    fd = os.open(os.path.join(rec, name + ".state"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, state)
    os.close(fd)
PY
rm -rf "$template"
# Enrollment happened long before a login: flush the new files, as time would have.
sync
