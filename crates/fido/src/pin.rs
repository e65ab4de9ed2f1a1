//! clientPIN (CTAP 2.1 §6.5), the host side: getPINRetries, getKeyAgreement, getPinToken and
//! getPinUvAuthTokenUsingPinWithPermissions over PIN/UV auth protocol 1 (§6.5.6) or 2 (§6.5.7),
//! and the pinUvAuthParam that authorizes one makeCredential or getAssertion.
//!
//! This module owns the PIN from the moment the user gave it: it hashes and encrypts it for the
//! key and must never log it, format it, store it or hand it on in the clear. The PIN token the
//! key returns lives in a zeroizing buffer and dies with the request it authorizes; the
//! ephemeral ECDH key is made for one token request and dropped with it. Replies are hostile
//! input: a key agreement that is not a P-256 point, a token of the wrong length or a retry
//! count that is no number is refused.

use std::time::Instant;

use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use aes::Aes256;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};
use twofold_core::cbor::Value;
use zeroize::Zeroizing;

use crate::ctap2::{self, CtapError, Info};
use crate::ctaphid::{Channel, CMD_CBOR};

/// A PIN/UV auth protocol (CTAP 2.1 §6.5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Protocol 1: SHA-256 of the ECDH secret, AES-256-CBC with a zero IV, HMAC cut to 16 bytes.
    One,
    /// Protocol 2: HKDF-derived HMAC and AES keys, a random IV, the full HMAC.
    Two,
}

impl Protocol {
    /// The protocol's number on the wire.
    pub fn number(self) -> u64 {
        match self {
            Protocol::One => 1,
            Protocol::Two => 2,
        }
    }

    /// The protocol to speak with a key: 2 when its getInfo lists 2, else 1 when it lists 1 or
    /// lists none (a CTAP 2.0 key that has a PIN speaks protocol 1); `None` when it lists only
    /// protocols this host does not know.
    pub fn for_key(info: &Info) -> Option<Protocol> {
        let listed = &info.pin_uv_auth_protocols;
        if listed.contains(&2) {
            Some(Protocol::Two)
        } else if listed.is_empty() || listed.contains(&1) {
            Some(Protocol::One)
        } else {
            None
        }
    }
}

/// pinUvAuthToken permission: makeCredential.
pub const PERMISSION_MAKE_CREDENTIAL: u8 = 0x01;
/// pinUvAuthToken permission: getAssertion.
pub const PERMISSION_GET_ASSERTION: u8 = 0x02;

/// A PIN token from the key, decrypted; zeroed when dropped.
pub struct PinToken {
    protocol: Protocol,
    token: Zeroizing<Vec<u8>>,
}

impl PinToken {
    /// The protocol the token was obtained with, which its pinUvAuthParam must name.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// pinUvAuthParam for a makeCredential or getAssertion over `client_data_hash`:
    /// authenticate(token, clientDataHash).
    pub fn param(&self, client_data_hash: &[u8; 32]) -> Vec<u8> {
        authenticate(self.protocol, &self.token, client_data_hash)
    }
}

impl std::fmt::Debug for PinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never in a log line or a panic message.
        f.debug_struct("PinToken")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// getPINRetries: how many PIN attempts are left before the key blocks its PIN.
pub fn retries(
    channel: &mut Channel<'_>,
    protocol: Protocol,
    deadline: Instant,
) -> Result<u32, CtapError> {
    let reply = client_pin(channel, protocol, GET_PIN_RETRIES, Vec::new(), deadline)?;
    reply
        .get(RESPONSE_PIN_RETRIES)
        .and_then(Value::as_int)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(CtapError::Malformed(
            "getPINRetries has no pinRetries count",
        ))
}

/// getKeyAgreement, then getPinUvAuthTokenUsingPinWithPermissions when `permissions` is given
/// (the permission bits and the rpId they are for), or getPinToken for a key without it.
pub fn token(
    channel: &mut Channel<'_>,
    protocol: Protocol,
    pin: &str,
    permissions: Option<(u8, &str)>,
    deadline: Instant,
) -> Result<PinToken, CtapError> {
    let reply = client_pin(channel, protocol, GET_KEY_AGREEMENT, Vec::new(), deadline)?;
    let peer = reply
        .get(RESPONSE_KEY_AGREEMENT)
        .ok_or(CtapError::Malformed("getKeyAgreement has no keyAgreement"))?;
    let (platform_key, shared) = agree(protocol, &random_scalar()?, peer)?;
    let mut pin_hash = Zeroizing::new([0u8; 16]);
    pin_hash.copy_from_slice(&Sha256::digest(pin.as_bytes())[..16]);
    let pin_hash_enc = shared.encrypt(&pin_hash[..])?;
    let mut parameters = vec![
        (PARAM_KEY_AGREEMENT, platform_key),
        (PARAM_PIN_HASH_ENC, Value::Bytes(pin_hash_enc)),
    ];
    let subcommand = match permissions {
        Some((bits, rp_id)) => {
            parameters.push((PARAM_PERMISSIONS, Value::Int(i64::from(bits))));
            parameters.push((PARAM_RP_ID, Value::Text(rp_id.into())));
            GET_TOKEN_WITH_PERMISSIONS
        }
        None => GET_PIN_TOKEN,
    };
    let reply = client_pin(channel, protocol, subcommand, parameters, deadline)?;
    let encrypted = reply
        .get(RESPONSE_PIN_UV_AUTH_TOKEN)
        .and_then(Value::as_bytes)
        .ok_or(CtapError::Malformed("the PIN token reply has no token"))?;
    let token = shared.decrypt(encrypted)?;
    let valid = match protocol {
        Protocol::One => matches!(token.len(), 16 | 32),
        Protocol::Two => token.len() == 32,
    };
    if !valid {
        return Err(CtapError::Malformed("the PIN token has the wrong length"));
    }
    Ok(PinToken { protocol, token })
}

/// The shared secret of one key agreement (CTAP 2.1 §6.5.6 and §6.5.7), zeroed when dropped.
/// Public for the cross-check against an independent implementation (tests/fido_oracle.rs).
#[doc(hidden)]
pub struct SharedSecret {
    protocol: Protocol,
    /// Protocol 1: SHA-256(Z), for both HMAC and AES; protocol 2: the HMAC key.
    hmac_key: Zeroizing<[u8; 32]>,
    /// Protocol 1: the same as `hmac_key`; protocol 2: the AES key.
    aes_key: Zeroizing<[u8; 32]>,
}

impl SharedSecret {
    /// kdf(Z): from the x-coordinate of the ECDH point.
    #[doc(hidden)]
    pub fn from_z(protocol: Protocol, z: &[u8; 32]) -> SharedSecret {
        let mut hmac_key = Zeroizing::new([0u8; 32]);
        let mut aes_key = Zeroizing::new([0u8; 32]);
        match protocol {
            Protocol::One => {
                hmac_key.copy_from_slice(&Sha256::digest(z));
                aes_key.copy_from_slice(&hmac_key[..]);
            }
            Protocol::Two => {
                let hkdf = Hkdf::<Sha256>::new(Some(&[0u8; 32][..]), z);
                // 32 bytes is far below HKDF-SHA-256's limit of 255 * 32: expand cannot fail.
                let _ = hkdf.expand(HKDF_INFO_HMAC, &mut hmac_key[..]);
                let _ = hkdf.expand(HKDF_INFO_AES, &mut aes_key[..]);
            }
        }
        SharedSecret {
            protocol,
            hmac_key,
            aes_key,
        }
    }

    /// The shared secret as the spec writes it: 32 bytes (protocol 1), or the HMAC key followed
    /// by the AES key (protocol 2).
    #[doc(hidden)]
    pub fn bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self.protocol {
            Protocol::One => self.hmac_key.to_vec(),
            Protocol::Two => [&self.hmac_key[..], &self.aes_key[..]].concat(),
        })
    }

    /// encrypt(sharedSecret, plaintext), with a fresh random IV for protocol 2.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, CtapError> {
        let mut iv = [0u8; 16];
        if self.protocol == Protocol::Two {
            getrandom::fill(&mut iv)
                .map_err(|_| CtapError::Malformed("no random numbers for the IV"))?;
        }
        self.encrypt_with_iv(&iv, plaintext)
    }

    /// encrypt with a chosen IV: protocol 2 puts `iv` before the ciphertext; protocol 1 always
    /// uses the zero IV and ignores `iv`. `plaintext` is a whole number of 16-byte blocks.
    #[doc(hidden)]
    pub fn encrypt_with_iv(&self, iv: &[u8; 16], plaintext: &[u8]) -> Result<Vec<u8>, CtapError> {
        if !plaintext.len().is_multiple_of(BLOCK) {
            return Err(CtapError::Malformed(
                "a PIN protocol plaintext is not whole blocks",
            ));
        }
        let iv = match self.protocol {
            Protocol::One => [0u8; 16],
            Protocol::Two => *iv,
        };
        let mut out = match self.protocol {
            Protocol::One => Vec::with_capacity(plaintext.len()),
            Protocol::Two => iv.to_vec(),
        };
        let mut encryptor = cbc::Encryptor::<Aes256>::new(&(*self.aes_key).into(), &iv.into());
        for chunk in plaintext.chunks_exact(BLOCK) {
            let mut block = [0u8; BLOCK];
            block.copy_from_slice(chunk);
            let mut block = block.into();
            encryptor.encrypt_block(&mut block);
            out.extend_from_slice(&block);
        }
        Ok(out)
    }

    /// decrypt(sharedSecret, ciphertext): refuses what is not whole blocks (after the IV).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CtapError> {
        let (iv, body) = match self.protocol {
            Protocol::One => ([0u8; 16], ciphertext),
            Protocol::Two => {
                let (iv, body) = ciphertext
                    .split_first_chunk::<16>()
                    .ok_or(CtapError::Malformed("an encrypted value has no IV"))?;
                (*iv, body)
            }
        };
        if body.is_empty() || !body.len().is_multiple_of(BLOCK) {
            return Err(CtapError::Malformed(
                "an encrypted value is not whole AES blocks",
            ));
        }
        let mut decryptor = cbc::Decryptor::<Aes256>::new(&(*self.aes_key).into(), &iv.into());
        let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
        for chunk in body.chunks_exact(BLOCK) {
            let mut block = [0u8; BLOCK];
            block.copy_from_slice(chunk);
            let mut block = block.into();
            decryptor.decrypt_block(&mut block);
            out.extend_from_slice(&block);
            zeroize::Zeroize::zeroize(&mut block[..]);
        }
        Ok(out)
    }

    /// authenticate(sharedSecret, message), with the HMAC key.
    #[doc(hidden)]
    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        authenticate(self.protocol, &self.hmac_key[..], message)
    }
}

/// The platform's half of a key agreement: with the private scalar `scalar` (random in use,
/// fixed in the cross-check) and the key's COSE key `peer`, the platform's COSE key to send and
/// the shared secret.
#[doc(hidden)]
pub fn agree(
    protocol: Protocol,
    scalar: &Zeroizing<[u8; 32]>,
    peer: &Value,
) -> Result<(Value, SharedSecret), CtapError> {
    let peer = cose_public_key(peer)?;
    let secret = SecretKey::from_slice(&scalar[..])
        .map_err(|_| CtapError::Malformed("the ECDH scalar is out of range"))?;
    let z = secret.diffie_hellman(&peer);
    let mut x = Zeroizing::new([0u8; 32]);
    x.copy_from_slice(z.raw_secret_bytes());
    let shared = SharedSecret::from_z(protocol, &x);
    let point = secret.public_key().to_sec1_point(false);
    let (Some(px), Some(py)) = (point.x(), point.y()) else {
        // An uncompressed point of a valid public key always has both coordinates.
        return Err(CtapError::Malformed(
            "the ECDH public key has no coordinates",
        ));
    };
    let platform_key = Value::int_map([
        (COSE_KTY, Value::Int(COSE_KTY_EC2)),
        (COSE_ALG, Value::Int(COSE_ALG_ECDH_ES_HKDF_256)),
        (COSE_CRV, Value::Int(COSE_CRV_P256)),
        (COSE_X, Value::Bytes(px.to_vec())),
        (COSE_Y, Value::Bytes(py.to_vec())),
    ]);
    Ok((platform_key, shared))
}

/// authenticate(key, message): HMAC-SHA-256, cut to 16 bytes in protocol 1.
#[doc(hidden)]
pub fn authenticate(protocol: Protocol, key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(message);
    let full = mac.finalize().into_bytes();
    match protocol {
        Protocol::One => full[..16].to_vec(),
        Protocol::Two => full.to_vec(),
    }
}

/// One authenticatorClientPIN request; returns the reply's map.
fn client_pin(
    channel: &mut Channel<'_>,
    protocol: Protocol,
    subcommand: u8,
    mut parameters: Vec<(i64, Value)>,
    deadline: Instant,
) -> Result<Value, CtapError> {
    parameters.push((
        PARAM_PROTOCOL,
        Value::Int(match protocol {
            Protocol::One => 1,
            Protocol::Two => 2,
        }),
    ));
    parameters.push((PARAM_SUBCOMMAND, Value::Int(i64::from(subcommand))));
    let request = ctap2::command(CLIENT_PIN, &Value::int_map(parameters));
    let reply = channel.call(CMD_CBOR, &request, deadline, &mut |_| {})?;
    ctap2::reply_map(&reply)
}

/// The key's key-agreement key: a COSE EC2 key on P-256, a point on the curve.
fn cose_public_key(key: &Value) -> Result<PublicKey, CtapError> {
    let int = |label| key.get(label).and_then(Value::as_int);
    if int(COSE_KTY) != Some(COSE_KTY_EC2) || int(COSE_CRV) != Some(COSE_CRV_P256) {
        return Err(CtapError::Malformed(
            "the key agreement key is not an EC2 P-256 key",
        ));
    }
    let coordinate = |label| {
        key.get(label)
            .and_then(Value::as_bytes)
            .filter(|c| c.len() == 32)
            .ok_or(CtapError::Malformed(
                "a key agreement coordinate is not 32 bytes",
            ))
    };
    let sec1 = [&[0x04][..], coordinate(COSE_X)?, coordinate(COSE_Y)?].concat();
    PublicKey::from_sec1_bytes(&sec1)
        .map_err(|_| CtapError::Malformed("the key agreement key is not on P-256"))
}

/// A fresh private scalar for one key agreement.
fn random_scalar() -> Result<Zeroizing<[u8; 32]>, CtapError> {
    // A random 256-bit value is out of range (zero, or above the group order) with a chance
    // below 2^-32: a few draws are plenty.
    for _ in 0..4 {
        let mut scalar = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut scalar[..])
            .map_err(|_| CtapError::Malformed("no random numbers for the key agreement"))?;
        if SecretKey::from_slice(&scalar[..]).is_ok() {
            return Ok(scalar);
        }
    }
    Err(CtapError::Malformed(
        "the random source keeps giving invalid scalars",
    ))
}

pub(crate) const CLIENT_PIN: u8 = 0x06;

// authenticatorClientPIN subcommands (CTAP 2.1 §6.5.5).
const GET_PIN_RETRIES: u8 = 0x01;
const GET_KEY_AGREEMENT: u8 = 0x02;
const GET_PIN_TOKEN: u8 = 0x05;
const GET_TOKEN_WITH_PERMISSIONS: u8 = 0x09;

// Its request parameters and response fields.
const PARAM_PROTOCOL: i64 = 0x01;
const PARAM_SUBCOMMAND: i64 = 0x02;
const PARAM_KEY_AGREEMENT: i64 = 0x03;
const PARAM_PIN_HASH_ENC: i64 = 0x06;
const PARAM_PERMISSIONS: i64 = 0x09;
const PARAM_RP_ID: i64 = 0x0a;
const RESPONSE_KEY_AGREEMENT: i64 = 0x01;
const RESPONSE_PIN_UV_AUTH_TOKEN: i64 = 0x02;
const RESPONSE_PIN_RETRIES: i64 = 0x03;

// COSE_Key labels and values (RFC 9052, RFC 9053).
const COSE_KTY: i64 = 1;
const COSE_ALG: i64 = 3;
const COSE_CRV: i64 = -1;
const COSE_X: i64 = -2;
const COSE_Y: i64 = -3;
const COSE_KTY_EC2: i64 = 2;
const COSE_CRV_P256: i64 = 1;
/// ECDH-ES + HKDF-256, the algorithm the spec has the key agreement key name (although the
/// protocols derive their keys otherwise).
const COSE_ALG_ECDH_ES_HKDF_256: i64 = -25;

const HKDF_INFO_HMAC: &[u8] = b"CTAP2 HMAC key";
const HKDF_INFO_AES: &[u8] = b"CTAP2 AES key";
const BLOCK: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn info(protocols: &[u64]) -> Info {
        Info {
            pin_uv_auth_protocols: protocols.to_vec(),
            ..Info::default()
        }
    }

    #[test]
    fn protocol_2_is_preferred_and_1_is_the_ctap_2_0_default() {
        assert_eq!(Protocol::for_key(&info(&[1, 2])), Some(Protocol::Two));
        assert_eq!(Protocol::for_key(&info(&[1])), Some(Protocol::One));
        assert_eq!(Protocol::for_key(&info(&[])), Some(Protocol::One));
        assert_eq!(Protocol::for_key(&info(&[3])), None);
    }

    #[test]
    fn what_is_encrypted_decrypts_and_protocol_2_carries_its_iv() {
        let z = [9u8; 32];
        for protocol in [Protocol::One, Protocol::Two] {
            let secret = SharedSecret::from_z(protocol, &z);
            let plaintext = [0x5au8; 32];
            let encrypted = secret.encrypt(&plaintext).unwrap();
            let expected_length = match protocol {
                Protocol::One => 32,
                Protocol::Two => 48,
            };
            assert_eq!(encrypted.len(), expected_length);
            assert_eq!(secret.decrypt(&encrypted).unwrap()[..], plaintext);
            let mac_length = match protocol {
                Protocol::One => 16,
                Protocol::Two => 32,
            };
            assert_eq!(secret.authenticate(b"m").len(), mac_length);
        }
        let one = SharedSecret::from_z(Protocol::One, &z);
        assert_eq!(one.bytes()[..], Sha256::digest(z)[..]);
        assert_eq!(
            one.encrypt(&[1; 16]).unwrap(),
            one.encrypt(&[1; 16]).unwrap()
        );
        let two = SharedSecret::from_z(Protocol::Two, &z);
        assert_eq!(two.bytes().len(), 64);
        assert_ne!(
            two.encrypt(&[1; 16]).unwrap(),
            two.encrypt(&[1; 16]).unwrap()
        );
    }

    #[test]
    fn ciphertexts_of_broken_length_are_refused() {
        let one = SharedSecret::from_z(Protocol::One, &[1; 32]);
        let two = SharedSecret::from_z(Protocol::Two, &[1; 32]);
        for length in [0, 1, 15, 17, 31] {
            assert!(one.decrypt(&vec![0; length]).is_err(), "{length}");
        }
        for length in [0, 15, 16, 17, 31, 33] {
            assert!(two.decrypt(&vec![0; length]).is_err(), "{length}");
        }
        assert!(one.encrypt_with_iv(&[0; 16], &[0; 15]).is_err());
    }

    #[test]
    fn key_agreement_keys_that_are_no_p256_point_are_refused() {
        let scalar = Zeroizing::new([0x42; 32]);
        let key = |kty, crv, x: Vec<u8>, y: Vec<u8>| {
            Value::int_map([
                (COSE_KTY, Value::Int(kty)),
                (COSE_ALG, Value::Int(COSE_ALG_ECDH_ES_HKDF_256)),
                (COSE_CRV, Value::Int(crv)),
                (COSE_X, Value::Bytes(x)),
                (COSE_Y, Value::Bytes(y)),
            ])
        };
        for bad in [
            key(2, 1, vec![1; 32], vec![2; 32]),
            key(1, 1, vec![1; 32], vec![2; 32]),
            key(2, 2, vec![1; 32], vec![2; 32]),
            key(2, 1, vec![1; 31], vec![2; 32]),
            key(2, 1, vec![0; 32], vec![0; 32]),
            Value::Int(1),
        ] {
            assert!(agree(Protocol::Two, &scalar, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_pin_token_never_shows_in_debug_output() {
        let token = PinToken {
            protocol: Protocol::Two,
            token: Zeroizing::new(vec![0xab; 32]),
        };
        let shown = format!("{token:?}");
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
    }
}
