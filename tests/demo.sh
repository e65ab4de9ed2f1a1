#!/usr/bin/env bash
# The demo: a protected login through real Linux-PAM, start to finish, as root on Debian.
#
# It builds twofold, creates a demo user with a password and a PAM service that stacks pam_unix
# (password) and pam_twofold (code) with enroll_on_login. The user's first login through pamtester
# enrolls them: QR code, one confirming code (oathtool plays the phone, reading the key off the
# screen), backup codes. Then it logs in with a code, and shows that a replayed code, a wrong code
# and a spent backup code are refused. Everything it creates is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (it creates a user and /etc/pam.d/twofold-demo): sudo bash tests/demo.sh" >&2
  exit 1
fi
need=(gcc libpam0g-dev libpam-modules pamtester oathtool passwd)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "demo: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "demo: building (release)"
cargo build --release --quiet
root=$(pwd)
work=$(mktemp -d /tmp/twofold-demo.XXXXXX)
user=twofold-demo
password="demo-$(head -c6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
service=twofold-demo

cleanup() {
  rm -f "/etc/pam.d/$service"
  userdel "$user" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

id "$user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$user"
echo "$user:$password" | chpasswd
install -d -m 0700 "$work/records"
# The store marker, as the package writes it: without it the module takes the empty directory
# for a store that is not mounted and refuses to enroll anyone.
install -m 0600 /dev/null "$work/records/.twofold-store"
cat >"$work/config.toml" <<CONF
issuer = "twofold-demo"
enroll_on_login = true
records = "$work/records/{user}.toml"
[backup_codes]
count = 5
CONF
chmod 0600 "$work/config.toml"
cat >"/etc/pam.d/$service" <<PAM
auth requisite pam_unix.so
auth required $root/target/release/libpam_twofold.so config=$work/config.toml
account required pam_permit.so
PAM

twofold() { "$root/target/release/twofold" --config "$work/config.toml" "$@"; }
code_now() { oathtool --totp -b "$secret"; }
login() { # password, code
  printf '%s\n%s\n' "$1" "$2" | pamtester -v "$service" "$user" authenticate 2>&1 | sed 's/^/    /'
  return "${PIPESTATUS[1]}"
}

echo
echo "== 1. First login: password, then scan the QR code and type one code to turn 2FA on"
# pamtester talks to a coprocess that types the password, watches the screen for the key (the
# phone would scan the QR code instead) and types the code oathtool computes from it. stdbuf
# makes pamtester write each line as it comes, as it would to a terminal.
coproc PAMTESTER { stdbuf -oL pamtester -v "$service" "$user" authenticate 2>&1; }
# Bash forgets a coprocess's fds and pid once it exits: keep copies to read its last lines.
pamtester_pid=$PAMTESTER_PID
exec {screen}<&"${PAMTESTER[0]}" {keyboard}>&"${PAMTESTER[1]}"
printf '%s\n' "$password" >&"$keyboard"
secret="" backup=""
while IFS= read -r line <&"$screen"; do
  printf '    %s\n' "${line//Password: /Password: (typed)$'\n'    }"
  case $line in
    *"Or type this key into the app: "*)
      secret=${line#*Or type this key into the app: }
      secret=${secret// /}
      code=$(code_now)
      echo "    (the phone shows $code; the user types it)"
      printf '%s\n' "$code" >&"$keyboard" ;;
    "  "[a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9]-*)
      [ -n "$backup" ] || backup=$(echo "$line" | awk '{print $1}') ;;
    "Store them somewhere safe now"*)
      echo "    (the user stores the codes and presses Enter)"
      printf '\n' >&"$keyboard" ;;
  esac
done
exec {screen}<&- {keyboard}>&-
wait "$pamtester_pid" || { echo "demo: the enrolling login failed" >&2; exit 1; }
[ -n "$secret" ] && [ -n "$backup" ] || { echo "demo: no key or backup codes were shown" >&2; exit 1; }
echo "   -> enrolled and logged in (the same service, with no admin step)"

echo
echo "== 2. Log in: password, then the app's code"
# The confirming code is spent, so wait for the app's next code, as a person would.
wait=$((30 - $(date +%s) % 30 + 1))
echo "   (waiting ${wait}s for the next code: each code works once)"
sleep "$wait"
code=$(code_now)
login "$password" "$code" && echo "   -> logged in"

echo
echo "== 3. The same code again (a replay): refused"
if login "$password" "$code"; then echo "demo: replay accepted!" >&2; exit 1; fi
echo "   -> refused"

echo
echo "== 4. A wrong code: refused"
if login "$password" 000000; then echo "demo: wrong code accepted!" >&2; exit 1; fi
echo "   -> refused"

echo
echo "== 5. Phone lost: a backup code works once"
login "$password" "$backup" && echo "   -> logged in with a backup code"
if login "$password" "$backup"; then echo "demo: spent backup code accepted!" >&2; exit 1; fi
echo "   -> the same backup code again: refused"

echo
twofold status --user "$user"
echo
echo "demo: done; the demo user, PAM service and records are removed"
