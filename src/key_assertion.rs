//! The security-key verifier that the console and the web will share: checks a FIDO2/U2F
//! assertion (WebAuthn §7.2, CTAP2 authenticatorGetAssertion) against a stored ES256 public key.
//!
//! An assertion is the authenticator data (RP ID hash, flags, signature counter, extensions)
//! and an ECDSA P-256 signature over `authenticatorData || SHA-256(clientData)`. This module
//! checks, in this order: the length, the RP ID hash (in constant time), user presence, then
//! the signature. Whether a counter that did not grow means a cloned key is the caller's
//! decision, made under the user's lock, so it only reports the counter.

use std::fmt;

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::security_key::{PublicKey, SecurityKey};

/// Flag bit: the user touched the key (UP).
const USER_PRESENT: u8 = 0x01;
/// Flag bit: the key verified the user itself, by PIN or biometrics (UV).
const USER_VERIFIED: u8 = 0x04;
/// RP ID hash (32), flags (1), signature counter (4).
const MIN_AUTHENTICATOR_DATA: usize = 37;

/// What a verified assertion tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub sign_count: u32,
    pub user_verified: bool,
}

/// Why an assertion was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssertionError {
    /// Shorter than the fixed part of the authenticator data.
    Truncated,
    /// Made for another relying party (another host or site).
    WrongRelyingParty,
    /// No touch: the key signed without the user present.
    NoUserPresence,
    /// The stored public key is not a P-256 point.
    BadPublicKey,
    /// The signature is not DER, or does not verify.
    BadSignature,
}

impl fmt::Display for AssertionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AssertionError::Truncated => "authenticator data is truncated",
            AssertionError::WrongRelyingParty => "made for another relying party",
            AssertionError::NoUserPresence => "the key was not touched",
            AssertionError::BadPublicKey => "the stored public key is not a P-256 point",
            AssertionError::BadSignature => "the signature does not verify",
        })
    }
}

/// The RP ID hash an assertion for `rp_id` carries.
pub fn rp_id_hash(rp_id: &str) -> [u8; 32] {
    Sha256::digest(rp_id.as_bytes()).into()
}

/// Verifies one assertion made by the key whose SEC1 public key is `public_key`, for `rp_id`,
/// over the client data whose SHA-256 is `client_data_hash`.
pub fn verify_es256(
    public_key: &[u8],
    rp_id: &str,
    authenticator_data: &[u8],
    client_data_hash: &[u8; 32],
    der_signature: &[u8],
) -> Result<Verified, AssertionError> {
    let key = PublicKey::es256(public_key).map_err(|_| AssertionError::BadPublicKey)?;
    verify(
        &key,
        rp_id,
        authenticator_data,
        client_data_hash,
        der_signature,
    )
}

/// Verifies one assertion made by `public_key` for `rp_id`: the RP ID hash (in constant time),
/// user presence, then the signature (ES256 DER, or EdDSA's 64 bytes).
pub fn verify(
    public_key: &PublicKey,
    rp_id: &str,
    authenticator_data: &[u8],
    client_data_hash: &[u8; 32],
    signature: &[u8],
) -> Result<Verified, AssertionError> {
    if authenticator_data.len() < MIN_AUTHENTICATOR_DATA {
        return Err(AssertionError::Truncated);
    }
    let expected = rp_id_hash(rp_id);
    if !bool::from(authenticator_data[..32].ct_eq(&expected)) {
        return Err(AssertionError::WrongRelyingParty);
    }
    let flags = authenticator_data[32];
    if flags & USER_PRESENT == 0 {
        return Err(AssertionError::NoUserPresence);
    }
    let mut signed = Vec::with_capacity(authenticator_data.len() + 32);
    signed.extend_from_slice(authenticator_data);
    signed.extend_from_slice(client_data_hash);
    match public_key {
        PublicKey::Es256(point) => {
            let key =
                VerifyingKey::from_sec1_bytes(point).map_err(|_| AssertionError::BadPublicKey)?;
            let signature =
                Signature::from_der(signature).map_err(|_| AssertionError::BadSignature)?;
            key.verify(&signed, &signature)
                .map_err(|_| AssertionError::BadSignature)?;
        }
        PublicKey::EdDsa(key) => {
            let key = ed25519_dalek::VerifyingKey::from_bytes(key)
                .map_err(|_| AssertionError::BadPublicKey)?;
            let signature =
                <[u8; 64]>::try_from(signature).map_err(|_| AssertionError::BadSignature)?;
            // Strict: refuses small-order keys and non-canonical signatures, so one signature
            // cannot be bent into another that also verifies.
            key.verify_strict(&signed, &ed25519_dalek::Signature::from_bytes(&signature))
                .map_err(|_| AssertionError::BadSignature)?;
        }
    }
    let counter = &authenticator_data[33..37];
    Ok(Verified {
        sign_count: u32::from_be_bytes([counter[0], counter[1], counter[2], counter[3]]),
        user_verified: flags & USER_VERIFIED != 0,
    })
}

/// An assertion as a key (or a browser) returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    pub credential_id: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why an assertion was refused for a user: what `check` adds to the signature checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// The credential is not one of this user's keys.
    UnknownCredential,
    /// The signature checks failed.
    Assertion(AssertionError),
    /// The key was registered to verify the user (PIN), and the assertion has no UV.
    NoUserVerification,
    /// The counter did not move forward: the key, or a clone of it, signed something we never saw.
    CounterRegressed { stored: u32, presented: u32 },
}

impl fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRefusal::UnknownCredential => f.write_str("not one of the user's keys"),
            KeyRefusal::Assertion(e) => e.fmt(f),
            KeyRefusal::NoUserVerification => {
                f.write_str("the key requires user verification (PIN), and the assertion has none")
            }
            KeyRefusal::CounterRegressed { stored, presented } => write!(
                f,
                "signature counter {presented} is not above the stored {stored}: the key may be cloned"
            ),
        }
    }
}

/// A user's assertion, accepted: which key, and the counter to store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Index into the user's keys.
    pub key: usize,
    pub verified: Verified,
}

/// Checks `assertion` against a user's `keys`, whose last seen counters `stored_count` gives
/// (`None` for a key never used): the credential must be one of them, the assertion must verify
/// for that key's rp_id, carry UV where the key requires it, and move the counter forward (keys
/// that keep no counter report 0 every time, which is allowed only while both are 0).
pub fn check(
    keys: &[SecurityKey],
    stored_count: impl Fn(&SecurityKey) -> Option<u32>,
    assertion: &Assertion,
    client_data_hash: &[u8; 32],
) -> Result<Accepted, KeyRefusal> {
    let index = keys
        .iter()
        .position(|k| bool::from(k.credential_id.as_slice().ct_eq(&assertion.credential_id)))
        .ok_or(KeyRefusal::UnknownCredential)?;
    let key = &keys[index];
    let verified = verify(
        &key.public_key,
        &key.rp_id,
        &assertion.authenticator_data,
        client_data_hash,
        &assertion.signature,
    )
    .map_err(KeyRefusal::Assertion)?;
    if key.user_verification && !verified.user_verified {
        return Err(KeyRefusal::NoUserVerification);
    }
    if let Some(stored) = stored_count(key) {
        let presented = verified.sign_count;
        if !(presented > stored || (presented == 0 && stored == 0)) {
            return Err(KeyRefusal::CounterRegressed { stored, presented });
        }
    }
    Ok(Accepted {
        key: index,
        verified,
    })
}
