//! The directory backend with a real slapd (tests/ldap): two daemons with two sockets, both
//! `backend = "ldap"` on the same server, play two hosts of a fleet. A code spent on one is spent
//! on both; racers over both hosts have one winner; a dead or hung directory fails closed within
//! the deadline; a server whose certificate the CA file does not vouch for is refused, over
//! LDAPS and StartTLS alike.

mod common;
mod ldap;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use twofold_core::backup::BackupCodes;
use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::totp::{Algorithm, Digits, Secret as TotpSecret, TotpKey};
use twofold_proto::{Checked, Request, Response, Secret, Snapshot};

use common::*;
use ldap::Slapd;

/// One host: a daemon on its own socket, its directory settings in its own twofoldd.toml.
struct Host {
    _host: common::Host,
    socket: PathBuf,
    child: Child,
}

impl Host {
    /// A daemon on `servers` (TOML array items), with extra `[ldap]` lines.
    fn start(servers: &str, extra: &str) -> Host {
        let host = common::Host::new("[throttle]\nmax_failures = 20\n");
        let password = host
            .dir
            .write("ldap.secret", format!("{}\n", ldap::BIND_PASSWORD));
        let daemon_toml = host.dir.write(
            "twofoldd.toml",
            format!(
                "backend = \"ldap\"\n[ldap]\nservers = [{servers}]\nbase_dn = \"{}\"\n\
                 bind_dn = \"{}\"\nbind_password_file = \"{}\"\n\
                 connect_timeout_ms = 500\nop_timeout_ms = 700\ndeadline_ms = {DEADLINE_MS}\n{extra}",
                ldap::BASE,
                ldap::BIND_DN,
                password.display()
            ),
        );
        let socket = host.dir.path().join("twofoldd.sock");
        let child = start_twofoldd(&host.config, &daemon_toml, &socket);
        Host {
            _host: host,
            socket,
            child,
        }
    }

    fn on(slapd: &Slapd) -> Host {
        Host::start(&format!("\"{}\"", slapd.url()), "")
    }

    fn ask(&self, request: &Request) -> Response {
        ask(&self.socket, request)
    }

    fn load(&self, user: &str) -> Snapshot {
        match self.ask(&Request::Load { user: user.into() }) {
            Response::Loaded(snapshot) => snapshot,
            other => panic!("load: {other:?}"),
        }
    }

    fn check(&self, user: &str, answer: &str) -> Response {
        self.ask(&Request::CheckCode {
            user: user.into(),
            answer: Secret::new(answer),
        })
    }

    /// Enrolls `user` with a new key and backup codes through this daemon (a Replace at the
    /// generation it loads), as the CLI does.
    fn enroll(&self, user: &str) -> Enrolled {
        let key = TotpKey {
            secret: TotpSecret::generate().unwrap(),
            algorithm: Algorithm::Sha1,
            digits: Digits::SIX,
            period: 30,
        };
        let codes = BackupCodes::generate(BACKUP_CODES, CHEAP).unwrap();
        let record = Record {
            totp: Some(key.clone()),
            window: None,
            throttle: None,
            backup_codes: codes.hashed,
            keys: Vec::new(),
        };
        let current = self.load(user);
        let replaced = self.ask(&Request::Replace {
            user: user.into(),
            generation: current.generation,
            record: Some(Secret::new(&record.to_toml())),
            state: State::default(),
        });
        assert!(
            matches!(replaced, Response::Written { .. }),
            "enroll: {replaced:?}"
        );
        Enrolled {
            user: user.into(),
            key,
            codes: codes.plain.iter().map(|c| c.to_string()).collect(),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ask(socket: &Path, request: &Request) -> Response {
    ask_twofoldd(socket, request)
}

fn accepted(response: &Response) -> bool {
    matches!(response, Response::Checked(Checked::Accepted { .. }))
}

/// The daemon's deadline in these tests, and what "within the deadline" may add for the socket
/// and the test's own scheduling.
const DEADLINE_MS: u64 = 1500;
const SLACK: Duration = Duration::from_millis(700);

#[test]
fn enrolled_on_one_host_a_code_spent_there_is_refused_on_the_other() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let (a, b) = (Host::on(&slapd), Host::on(&slapd));
    assert_eq!(b.load("alice").record, None);
    let alice = a.enroll("alice");
    let seen = b.load("alice");
    let text = seen.record.expect("host B sees the record host A wrote");
    let record = Record::parse(text.0.as_bytes()).unwrap();
    assert_eq!(record.totp.unwrap().secret, alice.key.secret);
    assert_eq!(seen.generation, a.load("alice").generation);
    // In the directory as the schema says: the class, the record, one tf1: state value.
    assert!(slapd
        .attribute("alice", "objectClass")
        .iter()
        .any(|c| c == "twofoldAccount"));
    let state = slapd.attribute("alice", "twofoldState");
    assert_eq!(state.len(), 1);
    assert!(state[0].starts_with("tf1:"), "{state:?}");

    settle_step(30, 3);
    let code = alice.code(0);
    assert!(accepted(&a.check("alice", &code)));
    assert_eq!(b.check("alice", &code), Response::Checked(Checked::Denied));
    // A backup code too: spent on B, refused on A.
    assert!(accepted(&b.check("alice", &alice.codes[0])));
    assert_eq!(
        a.check("alice", &alice.codes[0]),
        Response::Checked(Checked::Denied)
    );
    // Bob has a people entry but no enrollment: not enrolled, on either host.
    assert_eq!(
        b.check("bob", "123456"),
        Response::Checked(Checked::NotEnrolled)
    );
    match a.ask(&Request::Status) {
        Response::Status { store, detail } => {
            assert_eq!(store, "ldap");
            assert!(detail.contains(&slapd.url()), "{detail}");
        }
        other => panic!("status: {other:?}"),
    }
}

#[test]
fn removing_the_enrollment_takes_the_class_and_both_attributes() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let a = Host::on(&slapd);
    a.enroll("bob");
    let current = a.load("bob");
    let text = current.record.clone().expect("bob's record");
    let removed = a.ask(&Request::Replace {
        user: "bob".into(),
        generation: current.generation,
        record: None,
        state: State::default(),
    });
    assert_eq!(removed, Response::Written { generation: 0 });
    assert_eq!(a.load("bob").record, None);
    assert!(slapd.attribute("bob", "twofoldState").is_empty());
    assert!(slapd.attribute("bob", "twofoldRecord").is_empty());
    assert!(!slapd
        .attribute("bob", "objectClass")
        .iter()
        .any(|c| c == "twofoldAccount"));
    // No people entry: nothing to enroll into, and the answer says why.
    let refused = a.ask(&Request::Replace {
        user: "carol".into(),
        generation: 0,
        record: Some(text),
        state: State::default(),
    });
    assert!(
        matches!(&refused, Response::Unavailable(why) if why.contains("no entry matches (uid=carol)")),
        "{refused:?}"
    );
}

#[test]
fn list_answers_the_enrolled_entries_of_the_directory_on_every_host() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let (a, b) = (Host::on(&slapd), Host::on(&slapd));
    // People entries without the class are not enrolled.
    assert_eq!(b.ask(&Request::List), Response::Users(vec![]));
    a.enroll("bob");
    a.enroll("alice");
    assert_eq!(
        b.ask(&Request::List),
        Response::Users(vec!["alice".into(), "bob".into()])
    );
    let current = a.load("bob");
    let removed = a.ask(&Request::Replace {
        user: "bob".into(),
        generation: current.generation,
        record: None,
        state: State::default(),
    });
    assert_eq!(removed, Response::Written { generation: 0 });
    assert_eq!(b.ask(&Request::List), Response::Users(vec!["alice".into()]));
}

#[test]
fn a_listing_fails_closed_within_the_deadline_when_the_directory_hangs() {
    if !ldap::available() {
        return;
    }
    let mut slapd = Slapd::start();
    let a = Host::on(&slapd);
    a.enroll("alice");
    slapd.stop();
    let started = Instant::now();
    let answer = a.ask(&Request::List);
    let took = started.elapsed();
    slapd.cont();
    assert!(
        matches!(&answer, Response::Unavailable(why) if why.contains("timed out") || why.contains("deadline")),
        "{answer:?}"
    );
    assert!(
        took < Duration::from_millis(DEADLINE_MS) + SLACK,
        "took {took:?}"
    );
}

#[test]
fn an_enrolled_entry_whose_record_cannot_be_read_is_an_error_not_unenrolled() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let a = Host::on(&slapd);
    a.enroll("alice");
    // As an ACL hiding the record would look: the class is there, the record is not.
    slapd.admin_modify(&format!(
        "dn: uid=alice,ou=people,{}\nchangetype: modify\ndelete: twofoldRecord\n",
        ldap::BASE
    ));
    let answer = a.check("alice", "123456");
    assert!(
        matches!(&answer, Response::Unavailable(why) if why.contains("ACL")),
        "{answer:?}"
    );
    let answer = a.ask(&Request::Load {
        user: "alice".into(),
    });
    assert!(matches!(answer, Response::Unavailable(_)), "{answer:?}");
}

#[test]
fn eight_racers_over_two_hosts_with_one_code_have_one_winner_every_trial() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let hosts = [Host::on(&slapd), Host::on(&slapd)];
    let sockets: Vec<PathBuf> = hosts.iter().map(|h| h.socket.clone()).collect();
    for trial in 0..TRIALS {
        // A new key each trial: its replay guard starts afresh.
        let alice = hosts[trial % 2].enroll("alice");
        settle_step(30, 4);
        let code = alice.code(0);
        let gun = Arc::new(Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let socket = sockets[i % 2].clone();
                let gun = Arc::clone(&gun);
                let code = code.clone();
                std::thread::spawn(move || {
                    gun.wait();
                    ask(
                        &socket,
                        &Request::CheckCode {
                            user: "alice".into(),
                            answer: Secret::new(&code),
                        },
                    )
                })
            })
            .collect();
        let answers: Vec<Response> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners = answers.iter().filter(|a| accepted(a)).count();
        assert_eq!(winners, 1, "trial {trial}: {answers:?}");
        assert!(
            answers
                .iter()
                .all(|a| accepted(a) || *a == Response::Checked(Checked::Denied)),
            "trial {trial}: {answers:?}"
        );
    }
}

#[test]
fn eight_racers_over_two_hosts_with_one_backup_code_have_one_winner_every_trial() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let hosts = [Host::on(&slapd), Host::on(&slapd)];
    let sockets: Vec<PathBuf> = hosts.iter().map(|h| h.socket.clone()).collect();
    for trial in 0..BACKUP_CODE_TRIALS {
        // New codes each trial, and a state without the last trial's denials.
        let code = hosts[trial % 2].enroll("alice").codes[0].clone();
        let gun = Arc::new(Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let socket = sockets[i % 2].clone();
                let gun = Arc::clone(&gun);
                let code = code.clone();
                std::thread::spawn(move || {
                    gun.wait();
                    ask(
                        &socket,
                        &Request::CheckCode {
                            user: "alice".into(),
                            answer: Secret::new(&code),
                        },
                    )
                })
            })
            .collect();
        let answers: Vec<Response> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners = answers.iter().filter(|a| accepted(a)).count();
        assert_eq!(winners, 1, "trial {trial}: {answers:?}");
        assert!(
            answers
                .iter()
                .all(|a| accepted(a) || *a == Response::Checked(Checked::Denied)),
            "trial {trial}: {answers:?}"
        );
    }
}

#[test]
fn a_killed_directory_fails_closed_within_the_deadline_and_nothing_is_written() {
    if !ldap::available() {
        return;
    }
    let mut slapd = Slapd::start();
    let a = Host::on(&slapd);
    let alice = a.enroll("alice");
    let before = slapd.attribute("alice", "twofoldState");
    settle_step(30, 5);
    let code = alice.code(0);
    slapd.kill();
    for request in [
        Request::Load {
            user: "alice".into(),
        },
        Request::CheckCode {
            user: "alice".into(),
            answer: Secret::new(&code),
        },
    ] {
        let started = Instant::now();
        let answer = a.ask(&request);
        let took = started.elapsed();
        assert!(
            matches!(&answer, Response::Unavailable(why) if why.contains("127.0.0.1")),
            "{answer:?}"
        );
        assert!(
            took < Duration::from_millis(DEADLINE_MS) + SLACK,
            "took {took:?}"
        );
    }
    // Back up: the code was never spent, so it logs in now, once.
    slapd.run();
    assert_eq!(slapd.attribute("alice", "twofoldState"), before);
    assert!(accepted(&a.check("alice", &code)));
    assert_eq!(a.check("alice", &code), Response::Checked(Checked::Denied));
}

#[test]
fn a_hung_directory_fails_closed_within_the_deadline() {
    if !ldap::available() {
        return;
    }
    let mut slapd = Slapd::start();
    let a = Host::on(&slapd);
    let alice = a.enroll("alice");
    settle_step(30, 6);
    let code = alice.code(0);
    slapd.stop();
    let started = Instant::now();
    let answer = a.check("alice", &code);
    let took = started.elapsed();
    slapd.cont();
    assert!(
        matches!(&answer, Response::Unavailable(why) if why.contains("timed out") || why.contains("deadline")),
        "{answer:?}"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(DEADLINE_MS) + SLACK,
        "took {took:?}"
    );
    // Nothing was spent while it hung: the code works once it answers again.
    assert!(accepted(&a.check("alice", &code)));
}

#[test]
fn the_second_server_serves_when_the_first_is_down() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    // Nothing listens on the first: a refused connection moves on at once.
    let dead = format!("ldap://127.0.0.1:{}", free_port_now());
    let a = Host::start(&format!("\"{dead}\", \"{}\"", slapd.url()), "");
    let alice = a.enroll("alice");
    settle_step(30, 3);
    assert!(accepted(&a.check("alice", &alice.code(0))));
}

#[test]
fn ldaps_with_the_right_ca_works_and_with_another_ca_is_refused() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start_with_tls();
    let ca = slapd.ca_file.clone().unwrap();
    let trusted = Host::start(
        &format!("\"{}\"", slapd.tls_url()),
        &format!("ca_file = \"{}\"\n", ca.display()),
    );
    let alice = trusted.enroll("alice");
    assert!(trusted.load("alice").record.is_some());
    let other_ca = slapd.dir.path().join("other-ca.pem");
    let wrong = Host::start(
        &format!("\"{}\"", slapd.tls_url()),
        &format!("ca_file = \"{}\"\n", other_ca.display()),
    );
    settle_step(30, 3);
    let answer = wrong.check("alice", &alice.code(0));
    assert!(
        matches!(&answer, Response::Unavailable(why) if why.contains("ldaps://localhost")),
        "{answer:?}"
    );
    // Nothing was spent through the refused connection.
    assert!(accepted(&trusted.check("alice", &alice.code(0))));
}

#[test]
fn starttls_with_the_right_ca_works_and_with_another_ca_is_refused_writing_nothing() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start_with_tls();
    let url = slapd.starttls_url();
    let with_ca = |ca: &Path| {
        Host::start(
            &format!("\"{url}\""),
            &format!("starttls = true\nca_file = \"{}\"\n", ca.display()),
        )
    };
    let trusted = with_ca(slapd.ca_file.as_deref().unwrap());
    let alice = trusted.enroll("alice");
    let before = slapd.attribute("alice", "twofoldState");
    let wrong = with_ca(&slapd.dir.path().join("other-ca.pem"));
    settle_step(30, 3);
    let code = alice.code(0);
    for answer in [
        wrong.check("alice", &code),
        wrong.check("alice", &alice.codes[0]),
        wrong.ask(&Request::Load {
            user: "alice".into(),
        }),
    ] {
        assert!(
            matches!(&answer, Response::Unavailable(why)
                if why.contains(&url) && why.contains("certificate")),
            "{answer:?}"
        );
    }
    // An enrollment through the refused connection writes nothing either.
    let refused = wrong.ask(&Request::Replace {
        user: "bob".into(),
        generation: 0,
        record: trusted.load("alice").record,
        state: State::default(),
    });
    assert!(matches!(refused, Response::Unavailable(_)), "{refused:?}");
    assert!(slapd.attribute("bob", "twofoldRecord").is_empty());
    assert_eq!(slapd.attribute("alice", "twofoldState"), before);
    // Neither the code nor the backup code was spent: both log in through the trusted daemon.
    assert!(accepted(&trusted.check("alice", &code)));
    assert!(accepted(&trusted.check("alice", &alice.codes[0])));
    assert_eq!(
        trusted.check("alice", &code),
        Response::Checked(Checked::Denied)
    );
}

#[test]
fn starttls_to_a_server_that_offers_no_tls_fails_closed_instead_of_going_on_in_clear() {
    if !ldap::available() {
        return;
    }
    // Only for its CA: the server under test has no certificate, so it cannot start TLS.
    let tls = Slapd::start_with_tls();
    let plain = Slapd::start();
    let loopback = Host::on(&plain);
    let alice = loopback.enroll("alice");
    let before = plain.attribute("alice", "twofoldState");
    let url = format!("ldap://localhost:{}", plain.port);
    let upgraded = Host::start(
        &format!("\"{url}\""),
        &format!(
            "starttls = true\nca_file = \"{}\"\n",
            tls.ca_file.as_ref().unwrap().display()
        ),
    );
    settle_step(30, 3);
    let code = alice.code(0);
    let answer = upgraded.check("alice", &code);
    assert!(
        matches!(&answer, Response::Unavailable(why) if why.contains(&url)),
        "{answer:?}"
    );
    assert_eq!(plain.attribute("alice", "twofoldState"), before);
    assert!(accepted(&loopback.check("alice", &code)));
}

#[test]
fn a_bind_password_file_others_may_read_stops_the_daemon() {
    if !ldap::available() {
        return;
    }
    let host = common::Host::new("");
    let password = host.dir.write("ldap.secret", "x\n");
    std::fs::set_permissions(
        &password,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let daemon_toml = host.dir.write(
        "twofoldd.toml",
        format!(
            "backend = \"ldap\"\n[ldap]\nservers = [\"ldap://127.0.0.1:1\"]\nbase_dn = \"{}\"\n\
             bind_dn = \"{}\"\nbind_password_file = \"{}\"\n",
            ldap::BASE,
            ldap::BIND_DN,
            password.display()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_twofoldd-tested"))
        .arg("--config")
        .arg(&host.config)
        .arg("--daemon-config")
        .arg(&daemon_toml)
        .arg("--listen")
        .arg(host.dir.path().join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lets group or others read it"), "{stderr}");
}

fn free_port_now() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const TRIALS: usize = 50;
const BACKUP_CODE_TRIALS: usize = 20;
