//! What every request shares: the configs, the sessions (with their WebAuthn challenges), the
//! per-address throttle, and the way to twofoldd. Every call to the daemon blocks (a unix
//! socket, PAM's delay after a wrong password), so handlers make them on tokio's blocking pool.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

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
use crate::webauthn::RelyingParty;

/// The shared state of the server.
pub struct App {
    pub config: Config,
    pub web: WebConfig,
    pub rp: RelyingParty,
    pub sessions: Sessions,
    /// Failures per client address (its /64 for IPv6).
    pub addresses: Throttle<IpAddr>,
    /// Failed passwords per user name (the second factor's throttle is the store's).
    pub passwords: Throttle<String>,
    /// Room for password checks in flight.
    pub password_checks: tokio::sync::Semaphore,
    pub store: DaemonStore,
    /// The Content-Security-Policy of every answer.
    pub csp: axum::http::HeaderValue,
    /// Binds the login form's token to its cookie (random at each start).
    login_key: Zeroizing<[u8; 32]>,
}

/// What the daemon said about a password.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    Accepted,
    Refused,
}

impl App {
    /// `None` without randomness for the login form's key.
    pub fn new(config: Config, web: WebConfig, rp: RelyingParty) -> Option<App> {
        let mut login_key = Zeroizing::new([0u8; 32]);
        getrandom::fill(login_key.as_mut()).ok()?;
        Some(App {
            login_key,
            store: DaemonStore::new(&config),
            sessions: Sessions::new(web.session_idle, web.session_lifetime, web.recheck),
            addresses: Throttle::new(MAX_ADDRESS_FAILURES),
            passwords: Throttle::new(MAX_PASSWORD_FAILURES_PER_USER),
            password_checks: tokio::sync::Semaphore::new(MAX_PASSWORD_CHECKS),
            csp: content_security_policy(&web),
            config,
            web,
            rp,
        })
    }

    /// The login form's CSRF token for the form cookie `nonce`: a keyed hash, so that no
    /// session is kept before the password and a token is worthless without its cookie.
    pub fn login_token(&self, nonce: &str) -> String {
        use base64ct::{Base64UrlUnpadded, Encoding};
        use hmac::{KeyInit, Mac};
        // HMAC takes a key of any length; 32 bytes cannot fail.
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.login_key.as_ref())
            .expect("HMAC accepts any key length");
        mac.update(b"twofold-web login form\0");
        mac.update(nonce.as_bytes());
        Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes())
    }

    /// The login form's cookie: the session cookie's name with `_login` after it.
    pub fn login_cookie_name(&self) -> String {
        format!("{}_login", self.web.cookie_name)
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

/// Only our own script, style and images; forms post to this site, and the redirect after a
/// sign-in may go to the allowed domains (browsers hold that redirect to `form-action` too).
fn content_security_policy(web: &WebConfig) -> axum::http::HeaderValue {
    let scheme = if web.origin.starts_with("http://") {
        "http"
    } else {
        "https"
    };
    let mut targets = String::from("'self'");
    for domain in &web.allowed_redirect_domains {
        targets.push_str(&format!(" {scheme}://{domain}:* {scheme}://*.{domain}:*"));
        if scheme == "http" {
            targets.push_str(&format!(" https://{domain}:* https://*.{domain}:*"));
        }
    }
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
    );
    // Domains are checked host names (config.rs), so the policy is a valid header value.
    axum::http::HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("default-src 'none'"))
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

/// Failed sign-in steps per key (a client address, a user name): after `max` within `WINDOW`,
/// the key is refused until the window has passed. An attempt is counted when it begins and
/// forgiven when it succeeds, so a burst of parallel attempts cannot all pass the check before
/// the first failure is counted. A full table refuses new keys rather than grow.
pub struct Throttle<K> {
    table: Mutex<HashMap<K, (Instant, u32)>>,
    max: u32,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    pub fn new(max: u32) -> Throttle<K> {
        Throttle {
            table: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Counts an attempt of `key`; `Err` with the seconds to wait if it is refused now.
    pub fn begin(&self, key: &K) -> Result<(), u64> {
        let mut table = self.lock();
        if !table.contains_key(key) && table.len() >= MAX_KEYS {
            table.retain(|_, (since, _)| since.elapsed() < WINDOW);
            if table.len() >= MAX_KEYS {
                return Err(WINDOW.as_secs());
            }
        }
        let entry = table.entry(key.clone()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        if entry.1 >= self.max {
            let left = WINDOW.saturating_sub(entry.0.elapsed());
            return Err(left.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Takes back the attempt of `key` that succeeded.
    pub fn forgive(&self, key: &K) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, u32)>> {
        // Every change is one insert or update: a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The throttle's key for a client: its address, or its /64 for IPv6, where one host holds a
/// whole prefix.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

/// The user name the daemon knows `name` by, if it is one.
pub fn user_name(name: &str) -> Option<UserName> {
    UserName::parse(name.trim())
}

/// The syslog ident of every line twofold-web writes.
pub const IDENT: &str = "twofold-web";
/// Failed steps one client address may make per window, and failed passwords per user name.
pub const MAX_ADDRESS_FAILURES: u32 = 20;
pub const MAX_PASSWORD_FAILURES_PER_USER: u32 = 10;
const WINDOW: Duration = Duration::from_secs(10 * 60);
/// Keys tracked at most; stale ones are dropped first, then new keys are refused.
const MAX_KEYS: usize = 100_000;
/// Password checks in flight at once: each may hold a twofoldd connection for PAM's delay after
/// a wrong password (2 s), and the daemon has to keep room for SSH and sudo.
const MAX_PASSWORD_CHECKS: usize = 16;
/// How long a WebAuthn challenge lives (a little past the browser's timeout).
pub const CHALLENGE_LIFETIME_SECS: u64 = 120;
/// How long the browser waits for a touch.
pub const TOUCH_TIMEOUT_MS: u32 = 60_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_count_when_they_begin_and_successes_are_forgiven() {
        let throttle = Throttle::new(3);
        let key = "alice".to_string();
        for _ in 0..3 {
            assert_eq!(throttle.begin(&key), Ok(()));
        }
        // A fourth attempt in flight is refused before any of the three has ended.
        assert!(throttle.begin(&key).is_err());
        throttle.forgive(&key);
        assert_eq!(throttle.begin(&key), Ok(()));
        assert!(throttle.begin(&"bob".to_string()).is_ok(), "keys are apart");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
