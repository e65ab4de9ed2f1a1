//! The time, as the core sees it: a trait, so that tests choose the moment and the host adapter
//! supplies the system clock.

/// The time, in seconds since the Unix epoch.
pub trait Clock {
    fn now(&self) -> u64;
}
