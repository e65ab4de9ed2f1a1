//! `twofold unlock`: clears a user's failed-code lock.

use twofold_core::enroll;
use twofold_core::user::UserName;
use twofold_host::any_store::AnyStore;

use crate::support::{audit, Failure};

pub(crate) fn unlock(store: &AnyStore, user: &UserName) -> Result<(), Failure> {
    enroll::unlock(store, user)?;
    audit(user, "unlocked");
    println!("{user}: unlocked");
    Ok(())
}
