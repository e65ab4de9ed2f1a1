//! Enrollment, shared by the CLI and (later) enroll-on-login and the web backend: make a key and
//! backup codes, and save them only once the user has proved, with one code, that their app works.

use std::fmt;

use zeroize::Zeroizing;

use crate::backup::{BackupCodeError, BackupCodes, Cost, NewCodes};
use crate::config::Config;
use crate::record::Record;
use crate::store::{Store, StoreError};
use crate::totp::{Secret, TotpKey, Verdict};
use crate::user::UserName;

/// A key and codes that are not saved yet.
pub struct Pending {
    pub key: TotpKey,
    pub codes: NewCodes,
}

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
        let secret = match secret {
            Some(secret) => secret,
            None => Secret::generate().map_err(|_| EnrollError::Random)?,
        };
        let key = TotpKey {
            secret,
            algorithm: config.totp.algorithm,
            digits: config.totp.digits,
            period: config.totp.period,
        };
        let codes = BackupCodes::generate(usize::from(config.backup_codes.count), Cost::DEFAULT)
            .map_err(EnrollError::BackupCodes)?;
        Ok(Pending { key, codes })
    }

    /// The otpauth URI for the user's app.
    pub fn uri(&self, config: &Config, user: &UserName) -> Zeroizing<String> {
        self.key.otpauth_uri(&config.issuer(), user.as_str())
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
        let code: String = code.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
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
                state.failures.clear();
                state.locked_until = 0;
                let record = Record {
                    totp: Some(self.key.clone()),
                    window: None,
                    throttle: None,
                    backup_codes: self.codes.hashed.clone(),
                };
                Ok((Some(record), ()))
            })
            .map_err(EnrollError::Store)?
    }
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
            record.backup_codes = hashed;
            Ok((Some(record), ()))
        })
        .map_err(EnrollError::Store)??;
    Ok(plain)
}

/// Clears the throttle of a user.
pub fn unlock<S: Store>(store: &S, user: &UserName) -> Result<(), EnrollError> {
    store
        .update(user, |_, state| {
            state.failures.clear();
            state.locked_until = 0;
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
            EnrollError::AlreadyEnrolled => {
                f.write_str("already enrolled; use --force to replace the enrollment")
            }
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
