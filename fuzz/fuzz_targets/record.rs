//! Record files are written by users (home-directory records) and read by the PAM module as root:
//! no input may panic, and a record that parses must survive being written back and re-read.
//!
//! Run with `cargo +nightly fuzz run record` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;

use twofold_core::record::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::parse(data) {
        let written = record.to_toml();
        assert_eq!(Record::parse(written.as_bytes()).as_ref(), Ok(&record));
    }
});
