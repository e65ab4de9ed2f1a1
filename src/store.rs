//! The `Store` and `Accounts` traits the core talks to, and the error a store reports.
//!
//! A store keeps each user's record and state. Every change goes through `update` or `replace`:
//! the store serializes changes for a user (a lock, or a compare-and-swap), hands the closure the
//! current copy, and makes the result durable before it returns. A compare-and-swap backend that
//! loses a race re-runs the closure on fresher state, so a change closure may run more than once
//! and must have no effect beyond its arguments and its return value.
//!
//! This module never touches a file: the file backend lives in the host adapter.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::record::{Record, RecordError};
use crate::state::State;
use crate::user::UserName;

/// What the core needs from a place that keeps enrollments.
pub trait Store {
    /// Reads a user's record and state without locking; `Ok(None)` if not enrolled.
    fn load(&self, user: &UserName) -> Result<Option<(Record, State)>, StoreError>;

    /// With the user's changes serialized, re-reads record and state and lets `change` edit the
    /// state. If it changed, the new state is durable before this returns. `Ok(None)` if not
    /// enrolled. `change` may run more than once, each time on the then current copy.
    fn update<T>(
        &self,
        user: &UserName,
        change: impl FnMut(&Record, &mut State) -> T,
    ) -> Result<Option<T>, StoreError>;

    /// With the user's changes serialized, lets `change` see the current record (if any) and
    /// state, and replace the record (`Some`) or remove the enrollment (`None`). The state edits
    /// are kept. `change` may run more than once, each time on the then current copy.
    fn replace<T, E>(
        &self,
        user: &UserName,
        change: impl FnMut(Option<&Record>, &mut State) -> Result<(Option<Record>, T), E>,
    ) -> Result<Result<T, E>, StoreError>;
}

/// Which names are accounts of this host. Enrollment at login creates records only for accounts,
/// never for whatever name an application passes in.
pub trait Accounts {
    /// Whether `user` is an account of this host.
    fn is_account(&self, user: &UserName) -> Result<bool, StoreError>;
}

/// Why the store could not serve a request. Each names the file or place, so an admin can act.
#[derive(Debug)]
pub enum StoreError {
    /// The state is damaged.
    BadState { path: PathBuf, why: String },
    /// The record does not parse.
    BadRecord { path: PathBuf, cause: RecordError },
    /// A file or directory could not be opened, read or written.
    Io {
        path: PathBuf,
        action: &'static str,
        cause: io::Error,
    },
    /// Home-based records need the user's passwd entry, and there is none.
    NoAccount(UserName),
    /// A file or directory is a link, has the wrong owner or is open to others.
    Unsafe { path: PathBuf, why: String },
    /// A record is missing, and nothing confirms that the place looked in is the real store (an
    /// unmounted home or records filesystem would look the same as "not enrolled").
    Unconfirmed { path: PathBuf, why: String },
    /// twofoldd could not be reached, refused, or its backend failed.
    Daemon { socket: PathBuf, why: String },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io {
                path,
                action,
                cause,
            } => {
                write!(f, "{}: cannot {action}: {cause}", path.display())
            }
            StoreError::Unsafe { path, why } => write!(f, "{}: refused: {why}", path.display()),
            StoreError::BadRecord { path, cause } => {
                write!(f, "{}: malformed record: {cause}", path.display())
            }
            StoreError::BadState { path, why } => write!(f, "{}: {why}", path.display()),
            StoreError::Unconfirmed { path, why } => {
                write!(
                    f,
                    "{}: not confirmed as the records store: {why}",
                    path.display()
                )
            }
            StoreError::Daemon { socket, why } => {
                write!(f, "twofoldd ({}): {why}", socket.display())
            }
            StoreError::NoAccount(user) => {
                write!(
                    f,
                    "user {user} has no passwd entry, needed for home-based records"
                )
            }
        }
    }
}

impl std::error::Error for StoreError {}
