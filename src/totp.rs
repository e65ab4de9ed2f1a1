//! RFC 6238 time-based codes: the secret type, code generation, verification against a window
//! with a replay guard, and the `otpauth://` URI that authenticator apps scan.
//!
//! The HMAC and truncation come from totp-rs; this module adds what it leaves to callers: typed
//! parameters, the window around "now", and refusing any step at or before the last accepted one.

use std::fmt;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// The HMAC hash, fixed at enrollment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// The number of digits in a code: 6, 7 or 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digits(u8);

/// A TOTP shared secret. Zeroized on drop; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

/// Everything needed to compute a user's codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotpKey {
    pub secret: Secret,
    pub algorithm: Algorithm,
    pub digits: Digits,
    pub period: u32,
}

/// Why a secret was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretError {
    /// Not RFC 4648 base32.
    NotBase32,
    /// Fewer than 80 bits (google-authenticator's shortest) or more than 512.
    BadLength(usize),
}

impl Algorithm {
    /// The name used in configs, records and otpauth URIs.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    fn to_totp_rs(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
            Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
            Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

impl Digits {
    pub const SIX: Digits = Digits(6);

    /// Accepts 6, 7 or 8.
    pub fn new(digits: u8) -> Option<Digits> {
        (6..=8).contains(&digits).then_some(Digits(digits))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Secret {
    /// 160 random bits, as RFC 4226 recommends.
    pub fn generate() -> Result<Secret, getrandom::Error> {
        let mut bytes = Zeroizing::new(vec![0u8; 20]);
        getrandom::fill(&mut bytes)?;
        Ok(Secret(bytes))
    }

    /// Parses base32, ignoring case, spaces and padding, as apps and google-authenticator write it.
    pub fn from_base32(text: &str) -> Result<Secret, SecretError> {
        let mut cleaned = Zeroizing::new(String::with_capacity(text.len()));
        for c in text.chars() {
            match c {
                ' ' | '-' | '=' => {}
                'a'..='z' | 'A'..='Z' | '2'..='7' => cleaned.push(c.to_ascii_uppercase()),
                _ => return Err(SecretError::NotBase32),
            }
        }
        let bytes = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &cleaned)
            .ok_or(SecretError::NotBase32)?;
        let bytes = Zeroizing::new(bytes);
        if !(10..=64).contains(&bytes.len()) {
            return Err(SecretError::BadLength(bytes.len() * 8));
        }
        Ok(Secret(bytes))
    }

    /// Unpadded base32, the form apps expect.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32::encode(
            base32::Alphabet::Rfc4648 { padding: false },
            &self.0,
        ))
    }

    pub fn from_bytes(bytes: &[u8]) -> Secret {
        Secret(Zeroizing::new(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TotpKey {
    /// The code for `time_step` (seconds since the epoch divided by the period).
    pub fn code_at_step(&self, time_step: u64) -> Zeroizing<String> {
        let totp = totp_rs::Builder::new()
            .with_algorithm(self.algorithm.to_totp_rs())
            .with_digits(self.digits.get())
            .with_step_duration(1)
            .with_secret(self.secret.as_bytes())
            .build_noncompliant();
        // With a step duration of 1, totp-rs's "time" is our time step.
        let mut code = totp.generate(time_step).to_string();
        let owned = Zeroizing::new(code.clone());
        code.zeroize();
        owned
    }

    /// The time step that `unix_time` falls in.
    pub fn step_of(&self, unix_time: u64) -> u64 {
        unix_time / u64::from(self.period)
    }

    /// Finds the step whose code equals `code`, searching `window` steps either side of `now`,
    /// newest last, and only steps after `last_step`. Every candidate is compared in constant time,
    /// and the search never stops early, so timing does not reveal which step matched.
    pub fn verify(&self, code: &str, now: u64, window: u8, last_step: u64) -> Verdict {
        if code.len() != usize::from(self.digits.get()) || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return Verdict::Wrong;
        }
        let current = self.step_of(now);
        let first = current.saturating_sub(u64::from(window));
        let last = current.saturating_add(u64::from(window));
        let mut matched = None;
        for step in first..=last {
            let candidate = self.code_at_step(step);
            if bool::from(candidate.as_bytes().ct_eq(code.as_bytes())) {
                matched = Some(step);
            }
        }
        match matched {
            Some(step) if step > last_step => Verdict::Accepted(step),
            Some(_) => Verdict::Replayed,
            None => Verdict::Wrong,
        }
    }

    /// The `otpauth://totp/...` URI for authenticator apps.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        use std::fmt::Write as _;
        let secret = self.secret.to_base32();
        let (issuer, account) = (percent_encode(issuer), percent_encode(account));
        // Sized up front, so that no reallocation leaves an unwiped copy of the secret behind.
        let mut uri = Zeroizing::new(String::with_capacity(
            100 + 2 * issuer.len() + account.len() + secret.len(),
        ));
        let _ = write!(
            uri,
            "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm={}&digits={}&period={}",
            secret.as_str(),
            self.algorithm.name(),
            self.digits.get(),
            self.period,
        );
        uri
    }
}

/// The result of checking one code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Right code for this step, newer than any accepted before.
    Accepted(u64),
    /// A right code whose step was already used (or is older than one that was).
    Replayed,
    /// No step in the window has this code.
    Wrong,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::NotBase32 => f.write_str("the secret is not base32 (A-Z, 2-7)"),
            SecretError::BadLength(bits) => write!(
                f,
                "the secret has {bits} bits; expected 80 to 512 (160 recommended)"
            ),
        }
    }
}

impl std::error::Error for SecretError {}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Algorithm::from_name(&name).ok_or_else(|| {
            D::Error::custom(format!(
                "algorithm: expected \"SHA1\", \"SHA256\" or \"SHA512\", found {name:?}"
            ))
        })
    }
}

impl Serialize for Digits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for Digits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(d)?;
        u8::try_from(value)
            .ok()
            .and_then(Digits::new)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "digits: expected an integer from 6 to 8, found {value}"
                ))
            })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base32())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        Secret::from_base32(&text).map_err(|e| D::Error::custom(format!("secret: {e}")))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: &[u8], algorithm: Algorithm, digits: u8) -> TotpKey {
        TotpKey {
            secret: Secret::from_bytes(seed),
            algorithm,
            digits: Digits::new(digits).unwrap(),
            period: 30,
        }
    }

    const SEED20: &[u8] = b"12345678901234567890";
    const SEED32: &[u8] = b"12345678901234567890123456789012";
    const SEED64: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc4226_hotp_vectors_match() {
        // RFC 4226 Appendix D: HOTP is TOTP with the counter as the time step.
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        let k = key(SEED20, Algorithm::Sha1, 6);
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(k.code_at_step(counter as u64).as_str(), *code);
        }
    }

    #[test]
    fn rfc6238_vectors_match_for_all_algorithms() {
        // RFC 6238 Appendix B, with the 20/32/64-byte seeds of its reference code (erratum).
        let rows: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, sha1, sha256, sha512) in rows {
            for (seed, alg, code) in [
                (SEED20, Algorithm::Sha1, sha1),
                (SEED32, Algorithm::Sha256, sha256),
                (SEED64, Algorithm::Sha512, sha512),
            ] {
                let k = key(seed, alg, 8);
                assert_eq!(
                    k.code_at_step(k.step_of(time)).as_str(),
                    code,
                    "{alg:?} at {time}"
                );
            }
        }
    }

    #[test]
    fn verify_accepts_window_and_refuses_outside_it() {
        let k = key(SEED20, Algorithm::Sha1, 6);
        let now = 1_000_000_000;
        let step = k.step_of(now);
        for offset in [-1i64, 0, 1] {
            let s = (step as i64 + offset) as u64;
            assert_eq!(
                k.verify(&k.code_at_step(s), now, 1, 0),
                Verdict::Accepted(s)
            );
        }
        for offset in [-2i64, 2] {
            let s = (step as i64 + offset) as u64;
            assert_eq!(k.verify(&k.code_at_step(s), now, 1, 0), Verdict::Wrong);
        }
        assert_eq!(
            k.verify(&k.code_at_step(step - 2), now, 0, 0),
            Verdict::Wrong
        );
        assert_eq!(
            k.verify(&k.code_at_step(step), now, 0, 0),
            Verdict::Accepted(step)
        );
    }

    #[test]
    fn replayed_and_older_steps_are_refused() {
        let k = key(SEED20, Algorithm::Sha1, 6);
        let now = 1_000_000_000;
        let step = k.step_of(now);
        assert_eq!(
            k.verify(&k.code_at_step(step), now, 1, step),
            Verdict::Replayed
        );
        assert_eq!(
            k.verify(&k.code_at_step(step - 1), now, 1, step),
            Verdict::Replayed
        );
        assert_eq!(
            k.verify(&k.code_at_step(step + 1), now, 1, step),
            Verdict::Accepted(step + 1)
        );
    }

    #[test]
    fn malformed_codes_are_wrong() {
        let k = key(SEED20, Algorithm::Sha1, 6);
        for code in ["", "12345", "1234567", "12345a", "+12345", "１２３４５６"] {
            assert_eq!(
                k.verify(code, 1_000_000_000, 1, 0),
                Verdict::Wrong,
                "{code}"
            );
        }
    }

    #[test]
    fn base32_round_trips_and_rejects_junk() {
        let s = Secret::from_base32("jbsw y3dp ehpk 3pxp").unwrap();
        assert_eq!(s.to_base32().as_str(), "JBSWY3DPEHPK3PXP");
        assert_eq!(
            Secret::from_base32("JBSWY3DP!"),
            Err(SecretError::NotBase32)
        );
        assert_eq!(
            Secret::from_base32("JBSWY3DP"),
            Err(SecretError::BadLength(40))
        );
        assert_eq!(Secret::generate().unwrap().as_bytes().len(), 20);
    }

    #[test]
    fn otpauth_uri_has_every_parameter() {
        let k = key(SEED20, Algorithm::Sha256, 8);
        let uri = k.otpauth_uri("my host", "alice");
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/my%20host:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=my%20host&algorithm=SHA256&digits=8&period=30"
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::from_bytes(SEED20)),
            "Secret(<redacted>)"
        );
    }
}
