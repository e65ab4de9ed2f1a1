//! Registering, renaming and removing a user's security keys: each change is one locked
//! `Store::replace`, decided on the current record, so that two admins (or a user and an admin)
//! never lose each other's keys.

use std::fmt;

use crate::record::{check_keys, Record};
use crate::security_key::{KeyName, SecurityKey};
use crate::store::{Store, StoreError};
use crate::user::UserName;

/// Why a key change was refused.
#[derive(Debug)]
pub enum KeyChangeError {
    /// The user has no enrollment.
    NotEnrolled,
    /// A key needs TOTP first: a way in that does not depend on the key.
    NoTotp,
    /// The name is taken.
    NameTaken(KeyName),
    /// The credential is registered already (as this name).
    AlreadyRegistered(KeyName),
    /// `max_keys` reached.
    TooMany(usize),
    /// No key of this name.
    NoSuchKey(KeyName),
    /// Removing it would leave nothing to log in with.
    LastFactor(KeyName),
    /// An import for a user without a record found one made meanwhile.
    EnrolledMeanwhile,
    /// The keys would not make a valid record.
    Invalid(String),
    Store(StoreError),
}

impl fmt::Display for KeyChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyChangeError::NotEnrolled => f.write_str("not enrolled; run `twofold enroll` first"),
            KeyChangeError::NoTotp => f.write_str(
                "a security key needs TOTP first (a way in without the key); run `twofold enroll`",
            ),
            KeyChangeError::NameTaken(name) => write!(f, "a key named {name} exists already"),
            KeyChangeError::AlreadyRegistered(name) => {
                write!(f, "this credential is registered already, as {name}")
            }
            KeyChangeError::TooMany(max) => write!(
                f,
                "{max} keys registered, the most allowed (fido2.max_keys); remove one first"
            ),
            KeyChangeError::NoSuchKey(name) => write!(f, "no key named {name}"),
            KeyChangeError::LastFactor(name) => write!(
                f,
                "{name} is the only way to log in left; use `twofold disable` to remove the enrollment"
            ),
            KeyChangeError::EnrolledMeanwhile => {
                f.write_str("the user enrolled meanwhile; run the command again")
            }
            KeyChangeError::Invalid(why) => f.write_str(why),
            KeyChangeError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for KeyChangeError {}

impl From<StoreError> for KeyChangeError {
    fn from(e: StoreError) -> KeyChangeError {
        KeyChangeError::Store(e)
    }
}

/// Checks, before the touch, that `name` could be added (so that a user does not touch a key
/// for nothing); `add` checks again under the lock.
pub fn can_add(
    record: Option<&Record>,
    name: &KeyName,
    max_keys: usize,
    require_totp: bool,
) -> Result<(), KeyChangeError> {
    let record = record.ok_or(KeyChangeError::NotEnrolled)?;
    if require_totp && record.totp.is_none() {
        return Err(KeyChangeError::NoTotp);
    }
    if record.keys.iter().any(|k| k.name == *name) {
        return Err(KeyChangeError::NameTaken(name.clone()));
    }
    if record.keys.len() >= max_keys {
        return Err(KeyChangeError::TooMany(max_keys));
    }
    Ok(())
}

/// Adds `new` keys to an enrolled user's record. With `require_totp` (a registration) the user
/// must have TOTP; an import may give a user keys alone, as pam_u2f had them.
pub fn add<S: Store>(
    store: &S,
    user: &UserName,
    new: &[SecurityKey],
    max_keys: usize,
    require_totp: bool,
) -> Result<(), KeyChangeError> {
    store.replace(user, |current, _| {
        let Some(record) = current else {
            return Err(KeyChangeError::NotEnrolled);
        };
        let mut record = record.clone();
        for key in new {
            can_add(Some(&record), &key.name, max_keys, require_totp)?;
            if let Some(same) = record.keys.iter().find(|k| k.tag() == key.tag()) {
                return Err(KeyChangeError::AlreadyRegistered(same.name.clone()));
            }
            record.keys.push(key.clone());
        }
        check_keys(&record.keys).map_err(|e| KeyChangeError::Invalid(e.to_string()))?;
        Ok((Some(record), ()))
    })?
}

/// Gives a user who has no record one that holds only `keys` (a pam_u2f import).
pub fn create_with<S: Store>(
    store: &S,
    user: &UserName,
    keys: &[SecurityKey],
) -> Result<(), KeyChangeError> {
    store.replace(user, |current, state| {
        if current.is_some() {
            return Err(KeyChangeError::EnrolledMeanwhile);
        }
        check_keys(keys).map_err(|e| KeyChangeError::Invalid(e.to_string()))?;
        state.clear_throttle();
        state.key_uses.clear();
        let record = Record {
            totp: None,
            window: None,
            throttle: None,
            backup_codes: crate::backup::BackupCodes::empty(),
            keys: keys.to_vec(),
        };
        Ok((Some(record), ()))
    })?
}

/// Renames key `old` to `new`.
pub fn rename<S: Store>(
    store: &S,
    user: &UserName,
    old: &KeyName,
    new: &KeyName,
) -> Result<(), KeyChangeError> {
    store.replace(user, |current, _| {
        let mut record = current.ok_or(KeyChangeError::NotEnrolled)?.clone();
        if old != new && record.keys.iter().any(|k| k.name == *new) {
            return Err(KeyChangeError::NameTaken(new.clone()));
        }
        let key = record
            .keys
            .iter_mut()
            .find(|k| k.name == *old)
            .ok_or_else(|| KeyChangeError::NoSuchKey(old.clone()))?;
        key.name = new.clone();
        Ok((Some(record), ()))
    })?
}

/// Removes key `name`, and its counter from the state. Refused when it is the user's last way
/// in: that is `twofold disable`, said on purpose.
pub fn remove<S: Store>(store: &S, user: &UserName, name: &KeyName) -> Result<(), KeyChangeError> {
    store.replace(user, |current, state| {
        let mut record = current.ok_or(KeyChangeError::NotEnrolled)?.clone();
        let before = record.keys.len();
        record.keys.retain(|k| k.name != *name);
        if record.keys.len() == before {
            return Err(KeyChangeError::NoSuchKey(name.clone()));
        }
        if record.totp.is_none() && record.backup_codes.is_empty() && record.keys.is_empty() {
            return Err(KeyChangeError::LastFactor(name.clone()));
        }
        state.keep_key_uses(&record.keys);
        Ok((Some(record), ()))
    })?
}
