//! CBOR comes from security keys and browsers: decoding must return an error, never panic or
//! allocate beyond the input, on any bytes, and what decodes must survive being encoded again.
//! Decoding keeps a map's order and encoding sorts it, so the check is on the canonical bytes.
//!
//! Run with `cargo +nightly fuzz run cbor` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;

use twofold_core::cbor::{decode, decode_prefix, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok((_, rest)) = decode_prefix(data) {
        assert!(rest.len() < data.len());
        assert!(data.ends_with(rest));
    }
    if let Ok(value) = decode(data) {
        let canonical = encode(&value);
        let again = decode(&canonical).expect("canonical CBOR does not decode");
        assert_eq!(encode(&again), canonical);
    }
});
