//! The `twofold` CLI as an administrator and a user meet it: enrollment, status, backup codes,
//! unlock and disable, google-authenticator imports, `check`, usage errors and the terminal QR
//! code.
//!
//! Runs as any user: every test gets its own config and records directory under the temp dir and
//! acts on the invoking user. Codes come from `oathtool` where it is installed (an independent
//! oracle) and from the library otherwise; the printed QR code is decoded with `zbarimg`.

mod common;
mod qr;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use twofold_core::backup::{BackupCodes, Candidate};
use twofold_core::config::{Config, RecordsTemplate};
use twofold_core::record::{Record, UserThrottle};
use twofold_core::state::{Failure, Origin, State};
use twofold_core::store::Store;
use twofold_core::totp::{Algorithm, Digits, Secret, TotpKey};
use twofold_core::user::UserName;
use twofold_host::FileStore;
use twofold_tests::codes::{self, unix_now as now};
use twofold_tests::files::STORE_MARKER;

use common::me;

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const OTHER_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const ISSUER: &str = "twofold-test";
/// Backup codes per enrollment in these tests; few, as each costs an argon2 hash to check.
const CODES: usize = 4;

// ---- Enrollment.

#[test]
fn enroll_with_secret_and_code_saves_the_key_and_shows_codes_once() {
    let sandbox = Sandbox::new("");
    let codes_file = sandbox.dir.join("codes.txt");
    let run = sandbox.twofold(&[
        "enroll",
        "--secret",
        SECRET,
        "--code",
        &codes::now(SECRET),
        "--qr",
        "none",
        "--backup-codes-file",
        codes_file.to_str().unwrap(),
    ]);
    run.assert_success();
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
    assert!(run
        .stdout
        .contains(&format!("Two-factor authentication is on for {}", me())));

    let codes = printed_codes(&run.stdout);
    assert_eq!(codes.len(), CODES, "stdout: {}", run.stdout);
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), CODES, "codes repeat: {codes:?}");

    // The codes file is private and holds exactly the codes shown.
    let meta = fs::symlink_metadata(&codes_file).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let written: Vec<String> = fs::read_to_string(&codes_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(written, codes);

    // The record holds the given key and the hashes of exactly the codes shown.
    let record = sandbox.record();
    let key = record.totp.as_ref().expect("a TOTP key");
    assert_eq!(key.secret.to_base32().as_str(), SECRET);
    assert_eq!(
        (key.algorithm, key.digits, key.period),
        (Algorithm::Sha1, Digits::SIX, 30)
    );
    assert_eq!(record.backup_codes.len(), CODES);
    for (index, code) in codes.iter().enumerate() {
        assert_eq!(find_code(&record.backup_codes, code), Some(index), "{code}");
    }
    for file in [sandbox.record_path(), sandbox.state_path()] {
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }

    assert_eq!(
        sandbox.status_json(),
        format!(
            r#"{{"user":"{}","totp":true,"backup_codes_left":{CODES},"locked_until":null,"hosts_locked_until":[],"keys":[]}}"#,
            me()
        )
    );
}

#[test]
fn printed_uri_names_issuer_algorithm_digits_and_period() {
    let sandbox = Sandbox::new("[totp]\nalgorithm = \"SHA256\"\ndigits = 8\nperiod = 60\n");
    let key = TotpKey {
        secret: Secret::from_base32(SECRET).unwrap(),
        algorithm: Algorithm::Sha256,
        digits: Digits::new(8).unwrap(),
        period: 60,
    };
    let code = key.code_at_step(key.step_of(now()));
    let run = sandbox.twofold(&[
        "enroll", "--secret", SECRET, "--code", &code, "--qr", "none",
    ]);
    run.assert_success();
    let uri = printed_uri(&run.stdout);
    let (path, query) = uri
        .strip_prefix("otpauth://totp/")
        .and_then(|rest| rest.split_once('?'))
        .unwrap_or_else(|| panic!("not an otpauth TOTP URI: {uri}"));
    assert_eq!(path, format!("{ISSUER}:{}", me()));
    let mut params: Vec<(&str, &str)> =
        query.split('&').filter_map(|p| p.split_once('=')).collect();
    params.sort();
    assert_eq!(
        params,
        [
            ("algorithm", "SHA256"),
            ("digits", "8"),
            ("issuer", ISSUER),
            ("period", "60"),
            ("secret", SECRET),
        ]
    );
    // The key typed by hand is the same secret, grouped for reading.
    assert!(run
        .stdout
        .contains("Or type this key into the app: JBSW Y3DP EHPK 3PXP"));
    let t = now();
    if let Some(oath) = codes::oathtool(&key, &format!("@{t}"), 0) {
        assert_eq!(
            oath,
            [key.code_at_step(key.step_of(t)).to_string()],
            "library disagrees with oathtool"
        );
    }
}

#[test]
fn code_typed_on_stdin_confirms_a_random_key_read_from_the_uri() {
    let sandbox = Sandbox::new("");
    let mut child = sandbox
        .command(&["enroll", "--qr", "none"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let uri = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no URI before EOF: {seen}"
        );
        seen.push_str(&line);
        if line.starts_with("otpauth://") {
            break line.trim_end().to_string();
        }
    };
    let secret = uri_param(&uri, "secret").expect("secret in the URI");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", codes::now(&secret)).unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {seen}{rest} stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(printed_codes(&rest).len(), CODES);
    let record = sandbox.record();
    assert_eq!(record.totp.unwrap().secret.to_base32().as_str(), secret);
}

#[test]
fn wrong_code_exits_1_with_one_line_and_saves_no_enrollment() {
    let sandbox = Sandbox::new("");
    let codes_file = sandbox.dir.join("codes.txt");
    let run = sandbox.twofold(&[
        "enroll",
        "--secret",
        SECRET,
        "--code",
        &codes::wrong(SECRET),
        "--qr",
        "none",
        "--backup-codes-file",
        codes_file.to_str().unwrap(),
    ]);
    run.assert_failure_line("not the current code");
    assert!(
        !sandbox.record_path().exists(),
        "a refused enrollment wrote a record"
    );
    assert!(
        !codes_file.exists(),
        "a refused enrollment left the backup codes file"
    );
    assert!(
        !run.stdout.contains("Backup codes"),
        "codes shown for a refused enrollment"
    );
    assert_eq!(sandbox.status_json(), not_enrolled_json());
}

#[test]
fn refused_commands_write_no_file_at_all() {
    let sandbox = Sandbox::new("");
    let wrong = codes::wrong(SECRET);
    let refused: [(&[&str], &str); 4] = [
        (
            &[
                "enroll", "--secret", SECRET, "--code", &wrong, "--qr", "none",
            ],
            "not the current code",
        ),
        (&["unlock", "--user", &me()], "not enrolled"),
        (&["disable", "--user", &me()], "not enrolled"),
        (&["codes", "regenerate"], "not enrolled"),
    ];
    for (args, needle) in refused {
        sandbox.twofold(args).assert_failure_line(needle);
        assert_eq!(
            sandbox.record_files(),
            Vec::<String>::new(),
            "after {args:?}"
        );
    }
}

#[test]
fn malformed_secret_is_refused_with_one_line() {
    let sandbox = Sandbox::new("");
    let run = sandbox.twofold(&["enroll", "--secret", "not base32!", "--code", "123456"]);
    run.assert_failure_line("--secret");
    assert!(!sandbox.record_path().exists());
}

#[test]
fn re_enrolling_needs_force() {
    let sandbox = Sandbox::new("");
    sandbox.enroll(SECRET);
    // The replacement's own code: the next step's, as the current step was spent by the first
    // enrollment and a step is never accepted twice.
    let next = codes::at(OTHER_SECRET, now() + 30);
    let run = sandbox.twofold(&[
        "enroll",
        "--secret",
        OTHER_SECRET,
        "--code",
        &next,
        "--qr",
        "none",
    ]);
    run.assert_failure_line("--force");
    assert_eq!(
        sandbox.record().totp.unwrap().secret.to_base32().as_str(),
        SECRET
    );

    let run = sandbox.twofold(&[
        "enroll",
        "--force",
        "--secret",
        OTHER_SECRET,
        "--code",
        &next,
        "--qr",
        "none",
    ]);
    run.assert_success();
    assert_eq!(
        sandbox.record().totp.unwrap().secret.to_base32().as_str(),
        OTHER_SECRET
    );
}

#[test]
fn backup_codes_file_that_exists_is_not_overwritten() {
    let sandbox = Sandbox::new("");
    let codes_file = sandbox.dir.join("codes.txt");
    fs::write(&codes_file, "precious\n").unwrap();
    let run = sandbox.twofold(&[
        "enroll",
        "--secret",
        SECRET,
        "--code",
        &codes::now(SECRET),
        "--backup-codes-file",
        codes_file.to_str().unwrap(),
    ]);
    run.assert_failure_line("codes.txt");
    assert_eq!(fs::read_to_string(&codes_file).unwrap(), "precious\n");
    assert!(!sandbox.record_path().exists());
}

// ---- Status, backup codes, unlock, disable.

#[test]
fn status_of_an_unenrolled_user_says_so() {
    let sandbox = Sandbox::new("");
    assert_eq!(sandbox.status_json(), not_enrolled_json());
    let run = sandbox.twofold(&["status"]);
    run.assert_success();
    assert!(run.stdout.contains("enrolled: no"), "{}", run.stdout);
}

#[test]
fn status_all_lists_every_enrolled_user_of_a_files_host() {
    let sandbox = Sandbox::new("");
    sandbox.enroll(SECRET);
    // A second enrollment, as another user's files (a name without an account will do).
    fs::copy(sandbox.record_path(), sandbox.rec.join("rollout-bob.toml")).unwrap();
    fs::copy(sandbox.state_path(), sandbox.rec.join("rollout-bob.state")).unwrap();
    let run = sandbox.twofold(&["status", "--all", "--json"]);
    run.assert_success();
    let listed: serde_json::Value = serde_json::from_str(run.stdout.trim_end()).unwrap();
    let listed = listed.as_array().expect("an array");
    let mut users: Vec<&str> = listed.iter().map(|u| u["user"].as_str().unwrap()).collect();
    users.sort();
    let mut expected = vec![me(), "rollout-bob".to_string()];
    expected.sort();
    assert_eq!(users, expected);
    for user in listed {
        // The object `status --json` prints.
        assert_eq!(user["totp"], true, "{user}");
        assert_eq!(user["backup_codes_left"], CODES, "{user}");
        assert_eq!(user["locked_until"], serde_json::Value::Null, "{user}");
    }
    let mine = listed.iter().find(|u| u["user"] == me().as_str()).unwrap();
    let single: serde_json::Value = serde_json::from_str(&sandbox.status_json()).unwrap();
    assert_eq!(*mine, single);
    let run = sandbox.twofold(&["status", "--all"]);
    run.assert_success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    for line in &lines {
        assert!(
            line.ends_with(&format!("totp  codes {CODES}/{CODES}  keys 0  unlocked")),
            "{}",
            run.stdout
        );
    }
    // Columns line up: the second column starts at one place on every line.
    let column = |line: &str| line.find("totp").unwrap();
    assert_eq!(column(lines[0]), column(lines[1]), "{}", run.stdout);
    // One user or all, not both.
    let run = sandbox.twofold(&["status", "--all", "--user", "root"]);
    assert_eq!(run.code, Some(2), "{run:?}");
}

#[test]
fn regenerated_codes_replace_the_old_ones() {
    let sandbox = Sandbox::new("");
    let old = sandbox.enroll(SECRET);
    // Spend one old code, so the count shows the new set starts whole.
    let record = sandbox.record();
    let binding = record.backup_codes.binding();
    sandbox
        .store()
        .update(&sandbox.user(), |_, state: &mut State| {
            state.spend_code(binding, 0)
        })
        .unwrap()
        .unwrap();
    assert!(sandbox
        .status_json()
        .contains(&format!("\"backup_codes_left\":{}", CODES - 1)));

    let codes_file = sandbox.dir.join("new-codes.txt");
    let run = sandbox.twofold(&[
        "codes",
        "regenerate",
        "--backup-codes-file",
        codes_file.to_str().unwrap(),
    ]);
    run.assert_success();
    let new = printed_codes(&run.stdout);
    assert_eq!(new.len(), CODES, "{}", run.stdout);
    assert!(
        new.iter().all(|code| !old.contains(code)),
        "old {old:?}, new {new:?}"
    );
    assert_eq!(
        fs::metadata(&codes_file).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert_eq!(
        fs::read_to_string(&codes_file)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        new
    );

    let record = sandbox.record();
    assert_eq!(
        record.totp.unwrap().secret.to_base32().as_str(),
        SECRET,
        "the key must stay"
    );
    for code in &old {
        assert_eq!(
            find_code(&record.backup_codes, code),
            None,
            "old code {code} still works"
        );
    }
    for (index, code) in new.iter().enumerate() {
        assert_eq!(
            find_code(&record.backup_codes, code),
            Some(index),
            "new code {code}"
        );
    }
    assert!(sandbox
        .status_json()
        .contains(&format!("\"backup_codes_left\":{CODES}")));
}

#[test]
fn regenerating_codes_without_an_enrollment_fails() {
    let sandbox = Sandbox::new("");
    let run = sandbox.twofold(&["codes", "regenerate"]);
    run.assert_failure_line("not enrolled");
    assert!(!sandbox.record_path().exists());
}

#[test]
fn failed_regeneration_leaves_no_codes_file() {
    let sandbox = Sandbox::new("");
    let codes_file = sandbox.dir.join("codes.txt");
    let run = sandbox.twofold(&[
        "codes",
        "regenerate",
        "--backup-codes-file",
        codes_file.to_str().unwrap(),
    ]);
    run.assert_failure_line("not enrolled");
    assert!(!codes_file.exists(), "an empty codes file was left behind");
}

#[test]
fn unlock_clears_the_lock_shown_by_status() {
    let sandbox = Sandbox::new("");
    sandbox.enroll(SECRET);
    let until = now() + 600;
    sandbox
        .store()
        .update(&sandbox.user(), |_, state: &mut State| {
            state.failures = vec![Failure {
                at: now(),
                origin: Origin::LOCAL,
            }];
            state.locked_until = until;
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        sandbox.status_json(),
        format!(
            r#"{{"user":"{}","totp":true,"backup_codes_left":{CODES},"locked_until":{until},"hosts_locked_until":[],"keys":[]}}"#,
            me()
        )
    );
    let run = sandbox.twofold(&["status"]);
    assert!(run.stdout.contains("locked: yes"), "{}", run.stdout);

    let run = sandbox.twofold(&["unlock", "--user", &me()]);
    run.assert_success();
    assert!(run.stdout.contains("unlocked"), "{}", run.stdout);
    assert!(sandbox.status_json().contains("\"locked_until\":null"));
    let (_, state) = sandbox.store().load(&sandbox.user()).unwrap().unwrap();
    assert!(
        state.failures.is_empty() && state.locked_until == 0,
        "{state:?}"
    );
}

#[test]
fn unlocking_an_unenrolled_user_fails() {
    let sandbox = Sandbox::new("");
    sandbox
        .twofold(&["unlock", "--user", &me()])
        .assert_failure_line("not enrolled");
    assert!(!sandbox.record_path().exists());
}

#[test]
fn disable_removes_the_enrollment() {
    let sandbox = Sandbox::new("");
    sandbox.enroll(SECRET);
    let run = sandbox.twofold(&["disable", "--user", &me()]);
    run.assert_success();
    assert!(run.stdout.contains("removed"), "{}", run.stdout);
    assert_eq!(sandbox.record_files(), Vec::<String>::new());
    assert_eq!(sandbox.status_json(), not_enrolled_json());
    sandbox
        .twofold(&["disable", "--user", &me()])
        .assert_failure_line("not enrolled");
}

// ---- Imports.

#[test]
fn google_authenticator_file_is_imported_with_its_limits_and_scratch_codes() {
    let sandbox = Sandbox::new("");
    let file = sandbox.write_private(
        "google_authenticator",
        "JBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30 1764316800\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE 58810560\n\
         \" TOTP_AUTH\n12345678\n87654321\n",
        0o400,
    );
    let run = sandbox.twofold(&["import", "google-authenticator", file.to_str().unwrap()]);
    run.assert_success();
    assert!(run.stdout.contains("2 scratch codes"), "{}", run.stdout);

    let record = sandbox.record();
    let key = record.totp.as_ref().unwrap();
    assert_eq!(key.secret.to_base32().as_str(), "JBSWY3DPEHPK3PXP");
    assert_eq!(
        (key.algorithm, key.digits, key.period),
        (Algorithm::Sha1, Digits::SIX, 30)
    );
    assert_eq!(
        record.window,
        Some(1),
        "WINDOW_SIZE 3 means one step either side"
    );
    assert_eq!(
        record.throttle,
        Some(UserThrottle {
            max_failures: 3,
            window_secs: 30
        })
    );
    assert_eq!(find_code(&record.backup_codes, "12345678"), Some(0));
    assert_eq!(find_code(&record.backup_codes, "87654321"), Some(1));
    assert_eq!(
        sandbox.status_json(),
        format!(
            r#"{{"user":"{}","totp":true,"backup_codes_left":2,"locked_until":null,"hosts_locked_until":[],"keys":[]}}"#,
            me()
        )
    );
    // The imported key is the phone's: oathtool's code for it is what the record computes.
    let t = now();
    if let Some(oath) = codes::oathtool(key, &format!("@{t}"), 0) {
        assert_eq!(
            [key.code_at_step(key.step_of(t)).to_string()],
            oath.as_slice()
        );
    }
    // An existing enrollment is kept unless --force.
    let run = sandbox.twofold(&["import", "google-authenticator", file.to_str().unwrap()]);
    run.assert_failure_line("--force");
    let run = sandbox.twofold(&[
        "import",
        "google-authenticator",
        "--force",
        file.to_str().unwrap(),
    ]);
    run.assert_success();
}

#[test]
fn spent_scratch_codes_stay_spent_across_imports_disables_and_enrollments() {
    // A code imported before counts as spent once the enrollment holding it is gone (disabled
    // or replaced): the module spends codes without telling the importer, so only a code found
    // unspent in the current enrollment can be carried over.
    let sandbox = Sandbox::new("");
    let file = sandbox.write_private(
        "google_authenticator",
        "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n12345678\n87654321\n",
        0o400,
    );
    let path = file.to_str().unwrap();
    sandbox
        .twofold(&["import", "google-authenticator", path])
        .assert_success();
    sandbox.spend_code("12345678");
    // The import started the replay guard at now, so enrollment confirms with the next step.
    let code = codes::at("JBSWY3DPEHPK3PXP", now() + 30);
    // (the command, the scratch codes it keeps)
    let steps: [(&[&str], usize); 6] = [
        (&["import", "google-authenticator", "--force", path], 1),
        (&["import", "google-authenticator", "--force", path], 1),
        (&["disable", "--user", &me()], 0),
        (&["import", "google-authenticator", path], 0),
        (
            &[
                "enroll",
                "--force",
                "--secret",
                "JBSWY3DPEHPK3PXP",
                "--code",
                &code,
                "--qr",
                "none",
            ],
            0,
        ),
        (&["import", "google-authenticator", "--force", path], 0),
    ];
    for (args, kept) in steps {
        let run = sandbox.twofold(args);
        run.assert_success();
        if args[0] != "import" {
            continue;
        }
        assert!(
            run.stdout.contains(&format!("{kept} scratch code")),
            "{args:?}: {run:#?}"
        );
        let record = sandbox.record();
        assert_eq!(
            find_code(&record.backup_codes, "12345678"),
            None,
            "{args:?}"
        );
        let unspent = find_code(&record.backup_codes, "87654321");
        assert_eq!(unspent, (kept == 1).then_some(0), "{args:?}");
    }
}

#[test]
fn pam_users_names_live_lines_that_load_the_module_and_follows_includes() {
    let sandbox = Sandbox::new("");
    let etc = sandbox.dir.join("pam.d");
    let vendor = sandbox.dir.join("vendor-pam.d");
    let elsewhere = sandbox.dir.join("twofold-stack");
    fs::create_dir(&etc).unwrap();
    fs::create_dir(&vendor).unwrap();
    let write = |path: &Path, text: &str| fs::write(path, text).unwrap();
    let line = "auth required pam_twofold.so";
    // Included by absolute path: the line lives in that file (the case the guards missed).
    write(&elsewhere, &format!("# ours\n{line}\n"));
    write(
        &etc.join("sshd"),
        &format!(
            "@include common-auth\nauth include {}\n",
            elsewhere.display()
        ),
    );
    write(
        &etc.join("common-auth"),
        &format!("auth [success=1 default=ignore]pam_unix.so\n{line}\n"),
    );
    // A substack found in the vendor directory, as libpam finds it.
    write(&etc.join("sudo"), "auth substack sudo-extra\n");
    write(
        &vendor.join("sudo-extra"),
        "auth requisite /lib/security/pam_twofold.so\n",
    );
    // Backups, comments and another module's name load nothing.
    write(&etc.join("sshd.dpkg-old"), &format!("{line}\n"));
    write(
        &etc.join("login"),
        "# auth required pam_twofold.so\nauth optional libpam_twofold.so\n",
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["pam-users", "--pam-dir", etc.to_str().unwrap()];
        args.extend(["--pam-dir", vendor.to_str().unwrap()]);
        args.extend(extra);
        let run = sandbox.twofold(&args);
        run.assert_success();
        run.stdout
    };
    let common = format!("{}/common-auth:2:{line}", etc.display());
    let included = format!("{}:2:{line}", elsewhere.display());
    let vendored = format!(
        "{}/sudo-extra:1:auth requisite /lib/security/pam_twofold.so",
        vendor.display()
    );
    assert_eq!(run(&[]), format!("{common}\n{included}\n{vendored}\n"));
    // Without pam-auth-update's files, neither scanned nor followed.
    assert_eq!(
        run(&["--skip-profile"]),
        format!("{included}\n{vendored}\n")
    );
    // A broken config does not stop the removal guards.
    fs::write(&sandbox.config, "not toml [").unwrap();
    assert_eq!(
        run(&["--skip-profile"]),
        format!("{included}\n{vendored}\n")
    );
}

#[test]
fn code_used_with_google_authenticator_is_refused_after_the_import() {
    let sandbox = Sandbox::new("");
    let step = common::settle_step(30, 8);
    let file = sandbox.write_private(
        "google_authenticator",
        &format!("JBSWY3DPEHPK3PXP\n\" DISALLOW_REUSE {step}\n\" TOTP_AUTH\n"),
        0o400,
    );
    sandbox
        .twofold(&["import", "google-authenticator", file.to_str().unwrap()])
        .assert_success();
    let confdir = sandbox.pam_service();
    let code = codes::at("JBSWY3DPEHPK3PXP", step * 30);
    common::login(&confdir, "twofold", &me(), &[&code]).assert_rc(common::PAM_AUTH_ERR);
}

#[test]
fn current_code_is_refused_after_importing_a_file_that_records_no_used_steps() {
    // Without DISALLOW_REUSE google-authenticator keeps no used steps: the code just used may be
    // the current one, so the guard starts at now.
    let sandbox = Sandbox::new("");
    let step = common::settle_step(30, 8);
    let file = sandbox.write_private(
        "google_authenticator",
        "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n",
        0o400,
    );
    sandbox
        .twofold(&["import", "google-authenticator", file.to_str().unwrap()])
        .assert_success();
    let confdir = sandbox.pam_service();
    let code = codes::at("JBSWY3DPEHPK3PXP", step * 30);
    common::login(&confdir, "twofold", &me(), &[&code]).assert_rc(common::PAM_AUTH_ERR);
}

#[test]
fn google_authenticator_hotp_file_is_refused_clearly() {
    let sandbox = Sandbox::new("");
    let file = sandbox.write_private(
        "google_authenticator",
        "JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n\" WINDOW_SIZE 17\n12345678\n",
        0o400,
    );
    let run = sandbox.twofold(&["import", "google-authenticator", file.to_str().unwrap()]);
    let line = run.assert_failure_line("HOTP");
    assert!(
        line.contains("TOTP only") && line.contains(file.to_str().unwrap()),
        "{line}"
    );
    assert_eq!(sandbox.record_files(), Vec::<String>::new());
}

#[test]
fn google_authenticator_file_with_a_bad_line_names_it() {
    let sandbox = Sandbox::new("");
    let file = sandbox.write_private(
        "google_authenticator",
        "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\nhello\n",
        0o600,
    );
    let line = sandbox
        .twofold(&["import", "google-authenticator", file.to_str().unwrap()])
        .assert_failure_line("line 3");
    assert!(line.contains(file.to_str().unwrap()), "{line}");
    assert!(!sandbox.record_path().exists());
}

// ---- check.

#[test]
fn check_passes_on_a_sound_setup_when_records_belong_to_root() {
    let sandbox = Sandbox::new("");
    sandbox.enroll(SECRET);
    let run = sandbox.check();
    if is_root() {
        run.assert_success();
        assert!(
            run.stdout
                .contains(&format!("{}: ok", sandbox.config.display())),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("records checked: 1, with problems: 0"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("no problems found"), "{}", run.stdout);
    } else {
        // The module runs as root and refuses a records directory anyone else owns; so does check.
        run.assert_failure_line("problem");
        let expected = format!("{}: unsafe: owner uid", sandbox.rec.display());
        assert!(run.stdout.contains(&expected), "{}", run.stdout);
    }
}

#[test]
fn check_reports_a_store_without_its_marker_and_an_enrollment_writes_it() {
    let sandbox = Sandbox::new("");
    let marker = sandbox.rec.join(STORE_MARKER);
    sandbox.check();
    fs::remove_file(&marker).unwrap();
    let run = sandbox.check();
    run.assert_failure_line("problem");
    assert!(
        run.stdout.contains("store not confirmed")
            && run.stdout.contains("twofold confirm-store")
            && run.stdout.contains(&marker.display().to_string()),
        "{}",
        run.stdout
    );
    // The CLI enrolls into it (an enrollment is what confirms a store) and writes the marker.
    sandbox.enroll(SECRET);
    assert!(marker.is_file());
    assert!(!sandbox.check().stdout.contains("store not confirmed"));
    // Only root may confirm a store.
    if !is_root() {
        sandbox
            .twofold(&["confirm-store"])
            .assert_failure_line("only root");
    }
}

#[test]
fn check_names_a_screen_locker_that_the_profile_reaches_with_central_records() {
    let sandbox = Sandbox::new("");
    let pam_dir = sandbox.dir.join("pam.d");
    fs::create_dir_all(&pam_dir).unwrap();
    // The pam-auth-update profile's common-auth, as Debian writes it, and a locker using it.
    fs::write(
        pam_dir.join("common-auth"),
        format!(
            "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\n\
             auth required pam_permit.so\nauth required pam_twofold.so config={}\n",
            sandbox.config.display()
        ),
    )
    .unwrap();
    fs::write(pam_dir.join("xscreensaver"), "@include common-auth\n").unwrap();
    let run = sandbox.check();
    let warning = run
        .stdout
        .lines()
        .find(|l| {
            l.contains("xscreensaver") && l.contains("warning: xscreensaver is a screen locker")
        })
        .unwrap_or_else(|| panic!("no warning for the locker: {}", run.stdout));
    assert!(
        warning.contains("cannot read root's central records"),
        "{warning}"
    );
    assert!(
        !run.stdout.contains("xscreensaver (via common-auth:4): ok"),
        "{}",
        run.stdout
    );
}

#[test]
fn check_reviews_the_pam_stacks_that_use_the_module() {
    let sandbox = Sandbox::new("");
    let config = fs::read_to_string(&sandbox.config).unwrap();
    fs::write(&sandbox.config, format!("enroll_on_login = true\n{config}")).unwrap();
    let run = sandbox.check();
    assert!(
        run.stdout.contains("enroll_on_login: on") && run.stdout.contains("no service uses"),
        "{}",
        run.stdout
    );
    let pam_dir = sandbox.dir.join("pam.d");
    fs::write(
        pam_dir.join("sshd"),
        "@include common-auth\nauth required pam_twofold.so\n",
    )
    .unwrap();
    fs::write(
        pam_dir.join("sudo"),
        "auth required pam_unix.so\nauth required pam_twofold.so nulok\n",
    )
    .unwrap();
    // A line without config= reads the default config, so name the sandbox's.
    fs::write(
        pam_dir.join("su"),
        format!(
            "auth sufficient pam_rootok.so\nauth required pam_unix.so\n\
             auth required pam_twofold.so config={}\n",
            sandbox.config.display()
        ),
    )
    .unwrap();
    fs::write(
        pam_dir.join("common-auth"),
        "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\n\
         auth required pam_permit.so\n",
    )
    .unwrap();
    let run = sandbox.check();
    run.assert_failure_line("3 problem(s)");
    let sshd = format!(
        "{}:2: ok (auth required pam_twofold.so)",
        pam_dir.join("sshd").display()
    );
    assert!(run.stdout.contains(&sshd), "{}", run.stdout);
    for (file, line, finding) in [
        ("sudo", 2, "unknown option `nulok`"),
        ("su", 3, "anyone who knows a user name"),
    ] {
        let reported = run
            .stdout
            .lines()
            .find(|l| l.contains(finding))
            .unwrap_or_else(|| panic!("no `{finding}` in {}", run.stdout));
        let place = format!("{}:{line}: ", pam_dir.join(file).display());
        assert!(reported.starts_with(&place), "{reported}");
    }
}

/// Debian 12's stock common-auth, as pam-auth-update writes it.
const DEBIAN_COMMON_AUTH: &str = "auth\t[success=1 default=ignore]\tpam_unix.so nullok\n\
                                  auth\trequisite\t\t\tpam_deny.so\n\
                                  auth\trequired\t\t\tpam_permit.so\n";

#[test]
fn every_stack_we_ship_or_recommend_passes_check_even_with_enrollment_at_login() {
    let sandbox = Sandbox::new("");
    let config = fs::read_to_string(&sandbox.config).unwrap();
    fs::write(&sandbox.config, format!("enroll_on_login = true\n{config}")).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pam.d");
    let profile = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/pam-configs/twofold"),
    )
    .unwrap();
    let profile_line = profile
        .lines()
        .find(|l| l.contains("pam_twofold.so"))
        .expect("the profile's auth line")
        .trim();
    // twofold-web's password stack loads no module by design (the web asks the second factor
    // itself, and twofoldd refuses a stack that prompts twice): nothing for `check` to review.
    let web_stack = fs::read_to_string(shipped.join("twofold-web")).unwrap();
    assert!(!web_stack
        .lines()
        .any(|l| !l.starts_with('#') && l.contains("pam_twofold")));
    let names: Vec<String> = fs::read_dir(&shipped)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "twofold-web")
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    // Each shipped service file with stock common-auth, then stock services with the
    // pam-auth-update profile enabled in common-auth.
    let with_profile = format!("{DEBIAN_COMMON_AUTH}auth\t{profile_line}\n");
    for (services, common_auth) in [(true, DEBIAN_COMMON_AUTH), (false, with_profile.as_str())] {
        let pam_dir = sandbox.dir.join("pam.d");
        let _ = fs::remove_dir_all(&pam_dir);
        fs::create_dir_all(&pam_dir).unwrap();
        // The lines below name the sandbox's config, so that enroll_on_login is on for them.
        let named = |text: &str| {
            text.replace(
                "pam_twofold.so",
                &format!("pam_twofold.so config={}", sandbox.config.display()),
            )
        };
        fs::write(pam_dir.join("common-auth"), named(common_auth)).unwrap();
        for other in [
            "common-account",
            "common-session",
            "common-password",
            "common-session-noninteractive",
            "password-auth",
            "postlogin",
        ] {
            fs::write(pam_dir.join(other), "").unwrap();
        }
        for name in &names {
            let text = fs::read_to_string(shipped.join(name)).unwrap();
            let text = if services {
                text
            } else {
                text.lines()
                    .filter(|l| !l.contains("pam_twofold.so") || l.contains("forward_pass"))
                    .map(|l| format!("{l}\n"))
                    .collect()
            };
            fs::write(pam_dir.join(name), named(&text)).unwrap();
        }
        let run = sandbox.check();
        let prefix = format!("{}/", pam_dir.display());
        let reviewed: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .collect();
        // Every shipped file (with its own module line, or through common-auth's).
        assert!(
            reviewed.len() >= names.len(),
            "services: {services}\n{}",
            run.stdout
        );
        assert!(
            reviewed.iter().all(|l| l.contains(": ok (auth ")),
            "services: {services}\n{}",
            run.stdout
        );
        if is_root() {
            run.assert_success();
        }
    }
}

#[test]
fn check_reports_a_records_directory_others_can_write() {
    let sandbox = Sandbox::new("");
    fs::set_permissions(&sandbox.rec, fs::Permissions::from_mode(0o777)).unwrap();
    let run = sandbox.check();
    run.assert_failure_line("problem");
    assert!(
        run.stdout
            .contains(&format!("{}: unsafe", sandbox.rec.display())),
        "{}",
        run.stdout
    );
}

#[test]
fn check_names_a_malformed_record() {
    let sandbox = Sandbox::new("");
    sandbox.write_private("rec/bogus.toml", "version = 1\n", 0o600);
    let run = sandbox.check();
    run.assert_failure_line("problem");
    let expected = format!(
        "{}: malformed record",
        sandbox.rec.join("bogus.toml").display()
    );
    assert!(run.stdout.contains(&expected), "{}", run.stdout);
    assert!(run.stdout.contains("with problems: 1"), "{}", run.stdout);
}

#[test]
fn check_names_file_and_line_of_a_bad_config_value() {
    let sandbox = Sandbox::new("[totp]\nwindow = 1\ndigits = 9\n");
    let line = sandbox.check().assert_failure_line("6 to 8");
    // Lines 1 to 4 are the issuer, the records template and [backup_codes]; 5 opens [totp].
    assert!(
        line.contains(&format!("{}:7:", sandbox.config.display())),
        "{line}"
    );

    let sandbox = Sandbox::new("[totp]\nwindw = 1\n");
    let line = sandbox.check().assert_failure_line("windw");
    assert!(
        line.contains(&format!("{}:6:", sandbox.config.display())),
        "{line}"
    );
}

#[test]
fn config_writable_by_others_is_refused() {
    let sandbox = Sandbox::new("");
    fs::set_permissions(&sandbox.config, fs::Permissions::from_mode(0o666)).unwrap();
    let line = sandbox.check().assert_failure_line("unsafe");
    assert!(line.contains(sandbox.config.to_str().unwrap()), "{line}");
    sandbox
        .twofold(&["enroll", "--secret", SECRET, "--code", &codes::now(SECRET)])
        .assert_failure_line("unsafe");
    assert!(!sandbox.record_path().exists());
}

// ---- Usage errors.

#[test]
fn usage_errors_exit_2_and_change_nothing() {
    let sandbox = Sandbox::new("");
    let cases: [&[&str]; 7] = [
        &[],
        &["frobnicate"],
        &["unlock"],
        &["disable"],
        &["codes"],
        &["enroll", "--qr", "sixel"],
        &["status", "--jsn"],
    ];
    for args in cases {
        let run = sandbox.twofold(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}: nothing on stderr");
    }
    assert_eq!(sandbox.record_files(), Vec::<String>::new());
}

// ---- The QR code.

#[test]
fn utf8_qr_code_fits_80_columns_and_decodes_to_the_uri() {
    let sandbox = Sandbox::new("");
    let run = sandbox.twofold(&[
        "enroll",
        "--secret",
        SECRET,
        "--code",
        &codes::now(SECRET),
        "--qr",
        "utf8",
    ]);
    run.assert_success();
    let uri = printed_uri(&run.stdout);
    let drawing = qr_lines(&run.stdout);
    assert_fits_80_columns(&drawing);
    // In this style the ink is the light modules: it reads right as light text on a dark terminal.
    let modules = qr::parse_half_blocks(&drawing, false);
    assert_eq!(
        modules,
        twofold_core::qr::modules(&uri).unwrap(),
        "drawing differs from the matrix"
    );
    assert_decodes_to(&modules, &uri, &sandbox.dir.join("qr-utf8.pgm"));
}

#[test]
fn ansi_qr_code_fits_80_columns_and_decodes_to_the_uri() {
    let sandbox = Sandbox::new("");
    let run = sandbox.twofold(&[
        "enroll",
        "--secret",
        SECRET,
        "--code",
        &codes::now(SECRET),
        "--qr",
        "ansi",
    ]);
    run.assert_success();
    let uri = printed_uri(&run.stdout);
    let drawing: Vec<String> = qr_lines(&run.stdout)
        .iter()
        .map(|line| line.replace("\x1b[30;107m", "").replace("\x1b[0m", ""))
        .collect();
    assert!(
        drawing.iter().all(|line| !line.contains('\x1b')),
        "unexpected escapes: {drawing:?}"
    );
    assert_fits_80_columns(&drawing);
    let modules = qr::parse_half_blocks(&drawing, true);
    assert_decodes_to(&modules, &uri, &sandbox.dir.join("qr-ansi.pgm"));
}

#[test]
fn qr_code_fits_80_columns_for_the_longest_legal_issuer() {
    // 32 bytes is the most the config allows; two-byte characters are the worst case.
    let issuer = "é".repeat(16);
    let sandbox = Sandbox::with_issuer(&issuer, "");
    let run = sandbox.twofold(&[
        "enroll",
        "--secret",
        SECRET,
        "--code",
        &codes::now(SECRET),
        "--qr",
        "utf8",
    ]);
    run.assert_success();
    assert_fits_80_columns(&qr_lines(&run.stdout));
}

// ---- Helpers.

/// A config file and an empty records directory in a fresh temp dir, removed on drop.
struct Sandbox {
    dir: PathBuf,
    config: PathBuf,
    rec: PathBuf,
}

impl Sandbox {
    fn new(extra_config: &str) -> Sandbox {
        Sandbox::with_issuer(ISSUER, extra_config)
    }

    fn with_issuer(issuer: &str, extra_config: &str) -> Sandbox {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "twofold-cli-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let rec = dir.join("rec");
        fs::DirBuilder::new().mode(0o700).create(&rec).unwrap();
        // What the package writes at install: this directory is the real store.
        twofold_tests::files::write_file(&rec.join(STORE_MARKER), b"", 0o600);
        let config = dir.join("config.toml");
        let text = format!(
            "issuer = \"{issuer}\"\nrecords = \"{}/{{user}}.toml\"\n[backup_codes]\ncount = {CODES}\n{extra_config}",
            rec.display()
        );
        let sandbox = Sandbox {
            dir,
            config: config.clone(),
            rec,
        };
        sandbox.write_private("config.toml", &text, 0o600);
        sandbox
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_twofold-tested"));
        command.arg("--config").arg(&self.config).args(args);
        command
    }

    fn twofold(&self, args: &[&str]) -> Run {
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run twofold: {e}"));
        Run::from(output)
    }

    /// Enrolls the invoking user with `secret` through the CLI; returns the backup codes shown.
    fn enroll(&self, secret: &str) -> Vec<String> {
        let run = self.twofold(&[
            "enroll",
            "--secret",
            secret,
            "--code",
            &codes::now(secret),
            "--qr",
            "none",
        ]);
        run.assert_success();
        printed_codes(&run.stdout)
    }

    fn status_json(&self) -> String {
        let run = self.twofold(&["status", "--json"]);
        run.assert_success();
        let line = run.stdout.trim_end().to_string();
        assert_eq!(line.lines().count(), 1, "{}", run.stdout);
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("status --json is JSON");
        assert!(parsed.is_object(), "{line}");
        line
    }

    fn user(&self) -> UserName {
        UserName::parse(&me()).unwrap()
    }

    fn store(&self) -> FileStore {
        let template = format!("{}/{{user}}.toml", self.rec.display());
        FileStore::new(&Config {
            records: RecordsTemplate::parse(&template).unwrap(),
            ..Config::default()
        })
    }

    fn record(&self) -> Record {
        let (record, _) = self
            .store()
            .load(&self.user())
            .unwrap()
            .expect("an enrollment");
        record
    }

    fn record_path(&self) -> PathBuf {
        self.rec.join(format!("{}.toml", me()))
    }

    fn state_path(&self) -> PathBuf {
        self.rec.join(format!("{}.state", me()))
    }

    /// The names in the records directory, sorted.
    /// The files in the records directory, but for the store marker (which stays).
    fn record_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.rec)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != STORE_MARKER)
            .collect();
        names.sort();
        names
    }

    /// `twofold check`, reading PAM service files from the sandbox's own `pam.d`.
    fn check(&self) -> Run {
        let pam_dir = self.dir.join("pam.d");
        fs::create_dir_all(&pam_dir).unwrap();
        self.twofold(&["check", "--pam-dir", pam_dir.to_str().unwrap()])
    }

    /// Marks the backup code `code` spent, as a login that used it would.
    fn spend_code(&self, code: &str) {
        self.store()
            .update(&self.user(), |record, state| {
                let index = find_code(&record.backup_codes, code).expect("a current code");
                state.spend_code(record.backup_codes.binding(), index);
            })
            .unwrap()
            .expect("an enrollment");
    }

    /// A PAM service `twofold` that runs the real module with this sandbox's config; returns
    /// the directory to hand `pam_start_confdir`.
    fn pam_service(&self) -> PathBuf {
        let confdir = self.dir.join("pam.d");
        fs::create_dir_all(&confdir).unwrap();
        let line = format!(
            "auth required {} config={}\n",
            common::module_path().display(),
            self.config.display()
        );
        common::write_file(&confdir.join("twofold"), line.as_bytes(), 0o644);
        confdir
    }

    fn write_private(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.dir.join(name);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One finished run of the CLI.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl Run {
    #[track_caller]
    fn assert_success(&self) {
        assert_eq!(self.code, Some(0), "{self:#?}");
    }

    /// Asserts exit 1 with exactly one `twofold: ...` line on stderr containing `needle`, and
    /// returns that line.
    #[track_caller]
    fn assert_failure_line(&self, needle: &str) -> String {
        assert_eq!(self.code, Some(1), "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:#?}");
        assert!(lines[0].starts_with("twofold: "), "{self:#?}");
        assert!(
            lines[0].contains(needle),
            "stderr lacks {needle:?}: {self:#?}"
        );
        lines[0].to_string()
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn not_enrolled_json() -> String {
    format!(
        r#"{{"user":"{}","totp":false,"backup_codes_left":0,"locked_until":null,"hosts_locked_until":[],"keys":[]}}"#,
        me()
    )
}

/// The backup codes in the CLI's output (`abcde-fghjk`, one per line).
fn printed_codes(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|line| {
            line.len() == 11
                && line.as_bytes()[5] == b'-'
                && line
                    .bytes()
                    .enumerate()
                    .all(|(i, b)| i == 5 || b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        .map(str::to_string)
        .collect()
}

fn printed_uri(stdout: &str) -> String {
    let uris: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("otpauth://"))
        .collect();
    assert_eq!(uris.len(), 1, "expected one URI: {stdout}");
    uris[0].to_string()
}

fn uri_param(uri: &str, name: &str) -> Option<String> {
    let (_, query) = uri.split_once('?')?;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// Whether `code` is one of `codes`, checked the way a login checks it.
fn find_code(codes: &BackupCodes, code: &str) -> Option<usize> {
    let candidate = Candidate::parse(code)?;
    codes.find(&codes.hash_candidate(&candidate)?)
}

/// The QR drawing: the lines between the scan instruction and the URI.
fn qr_lines(stdout: &str) -> Vec<String> {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("Scan this QR code"))
        .expect("scan instruction")
        + 1;
    let end = lines
        .iter()
        .position(|l| l.starts_with("otpauth://"))
        .expect("URI");
    assert!(end > start + 10, "no QR drawing: {stdout}");
    lines[start..end].iter().map(|l| l.to_string()).collect()
}

#[track_caller]
fn assert_fits_80_columns(drawing: &[String]) {
    for line in drawing {
        let columns = line.chars().count();
        assert!(columns <= 80, "{columns} columns: {line}");
    }
}

/// Asserts that `zbarimg` reads exactly `uri` from `modules`, drawn as an image at `image`. Skips
/// (with a reason) when zbarimg is missing, except under CI=true.
fn assert_decodes_to(modules: &[Vec<bool>], uri: &str, image: &Path) {
    if !qr::zbarimg_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "zbarimg is missing (Debian package zbar-tools); CI must decode the QR code"
        );
        eprintln!("SKIPPED the QR decode: zbarimg is not installed (apt-get install zbar-tools)");
        return;
    }
    let decoded = qr::decode(modules, image).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded, uri);
}
