//! Helpers for the root-only end-to-end tests: real users (`useradd`/`userdel`), real service files
//! in `/etc/pam.d`, `pamtester` runs and `twofold` CLI runs. Every fixture removes itself on drop,
//! also when a test fails.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use twofold_core::user::UserName;

// Macros first: `#[macro_use] mod root;` makes them visible to the test file after this.

/// The name of the enclosing test function, for its marker file.
macro_rules! this_test {
    () => {{
        fn here() {}
        let path = std::any::type_name_of_val(&here);
        let path = path.strip_suffix("::here").unwrap_or(path);
        path.rsplit("::").next().unwrap_or(path)
    }};
}

/// Returns early from a test that cannot run without root (see `root_test_starts`).
macro_rules! needs_root {
    () => {
        if !$crate::root::root_test_starts(this_test!()) {
            return;
        }
    };
}

/// How long one `pamtester` or `twofold` run may take before it is killed.
pub const RUN_TIMEOUT_SECS: u32 = 30;

/// Starts a root-only test: returns `false` (after saying why) when not root, so the test can
/// return early; panics instead under `CI=true`, where a skipped root test hides a failure. When it
/// runs, it leaves `target/root-tests-ran/<test>` for CI to check.
pub fn root_test_starts(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("root-only test did not run: {test} needs root (CI=true)");
        }
        eprintln!("SKIPPED {test}: needs root (real users and /etc/pam.d)");
        return false;
    }
    let markers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/root-tests-ran");
    fs::create_dir_all(&markers).expect("create the marker directory");
    fs::write(markers.join(test), b"").expect("write the marker");
    true
}

/// A unique short suffix for names of users, services and temp dirs.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A real local user with a home directory and a password, removed with `userdel -r` on drop.
pub struct TestUser {
    pub name: String,
    pub password: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// useradd and userdel lock the passwd files; tests in parallel threads take turns.
static ACCOUNTS: Mutex<()> = Mutex::new(());

impl TestUser {
    /// Creates `tf_<tag>...` with `useradd -m` and sets a password with `chpasswd`.
    pub fn create(tag: &str) -> TestUser {
        let name = format!("tf_{}", unique(tag));
        assert!(name.len() <= 32, "user name too long: {name}");
        let password = format!("Pw-{}-long enough", unique("p"));
        {
            let _turn = ACCOUNTS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            run_ok(
                Command::new("useradd").args(["-m", "-s", "/bin/sh", &name]),
                None,
            );
        }
        // From here on the user exists: the guard removes it whatever happens next.
        let mut user = TestUser {
            name,
            password,
            uid: 0,
            gid: 0,
            home: PathBuf::new(),
        };
        {
            let _turn = ACCOUNTS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let line = format!("{}:{}\n", user.name, user.password);
            run_ok(&mut Command::new("chpasswd"), Some(line.as_bytes()));
        }
        let account = twofold_host::passwd::by_name(&user.user_name())
            .expect("passwd lookup")
            .expect("the new user is in passwd");
        user.uid = account.uid;
        user.gid = account.gid;
        user.home = account.home;
        user
    }

    pub fn user_name(&self) -> UserName {
        UserName::parse(&self.name).expect("a valid user name")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _turn = ACCOUNTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match Command::new("userdel").args(["-r", &self.name]).output() {
            // userdel -r exits 12 when only the (never created) mail spool is missing.
            Ok(out) if out.status.success() || out.status.code() == Some(12) => {}
            Ok(out) => eprintln!(
                "warning: userdel -r {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("warning: cannot run userdel: {e}"),
        }
    }
}

/// A service file `/etc/pam.d/twofold-test-<name>`, removed on drop.
pub struct Service {
    pub name: String,
    path: PathBuf,
}

impl Service {
    /// Writes the service with `lines` (one PAM rule each); `{module}` is replaced by the absolute
    /// path of the built `libpam_twofold.so`.
    pub fn create(tag: &str, lines: &[&str]) -> Service {
        let name = format!("twofold-test-{}", unique(tag));
        let path = Path::new("/etc/pam.d").join(&name);
        let module = module_path();
        let text: String = lines
            .iter()
            .map(|line| format!("{}\n", line.replace("{module}", module.to_str().unwrap())))
            .collect();
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        file.write_all(text.as_bytes()).unwrap();
        Service { name, path }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Root-owned temp dirs (mode 0700) for configs and central records.
pub use twofold_tests::files::TempDir;

/// What a `pamtester` run printed and returned.
#[derive(Debug)]
pub struct PamRun {
    pub code: Option<i32>,
    /// stdout then stderr: prompts and PAM_ERROR_MSG go to stderr, PAM_TEXT_INFO to stdout.
    pub output: String,
}

impl PamRun {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    #[track_caller]
    pub fn assert_success(&self) -> &PamRun {
        assert!(self.succeeded(), "pamtester failed: {self:#?}");
        assert!(
            self.output.contains("successfully authenticated"),
            "{self:#?}"
        );
        self
    }

    #[track_caller]
    pub fn assert_failure(&self) -> &PamRun {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "pamtester did not fail: {self:#?}"
        );
        assert!(
            !self.output.contains("successfully authenticated"),
            "{self:#?}"
        );
        self
    }
}

/// Runs `pamtester -v <service> <user> authenticate`, answering the prompts with `answers`, one
/// line each; killed after `RUN_TIMEOUT_SECS`.
pub fn pamtester(service: &Service, user: &str, answers: &[&str]) -> PamRun {
    let stdin: String = answers.iter().map(|a| format!("{a}\n")).collect();
    let output = timed(Command::new("pamtester").args(["-v", &service.name, user, "authenticate"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(stdin.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run pamtester");
    assert_ne!(output.status.code(), Some(124), "pamtester timed out");
    PamRun {
        code: output.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The `twofold` CLI with `--config config`.
pub fn twofold(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_twofold-tested"));
    command.arg("--config").arg(config).args(args);
    command
}

/// What an interactive `twofold enroll` showed.
pub struct Enrolled {
    /// The base32 secret, read from the printed otpauth URI.
    pub secret: String,
    pub backup_codes: Vec<String>,
}

/// Runs `twofold enroll --user <user>` as an administrator would: reads the URI it prints, types
/// the current code for its secret on stdin, and returns what it showed.
pub fn enroll_interactively(config: &Path, user: &str) -> Enrolled {
    let mut child = timed(&mut twofold(
        config,
        &["enroll", "--user", user, "--qr", "none"],
    ))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run twofold");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut shown = String::new();
    let uri = loop {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).unwrap();
        shown.push_str(&line);
        if read == 0 {
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("twofold enroll printed no URI: {shown} {stderr}");
        }
        if line.starts_with("otpauth://") {
            break line.trim_end().to_string();
        }
    };
    let secret = uri
        .split_once('?')
        .and_then(|(_, query)| query.split('&').find_map(|p| p.strip_prefix("secret=")))
        .unwrap_or_else(|| panic!("no secret in {uri}"))
        .to_string();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", totp::now(&secret)).unwrap();
    drop(stdin);
    stdout.read_to_string(&mut shown).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "twofold enroll failed: {shown} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let backup_codes = shown
        .lines()
        .filter(|l| l.len() == 11 && l.as_bytes()[5] == b'-')
        .map(str::to_string)
        .collect();
    Enrolled {
        secret,
        backup_codes,
    }
}

/// TOTP codes (SHA1, 6 digits, 30 s), checked against oathtool.
pub use twofold_tests::codes as totp;
pub use twofold_tests::module_path;

/// Wraps a command in coreutils `timeout`, so a hung conversation cannot hang the test run.
pub fn timed(command: &mut Command) -> Command {
    let mut wrapped = Command::new("timeout");
    wrapped
        .args(["--kill-after=5", &RUN_TIMEOUT_SECS.to_string()])
        .arg(command.get_program())
        .args(command.get_args());
    wrapped
}

/// Runs an account tool, retrying briefly if another process holds the passwd lock.
fn run_ok(command: &mut Command, stdin: Option<&[u8]>) {
    let mut last = String::new();
    for _ in 0..5 {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", command.get_program()));
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.unwrap_or_default()).unwrap();
        drop(pipe);
        let output = child.wait_with_output().unwrap();
        if output.status.success() {
            return;
        }
        last = format!(
            "{:?}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        if !last.contains("lock") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{command:?} failed: {last}");
}
