//! The small state that changes at every login: the TOTP replay guard, recent failures, the lock,
//! and which backup codes are spent.
//!
//! How it is kept durable (the file store's two-slot file, a directory attribute) is the store's
//! business: the core sees only the values.

use crate::security_key::{CredentialTag, MAX_KEYS};

/// The most failures kept (and so the highest `throttle.max_failures`).
pub const MAX_FAILURES: usize = 20;
/// Origins locked at once before the whole second factor locks; so the most origin locks kept is
/// one less.
pub const ORIGINS_BEFORE_GLOBAL_LOCK: usize = 3;

/// Where a login came from: the local machine (no `PAM_RHOST`) or one remote host, as a tag that
/// is stable for the host but does not name it. Failures are counted per origin, so that a
/// stranger guessing from one address locks that address, not the user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin(pub u64);

impl Origin {
    /// No remote host: the console, sudo, su.
    pub const LOCAL: Origin = Origin(0);

    /// The origin of a login from `host` (`PAM_RHOST`); an empty host is local.
    pub fn remote(host: &str) -> Origin {
        use sha2::{Digest, Sha256};
        if host.is_empty() {
            return Origin::LOCAL;
        }
        let digest = Sha256::new()
            .chain_update(b"twofold origin\0")
            .chain_update(host.as_bytes())
            .finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        // Never 0, which is LOCAL.
        Origin(u64::from_le_bytes(word) | 1)
    }
}

/// One failed code: when, and from where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub at: u64,
    pub origin: Origin,
}

/// One origin's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginLock {
    pub origin: Origin,
    pub until: u64,
}

/// The mutable login state of one user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The newest TOTP time step accepted; codes at or before it are refused.
    pub last_step: u64,
    /// Recent failed codes, oldest first.
    pub failures: Vec<Failure>,
    /// Unix time until which the second factor is locked for every origin; 0 when not locked.
    pub locked_until: u64,
    /// Origins locked on their own (at most `ORIGINS_BEFORE_GLOBAL_LOCK - 1`).
    pub origin_locks: Vec<OriginLock>,
    /// Bit i set: backup code i of the set identified by `codes_binding` is spent.
    pub spent_codes: u64,
    /// Which backup-code set `spent_codes` refers to (`BackupCodes::binding`).
    pub codes_binding: u64,
    /// The last signature counter and time of use of each security key used so far.
    pub key_uses: Vec<KeyUse>,
}

/// A security key's last use: the counter it signed with (a clone would have to repeat or go
/// below it) and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyUse {
    pub credential: CredentialTag,
    pub sign_count: u32,
    pub last_used: u64,
}

impl State {
    /// Until when logins from `origin` are locked, if they are at `now`.
    pub fn locked_for(&self, origin: Origin, now: u64) -> Option<u64> {
        let own = self
            .origin_locks
            .iter()
            .filter(|l| l.origin == origin)
            .map(|l| l.until);
        std::iter::once(self.locked_until)
            .chain(own)
            .filter(|&until| until > now)
            .max()
    }

    /// Forgets every failure and lock (an unlock, a new enrollment).
    pub fn clear_throttle(&mut self) {
        self.failures.clear();
        self.locked_until = 0;
        self.origin_locks.clear();
    }

    /// Whether backup code `index` of the set `binding` is spent. Marks for another set count as
    /// unspent: they belong to codes that were replaced.
    pub fn is_code_spent(&self, binding: u64, index: usize) -> bool {
        self.codes_binding == binding && index < 64 && self.spent_codes & (1 << index) != 0
    }

    /// Marks backup code `index` of set `binding` spent.
    pub fn spend_code(&mut self, binding: u64, index: usize) {
        if self.codes_binding != binding {
            self.codes_binding = binding;
            self.spent_codes = 0;
        }
        if index < 64 {
            self.spent_codes |= 1 << index;
        }
    }

    /// The last use of the key whose credential has `tag`, if it was used.
    pub fn key_use(&self, tag: CredentialTag) -> Option<&KeyUse> {
        self.key_uses.iter().find(|u| u.credential == tag)
    }

    /// Records that the key `tag` signed with `sign_count` at `now`. At most `MAX_KEYS` uses are
    /// kept; the oldest goes first (a key removed from the record leaves its use behind until
    /// then, which only matters if the very same credential is registered again).
    pub fn record_key_use(&mut self, tag: CredentialTag, sign_count: u32, now: u64) {
        self.key_uses.retain(|u| u.credential != tag);
        if self.key_uses.len() >= MAX_KEYS {
            if let Some(oldest) =
                (0..self.key_uses.len()).min_by_key(|&i| self.key_uses[i].last_used)
            {
                self.key_uses.remove(oldest);
            }
        }
        self.key_uses.push(KeyUse {
            credential: tag,
            sign_count,
            last_used: now,
        });
    }

    /// Forgets the uses of keys no longer in `keys` (after a removal).
    pub fn keep_key_uses(&mut self, keys: &[crate::security_key::SecurityKey]) {
        self.key_uses
            .retain(|u| keys.iter().any(|k| k.tag() == u.credential));
    }

    /// How many of `total` codes of set `binding` are unspent.
    pub fn codes_left(&self, binding: u64, total: usize) -> usize {
        (0..total)
            .filter(|&i| !self.is_code_spent(binding, i))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spent_marks_follow_their_code_set() {
        let mut state = State::default();
        state.spend_code(5, 2);
        assert!(state.is_code_spent(5, 2));
        assert!(!state.is_code_spent(6, 2));
        assert_eq!(state.codes_left(5, 4), 3);
        assert_eq!(state.codes_left(6, 4), 4);
        state.spend_code(6, 0);
        assert!(!state.is_code_spent(5, 2));
        assert_eq!(state.spent_codes, 1);
    }
}
