//! The host config is trusted more than records, but a typo must still give an error, never a
//! panic, and every error must say where it is.
//!
//! Run with `cargo +nightly fuzz run config` from the repository root.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

use twofold_core::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new("fuzz.toml"), text) {
        Ok(_) => {}
        Err(ConfigError::Invalid { line, .. }) => assert!(line.is_some()),
        Err(other) => panic!("Config::parse returned a non-parse error: {other}"),
    }
});
