//! The CTAP2 commands (CTAP 2.1 §6) the module and the CLI need: authenticatorGetInfo,
//! authenticatorMakeCredential and authenticatorGetAssertion, their requests in canonical CBOR
//! and their replies parsed into typed values.
//!
//! Replies are hostile input: every field is checked for its type and length, and anything
//! missing or malformed is an error. This module checks no signature; the core's verifier does.

use std::fmt;
use std::time::Instant;

use twofold_core::cbor::{self, Value};
use twofold_core::key_assertion::rp_id_hash;

use crate::ctaphid::{Channel, HidError, Keepalive, CMD_CBOR};

/// A new credential, as `twofold keys add` stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadeCredential {
    /// The credential id the key will want back in an allow list.
    pub credential_id: Vec<u8>,
    /// The credential's public key as the key encoded it (a COSE_Key map).
    pub cose_public_key: Vec<u8>,
    /// The whole authenticator data of the attestation.
    pub auth_data: Vec<u8>,
    /// The attestation statement format ("packed", "fido-u2f", "none"...).
    pub format: String,
}

/// A signed assertion, from CTAP2 or U2F alike: the verifier checks `signature` over
/// `auth_data ‖ clientDataHash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    /// The credential that signed.
    pub credential_id: Vec<u8>,
    /// RP ID hash (32), flags (1), signature counter (4), and any extensions.
    pub auth_data: Vec<u8>,
    /// The DER-encoded ECDSA signature (or the raw EdDSA one).
    pub signature: Vec<u8>,
    /// The user handle, which keys return for resident credentials.
    pub user_handle: Option<Vec<u8>>,
}

/// What authenticatorGetInfo says about a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// "U2F_V2", "FIDO_2_0", "FIDO_2_1"...
    pub versions: Vec<String>,
    /// The key model's AAGUID.
    pub aaguid: Option<[u8; 16]>,
    /// The options the key declares.
    pub options: InfoOptions,
    /// The PIN/UV auth protocols the key supports, in its order of preference.
    pub pin_uv_auth_protocols: Vec<u64>,
    /// How many credentials one allow list may hold (absent: the key did not say).
    pub max_credential_count: Option<usize>,
}

/// The `options` map of authenticatorGetInfo; absent entries take the spec's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoOptions {
    /// `None`: no PIN support; `Some(false)`: supported, not set; `Some(true)`: set.
    pub client_pin: Option<bool>,
    /// Built-in user verification (biometrics): `None` none, `Some(false)` not configured.
    pub uv: Option<bool>,
    /// User presence (default true).
    pub up: bool,
    /// Resident keys (default false).
    pub rk: bool,
    /// getPinUvAuthTokenUsingPinWithPermissions is supported (CTAP 2.1).
    pub pin_uv_auth_token: bool,
}

impl Default for InfoOptions {
    fn default() -> Self {
        InfoOptions {
            client_pin: None,
            uv: None,
            up: true,
            rk: false,
            pin_uv_auth_token: false,
        }
    }
}

/// What authenticatorMakeCredential is asked to make.
#[derive(Clone, Copy, Debug)]
pub struct CredentialRequest<'a> {
    /// SHA-256 of the client data the attestation signs.
    pub client_data_hash: &'a [u8; 32],
    /// The relying party the credential is for.
    pub rp_id: &'a str,
    /// The user handle (opaque, at most 64 bytes).
    pub user_id: &'a [u8],
    /// The account name.
    pub user_name: &'a str,
    /// The name shown for the account.
    pub user_display_name: &'a str,
    /// Credentials already registered: a key holding one refuses.
    pub exclude: &'a [Vec<u8>],
    /// Ask for built-in user verification.
    pub uv: bool,
    /// pinUvAuthParam and its protocol, when a PIN token was obtained.
    pub pin_uv_auth: Option<(&'a [u8], u64)>,
}

/// What authenticatorGetAssertion is asked to sign.
#[derive(Clone, Copy, Debug)]
pub struct AssertionRequest<'a> {
    /// The relying party.
    pub rp_id: &'a str,
    /// SHA-256 of the client data to sign.
    pub client_data_hash: &'a [u8; 32],
    /// The credentials to try; empty asks for a resident credential.
    pub allow: &'a [Vec<u8>],
    /// Require a touch (false: a silent probe, which signs with UP clear).
    pub up: bool,
    /// Ask for built-in user verification.
    pub uv: bool,
    /// pinUvAuthParam and its protocol, when a PIN token was obtained.
    pub pin_uv_auth: Option<(&'a [u8], u64)>,
}

/// Why a CTAP2 (or U2F) command failed.
#[derive(Debug)]
pub enum CtapError {
    /// The transport or framing failed.
    Hid(HidError),
    /// The reply did not have the shape the spec gives it.
    Malformed(&'static str),
    /// The key answered with this CTAP2 status.
    Status(Status),
    /// A U2F key answered with this status word.
    U2f(u16),
}

impl fmt::Display for CtapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtapError::Hid(error) => error.fmt(f),
            CtapError::Malformed(what) => write!(f, "malformed reply from the key: {what}"),
            CtapError::Status(status) => status.fmt(f),
            CtapError::U2f(word) => write!(f, "the U2F key answered status {word:#06x}"),
        }
    }
}

impl std::error::Error for CtapError {}

impl From<HidError> for CtapError {
    fn from(error: HidError) -> Self {
        CtapError::Hid(error)
    }
}

/// A CTAP2 status code other than success (CTAP 2.1 §8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// CTAP2_ERR_CREDENTIAL_EXCLUDED: the key holds a credential of the exclude list.
    CredentialExcluded,
    /// CTAP2_ERR_KEEPALIVE_CANCEL: the request was cancelled.
    KeepaliveCancel,
    /// CTAP2_ERR_NO_CREDENTIALS: the key holds none of the credentials asked for.
    NoCredentials,
    /// CTAP2_ERR_OPERATION_DENIED: the user or the key refused.
    OperationDenied,
    /// Any other status, by its code.
    Other(u8),
    /// CTAP2_ERR_PIN_AUTH_BLOCKED: too many wrong PINs since the key was plugged in.
    PinAuthBlocked,
    /// CTAP2_ERR_PIN_AUTH_INVALID: the key refused a pinUvAuthParam.
    PinAuthInvalid,
    /// CTAP2_ERR_PIN_BLOCKED: the PIN is blocked for good; the key must be reset.
    PinBlocked,
    /// CTAP2_ERR_PIN_INVALID: a wrong PIN.
    PinInvalid,
    /// CTAP2_ERR_PIN_NOT_SET: verification was asked for, but the key has no PIN.
    PinNotSet,
    /// CTAP2_ERR_PIN_REQUIRED: the key wants its PIN first.
    PinRequired,
    /// CTAP2_ERR_UNSUPPORTED_ALGORITHM: the key can make none of the key types asked for.
    UnsupportedAlgorithm,
    /// CTAP2_ERR_USER_ACTION_TIMEOUT: nobody touched the key in time.
    UserActionTimeout,
}

impl Status {
    /// The status for a code other than 0 (success).
    pub fn from_code(code: u8) -> Self {
        match code {
            0x19 => Status::CredentialExcluded,
            0x26 => Status::UnsupportedAlgorithm,
            0x27 => Status::OperationDenied,
            0x2d => Status::KeepaliveCancel,
            0x2e => Status::NoCredentials,
            0x2f => Status::UserActionTimeout,
            0x31 => Status::PinInvalid,
            0x32 => Status::PinBlocked,
            0x33 => Status::PinAuthInvalid,
            0x34 => Status::PinAuthBlocked,
            0x35 => Status::PinNotSet,
            0x36 => Status::PinRequired,
            other => Status::Other(other),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::CredentialExcluded => "the key is already registered",
            Status::KeepaliveCancel => "the request was cancelled",
            Status::NoCredentials => "the key holds none of the credentials asked for",
            Status::OperationDenied => "the key refused the operation",
            Status::Other(code) => return write!(f, "the key answered CTAP2 status {code:#04x}"),
            Status::PinAuthBlocked => {
                "too many wrong PINs: unplug the key and plug it in again to retry"
            }
            Status::PinAuthInvalid => "the key refused the PIN token",
            Status::PinBlocked => "the key's PIN is blocked; the key must be reset",
            Status::PinInvalid => "wrong PIN",
            Status::PinNotSet => "the key has no PIN set",
            Status::PinRequired => "the key needs its PIN",
            Status::UnsupportedAlgorithm => "the key supports neither ES256 nor EdDSA",
            Status::UserActionTimeout => "the key was not touched in time",
        })
    }
}

/// authenticatorGetInfo.
pub fn get_info(channel: &mut Channel<'_>, deadline: Instant) -> Result<Info, CtapError> {
    let reply = channel.call(CMD_CBOR, &[GET_INFO], deadline, &mut |_| {})?;
    parse_info(&reply)
}

/// authenticatorMakeCredential: ES256 preferred, EdDSA accepted, never resident.
pub fn make_credential(
    channel: &mut Channel<'_>,
    request: &CredentialRequest<'_>,
    deadline: Instant,
    on_keepalive: &mut dyn FnMut(Keepalive),
) -> Result<MadeCredential, CtapError> {
    let algorithm = |alg: i64| {
        Value::text_map([
            ("alg", Value::Int(alg)),
            ("type", Value::Text(PUBLIC_KEY.into())),
        ])
    };
    let mut options = vec![("rk", Value::Bool(false))];
    if request.uv {
        options.push(("uv", Value::Bool(true)));
    }
    let mut map = vec![
        (1, Value::Bytes(request.client_data_hash.to_vec())),
        (
            2,
            Value::text_map([("id", Value::Text(request.rp_id.into()))]),
        ),
        (
            3,
            Value::text_map([
                ("id", Value::Bytes(request.user_id.to_vec())),
                ("name", Value::Text(request.user_name.into())),
                ("displayName", Value::Text(request.user_display_name.into())),
            ]),
        ),
        (
            4,
            Value::Array(vec![algorithm(ALG_ES256), algorithm(ALG_EDDSA)]),
        ),
        (7, Value::text_map(options)),
    ];
    if !request.exclude.is_empty() {
        map.push((5, descriptors(request.exclude)));
    }
    if let Some((param, protocol)) = request.pin_uv_auth {
        map.push((8, Value::Bytes(param.to_vec())));
        map.push((9, Value::Int(protocol_number(protocol))));
    }
    let reply = channel.call(
        CMD_CBOR,
        &command(MAKE_CREDENTIAL, &Value::int_map(map)),
        deadline,
        on_keepalive,
    )?;
    parse_made_credential(&reply, request.rp_id)
}

/// authenticatorGetAssertion.
pub fn get_assertion(
    channel: &mut Channel<'_>,
    request: &AssertionRequest<'_>,
    deadline: Instant,
    on_keepalive: &mut dyn FnMut(Keepalive),
) -> Result<Assertion, CtapError> {
    let mut options = vec![("up", Value::Bool(request.up))];
    if request.uv {
        options.push(("uv", Value::Bool(true)));
    }
    let mut map = vec![
        (1, Value::Text(request.rp_id.into())),
        (2, Value::Bytes(request.client_data_hash.to_vec())),
        (5, Value::text_map(options)),
    ];
    if !request.allow.is_empty() {
        map.push((3, descriptors(request.allow)));
    }
    if let Some((param, protocol)) = request.pin_uv_auth {
        map.push((6, Value::Bytes(param.to_vec())));
        map.push((7, Value::Int(protocol_number(protocol))));
    }
    let reply = channel.call(
        CMD_CBOR,
        &command(GET_ASSERTION, &Value::int_map(map)),
        deadline,
        on_keepalive,
    )?;
    parse_assertion(&reply, request.allow)
}

/// A command byte followed by its CBOR parameters.
pub(crate) fn command(code: u8, parameters: &Value) -> Vec<u8> {
    let mut out = vec![code];
    out.extend(cbor::encode(parameters));
    out
}

/// The CBOR map of a reply: its status byte must be 0 (success).
pub(crate) fn reply_map(reply: &[u8]) -> Result<Value, CtapError> {
    let (&status, body) = reply
        .split_first()
        .ok_or(CtapError::Malformed("an empty reply"))?;
    if status != 0 {
        return Err(CtapError::Status(Status::from_code(status)));
    }
    let map =
        cbor::decode(body).map_err(|_| CtapError::Malformed("the reply is not valid CBOR"))?;
    match map {
        Value::Map(_) => Ok(map),
        _ => Err(CtapError::Malformed("the reply is not a CBOR map")),
    }
}

/// Parses an authenticatorGetInfo reply (status byte included).
#[doc(hidden)]
pub fn parse_info(reply: &[u8]) -> Result<Info, CtapError> {
    let map = reply_map(reply)?;
    let versions = map
        .get(1)
        .and_then(Value::as_array)
        .ok_or(CtapError::Malformed("getInfo has no versions"))?
        .iter()
        .map(|v| v.as_text().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or(CtapError::Malformed("getInfo versions are not text"))?;
    let aaguid = match map.get(3) {
        None => None,
        Some(value) => Some(
            value
                .as_bytes()
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or(CtapError::Malformed("getInfo aaguid is not 16 bytes"))?,
        ),
    };
    let mut options = InfoOptions::default();
    if let Some(entries) = map.get(4) {
        let Value::Map(entries) = entries else {
            return Err(CtapError::Malformed("getInfo options is not a map"));
        };
        for (key, value) in entries {
            // Options this host does not use may have any value; those it uses must be bools.
            let Some(name) = key.as_text() else { continue };
            let flag = || {
                value
                    .as_bool()
                    .ok_or(CtapError::Malformed("a getInfo option is not a boolean"))
            };
            match name {
                "clientPin" => options.client_pin = Some(flag()?),
                "uv" => options.uv = Some(flag()?),
                "up" => options.up = flag()?,
                "rk" => options.rk = flag()?,
                "pinUvAuthToken" => options.pin_uv_auth_token = flag()?,
                _ => {}
            }
        }
    }
    let pin_uv_auth_protocols = match map.get(6) {
        None => Vec::new(),
        Some(value) => value
            .as_array()
            .ok_or(CtapError::Malformed(
                "getInfo pinUvAuthProtocols is not an array",
            ))?
            .iter()
            .map(|v| v.as_int().and_then(|n| u64::try_from(n).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or(CtapError::Malformed("a pinUvAuthProtocol is not a number"))?,
    };
    let max_credential_count = match map.get(7) {
        None => None,
        Some(value) => Some(
            value
                .as_int()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or(CtapError::Malformed(
                    "getInfo maxCredentialCountInList is invalid",
                ))?,
        ),
    };
    Ok(Info {
        versions,
        aaguid,
        options,
        pin_uv_auth_protocols,
        max_credential_count,
    })
}

/// Parses an authenticatorMakeCredential reply (status byte included) for `rp_id`.
#[doc(hidden)]
pub fn parse_made_credential(reply: &[u8], rp_id: &str) -> Result<MadeCredential, CtapError> {
    let map = reply_map(reply)?;
    let format = map
        .get(1)
        .and_then(Value::as_text)
        .ok_or(CtapError::Malformed("makeCredential has no fmt"))?
        .to_string();
    let auth_data = map
        .get(2)
        .and_then(Value::as_bytes)
        .ok_or(CtapError::Malformed("makeCredential has no authData"))?
        .to_vec();
    if !matches!(map.get(3), Some(Value::Map(_))) {
        return Err(CtapError::Malformed("makeCredential has no attStmt map"));
    }
    let parsed = AuthData::parse(&auth_data)?;
    if parsed.rp_id_hash != rp_id_hash(rp_id) {
        return Err(CtapError::Malformed(
            "the credential is for another relying party",
        ));
    }
    let attested = parsed.attested.ok_or(CtapError::Malformed(
        "makeCredential authData has no credential",
    ))?;
    Ok(MadeCredential {
        credential_id: attested.credential_id,
        cose_public_key: attested.cose_public_key,
        auth_data,
        format,
    })
}

/// Parses an authenticatorGetAssertion reply (status byte included) to a request whose allow
/// list was `allow`.
#[doc(hidden)]
pub fn parse_assertion(reply: &[u8], allow: &[Vec<u8>]) -> Result<Assertion, CtapError> {
    let map = reply_map(reply)?;
    let credential_id = match map.get(1) {
        Some(descriptor) => descriptor
            .get_text("id")
            .and_then(Value::as_bytes)
            .ok_or(CtapError::Malformed("getAssertion credential has no id"))?
            .to_vec(),
        // The key may leave it out when the allow list had exactly one entry (CTAP 2.1 §6.2.2).
        None => match allow {
            [only] => only.clone(),
            _ => return Err(CtapError::Malformed("getAssertion names no credential")),
        },
    };
    if !allow.is_empty() && !allow.contains(&credential_id) {
        return Err(CtapError::Malformed(
            "the key signed with a credential not asked for",
        ));
    }
    let auth_data = map
        .get(2)
        .and_then(Value::as_bytes)
        .ok_or(CtapError::Malformed("getAssertion has no authData"))?
        .to_vec();
    AuthData::parse(&auth_data)?;
    let signature = map
        .get(3)
        .and_then(Value::as_bytes)
        .filter(|s| !s.is_empty())
        .ok_or(CtapError::Malformed("getAssertion has no signature"))?
        .to_vec();
    let user_handle = match map.get(4) {
        None => None,
        Some(user) => Some(
            user.get_text("id")
                .and_then(Value::as_bytes)
                .ok_or(CtapError::Malformed("getAssertion user has no id"))?
                .to_vec(),
        ),
    };
    Ok(Assertion {
        credential_id,
        auth_data,
        signature,
        user_handle,
    })
}

/// Authenticator data (WebAuthn §6.1), parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthData {
    /// SHA-256 of the RP ID.
    pub rp_id_hash: [u8; 32],
    /// UP (0x01), UV (0x04), AT (0x40), ED (0x80)...
    pub flags: u8,
    /// The signature counter.
    pub sign_count: u32,
    /// The credential, present when AT is set (after makeCredential).
    pub attested: Option<AttestedCredential>,
    /// The extensions map as encoded, present when ED is set.
    pub extensions: Option<Vec<u8>>,
}

/// The attested credential data of authenticator data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedCredential {
    /// The key model.
    pub aaguid: [u8; 16],
    /// The new credential's id.
    pub credential_id: Vec<u8>,
    /// Its public key, the COSE_Key as encoded.
    pub cose_public_key: Vec<u8>,
}

impl AuthData {
    /// Parses authenticator data, refusing truncation and trailing bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, CtapError> {
        let truncated = CtapError::Malformed("authData is truncated");
        let (rp_id_hash, rest) = bytes.split_first_chunk::<32>().ok_or(truncated)?;
        let (&flags, rest) = rest
            .split_first()
            .ok_or(CtapError::Malformed("authData is truncated"))?;
        let (counter, mut rest) = rest
            .split_first_chunk::<4>()
            .ok_or(CtapError::Malformed("authData is truncated"))?;
        let attested = if flags & FLAG_AT != 0 {
            let (aaguid, after) = rest.split_first_chunk::<16>().ok_or(CtapError::Malformed(
                "attested credential data is truncated",
            ))?;
            let (length, after) = after.split_first_chunk::<2>().ok_or(CtapError::Malformed(
                "attested credential data is truncated",
            ))?;
            let (credential_id, after) = after
                .split_at_checked(usize::from(u16::from_be_bytes(*length)))
                .ok_or(CtapError::Malformed("the credential id runs past authData"))?;
            let (key, after_key) = cbor::decode_prefix(after)
                .map_err(|_| CtapError::Malformed("the credential public key is not CBOR"))?;
            if !matches!(key, Value::Map(_)) {
                return Err(CtapError::Malformed(
                    "the credential public key is not a map",
                ));
            }
            let key_length = after.len() - after_key.len();
            rest = after_key;
            Some(AttestedCredential {
                aaguid: *aaguid,
                credential_id: credential_id.to_vec(),
                cose_public_key: after.get(..key_length).unwrap_or_default().to_vec(),
            })
        } else {
            None
        };
        let extensions = if flags & FLAG_ED != 0 {
            let (map, after) = cbor::decode_prefix(rest)
                .map_err(|_| CtapError::Malformed("the authData extensions are not CBOR"))?;
            if !matches!(map, Value::Map(_)) {
                return Err(CtapError::Malformed(
                    "the authData extensions are not a map",
                ));
            }
            let encoded = rest
                .get(..rest.len() - after.len())
                .unwrap_or_default()
                .to_vec();
            rest = after;
            Some(encoded)
        } else {
            None
        };
        if !rest.is_empty() {
            return Err(CtapError::Malformed("bytes after the authData"));
        }
        Ok(AuthData {
            rp_id_hash: *rp_id_hash,
            flags,
            sign_count: u32::from_be_bytes(*counter),
            attested,
            extensions,
        })
    }
}

/// A list of PublicKeyCredentialDescriptors.
fn descriptors(ids: &[Vec<u8>]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| {
                Value::text_map([
                    ("id", Value::Bytes(id.clone())),
                    ("type", Value::Text(PUBLIC_KEY.into())),
                ])
            })
            .collect(),
    )
}

/// PIN protocols are 1 and 2; anything else the caller passed saturates, and the key refuses it.
fn protocol_number(protocol: u64) -> i64 {
    i64::try_from(protocol).unwrap_or(i64::MAX)
}

/// Flag bit: attested credential data follows.
pub const FLAG_AT: u8 = 0x40;
/// Flag bit: extensions follow.
pub const FLAG_ED: u8 = 0x80;
/// Flag bit: the user was present.
pub const FLAG_UP: u8 = 0x01;
/// Flag bit: the user was verified.
pub const FLAG_UV: u8 = 0x04;

pub(crate) const MAKE_CREDENTIAL: u8 = 0x01;
pub(crate) const GET_ASSERTION: u8 = 0x02;
pub(crate) const GET_INFO: u8 = 0x04;
const PUBLIC_KEY: &str = "public-key";
const ALG_ES256: i64 = -7;
const ALG_EDDSA: i64 = -8;

#[cfg(test)]
mod tests {
    use super::*;

    fn cose_key() -> Value {
        Value::int_map([
            (1, Value::Int(2)),
            (3, Value::Int(ALG_ES256)),
            (-1, Value::Int(1)),
            (-2, Value::Bytes(vec![0x11; 32])),
            (-3, Value::Bytes(vec![0x22; 32])),
        ])
    }

    fn attested_auth_data(rp_id: &str, credential_id: &[u8], flags: u8) -> Vec<u8> {
        let mut data = rp_id_hash(rp_id).to_vec();
        data.push(flags);
        data.extend(7u32.to_be_bytes());
        data.extend([0xaa; 16]);
        data.extend((credential_id.len() as u16).to_be_bytes());
        data.extend(credential_id);
        data.extend(cbor::encode(&cose_key()));
        data
    }

    fn with_status(status: u8, body: &Value) -> Vec<u8> {
        [vec![status], cbor::encode(body)].concat()
    }

    fn made_reply(auth_data: Vec<u8>) -> Vec<u8> {
        with_status(
            0,
            &Value::int_map([
                (1, Value::Text("packed".into())),
                (2, Value::Bytes(auth_data)),
                (3, Value::text_map([("alg", Value::Int(-7))])),
            ]),
        )
    }

    fn assertion_reply(credential: Option<&[u8]>, auth_data: Vec<u8>) -> Vec<u8> {
        let mut map = vec![
            (2, Value::Bytes(auth_data)),
            (3, Value::Bytes(vec![0x30, 0x06, 2, 1, 1, 2, 1, 1])),
        ];
        if let Some(id) = credential {
            map.push((
                1,
                Value::text_map([
                    ("id", Value::Bytes(id.to_vec())),
                    ("type", Value::Text("public-key".into())),
                ]),
            ));
        }
        with_status(0, &Value::int_map(map))
    }

    fn plain_auth_data() -> Vec<u8> {
        let mut data = rp_id_hash("example.org").to_vec();
        data.push(FLAG_UP);
        data.extend(9u32.to_be_bytes());
        data
    }

    #[test]
    fn a_made_credential_yields_its_id_and_raw_cose_key() {
        let auth_data = attested_auth_data("example.org", &[5; 48], FLAG_UP | FLAG_AT);
        let made = parse_made_credential(&made_reply(auth_data.clone()), "example.org").unwrap();
        assert_eq!(made.credential_id, vec![5; 48]);
        assert_eq!(made.cose_public_key, cbor::encode(&cose_key()));
        assert_eq!(made.auth_data, auth_data);
        assert_eq!(made.format, "packed");
    }

    #[test]
    fn a_credential_for_another_relying_party_is_refused() {
        let auth_data = attested_auth_data("evil.example", &[5; 16], FLAG_UP | FLAG_AT);
        assert!(matches!(
            parse_made_credential(&made_reply(auth_data), "example.org"),
            Err(CtapError::Malformed(_))
        ));
    }

    #[test]
    fn extensions_after_the_credential_are_kept_apart() {
        let mut auth_data =
            attested_auth_data("example.org", &[5; 16], FLAG_UP | FLAG_AT | FLAG_ED);
        let extensions = cbor::encode(&Value::text_map([("credProtect", Value::Int(2))]));
        auth_data.extend(&extensions);
        let parsed = AuthData::parse(&auth_data).unwrap();
        assert_eq!(parsed.extensions, Some(extensions));
        assert_eq!(parsed.sign_count, 7);
        assert_eq!(
            parsed.attested.unwrap().cose_public_key,
            cbor::encode(&cose_key())
        );
    }

    #[test]
    fn auth_data_shorter_than_37_bytes_is_refused() {
        let data = plain_auth_data();
        for length in 0..37 {
            assert!(AuthData::parse(&data[..length]).is_err(), "{length}");
        }
        assert!(AuthData::parse(&data).is_ok());
        let reply = assertion_reply(Some(&[1]), data[..36].to_vec());
        assert!(parse_assertion(&reply, &[vec![1]]).is_err());
    }

    #[test]
    fn a_credential_id_length_beyond_the_data_is_refused() {
        let mut data = attested_auth_data("example.org", &[5; 16], FLAG_AT);
        // Claim 0xffff bytes of credential id.
        data[32 + 1 + 4 + 16] = 0xff;
        data[32 + 1 + 4 + 17] = 0xff;
        assert!(matches!(
            AuthData::parse(&data),
            Err(CtapError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_attested_data_is_refused() {
        let good = attested_auth_data("example.org", &[5; 16], FLAG_AT);
        // Every truncation, trailing bytes, extensions flagged but absent, a key that is no map.
        for length in 0..good.len() {
            assert!(AuthData::parse(&good[..length]).is_err(), "{length}");
        }
        assert!(AuthData::parse(&[good.clone(), vec![0]].concat()).is_err());
        let mut flagged = good.clone();
        flagged[32] |= FLAG_ED;
        assert!(AuthData::parse(&flagged).is_err());
        let mut not_a_map = good[..good.len() - cbor::encode(&cose_key()).len()].to_vec();
        not_a_map.push(0x01);
        assert!(AuthData::parse(&not_a_map).is_err());
        // AT clear but bytes follow.
        let mut stray = plain_auth_data();
        stray.push(0);
        assert!(AuthData::parse(&stray).is_err());
    }

    #[test]
    fn status_bytes_become_statuses() {
        let cases = [
            (0x2e, Status::NoCredentials),
            (0x27, Status::OperationDenied),
            (0x2f, Status::UserActionTimeout),
            (0x36, Status::PinRequired),
            (0x31, Status::PinInvalid),
            (0x32, Status::PinBlocked),
            (0x33, Status::PinAuthInvalid),
            (0x34, Status::PinAuthBlocked),
            (0x35, Status::PinNotSet),
            (0x19, Status::CredentialExcluded),
            (0x2d, Status::KeepaliveCancel),
            (0x26, Status::UnsupportedAlgorithm),
            (0x7f, Status::Other(0x7f)),
        ];
        for (code, status) in cases {
            let error = parse_assertion(&[code], &[]).unwrap_err();
            assert!(
                matches!(error, CtapError::Status(s) if s == status),
                "{code:#x}"
            );
            assert!(!error.to_string().is_empty());
        }
        assert!(Status::Other(0x7f).to_string().contains("0x7f"));
    }

    #[test]
    fn malformed_cbor_replies_are_refused() {
        let replies: [&[u8]; 6] = [
            &[],
            &[0x00],
            &[0x00, 0xa1],
            &[0x00, 0x01],
            &[0x00, 0xa0, 0x00],
            &[0x00, 0xbf, 0xff],
        ];
        for reply in replies {
            assert!(matches!(parse_info(reply), Err(CtapError::Malformed(_))));
            assert!(parse_assertion(reply, &[]).is_err());
            assert!(parse_made_credential(reply, "example.org").is_err());
        }
        // Fields of the wrong type.
        let wrong = with_status(0, &Value::int_map([(1, Value::Int(1)), (2, Value::Int(2))]));
        assert!(parse_made_credential(&wrong, "example.org").is_err());
        assert!(parse_assertion(&wrong, &[]).is_err());
        assert!(parse_info(&wrong).is_err());
    }

    #[test]
    fn an_assertion_may_omit_the_credential_only_for_a_single_allowed_one() {
        let reply = assertion_reply(None, plain_auth_data());
        let assertion = parse_assertion(&reply, &[vec![3; 20]]).unwrap();
        assert_eq!(assertion.credential_id, vec![3; 20]);
        assert_eq!(assertion.auth_data, plain_auth_data());
        assert_eq!(assertion.user_handle, None);
        assert!(parse_assertion(&reply, &[vec![3; 20], vec![4; 20]]).is_err());
        assert!(parse_assertion(&reply, &[]).is_err());
    }

    #[test]
    fn an_assertion_by_a_credential_not_asked_for_is_refused() {
        let reply = assertion_reply(Some(&[9; 20]), plain_auth_data());
        assert!(parse_assertion(&reply, &[vec![3; 20]]).is_err());
        let named = parse_assertion(&reply, &[vec![3; 20], vec![9; 20]]).unwrap();
        assert_eq!(named.credential_id, vec![9; 20]);
    }

    #[test]
    fn get_info_is_parsed_with_its_defaults() {
        let reply = with_status(
            0,
            &Value::int_map([
                (
                    1,
                    Value::Array(vec![
                        Value::Text("U2F_V2".into()),
                        Value::Text("FIDO_2_1".into()),
                    ]),
                ),
                (3, Value::Bytes(vec![0xcb; 16])),
                (
                    4,
                    Value::text_map([
                        ("clientPin", Value::Bool(true)),
                        ("rk", Value::Bool(true)),
                        ("pinUvAuthToken", Value::Bool(true)),
                        ("bioEnroll", Value::Bool(false)),
                    ]),
                ),
                (6, Value::Array(vec![Value::Int(2), Value::Int(1)])),
                (7, Value::Int(8)),
            ]),
        );
        let info = parse_info(&reply).unwrap();
        assert_eq!(info.versions, ["U2F_V2", "FIDO_2_1"]);
        assert_eq!(info.aaguid, Some([0xcb; 16]));
        assert_eq!(info.options.client_pin, Some(true));
        assert_eq!(info.options.uv, None);
        assert!(info.options.up && info.options.rk && info.options.pin_uv_auth_token);
        assert_eq!(info.pin_uv_auth_protocols, [2, 1]);
        assert_eq!(info.max_credential_count, Some(8));

        let minimal = with_status(
            0,
            &Value::int_map([(1, Value::Array(vec![Value::Text("FIDO_2_0".into())]))]),
        );
        let info = parse_info(&minimal).unwrap();
        assert_eq!(info.options, InfoOptions::default());
        let bad_aaguid = with_status(
            0,
            &Value::int_map([(1, Value::Array(vec![])), (3, Value::Bytes(vec![0; 15]))]),
        );
        assert!(parse_info(&bad_aaguid).is_err());
    }

    #[test]
    fn requests_are_canonical_cbor_after_the_command_byte() {
        let request = command(
            GET_ASSERTION,
            &Value::int_map([(2, Value::Int(0)), (1, Value::Text("a".into()))]),
        );
        assert_eq!(request, [0x02, 0xa2, 0x01, 0x61, b'a', 0x02, 0x00]);
    }
}
