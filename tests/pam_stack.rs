//! The module as sshd or sudo meets it: loaded by the real Linux-PAM from a service file, driven
//! through `pam_authenticate` with a scripted conversation. Each test builds its own throwaway
//! host (config, records directory, service files) in a temp dir.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use twofold_core::backup;
use twofold_core::enroll::Pending;
use twofold_core::state::Origin;
use twofold_core::store::Store;
use twofold_core::totp::Secret;

use common::*;
use twofold_tests::files::STORE_MARKER;

#[test]
fn pam_constants_match_the_linux_pam_header() {
    let header = fs::read_to_string("/usr/include/security/_pam_types.h")
        .expect("libpam0g-dev's _pam_types.h");
    for &(name, value) in PAM_CONSTANTS {
        let defined = header
            .lines()
            .filter_map(|line| line.strip_prefix("#define "))
            .find_map(|rest| {
                let mut words = rest.split_whitespace();
                (words.next() == Some(name)).then(|| words.next()).flatten()
            })
            .unwrap_or_else(|| panic!("{name} is not defined in the header"));
        let digits = defined.trim_end_matches('U');
        let parsed = match digits.strip_prefix("0x") {
            Some(hex) => i32::from_str_radix(hex, 16),
            None => digits.parse(),
        };
        assert_eq!(parsed, Ok(value), "{name} is {defined} in the header");
    }
}

#[test]
fn right_code_succeeds_without_any_message() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    let login = host.login("alice", &[&alice.code(0)]);
    login.assert_rc(PAM_SUCCESS).assert_only_prompt(CODE_PROMPT);
    assert_eq!(login.fail_delay, None, "a success must not be delayed");
}

#[test]
fn wrong_code_is_refused_after_a_fail_delay() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    let login = host.login("alice", &[&alice.wrong_code(2)]);
    login
        .assert_rc(PAM_AUTH_ERR)
        .assert_only_prompt(CODE_PROMPT);
    // The module asks for pam_unix's 2 s; libpam randomises it by up to half either way.
    let delay = login.fail_delay.expect("libpam should delay a failure");
    assert!((1_000_000..=3_000_000).contains(&delay), "delay {delay} µs");
}

#[test]
fn replayed_code_is_rejected() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    settle_step(30, 3);
    let code = alice.code(0);
    host.login("alice", &[&code]).assert_rc(PAM_SUCCESS);
    host.login("alice", &[&code])
        .assert_rc(PAM_AUTH_ERR)
        .assert_only_prompt(CODE_PROMPT);
}

#[test]
fn older_code_after_a_newer_one_is_rejected() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    settle_step(30, 3);
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS);
    host.login("alice", &[&alice.code(-1)])
        .assert_rc(PAM_AUTH_ERR);
}

#[test]
fn code_typed_with_spaces_or_dashes_is_accepted() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    let bob = host.enroll("bob");
    settle_step(30, 3);
    let code = alice.code(0);
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    host.login("alice", &[&spaced]).assert_rc(PAM_SUCCESS);
    let code = bob.code(0);
    let dashed = format!("{}-{}", &code[..3], &code[3..]);
    host.login("bob", &[&dashed]).assert_rc(PAM_SUCCESS);
}

#[test]
fn codes_one_step_either_side_are_accepted_with_window_one() {
    let host = Host::new("[totp]\nwindow = 1\n");
    for offset in [-1, 1] {
        let user = format!("user{}", offset + 1);
        let enrolled = host.enroll(&user);
        settle_step(30, 3);
        host.login(&user, &[&enrolled.code(offset)])
            .assert_rc(PAM_SUCCESS);
    }
}

#[test]
fn codes_two_steps_away_are_refused_with_window_one() {
    let host = Host::new("[totp]\nwindow = 1\n");
    for offset in [-2, 2] {
        let user = format!("user{}", offset + 2);
        let enrolled = host.enroll(&user);
        settle_step(30, 3);
        let code = enrolled.code(offset);
        let near: Vec<String> = (-1..=1).map(|o| enrolled.code(o)).collect();
        if near.contains(&code) {
            // One chance in a few hundred thousand: this step's code is also a nearby one.
            continue;
        }
        host.login(&user, &[&code]).assert_rc(PAM_AUTH_ERR);
    }
}

#[test]
fn window_zero_accepts_only_the_current_step() {
    let host = Host::new("[totp]\nwindow = 0\n");
    let alice = host.enroll("alice");
    settle_step(30, 3);
    let current = alice.code(0);
    for offset in [-1, 1] {
        let code = alice.code(offset);
        if code != current {
            host.login("alice", &[&code]).assert_rc(PAM_AUTH_ERR);
        }
    }
    host.login("alice", &[&current]).assert_rc(PAM_SUCCESS);
}

#[test]
fn backup_code_works_once_and_says_how_many_are_left() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    // Typed as the CLI shows it: `abcde-fghjk`.
    let shown = backup::display(&alice.codes[2]);
    let login = host.login("alice", &[&shown]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(
        login.messages,
        vec![
            Message::Prompt {
                echo: false,
                text: CODE_PROMPT.into()
            },
            Message::Info(format!("Backup code accepted; {} left", BACKUP_CODES - 1)),
        ]
    );
    host.login("alice", &[&alice.codes[2]])
        .assert_rc(PAM_AUTH_ERR)
        .assert_only_prompt(CODE_PROMPT);
    // Another code still works, and the count goes on down; upper case is the same code.
    let login = host.login("alice", &[&alice.codes[0].to_uppercase()]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(
        login.infos(),
        vec![format!("Backup code accepted; {} left", BACKUP_CODES - 2)]
    );
}

#[test]
fn silent_flag_hides_the_backup_code_notice() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    let login = login_with_flags(
        &host.confdir,
        "twofold",
        "alice",
        &[&alice.codes[0]],
        PAM_SILENT,
    );
    login.assert_rc(PAM_SUCCESS).assert_only_prompt(CODE_PROMPT);
}

#[test]
fn too_many_wrong_codes_lock_the_second_factor() {
    let host = Host::new("[throttle]\nmax_failures = 3\nlock_secs = 120\n");
    let alice = host.enroll("alice");
    for _ in 0..3 {
        host.login("alice", &[&alice.wrong_code(2)])
            .assert_rc(PAM_AUTH_ERR)
            .assert_only_prompt(CODE_PROMPT);
    }
    // Locked: no prompt at all, even for the right code, and the reason in minutes.
    let login = host.login("alice", &[&alice.code(0)]);
    login.assert_rc(PAM_MAXTRIES);
    assert_eq!(
        login.messages,
        vec![Message::Error(
            "Too many failed codes; try again in 2 min".into()
        )]
    );
    assert!(
        login.fail_delay.is_some(),
        "a locked attempt is a failure too"
    );
    // A backup code does not get around the lock either.
    host.login("alice", &[&alice.codes[0]])
        .assert_rc(PAM_MAXTRIES);
    assert!(host
        .state("alice")
        .locked_for(Origin::LOCAL, now())
        .is_some());
}

#[test]
fn a_stranger_guessing_from_one_host_locks_that_host_not_the_user() {
    let host = Host::new("[throttle]\nmax_failures = 3\nlock_secs = 120\n");
    let alice = host.enroll("alice");
    for _ in 0..3 {
        host.login_from("203.0.113.9", "alice", &[&alice.wrong_code(2)])
            .assert_rc(PAM_AUTH_ERR)
            .assert_only_prompt(CODE_PROMPT);
    }
    host.login_from("203.0.113.9", "alice", &[&alice.code(0)])
        .assert_rc(PAM_MAXTRIES);
    // Alice, from her own address, still gets in; the stranger's host stays locked.
    host.login_from("198.51.100.7", "alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS);
    host.login_from("203.0.113.9", "alice", &[&alice.codes[0]])
        .assert_rc(PAM_MAXTRIES);
    assert_eq!(host.state("alice").locked_until, 0);
    // Three such hosts lock the second factor for everyone: guesses stay bounded.
    for stranger in ["192.0.2.1", "192.0.2.2"] {
        for _ in 0..3 {
            host.login_from(stranger, "alice", &[&alice.wrong_code(2)])
                .assert_rc(PAM_AUTH_ERR);
        }
    }
    host.login("alice", &[&alice.codes[0]])
        .assert_rc(PAM_MAXTRIES);
    assert!(host.state("alice").locked_until > now());
}

#[test]
fn success_clears_earlier_failures() {
    let host = Host::new("[throttle]\nmax_failures = 3\n");
    let alice = host.enroll("alice");
    for _ in 0..2 {
        host.login("alice", &[&alice.wrong_code(2)])
            .assert_rc(PAM_AUTH_ERR);
    }
    assert_eq!(host.state("alice").failures.len(), 2);
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS);
    assert!(host.state("alice").failures.is_empty());
    // Two more failures do not reach the limit of three.
    for _ in 0..2 {
        host.login("alice", &[&alice.wrong_code(2)])
            .assert_rc(PAM_AUTH_ERR);
    }
    assert_eq!(host.state("alice").locked_until, 0);
}

#[test]
fn unenrolled_user_is_skipped_without_a_prompt_with_nullok() {
    let host = Host::new("");
    // libpam never lets PAM_IGNORE out of a stack, so the module's code is shown by a stack that
    // only PAM_IGNORE gets through: any other code ends it with that code.
    host.service_lines("ignored", &ignore_probe(&host, "nullok"));
    let login = host.login_via("ignored", "nobody-enrolled", &[]);
    login.assert_rc(PAM_SUCCESS);
    assert!(login.messages.is_empty(), "{login:#?}");
    // In an ordinary stack, the rest of the stack decides...
    let stack = format!(
        "auth required {} config={} nullok\nauth required pam_permit.so\n",
        module_path().display(),
        host.config.display()
    );
    host.service_lines("stack", &stack);
    host.login_via("stack", "nobody-enrolled", &[])
        .assert_rc(PAM_SUCCESS);
    // ...and a stack of the module alone decides nothing, which libpam turns into a refusal.
    host.service("alone", "nullok");
    host.login_via("alone", "nobody-enrolled", &[])
        .assert_rc(PAM_PERM_DENIED);
    // Enrolled users are not skipped.
    let alice = host.enroll("alice");
    host.login_via("ignored", "alice", &[&alice.wrong_code(2)])
        .assert_rc(PAM_AUTH_ERR);
    host.login_via("stack", "alice", &[&alice.wrong_code(2)])
        .assert_rc(PAM_AUTH_ERR);
}

#[test]
fn nullok_in_the_config_also_skips_unenrolled_users() {
    let host = Host::new("nullok = true\n");
    host.service_lines("ignored", &ignore_probe(&host, ""));
    let login = host.login_via("ignored", "nobody-enrolled", &[]);
    login.assert_rc(PAM_SUCCESS);
    assert!(login.messages.is_empty(), "{login:#?}");
}

/// A stack that succeeds only if the module returns PAM_IGNORE (25).
fn ignore_probe(host: &Host, args: &str) -> String {
    format!(
        "auth [ignore=ignore default=die] {} config={} {args}\nauth required pam_permit.so\n",
        module_path().display(),
        host.config.display()
    )
}

#[test]
fn unenrolled_user_without_nullok_is_prompted_then_refused() {
    let host = Host::new("");
    host.enroll("alice");
    // The same prompt as an enrolled user, so the prompt does not tell who is enrolled.
    host.login("mallory", &["123456"])
        .assert_rc(PAM_AUTH_ERR)
        .assert_only_prompt(CODE_PROMPT);
    assert!(!host.state_path("mallory").exists());
}

#[test]
fn unknown_module_option_is_a_service_error_without_a_prompt() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    for args in [
        "nulok",
        "config=",
        "debug=1",
        "forward_pass nullok window=3",
    ] {
        host.service("bad", args);
        let login = host.login_via("bad", "alice", &[&alice.code(0)]);
        login.assert_rc(PAM_SERVICE_ERR);
        assert!(login.messages.is_empty(), "args {args:?}: {login:#?}");
    }
}

#[test]
fn debug_option_changes_nothing_for_the_user() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    host.service("debugging", "debug");
    host.login_via("debugging", "alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS)
        .assert_only_prompt(CODE_PROMPT);
}

#[test]
fn client_that_hangs_up_gets_a_conversation_error() {
    let host = Host::new("");
    host.enroll("alice");
    let login = host.login("alice", &[]);
    login
        .assert_rc(PAM_CONV_ERR)
        .assert_only_prompt(CODE_PROMPT);
}

#[test]
fn forward_pass_hands_the_password_on() {
    let host = Host::new("");
    let captured = host.service_capturing_authtok("fp", "requisite", "forward_pass");
    let alice = host.enroll("alice");
    let answer = format!("hunter2{}", alice.code(0));
    let login = host.login_via("fp", "alice", &[&answer]);
    // One prompt only: pam_exec found PAM_AUTHTOK set and did not ask for a password.
    login
        .assert_rc(PAM_SUCCESS)
        .assert_only_prompt(PASSWORD_AND_CODE_PROMPT);
    assert_eq!(captured_authtok(&captured).as_deref(), Some("hunter2"));
}

#[test]
fn forward_pass_accepts_a_backup_code_after_the_password() {
    let host = Host::new("");
    let captured = host.service_capturing_authtok("fp", "requisite", "forward_pass");
    let alice = host.enroll("alice");
    let answer = format!("hunter2{}", alice.codes[1]);
    let login = host.login_via("fp", "alice", &[&answer]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(
        login.messages,
        vec![
            Message::Prompt {
                echo: false,
                text: PASSWORD_AND_CODE_PROMPT.into()
            },
            Message::Info(format!("Backup code accepted; {} left", BACKUP_CODES - 1)),
        ]
    );
    assert_eq!(captured_authtok(&captured).as_deref(), Some("hunter2"));
}

#[test]
fn forward_pass_keeps_a_password_that_ends_in_digits() {
    let host = Host::new("");
    let captured = host.service_capturing_authtok("fp", "requisite", "forward_pass");
    let alice = host.enroll("alice");
    let answer = format!("pa55word99{}", alice.code(0));
    host.login_via("fp", "alice", &[&answer])
        .assert_rc(PAM_SUCCESS);
    assert_eq!(captured_authtok(&captured).as_deref(), Some("pa55word99"));
}

#[test]
fn forward_pass_hands_nothing_on_when_the_code_is_wrong() {
    let host = Host::new("");
    // `required`: the stack goes on after the module fails, so pam_exec shows whether the module
    // set PAM_AUTHTOK (it asks for a password of its own when it is not set).
    let captured = host.service_capturing_authtok("fp", "required", "forward_pass");
    let alice = host.enroll("alice");
    let answer = format!("hunter2{}", alice.wrong_code(2));
    let login = host.login_via("fp", "alice", &[&answer, "typed-for-pam-exec"]);
    login.assert_rc(PAM_AUTH_ERR);
    assert_eq!(
        captured_authtok(&captured).as_deref(),
        Some("typed-for-pam-exec"),
        "the module must not forward a password with a wrong code: {login:#?}"
    );
    // A password with no code at all is a failure that counts towards the throttle.
    let login = host.login_via("fp", "alice", &["hunter2", "again-for-pam-exec"]);
    login.assert_rc(PAM_AUTH_ERR);
    assert_eq!(
        captured_authtok(&captured).as_deref(),
        Some("again-for-pam-exec")
    );
    assert_eq!(host.state("alice").failures.len(), 2);
}

#[test]
fn without_forward_pass_the_module_sets_no_password() {
    let host = Host::new("");
    let captured = host.service_capturing_authtok("plain", "required", "");
    let alice = host.enroll("alice");
    let login = host.login_via("plain", "alice", &[&alice.code(0), "typed-for-pam-exec"]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.prompts(), vec![CODE_PROMPT, "Password: "]);
    assert_eq!(
        captured_authtok(&captured).as_deref(),
        Some("typed-for-pam-exec")
    );
}

#[test]
fn malformed_records_are_unavailable() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    let good = fs::read(host.record_path("alice")).unwrap();
    let good_text = String::from_utf8(good.clone()).unwrap();
    let secret = alice.key.secret.to_base32().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage TOML", b"this is = = not toml [[".to_vec()),
        ("binary junk", vec![0xff, 0xfe, 0x00, 0x01]),
        (
            "bad base32",
            good_text.replace(&secret, "!!NOT*BASE32!!").into_bytes(),
        ),
        (
            "short secret",
            good_text.replace(&secret, "JBSWY3DP").into_bytes(),
        ),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("NUL bytes", [&good[..20], b"\0\0\0", &good[20..]].concat()),
        ("empty file", Vec::new()),
        (
            "unknown version",
            good_text.replace("version = 1", "version = 2").into_bytes(),
        ),
        (
            "unknown key",
            format!("{good_text}\ncolour = \"red\"\n").into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        write_file(&host.record_path("alice"), &bytes, 0o600);
        let login = host.login("alice", &[&alice.code(0)]);
        login.assert_rc(PAM_AUTHINFO_UNAVAIL);
        assert_eq!(
            login.messages,
            vec![Message::Error(UNAVAILABLE.into())],
            "{what}: no prompt, one error"
        );
    }
    // Put right, the record works again.
    write_file(&host.record_path("alice"), &good, 0o600);
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS);
}

#[test]
fn unsafe_records_are_unavailable() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    let record = host.record_path("alice");
    let state = host.state_path("alice");
    let unavailable = |what: &str| {
        let login = host.login("alice", &[&alice.code(0)]);
        assert_eq!(login.rc, PAM_AUTHINFO_UNAVAIL, "{what}: {login:#?}");
        assert!(login.prompts().is_empty(), "{what}: {login:#?}");
    };

    fs::set_permissions(&record, fs::Permissions::from_mode(0o644)).unwrap();
    unavailable("record mode 0644");
    fs::set_permissions(&record, fs::Permissions::from_mode(0o640)).unwrap();
    unavailable("record mode 0640");
    fs::set_permissions(&record, fs::Permissions::from_mode(0o600)).unwrap();

    let elsewhere = host.dir.path().join("elsewhere.toml");
    fs::rename(&record, &elsewhere).unwrap();
    symlink(&elsewhere, &record).unwrap();
    unavailable("record is a symlink");
    fs::remove_file(&record).unwrap();
    fs::rename(&elsewhere, &record).unwrap();

    fs::set_permissions(&host.records, fs::Permissions::from_mode(0o770)).unwrap();
    unavailable("records dir group-writable");
    fs::set_permissions(&host.records, fs::Permissions::from_mode(0o702)).unwrap();
    unavailable("records dir world-writable");
    fs::set_permissions(&host.records, fs::Permissions::from_mode(0o700)).unwrap();

    let state_elsewhere = host.dir.path().join("elsewhere.state");
    fs::rename(&state, &state_elsewhere).unwrap();
    symlink(&state_elsewhere, &state).unwrap();
    unavailable("state is a symlink");
    fs::remove_file(&state).unwrap();
    fs::rename(&state_elsewhere, &state).unwrap();

    fs::set_permissions(&state, fs::Permissions::from_mode(0o606)).unwrap();
    unavailable("state mode 0606");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o600)).unwrap();

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&record, Some(65534), None).unwrap();
        unavailable("record owned by another user");
        std::os::unix::fs::chown(&record, Some(0), None).unwrap();
    } else {
        eprintln!("not root: skipping the record-owned-by-another-user case");
    }

    // Every defect put right, the same files work.
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS);
}

#[test]
fn malformed_config_is_unavailable() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    let records = format!("records = \"{}/{{user}}.toml\"\n", host.records.display());
    let cases = [
        ("unknown key", format!("{records}colour = \"red\"\n")),
        (
            "unknown key in a table",
            format!("{records}[totp]\nwindw = 1\n"),
        ),
        (
            "window out of range",
            format!("{records}[totp]\nwindow = 11\n"),
        ),
        (
            "digits out of range",
            format!("{records}[totp]\ndigits = 9\n"),
        ),
        (
            "max_failures zero",
            format!("{records}[throttle]\nmax_failures = 0\n"),
        ),
        ("wrong type", format!("{records}nullok = \"yes\"\n")),
        (
            "relative records",
            "records = \"records/{user}.toml\"\n".to_string(),
        ),
        ("not TOML", "records = \n".to_string()),
    ];
    for (what, text) in &cases {
        host.write_config(text);
        let login = host.login("alice", &[&alice.code(0)]);
        assert_eq!(login.rc, PAM_AUTHINFO_UNAVAIL, "{what}: {login:#?}");
        assert_eq!(
            login.messages,
            vec![Message::Error(UNAVAILABLE.into())],
            "{what}"
        );
    }

    host.write_config(&records);
    fs::set_permissions(&host.config, fs::Permissions::from_mode(0o620)).unwrap();
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_AUTHINFO_UNAVAIL);
    fs::set_permissions(&host.config, fs::Permissions::from_mode(0o600)).unwrap();

    let real = host.dir.path().join("real-config.toml");
    fs::rename(&host.config, &real).unwrap();
    symlink(&real, &host.config).unwrap();
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_AUTHINFO_UNAVAIL);
    fs::remove_file(&host.config).unwrap();
    fs::rename(&real, &host.config).unwrap();

    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS);
}

#[test]
fn enrollment_through_the_library_spends_the_confirming_code() {
    let host = Host::new("[backup_codes]\ncount = 2\n");
    let config = host.config();
    let store = host.store();
    let alice = user_name("alice");
    let step = settle_step(30, 3);
    let pending = Pending::new(&config, Some(Secret::generate().unwrap())).unwrap();
    let key = pending.key.clone();
    let codes: Vec<String> = pending.codes.plain.iter().map(|c| c.to_string()).collect();
    assert_eq!(codes.len(), 2);
    let confirming = code_at(&key, step - 1);
    pending
        .confirm(&store, &alice, &config, &confirming, now(), false)
        .unwrap();
    // The code that confirmed the enrollment cannot log in; the next one can.
    host.login("alice", &[&confirming]).assert_rc(PAM_AUTH_ERR);
    host.login("alice", &[&code_at(&key, step)])
        .assert_rc(PAM_SUCCESS);
    // The enrollment's own backup codes (default cost) work through the module.
    let login = host.login("alice", &[&codes[0]]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.infos(), vec!["Backup code accepted; 1 left"]);
}

#[test]
fn home_template_records_work_for_the_current_user() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let account = twofold_host::passwd::by_uid(euid)
        .unwrap()
        .expect("the current user has a passwd entry");
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    // A private directory of our own inside the home, so no real file of the user is touched.
    let records = match TempDir::try_new_in(&account.home, "home") {
        Ok(dir) => dir,
        Err(e) if !in_ci => {
            eprintln!("skipped: cannot write in {}'s home: {e}", account.name);
            return;
        }
        Err(e) => panic!("cannot write in {}'s home, and CI=true: {e}", account.name),
    };
    let dir_name = records
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let host = Host::new("");
    let index = host.home_records(&format!("~/{dir_name}/twofold.toml"), "");
    let user = account.name.as_str();

    // Not enrolled yet: prompted and refused.
    host.login(user, &["123456"]).assert_rc(PAM_AUTH_ERR);

    let enrolled = enroll_in(&host.store(), user);
    // The enrollment listed the user in the home index (this test owns its index, as root
    // owns the real one).
    assert!(index.join(user).is_file(), "listed in {}", index.display());
    let record = records.path().join("twofold.toml");
    assert!(
        record.is_file(),
        "the record is in the home: {}",
        record.display()
    );
    // A user who enrolled themselves (the CLI cannot write root's index) is listed at login.
    fs::remove_file(index.join(user)).unwrap();
    settle_step(30, 3);
    host.login(user, &[&enrolled.code(0)])
        .assert_rc(PAM_SUCCESS)
        .assert_only_prompt(CODE_PROMPT);
    assert!(index.join(user).is_file(), "listed again at login");
    host.login(user, &[&enrolled.code(0)])
        .assert_rc(PAM_AUTH_ERR);
    assert!(records.path().join("twofold.state").is_file());

    // The home rules are the same: a record open to others is refused.
    fs::set_permissions(&record, fs::Permissions::from_mode(0o644)).unwrap();
    host.login(user, &[&enrolled.code(1)])
        .assert_rc(PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn unknown_user_with_home_records_looks_like_an_unenrolled_account() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let account = twofold_host::passwd::by_uid(euid).unwrap().unwrap();
    let host = Host::new("");
    // A record nobody has, in the home itself, which exists for the current user.
    host.home_records("~/.twofold-test-never-created.toml", "");
    let real = host.login(account.name.as_str(), &["123456"]);
    let unknown = host.login("twofold-no-such-user", &["123456"]);
    assert_eq!(
        (real.rc, &real.messages),
        (unknown.rc, &unknown.messages),
        "an account without an enrollment and a name that is no account must look alike"
    );
}

#[test]
fn a_name_that_cannot_be_used_in_a_path_is_refused_even_with_nullok() {
    let host = Host::new("");
    host.service_lines("ignored", &ignore_probe(&host, "nullok"));
    for name in ["../escape", "a/b", ".hidden", "-rf"] {
        host.login_via("ignored", name, &["123456"])
            .assert_rc(PAM_AUTH_ERR)
            .assert_only_prompt(CODE_PROMPT);
    }
}

#[test]
fn with_nullok_a_name_that_is_no_account_is_skipped_like_an_unenrolled_one() {
    // The rule: "unenrolled or unknown user, nullok: PAM_IGNORE". Skipping a stranger
    // grants nothing (the password module before twofold has refused them already), and treating
    // them differently from an unenrolled account would tell who has an account. An error from
    // the passwd lookup itself (NSS down) is not "unknown": it fails closed.
    let host = Host::new("");
    host.home_records("~/.twofold-test-never-created.toml", "");
    host.service_lines("ignored", &ignore_probe(&host, "nullok"));
    let login = host.login_via("ignored", "twofold-no-such-user", &[]);
    login.assert_rc(PAM_SUCCESS);
    assert!(login.messages.is_empty(), "{login:#?}");
}

// ---- Enrollment at login (`enroll_on_login`), as an application's conversation sees it.

const ENROLL_INTRO: &str = "Two-factor authentication is not set up for this account yet. \
                            Scan this QR code with an authenticator app:";
const CONFIRM_PROMPT: &str = "Code from the app to confirm: ";
const CONFIRM_PROMPT_SKIPPABLE: &str = "Code from the app to confirm (Enter to skip): ";

#[test]
fn enroll_on_login_shows_qr_and_key_confirms_one_code_then_shows_backup_codes() {
    let host = Host::new("enroll_on_login = true\n[backup_codes]\ncount = 4\n");
    let user = me();
    let login = host.login(&user, &[CODE_FOR_SHOWN_KEY, ""]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.fail_delay, None);
    let [Message::Info(intro), Message::Info(qr), Message::Info(key_line), Message::Prompt {
        echo: false,
        text: prompt,
    }, Message::Info(done), Message::Prompt {
        echo: true,
        text: stored,
    }] = &login.messages[..]
    else {
        panic!("unexpected transcript: {login:#?}");
    };
    assert_eq!(intro, ENROLL_INTRO);
    assert_eq!(prompt, CONFIRM_PROMPT);
    assert_eq!(stored, "Press Enter once you have stored them: ");
    assert!(key_line.starts_with(SHOWN_KEY_LINE));
    // Half blocks, at most 80 columns, no trailing newline (the application adds its own).
    assert!(qr.contains('█') && qr.lines().count() > 10, "{qr}");
    assert!(qr.lines().all(|l| l.chars().count() <= 80) && !qr.ends_with('\n'));
    assert!(
        done.starts_with("Two-factor authentication is on."),
        "{done}"
    );
    assert!(done.contains("they will not be shown again"), "{done}");
    let codes: Vec<&str> = done
        .split_whitespace()
        .filter(|w| w.len() == 11 && w.as_bytes()[5] == b'-')
        .collect();
    assert_eq!(codes.len(), 4, "{done}");

    // The record is saved, private, with the key that was shown; the confirming step is spent.
    let key = shown_key(&login.messages).unwrap();
    let (record, state) = host.store().load(&user_name(&user)).unwrap().unwrap();
    assert!(record.totp.as_ref().unwrap().secret == key.secret);
    assert!(key.step_of(now()) - state.last_step <= 1);
    let mode = fs::metadata(host.record_path(&user))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // From now on the user is asked for a code like anyone enrolled.
    host.login(&user, &[&code_at(&key, state.last_step)])
        .assert_rc(PAM_AUTH_ERR)
        .assert_only_prompt(CODE_PROMPT);
    host.login(&user, &[&code_at(&key, state.last_step + 1)])
        .assert_rc(PAM_SUCCESS)
        .assert_only_prompt(CODE_PROMPT);
    let login = host.login(&user, &[codes[2]]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.infos(), vec!["Backup code accepted; 3 left"]);
}

#[test]
fn three_wrong_confirming_codes_fail_the_login_and_write_nothing() {
    let host = Host::new("enroll_on_login = true\n");
    let user = me();
    let login = host.login(&user, &["000000", "", "12345678"]);
    login.assert_rc(PAM_AUTH_ERR);
    assert_eq!(login.prompts(), vec![CONFIRM_PROMPT; 3]);
    assert_eq!(
        login.errors(),
        vec![
            "Wrong code; 2 tries left. Check that the phone's clock is right.",
            "Wrong code; 1 try left. Check that the phone's clock is right.",
            "Wrong code; two-factor authentication was not set up.",
        ]
    );
    assert!(login.fail_delay.is_some());
    assert!(!host.record_path(&user).exists());
    assert!(!host.state_path(&user).exists());
    // A wrong code, then the right one, is fine; hanging up while the backup codes are on screen
    // does not undo the saved enrollment.
    let login = host.login(&user, &["000000", CODE_FOR_SHOWN_KEY]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.prompts().len(), 3, "{login:#?}");
    assert!(host.record_path(&user).exists());
}

#[test]
fn hanging_up_while_enrolling_writes_nothing() {
    let host = Host::new("enroll_on_login = true\n");
    let user = me();
    host.login(&user, &[]).assert_rc(PAM_CONV_ERR);
    assert!(!host.record_path(&user).exists());
}

#[test]
fn enroll_on_login_as_a_module_argument() {
    let host = Host::new("");
    host.service("enrolling", "enroll_on_login");
    let user = me();
    // Services without the argument keep refusing the unenrolled user.
    host.login(&user, &["123456"])
        .assert_rc(PAM_AUTH_ERR)
        .assert_only_prompt(CODE_PROMPT);
    host.login_via("enrolling", &user, &[CODE_FOR_SHOWN_KEY])
        .assert_rc(PAM_SUCCESS);
    assert!(host.record_path(&user).exists());
}

#[test]
fn with_nullok_enrollment_can_be_postponed() {
    let host = Host::new("enroll_on_login = true\nnullok = true\n");
    host.service_lines("ignored", &ignore_probe(&host, ""));
    let user = me();
    let login = host.login_via("ignored", &user, &[""]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.prompts(), vec![CONFIRM_PROMPT_SKIPPABLE]);
    assert!(!host.record_path(&user).exists());
    // Postponing is PAM_IGNORE, never a success of its own: alone, the module decides nothing.
    host.service("alone", "");
    host.login_via("alone", &user, &[""])
        .assert_rc(PAM_PERM_DENIED);
    // nullok does not make wrong codes pass.
    host.login_via("ignored", &user, &["000000", "000001", "000002"])
        .assert_rc(PAM_AUTH_ERR);
}

#[test]
fn enrollment_is_not_offered_silently_with_forward_pass_or_to_strangers() {
    let host = Host::new("enroll_on_login = true\n");
    let user = me();
    // PAM_SILENT: a QR code cannot be shown, so the user is refused as unenrolled.
    login_with_flags(&host.confdir, "twofold", &user, &["123456"], PAM_SILENT)
        .assert_rc(PAM_AUTH_ERR)
        .assert_only_prompt(CODE_PROMPT);
    // forward_pass: the password has not been checked yet when the module runs.
    host.service("forwarding", "forward_pass");
    host.login_via("forwarding", &user, &["pw123456"])
        .assert_rc(PAM_AUTH_ERR)
        .assert_only_prompt(PASSWORD_AND_CODE_PROMPT);
    // A name that is no account gets no records created for it.
    host.login("no-such-account-x", &["123456"])
        .assert_rc(PAM_AUTH_ERR)
        .assert_only_prompt(CODE_PROMPT);
    for name in [user.as_str(), "no-such-account-x"] {
        assert!(!host.record_path(name).exists(), "{name}");
    }
}

#[test]
fn an_application_that_answers_every_prompt_with_the_password_cannot_enroll() {
    // Like sshd's password authentication: pam_unix reads the password (and sets PAM_AUTHTOK),
    // then every hidden prompt gets the same answer.
    let host = Host::new("enroll_on_login = true\n");
    let user = me();
    let module = format!(
        "{} config={}",
        module_path().display(),
        host.config.display()
    );
    host.service_lines(
        "password-conv",
        &format!("auth optional pam_unix.so\nauth required {module}\n"),
    );
    let login = host.login_via(
        "password-conv",
        &user,
        &["not-the-password", "not-the-password"],
    );
    login.assert_rc(PAM_AUTH_ERR);
    assert_eq!(
        login.prompts().len(),
        2,
        "one confirming prompt, no retries: {login:#?}"
    );
    assert!(login.errors().is_empty(), "{login:#?}");
    let told = login.infos().last().copied().unwrap_or_default();
    assert!(told.contains("the key above was not saved"), "{login:#?}");
    assert!(!host.record_path(&user).exists());
    // With nullok it is as if enrollment at login were off: the module is skipped.
    host.service_lines(
        "password-conv-nullok",
        &format!(
            "auth optional pam_unix.so\nauth [ignore=ignore default=die] {module} nullok\n\
             auth required pam_permit.so\n"
        ),
    );
    host.login_via("password-conv-nullok", &user, &["pw", "pw"])
        .assert_rc(PAM_SUCCESS);
    assert!(!host.record_path(&user).exists());
}

#[test]
fn enroll_on_login_with_home_records_is_refused_as_a_config_error() {
    let host = Host::new("");
    host.write_config("records = \"~/.twofold-test.toml\"\nenroll_on_login = true\n");
    let login = host.login(&me(), &["123456"]);
    login.assert_rc(PAM_AUTHINFO_UNAVAIL);
    assert!(login.prompts().is_empty(), "{login:#?}");
    // The module argument is refused the same way.
    host.write_config("records = \"~/.twofold-test.toml\"\n");
    host.service("enrolling", "enroll_on_login");
    host.login_via("enrolling", &me(), &["123456"])
        .assert_rc(PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn the_password_given_again_as_the_code_is_refused_but_not_counted() {
    // sshd's password authentication answers the code prompt with the password, also for
    // enrolled users (clients fall back to it after keyboard-interactive): that must not lock
    // the user's second factor.
    let host = Host::new("[throttle]\nmax_failures = 1\n");
    let user = me();
    let enrolled = host.enroll(&user);
    let module = format!(
        "{} config={}",
        module_path().display(),
        host.config.display()
    );
    host.service_lines(
        "password-conv",
        &format!("auth optional pam_unix.so\nauth required {module}\n"),
    );
    host.login_via("password-conv", &user, &["pw", "pw"])
        .assert_rc(PAM_AUTH_ERR);
    assert!(host.state(&user).failures.is_empty());
    assert!(host.state(&user).locked_for(Origin::LOCAL, now()).is_none());
    // A different answer is a code like any other, and counts.
    host.login_via("password-conv", &user, &["pw", &enrolled.wrong_code(2)])
        .assert_rc(PAM_AUTH_ERR);
    assert!(host.state(&user).locked_for(Origin::LOCAL, now()).is_some());
}

// ---- An unmounted store must not read as "not enrolled": a missing record counts as such only
// ---- in a store the marker (central) or the home index confirms.

#[test]
fn with_nullok_an_unconfirmed_central_store_refuses_instead_of_skipping() {
    let host = Host::new("");
    host.service_lines("ignored", &ignore_probe(&host, "nullok"));
    host.login_via("ignored", "nobody-enrolled", &[])
        .assert_rc(PAM_SUCCESS);
    // The records filesystem did not mount: an empty directory, without the marker.
    fs::remove_file(host.records.join(STORE_MARKER)).unwrap();
    for name in ["nobody-enrolled", "twofold-no-such-user"] {
        let login = host.login_via("ignored", name, &[]);
        login.assert_rc(PAM_AUTHINFO_UNAVAIL);
        assert!(login.prompts().is_empty(), "{login:#?}");
    }
    // An enrollment writes the marker with the first record; skipping works again.
    host.enroll("alice");
    assert!(host.records.join(STORE_MARKER).is_file());
    host.login_via("ignored", "nobody-enrolled", &[])
        .assert_rc(PAM_SUCCESS);
}

#[test]
fn enrollment_at_login_into_an_unconfirmed_store_is_refused_and_writes_nothing() {
    let host = Host::new("enroll_on_login = true\n");
    fs::remove_file(host.records.join(STORE_MARKER)).unwrap();
    let user = me();
    let login = host.login(&user, &[CODE_FOR_SHOWN_KEY]);
    login.assert_rc(PAM_AUTHINFO_UNAVAIL);
    assert!(login.prompts().is_empty(), "no key is offered: {login:#?}");
    assert_eq!(fs::read_dir(&host.records).unwrap().count(), 0);
}

#[test]
fn with_nullok_a_listed_home_user_without_a_record_is_refused() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let account = twofold_host::passwd::by_uid(euid).unwrap().unwrap();
    let user = account.name.as_str();
    let host = Host::new("");
    let index = host.home_records("~/.twofold-test-never-created.toml", "");
    host.service_lines("ignored", &ignore_probe(&host, "nullok"));
    host.login_via("ignored", user, &[]).assert_rc(PAM_SUCCESS);
    // Listed as enrolled (at an enrollment or a login), and no record: the home is not mounted.
    write_file(&index.join(user), b"", 0o600);
    let login = host.login_via("ignored", user, &[]);
    login.assert_rc(PAM_AUTHINFO_UNAVAIL);
    assert!(login.prompts().is_empty(), "{login:#?}");
    // Without the index's marker nothing is confirmed, for accounts and strangers alike.
    fs::remove_file(index.join(user)).unwrap();
    fs::remove_file(index.join(STORE_MARKER)).unwrap();
    for name in [user, "twofold-no-such-user"] {
        host.login_via("ignored", name, &[])
            .assert_rc(PAM_AUTHINFO_UNAVAIL);
    }
}
