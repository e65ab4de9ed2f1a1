//! The directory backend: each user's record and state as attributes of their own entry, written
//! to one write provider with a compare-and-swap in every modify.
//!
//! The entry is found with `user_filter` (default `(uid=NAME)`) under `base_dn`; it must exist
//! (the directory's admin makes the people entries). Enrolling adds the auxiliary class
//! `twofoldAccount` with `twofoldRecord` (the record's TOML text) and `twofoldState`
//! (`ldap_state`, which carries its own generation). Every write deletes the exact state value it
//! read and adds the new one in the same modify: if anyone wrote in between, the old value is
//! gone, the directory refuses the whole modify (noSuchAttribute), and the change is decided
//! again on a fresh read. A write counts only once the modify returned success.
//!
//! Servers are tried in the configured order for every new connection and never spread over:
//! two providers taking writes for one user would each accept the same code. Every request has a
//! deadline (`deadline_ms`); whatever the directory does, the daemon answers within it, and says
//! "unavailable" with the cause when no server served it. There is no fallback to local files.
//!
//! This module never logs a record, a state or the bind password.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{LdapConn, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use zeroize::Zeroizing;

use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::store::{Accounts, Store, StoreError};
use twofold_core::user::UserName;
use twofold_host::{passwd, sys};

use crate::ldap_config::{LdapConfig, Server};
use crate::ldap_state::Versioned;

/// The directory store, shared by every connection thread of the daemon.
pub struct LdapStore {
    config: LdapConfig,
    password: Zeroizing<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Bound connections not in use, with the server they are on and when they were made.
    idle: Mutex<Vec<Pooled>>,
}

impl std::fmt::Debug for LdapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapStore")
            .field("servers", &self.config.servers)
            .field("base_dn", &self.config.base_dn)
            .finish_non_exhaustive()
    }
}

impl LdapStore {
    /// Reads the bind password and the CA file (checking who may read them); connects lazily.
    pub fn open(config: &LdapConfig) -> Result<LdapStore, String> {
        let password = read_password(&config.bind_password_file)?;
        let tls = match &config.ca_file {
            Some(path) => Some(tls_config(path)?),
            None => None,
        };
        Ok(LdapStore {
            config: config.clone(),
            password,
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// What `status` reports: the servers in order and the base.
    pub fn describe(&self) -> String {
        let servers: Vec<&str> = self.config.servers.iter().map(|s| s.url.as_str()).collect();
        format!(
            "servers={} base_dn={}",
            servers.join(","),
            self.config.base_dn
        )
    }

    /// Runs `body` on the user's entry as read now, on a bound connection, until it is done, a
    /// compare-and-swap has been lost too often, or the deadline passes. A connection that fails
    /// is dropped and the next try starts on a new one (from the first server); a modify whose
    /// answer was lost is decided again on a fresh read, which is safe because the change is
    /// decided from what is stored.
    fn transact<T>(
        &self,
        user: &UserName,
        mut body: impl FnMut(&mut Session<'_>, Option<Found>) -> Result<Attempt<T>, Failure>,
    ) -> Result<T, StoreError> {
        self.attempt(&format!("for {user}"), |session| {
            session.find(user).and_then(|found| body(session, found))
        })
    }

    /// Every enrolled user: the name (the attribute `user_filter` matches the name on) of each
    /// entry with `twofoldAccount` that `user_filter` can find, sorted. Within the deadline, on
    /// the first server that answers, as every other request.
    pub fn list_users(&self) -> Result<Vec<UserName>, StoreError> {
        let Some(attribute) = self.config.name_attribute() else {
            return Err(self.unavailable(format!(
                "user_filter {}: cannot tell which attribute holds the user name (expected \
                 a part such as (uid={{user}}))",
                self.config.user_filter
            )));
        };
        self.attempt("listing users", |session| {
            session.enrolled(&attribute).map(Attempt::Done)
        })
    }

    /// Runs `body` on a bound connection until it is done, a compare-and-swap has been lost too
    /// often, or the deadline passes (`what` names the work in that error).
    fn attempt<T>(
        &self,
        what: &str,
        mut body: impl FnMut(&mut Session<'_>) -> Result<Attempt<T>, Failure>,
    ) -> Result<T, StoreError> {
        let until = Instant::now() + self.config.deadline;
        let mut causes: Vec<String> = Vec::new();
        let mut conflicts = 0;
        loop {
            if Instant::now() >= until {
                return Err(self.unavailable(format!(
                    "no answer within the deadline ({} ms){}",
                    self.config.deadline.as_millis(),
                    because(&causes)
                )));
            }
            let mut conn = self.checkout(until).map_err(|why| {
                causes.push(why);
                self.unavailable(format!("no directory server answered{}", because(&causes)))
            })?;
            let mut session = Session {
                store: self,
                conn: &mut conn,
                until,
            };
            let outcome = body(&mut session);
            match outcome {
                Ok(Attempt::Done(value)) => {
                    self.checkin(conn);
                    return Ok(value);
                }
                Ok(Attempt::Lost) => {
                    self.checkin(conn);
                    conflicts += 1;
                    if conflicts >= MAX_CONFLICTS {
                        return Err(self.unavailable(format!(
                            "{conflicts} writes in a row lost to concurrent ones {what}"
                        )));
                    }
                }
                Ok(Attempt::Broken(why)) | Err(Failure::Connection(why)) => {
                    causes.push(format!("{}: {why}", conn.server.url));
                }
                Err(Failure::Store(e)) => {
                    self.checkin(conn);
                    return Err(e);
                }
            }
        }
    }

    /// An idle connection that is young enough, or a new one from the first server that binds.
    fn checkout(&self, until: Instant) -> Result<Pooled, String> {
        let reused = self.lock_idle().pop();
        if let Some(pooled) = reused {
            // Young connections only: a primary that came back gets the traffic again soon.
            if pooled.made.elapsed() < MAX_IDLE_AGE {
                return Ok(pooled);
            }
        }
        let mut causes = Vec::new();
        for server in &self.config.servers {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                causes.push("deadline reached".to_string());
                break;
            }
            match self.connect(server, left) {
                Ok(conn) => {
                    return Ok(Pooled {
                        conn,
                        server: server.clone(),
                        made: Instant::now(),
                    })
                }
                Err(why) => causes.push(format!("{}: {why}", server.url)),
            }
        }
        Err(causes.join("; "))
    }

    fn connect(&self, server: &Server, left: Duration) -> Result<LdapConn, String> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.connect_timeout.min(left))
            .set_starttls(server.transport == crate::ldap_config::Transport::StartTls);
        if server.transport.tls() {
            let Some(tls) = &self.tls else {
                // The config refuses a TLS server without ca_file.
                return Err("TLS without a CA file".into());
            };
            settings = settings.set_config(Arc::clone(tls));
        }
        let started = Instant::now();
        let mut conn = LdapConn::with_settings(settings, &server.url).map_err(|e| describe(&e))?;
        let left = left.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err("deadline reached while connecting".into());
        }
        let bound = conn
            .with_timeout(self.config.op_timeout.min(left))
            .simple_bind(&self.config.bind_dn, &self.password)
            .map_err(|e| describe(&e))?;
        if bound.rc != 0 {
            return Err(format!(
                "bind as {} refused: {}",
                self.config.bind_dn,
                result_text(bound.rc, &bound.text)
            ));
        }
        Ok(conn)
    }

    fn checkin(&self, pooled: Pooled) {
        let mut idle = self.lock_idle();
        if idle.len() < MAX_IDLE {
            idle.push(pooled);
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Pooled>> {
        // A thread that panicked while holding the lock left a valid Vec behind.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn unavailable(&self, why: String) -> StoreError {
        StoreError::Io {
            path: PathBuf::from(format!("ldap {}", self.config.base_dn)),
            action: "reach the directory",
            cause: io::Error::other(why),
        }
    }

    fn bad_record(&self, dn: &str, cause: twofold_core::record::RecordError) -> StoreError {
        StoreError::BadRecord {
            path: PathBuf::from(dn),
            cause,
        }
    }
}

impl Accounts for LdapStore {
    fn is_account(&self, user: &UserName) -> Result<bool, StoreError> {
        // The directory's people reach this host through NSS (sssd, nslcd), like every account.
        passwd::by_name(user)
            .map(|account| account.is_some())
            .map_err(|cause| StoreError::Io {
                path: PathBuf::from("passwd"),
                action: "look up the account",
                cause,
            })
    }
}

impl Store for LdapStore {
    fn load(&self, user: &UserName) -> Result<Option<(Record, State)>, StoreError> {
        self.transact(user, |_, found| {
            let Some(found) = found else {
                return Ok(Attempt::Done(None));
            };
            let Some(record) = found.enrolled_record(self)? else {
                return Ok(Attempt::Done(None));
            };
            Ok(Attempt::Done(Some((record, found.state()?.state))))
        })
    }

    fn update<T>(
        &self,
        user: &UserName,
        mut change: impl FnMut(&Record, &mut State) -> T,
    ) -> Result<Option<T>, StoreError> {
        self.transact(user, |session, found| {
            let Some(found) = found else {
                return Ok(Attempt::Done(None));
            };
            let Some(record) = found.enrolled_record(self)? else {
                return Ok(Attempt::Done(None));
            };
            let old = found.state()?;
            let mut state = old.state.clone();
            let value = change(&record, &mut state);
            if state == old.state {
                return Ok(Attempt::Done(Some(value)));
            }
            let mods = state_swap(found.state.as_deref(), &old, state);
            Ok(session.modify(&found.dn, mods)?.then(Some(value)))
        })
    }

    fn replace<T, E>(
        &self,
        user: &UserName,
        mut change: impl FnMut(Option<&Record>, &mut State) -> Result<(Option<Record>, T), E>,
    ) -> Result<Result<T, E>, StoreError> {
        self.transact(user, |session, found| {
            let (record, old) = match &found {
                Some(found) => (found.record(self)?, found.state()?),
                None => (None, Versioned::default()),
            };
            let mut state = old.state.clone();
            let (new_record, value) = match change(record.as_ref(), &mut state) {
                Ok(decided) => decided,
                Err(e) => return Ok(Attempt::Done(Err(e))),
            };
            let Some(found) = found else {
                return match new_record {
                    // Nothing stored and nothing to store.
                    None => Ok(Attempt::Done(Ok(value))),
                    Some(_) => Err(Failure::Store(self.unavailable(format!(
                        "no entry matches {} under {}: the account must be in the directory \
                         before it can enroll",
                        self.config.filter_for(user.as_str()),
                        self.config.base_dn
                    )))),
                };
            };
            let mods = match new_record {
                Some(new_record) => {
                    let mut mods = Vec::new();
                    if !found.has_class {
                        mods.push(Mod::Add(
                            b"objectClass".to_vec(),
                            one(OBJECT_CLASS.as_bytes().to_vec()),
                        ));
                    }
                    mods.extend(state_swap(found.state.as_deref(), &old, state));
                    mods.push(Mod::Replace(
                        ATTR_RECORD.as_bytes().to_vec(),
                        one(new_record.to_toml().as_bytes().to_vec()),
                    ));
                    mods
                }
                None => {
                    let mut mods = Vec::new();
                    // The exact values read: a concurrent write makes the modify fail.
                    if let Some(state) = &found.state {
                        mods.push(Mod::Delete(
                            ATTR_STATE.as_bytes().to_vec(),
                            one(state.clone()),
                        ));
                    }
                    if let Some(record) = &found.record {
                        mods.push(Mod::Delete(
                            ATTR_RECORD.as_bytes().to_vec(),
                            one(record.clone()),
                        ));
                    }
                    if found.has_class {
                        mods.push(Mod::Delete(
                            b"objectClass".to_vec(),
                            one(OBJECT_CLASS.as_bytes().to_vec()),
                        ));
                    }
                    if mods.is_empty() {
                        return Ok(Attempt::Done(Ok(value)));
                    }
                    mods
                }
            };
            Ok(session.modify(&found.dn, mods)?.then(Ok(value)))
        })
    }
}

/// The compare-and-swap of the state: delete the exact value read, add the next generation.
fn state_swap(read: Option<&[u8]>, old: &Versioned, state: State) -> Vec<Mod<Vec<u8>>> {
    let next = Versioned {
        generation: old.generation.wrapping_add(1).max(1),
        state,
    };
    let mut mods = Vec::with_capacity(2);
    if let Some(read) = read {
        mods.push(Mod::Delete(
            ATTR_STATE.as_bytes().to_vec(),
            one(read.to_vec()),
        ));
    }
    // Without a value read, the add itself is the guard: a single-valued attribute that someone
    // else has just set refuses a second value.
    mods.push(Mod::Add(
        ATTR_STATE.as_bytes().to_vec(),
        one(next.encode().into_bytes()),
    ));
    mods
}

/// One try of a transaction on one connection.
struct Session<'a> {
    store: &'a LdapStore,
    conn: &'a mut Pooled,
    until: Instant,
}

impl Session<'_> {
    /// The time one operation may take: the per-operation timeout, within the deadline.
    fn timeout(&self) -> Result<Duration, Failure> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Connection("deadline reached".into()));
        }
        Ok(self.store.config.op_timeout.min(left))
    }

    /// The user's entry, if the directory has one; more than one is an error.
    fn find(&mut self, user: &UserName) -> Result<Option<Found>, Failure> {
        let timeout = self.timeout()?;
        let filter = self.store.config.filter_for(user.as_str());
        let searched = self
            .conn
            .conn
            .with_timeout(timeout)
            .search(
                &self.store.config.base_dn,
                Scope::Subtree,
                &filter,
                vec!["objectClass", ATTR_RECORD, ATTR_STATE],
            )
            .map_err(|e| Failure::Connection(describe(&e)))?;
        let ldap3::SearchResult(entries, result) = searched;
        if result.rc == REFERRAL {
            return Err(Failure::Store(self.store.unavailable(format!(
                "{} referred the search elsewhere ({}): list the write provider itself",
                self.conn.server.url,
                result.refs.join(" ")
            ))));
        }
        if result.rc != 0 {
            return Err(Failure::Store(self.store.unavailable(format!(
                "{}: search {filter} under {}: {}",
                self.conn.server.url,
                self.store.config.base_dn,
                result_text(result.rc, &result.text)
            ))));
        }
        let mut entries = entries.into_iter();
        let Some(first) = entries.next() else {
            return Ok(None);
        };
        if entries.next().is_some() {
            return Err(Failure::Store(self.store.unavailable(format!(
                "more than one entry matches {filter} under {}",
                self.store.config.base_dn
            ))));
        }
        // ldap3 panics on an entry it cannot parse; that is the server's fault, not a reason
        // to lose the thread.
        let entry = std::panic::catch_unwind(move || SearchEntry::construct(first))
            .map_err(|_| Failure::Connection("unparsable search entry".into()))?;
        Found::from_entry(entry).map_err(|why| Failure::Store(self.store.unavailable(why)))
    }

    /// The names, in `attribute`, of the entries with the class that `user_filter` finds.
    /// Entries whose name is no usable user name are left out: no login could reach them.
    fn enrolled(&mut self, attribute: &str) -> Result<Vec<UserName>, Failure> {
        let timeout = self.timeout()?;
        let filter = format!(
            "(&(objectClass={OBJECT_CLASS}){})",
            self.store.config.user_filter.replace("{user}", "*")
        );
        let searched = self
            .conn
            .conn
            .with_timeout(timeout)
            .search(
                &self.store.config.base_dn,
                Scope::Subtree,
                &filter,
                vec![attribute],
            )
            .map_err(|e| Failure::Connection(describe(&e)))?;
        let ldap3::SearchResult(entries, result) = searched;
        if result.rc != 0 {
            let advice = match result.rc {
                REFERRAL => format!(
                    " (referred to {}): list the write provider itself",
                    result.refs.join(" ")
                ),
                SIZE_LIMIT_EXCEEDED => {
                    ": raise the bind DN's size limit (olcLimits) to list every user".into()
                }
                _ => String::new(),
            };
            return Err(Failure::Store(self.store.unavailable(format!(
                "{}: search {filter} under {}: {}{advice}",
                self.conn.server.url,
                self.store.config.base_dn,
                result_text(result.rc, &result.text)
            ))));
        }
        let mut users = Vec::with_capacity(entries.len());
        for raw in entries {
            // As in `find`: an unparsable entry is the server's fault, not a lost thread.
            let entry = std::panic::catch_unwind(move || SearchEntry::construct(raw))
                .map_err(|_| Failure::Connection("unparsable search entry".into()))?;
            // A multi-valued name attribute finds the entry by any of its values: one is enough.
            let name = entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attribute))
                .and_then(|(_, values)| values.first());
            if let Some(user) = name.and_then(|n| UserName::parse(n)) {
                users.push(user);
            }
        }
        users.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        users.dedup();
        Ok(users)
    }

    /// Applies `mods` to `dn` as one modify: done, lost to a concurrent write, or failed.
    fn modify(&mut self, dn: &str, mods: Vec<Mod<Vec<u8>>>) -> Result<Written, Failure> {
        let timeout = self.timeout()?;
        let result = match self.conn.conn.with_timeout(timeout).modify(dn, mods) {
            Ok(result) => result,
            // The write may or may not have happened: decide again on a fresh read.
            Err(e) => return Ok(Written::Unknown(describe(&e))),
        };
        match result.rc {
            0 => Ok(Written::Done),
            NO_SUCH_ATTRIBUTE | CONSTRAINT_VIOLATION | ATTRIBUTE_OR_VALUE_EXISTS => {
                Ok(Written::Lost)
            }
            REFERRAL => Err(Failure::Store(self.store.unavailable(format!(
                "{} is not a write provider (it refers writes to {}): list the provider first",
                self.conn.server.url,
                result.refs.join(" ")
            )))),
            rc => Err(Failure::Store(self.store.unavailable(format!(
                "{}: modify {dn}: {}",
                self.conn.server.url,
                result_text(rc, &result.text)
            )))),
        }
    }
}

/// How a modify ended.
enum Written {
    Done,
    /// Someone else wrote first: read again and decide again.
    Lost,
    /// The connection failed before the answer came.
    Unknown(String),
}

impl Written {
    fn then<T>(self, value: T) -> Attempt<T> {
        match self {
            Written::Done => Attempt::Done(value),
            Written::Lost => Attempt::Lost,
            Written::Unknown(why) => Attempt::Broken(why),
        }
    }
}

/// How one try of a transaction ended.
enum Attempt<T> {
    /// Broken connection after a write was sent: start over on a new one.
    Broken(String),
    Done(T),
    /// Lost a compare-and-swap: read again.
    Lost,
}

/// Why a try failed.
enum Failure {
    /// The connection failed: start over on another.
    Connection(String),
    /// The directory answered, and the answer is an error.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

/// A user's entry as read.
struct Found {
    dn: String,
    has_class: bool,
    record: Option<Vec<u8>>,
    state: Option<Vec<u8>>,
}

impl Found {
    fn from_entry(entry: SearchEntry) -> Result<Option<Found>, String> {
        let values = |name: &str| -> Vec<Vec<u8>> {
            let text = entry
                .attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.iter().map(|s| s.as_bytes().to_vec()));
            let binary = entry
                .bin_attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.iter().cloned());
            text.chain(binary).collect()
        };
        let single = |name: &str| -> Result<Option<Vec<u8>>, String> {
            let mut all = values(name);
            match all.len() {
                0 | 1 => Ok(all.pop()),
                n => Err(format!("{}: {name} has {n} values, expected one", entry.dn)),
            }
        };
        let has_class = values("objectClass")
            .iter()
            .any(|v| v.eq_ignore_ascii_case(OBJECT_CLASS.as_bytes()));
        Ok(Some(Found {
            has_class,
            record: single(ATTR_RECORD)?,
            state: single(ATTR_STATE)?,
            dn: entry.dn,
        }))
    }

    /// The record, if enrolled.
    fn record(&self, store: &LdapStore) -> Result<Option<Record>, StoreError> {
        self.record
            .as_deref()
            .map(|text| Record::parse(text).map_err(|e| store.bad_record(&self.dn, e)))
            .transpose()
    }

    /// The record for a login decision: an entry with the class but no record it can read is
    /// an error, never "not enrolled" (an ACL that hides the attribute from the bind DN must not
    /// let users skip the second factor under nullok).
    fn enrolled_record(&self, store: &LdapStore) -> Result<Option<Record>, StoreError> {
        if self.has_class && self.record.is_none() {
            return Err(StoreError::BadState {
                path: PathBuf::from(&self.dn),
                why: format!(
                    "has {OBJECT_CLASS} but no {ATTR_RECORD} the daemon can read: check that \
                     the bind DN may read it (ACL), or remove the class to mean not enrolled"
                ),
            });
        }
        self.record(store)
    }

    /// The state; a record without one (made by hand) starts from the default.
    fn state(&self) -> Result<Versioned, StoreError> {
        match &self.state {
            None => Ok(Versioned::default()),
            Some(value) => Versioned::decode(value).map_err(|why| StoreError::BadState {
                path: PathBuf::from(&self.dn),
                why,
            }),
        }
    }
}

struct Pooled {
    conn: LdapConn,
    server: Server,
    made: Instant,
}

fn one(value: Vec<u8>) -> HashSet<Vec<u8>> {
    HashSet::from([value])
}

fn because(causes: &[String]) -> String {
    match causes.is_empty() {
        true => String::new(),
        false => format!(": {}", causes.join("; ")),
    }
}

/// An ldap3 error as one line; a timeout says so plainly.
fn describe(e: &LdapError) -> String {
    match e {
        LdapError::Timeout { .. } => "timed out".into(),
        other => twofold_core::config::one_line(&other.to_string()),
    }
}

fn result_text(rc: u32, text: &str) -> String {
    let name = match rc {
        4 => "sizeLimitExceeded",
        32 => "noSuchObject",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        53 => "unwillingToPerform",
        65 => "objectClassViolation",
        _ => "error",
    };
    match text.is_empty() {
        true => format!("{name} (result code {rc})"),
        false => format!(
            "{name} (result code {rc}): {}",
            twofold_core::config::one_line(text)
        ),
    }
}

/// Reads the bind password: a regular file of root's (or the daemon's own user's) that nobody
/// else may read. One trailing newline is not part of the password.
fn read_password(path: &Path) -> Result<Zeroizing<String>, String> {
    let named = |why: String| format!("bind_password_file {}: {why}", path.display());
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(sys::open_flags::O_NOFOLLOW | sys::open_flags::O_CLOEXEC)
        .open(path)
        .map_err(|e| named(format!("cannot open: {e}")))?;
    let meta = file.metadata().map_err(|e| named(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(named("not a regular file".into()));
    }
    if meta.uid() != 0 && meta.uid() != sys::geteuid() {
        return Err(named(format!(
            "owned by uid {}, expected root (uid 0)",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(named(format!(
            "mode {:04o} lets group or others read it; run chmod 600",
            meta.mode() & 0o7777
        )));
    }
    let mut text = Zeroizing::new(String::new());
    file.take(4097)
        .read_to_string(&mut text)
        .map_err(|e| named(format!("cannot read: {e}")))?;
    let trimmed = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if trimmed.is_empty() || trimmed.len() > 4096 || trimmed.contains(['\n', '\0']) {
        return Err(named("expected one line, the password".into()));
    }
    Ok(Zeroizing::new(trimmed.to_string()))
}

/// TLS trusting only the CA file's certificates, with ring, TLS 1.2 and 1.3.
fn tls_config(path: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let named = |why: String| format!("ca_file {}: {why}", path.display());
    let pem = fs::read(path).map_err(|e| named(format!("cannot read: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| named(format!("not PEM certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| named(format!("unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(named("holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| named(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The auxiliary class and its attributes (conf/ldap/twofold.schema).
pub const OBJECT_CLASS: &str = "twofoldAccount";
pub const ATTR_RECORD: &str = "twofoldRecord";
pub const ATTR_STATE: &str = "twofoldState";

/// LDAP result codes (RFC 4511, appendix A) that the store acts on.
const REFERRAL: u32 = 10;
const SIZE_LIMIT_EXCEEDED: u32 = 4;
const NO_SUCH_ATTRIBUTE: u32 = 16;
const CONSTRAINT_VIOLATION: u32 = 19;
const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
/// Lost compare-and-swaps in a row before giving up (each is someone else's successful write).
const MAX_CONFLICTS: u32 = 32;
const MAX_IDLE: usize = 16;
const MAX_IDLE_AGE: Duration = Duration::from_secs(30);
