//! The device path to FIDO2/U2F security keys: CTAPHID framing over `/dev/hidraw*` and the CTAP2
//! and U2F commands the module and the CLI need, with libc and a few RustCrypto primitives only.
//!
//! Layers, bottom up: a [`Transport`] moves 64-byte HID reports ([`hidraw`], and in test builds a
//! unix socket); [`ctaphid`] frames messages on a channel; [`ctap2`] and [`u2f`] speak the two
//! command sets, and [`pin`] the clientPIN protocol; [`touch`] is what the front doors call.
//! Everything a device sends is hostile input (this code runs inside sshd and sudo): it is
//! refused with an error, never a panic, and no wait outlasts the caller's deadline. A PIN is
//! never logged or shown. This crate makes no login decision: it hands the assertion to the
//! core's verifier.

pub mod ctap2;
pub mod ctaphid;
pub mod hidraw;
pub mod pin;
#[cfg(feature = "test-socket")]
pub mod socket;
pub mod touch;
pub mod transport;
pub mod u2f;

mod sys;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod scripted;

pub use ctap2::{Assertion, MadeCredential};
pub use touch::{get_assertion, make_credential, TouchError};
pub use transport::Transport;

use std::time::Instant;

/// Every FIDO device this process can reach: the `/dev/hidraw*` security keys, in device-number
/// order, and in test builds the socket named by the test environment.
///
/// Nothing is opened yet: each hidraw device opens and takes its lock (`flock`, so that two
/// logins never interleave on one key) at its first use, waiting for a key busy in another
/// process until `deadline` at the latest.
pub fn devices(deadline: Instant) -> Vec<Box<dyn Transport>> {
    #[allow(unused_mut)] // Only the test-socket build appends.
    let mut found: Vec<Box<dyn Transport>> = hidraw::device_paths()
        .into_iter()
        .map(|path| Box::new(hidraw::Hidraw::new(path, deadline)) as Box<dyn Transport>)
        .collect();
    #[cfg(feature = "test-socket")]
    if let Some(device) = socket::from_environment() {
        found.push(Box::new(device));
    }
    found
}
