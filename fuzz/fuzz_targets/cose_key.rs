//! COSE keys arrive in makeCredential replies and WebAuthn registrations: parsing must return an
//! error, never panic, on any bytes, and a key that parses must survive being written back.
//!
//! Run with `cargo +nightly fuzz run cose_key` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;

use twofold_core::security_key::PublicKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = PublicKey::from_cose(data) {
        assert_eq!(PublicKey::from_cose(&key.to_cose()).as_ref(), Ok(&key));
    }
});
