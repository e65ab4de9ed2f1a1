#!/usr/bin/env bash
# The layering guards (../shared/DESIGN.md): what the PAM module may pull in, link and export, how
# big it may grow, and where unsafe code may live. The module is loaded at every login inside sshd
# and sudo, so these are checked on every CI run, on the release build that ships.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "guards: $*" >&2; exit 1; }

# 1. No HTTP, async, LDAP, CLI, udev or TLS crate reaches the module.
forbidden='^(tokio|hyper|axum|ldap3|clap|hidapi|libudev-sys|webauthn-rs|openssl-sys|rustls|reqwest|serde_json) '
tree=$(cargo tree -p twofold-pam -e normal --prefix none --locked)
if bad=$(grep -E "$forbidden" <<<"$tree"); then
  fail "crates/pam depends on $(sort -u <<<"$bad" | tr '\n' ' ')"
fi
# Its direct dependencies are exactly these (crates/pam/Cargo.toml says why).
direct=$(cargo tree -p twofold-pam -e normal --depth 1 --prefix none --locked | tail -n +2 |
  awk '{print $1}' | sort -u | tr '\n' ' ')
[ "$direct" = "libc subtle twofold-core twofold-fido twofold-host twofold-proto zeroize " ] ||
  fail "crates/pam's direct dependencies are: $direct"

# 2. The release module links libpam and libc only (plus the dynamic loader, which every process
# has mapped already and which provides __tls_get_addr), and exports the six PAM hooks only.
cargo build --release --locked --quiet -p twofold-pam
so=target/release/libpam_twofold.so
needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -v '^ld-linux' | sort | tr '\n' ' ')
[ "$needed" = "libc.so.6 libpam.so.0 " ] || fail "$so needs: $needed"
exports=$(nm -D --defined-only "$so" | awk '{print $3}' | sort | tr '\n' ' ')
expected="pam_sm_acct_mgmt pam_sm_authenticate pam_sm_chauthtok pam_sm_close_session pam_sm_open_session pam_sm_setcred "
[ "$exports" = "$expected" ] || fail "$so exports: $exports"

# The tests' software authenticator reaches the module only in test builds, through a socket
# transport that the release module must not have.
if grep -q TWOFOLD_TEST_FIDO_SOCKET "$so"; then
  fail "$so contains the test-only security-key socket"
fi

# 3. The stripped module stays under 1.5 MiB (bytes cost nothing measurable per login; this is a
# budget against creep).
size=$(stat -c %s "$so")
[ "$size" -lt $((1536 * 1024)) ] || fail "$so is $size bytes, over the 1.5 MiB budget"

# 4. unsafe lives only in the PAM edge, the host adapter and the device code (crates/fido); every
# other crate root forbids it, so the compiler enforces the rule.
unsafe_allowed='^(crates/pam|crates/host|crates/fido|tests)/'
for root in $(git ls-files 'src/lib.rs' 'crates/*/src/lib.rs' 'crates/*/src/main.rs' 'crates/*/src/bin/*.rs'); do
  grep -qE "$unsafe_allowed" <<<"$root" && continue
  grep -q '^#!\[forbid(unsafe_code)\]' "$root" || fail "$root does not forbid unsafe code"
done
if hits=$(git grep -nE '\bunsafe\b *(\{|fn|impl|extern)' -- '*.rs' | grep -vE "^${unsafe_allowed#^}"); then
  fail "unsafe outside the allowed crates: $hits"
fi

echo "guards: ok (module $size bytes; NEEDED $needed; 6 exports; direct deps: $direct)"
