//! Server-side sessions: the cookie holds only a random id (256 bits); everything else stays
//! here, in memory. A session ends when idle too long, at its absolute lifetime, at sign-out, or
//! when its id is replaced (after each factor, so that an id seen before a factor is worthless
//! after it).
//!
//! Sessions are lost when twofold-web restarts: users sign in again, nothing else is lost (the
//! records and their replay guards are the daemon's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64ct::{Base64UrlUnpadded, Encoding};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use twofold_core::enroll::Pending;
use twofold_core::login::Factor;
use twofold_core::user::UserName;

/// Where a session is in the flow.
#[derive(Clone)]
pub enum Stage {
    /// The password was right; a second factor is due.
    Password { user: UserName },
    /// The password was right, and the user is setting up TOTP with this key.
    Enrolling {
        user: UserName,
        pending: Arc<Pending>,
    },
    /// Signed in: `/auth` answers yes.
    SignedIn { user: UserName, factor: Factor },
}

impl Stage {
    pub fn user(&self) -> Option<&UserName> {
        match self {
            Stage::Password { user }
            | Stage::Enrolling { user, .. }
            | Stage::SignedIn { user, .. } => Some(user),
        }
    }
}

/// One session.
#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    pub stage: Stage,
    /// Where to go after signing in (already checked against the allowed domains).
    pub redirect: Option<String>,
    /// Backup codes just made, shown (and downloadable) until the user moves on.
    pub new_codes: Option<Arc<Vec<Zeroizing<String>>>>,
    /// The account's full name (GECOS), found at the password, for `Remote-Name`.
    pub full_name: Option<String>,
    /// The WebAuthn ceremony under way, if any: single use.
    pub challenge: Option<crate::webauthn::Pending>,
    /// When the new codes stop being shown.
    pub codes_until: Option<Instant>,
    /// What the user has, found at the password: (security keys for this site, a code).
    pub factors: (bool, bool),
    /// The new codes were made from the settings (not at the first login).
    pub regenerated: bool,
    created: Instant,
    last_seen: Instant,
    /// When the user's enrollment was last seen in the store.
    checked: Instant,
}

impl Session {
    /// Keeps new backup codes to show (and download) for a short while.
    pub fn show_codes(&mut self, codes: Vec<Zeroizing<String>>) {
        self.new_codes = Some(Arc::new(codes));
        self.codes_until = Some(Instant::now() + CODES_SHOWN_FOR);
    }

    /// The new backup codes, while they are still shown.
    pub fn shown_codes(&self) -> Option<&Arc<Vec<Zeroizing<String>>>> {
        match self.codes_until {
            Some(until) if Instant::now() < until => self.new_codes.as_ref(),
            _ => None,
        }
    }

    /// Whether `token` is this session's CSRF token (in constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// The table of sessions.
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    idle: Duration,
    lifetime: Duration,
    recheck: Duration,
}

impl Sessions {
    /// Sessions that end after `idle` unused or `lifetime` in all, and look again at the
    /// user's enrollment every `recheck`.
    pub fn new(idle: Duration, lifetime: Duration, recheck: Duration) -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            idle,
            lifetime,
            recheck,
        }
    }

    /// Starts a session at `stage`; returns its id, or `None` without randomness.
    pub fn start(&self, stage: Stage, redirect: Option<String>) -> Option<String> {
        let id = random_token()?;
        let now = Instant::now();
        let session = Session {
            csrf: random_token()?,
            stage,
            redirect,
            new_codes: None,
            full_name: None,
            challenge: None,
            codes_until: None,
            factors: (false, true),
            regenerated: false,
            created: now,
            last_seen: now,
            checked: now,
        };
        let mut table = self.lock();
        if table.len() >= MAX_SESSIONS {
            self.sweep(&mut table, now);
        }
        if table.len() >= MAX_SESSIONS {
            return None;
        }
        table.insert(id.clone(), session);
        Some(id)
    }

    /// A copy of the live session `id`, which counts as a use.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.with(id, |s| s.clone())
    }

    /// The user of the signed-in session `id`: the `/auth` question, answered without copying
    /// the session.
    pub fn signed_in_user(&self, id: &str) -> Option<UserName> {
        self.signed_in(id).map(|(user, _, _)| user)
    }

    /// The user and full name of the signed-in session `id`, and whether the enrollment is due
    /// to be looked at again (at most every `recheck`, by the one request that finds it due).
    pub fn signed_in(&self, id: &str) -> Option<(UserName, Option<String>, bool)> {
        self.with(id, |s| match &s.stage {
            Stage::SignedIn { user, .. } => {
                let due = s.checked.elapsed() >= self.recheck;
                if due {
                    s.checked = Instant::now();
                }
                Some((user.clone(), s.full_name.clone(), due))
            }
            _ => None,
        })
        .flatten()
    }

    /// Runs `change` on the live session `id`.
    pub fn with<R>(&self, id: &str, change: impl FnOnce(&mut Session) -> R) -> Option<R> {
        let now = Instant::now();
        let mut table = self.lock();
        let session = table.get_mut(id)?;
        if self.expired(session, now) {
            table.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(change(session))
    }

    /// Moves the live session `id` to a new id (and a new CSRF token), after `change`; the old
    /// id ends. The absolute lifetime still counts from the password.
    pub fn advance(&self, id: &str, change: impl FnOnce(&mut Session)) -> Option<String> {
        let new_id = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let mut table = self.lock();
        let mut session = table.remove(id)?;
        if self.expired(&session, now) {
            return None;
        }
        change(&mut session);
        session.csrf = csrf;
        session.last_seen = now;
        table.insert(new_id.clone(), session);
        Some(new_id)
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Sessions in the table, live or not yet swept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired session; run now and then.
    pub fn sweep_now(&self) {
        let now = Instant::now();
        let mut table = self.lock();
        self.sweep(&mut table, now);
    }

    fn sweep(&self, table: &mut HashMap<String, Session>, now: Instant) {
        table.retain(|_, s| !self.expired(s, now));
    }

    fn expired(&self, session: &Session, now: Instant) -> bool {
        let idle = match session.stage {
            // A half-done login does not hold a place for long.
            Stage::Password { .. } | Stage::Enrolling { .. } => self.idle.min(UNFINISHED_IDLE),
            _ => self.idle,
        };
        now.duration_since(session.last_seen) > idle
            || now.duration_since(session.created) > self.lifetime
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves a table that is still consistent (every
        // change is one insert or remove), so a poisoned lock is taken as is.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 32 random bytes as base64url: session ids, CSRF tokens.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(Base64UrlUnpadded::encode_string(&bytes))
}

/// How long new backup codes stay on their page (and downloadable) if the user does not move on.
const CODES_SHOWN_FOR: Duration = Duration::from_secs(10 * 60);
/// How long a login form or a half-done login may sit unused.
const UNFINISHED_IDLE: Duration = Duration::from_secs(10 * 60);
/// Sessions held at most (each is made by a right password); beyond, expired ones are swept,
/// then new ones are refused.
const MAX_SESSIONS: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserName {
        UserName::parse("alice").unwrap()
    }

    #[test]
    fn a_session_advances_to_a_new_id_and_the_old_one_ends() {
        let sessions = Sessions::new(
            Duration::from_secs(60),
            Duration::from_secs(600),
            Duration::from_secs(60),
        );
        let id = sessions
            .start(Stage::Password { user: alice() }, None)
            .unwrap();
        assert_eq!(id.len(), 43);
        let csrf = sessions.get(&id).unwrap().csrf;
        let new_id = sessions.advance(&id, |_| {}).unwrap();
        assert_ne!(id, new_id);
        assert!(sessions.get(&id).is_none());
        let session = sessions.get(&new_id).unwrap();
        assert_ne!(session.csrf, csrf, "a new CSRF token with the new id");
        assert!(sessions.signed_in_user(&new_id).is_none());
        let signed = sessions
            .advance(&new_id, |s| {
                s.stage = Stage::SignedIn {
                    user: alice(),
                    factor: Factor::Totp,
                }
            })
            .unwrap();
        assert_eq!(sessions.signed_in_user(&signed), Some(alice()));
        sessions.end(&signed);
        assert!(sessions.signed_in_user(&signed).is_none());
        assert!(sessions.is_empty());
    }

    #[test]
    fn idle_and_old_sessions_end() {
        let sessions = Sessions::new(
            Duration::from_millis(30),
            Duration::from_millis(80),
            Duration::from_secs(60),
        );
        let id = sessions
            .start(
                Stage::SignedIn {
                    user: alice(),
                    factor: Factor::Totp,
                },
                None,
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(sessions.get(&id).is_none(), "idle too long");
        let id = sessions
            .start(
                Stage::SignedIn {
                    user: alice(),
                    factor: Factor::Totp,
                },
                None,
            )
            .unwrap();
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(20));
            let _ = sessions.get(&id);
        }
        assert!(sessions.get(&id).is_none(), "past the absolute lifetime");
    }

    #[test]
    fn the_csrf_token_must_match_exactly() {
        let sessions = Sessions::new(
            Duration::from_secs(60),
            Duration::from_secs(600),
            Duration::from_secs(60),
        );
        let id = sessions
            .start(Stage::Password { user: alice() }, None)
            .unwrap();
        let session = sessions.get(&id).unwrap();
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&session.csrf[..42]));
        assert!(!session.csrf_matches(&format!("{}x", session.csrf)));
    }
}
