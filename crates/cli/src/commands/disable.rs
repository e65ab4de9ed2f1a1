//! `twofold disable`: removes a user's enrollment.

use twofold_core::enroll;
use twofold_core::user::UserName;
use twofold_host::FileStore;

use crate::support::{audit, Failure};

pub(crate) fn disable(store: &FileStore, user: &UserName) -> Result<(), Failure> {
    enroll::disable(store, user)?;
    audit(user, "disabled");
    println!("{user}: two-factor enrollment removed");
    Ok(())
}
