//! Fixtures for the end-to-end tests through the real daemons: Debian's `sshd` on a loopback port
//! with a paramiko client (`ssh_login.py`), and Debian's `sudo` run as a test user.
//!
//! Both daemons read fixed PAM service files (`/etc/pam.d/sshd`, `/etc/pam.d/sudo`), so a test
//! swaps in its own stack and puts the original back byte for byte on drop. A copy of the original
//! sits next to it while the test runs; a run killed before it could restore leaves that copy,
//! and the next run restores from it before anything else. One lock (a static mutex, and `flock`
//! on `/etc/pam.d` against other test processes) keeps those tests from running at the same time.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{chown, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::root::{self, module_path, Enrolled, TempDir, TestUser};

// ---- The twofold side: a config and a records directory.

/// A config file and a root-owned records directory in a fresh temp dir.
pub struct Twofold {
    pub config: PathBuf,
    pub records: PathBuf,
    pub dir: TempDir,
}

impl Twofold {
    /// `top` goes before any table (top-level keys such as `enroll_on_login = true`), `tables`
    /// after the `[backup_codes]` table (three codes, so enrolling stays cheap).
    pub fn new(tag: &str, top: &str, tables: &str) -> Twofold {
        let dir = TempDir::new(tag);
        let records = dir.store("rec");
        let config = dir.write(
            "config.toml",
            format!(
                "issuer = \"twofold-e2e\"\nrecords = \"{}/{{user}}.toml\"\n{top}\n\
                 [backup_codes]\ncount = {BACKUP_CODES}\n{tables}\n",
                records.display()
            ),
        );
        Twofold {
            config,
            records,
            dir,
        }
    }

    /// The test stack: the password, then the module with this config.
    pub fn pam_stack(&self) -> String {
        format!(
            "# twofold end-to-end test stack; the original is in the {BACKUP_SUFFIX} file\n\
             auth requisite pam_unix.so\n\
             auth required {} config={}\n\
             account required pam_unix.so\n\
             session required pam_permit.so\n",
            module_path().display(),
            self.config.display()
        )
    }

    /// Enrolls `user` with the CLI, as an administrator would; spends the current step.
    pub fn enroll(&self, user: &TestUser) -> Enrolled {
        root::enroll_interactively(&self.config, &user.name)
    }

    /// `twofold status --user NAME --json`.
    pub fn status(&self, user: &TestUser) -> Value {
        let output = self.cli(&["status", "--user", &user.name, "--json"]);
        assert!(output.status.success(), "twofold status: {output:?}");
        serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
    }

    /// Runs the CLI with this config.
    pub fn cli(&self, args: &[&str]) -> Output {
        root::timed(&mut root::twofold(&self.config, args))
            .output()
            .expect("run twofold")
    }
}

/// Backup codes per enrollment in these tests.
pub const BACKUP_CODES: usize = 3;

// ---- System PAM service files.

/// `/etc/pam.d/<service>` replaced by a test stack for as long as this lives.
pub struct SystemStack {
    path: PathBuf,
    backup: PathBuf,
    original: Vec<u8>,
    meta: fs::Metadata,
    // Released last, after the original is back.
    _lock: SystemLock,
}

impl SystemStack {
    /// Installs `stack` as `/etc/pam.d/<service>`, after restoring what interrupted runs left.
    pub fn install(service: &str, stack: &str) -> SystemStack {
        let lock = SystemLock::take();
        restore_stale_backups();
        let path = Path::new(PAM_DIR).join(service);
        let backup = Path::new(PAM_DIR).join(format!("{service}{BACKUP_SUFFIX}"));
        let original = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let meta = fs::metadata(&path).unwrap();
        // The copy is durable before the file is touched.
        replace_durably(&backup, &original, &meta).expect("write the backup");
        let guard = SystemStack {
            path,
            backup,
            original,
            meta,
            _lock: lock,
        };
        replace_durably(&guard.path, stack.as_bytes(), &guard.meta).expect("install the stack");
        guard
    }
}

impl Drop for SystemStack {
    fn drop(&mut self) {
        match replace_durably(&self.path, &self.original, &self.meta) {
            Ok(()) => {
                if let Err(e) = fs::remove_file(&self.backup) {
                    eprintln!("warning: {}: {e}", self.backup.display());
                }
            }
            Err(e) => eprintln!(
                "ERROR: cannot restore {} ({e}); the original is in {}",
                self.path.display(),
                self.backup.display()
            ),
        }
    }
}

/// The turn to change system PAM files: one test thread at a time, one test process at a time.
struct SystemLock {
    // Field order is drop order: the flock goes first, then the mutex.
    _dir: fs::File,
    _turn: MutexGuard<'static, ()>,
}

impl SystemLock {
    fn take() -> SystemLock {
        static TURN: Mutex<()> = Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = fs::File::open(PAM_DIR).expect("open /etc/pam.d");
        // SAFETY: flock on a descriptor we own; it only waits for other processes' locks.
        let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock /etc/pam.d: {}",
            std::io::Error::last_os_error()
        );
        SystemLock {
            _dir: dir,
            _turn: turn,
        }
    }
}

/// Puts back every original that a run killed while holding the lock left as a backup (with the
/// lock held, no live test owns one), and removes its temp files.
fn restore_stale_backups() {
    for entry in fs::read_dir(PAM_DIR).expect("read /etc/pam.d").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(TEMP_SUFFIX) {
            let _ = fs::remove_file(entry.path());
        }
        let Some(service) = name.strip_suffix(BACKUP_SUFFIX) else {
            continue;
        };
        let path = Path::new(PAM_DIR).join(service);
        eprintln!(
            "{}: restoring the original left in {name} by an interrupted run",
            path.display()
        );
        let original = fs::read(entry.path()).expect("read the stale backup");
        let meta = fs::metadata(entry.path()).expect("backup metadata");
        replace_durably(&path, &original, &meta).expect("restore the original");
        fs::remove_file(entry.path()).expect("remove the stale backup");
    }
}

/// Replaces `path` with `bytes` (owner and mode from `like`) through a synced temp file and a
/// rename, so that the file is always either old or new.
fn replace_durably(path: &Path, bytes: &[u8], like: &fs::Metadata) -> std::io::Result<()> {
    let temp = path.with_file_name(format!(
        ".{}{TEMP_SUFFIX}",
        path.file_name().unwrap().to_string_lossy()
    ));
    let _ = fs::remove_file(&temp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    chown(&temp, Some(like.uid()), Some(like.gid()))?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(like.mode() & 0o7777))?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    fs::File::open(path.parent().unwrap())?.sync_all()
}

const PAM_DIR: &str = "/etc/pam.d";
const BACKUP_SUFFIX: &str = ".twofold-test-backup";
const TEMP_SUFFIX: &str = ".twofold-test-tmp";

// ---- sshd.

/// Debian's sshd on a loopback port, with `/etc/pam.d/sshd` replaced by the test stack.
pub struct SshHost {
    // Field order is drop order: the daemon stops, then the stack is restored, then files go.
    pub sshd: Sshd,
    _stack: SystemStack,
    pub twofold: Twofold,
}

impl SshHost {
    /// A host whose sshd requires `methods` (`AuthenticationMethods`); the methods it names
    /// (`keyboard-interactive`, `password`) are the ones switched on.
    pub fn start(tag: &str, twofold: Twofold, methods: &str) -> SshHost {
        let stack = SystemStack::install("sshd", &twofold.pam_stack());
        let sshd = Sshd::start(&twofold.dir.subdir("sshd"), methods);
        eprintln!("{tag}: sshd on 127.0.0.1:{}", sshd.port);
        SshHost {
            sshd,
            _stack: stack,
            twofold,
        }
    }

    /// Logs in as `user`, answering the prompts in order from `answers` (then empty answers), and
    /// runs `REMOTE_COMMAND`.
    pub fn login(&self, user: &TestUser, answers: &[&str]) -> SshLogin {
        self.login_with(user, None, scripted(answers))
    }

    /// Logs in as `user`, offering the Ed25519 `key` first if given (`publickey`); `answer` sees
    /// the requests so far (the newest last) and returns the answers to the newest one's prompts.
    pub fn login_with(
        &self,
        user: &TestUser,
        key: Option<&Path>,
        answer: impl FnMut(&[Request]) -> Vec<String>,
    ) -> SshLogin {
        let mut args = Vec::new();
        if let Some(key) = key {
            args.push("--key".into());
            args.push(key.as_os_str().to_owned());
        }
        self.run_client(user, &args, None, answer)
    }

    /// Logs in as `user` with the `password` method (sshd's PasswordAuthentication), sending
    /// `password`, and runs `REMOTE_COMMAND`. sshd answers every hidden PAM prompt with it.
    pub fn login_by_password(&self, user: &TestUser, password: &str) -> SshLogin {
        let login = self.run_client(user, &["--password".into()], Some(password), |requests| {
            panic!("the password method has no prompts: {requests:#?}")
        });
        assert!(login.requests.is_empty(), "{login:#?}");
        login
    }

    /// Runs the client with `args`; `first_line` goes to its stdin before anything else (the
    /// password, out of the command line), then `answer`'s answers to each request.
    fn run_client(
        &self,
        user: &TestUser,
        args: &[std::ffi::OsString],
        first_line: Option<&str>,
        mut answer: impl FnMut(&[Request]) -> Vec<String>,
    ) -> SshLogin {
        let mut command = Command::new(PYTHON);
        command
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/ssh_login.py"))
            .args(["--port", &self.sshd.port.to_string(), "--user", &user.name])
            .args(args)
            .args(["--command", REMOTE_COMMAND]);
        let mut child = root::timed(&mut command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the paramiko client");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(line) = first_line {
            // As with the answers: a client that already gave up says why in its result.
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let mut requests = Vec::new();
        let mut result = Value::Null;
        for line in stdout.lines() {
            let line = line.expect("read the client's output");
            let event: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("client printed {line:?}: {e}"));
            match event["event"].as_str() {
                Some("request") => {
                    requests.push(Request::from_json(&event));
                    let wanted = requests.last().unwrap().prompts.len();
                    let mut answers = answer(&requests);
                    answers.resize(wanted, String::new());
                    for a in &answers {
                        // A client that already gave up is not an error here; its result says why.
                        let _ = writeln!(stdin, "{a}");
                    }
                    let _ = stdin.flush();
                }
                Some("result") => result = event,
                _ => panic!("unexpected client output: {line}"),
            }
        }
        drop(stdin);
        let status = child.wait().expect("wait for the client");
        let login = SshLogin {
            code: status.code(),
            requests,
            result,
            client_stderr: stderr.join().unwrap_or_default(),
            sshd_log: self.sshd.log_tail(),
        };
        assert_ne!(
            login.code,
            Some(124),
            "the ssh client timed out: {login:#?}"
        );
        login
    }
}

/// An answer function that types `answers` in order, then empty answers.
pub fn scripted(answers: &[&str]) -> impl FnMut(&[Request]) -> Vec<String> {
    let mut left: std::collections::VecDeque<String> =
        answers.iter().map(|a| a.to_string()).collect();
    move |requests: &[Request]| {
        let wanted = requests.last().map_or(0, |r| r.prompts.len());
        (0..wanted)
            .map(|_| left.pop_front().unwrap_or_default())
            .collect()
    }
}

/// One keyboard-interactive request as the client received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub title: String,
    pub instructions: String,
    /// Each prompt's text and whether it echoes.
    pub prompts: Vec<(String, bool)>,
}

impl Request {
    fn from_json(event: &Value) -> Request {
        let text = |key: &str| event[key].as_str().unwrap_or_default().to_string();
        let prompts = event["prompts"]
            .as_array()
            .expect("prompts")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap_or_default().to_string(),
                    p[1].as_bool().unwrap_or(false),
                )
            })
            .collect();
        Request {
            title: text("title"),
            instructions: text("instructions"),
            prompts,
        }
    }

    /// Everything this request showed: title, instructions and prompt texts.
    pub fn text(&self) -> String {
        let mut all = format!("{}\n{}\n", self.title, self.instructions);
        for (prompt, _) in &self.prompts {
            all.push_str(prompt);
            all.push('\n');
        }
        all
    }
}

/// What one ssh login showed and did.
#[derive(Debug)]
pub struct SshLogin {
    pub code: Option<i32>,
    pub requests: Vec<Request>,
    /// The client's final JSON line (`outcome`, `stdout`, `exit_status`, `error`...).
    pub result: Value,
    // The two logs are read in failure messages (Debug).
    #[allow(dead_code)]
    pub client_stderr: String,
    #[allow(dead_code)]
    pub sshd_log: String,
}

impl SshLogin {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0) && self.result["outcome"] == "success"
    }

    /// The remote command's output.
    pub fn stdout(&self) -> &str {
        self.result["stdout"].as_str().unwrap_or_default()
    }

    /// The userauth banner: where sshd sends PAM text that followed the last prompt of a
    /// successful login.
    pub fn banner(&self) -> &str {
        self.result["banner"].as_str().unwrap_or_default()
    }

    /// Every text the server showed, in order: the requests, then the banner.
    pub fn shown(&self) -> String {
        let mut all: String = self.requests.iter().map(Request::text).collect();
        all.push_str(self.banner());
        all
    }

    /// Whether any request ended with the module's code prompt, so the login reached the module.
    pub fn asked_for_code(&self) -> bool {
        self.requests.iter().any(|r| {
            r.prompts
                .iter()
                .any(|(p, echo)| p.ends_with(CODE_PROMPT) && !echo)
        })
    }

    #[track_caller]
    pub fn assert_success(&self) -> &SshLogin {
        assert!(self.succeeded(), "the login failed: {self:#?}");
        assert_eq!(self.result["exit_status"], 0, "{self:#?}");
        self
    }

    /// Denied by authentication (not an error on the way), and no command ran.
    #[track_caller]
    pub fn assert_denied(&self) -> &SshLogin {
        assert_eq!(self.code, Some(1), "not a denial: {self:#?}");
        assert_eq!(self.result["outcome"], "denied", "{self:#?}");
        assert!(
            self.result.get("stdout").is_none(),
            "a command ran: {self:#?}"
        );
        self
    }
}

/// Debian's sshd, `-D -e`, on a free loopback port; stopped on drop.
pub struct Sshd {
    pub port: u16,
    child: Child,
    log: PathBuf,
    made_privsep_dir: bool,
}

impl Sshd {
    /// Starts sshd with a fresh host key in `dir`, requiring `methods`, and waits until it accepts.
    pub fn start(dir: &Path, methods: &str) -> Sshd {
        let host_key = dir.join("host_ed25519");
        run_quietly(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "twofold-e2e-host",
                    "-f",
                ])
                .arg(&host_key),
        );
        let made_privsep_dir = !Path::new(PRIVSEP_DIR).exists();
        if made_privsep_dir {
            fs::DirBuilder::new()
                .mode(0o755)
                .create(PRIVSEP_DIR)
                .expect("create /run/sshd");
        }
        let port = free_port();
        let yes_no = |method: &str| {
            if methods.split([',', ' ']).any(|m| m == method) {
                "yes"
            } else {
                "no"
            }
        };
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {}\n\
                 PidFile {}\n\
                 UsePAM yes\n\
                 KbdInteractiveAuthentication {}\n\
                 PasswordAuthentication {}\n\
                 PubkeyAuthentication yes\n\
                 AuthenticationMethods {methods}\n\
                 AuthorizedKeysFile .ssh/authorized_keys\n\
                 PermitRootLogin no\n\
                 LoginGraceTime 30\n\
                 UseDNS no\n\
                 PrintMotd no\n\
                 PrintLastLog no\n\
                 LogLevel DEBUG1\n",
                host_key.display(),
                dir.join("sshd.pid").display(),
                yes_no("keyboard-interactive"),
                yes_no("password"),
            ),
        )
        .unwrap();
        run_quietly(Command::new(SSHD).arg("-t").arg("-f").arg(&config));
        let log = dir.join("sshd.log");
        let log_file = fs::File::create(&log).unwrap();
        let mut command = Command::new(SSHD);
        command
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        // A test process killed outright runs no Drop: the daemon must not outlive it.
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command.spawn().expect("start sshd");
        let mut sshd = Sshd {
            port,
            child,
            log,
            made_privsep_dir,
        };
        sshd.wait_until_accepting();
        sshd
    }

    /// The last lines of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn wait_until_accepting(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("sshd exited ({status}): {}", self.log_tail());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd does not accept on port {}: {}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.made_privsep_dir {
            let _ = fs::remove_dir(PRIVSEP_DIR);
        }
    }
}

/// Gives `user` an Ed25519 key pair: the public half in `~/.ssh/authorized_keys` (owned by the
/// user, modes 0700 and 0600, as sshd's StrictModes wants), the private half returned.
pub fn authorize_new_key(user: &TestUser, dir: &Path) -> PathBuf {
    let key = dir.join(format!("{}_ed25519", user.name));
    run_quietly(
        Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "twofold-e2e-client",
                "-f",
            ])
            .arg(&key),
    );
    let ssh_dir = user.home.join(".ssh");
    fs::DirBuilder::new().mode(0o700).create(&ssh_dir).unwrap();
    let authorized = ssh_dir.join("authorized_keys");
    fs::write(&authorized, fs::read(key.with_extension("pub")).unwrap()).unwrap();
    fs::set_permissions(&authorized, fs::Permissions::from_mode(0o600)).unwrap();
    for path in [&ssh_dir, &authorized] {
        chown(path, Some(user.uid), Some(user.gid)).unwrap();
    }
    key
}

/// Picks a loopback port nobody listens on (the kernel's choice, released for sshd).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// The module's code prompt.
pub const CODE_PROMPT: &str = "Verification code: ";
/// What the remote side runs: proves the command ran as the user.
pub const REMOTE_COMMAND: &str = "echo \"twofold-e2e-ran-as:$(id -un)\"";
const PRIVSEP_DIR: &str = "/run/sshd";
/// Debian's python3, which has paramiko (the one on PATH may not).
const PYTHON: &str = "/usr/bin/python3";
const SSHD: &str = "/usr/sbin/sshd";

// ---- sudo.

/// `/etc/pam.d/sudo` replaced by the test stack.
pub struct SudoHost {
    // Field order is drop order: the stack is restored before the config it names goes.
    _stack: SystemStack,
    pub twofold: Twofold,
}

impl SudoHost {
    pub fn new(tag: &str) -> SudoHost {
        let twofold = Twofold::new(tag, "", "");
        let stack = SystemStack::install("sudo", &twofold.pam_stack());
        remove_stale_sudoers_rules();
        SudoHost {
            _stack: stack,
            twofold,
        }
    }

    /// Lets `user` run anything as root with sudo (after authenticating), until dropped.
    pub fn allow(&self, user: &TestUser) -> SudoRule {
        let name = format!("{SUDOERS_PREFIX}{}", root::unique("r"));
        let draft = self.twofold.dir.write(
            &name,
            format!(
                "# twofold end-to-end test\n\
                 Defaults:{user} lecture=never\n\
                 {user} ALL=(ALL) ALL\n",
                user = user.name
            ),
        );
        fs::set_permissions(&draft, fs::Permissions::from_mode(0o440)).unwrap();
        run_quietly(Command::new("visudo").arg("-cf").arg(&draft));
        let path = Path::new(SUDOERS_DIR).join(&name);
        fs::copy(&draft, &path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        SudoRule {
            path,
            user: user.name.clone(),
        }
    }

    /// Runs `sudo -S -k id -un` as `user`, typing `answers` on stdin, one a line.
    ///
    /// No `-p`: sudo then shows every prompt as its own (passprompt_override), and the module's
    /// code prompt could not be told from the password prompt. Without it, sudo shows its own
    /// prompt for pam_unix's `Password: ` and the module's prompt as it is.
    pub fn sudo(&self, user: &TestUser, answers: &[&str]) -> SudoRun {
        let stdin: String = answers.iter().map(|a| format!("{a}\n")).collect();
        let mut child = root::timed(
            Command::new("setpriv")
                .arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .args(["--init-groups", "--", "sudo", "-S", "-k"])
                .args(["id", "-un"]),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sudo");
        // sudo may exit before reading everything: a broken pipe is not a test failure.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let output = child.wait_with_output().expect("wait for sudo");
        let run = SudoRun {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert_ne!(run.code, Some(124), "sudo timed out: {run:#?}");
        run
    }
}

/// A sudoers drop-in for one user; removed on drop, with what sudo kept about the user.
pub struct SudoRule {
    path: PathBuf,
    user: String,
}

impl Drop for SudoRule {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        for dir in SUDO_USER_STATE {
            let _ = fs::remove_file(Path::new(dir).join(&self.user));
        }
    }
}

/// What `sudo` printed and returned.
#[derive(Debug)]
pub struct SudoRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl SudoRun {
    /// The command ran as root.
    #[track_caller]
    pub fn assert_ran_as_root(&self) -> &SudoRun {
        assert_eq!(self.code, Some(0), "sudo failed: {self:#?}");
        assert_eq!(self.stdout, "root\n", "{self:#?}");
        self
    }

    /// Refused: a failure exit and no command output.
    #[track_caller]
    pub fn assert_refused(&self) -> &SudoRun {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "sudo did not fail: {self:#?}"
        );
        assert!(
            !self.stdout.lines().any(|l| l == "root"),
            "the command ran: {self:#?}"
        );
        self
    }
}

/// Removes drop-ins a killed run left (the lock is held: no live test owns one).
fn remove_stale_sudoers_rules() {
    for entry in fs::read_dir(SUDOERS_DIR).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SUDOERS_PREFIX)
        {
            eprintln!(
                "removing {} left by an interrupted run",
                entry.path().display()
            );
            let _ = fs::remove_file(entry.path());
        }
    }
}

const SUDOERS_DIR: &str = "/etc/sudoers.d";
/// sudo ignores drop-ins whose names contain a dot, so none here does.
const SUDOERS_PREFIX: &str = "twofold-test-";
/// Where sudo keeps per-user files (lecture marks, timestamps).
const SUDO_USER_STATE: [&str; 2] = ["/var/lib/sudo/lectured", "/run/sudo/ts"];

// ---- Shared.

/// TOTP code from `oathtool` (an independent implementation) for `secret` at now + `offset_secs`.
pub fn oathtool_code(secret: &str, offset_secs: u64) -> String {
    let at = root::totp::unix_now() + offset_secs;
    let output = Command::new("oathtool")
        .args(["--totp", "--base32"])
        .arg(format!("--now=@{at}"))
        .arg(secret)
        .output()
        .expect("run oathtool");
    assert!(output.status.success(), "oathtool: {output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Runs a setup tool and panics with its output if it fails.
fn run_quietly(command: &mut Command) {
    let output = root::timed(command).output().expect("run a setup tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---- Enrollment at login, as the client sees it.

/// The prompt for the code that confirms an enrollment at login.
pub const CONFIRM_PROMPT: &str = "Code from the app to confirm: ";
/// The first line of an enrollment at login.
pub const ENROLL_INTRO: &str = "Two-factor authentication is not set up for this account yet. \
                                Scan this QR code with an authenticator app:";
/// Starts the line with the key as text.
pub const KEY_LINE: &str = "Or type this key into the app: ";
/// The prompt that holds the backup codes on screen after enrolling at login.
pub const STORED_PROMPT: &str = "Press Enter once you have stored them: ";

/// The base32 key from the key line in `text` (groups of four separated by single spaces).
pub fn enrollment_key(text: &str) -> Option<String> {
    let line = text.lines().find_map(|l| l.strip_prefix(KEY_LINE))?;
    let groups: Vec<&str> = line.split(' ').collect();
    let well_formed = groups.iter().enumerate().all(|(i, g)| {
        (if i + 1 == groups.len() {
            (1..=4).contains(&g.len())
        } else {
            g.len() == 4
        }) && g
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    });
    assert!(well_formed, "key line not in groups of four: {line:?}");
    Some(groups.concat())
}

/// The QR drawing in `text`: the lines between the intro and the key line.
pub fn qr_drawing(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.ends_with(ENROLL_INTRO))
        .unwrap_or_else(|| panic!("no enrollment intro in {text:?}"))
        + 1;
    let end = lines
        .iter()
        .position(|l| l.starts_with(KEY_LINE))
        .unwrap_or_else(|| panic!("no key line in {text:?}"));
    assert!(end > start + 10, "no QR drawing in {text:?}");
    lines[start..end].iter().map(|l| l.to_string()).collect()
}

/// Decodes a QR drawing in the default (light-on-dark) style with `zbarimg`.
pub fn decode_qr(drawing: &[String], image: &Path) -> String {
    assert!(
        crate::qr::zbarimg_available(),
        "zbarimg is missing (Debian package zbar-tools): the QR code must be decoded"
    );
    // Light modules are the ink in this style.
    let modules = crate::qr::parse_half_blocks(drawing, false);
    crate::qr::decode(&modules, image).unwrap_or_else(|e| panic!("{e}"))
}

/// The backup codes in `text` (`abcde-fghjk`: ten letters of the backup-code alphabet).
pub fn backup_codes_in(text: &str) -> Vec<String> {
    const ALPHABET: &str = "abcdefghjkmnpqrstuvwxyz23456789";
    text.split_whitespace()
        .filter(|word| {
            word.len() == 11
                && word.as_bytes()[5] == b'-'
                && word
                    .chars()
                    .enumerate()
                    .all(|(i, c)| i == 5 || ALPHABET.contains(c))
        })
        .map(str::to_string)
        .collect()
}
