//! `twofold import`: an enrollment from another module's file.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use twofold_core::backup::{BackupCodes, Candidate, Cost};
use twofold_core::config::Config;
use twofold_core::enroll::EnrollError;
use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::store::Store;
use twofold_core::totp::{Algorithm, Digits, TotpKey};
use twofold_core::user::UserName;
use twofold_host::file_store::as_user;
use twofold_host::sys::{self, open_flags};
use twofold_host::{passwd, FileStore};

use crate::import::google_authenticator::GoogleAuthenticator;
use crate::support::{audit, enroll_failure, prepare_store, Failure};

pub(crate) fn import_google_authenticator(
    config: &Config,
    store: &FileStore,
    user: &UserName,
    path: &Path,
    force: bool,
) -> Result<(), Failure> {
    prepare_store(config, store, user)?;
    let text = read_users_file(user, path)?;
    let ga = GoogleAuthenticator::parse(&text)
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    let key = TotpKey {
        secret: ga.secret,
        algorithm: Algorithm::Sha1,
        digits: Digits::SIX,
        period: ga.period,
    };
    // Importing the same file again must not make scratch codes spent since then valid again.
    let existing = store.load(user)?;
    let unspent: Vec<Zeroizing<String>> = ga
        .scratch_codes
        .into_iter()
        .filter(|code| !already_spent(existing.as_ref(), &key, code))
        .collect();
    let codes = BackupCodes::hash(&unspent, Cost::DEFAULT)?;
    let scratch_count = codes.len();
    let record = Record {
        totp: Some(key.clone()),
        window: ga.window,
        throttle: ga.throttle,
        backup_codes: codes,
    };
    store
        .replace(user, |current, state| {
            if current.is_some() && !force {
                return Err(EnrollError::AlreadyEnrolled);
            }
            // A new key starts unlocked, with no failures and its own replay guard.
            let same_key = current
                .and_then(|r| r.totp.as_ref())
                .is_some_and(|k| k.secret == key.secret && k.period == key.period);
            if !same_key {
                state.last_step = 0;
            }
            state.failures.clear();
            state.locked_until = 0;
            Ok((Some(record.clone()), ()))
        })?
        .map_err(enroll_failure)?;
    audit(user, "imported from google-authenticator");
    println!(
        "{user}: imported {} (TOTP, {} s steps, {scratch_count} scratch codes as backup codes)",
        path.display(),
        ga.period
    );
    Ok(())
}

/// Whether `code` is a backup code of the current enrollment, with the same key, already spent.
fn already_spent(existing: Option<&(Record, State)>, key: &TotpKey, code: &str) -> bool {
    let Some((record, state)) = existing else {
        return false;
    };
    if record.totp.as_ref().is_none_or(|k| k.secret != key.secret) {
        return false;
    }
    let Some(hash) = Candidate::parse(code).and_then(|c| record.backup_codes.hash_candidate(&c))
    else {
        return false;
    };
    record
        .backup_codes
        .find(&hash)
        .is_some_and(|i| state.is_code_spent(record.backup_codes.binding(), i))
}

/// Reads a small file that belongs to `user`. Run by root for someone else, it opens the file
/// with that user's rights and insists they own it and keep it private: a user must not be able
/// to point root at somebody else's file (through a link in the path, say) and import it.
fn read_users_file(user: &UserName, path: &Path) -> Result<Zeroizing<String>, Failure> {
    let euid = sys::geteuid();
    let account = passwd::by_name(user)?.filter(|a| euid == 0 && a.uid != 0);
    let read = || -> Result<Zeroizing<String>, Failure> {
        use std::io::Read;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(open_flags::O_NOFOLLOW | open_flags::O_NONBLOCK)
            .open(path)
            .map_err(|e| Failure(format!("{}: cannot open: {e}", path.display())))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(Failure(format!("{}: not a regular file", path.display())));
        }
        if let Some(account) = &account {
            if meta.uid() != account.uid || meta.mode() & 0o077 != 0 {
                return Err(Failure(format!(
                    "{}: must belong to {user} and be private to them (mode 0600 or 0400)",
                    path.display()
                )));
            }
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
        file.take(64 * 1024 + 1).read_to_end(&mut bytes)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Failure(format!("{}: not text", path.display())))?;
        Ok(Zeroizing::new(text.to_string()))
    };
    match &account {
        Some(account) => as_user(account, read)?,
        None => read(),
    }
}
