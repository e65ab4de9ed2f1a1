#!/usr/bin/env bash
# The packaging check, run as root by tests/run.sh after cargo test. It builds the Debian packages
# (twofold, twofold-web) and lints them; installs twofold and drives the installed module through
# real PAM (a real user, pamtester, the example stacks in conf/pam.d, the pam-auth-update
# profile); installs twofold-web, checks its account, files and unit, starts it as that account
# with the installed config, and purges it; checks that removing twofold is refused while a PAM
# service still uses the module; purges it and checks that only the user's records remain; then
# builds the RPMs, checks their contents, and checks that rpm -e refuses in the same way and that
# twofold-web's %pre makes its account (in a scratch root).
#
# Every problem fails the run with a message, and nothing is skipped. The EXIT trap puts the
# machine back as it was, whatever happens: users, service files, common-* and /var/lib/pam,
# the packages, and the records directory if this run created it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$SECONDS

fail() {
  echo "packaging/check.sh: FAIL: $*" >&2
  exit 1
}
step() { printf '\n== packaging/check.sh: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || fail "run as root: it installs the package, creates a user and edits /etc/pam.d"
for tool in dpkg-buildpackage dh lintian rpmbuild rpm pam-auth-update pamtester oathtool \
  useradd userdel chpasswd cargo git setpriv curl systemd-analyze readelf; do
  command -v "$tool" >/dev/null || fail "$tool is missing (tests/run.sh installs what this needs)"
done

export DEBIAN_FRONTEND=noninteractive
# A target dir of its own, so that this never waits on or disturbs the test builds; the deb and
# rpm builds share its compiled dependencies.
export CARGO_TARGET_DIR=$root/target/pkg-build
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
module=/usr/lib/$multiarch/security/pam_twofold.so
records=/var/lib/twofold
user=twofold-pkgcheck
marker="twofold packaging check"
svc_login=twofold-check-login
svc_su=twofold-check-su
svc_common=twofold-check-common
svc_needs=twofold-check-needs
# Every regular file the .deb must install, and nothing else.
deb_files=(
  /etc/twofold/config.toml
  /etc/twofold/twofoldd.toml
  /lib/systemd/system/twofoldd.service
  /lib/systemd/system/twofoldd.socket
  /usr/bin/twofold
  /usr/sbin/twofoldd
  "$module"
  /usr/share/doc/twofold/changelog.Debian.gz
  /usr/share/doc/twofold/copyright
  /usr/share/lintian/overrides/twofold
  /usr/share/man/man1/twofold.1.gz
  /usr/share/man/man5/twofold.toml.5.gz
  /usr/share/man/man8/pam_twofold.8.gz
  /usr/share/man/man8/twofoldd.8.gz
  /usr/share/pam-configs/twofold
)
web_user=twofold-web
web_deb_files=(
  /etc/pam.d/twofold-web
  /lib/systemd/system/twofold-web.service
  /usr/sbin/twofold-web
  /usr/share/doc/twofold-web/changelog.Debian.gz
  /usr/share/doc/twofold-web/copyright
  /usr/share/doc/twofold-web/examples/twofold-wiki.conf
  /usr/share/man/man8/twofold-web.8.gz
)

installed() { dpkg-query -W -f='${Status}' "${1:-twofold}" 2>/dev/null | grep -Eq 'installed|config-files'; }

# The check installs and then purges the package: refuse to run over a twofold that is already
# there, from a package or from a source install, rather than destroy it.
installed && fail "the twofold package is installed; this check would purge it (dpkg --purge twofold first)"
installed twofold-web && fail "the twofold-web package is installed; this check would purge it (dpkg --purge twofold-web first)"
for path in /usr/bin/twofold "$module" /etc/twofold /usr/share/pam-configs/twofold /usr/sbin/twofold-web \
  /etc/pam.d/twofold-web; do
  [ ! -e "$path" ] || fail "$path exists (a source install?); this check would overwrite and remove it"
done
if id "$user" >/dev/null 2>&1; then
  # Only a user an interrupted run left behind may go; anyone else's account stays.
  [ "$(getent passwd "$user" | cut -d: -f5)" = "$marker" ] ||
    fail "user $user exists and was not made by this check"
  userdel "$user"
fi
records_existed=false
[ -d "$records" ] && records_existed=true
# twofold-web's postinst makes its account, and purging keeps it (as Debian does with system
# accounts): this run removes it only if it made it.
web_user_existed=false
id "$web_user" >/dev/null 2>&1 && web_user_existed=true

work=$(mktemp -d /tmp/twofold-check.XXXXXX)
mkdir "$work/pam.d" "$work/lib-pam" "$work/review"
cp -a /etc/pam.d/common-* "$work/pam.d/"
cp -a /var/lib/pam/. "$work/lib-pam/"

cleanup() {
  local status=$?
  set +e
  rm -f "/etc/pam.d/$svc_login" "/etc/pam.d/$svc_su" "/etc/pam.d/$svc_common" "/etc/pam.d/$svc_needs"*
  if [ -n "${web_pid:-}" ]; then kill "$web_pid" 2>/dev/null; wait "$web_pid" 2>/dev/null; fi
  if installed twofold-web; then
    dpkg --purge twofold-web >"$work/cleanup-purge-web.log" 2>&1 ||
      { cat "$work/cleanup-purge-web.log" >&2; echo "packaging/check.sh: cleanup: dpkg --purge twofold-web failed" >&2; }
  fi
  if [ "$web_user_existed" = false ] && id "$web_user" >/dev/null 2>&1; then
    userdel "$web_user"
    if getent group "$web_user" >/dev/null; then groupdel "$web_user"; fi
  fi
  if installed; then
    # Forced: a failed step may have left a line that uses the module; it is restored below.
    TWOFOLD_FORCE_REMOVE=1 dpkg --purge twofold >"$work/cleanup-purge.log" 2>&1 ||
      { cat "$work/cleanup-purge.log" >&2; echo "packaging/check.sh: cleanup: dpkg --purge twofold failed" >&2; }
  fi
  # pam-auth-update's own files and its output, as they were before.
  local saved
  for saved in "$work"/pam.d/* "$work"/lib-pam/*; do
    local live
    case $saved in
      "$work"/pam.d/*) live=/etc/pam.d/${saved##*/} ;;
      *) live=/var/lib/pam/${saved##*/} ;;
    esac
    cmp -s "$saved" "$live" || { cp -a "$saved" "$live" && echo "packaging/check.sh: cleanup: restored $live" >&2; }
  done
  # The removal checks make one, as a backup that must not stop the removal.
  [ -e "$work/pam.d/common-auth.pam-old" ] || rm -f /etc/pam.d/common-auth.pam-old
  if [ "$(getent passwd "$user" | cut -d: -f5)" = "$marker" ]; then userdel "$user"; fi
  if [ "$records_existed" = true ]; then
    rm -f "$records/$user.toml" "$records/$user.state"
  else
    rm -rf "$records"
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command with its output in $work/NAME.log; on failure shows the end of it and fails.
logged() {
  local name=$1
  shift
  if ! "$@" >"$work/$name.log" 2>&1; then
    tail -n 40 "$work/$name.log" >&2
    fail "$* failed (end of its output above)"
  fi
}

# ---------------------------------------------------------------------------------------------
step "building the Debian packages (release build)"
logged build-deb bash packaging/build-deb.sh
deb=$(tail -n 1 "$work/build-deb.log")
web_deb=$(tail -n 2 "$work/build-deb.log" | head -n 1)
[ -f "$deb" ] || fail "build-deb.sh did not name a .deb (last line: $deb)"
[ -f "$web_deb" ] && [ "$(dpkg-deb -f "$web_deb" Package)" = twofold-web ] ||
  fail "build-deb.sh did not name twofold-web's .deb before twofold's (line: $web_deb)"
echo "$deb"
echo "$web_deb"

# The removal checks need a machine where no PAM service uses the module yet: the prerm would
# refuse every removal, for a reason outside this check. The built twofold answers, by the rule
# the prerm and the rpm's %preun ask it for (backups do not count, includes are followed).
users_now=$("$CARGO_TARGET_DIR/release/twofold" pam-users) || fail "twofold pam-users failed"
[ -z "$users_now" ] ||
  fail "PAM files use pam_twofold.so; the removal checks need a machine where none does: $users_now"

step "lintian"
# --fail-on none: the verdict is ours, so that it comes with the count and the tags.
lintian --fail-on none -I "${deb%.deb}.changes" >"$work/lintian.log" 2>/dev/null ||
  fail "lintian itself failed"
cat "$work/lintian.log"
errors=$(grep -c '^E: ' "$work/lintian.log" || true)
warnings=$(grep -c '^W: ' "$work/lintian.log" || true)
echo "lintian: $errors error(s), $warnings warning(s)"
[ "$errors" -eq 0 ] || fail "lintian reports $errors error(s)"

step "installing"
logged install dpkg -i "$deb"
dpkg -L twofold | while IFS= read -r path; do [ -d "$path" ] || echo "$path"; done | sort >"$work/files"
printf '%s\n' "${deb_files[@]}" | sort >"$work/files.expected"
diff -u "$work/files.expected" "$work/files" || fail "the package's file list is not the expected one (diff above)"
for path in "${deb_files[@]}"; do [ -f "$path" ] || fail "$path is not installed"; done
mode_owner() { stat -c '%a %U:%G' "$1"; }
[ "$(mode_owner "$records")" = "700 root:root" ] || fail "$records is $(mode_owner "$records"), expected 700 root:root"
# postinst confirms the store, or the module would refuse every user without a record.
[ "$(mode_owner "$records/.twofold-store")" = "600 root:root" ] ||
  fail "postinst did not write the store marker $records/.twofold-store"
[ "$(mode_owner /etc/twofold/config.toml)" = "644 root:root" ] ||
  fail "/etc/twofold/config.toml is $(mode_owner /etc/twofold/config.toml), expected 644 root:root"
[ "$(mode_owner /usr/bin/twofold)" = "755 root:root" ] || fail "/usr/bin/twofold is $(mode_owner /usr/bin/twofold)"
[ "$(mode_owner "$module")" = "644 root:root" ] || fail "$module is $(mode_owner "$module")"
# The packaged module has no test-only device path (the software security key's socket).
if grep -q TWOFOLD_TEST_FIDO_SOCKET "$module"; then fail "$module contains the test-only key socket"; fi
# tests/guards.sh checks a module built alone; this one was built in one cargo run with the
# daemon and the web (features are unified across a run), so check what ships as well.
needed=$(readelf -d "$module" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -v '^ld-linux' | sort | tr '\n' ' ')
[ "$needed" = "libc.so.6 libpam.so.0 " ] || fail "$module needs: $needed"
[ "$(stat -c %s "$module")" -lt $((1536 * 1024)) ] || fail "$module is over the 1.5 MiB budget"
# The units are installed, not enabled: twofoldd is for central and directory records only.
enabled=$(find /etc/systemd/system -name 'twofold*' 2>/dev/null)
[ -z "$enabled" ] || fail "installing enabled units: $enabled"
cmp -s conf/config.toml /etc/twofold/config.toml || fail "/etc/twofold/config.toml differs from conf/config.toml"
dpkg-query -W -f='${Conffiles}\n' twofold | grep -q '^ /etc/twofold/config.toml ' ||
  fail "/etc/twofold/config.toml is not a conffile"
grep -qx 'Default: no' /usr/share/pam-configs/twofold || fail "the pam-auth-update profile is not Default: no"
# Registering the profile must not switch it on.
for saved in "$work"/pam.d/*; do
  cmp -s "$saved" "/etc/pam.d/${saved##*/}" || fail "installing changed /etc/pam.d/${saved##*/}"
done
# twofold check reviews the service files in --pam-dir: only copies of the ones under test, so
# that other services on this machine cannot decide the outcome.
logged check-installed /usr/bin/twofold check --pam-dir "$work/review"
echo "twofold check: ok"
dpkg-query -W -f='${Conffiles}\n' twofold | grep -q '^ /etc/twofold/twofoldd.toml ' ||
  fail "/etc/twofold/twofoldd.toml is not a conffile"

# ---------------------------------------------------------------------------------------------
step "the installed twofoldd answers the installed CLI"
daemon_socket=$work/twofoldd/twofoldd.sock
/usr/sbin/twofoldd --listen "$daemon_socket" &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$daemon_socket" ] && break; sleep 0.05; done
printf 'store = "twofoldd"\ndaemon_socket = "%s"\n' "$daemon_socket" >"$work/daemon-config.toml"
chmod 0600 "$work/daemon-config.toml"
/usr/bin/twofold --config "$work/daemon-config.toml" check --pam-dir "$work/review" >"$work/daemon-check.log" 2>&1 || true
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
grep -q 'store: twofoldd (.*): up, backend files' "$work/daemon-check.log" ||
  fail "twofold check did not find the installed twofoldd up: $(cat "$work/daemon-check.log")"
echo "twofoldd: up, and twofold check through it: ok"

# ---------------------------------------------------------------------------------------------
step "twofold-web: its account, files and unit; it starts as that account"
logged install-web dpkg -i "$web_deb"
dpkg -L twofold-web | while IFS= read -r path; do [ -d "$path" ] || echo "$path"; done | sort >"$work/web-files"
printf '%s\n' "${web_deb_files[@]}" | sort >"$work/web-files.expected"
diff -u "$work/web-files.expected" "$work/web-files" || fail "twofold-web's file list is not the expected one (diff above)"
[ "$(mode_owner /usr/sbin/twofold-web)" = "755 root:root" ] || fail "/usr/sbin/twofold-web is $(mode_owner /usr/sbin/twofold-web)"
for pair in conf/pam.d/twofold-web:/etc/pam.d/twofold-web \
  packaging/systemd/twofold-web.service:/lib/systemd/system/twofold-web.service \
  conf/nginx/twofold-wiki.conf:/usr/share/doc/twofold-web/examples/twofold-wiki.conf; do
  cmp -s "${pair%%:*}" "${pair#*:}" || fail "${pair#*:} differs from ${pair%%:*}"
  [ "$(mode_owner "${pair#*:}")" = "644 root:root" ] || fail "${pair#*:} is $(mode_owner "${pair#*:}")"
done
dpkg-query -W -f='${Conffiles}\n' twofold-web | grep -q '^ /etc/pam.d/twofold-web ' ||
  fail "/etc/pam.d/twofold-web is not a conffile"
# A system account with no home, no shell and no password, in a group of its own; and the one
# twofoldd.toml names as web_user by default.
entry=$(getent passwd "$web_user") || fail "the postinst did not make the account $web_user"
IFS=: read -r _ _ web_uid web_gid _ web_home web_shell <<<"$entry"
[ "$web_uid" -lt 1000 ] && [ "$web_home" = /nonexistent ] && [ "$web_shell" = /usr/sbin/nologin ] ||
  fail "$web_user is not a system account without home and shell: $(getent passwd "$web_user")"
[ "$(getent group "$web_gid" | cut -d: -f1)" = "$web_user" ] || fail "$web_user's group is not $web_user"
[ ! -e /nonexistent ] || fail "/nonexistent exists"
passwd -S "$web_user" | grep -q "^$web_user L " || fail "$web_user has a usable password: $(passwd -S "$web_user")"
grep -qx "web_user = \"$web_user\"" /etc/twofold/twofoldd.toml || fail "twofoldd.toml's web_user is not $web_user"
enabled=$(find /etc/systemd/system -name 'twofold*' 2>/dev/null)
[ -z "$enabled" ] || fail "installing twofold-web enabled units: $enabled"
logged web-unit-verify systemd-analyze verify /lib/systemd/system/twofold-web.service
# The hardening stays where it is (about 1, "OK", on systemd 252; 0 to 10, in tenths here).
logged web-unit-security systemd-analyze security --offline=true --threshold=20 /lib/systemd/system/twofold-web.service
grep -o 'Overall exposure level.*' "$work/web-unit-security.log"
# setpriv execs the program: the pid of `"${as_web[@]}" ... &` is twofold-web's own.
as_web=(setpriv --reuid="$web_user" --regid="$web_user" --clear-groups --no-new-privs)
logged web-help "${as_web[@]}" /usr/sbin/twofold-web --help
# As the unit runs it: that account, the installed config (root's, 0644). It listens on the
# default 127.0.0.1:9090 and answers nginx's question, or, if something else has that port,
# stops with the cause; anything else (an unreadable or refused config) fails the check.
"${as_web[@]}" /usr/sbin/twofold-web >"$work/web-run.log" 2>&1 &
web_pid=$!
web_answer=
for _ in $(seq 100); do
  kill -0 "$web_pid" 2>/dev/null || break
  web_answer=$(curl -s -m 2 -D - -o /dev/null http://127.0.0.1:9090/twofold/auth || true)
  [ -z "$web_answer" ] || break
  sleep 0.05
done
sleep 0.2
if kill -0 "$web_pid" 2>/dev/null; then
  kill "$web_pid"
  wait "$web_pid" || fail "twofold-web did not stop cleanly at SIGTERM: $(cat "$work/web-run.log")"
  grep -q '^HTTP/1.1 401' <<<"$web_answer" && grep -qi '^content-security-policy: ' <<<"$web_answer" ||
    fail "twofold-web's /twofold/auth without a session did not answer 401 with a CSP: $web_answer"
  echo "twofold-web as $web_user: listening on 127.0.0.1:9090, /twofold/auth without a session: 401"
else
  wait "$web_pid" && fail "twofold-web exited 0 at once: $(cat "$work/web-run.log")"
  grep -q '^twofold-web: cannot listen on 127.0.0.1:9090: ' "$work/web-run.log" ||
    fail "twofold-web as $web_user failed with the installed config: $(cat "$work/web-run.log")"
  echo "twofold-web as $web_user: config read; 127.0.0.1:9090 is taken here: $(cat "$work/web-run.log")"
fi
web_pid=
# A bad [web] key stops it at once, naming the file and the line.
{ cat /etc/twofold/config.toml; printf 'listn = "127.0.0.1:9090"\n'; } >"$work/web-bad.toml"
bad_line=$(wc -l <"$work/web-bad.toml")
if /usr/sbin/twofold-web --config "$work/web-bad.toml" >"$work/web-bad.log" 2>&1; then
  fail "twofold-web started with an unknown [web] key"
fi
grep -q "^twofold-web: $work/web-bad.toml:$bad_line: unknown field \`listn\`" "$work/web-bad.log" ||
  fail "twofold-web's error for an unknown [web] key does not name the file and line $bad_line: $(cat "$work/web-bad.log")"
echo "twofold-web, bad [web] key: $(cat "$work/web-bad.log")"
logged purge-web dpkg --purge twofold-web
for path in "${web_deb_files[@]}" /usr/share/doc/twofold-web; do
  [ ! -e "$path" ] || fail "$path is left after purging twofold-web"
done
id "$web_user" >/dev/null || fail "purging twofold-web removed its account (files it owned would go to a later uid)"
echo "twofold-web: purged; its account stays"

# ---------------------------------------------------------------------------------------------
step "a real user logs in through the installed module"
password="pw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
useradd -M -s /usr/sbin/nologin -c "$marker" "$user"
printf '%s:%s\n' "$user" "$password" | chpasswd
secret=$(head -c 20 /dev/urandom | base32 | tr -d '=')

# Each TOTP step is accepted once, and the enrollment spends its code, so every use takes a step
# never used before: the current one, or the one after the last used (inside the +-1 window).
last_step=0
fresh_code() {
  local now=$(($(date +%s) / 30))
  last_step=$((last_step + 1 > now ? last_step + 1 : now))
  code=$(oathtool --totp -b "$secret" -N "@$((last_step * 30))")
}
# pamtester reads the password, then the code, from stdin.
login() { # service, password, code
  printf '%s\n%s\n' "$2" "$3" | pamtester -v "$1" "$user" authenticate >"$work/pamtester.log" 2>&1
}
must_log_in() { # what, service, password, code
  local what=$1
  shift
  login "$@" || { cat "$work/pamtester.log" >&2; fail "$1: $what was refused"; }
  echo "$1: $what: logged in"
}
must_be_refused() { # what, service, password, code
  local what=$1
  shift
  if login "$@"; then
    cat "$work/pamtester.log" >&2
    fail "$1: $what was accepted"
  fi
  # PAM_AUTH_ERR, not a module that failed to load or run.
  grep -q 'Authentication failure' "$work/pamtester.log" ||
    { cat "$work/pamtester.log" >&2; fail "$1: $what failed, but not as an authentication failure"; }
  echo "$1: $what: refused"
}

fresh_code
# Root creates the codes file with the user's rights: it goes in a directory of theirs.
chmod 0711 "$work"
install -d -o "$user" -m 0700 "$work/codes"
printf '%s\n' "$secret" |
  logged enroll /usr/bin/twofold enroll --user "$user" --secret - --code "$code" --qr none \
    --backup-codes-file "$work/codes/backup-codes"
[ "$(stat -c %U "$work/codes/backup-codes")" = "$user" ] || fail "the backup codes file is not $user's"
/usr/bin/twofold status --user "$user" --json | grep -q '"totp":true' ||
  fail "twofold status does not show $user as enrolled"
for file in "$records/$user.toml" "$records/$user.state"; do
  [ "$(mode_owner "$file")" = "600 root:root" ] || fail "$file is $(mode_owner "$file"), expected 600 root:root"
done

# The example stacks, as shipped in conf/pam.d, name the installed module by its bare name.
install -m 0644 conf/pam.d/login "/etc/pam.d/$svc_login"
install -m 0644 conf/pam.d/su "/etc/pam.d/$svc_su"
fresh_code
must_log_in "the password and a TOTP code" "$svc_login" "$password" "$code"
must_be_refused "the same code again" "$svc_login" "$password" "$code"
must_be_refused "a wrong code" "$svc_login" "$password" "$(printf '%06d' $(((10#$code + 1) % 1000000)))"
# pamtester runs as root, and root's su needs neither password nor code (pam_rootok).
pamtester "$svc_su" "$user" authenticate </dev/null >"$work/pamtester.log" 2>&1 ||
  { cat "$work/pamtester.log" >&2; fail "$svc_su: root was asked for more than nothing"; }
echo "$svc_su: root: logged in without a password or code"
# twofold check follows the stacks' @include lines: the files they include come along. The su
# stack is reviewed under its real name: pam_rootok is root's shortcut only in su.
cp /etc/pam.d/common-{auth,account,password,session,session-noninteractive} "/etc/pam.d/$svc_login" "$work/review/"
cp "/etc/pam.d/$svc_su" "$work/review/su"
logged check-stacks /usr/bin/twofold check --pam-dir "$work/review"
for svc in "$svc_login" su; do
  grep -q "/$svc:.*: ok" "$work/check-stacks.log" || fail "twofold check did not find $svc fine"
done
rm -f "$work"/review/*
rm -f "/etc/pam.d/$svc_login" "/etc/pam.d/$svc_su"

# ---------------------------------------------------------------------------------------------
step "pam-auth-update --enable twofold"
logged enable pam-auth-update --enable twofold
grep -n 'pam_twofold' /etc/pam.d/common-auth
[ "$(grep -c 'pam_twofold' /etc/pam.d/common-auth)" = 1 ] || fail "common-auth has not exactly one pam_twofold line"
# pam-auth-update writes the profile's line with a trailing space, as it does pam_cap's.
grep -qxP 'auth\trequired\tpam_twofold\.so\s*' /etc/pam.d/common-auth ||
  fail "common-auth's pam_twofold line is not 'auth<TAB>required<TAB>pam_twofold.so'"
# After the fallback (requisite pam_deny) and the primer (pam_permit): in the Additional block.
permit=$(grep -n 'pam_permit\.so' /etc/pam.d/common-auth | head -n1 | cut -d: -f1)
twofold=$(grep -n 'pam_twofold\.so' /etc/pam.d/common-auth | cut -d: -f1)
[ -n "$permit" ] && [ "$twofold" -gt "$permit" ] || fail "pam_twofold is not after pam_permit in common-auth"
# The profile's stack on the real /etc/pam.d passes twofold check: a wrong password ends the
# stack before the module, for every service that includes common-auth.
logged check-profile /usr/bin/twofold check
grep -q '/etc/pam.d/common-auth:[0-9]*: ok' "$work/check-profile.log" || fail "twofold check did not review common-auth"

printf '@include common-auth\naccount required pam_permit.so\n' >"/etc/pam.d/$svc_common"
must_log_in "the password and a backup code" "$svc_common" "$password" "$(head -n 1 "$work/codes/backup-codes")"
must_be_refused "a wrong code" "$svc_common" "$password" 000000
# A wrong password must end the stack at pam_deny, before twofold prompts: the only answer given
# is the password, so a prompt for the code would fail the conversation instead.
if printf 'wrong-%s\n' "$password" | pamtester -v "$svc_common" "$user" authenticate >"$work/pamtester.log" 2>&1; then
  fail "$svc_common: a wrong password was accepted"
fi
grep -q 'Verification code' "$work/pamtester.log" && fail "$svc_common: twofold asked for a code after a wrong password"
grep -q 'Authentication failure' "$work/pamtester.log" ||
  { cat "$work/pamtester.log" >&2; fail "$svc_common: a wrong password did not fail as an authentication failure"; }
echo "$svc_common: wrong password: refused before the code prompt"
cp /etc/pam.d/common-auth "$work/review/"
logged check-common /usr/bin/twofold check --pam-dir "$work/review"
grep -q '/common-auth:.*: ok' "$work/check-common.log" || fail "twofold check did not find common-auth fine"
rm -f "$work"/review/*
rm -f "/etc/pam.d/$svc_common"

step "pam-auth-update --disable twofold"
logged disable pam-auth-update --disable twofold
cmp "$work/pam.d/common-auth" /etc/pam.d/common-auth || fail "common-auth is not byte for byte what it was"
echo "common-auth: restored byte for byte"

# pam-auth-update's state: the five files it writes, and its own records.
pam_state() {
  sha256sum /etc/pam.d/common-{auth,account,password,session,session-noninteractive} /var/lib/pam/*
}
# dpkg --remove twofold must be refused, name the line that needs the module (FILE:LINE:TEXT) and
# leave everything as it was: the module, the package, pam-auth-update's state.
must_refuse_removal() { # why, line
  pam_state >"$work/state.before"
  if dpkg --remove twofold >"$work/remove.log" 2>&1; then
    cat "$work/remove.log" >&2
    fail "dpkg --remove deleted the module although $1"
  fi
  grep -q '^twofold: not removed: these PAM files still use pam_twofold.so' "$work/remove.log" &&
    grep -qxF "twofold:   $2" "$work/remove.log" &&
    grep -q '^twofold: .*TWOFOLD_FORCE_REMOVE=1 apt remove twofold' "$work/remove.log" ||
    { cat "$work/remove.log" >&2; fail "the refusal does not say why, name $2 and the override"; }
  [ -f "$module" ] || fail "$module is gone although $1"
  dpkg-query -W -f='${Status}' twofold | grep -q ' ok installed$' || fail "twofold is not installed after the refusal"
  pam_state | diff -u "$work/state.before" - || fail "the refused removal changed pam-auth-update's state (diff above)"
  echo "dpkg --remove: refused, nothing changed: $1"
}

step "removal is refused while a hand-edited common-auth still needs the module"
# pam-auth-update leaves a locally modified common-auth alone (and exits 0); the prerm must then
# refuse to let dpkg delete the module that file still names, or every login would fail.
logged enable-again pam-auth-update --enable twofold
grep -q '^Module: twofold$' /var/lib/pam/auth || fail "/var/lib/pam/auth does not record the enabled profile"
cp -a /etc/pam.d/common-auth "$work/common-auth.enabled"
sed -i 's/^auth\trequired\tpam_twofold\.so.*$/&\nauth\toptional\tpam_permit.so/' /etc/pam.d/common-auth
must_refuse_removal "a hand-edited common-auth uses it" "$(grep -n 'pam_twofold' /etc/pam.d/common-auth | sed 's|^|/etc/pam.d/common-auth:|')"
cp -a "$work/common-auth.enabled" /etc/pam.d/common-auth

step "removal is refused while common-auth has a line of its own outside pam-auth-update's block"
# Here pam-auth-update can rewrite common-auth, and takes its own line out, but keeps this one:
# the prerm must then put the profile back as it was before refusing.
printf 'auth\trequired\tpam_twofold.so\n' >>/etc/pam.d/common-auth
line=$(grep -n 'pam_twofold' /etc/pam.d/common-auth | tail -n 1)
must_refuse_removal "common-auth has a line of its own" "/etc/pam.d/common-auth:$line"
cp -a "$work/common-auth.enabled" /etc/pam.d/common-auth

step "removal is refused while another service file uses the module; TWOFOLD_FORCE_REMOVE=1 overrides"
# Services edited by hand (sshd, sudo...) fail every login once the module is gone.
printf '# twofold packaging check\nauth\trequired\tpam_twofold.so\n' >"/etc/pam.d/$svc_needs"
must_refuse_removal "$svc_needs uses it" "/etc/pam.d/$svc_needs:2:auth	required	pam_twofold.so"
logged force-remove env TWOFOLD_FORCE_REMOVE=1 dpkg --remove twofold
grep -q '^twofold: warning: TWOFOLD_FORCE_REMOVE=1: removing the module' "$work/force-remove.log" &&
  grep -qxF "twofold:   /etc/pam.d/$svc_needs:2:auth	required	pam_twofold.so" "$work/force-remove.log" ||
  { cat "$work/force-remove.log" >&2; fail "the forced removal does not warn about $svc_needs"; }
[ ! -e "$module" ] || fail "TWOFOLD_FORCE_REMOVE=1 dpkg --remove left $module"
dpkg-query -W -f='${Status}' twofold | grep -q ' ok config-files$' || fail "twofold is not removed after the forced removal"
# The profile is out of common-auth all the same.
for saved in "$work"/pam.d/*; do
  cmp -s "$saved" "/etc/pam.d/${saved##*/}" || fail "the forced removal left /etc/pam.d/${saved##*/} changed"
done
echo "TWOFOLD_FORCE_REMOVE=1 dpkg --remove: removed, with a warning"
rm -f "/etc/pam.d/$svc_needs"
logged reinstall-for-include dpkg -i "$deb"

step "removal is refused while a service includes, by absolute path, a file that uses the module"
# libpam follows include and substack to any absolute path; the module line lives in that file.
printf 'auth\trequired\tpam_twofold.so\n' >"$work/included-stack"
printf 'auth\tinclude\t%s\n' "$work/included-stack" >"/etc/pam.d/$svc_needs"
must_refuse_removal "$svc_needs includes $work/included-stack" "$work/included-stack:1:auth	required	pam_twofold.so"
rm -f "/etc/pam.d/$svc_needs"
logged reinstall dpkg -i "$deb"
[ -f "$module" ] || fail "reinstalling did not bring $module back"

step "backups and comments that name the module do not stop the removal"
# libpam never reads backups (only the file named after the service), nor comments, nor a module of
# another name. The profile is enabled, so that the purge has to take it out as well.
logged enable-purge pam-auth-update --enable twofold
cp /etc/pam.d/common-auth /etc/pam.d/common-auth.pam-old
for suffix in .dpkg-old .dpkg-dist '~' .bak .orig .ucf-dist .rpmsave .rpmnew; do
  printf 'auth\trequired\tpam_twofold.so\n' >"/etc/pam.d/$svc_needs$suffix"
done
printf '# auth required pam_twofold.so\n  #auth required pam_twofold.so\nauth optional /opt/bench/libpam_twofold.so\n' \
  >"/etc/pam.d/$svc_needs"
echo "the dpkg --purge below must go through"

# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
step "dpkg --purge twofold"
(cd "$records" && sha256sum "$user.toml" "$user.state") >"$work/records.sha256"
logged purge dpkg --purge twofold
if grep -q '^twofold:' "$work/purge.log"; then
  cat "$work/purge.log" >&2
  fail "the purge warned about the backups or comments"
fi
installed && fail "dpkg still lists twofold after the purge"
rm -f "/etc/pam.d/$svc_needs"*
if [ -e "$work/pam.d/common-auth.pam-old" ]; then
  cp -a "$work/pam.d/common-auth.pam-old" /etc/pam.d/
else
  rm -f /etc/pam.d/common-auth.pam-old
fi
for path in "${deb_files[@]}" /etc/twofold /usr/share/doc/twofold; do
  [ ! -e "$path" ] || fail "$path is left after the purge"
done
(cd "$records" && sha256sum --quiet -c "$work/records.sha256") || fail "the purge changed $user's records"
if [ "$records_existed" = false ]; then
  left=$(cd "$records" && ls -A | sort | tr '\n' ' ')
  [ "$left" = ".twofold-store $user.state $user.toml " ] || fail "$records holds more than the records after the purge: $left"
fi
[ "$(mode_owner "$records")" = "700 root:root" ] || fail "$records is $(mode_owner "$records") after the purge"
for saved in "$work"/pam.d/* "$work"/lib-pam/*; do
  case $saved in
    "$work"/pam.d/*) live=/etc/pam.d/${saved##*/} ;;
    *) live=/var/lib/pam/${saved##*/} ;;
  esac
  cmp -s "$saved" "$live" || fail "$live is not what it was before the install"
done
echo "purge: only $records/$user.toml, $user.state and the store marker are left, unchanged"

# ---------------------------------------------------------------------------------------------
step "building the RPMs (release build)"
logged build-rpm bash packaging/build-rpm.sh
rpm_file=$(tail -n 1 "$work/build-rpm.log")
web_rpm=$(tail -n 2 "$work/build-rpm.log" | head -n 1)
[ -f "$rpm_file" ] || fail "build-rpm.sh did not name an rpm (last line: $rpm_file)"
[ -f "$web_rpm" ] && [ "$(rpm -qp --qf '%{NAME}' "$web_rpm")" = twofold-web ] ||
  fail "build-rpm.sh did not name twofold-web's rpm before twofold's (line: $web_rpm)"
rpm -qlvp "$rpm_file" | tee "$work/rpm-files"
rpm -qlvp "$web_rpm" | tee "$work/rpm-web-files"
libdir=$(rpm --eval '%{_libdir}')
has() { awk '{print $NF}' "$work/rpm-files" | grep -qx "$1" || fail "the rpm lacks $1"; }
has "$libdir/security/pam_twofold.so"
has /usr/bin/twofold
has /usr/sbin/twofoldd
has /etc/twofold/config.toml
has /etc/twofold/twofoldd.toml
has /usr/lib/systemd/system/twofoldd.socket
has /usr/lib/systemd/system/twofoldd.service
has /var/lib/twofold
for page in man1/twofold.1 man5/twofold.toml.5 man8/pam_twofold.8 man8/twofoldd.8; do
  has "/usr/share/man/$page\(\.gz\)\?"
done
grep -q '^drwx------ .* root *root .* /var/lib/twofold$' "$work/rpm-files" ||
  fail "the rpm's /var/lib/twofold is not 0700 root:root"
[ "$(rpm -qcp "$rpm_file" | tr '\n' ' ')" = "/etc/twofold/config.toml /etc/twofold/twofoldd.toml " ] ||
  fail "the rpm's config files are not config.toml and twofoldd.toml"
# fflags: c = %config, n = noreplace.
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm_file" | grep -qx 'cn /etc/twofold/config.toml' ||
  fail "the rpm's config.toml is not %config(noreplace)"
grep -q '^-rw-r--r-- .* root *root .* /etc/twofold/config.toml$' "$work/rpm-files" ||
  fail "the rpm's config.toml is not 0644 root:root (twofold-web reads it unprivileged)"
# twofold-web's rpm: the same contents as its .deb.
web_has() { awk '{print $NF}' "$work/rpm-web-files" | grep -qx "$1" || fail "the twofold-web rpm lacks $1"; }
web_has /usr/sbin/twofold-web
web_has /usr/lib/systemd/system/twofold-web.service
web_has /etc/pam.d/twofold-web
web_has '/usr/share/man/man8/twofold-web.8\(\.gz\)\?'
web_has /usr/share/doc/twofold-web/examples/twofold-wiki.conf
if awk '{print $NF}' "$work/rpm-files" | grep -q 'twofold-web'; then fail "the twofold rpm holds twofold-web's files"; fi
[ "$(rpm -qcp "$web_rpm" | tr '\n' ' ')" = "/etc/pam.d/twofold-web " ] ||
  fail "the twofold-web rpm's config files are not /etc/pam.d/twofold-web alone"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$web_rpm" | grep -qx 'cn /etc/pam.d/twofold-web' ||
  fail "the twofold-web rpm's /etc/pam.d/twofold-web is not %config(noreplace)"
rpm -qp --requires "$web_rpm" | grep -qx 'twofold\(([^)]*)\)\? = [^ ]*' ||
  fail "the twofold-web rpm does not require the twofold of its own build: $(rpm -qp --requires "$web_rpm" | tr '\n' ' ')"

step "rpm -e is refused while a PAM service uses the module (in a scratch root)"
# rpm --root runs the scriptlets chrooted there: the root gets /bin/sh and the libraries of the
# twofold the package installs, which is all %preun needs, and an /etc/pam.d of its own.
rpm_root=$work/rpm-root
mkdir -p "$rpm_root/etc/pam.d" "$rpm_root/var/lib/rpm"
libraries_of() { for file in "$1" $(ldd "$1" | grep -o '/[^ ]*'); do cp -L --parents "$file" "$rpm_root"; done; }
libraries_of /bin/sh
rpm_in_root() { rpm --root "$rpm_root" --dbpath /var/lib/rpm "$@"; }
rpm_module=$rpm_root$libdir/security/pam_twofold.so
logged rpm-install rpm_in_root -i --nodeps "$rpm_file"
[ -f "$rpm_module" ] || fail "rpm -i did not install $rpm_module"
for file in $(ldd "$rpm_root/usr/bin/twofold" | grep -o '/[^ ]*'); do cp -L --parents "$file" "$rpm_root"; done
printf 'auth\trequired\tpam_twofold.so\n' >"$rpm_root/etc/pam.d/sshd"
printf '# auth required pam_twofold.so\n' >"$rpm_root/etc/pam.d/sudo"
for backup in sshd.rpmsave sshd.rpmnew sshd~ common-auth.pam-old; do
  cp "$rpm_root/etc/pam.d/sshd" "$rpm_root/etc/pam.d/$backup"
done
if rpm_in_root -e twofold >"$work/rpm-erase.log" 2>&1; then
  cat "$work/rpm-erase.log" >&2
  fail "rpm -e deleted the module although sshd uses it"
fi
grep -q '^twofold: not removed: these PAM files still use pam_twofold.so' "$work/rpm-erase.log" &&
  grep -qxF "twofold:   /etc/pam.d/sshd:1:auth	required	pam_twofold.so" "$work/rpm-erase.log" &&
  grep -q '^twofold: .*TWOFOLD_FORCE_REMOVE=1 rpm -e twofold' "$work/rpm-erase.log" ||
  { cat "$work/rpm-erase.log" >&2; fail "rpm -e's refusal does not say why, name sshd's line and the override"; }
[ "$(grep -c '^twofold:   ' "$work/rpm-erase.log")" = 1 ] ||
  { cat "$work/rpm-erase.log" >&2; fail "rpm -e's refusal names more than sshd's line (backups or comments?)"; }
[ -f "$rpm_module" ] && rpm_in_root -q twofold >/dev/null || fail "the refused rpm -e removed the package"
echo "rpm -e: refused, the module stays"
# An upgrade ($1 = 1 in %preun) replaces the module at once: not refused.
logged rpm-reinstall rpm_in_root -U --nodeps --replacepkgs "$rpm_file"
echo "rpm -U --replacepkgs: not refused"
logged rpm-force-erase env TWOFOLD_FORCE_REMOVE=1 rpm --root "$rpm_root" --dbpath /var/lib/rpm -e twofold
grep -q '^twofold: warning: TWOFOLD_FORCE_REMOVE=1: removing the module' "$work/rpm-force-erase.log" ||
  { cat "$work/rpm-force-erase.log" >&2; fail "TWOFOLD_FORCE_REMOVE=1 rpm -e does not warn"; }
[ ! -e "$rpm_module" ] || fail "TWOFOLD_FORCE_REMOVE=1 rpm -e left the module"
echo "TWOFOLD_FORCE_REMOVE=1 rpm -e: removed, with a warning"
# Only backups and comments left: the erase goes through, silently.
logged rpm-install-again rpm_in_root -i --nodeps "$rpm_file"
printf '# auth required pam_twofold.so\n' >"$rpm_root/etc/pam.d/sshd"
logged rpm-erase rpm_in_root -e twofold
if grep -q '^twofold:' "$work/rpm-erase.log"; then
  cat "$work/rpm-erase.log" >&2
  fail "rpm -e warned about backups or comments"
fi
[ ! -e "$rpm_module" ] || fail "rpm -e left the module"
echo "rpm -e with only backups and comments naming the module: removed"

step "the twofold-web rpm's %pre makes its account (in the scratch root)"
# useradd and groupadd, their libraries, the account files and /dev/null (the scriptlet
# silences getent), as on a real system.
for tool in getent useradd groupadd; do libraries_of "$(command -v "$tool")"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rpm_root/etc/passwd"
printf 'root:x:0:\n' >"$rpm_root/etc/group"
printf 'root:*:20000:0:99999:7:::\n' >"$rpm_root/etc/shadow"
printf 'root:*::\n' >"$rpm_root/etc/gshadow"
chmod 0600 "$rpm_root/etc/shadow" "$rpm_root/etc/gshadow"
printf 'passwd: files\ngroup: files\nshadow: files\ngshadow: files\n' >"$rpm_root/etc/nsswitch.conf"
mkdir -p "$rpm_root/dev"
[ -e "$rpm_root/dev/null" ] || mknod -m 0666 "$rpm_root/dev/null" c 1 3
logged rpm-web-install rpm_in_root -i --nodeps "$web_rpm"
entry=$(grep "^$web_user:" "$rpm_root/etc/passwd") ||
  fail "the twofold-web rpm's %pre did not make $web_user: $(cat "$work/rpm-web-install.log")"
IFS=: read -r _ _ web_uid web_gid web_gecos web_home web_shell <<<"$entry"
[ "$web_uid" -lt 1000 ] && [ "$web_home" = /nonexistent ] && [ "$web_shell" = /usr/sbin/nologin ] &&
  grep -q "^$web_user:x:$web_gid:" "$rpm_root/etc/group" ||
  fail "the rpm's $web_user is not a system account without home and shell, in its own group: $entry"
# Again over an existing account: kept as it is.
cp "$rpm_root/etc/passwd" "$work/rpm-passwd"
logged rpm-web-reinstall rpm_in_root -U --nodeps --replacepkgs "$web_rpm"
cmp -s "$work/rpm-passwd" "$rpm_root/etc/passwd" || fail "reinstalling twofold-web changed the accounts"
logged rpm-web-help "$rpm_root/usr/sbin/twofold-web" --help
logged rpm-web-erase rpm_in_root -e twofold-web
[ ! -e "$rpm_root/usr/sbin/twofold-web" ] && [ ! -e "$rpm_root/etc/pam.d/twofold-web" ] ||
  fail "rpm -e twofold-web left its files"
echo "twofold-web rpm: %pre made $web_user ($web_gecos, uid $web_uid), rpm -e removed the files"

step "all packaging checks passed in $((SECONDS - started)) s"
