//! The enrolled record of one user: the TOTP key, the backup-code hashes, the security keys and
//! per-user tightening of the host policy. It changes only when the user enrolls, adds or removes
//! a key, or an admin acts, never at login (key counters are state).
//!
//! Parsing turns hostile text into typed values or a precise error; it never panics.

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};

use crate::backup::{BackupCodeError, BackupCodes};
use crate::config::{self, line_of, one_line};
use crate::security_key::{self, KeyError, KeyName, PublicKey, SecurityKey, MAX_KEYS};
use crate::totp::{Algorithm, Digits, Secret, TotpKey};

/// The only record format version this build reads and writes.
pub const VERSION: u32 = 1;
/// Records are small; anything larger is refused before parsing.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// One user's enrollment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The TOTP key; `None` if the user has only backup codes.
    pub totp: Option<TotpKey>,
    /// Steps accepted either side of now, if tighter than the host's window.
    pub window: Option<u8>,
    /// Per-user failure limit, if tighter than the host's (kept from google-authenticator imports).
    pub throttle: Option<UserThrottle>,
    pub backup_codes: BackupCodes,
    /// Registered security keys, in the order added.
    pub keys: Vec<SecurityKey>,
}

/// A per-user failure limit: at most `max_failures` failed codes within `window_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserThrottle {
    #[serde(deserialize_with = "config::max_failures")]
    pub max_failures: u8,
    #[serde(deserialize_with = "config::throttle_window")]
    pub window_secs: u32,
}

/// Why a record was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Larger than `MAX_RECORD_BYTES`.
    TooLarge(usize),
    /// Not UTF-8 text (binary junk).
    NotText,
    /// A NUL byte, which no record written by twofold has.
    NulByte,
    /// Invalid TOML, an unknown key, a wrong type or a value out of range, at this line.
    Invalid {
        line: Option<usize>,
        message: String,
    },
    /// A version this build does not know.
    UnsupportedVersion(u32),
    /// The backup-code hashes are unusable.
    BackupCodes(BackupCodeError),
    /// Neither a TOTP key, backup codes nor a security key: nothing to log in with.
    Empty,
    /// A security key entry is unusable, or two share a name or credential.
    Key { index: usize, cause: KeyError },
    /// Two keys share a name or a credential id, or there are too many.
    Keys(String),
}

impl Record {
    /// Parses a record file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| RecordError::NotText)?;
        if text.contains('\0') {
            return Err(RecordError::NulByte);
        }
        let invalid = |e: toml::de::Error| RecordError::Invalid {
            line: e.span().map(|span| line_of(text, span.start)),
            message: one_line(e.message()),
        };
        let raw: RawRecord = match toml::from_str(text) {
            Ok(raw) => raw,
            // The version decides which fields exist: a record from a newer twofold fails for
            // its version, not for a field this one does not know. (Read only on failure, so a
            // login parses its record once.)
            Err(e) => {
                return Err(match toml::from_str::<VersionOnly>(text) {
                    Ok(v) if v.version != VERSION => RecordError::UnsupportedVersion(v.version),
                    _ => invalid(e),
                })
            }
        };
        if raw.version != VERSION {
            return Err(RecordError::UnsupportedVersion(raw.version));
        }
        let hashes: Vec<&str> = raw.backup_codes.iter().map(|c| c.hash.as_str()).collect();
        let backup_codes = BackupCodes::from_phc(&hashes).map_err(RecordError::BackupCodes)?;
        let (totp, window) = match raw.totp {
            Some(t) => {
                let key = TotpKey {
                    secret: t.secret,
                    algorithm: t.algorithm,
                    digits: t.digits,
                    period: t.period,
                };
                (Some(key), t.window)
            }
            None => (None, None),
        };
        let keys = raw
            .keys
            .into_iter()
            .enumerate()
            .map(|(index, key)| {
                key.parse()
                    .map_err(|cause| RecordError::Key { index, cause })
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_keys(&keys)?;
        let record = Record {
            totp,
            window,
            throttle: raw.throttle,
            backup_codes,
            keys,
        };
        if record.totp.is_none() && record.backup_codes.is_empty() && record.keys.is_empty() {
            return Err(RecordError::Empty);
        }
        Ok(record)
    }

    /// The record file's text.
    pub fn to_toml(&self) -> zeroize::Zeroizing<String> {
        let raw = RawRecord {
            version: VERSION,
            totp: self.totp.as_ref().map(|key| RawTotp {
                secret: key.secret.clone(),
                algorithm: key.algorithm,
                digits: key.digits,
                period: key.period,
                window: self.window,
            }),
            throttle: self.throttle,
            backup_codes: self
                .backup_codes
                .to_phc()
                .into_iter()
                .map(|hash| RawBackupCode { hash })
                .collect(),
            keys: self.keys.iter().map(RawKey::from).collect(),
        };
        // Serializing plain strings and integers into TOML cannot fail; an empty record is the
        // safe fallback should the serializer ever disagree.
        zeroize::Zeroizing::new(toml::to_string(&raw).unwrap_or_default())
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TooLarge(n) => {
                write!(
                    f,
                    "record is {n} bytes, larger than the {MAX_RECORD_BYTES}-byte limit"
                )
            }
            RecordError::NotText => f.write_str("not UTF-8 text"),
            RecordError::NulByte => f.write_str("contains a NUL byte"),
            RecordError::Invalid {
                line: Some(line),
                message,
            } => write!(f, "line {line}: {message}"),
            RecordError::Invalid {
                line: None,
                message,
            } => f.write_str(message),
            RecordError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "record version {v}; this twofold reads version {VERSION}"
                )
            }
            RecordError::BackupCodes(e) => e.fmt(f),
            RecordError::Empty => {
                f.write_str("neither a TOTP key, backup codes nor a security key")
            }
            RecordError::Key { index, cause } => write!(f, "key {}: {cause}", index + 1),
            RecordError::Keys(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for RecordError {}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    totp: Option<RawTotp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    throttle: Option<UserThrottle>,
    #[serde(default)]
    backup_codes: Vec<RawBackupCode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<RawKey>,
}

/// A key as the record file keeps it: binary fields in unpadded base64url.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    credential_id: String,
    /// `es256` or `eddsa`.
    algorithm: String,
    /// The SEC1 point (es256) or the 32-byte key (eddsa).
    public_key: String,
    rp_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    user_verification: bool,
    added: u64,
}

impl RawKey {
    fn parse(self) -> Result<SecurityKey, KeyError> {
        let bytes = |field: &str, text: &str| {
            Base64UrlUnpadded::decode_vec(text)
                .map_err(|_| KeyError::UnsupportedKey(format!("{field} is not base64url")))
        };
        let credential_id = bytes("credential_id", &self.credential_id)?;
        security_key::check_credential_id(&credential_id)?;
        let raw = bytes("public_key", &self.public_key)?;
        let public_key = match self.algorithm.as_str() {
            "es256" => PublicKey::es256(&raw)?,
            "eddsa" => PublicKey::ed25519(&raw)?,
            other => {
                return Err(KeyError::UnsupportedKey(format!(
                    "algorithm {other:?}; expected es256 or eddsa"
                )))
            }
        };
        security_key::check_rp_id(&self.rp_id)?;
        Ok(SecurityKey {
            name: KeyName::parse(&self.name)?,
            credential_id,
            public_key,
            rp_id: self.rp_id,
            user_verification: self.user_verification,
            added: self.added,
        })
    }
}

impl From<&SecurityKey> for RawKey {
    fn from(key: &SecurityKey) -> RawKey {
        RawKey {
            name: key.name.to_string(),
            credential_id: Base64UrlUnpadded::encode_string(&key.credential_id),
            algorithm: key.public_key.algorithm().to_string(),
            public_key: Base64UrlUnpadded::encode_string(key.public_key.raw()),
            rp_id: key.rp_id.clone(),
            user_verification: key.user_verification,
            added: key.added,
        }
    }
}

/// Names and credentials are unique per user, and there are at most `MAX_KEYS`.
pub fn check_keys(keys: &[SecurityKey]) -> Result<(), RecordError> {
    if keys.len() > MAX_KEYS {
        return Err(RecordError::Keys(format!(
            "{} keys; at most {MAX_KEYS}",
            keys.len()
        )));
    }
    for (i, key) in keys.iter().enumerate() {
        // What a key (or a browser) returned is checked here too, on every write path: a record
        // that would not parse back would lock the user out of every factor.
        security_key::check_credential_id(&key.credential_id)
            .and_then(|()| security_key::check_rp_id(&key.rp_id))
            .map_err(|e| RecordError::Keys(format!("key {}: {e}", key.name)))?;
        for other in &keys[..i] {
            if other.name == key.name {
                return Err(RecordError::Keys(format!(
                    "two keys are named {}",
                    key.name
                )));
            }
            if other.tag() == key.tag() {
                return Err(RecordError::Keys(format!(
                    "keys {} and {} have the same credential",
                    other.name, key.name
                )));
            }
        }
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTotp {
    secret: Secret,
    algorithm: Algorithm,
    digits: Digits,
    #[serde(deserialize_with = "config::period")]
    period: u32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "window"
    )]
    window: Option<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupCode {
    hash: String,
}

fn window<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    config::window(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::Cost;

    pub(crate) fn sample() -> Record {
        let codes = BackupCodes::generate(
            3,
            Cost {
                m_kib: 64,
                t: 1,
                p: 1,
            },
        )
        .unwrap();
        Record {
            totp: Some(TotpKey {
                secret: Secret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap(),
                algorithm: Algorithm::Sha1,
                digits: Digits::SIX,
                period: 30,
            }),
            window: None,
            throttle: None,
            backup_codes: codes.hashed,
            keys: vec![SecurityKey {
                name: KeyName::parse("blue").unwrap(),
                credential_id: vec![7; 40],
                public_key: PublicKey::ed25519(&[
                    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9,
                    0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02,
                    0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
                ])
                .unwrap(),
                rp_id: "pam://host".into(),
                user_verification: true,
                added: 1_700_000_000,
            }],
        }
    }

    #[test]
    fn key_defects_are_named() {
        let mut record = sample();
        record.keys.push(SecurityKey {
            credential_id: vec![8; 40],
            ..record.keys[0].clone()
        });
        let text = record.to_toml();
        assert!(Record::parse(text.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("two keys are named blue"));
        record.keys[1].name = KeyName::parse("green").unwrap();
        record.keys[1].credential_id = vec![7; 40];
        let text = record.to_toml();
        assert!(Record::parse(text.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("same credential"));
        let good = sample().to_toml();
        let bad = good.replace("algorithm = \"eddsa\"", "algorithm = \"rs256\"");
        assert!(Record::parse(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("key 1: unsupported public key"));
    }

    #[test]
    fn record_round_trips() {
        let record = sample();
        let text = record.to_toml();
        assert!(text.starts_with("version = 1\n"), "{}", text.as_str());
        assert_eq!(Record::parse(text.as_bytes()).unwrap(), record);
    }

    #[test]
    fn minimal_record_parses() {
        let text = "version = 1\n[totp]\nsecret = \"JBSWY3DPEHPK3PXP\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\n";
        let record = Record::parse(text.as_bytes()).unwrap();
        assert!(record.backup_codes.is_empty());
        assert_eq!(record.totp.unwrap().period, 30);
    }

    #[test]
    fn defects_are_named() {
        let cases: [(&[u8], &str); 7] = [
            (b"version = 2\n", "version 2"),
            (b"version = 1\n", "neither"),
            (b"version = 1\n[totp]\nsecret = \"!!\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\n", "line 3"),
            (b"version = 1\n[totp]\nsecret = \"JBSWY3DPEHPK3PXP\"\nalgorithm = \"SHA1\"\ndigits = 9\nperiod = 30\n", "6 to 8"),
            (b"version = 1\nextra = 1\n", "extra"),
            (b"version = 1\n\0", "NUL"),
            (b"\xff\xfe", "not UTF-8"),
        ];
        for (bytes, needle) in cases {
            let err = Record::parse(bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
        assert_eq!(
            Record::parse(&vec![b' '; MAX_RECORD_BYTES + 1]),
            Err(RecordError::TooLarge(MAX_RECORD_BYTES + 1))
        );
    }
}
