//! The file store: the core's `Store` over one record and one state file per user.
//!
//! The file backend treats every file as hostile: it opens with `O_NOFOLLOW`, checks the file type,
//! owner and mode of every file and of its directory, and in home mode does all of this with the
//! user's filesystem identity, so root's privileges never touch a path the user controls. Each
//! user's state file doubles as their lock: every change happens under `flock(LOCK_EX)` on it, after
//! re-reading both files, so two logins can never spend one code. Records are replaced by temp
//! file, fsync, rename and directory fsync; states by the two-slot scheme of `state.rs`.

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use twofold_core::config::{Config, RecordsLocation, RecordsTemplate};
use twofold_core::record::{Record, MAX_RECORD_BYTES};
use twofold_core::state::State;
use twofold_core::store::{Accounts, Store, StoreError};
use twofold_core::user::{Account, UserName};

use crate::passwd;
use crate::state_file::{self, Slotted, FILE_SIZE};
use crate::store_marker::{Anchor, STORE_MARKER};
use crate::sys;

/// Records in files, one record and one state file per user.
#[derive(Clone, Debug)]
pub struct FileStore {
    template: RecordsTemplate,
    /// What confirms that a missing record means "not enrolled" (see `store_marker`).
    anchor: Anchor,
    /// Whether `load` insists on that confirmation (the module does; see `for_admin`).
    confirms_absence: bool,
    /// The last record parsed, by file identity: a login reads the record before the prompt and
    /// again under the lock, and parsing it twice would cost more than the rest of the check.
    parsed: RefCell<Option<(FileId, Record)>>,
    /// Where the last user's files are: a login asks twice, and a passwd lookup can cost more
    /// than the rest of the login (NSS may consult several services).
    placed: RefCell<Option<(UserName, Option<Place>)>>,
}

/// What changes whenever a file's content may have: a rename makes a new inode, an in-place
/// write moves the change time and usually the size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStore {
    pub fn new(config: &Config) -> FileStore {
        FileStore {
            template: config.records.clone(),
            anchor: Anchor::for_config(config),
            confirms_absence: true,
            parsed: RefCell::new(None),
            placed: RefCell::new(None),
        }
    }

    /// The store as the CLI uses it: a missing record reads as "not enrolled" even where the
    /// store is unconfirmed, since an enrollment is what confirms it, and a user running the CLI
    /// cannot read root's index anyway. `twofold check` reports an unconfirmed store.
    pub fn for_admin(config: &Config) -> FileStore {
        FileStore {
            confirms_absence: false,
            ..FileStore::new(config)
        }
    }

    /// What confirms this store.
    pub fn anchor(&self) -> &Anchor {
        &self.anchor
    }

    /// Whether the home index lists `user` as enrolled.
    pub fn lists(&self, user: &UserName) -> Result<bool, StoreError> {
        let name = match self.place(user)? {
            Some(Place {
                owner: Some(account),
                ..
            }) => account.name,
            _ => return Ok(false),
        };
        Ok(self.anchor.lists(&name))
    }

    /// Every user with a record, sorted: with central records, the names of the record files
    /// that match the template; with home records, the users the home index lists (a listed
    /// user's home may be unmounted, so their record is not read here). The store that confirms
    /// absences (`new`) also insists that the store is confirmed: an unmounted one would list
    /// nobody.
    pub fn list_users(&self) -> Result<Vec<UserName>, StoreError> {
        if self.confirms_absence {
            self.anchor.confirm_store()?;
        }
        let dir = self.anchor.directory();
        let listing = |dir: &Path| {
            std::fs::read_dir(dir).map_err(|cause| StoreError::Io {
                path: dir.into(),
                action: "list",
                cause,
            })
        };
        let mut users = Vec::new();
        match &self.anchor {
            Anchor::Central(_) => {
                // The first part of the template below the fixed directory names the user:
                // `{user}.toml`, or a directory `{user}` with the record inside.
                let fixed = dir.components().count().saturating_sub(1);
                let part = self
                    .template
                    .as_str()
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .nth(fixed)
                    .unwrap_or_default();
                let Some((prefix, suffix)) = part.split_once("{user}") else {
                    return Ok(users);
                };
                for entry in listing(dir)? {
                    let entry = entry.map_err(|cause| StoreError::Io {
                        path: dir.into(),
                        action: "list",
                        cause,
                    })?;
                    let name = entry.file_name();
                    let Some(user) = name
                        .to_str()
                        .and_then(|n| n.strip_prefix(prefix))
                        .and_then(|n| n.strip_suffix(suffix))
                        .and_then(UserName::parse)
                    else {
                        continue;
                    };
                    // Only a name whose whole record path exists (a template may name the user
                    // more than once, or in a directory).
                    let record = self.template.path_for(user.as_str(), None);
                    if record.is_some_and(|r| std::fs::symlink_metadata(r).is_ok()) {
                        users.push(user);
                    }
                }
            }
            Anchor::HomeIndex(_) => {
                for entry in listing(dir)? {
                    let entry = entry.map_err(|cause| StoreError::Io {
                        path: dir.into(),
                        action: "list",
                        cause,
                    })?;
                    let name = entry.file_name();
                    if name == STORE_MARKER {
                        continue;
                    }
                    if let Some(user) = name.to_str().and_then(UserName::parse) {
                        users.push(user);
                    }
                }
            }
        }
        users.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        users.dedup();
        Ok(users)
    }

    /// Errs unless a missing record at `place` (`None`: a name that is no account) really means
    /// "not enrolled". The home index keys users by the account's own name.
    fn confirm_absence(&self, place: Option<&Place>, user: &UserName) -> Result<(), StoreError> {
        if !self.confirms_absence {
            return Ok(());
        }
        match place {
            Some(place) => {
                let name = place.owner.as_ref().map_or(user, |a| &a.name);
                self.anchor.confirm_absence(name, &place.record)
            }
            None => self.anchor.confirm_store(),
        }
    }

    /// The record and state paths of `user` (looked up in passwd for home templates).
    pub fn paths(&self, user: &UserName) -> Result<(PathBuf, PathBuf), StoreError> {
        let place = self
            .place(user)?
            .ok_or_else(|| StoreError::NoAccount(user.clone()))?;
        Ok((place.record, place.state))
    }

    /// `Ok(None)`: a home template and a user without a passwd entry, so not enrolled.
    fn place(&self, user: &UserName) -> Result<Option<Place>, StoreError> {
        if let Some((known, place)) = &*self.placed.borrow() {
            if known == user {
                return Ok(place.clone());
            }
        }
        let place = self.locate(user)?;
        *self.placed.borrow_mut() = Some((user.clone(), place.clone()));
        Ok(place)
    }

    fn locate(&self, user: &UserName) -> Result<Option<Place>, StoreError> {
        let account = passwd::by_name(user).map_err(|cause| StoreError::Io {
            path: "/etc/passwd".into(),
            action: "look up the user in",
            cause,
        })?;
        // Records are keyed by the account's own name: a name service that also answers to
        // `ALICE` or `alice@REALM` must not lead to a missing record, which nullok would skip.
        let name = account.as_ref().map_or(user, |a| &a.name).clone();
        let is_account = account.is_some();
        let owner = match self.template.location() {
            RecordsLocation::Central => None,
            RecordsLocation::Home => match account {
                Some(account) => Some(account),
                None => return Ok(None),
            },
        };
        let record = self
            .template
            .path_for(name.as_str(), owner.as_ref().map(|a| a.home.as_path()))
            .ok_or_else(|| StoreError::NoAccount(user.clone()))?;
        let state = state_path(&record);
        Ok(Some(Place {
            record,
            state,
            owner,
            is_account,
        }))
    }
}

impl Accounts for FileStore {
    fn is_account(&self, user: &UserName) -> Result<bool, StoreError> {
        // The lookup `load` made for this user is cached with the place.
        Ok(self.place(user)?.is_some_and(|place| place.is_account))
    }
}

impl Store for FileStore {
    fn load(&self, user: &UserName) -> Result<Option<(Record, State)>, StoreError> {
        let Some(place) = self.place(user)? else {
            // No account, so not enrolled; but an unconfirmed store answers for everyone alike,
            // or the refusal would tell who has an account.
            self.confirm_absence(None, user)?;
            return Ok(None);
        };
        let found = {
            let _identity = Identity::assume(place.owner.as_ref())?;
            match place.check_directory()? {
                true => place.read_record(&self.parsed)?,
                false => None,
            }
            .map(|record| -> Result<_, StoreError> {
                let state = match place.open(&place.state, OpenMode::Read)? {
                    Some(file) => place.read_state(&file)?.state,
                    None => State::default(),
                };
                Ok((record, state))
            })
            .transpose()?
        };
        // With root's file identity again: the marker and the home index are root's.
        if found.is_none() {
            self.confirm_absence(Some(&place), user)?;
        }
        Ok(found)
    }

    fn update<T>(
        &self,
        user: &UserName,
        mut change: impl FnMut(&Record, &mut State) -> T,
    ) -> Result<Option<T>, StoreError> {
        let Some(place) = self.place(user)? else {
            return Ok(None);
        };
        let identity = Identity::assume(place.owner.as_ref())?;
        if !place.check_directory()? {
            return Ok(None);
        }
        // A state file exists for every enrolled user (enrollment writes it); only when it is
        // missing is it worth reading the record first, so as not to create one for a stranger.
        let lock = match place.lock(false)? {
            Some(lock) => lock,
            None if place.read_record(&self.parsed)?.is_none() => return Ok(None),
            None => place.lock(true)?.ok_or_else(|| missing(&place.state))?,
        };
        // Re-read under the lock: this is the copy the decision is made on.
        let Some(record) = place.read_record(&self.parsed)? else {
            return Ok(None);
        };
        let lock = lock.file;
        // Under the lock nothing can change behind us: the change runs once.
        let before = place.read_state(&lock)?;
        let mut state = before.state.clone();
        let result = change(&record, &mut state);
        if state != before.state {
            place.write_state(&lock, &before.next(state))?;
        }
        drop(identity);
        // A login found a home record: list it, so that an unmounted home is never read as
        // "not enrolled" (self-enrollments are listed here, as only root may write the index).
        // Best effort: the decision is made and durable, and `twofold check` reports an index
        // that cannot be written.
        if let Some(account) = &place.owner {
            let _ = self.anchor.list(&account.name);
        }
        Ok(Some(result))
    }

    fn replace<T, E>(
        &self,
        user: &UserName,
        mut change: impl FnMut(Option<&Record>, &mut State) -> Result<(Option<Record>, T), E>,
    ) -> Result<Result<T, E>, StoreError> {
        let place = self
            .place(user)?
            .ok_or_else(|| StoreError::NoAccount(user.clone()))?;
        let identity = Identity::assume(place.owner.as_ref())?;
        if !place.check_directory()? {
            let dir = place.record.parent().unwrap_or(Path::new("/"));
            return Err(StoreError::Io {
                path: dir.into(),
                action: "find the records directory",
                cause: io::ErrorKind::NotFound.into(),
            });
        }
        let Lock {
            file: lock,
            created,
        } = place.lock(true)?.ok_or_else(|| missing(&place.state))?;
        let current = place.read_record(&self.parsed)?;
        let before = place.read_state(&lock)?;
        let mut state = before.state.clone();
        let (record, result) = match change(current.as_ref(), &mut state) {
            Ok(done) => done,
            Err(e) => {
                // A refused change leaves no trace, not even the lock file it made.
                if created {
                    remove_if_present(&place.state)?;
                }
                return Ok(Err(e));
            }
        };
        let enrolled = record.is_some();
        match record {
            Some(record) => {
                // The marker goes with the first record (central records: `Central` holds no
                // owner, so this runs with our own identity).
                if place.owner.is_none() {
                    self.anchor.mark()?;
                }
                place.remove_stale_temp_files()?;
                // Three durable steps, so that a crash between any two is safe. The replay guard
                // goes first: the code that confirmed a new key is spent even if we stop before
                // the end. Then the record. Then the rest of the state: until then, the spent
                // marks on disk name the old code set, so they can neither spend a new code nor
                // (were the record still the old one) revive an old one.
                let guard = State {
                    last_step: before.state.last_step.max(state.last_step),
                    ..before.state.clone()
                };
                let written = if guard != before.state {
                    let guard = before.next(guard);
                    place.write_state(&lock, &guard)?;
                    guard
                } else {
                    before
                };
                place.write_record(&record)?;
                place.write_state(&lock, &written.next(state))?;
            }
            None => {
                remove_if_present(&place.record)?;
                remove_if_present(&place.state)?;
                sync_directory(&place.record)?;
            }
        }
        // Still under the user's lock, so that a disable cannot unlist an enrollment that
        // overtook it; with root's file identity, as the index is root's.
        drop(identity);
        if let Some(account) = &place.owner {
            match enrolled {
                true => self.anchor.list(&account.name)?,
                false => self.anchor.unlist(&account.name)?,
            }
        }
        Ok(Ok(result))
    }
}

/// A held user lock: the open state file, and whether taking the lock created it.
struct Lock {
    file: File,
    created: bool,
}

/// One user's files, and whose identity to use for them.
#[derive(Clone, Debug)]
struct Place {
    record: PathBuf,
    state: PathBuf,
    /// The user whose files these are, for home templates; `None` for the central directory.
    owner: Option<Account>,
    /// Whether passwd knows the user (a central place is made for any usable name).
    is_account: bool,
}

impl Place {
    /// The uid that must own the files: the user's for home records, ours for central ones.
    fn expected_owner(&self) -> u32 {
        match &self.owner {
            Some(account) => account.uid,
            None => sys::geteuid(),
        }
    }

    /// Checks the directory that holds the files. `Ok(false)`: it does not exist, which in a
    /// home means "not enrolled" (a missing central directory is an error: the package makes it).
    fn check_directory(&self) -> Result<bool, StoreError> {
        let dir = self.record.parent().unwrap_or(Path::new("/"));
        let meta = match std::fs::metadata(dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.owner.is_some() => {
                return Ok(false)
            }
            Err(cause) => {
                return Err(StoreError::Io {
                    path: dir.into(),
                    action: "inspect the records directory",
                    cause,
                })
            }
        };
        match records_directory_problem(&meta, self.expected_owner()) {
            Some(why) => Err(StoreError::Unsafe {
                path: dir.into(),
                why,
            }),
            None => Ok(true),
        }
    }

    fn read_record(
        &self,
        parsed: &RefCell<Option<(FileId, Record)>>,
    ) -> Result<Option<Record>, StoreError> {
        let Some((mut file, meta)) = self.open_with_metadata(&self.record, OpenMode::Read)? else {
            return Ok(None);
        };
        let id = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        };
        if let Some((known, record)) = &*parsed.borrow() {
            if *known == id {
                return Ok(Some(record.clone()));
            }
        }
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(READ_CHUNK));
        Read::by_ref(&mut file)
            .take(MAX_RECORD_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|cause| StoreError::Io {
                path: self.record.clone(),
                action: "read",
                cause,
            })?;
        let record = Record::parse(&bytes).map_err(|cause| StoreError::BadRecord {
            path: self.record.clone(),
            cause,
        })?;
        *parsed.borrow_mut() = Some((id, record.clone()));
        Ok(Some(record))
    }

    fn read_state(&self, file: &File) -> Result<Slotted, StoreError> {
        let mut bytes = [0u8; FILE_SIZE + 1];
        let mut len = 0;
        while len < bytes.len() {
            match file.read_at(&mut bytes[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(cause) => {
                    return Err(StoreError::Io {
                        path: self.state.clone(),
                        action: "read",
                        cause,
                    })
                }
            }
        }
        state_file::decode(&bytes[..len]).map_err(|cause| StoreError::BadState {
            path: self.state.clone(),
            why: cause.to_string(),
        })
    }

    /// Writes `state` into its generation's slot and makes it durable.
    fn write_state(&self, file: &File, state: &Slotted) -> Result<(), StoreError> {
        let io_err = |cause| StoreError::Io {
            path: self.state.clone(),
            action: "write",
            cause,
        };
        let len = file.metadata().map_err(io_err)?.len();
        // An old layout's file keeps its slots until the new one is durable behind them.
        let upgraded;
        let state = if state.old_layout {
            upgraded = state.clone().for_upgrade();
            &upgraded
        } else {
            state
        };
        let (offset, slot) = state.encode_slot();
        // A fresh file is extended to both slots at once, so its size is never in between.
        if len < state_file::LEGACY_FILE_SIZE as u64 {
            let mut whole = [0u8; FILE_SIZE];
            whole[offset as usize..offset as usize + slot.len()].copy_from_slice(&slot);
            file.write_all_at(&whole, 0).map_err(io_err)?;
        } else {
            file.write_all_at(&slot, offset).map_err(io_err)?;
        }
        file.sync_data().map_err(io_err)
    }

    /// Takes the user's exclusive lock: `flock` on the state file. Creates the file if `create`
    /// is set; otherwise a missing file gives `Ok(None)`.
    fn lock(&self, create: bool) -> Result<Option<Lock>, StoreError> {
        loop {
            let (file, created) = match self.open(&self.state, OpenMode::ReadWrite)? {
                Some(file) => (file, false),
                None if !create => return Ok(None),
                None => match self.open(&self.state, OpenMode::CreateNew)? {
                    Some(file) => (file, true),
                    // Created by someone else in between: open theirs.
                    None => continue,
                },
            };
            lock_within(&file, LOCK_PATIENCE).map_err(|cause| StoreError::Io {
                path: self.state.clone(),
                action: "lock",
                cause,
            })?;
            // A disable may have unlinked the file while we waited; its lock protects nothing.
            let links = file
                .metadata()
                .map_err(|cause| StoreError::Io {
                    path: self.state.clone(),
                    action: "inspect",
                    cause,
                })?
                .nlink();
            if links > 0 {
                return Ok(Some(Lock { file, created }));
            }
        }
    }

    /// Removes temp files that a writer killed mid-way left behind. Every writer holds the lock,
    /// so under it any such file is stale.
    fn remove_stale_temp_files(&self) -> Result<(), StoreError> {
        let dir = self.record.parent().unwrap_or(Path::new("/"));
        let mut prefix = OsString::from(".");
        prefix.push(self.record.file_name().unwrap_or_default());
        prefix.push(".");
        let prefix = prefix.into_vec();
        let entries = std::fs::read_dir(dir).map_err(|cause| StoreError::Io {
            path: dir.into(),
            action: "list",
            cause,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().into_vec();
            // Exactly our pattern, `.NAME.<16 hex digits>.tmp`, and no one else's file.
            let is_ours = name
                .strip_prefix(prefix.as_slice())
                .and_then(|rest| rest.strip_suffix(b".tmp"))
                .is_some_and(|hex| hex.len() == 16 && hex.iter().all(u8::is_ascii_hexdigit));
            if is_ours {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    fn write_record(&self, record: &Record) -> Result<(), StoreError> {
        let text = record.to_toml();
        let dir = self.record.parent().unwrap_or(Path::new("/"));
        let mut temp_name = OsString::from(".");
        temp_name.push(self.record.file_name().unwrap_or_default());
        temp_name.push(format!(".{}.tmp", random_suffix()));
        let temp = dir.join(temp_name);
        let io_err = |action, cause| StoreError::Io {
            path: temp.clone(),
            action,
            cause,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
            .map_err(|e| io_err("create", e))?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err("write", e))
            .and_then(|()| {
                std::fs::rename(&temp, &self.record).map_err(|cause| StoreError::Io {
                    path: self.record.clone(),
                    action: "replace",
                    cause,
                })
            });
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written?;
        sync_directory(&self.record)
    }

    /// Opens `path` without following links and checks it is a regular file of the right owner,
    /// closed to group and others. `Ok(None)` if it does not exist (and is not being created).
    fn open(&self, path: &Path, mode: OpenMode) -> Result<Option<File>, StoreError> {
        Ok(self.open_with_metadata(path, mode)?.map(|(file, _)| file))
    }

    fn open_with_metadata(
        &self,
        path: &Path,
        mode: OpenMode,
    ) -> Result<Option<(File, std::fs::Metadata)>, StoreError> {
        let mut options = std::fs::OpenOptions::new();
        options
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::CreateNew => {
                options.write(true).create_new(true).mode(0o600);
            }
        }
        let file = match options.open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && mode != OpenMode::CreateNew => {
                return Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && mode == OpenMode::CreateNew => {
                return Ok(None)
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(StoreError::Unsafe {
                    path: path.into(),
                    why: "is a symbolic link".into(),
                })
            }
            Err(cause) => {
                return Err(StoreError::Io {
                    path: path.into(),
                    action: "open",
                    cause,
                })
            }
        };
        let meta = file.metadata().map_err(|cause| StoreError::Io {
            path: path.into(),
            action: "inspect",
            cause,
        })?;
        let owner = self.expected_owner();
        let unsafe_because = |why: String| {
            Err(StoreError::Unsafe {
                path: path.into(),
                why,
            })
        };
        if !meta.file_type().is_file() {
            return unsafe_because("not a regular file".into());
        }
        if meta.uid() != owner {
            return unsafe_because(format!("owned by uid {}, expected uid {owner}", meta.uid()));
        }
        if meta.mode() & 0o077 != 0 {
            return unsafe_because(format!(
                "mode {:04o} lets group or others in; run chmod 600",
                meta.mode() & 0o7777
            ));
        }
        Ok(Some((file, meta)))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    Read,
    ReadWrite,
    /// Create a new file (`O_EXCL`); `Ok(None)` if it exists already.
    CreateNew,
}

/// While alive, file access uses the user's uid and gid (home records, when running as root).
/// Dropping it restores root's. Per thread, as Linux keeps fsuid per thread.
struct Identity {
    restore: Option<(u32, u32)>,
}

impl Identity {
    fn assume(owner: Option<&Account>) -> Result<Identity, StoreError> {
        let euid = sys::geteuid();
        let Some(account) = owner.filter(|a| euid == 0 && a.uid != 0) else {
            return Ok(Identity { restore: None });
        };
        // setfsuid/setfsgid return the previous value and never fail outright; passing an invalid
        // id (-1) changes nothing and returns the current one, which confirms the switch.
        let old_gid = sys::setfsgid(account.gid);
        let old_uid = sys::setfsuid(account.uid);
        let identity = Identity {
            restore: Some((old_uid, old_gid)),
        };
        let (now_uid, now_gid) = (sys::setfsuid(u32::MAX), sys::setfsgid(u32::MAX));
        if now_uid != account.uid || now_gid != account.gid {
            return Err(StoreError::Unsafe {
                path: account.home.clone(),
                why: format!("could not switch file access to uid {}", account.uid),
            });
        }
        Ok(identity)
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.restore {
            // Back to the effective ids this thread had.
            sys::setfsuid(uid);
            sys::setfsgid(gid);
        }
    }
}

/// Runs `action` with file access as `account` (when running as root), so that a path the user
/// controls is opened with the user's rights, never root's.
pub fn as_user<T>(account: &Account, action: impl FnOnce() -> T) -> Result<T, StoreError> {
    let _identity = Identity::assume(Some(account))?;
    Ok(action())
}

/// `alice.toml` keeps its state in `alice.state` (templates always end in `.toml`, so no record
/// path is ever a state path).
pub fn state_path(record: &Path) -> PathBuf {
    record.with_extension("state")
}

/// Takes an exclusive `flock`, waiting at most `patience`: a lock held for longer (a hung
/// process, or a user holding their own home lock) is an error, not a hang of sshd or the CLI.
fn lock_within(file: &File, patience: Duration) -> io::Result<()> {
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_micros(50);
    loop {
        let Err(err) = sys::try_lock_exclusive(file) else {
            return Ok(());
        };
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Some(libc::EWOULDBLOCK) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("held by another process for over {} s", patience.as_secs()),
                ))
            }
            _ => return Err(err),
        }
    }
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(cause) => Err(StoreError::Io {
            path: path.into(),
            action: "remove",
            cause,
        }),
    }
}

fn missing(path: &Path) -> StoreError {
    StoreError::Io {
        path: path.into(),
        action: "create",
        cause: io::ErrorKind::NotFound.into(),
    }
}

/// Makes a rename or unlink in `file`'s directory durable.
/// Why a directory cannot hold records owned by `owner` (the rule the module, the CLI and
/// `twofold check` share): it must be a directory, owned by `owner` or root, and writable by
/// nobody else, since whoever can write it can replace a record.
pub fn records_directory_problem(meta: &std::fs::Metadata, owner: u32) -> Option<String> {
    if !meta.is_dir() {
        return Some("not a directory".into());
    }
    if meta.uid() != owner && meta.uid() != 0 {
        return Some(format!(
            "owned by uid {}, expected uid {owner} or root",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "mode {:04o} lets group or others write it; run chmod go-w",
            meta.mode() & 0o7777
        ));
    }
    None
}

fn sync_directory(file: &Path) -> Result<(), StoreError> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|cause| StoreError::Io {
            path: dir.into(),
            action: "sync",
            cause,
        })
}

/// How long to wait for a user's lock; every holder keeps it for milliseconds.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// Records are a few hundred bytes; one read takes any record this size or smaller.
const READ_CHUNK: usize = 8192;

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // The suffix only avoids collisions; O_EXCL makes a collision an error, not a hazard.
        bytes = u64::from(std::process::id()).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "twofold-list-{name}-{}-{}",
            std::process::id(),
            random_suffix()
        ));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    fn names(users: Vec<UserName>) -> Vec<String> {
        users.iter().map(|u| u.as_str().to_string()).collect()
    }

    #[test]
    fn central_records_list_the_files_that_match_the_template() {
        let dir = scratch("central");
        for file in [
            "bob.toml",
            "bob.state",
            "alice.toml",
            "carol.state",
            "notes.txt",
            ".twofold-store",
            ".alice.toml.tmp",
        ] {
            std::fs::write(dir.join(file), "").unwrap();
        }
        let template = format!("{}/{{user}}.toml", dir.display());
        let config = Config {
            records: RecordsTemplate::parse(&template).unwrap(),
            ..Config::default()
        };
        let listed = FileStore::for_admin(&config).list_users().unwrap();
        assert_eq!(names(listed), ["alice", "bob"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn home_records_list_the_home_index() {
        let index = scratch("index");
        for file in ["bob", "alice", STORE_MARKER] {
            std::fs::write(index.join(file), "").unwrap();
        }
        let config = Config {
            records: RecordsTemplate::parse("~/.config/twofold/{user}.toml").unwrap(),
            home_index: index.clone(),
            ..Config::default()
        };
        let listed = FileStore::for_admin(&config).list_users().unwrap();
        assert_eq!(names(listed), ["alice", "bob"]);
        std::fs::remove_dir_all(&index).unwrap();
    }

    #[test]
    fn state_lives_beside_the_record() {
        assert_eq!(
            state_path(Path::new("/v/alice.toml")),
            PathBuf::from("/v/alice.state")
        );
    }
}
