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
    let key =
        VerifyingKey::from_sec1_bytes(public_key).map_err(|_| AssertionError::BadPublicKey)?;
    let signature = Signature::from_der(der_signature).map_err(|_| AssertionError::BadSignature)?;
    let mut signed = Vec::with_capacity(authenticator_data.len() + 32);
    signed.extend_from_slice(authenticator_data);
    signed.extend_from_slice(client_data_hash);
    key.verify(&signed, &signature)
        .map_err(|_| AssertionError::BadSignature)?;
    let counter = &authenticator_data[33..37];
    Ok(Verified {
        sign_count: u32::from_be_bytes([counter[0], counter[1], counter[2], counter[3]]),
        user_verified: flags & USER_VERIFIED != 0,
    })
}
