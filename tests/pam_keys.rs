//! Security keys through the real module and the real Linux-PAM: the software authenticator
//! (tests/src/soft_key.rs, the only fake, standing in for the USB key) is served on a unix socket
//! that the test build of the module's device path reaches (`TWOFOLD_TEST_FIDO_SOCKET`; the
//! release module has no such path, tests/guards.sh checks it).
//!
//! The socket is named by an environment variable of this process, so the tests of this file take
//! turns (`one_at_a_time`).

mod common;

use std::sync::{Mutex, MutexGuard};

use twofold_core::keys;
use twofold_core::security_key::{KeyName, PublicKey, SecurityKey};
use twofold_core::store::Store;
use twofold_tests::soft_key::{Alg, ServerHandle, SignCount, SoftKey, Touch};

use common::*;

const RP: &str = "pam://twofold-test";
const CUE: &str = "Touch your security key.";

static TURN: Mutex<()> = Mutex::new(());

/// Holds the turn, and the served key while the test runs; the socket variable is cleared at the
/// end.
struct Plugged {
    server: Option<ServerHandle>,
    _turn: MutexGuard<'static, ()>,
}

impl Drop for Plugged {
    fn drop(&mut self) {
        std::env::remove_var("TWOFOLD_TEST_FIDO_SOCKET");
        self.server.take();
    }
}

fn one_at_a_time() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Plugs `key` in (serves it on a socket in the host's directory).
fn plug(host: &Host, key: SoftKey) -> Plugged {
    let turn = one_at_a_time();
    let path = host.dir.path().join(format!("key-{}.sock", random_u64()));
    let server = key.serve(&path).expect("serve the soft key");
    std::env::set_var("TWOFOLD_TEST_FIDO_SOCKET", &path);
    Plugged {
        server: Some(server),
        _turn: turn,
    }
}

/// Nothing plugged in (no socket; this machine has no USB key).
fn unplugged() -> Plugged {
    let turn = one_at_a_time();
    std::env::remove_var("TWOFOLD_TEST_FIDO_SOCKET");
    Plugged {
        server: None,
        _turn: turn,
    }
}

impl Plugged {
    fn key(&self) -> std::sync::MutexGuard<'_, SoftKey> {
        self.server.as_ref().expect("a key is plugged in").key()
    }
}

/// A soft key holding a credential for `RP`, and the record's view of it, named `name`. The key
/// is touched after two keepalives, as a person would be.
fn key_with_credential(alg: Alg, name: &str) -> (SoftKey, SecurityKey) {
    credential_on(SoftKey::new().touch(Touch::After(2)), alg, name)
}

fn credential_on(mut key: SoftKey, alg: Alg, name: &str) -> (SoftKey, SecurityKey) {
    let (credential_id, cose) = key.add_credential(RP, alg);
    let registered = SecurityKey {
        name: KeyName::parse(name).unwrap(),
        credential_id,
        public_key: PublicKey::from_cose(&cose).unwrap(),
        rp_id: RP.into(),
        user_verification: false,
        added: now(),
    };
    (key, registered)
}

fn host() -> Host {
    Host::new("[fido2]\ntouch_timeout_secs = 2\n")
}

fn register(host: &Host, user: &str, key: &SecurityKey) {
    keys::add(
        &host.store(),
        &user_name(user),
        std::slice::from_ref(key),
        10,
        true,
    )
    .unwrap();
}

#[test]
fn a_touch_logs_in_at_the_console_with_the_cue_and_no_code_prompt() {
    for alg in [Alg::Es256, Alg::EdDsa] {
        let host = host();
        host.enroll("alice");
        let (soft, registered) = key_with_credential(alg, "blue");
        register(&host, "alice", &registered);
        let plugged = plug(&host, soft);
        let login = host.login("alice", &[]);
        login.assert_rc(PAM_SUCCESS);
        assert!(login.prompts().is_empty(), "{alg:?}: {:?}", login.prompts());
        assert_eq!(login.infos(), [CUE], "{alg:?}");
        let signed = plugged.key().counter(&registered.credential_id).unwrap();
        let state = host.state("alice");
        assert_eq!(state.key_uses.len(), 1);
        assert_eq!(
            state.key_uses[0].sign_count, signed,
            "{alg:?}: the counter is stored"
        );
        // And again: the counter moves on.
        host.login("alice", &[]).assert_rc(PAM_SUCCESS);
        assert!(host.state("alice").key_uses[0].sign_count > signed);
    }
}

#[test]
fn without_a_key_or_from_a_remote_host_the_code_prompt_follows() {
    let host = host();
    let alice = host.enroll("alice");
    let (soft, registered) = key_with_credential(Alg::Es256, "blue");
    register(&host, "alice", &registered);
    {
        let _nothing = unplugged();
        let login = host.login("alice", &[&alice.code(0)]);
        login.assert_rc(PAM_SUCCESS).assert_only_prompt(CODE_PROMPT);
        assert!(login.infos().is_empty(), "{:?}", login.infos());
    }
    // Over SSH the key is at the client, even if one is plugged in here.
    let plugged = plug(&host, soft);
    let login = host.login_from("203.0.113.9", "alice", &[&alice.code(1)]);
    login.assert_rc(PAM_SUCCESS).assert_only_prompt(CODE_PROMPT);
    assert_eq!(
        plugged.key().signatures(),
        0,
        "a remote login never asks the key"
    );
}

#[test]
fn sudo_in_an_ssh_session_and_sshd_itself_ask_for_a_code_not_the_key() {
    let host = host();
    let alice = host.enroll("alice");
    let (soft, registered) = key_with_credential(Alg::Es256, "blue");
    register(&host, "alice", &registered);
    let plugged = plug(&host, soft);
    // sudo sets no PAM_RHOST; inside an SSH session its terminal is a pseudo-terminal (with no
    // logind record of the session to say otherwise, as on this machine).
    let mut session = Session::start(&host.confdir, "twofold", "alice", &[&alice.code(0)]);
    session.set_tty("/dev/pts/3");
    session.authenticate(0);
    let login = session.finish();
    login.assert_rc(PAM_SUCCESS).assert_only_prompt(CODE_PROMPT);
    // sshd's own stack, even from localhost.
    host.service("sshd", "");
    let mut session = Session::start(&host.confdir, "sshd", "alice", &[&alice.code(1)]);
    session.set_rhost("127.0.0.1");
    session.authenticate(0);
    session
        .finish()
        .assert_rc(PAM_SUCCESS)
        .assert_only_prompt(CODE_PROMPT);
    assert_eq!(plugged.key().signatures(), 0, "the key was never asked");
    // The console's own terminal is one.
    let mut session = Session::start(&host.confdir, "twofold", "alice", &[]);
    session.set_tty("/dev/tty1");
    session.authenticate(0);
    session.finish().assert_rc(PAM_SUCCESS);
}

#[test]
fn no_touch_before_the_timeout_cancels_and_falls_back_to_a_code() {
    let host = host();
    let alice = host.enroll("alice");
    let (soft, registered) = key_with_credential(Alg::Es256, "blue");
    register(&host, "alice", &registered);
    let plugged = plug(&host, soft.touch(Touch::Never));
    let login = host.login("alice", &[&alice.code(0)]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.prompts(), [CODE_PROMPT]);
    assert_eq!(login.infos(), [CUE, "No touch; enter a code instead."]);
    // The module hangs up right after its CANCEL: wait for the key to have read both.
    let server = plugged.server.as_ref().unwrap();
    assert!(server.wait_for_hangup(std::time::Duration::from_secs(5)));
    assert_eq!(
        plugged.key().cancellations(),
        1,
        "the module cancelled the request at its deadline"
    );
}

#[test]
fn a_pin_key_asks_for_its_pin_through_pam_and_a_wrong_one_says_the_tries_left() {
    let host = host();
    let alice = host.enroll("alice");
    let (soft, mut registered) = credential_on(
        SoftKey::new().pin("4711").touch(Touch::After(1)),
        Alg::Es256,
        "blue",
    );
    registered.user_verification = true;
    register(&host, "alice", &registered);
    let _plugged = plug(&host, soft);
    // The right PIN: asked hidden before the touch, and the assertion carries UV.
    let login = host.login("alice", &["4711"]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.prompts(), ["Security key PIN: "]);
    assert_eq!(login.infos(), [CUE]);
    // A wrong PIN: the key's count of tries left, then the code prompt.
    let login = host.login("alice", &["0000", &alice.code(0)]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.prompts(), ["Security key PIN: ", CODE_PROMPT]);
    assert_eq!(login.errors(), ["Wrong PIN; the key allows 7 more tries."]);
    // No PIN given (Enter): the code prompt follows, nothing is tried on the key.
    let login = host.login("alice", &["", &alice.code(1)]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.prompts(), ["Security key PIN: ", CODE_PROMPT]);
}

#[test]
fn a_cloned_key_whose_counter_goes_back_is_refused() {
    let host = host();
    host.enroll("alice");
    let (soft, registered) = credential_on(
        SoftKey::new().sign_count(SignCount::Backwards(100)),
        Alg::Es256,
        "blue",
    );
    register(&host, "alice", &registered);
    let _plugged = plug(&host, soft);
    host.login("alice", &[]).assert_rc(PAM_SUCCESS);
    let login = host.login("alice", &[]);
    login.assert_rc(PAM_AUTH_ERR);
    assert!(login.prompts().is_empty());
    assert_eq!(
        host.state("alice").failures.len(),
        1,
        "counted as a failure"
    );
}

#[test]
fn another_users_key_is_not_this_users() {
    let host = host();
    let alice = host.enroll("alice");
    host.enroll("bob");
    let (_, alices) = key_with_credential(Alg::Es256, "blue");
    register(&host, "alice", &alices);
    // Bob's key holds only Bob's credential: for Alice it is not registered.
    let (bobs_soft, bobs) = key_with_credential(Alg::Es256, "red");
    register(&host, "bob", &bobs);
    let _plugged = plug(&host, bobs_soft);
    let login = host.login("alice", &[&alice.code(0)]);
    login.assert_rc(PAM_SUCCESS).assert_only_prompt(CODE_PROMPT);
}

#[test]
fn a_user_with_only_keys_fails_closed_where_no_key_can_be_used() {
    let host = host();
    let (soft, registered) = key_with_credential(Alg::EdDsa, "imported-1");
    keys::create_with(&host.store(), &user_name("alice"), &[registered]).unwrap();
    {
        let _nothing = unplugged();
        let login = host.login("alice", &[]);
        login.assert_rc(PAM_AUTH_ERR);
        assert!(login.prompts().is_empty());
        assert_eq!(
            login.errors(),
            ["No security key found; plug in your key and try again."]
        );
    }
    let _plugged = plug(&host, soft);
    let login = host.login_from("203.0.113.9", "alice", &[]);
    login.assert_rc(PAM_AUTH_ERR);
    assert!(login.errors()[0].contains("only at this machine"));
    // nullok never applies to a user who has keys.
    host.service("twofold", "nullok");
    host.login_from("203.0.113.9", "alice", &[])
        .assert_rc(PAM_AUTH_ERR);
    host.login("alice", &[]).assert_rc(PAM_SUCCESS);
    assert!(host.store().load(&user_name("alice")).unwrap().is_some());
}

// ---- `twofold keys` and `twofold import pam-u2f`, the CLI the admin and the user run.

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the CLI against the host's config, with the plugged-in key's socket (if any) in its
/// environment.
fn twofold(host: &Host, args: &[&str]) -> Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_twofold-tested"))
        .arg("--config")
        .arg(&host.config)
        .args(args)
        .output()
        .expect("run twofold");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the CLI with `input` on its stdin (no terminal: a PIN is read from there).
fn twofold_with_input(host: &Host, args: &[&str], input: &str) -> Run {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_twofold-tested"))
        .arg("--config")
        .arg(&host.config)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run twofold");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The error lines of a run (the cue is on stderr too).
fn errors(run: &Run) -> usize {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("twofold:"))
        .count()
}

fn keys_of(host: &Host, user: &str) -> Vec<String> {
    host.store()
        .load(&user_name(user))
        .unwrap()
        .map(|(record, _)| record.keys.iter().map(|k| k.name.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn keys_add_registers_the_plugged_in_key_which_then_logs_in() {
    let host = host();
    let user = me();
    host.enroll(&user);
    let plugged = plug(&host, SoftKey::new().touch(Touch::After(2)));
    let added = twofold(&host, &["keys", "add", "blue"]);
    assert!(added.ok, "{}", added.stderr);
    assert!(
        added.stdout.contains("security key blue registered"),
        "{}",
        added.stdout
    );
    assert!(
        added.stderr.contains("Touch your security key"),
        "the cue: {}",
        added.stderr
    );
    let (credential, _) = plugged
        .key()
        .last_credential()
        .expect("a credential was made");

    let listed = twofold(&host, &["keys", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let key = &json["keys"][0];
    assert_eq!(key["name"], "blue");
    assert_eq!(key["algorithm"], "es256");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(key["rp_id"], format!("pam://{}", hostname.trim()));
    assert_eq!(key["last_used"], serde_json::Value::Null);

    let login = host.login(&user, &[]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.infos(), [CUE]);
    let status = twofold(&host, &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["keys"][0]["name"], "blue");
    assert!(json["keys"][0]["last_used"].as_u64().is_some());

    // The same name again is refused before any touch; the same key again is excluded by it.
    let signatures = plugged.key().signatures();
    let again = twofold(&host, &["keys", "add", "blue"]);
    assert!(
        !again.ok && again.stderr.contains("a key named blue exists already"),
        "{}",
        again.stderr
    );
    assert_eq!(
        plugged.key().signatures(),
        signatures,
        "no touch was asked for"
    );
    let twice = twofold(&host, &["keys", "add", "spare"]);
    assert!(
        !twice.ok,
        "the key that holds blue registers again: {}",
        twice.stdout
    );
    assert_eq!(errors(&twice), 1, "{}", twice.stderr.trim());
    assert!(
        twice.stderr.contains("already registered"),
        "{}",
        twice.stderr
    );
    assert_eq!(keys_of(&host, &user), ["blue"]);
    assert_eq!(plugged.key().last_credential().unwrap().0, credential);

    let renamed = twofold(&host, &["keys", "rename", "blue", "green"]);
    assert!(renamed.ok, "{}", renamed.stderr);
    assert_eq!(keys_of(&host, &user), ["green"]);
    let removed = twofold(&host, &["keys", "remove", "green"]);
    assert!(removed.ok, "{}", removed.stderr);
    assert!(keys_of(&host, &user).is_empty());
    assert!(
        host.state(&user).key_uses.is_empty(),
        "its counter went with it"
    );
    let missing = twofold(&host, &["keys", "remove", "green"]);
    assert!(!missing.ok && missing.stderr.contains("no key named green"));
}

#[test]
fn keys_add_with_pin_registers_a_key_that_must_verify_the_user() {
    let host = host();
    let user = me();
    let code = host.enroll(&user).code(0);
    let _plugged = plug(&host, SoftKey::new().pin("4711").touch(Touch::After(1)));
    let wrong = twofold_with_input(&host, &["keys", "add", "blue", "--pin"], "0000\n");
    assert!(!wrong.ok, "{}", wrong.stdout);
    assert!(
        wrong
            .stderr
            .contains("wrong PIN; the key allows 7 more tries"),
        "{}",
        wrong.stderr
    );
    let added = twofold_with_input(&host, &["keys", "add", "blue", "--pin"], "4711\n");
    assert!(added.ok, "{}", added.stderr);
    let listed = twofold(&host, &["keys", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(json["keys"][0]["user_verification"], true);
    // At login the PIN is asked, and without it only a code gets in.
    let login = host.login(&user, &["", &code]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.prompts(), ["Security key PIN: ", CODE_PROMPT]);
    let login = host.login(&user, &["4711"]);
    login.assert_rc(PAM_SUCCESS);
}

#[test]
fn keys_add_says_in_one_line_why_nothing_was_registered() {
    let host = host();
    let user = me();
    {
        let _nothing = unplugged();
        let run = twofold(&host, &["keys", "add", "blue"]);
        assert!(
            !run.ok && run.stderr.contains("not enrolled"),
            "{}",
            run.stderr
        );
        host.enroll(&user);
        let run = twofold(&host, &["keys", "add", "blue"]);
        assert!(
            !run.ok && run.stderr.contains("no security key found"),
            "{}",
            run.stderr
        );
        for bad in ["two words", "x/y", ""] {
            let run = twofold(&host, &["keys", "add", bad]);
            assert!(
                !run.ok && run.stderr.contains("key name"),
                "{bad:?}: {}",
                run.stderr
            );
        }
    }
    for (touch, why) in [
        (Touch::Denied, "refused"),
        (Touch::Never, "not touched in time"),
    ] {
        let _plugged = plug(&host, SoftKey::new().touch(touch));
        let run = twofold(&host, &["keys", "add", "blue"]);
        assert!(!run.ok, "{touch:?}");
        assert_eq!(errors(&run), 1, "{touch:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(why) && run.stderr.contains("nothing was registered"),
            "{touch:?}: {}",
            run.stderr
        );
    }
    assert!(keys_of(&host, &user).is_empty());
}

#[test]
fn a_pam_u2f_authfile_is_imported_and_its_keys_log_in() {
    use base64ct::{Base64, Encoding};
    let host = host();
    let user = me();
    let mut soft = SoftKey::new().touch(Touch::After(1));
    let (es_id, es_cose) = soft.add_credential(RP, Alg::Es256);
    let (ed_id, ed_cose) = soft.add_credential(RP, Alg::EdDsa);
    let xy = &PublicKey::from_cose(&es_cose).unwrap().raw()[1..].to_vec();
    let ed = PublicKey::from_cose(&ed_cose).unwrap().raw().to_vec();
    // As pam_u2f's documentation gives it: user:KeyHandle,UserKey,CoseType,Options:...
    // with another user's line before, an rs256 credential that cannot be imported, and an
    // earlier line of ours that pam_u2f ignores.
    let authfile = format!(
        "root:{other},{xy},es256,+presence\n{user}:{other},{xy},es256,+presence\n{user}:{es},{xy},es256,+presence:{other},{xy},rs256,+presence:{ed_kh},{ed},eddsa,+presence\n",
        other = Base64::encode_string(b"someone else's handle"),
        es = Base64::encode_string(&es_id),
        ed_kh = Base64::encode_string(&ed_id),
        xy = Base64::encode_string(xy),
        ed = Base64::encode_string(&ed),
    );
    let file = host.dir.write("u2f_keys", authfile);
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let run = twofold(
        &host,
        &["import", "pam-u2f", file.to_str().unwrap(), "--rp-id", RP],
    );
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("imported 2 security key(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(":3: credential 2: rs256"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(":2: an earlier line"), "{}", run.stderr);
    assert_eq!(keys_of(&host, &user), ["imported-1", "imported-2"]);
    // A user who had only pam_u2f keys has only keys: the touch is the way in.
    let record = host.store().load(&user_name(&user)).unwrap().unwrap().0;
    assert!(record.totp.is_none());
    let _plugged = plug(&host, soft);
    host.login(&user, &[]).assert_rc(PAM_SUCCESS);
    // Importing again adds nothing.
    let again = twofold(
        &host,
        &["import", "pam-u2f", file.to_str().unwrap(), "--rp-id", RP],
    );
    assert!(
        again.ok && again.stdout.contains("registered already"),
        "{}",
        again.stdout
    );
    assert_eq!(keys_of(&host, &user).len(), 2);
}
