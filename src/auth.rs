//! The login decision: which factor the typed answer is, whether it is valid and unused, the
//! throttle, and the outcome. Shared by every front door; it never sees PAM, HTTP or a terminal.
//!
//! The answer is checked in two phases. Before the prompt, an unlocked read decides whether to ask
//! at all (not enrolled, locked). After it, everything that decides the outcome happens inside one
//! `Store::update`, under the user's lock, on freshly read files: so parallel logins with one code
//! see each other's writes, and exactly one of them wins.

use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::backup::{Candidate, CandidateHash};
use crate::config::ThrottlePolicy;
use crate::record::Record;
use crate::state::State;
use crate::store::{Store, StoreError};
use crate::totp::Verdict;
use crate::user::UserName;

/// The prompt for the code, as google-authenticator and pam_oath users know it.
pub const CODE_PROMPT: &str = "Verification code: ";
/// The single prompt of `forward_pass`.
pub const PASSWORD_AND_CODE_PROMPT: &str = "Password and verification code: ";

/// Asks the person logging in, through whatever front door they use.
pub trait Prompter {
    /// Asks with echo off.
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError>;
    /// Asks with echo on.
    fn ask_visible(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError>;
    /// Shows a line of information.
    fn info(&mut self, text: &str);
    /// Shows a line about something that went wrong.
    fn error(&mut self, text: &str);
}

/// The conversation failed or was abandoned (the client hung up, sent nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptError(pub String);

/// The time, in seconds since the Unix epoch.
pub trait Clock {
    fn now(&self) -> u64;
}

/// The system clock; the only one the PAM module uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// The host policy a login is checked against.
#[derive(Clone, Copy, Debug)]
pub struct LoginPolicy {
    /// Steps accepted either side of now.
    pub window: u8,
    pub throttle: ThrottlePolicy,
    /// Unenrolled users are skipped rather than refused.
    pub nullok: bool,
    /// Ask once for password and code, and hand the password on.
    pub forward_pass: bool,
}

/// Which factor let the user in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    BackupCode,
    Totp,
}

/// How a login attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// A factor was verified and its use is durably recorded.
    Accepted {
        factor: Factor,
        /// Unspent backup codes after this login, when a backup code was used.
        codes_left: Option<usize>,
        /// The password part of a `forward_pass` answer.
        password: Option<Zeroizing<String>>,
    },
    /// No valid factor: the answer was wrong, replayed, spent, or the user is not enrolled.
    Denied(Denial),
    /// Too many recent failures: the second factor is locked for this many more seconds.
    Locked { retry_after: u64 },
    /// Not enrolled, and the admin allows that (`nullok`).
    NotEnrolledSkipped,
    /// The conversation with the user failed.
    ConversationFailed(PromptError),
    /// A file is missing, unreadable, malformed or unsafe.
    Unavailable(StoreError),
}

/// Why a login was denied; for the log, never for the user (who sees one generic failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The forward_pass answer had no code at its end.
    NoCode,
    /// The user has no enrollment, and `nullok` is off.
    NotEnrolled,
    /// A right TOTP code whose step was already used.
    ReplayedCode,
    /// A backup code that was already used.
    SpentBackupCode,
    /// Neither a valid TOTP code nor a backup code.
    WrongCode,
}

/// Runs one login for `user`.
pub fn authenticate<S: Store>(
    store: &S,
    user: Option<&UserName>,
    policy: &LoginPolicy,
    prompter: &mut dyn Prompter,
    clock: &dyn Clock,
) -> Outcome {
    let loaded = match user {
        Some(user) => match store.load(user) {
            Ok(loaded) => loaded,
            Err(e) => return Outcome::Unavailable(e),
        },
        None => None,
    };
    let (user, record, state) = match (user, loaded) {
        (Some(user), Some((record, state))) => (user, record, state),
        _ if policy.nullok => return Outcome::NotEnrolledSkipped,
        // Ask anyway, so that the prompt does not tell who is enrolled.
        _ => {
            return match ask(prompter, policy) {
                Err(e) => Outcome::ConversationFailed(e),
                Ok(_) => Outcome::Denied(Denial::NotEnrolled),
            }
        }
    };
    let now = clock.now();
    if state.locked_until > now {
        return Outcome::Locked { retry_after: state.locked_until - now };
    }
    let answer = match ask(prompter, policy) {
        Ok(answer) => answer,
        Err(e) => return Outcome::ConversationFailed(e),
    };
    let Some(typed) = split_answer(&answer, policy.forward_pass, &record) else {
        return deny_and_count(store, user, policy, &record, clock, Denial::NoCode);
    };
    // The slow hash runs before the lock, so that a backup code does not hold up other logins.
    let candidate = typed
        .backup
        .as_ref()
        .and_then(|(c, _)| record.backup_codes.hash_candidate(c));
    let now = clock.now();
    let decided = store.update(user, |record, state| {
        decide(record, state, &typed, candidate.as_ref(), policy, now)
    });
    match decided {
        Ok(Some(Decision::Accepted { factor, codes_left })) => {
            let reading = match factor {
                Factor::Totp => typed.totp.and_then(|(_, password)| password),
                Factor::BackupCode => typed.backup.and_then(|(_, password)| password),
            };
            Outcome::Accepted { factor, codes_left, password: reading }
        }
        Ok(Some(Decision::Denied(denial))) => Outcome::Denied(denial),
        Ok(Some(Decision::Locked(retry_after))) => Outcome::Locked { retry_after },
        // Disabled while the user was typing.
        Ok(None) => Outcome::Denied(Denial::NotEnrolled),
        Err(e) => Outcome::Unavailable(e),
    }
}

/// The readings of an answer: as a TOTP code and, if it has that shape, as a backup code. With
/// forward_pass each reading has its own password part (the code lengths differ).
struct Typed {
    totp: Option<(Zeroizing<String>, Option<Zeroizing<String>>)>,
    backup: Option<(Candidate, Option<Zeroizing<String>>)>,
}

enum Decision {
    Accepted { factor: Factor, codes_left: Option<usize> },
    Denied(Denial),
    Locked(u64),
}

fn ask(prompter: &mut dyn Prompter, policy: &LoginPolicy) -> Result<Zeroizing<String>, PromptError> {
    let prompt = if policy.forward_pass { PASSWORD_AND_CODE_PROMPT } else { CODE_PROMPT };
    prompter.ask_hidden(prompt)
}

fn split_answer(answer: &str, forward_pass: bool, record: &Record) -> Option<Typed> {
    if !forward_pass {
        let totp: String = answer.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let backup = Candidate::parse(answer).map(|c| (c, None));
        return Some(Typed { totp: Some((Zeroizing::new(totp), None)), backup });
    }
    // With forward_pass the code is the tail of the answer, typed without separators.
    let tail = |n: usize| {
        let at = answer.len().checked_sub(n)?;
        answer.is_char_boundary(at).then(|| answer.split_at(at))
    };
    let password = |p: &str| Some(Zeroizing::new(p.to_string()));
    let digits = record.totp.as_ref().map_or(6, |k| usize::from(k.digits.get()));
    let totp = tail(digits)
        .filter(|(_, code)| code.bytes().all(|b| b.is_ascii_digit()))
        .map(|(pass, code)| (Zeroizing::new(code.to_string()), password(pass)));
    // One backup reading at most, so that a check costs one hash: a ten-character code, else an
    // eight-digit scratch code.
    let backup = [10, 8]
        .into_iter()
        .filter_map(|n| tail(n))
        .find_map(|(pass, code)| Candidate::parse(code).map(|c| (c, password(pass))));
    (totp.is_some() || backup.is_some()).then_some(Typed { totp, backup })
}

fn decide(
    record: &Record,
    state: &mut State,
    typed: &Typed,
    candidate: Option<&CandidateHash>,
    policy: &LoginPolicy,
    now: u64,
) -> Decision {
    if state.locked_until > now {
        return Decision::Locked(state.locked_until - now);
    }
    let window = record.window.map_or(policy.window, |w| w.min(policy.window));
    let mut denial = Denial::WrongCode;
    if let (Some(key), Some((code, _))) = (&record.totp, &typed.totp) {
        match key.verify(code, now, window, state.last_step) {
            Verdict::Accepted(step) => {
                state.last_step = step;
                state.failures.clear();
                return Decision::Accepted { factor: Factor::Totp, codes_left: None };
            }
            Verdict::Replayed => denial = Denial::ReplayedCode,
            Verdict::Wrong => {}
        }
    }
    // The codes may have been regenerated since the hash was computed: hash again for this set.
    let recomputed;
    let candidate = match (candidate, &typed.backup) {
        (Some(c), _) if c.is_for(&record.backup_codes) => Some(c),
        (_, Some((typed_code, _))) => {
            recomputed = record.backup_codes.hash_candidate(typed_code);
            recomputed.as_ref()
        }
        (_, None) => None,
    };
    if let Some(index) = candidate.and_then(|c| record.backup_codes.find(c)) {
        let binding = record.backup_codes.binding();
        if state.is_code_spent(binding, index) {
            denial = Denial::SpentBackupCode;
        } else {
            state.spend_code(binding, index);
            state.failures.clear();
            let left = state.codes_left(binding, record.backup_codes.len());
            return Decision::Accepted { factor: Factor::BackupCode, codes_left: Some(left) };
        }
    }
    count_failure(state, effective_throttle(record, &policy.throttle), now);
    Decision::Denied(denial)
}

fn deny_and_count<S: Store>(
    store: &S,
    user: &UserName,
    policy: &LoginPolicy,
    record: &Record,
    clock: &dyn Clock,
    denial: Denial,
) -> Outcome {
    let throttle = effective_throttle(record, &policy.throttle);
    let now = clock.now();
    match store.update(user, |_, state| count_failure(state, throttle, now)) {
        Ok(_) => Outcome::Denied(denial),
        Err(e) => Outcome::Unavailable(e),
    }
}

/// Records a failure; at the limit, locks the second factor and starts counting afresh.
fn count_failure(state: &mut State, throttle: ThrottlePolicy, now: u64) {
    let window = u64::from(throttle.window_secs);
    state.failures.retain(|&t| t <= now && now - t < window);
    state.failures.push(now);
    if state.failures.len() >= usize::from(throttle.max_failures) {
        state.locked_until = now + u64::from(throttle.lock_secs);
        state.failures.clear();
    }
}

/// The host's throttle, tightened by the user's own limit if the record has one.
fn effective_throttle(record: &Record, host: &ThrottlePolicy) -> ThrottlePolicy {
    match record.throttle {
        Some(user) => ThrottlePolicy {
            max_failures: user.max_failures.clamp(1, host.max_failures),
            window_secs: user.window_secs.max(host.window_secs),
            lock_secs: host.lock_secs,
        },
        None => *host,
    }
}

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        // A clock before 1970 is a broken clock; 0 makes every code wrong, which fails closed.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl std::fmt::Display for PromptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Factor {
    pub fn name(self) -> &'static str {
        match self {
            Factor::BackupCode => "backup-code",
            Factor::Totp => "totp",
        }
    }
}

impl Denial {
    pub fn name(self) -> &'static str {
        match self {
            Denial::NoCode => "no-code",
            Denial::NotEnrolled => "not-enrolled",
            Denial::ReplayedCode => "replayed-code",
            Denial::SpentBackupCode => "spent-backup-code",
            Denial::WrongCode => "wrong-code",
        }
    }
}
