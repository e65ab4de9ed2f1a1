//! As root: the real module with `store = "twofoldd"`, through real libpam, against the real
//! daemon serving a throwaway host's files. The module trusts only a root-owned socket with a root
//! daemon behind it, so these need root; under `CI=true` they fail rather than skip.

// Only the root-test gate of tests/root is used here.
#[allow(dead_code, unused_imports)]
#[macro_use]
mod root;
mod common;
// Only the slapd harness's start and attributes are used here.
#[allow(dead_code)]
mod ldap;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use twofold_proto::{Request, Response, Secret};

/// A daemon for `host`, on a socket of its own; killed when dropped.
struct Daemon {
    socket: PathBuf,
    child: Option<Child>,
    _run: TempDir,
}

impl Daemon {
    fn start(host: &Host) -> Daemon {
        Daemon::start_with(host, "")
    }

    /// A daemon with `daemon_config` as its twofoldd.toml.
    fn start_with(host: &Host, daemon_config: &str) -> Daemon {
        let run = TempDir::new("run");
        std::fs::set_permissions(run.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = run.path().join("twofoldd.sock");
        let daemon_toml = host.dir.write("twofoldd.toml", daemon_config);
        let child = start_twofoldd(&host.config, &daemon_toml, &socket);
        Daemon {
            socket,
            child: Some(child),
            _run: run,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A host whose records are served by its own daemon, and whose module and CLI use it.
fn host_with_daemon() -> (Host, Daemon) {
    let host = Host::new("");
    let daemon = Daemon::start(&host);
    let text = std::fs::read_to_string(&host.config).unwrap();
    host.write_config(&format!(
        "store = \"twofoldd\"\ndaemon_socket = \"{}\"\n{text}",
        daemon.socket.display()
    ));
    (host, daemon)
}

#[test]
fn a_login_through_the_daemon_spends_its_code_once() {
    needs_root!();
    let (host, _daemon) = host_with_daemon();
    let alice = host.enroll("alice");
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS)
        .assert_only_prompt(CODE_PROMPT);
    // The daemon wrote the replay guard into the host's state file.
    assert!(host.state("alice").last_step > 0);
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_AUTH_ERR);
    // A backup code, once.
    let code = alice.codes[0].clone();
    host.login("alice", &[&code]).assert_rc(PAM_SUCCESS);
    host.login("alice", &[&code]).assert_rc(PAM_AUTH_ERR);
}

#[test]
fn eight_racers_with_one_code_through_the_daemon_let_exactly_one_in() {
    needs_root!();
    let (host, _daemon) = host_with_daemon();
    let alice = host.enroll("alice");
    let code = alice.code(0);
    let confdir = host.confdir.clone();
    let start = Arc::new(Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (confdir, code, start) = (confdir.clone(), code.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                login(&confdir, "twofold", "alice", &[&code]).rc
            })
        })
        .collect();
    let codes: Vec<i32> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let wins = codes.iter().filter(|&&rc| rc == PAM_SUCCESS).count();
    assert_eq!(wins, 1, "{codes:?}");
    // The losers replayed the code: refused, and counted, so the last may find the user locked.
    assert!(
        codes
            .iter()
            .all(|&rc| [PAM_SUCCESS, PAM_AUTH_ERR, PAM_MAXTRIES].contains(&rc)),
        "{codes:?}"
    );
}

#[test]
fn with_the_daemon_down_or_its_socket_not_roots_the_login_fails_closed_before_any_prompt() {
    needs_root!();
    let (host, mut daemon) = host_with_daemon();
    let alice = host.enroll("alice");
    // A socket someone else owns could be anyone's daemon.
    std::os::unix::fs::chown(&daemon.socket, Some(65534), None).unwrap();
    let login = host.login("alice", &[&alice.code(0)]);
    login.assert_rc(PAM_AUTHINFO_UNAVAIL);
    assert!(login.prompts().is_empty(), "{:?}", login.prompts());
    std::os::unix::fs::chown(&daemon.socket, Some(0), None).unwrap();
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS);
    // Down: no fallback to the files, which the module could read itself.
    daemon.kill();
    let login = host.login("alice", &[&alice.code(1)]);
    login.assert_rc(PAM_AUTHINFO_UNAVAIL);
    assert!(login.prompts().is_empty());
    assert_eq!(
        login.errors(),
        ["Two-factor authentication is unavailable; contact your administrator."]
    );
}

const SCREEN_LOCKER: &str = "a_program_running_as_the_user_worker";

/// The worker of `a_program_running_as_the_user_has_its_own_code_checked_by_the_daemon`: the
/// real module in a process of `nobody`, as a screen locker would load it.
#[test]
fn a_program_running_as_the_user_worker() {
    let Some(role) = worker_role() else {
        // An ordinary run: nothing to do, but CI counts this as a root test that ran.
        needs_root!();
        return;
    };
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let confdir = PathBuf::from(env("TWOFOLD_CONFDIR"));
    let login = login(&confdir, "twofold", &role, &[&env("TWOFOLD_ANSWER")]);
    common::report(common::RESULT, login.rc);
}

#[test]
fn a_program_running_as_the_user_has_its_own_code_checked_by_the_daemon() {
    needs_root!();
    let (host, _daemon) = host_with_daemon();
    // As packaged: the config readable by all (it holds no secret), the records root's.
    for dir in [host.dir.path(), host.confdir.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&host.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let nobody = host.enroll("nobody");
    host.enroll("alice");
    let run_as_nobody = |user: &str, answer: &str| -> i32 {
        let out = worker_command(SCREEN_LOCKER, user)
            .env("TWOFOLD_CONFDIR", &host.confdir)
            .env("TWOFOLD_ANSWER", answer)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(common::RESULT))
            .unwrap_or_else(|| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
            .parse()
            .unwrap()
    };
    // The user's own code: checked by the daemon, spent there.
    assert_eq!(run_as_nobody("nobody", &nobody.code(0)), PAM_SUCCESS);
    assert!(host.state("nobody").last_step > 0);
    assert_eq!(
        run_as_nobody("nobody", &nobody.code(0)),
        PAM_AUTH_ERR,
        "replayed"
    );
    // Another user's: refused by the daemon, whatever the code.
    assert_eq!(run_as_nobody("alice", "123456"), PAM_AUTHINFO_UNAVAIL);
    assert!(host.state("alice").failures.is_empty());
}

fn twofold(host: &Host, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_twofold-tested"))
        .arg("--config")
        .arg(&host.config)
        .args(args)
        .output()
        .expect("run twofold")
}

#[test]
fn the_cli_works_through_the_daemon_and_says_so_when_it_is_down() {
    needs_root!();
    let (host, mut daemon) = host_with_daemon();
    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let key = twofold_tests::codes::key(SECRET);
    let code = code_at(&key, current_step(key.period));
    let enrolled = twofold(
        &host,
        &[
            "enroll", "--user", "alice", "--secret", SECRET, "--code", &code, "--qr", "none",
        ],
    );
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    // Written by the daemon into its backend (this host's files).
    assert!(host.record_path("alice").exists());
    let status = twofold(&host, &["status", "--user", "alice", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["totp"], true);
    let check = twofold(
        &host,
        &["check", "--pam-dir", host.confdir.to_str().unwrap()],
    );
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(check_out.contains("store: twofoldd"), "{check_out}");
    assert!(check_out.contains(": up, backend files"), "{check_out}");
    let disabled = twofold(&host, &["disable", "--user", "alice"]);
    assert!(
        disabled.status.success(),
        "{}",
        String::from_utf8_lossy(&disabled.stderr)
    );
    assert!(!host.record_path("alice").exists());
    daemon.kill();
    let down = twofold(&host, &["status", "--user", "alice"]);
    assert!(!down.status.success());
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("twofoldd"), "{stderr}");
}

#[test]
fn a_record_moved_from_files_into_the_directory_logs_in_and_what_was_spent_stays_spent() {
    needs_root!();
    assert!(
        ldap::available() || std::env::var("CI").as_deref() != Ok("true"),
        "slapd is needed under CI=true (tests/run.sh installs it)"
    );
    if !ldap::available() {
        eprintln!("SKIPPED: slapd is not installed");
        return;
    }
    let slapd = ldap::Slapd::start();
    // alice uses the host's files first, and spends a code and a backup code there.
    let host = Host::new("");
    let alice = host.enroll("alice");
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS);
    host.login("alice", &[&alice.codes[0]])
        .assert_rc(PAM_SUCCESS);
    // Then the host joins the fleet: a daemon on the directory, and store = "twofoldd".
    let password = host
        .dir
        .write("ldap.secret", format!("{}\n", ldap::BIND_PASSWORD));
    let daemon = Daemon::start_with(
        &host,
        &format!(
            "backend = \"ldap\"\n[ldap]\nservers = [\"{}\"]\nbase_dn = \"{}\"\nbind_dn = \"{}\"\n\
             bind_password_file = \"{}\"\n",
            slapd.url(),
            ldap::BASE,
            ldap::BIND_DN,
            password.display()
        ),
    );
    let text = std::fs::read_to_string(&host.config).unwrap();
    host.write_config(&format!(
        "store = \"twofoldd\"\ndaemon_socket = \"{}\"\n{text}",
        daemon.socket.display()
    ));
    let moved = twofold(&host, &["migrate", "--user", "alice"]);
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert!(String::from_utf8_lossy(&moved.stdout).contains("alice: moved"));
    // Again: nothing changes, nothing is revived.
    let again = twofold(&host, &["migrate", "--user", "alice"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("already there"));
    assert_eq!(slapd.attribute("alice", "twofoldRecord").len(), 1);
    // Through the directory: what was spent on files stays spent, the rest logs in.
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_AUTH_ERR);
    host.login("alice", &[&alice.codes[0]])
        .assert_rc(PAM_AUTH_ERR);
    host.login("alice", &[&alice.codes[1]])
        .assert_rc(PAM_SUCCESS);
    // bob has no enrollment on files: nothing to move, and no error.
    let bob = twofold(&host, &["migrate", "--user", "bob"]);
    assert!(bob.status.success());
    assert!(String::from_utf8_lossy(&bob.stdout).contains("nothing to move"));
}

/// A host of the fleet: alice enrolled in a private slapd through an LDAP daemon, and the module
/// with store = "twofoldd".
fn fleet_host(slapd: &ldap::Slapd) -> (Host, Daemon, Enrolled) {
    let host = Host::new("");
    let password = host
        .dir
        .write("ldap.secret", format!("{}\n", ldap::BIND_PASSWORD));
    let daemon = Daemon::start_with(
        &host,
        &format!(
            "backend = \"ldap\"\n[ldap]\nservers = [\"{}\"]\nbase_dn = \"{}\"\nbind_dn = \"{}\"\n\
             bind_password_file = \"{}\"\nconnect_timeout_ms = 500\nop_timeout_ms = 700\n\
             deadline_ms = 1500\n",
            slapd.url(),
            ldap::BASE,
            ldap::BIND_DN,
            password.display()
        ),
    );
    let text = std::fs::read_to_string(&host.config).unwrap();
    host.write_config(&format!(
        "store = \"twofoldd\"\ndaemon_socket = \"{}\"\n{text}",
        daemon.socket.display()
    ));
    // Enrolled through the daemon, as the CLI does (the record lives only in the directory).
    let alice = enroll_in(
        &twofold_host::any_store::AnyStore::for_admin(&host.config()),
        "alice",
    );
    (host, daemon, alice)
}

fn slapd_needed() -> bool {
    assert!(
        ldap::available() || std::env::var("CI").as_deref() != Ok("true"),
        "slapd is needed under CI=true (tests/run.sh installs it)"
    );
    if !ldap::available() {
        eprintln!("SKIPPED: slapd is not installed");
    }
    ldap::available()
}

#[test]
fn the_directory_or_the_daemon_dying_at_the_code_prompt_fails_closed_and_spends_nothing() {
    needs_root!();
    if !slapd_needed() {
        return;
    }
    let slapd = std::sync::Arc::new(std::sync::Mutex::new(ldap::Slapd::start()));
    let (host, mut daemon, alice) = fleet_host(&slapd.lock().unwrap());
    let code = alice.code(0);
    // slapd dies while alice types her code.
    let mut session = Session::start(&host.confdir, "twofold", "alice", &[&code]);
    let dying = std::sync::Arc::clone(&slapd);
    session.on_prompt(move || dying.lock().unwrap().kill());
    let started = Instant::now();
    session.authenticate(0);
    let login = session.finish();
    login.assert_rc(PAM_AUTHINFO_UNAVAIL);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(login.prompts(), [CODE_PROMPT]);
    // Back up: the same code was not spent, and logs in.
    slapd.lock().unwrap().run();
    host.login("alice", &[&code]).assert_rc(PAM_SUCCESS);
    // The daemon dies while alice types the next one (a backup code).
    let backup = alice.codes[0].clone();
    let mut session = Session::start(&host.confdir, "twofold", "alice", &[&backup]);
    let socket = daemon.socket.clone();
    let pid = daemon.child.as_ref().unwrap().id();
    session.on_prompt(move || {
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        while UnixStream::connect(&socket).is_ok() {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    session.authenticate(0);
    session.finish().assert_rc(PAM_AUTHINFO_UNAVAIL);
    daemon.kill();
    // A new daemon: the backup code is still unspent.
    std::fs::remove_file(&daemon.socket).ok();
    let restarted = Daemon::start_with(
        &host,
        &std::fs::read_to_string(host.dir.path().join("twofoldd.toml")).unwrap(),
    );
    let text = std::fs::read_to_string(&host.config).unwrap();
    host.write_config(&text.replace(
        &daemon.socket.display().to_string(),
        &restarted.socket.display().to_string(),
    ));
    host.login("alice", &[&backup]).assert_rc(PAM_SUCCESS);
    host.login("alice", &[&backup]).assert_rc(PAM_AUTH_ERR);
}

#[test]
fn the_daemon_checks_a_password_through_the_named_pam_service_and_says_only_yes_or_no() {
    needs_root!();
    let alice = root::TestUser::create("pw");
    let password_only = root::Service::create(
        "pw",
        &["auth required pam_unix.so", "account required pam_unix.so"],
    );
    let host = Host::new("");
    // A stack that asks for more than the password (here an admin who put pam_twofold in the
    // web's stack too, for an enrolled user) must fail closed, not answer yes.
    host.enroll(&alice.name);
    let asks_twice = root::Service::create(
        "pw2",
        &[
            "auth required pam_unix.so",
            &format!("auth required {{module}} config={}", host.config.display()),
            "account required pam_unix.so",
        ],
    );
    let check = |daemon: &Daemon, user: &str, password: &str| {
        ask_twofoldd(
            &daemon.socket,
            &Request::CheckPassword {
                user: user.into(),
                password: Secret::new(password),
                rhost: Some("192.0.2.7".into()),
            },
        )
    };
    let daemon = Daemon::start_with(
        &host,
        &format!("password_service = \"{}\"\n", password_only.name),
    );
    let yes = Response::Password { accepted: true };
    let no = Response::Password { accepted: false };
    assert_eq!(check(&daemon, &alice.name, &alice.password), yes);
    assert_eq!(check(&daemon, &alice.name, "not the password"), no);
    // An unknown user is answered as a wrong password is.
    assert_eq!(check(&daemon, "tf_nobody_here", "whatever"), no);
    // The right password for an expired account is refused too (the log says why).
    let expired = Command::new("chage")
        .args(["-E", "0", &alice.name])
        .status()
        .unwrap();
    assert!(expired.success());
    assert_eq!(check(&daemon, &alice.name, &alice.password), no);
    Command::new("chage")
        .args(["-E", "-1", &alice.name])
        .status()
        .unwrap();
    assert_eq!(check(&daemon, &alice.name, &alice.password), yes);
    drop(daemon);
    let strict = Daemon::start_with(
        &host,
        &format!("password_service = \"{}\"\n", asks_twice.name),
    );
    match check(&strict, &alice.name, &alice.password) {
        Response::Unavailable(why) => assert!(why.contains("more than a password"), "{why}"),
        other => panic!("a stack asking twice answered {other:?}"),
    }
}
