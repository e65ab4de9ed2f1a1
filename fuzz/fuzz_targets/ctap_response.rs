//! Security-key replies are hostile input: the CTAP2 reply parsers (getInfo, makeCredential,
//! getAssertion, authenticator data), the U2F reply parser and CTAPHID reassembly must return an
//! error, never panic or hang, on any bytes.
//!
//! Run with `cargo +nightly fuzz run ctap_response` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    twofold_fido::fuzzing::ctap_response(data);
});
