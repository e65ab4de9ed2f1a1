//! Parallel logins, as separate processes (as sshd forks them), through the real Linux-PAM.
//!
//! Each login runs in a re-exec of this test binary (see `login_worker`). A worker starts its PAM
//! session (libpam reads the service file and loads the module), says it is ready, and waits for
//! its stdin to close; the parent closes all of them at once, so the logins really race.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// The test that acts as a worker in a re-exec'd process.
const WORKER: &str = "login_worker";

/// A throttle that eight failures cannot trip.
const NO_LOCK: &str = "[throttle]\nmax_failures = 20\n";

#[test]
fn login_worker() {
    let Some(role) = worker_role() else {
        return; // An ordinary test run: nothing to do.
    };
    assert_eq!(role, "login");
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let confdir = env("TWOFOLD_CONFDIR");
    let answer = env("TWOFOLD_ANSWER");
    let mut session = Session::start(
        Path::new(&confdir),
        "twofold",
        &env("TWOFOLD_USER"),
        &[&answer],
    );
    report(READY, "");
    wait_for_release();
    let start = monotonic_nanos();
    let rc = session.authenticate(0);
    let end = monotonic_nanos();
    report(SPAN, format!("{start} {end}"));
    report(RESULT, rc);
}

const SPAN: &str = "twofold-worker-span=";

/// Logs in each `(user, answer)` in its own process, all at the same moment; returns the PAM
/// codes in the same order.
fn race(host: &Host, logins: &[(&str, &str)]) -> Vec<i32> {
    race_timed(host, logins, Gun::Now).0
}

/// When the starting gun fires. The module reads the clock in whole seconds, so a race that
/// straddles a second boundary mixes two readings of "now".
#[derive(Clone, Copy)]
enum Gun {
    Now,
    /// Just after a second starts: every login reads the same second.
    EarlyInASecond,
    /// A moment before a second ends: the logins read two different seconds.
    JustBeforeASecondEnds,
}

impl Gun {
    fn wait(self) {
        let (target_ms, now_ms) = match self {
            Gun::Now => return,
            Gun::EarlyInASecond => (2, millis_into_second()),
            Gun::JustBeforeASecondEnds => (997, millis_into_second()),
        };
        let wait = (target_ms + 1000 - now_ms) % 1000;
        std::thread::sleep(Duration::from_millis(wait));
    }
}

fn millis_into_second() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::from(since_epoch.subsec_millis())
}

/// `race`, plus how many of the logins were running at the busiest moment.
fn race_timed(host: &Host, logins: &[(&str, &str)], gun: Gun) -> (Vec<i32>, usize) {
    let mut workers: Vec<Worker> = logins
        .iter()
        .map(|(user, answer)| {
            let mut command = worker_command(WORKER, "login");
            command
                .env("TWOFOLD_CONFDIR", &host.confdir)
                .env("TWOFOLD_USER", user)
                .env("TWOFOLD_ANSWER", answer);
            Worker::spawn(command)
        })
        .collect();
    for worker in &mut workers {
        worker.wait_for(READY);
    }
    gun.wait();
    for worker in &mut workers {
        worker.release();
    }
    let mut spans = Vec::new();
    let codes = workers
        .into_iter()
        .map(|mut worker| {
            let span = worker.wait_for(SPAN);
            let (start, end) = span.split_once(' ').expect("two times");
            spans.push((start.parse::<u64>().unwrap(), end.parse::<u64>().unwrap()));
            let rc = worker.wait_for(RESULT).parse().expect("a PAM code");
            let (ok, lines) = worker.finish();
            assert!(ok, "worker failed: {lines:?}");
            rc
        })
        .collect();
    // The busiest moment is the start of some login: count the logins running then.
    let overlap = spans
        .iter()
        .map(|&(at, _)| spans.iter().filter(|&&(s, e)| s <= at && at < e).count())
        .max()
        .unwrap_or(0);
    (codes, overlap)
}

fn monotonic_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: now is a valid, writable timespec; CLOCK_MONOTONIC is one clock for all processes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn count(codes: &[i32], wanted: i32) -> usize {
    codes.iter().filter(|&&rc| rc == wanted).count()
}

#[test]
fn one_code_typed_in_eight_parallel_logins_lets_exactly_one_in() {
    // Losers count as failures; a high limit keeps them from locking the user mid-race.
    let host = Host::new(NO_LOCK);
    let mut raced = 0;
    for round in 0..20 {
        let user = format!("racer{round}");
        let enrolled = host.enroll(&user);
        let code = enrolled.code(0);
        let (codes, overlap) = race_timed(&host, &[(user.as_str(), code.as_str()); 8], Gun::Now);
        eprintln!("round {round}: {overlap} of 8 logins overlapped");
        raced += usize::from(overlap >= 2);
        assert_eq!(count(&codes, PAM_SUCCESS), 1, "round {round}: {codes:?}");
        // The losers are replays, and count as failures (all seven, but for the bug that
        // `parallel_wrong_codes_across_a_second_boundary_are_all_counted` shows).
        let failures = host.state(&user).failures.len();
        assert!(
            (1..=7).contains(&failures),
            "round {round}: {failures} failures"
        );
        assert_eq!(count(&codes, PAM_AUTH_ERR), 7, "round {round}: {codes:?}");
        assert!(
            host.state(&user).last_step + 1 >= current_step(30),
            "round {round}"
        );
    }
    // Guard the guard: the logins must really have run at the same time.
    assert!(
        raced >= 5,
        "only {raced} of 20 rounds had overlapping logins"
    );
}

#[test]
fn one_backup_code_typed_in_eight_parallel_logins_lets_exactly_one_in() {
    let host = Host::new(NO_LOCK);
    for round in 0..20 {
        let user = format!("racer{round}");
        let enrolled = host.enroll(&user);
        let codes = race(
            &host,
            &[(user.as_str(), enrolled.codes[round % BACKUP_CODES].as_str()); 8],
        );
        assert_eq!(count(&codes, PAM_SUCCESS), 1, "round {round}: {codes:?}");
        assert_eq!(count(&codes, PAM_AUTH_ERR), 7, "round {round}: {codes:?}");
        let state = host.state(&user);
        assert_eq!(
            state.spent_codes,
            1 << (round % BACKUP_CODES),
            "round {round}"
        );
    }
}

#[test]
fn eight_users_logging_in_at_once_all_get_in() {
    let host = Host::new("");
    for round in 0..3 {
        let users: Vec<String> = (0..8).map(|i| format!("user{round}x{i}")).collect();
        let answers: Vec<String> = users.iter().map(|u| host.enroll(u).code(0)).collect();
        let logins: Vec<(&str, &str)> = users
            .iter()
            .zip(&answers)
            .map(|(u, a)| (u.as_str(), a.as_str()))
            .collect();
        let codes = race(&host, &logins);
        assert_eq!(codes, vec![PAM_SUCCESS; 8], "round {round}");
    }
}

#[test]
fn different_backup_codes_of_one_user_at_once_all_get_in() {
    // No update is lost: every spend lands in the state, each on top of the others.
    let host = Host::new("");
    for round in 0..5 {
        let user = format!("user{round}");
        let enrolled = host.enroll(&user);
        let logins: Vec<(&str, &str)> = enrolled
            .codes
            .iter()
            .map(|c| (user.as_str(), c.as_str()))
            .collect();
        let codes = race(&host, &logins);
        assert_eq!(codes, vec![PAM_SUCCESS; BACKUP_CODES], "round {round}");
        assert_eq!(
            host.state(&user).spent_codes,
            (1 << BACKUP_CODES) - 1,
            "round {round}"
        );
        for code in &enrolled.codes {
            host.login(&user, &[code]).assert_rc(PAM_AUTH_ERR);
        }
    }
}

#[test]
fn parallel_wrong_codes_are_all_counted() {
    let host = Host::new(NO_LOCK);
    for round in 0..5 {
        let user = format!("user{round}");
        let wrong = host.enroll(&user).wrong_code(2);
        // Within one second (see the ignored test below for two).
        let (codes, _) = race_timed(
            &host,
            &[(user.as_str(), wrong.as_str()); 8],
            Gun::EarlyInASecond,
        );
        assert_eq!(codes, vec![PAM_AUTH_ERR; 8], "round {round}");
        let failures = host.state(&user).failures.len();
        assert_eq!(failures, 8, "round {round}: a failure was lost");
    }
}

#[test]
fn parallel_wrong_codes_across_a_second_boundary_are_all_counted() {
    let host = Host::new(NO_LOCK);
    let mut lost = Vec::new();
    for round in 0..10 {
        let user = format!("user{round}");
        let wrong = host.enroll(&user).wrong_code(2);
        let logins = [(user.as_str(), wrong.as_str()); 8];
        let (codes, _) = race_timed(&host, &logins, Gun::JustBeforeASecondEnds);
        assert_eq!(codes, vec![PAM_AUTH_ERR; 8], "round {round}");
        lost.push(8 - host.state(&user).failures.len());
    }
    assert!(
        lost.iter().all(|&n| n == 0),
        "failures lost per round: {lost:?}"
    );
}

#[test]
fn parallel_wrong_codes_lock_at_the_limit_and_not_before() {
    // Eight failures at once against a limit of five: the fifth locks, so the lock holds, and the
    // right code is refused without a prompt afterwards.
    let host = Host::new("[throttle]\nmax_failures = 5\nlock_secs = 60\n");
    let alice = host.enroll("alice");
    let wrong = alice.wrong_code(2);
    let logins = [("alice", wrong.as_str()); 8];
    let (codes, _) = race_timed(&host, &logins, Gun::EarlyInASecond);
    // The five failures up to the lock are AUTH_ERR; those decided after it are MAXTRIES.
    assert_eq!(count(&codes, PAM_AUTH_ERR), 5, "{codes:?}");
    assert_eq!(count(&codes, PAM_MAXTRIES), 3, "{codes:?}");
    let login = host.login("alice", &[&alice.code(0)]);
    login.assert_rc(PAM_MAXTRIES);
    assert!(login.prompts().is_empty());
}
