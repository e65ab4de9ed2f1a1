//! `twofold import`: an enrollment from another module's file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use twofold_core::clock::Clock;
use twofold_core::config::{Config, RecordsLocation};
use twofold_core::enroll::{self, EnrollError, Import, ScratchFingerprint};
use twofold_core::store::Store;
use twofold_core::totp::{Algorithm, Digits, TotpKey};
use twofold_core::user::{Account, UserName};
use twofold_host::any_store::AnyStore;
use twofold_host::file_store::as_user;
use twofold_host::sys::{self, open_flags};
use twofold_host::{passwd, FileStore, SystemClock};

use crate::import::google_authenticator::GoogleAuthenticator;
use crate::support::{acting_for, audit, enroll_failure, prepare_store, Failure};

pub(crate) fn import_google_authenticator(
    config: &Config,
    store: &AnyStore,
    user: &UserName,
    path: &Path,
    force: bool,
) -> Result<(), Failure> {
    // The memory of imported scratch codes is a file beside the record: with twofoldd there is no
    // such place yet, and importing without it could revive a spent code.
    let Some(files) = store.files() else {
        return Err(Failure(
            "google-authenticator imports need store = \"files\" for now (twofoldd keeps no \
             memory of imported scratch codes yet)"
                .into(),
        ));
    };
    prepare_store(config, store, user)?;
    let text = read_users_file(user, path)?;
    let ga = GoogleAuthenticator::parse(&text)
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    let period = ga.period;
    let import = Import {
        key: TotpKey {
            secret: ga.secret,
            algorithm: Algorithm::Sha1,
            digits: Digits::SIX,
            period,
        },
        window: ga.window,
        throttle: ga.throttle,
        scratch_codes: ga.scratch_codes,
        last_used_step: ga.last_used_step,
    };
    // Refused before the list of imported codes grows: a refused import must not retire codes.
    if !force && store.load(user)?.is_some() {
        return Err(enroll_failure(EnrollError::AlreadyEnrolled));
    }
    let ledger = Ledger::open(config, files, user)?;
    let remembered = ledger.read()?;
    let new: Vec<ScratchFingerprint> = import
        .fingerprints()
        .into_iter()
        .filter(|f| !remembered.contains(f))
        .collect();
    // Durable before the record names the codes: a crash in between forgets a code, never
    // revives one.
    ledger.append(&new)?;
    let imported = enroll::import_key(
        store,
        user,
        config,
        &import,
        &remembered,
        SystemClock.now(),
        force,
    )
    .map_err(enroll_failure)?;
    drop(ledger);
    audit(user, "imported from google-authenticator");
    let codes = match imported.scratch_codes {
        1 => "1 scratch code".to_string(),
        n => format!("{n} scratch codes"),
    };
    println!(
        "{user}: imported {} (TOTP, {period} s steps, {codes} as backup codes)",
        path.display(),
    );
    if imported.skipped > 0 {
        println!(
            "{} scratch code(s) left out: imported before and since spent, replaced or disabled; \
             run `twofold codes regenerate` for new backup codes",
            imported.skipped
        );
    }
    Ok(())
}

/// The fingerprints of every scratch code ever imported for one user (`NAME.imported`, beside
/// the record): the memory that keeps a spent code spent across imports, enrollments and
/// `disable`, which removes the record and state but not this. Append-only, and locked for the
/// whole import, so that two imports cannot miss each other's codes. It is kept like the record:
/// owned by the record's owner, private, opened without following links, as the user for
/// home records.
struct Ledger {
    file: File,
    path: PathBuf,
    account: Option<Account>,
}

impl Ledger {
    fn open(config: &Config, store: &FileStore, user: &UserName) -> Result<Ledger, Failure> {
        let (record, _) = store.paths(user)?;
        let path = record.with_extension("imported");
        let account = match config.records.location() {
            RecordsLocation::Central => None,
            RecordsLocation::Home => passwd::by_name(user)?,
        };
        let expected_owner = account.as_ref().map_or_else(sys::geteuid, |a| a.uid);
        let open = || -> Result<File, Failure> {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(open_flags::O_NOFOLLOW | open_flags::O_NONBLOCK)
                .open(&path)
                .map_err(|e| Failure(format!("{}: cannot open: {e}", path.display())))?;
            let meta = file.metadata()?;
            if !meta.is_file() || meta.uid() != expected_owner || meta.mode() & 0o077 != 0 {
                return Err(Failure(format!(
                    "{}: refused: must be a regular file of uid {expected_owner} with mode 0600",
                    path.display()
                )));
            }
            Ok(file)
        };
        let file = match &account {
            Some(account) => as_user(account, open)??,
            None => open()?,
        };
        lock_within(&file, LOCK_PATIENCE)
            .map_err(|e| Failure(format!("{}: cannot lock: {e}", path.display())))?;
        Ok(Ledger {
            file,
            path,
            account,
        })
    }

    fn read(&self) -> Result<Vec<ScratchFingerprint>, Failure> {
        let mut text = String::new();
        (&self.file)
            .take(MAX_LEDGER_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| Failure(format!("{}: cannot read: {e}", self.path.display())))?;
        if text.len() as u64 > MAX_LEDGER_BYTES {
            return Err(Failure(format!(
                "{}: larger than {MAX_LEDGER_BYTES} bytes; not a file twofold wrote",
                self.path.display()
            )));
        }
        Ok(ScratchFingerprint::parse_list(&text))
    }

    fn append(&self, fingerprints: &[ScratchFingerprint]) -> Result<(), Failure> {
        if fingerprints.is_empty() {
            return Ok(());
        }
        let text = ScratchFingerprint::list_text(fingerprints);
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let written = (&self.file)
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_all())
            .map_err(|e| Failure(format!("{}: cannot write: {e}", self.path.display())));
        written?;
        // The file may be new: its name must be durable too.
        let sync_dir = || File::open(dir).and_then(|d| d.sync_all());
        match &self.account {
            Some(account) => as_user(account, sync_dir)?,
            None => sync_dir(),
        }
        .map_err(|e| Failure(format!("{}: cannot sync: {e}", dir.display())))
    }
}

/// Takes an exclusive `flock`, waiting at most `patience`.
fn lock_within(file: &File, patience: Duration) -> io::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        match sys::try_lock_exclusive(file) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads a small file that belongs to `user`. Run by root for someone else, it opens the file
/// with that user's rights and insists they own it and keep it private: a user must not be able
/// to point root at somebody else's file (through a link in the path, say) and import it.
fn read_users_file(user: &UserName, path: &Path) -> Result<Zeroizing<String>, Failure> {
    let account = acting_for(user)?;
    let read = || -> Result<Zeroizing<String>, Failure> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(open_flags::O_NOFOLLOW | open_flags::O_NONBLOCK)
            .open(path)
            .map_err(|e| match &account {
                Some(account) if e.kind() == io::ErrorKind::PermissionDenied => Failure(format!(
                    "{}: {user} cannot open it ({e}): twofold opens the file with {user}'s \
                     rights (uid {}), so that no one can point root at a file that is not theirs; \
                     make it readable by {user}, or copy it to a file {user} owns (mode 0600)",
                    path.display(),
                    account.uid
                )),
                _ => Failure(format!("{}: cannot open: {e}", path.display())),
            })?;
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

/// How long to wait for another import of the same user.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);
/// 64 KiB holds some 2000 fingerprints, far more than any user's imports.
const MAX_LEDGER_BYTES: u64 = 64 * 1024;
