//! Enrollment, shared by the CLI, enroll-on-login and (later) the web backend: make a key and
//! backup codes, and save them only once the user has proved, with one code, that their app works.

use std::fmt;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::backup::{self, BackupCodeError, BackupCodes, Candidate, CandidateHash, Cost, NewCodes};
use crate::clock::Clock;
use crate::config::Config;
use crate::prompt::{EnrollmentOffer, PromptError, Prompter};
use crate::record::{Record, UserThrottle};
use crate::state::State;
use crate::store::{Store, StoreError};
use crate::text::{push_in_fours, without_separators};
use crate::totp::{Algorithm, Digits, Secret, TotpKey, Verdict};
use crate::user::UserName;

/// The first line an unenrolled user sees when enrolling at login.
pub const LOGIN_INTRO: &str = "Two-factor authentication is not set up for this account yet. \
                               Scan this QR code with an authenticator app:";
/// Starts the line with the key as text, for apps without a camera.
pub const KEY_LINE: &str = "Or type this key into the app: ";
/// The prompt for the confirming code when enrollment is required.
pub const CONFIRM_PROMPT: &str = "Code from the app to confirm: ";
/// The prompt when the admin allows unenrolled users (nullok): an empty answer skips.
pub const CONFIRM_PROMPT_SKIPPABLE: &str = "Code from the app to confirm (Enter to skip): ";
/// Holds the backup codes on screen until the user has stored them.
pub const STORED_PROMPT: &str = "Press Enter once you have stored them: ";
/// How many confirming codes one login may try.
pub const CONFIRM_TRIES: u32 = 3;

/// A key and codes that are not saved yet.
pub struct Pending {
    pub key: TotpKey,
    pub codes: NewCodes,
}

/// How an enrollment at login ended.
#[derive(Debug)]
pub enum AtLogin {
    /// The application answered with the password: it cannot enroll (nothing was written).
    CannotEnrollHere,
    /// The conversation failed or was abandoned (nothing was written).
    ConversationFailed(PromptError),
    /// Saved, with a confirmed code.
    Enrolled,
    /// Another session enrolled the user first; its enrollment is kept.
    EnrolledMeanwhile,
    /// Could not be done (no randomness, a store failure).
    Failed(EnrollError),
    /// No right confirming code in `CONFIRM_TRIES` tries (nothing was written).
    NotConfirmed,
    /// The user skipped it where that is allowed (nothing was written).
    Postponed,
}

/// An enrollment read from another module's file (google-authenticator's), to be saved by
/// `import_key`.
pub struct Import {
    pub key: TotpKey,
    /// Steps accepted either side of now, if the file narrows the host's window.
    pub window: Option<u8>,
    pub throttle: Option<UserThrottle>,
    /// The scratch codes the file still lists, normalized as typed input would be.
    pub scratch_codes: Vec<Zeroizing<String>>,
    /// The newest time step the other module accepted, where it recorded used steps
    /// (google-authenticator's `DISALLOW_REUSE`); `None` if it recorded none.
    pub last_used_step: Option<u64>,
}

/// What `import_key` saved.
#[derive(Debug, PartialEq, Eq)]
pub struct Imported {
    /// Scratch codes kept as backup codes.
    pub scratch_codes: usize,
    /// Scratch codes left out because they were imported before and are spent or gone.
    pub skipped: usize,
}

/// Names one imported scratch code of one secret without revealing it to anyone who lacks the
/// secret: the first 128 bits of SHA-256 over a label, the secret and the code. A store keeps
/// the fingerprints of every scratch code it ever imported for a user (they survive `disable`),
/// so that no import can bring back a code that was spent, replaced or disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScratchFingerprint([u8; FINGERPRINT_LEN]);

/// Why an enrollment was not saved.
#[derive(Debug)]
pub enum EnrollError {
    /// The user is enrolled already and replacing was not asked for.
    AlreadyEnrolled,
    /// The confirming code is not the app's current code.
    WrongCode,
    /// The confirming code was already used.
    ReplayedCode,
    /// The user is not enrolled (for operations on an enrollment).
    NotEnrolled,
    /// Codes could not be generated.
    BackupCodes(BackupCodeError),
    /// The store failed.
    Store(StoreError),
    /// Random bytes could not be had.
    Random,
}

impl Pending {
    /// A new random key (or `secret`, when the admin supplies one) with the host's parameters,
    /// and fresh backup codes.
    pub fn new(config: &Config, secret: Option<Secret>) -> Result<Pending, EnrollError> {
        Pending::with_key(config, new_key(config, secret)?)
    }

    /// `key` with fresh backup codes (a slow hash each).
    pub fn with_key(config: &Config, key: TotpKey) -> Result<Pending, EnrollError> {
        let codes = BackupCodes::generate(usize::from(config.backup_codes.count), Cost::DEFAULT)
            .map_err(EnrollError::BackupCodes)?;
        Ok(Pending { key, codes })
    }

    /// The otpauth URI for the user's app.
    pub fn uri(&self, config: &Config, user: &UserName) -> Zeroizing<String> {
        self.key.otpauth_uri(&config.issuer(), user.as_str())
    }

    /// The key as text for typing into an app.
    pub fn key_text(&self) -> Zeroizing<String> {
        key_text(&self.key)
    }

    /// Saves the enrollment if `code` is the app's current code (within the host window), and
    /// spends that code. Refuses to replace an enrollment unless `replace` is set.
    pub fn confirm<S: Store>(
        &self,
        store: &S,
        user: &UserName,
        config: &Config,
        code: &str,
        now: u64,
        replace: bool,
    ) -> Result<(), EnrollError> {
        let code = without_separators(code);
        store
            .replace(user, |current, state| {
                if current.is_some() && !replace {
                    return Err(EnrollError::AlreadyEnrolled);
                }
                // The replay guard belongs to a key: a new key's codes start afresh.
                let same_key = current
                    .and_then(|r| r.totp.as_ref())
                    .is_some_and(|k| k.secret == self.key.secret && k.period == self.key.period);
                let last_step = if same_key { state.last_step } else { 0 };
                match self.key.verify(&code, now, config.totp.window, last_step) {
                    Verdict::Accepted(step) => state.last_step = step,
                    Verdict::Replayed => return Err(EnrollError::ReplayedCode),
                    Verdict::Wrong => return Err(EnrollError::WrongCode),
                }
                // A new enrollment starts unlocked, with no failures and all codes unspent.
                state.clear_throttle();
                let record = Record {
                    totp: Some(self.key.clone()),
                    window: None,
                    throttle: None,
                    backup_codes: self.codes.hashed.clone(),
                    // A new TOTP key leaves the security keys registered.
                    keys: current.map(|r| r.keys.clone()).unwrap_or_default(),
                };
                Ok((Some(record), ()))
            })
            .map_err(EnrollError::Store)?
    }
}

/// Enrolls an unenrolled user during a login they have already passed the password step of:
/// shows the QR code and the key, asks for one confirming code (up to `CONFIRM_TRIES` times),
/// saves, and shows the backup codes once. Nothing is written unless a code is confirmed. With
/// `skippable` (nullok), an empty answer postpones enrollment instead.
pub fn at_login<S: Store>(
    store: &S,
    user: &UserName,
    config: &Config,
    skippable: bool,
    prompter: &mut dyn Prompter,
    clock: &dyn Clock,
) -> AtLogin {
    let key = match new_key(config, None) {
        Ok(key) => key,
        Err(e) => return AtLogin::Failed(e),
    };
    prompter.info(LOGIN_INTRO);
    prompter.offer(&EnrollmentOffer {
        uri: key.otpauth_uri(&config.issuer(), user.as_str()),
        key_text: key_text(&key),
    });
    let prompt = if skippable {
        CONFIRM_PROMPT_SKIPPABLE
    } else {
        CONFIRM_PROMPT
    };
    for tries_left in (0..CONFIRM_TRIES).rev() {
        let answer = match prompter.ask_hidden(prompt) {
            Ok(answer) => answer,
            Err(e) => return AtLogin::ConversationFailed(e),
        };
        if prompter.repeats_password(&answer) {
            // Not a person at a prompt: as if enrollment at login were off. Such applications
            // may still show the text above after the login (sshd makes it a banner): say that
            // the key was not kept.
            prompter.info(
                "Two-factor authentication cannot be set up through this application, and the \
                 key above was not saved: set it up at a console or an SSH keyboard-interactive \
                 login.",
            );
            return AtLogin::CannotEnrollHere;
        }
        if answer.trim().is_empty() && skippable {
            prompter.info("Two-factor authentication was not set up; you will be asked again.");
            return AtLogin::Postponed;
        }
        // The backup codes cost a slow hash each: make them only once the code looks right.
        // `confirm` checks it again, under the lock, before anything is saved.
        let looks_right = matches!(
            key.verify(
                &without_separators(&answer),
                clock.now(),
                config.totp.window,
                0
            ),
            Verdict::Accepted(_)
        );
        let confirmed = if looks_right {
            Pending::with_key(config, key.clone()).and_then(|pending| {
                pending
                    .confirm(store, user, config, &answer, clock.now(), false)
                    .map(|()| pending)
            })
        } else {
            Err(EnrollError::WrongCode)
        };
        match confirmed {
            Ok(pending) => {
                prompter.info(&codes_message(&pending.codes.plain));
                // A prompt, so that the codes stay on screen until the user has them, and so
                // that sshd sends them inside its keyboard-interactive exchange (it would turn a
                // last message into a login banner, which many clients never show). The
                // enrollment is saved already: a hang-up here does not undo it.
                if !pending.codes.plain.is_empty() {
                    let _ = prompter.ask_visible(STORED_PROMPT);
                }
                return AtLogin::Enrolled;
            }
            Err(EnrollError::AlreadyEnrolled) => {
                prompter.error(
                    "Two-factor authentication was just set up in another session; \
                     log in again with a code from that enrollment.",
                );
                return AtLogin::EnrolledMeanwhile;
            }
            // A new key has no used steps, so a replay can only be a code typed twice.
            Err(EnrollError::WrongCode | EnrollError::ReplayedCode) if tries_left > 0 => {
                let tries = if tries_left == 1 { "try" } else { "tries" };
                prompter.error(&format!(
                    "Wrong code; {tries_left} {tries} left. Check that the phone's clock is right."
                ));
            }
            Err(EnrollError::WrongCode | EnrollError::ReplayedCode) => break,
            Err(e) => return AtLogin::Failed(e),
        }
    }
    prompter.error("Wrong code; two-factor authentication was not set up.");
    AtLogin::NotConfirmed
}

impl Import {
    /// The fingerprint of each scratch code, in order.
    pub fn fingerprints(&self) -> Vec<ScratchFingerprint> {
        self.scratch_codes
            .iter()
            .map(|code| ScratchFingerprint::of(&self.key, code))
            .collect()
    }
}

impl ScratchFingerprint {
    /// The fingerprint of `code` (normalized as typed input would be) for `key`'s secret.
    pub fn of(key: &TotpKey, code: &str) -> ScratchFingerprint {
        let secret = key.secret.as_bytes();
        let code = Zeroizing::new(without_separators(code).to_ascii_lowercase());
        let mut digest = Sha256::new();
        digest.update(FINGERPRINT_LABEL);
        digest.update((secret.len() as u64).to_be_bytes());
        digest.update(secret);
        digest.update(code.as_bytes());
        let out = digest.finalize();
        let mut first = [0u8; FINGERPRINT_LEN];
        first.copy_from_slice(&out[..FINGERPRINT_LEN]);
        ScratchFingerprint(first)
    }

    /// Reads a list of fingerprints, one in hex per line. Lines that are not a fingerprint are
    /// skipped: a write cut short by a crash leaves a partial line, and the line after it starts
    /// afresh (each append begins with a newline).
    pub fn parse_list(text: &str) -> Vec<ScratchFingerprint> {
        text.lines().filter_map(ScratchFingerprint::parse).collect()
    }

    /// `fingerprints` as lines to append to a list that `parse_list` reads: a newline first,
    /// so that a partial line a crash left behind ends before them.
    pub fn list_text(fingerprints: &[ScratchFingerprint]) -> String {
        let mut text = String::with_capacity(1 + fingerprints.len() * (2 * FINGERPRINT_LEN + 1));
        text.push('\n');
        for fingerprint in fingerprints {
            for byte in fingerprint.0 {
                let _ = write!(text, "{byte:02x}");
            }
            text.push('\n');
        }
        text
    }

    fn parse(line: &str) -> Option<ScratchFingerprint> {
        let line = line.trim();
        if line.len() != 2 * FINGERPRINT_LEN {
            return None;
        }
        let mut out = [0u8; FINGERPRINT_LEN];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(line.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ScratchFingerprint(out))
    }
}

/// Saves an imported enrollment, deciding under the user's lock which scratch codes to keep:
/// a code of the current enrollment (same secret) is kept only while it is unspent, and any
/// other code only if its fingerprint is not in `remembered` (the codes ever imported for this
/// user). The caller makes the fingerprints of `import`'s codes durable in that list before it
/// calls this, so that a crash can only forget a code, never revive one.
///
/// The replay guard starts at the newest step the other module accepted (so a code just used
/// there is refused here), or at the current step when it recorded none; it never goes back for
/// the same key. A new enrollment starts unlocked, with no failures.
pub fn import_key<S: Store>(
    store: &S,
    user: &UserName,
    config: &Config,
    import: &Import,
    remembered: &[ScratchFingerprint],
    now: u64,
    replace: bool,
) -> Result<Imported, EnrollError> {
    let key = &import.key;
    let fingerprints = import.fingerprints();
    let candidates: Vec<Option<Candidate>> = import
        .scratch_codes
        .iter()
        .map(|code| Candidate::parse(code))
        .collect();
    // The slow hashes run before the lock, on the enrollment as it is now; the decision under
    // the lock hashes again only if the codes changed in between.
    let loaded = store.load(user).map_err(EnrollError::Store)?;
    let same_secret =
        |record: &Record| record.totp.as_ref().is_some_and(|k| k.secret == key.secret);
    let current_set = |record: &Record| same_secret(record).then(|| record.backup_codes.clone());
    let early_hashes = loaded
        .as_ref()
        .and_then(|(record, _)| current_set(record))
        .map(|set| (set.binding(), hash_all(&set, &candidates)));
    let expected = loaded.as_ref().map(|(record, state)| {
        let hashes = early_hashes.as_ref().map(|(_, h)| h.as_slice());
        keep_mask(
            record,
            state,
            hashes,
            &candidates,
            &fingerprints,
            remembered,
            same_secret(record),
        )
    });
    let expected = expected.unwrap_or_else(|| keep_unremembered(&fingerprints, remembered));
    let early_set = hash_kept(&import.scratch_codes, &expected)?;

    let window = import
        .window
        .map_or(config.totp.window, |w| w.min(config.totp.window));
    let now_step = key.step_of(now);
    let guard_start = match import.last_used_step {
        // A step beyond the window is no code the other module can have accepted: clamp it, so
        // that a damaged file cannot lock the key's codes out for long.
        Some(step) => step.min(now_step.saturating_add(u64::from(window))),
        None => now_step,
    };
    store
        .replace(user, |current, state| {
            if current.is_some() && !replace {
                return Err(EnrollError::AlreadyEnrolled);
            }
            let keep = match current {
                Some(record) => {
                    let same = same_secret(record);
                    let fresh;
                    let hashes = match &early_hashes {
                        Some((binding, h)) if same && *binding == record.backup_codes.binding() => {
                            Some(h.as_slice())
                        }
                        _ if same => {
                            fresh = hash_all(&record.backup_codes, &candidates);
                            Some(fresh.as_slice())
                        }
                        _ => None,
                    };
                    keep_mask(
                        record,
                        state,
                        hashes,
                        &candidates,
                        &fingerprints,
                        remembered,
                        same,
                    )
                }
                None => keep_unremembered(&fingerprints, remembered),
            };
            let codes = if keep == expected {
                early_set.clone()
            } else {
                hash_kept(&import.scratch_codes, &keep)?
            };
            // The replay guard belongs to a key: a new key's guard starts where the other module
            // left off.
            let same_key = current
                .and_then(|r| r.totp.as_ref())
                .is_some_and(|k| k.secret == key.secret && k.period == key.period);
            let kept_step = if same_key { state.last_step } else { 0 };
            state.last_step = kept_step.max(guard_start);
            state.clear_throttle();
            let kept = codes.len();
            let record = Record {
                totp: Some(key.clone()),
                window: import.window,
                throttle: import.throttle,
                backup_codes: codes,
                keys: current.map(|r| r.keys.clone()).unwrap_or_default(),
            };
            Ok((
                Some(record),
                Imported {
                    scratch_codes: kept,
                    skipped: import.scratch_codes.len() - kept,
                },
            ))
        })
        .map_err(EnrollError::Store)?
}

/// Each candidate hashed under `set`'s salt (`None` for one that is not a code, or no set).
fn hash_all(set: &BackupCodes, candidates: &[Option<Candidate>]) -> Vec<Option<CandidateHash>> {
    candidates
        .iter()
        .map(|c| c.as_ref().and_then(|c| set.hash_candidate(c)))
        .collect()
}

/// Which codes to keep, given the current record (and, if it has the same secret, each code's
/// hash under its set): an unspent current code, or a code never imported before.
fn keep_mask(
    record: &Record,
    state: &State,
    hashes: Option<&[Option<CandidateHash>]>,
    candidates: &[Option<Candidate>],
    fingerprints: &[ScratchFingerprint],
    remembered: &[ScratchFingerprint],
    same_secret: bool,
) -> Vec<bool> {
    let binding = record.backup_codes.binding();
    (0..candidates.len())
        .map(|i| {
            let current = hashes
                .filter(|_| same_secret)
                .and_then(|h| h.get(i))
                .and_then(Option::as_ref)
                .and_then(|h| record.backup_codes.find(h));
            match current {
                Some(index) => !state.is_code_spent(binding, index),
                None => !remembered.contains(&fingerprints[i]),
            }
        })
        .collect()
}

/// With no current enrollment: every code never imported before.
fn keep_unremembered(
    fingerprints: &[ScratchFingerprint],
    remembered: &[ScratchFingerprint],
) -> Vec<bool> {
    fingerprints
        .iter()
        .map(|f| !remembered.contains(f))
        .collect()
}

/// The kept codes hashed as a new set (a slow hash each).
fn hash_kept(codes: &[Zeroizing<String>], keep: &[bool]) -> Result<BackupCodes, EnrollError> {
    let kept: Vec<Zeroizing<String>> = codes
        .iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(c, _)| c.clone())
        .collect();
    BackupCodes::hash(&kept, Cost::DEFAULT).map_err(EnrollError::BackupCodes)
}

/// A new random key (or `secret`) with the host's parameters for new enrollments.
fn new_key(config: &Config, secret: Option<Secret>) -> Result<TotpKey, EnrollError> {
    let secret = match secret {
        Some(secret) => secret,
        None => Secret::generate().map_err(|_| EnrollError::Random)?,
    };
    Ok(TotpKey {
        secret,
        algorithm: config.totp.algorithm,
        digits: config.totp.digits,
        period: config.totp.period,
    })
}

/// The key as text for typing into an app: base32 in groups of four, and the parameters when
/// they are not the ones every app assumes.
fn key_text(key: &TotpKey) -> Zeroizing<String> {
    let base32 = key.secret.to_base32();
    // Sized for the parameters too, so that no reallocation leaves an unwiped copy behind.
    let mut text = Zeroizing::new(String::with_capacity(base32.len() * 5 / 4 + 40));
    push_in_fours(&mut text, &base32);
    if key.algorithm != Algorithm::Sha1 || key.digits != Digits::SIX || key.period != 30 {
        let _ = write!(
            text,
            " ({}, {} digits, every {} s)",
            key.algorithm.name(),
            key.digits.get(),
            key.period
        );
    }
    text
}

/// The one time new backup codes are shown at login, two to a line.
fn codes_message(codes: &[Zeroizing<String>]) -> Zeroizing<String> {
    // Sized up front, so that no reallocation leaves an unwiped copy of a code behind.
    let mut text = Zeroizing::new(String::with_capacity(160 + codes.len() * 14));
    text.push_str("Two-factor authentication is on.");
    if codes.is_empty() {
        return text;
    }
    text.push_str(" Backup codes, each good for one login if you lose your phone:");
    for (i, code) in codes.iter().enumerate() {
        text.push_str(if i % 2 == 0 { "\n  " } else { "  " });
        backup::push_display(&mut text, code);
    }
    text.push_str("\nStore them somewhere safe now: they will not be shown again.");
    text
}

/// Replaces a user's backup codes with `count` new ones, keeping their TOTP key.
pub fn regenerate_codes<S: Store>(
    store: &S,
    user: &UserName,
    count: usize,
) -> Result<Vec<Zeroizing<String>>, EnrollError> {
    let NewCodes { plain, hashed } =
        BackupCodes::generate(count, Cost::DEFAULT).map_err(EnrollError::BackupCodes)?;
    store
        .replace(user, |current, _state| {
            let mut record = current.cloned().ok_or(EnrollError::NotEnrolled)?;
            record.backup_codes = hashed.clone();
            Ok((Some(record), ()))
        })
        .map_err(EnrollError::Store)??;
    Ok(plain)
}

/// Clears the throttle of a user.
pub fn unlock<S: Store>(store: &S, user: &UserName) -> Result<(), EnrollError> {
    store
        .update(user, |_, state| {
            state.clear_throttle();
        })
        .map_err(EnrollError::Store)?
        .ok_or(EnrollError::NotEnrolled)
}

/// Removes a user's enrollment.
pub fn disable<S: Store>(store: &S, user: &UserName) -> Result<(), EnrollError> {
    store
        .replace(user, |current, _| match current {
            Some(_) => Ok((None, ())),
            None => Err(EnrollError::NotEnrolled),
        })
        .map_err(EnrollError::Store)?
}

impl fmt::Display for EnrollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnrollError::AlreadyEnrolled => f.write_str("already enrolled"),
            EnrollError::WrongCode => {
                f.write_str("that is not the current code; check the phone's clock and try again")
            }
            EnrollError::ReplayedCode => {
                f.write_str("that code was already used; wait for the next one")
            }
            EnrollError::NotEnrolled => f.write_str("not enrolled; run `twofold enroll` first"),
            EnrollError::BackupCodes(e) => e.fmt(f),
            EnrollError::Store(e) => e.fmt(f),
            EnrollError::Random => f.write_str("the system random generator failed"),
        }
    }
}

impl std::error::Error for EnrollError {}

/// Separates scratch-code fingerprints from any other use of SHA-256 over a secret.
const FINGERPRINT_LABEL: &[u8] = b"twofold imported scratch code v1\0";
const FINGERPRINT_LEN: usize = 16;
