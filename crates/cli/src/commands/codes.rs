//! `twofold codes regenerate`: new backup codes, shown once.

use std::path::Path;

use twofold_core::config::Config;
use twofold_core::enroll;
use twofold_core::user::UserName;
use twofold_host::any_store::AnyStore;

use crate::support::{audit, prepare_store, refuse_existing, show_codes, Failure};

pub(crate) fn regenerate(
    config: &Config,
    store: &AnyStore,
    user: &UserName,
    backup_codes_file: Option<&Path>,
) -> Result<(), Failure> {
    prepare_store(config, store, user)?;
    backup_codes_file.map(refuse_existing).transpose()?;
    let codes = enroll::regenerate_codes(store, user, usize::from(config.backup_codes.count))?;
    audit(user, "regenerated backup codes");
    show_codes(&codes, backup_codes_file, user)
}
