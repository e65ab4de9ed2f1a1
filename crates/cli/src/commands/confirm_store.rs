//! `twofold confirm-store`: marks the records store as the real one.

use twofold_host::any_store::AnyStore;
use twofold_host::store_marker::Anchor;
use twofold_host::sys;

use crate::support::{audit_store, Failure};

/// Writes the store marker (and, for home records, creates the home index). The module treats
/// a missing record as "not enrolled" only in a confirmed store, so run this on the mounted
/// records filesystem, never on the empty mount point below it.
pub(crate) fn confirm_store(store: &AnyStore) -> Result<(), Failure> {
    if sys::geteuid() != 0 {
        return Err(Failure(
            "only root may confirm the records store (it is root's)".into(),
        ));
    }
    let Some(store) = store.files() else {
        return Err(Failure(
            "store = \"twofoldd\": the daemon's backend confirms its own store".into(),
        ));
    };
    let anchor = store.anchor();
    anchor.create()?;
    audit_store(&anchor.marker());
    match anchor {
        Anchor::Central(dir) => println!("{}: confirmed as the records store", dir.display()),
        Anchor::HomeIndex(index) => println!(
            "{}: the home index is ready; enrolled users are listed at enrollment and login",
            index.display()
        ),
    }
    Ok(())
}
