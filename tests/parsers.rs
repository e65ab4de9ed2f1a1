//! The parsers that read untrusted input: record and state files, the host config, PAM module
//! arguments, and what a user types (a base32 secret, a backup code, a user name).
//!
//! Properties: no input makes them panic; damage to a valid record or config (truncation, a NUL
//! byte, a flipped byte, a duplicated or unknown key, a value of the wrong type) gives a one-line
//! error that says where, or parses if the damage happened to be harmless; and what we write we
//! read back. Explicit cases pin the error texts an admin sees.

use std::fmt::Display;
use std::path::Path;
use std::time::{Duration, Instant};

use base64ct::{Base64Unpadded, Encoding};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::TestCaseError;

use twofold_core::backup::{BackupCodes, Candidate};
use twofold_core::config::{Config, ConfigError, ModuleArgs};
use twofold_core::record::{Record, RecordError, UserThrottle, MAX_RECORD_BYTES};
use twofold_core::security_key::{CredentialTag, MAX_KEYS};
use twofold_core::state::{
    Failure, KeyUse, Origin, OriginLock, State, MAX_FAILURES, ORIGINS_BEFORE_GLOBAL_LOCK,
};
use twofold_core::totp::{Algorithm, Digits, Secret, TotpKey};
use twofold_core::user::UserName;
use twofold_host::state_file::{self, Slotted, StateError, FILE_SIZE, SLOT_SIZE};
use twofold_tests::files::TempDir;

// ---- Arbitrary input never panics.

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn record_parse_never_panics_on_bytes(bytes in vec(any::<u8>(), 0..1024)) {
        if let Err(e) = Record::parse(&bytes) {
            assert_record_error_is_clear(&e, &bytes)?;
        }
    }

    #[test]
    fn record_parse_never_panics_on_toml_like_text(text in toml_like()) {
        if let Err(e) = Record::parse(text.as_bytes()) {
            assert_record_error_is_clear(&e, text.as_bytes())?;
        }
    }

    #[test]
    fn record_parse_never_panics_on_unicode_text(text in any::<String>()) {
        if let Err(e) = Record::parse(text.as_bytes()) {
            assert_record_error_is_clear(&e, text.as_bytes())?;
        }
    }

    #[test]
    fn config_parse_never_panics_on_toml_like_text(text in toml_like()) {
        if let Err(e) = Config::parse(Path::new(CONFIG_PATH), &text) {
            assert_config_error_names_a_line(&e, &text)?;
        }
    }

    #[test]
    fn config_parse_never_panics_on_unicode_text(text in any::<String>()) {
        if let Err(e) = Config::parse(Path::new(CONFIG_PATH), &text) {
            assert_config_error_names_a_line(&e, &text)?;
        }
    }

    #[test]
    fn state_decode_never_panics(bytes in vec(any::<u8>(), 0..(2 * FILE_SIZE))) {
        match state_file::decode(&bytes) {
            Ok(state) => prop_assert!(bytes.is_empty() && state == Slotted::default()),
            Err(StateError::BadSize(n)) => prop_assert_eq!(n, bytes.len() as u64),
            // An old layout's file, one being upgraded (grown part way), or a current one.
            Err(StateError::NoValidSlot) => {
                prop_assert!((state_file::LEGACY_FILE_SIZE..=FILE_SIZE).contains(&bytes.len()))
            }
        }
    }

    #[test]
    fn state_decode_never_panics_on_full_size_junk(bytes in vec(any::<u8>(), FILE_SIZE)) {
        // Random bytes cannot carry a valid checksum (the magic alone is 2^-64).
        prop_assert_eq!(state_file::decode(&bytes), Err(StateError::NoValidSlot));
        prop_assert_eq!(
            state_file::decode(&bytes[..state_file::LEGACY_FILE_SIZE]),
            Err(StateError::NoValidSlot)
        );
    }

    #[test]
    fn module_args_parse_never_panics(args in vec(MODULE_ARG_LIKE, 0..6)) {
        if let Err(e) = ModuleArgs::parse(&args) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn secret_from_base32_never_panics(text in prop_oneof![any::<String>(), BASE32_LIKE]) {
        if let Ok(secret) = Secret::from_base32(&text) {
            prop_assert!((10..=64).contains(&secret.as_bytes().len()));
        }
    }

    #[test]
    fn candidate_parse_accepts_only_code_shapes(text in prop_oneof![any::<String>(), CODE_LIKE]) {
        let squeezed: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let shaped = (squeezed.len() == 10
            && squeezed.chars().all(|c| CODE_ALPHABET.contains(c.to_ascii_lowercase())))
            || (squeezed.len() == 8 && squeezed.bytes().all(|b| b.is_ascii_digit()));
        prop_assert_eq!(Candidate::parse(&text).is_some(), shaped, "{:?}", text);
    }

    #[test]
    fn user_name_parse_accepts_only_path_safe_names(
        name in prop_oneof![any::<String>(), "[-.a-z0-9_/: \n]{0,12}"],
    ) {
        if let Some(user) = UserName::parse(&name) {
            prop_assert_eq!(user.as_str(), name.as_str());
            prop_assert!((1..=256).contains(&name.len()));
            prop_assert!(!name.starts_with('.') && !name.starts_with('-'));
            let unsafe_char = |c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control();
            prop_assert!(!name.contains(unsafe_char), "{:?}", name);
        }
    }
}

// ---- Damage to a valid file gives a precise error, or a valid parse.

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn damaged_record_gives_a_one_line_error_or_parses(mutation in mutation()) {
        let bytes = mutation.apply(VALID_RECORD);
        match Record::parse(&bytes) {
            Ok(_) => prop_assert!(mutation.may_be_harmless(), "{:?} was accepted", mutation),
            Err(e) => {
                assert_record_error_is_clear(&e, &bytes)?;
                mutation.assert_named(&e.to_string())?;
            }
        }
    }

    #[test]
    fn damaged_config_gives_a_one_line_error_with_path_and_line_or_parses(mutation in mutation()) {
        let bytes = mutation.apply(VALID_CONFIG);
        let text = String::from_utf8_lossy(&bytes);
        match Config::parse(Path::new(CONFIG_PATH), &text) {
            Ok(_) => prop_assert!(mutation.may_be_harmless(), "{:?} was accepted", mutation),
            Err(e) => {
                assert_config_error_names_a_line(&e, &text)?;
                mutation.assert_named(&e.to_string())?;
            }
        }
    }

    #[test]
    fn damaged_state_file_falls_back_or_is_refused(
        states in (state(), state()),
        at in 0..FILE_SIZE,
        mask in 1u8..,
    ) {
        let (mut older, newer) = states;
        older.generation = newer.generation.wrapping_sub(1);
        let mut file = vec![0u8; FILE_SIZE];
        for s in [&older, &newer] {
            let (offset, slot) = s.encode_slot();
            let offset = usize::try_from(offset).unwrap();
            file[offset..offset + SLOT_SIZE].copy_from_slice(&slot);
        }
        file[at] ^= mask;
        let (newer_offset, _) = newer.encode_slot();
        let newer_offset = usize::try_from(newer_offset).unwrap();
        let damaged_newer = (newer_offset..newer_offset + SLOT_SIZE).contains(&at);
        let decoded = state_file::decode(&file).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // The damaged slot fails its checksum; the other one is read, whatever its generation.
        let expected = if damaged_newer { &older } else { &newer };
        prop_assert_eq!(&decoded, &trimmed(expected));
    }
}

// ---- Errors are one line, fit for syslog and for a terminal.

#[test]
fn syntax_errors_are_one_line() {
    for text in ["[0", "a = ", "version = 1\n[totp\n", "x = \"open"] {
        let err = Record::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(!err.contains('\n'), "record {text:?}: {err:?}");
        let err = config_error(text);
        assert!(!err.contains('\n'), "config {text:?}: {err:?}");
    }
}

#[test]
fn control_characters_from_the_file_are_escaped_in_errors() {
    // A key or value with a newline or an escape sequence must not forge a log line or repaint
    // a terminal when an admin reads the error.
    let texts = [
        "\"a\\nforged: line\" = 1\n",
        "\"\\u001b[2J\" = 1\n",
        "[totp]\nalgorithm = \"SHA1\\nforged: line\"\n",
    ];
    for text in texts {
        let err = config_error(text);
        assert!(
            !err.contains(|c: char| c.is_control()),
            "config {text:?}: {err:?}"
        );
        let record = format!("version = 1\n{text}");
        let err = Record::parse(record.as_bytes()).unwrap_err().to_string();
        assert!(
            !err.contains(|c: char| c.is_control()),
            "record {text:?}: {err:?}"
        );
    }
}

// ---- What we write, we read back.

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn record_round_trips_through_toml(record in record()) {
        let text = record.to_toml();
        let parsed = Record::parse(text.as_bytes());
        if record.totp.is_none() && record.backup_codes.is_empty() {
            prop_assert_eq!(parsed, Err(RecordError::Empty));
        } else {
            prop_assert_eq!(parsed, Ok(record), "{}", text.as_str());
        }
    }

    #[test]
    fn state_round_trips_through_its_slot(state in state()) {
        let (offset, slot) = state.encode_slot();
        let mut file = vec![0u8; FILE_SIZE];
        let offset = usize::try_from(offset).unwrap();
        file[offset..offset + SLOT_SIZE].copy_from_slice(&slot);
        prop_assert_eq!(state_file::decode(&file), Ok(trimmed(&state)));
    }

    #[test]
    fn secret_round_trips_through_base32(
        bytes in vec(any::<u8>(), 10..=64),
        spaced in any::<bool>(),
    ) {
        let text = Secret::from_bytes(&bytes).to_base32().to_string();
        // Apps show secrets in lowercase groups of four; both forms must read back.
        let typed = if spaced {
            text.to_lowercase()
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            text
        };
        let secret = Secret::from_base32(&typed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(secret.as_bytes(), bytes.as_slice());
    }

    #[test]
    fn known_module_args_parse_in_any_order(
        args in proptest::sample::subsequence(KNOWN_MODULE_ARGS, 0..=4).prop_shuffle(),
    ) {
        let parsed = ModuleArgs::parse(&args).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.debug, args.contains(&"debug"));
        prop_assert_eq!(parsed.forward_pass, args.contains(&"forward_pass"));
        prop_assert_eq!(parsed.nullok, args.contains(&"nullok"));
        prop_assert_eq!(parsed.config_path.is_some(), args.contains(&"config=/etc/x.toml"));
    }
}

// ---- Size limits.

#[test]
fn ten_megabyte_record_is_refused_quickly() {
    let bytes = padded(b"version = 1\n", TEN_MB);
    let started = Instant::now();
    let err = Record::parse(&bytes).unwrap_err();
    assert!(started.elapsed() < QUICKLY, "took {:?}", started.elapsed());
    assert_eq!(err, RecordError::TooLarge(TEN_MB));
    assert_eq!(
        err.to_string(),
        format!("record is {TEN_MB} bytes, larger than the {MAX_RECORD_BYTES}-byte limit")
    );
}

#[test]
fn record_at_the_size_limit_is_read_and_one_byte_more_is_not() {
    let at_limit = padded(MINIMAL_RECORD.as_bytes(), MAX_RECORD_BYTES);
    assert!(Record::parse(&at_limit).is_ok());
    let over = padded(MINIMAL_RECORD.as_bytes(), MAX_RECORD_BYTES + 1);
    assert_eq!(
        Record::parse(&over),
        Err(RecordError::TooLarge(MAX_RECORD_BYTES + 1))
    );
}

#[test]
fn ten_megabyte_config_is_refused_quickly() {
    let dir = TempDir::new("ten-megabyte-config");
    let path = dir.write("config.toml", padded(b"nullok = false\n", TEN_MB));
    let started = Instant::now();
    let err = twofold_host::config_file::load(&path).unwrap_err();
    assert!(started.elapsed() < QUICKLY, "took {:?}", started.elapsed());
    assert!(
        matches!(err, ConfigError::Invalid { line: None, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("{}: larger than 65536 bytes", path.display())
    );
}

#[test]
fn config_at_the_size_limit_is_read_and_one_byte_more_is_not() {
    let dir = TempDir::new("config-size-limit");
    let at_limit = dir.write("at.toml", padded(b"nullok = true\n", CONFIG_LIMIT));
    assert!(twofold_host::config_file::load(&at_limit).unwrap().nullok);
    let over = dir.write("over.toml", padded(b"nullok = true\n", CONFIG_LIMIT + 1));
    let err = twofold_host::config_file::load(&over)
        .unwrap_err()
        .to_string();
    assert!(err.ends_with(": larger than 65536 bytes"), "{err}");
}

#[test]
fn valid_config_file_loads() {
    let dir = TempDir::new("valid-config");
    let path = dir.write("config.toml", VALID_CONFIG.as_bytes());
    let config = twofold_host::config_file::load(&path).unwrap();
    assert_eq!(config.issuer.as_deref(), Some("example.org"));
    assert_eq!(config.throttle.lock_secs, 900);
}

// ---- Each kind of damage has a clear error.

#[test]
fn record_with_nul_byte_is_refused() {
    for bytes in [
        &b"version = 1\n\0"[..],
        b"\0version = 1\n",
        b"version = 1 # \0\n",
    ] {
        assert_eq!(Record::parse(bytes), Err(RecordError::NulByte), "{bytes:?}");
    }
    assert_eq!(RecordError::NulByte.to_string(), "contains a NUL byte");
}

#[test]
fn config_with_nul_byte_names_its_line() {
    let err = config_error("nullok = true\n\0\n");
    assert!(err.starts_with(&format!("{CONFIG_PATH}:2: ")), "{err}");
}

#[test]
fn config_file_that_is_not_utf8_is_refused() {
    let dir = TempDir::new("config-not-utf8");
    let path = dir.write("config.toml", b"issuer = \"caf\xe9\"\n");
    let err = twofold_host::config_file::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Unreadable { .. }), "{err:?}");
    let err = err.to_string();
    assert!(
        err.starts_with(&format!("{}: ", path.display())) && err.contains("UTF-8"),
        "{err}"
    );
}

#[test]
fn truncated_record_names_the_line() {
    let cut = VALID_RECORD.find("JBSW").unwrap() + 4;
    let err = Record::parse(&VALID_RECORD.as_bytes()[..cut])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("line 4: "), "{err}");
    assert!(err.contains("string"), "{err}");
    // Cut before the required keys of [totp]: the missing key is named.
    let cut = VALID_RECORD.find("algorithm").unwrap();
    let err = Record::parse(&VALID_RECORD.as_bytes()[..cut])
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `algorithm`"), "{err}");
}

#[test]
fn truncated_config_names_path_and_line() {
    let cut = VALID_CONFIG.find("/var/lib").unwrap() + 4;
    let err = config_error(&VALID_CONFIG[..cut]);
    assert!(err.starts_with(&format!("{CONFIG_PATH}:2: ")), "{err}");
    let err = config_error("[totp\n");
    assert!(err.starts_with(&format!("{CONFIG_PATH}:1: ")), "{err}");
}

#[test]
fn record_values_of_the_wrong_type_are_named() {
    #[rustfmt::skip]
    let cases = [
        ("digits = 8", "digits = \"8\"", "line 6: ", "expected i64"),
        ("period = 60", "period = 60.0", "line 7: ", "expected i64"),
        ("algorithm = \"SHA256\"", "algorithm = 256", "line 5: ", "expected a string"),
        ("algorithm = \"SHA256\"", "algorithm = \"sha256\"", "line 5: ", "\"SHA1\", \"SHA256\""),
        ("window = 2", "window = 11", "line 8: ", "0 to 10"),
        ("max_failures = 3", "max_failures = 300", "line 11: ", "1 to 20"),
        ("version = 1", "version = \"1\"", "line 1: ", "expected u32"),
    ];
    for (from, to, line, needle) in cases {
        let text = VALID_RECORD.replacen(from, to, 1);
        let err = Record::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with(line) && err.contains(needle), "{to}: {err}");
    }
}

#[test]
fn config_values_of_the_wrong_type_are_named() {
    #[rustfmt::skip]
    let cases = [
        ("nullok = false", "nullok = \"no\"", 3, "expected a boolean"),
        ("digits = 6", "digits = [6]", 7, "expected i64"),
        ("count = 10", "count = 21", 12, "backup_codes.count: expected an integer from 0 to 20"),
        ("lock_secs = 900", "lock_secs = -1", 17, "throttle.lock_secs"),
        ("issuer = \"example.org\"", "issuer = \"a:b\"", 1, "issuer: expected 1 to 32 bytes"),
        ("records = \"/var", "records = \"var", 2, "records: must be an absolute path"),
    ];
    for (from, to, line, needle) in cases {
        let err = config_error(&VALID_CONFIG.replacen(from, to, 1));
        let prefix = format!("{CONFIG_PATH}:{line}: ");
        assert!(
            err.starts_with(&prefix) && err.contains(needle),
            "{to}: {err}"
        );
    }
}

#[test]
fn unknown_keys_are_named() {
    let text = VALID_RECORD.replacen("[throttle]\n", "[throttle]\ncolour = 1\n", 1);
    let err = Record::parse(text.as_bytes()).unwrap_err().to_string();
    assert!(
        err.starts_with("line 11: ") && err.contains("unknown field `colour`"),
        "{err}"
    );
    let text = VALID_CONFIG.replacen("[totp]\n", "[totp]\nwindw = 3\n", 1);
    let err = config_error(&text);
    let prefix = format!("{CONFIG_PATH}:6: ");
    assert!(
        err.starts_with(&prefix) && err.contains("unknown field `windw`"),
        "{err}"
    );
    let err = config_error("[totps]\n");
    assert!(
        err.starts_with(&format!("{CONFIG_PATH}:1: ")) && err.contains("totps"),
        "{err}"
    );
}

#[test]
fn duplicate_keys_are_named() {
    let text = VALID_RECORD.replacen("digits = 8\n", "digits = 8\ndigits = 8\n", 1);
    let err = Record::parse(text.as_bytes()).unwrap_err().to_string();
    // toml's message does not name the key; the line does.
    assert_eq!(err, "line 7: duplicate key");
    let err = config_error("nullok = true\nnullok = true\n");
    assert_eq!(err, format!("{CONFIG_PATH}:2: duplicate key"));
}

#[test]
fn future_record_version_is_named_before_its_fields_are_checked() {
    // A record written by a newer twofold will have keys this one does not know; the admin must
    // learn that the version is the problem, not hunt for a typo.
    for text in [
        "version = 2\n[webauthn]\nkey = 1\n",
        "version = 2\n[totp]\nsecret = 5\n",
    ] {
        assert_eq!(
            Record::parse(text.as_bytes()),
            Err(RecordError::UnsupportedVersion(2)),
            "{text}"
        );
    }
}

#[test]
fn unknown_module_args_are_named() {
    let err = ModuleArgs::parse(&["nullok", "nulok"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`nulok`") && err.contains("known: "), "{err}");
    let err = ModuleArgs::parse(&["config="]).unwrap_err().to_string();
    assert_eq!(
        err,
        "option `config=` needs a value (config=/absolute/path)"
    );
    let err = ModuleArgs::parse(&["config=relative.toml"])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "config=relative.toml must be an absolute path");
}

// ---- Helpers.

/// One way of damaging a valid file.
#[derive(Clone, Debug)]
enum Mutation {
    /// Inserts `unknown_key = 1` before a line (or at the end).
    AddUnknownKey(Index),
    /// Gives a key's line another value, often of another type.
    ChangeType(Index, &'static str),
    /// Repeats a `key = value` line.
    DuplicateKey(Index),
    /// XORs one byte with a non-zero mask.
    FlipByte(Index, u8),
    InsertNul(Index),
    /// Cuts the file at any byte (or keeps it whole).
    Truncate(Index),
}

impl Mutation {
    fn apply(&self, text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let key_lines: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains(" = "))
            .collect();
        let mut out = bytes.to_vec();
        match self {
            Mutation::AddUnknownKey(at) => {
                out = with_lines(&lines, at.index(lines.len() + 1), &["unknown_key = 1\n"]);
            }
            Mutation::ChangeType(which, value) => {
                let line = *which.get(&key_lines);
                let (key, _) = lines[line].split_once(" = ").unwrap();
                let changed = format!("{key} = {value}\n");
                let mut edited = lines.clone();
                edited[line] = &changed;
                out = edited.concat().into_bytes();
            }
            Mutation::DuplicateKey(which) => {
                let line = *which.get(&key_lines);
                out = with_lines(&lines, line + 1, &[lines[line]]);
            }
            Mutation::FlipByte(at, mask) => out[at.index(bytes.len())] ^= mask,
            Mutation::InsertNul(at) => out.insert(at.index(bytes.len() + 1), 0),
            Mutation::Truncate(at) => out.truncate(at.index(bytes.len() + 1)),
        }
        out
    }

    /// Whether the damaged file may still be valid: a cut at the very end, a flipped letter in a
    /// base32 secret or a digit that stays in range, a new value of the right type.
    fn may_be_harmless(&self) -> bool {
        !matches!(
            self,
            Mutation::DuplicateKey(_) | Mutation::AddUnknownKey(_) | Mutation::InsertNul(_)
        )
    }

    /// Checks that the error names what this damage broke, where that is predictable.
    fn assert_named(&self, error: &str) -> Result<(), TestCaseError> {
        match self {
            Mutation::DuplicateKey(_) => prop_assert!(error.contains("duplicate key"), "{error}"),
            Mutation::AddUnknownKey(_) => prop_assert!(error.contains("unknown_key"), "{error}"),
            _ => {}
        }
        Ok(())
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::AddUnknownKey),
        (any::<Index>(), select(OTHER_VALUES)).prop_map(|(at, v)| Mutation::ChangeType(at, v)),
        any::<Index>().prop_map(Mutation::DuplicateKey),
        (any::<Index>(), 1u8..).prop_map(|(at, mask)| Mutation::FlipByte(at, mask)),
        any::<Index>().prop_map(Mutation::InsertNul),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Records as the CLI could write them: every field in the range the parser accepts.
fn record() -> impl Strategy<Value = Record> {
    let algorithm = select(&[Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512][..]);
    let totp = proptest::option::of((
        vec(any::<u8>(), 10..=64),
        algorithm,
        6u8..=8,
        10u32..=300,
        proptest::option::of(0u8..=10),
    ));
    let throttle = proptest::option::of((1u8..=20, 1u32..=86_400));
    // Costs within the module's caps (m up to 64 MiB, t up to 8, m*t up to four default hashes).
    let codes = (
        8u32..=19 * 1024,
        1u32..=8,
        1u32..=4,
        vec(any::<u8>(), 8..=64),
        vec(any::<[u8; 32]>(), 0..=64),
    );
    (totp, throttle, codes).prop_map(|(totp, throttle, (m, t, p, salt, hashes))| {
        let salt = Base64Unpadded::encode_string(&salt);
        let phc: Vec<String> = hashes
            .iter()
            .map(|hash| {
                let hash = Base64Unpadded::encode_string(hash);
                format!("$argon2id$v=19$m={m},t={t},p={p}${salt}${hash}")
            })
            .collect();
        let (totp, window) = match totp {
            Some((secret, algorithm, digits, period, window)) => {
                let key = TotpKey {
                    secret: Secret::from_bytes(&secret),
                    algorithm,
                    digits: Digits::new(digits).unwrap(),
                    period,
                };
                (Some(key), window)
            }
            None => (None, None),
        };
        Record {
            totp,
            window,
            throttle: throttle.map(|(max_failures, window_secs)| UserThrottle {
                max_failures,
                window_secs,
            }),
            backup_codes: BackupCodes::from_phc(&phc).unwrap(),
            keys: Vec::new(),
        }
    })
}

fn state() -> impl Strategy<Value = Slotted> {
    (
        any::<[u64; 6]>(),
        vec(any::<(u64, u64)>(), 0..=MAX_FAILURES + 5),
        vec(any::<(u64, u64)>(), 0..ORIGINS_BEFORE_GLOBAL_LOCK),
        vec(any::<(u64, u32, u64)>(), 0..=MAX_KEYS + 3),
    )
        .prop_map(|(words, failures, locks, uses)| Slotted {
            old_layout: false,
            generation: words[0],
            state: State {
                last_step: words[1],
                failures: failures
                    .into_iter()
                    .map(|(at, origin)| Failure {
                        at,
                        origin: Origin(origin),
                    })
                    .collect(),
                locked_until: words[2],
                origin_locks: locks
                    .into_iter()
                    .map(|(origin, until)| OriginLock {
                        origin: Origin(origin),
                        until,
                    })
                    .collect(),
                spent_codes: words[3],
                codes_binding: words[4],
                key_uses: uses
                    .into_iter()
                    .map(|(tag, sign_count, last_used)| KeyUse {
                        credential: CredentialTag(tag),
                        sign_count,
                        last_used,
                    })
                    .collect(),
            },
        })
}

/// `state` as read back: only the newest `MAX_FAILURES` failures and `MAX_KEYS` key uses are
/// kept.
fn trimmed(slotted: &Slotted) -> Slotted {
    let state = &slotted.state;
    let keep = state.failures.len().saturating_sub(MAX_FAILURES);
    let keep_uses = state.key_uses.len().saturating_sub(MAX_KEYS);
    Slotted {
        old_layout: slotted.old_layout,
        generation: slotted.generation,
        state: State {
            failures: state.failures[keep..].to_vec(),
            key_uses: state.key_uses[keep_uses..].to_vec(),
            ..state.clone()
        },
    }
}

/// Text made of TOML's punctuation, a few key names and awkward characters (a byte order mark,
/// a carriage return, non-ASCII), to get past the first syntax error.
fn toml_like() -> impl Strategy<Value = String> {
    vec(select(TOML_TOKENS), 0..40).prop_map(|tokens| tokens.concat())
}

/// Proptest settings: `n` cases, and no regression files written into the source tree.
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn assert_one_line(error: &impl Display) -> Result<(), TestCaseError> {
    let text = error.to_string();
    prop_assert!(!text.trim().is_empty(), "empty error");
    prop_assert!(
        !text.contains(['\n', '\r']),
        "error is not one line: {:?}",
        text
    );
    Ok(())
}

/// A record error is one line, and a line of the file that it names starts the message.
fn assert_record_error_is_clear(error: &RecordError, bytes: &[u8]) -> Result<(), TestCaseError> {
    assert_one_line(error)?;
    let shown = error.to_string();
    if let RecordError::Invalid {
        line: Some(line), ..
    } = error
    {
        prop_assert!((1..=line_count(bytes)).contains(line), "{}", shown);
        let prefix = format!("line {line}: ");
        prop_assert!(shown.starts_with(&prefix), "{}", shown);
    }
    Ok(())
}

/// A config error from `Config::parse` is one line that starts with `path:line: `.
fn assert_config_error_names_a_line(error: &ConfigError, text: &str) -> Result<(), TestCaseError> {
    assert_one_line(error)?;
    let shown = error.to_string();
    match error {
        ConfigError::Invalid {
            path,
            line: Some(line),
            ..
        } => {
            prop_assert_eq!(path, Path::new(CONFIG_PATH));
            prop_assert!(
                (1..=line_count(text.as_bytes())).contains(line),
                "{}",
                shown
            );
            let prefix = format!("{CONFIG_PATH}:{line}: ");
            prop_assert!(shown.starts_with(&prefix), "{}", shown);
        }
        _ => prop_assert!(false, "no line number: {:?}", error),
    }
    Ok(())
}

fn config_error(text: &str) -> String {
    Config::parse(Path::new(CONFIG_PATH), text)
        .unwrap_err()
        .to_string()
}

fn line_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count() + 1
}

fn with_lines(lines: &[&str], at: usize, inserted: &[&str]) -> Vec<u8> {
    let mut edited = lines.to_vec();
    edited.splice(at..at, inserted.iter().copied());
    edited.concat().into_bytes()
}

/// `head` followed by comment lines, `len` bytes in all.
fn padded(head: &[u8], len: usize) -> Vec<u8> {
    let mut bytes = head.to_vec();
    while bytes.len() < len {
        let line = (len - bytes.len()).min(64);
        bytes.extend(std::iter::repeat_n(b'#', line - 1));
        bytes.push(b'\n');
    }
    bytes
}

const CONFIG_PATH: &str = "/etc/twofold/config.toml";
const CONFIG_LIMIT: usize = 64 * 1024;
const TEN_MB: usize = 10 * 1024 * 1024;
/// Generous for a debug build on a busy machine; parsing 10 MB would take far longer.
const QUICKLY: Duration = Duration::from_secs(2);

const CODE_ALPHABET: &str = "abcdefghjkmnpqrstuvwxyz23456789";

const TOML_TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "=",
    " = ",
    "\"",
    "'",
    "\"\"\"",
    ".",
    ",",
    "{",
    "}",
    "#",
    "\n",
    "\r\n",
    " ",
    "\t",
    "0",
    "1",
    "30",
    "-",
    "+",
    "1.5",
    "1e9",
    "true",
    "false",
    "1979-05-27",
    "T07:32:00Z",
    "version",
    "totp",
    "secret",
    "algorithm",
    "digits",
    "period",
    "window",
    "throttle",
    "backup_codes",
    "hash",
    "records",
    "nullok",
    "issuer",
    "count",
    "lock_secs",
    "\\",
    "\\u00e9",
    "\\n",
    "\u{feff}",
    "\u{e9}",
    "\u{1f600}",
    "\r",
    "\0",
    "\u{7f}",
    "SHA1",
    "JBSWY3DPEHPK3PXP",
];
const BASE32_LIKE: &str = "[A-Za-z2-7 =\\-]{0,120}";
const CODE_LIKE: &str = "[a-z0-9 \\-A-Z]{6,14}";
const KNOWN_MODULE_ARGS: &[&str] = &["debug", "forward_pass", "nullok", "config=/etc/x.toml"];
const MODULE_ARG_LIKE: &str = "(config|debug|nullok|forward_pass|=|/|[a-z]{1,3}| ){0,4}";

/// Replacement values for `ChangeType`: each TOML type at least once.
const OTHER_VALUES: &[&str] = &[
    "\"text\"",
    "7",
    "-1",
    "1.5",
    "true",
    "[1, 2]",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "\"SHA512\"",
    "99999999999999999999",
];

const MINIMAL_RECORD: &str = "version = 1\n[totp]\nsecret = \"JBSWY3DPEHPK3PXP\"\n\
                              algorithm = \"SHA1\"\ndigits = 6\nperiod = 30\n";

const VALID_RECORD: &str = r#"version = 1

[totp]
secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
algorithm = "SHA256"
digits = 8
period = 60
window = 2

[throttle]
max_failures = 3
window_secs = 120

[[backup_codes]]
hash = "$argon2id$v=19$m=64,t=1,p=1$AAECAwQFBgcICQoLDA0ODw$ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"

[[backup_codes]]
hash = "$argon2id$v=19$m=64,t=1,p=1$AAECAwQFBgcICQoLDA0ODw$QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8"
"#;

const VALID_CONFIG: &str = r#"issuer = "example.org"
records = "/var/lib/twofold/{user}.toml"
nullok = false

[totp]
algorithm = "SHA1"
digits = 6
period = 30
window = 1

[backup_codes]
count = 10

[throttle]
max_failures = 5
window_secs = 300
lock_secs = 900
"#;

// ---- PAM service files (`twofold check`): any text, any include graph, terminates.

/// Lines built from the words PAM stacks are made of, so that most cases are stacks.
fn pam_line() -> impl Strategy<Value = String> {
    let kinds = select(vec![
        "auth", "-auth", "AUTH", "account", "@include", "#auth",
    ]);
    let controls = select(vec![
        "required",
        "requisite",
        "sufficient",
        "optional",
        "include",
        "substack",
        "[success=1 default=ignore]",
        "[success=done default=die]",
        "[default=2]",
        "[success=ok auth_err=ignore default=bad]",
        "[reset",
        "]",
    ]);
    let modules = select(vec![
        "pam_unix.so",
        "pam_twofold.so",
        "/x/pam_twofold.so",
        "pam_deny.so",
        "pam_permit.so",
        "pam_rootok.so",
        "a",
        "b",
        "pam_other.so",
    ]);
    let args = select(vec![
        "",
        "nullok",
        "enroll_on_login",
        "forward_pass",
        "bogus",
        "\\",
    ]);
    (kinds, controls, modules, args).prop_map(|(k, c, m, a)| format!("{k} {c} {m} {a}"))
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn pam_stack_review_terminates_without_panicking(
        service in vec(pam_line(), 0..12),
        a in vec(pam_line(), 0..8),
        b in vec(pam_line(), 0..8),
    ) {
        // Includes `a` and `b` may include each other and themselves.
        let (a, b) = (a.join("\n"), b.join("\n"));
        let read = |name: &str| match name {
            "a" => Some(a.clone()),
            "b" => Some(b.clone()),
            _ => None,
        };
        let started = Instant::now();
        let lines = twofold_cli::check::stack::twofold_lines(
            "svc",
            &service.join("\n"),
            &read,
            &|args| Ok(args.enroll_on_login),
        );
        prop_assert!(started.elapsed() < Duration::from_secs(5));
        for line in lines {
            for (_, finding) in &line.findings {
                prop_assert!(!finding.contains('\n'), "{finding}");
            }
        }
    }
}

#[test]
fn pam_stack_review_survives_arbitrary_bytes() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        let text: String = (0..512)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                char::from(b" \n\t[]=#\\-@authsuficenrqdpmx_.12"[(rng % 31) as usize])
            })
            .collect();
        let _ = twofold_cli::check::stack::twofold_lines("svc", &text, &|_| None, &|_| Ok(true));
    }
}
