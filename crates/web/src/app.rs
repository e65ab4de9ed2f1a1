//! What every request shares: the configs, the sessions, the pending WebAuthn challenges, the
//! per-address throttle, and the way to twofoldd. Every call to the daemon blocks (a unix
//! socket, PAM's delay after a wrong password), so handlers make them on tokio's blocking pool.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use twofold_core::clock::Clock;
use twofold_core::config::{Config, UserVerification};
use twofold_core::login::{Console, LoginPolicy};
use twofold_core::state::Origin;
use twofold_core::store::StoreError;
use twofold_core::user::UserName;
use twofold_host::daemon_store::DaemonStore;
use twofold_host::syslog::{self, Level};
use twofold_host::SystemClock;
use twofold_proto::{Request, Response, Secret};

use crate::config::WebConfig;
use crate::session::Sessions;
use crate::webauthn::{ChallengeBook, RelyingParty};

/// The shared state of the server.
pub struct App {
    pub config: Config,
    pub web: WebConfig,
    pub rp: RelyingParty,
    pub sessions: Sessions,
    pub challenges: Mutex<ChallengeBook>,
    pub throttle: AddressThrottle,
    pub store: DaemonStore,
}

/// What the daemon said about a password.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    Accepted,
    Refused,
}

impl App {
    pub fn new(config: Config, web: WebConfig, rp: RelyingParty) -> App {
        App {
            store: DaemonStore::new(&config),
            sessions: Sessions::new(web.session_idle, web.session_lifetime),
            challenges: Mutex::new(ChallengeBook::new(MAX_CHALLENGES, CHALLENGE_LIFETIME_SECS)),
            throttle: AddressThrottle::default(),
            config,
            web,
            rp,
        }
    }

    /// Checks a password through twofoldd (PAM service `twofold-web`).
    pub fn check_password(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<PasswordCheck, StoreError> {
        let request = Request::CheckPassword {
            user: user.into(),
            password: Secret::new(password),
            rhost: Some(client.to_string()),
        };
        match self.store.call(&request)? {
            Response::Password { accepted: true } => Ok(PasswordCheck::Accepted),
            Response::Password { accepted: false } => Ok(PasswordCheck::Refused),
            other => Err(StoreError::Daemon {
                socket: self.store.socket().into(),
                why: format!("answered a password check with {}", describe(&other)),
            }),
        }
    }

    /// The policy of a web login from `client`: never at the console (keys come through the
    /// browser, checked apart), no enrollment inside the check, no nullok.
    pub fn policy(&self, client: IpAddr) -> LoginPolicy<'static> {
        LoginPolicy {
            window: self.config.totp.window,
            throttle: self.config.throttle,
            nullok: false,
            forward_pass: false,
            enroll_on_login: None,
            origin: Origin::remote(&client.to_string()),
            console: Console::NEVER,
            keys_require_uv: self.config.fido2.user_verification == UserVerification::Required,
        }
    }

    pub fn now(&self) -> u64 {
        SystemClock.now()
    }

    /// Writes one line to syslog (auth facility) under twofold-web's name.
    pub fn log(&self, level: Level, line: &str) {
        syslog::line(IDENT, level, line);
    }
}

/// The name of a response, for a log line (never its contents).
fn describe(response: &Response) -> String {
    match response {
        Response::Refused(why) => {
            format!("a refusal ({why}); is web_user in twofoldd.toml this account?")
        }
        Response::Unavailable(why) => format!("unavailable ({why})"),
        Response::Invalid(why) => format!("invalid ({why})"),
        _ => "an unexpected answer".into(),
    }
}

/// Failed sign-in steps per client address: after `MAX_FAILURES` within `WINDOW`, the address
/// is refused until the window has passed. The per-user throttle is the store's, shared with
/// SSH and sudo; this one slows down one address trying many users.
#[derive(Default)]
pub struct AddressThrottle {
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AddressThrottle {
    /// Seconds until `client` may try again, if it is refused now.
    pub fn refused_for(&self, client: IpAddr) -> Option<u64> {
        let table = self.lock();
        let (since, count) = table.get(&client)?;
        let left = WINDOW.checked_sub(since.elapsed())?;
        (*count >= MAX_FAILURES).then(|| left.as_secs().max(1))
    }

    /// Counts a failure of `client`.
    pub fn failed(&self, client: IpAddr) {
        let mut table = self.lock();
        if table.len() >= MAX_ADDRESSES {
            table.retain(|_, (since, _)| since.elapsed() < WINDOW);
        }
        let entry = table.entry(client).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        // Every change is one insert or update: a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The user name the daemon knows `name` by, if it is one.
pub fn user_name(name: &str) -> Option<UserName> {
    UserName::parse(name.trim())
}

/// The syslog ident of every line twofold-web writes.
pub const IDENT: &str = "twofold-web";
/// Failed steps one address may make per window.
const MAX_FAILURES: u32 = 20;
const WINDOW: Duration = Duration::from_secs(10 * 60);
/// Addresses tracked at most before the stale ones are dropped.
const MAX_ADDRESSES: usize = 100_000;
/// Challenges pending at once, and how long one lives (a little past the browser's timeout).
const MAX_CHALLENGES: usize = 10_000;
const CHALLENGE_LIFETIME_SECS: u64 = 120;
/// How long the browser waits for a touch.
pub const TOUCH_TIMEOUT_MS: u32 = 60_000;
