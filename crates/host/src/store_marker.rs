//! How the file store tells "this user never enrolled" from "the store is not there".
//!
//! An unmounted records filesystem, or a home that is mounted only after login, shows an empty
//! directory, which would read as "not enrolled" and let `nullok` (or `enroll_on_login`) through
//! on the password alone. So a missing record counts as "not enrolled" only where something
//! confirms the place looked in is the real store:
//! - central records: a marker file, `.twofold-store`, in the directory every record lies under.
//!   The package and `twofold confirm-store` create it, and every enrollment writes it again, so
//!   it lives on the filesystem that holds the records;
//! - home records: the home index, a root-owned directory with its own marker and one empty file
//!   per enrolled user. Enrollments by root, and every login that finds a record, list the user;
//!   only a disable by root takes them off. A listed user whose record is missing is refused.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use twofold_core::config::{Config, RecordsLocation};
use twofold_core::store::StoreError;
use twofold_core::user::UserName;

use crate::file_store::records_directory_problem;
use crate::sys;

/// The file whose presence says "this directory is the records store".
pub const STORE_MARKER: &str = ".twofold-store";

/// What confirms a store: the central directory's marker, or the home index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// The directory every central record lies under.
    Central(PathBuf),
    /// The root-owned directory listing who enrolled with home records.
    HomeIndex(PathBuf),
}

impl Anchor {
    pub fn for_config(config: &Config) -> Anchor {
        match config.records.fixed_directory() {
            Some(dir) => Anchor::Central(dir),
            None => Anchor::HomeIndex(config.home_index.clone()),
        }
    }

    pub fn location(&self) -> RecordsLocation {
        match self {
            Anchor::Central(_) => RecordsLocation::Central,
            Anchor::HomeIndex(_) => RecordsLocation::Home,
        }
    }

    /// The directory that holds the marker.
    pub fn directory(&self) -> &Path {
        match self {
            Anchor::Central(dir) | Anchor::HomeIndex(dir) => dir,
        }
    }

    pub fn marker(&self) -> PathBuf {
        self.directory().join(STORE_MARKER)
    }

    /// Why the marker does not confirm the store, if it does not.
    pub fn problem(&self) -> Option<String> {
        let dir = self.directory();
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(meta) => meta,
            Err(e) => return Some(format!("{}: {e}", dir.display())),
        };
        if let Some(why) = records_directory_problem(&meta, sys::geteuid()) {
            return Some(format!("{}: {why}", dir.display()));
        }
        let marker = self.marker();
        match std::fs::symlink_metadata(&marker) {
            Ok(meta) if !meta.file_type().is_file() => {
                Some(format!("{}: not a regular file", marker.display()))
            }
            Ok(meta) if meta.uid() != sys::geteuid() && meta.uid() != 0 => Some(format!(
                "{}: owned by uid {}, expected uid {} or root",
                marker.display(),
                meta.uid(),
                sys::geteuid()
            )),
            Ok(meta) if meta.mode() & 0o022 != 0 => Some(format!(
                "{}: mode {:04o} lets group or others write it",
                marker.display(),
                meta.mode() & 0o7777
            )),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(format!(
                "{} is missing: the records filesystem may not be mounted",
                marker.display()
            )),
            Err(e) => Some(format!("{}: {e}", marker.display())),
        }
    }

    /// `Ok(())` if the marker confirms the store.
    pub fn confirm_store(&self) -> Result<(), StoreError> {
        match self.problem() {
            None => Ok(()),
            Some(why) => Err(StoreError::Unconfirmed {
                path: self.directory().into(),
                why: format!("{why}; if this is the real store, `twofold confirm-store` marks it"),
            }),
        }
    }

    /// `Ok(())` if `user`, whose record at `record` is missing, is really not enrolled.
    pub fn confirm_absence(&self, user: &UserName, record: &Path) -> Result<(), StoreError> {
        self.confirm_store()?;
        if let Anchor::HomeIndex(index) = self {
            match std::fs::symlink_metadata(index.join(user.as_str())) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                _ => {
                    return Err(StoreError::Unconfirmed {
                        path: record.into(),
                        why: format!(
                            "{user} is listed as enrolled in {} but the record is missing: is \
                             the home mounted? If {user} removed it, `twofold disable --user \
                             {user}` run by root takes them off the list",
                            index.display()
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    /// Whether the home index lists `user` (always `false` for central records).
    pub fn lists(&self, user: &UserName) -> bool {
        match self {
            Anchor::Central(_) => false,
            Anchor::HomeIndex(index) => {
                std::fs::symlink_metadata(index.join(user.as_str())).is_ok()
            }
        }
    }

    /// Writes the marker if it is missing (the directory must exist and be ours).
    pub fn mark(&self) -> Result<(), StoreError> {
        let marker = self.marker();
        if std::fs::symlink_metadata(&marker).is_ok() {
            return Ok(());
        }
        create_empty(&marker)
    }

    /// Creates the home index (mode 0700) and its marker; for central records, the marker.
    pub fn create(&self) -> Result<(), StoreError> {
        let dir = self.directory();
        if let Anchor::HomeIndex(_) = self {
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => sync_parent(dir)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(cause) => {
                    return Err(StoreError::Io {
                        path: dir.into(),
                        action: "create",
                        cause,
                    })
                }
            }
        }
        let meta = std::fs::symlink_metadata(dir).map_err(|cause| StoreError::Io {
            path: dir.into(),
            action: "inspect",
            cause,
        })?;
        if let Some(why) = records_directory_problem(&meta, sys::geteuid()) {
            return Err(StoreError::Unsafe {
                path: dir.into(),
                why,
            });
        }
        self.mark()
    }

    /// Lists `user` in the home index, if this process may write it (root, or whoever owns a
    /// test's index); a user enrolling themselves cannot, and is listed at their next login.
    pub fn list(&self, user: &UserName) -> Result<(), StoreError> {
        let Anchor::HomeIndex(index) = self else {
            return Ok(());
        };
        if self.lists(user) || !self.writable() {
            return Ok(());
        }
        create_empty(&index.join(user.as_str()))
    }

    /// Takes `user` off the home index, if this process may write it.
    pub fn unlist(&self, user: &UserName) -> Result<(), StoreError> {
        let Anchor::HomeIndex(index) = self else {
            return Ok(());
        };
        if !self.lists(user) || !self.writable() {
            return Ok(());
        }
        let entry = index.join(user.as_str());
        std::fs::remove_file(&entry).map_err(|cause| StoreError::Io {
            path: entry.clone(),
            action: "remove",
            cause,
        })?;
        sync_parent(&entry)
    }
}

impl Anchor {
    /// A sound store of ours: root's index when we are root. Anyone else only reads it.
    fn writable(&self) -> bool {
        self.problem().is_none()
            && std::fs::symlink_metadata(self.directory())
                .is_ok_and(|meta| meta.uid() == sys::geteuid())
    }
}

/// Creates an empty private file durably (`O_EXCL`: one made meanwhile by another is kept).
fn create_empty(path: &Path) -> Result<(), StoreError> {
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    match created {
        Ok(file) => file.sync_all().map_err(|cause| StoreError::Io {
            path: path.into(),
            action: "write",
            cause,
        })?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(cause) => {
            return Err(StoreError::Io {
                path: path.into(),
                action: "create",
                cause,
            })
        }
    }
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|cause| StoreError::Io {
            path: dir.into(),
            action: "sync",
            cause,
        })
}
