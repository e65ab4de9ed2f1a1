//! Root-only end-to-end logins through the real front doors: Debian's `sshd` (keyboard-interactive,
//! or password authentication, driven by a paramiko client) and Debian's `sudo`, each with its
//! `/etc/pam.d` file swapped for `pam_unix` + the built module, and restored afterwards.
//!
//! Not root: each test says why it is skipped and passes, except under `CI=true`, where it fails.
//! When a test runs it leaves `target/root-tests-ran/<test>`, so CI can check that it did.
//! Every failing login costs the 2 s fail delay, so there are few of them. Tests that change a
//! system PAM file take turns (see `e2e`).

// root_pam.rs uses the helpers this file does not.
#[allow(dead_code)]
#[macro_use]
mod root;

mod e2e;
mod qr;

use e2e::{authorize_new_key, SshHost, SudoHost, Twofold, BACKUP_CODES};
use root::{totp, TestUser};
use twofold_tests::files::STORE_MARKER;

// ---- sshd.

#[test]
fn ssh_login_with_the_right_code_runs_the_remote_command() {
    needs_root!();
    let host = SshHost::start("sshok", Twofold::new("sshok", "", ""), KBD_INT);
    let user = TestUser::create("sshok");
    let enrolled = host.twofold.enroll(&user);

    // Enrolling spent the current step; the next one is within the window.
    let login = host.login(&user, &[&user.password, &totp::next(&enrolled.secret)]);
    login.assert_success();
    assert_eq!(
        login.requests[0].prompts,
        [("Password: ".to_string(), false)],
        "pam_unix asks first: {login:#?}"
    );
    assert!(login.asked_for_code(), "{login:#?}");
    assert_eq!(login.stdout(), ran_as(&user), "{login:#?}");
}

#[test]
fn ssh_login_with_a_wrong_code_is_denied() {
    needs_root!();
    let host = SshHost::start("sshwrong", Twofold::new("sshwrong", "", ""), KBD_INT);
    let user = TestUser::create("sshwr");
    let enrolled = host.twofold.enroll(&user);

    let login = host.login(&user, &[&user.password, &totp::wrong(&enrolled.secret)]);
    login.assert_denied();
    // The password was right (pam_unix is requisite): the module said no.
    assert!(login.asked_for_code(), "{login:#?}");
    assert!(!login.shown().contains("unavailable"), "{login:#?}");
}

#[test]
fn ssh_login_with_a_replayed_code_is_denied() {
    needs_root!();
    let host = SshHost::start("sshreplay", Twofold::new("sshreplay", "", ""), KBD_INT);
    let user = TestUser::create("sshre");
    let enrolled = host.twofold.enroll(&user);

    let code = totp::next(&enrolled.secret);
    host.login(&user, &[&user.password, &code]).assert_success();
    let replay = host.login(&user, &[&user.password, &code]);
    replay.assert_denied();
    assert!(replay.asked_for_code(), "{replay:#?}");
}

#[test]
fn ssh_login_of_a_throttled_user_is_denied_with_the_lock_message() {
    needs_root!();
    let twofold = Twofold::new("sshlock", "", "[throttle]\nmax_failures = 2\n");
    let host = SshHost::start("sshlock", twofold, KBD_INT);
    let user = TestUser::create("sshlk");
    let enrolled = host.twofold.enroll(&user);
    assert_eq!(
        host.twofold.status(&user)["locked_until"],
        serde_json::Value::Null
    );

    for _ in 0..2 {
        let login = host.login(&user, &[&user.password, &totp::wrong(&enrolled.secret)]);
        login.assert_denied();
        assert!(login.asked_for_code(), "{login:#?}");
    }
    // sshd names the client's address (PAM_RHOST): the lock is that address's.
    assert!(
        host.twofold.status(&user)["hosts_locked_until"][0].is_u64(),
        "two failures lock: {}",
        host.twofold.status(&user)
    );

    // Locked: even the right code is not asked for, and the client is told why.
    let login = host.login(&user, &[&user.password, &totp::next(&enrolled.secret)]);
    login.assert_denied();
    assert!(!login.asked_for_code(), "asked while locked: {login:#?}");
    assert!(
        login
            .shown()
            .contains("Too many failed codes; try again in 15 min"),
        "no lock message: {login:#?}"
    );
}

#[test]
fn ssh_publickey_then_keyboard_interactive_with_the_right_code_logs_in() {
    needs_root!();
    let host = SshHost::start(
        "sshkey",
        Twofold::new("sshkey", "", ""),
        "publickey,keyboard-interactive",
    );
    let user = TestUser::create("sshky");
    let key = authorize_new_key(&user, host.twofold.dir.path());
    let enrolled = host.twofold.enroll(&user);

    // Without the key, keyboard-interactive is not even offered.
    let keyless = host.login(&user, &[&user.password, &totp::next(&enrolled.secret)]);
    keyless.assert_denied();
    assert_eq!(
        keyless.result["allowed_types"],
        serde_json::json!(["publickey"]),
        "{keyless:#?}"
    );
    assert!(keyless.requests.is_empty(), "{keyless:#?}");

    let answers = [user.password.as_str(), &totp::next(&enrolled.secret)];
    let login = host.login_with(&user, Some(&key), e2e::scripted(&answers));
    login.assert_success();
    assert_eq!(
        login.result["publickey_partial"],
        serde_json::json!(["keyboard-interactive"]),
        "the key was accepted as the first factor: {login:#?}"
    );
    assert!(login.asked_for_code(), "{login:#?}");
    assert_eq!(login.stdout(), ran_as(&user), "{login:#?}");
}

// ---- sudo.

#[test]
fn sudo_with_the_right_code_runs_the_command() {
    needs_root!();
    let host = SudoHost::new("sudook");
    let user = TestUser::create("sudok");
    let _rule = host.allow(&user);
    let enrolled = host.twofold.enroll(&user);

    let run = host.sudo(&user, &[&user.password, &totp::next(&enrolled.secret)]);
    run.assert_ran_as_root();
    assert!(run.stderr.contains(e2e::CODE_PROMPT), "{run:#?}");
}

#[test]
fn sudo_with_a_wrong_code_is_refused() {
    needs_root!();
    let host = SudoHost::new("sudowrong");
    let user = TestUser::create("sudwr");
    let _rule = host.allow(&user);
    let enrolled = host.twofold.enroll(&user);

    let run = host.sudo(&user, &[&user.password, &totp::wrong(&enrolled.secret)]);
    run.assert_refused();
    // The password was right: the module asked, and said no.
    assert!(run.stderr.contains(e2e::CODE_PROMPT), "{run:#?}");
}

#[test]
fn sudo_accepts_a_backup_code_once() {
    needs_root!();
    let host = SudoHost::new("sudobackup");
    let user = TestUser::create("sudbk");
    let _rule = host.allow(&user);
    let enrolled = host.twofold.enroll(&user);
    assert_eq!(enrolled.backup_codes.len(), BACKUP_CODES);
    let left = |host: &SudoHost| host.twofold.status(&user)["backup_codes_left"].clone();
    assert_eq!(left(&host), BACKUP_CODES);

    let code = enrolled.backup_codes[1].as_str();
    let run = host.sudo(&user, &[&user.password, code]);
    run.assert_ran_as_root();
    assert!(run.stderr.contains(e2e::CODE_PROMPT), "{run:#?}");
    // sudo authenticates with PAM_SILENT, so the module's "Backup code accepted; N left" is not
    // shown; the status says the code is spent.
    assert_eq!(left(&host), BACKUP_CODES - 1, "the code is spent");

    let again = host.sudo(&user, &[&user.password, code]);
    again.assert_refused();
    assert!(again.stderr.contains(e2e::CODE_PROMPT), "{again:#?}");
    assert_eq!(left(&host), BACKUP_CODES - 1);
}

// ---- Enrollment at login over ssh.

#[test]
fn ssh_enroll_on_login_shows_a_scannable_qr_code_and_the_backup_codes_then_requires_codes() {
    needs_root!();
    let twofold = Twofold::new("sshenroll", "enroll_on_login = true", "");
    let host = SshHost::start("sshenroll", twofold, KBD_INT);
    let user = TestUser::create("sshen");
    assert_eq!(host.twofold.status(&user)["totp"], false);

    let mut confirmed_key = None;
    let login = host.login_with(&user, None, |requests| {
        answer_enrollment(&user, requests, |key| {
            confirmed_key = Some(key.to_string());
            e2e::oathtool_code(key, 0)
        })
    });
    login.assert_success();
    assert_eq!(login.stdout(), ran_as(&user), "{login:#?}");
    let key = confirmed_key.unwrap_or_else(|| panic!("never asked to confirm: {login:#?}"));
    assert!(
        !login.asked_for_code(),
        "enrolling asks no other code: {login:#?}"
    );

    // sshd prepends the PAM text to the prompt it precedes: intro, QR code, key, then the prompt.
    let (prompt, echo) = &login.requests[1].prompts[0];
    assert!(!echo, "the confirming code must not echo");
    assert!(prompt.starts_with(e2e::ENROLL_INTRO), "{login:#?}");
    assert!(
        prompt.ends_with(&format!("\n{}", e2e::CONFIRM_PROMPT)),
        "{prompt}"
    );
    let drawing = e2e::qr_drawing(prompt);
    for line in &drawing {
        assert!(line.chars().count() <= 80, "wider than 80 columns: {line}");
    }
    let uri = e2e::decode_qr(&drawing, &host.twofold.dir.path().join("enroll-qr.pgm"));
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert_eq!(
        uri_param(&uri, "secret").as_deref(),
        Some(key.as_str()),
        "the QR code carries the key typed as text: {uri}"
    );

    // The backup codes come with a last prompt, so they arrive inside the keyboard-interactive
    // exchange (as a login banner, many clients would never show them).
    let (stored, echo) = &login.requests[2].prompts[0];
    assert!(*echo, "{login:#?}");
    assert!(
        stored.starts_with("Two-factor authentication is on.")
            && stored.contains("Store them")
            && stored.ends_with(&format!("\n{}", e2e::STORED_PROMPT)),
        "no backup codes shown: {login:#?}"
    );
    let codes = e2e::backup_codes_in(stored);
    assert_eq!(codes.len(), BACKUP_CODES, "{stored}");
    assert!(!login.banner().contains("Two-factor"), "{login:#?}");
    let status = host.twofold.status(&user);
    assert_eq!(
        (&status["totp"], &status["backup_codes_left"]),
        (&serde_json::json!(true), &serde_json::json!(BACKUP_CODES)),
        "{status}"
    );

    // Enrolled now: the password alone, or a wrong code, is not enough.
    let no_code = host.login(&user, &[&user.password]);
    no_code.assert_denied();
    assert!(no_code.asked_for_code(), "{no_code:#?}");
    assert!(!no_code.shown().contains(e2e::ENROLL_INTRO), "{no_code:#?}");
    let wrong = host.login(&user, &[&user.password, &totp::wrong(&key)]);
    wrong.assert_denied();
    assert!(wrong.asked_for_code(), "{wrong:#?}");

    // The confirming code spent its step; the next step's code works, and so does a shown code.
    let next = host.login(&user, &[&user.password, &e2e::oathtool_code(&key, 30)]);
    next.assert_success();
    assert_eq!(next.stdout(), ran_as(&user), "{next:#?}");
    let backup = host.login(&user, &[&user.password, &codes[0]]);
    backup.assert_success();
    assert_eq!(
        backup.banner().trim_end(),
        format!("Backup code accepted; {} left", BACKUP_CODES - 1),
        "{backup:#?}"
    );
    assert_eq!(
        host.twofold.status(&user)["backup_codes_left"],
        BACKUP_CODES - 1
    );
}

#[test]
fn ssh_enroll_on_login_with_three_wrong_codes_is_denied_and_saves_nothing() {
    needs_root!();
    let twofold = Twofold::new("sshenrollno", "enroll_on_login = true", "");
    let host = SshHost::start("sshenrollno", twofold, KBD_INT);
    let user = TestUser::create("sshnx");

    let login = host.login_with(&user, None, |requests| {
        answer_enrollment(&user, requests, totp::wrong)
    });
    login.assert_denied();
    let confirm_prompts = login
        .requests
        .iter()
        .flat_map(|r| &r.prompts)
        .filter(|(p, _)| p.ends_with(e2e::CONFIRM_PROMPT))
        .count();
    assert_eq!(confirm_prompts, 3, "three tries: {login:#?}");
    let shown = login.shown();
    for told in [
        "Wrong code; 2 tries left.",
        "Wrong code; 1 try left.",
        "Wrong code; two-factor authentication was not set up.",
    ] {
        assert!(shown.contains(told), "not told {told:?}: {login:#?}");
    }
    let status = host.twofold.status(&user);
    assert_eq!(
        (&status["totp"], &status["backup_codes_left"]),
        (&serde_json::json!(false), &serde_json::json!(0)),
        "{status}"
    );
    // Not even a state file or a temp file.
    let written: Vec<_> = std::fs::read_dir(&host.twofold.records)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != STORE_MARKER)
        .collect();
    assert!(written.is_empty(), "files written: {written:?}");
}

// ---- Password authentication over ssh.
//
// sshd's PasswordAuthentication conversation answers every hidden prompt with the password and
// keeps PAM text as login messages, sent as the userauth banner only if the login succeeds. The
// module, seeing its confirming prompt answered with PAM_AUTHTOK, does not enroll: as if
// enroll_on_login were off.

#[test]
fn ssh_password_authentication_with_enroll_on_login_and_nullok_lets_an_unenrolled_user_in() {
    needs_root!();
    let twofold = Twofold::new("sshpwnull", "enroll_on_login = true\nnullok = true", "");
    let host = SshHost::start("sshpwnull", twofold, PASSWORD);
    let user = TestUser::create("sshpn");

    let login = host.login_by_password(&user, &user.password);
    login.assert_success();
    assert_eq!(login.stdout(), ran_as(&user), "{login:#?}");
    assert_not_enrolled(&host.twofold, &user);
    // The module ran and got as far as offering enrollment: sshd kept its text (intro, QR code,
    // key) and sent it as the banner. That key was never saved: the user is not enrolled.
    let banner = login.banner();
    assert!(
        banner.starts_with(e2e::ENROLL_INTRO) && e2e::enrollment_key(banner).is_some(),
        "the module did not offer enrollment: {login:#?}"
    );
    // Skipped because the answer repeated the password, not postponed by an empty answer, and
    // no backup codes.
    assert!(!banner.contains("you will be asked again"), "{login:#?}");
    assert!(
        !banner.contains("Two-factor authentication is on"),
        "{login:#?}"
    );
    // The user is told that the key on screen was not kept.
    assert!(banner.contains("the key above was not saved"), "{login:#?}");
}

#[test]
fn ssh_password_authentication_with_enroll_on_login_denies_an_unenrolled_user() {
    needs_root!();
    let twofold = Twofold::new("sshpwdeny", "enroll_on_login = true", "");
    let host = SshHost::start("sshpwdeny", twofold, PASSWORD);
    let user = TestUser::create("sshpd");

    let login = host.login_by_password(&user, &user.password);
    login.assert_denied();
    assert!(login.banner().is_empty(), "{login:#?}");
    assert_not_enrolled(&host.twofold, &user);

    // The password was right and the method works: with nullok added (the module reads its
    // config at every login), the same login gets in. So the denial was the module's.
    let config = &host.twofold.config;
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, format!("nullok = true\n{text}")).unwrap();
    let control = host.login_by_password(&user, &user.password);
    control.assert_success();
    assert_eq!(control.stdout(), ran_as(&user), "{control:#?}");
    assert_not_enrolled(&host.twofold, &user);
}

#[test]
fn ssh_password_authentication_of_an_enrolled_user_is_denied_but_not_counted() {
    needs_root!();
    let twofold = Twofold::new(
        "sshpwenr",
        "enroll_on_login = true\nnullok = true",
        "[throttle]\nmax_failures = 1\n",
    );
    let host = SshHost::start("sshpwenr", twofold, PASSWORD);
    let user = TestUser::create("sshpe");
    host.twofold.enroll(&user);
    let unlocked = |host: &SshHost| {
        let status = host.twofold.status(&user);
        status["locked_until"].is_null() && status["hosts_locked_until"] == serde_json::json!([])
    };
    assert!(unlocked(&host));

    // Even with nullok and enroll_on_login the module asks for the code, and sshd answers with
    // the password: denied (the password is right and pam_unix is requisite, so only the module
    // can deny), but not counted, so clients that fall back to password authentication after
    // keyboard-interactive cannot lock the user's second factor. One failure would lock here.
    let login = host.login_by_password(&user, &user.password);
    login.assert_denied();
    let status = host.twofold.status(&user);
    assert!(
        unlocked(&host),
        "the password was counted as a wrong code: {status}"
    );
    assert_eq!(
        (&status["totp"], &status["backup_codes_left"]),
        (&serde_json::json!(true), &serde_json::json!(BACKUP_CODES)),
        "the enrollment is untouched: {status}"
    );
}

// ---- Helpers.

/// `user` has no enrollment, and the records directory holds no file at all (no record, no
/// state file, no temp file).
#[track_caller]
fn assert_not_enrolled(twofold: &Twofold, user: &TestUser) {
    let status = twofold.status(user);
    assert_eq!(
        (&status["totp"], &status["backup_codes_left"]),
        (&serde_json::json!(false), &serde_json::json!(0)),
        "{status}"
    );
    let written: Vec<_> = std::fs::read_dir(&twofold.records)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != STORE_MARKER)
        .collect();
    assert!(written.is_empty(), "files written: {written:?}");
}

/// Answers an enrollment at login: the password, and for each confirming prompt, `code` of the
/// key shown so far.
fn answer_enrollment(
    user: &TestUser,
    requests: &[e2e::Request],
    mut code: impl FnMut(&str) -> String,
) -> Vec<String> {
    let shown: String = requests.iter().map(e2e::Request::text).collect();
    let last = requests.last().expect("a request");
    last.prompts
        .iter()
        .map(|(prompt, _)| {
            if prompt.ends_with(e2e::CONFIRM_PROMPT) {
                let key = e2e::enrollment_key(&shown).expect("the key is shown before the prompt");
                code(&key)
            } else if prompt.ends_with(e2e::STORED_PROMPT) {
                String::new()
            } else {
                user.password.clone()
            }
        })
        .collect()
}

/// A query parameter of an otpauth URI.
fn uri_param(uri: &str, name: &str) -> Option<String> {
    let (_, query) = uri.split_once('?')?;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// What `e2e::REMOTE_COMMAND` prints when it ran as `user`.
fn ran_as(user: &TestUser) -> String {
    format!("twofold-e2e-ran-as:{}\n", user.name)
}

const KBD_INT: &str = "keyboard-interactive";
const PASSWORD: &str = "password";
