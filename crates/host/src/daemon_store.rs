//! The store through twofoldd (`store = "twofoldd"`): every load and change is a request on the
//! daemon's unix socket, and every change a compare-and-swap on the copy's generation, so the
//! daemon's backend (files, or a directory shared by a fleet) orders all hosts' writes. A lost
//! race hands back the fresh copy and the change runs again on it, as the `Store` trait allows.
//!
//! The module trusts the socket only if root owns it and the process at the other end is root's:
//! a socket left by someone else, or a daemon run by a user, could answer "accepted".

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use twofold_core::config::Config;
use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::store::{Accounts, Store, StoreError};
use twofold_core::user::UserName;
use twofold_proto::{exchange, Request, Response, Secret, Snapshot};

use crate::{passwd, peer};

/// How long one request may take, connect to answer. The module's own budget is a login's: the
/// daemon's backend has a shorter deadline of its own, so it answers before this runs out.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Lost compare-and-swap races before giving up (each loser retries on the copy it was handed).
const MAX_RACES: usize = 32;

pub struct DaemonStore {
    socket: PathBuf,
    timeout: Duration,
    /// The copy the last `load` got, for the `update` that usually follows it (a login loads,
    /// decides, then updates): one request fewer per login. The generation still guards the
    /// write, so a copy gone stale only costs a conflict and a retry on the fresh one.
    last_loaded: Mutex<Option<(UserName, Snapshot)>>,
}

impl DaemonStore {
    pub fn new(config: &Config) -> DaemonStore {
        DaemonStore {
            socket: config.daemon_socket.clone(),
            timeout: REQUEST_TIMEOUT,
            last_loaded: Mutex::new(None),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request, one response, on a fresh connection to a daemon that root runs.
    pub fn call(&self, request: &Request) -> Result<Response, StoreError> {
        let failed = |why: String| StoreError::Daemon {
            socket: self.socket.clone(),
            why,
        };
        let meta = std::fs::symlink_metadata(&self.socket).map_err(|e| {
            failed(format!(
                "cannot reach the socket: {e}; is twofoldd.socket running?"
            ))
        })?;
        if !meta.file_type().is_socket() || meta.uid() != 0 {
            return Err(failed("refused: not a socket owned by root".into()));
        }
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|e| failed(format!("cannot connect: {e}; is twofoldd running?")))?;
        let peer = peer::peer_uid(&stream).map_err(|e| failed(format!("peer credentials: {e}")))?;
        if peer != 0 {
            return Err(failed(format!(
                "refused: the daemon runs as uid {peer}, not root"
            )));
        }
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| failed(e.to_string()))?;
        exchange(&mut stream, request).map_err(|e| match e {
            twofold_proto::ProtoError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                failed(format!("no answer within {} s", self.timeout.as_secs_f32()))
            }
            other => failed(other.to_string()),
        })
    }

    /// Every enrolled user, as the daemon's backend lists them (root and the web server's user
    /// only). A name that is not a usable user name is an error: the daemon never sends one.
    pub fn list_users(&self) -> Result<Vec<UserName>, StoreError> {
        match self.call(&Request::List)? {
            Response::Users(names) => names
                .iter()
                .map(|name| {
                    UserName::parse(name).ok_or_else(|| StoreError::Daemon {
                        socket: self.socket.clone(),
                        why: format!(
                            "listed `{}`, which is not a user name",
                            twofold_core::text::field(name)
                        ),
                    })
                })
                .collect(),
            other => Err(self.unexpected(other)),
        }
    }

    fn snapshot(&self, user: &UserName) -> Result<Snapshot, StoreError> {
        match self.call(&Request::Load {
            user: user.as_str().to_string(),
        })? {
            Response::Loaded(snapshot) => Ok(snapshot),
            other => Err(self.unexpected(other)),
        }
    }

    fn record_of(&self, snapshot: &Snapshot) -> Result<Option<Record>, StoreError> {
        snapshot
            .record
            .as_ref()
            .map(|text| {
                Record::parse(text.0.as_bytes()).map_err(|cause| StoreError::BadRecord {
                    path: self.socket.clone(),
                    cause,
                })
            })
            .transpose()
    }

    /// An answer that is not the one the request calls for: the daemon's reason, or a protocol
    /// mismatch.
    fn unexpected(&self, response: Response) -> StoreError {
        let why = match response {
            Response::Refused(why) => format!("refused: {why}"),
            Response::Unavailable(why) => format!("unavailable: {why}"),
            Response::Invalid(why) => format!("refused the change: {why}"),
            other => format!("unexpected answer {other:?}"),
        };
        StoreError::Daemon {
            socket: self.socket.clone(),
            why,
        }
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Option<(UserName, Snapshot)>> {
        // One assignment or take at a time: a poisoned cache is still consistent.
        self.last_loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lost_too_often(&self) -> StoreError {
        StoreError::Daemon {
            socket: self.socket.clone(),
            why: format!("lost {MAX_RACES} compare-and-swap races in a row"),
        }
    }
}

impl Accounts for DaemonStore {
    fn is_account(&self, user: &UserName) -> Result<bool, StoreError> {
        passwd::by_name(user)
            .map(|account| account.is_some())
            .map_err(|cause| StoreError::Io {
                path: PathBuf::from("/etc/passwd"),
                action: "look up the user",
                cause,
            })
    }
}

impl Store for DaemonStore {
    fn load(&self, user: &UserName) -> Result<Option<(Record, State)>, StoreError> {
        let snapshot = self.snapshot(user)?;
        let loaded = self
            .record_of(&snapshot)?
            .map(|record| (record, snapshot.state.clone()));
        *self.remembered() = Some((user.clone(), snapshot));
        Ok(loaded)
    }

    fn update<T>(
        &self,
        user: &UserName,
        mut change: impl FnMut(&Record, &mut State) -> T,
    ) -> Result<Option<T>, StoreError> {
        let remembered = match self.remembered().take() {
            Some((loaded_for, snapshot)) if loaded_for == *user => Some(snapshot),
            _ => None,
        };
        let mut reused = remembered.is_some();
        let mut snapshot = match remembered {
            Some(snapshot) => snapshot,
            None => self.snapshot(user)?,
        };
        for _ in 0..MAX_RACES {
            let record = self.record_of(&snapshot)?;
            if record.is_none() && reused {
                // Not enrolled in the remembered copy: ask again rather than answer on it.
                reused = false;
                snapshot = self.snapshot(user)?;
                continue;
            }
            let Some(record) = record else {
                return Ok(None);
            };
            let mut state = snapshot.state.clone();
            let result = change(&record, &mut state);
            if state == snapshot.state {
                // Nothing to write, so no compare-and-swap checks the copy: decide on a fresh
                // one, never on the remembered one alone.
                if reused {
                    reused = false;
                    snapshot = self.snapshot(user)?;
                    continue;
                }
                return Ok(Some(result));
            }
            reused = false;
            let request = Request::Update {
                user: user.as_str().to_string(),
                generation: snapshot.generation,
                state,
            };
            match self.call(&request)? {
                Response::Written { .. } => return Ok(Some(result)),
                Response::Conflict(fresh) => snapshot = fresh,
                other => return Err(self.unexpected(other)),
            }
        }
        Err(self.lost_too_often())
    }

    fn replace<T, E>(
        &self,
        user: &UserName,
        mut change: impl FnMut(Option<&Record>, &mut State) -> Result<(Option<Record>, T), E>,
    ) -> Result<Result<T, E>, StoreError> {
        // No load first: for an enrollment into a store not yet confirmed (no marker) the daemon
        // answers a load "unconfirmed", while a replace is what confirms it. Guess "nothing
        // stored"; if there is something, the conflict hands back the copy to decide on.
        let mut snapshot = Snapshot {
            record: None,
            state: State::default(),
            generation: 0,
        };
        let mut guessed = true;
        for _ in 0..MAX_RACES {
            let current = self.record_of(&snapshot)?;
            let mut state = snapshot.state.clone();
            let (record, result) = match change(current.as_ref(), &mut state) {
                Ok(changed) => changed,
                // Refused on the guess (a disable, say, needs the record): decide on the real
                // copy.
                Err(_) if guessed => {
                    guessed = false;
                    snapshot = self.snapshot(user)?;
                    continue;
                }
                Err(e) => return Ok(Err(e)),
            };
            guessed = false;
            let request = Request::Replace {
                user: user.as_str().to_string(),
                generation: snapshot.generation,
                record: record.map(|r| Secret(r.to_toml())),
                state,
            };
            match self.call(&request)? {
                Response::Written { .. } => return Ok(Ok(result)),
                Response::Conflict(fresh) => snapshot = fresh,
                other => return Err(self.unexpected(other)),
            }
        }
        Err(self.lost_too_often())
    }
}
