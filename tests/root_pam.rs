//! Root-only end-to-end logins: real users made with `useradd`, real service files in
//! `/etc/pam.d` stacking `pam_unix` and the built module, driven by `pamtester`.
//!
//! Not root: each test says why it is skipped and passes, except under `CI=true`, where it fails.
//! When a test runs it leaves `target/root-tests-ran/<test>`, so CI can check that it did.
//! Every failing login costs the module's 2 s fail delay, so there are few of them.

#[macro_use]
mod root;

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use twofold_core::backup::{BackupCodes, Cost};
use twofold_core::config::Config;
use twofold_core::record::Record;
use twofold_core::store::Store;
use twofold_core::totp::Secret;
use twofold_core::user::UserName;
use twofold_host::FileStore;

use root::{enroll_interactively, pamtester, totp, Service, TempDir, TestUser};

/// The usual stack: the password, then the second factor.
const PASSWORD_THEN_CODE: &[&str] = &[
    "auth required pam_unix.so",
    "auth required {module} config={config}",
];

// ---- Central records.

#[test]
fn right_password_and_code_log_in_once() {
    needs_root!();
    let host = Host::central("once", PASSWORD_THEN_CODE);
    let user = TestUser::create("once");
    let (secret, _) = host.enroll_with_library(&user, 0);

    let code = totp::now(&secret);
    let login = pamtester(&host.service, &user.name, &[&user.password, &code]);
    login.assert_success();
    assert!(login.output.contains("Verification code: "), "{login:#?}");

    // The same code again: refused, although the password is right.
    pamtester(&host.service, &user.name, &[&user.password, &code]).assert_failure();
}

#[test]
fn wrong_code_or_wrong_password_fails() {
    needs_root!();
    let host = Host::central("wrong", PASSWORD_THEN_CODE);
    let user = TestUser::create("wrong");
    let (secret, _) = host.enroll_with_library(&user, 0);

    let login = pamtester(
        &host.service,
        &user.name,
        &[&user.password, &totp::wrong(&secret)],
    );
    login.assert_failure();
    assert!(
        !login.output.contains("unavailable"),
        "a wrong code is not a fault: {login:#?}"
    );

    let login = pamtester(
        &host.service,
        &user.name,
        &["not the password", &totp::now(&secret)],
    );
    login.assert_failure();
}

#[test]
fn backup_code_works_once() {
    needs_root!();
    let host = Host::central("backup", PASSWORD_THEN_CODE);
    let user = TestUser::create("backup");
    let (_, codes) = host.enroll_with_library(&user, 3);

    let login = pamtester(&host.service, &user.name, &[&user.password, &codes[1]]);
    login.assert_success();
    assert!(
        login.output.contains("Backup code accepted; 2 left"),
        "{login:#?}"
    );

    pamtester(&host.service, &user.name, &[&user.password, &codes[1]]).assert_failure();
}

#[test]
fn user_enrolled_through_the_cli_logs_in() {
    needs_root!();
    let host = Host::central("cli", PASSWORD_THEN_CODE);
    let user = TestUser::create("cli");
    let enrolled = enroll_interactively(&host.config, &user.name);
    assert_eq!(enrolled.backup_codes.len(), 3, "config asks for 3 codes");

    let record = host
        .dir
        .path()
        .join("rec")
        .join(format!("{}.toml", user.name));
    let meta = fs::metadata(&record).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (0, 0o600),
        "central records are root's"
    );

    // Enrolling spent the current step; the next one is within the window.
    let code = totp::next(&enrolled.secret);
    pamtester(&host.service, &user.name, &[&user.password, &code]).assert_success();
    let backup = enrolled.backup_codes[0].as_str();
    let login = pamtester(&host.service, &user.name, &[&user.password, backup]);
    login.assert_success();
    assert!(
        login.output.contains("Backup code accepted; 2 left"),
        "{login:#?}"
    );
}

#[test]
fn root_imports_a_users_google_authenticator_file_only_if_it_is_theirs_and_private() {
    needs_root!();
    let host = Host::central("import", PASSWORD_THEN_CODE);
    let user = TestUser::create("import");
    let secret = Secret::generate().unwrap().to_base32().to_string();
    let file = user.home.join(".google_authenticator");
    fs::write(&file, format!("{secret}\n\" TOTP_AUTH\n12345678\n")).unwrap();
    let import = |file: &std::path::Path| {
        root::twofold(&host.config, &["import", "google-authenticator"])
            .arg(file)
            .args(["--user", &user.name, "--force"])
            .output()
            .unwrap()
    };
    // Root's file (a user could link or point at it): opened with the user's rights, so a private
    // one cannot be read at all, and a readable one is refused for its owner.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let refused = import(&file);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Permission denied"),
        "{refused:?}"
    );
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let refused = import(&file);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("must belong to"),
        "{refused:?}"
    );
    // The user's, but readable by others: refused.
    chown(&file, Some(user.uid), Some(user.gid)).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(import(&file).status.code(), Some(1));
    // The user's and private: imported, and the code logs in.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let imported = import(&file);
    assert!(imported.status.success(), "{imported:?}");
    // The file records no used steps, so the guard starts at now: the next code logs in.
    let code = totp::next(&secret);
    pamtester(&host.service, &user.name, &[&user.password, &code]).assert_success();
}

#[test]
fn backup_codes_file_is_created_with_the_users_identity() {
    needs_root!();
    let host = Host::central("codesfile", PASSWORD_THEN_CODE);
    let user = TestUser::create("codesfile");
    let secret = Secret::generate().unwrap().to_base32().to_string();
    // In a directory of the user's: the file is theirs, and private.
    let path = user.home.join("codes.txt");
    let enrolled = root::twofold(
        &host.config,
        &["enroll", "--user", &user.name, "--qr", "none"],
    )
    .args(["--secret", &secret, "--code", &totp::now(&secret)])
    .arg("--backup-codes-file")
    .arg(&path)
    .output()
    .unwrap();
    assert!(enrolled.status.success(), "{enrolled:?}");
    let meta = fs::symlink_metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (user.uid, user.gid),
        "the codes file is the user's"
    );
    assert_eq!(meta.mode() & 0o7777, 0o600);
    // Where only root may write, root writes nothing for the user: it creates the file with
    // the user's rights.
    let root_only = host.dir.subdir("root-only").join("codes.txt");
    let refused = root::twofold(&host.config, &["codes", "regenerate", "--user", &user.name])
        .arg("--backup-codes-file")
        .arg(&root_only)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Permission denied") && stderr.contains("only copy"),
        "{stderr}"
    );
    assert!(!root_only.exists());
}

// ---- Records in the user's home.

#[test]
fn home_record_is_created_as_the_user_and_works_at_login() {
    needs_root!();
    let host = Host::home("home", PASSWORD_THEN_CODE);
    let user = TestUser::create("home");
    fs::set_permissions(&user.home, fs::Permissions::from_mode(0o700)).unwrap();

    let enrolled = enroll_interactively(&host.config, &user.name);
    for name in [".twofold.toml", ".twofold.state"] {
        let meta =
            fs::symlink_metadata(user.home.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(meta.is_file(), "{name}");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (user.uid, user.gid),
            "{name} must be the user's"
        );
        assert_eq!(meta.mode() & 0o7777, 0o600, "{name}");
    }
    let strays: Vec<String> = fs::read_dir(&user.home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".twofold") && n.ends_with(".tmp"))
        .collect();
    assert!(strays.is_empty(), "temp files left: {strays:?}");

    let code = totp::next(&enrolled.secret);
    pamtester(&host.service, &user.name, &[&user.password, &code]).assert_success();
    // The login's state write also went through the user's identity.
    let state = fs::metadata(user.home.join(".twofold.state")).unwrap();
    assert_eq!(state.uid(), user.uid);
}

#[test]
fn home_record_open_to_others_or_owned_by_another_user_is_refused() {
    needs_root!();
    let host = Host::home("unsafe", PASSWORD_THEN_CODE);
    let user = TestUser::create("unsafe");
    fs::set_permissions(&user.home, fs::Permissions::from_mode(0o700)).unwrap();
    let (secret, _) = host.enroll_with_library(&user, 0);
    let record = user.home.join(".twofold.toml");
    assert_eq!(
        fs::metadata(&record).unwrap().uid(),
        user.uid,
        "written as the user"
    );

    fs::set_permissions(&record, fs::Permissions::from_mode(0o644)).unwrap();
    let login = pamtester(
        &host.service,
        &user.name,
        &[&user.password, &totp::now(&secret)],
    );
    login.assert_failure();
    assert!(login.output.contains("unavailable"), "{login:#?}");

    fs::set_permissions(&record, fs::Permissions::from_mode(0o600)).unwrap();
    let nobody = twofold_host::passwd::by_name(&UserName::parse("nobody").unwrap())
        .unwrap()
        .expect("the nobody account");
    chown(&record, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let login = pamtester(
        &host.service,
        &user.name,
        &[&user.password, &totp::now(&secret)],
    );
    login.assert_failure();
    assert!(login.output.contains("unavailable"), "{login:#?}");

    // Put right, the same record works: the refusals were about owner and mode alone.
    chown(&record, Some(user.uid), Some(user.gid)).unwrap();
    pamtester(
        &host.service,
        &user.name,
        &[&user.password, &totp::now(&secret)],
    )
    .assert_success();
}

// ---- nullok.

#[test]
fn nullok_skips_unenrolled_and_unknown_users_but_not_enrolled_ones() {
    needs_root!();
    // The module alone decides; pam_permit makes a skipped (PAM_IGNORE) module a success.
    let host = Host::central(
        "nullok",
        &[
            "auth required {module} config={config} nullok",
            "auth required pam_permit.so",
        ],
    );
    let unenrolled = TestUser::create("nul");
    let login = pamtester(&host.service, &unenrolled.name, &[]);
    login.assert_success();
    assert!(
        !login.output.contains("Verification code"),
        "asked anyway: {login:#?}"
    );

    let stranger = format!("tf_{}", root::unique("none"));
    let login = pamtester(&host.service, &stranger, &[]);
    login.assert_success();
    assert!(
        !login.output.contains("Verification code"),
        "asked anyway: {login:#?}"
    );

    let enrolled = TestUser::create("nue");
    let (secret, _) = host.enroll_with_library(&enrolled, 0);
    pamtester(&host.service, &enrolled.name, &[&totp::wrong(&secret)]).assert_failure();
    pamtester(&host.service, &enrolled.name, &[&totp::now(&secret)]).assert_success();

    // Without nullok the unenrolled user is asked for a code (as if enrolled) and refused.
    let strict = Service::create(
        "strict",
        &[
            &format!("auth required {{module}} config={}", host.config.display()),
            "auth required pam_permit.so",
        ],
    );
    let login = pamtester(&strict, &unenrolled.name, &["123456"]);
    login.assert_failure();
    assert!(login.output.contains("Verification code: "), "{login:#?}");
}

#[test]
fn home_records_do_not_reveal_which_users_exist() {
    needs_root!();
    let host = Host::home("enum", PASSWORD_THEN_CODE);
    let known = TestUser::create("known");
    let known_login = pamtester(&host.service, &known.name, &["wrong password", "123456"]);
    known_login.assert_failure();
    assert!(
        known_login.output.contains("Verification code: "),
        "{known_login:#?}"
    );
    // pam_unix's own verdict for a stranger differs (user unknown), but sshd never shows it to
    // the client; the module's messages are what the client sees.
    let stranger = format!("tf_{}", root::unique("ghost"));
    let stranger_login = pamtester(&host.service, &stranger, &["wrong password", "123456"]);
    stranger_login.assert_failure();
    assert!(
        stranger_login.output.contains("Verification code: "),
        "{stranger_login:#?}"
    );
    assert!(
        !stranger_login.output.contains("unavailable"),
        "{stranger_login:#?}"
    );
}

// ---- Fixture.

/// A config, a records location and a PAM service that uses them.
struct Host {
    // Field order is drop order: the service file goes before the directory it points into.
    service: Service,
    config: PathBuf,
    dir: TempDir,
}

impl Host {
    /// Records in a root-owned directory.
    fn central(tag: &str, stack: &[&str]) -> Host {
        let dir = TempDir::new(tag);
        let rec = dir.store("rec");
        Host::with_records(dir, &format!("{}/{{user}}.toml", rec.display()), tag, stack)
    }

    /// Records at `~/.twofold.toml`.
    fn home(tag: &str, stack: &[&str]) -> Host {
        Host::with_records(TempDir::new(tag), "~/.twofold.toml", tag, stack)
    }

    fn with_records(dir: TempDir, records: &str, tag: &str, stack: &[&str]) -> Host {
        let index = dir.store("homes");
        let config = dir.write(
            "config.toml",
            format!(
                "issuer = \"twofold-root-test\"\nrecords = \"{records}\"\nhome_index = \"{}\"\n\
                 [backup_codes]\ncount = 3\n",
                index.display()
            ),
        );
        let lines: Vec<String> = stack
            .iter()
            .map(|line| line.replace("{config}", config.to_str().unwrap()))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let service = Service::create(tag, &lines);
        Host {
            service,
            config,
            dir,
        }
    }

    /// The config the module reads.
    fn config(&self) -> Config {
        Config::parse(&self.config, &fs::read_to_string(&self.config).unwrap()).unwrap()
    }

    /// Saves a random key and `codes` backup codes (cheap hashes) for `user` through the library,
    /// as root; returns the base32 secret and the codes.
    fn enroll_with_library(&self, user: &TestUser, codes: usize) -> (String, Vec<String>) {
        let secret = Secret::generate().unwrap().to_base32().to_string();
        let new = BackupCodes::generate(
            codes,
            Cost {
                m_kib: 64,
                t: 1,
                p: 1,
            },
        )
        .unwrap();
        let record = Record {
            totp: Some(totp::key(&secret)),
            window: None,
            throttle: None,
            backup_codes: new.hashed,
            keys: Vec::new(),
        };
        let store = FileStore::new(&self.config());
        store
            .replace(&user.user_name(), |_, _| {
                Ok::<_, ()>((Some(record.clone()), ()))
            })
            .expect("store")
            .expect("replace");
        (secret, new.plain.iter().map(|c| c.to_string()).collect())
    }
}

#[test]
fn enrolling_into_a_missing_config_directory_creates_it_as_the_user() {
    needs_root!();
    // The README's home template, on a fresh account that has no ~/.config yet.
    let host = Host::with_records(
        TempDir::new("cfgdir"),
        "~/.config/twofold.toml",
        "cfgdir",
        PASSWORD_THEN_CODE,
    );
    let user = TestUser::create("cfgdir");
    fs::set_permissions(&user.home, fs::Permissions::from_mode(0o700)).unwrap();
    let config_dir = user.home.join(".config");
    assert!(!config_dir.exists());
    let enrolled = enroll_interactively(&host.config, &user.name);
    let meta = fs::symlink_metadata(&config_dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(
        (meta.uid(), meta.gid()),
        (user.uid, user.gid),
        "~/.config is the user's"
    );
    assert_eq!(meta.mode() & 0o7777, 0o700);
    let record = fs::symlink_metadata(config_dir.join("twofold.toml")).unwrap();
    assert_eq!(record.uid(), user.uid);
    let code = totp::next(&enrolled.secret);
    pamtester(&host.service, &user.name, &[&user.password, &code]).assert_success();
}
