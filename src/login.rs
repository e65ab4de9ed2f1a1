//! The login decision: which factor the typed answer is, whether it is valid and unused, the
//! throttle, and the outcome. Shared by every front door; it never sees PAM, HTTP or a terminal.
//!
//! The answer is checked in two phases. Before the prompt, an unlocked read decides whether to ask
//! at all (not enrolled, locked). After it, everything that decides the outcome happens inside one
//! `Store::update`, under the user's lock, on freshly read files: so parallel logins with one code
//! see each other's writes, and exactly one of them wins.

use zeroize::Zeroizing;

use crate::backup::{Candidate, CandidateHash};
use crate::clock::Clock;
use crate::config::{Config, ThrottlePolicy};
use crate::enroll::{self, AtLogin, EnrollError};
use crate::key_assertion::{self, Assertion, KeyRefusal};
use crate::prompt::{PromptError, Prompter};
use crate::record::Record;
use crate::security_key::{KeyName, KeyToucher, TouchFailure};
use crate::state::{Failure, Origin, OriginLock, State, MAX_FAILURES, ORIGINS_BEFORE_GLOBAL_LOCK};
use crate::store::{Accounts, Store, StoreError};
use crate::text::without_separators;
use crate::totp::Verdict;
use crate::user::UserName;

/// The prompt for the code, as google-authenticator and pam_oath users know it.
pub const CODE_PROMPT: &str = "Verification code: ";
/// The single prompt of `forward_pass`.
pub const PASSWORD_AND_CODE_PROMPT: &str = "Password and verification code: ";

/// The host policy a login is checked against.
#[derive(Clone, Copy, Debug)]
pub struct LoginPolicy<'a> {
    /// Steps accepted either side of now.
    pub window: u8,
    pub throttle: ThrottlePolicy,
    /// Unenrolled users are skipped rather than refused.
    pub nullok: bool,
    /// Ask once for password and code, and hand the password on.
    pub forward_pass: bool,
    /// Unenrolled users enroll during the login, with this config's settings for new
    /// enrollments (`enroll_on_login`). Never with forward_pass, whose password is not checked yet.
    pub enroll_on_login: Option<&'a Config>,
    /// Where the login comes from: failures lock this origin first (see `count_failure`).
    pub origin: Origin,
    /// Whether the person is at this machine, so that a security key plugged in here is theirs
    /// to touch (over SSH the key is at the client: codes only). Asked only for a user who has
    /// keys: finding out may read files, which a code login should not pay for.
    pub console: Console<'a>,
    /// Every key must verify the user (`fido2.user_verification = "required"`), not only those
    /// registered with a PIN.
    pub keys_require_uv: bool,
}

/// The front door's answer to "is the person at this machine?", computed when asked.
#[derive(Clone, Copy)]
pub struct Console<'a>(pub &'a dyn Fn() -> bool);

impl Console<'_> {
    /// Never at this machine (a door that has no device path).
    pub const NEVER: Console<'static> = Console(&|| false);

    pub fn here(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console(..)")
    }
}

/// Which factor let the user in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    BackupCode,
    Totp,
    SecurityKey,
}

/// How a login attempt ended. Its `Debug` never shows the password.
pub enum Outcome {
    /// A factor was verified and its use is durably recorded.
    Accepted {
        factor: Factor,
        /// Unspent backup codes after this login, when a backup code was used.
        codes_left: Option<usize>,
        /// The password part of a `forward_pass` answer.
        password: Option<Zeroizing<String>>,
        /// The security key touched, for the log.
        key: Option<KeyName>,
    },
    /// A security key answered, and its assertion was refused (a clone, tampering, another
    /// user's key): counted as a failure. `key` is the registered key it claimed to be.
    KeyRefused {
        key: Option<KeyName>,
        why: KeyRefusal,
    },
    /// The user has only security keys, and none could be used here (remote login, no device,
    /// no touch): fail closed.
    KeyUnavailable(KeyUnusable),
    /// No valid factor: the answer was wrong, replayed, spent, or the user is not enrolled.
    Denied(Denial),
    /// Too many recent failures: the second factor is locked for this many more seconds.
    Locked { retry_after: u64 },
    /// Not enrolled, and the admin allows that (`nullok`).
    NotEnrolledSkipped,
    /// Enrolled during this login, with a confirmed code: the second factor is verified.
    Enrolled,
    /// Offered enrollment, skipped it, and the admin allows that (`nullok`).
    EnrollmentPostponed,
    /// Enrollment during login could not be done (no randomness, a store failure).
    EnrollmentFailed(EnrollError),
    /// The conversation with the user failed.
    ConversationFailed(PromptError),
    /// A file is missing, unreadable, malformed or unsafe.
    Unavailable(StoreError),
}

/// Why a key-only user could not log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyUnusable {
    /// A remote login: the key is at the client.
    Remote,
    /// At the console, the device path failed.
    Touch(TouchFailure),
}

/// Why a login was denied; for the log, never for the user (who sees one generic failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The forward_pass answer had no code at its end.
    NoCode,
    /// The user has no enrollment, and `nullok` is off.
    NotEnrolled,
    /// The user name cannot be used safely (not UTF-8, a `/`...); never skipped by nullok.
    UnusableName,
    /// Enrolling at login, no right confirming code was typed.
    EnrollmentNotConfirmed,
    /// Enrolling at login, another session enrolled the user first.
    EnrolledMeanwhile,
    /// Enrolling at login, the application answered with the password: it cannot enroll.
    CannotEnrollHere,
    /// The application answered the code prompt with the password; not counted as a failure.
    PasswordAsCode,
    /// A right TOTP code whose step was already used.
    ReplayedCode,
    /// A backup code that was already used.
    SpentBackupCode,
    /// Neither a valid TOTP code nor a backup code.
    WrongCode,
}

/// Runs one login for `user`.
pub fn authenticate<S: Store + Accounts>(
    store: &S,
    user: Option<&UserName>,
    policy: &LoginPolicy,
    prompter: &mut dyn Prompter,
    keys: &mut dyn KeyToucher,
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
        (Some(user), None) => {
            let enrolling = match policy.enroll_on_login.filter(|_| !policy.forward_pass) {
                Some(config) => match store.is_account(user) {
                    Ok(true) => Some(config),
                    Ok(false) => None,
                    Err(e) => return Outcome::Unavailable(e),
                },
                None => None,
            };
            return match enrolling {
                Some(config) => {
                    let enrolled =
                        enroll::at_login(store, user, config, policy.nullok, prompter, clock);
                    enrollment_outcome(enrolled, policy.nullok)
                }
                None if policy.nullok => Outcome::NotEnrolledSkipped,
                None => refuse_after_prompt(prompter, policy, Denial::NotEnrolled),
            };
        }
        // nullok skips only a name we could check: one we cannot use is refused, never skipped.
        (None, _) => return refuse_after_prompt(prompter, policy, Denial::UnusableName),
    };
    let now = clock.now();
    if let Some(until) = state.locked_for(policy.origin, now) {
        return Outcome::Locked {
            retry_after: until - now,
        };
    }
    if !record.keys.is_empty() {
        let has_codes = record.totp.is_some() || !record.backup_codes.is_empty();
        match touch_key(store, user, &record, policy, prompter, keys, clock) {
            Ok(outcome) => return outcome,
            Err(unusable) if !has_codes => return Outcome::KeyUnavailable(unusable),
            // With a code to fall back on: a timeout says so; no device says nothing (the
            // usual case over a console without the key).
            Err(KeyUnusable::Touch(TouchFailure::Timeout)) => {
                prompter.info("No touch; enter a code instead.")
            }
            Err(_) => {}
        }
    }
    let answer = match ask(prompter, policy) {
        Ok(answer) => answer,
        Err(e) => return Outcome::ConversationFailed(e),
    };
    // An application that answers every hidden prompt with the password (sshd's password
    // authentication, which clients fall back to after keyboard-interactive) is not guessing a
    // code: refuse without checking the answer, and without counting a failure that could lock
    // the user out.
    if !policy.forward_pass && prompter.repeats_password(&answer) {
        return Outcome::Denied(Denial::PasswordAsCode);
    }
    let Some(typed) = split_answer(&answer, policy.forward_pass, &record) else {
        return deny_and_count(store, user, policy, &record, clock, Denial::NoCode);
    };
    // The slow hash runs before the lock, so that a backup code does not hold up other logins.
    let candidate = typed
        .backup
        .as_ref()
        .and_then(|(c, _)| record.backup_codes.hash_candidate(c));
    // The time is read under the lock, so that decisions are made in the order of the clock
    // and a slower login cannot drop a failure counted by a faster one.
    let decided = store.update(user, |record, state| {
        decide(
            record,
            state,
            &typed,
            candidate.as_ref(),
            policy,
            clock.now(),
        )
    });
    match decided {
        Ok(Some(Decision::Accepted { factor, codes_left })) => {
            let reading = match factor {
                Factor::Totp => typed.totp.and_then(|(_, password)| password),
                Factor::BackupCode => typed.backup.and_then(|(_, password)| password),
                // Never decided from a typed answer.
                Factor::SecurityKey => None,
            };
            Outcome::Accepted {
                factor,
                codes_left,
                password: reading,
                key: None,
            }
        }
        Ok(Some(Decision::Denied(denial))) => Outcome::Denied(denial),
        Ok(Some(Decision::Locked(retry_after))) => Outcome::Locked { retry_after },
        // Disabled while the user was typing.
        Ok(None) => Outcome::Denied(Denial::NotEnrolled),
        Err(e) => Outcome::Unavailable(e),
    }
}

/// Tries the user's security keys at the console: a fresh challenge, the touch, then the check
/// and the new counter under the user's lock. `Err` when no key could be used, so that the
/// caller falls back to a code (or fails closed when the user has none).
fn touch_key<S: Store>(
    store: &S,
    user: &UserName,
    record: &Record,
    policy: &LoginPolicy,
    prompter: &mut dyn Prompter,
    keys: &mut dyn KeyToucher,
    clock: &dyn Clock,
) -> Result<Outcome, KeyUnusable> {
    if policy.forward_pass || !policy.console.here() {
        return Err(KeyUnusable::Remote);
    }
    // The console's client data is a fresh random challenge: an assertion over it can only
    // have been made now, for this login.
    let mut client_data_hash = [0u8; 32];
    getrandom::fill(&mut client_data_hash)
        .map_err(|e| KeyUnusable::Touch(TouchFailure::Failed(format!("no randomness: {e}"))))?;
    let assertion = keys
        .touch(
            &record.keys,
            &client_data_hash,
            policy.keys_require_uv,
            prompter,
        )
        .map_err(KeyUnusable::Touch)?;
    Ok(check_key_assertion(
        store,
        user,
        policy,
        &assertion,
        &client_data_hash,
        clock,
    ))
}

/// Checks an assertion a key made over `client_data_hash` for `user`, and records its use,
/// under the user's lock: the throttle first, then the core's verifier (the credential is the
/// user's, rpIdHash, presence, verification where required, the signature, the counter). The
/// console gets the assertion from the device; the web from the browser, over the hash of its
/// clientDataJSON, which the web has checked (type, challenge, origin).
pub fn check_key_assertion<S: Store>(
    store: &S,
    user: &UserName,
    policy: &LoginPolicy,
    assertion: &Assertion,
    client_data_hash: &[u8; 32],
    clock: &dyn Clock,
) -> Outcome {
    let decided = store.update(user, |record, state| {
        let now = clock.now();
        if let Some(until) = state.locked_for(policy.origin, now) {
            return Outcome::Locked {
                retry_after: until - now,
            };
        }
        let stored =
            |k: &crate::security_key::SecurityKey| state.key_use(k.tag()).map(|u| u.sign_count);
        let checked = key_assertion::check(&record.keys, stored, assertion, client_data_hash)
            .and_then(|accepted| {
                let uv_missing = policy.keys_require_uv && !accepted.verified.user_verified;
                match uv_missing {
                    true => Err(KeyRefusal::NoUserVerification),
                    false => Ok(accepted),
                }
            });
        match checked {
            Ok(accepted) => {
                let key = &record.keys[accepted.key];
                state.record_key_use(key.tag(), accepted.verified.sign_count, now);
                forget_failures(state, policy.origin);
                Outcome::Accepted {
                    factor: Factor::SecurityKey,
                    codes_left: None,
                    password: None,
                    key: Some(key.name.clone()),
                }
            }
            Err(why) => {
                count_failure(
                    state,
                    effective_throttle(record, &policy.throttle),
                    now,
                    policy.origin,
                );
                let key = record
                    .keys
                    .iter()
                    .find(|k| k.credential_id == assertion.credential_id)
                    .map(|k| k.name.clone());
                Outcome::KeyRefused { key, why }
            }
        }
    });
    match decided {
        Ok(Some(outcome)) => outcome,
        // Disabled while the key was being touched.
        Ok(None) => Outcome::Denied(Denial::NotEnrolled),
        Err(e) => Outcome::Unavailable(e),
    }
}

/// What an enrollment at login means for the login.
fn enrollment_outcome(enrolled: AtLogin, nullok: bool) -> Outcome {
    match enrolled {
        AtLogin::Enrolled => Outcome::Enrolled,
        AtLogin::Postponed => Outcome::EnrollmentPostponed,
        AtLogin::CannotEnrollHere if nullok => Outcome::NotEnrolledSkipped,
        AtLogin::CannotEnrollHere => Outcome::Denied(Denial::CannotEnrollHere),
        AtLogin::EnrolledMeanwhile => Outcome::Denied(Denial::EnrolledMeanwhile),
        AtLogin::NotConfirmed => Outcome::Denied(Denial::EnrollmentNotConfirmed),
        AtLogin::ConversationFailed(e) => Outcome::ConversationFailed(e),
        AtLogin::Failed(e) => Outcome::EnrollmentFailed(e),
    }
}

/// Asks anyway, and spends what a check would, so that neither the prompt nor the time taken
/// tells who is enrolled.
fn refuse_after_prompt(
    prompter: &mut dyn Prompter,
    policy: &LoginPolicy,
    denial: Denial,
) -> Outcome {
    match ask(prompter, policy) {
        Err(e) => Outcome::ConversationFailed(e),
        Ok(answer) => {
            if let Some(candidate) = Candidate::parse(&answer) {
                crate::backup::spend_one_hash(&candidate);
            }
            Outcome::Denied(denial)
        }
    }
}

/// The readings of an answer: as a TOTP code and, if it has that shape, as a backup code. With
/// forward_pass each reading has its own password part (the code lengths differ).
struct Typed {
    totp: Option<(Zeroizing<String>, Option<Zeroizing<String>>)>,
    backup: Option<(Candidate, Option<Zeroizing<String>>)>,
}

enum Decision {
    Accepted {
        factor: Factor,
        codes_left: Option<usize>,
    },
    Denied(Denial),
    Locked(u64),
}

fn ask(
    prompter: &mut dyn Prompter,
    policy: &LoginPolicy,
) -> Result<Zeroizing<String>, PromptError> {
    let prompt = if policy.forward_pass {
        PASSWORD_AND_CODE_PROMPT
    } else {
        CODE_PROMPT
    };
    prompter.ask_hidden(prompt)
}

fn split_answer(answer: &str, forward_pass: bool, record: &Record) -> Option<Typed> {
    if !forward_pass {
        let totp = without_separators(answer);
        let backup = Candidate::parse(answer).map(|c| (c, None));
        return Some(Typed {
            totp: Some((totp, None)),
            backup,
        });
    }
    // With forward_pass the code is the tail of the answer, typed without separators.
    let tail = |n: usize| {
        let at = answer.len().checked_sub(n)?;
        answer.is_char_boundary(at).then(|| answer.split_at(at))
    };
    let password = |p: &str| Some(Zeroizing::new(p.to_string()));
    let digits = record
        .totp
        .as_ref()
        .map_or(6, |k| usize::from(k.digits.get()));
    let totp = tail(digits)
        .filter(|(_, code)| code.bytes().all(|b| b.is_ascii_digit()))
        .map(|(pass, code)| (Zeroizing::new(code.to_string()), password(pass)));
    // One backup reading at most, so that a check costs one hash: a ten-character code, else an
    // eight-digit scratch code.
    let backup = [10, 8]
        .into_iter()
        .filter_map(tail)
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
    if let Some(until) = state.locked_for(policy.origin, now) {
        return Decision::Locked(until - now);
    }
    let window = record
        .window
        .map_or(policy.window, |w| w.min(policy.window));
    let mut denial = Denial::WrongCode;
    if let (Some(key), Some((code, _))) = (&record.totp, &typed.totp) {
        match key.verify(code, now, window, state.last_step) {
            Verdict::Accepted(step) => {
                state.last_step = step;
                forget_failures(state, policy.origin);
                return Decision::Accepted {
                    factor: Factor::Totp,
                    codes_left: None,
                };
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
            forget_failures(state, policy.origin);
            let left = state.codes_left(binding, record.backup_codes.len());
            return Decision::Accepted {
                factor: Factor::BackupCode,
                codes_left: Some(left),
            };
        }
    }
    count_failure(
        state,
        effective_throttle(record, &policy.throttle),
        now,
        policy.origin,
    );
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
    let origin = policy.origin;
    match store.update(user, |_, state| {
        count_failure(state, throttle, clock.now(), origin)
    }) {
        Ok(_) => Outcome::Denied(denial),
        Err(e) => Outcome::Unavailable(e),
    }
}

/// Records a failure from `origin`. At `max_failures` within the window, that origin is locked
/// for `lock_secs` (a stranger guessing from one address locks that address, not the user); once
/// `ORIGINS_BEFORE_GLOBAL_LOCK` origins are locked at once, the whole second factor is, so that
/// spreading guesses over addresses still meets a bound (at most that many times `max_failures`
/// guesses per lock period).
fn count_failure(state: &mut State, throttle: ThrottlePolicy, now: u64, origin: Origin) {
    let window = u64::from(throttle.window_secs);
    // Kept while recent; a clock stepped back keeps them too rather than forgetting them.
    state.failures.retain(|f| now.saturating_sub(f.at) < window);
    state.origin_locks.retain(|l| l.until > now);
    state.failures.push(Failure { at: now, origin });
    let from_origin = state.failures.iter().filter(|f| f.origin == origin).count();
    if from_origin < usize::from(throttle.max_failures) {
        if state.failures.len() > MAX_FAILURES {
            state.failures.remove(0);
        }
        return;
    }
    let until = now + u64::from(throttle.lock_secs);
    forget_failures(state, origin);
    state.origin_locks.retain(|l| l.origin != origin);
    state.origin_locks.push(OriginLock { origin, until });
    if state.origin_locks.len() >= ORIGINS_BEFORE_GLOBAL_LOCK {
        state.locked_until = until;
        state.failures.clear();
        state.origin_locks.clear();
    }
}

/// A verified factor from `origin` forgets that origin's failures (not other origins': a right
/// code from the user does not give a guesser elsewhere a fresh allowance).
fn forget_failures(state: &mut State, origin: Origin) {
    state.failures.retain(|f| f.origin != origin);
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

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Accepted {
                factor,
                codes_left,
                password,
                key,
            } => f
                .debug_struct("Accepted")
                .field("factor", factor)
                .field("codes_left", codes_left)
                .field("password", &password.as_ref().map(|_| "<redacted>"))
                .field("key", key)
                .finish(),
            Outcome::KeyRefused { key, why } => f
                .debug_struct("KeyRefused")
                .field("key", key)
                .field("why", why)
                .finish(),
            Outcome::KeyUnavailable(why) => f.debug_tuple("KeyUnavailable").field(why).finish(),
            Outcome::Denied(denial) => f.debug_tuple("Denied").field(denial).finish(),
            Outcome::Locked { retry_after } => f
                .debug_struct("Locked")
                .field("retry_after", retry_after)
                .finish(),
            Outcome::NotEnrolledSkipped => f.write_str("NotEnrolledSkipped"),
            Outcome::Enrolled => f.write_str("Enrolled"),
            Outcome::EnrollmentPostponed => f.write_str("EnrollmentPostponed"),
            Outcome::EnrollmentFailed(e) => f.debug_tuple("EnrollmentFailed").field(e).finish(),
            Outcome::ConversationFailed(e) => f.debug_tuple("ConversationFailed").field(e).finish(),
            Outcome::Unavailable(e) => f.debug_tuple("Unavailable").field(e).finish(),
        }
    }
}

impl Factor {
    pub fn name(self) -> &'static str {
        match self {
            Factor::BackupCode => "backup-code",
            Factor::Totp => "totp",
            Factor::SecurityKey => "security-key",
        }
    }
}

impl Denial {
    pub fn name(self) -> &'static str {
        match self {
            Denial::NoCode => "no-code",
            Denial::NotEnrolled => "not-enrolled",
            Denial::UnusableName => "unusable-name",
            Denial::EnrollmentNotConfirmed => "enrollment-not-confirmed",
            Denial::EnrolledMeanwhile => "enrolled-in-another-session",
            Denial::CannotEnrollHere => "application-cannot-enroll",
            Denial::PasswordAsCode => "application-answers-with-password",
            Denial::ReplayedCode => "replayed-code",
            Denial::SpentBackupCode => "spent-backup-code",
            Denial::WrongCode => "wrong-code",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;
    use crate::backup::{BackupCodes, Cost};
    use crate::record::UserThrottle;
    use crate::security_key::NoDevice;
    use crate::totp::{Algorithm, Digits, Secret, TotpKey};

    /// A store in memory, with the same contract as the file store.
    #[derive(Default)]
    struct MemoryStore {
        users: RefCell<HashMap<String, (Record, State)>>,
    }

    impl Store for MemoryStore {
        fn load(&self, user: &UserName) -> Result<Option<(Record, State)>, StoreError> {
            Ok(self.users.borrow().get(user.as_str()).cloned())
        }

        fn update<T>(
            &self,
            user: &UserName,
            mut change: impl FnMut(&Record, &mut State) -> T,
        ) -> Result<Option<T>, StoreError> {
            let mut users = self.users.borrow_mut();
            Ok(users
                .get_mut(user.as_str())
                .map(|(record, state)| change(record, state)))
        }

        fn replace<T, E>(
            &self,
            user: &UserName,
            mut change: impl FnMut(Option<&Record>, &mut State) -> Result<(Option<Record>, T), E>,
        ) -> Result<Result<T, E>, StoreError> {
            let mut users = self.users.borrow_mut();
            let current = users.get(user.as_str()).cloned();
            let mut state = current.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
            match change(current.as_ref().map(|(r, _)| r), &mut state) {
                Ok((Some(record), result)) => {
                    users.insert(user.as_str().into(), (record, state));
                    Ok(Ok(result))
                }
                Ok((None, result)) => {
                    users.remove(user.as_str());
                    Ok(Ok(result))
                }
                Err(e) => Ok(Err(e)),
            }
        }
    }

    impl Accounts for MemoryStore {
        fn is_account(&self, _: &UserName) -> Result<bool, StoreError> {
            Ok(true)
        }
    }

    struct Script {
        answers: Vec<&'static str>,
        prompts: Vec<String>,
    }

    impl Prompter for Script {
        fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
            self.prompts.push(prompt.into());
            if self.answers.is_empty() {
                return Err(PromptError("hung up".into()));
            }
            Ok(Zeroizing::new(self.answers.remove(0).to_string()))
        }
        fn ask_visible(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
            self.ask_hidden(prompt)
        }
        fn info(&mut self, _: &str) {}
        fn error(&mut self, _: &str) {}
        fn offer(&mut self, _: &crate::prompt::EnrollmentOffer) {}
    }

    struct At(u64);

    impl Clock for At {
        fn now(&self) -> u64 {
            self.0
        }
    }

    const NOW: u64 = 1_800_000_015;

    fn key() -> TotpKey {
        TotpKey {
            secret: Secret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap(),
            algorithm: Algorithm::Sha1,
            digits: Digits::SIX,
            period: 30,
        }
    }

    fn policy() -> LoginPolicy<'static> {
        LoginPolicy {
            window: 1,
            throttle: ThrottlePolicy {
                max_failures: 3,
                window_secs: 300,
                lock_secs: 600,
            },
            nullok: false,
            forward_pass: false,
            enroll_on_login: None,
            origin: Origin::LOCAL,
            console: Console(&|| true),
            keys_require_uv: false,
        }
    }

    fn from(host: &str) -> LoginPolicy<'static> {
        LoginPolicy {
            origin: Origin::remote(host),
            console: Console::NEVER,
            ..policy()
        }
    }

    fn alice() -> UserName {
        UserName::parse("alice").unwrap()
    }

    /// A store with alice enrolled, and her plain backup codes.
    fn enrolled() -> (MemoryStore, Vec<String>) {
        let codes = BackupCodes::generate(
            3,
            Cost {
                m_kib: 64,
                t: 1,
                p: 1,
            },
        )
        .unwrap();
        let record = Record {
            totp: Some(key()),
            window: None,
            throttle: None,
            backup_codes: codes.hashed,
            keys: Vec::new(),
        };
        let store = MemoryStore::default();
        store
            .users
            .borrow_mut()
            .insert("alice".into(), (record, State::default()));
        (store, codes.plain.iter().map(|c| c.to_string()).collect())
    }

    fn login(
        store: &MemoryStore,
        policy: &LoginPolicy,
        answer: &str,
        now: u64,
    ) -> (Outcome, Vec<String>) {
        let answer: &'static str = Box::leak(answer.to_string().into_boxed_str());
        let mut script = Script {
            answers: vec![answer],
            prompts: vec![],
        };
        let outcome = authenticate(
            store,
            Some(&alice()),
            policy,
            &mut script,
            &mut NoDevice,
            &At(now),
        );
        (outcome, script.prompts)
    }

    fn code(offset_steps: i64) -> String {
        let k = key();
        k.code_at_step((k.step_of(NOW) as i64 + offset_steps) as u64)
            .to_string()
    }

    #[test]
    fn right_code_is_accepted_once() {
        let (store, _) = enrolled();
        let (outcome, prompts) = login(&store, &policy(), &code(0), NOW);
        assert!(matches!(
            outcome,
            Outcome::Accepted {
                factor: Factor::Totp,
                ..
            }
        ));
        assert_eq!(prompts, [CODE_PROMPT]);
        let (outcome, _) = login(&store, &policy(), &code(0), NOW);
        assert!(matches!(outcome, Outcome::Denied(Denial::ReplayedCode)));
    }

    #[test]
    fn an_older_step_after_a_newer_one_is_a_replay() {
        let (store, _) = enrolled();
        assert!(matches!(
            login(&store, &policy(), &code(1), NOW).0,
            Outcome::Accepted { .. }
        ));
        assert!(matches!(
            login(&store, &policy(), &code(0), NOW).0,
            Outcome::Denied(Denial::ReplayedCode)
        ));
    }

    #[test]
    fn code_with_spaces_and_dashes_is_accepted() {
        let (store, _) = enrolled();
        let c = code(0);
        let typed = format!("{} {}-", &c[..3], &c[3..]);
        assert!(matches!(
            login(&store, &policy(), &typed, NOW).0,
            Outcome::Accepted { .. }
        ));
    }

    #[test]
    fn backup_code_works_once_and_counts_down() {
        let (store, plain) = enrolled();
        let (outcome, _) = login(&store, &policy(), &plain[1].to_uppercase(), NOW);
        assert!(matches!(
            outcome,
            Outcome::Accepted {
                factor: Factor::BackupCode,
                codes_left: Some(2),
                ..
            }
        ));
        let (outcome, _) = login(&store, &policy(), &plain[1], NOW);
        assert!(matches!(outcome, Outcome::Denied(Denial::SpentBackupCode)));
    }

    #[test]
    fn failures_lock_the_second_factor_without_a_prompt() {
        let (store, _) = enrolled();
        for _ in 0..3 {
            assert!(matches!(
                login(&store, &policy(), "000000", NOW).0,
                Outcome::Denied(_)
            ));
        }
        let (outcome, prompts) = login(&store, &policy(), &code(0), NOW + 10);
        assert!(matches!(outcome, Outcome::Locked { retry_after: 590 }));
        assert!(prompts.is_empty());
        // After the lock a right code works again.
        let later = NOW + 700;
        let k = key();
        let fresh = k.code_at_step(k.step_of(later)).to_string();
        assert!(matches!(
            login(&store, &policy(), &fresh, later).0,
            Outcome::Accepted { .. }
        ));
    }

    #[test]
    fn old_failures_fall_out_of_the_window() {
        let (store, _) = enrolled();
        login(&store, &policy(), "000000", NOW);
        login(&store, &policy(), "000000", NOW);
        // 301 s later the first two no longer count.
        login(&store, &policy(), "000000", NOW + 301);
        let (outcome, _) = login(&store, &policy(), "000000", NOW + 302);
        assert!(matches!(outcome, Outcome::Denied(_)));
        let state = store.users.borrow()["alice"].1.clone();
        assert_eq!(state.locked_until, 0);
        let times: Vec<u64> = state.failures.iter().map(|f| f.at).collect();
        assert_eq!(times, [NOW + 301, NOW + 302]);
    }

    #[test]
    fn a_stranger_guessing_from_one_host_locks_that_host_not_the_user() {
        let (store, _) = enrolled();
        for _ in 0..3 {
            login(&store, &from("203.0.113.9"), "000000", NOW);
        }
        let (outcome, prompts) = login(&store, &from("203.0.113.9"), &code(0), NOW + 1);
        assert!(matches!(outcome, Outcome::Locked { retry_after: 599 }));
        assert!(prompts.is_empty());
        // The user, from their own host or at the console, is not locked out.
        let (outcome, _) = login(&store, &from("198.51.100.7"), &code(0), NOW + 1);
        assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
        let (outcome, _) = login(&store, &policy(), &code(1), NOW + 31);
        assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
        // Their right code does not lift the stranger's lock.
        let (outcome, _) = login(&store, &from("203.0.113.9"), &code(2), NOW + 61);
        assert!(matches!(outcome, Outcome::Locked { .. }), "{outcome:?}");
    }

    #[test]
    fn guesses_spread_over_hosts_lock_the_whole_second_factor_at_the_third_locked_host() {
        let (store, _) = enrolled();
        for host in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            for _ in 0..3 {
                login(&store, &from(host), "000000", NOW);
            }
        }
        // At most 3 hosts x 3 guesses per lock period, whatever the number of addresses.
        for policy in [from("192.0.2.4"), policy()] {
            let (outcome, _) = login(&store, &policy, &code(0), NOW + 1);
            assert!(
                matches!(outcome, Outcome::Locked { retry_after: 599 }),
                "{outcome:?}"
            );
        }
        let state = store.users.borrow()["alice"].1.clone();
        assert_eq!(state.locked_until, NOW + 600);
        assert!(state.origin_locks.is_empty() && state.failures.is_empty());
    }

    #[test]
    fn a_right_code_forgets_only_its_own_origins_failures() {
        let (store, _) = enrolled();
        for _ in 0..2 {
            login(&store, &from("192.0.2.1"), "000000", NOW);
            login(&store, &policy(), "000000", NOW);
        }
        login(&store, &policy(), &code(0), NOW);
        let state = store.users.borrow()["alice"].1.clone();
        assert_eq!(state.failures.len(), 2);
        assert!(state
            .failures
            .iter()
            .all(|f| f.origin == Origin::remote("192.0.2.1")));
        // The stranger's third guess still locks their host.
        login(&store, &from("192.0.2.1"), "000000", NOW + 1);
        let (outcome, _) = login(&store, &from("192.0.2.1"), &code(1), NOW + 31);
        assert!(matches!(outcome, Outcome::Locked { .. }), "{outcome:?}");
    }

    #[test]
    fn a_users_own_limit_only_tightens() {
        let (store, _) = enrolled();
        store
            .users
            .borrow_mut()
            .get_mut("alice")
            .unwrap()
            .0
            .throttle = Some(UserThrottle {
            max_failures: 1,
            window_secs: 10,
        });
        login(&store, &policy(), "000000", NOW);
        assert!(matches!(
            login(&store, &policy(), &code(0), NOW).0,
            Outcome::Locked { .. }
        ));
    }

    #[test]
    fn a_users_wider_window_is_ignored() {
        let (store, _) = enrolled();
        store.users.borrow_mut().get_mut("alice").unwrap().0.window = Some(5);
        assert!(matches!(
            login(&store, &policy(), &code(-3), NOW).0,
            Outcome::Denied(Denial::WrongCode)
        ));
        store.users.borrow_mut().get_mut("alice").unwrap().0.window = Some(0);
        assert!(matches!(
            login(&store, &policy(), &code(-1), NOW).0,
            Outcome::Denied(Denial::WrongCode)
        ));
    }

    #[test]
    fn unenrolled_user_is_prompted_then_denied() {
        let store = MemoryStore::default();
        let (outcome, prompts) = login(&store, &policy(), "123456", NOW);
        assert!(matches!(outcome, Outcome::Denied(Denial::NotEnrolled)));
        assert_eq!(prompts, [CODE_PROMPT]);
    }

    #[test]
    fn unenrolled_user_is_skipped_with_nullok() {
        let store = MemoryStore::default();
        let policy = LoginPolicy {
            nullok: true,
            ..policy()
        };
        let (outcome, prompts) = login(&store, &policy, "123456", NOW);
        assert!(matches!(outcome, Outcome::NotEnrolledSkipped));
        assert!(prompts.is_empty());
    }

    #[test]
    fn an_unusable_name_is_refused_even_with_nullok() {
        let store = MemoryStore::default();
        let policy = LoginPolicy {
            nullok: true,
            ..policy()
        };
        let mut script = Script {
            answers: vec!["123456"],
            prompts: vec![],
        };
        let outcome = authenticate(&store, None, &policy, &mut script, &mut NoDevice, &At(NOW));
        assert!(matches!(outcome, Outcome::Denied(Denial::UnusableName)));
        assert_eq!(script.prompts, [CODE_PROMPT]);
    }

    #[test]
    fn forward_pass_splits_password_and_code() {
        let (store, plain) = enrolled();
        let policy = LoginPolicy {
            forward_pass: true,
            ..policy()
        };
        let (outcome, prompts) = login(&store, &policy, &format!("hunter2{}", code(0)), NOW);
        assert_eq!(prompts, [PASSWORD_AND_CODE_PROMPT]);
        let Outcome::Accepted {
            password: Some(password),
            ..
        } = outcome
        else {
            panic!("not accepted: {outcome:?}");
        };
        assert_eq!(password.as_str(), "hunter2");
        let (outcome, _) = login(&store, &policy, &format!("pass 99{}", plain[0]), NOW);
        let Outcome::Accepted {
            factor: Factor::BackupCode,
            password: Some(password),
            ..
        } = outcome
        else {
            panic!("not accepted: {outcome:?}");
        };
        assert_eq!(password.as_str(), "pass 99");
    }

    #[test]
    fn forward_pass_without_a_code_is_denied_and_counted() {
        let (store, _) = enrolled();
        let policy = LoginPolicy {
            forward_pass: true,
            ..policy()
        };
        let (outcome, _) = login(&store, &policy, "pw", NOW);
        assert!(matches!(outcome, Outcome::Denied(Denial::NoCode)));
        assert_eq!(store.users.borrow()["alice"].1.failures.len(), 1);
    }

    #[test]
    fn hang_up_at_the_prompt_is_a_conversation_failure() {
        let (store, _) = enrolled();
        let mut script = Script {
            answers: vec![],
            prompts: vec![],
        };
        let outcome = authenticate(
            &store,
            Some(&alice()),
            &policy(),
            &mut script,
            &mut NoDevice,
            &At(NOW),
        );
        assert!(matches!(outcome, Outcome::ConversationFailed(_)));
    }

    #[test]
    fn codes_regenerated_during_the_prompt_are_checked_against_the_new_set() {
        let (store, old) = enrolled();
        // The typed code was hashed for the old set; the decision sees the new one.
        let new = BackupCodes::generate(
            2,
            Cost {
                m_kib: 64,
                t: 1,
                p: 1,
            },
        )
        .unwrap();
        let typed = Candidate::parse(&old[0]).unwrap();
        let stale = store.users.borrow()["alice"]
            .0
            .backup_codes
            .hash_candidate(&typed);
        store
            .users
            .borrow_mut()
            .get_mut("alice")
            .unwrap()
            .0
            .backup_codes = new.hashed;
        let typed_new = Typed {
            totp: None,
            backup: Some((Candidate::parse(&new.plain[0]).unwrap(), None)),
        };
        let users = store.users.borrow();
        let (record, state) = &users["alice"];
        let mut state = state.clone();
        let decision = decide(
            record,
            &mut state,
            &typed_new,
            stale.as_ref(),
            &policy(),
            NOW,
        );
        assert!(matches!(
            decision,
            Decision::Accepted {
                factor: Factor::BackupCode,
                ..
            }
        ));
    }

    // ---- Enrollment at login.

    /// What the user does at each confirming prompt.
    #[derive(Clone, Copy)]
    enum Typing {
        /// The app's current code, for the key shown on screen.
        Right,
        Wrong,
        Empty,
        HangUp,
        /// Someone else enrolls the user while this prompt waits.
        EnrolledElsewhere,
    }

    /// A person with a phone: reads the key off the screen and types what the plan says.
    struct Phone<'s> {
        plan: Vec<Typing>,
        shown: Vec<String>,
        prompts: Vec<String>,
        store: &'s MemoryStore,
    }

    impl Phone<'_> {
        fn shown_key(&self) -> TotpKey {
            let line = self
                .shown
                .iter()
                .find_map(|m| m.strip_prefix(enroll::KEY_LINE))
                .expect("the key was shown");
            TotpKey {
                secret: Secret::from_base32(&line.replace(' ', "")).unwrap(),
                ..key()
            }
        }
    }

    impl Prompter for Phone<'_> {
        fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
            self.prompts.push(prompt.into());
            let typed = match self.plan.remove(0) {
                Typing::Right => {
                    let key = self.shown_key();
                    key.code_at_step(key.step_of(NOW)).to_string()
                }
                Typing::Wrong => "000000".into(),
                Typing::Empty => String::new(),
                Typing::HangUp => return Err(PromptError("hung up".into())),
                Typing::EnrolledElsewhere => {
                    let (store, _) = enrolled();
                    let other = store.users.borrow_mut().remove("alice").unwrap();
                    self.store.users.borrow_mut().insert("alice".into(), other);
                    let key = self.shown_key();
                    key.code_at_step(key.step_of(NOW)).to_string()
                }
            };
            Ok(Zeroizing::new(typed))
        }
        fn ask_visible(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
            // Only "Press Enter once you have stored them" is asked with echo on.
            self.prompts.push(prompt.into());
            Ok(Zeroizing::new(String::new()))
        }
        fn info(&mut self, text: &str) {
            self.shown.push(text.into());
        }
        fn error(&mut self, text: &str) {
            self.shown.push(format!("error: {text}"));
        }
        fn offer(&mut self, offer: &crate::prompt::EnrollmentOffer) {
            // Drawing the QR code is the door's business: the phone reads the URI and the key.
            self.shown.push(offer.uri.to_string());
            self.shown
                .push(format!("{}{}", enroll::KEY_LINE, offer.key_text.as_str()));
        }
    }

    fn enrolling_config() -> Config {
        Config::parse(
            std::path::Path::new("test.toml"),
            "enroll_on_login = true\n[backup_codes]\ncount = 2\n",
        )
        .unwrap()
    }

    fn enroll_with(
        store: &MemoryStore,
        config: &Config,
        nullok: bool,
        plan: &[Typing],
    ) -> (Outcome, Vec<String>, Vec<String>) {
        let policy = LoginPolicy {
            nullok,
            enroll_on_login: Some(config),
            ..policy()
        };
        let mut phone = Phone {
            plan: plan.to_vec(),
            shown: vec![],
            prompts: vec![],
            store,
        };
        let outcome = authenticate(
            store,
            Some(&alice()),
            &policy,
            &mut phone,
            &mut NoDevice,
            &At(NOW),
        );
        (outcome, phone.shown, phone.prompts)
    }

    #[test]
    fn enrolling_at_login_shows_the_code_and_key_then_saves_and_shows_backup_codes() {
        let store = MemoryStore::default();
        let config = enrolling_config();
        let (outcome, shown, prompts) = enroll_with(&store, &config, false, &[Typing::Right]);
        assert!(matches!(outcome, Outcome::Enrolled), "{outcome:?}");
        assert_eq!(prompts, [enroll::CONFIRM_PROMPT, enroll::STORED_PROMPT]);
        assert_eq!(shown[0], enroll::LOGIN_INTRO);
        // The offer: the URI for the QR code (drawn by the door), then the key as text.
        assert!(shown[1].starts_with("otpauth://totp/"), "{}", shown[1]);
        assert!(shown[2].starts_with(enroll::KEY_LINE));
        let done = &shown[3];
        assert!(
            done.starts_with("Two-factor authentication is on."),
            "{done}"
        );
        assert!(done.contains("not be shown again"));
        // The saved key is the one shown, its confirming step is spent, and the codes work.
        let (record, state) = store.users.borrow()["alice"].clone();
        let phone_key = Phone {
            plan: vec![],
            shown: shown.clone(),
            prompts: vec![],
            store: &store,
        }
        .shown_key();
        assert!(record.totp.as_ref().unwrap().secret == phone_key.secret);
        assert_eq!(state.last_step, phone_key.step_of(NOW));
        let codes: Vec<&str> = done
            .lines()
            .skip(1)
            .flat_map(str::split_whitespace)
            .filter(|w| w.len() == 11 && w.as_bytes()[5] == b'-')
            .collect();
        assert_eq!(codes.len(), 2, "{done}");
        let (outcome, _) = login(&store, &policy(), codes[1], NOW);
        assert!(matches!(
            outcome,
            Outcome::Accepted {
                factor: Factor::BackupCode,
                codes_left: Some(1),
                ..
            }
        ));
        let confirming = phone_key.code_at_step(phone_key.step_of(NOW)).to_string();
        let (outcome, _) = login(&store, &policy(), &confirming, NOW);
        assert!(matches!(outcome, Outcome::Denied(Denial::ReplayedCode)));
    }

    #[test]
    fn three_wrong_confirming_codes_deny_and_write_nothing() {
        let store = MemoryStore::default();
        let config = enrolling_config();
        let plan = [Typing::Wrong, Typing::Empty, Typing::Wrong];
        let (outcome, shown, prompts) = enroll_with(&store, &config, false, &plan);
        assert!(
            matches!(outcome, Outcome::Denied(Denial::EnrollmentNotConfirmed)),
            "{outcome:?}"
        );
        assert_eq!(prompts.len(), 3);
        assert!(store.users.borrow().is_empty());
        let errors: Vec<&String> = shown.iter().filter(|m| m.starts_with("error:")).collect();
        assert_eq!(errors.len(), 3, "{shown:?}");
        assert!(errors[0].contains("2 tries left") && errors[1].contains("1 try left"));
        assert!(errors[2].contains("not set up"));
    }

    #[test]
    fn a_wrong_confirming_code_may_be_retried() {
        let store = MemoryStore::default();
        let config = enrolling_config();
        let plan = [Typing::Wrong, Typing::Wrong, Typing::Right];
        let (outcome, _, prompts) = enroll_with(&store, &config, false, &plan);
        assert!(matches!(outcome, Outcome::Enrolled), "{outcome:?}");
        assert_eq!(prompts.len(), 4);
        assert!(store.users.borrow().contains_key("alice"));
    }

    #[test]
    fn with_nullok_an_empty_answer_postpones_and_writes_nothing() {
        let store = MemoryStore::default();
        let config = enrolling_config();
        let (outcome, _, prompts) = enroll_with(&store, &config, true, &[Typing::Empty]);
        assert!(
            matches!(outcome, Outcome::EnrollmentPostponed),
            "{outcome:?}"
        );
        assert_eq!(prompts, [enroll::CONFIRM_PROMPT_SKIPPABLE]);
        assert!(store.users.borrow().is_empty());
        // nullok does not turn wrong codes into a pass.
        let plan = [Typing::Wrong; 3];
        let (outcome, _, _) = enroll_with(&store, &config, true, &plan);
        assert!(matches!(
            outcome,
            Outcome::Denied(Denial::EnrollmentNotConfirmed)
        ));
    }

    #[test]
    fn hanging_up_while_enrolling_writes_nothing() {
        let store = MemoryStore::default();
        let config = enrolling_config();
        let plan = [Typing::Wrong, Typing::HangUp];
        let (outcome, _, _) = enroll_with(&store, &config, false, &plan);
        assert!(matches!(outcome, Outcome::ConversationFailed(_)));
        assert!(store.users.borrow().is_empty());
    }

    #[test]
    fn an_enrollment_made_meanwhile_elsewhere_is_kept() {
        let store = MemoryStore::default();
        let config = enrolling_config();
        let plan = [Typing::EnrolledElsewhere];
        let (outcome, shown, _) = enroll_with(&store, &config, false, &plan);
        assert!(matches!(
            outcome,
            Outcome::Denied(Denial::EnrolledMeanwhile)
        ));
        assert!(shown.last().unwrap().contains("another session"));
        // The other session's key is still the one on record.
        let record = store.users.borrow()["alice"].0.clone();
        assert!(record.totp.unwrap().secret == key().secret);
    }

    #[test]
    fn enrollment_is_never_offered_with_forward_pass_or_for_enrolled_users() {
        let config = enrolling_config();
        let store = MemoryStore::default();
        let forwarding = LoginPolicy {
            forward_pass: true,
            enroll_on_login: Some(&config),
            ..policy()
        };
        let mut script = Script {
            answers: vec!["pw123456"],
            prompts: vec![],
        };
        let outcome = authenticate(
            &store,
            Some(&alice()),
            &forwarding,
            &mut script,
            &mut NoDevice,
            &At(NOW),
        );
        assert!(matches!(outcome, Outcome::Denied(Denial::NotEnrolled)));
        assert_eq!(script.prompts, [PASSWORD_AND_CODE_PROMPT]);
        assert!(store.users.borrow().is_empty());

        let (store, _) = enrolled();
        let enrolling = LoginPolicy {
            enroll_on_login: Some(&config),
            ..policy()
        };
        let (outcome, prompts) = login(&store, &enrolling, &code(0), NOW);
        assert!(matches!(outcome, Outcome::Accepted { .. }));
        assert_eq!(prompts, [CODE_PROMPT]);
    }

    #[test]
    fn an_unusable_name_is_refused_even_with_enroll_on_login() {
        let config = enrolling_config();
        let store = MemoryStore::default();
        let policy = LoginPolicy {
            nullok: true,
            enroll_on_login: Some(&config),
            ..policy()
        };
        let mut script = Script {
            answers: vec!["123456"],
            prompts: vec![],
        };
        let outcome = authenticate(&store, None, &policy, &mut script, &mut NoDevice, &At(NOW));
        assert!(matches!(outcome, Outcome::Denied(Denial::UnusableName)));
        assert!(store.users.borrow().is_empty());
    }

    mod keys {
        use p256::ecdsa::signature::Signer;
        use p256::ecdsa::{Signature, SigningKey};

        use super::*;
        use crate::key_assertion::{rp_id_hash, Assertion, AssertionError};
        use crate::security_key::{KeyName, PublicKey, SecurityKey};

        const RP: &str = "pam://host";

        /// A software key that signs what it is asked to, as a real one would, with knobs for the
        /// ways a key or its clone can go wrong.
        struct SoftKey {
            signer: SigningKey,
            credential_id: Vec<u8>,
            counter: u32,
            flags: u8,
            rp_id: &'static str,
            result: Option<TouchFailure>,
            touched: usize,
        }

        impl SoftKey {
            fn new(seed: u8) -> SoftKey {
                SoftKey {
                    signer: SigningKey::from_slice(&[seed; 32]).unwrap(),
                    credential_id: vec![seed; 48],
                    counter: 10,
                    flags: 0x01,
                    rp_id: RP,
                    result: None,
                    touched: 0,
                }
            }

            fn registered(&self, name: &str) -> SecurityKey {
                let point = self.signer.verifying_key().to_sec1_point(false);
                SecurityKey {
                    name: KeyName::parse(name).unwrap(),
                    credential_id: self.credential_id.clone(),
                    public_key: PublicKey::es256(point.as_bytes()).unwrap(),
                    rp_id: RP.into(),
                    user_verification: false,
                    added: NOW,
                }
            }
        }

        impl KeyToucher for SoftKey {
            fn touch(
                &mut self,
                keys: &[SecurityKey],
                client_data_hash: &[u8; 32],
                _: bool,
                prompter: &mut dyn Prompter,
            ) -> Result<Assertion, TouchFailure> {
                self.touched += 1;
                if let Some(failure) = &self.result {
                    return Err(failure.clone());
                }
                assert!(!keys.is_empty());
                prompter.info("Touch your security key.");
                self.counter = self.counter.wrapping_add(1);
                let mut data = rp_id_hash(self.rp_id).to_vec();
                data.push(self.flags);
                data.extend(self.counter.to_be_bytes());
                let signed = [data.as_slice(), client_data_hash].concat();
                let signature: Signature = self.signer.sign(&signed);
                Ok(Assertion {
                    credential_id: self.credential_id.clone(),
                    authenticator_data: data,
                    signature: signature.to_der().as_bytes().to_vec(),
                })
            }
        }

        fn with_key(key: &SoftKey, codes: bool) -> MemoryStore {
            let (store, _) = enrolled();
            {
                let mut users = store.users.borrow_mut();
                let (record, _) = users.get_mut("alice").unwrap();
                record.keys.push(key.registered("blue"));
                if !codes {
                    record.totp = None;
                    record.backup_codes = BackupCodes::empty();
                }
            }
            store
        }

        fn touch(
            store: &MemoryStore,
            policy: &LoginPolicy,
            key: &mut SoftKey,
        ) -> (Outcome, Vec<String>) {
            let mut script = Script {
                answers: vec![],
                prompts: vec![],
            };
            let outcome = authenticate(store, Some(&alice()), policy, &mut script, key, &At(NOW));
            (outcome, script.prompts)
        }

        fn failures(store: &MemoryStore) -> usize {
            store.users.borrow()["alice"].1.failures.len()
        }

        #[test]
        fn a_touch_logs_in_without_a_prompt_and_stores_the_counter() {
            let mut key = SoftKey::new(1);
            let store = with_key(&key, true);
            let (outcome, prompts) = touch(&store, &policy(), &mut key);
            assert!(
                matches!(&outcome, Outcome::Accepted { factor: Factor::SecurityKey, key: Some(name), .. } if name.as_str() == "blue"),
                "{outcome:?}"
            );
            assert!(prompts.is_empty(), "{prompts:?}");
            let state = store.users.borrow()["alice"].1.clone();
            assert_eq!(state.key_uses[0].sign_count, 11);
            assert_eq!(state.key_uses[0].last_used, NOW);
        }

        #[test]
        fn a_counter_that_does_not_move_forward_is_a_clone_and_is_refused() {
            let mut key = SoftKey::new(1);
            let store = with_key(&key, true);
            touch(&store, &policy(), &mut key);
            key.counter -= 1; // the clone signs with the counter the original already used
            let (outcome, _) = touch(&store, &policy(), &mut key);
            assert!(
                matches!(
                    outcome,
                    Outcome::KeyRefused {
                        why: KeyRefusal::CounterRegressed {
                            stored: 11,
                            presented: 11
                        },
                        ..
                    }
                ),
                "{outcome:?}"
            );
            assert_eq!(failures(&store), 1);
        }

        #[test]
        fn keys_that_keep_no_counter_work_while_it_stays_zero() {
            let mut key = SoftKey::new(1);
            let store = with_key(&key, true);
            for _ in 0..2 {
                key.counter = u32::MAX; // the next signature carries 0
                let (outcome, _) = touch(&store, &policy(), &mut key);
                assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
            }
        }

        #[test]
        fn tampered_assertions_and_foreign_keys_are_refused_and_counted() {
            type Spoil = fn(&mut SoftKey);
            let cases: [(&str, Spoil, KeyRefusal); 4] = [
                (
                    "no touch",
                    |k| k.flags = 0,
                    KeyRefusal::Assertion(AssertionError::NoUserPresence),
                ),
                (
                    "another rp",
                    |k| k.rp_id = "pam://other",
                    KeyRefusal::Assertion(AssertionError::WrongRelyingParty),
                ),
                (
                    "another key, same id",
                    |k| k.signer = SigningKey::from_slice(&[9; 32]).unwrap(),
                    KeyRefusal::Assertion(AssertionError::BadSignature),
                ),
                (
                    "another user's key",
                    |k| k.credential_id = vec![9; 48],
                    KeyRefusal::UnknownCredential,
                ),
            ];
            for (case, spoil, expected) in cases {
                let mut key = SoftKey::new(1);
                let store = with_key(&key, true);
                spoil(&mut key);
                let (outcome, _) = touch(&store, &policy(), &mut key);
                assert!(
                    matches!(&outcome, Outcome::KeyRefused { why, .. } if *why == expected),
                    "{case}: {outcome:?}"
                );
                assert_eq!(failures(&store), 1, "{case}");
            }
        }

        #[test]
        fn user_verification_is_required_where_registered_or_configured() {
            let mut key = SoftKey::new(1);
            let store = with_key(&key, true);
            let strict = LoginPolicy {
                keys_require_uv: true,
                ..policy()
            };
            let (outcome, _) = touch(&store, &strict, &mut key);
            assert!(
                matches!(
                    outcome,
                    Outcome::KeyRefused {
                        why: KeyRefusal::NoUserVerification,
                        ..
                    }
                ),
                "{outcome:?}"
            );
            key.flags = 0x05;
            let (outcome, _) = touch(&store, &strict, &mut key);
            assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
            store.users.borrow_mut().get_mut("alice").unwrap().0.keys[0].user_verification = true;
            key.flags = 0x01;
            let (outcome, _) = touch(&store, &policy(), &mut key);
            assert!(
                matches!(
                    outcome,
                    Outcome::KeyRefused {
                        why: KeyRefusal::NoUserVerification,
                        ..
                    }
                ),
                "{outcome:?}"
            );
        }

        #[test]
        fn without_a_device_or_remotely_the_code_prompt_follows() {
            for (policy, failure) in [
                (policy(), Some(TouchFailure::NoDevice)),
                (policy(), Some(TouchFailure::Timeout)),
                (from("10.0.0.9"), None),
            ] {
                let mut key = SoftKey::new(1);
                key.result = failure.clone();
                let store = with_key(&key, true);
                let mut script = Script {
                    answers: vec!["000000"],
                    prompts: vec![],
                };
                let outcome = authenticate(
                    &store,
                    Some(&alice()),
                    &policy,
                    &mut script,
                    &mut key,
                    &At(NOW),
                );
                assert!(
                    matches!(outcome, Outcome::Denied(Denial::WrongCode)),
                    "{failure:?}: {outcome:?}"
                );
                assert_eq!(script.prompts, [CODE_PROMPT], "{failure:?}");
                assert_eq!(
                    key.touched,
                    usize::from(policy.console.here()),
                    "remote logins never touch"
                );
            }
        }

        #[test]
        fn a_user_with_only_keys_fails_closed_where_no_key_can_be_used() {
            for (policy, failure) in [
                (policy(), Some(TouchFailure::NoDevice)),
                (from("10.0.0.9"), None),
            ] {
                let mut key = SoftKey::new(1);
                key.result = failure;
                let store = with_key(&key, false);
                let nullok = LoginPolicy {
                    nullok: true,
                    ..policy
                };
                let (outcome, prompts) = touch(&store, &nullok, &mut key);
                assert!(matches!(outcome, Outcome::KeyUnavailable(_)), "{outcome:?}");
                assert!(prompts.is_empty());
            }
        }

        #[test]
        fn a_locked_user_is_not_asked_to_touch() {
            let mut key = SoftKey::new(1);
            let store = with_key(&key, true);
            store
                .users
                .borrow_mut()
                .get_mut("alice")
                .unwrap()
                .1
                .locked_until = NOW + 60;
            let (outcome, _) = touch(&store, &policy(), &mut key);
            assert!(matches!(outcome, Outcome::Locked { .. }));
            assert_eq!(key.touched, 0);
        }
    }
}
