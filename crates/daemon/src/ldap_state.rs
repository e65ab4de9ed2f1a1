//! The state's form in the directory: the single value of `twofoldState`.
//!
//! `tf1:` then standard base64 (with padding) of a versioned binary, every integer big-endian:
//!
//! ```text
//! generation u64 | last_step u64 | locked_until u64 | spent_codes u64 | codes_binding u64
//! failures: count u8, then per failure  at u64 | origin u64       (at most MAX_FAILURES, newest)
//! origin locks: count u8, then per lock origin u64 | until u64     (at most 2)
//! key uses: count u8, then per use credential u64 | sign_count u32 | last_used u64  (at most MAX_KEYS)
//! ```
//!
//! The generation is bumped by every write, so each written value is unique: the store's
//! compare-and-swap (delete the exact old value, add the new one, in one modify) cannot be fooled
//! by a state that went A, B, A. Another layout gets another prefix (`tf2:`); a value with an
//! unknown prefix, a wrong length or counts over the limits is refused, never guessed at.
//!
//! This module only encodes and decodes: it never talks to a directory.

use base64ct::{Base64, Encoding};

use twofold_core::security_key::{CredentialTag, MAX_KEYS};
use twofold_core::state::{
    Failure, KeyUse, Origin, OriginLock, State, MAX_FAILURES, ORIGINS_BEFORE_GLOBAL_LOCK,
};

/// A state and the generation of the value that holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versioned {
    /// Bumped at every write of the value; 0 only for a state never written.
    pub generation: u64,
    pub state: State,
}

impl Versioned {
    /// The attribute value.
    pub fn encode(&self) -> String {
        let state = &self.state;
        let mut out = Vec::with_capacity(256);
        for word in [
            self.generation,
            state.last_step,
            state.locked_until,
            state.spent_codes,
            state.codes_binding,
        ] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        let failures = &state.failures[state.failures.len().saturating_sub(MAX_FAILURES)..];
        // Each count is bounded by a constant far below 256.
        out.push(failures.len() as u8);
        for failure in failures {
            out.extend_from_slice(&failure.at.to_be_bytes());
            out.extend_from_slice(&failure.origin.0.to_be_bytes());
        }
        let locks = &state.origin_locks[..state.origin_locks.len().min(MAX_ORIGIN_LOCKS)];
        out.push(locks.len() as u8);
        for lock in locks {
            out.extend_from_slice(&lock.origin.0.to_be_bytes());
            out.extend_from_slice(&lock.until.to_be_bytes());
        }
        let uses = &state.key_uses[state.key_uses.len().saturating_sub(MAX_KEYS)..];
        out.push(uses.len() as u8);
        for key_use in uses {
            out.extend_from_slice(&key_use.credential.0.to_be_bytes());
            out.extend_from_slice(&key_use.sign_count.to_be_bytes());
            out.extend_from_slice(&key_use.last_used.to_be_bytes());
        }
        format!("{PREFIX}{}", Base64::encode_string(&out))
    }

    /// Parses an attribute value; the error says what is wrong with it.
    pub fn decode(value: &[u8]) -> Result<Versioned, String> {
        let text = value
            .strip_prefix(PREFIX.as_bytes())
            .ok_or("twofoldState: not a tf1: value (written by another version?)")?;
        if text.len() > MAX_VALUE_BYTES {
            return Err("twofoldState: value too long".into());
        }
        let bytes =
            Base64::decode_vec(std::str::from_utf8(text).map_err(|_| "twofoldState: not text")?)
                .map_err(|_| "twofoldState: not base64")?;
        let mut reader = Reader(&bytes);
        let short = || "twofoldState: value too short".to_string();
        let generation = reader.u64().ok_or_else(short)?;
        let last_step = reader.u64().ok_or_else(short)?;
        let locked_until = reader.u64().ok_or_else(short)?;
        let spent_codes = reader.u64().ok_or_else(short)?;
        let codes_binding = reader.u64().ok_or_else(short)?;
        let count = reader
            .count(MAX_FAILURES)
            .ok_or("twofoldState: bad failure count")?;
        let failures = (0..count)
            .map(|_| {
                Some(Failure {
                    at: reader.u64()?,
                    origin: Origin(reader.u64()?),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(short)?;
        let count = reader
            .count(MAX_ORIGIN_LOCKS)
            .ok_or("twofoldState: bad lock count")?;
        let origin_locks = (0..count)
            .map(|_| {
                Some(OriginLock {
                    origin: Origin(reader.u64()?),
                    until: reader.u64()?,
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(short)?;
        let count = reader
            .count(MAX_KEYS)
            .ok_or("twofoldState: bad key count")?;
        let key_uses = (0..count)
            .map(|_| {
                Some(KeyUse {
                    credential: CredentialTag(reader.u64()?),
                    sign_count: reader.u32()?,
                    last_used: reader.u64()?,
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(short)?;
        if !reader.0.is_empty() {
            return Err("twofoldState: trailing bytes".into());
        }
        Ok(Versioned {
            generation,
            state: State {
                last_step,
                failures,
                locked_until,
                origin_locks,
                spent_codes,
                codes_binding,
                key_uses,
            },
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_be_bytes)
    }

    fn count(&mut self, max: usize) -> Option<usize> {
        let [n] = self.take::<1>()?;
        Some(usize::from(n)).filter(|&n| n <= max)
    }
}

/// The prefix of this layout's values.
pub const PREFIX: &str = "tf1:";
const MAX_ORIGIN_LOCKS: usize = ORIGINS_BEFORE_GLOBAL_LOCK - 1;
/// Far above the largest value this layout makes (about 1.3 KB).
const MAX_VALUE_BYTES: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Versioned {
        Versioned {
            generation: 41,
            state: State {
                last_step: 59_093_131,
                failures: vec![
                    Failure {
                        at: 1,
                        origin: Origin(0),
                    },
                    Failure {
                        at: 2,
                        origin: Origin(7),
                    },
                ],
                locked_until: 99,
                origin_locks: vec![OriginLock {
                    origin: Origin(7),
                    until: 1_000,
                }],
                spent_codes: 0b101,
                codes_binding: 42,
                key_uses: vec![KeyUse {
                    credential: CredentialTag(0xfeed),
                    sign_count: 17,
                    last_used: 1_700_000_000,
                }],
            },
        }
    }

    #[test]
    fn a_state_survives_its_attribute_value() {
        let value = sample().encode();
        assert!(value.starts_with("tf1:"), "{value}");
        assert_eq!(Versioned::decode(value.as_bytes()).unwrap(), sample());
        let fresh = Versioned::default();
        assert_eq!(Versioned::decode(fresh.encode().as_bytes()).unwrap(), fresh);
    }

    #[test]
    fn the_layout_is_fixed() {
        // A fixed value: changing the layout without a new prefix breaks this test.
        let value = Versioned {
            generation: 1,
            state: State {
                last_step: 2,
                ..State::default()
            },
        }
        .encode();
        assert_eq!(
            value,
            "tf1:AAAAAAAAAAEAAAAAAAAAAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
        );
    }

    #[test]
    fn every_generation_gives_another_value() {
        let mut next = sample();
        next.generation += 1;
        assert_ne!(next.encode(), sample().encode());
    }

    #[test]
    fn damaged_values_are_refused() {
        let value = sample().encode();
        assert!(Versioned::decode(b"tf2:AAAA").is_err());
        assert!(Versioned::decode(&value.as_bytes()[..value.len() - 4]).is_err());
        assert!(Versioned::decode(b"tf1:not base64!").is_err());
        let mut bytes = Base64::decode_vec(&value[4..]).unwrap();
        bytes.push(0);
        let trailing = format!("tf1:{}", Base64::encode_string(&bytes));
        assert!(Versioned::decode(trailing.as_bytes()).is_err());
        // A failure count over the limit.
        let mut bytes = Base64::decode_vec(&value[4..]).unwrap();
        bytes[40] = 200;
        let over = format!("tf1:{}", Base64::encode_string(&bytes));
        assert!(Versioned::decode(over.as_bytes()).is_err());
    }
}
