//! The socket server: one thread per connection, at most `max_connections` at once, one request
//! and one response each, with a deadline on reading the request and another on writing the
//! answer. Every caller is identified by the kernel's peer credentials and authorized before the
//! request is served.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use twofold_core::config::Config;
use twofold_core::store::{Accounts, Store, StoreError};
use twofold_core::text::LogLine;
use twofold_core::user::UserName;
use twofold_host::pam_client::{self, PasswordVerdict};
use twofold_host::syslog::{self, Level};
use twofold_host::{passwd, peer, sys, FileStore, SystemClock};
use twofold_proto::{read_frame, write_frame, ProtoError, Request, Response, MAX_FRAME};

use crate::authorize::allowed;
use crate::check::check_code;
use crate::config::DaemonConfig;
use crate::ldap_store::LdapStore;
use crate::records;

/// What every connection needs: both configs and the web server's uid, read at start.
#[derive(Debug)]
pub struct Daemon {
    pub config: Config,
    pub daemon: DaemonConfig,
    /// The uid of `web_user`; `None` if that account does not exist.
    pub web_uid: Option<u32>,
    /// The directory store, when the backend is `ldap` (the files backend makes its stores per
    /// request).
    pub ldap: Option<LdapStore>,
}

/// Serves connections on `listener` until accepting fails for good.
pub fn serve(listener: UnixListener, daemon: Arc<Daemon>) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // A client that gave up before we accepted, or a signal: keep serving.
            Err(e) if is_transient(&e) => continue,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(sys::errno::EMFILE | sys::errno::ENFILE)
                ) =>
            {
                // Out of descriptors (EMFILE, ENFILE): wait for connections to finish.
                syslog::line(IDENT, Level::Error, &format!("cannot accept: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e),
        };
        let slot = Slot::take(&active, daemon.daemon.max_connections);
        let Some(slot) = slot else {
            busy(stream, daemon.daemon.io_timeout);
            continue;
        };
        let daemon = Arc::clone(&daemon);
        let spawned = std::thread::Builder::new()
            .name("twofoldd-conn".into())
            .spawn(move || {
                let _slot = slot;
                connection(stream, &daemon);
            });
        if let Err(e) = spawned {
            syslog::line(IDENT, Level::Error, &format!("cannot start a thread: {e}"));
        }
    }
}

/// Answers one request of a caller with uid `peer_uid`: authorization, then the operation. The
/// request has been decoded; the answer is not yet written.
pub fn respond(daemon: &Daemon, peer_uid: u32, request: &Request) -> Response {
    let privileged = peer_uid == 0 || daemon.web_uid == Some(peer_uid);
    // Only an unprivileged caller's own name matters, and only for a code check.
    let peer_name = match (privileged, request) {
        (false, Request::CheckCode { .. }) => match passwd::by_uid(peer_uid) {
            Ok(account) => account.map(|a| a.name.as_str().to_string()),
            Err(e) => return Response::Unavailable(format!("cannot look up uid {peer_uid}: {e}")),
        },
        _ => None,
    };
    let who = LogLine::new()
        .token("request", request_name(request))
        .token("peer_uid", &peer_uid.to_string());
    let who = match request_user(request) {
        Some(user) => who.token("user", user),
        None => who,
    };
    if let Err(why) = allowed(peer_uid, peer_name.as_deref(), daemon.web_uid, request) {
        let line = who.token("outcome", "refused").text("reason", &why);
        syslog::line(IDENT, Level::Notice, line.as_str());
        return Response::Refused(why);
    }
    let user = match request_user(request).map(UserName::parse) {
        Some(Some(user)) => Some(user),
        Some(None) => return Response::Invalid("not a usable user name".into()),
        None => None,
    };
    match (&daemon.ldap, request) {
        (Some(store), Request::Status) => Response::Status {
            store: "ldap".into(),
            detail: store.describe(),
        },
        (None, Request::Status) => Response::Status {
            store: "files".into(),
            detail: daemon.config.records.as_str().into(),
        },
        (Some(store), Request::List) => users(store.list_users()),
        (None, Request::List) => users(FileStore::new(&daemon.config).list_users()),
        (Some(store), _) => operate(daemon, store, store, request, user.as_ref(), &who),
        (None, _) => operate(
            daemon,
            &FileStore::new(&daemon.config),
            &admin_store(&daemon.config),
            request,
            user.as_ref(),
            &who,
        ),
    }
}

/// Serves a request that names a user on a backend: `reads` for loads and code checks (whose
/// answers logins are decided on), `writes` for updates and replacements.
fn operate<R: Store + Accounts, W: Store>(
    daemon: &Daemon,
    reads: &R,
    writes: &W,
    request: &Request,
    user: Option<&UserName>,
    who: &LogLine,
) -> Response {
    match (request, user) {
        (Request::Load { .. }, Some(user)) => records::load(reads, user),
        (
            Request::Update {
                generation, state, ..
            },
            Some(user),
        ) => records::update(writes, user, *generation, state),
        (
            Request::Replace {
                generation,
                record,
                state,
                ..
            },
            Some(user),
        ) => records::replace(writes, user, *generation, record.as_ref(), state),
        (Request::CheckCode { answer, .. }, Some(user)) => {
            let (response, level, line) =
                check_code(reads, &daemon.config, user, &answer.0, &SystemClock);
            syslog::line(IDENT, level, who.clone().and(&line).as_str());
            response
        }
        (
            Request::CheckPassword {
                password, rhost, ..
            },
            Some(user),
        ) => {
            let (response, level, line) = check_password(
                &daemon.daemon.password_service,
                user,
                &password.0,
                rhost.as_deref(),
            );
            syslog::line(IDENT, level, who.clone().and(&line).as_str());
            response
        }
        (Request::Status | Request::List, _) => {
            Response::Invalid("this request names no user".into())
        }
        // Every request but Status names a user, parsed above.
        (_, None) => Response::Invalid("no user named".into()),
    }
}

/// Checks a password through PAM, and returns the answer and the log level and fields (never
/// the password). A right password for an account that may not log in is refused like a wrong
/// one; only the log tells them apart.
fn check_password(
    service: &str,
    user: &UserName,
    password: &str,
    rhost: Option<&str>,
) -> (Response, Level, LogLine) {
    let line = LogLine::new().token("factor", "password");
    let line = match rhost {
        Some(rhost) => line.text("rhost", rhost),
        None => line,
    };
    match pam_client::check_password(service, user.as_str(), password, rhost) {
        // The web signs in the name it sent: it must be the account's own name in passwd, not
        // another spelling that NSS or the stack would also take (`ALICE` for alice).
        Ok(PasswordVerdict::Accepted) if !is_account_name(user) => (
            Response::Password { accepted: false },
            Level::Notice,
            line.token("outcome", "denied").text(
                "reason",
                "the password is right, but passwd knows the account by another name",
            ),
        ),
        Ok(PasswordVerdict::Accepted) => (
            Response::Password { accepted: true },
            Level::Info,
            line.token("outcome", "success"),
        ),
        Ok(PasswordVerdict::Refused) => (
            Response::Password { accepted: false },
            Level::Notice,
            line.token("outcome", "denied"),
        ),
        Ok(PasswordVerdict::AccountRefused(why)) => (
            Response::Password { accepted: false },
            Level::Notice,
            line.token("outcome", "denied").text("reason", &why),
        ),
        Err(e) => (
            Response::Unavailable(format!("the password check failed: {e}")),
            Level::Error,
            line.token("outcome", "unavailable").text("error", &e.0),
        ),
    }
}

/// Whether passwd has `user` under exactly that name.
fn is_account_name(user: &UserName) -> bool {
    matches!(passwd::by_name(user), Ok(Some(account)) if account.name == *user)
}

/// The answer to `List`: the names, if they fit in one frame (a frame of 160 KiB holds some
/// thousands of names; a larger fleet needs a paged request, which the wire format lacks).
fn users(listed: Result<Vec<UserName>, StoreError>) -> Response {
    let names = match listed {
        Ok(names) => names,
        Err(e) => return Response::Unavailable(e.to_string()),
    };
    let count = names.len();
    let response = Response::Users(names.iter().map(|n| n.as_str().to_string()).collect());
    if response.encode().len() > MAX_FRAME {
        return Response::Unavailable(format!(
            "{count} enrolled users are too many to list in one answer"
        ));
    }
    response
}

/// The store for writes. `FileStore::new` and `for_admin` differ only in `load`: the module's
/// store insists that a missing record be confirmed by the store marker (or the home index),
/// the admin's does not. Update and Replace never read through that path (they decide under the
/// lock on what they find), so either serves; `for_admin` says what they are. Loads, whose
/// answer the module and the web server decide logins on, always use `FileStore::new`.
fn admin_store(config: &Config) -> FileStore {
    FileStore::for_admin(config)
}

/// Reads one request, answers it, and closes. A malformed frame is answered `Invalid` when the
/// caller may still be listening; a caller that hangs up or stalls is dropped.
fn connection(stream: UnixStream, daemon: &Daemon) {
    let timeout = daemon.daemon.io_timeout;
    let peer_uid = match peer::peer_uid(&stream) {
        Ok(uid) => uid,
        Err(e) => {
            syslog::line(
                IDENT,
                Level::Error,
                &format!("cannot identify a caller: {e}"),
            );
            return;
        }
    };
    let mut reader = Deadline::new(&stream, timeout);
    let response = match read_frame(&mut reader).and_then(|payload| Request::decode(&payload)) {
        Ok(request) => respond(daemon, peer_uid, &request),
        // Gone, or too slow: nobody to answer.
        Err(ProtoError::Io(_)) => return,
        Err(e) => {
            let line = LogLine::new()
                .token("peer_uid", &peer_uid.to_string())
                .token("outcome", "invalid")
                .text("error", &e.to_string());
            syslog::line(IDENT, Level::Notice, line.as_str());
            Response::Invalid(e.to_string())
        }
    };
    let mut writer = Deadline::new(&stream, timeout);
    let _ = write_frame(&mut writer, &response.encode());
}

/// Answers a connection over the limit at once, from the accepting thread; the answer is one
/// small frame, which fits in the socket buffer.
fn busy(stream: UnixStream, timeout: Duration) {
    let _ = stream.set_write_timeout(Some(timeout.min(Duration::from_millis(100))));
    let mut stream = stream;
    let _ = write_frame(&mut stream, &Response::Unavailable("busy".into()).encode());
}

/// A connection's reader or writer that gives up once `timeout` has passed since it was made,
/// however the peer trickles its bytes.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl<'a> Deadline<'a> {
    fn new(stream: &'a UnixStream, timeout: Duration) -> Deadline<'a> {
        Deadline {
            stream,
            until: Instant::now() + timeout,
        }
    }

    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One of `max_connections` places; given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(active)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted | io::ErrorKind::WouldBlock
    )
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Load { .. } => "load",
        Request::Update { .. } => "update",
        Request::Replace { .. } => "replace",
        Request::Status => "status",
        Request::CheckCode { .. } => "check-code",
        Request::CheckPassword { .. } => "check-password",
        Request::List => "list",
    }
}

fn request_user(request: &Request) -> Option<&str> {
    match request {
        Request::Load { user }
        | Request::Update { user, .. }
        | Request::Replace { user, .. }
        | Request::CheckCode { user, .. }
        | Request::CheckPassword { user, .. } => Some(user),
        Request::List | Request::Status => None,
    }
}

/// The syslog ident of every line the daemon writes.
pub const IDENT: &str = "twofoldd";
