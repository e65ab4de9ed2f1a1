//! The small state that changes at every login: the TOTP replay guard, recent failures, the lock,
//! and which backup codes are spent.
//!
//! How it is kept durable (the file store's two-slot file, a directory attribute) is the store's
//! business: the core sees only the values.

/// The most failure timestamps kept (and so the highest `throttle.max_failures`).
pub const MAX_FAILURES: usize = 20;

/// The mutable login state of one user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The newest TOTP time step accepted; codes at or before it are refused.
    pub last_step: u64,
    /// Unix times of recent failed codes, oldest first.
    pub failures: Vec<u64>,
    /// Unix time until which the second factor is locked; 0 when not locked.
    pub locked_until: u64,
    /// Bit i set: backup code i of the set identified by `codes_binding` is spent.
    pub spent_codes: u64,
    /// Which backup-code set `spent_codes` refers to (`BackupCodes::binding`).
    pub codes_binding: u64,
}

impl State {
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
