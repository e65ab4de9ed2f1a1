//! `twofold disable`: removes a user's enrollment.

use twofold_core::enroll;
use twofold_core::user::UserName;
use twofold_host::any_store::AnyStore;
use twofold_host::store_marker::Anchor;
use twofold_host::sys;

use crate::support::{audit, Failure};

pub(crate) fn disable(store: &AnyStore, user: &UserName) -> Result<(), Failure> {
    enroll::disable(store, user)?;
    audit(user, "disabled");
    println!("{user}: two-factor enrollment removed");
    let anchor = store.files().map(|files| files.anchor());
    if let (Some(Anchor::HomeIndex(index)), false) = (anchor, sys::geteuid() == 0) {
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
