//! `twofold disable`: removes a user's enrollment.

use twofold_core::enroll;
use twofold_core::user::UserName;
use twofold_host::store_marker::Anchor;
use twofold_host::{sys, FileStore};

use crate::support::{audit, Failure};

pub(crate) fn disable(store: &FileStore, user: &UserName) -> Result<(), Failure> {
    enroll::disable(store, user)?;
    audit(user, "disabled");
    println!("{user}: two-factor enrollment removed");
    if let (Anchor::HomeIndex(index), false) = (store.anchor(), sys::geteuid() == 0) {
        // Only root may take a user off the index; a listed user without a record is refused,
        // since that is also what a home that is not mounted looks like.
        eprintln!(
            "twofold: note: if you have logged in with a code, {} lists you as enrolled and \
             logins are refused until an administrator runs `sudo twofold disable --user {user}`",
            index.display()
        );
    }
    Ok(())
}
