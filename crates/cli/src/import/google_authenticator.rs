//! Reading other modules' enrollment files, so users keep their phones' entries when an admin
//! moves a host to twofold.
//!
//! `~/.google_authenticator`: line 1 is the base32 secret, then option lines starting with `"`,
//! then 8-digit scratch codes. We take the secret, `TOTP_AUTH`, `STEP_SIZE`, `WINDOW_SIZE`,
//! `RATE_LIMIT`, the newest step `DISALLOW_REUSE` lists (so that a code just used there is refused
//! here; twofold never accepts a step twice) and the scratch codes. HOTP files are refused: twofold
//! has no counter-based codes.

use std::fmt;

use zeroize::Zeroizing;

use twofold_core::record::UserThrottle;
use twofold_core::totp::{Secret, SecretError};

/// The contents of a google-authenticator file that twofold keeps.
pub struct GoogleAuthenticator {
    pub secret: Secret,
    pub period: u32,
    /// Steps accepted either side of now (GA's `WINDOW_SIZE` counts codes in all: 3 means ±1).
    pub window: Option<u8>,
    pub throttle: Option<UserThrottle>,
    pub scratch_codes: Vec<Zeroizing<String>>,
    /// The newest step listed by `DISALLOW_REUSE`; `None` without that line (or with no steps).
    pub last_used_step: Option<u64>,
}

/// Why a google-authenticator file was refused; each names the line where it can.
#[derive(Debug, PartialEq, Eq)]
pub enum ImportError {
    /// An HOTP (counter-based) file: twofold only does TOTP.
    Hotp,
    /// Neither `TOTP_AUTH` nor `HOTP_COUNTER`: not a google-authenticator file we understand.
    NotTotp,
    /// The secret on line 1 is unusable.
    Secret(SecretError),
    /// A line that is neither an option nor a scratch code.
    BadLine(usize),
    /// An option with a malformed value.
    BadOption { line: usize, option: String },
    /// Empty, larger than 64 KiB, or with a NUL byte.
    NotAFile,
}

impl GoogleAuthenticator {
    pub fn parse(text: &str) -> Result<GoogleAuthenticator, ImportError> {
        if text.is_empty() || text.len() > 64 * 1024 || text.contains('\0') {
            return Err(ImportError::NotAFile);
        }
        let mut lines = text.lines();
        let secret = Secret::from_base32(lines.next().unwrap_or_default().trim())
            .map_err(ImportError::Secret)?;
        let mut parsed = GoogleAuthenticator {
            secret,
            period: 30,
            window: None,
            throttle: None,
            scratch_codes: Vec::new(),
            last_used_step: None,
        };
        let mut totp = false;
        for (index, line) in lines.enumerate() {
            let number = index + 2;
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(option) = line.strip_prefix("\" ") {
                let mut words = option.split_whitespace();
                let name = words.next().unwrap_or_default();
                let values: Vec<&str> = words.collect();
                let bad = || ImportError::BadOption {
                    line: number,
                    option: twofold_core::text::one_line(name),
                };
                let number_at = |i: usize| -> Result<u32, ImportError> {
                    values.get(i).and_then(|v| v.parse().ok()).ok_or_else(bad)
                };
                match name {
                    "TOTP_AUTH" => totp = true,
                    "HOTP_COUNTER" => return Err(ImportError::Hotp),
                    "STEP_SIZE" => {
                        parsed.period = number_at(0)
                            .ok()
                            .filter(|p| (10..=300).contains(p))
                            .ok_or_else(bad)?;
                    }
                    "WINDOW_SIZE" => {
                        let codes = number_at(0)
                            .ok()
                            .filter(|w| (1..=21).contains(w))
                            .ok_or_else(bad)?;
                        parsed.window = u8::try_from((codes - 1) / 2).ok();
                    }
                    "RATE_LIMIT" => {
                        let attempts = number_at(0)?;
                        let seconds = number_at(1)?;
                        if attempts == 0 || seconds == 0 {
                            return Err(bad());
                        }
                        parsed.throttle = Some(UserThrottle {
                            max_failures: u8::try_from(attempts.min(20)).unwrap_or(20),
                            window_secs: seconds.min(86_400),
                        });
                    }
                    "DISALLOW_REUSE" => {
                        for value in &values {
                            let step: u64 = value.parse().map_err(|_| bad())?;
                            parsed.last_used_step = parsed.last_used_step.max(Some(step));
                        }
                    }
                    // The rest are GA's own bookkeeping.
                    _ => {}
                }
            } else if line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()) {
                parsed.scratch_codes.push(Zeroizing::new(line.to_string()));
            } else {
                return Err(ImportError::BadLine(number));
            }
        }
        if !totp {
            return Err(ImportError::NotTotp);
        }
        Ok(parsed)
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Hotp => f.write_str(
                "this is an HOTP (counter-based) file; twofold supports TOTP only: enroll the user afresh",
            ),
            ImportError::NotTotp => f.write_str("no TOTP_AUTH line: not a time-based google-authenticator file"),
            ImportError::Secret(e) => write!(f, "line 1: {e}"),
            ImportError::BadLine(n) => write!(f, "line {n}: neither an option nor an 8-digit scratch code"),
            ImportError::BadOption { line, option } => write!(f, "line {line}: malformed {option}"),
            ImportError::NotAFile => f.write_str("empty, larger than 64 KiB, or contains a NUL byte"),
        }
    }
}

impl std::error::Error for ImportError {}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPICAL: &str = "JBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30 1764316800\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE 58810560\n\" TOTP_AUTH\n12345678\n87654321\n";

    #[test]
    fn typical_file_is_imported() {
        let ga = GoogleAuthenticator::parse(TYPICAL).unwrap();
        assert_eq!(ga.secret.to_base32().as_str(), "JBSWY3DPEHPK3PXP");
        assert_eq!(ga.period, 30);
        assert_eq!(ga.window, Some(8));
        assert_eq!(
            ga.throttle,
            Some(UserThrottle {
                max_failures: 3,
                window_secs: 30
            })
        );
        assert_eq!(ga.scratch_codes.len(), 2);
        assert_eq!(ga.scratch_codes[1].as_str(), "87654321");
        assert_eq!(ga.last_used_step, Some(58810560));
    }

    #[test]
    fn newest_reused_step_is_kept() {
        let ga = GoogleAuthenticator::parse(
            "JBSWY3DPEHPK3PXP\n\" DISALLOW_REUSE 58810561 58810563 58810562\n\" TOTP_AUTH\n",
        )
        .unwrap();
        assert_eq!(ga.last_used_step, Some(58810563));
        let err =
            GoogleAuthenticator::parse("JBSWY3DPEHPK3PXP\n\" DISALLOW_REUSE x\n\" TOTP_AUTH\n")
                .err()
                .unwrap();
        assert_eq!(err.to_string(), "line 2: malformed DISALLOW_REUSE");
    }

    #[test]
    fn step_size_is_kept() {
        let ga = GoogleAuthenticator::parse("JBSWY3DPEHPK3PXP\n\" STEP_SIZE 60\n\" TOTP_AUTH\n")
            .unwrap();
        assert_eq!(ga.period, 60);
        assert_eq!(ga.window, None);
    }

    #[test]
    fn hotp_files_are_refused() {
        let err = GoogleAuthenticator::parse("JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n").err();
        assert_eq!(err, Some(ImportError::Hotp));
        assert!(ImportError::Hotp.to_string().contains("HOTP"));
    }

    #[test]
    fn defects_name_their_line() {
        let cases = [
            ("!!\n\" TOTP_AUTH\n", "line 1"),
            ("JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\nhello\n", "line 3"),
            (
                "JBSWY3DPEHPK3PXP\n\" STEP_SIZE x\n\" TOTP_AUTH\n",
                "line 2: malformed STEP_SIZE",
            ),
            ("JBSWY3DPEHPK3PXP\n12345678\n", "TOTP_AUTH"),
            ("", "empty"),
        ];
        for (text, needle) in cases {
            let err = GoogleAuthenticator::parse(text).err().unwrap().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }
}
