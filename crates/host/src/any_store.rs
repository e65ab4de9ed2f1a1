//! The store a front door uses, as the config says: the files in-process (`store = "files"`, the
//! default) or twofoldd (`store = "twofoldd"`). There is no fallback from one to the other: a
//! daemon that is down must not send logins to local files, whose spent codes it has not seen.

use twofold_core::config::{Config, StoreKind};
use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::store::{Accounts, Store, StoreError};
use twofold_core::user::UserName;

use crate::daemon_store::DaemonStore;
use crate::file_store::FileStore;

pub enum AnyStore {
    /// Boxed: a file store carries its caches, a daemon store only a path.
    Files(Box<FileStore>),
    Daemon(DaemonStore),
}

impl AnyStore {
    /// The module's store (a login's view: see `FileStore::new`).
    pub fn new(config: &Config) -> AnyStore {
        match config.store {
            StoreKind::Files => AnyStore::Files(Box::new(FileStore::new(config))),
            StoreKind::Twofoldd => AnyStore::Daemon(DaemonStore::new(config)),
        }
    }

    /// The CLI's store (an administrator's view: see `FileStore::for_admin`).
    pub fn for_admin(config: &Config) -> AnyStore {
        match config.store {
            StoreKind::Files => AnyStore::Files(Box::new(FileStore::for_admin(config))),
            StoreKind::Twofoldd => AnyStore::Daemon(DaemonStore::new(config)),
        }
    }

    /// The file store, when that is the store.
    pub fn files(&self) -> Option<&FileStore> {
        match self {
            AnyStore::Files(store) => Some(store),
            AnyStore::Daemon(_) => None,
        }
    }
}

impl Accounts for AnyStore {
    fn is_account(&self, user: &UserName) -> Result<bool, StoreError> {
        match self {
            AnyStore::Files(store) => store.is_account(user),
            AnyStore::Daemon(store) => store.is_account(user),
        }
    }
}

impl Store for AnyStore {
    fn load(&self, user: &UserName) -> Result<Option<(Record, State)>, StoreError> {
        match self {
            AnyStore::Files(store) => store.load(user),
            AnyStore::Daemon(store) => store.load(user),
        }
    }

    fn update<T>(
        &self,
        user: &UserName,
        change: impl FnMut(&Record, &mut State) -> T,
    ) -> Result<Option<T>, StoreError> {
        match self {
            AnyStore::Files(store) => store.update(user, change),
            AnyStore::Daemon(store) => store.update(user, change),
        }
    }

    fn replace<T, E>(
        &self,
        user: &UserName,
        change: impl FnMut(Option<&Record>, &mut State) -> Result<(Option<Record>, T), E>,
    ) -> Result<Result<T, E>, StoreError> {
        match self {
            AnyStore::Files(store) => store.replace(user, change),
            AnyStore::Daemon(store) => store.replace(user, change),
        }
    }
}
