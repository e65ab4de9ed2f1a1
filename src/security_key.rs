//! The one model of a registered security key (FIDO2/U2F), shared by the console and the web:
//! a name the user chose, the credential id the key gave, its public key, the relying party it
//! was made for, and whether it must verify the user (PIN or biometrics) as well as their touch.
//!
//! What changes at every use, the signature counter and the time of last use, is login state
//! (`state::KeyUse`), kept apart from the record, like the TOTP replay guard.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::cbor::{self, Value};
use crate::key_assertion::Assertion;
use crate::prompt::Prompter;

/// The most keys one user may register, whatever the config says (the state keeps one counter
/// per key).
pub const MAX_KEYS: usize = 16;
/// CTAP2 credential ids are at most 1023 bytes.
pub const MAX_CREDENTIAL_ID: usize = 1023;
/// Key names are short labels ("yubikey-blue").
pub const MAX_NAME: usize = 32;

/// One registered key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityKey {
    /// Unique among the user's keys.
    pub name: KeyName,
    pub credential_id: Vec<u8>,
    pub public_key: PublicKey,
    /// The relying party the credential was made for: `pam://<host>` at the console (pam_u2f's
    /// choice, kept so that imported keys work), or a shared id for a fleet or a wiki.
    pub rp_id: String,
    /// Registered with `--pin`: an assertion without UV is refused.
    pub user_verification: bool,
    /// Unix time of registration (or import).
    pub added: u64,
}

/// A key's public key, by COSE algorithm.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// ES256 (COSE -7): ECDSA on P-256 with SHA-256; the SEC1 uncompressed point.
    Es256([u8; 65]),
    /// EdDSA (COSE -8) over Ed25519: the 32-byte key.
    EdDsa([u8; 32]),
}

/// A key name: 1 to `MAX_NAME` letters, digits, `-`, `_` or `.`, so that it is safe in every
/// log line, file and command line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyName(String);

/// A stable 64-bit tag of a credential id: how the state names a key without storing its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CredentialTag(pub u64);

/// Why a key, a public key or a name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not a COSE key we accept (wrong type, curve or algorithm), with the detail.
    UnsupportedKey(String),
    /// The COSE bytes are not CBOR.
    Cbor(cbor::CborError),
    /// The coordinates are not a point on the curve.
    NotOnCurve,
    /// A name with characters outside the allowed set, empty or too long.
    BadName(String),
    /// An empty or over-long credential id.
    BadCredentialId(usize),
    /// An rp_id that is empty, too long or has characters outside printable ASCII.
    BadRpId(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::UnsupportedKey(why) => write!(f, "unsupported public key: {why}"),
            KeyError::Cbor(e) => write!(f, "public key: {e}"),
            KeyError::NotOnCurve => f.write_str("public key is not a point on its curve"),
            KeyError::BadName(name) => write!(
                f,
                "key name {name:?}: use 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
            ),
            KeyError::BadCredentialId(n) => write!(
                f,
                "credential id of {n} bytes; expected 1 to {MAX_CREDENTIAL_ID}"
            ),
            KeyError::BadRpId(id) => write!(f, "rp_id {id:?} is not a usable relying party id"),
        }
    }
}

impl std::error::Error for KeyError {}

impl KeyName {
    pub fn parse(name: &str) -> Result<KeyName, KeyError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        match ok {
            true => Ok(KeyName(name.to_string())),
            false => Err(KeyError::BadName(name.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an rp_id: printable ASCII without spaces, at most 255 bytes (a DNS name, or pam_u2f's
/// `pam://host`).
pub fn check_rp_id(rp_id: &str) -> Result<(), KeyError> {
    let ok = !rp_id.is_empty() && rp_id.len() <= 255 && rp_id.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(())
        .ok_or_else(|| KeyError::BadRpId(rp_id.to_string()))
}

/// Checks a credential id's length.
pub fn check_credential_id(id: &[u8]) -> Result<(), KeyError> {
    match id.len() {
        1..=MAX_CREDENTIAL_ID => Ok(()),
        n => Err(KeyError::BadCredentialId(n)),
    }
}

impl CredentialTag {
    pub fn of(credential_id: &[u8]) -> CredentialTag {
        let digest = Sha256::new()
            .chain_update(b"twofold credential\0")
            .chain_update(credential_id)
            .finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        CredentialTag(u64::from_le_bytes(word))
    }
}

impl SecurityKey {
    pub fn tag(&self) -> CredentialTag {
        CredentialTag::of(&self.credential_id)
    }
}

/// How the core asks a plugged-in security key for an assertion. The front door speaks to the
/// device; the core picks the challenge and verifies the answer.
pub trait KeyToucher {
    /// Asks a key holding one of `keys` to sign `client_data_hash`, with the user's touch, and
    /// with user verification (PIN or biometrics) for the keys registered so, or for all of them
    /// when `all_verify`. Shows the cue through `prompter` when the key asks for the touch, and
    /// asks for a PIN through it when the key needs one.
    fn touch(
        &mut self,
        keys: &[SecurityKey],
        client_data_hash: &[u8; 32],
        all_verify: bool,
        prompter: &mut dyn Prompter,
    ) -> Result<Assertion, TouchFailure>;
}

/// A front door without a device path (or a login where keys are not tried).
pub struct NoDevice;

impl KeyToucher for NoDevice {
    fn touch(
        &mut self,
        _: &[SecurityKey],
        _: &[u8; 32],
        _: bool,
        _: &mut dyn Prompter,
    ) -> Result<Assertion, TouchFailure> {
        Err(TouchFailure::NoDevice)
    }
}

/// Why no assertion came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TouchFailure {
    /// No security key is plugged in.
    NoDevice,
    /// Keys are plugged in, and none holds one of the user's credentials.
    NotRegistered,
    /// Nobody touched the key before the deadline.
    Timeout,
    /// The key refused (the user declined, or a wrong PIN), with the detail for the log.
    Refused(String),
    /// The device failed or misbehaved, with the detail for the log.
    Failed(String),
}

impl fmt::Display for TouchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TouchFailure::NoDevice => f.write_str("no security key plugged in"),
            TouchFailure::NotRegistered => {
                f.write_str("no plugged-in key holds one of the user's credentials")
            }
            TouchFailure::Timeout => f.write_str("no touch before the deadline"),
            TouchFailure::Refused(why) => write!(f, "the key refused: {why}"),
            TouchFailure::Failed(why) => write!(f, "device error: {why}"),
        }
    }
}

// COSE key parameters (RFC 9052 §7.1, RFC 9053 §7).
const COSE_KTY: i64 = 1;
const COSE_ALG: i64 = 3;
const COSE_CRV: i64 = -1;
const COSE_X: i64 = -2;
const COSE_Y: i64 = -3;
const KTY_OKP: i64 = 1;
const KTY_EC2: i64 = 2;
const ALG_ES256: i64 = -7;
const ALG_EDDSA: i64 = -8;
const CRV_P256: i64 = 1;
const CRV_ED25519: i64 = 6;

impl PublicKey {
    /// The key from COSE_Key bytes, as makeCredential and WebAuthn registrations return it.
    pub fn from_cose(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        PublicKey::from_cose_value(&cbor::decode(bytes).map_err(KeyError::Cbor)?)
    }

    pub fn from_cose_value(key: &Value) -> Result<PublicKey, KeyError> {
        let int = |label: i64| key.get(label).and_then(Value::as_int);
        let coordinate = |label: i64, name: &str| -> Result<[u8; 32], KeyError> {
            key.get(label)
                .and_then(Value::as_bytes)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| KeyError::UnsupportedKey(format!("{name} is not 32 bytes")))
        };
        let unsupported = |what: &str| KeyError::UnsupportedKey(what.to_string());
        match (int(COSE_KTY), int(COSE_ALG), int(COSE_CRV)) {
            (Some(KTY_EC2), Some(ALG_ES256), Some(CRV_P256)) => {
                let mut point = [0u8; 65];
                point[0] = 0x04;
                point[1..33].copy_from_slice(&coordinate(COSE_X, "x")?);
                point[33..].copy_from_slice(&coordinate(COSE_Y, "y")?);
                PublicKey::es256(&point)
            }
            (Some(KTY_OKP), Some(ALG_EDDSA), Some(CRV_ED25519)) => {
                PublicKey::ed25519(&coordinate(COSE_X, "x")?)
            }
            (Some(KTY_EC2 | KTY_OKP), Some(ALG_ES256 | ALG_EDDSA), _) => {
                Err(unsupported("curve does not match the algorithm"))
            }
            (_, Some(alg), _) => Err(KeyError::UnsupportedKey(format!(
                "COSE algorithm {alg}; supported: ES256 (-7), EdDSA (-8)"
            ))),
            _ => Err(unsupported("not a COSE key")),
        }
    }

    /// An ES256 key from its SEC1 uncompressed point (65 bytes) or bare `x‖y` (64, libfido2's
    /// and pam_u2f's form), checked to be on the curve.
    pub fn es256(point: &[u8]) -> Result<PublicKey, KeyError> {
        let mut sec1 = [0u8; 65];
        match point.len() {
            65 if point[0] == 0x04 => sec1.copy_from_slice(point),
            64 => {
                sec1[0] = 0x04;
                sec1[1..].copy_from_slice(point);
            }
            n => {
                return Err(KeyError::UnsupportedKey(format!(
                    "ES256 key of {n} bytes; expected a 65-byte uncompressed point or 64-byte x||y"
                )))
            }
        }
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| KeyError::NotOnCurve)?;
        Ok(PublicKey::Es256(sec1))
    }

    /// An Ed25519 key, checked to decode to a point.
    pub fn ed25519(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let key = <[u8; 32]>::try_from(bytes).map_err(|_| {
            KeyError::UnsupportedKey(format!("Ed25519 key of {} bytes; expected 32", bytes.len()))
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| KeyError::NotOnCurve)?;
        Ok(PublicKey::EdDsa(key))
    }

    /// The COSE_Key bytes.
    pub fn to_cose(&self) -> Vec<u8> {
        let key = match self {
            PublicKey::Es256(point) => Value::int_map([
                (COSE_KTY, Value::Int(KTY_EC2)),
                (COSE_ALG, Value::Int(ALG_ES256)),
                (COSE_CRV, Value::Int(CRV_P256)),
                (COSE_X, Value::Bytes(point[1..33].to_vec())),
                (COSE_Y, Value::Bytes(point[33..].to_vec())),
            ]),
            PublicKey::EdDsa(key) => Value::int_map([
                (COSE_KTY, Value::Int(KTY_OKP)),
                (COSE_ALG, Value::Int(ALG_EDDSA)),
                (COSE_CRV, Value::Int(CRV_ED25519)),
                (COSE_X, Value::Bytes(key.to_vec())),
            ]),
        };
        cbor::encode(&key)
    }

    /// The algorithm's name in records, pam_u2f files and listings.
    pub fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::Es256(_) => "es256",
            PublicKey::EdDsa(_) => "eddsa",
        }
    }

    /// The key bytes as records keep them (SEC1 point, or the Ed25519 key).
    pub fn raw(&self) -> &[u8] {
        match self {
            PublicKey::Es256(point) => point,
            PublicKey::EdDsa(key) => key,
        }
    }

    /// The COSE algorithm number (for WebAuthn's pubKeyCredParams and listings).
    pub fn cose_algorithm(&self) -> i64 {
        match self {
            PublicKey::Es256(_) => ALG_ES256,
            PublicKey::EdDsa(_) => ALG_EDDSA,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey::{}({} bytes)",
            self.algorithm(),
            self.raw().len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The P-256 generator point: a valid public key.
    const GX: &str = "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
    const GY: &str = "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn generator() -> Vec<u8> {
        [vec![4], hex(GX), hex(GY)].concat()
    }

    #[test]
    fn es256_cose_keys_round_trip_and_bare_points_are_accepted() {
        let key = PublicKey::es256(&generator()).unwrap();
        assert_eq!(PublicKey::from_cose(&key.to_cose()).unwrap(), key);
        assert_eq!(PublicKey::es256(&generator()[1..]).unwrap(), key);
        assert_eq!(key.algorithm(), "es256");
    }

    #[test]
    fn ed25519_cose_keys_round_trip() {
        // RFC 8032 §7.1 test 1's public key.
        let raw = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let key = PublicKey::ed25519(&raw).unwrap();
        assert_eq!(PublicKey::from_cose(&key.to_cose()).unwrap(), key);
    }

    #[test]
    fn keys_off_the_curve_or_of_other_kinds_are_refused() {
        let mut off = generator();
        off[64] ^= 1;
        assert_eq!(PublicKey::es256(&off), Err(KeyError::NotOnCurve));
        assert!(PublicKey::es256(&off[..40]).is_err());
        // RS256 (-257), and ES256 on another curve (P-384 is 2).
        let rsa = Value::int_map([(1, Value::Int(3)), (3, Value::Int(-257))]);
        assert!(matches!(
            PublicKey::from_cose_value(&rsa),
            Err(KeyError::UnsupportedKey(why)) if why.contains("-257")
        ));
        let p384 = Value::int_map([
            (1, Value::Int(2)),
            (3, Value::Int(-7)),
            (-1, Value::Int(2)),
            (-2, Value::Bytes(hex(GX))),
            (-3, Value::Bytes(hex(GY))),
        ]);
        assert!(PublicKey::from_cose_value(&p384).is_err());
        assert!(matches!(
            PublicKey::from_cose(&[0xff]),
            Err(KeyError::Cbor(_))
        ));
    }

    #[test]
    fn names_are_short_plain_labels() {
        for good in ["yubikey", "blue-5C", "a.b_c", &"x".repeat(MAX_NAME)] {
            assert!(KeyName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "two words",
            "a/b",
            "ключ",
            "a\nb",
            "x:y",
            &"x".repeat(MAX_NAME + 1),
        ] {
            assert!(KeyName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credential_tags_differ_per_id() {
        assert_ne!(CredentialTag::of(b"a"), CredentialTag::of(b"b"));
        assert_eq!(CredentialTag::of(b"a"), CredentialTag::of(b"a"));
    }
}
