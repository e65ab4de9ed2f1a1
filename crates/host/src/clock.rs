//! The system clock, for the core's `Clock`.

use std::time::{SystemTime, UNIX_EPOCH};

use twofold_core::clock::Clock;

/// The system clock; the only one the PAM module uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        // A clock before 1970 is a broken clock; 0 makes every code wrong, which fails closed.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
