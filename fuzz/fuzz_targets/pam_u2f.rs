//! pam_u2f authfiles are written by users and imported by `twofold import pam-u2f`: no text may
//! panic, and what is imported must be a credential twofold could keep.
//!
//! Run with `cargo +nightly fuzz run pam_u2f` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;

use twofold_cli::import::pam_u2f;
use twofold_core::security_key::{check_credential_id, PublicKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let found = pam_u2f::parse(text, "alice");
    for credential in &found.credentials {
        assert!(check_credential_id(&credential.credential_id).is_ok());
        let key = &credential.public_key;
        assert_eq!(PublicKey::from_cose(&key.to_cose()).as_ref(), Ok(key));
    }
    let line = found.credentials.first().map(|c| c.line);
    assert!(found.credentials.iter().all(|c| Some(c.line) == line));
    assert!(found.ignored_lines.iter().all(|&n| line.is_none_or(|l| n < l)));
});
