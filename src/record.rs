//! The enrolled record of one user: the TOTP key, the backup-code hashes and per-user tightening
//! of the host policy. It changes only when the user enrolls or an admin acts, never at login.
//!
//! Parsing turns hostile text into typed values or a precise error; it never panics.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::backup::{BackupCodeError, BackupCodes};
use crate::config::{self, line_of, one_line};
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
    /// Neither a TOTP key nor backup codes: nothing to log in with.
    Empty,
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
        let record = Record {
            totp,
            window,
            throttle: raw.throttle,
            backup_codes,
        };
        if record.totp.is_none() && record.backup_codes.is_empty() {
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
            RecordError::Empty => f.write_str("neither a TOTP key nor backup codes"),
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
        }
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
