//! The server side of the WebAuthn ceremonies (W3C WebAuthn Level 3, §7.1 and §7.2): the
//! challenges (single use, expiring), the options the page hands to `navigator.credentials`,
//! the registration check that turns a browser's answer into the core's `SecurityKey`, and the
//! client-data checks that turn an assertion into the core's `Assertion`.
//!
//! It owns what is particular to a browser: clientDataJSON (type, challenge, origin, no
//! cross-origin frame), the attestation object (`none`, or `packed` self attestation), the
//! attested credential data, and the JSON and base64url the page speaks. It must never decide
//! a login: the signature, user presence and verification, the credential's owner and the
//! counter are the core's `key_assertion::check`, run by the caller under the user's lock, as
//! the console does. It does no I/O and reads no clock (`now` is a parameter), and everything
//! it parses is hostile input: size-capped, never panicking, refused with a `WebAuthnError`
//! that names what was wrong.
//!
//! How a handler uses it (binary fields are base64url without padding, both ways):
//!
//! 1. Begin: `book.issue(purpose, user, now)` gives a `Challenge`; `creation_options` or
//!    `request_options` gives the JSON for `PublicKeyCredential.parseCreationOptionsFromJSON`
//!    (or `parseRequestOptionsFromJSON`).
//! 2. Finish: the page posts `credential.toJSON()`; `RegistrationResponse::from_json` (or
//!    `AssertionResponse::from_json`) parses it; `book.take(response.challenge(), now)` spends the
//!    challenge and tells whom and what for; `verify` checks the rest.
//! 3. For a registration, store `Registered::key` with `keys::add`; for an assertion, run
//!    `key_assertion::check` on `Presented` inside `Store::update`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use twofold_core::cbor::{self, CborError, Value};
use twofold_core::config::UserVerification;
use twofold_core::key_assertion::{self, rp_id_hash, Assertion, AssertionError};
use twofold_core::security_key::{
    check_credential_id, check_rp_id, KeyError, KeyName, PublicKey, SecurityKey, MAX_CREDENTIAL_ID,
};
use twofold_core::user::UserName;

/// The relying party as the browser sees it, checked once at startup: its id (a domain), the
/// name shown by the browser, and the one origin the pages are served from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelyingParty {
    id: String,
    name: String,
    origin: String,
}

/// 32 random bytes that one ceremony must sign; the browser sees them in base64url.
#[derive(Clone)]
pub struct Challenge([u8; CHALLENGE_LEN]);

/// What a challenge was issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Signing in with one of the user's keys.
    Authenticate,
    /// Registering a new key, to be named `name`; with `user_verification` the key must verify
    /// the user (PIN or biometrics) now and at every later use.
    Register {
        name: KeyName,
        user_verification: bool,
    },
}

/// A challenge waiting for its answer, as `ChallengeBook::take` hands it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub challenge: Challenge,
    pub purpose: Purpose,
    pub user: UserName,
    /// Unix time from which the challenge is refused.
    pub expires: u64,
}

/// The challenges issued and not yet answered, in memory (hold it behind a `Mutex`). Each is
/// taken at most once, refused once expired, and the book never holds more than its capacity:
/// expired ones go first, then the oldest.
pub struct ChallengeBook {
    pending: HashMap<[u8; CHALLENGE_LEN], (u64, Pending)>,
    /// Issue order (a sequence number per challenge), to find the oldest.
    order: BTreeMap<u64, [u8; CHALLENGE_LEN]>,
    next: u64,
    capacity: usize,
    lifetime: u64,
}

/// A browser's answer to `navigator.credentials.create()`, parsed and decoded, not yet checked.
#[derive(Clone, Debug)]
pub struct RegistrationResponse {
    raw_id: Vec<u8>,
    client_data_json: Vec<u8>,
    client_data: ClientData,
    attestation_object: Vec<u8>,
}

/// A registration that passed every check: the key to store, and what else the key said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// Built as `twofold keys add` builds it, with the web's rp_id.
    pub key: SecurityKey,
    /// The counter the key started at (0 for keys that keep none).
    pub sign_count: u32,
    /// Whether the key verified the user during the registration.
    pub user_verified: bool,
    /// The key model's AAGUID as the key reported it (unattested: informative only).
    pub aaguid: [u8; 16],
    pub attestation: AttestationFormat,
}

/// The attestation a registration came with. Neither proves the key's make: both only show
/// that the credential's key signed the registration (or nothing at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttestationFormat {
    /// `none`: no statement.
    None,
    /// `packed` without a certificate: signed with the credential's own key.
    PackedSelf,
}

/// A browser's answer to `navigator.credentials.get()`, parsed and decoded, not yet checked.
#[derive(Clone, Debug)]
pub struct AssertionResponse {
    raw_id: Vec<u8>,
    client_data_json: Vec<u8>,
    client_data: ClientData,
    authenticator_data: Vec<u8>,
    signature: Vec<u8>,
    user_handle: Option<Vec<u8>>,
}

/// An assertion whose client data passed: what the core's `key_assertion::check` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presented {
    pub assertion: Assertion,
    /// SHA-256 of clientDataJSON: what the key signed along with the authenticator data.
    pub client_data_hash: [u8; 32],
}

/// Why a ceremony (or the relying party's configuration) was refused. The log gets this; the
/// user gets a generic line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebAuthnError {
    /// The attestation object is not the map of `fmt`, `attStmt` and `authData` it must be.
    AttestationObject(String),
    /// The packed self attestation's signature does not verify with the credential's key.
    AttestationSignature,
    /// The attestation statement does not have the shape its format requires.
    AttestationStatement(String),
    /// The authenticator data is truncated or malformed, with the detail.
    AuthenticatorData(String),
    /// The flags say the credential is backed up (BS) but cannot be (BE clear).
    BackupState,
    /// A field that must be base64url without padding is not, named.
    Base64(&'static str),
    /// A CBOR item (named) does not decode.
    Cbor(&'static str, CborError),
    /// The challenge expired before the answer came.
    ChallengeExpired,
    /// The answer signs another challenge than the one this ceremony issued.
    ChallengeMismatch,
    /// No pending challenge is the one answered: used already, dropped, or never issued.
    ChallengeUnknown,
    /// clientDataJSON is not UTF-8 JSON with a string type, challenge and origin.
    ClientData(String),
    /// The relying party's configuration is unusable, with what to change.
    Config(String),
    /// A credential id of 0 or more than 1023 bytes.
    CredentialId(KeyError),
    /// The ids in the answer disagree (`id`, `rawId`, the attested credential id).
    CredentialIdMismatch(&'static str),
    /// The ceremony ran in a frame of another site (crossOrigin true, or a topOrigin).
    CrossOrigin,
    /// The answer is not the JSON of a PublicKeyCredential, with the detail.
    Json(String),
    /// The registration carries no attested credential data (AT flag clear).
    NoAttestedCredential,
    /// The key signed without the user's touch (UP clear).
    NoUserPresence,
    /// User verification was required and the key did not verify the user (UV clear).
    NoUserVerification,
    /// The credential's public key is not one twofold accepts.
    PublicKey(KeyError),
    /// No randomness for a challenge.
    Randomness(String),
    /// The authenticator data was made for another relying party id.
    RelyingParty,
    /// An input is larger than its cap.
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    /// An attestation format twofold does not accept, named.
    UnsupportedAttestation(String),
    /// clientDataJSON's origin is not the configured origin.
    WrongOrigin { found: String, expected: String },
    /// clientDataJSON's type is not the ceremony's.
    WrongType {
        found: String,
        expected: &'static str,
    },
}

impl fmt::Display for WebAuthnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebAuthnError::AttestationObject(why) => write!(f, "attestation object: {why}"),
            WebAuthnError::AttestationSignature => f.write_str(
                "the packed self attestation's signature does not verify with the credential's \
                 key: the answer was altered, or the key is faulty; nothing was registered",
            ),
            WebAuthnError::AttestationStatement(why) => {
                write!(f, "attestation statement: {why}; nothing was registered")
            }
            WebAuthnError::AuthenticatorData(why) => write!(f, "authenticator data: {why}"),
            WebAuthnError::BackupState => f.write_str(
                "authenticator data flags say backed up (BS) but not backup eligible (BE): a \
                 malformed answer",
            ),
            WebAuthnError::Base64(field) => write!(
                f,
                "{field} is not base64url without padding (the page must send \
                 credential.toJSON(), or encode ArrayBuffers with the URL alphabet and no '=')"
            ),
            WebAuthnError::Cbor(what, e) => write!(f, "{what}: {e}"),
            WebAuthnError::ChallengeExpired => f.write_str(
                "the challenge expired before the answer came back; the user must start again \
                 (or the challenge lifetime is shorter than the options' timeout)",
            ),
            WebAuthnError::ChallengeMismatch => f.write_str(
                "clientDataJSON signs another challenge than the one issued for this ceremony \
                 (an old tab, or a replay)",
            ),
            WebAuthnError::ChallengeUnknown => f.write_str(
                "no pending challenge is the one answered: used already (a replay), dropped to \
                 make room, or never issued; the user must start again",
            ),
            WebAuthnError::ClientData(why) => write!(f, "clientDataJSON: {why}"),
            WebAuthnError::Config(why) => write!(f, "WebAuthn relying party: {why}"),
            WebAuthnError::CredentialId(e) => write!(f, "attested credential data: {e}"),
            WebAuthnError::CredentialIdMismatch(what) => write!(
                f,
                "the credential ids disagree: {what} (an answer put together from two \
                 ceremonies, or altered)"
            ),
            WebAuthnError::CrossOrigin => f.write_str(
                "the ceremony ran in a frame embedded by another site (crossOrigin or \
                 topOrigin in clientDataJSON); twofold's pages must be opened at the top level",
            ),
            WebAuthnError::Json(why) => {
                write!(f, "the answer is not a PublicKeyCredential's JSON: {why}")
            }
            WebAuthnError::NoAttestedCredential => f.write_str(
                "the registration's authenticator data has no credential (AT flag clear)",
            ),
            WebAuthnError::NoUserPresence => {
                f.write_str("the key was not touched (UP flag clear); nothing was registered")
            }
            WebAuthnError::NoUserVerification => f.write_str(
                "user verification was required and the key did not verify the user (UV flag \
                 clear): the key needs a PIN or fingerprint set up; nothing was registered",
            ),
            WebAuthnError::PublicKey(e) => write!(f, "the credential's {e}"),
            WebAuthnError::Randomness(why) => write!(f, "no randomness for a challenge: {why}"),
            WebAuthnError::RelyingParty => f.write_str(
                "the authenticator data was made for another relying party id than the \
                 configured rp_id (a misconfigured rp_id, or a credential of another site)",
            ),
            WebAuthnError::TooLarge { what, size, max } => {
                write!(f, "{what} is {size} bytes, more than the {max} allowed")
            }
            WebAuthnError::UnsupportedAttestation(format) => write!(
                f,
                "attestation format {format} is not accepted: twofold takes \"none\" or \
                 \"packed\" self attestation, and asks browsers for attestation \"none\"; \
                 nothing was registered"
            ),
            WebAuthnError::WrongOrigin { found, expected } => write!(
                f,
                "clientDataJSON origin {found:?} is not the configured origin {expected:?}: the \
                 page was served from another scheme, host or port (check the web origin \
                 setting against the address the browser shows)"
            ),
            WebAuthnError::WrongType { found, expected } => write!(
                f,
                "clientDataJSON type {found:?} is not {expected:?} (an answer to the other \
                 ceremony)"
            ),
        }
    }
}

impl std::error::Error for WebAuthnError {}

impl RelyingParty {
    /// Checks the configuration: `id` a lower-case domain name, `name` a short label, and
    /// `origin` exactly as a browser serializes it (`https://host` or `https://host:port`,
    /// lower case, no default port, no path or trailing slash), on `id` or a subdomain of it.
    pub fn new(id: &str, name: &str, origin: &str) -> Result<RelyingParty, WebAuthnError> {
        check_rp_id(id).map_err(|e| WebAuthnError::Config(e.to_string()))?;
        if !is_domain(id) {
            return Err(WebAuthnError::Config(format!(
                "rp_id {id:?} must be a lower-case domain name (such as \"wiki.example.org\"): \
                 no scheme, port or IP address"
            )));
        }
        if name.is_empty()
            || name.chars().count() > MAX_RP_NAME
            || name.chars().any(char::is_control)
        {
            return Err(WebAuthnError::Config(format!(
                "rp name {name:?} must be 1 to {MAX_RP_NAME} characters without control characters"
            )));
        }
        check_origin(origin, id).map_err(WebAuthnError::Config)?;
        Ok(RelyingParty {
            id: id.to_string(),
            name: name.to_string(),
            origin: origin.to_string(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl Challenge {
    /// A fresh challenge from the system's randomness.
    pub fn random() -> Result<Challenge, WebAuthnError> {
        let mut bytes = [0u8; CHALLENGE_LEN];
        getrandom::fill(&mut bytes).map_err(|e| WebAuthnError::Randomness(e.to_string()))?;
        Ok(Challenge(bytes))
    }

    /// A challenge of given bytes, which must be fresh randomness (tests pass fixed ones).
    pub fn from_bytes(bytes: [u8; CHALLENGE_LEN]) -> Challenge {
        Challenge(bytes)
    }

    /// A challenge from its base64url form (as `encoded` wrote it).
    pub fn parse(text: &str) -> Result<Challenge, WebAuthnError> {
        let bytes = decode_field("challenge", text, CHALLENGE_LEN)?;
        <[u8; CHALLENGE_LEN]>::try_from(bytes.as_slice())
            .map(Challenge)
            .map_err(|_| WebAuthnError::ChallengeUnknown)
    }

    pub fn as_bytes(&self) -> &[u8; CHALLENGE_LEN] {
        &self.0
    }

    /// Base64url without padding, as the options and clientDataJSON carry it.
    pub fn encoded(&self) -> String {
        Base64UrlUnpadded::encode_string(&self.0)
    }
}

/// Compared in constant time: a challenge decides whether an answer belongs to a ceremony.
impl PartialEq for Challenge {
    fn eq(&self, other: &Challenge) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for Challenge {}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Challenge({})", self.encoded())
    }
}

impl ChallengeBook {
    /// A book of at most `capacity` (at least 1) challenges, each valid for `lifetime_secs`
    /// from its issue. Make the lifetime a little longer than the options' timeout.
    pub fn new(capacity: usize, lifetime_secs: u64) -> ChallengeBook {
        ChallengeBook {
            pending: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            capacity: capacity.max(1),
            lifetime: lifetime_secs,
        }
    }

    /// Issues a fresh random challenge for `purpose` and `user` at `now`.
    pub fn issue(
        &mut self,
        purpose: Purpose,
        user: UserName,
        now: u64,
    ) -> Result<Challenge, WebAuthnError> {
        let challenge = Challenge::random()?;
        self.issue_with(challenge.clone(), purpose, user, now);
        Ok(challenge)
    }

    /// Issues a given challenge (fresh random bytes; tests pass fixed ones). An equal pending
    /// challenge is replaced.
    pub fn issue_with(&mut self, challenge: Challenge, purpose: Purpose, user: UserName, now: u64) {
        let key = *challenge.as_bytes();
        if let Some((seq, _)) = self.pending.remove(&key) {
            self.order.remove(&seq);
        }
        self.drop_expired(now);
        while self.pending.len() >= self.capacity && self.drop_oldest() {}
        let seq = self.next;
        self.next += 1;
        let pending = Pending {
            challenge,
            purpose,
            user,
            expires: now.saturating_add(self.lifetime),
        };
        self.order.insert(seq, key);
        self.pending.insert(key, (seq, pending));
    }

    /// Takes the challenge out of the book, so that a second answer to it fails: what it was
    /// issued for, unless it expired (`now` at or past its expiry) or is not in the book.
    pub fn take(&mut self, challenge: &Challenge, now: u64) -> Result<Pending, WebAuthnError> {
        let (seq, pending) = self
            .pending
            .remove(challenge.as_bytes())
            .ok_or(WebAuthnError::ChallengeUnknown)?;
        self.order.remove(&seq);
        if now >= pending.expires {
            return Err(WebAuthnError::ChallengeExpired);
        }
        Ok(pending)
    }

    /// How many challenges wait.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops expired challenges from the oldest on. Every challenge lives as long, so the
    /// oldest expire first; one issued before the clock went back may linger until the cap
    /// drops it, and `take` refuses it anyway.
    fn drop_expired(&mut self, now: u64) {
        while let Some((&seq, key)) = self.order.first_key_value() {
            match self.pending.get(key) {
                Some((_, pending)) if now < pending.expires => break,
                _ => {
                    self.pending.remove(key);
                    self.order.remove(&seq);
                }
            }
        }
    }

    /// Drops the oldest challenge; false when the book is empty.
    fn drop_oldest(&mut self) -> bool {
        match self.order.pop_first() {
            Some((_, key)) => {
                self.pending.remove(&key);
                true
            }
            None => false,
        }
    }
}

/// PublicKeyCredentialCreationOptions (in the JSON form of WebAuthn L3 §5.1.9, for
/// `PublicKeyCredential.parseCreationOptionsFromJSON`): ES256 and EdDSA, no attestation, no
/// resident key, and the user's keys for this relying party excluded so that one key is not
/// registered twice. `user_handle` is 1 to 64 random bytes (a fresh 16 per registration, as
/// `twofold keys add` does: twofold never finds a user by it); `challenge` and the handle go out
/// in base64url, as do the excluded ids.
pub fn creation_options(
    rp: &RelyingParty,
    user: &UserName,
    user_handle: &[u8],
    challenge: &Challenge,
    exclude: &[SecurityKey],
    user_verification: UserVerification,
    timeout_ms: u32,
) -> Json {
    json!({
        "rp": { "id": rp.id, "name": rp.name },
        "user": {
            "id": Base64UrlUnpadded::encode_string(user_handle),
            "name": user.as_str(),
            "displayName": user.as_str(),
        },
        "challenge": challenge.encoded(),
        "pubKeyCredParams": [
            { "type": PUBLIC_KEY, "alg": ALG_ES256 },
            { "type": PUBLIC_KEY, "alg": ALG_EDDSA },
        ],
        "timeout": timeout_ms,
        "excludeCredentials": descriptors(rp, exclude),
        "authenticatorSelection": {
            "residentKey": "discouraged",
            "requireResidentKey": false,
            "userVerification": uv_word(user_verification),
        },
        "hints": ["security-key"],
        "attestation": "none",
    })
}

/// PublicKeyCredentialRequestOptions (JSON form, for
/// `PublicKeyCredential.parseRequestOptionsFromJSON`), allowing the user's keys made for this
/// relying party (others are left out: the browser could not use them). `user_verification`
/// is raised to "preferred" when one of them must verify the user, so that the browser asks for
/// its PIN. With no key left the browser would offer any passkey: offer no key login then.
pub fn request_options(
    rp: &RelyingParty,
    challenge: &Challenge,
    allow: &[SecurityKey],
    user_verification: UserVerification,
    timeout_ms: u32,
) -> Json {
    let needs_uv = allow
        .iter()
        .any(|k| k.rp_id == rp.id && k.user_verification);
    let user_verification = match user_verification {
        UserVerification::Discouraged if needs_uv => UserVerification::Preferred,
        other => other,
    };
    json!({
        "challenge": challenge.encoded(),
        "timeout": timeout_ms,
        "rpId": rp.id,
        "allowCredentials": descriptors(rp, allow),
        "userVerification": uv_word(user_verification),
        "hints": ["security-key"],
    })
}

impl RegistrationResponse {
    /// Parses the page's JSON of `credential.toJSON()` (RegistrationResponseJSON): `id`,
    /// `rawId`, `response.clientDataJSON` and `response.attestationObject` in base64url
    /// without padding; other members are ignored.
    pub fn from_json(body: &[u8]) -> Result<RegistrationResponse, WebAuthnError> {
        let credential: CredentialJson<AttestationJson> = parse_credential(body)?;
        let raw_id = credential_ids(&credential.id, &credential.raw_id)?;
        let client_data_json = decode_field(
            "response.clientDataJSON",
            &credential.response.client_data_json,
            MAX_CLIENT_DATA_JSON,
        )?;
        let client_data = ClientData::parse(&client_data_json)?;
        let attestation_object = decode_field(
            "response.attestationObject",
            &credential.response.attestation_object,
            MAX_ATTESTATION_OBJECT,
        )?;
        Ok(RegistrationResponse {
            raw_id,
            client_data_json,
            client_data,
            attestation_object,
        })
    }

    /// The challenge clientDataJSON says it answers: the key to `ChallengeBook::take`.
    pub fn challenge(&self) -> &Challenge {
        &self.client_data.challenge
    }

    /// Runs the registration checks (WebAuthn §7.1) against the challenge issued for it, and
    /// builds the key to store, named `name`, added at `added`. With `user_verification` the key
    /// must have verified the user, and will be required to at every use.
    pub fn verify(
        &self,
        rp: &RelyingParty,
        challenge: &Challenge,
        name: KeyName,
        user_verification: bool,
        added: u64,
    ) -> Result<Registered, WebAuthnError> {
        self.client_data.check(CREATE, rp, challenge)?;
        let client_data_hash: [u8; 32] = Sha256::digest(&self.client_data_json).into();
        let object = AttestationObject::parse(&self.attestation_object)?;
        let auth_data = AuthenticatorData::parse(&object.auth_data)?;
        auth_data.check_relying_party(rp)?;
        if auth_data.flags & FLAG_UP == 0 {
            return Err(WebAuthnError::NoUserPresence);
        }
        let user_verified = auth_data.flags & FLAG_UV != 0;
        if user_verification && !user_verified {
            return Err(WebAuthnError::NoUserVerification);
        }
        let credential = auth_data
            .attested
            .ok_or(WebAuthnError::NoAttestedCredential)?;
        if credential.credential_id != self.raw_id {
            return Err(WebAuthnError::CredentialIdMismatch(
                "the attested credential id is not rawId",
            ));
        }
        let attestation = check_statement(&object, &credential.public_key, rp, &client_data_hash)?;
        Ok(Registered {
            key: SecurityKey {
                name,
                credential_id: credential.credential_id,
                public_key: credential.public_key,
                rp_id: rp.id.clone(),
                user_verification,
                added,
            },
            sign_count: auth_data.sign_count,
            user_verified,
            aaguid: credential.aaguid,
            attestation,
        })
    }
}

impl AssertionResponse {
    /// Parses the page's JSON of `credential.toJSON()` (AuthenticationResponseJSON): `id`,
    /// `rawId`, `response.clientDataJSON`, `response.authenticatorData`, `response.signature`
    /// and the optional `response.userHandle`, in base64url without padding.
    pub fn from_json(body: &[u8]) -> Result<AssertionResponse, WebAuthnError> {
        let credential: CredentialJson<AssertionJson> = parse_credential(body)?;
        let raw_id = credential_ids(&credential.id, &credential.raw_id)?;
        let response = credential.response;
        let client_data_json = decode_field(
            "response.clientDataJSON",
            &response.client_data_json,
            MAX_CLIENT_DATA_JSON,
        )?;
        let client_data = ClientData::parse(&client_data_json)?;
        let authenticator_data = decode_field(
            "response.authenticatorData",
            &response.authenticator_data,
            MAX_AUTHENTICATOR_DATA,
        )?;
        let signature = decode_field("response.signature", &response.signature, MAX_SIGNATURE)?;
        let user_handle = response
            .user_handle
            .map(|handle| decode_field("response.userHandle", &handle, MAX_USER_HANDLE))
            .transpose()?;
        Ok(AssertionResponse {
            raw_id,
            client_data_json,
            client_data,
            authenticator_data,
            signature,
            user_handle,
        })
    }

    /// The challenge clientDataJSON says it answers: the key to `ChallengeBook::take`.
    pub fn challenge(&self) -> &Challenge {
        &self.client_data.challenge
    }

    /// The credential the browser used (for the log; `check` finds the key by it).
    pub fn credential_id(&self) -> &[u8] {
        &self.raw_id
    }

    /// The user handle the key returned, if any. twofold does not look users up by it (keys
    /// are not discoverable credentials), so nothing checks it.
    pub fn user_handle(&self) -> Option<&[u8]> {
        self.user_handle.as_deref()
    }

    /// Runs the browser's part of the assertion checks (WebAuthn §7.2): the client data, and
    /// the authenticator data's shape and relying party. What is left (the credential is the
    /// user's, UP, UV, the signature and the counter) is `key_assertion::check` on the result.
    pub fn verify(
        &self,
        rp: &RelyingParty,
        challenge: &Challenge,
    ) -> Result<Presented, WebAuthnError> {
        self.client_data.check(GET, rp, challenge)?;
        let auth_data = AuthenticatorData::parse(&self.authenticator_data)?;
        if auth_data.attested.is_some() {
            return Err(WebAuthnError::AuthenticatorData(
                "an assertion carries attested credential data (AT flag set)".into(),
            ));
        }
        // `check` compares against each key's own rp_id; this pins the web's, so that an
        // assertion made for a console key (`pam://host`) cannot sign in here.
        auth_data.check_relying_party(rp)?;
        if self.signature.is_empty() {
            return Err(WebAuthnError::Json("response.signature is empty".into()));
        }
        Ok(Presented {
            assertion: Assertion {
                credential_id: self.raw_id.clone(),
                authenticator_data: self.authenticator_data.clone(),
                signature: self.signature.clone(),
            },
            client_data_hash: Sha256::digest(&self.client_data_json).into(),
        })
    }
}

/// The members of a PublicKeyCredential's JSON that twofold reads.
#[derive(Deserialize)]
struct CredentialJson<R> {
    id: String,
    #[serde(rename = "rawId")]
    raw_id: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    response: R,
}

#[derive(Deserialize)]
struct AttestationJson {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "attestationObject")]
    attestation_object: String,
}

#[derive(Deserialize)]
struct AssertionJson {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "authenticatorData")]
    authenticator_data: String,
    signature: String,
    #[serde(rename = "userHandle")]
    user_handle: Option<String>,
}

#[derive(Deserialize)]
struct ClientDataJson {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin")]
    cross_origin: Option<bool>,
    #[serde(rename = "topOrigin")]
    top_origin: Option<String>,
}

/// CollectedClientData (§5.8.1), parsed.
#[derive(Clone, Debug)]
struct ClientData {
    kind: String,
    challenge: Challenge,
    origin: String,
    cross_origin: bool,
    top_origin: bool,
}

impl ClientData {
    fn parse(bytes: &[u8]) -> Result<ClientData, WebAuthnError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| WebAuthnError::ClientData("not UTF-8".into()))?;
        let parsed: ClientDataJson =
            serde_json::from_str(text).map_err(|e| WebAuthnError::ClientData(e.to_string()))?;
        // A challenge of another length cannot be one this book issued.
        let challenge = Base64UrlUnpadded::decode_vec(&parsed.challenge)
            .map_err(|_| WebAuthnError::Base64("clientDataJSON challenge"))?;
        let challenge = <[u8; CHALLENGE_LEN]>::try_from(challenge.as_slice())
            .map(Challenge)
            .map_err(|_| WebAuthnError::ChallengeUnknown)?;
        Ok(ClientData {
            kind: parsed.kind,
            challenge,
            origin: parsed.origin,
            cross_origin: parsed.cross_origin == Some(true),
            top_origin: parsed.top_origin.is_some(),
        })
    }

    /// §7.1 steps 7 to 10 (§7.2 steps 11 to 14): the type, the challenge (in constant time),
    /// the exact origin, and no cross-origin frame.
    fn check(
        &self,
        kind: &'static str,
        rp: &RelyingParty,
        challenge: &Challenge,
    ) -> Result<(), WebAuthnError> {
        if self.kind != kind {
            return Err(WebAuthnError::WrongType {
                found: clip(&self.kind),
                expected: kind,
            });
        }
        if self.challenge != *challenge {
            return Err(WebAuthnError::ChallengeMismatch);
        }
        if self.origin != rp.origin {
            return Err(WebAuthnError::WrongOrigin {
                found: clip(&self.origin),
                expected: rp.origin.clone(),
            });
        }
        if self.cross_origin || self.top_origin {
            return Err(WebAuthnError::CrossOrigin);
        }
        Ok(())
    }
}

/// The attestation object's three members (§6.5.4).
struct AttestationObject {
    format: String,
    statement: Vec<(Value, Value)>,
    auth_data: Vec<u8>,
}

impl AttestationObject {
    fn parse(bytes: &[u8]) -> Result<AttestationObject, WebAuthnError> {
        let object =
            cbor::decode(bytes).map_err(|e| WebAuthnError::Cbor("attestation object", e))?;
        let missing = |what: &str| WebAuthnError::AttestationObject(format!("no {what}"));
        let format = object
            .get_text("fmt")
            .and_then(Value::as_text)
            .ok_or_else(|| missing("fmt text"))?;
        let statement = match object.get_text("attStmt") {
            Some(Value::Map(entries)) => entries.clone(),
            _ => return Err(missing("attStmt map")),
        };
        let auth_data = object
            .get_text("authData")
            .and_then(Value::as_bytes)
            .ok_or_else(|| missing("authData bytes"))?;
        Ok(AttestationObject {
            format: format.to_string(),
            statement,
            auth_data: auth_data.to_vec(),
        })
    }
}

/// Authenticator data (§6.1), parsed.
struct AuthenticatorData {
    rp_id_hash: [u8; 32],
    flags: u8,
    sign_count: u32,
    attested: Option<AttestedCredential>,
}

/// Attested credential data (§6.5.2).
struct AttestedCredential {
    aaguid: [u8; 16],
    credential_id: Vec<u8>,
    public_key: PublicKey,
}

// crates/fido's `ctap2::AuthData::parse` reads the same layout for the console's
// makeCredential, but the web may not depend on crates/fido, so this is a second reader, for
// browsers' input. One reader in the core, next to `key_assertion`, should replace both.
impl AuthenticatorData {
    /// Parses the whole: the fixed 37 bytes, the attested credential data when AT is set, the
    /// extensions map when ED is set, and nothing after.
    fn parse(bytes: &[u8]) -> Result<AuthenticatorData, WebAuthnError> {
        let truncated = || {
            WebAuthnError::AuthenticatorData(format!(
                "{} bytes, shorter than the 37 of the RP ID hash, flags and counter",
                bytes.len()
            ))
        };
        let (rp_id_hash, rest) = bytes.split_first_chunk::<32>().ok_or_else(truncated)?;
        let (&flags, rest) = rest.split_first().ok_or_else(truncated)?;
        let (counter, mut rest) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
        if flags & FLAG_BS != 0 && flags & FLAG_BE == 0 {
            return Err(WebAuthnError::BackupState);
        }
        let attested = match flags & FLAG_AT {
            0 => None,
            _ => {
                let (credential, after) = AttestedCredential::parse(rest)?;
                rest = after;
                Some(credential)
            }
        };
        if flags & FLAG_ED != 0 {
            let (extensions, after) = cbor::decode_prefix(rest)
                .map_err(|e| WebAuthnError::Cbor("authenticator data extensions", e))?;
            if !matches!(extensions, Value::Map(_)) {
                return Err(WebAuthnError::AuthenticatorData(
                    "the extensions are not a CBOR map".into(),
                ));
            }
            rest = after;
        }
        if !rest.is_empty() {
            return Err(WebAuthnError::AuthenticatorData(format!(
                "{} bytes after its end (extensions follow only when the ED flag is set)",
                rest.len()
            )));
        }
        Ok(AuthenticatorData {
            rp_id_hash: *rp_id_hash,
            flags,
            sign_count: u32::from_be_bytes(*counter),
            attested,
        })
    }

    /// The RP ID hash is SHA-256 of the configured rp_id, compared in constant time.
    fn check_relying_party(&self, rp: &RelyingParty) -> Result<(), WebAuthnError> {
        match bool::from(self.rp_id_hash.ct_eq(&rp_id_hash(&rp.id))) {
            true => Ok(()),
            false => Err(WebAuthnError::RelyingParty),
        }
    }
}

impl AttestedCredential {
    /// The AAGUID, the credential id (1 to 1023 bytes) and the COSE key; returns what follows.
    fn parse(bytes: &[u8]) -> Result<(AttestedCredential, &[u8]), WebAuthnError> {
        let truncated =
            || WebAuthnError::AuthenticatorData("the attested credential data is truncated".into());
        let (aaguid, rest) = bytes.split_first_chunk::<16>().ok_or_else(truncated)?;
        let (length, rest) = rest.split_first_chunk::<2>().ok_or_else(truncated)?;
        let (credential_id, rest) = rest
            .split_at_checked(usize::from(u16::from_be_bytes(*length)))
            .ok_or_else(|| {
                WebAuthnError::AuthenticatorData(
                    "the credential id runs past the authenticator data".into(),
                )
            })?;
        check_credential_id(credential_id).map_err(WebAuthnError::CredentialId)?;
        let (key, rest) = cbor::decode_prefix(rest)
            .map_err(|e| WebAuthnError::Cbor("credential public key", e))?;
        let public_key = PublicKey::from_cose_value(&key).map_err(WebAuthnError::PublicKey)?;
        let credential = AttestedCredential {
            aaguid: *aaguid,
            credential_id: credential_id.to_vec(),
            public_key,
        };
        Ok((credential, rest))
    }
}

/// §7.1 steps 21 and 22 for the two formats accepted: `none` with an empty statement, and
/// `packed` self attestation (`alg` the credential's, `sig` over authData ‖ clientDataHash by
/// the credential's key, checked with the core's verifier).
fn check_statement(
    object: &AttestationObject,
    public_key: &PublicKey,
    rp: &RelyingParty,
    client_data_hash: &[u8; 32],
) -> Result<AttestationFormat, WebAuthnError> {
    match object.format.as_str() {
        "none" => match object.statement.is_empty() {
            true => Ok(AttestationFormat::None),
            false => Err(WebAuthnError::AttestationStatement(
                "format \"none\" with a non-empty statement".into(),
            )),
        },
        "packed" => {
            let mut alg = None;
            let mut signature = None;
            for (key, value) in &object.statement {
                match (key.as_text(), value) {
                    (Some("alg"), Value::Int(n)) => alg = Some(*n),
                    (Some("sig"), Value::Bytes(sig)) => signature = Some(sig.as_slice()),
                    (Some("x5c"), _) => {
                        return Err(WebAuthnError::UnsupportedAttestation(
                            "\"packed\" with a certificate (x5c)".into(),
                        ))
                    }
                    (Some("ecdaaKeyId"), _) => {
                        return Err(WebAuthnError::UnsupportedAttestation(
                            "\"packed\" with ECDAA".into(),
                        ))
                    }
                    _ => {
                        return Err(WebAuthnError::AttestationStatement(format!(
                            "packed statement member {} is not alg (an integer) or sig (bytes)",
                            clip(&format!("{key:?}"))
                        )))
                    }
                }
            }
            let (Some(alg), Some(signature)) = (alg, signature) else {
                return Err(WebAuthnError::AttestationStatement(
                    "packed statement without alg and sig".into(),
                ));
            };
            if alg != public_key.cose_algorithm() {
                return Err(WebAuthnError::AttestationStatement(format!(
                    "packed self attestation with alg {alg}, and the credential's key is {} ({})",
                    public_key.algorithm(),
                    public_key.cose_algorithm()
                )));
            }
            match key_assertion::verify(
                public_key,
                &rp.id,
                &object.auth_data,
                client_data_hash,
                signature,
            ) {
                Ok(_) => Ok(AttestationFormat::PackedSelf),
                Err(AssertionError::BadSignature) => Err(WebAuthnError::AttestationSignature),
                Err(e) => Err(WebAuthnError::AttestationStatement(e.to_string())),
            }
        }
        other => Err(WebAuthnError::UnsupportedAttestation(format!(
            "{:?}",
            clip(other)
        ))),
    }
}

fn parse_credential<R: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<CredentialJson<R>, WebAuthnError> {
    if body.len() > MAX_RESPONSE_JSON {
        return Err(WebAuthnError::TooLarge {
            what: "the answer's JSON",
            size: body.len(),
            max: MAX_RESPONSE_JSON,
        });
    }
    let credential: CredentialJson<R> =
        serde_json::from_slice(body).map_err(|e| WebAuthnError::Json(e.to_string()))?;
    match credential.kind.as_deref() {
        None | Some(PUBLIC_KEY) => Ok(credential),
        Some(other) => Err(WebAuthnError::Json(format!(
            "type {:?} is not \"public-key\"",
            clip(other)
        ))),
    }
}

/// `rawId` decoded, checked to be what `id` says.
fn credential_ids(id: &str, raw_id: &str) -> Result<Vec<u8>, WebAuthnError> {
    let raw = decode_field("rawId", raw_id, MAX_CREDENTIAL_ID)?;
    let named = decode_field("id", id, MAX_CREDENTIAL_ID)?;
    if named != raw {
        return Err(WebAuthnError::CredentialIdMismatch("id is not rawId"));
    }
    check_credential_id(&raw).map_err(WebAuthnError::CredentialId)?;
    Ok(raw)
}

/// A base64url field, refused (before decoding) when it could hold more than `max` bytes.
fn decode_field(field: &'static str, text: &str, max: usize) -> Result<Vec<u8>, WebAuthnError> {
    let max_encoded = (max * 4).div_ceil(3);
    if text.len() > max_encoded {
        return Err(WebAuthnError::TooLarge {
            what: field,
            size: text.len() * 3 / 4,
            max,
        });
    }
    Base64UrlUnpadded::decode_vec(text).map_err(|_| WebAuthnError::Base64(field))
}

/// PublicKeyCredentialDescriptors of the keys made for this relying party.
fn descriptors(rp: &RelyingParty, keys: &[SecurityKey]) -> Vec<Json> {
    keys.iter()
        .filter(|k| k.rp_id == rp.id)
        .map(|k| json!({ "type": PUBLIC_KEY, "id": Base64UrlUnpadded::encode_string(&k.credential_id) }))
        .collect()
}

fn uv_word(user_verification: UserVerification) -> &'static str {
    match user_verification {
        UserVerification::Discouraged => "discouraged",
        UserVerification::Preferred => "preferred",
        UserVerification::Required => "required",
    }
}

/// A lower-case DNS name: labels of letters, digits and inner hyphens, with a dot between and
/// at least one letter somewhere (so no IPv4 address).
fn is_domain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && name.bytes().any(|b| b.is_ascii_lowercase())
}

/// An origin as browsers serialize it (RFC 6454 §6.2), on `rp_id` or a subdomain of it.
fn check_origin(origin: &str, rp_id: &str) -> Result<(), String> {
    let shape = || {
        format!(
            "origin {origin:?} must be written as the browser serializes it: \
             \"https://{rp_id}\" or \"https://{rp_id}:PORT\" (lower case, no path or trailing \
             slash, no default port)"
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(shape)?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return Err(shape()),
    };
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    if let Some(port) = port {
        let valid = !port.is_empty()
            && !port.starts_with('0')
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok();
        if !valid || port == default_port {
            return Err(shape());
        }
    }
    if !is_domain(host) {
        return Err(shape());
    }
    if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
        return Err(format!(
            "origin {origin:?} is not on rp_id {rp_id:?} or a subdomain of it: browsers refuse \
             the ceremony"
        ));
    }
    Ok(())
}

/// An untrusted string for the log: at most 64 characters (Display escapes it with `{:?}`).
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Challenges are 32 random bytes.
pub const CHALLENGE_LEN: usize = 32;
/// The most a page may post as a credential's JSON; cap the HTTP body there too.
pub const MAX_RESPONSE_JSON: usize = 64 * 1024;
/// clientDataJSON: type, challenge, origin and a few more members; browsers send a few hundred
/// bytes.
pub const MAX_CLIENT_DATA_JSON: usize = 4 * 1024;
/// Room for a packed statement with a certificate chain, so that it is refused by name.
pub const MAX_ATTESTATION_OBJECT: usize = 16 * 1024;
pub const MAX_AUTHENTICATOR_DATA: usize = 4 * 1024;
/// A DER ECDSA signature is at most 72 bytes, EdDSA's 64.
pub const MAX_SIGNATURE: usize = 256;
/// WebAuthn user handles are at most 64 bytes (§5.4.3).
pub const MAX_USER_HANDLE: usize = 64;
/// How long a relying party's name may be.
pub const MAX_RP_NAME: usize = 64;

const CREATE: &str = "webauthn.create";
const GET: &str = "webauthn.get";
const PUBLIC_KEY: &str = "public-key";
const ALG_ES256: i64 = -7;
const ALG_EDDSA: i64 = -8;
/// Flag bits of authenticator data (§6.1).
const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Signer as _;

    use twofold_core::key_assertion::{check, KeyRefusal};

    use super::*;

    const RP_ID: &str = "wiki.example";
    const ORIGIN: &str = "https://wiki.example";
    const NOW: u64 = 1_800_000_000;

    fn rp() -> RelyingParty {
        RelyingParty::new(RP_ID, "Wiki", ORIGIN).unwrap()
    }

    fn alice() -> UserName {
        UserName::parse("alice").unwrap()
    }

    fn name() -> KeyName {
        KeyName::parse("blue").unwrap()
    }

    fn challenge(byte: u8) -> Challenge {
        Challenge::from_bytes([byte; CHALLENGE_LEN])
    }

    fn b64(bytes: &[u8]) -> String {
        Base64UrlUnpadded::encode_string(bytes)
    }

    /// A credential's private key, as an authenticator holds it.
    enum TestKey {
        EdDsa(ed25519_dalek::SigningKey),
        Es256(p256::ecdsa::SigningKey),
    }

    impl TestKey {
        fn es256(seed: u8) -> TestKey {
            TestKey::Es256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
        }

        fn eddsa(seed: u8) -> TestKey {
            TestKey::EdDsa(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
        }

        fn public_key(&self) -> PublicKey {
            match self {
                TestKey::EdDsa(key) => PublicKey::ed25519(&key.verifying_key().to_bytes()).unwrap(),
                TestKey::Es256(key) => {
                    PublicKey::es256(key.verifying_key().to_sec1_point(false).as_bytes()).unwrap()
                }
            }
        }

        fn sign(&self, message: &[u8]) -> Vec<u8> {
            match self {
                TestKey::EdDsa(key) => ed25519_dalek::Signer::sign(key, message)
                    .to_bytes()
                    .to_vec(),
                TestKey::Es256(key) => {
                    let signature: p256::ecdsa::DerSignature = key.sign(message);
                    signature.as_bytes().to_vec()
                }
            }
        }
    }

    /// clientDataJSON as a browser writes it, with `extra` members after the usual ones.
    fn client_data(
        kind: &str,
        challenge: &Challenge,
        origin: &str,
        extra: &[(&str, Json)],
    ) -> Vec<u8> {
        let mut members = serde_json::Map::new();
        members.insert("type".into(), kind.into());
        members.insert("challenge".into(), challenge.encoded().into());
        members.insert("origin".into(), origin.into());
        members.insert("crossOrigin".into(), false.into());
        for (key, value) in extra {
            members.insert((*key).into(), value.clone());
        }
        Json::Object(members).to_string().into_bytes()
    }

    /// The statement a registration carries.
    enum Statement {
        None,
        PackedSelf,
        Given(Value),
    }

    /// A registration as a browser posts it, every part adjustable.
    struct Reg {
        key: TestKey,
        challenge: Challenge,
        kind: &'static str,
        origin: String,
        extra: Vec<(&'static str, Json)>,
        rp_id: String,
        flags: u8,
        counter: u32,
        credential_id: Vec<u8>,
        raw_id: Option<Vec<u8>>,
        cose_key: Option<Vec<u8>>,
        after_key: Vec<u8>,
        format: String,
        statement: Statement,
        require_uv: bool,
    }

    impl Reg {
        fn new(key: TestKey, statement: Statement) -> Reg {
            let format = match statement {
                Statement::None => "none",
                _ => "packed",
            };
            Reg {
                key,
                challenge: challenge(7),
                kind: CREATE,
                origin: ORIGIN.into(),
                extra: Vec::new(),
                rp_id: RP_ID.into(),
                flags: FLAG_UP | FLAG_AT,
                counter: 0,
                credential_id: vec![0xc5; 48],
                raw_id: None,
                cose_key: None,
                after_key: Vec::new(),
                format: format.into(),
                statement,
                require_uv: false,
            }
        }

        fn client_data_json(&self) -> Vec<u8> {
            client_data(self.kind, &self.challenge, &self.origin, &self.extra)
        }

        fn auth_data(&self) -> Vec<u8> {
            let mut data = rp_id_hash(&self.rp_id).to_vec();
            data.push(self.flags);
            data.extend(self.counter.to_be_bytes());
            data.extend([0xaa; 16]);
            data.extend((self.credential_id.len() as u16).to_be_bytes());
            data.extend(&self.credential_id);
            match &self.cose_key {
                Some(cose) => data.extend(cose),
                None => data.extend(self.key.public_key().to_cose()),
            }
            data.extend(&self.after_key);
            data
        }

        /// The packed self statement over `auth_data`.
        fn packed_statement(&self, auth_data: &[u8]) -> Value {
            let client_data_hash = Sha256::digest(self.client_data_json());
            let signature = self.key.sign(&[auth_data, &client_data_hash[..]].concat());
            Value::text_map([
                ("alg", Value::Int(self.key.public_key().cose_algorithm())),
                ("sig", Value::Bytes(signature)),
            ])
        }

        fn attestation_object_with(&self, auth_data: &[u8]) -> Vec<u8> {
            let statement = match &self.statement {
                Statement::None => Value::Map(Vec::new()),
                Statement::PackedSelf => self.packed_statement(auth_data),
                Statement::Given(value) => value.clone(),
            };
            attestation_object(&self.format, auth_data, statement)
        }

        fn json(&self) -> Vec<u8> {
            let raw_id = self.raw_id.as_ref().unwrap_or(&self.credential_id);
            registration_json(
                &b64(raw_id),
                &b64(raw_id),
                &b64(&self.client_data_json()),
                &b64(&self.attestation_object_with(&self.auth_data())),
            )
        }

        fn verify(&self) -> Result<Registered, WebAuthnError> {
            verify_registration(&self.json(), self.require_uv)
        }
    }

    fn attestation_object(format: &str, auth_data: &[u8], statement: Value) -> Vec<u8> {
        cbor::encode(&Value::text_map([
            ("fmt", Value::Text(format.into())),
            ("attStmt", statement),
            ("authData", Value::Bytes(auth_data.to_vec())),
        ]))
    }

    fn registration_json(id: &str, raw_id: &str, client_data: &str, attestation: &str) -> Vec<u8> {
        json!({
            "id": id,
            "rawId": raw_id,
            "type": "public-key",
            "response": {
                "clientDataJSON": client_data,
                "attestationObject": attestation,
                "transports": ["usb"],
            },
            "authenticatorAttachment": "cross-platform",
            "clientExtensionResults": {},
        })
        .to_string()
        .into_bytes()
    }

    fn verify_registration(body: &[u8], require_uv: bool) -> Result<Registered, WebAuthnError> {
        RegistrationResponse::from_json(body)?.verify(&rp(), &challenge(7), name(), require_uv, NOW)
    }

    /// An assertion as a browser posts it, every part adjustable.
    struct Get<'a> {
        key: &'a TestKey,
        credential_id: Vec<u8>,
        challenge: Challenge,
        kind: &'static str,
        origin: String,
        extra: Vec<(&'static str, Json)>,
        rp_id: String,
        flags: u8,
        counter: u32,
        user_handle: Json,
    }

    impl Get<'_> {
        fn new(key: &TestKey) -> Get<'_> {
            Get {
                key,
                credential_id: vec![0xc5; 48],
                challenge: challenge(9),
                kind: GET,
                origin: ORIGIN.into(),
                extra: Vec::new(),
                rp_id: RP_ID.into(),
                flags: FLAG_UP,
                counter: 1,
                user_handle: Json::Null,
            }
        }

        fn auth_data(&self) -> Vec<u8> {
            let mut data = rp_id_hash(&self.rp_id).to_vec();
            data.push(self.flags);
            data.extend(self.counter.to_be_bytes());
            data
        }

        fn json_with(&self, auth_data: &[u8]) -> Vec<u8> {
            let client_data_json =
                client_data(self.kind, &self.challenge, &self.origin, &self.extra);
            let hash = Sha256::digest(&client_data_json);
            let signature = self.key.sign(&[auth_data, &hash[..]].concat());
            assertion_json(
                &self.credential_id,
                &b64(&client_data_json),
                &b64(auth_data),
                &b64(&signature),
                self.user_handle.clone(),
            )
        }

        fn json(&self) -> Vec<u8> {
            self.json_with(&self.auth_data())
        }

        fn verify(&self) -> Result<Presented, WebAuthnError> {
            verify_assertion(&self.json())
        }
    }

    fn assertion_json(
        credential_id: &[u8],
        client_data: &str,
        auth_data: &str,
        signature: &str,
        user_handle: Json,
    ) -> Vec<u8> {
        json!({
            "id": b64(credential_id),
            "rawId": b64(credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": client_data,
                "authenticatorData": auth_data,
                "signature": signature,
                "userHandle": user_handle,
            },
            "clientExtensionResults": {},
        })
        .to_string()
        .into_bytes()
    }

    fn verify_assertion(body: &[u8]) -> Result<Presented, WebAuthnError> {
        AssertionResponse::from_json(body)?.verify(&rp(), &challenge(9))
    }

    /// The key a registration of `key` stores.
    fn stored(key: &TestKey, user_verification: bool) -> SecurityKey {
        SecurityKey {
            name: name(),
            credential_id: vec![0xc5; 48],
            public_key: key.public_key(),
            rp_id: RP_ID.into(),
            user_verification,
            added: NOW,
        }
    }

    fn json_value(body: &[u8]) -> Json {
        serde_json::from_slice(body).unwrap()
    }

    fn body(value: &Json) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    // Challenges and the book.

    #[test]
    fn challenges_are_32_random_bytes_in_base64url() {
        let one = Challenge::random().unwrap();
        let two = Challenge::random().unwrap();
        assert_ne!(one, two);
        let encoded = one.encoded();
        assert_eq!(encoded.len(), 43);
        assert!(encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Challenge::parse(&encoded).unwrap(), one);
        assert!(Challenge::parse(&b64(&[1; 16])).is_err());
        assert!(Challenge::parse(&format!("{encoded}=")).is_err());
        assert!(Challenge::parse(&b64(&[1; 33])).is_err());
    }

    #[test]
    fn a_taken_challenge_cannot_be_taken_again() {
        let mut book = ChallengeBook::new(8, 120);
        let issued = book.issue(Purpose::Authenticate, alice(), NOW).unwrap();
        let pending = book.take(&issued, NOW + 1).unwrap();
        assert_eq!(pending.purpose, Purpose::Authenticate);
        assert_eq!(pending.user, alice());
        assert_eq!(pending.challenge, issued);
        assert_eq!(pending.expires, NOW + 120);
        assert_eq!(
            book.take(&issued, NOW + 2),
            Err(WebAuthnError::ChallengeUnknown)
        );
        assert!(book.is_empty());
    }

    #[test]
    fn a_challenge_never_issued_is_unknown() {
        let mut book = ChallengeBook::new(8, 120);
        book.issue_with(challenge(1), Purpose::Authenticate, alice(), NOW);
        assert_eq!(
            book.take(&challenge(2), NOW),
            Err(WebAuthnError::ChallengeUnknown)
        );
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn an_expired_challenge_is_refused_and_gone() {
        let mut book = ChallengeBook::new(8, 120);
        book.issue_with(challenge(1), Purpose::Authenticate, alice(), NOW);
        book.issue_with(challenge(2), Purpose::Authenticate, alice(), NOW);
        assert!(book.take(&challenge(1), NOW + 119).is_ok());
        assert_eq!(
            book.take(&challenge(2), NOW + 120),
            Err(WebAuthnError::ChallengeExpired)
        );
        assert_eq!(
            book.take(&challenge(2), NOW + 1),
            Err(WebAuthnError::ChallengeUnknown)
        );
    }

    #[test]
    fn the_book_never_holds_more_than_its_capacity_and_drops_the_oldest() {
        let mut book = ChallengeBook::new(3, 120);
        for byte in 1..=10 {
            book.issue_with(challenge(byte), Purpose::Authenticate, alice(), NOW);
            assert!(book.len() <= 3);
        }
        for byte in 1..=7 {
            assert_eq!(
                book.take(&challenge(byte), NOW),
                Err(WebAuthnError::ChallengeUnknown)
            );
        }
        for byte in 8..=10 {
            assert!(book.take(&challenge(byte), NOW).is_ok(), "{byte}");
        }
    }

    #[test]
    fn the_book_drops_expired_challenges_before_live_ones() {
        let mut book = ChallengeBook::new(2, 10);
        book.issue_with(challenge(1), Purpose::Authenticate, alice(), NOW);
        book.issue_with(challenge(2), Purpose::Authenticate, alice(), NOW + 5);
        // 1 expired at NOW + 10: it goes, and 2 stays although the book was full.
        book.issue_with(challenge(3), Purpose::Authenticate, alice(), NOW + 11);
        assert_eq!(book.len(), 2);
        assert!(book.take(&challenge(2), NOW + 12).is_ok());
        assert!(book.take(&challenge(3), NOW + 12).is_ok());
        // Many expired at once all go.
        for byte in 10..20 {
            book.issue_with(challenge(byte), Purpose::Authenticate, alice(), NOW);
        }
        book.issue_with(challenge(30), Purpose::Authenticate, alice(), NOW + 100);
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn the_book_keeps_what_a_registration_is_for() {
        let mut book = ChallengeBook::new(8, 120);
        let purpose = Purpose::Register {
            name: name(),
            user_verification: true,
        };
        let issued = book.issue(purpose.clone(), alice(), NOW).unwrap();
        assert_eq!(book.take(&issued, NOW).unwrap().purpose, purpose);
    }

    // The relying party's configuration.

    #[test]
    fn origins_must_be_written_as_browsers_serialize_them() {
        for (id, origin) in [
            ("wiki.example", "https://wiki.example"),
            ("wiki.example", "https://wiki.example:8443"),
            ("wiki.example", "https://login.wiki.example"),
            ("localhost", "http://localhost:9090"),
            ("localhost", "http://localhost"),
        ] {
            let rp = RelyingParty::new(id, "Wiki", origin).unwrap();
            assert_eq!((rp.id(), rp.origin(), rp.name()), (id, origin, "Wiki"));
        }
        for (id, origin) in [
            ("wiki.example", "https://wiki.example/"),
            ("wiki.example", "https://wiki.example/login"),
            ("wiki.example", "https://wiki.example:443"),
            ("wiki.example", "http://wiki.example:80"),
            ("wiki.example", "https://Wiki.example"),
            ("wiki.example", "HTTPS://wiki.example"),
            ("wiki.example", "https://user@wiki.example"),
            ("wiki.example", "https://wiki.example:"),
            ("wiki.example", "https://wiki.example:99999"),
            ("wiki.example", "https://wiki.example:08443"),
            ("wiki.example", "ftp://wiki.example"),
            ("wiki.example", "wiki.example"),
            ("wiki.example", "https://evil.example"),
            ("wiki.example", "https://notwiki.example"),
            ("wiki.example", "https://wiki.example.evil"),
            ("Wiki.example", "https://wiki.example"),
            ("pam://host", "https://host"),
            ("127.0.0.1", "http://127.0.0.1"),
            ("wiki.example:8443", "https://wiki.example:8443"),
            ("", "https://wiki.example"),
        ] {
            assert!(
                matches!(
                    RelyingParty::new(id, "Wiki", origin),
                    Err(WebAuthnError::Config(_))
                ),
                "{id} {origin}"
            );
        }
        for bad_name in ["", "a\nb", &"x".repeat(MAX_RP_NAME + 1)] {
            assert!(
                RelyingParty::new(RP_ID, bad_name, ORIGIN).is_err(),
                "{bad_name:?}"
            );
        }
    }

    // Options.

    #[test]
    fn creation_options_have_the_shape_browsers_parse() {
        let mut console = stored(&TestKey::es256(1), false);
        console.rp_id = "pam://host".into();
        console.credential_id = vec![1; 16];
        let web = stored(&TestKey::es256(2), false);
        let options = creation_options(
            &rp(),
            &alice(),
            &[0x11; 16],
            &challenge(7),
            &[console, web],
            UserVerification::Preferred,
            60_000,
        );
        assert_eq!(
            options,
            json!({
                "rp": { "id": "wiki.example", "name": "Wiki" },
                "user": { "id": b64(&[0x11; 16]), "name": "alice", "displayName": "alice" },
                "challenge": b64(&[7; 32]),
                "pubKeyCredParams": [
                    { "type": "public-key", "alg": -7 },
                    { "type": "public-key", "alg": -8 },
                ],
                "timeout": 60_000,
                "excludeCredentials": [{ "type": "public-key", "id": b64(&[0xc5; 48]) }],
                "authenticatorSelection": {
                    "residentKey": "discouraged",
                    "requireResidentKey": false,
                    "userVerification": "preferred",
                },
                "hints": ["security-key"],
                "attestation": "none",
            })
        );
    }

    #[test]
    fn request_options_allow_this_sites_keys_and_ask_for_the_pin_a_key_needs() {
        let mut console = stored(&TestKey::es256(1), true);
        console.rp_id = "pam://host".into();
        console.credential_id = vec![1; 16];
        let web = stored(&TestKey::es256(2), false);
        let options = request_options(
            &rp(),
            &challenge(9),
            &[console.clone(), web.clone()],
            UserVerification::Discouraged,
            30_000,
        );
        assert_eq!(
            options,
            json!({
                "challenge": b64(&[9; 32]),
                "timeout": 30_000,
                "rpId": "wiki.example",
                "allowCredentials": [{ "type": "public-key", "id": b64(&[0xc5; 48]) }],
                "userVerification": "discouraged",
                "hints": ["security-key"],
            })
        );
        let pin_key = stored(&TestKey::es256(2), true);
        for (setting, word) in [
            (UserVerification::Discouraged, "preferred"),
            (UserVerification::Preferred, "preferred"),
            (UserVerification::Required, "required"),
        ] {
            let options = request_options(
                &rp(),
                &challenge(9),
                std::slice::from_ref(&pin_key),
                setting,
                1,
            );
            assert_eq!(options["userVerification"], word);
        }
    }

    // Registrations accepted.

    #[test]
    fn registrations_with_es256_and_eddsa_none_and_packed_self_are_accepted() {
        for (key, statement, format) in [
            (TestKey::es256(1), Statement::None, AttestationFormat::None),
            (
                TestKey::es256(1),
                Statement::PackedSelf,
                AttestationFormat::PackedSelf,
            ),
            (TestKey::eddsa(1), Statement::None, AttestationFormat::None),
            (
                TestKey::eddsa(1),
                Statement::PackedSelf,
                AttestationFormat::PackedSelf,
            ),
        ] {
            let public_key = key.public_key();
            let mut reg = Reg::new(key, statement);
            reg.counter = 5;
            let registered = reg.verify().unwrap();
            assert_eq!(
                registered,
                Registered {
                    key: SecurityKey {
                        name: name(),
                        credential_id: vec![0xc5; 48],
                        public_key,
                        rp_id: RP_ID.into(),
                        user_verification: false,
                        added: NOW,
                    },
                    sign_count: 5,
                    user_verified: false,
                    aaguid: [0xaa; 16],
                    attestation: format,
                }
            );
        }
    }

    #[test]
    fn a_registration_that_must_verify_the_user_records_it() {
        let mut reg = Reg::new(TestKey::es256(1), Statement::PackedSelf);
        reg.flags |= FLAG_UV;
        reg.require_uv = true;
        let registered = reg.verify().unwrap();
        assert!(registered.user_verified && registered.key.user_verification);
        // Verified without being asked to: the key is not held to it later.
        reg.require_uv = false;
        let registered = reg.verify().unwrap();
        assert!(registered.user_verified && !registered.key.user_verification);
    }

    #[test]
    fn extensions_after_the_key_are_accepted_when_the_ed_flag_says_so() {
        let mut reg = Reg::new(TestKey::eddsa(1), Statement::PackedSelf);
        reg.flags |= FLAG_ED;
        reg.after_key = cbor::encode(&Value::text_map([("credProtect", Value::Int(2))]));
        assert!(reg.verify().is_ok());
        // Backed up and eligible is fine too.
        reg.flags |= FLAG_BE | FLAG_BS;
        assert!(reg.verify().is_ok());
    }

    #[test]
    fn unknown_members_of_the_json_and_the_client_data_are_ignored() {
        let mut reg = Reg::new(TestKey::es256(1), Statement::None);
        reg.extra = vec![("other_keys_can_be_added_here", json!("do not compare"))];
        let mut value = json_value(&reg.json());
        value["response"]["publicKeyAlgorithm"] = json!(-7);
        value["somethingNew"] = json!({ "x": 1 });
        assert!(verify_registration(&body(&value), false).is_ok());
        // And the type member may be left out.
        value.as_object_mut().unwrap().remove("type");
        assert!(verify_registration(&body(&value), false).is_ok());
    }

    // Registrations refused: the client data.

    #[test]
    fn a_registration_of_the_wrong_type_is_refused() {
        for kind in [GET, "webauthn.Create", "", "payment.get"] {
            let mut reg = Reg::new(TestKey::es256(1), Statement::None);
            reg.kind = kind;
            assert!(
                matches!(reg.verify(), Err(WebAuthnError::WrongType { found, .. }) if found == kind),
                "{kind}"
            );
        }
    }

    #[test]
    fn a_registration_for_another_challenge_is_refused() {
        let mut reg = Reg::new(TestKey::es256(1), Statement::PackedSelf);
        reg.challenge = challenge(8);
        assert_eq!(reg.verify(), Err(WebAuthnError::ChallengeMismatch));
        // One bit off.
        let mut bytes = [7; 32];
        bytes[31] ^= 1;
        reg.challenge = Challenge::from_bytes(bytes);
        assert_eq!(reg.verify(), Err(WebAuthnError::ChallengeMismatch));
    }

    #[test]
    fn origins_differing_in_scheme_host_port_or_slash_are_refused() {
        for origin in [
            "http://wiki.example",
            "https://wiki.example/",
            "https://wiki.example:443",
            "https://wiki.example:8443",
            "https://WIKI.EXAMPLE",
            "https://login.wiki.example",
            "https://evil.example",
            "https://wiki.example.evil.example",
            "null",
            "",
        ] {
            let mut reg = Reg::new(TestKey::es256(1), Statement::None);
            reg.origin = origin.into();
            assert!(
                matches!(reg.verify(), Err(WebAuthnError::WrongOrigin { found, expected })
                    if found == origin && expected == ORIGIN),
                "{origin}"
            );
        }
    }

    #[test]
    fn a_registration_in_a_cross_origin_frame_is_refused() {
        for extra in [
            vec![("crossOrigin", json!(true))],
            vec![("topOrigin", json!("https://evil.example"))],
        ] {
            let mut reg = Reg::new(TestKey::es256(1), Statement::None);
            reg.extra = extra;
            assert_eq!(reg.verify(), Err(WebAuthnError::CrossOrigin));
        }
    }

    #[test]
    fn client_data_that_is_not_the_json_it_must_be_is_refused() {
        let reg = Reg::new(TestKey::es256(1), Statement::None);
        let attestation = b64(&reg.attestation_object_with(&reg.auth_data()));
        let id = b64(&reg.credential_id);
        let challenge = challenge(7).encoded();
        for (client_data, refused) in [
            (b"not json".to_vec(), "ClientData"),
            (b"\xff\xfe{}".to_vec(), "ClientData"),
            (br#"{"type":"webauthn.create","origin":"https://wiki.example"}"#.to_vec(), "ClientData"),
            (
                format!(r#"{{"type":"webauthn.create","challenge":"{challenge}"}}"#).into_bytes(),
                "ClientData",
            ),
            (
                format!(r#"{{"type":7,"challenge":"{challenge}","origin":"{ORIGIN}"}}"#).into_bytes(),
                "ClientData",
            ),
            (
                format!(
                    r#"{{"type":"webauthn.create","challenge":"{challenge}","origin":"{ORIGIN}","crossOrigin":"no"}}"#
                )
                .into_bytes(),
                "ClientData",
            ),
            (
                format!(
                    r#"{{"type":"webauthn.create","type":"webauthn.create","challenge":"{challenge}","origin":"{ORIGIN}"}}"#
                )
                .into_bytes(),
                "ClientData",
            ),
            (
                format!(r#"{{"type":"webauthn.create","challenge":"{challenge}=","origin":"{ORIGIN}"}}"#)
                    .into_bytes(),
                "Base64",
            ),
            (
                format!(
                    r#"{{"type":"webauthn.create","challenge":"{}","origin":"{ORIGIN}"}}"#,
                    b64(&[7; 16])
                )
                .into_bytes(),
                "ChallengeUnknown",
            ),
        ] {
            let body = registration_json(&id, &id, &b64(&client_data), &attestation);
            let found = format!("{:?}", verify_registration(&body, false));
            assert!(
                found.starts_with(&format!("Err({refused}")),
                "{}: {found}",
                String::from_utf8_lossy(&client_data)
            );
        }
    }

    // Registrations refused: the authenticator data.

    #[test]
    fn a_registration_for_another_relying_party_is_refused() {
        for rp_id in [
            "evil.example",
            "wiki.example.",
            "WIKI.example",
            "pam://wiki.example",
        ] {
            let mut reg = Reg::new(TestKey::es256(1), Statement::PackedSelf);
            reg.rp_id = rp_id.into();
            assert_eq!(reg.verify(), Err(WebAuthnError::RelyingParty), "{rp_id}");
        }
    }

    #[test]
    fn a_registration_without_a_touch_is_refused() {
        let mut reg = Reg::new(TestKey::es256(1), Statement::PackedSelf);
        reg.flags = FLAG_AT | FLAG_UV;
        assert_eq!(reg.verify(), Err(WebAuthnError::NoUserPresence));
    }

    #[test]
    fn a_registration_without_user_verification_is_refused_when_required() {
        let mut reg = Reg::new(TestKey::es256(1), Statement::PackedSelf);
        reg.require_uv = true;
        assert_eq!(reg.verify(), Err(WebAuthnError::NoUserVerification));
    }

    #[test]
    fn a_registration_without_attested_credential_data_is_refused() {
        let reg = Reg::new(TestKey::es256(1), Statement::None);
        // The flag clear and the data gone: a plain 37 bytes.
        let mut auth_data = reg.auth_data()[..37].to_vec();
        auth_data[32] = FLAG_UP;
        let body = registration_json(
            &b64(&reg.credential_id),
            &b64(&reg.credential_id),
            &b64(&reg.client_data_json()),
            &b64(&reg.attestation_object_with(&auth_data)),
        );
        assert_eq!(
            verify_registration(&body, false),
            Err(WebAuthnError::NoAttestedCredential)
        );
        // The flag clear and the data left: bytes after the end.
        let mut reg = Reg::new(TestKey::es256(1), Statement::None);
        reg.flags = FLAG_UP;
        assert!(matches!(
            reg.verify(),
            Err(WebAuthnError::AuthenticatorData(_))
        ));
    }

    #[test]
    fn backed_up_without_backup_eligibility_is_refused() {
        let mut reg = Reg::new(TestKey::es256(1), Statement::None);
        reg.flags |= FLAG_BS;
        assert_eq!(reg.verify(), Err(WebAuthnError::BackupState));
    }

    #[test]
    fn a_credential_id_that_is_not_raw_id_is_refused() {
        let mut reg = Reg::new(TestKey::es256(1), Statement::None);
        reg.raw_id = Some(vec![0xc5; 47]);
        assert!(matches!(
            reg.verify(),
            Err(WebAuthnError::CredentialIdMismatch(_))
        ));
        // id and rawId disagreeing.
        let reg = Reg::new(TestKey::es256(1), Statement::None);
        let mut value = json_value(&reg.json());
        value["id"] = json!(b64(&[0xc6; 48]));
        assert_eq!(
            verify_registration(&body(&value), false),
            Err(WebAuthnError::CredentialIdMismatch("id is not rawId"))
        );
    }

    #[test]
    fn truncated_authenticator_data_is_refused_at_every_length() {
        let mut reg = Reg::new(TestKey::es256(1), Statement::None);
        reg.flags |= FLAG_ED;
        reg.after_key = cbor::encode(&Value::text_map([("credProtect", Value::Int(2))]));
        let full = reg.auth_data();
        assert!(reg.verify().is_ok());
        for length in 0..full.len() {
            let body = registration_json(
                &b64(&reg.credential_id),
                &b64(&reg.credential_id),
                &b64(&reg.client_data_json()),
                &b64(&reg.attestation_object_with(&full[..length])),
            );
            let refused = verify_registration(&body, false);
            assert!(
                matches!(
                    refused,
                    Err(WebAuthnError::AuthenticatorData(_) | WebAuthnError::Cbor(..))
                ),
                "{length}: {refused:?}"
            );
        }
    }

    #[test]
    fn extension_bytes_must_be_announced_and_be_a_map() {
        let mut reg = Reg::new(TestKey::es256(1), Statement::None);
        reg.after_key = cbor::encode(&Value::text_map([("credProtect", Value::Int(2))]));
        assert!(matches!(
            reg.verify(),
            Err(WebAuthnError::AuthenticatorData(_))
        ));
        reg.flags |= FLAG_ED;
        reg.after_key = cbor::encode(&Value::Int(2));
        assert!(matches!(
            reg.verify(),
            Err(WebAuthnError::AuthenticatorData(_))
        ));
        reg.after_key = Vec::new();
        assert!(matches!(
            reg.verify(),
            Err(WebAuthnError::Cbor(_, CborError::Truncated))
        ));
    }

    #[test]
    fn credential_ids_of_no_or_too_many_bytes_are_refused() {
        for length in [0, MAX_CREDENTIAL_ID + 1] {
            let mut reg = Reg::new(TestKey::es256(1), Statement::None);
            reg.credential_id = vec![1; length];
            reg.raw_id = Some(vec![1; 16]);
            assert!(
                matches!(reg.verify(), Err(WebAuthnError::CredentialId(KeyError::BadCredentialId(n))) if n == length),
                "{length}"
            );
        }
        let mut reg = Reg::new(TestKey::es256(1), Statement::None);
        reg.credential_id = vec![1; MAX_CREDENTIAL_ID];
        assert!(reg.verify().is_ok());
    }

    #[test]
    fn keys_twofold_cannot_verify_are_refused() {
        let rs256 = cbor::encode(&Value::int_map([
            (1, Value::Int(3)),
            (3, Value::Int(-257)),
            (-1, Value::Bytes(vec![1; 256])),
            (-2, Value::Bytes(vec![1, 0, 1])),
        ]));
        let mut off_curve = TestKey::es256(1).public_key().to_cose();
        let last = off_curve.len() - 1;
        off_curve[last] ^= 1;
        for cose in [rs256, off_curve, cbor::encode(&Value::Text("key".into()))] {
            let mut reg = Reg::new(TestKey::es256(1), Statement::None);
            reg.cose_key = Some(cose);
            assert!(matches!(reg.verify(), Err(WebAuthnError::PublicKey(_))));
        }
    }

    // Registrations refused: the attestation.

    #[test]
    fn formats_other_than_none_and_packed_are_refused_by_name() {
        for format in [
            "fido-u2f",
            "tpm",
            "android-key",
            "android-safetynet",
            "apple",
            "NONE",
            "Packed",
        ] {
            let mut reg = Reg::new(TestKey::es256(1), Statement::None);
            reg.format = format.into();
            let refused = reg.verify();
            assert!(
                matches!(&refused, Err(WebAuthnError::UnsupportedAttestation(named)) if named.contains(format)),
                "{format}: {refused:?}"
            );
            assert!(refused.unwrap_err().to_string().contains(format));
        }
    }

    #[test]
    fn packed_attestation_with_a_certificate_is_refused() {
        let reg = Reg::new(TestKey::es256(1), Statement::PackedSelf);
        let auth_data = reg.auth_data();
        let Value::Map(mut statement) = reg.packed_statement(&auth_data) else {
            unreachable!()
        };
        statement.push((
            Value::Text("x5c".into()),
            Value::Array(vec![Value::Bytes(vec![0x30, 0x82, 0x01, 0x00])]),
        ));
        let mut reg = reg;
        reg.statement = Statement::Given(Value::Map(statement));
        let refused = reg.verify().unwrap_err();
        assert!(
            matches!(&refused, WebAuthnError::UnsupportedAttestation(named) if named.contains("x5c"))
        );
        assert!(refused
            .to_string()
            .contains("\"packed\" with a certificate (x5c)"));
    }

    #[test]
    fn packed_self_attestation_with_a_bad_signature_is_refused() {
        for key in [TestKey::es256(1), TestKey::eddsa(1)] {
            let mut reg = Reg::new(key, Statement::None);
            let auth_data = reg.auth_data();
            let Value::Map(mut statement) = reg.packed_statement(&auth_data) else {
                unreachable!()
            };
            if let Value::Bytes(sig) = &mut statement[1].1 {
                let last = sig.len() - 1;
                sig[last] ^= 1;
            }
            reg.format = "packed".into();
            reg.statement = Statement::Given(Value::Map(statement));
            assert_eq!(reg.verify(), Err(WebAuthnError::AttestationSignature));
        }
        // Signed over other client data (another challenge): the signature is bad here.
        let mut other = Reg::new(TestKey::es256(1), Statement::None);
        other.challenge = challenge(8);
        let statement = other.packed_statement(&other.auth_data());
        let mut reg = Reg::new(TestKey::es256(1), Statement::Given(statement));
        reg.format = "packed".into();
        assert_eq!(reg.verify(), Err(WebAuthnError::AttestationSignature));
    }

    #[test]
    fn packed_statements_of_the_wrong_shape_are_refused() {
        let key_alg_mismatch =
            Value::text_map([("alg", Value::Int(-7)), ("sig", Value::Bytes(vec![0; 64]))]);
        let no_sig = Value::text_map([("alg", Value::Int(-8))]);
        let no_alg = Value::text_map([("sig", Value::Bytes(vec![0; 64]))]);
        let extra = Value::text_map([
            ("alg", Value::Int(-8)),
            ("sig", Value::Bytes(vec![0; 64])),
            ("ver", Value::Text("2.0".into())),
        ]);
        let sig_as_text =
            Value::text_map([("alg", Value::Int(-8)), ("sig", Value::Text("x".into()))]);
        for statement in [
            key_alg_mismatch,
            no_sig,
            no_alg,
            extra,
            sig_as_text,
            Value::Map(Vec::new()),
        ] {
            let mut reg = Reg::new(TestKey::eddsa(1), Statement::Given(statement.clone()));
            reg.format = "packed".into();
            assert!(
                matches!(reg.verify(), Err(WebAuthnError::AttestationStatement(_))),
                "{statement:?}"
            );
        }
        let ecdaa = Value::text_map([
            ("alg", Value::Int(-8)),
            ("sig", Value::Bytes(vec![0; 64])),
            ("ecdaaKeyId", Value::Bytes(vec![0; 32])),
        ]);
        let mut reg = Reg::new(TestKey::eddsa(1), Statement::Given(ecdaa));
        reg.format = "packed".into();
        assert!(matches!(
            reg.verify(),
            Err(WebAuthnError::UnsupportedAttestation(_))
        ));
    }

    #[test]
    fn none_attestation_with_a_statement_is_refused() {
        let reg = Reg::new(TestKey::es256(1), Statement::None);
        let statement = reg.packed_statement(&reg.auth_data());
        let mut reg = Reg::new(TestKey::es256(1), Statement::Given(statement));
        reg.format = "none".into();
        assert!(matches!(
            reg.verify(),
            Err(WebAuthnError::AttestationStatement(_))
        ));
    }

    #[test]
    fn attestation_objects_that_are_not_the_cbor_they_must_be_are_refused() {
        let reg = Reg::new(TestKey::es256(1), Statement::None);
        let auth_data = reg.auth_data();
        let good = reg.attestation_object_with(&auth_data);
        let mut trailing = good.clone();
        trailing.push(0);
        let mut wrong_types = Vec::new();
        for (fmt, stmt, data) in [
            (
                Value::Int(1),
                Value::Map(Vec::new()),
                Value::Bytes(auth_data.clone()),
            ),
            (
                Value::Text("none".into()),
                Value::Array(Vec::new()),
                Value::Bytes(auth_data.clone()),
            ),
            (
                Value::Text("none".into()),
                Value::Map(Vec::new()),
                Value::Text("data".into()),
            ),
        ] {
            wrong_types.push(cbor::encode(&Value::text_map([
                ("fmt", fmt),
                ("attStmt", stmt),
                ("authData", data),
            ])));
        }
        let missing = cbor::encode(&Value::text_map([("fmt", Value::Text("none".into()))]));
        let array = cbor::encode(&Value::Array(vec![Value::Text("none".into())]));
        for (object, cbor_error) in [
            (vec![0xff], true),
            (good[..good.len() / 2].to_vec(), true),
            (trailing, true),
            (Vec::new(), true),
            (missing, false),
            (array, false),
        ]
        .into_iter()
        .chain(wrong_types.into_iter().map(|o| (o, false)))
        {
            let body = registration_json(
                &b64(&reg.credential_id),
                &b64(&reg.credential_id),
                &b64(&reg.client_data_json()),
                &b64(&object),
            );
            let refused = verify_registration(&body, false);
            match cbor_error {
                true => assert!(
                    matches!(refused, Err(WebAuthnError::Cbor("attestation object", _))),
                    "{refused:?}"
                ),
                false => assert!(
                    matches!(refused, Err(WebAuthnError::AttestationObject(_))),
                    "{refused:?}"
                ),
            }
        }
    }

    // Registrations refused: the JSON and its base64url.

    #[test]
    fn malformed_base64_in_any_field_is_refused() {
        let reg = Reg::new(TestKey::es256(1), Statement::None);
        let good = json_value(&reg.json());
        for (pointer, field) in [
            ("/id", "id"),
            ("/rawId", "rawId"),
            ("/response/clientDataJSON", "response.clientDataJSON"),
            ("/response/attestationObject", "response.attestationObject"),
        ] {
            let text = good.pointer(pointer).unwrap().as_str().unwrap().to_string();
            for bad in [
                format!("{text}="),
                format!("{text}=="),
                text.replacen(|c: char| c.is_ascii_alphanumeric(), "+", 1),
                format!("/{text}"),
                format!("{text}!"),
                format!(" {text}"),
                format!("{}A", text),
            ] {
                let mut value = good.clone();
                *value.pointer_mut(pointer).unwrap() = json!(bad);
                let refused = verify_registration(&body(&value), false);
                // A base64 error, or (a valid encoding of other bytes) a mismatch or parse error:
                // never accepted.
                assert!(refused.is_err(), "{pointer} {bad}");
                if bad.contains(['=', '+', '/', '!', ' ']) {
                    assert_eq!(
                        refused,
                        Err(WebAuthnError::Base64(field)),
                        "{pointer} {bad}"
                    );
                }
            }
        }
    }

    #[test]
    fn json_that_is_not_a_credentials_is_refused() {
        let reg = Reg::new(TestKey::es256(1), Statement::None);
        let good = json_value(&reg.json());
        let mut missing_raw_id = good.clone();
        missing_raw_id.as_object_mut().unwrap().remove("rawId");
        let mut missing_attestation = good.clone();
        missing_attestation["response"]
            .as_object_mut()
            .unwrap()
            .remove("attestationObject");
        let mut wrong_type = good.clone();
        wrong_type["type"] = json!("password");
        let mut number_id = good.clone();
        number_id["rawId"] = json!(5);
        let text = good.to_string();
        let duplicate = text.replacen("{", &format!("{{\"id\":{},", good["id"]), 1);
        for bad in [
            b"".to_vec(),
            b"null".to_vec(),
            b"[]".to_vec(),
            b"{".to_vec(),
            body(&missing_raw_id),
            body(&missing_attestation),
            body(&wrong_type),
            body(&number_id),
            duplicate.into_bytes(),
        ] {
            let refused = verify_registration(&bad, false);
            assert!(
                matches!(refused, Err(WebAuthnError::Json(_))),
                "{}: {refused:?}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    #[test]
    fn oversized_inputs_are_refused() {
        let reg = Reg::new(TestKey::es256(1), Statement::None);
        let good = json_value(&reg.json());
        // The whole body.
        let mut padded = good.clone();
        padded["padding"] = json!("x".repeat(MAX_RESPONSE_JSON));
        assert!(matches!(
            verify_registration(&body(&padded), false),
            Err(WebAuthnError::TooLarge {
                what: "the answer's JSON",
                ..
            })
        ));
        // Each field.
        let too_long = |max: usize| b64(&vec![1; max + 1]);
        for (pointer, max) in [
            ("/rawId", MAX_CREDENTIAL_ID),
            ("/response/clientDataJSON", MAX_CLIENT_DATA_JSON),
            ("/response/attestationObject", MAX_ATTESTATION_OBJECT),
        ] {
            let mut value = good.clone();
            *value.pointer_mut(pointer).unwrap() = json!(too_long(max));
            let refused = verify_registration(&body(&value), false);
            assert!(
                matches!(refused, Err(WebAuthnError::TooLarge { max: m, .. }) if m == max),
                "{pointer}: {refused:?}"
            );
        }
        // Client data at its cap is parsed; one byte more is not.
        let mut reg = Reg::new(TestKey::es256(1), Statement::None);
        let base = reg.client_data_json().len();
        reg.extra = vec![("pad", json!("x".repeat(MAX_CLIENT_DATA_JSON - base - 9)))];
        assert_eq!(reg.client_data_json().len(), MAX_CLIENT_DATA_JSON);
        assert!(reg.verify().is_ok());
        reg.extra = vec![("pad", json!("x".repeat(MAX_CLIENT_DATA_JSON - base - 8)))];
        assert!(matches!(reg.verify(), Err(WebAuthnError::TooLarge { .. })));
    }

    // Assertions.

    #[test]
    fn assertions_by_es256_and_eddsa_keys_pass_the_core_check() {
        for key in [TestKey::es256(3), TestKey::eddsa(3)] {
            let stored = stored(&key, false);
            let mut get = Get::new(&key);
            get.counter = 41;
            let presented = get.verify().unwrap();
            assert_eq!(presented.assertion.credential_id, vec![0xc5; 48]);
            let accepted = check(
                std::slice::from_ref(&stored),
                |_| Some(40),
                &presented.assertion,
                &presented.client_data_hash,
            )
            .unwrap();
            assert_eq!((accepted.key, accepted.verified.sign_count), (0, 41));
            // The same assertion, presented again: the counter did not move.
            let refused = check(
                &[stored],
                |_| Some(41),
                &presented.assertion,
                &presented.client_data_hash,
            );
            assert!(matches!(refused, Err(KeyRefusal::CounterRegressed { .. })));
        }
    }

    #[test]
    fn an_assertion_returns_its_user_handle() {
        let key = TestKey::es256(3);
        let mut get = Get::new(&key);
        let response = AssertionResponse::from_json(&get.json()).unwrap();
        assert_eq!(response.user_handle(), None);
        assert_eq!(response.credential_id(), &[0xc5; 48]);
        get.user_handle = json!(b64(&[0x11; 16]));
        let response = AssertionResponse::from_json(&get.json()).unwrap();
        assert_eq!(response.user_handle(), Some(&[0x11; 16][..]));
        assert_eq!(response.challenge(), &challenge(9));
        get.user_handle = json!(b64(&[0x11; MAX_USER_HANDLE + 1]));
        assert!(matches!(
            AssertionResponse::from_json(&get.json()),
            Err(WebAuthnError::TooLarge {
                what: "response.userHandle",
                ..
            })
        ));
    }

    #[test]
    fn assertions_with_the_wrong_client_data_are_refused() {
        let key = TestKey::es256(3);
        let mut get = Get::new(&key);
        get.kind = CREATE;
        assert!(matches!(get.verify(), Err(WebAuthnError::WrongType { .. })));
        let mut get = Get::new(&key);
        get.challenge = challenge(7);
        assert_eq!(get.verify(), Err(WebAuthnError::ChallengeMismatch));
        for origin in [
            "http://wiki.example",
            "https://wiki.example/",
            "https://wiki.example:444",
        ] {
            let mut get = Get::new(&key);
            get.origin = origin.into();
            assert!(
                matches!(get.verify(), Err(WebAuthnError::WrongOrigin { .. })),
                "{origin}"
            );
        }
        let mut get = Get::new(&key);
        get.extra = vec![("crossOrigin", json!(true))];
        assert_eq!(get.verify(), Err(WebAuthnError::CrossOrigin));
        get.extra = vec![("topOrigin", json!("https://evil.example"))];
        assert_eq!(get.verify(), Err(WebAuthnError::CrossOrigin));
    }

    #[test]
    fn an_assertion_made_for_a_console_key_cannot_sign_in_on_the_web() {
        let key = TestKey::es256(3);
        let mut console = stored(&key, false);
        console.rp_id = "pam://host".into();
        let mut get = Get::new(&key);
        get.rp_id = "pam://host".into();
        // The client data is the web's, the signature the key's: the core's check alone would
        // take it, for the key's own rp_id.
        assert_eq!(get.verify(), Err(WebAuthnError::RelyingParty));
        let response = AssertionResponse::from_json(&get.json()).unwrap();
        let hash: [u8; 32] = Sha256::digest(&response.client_data_json).into();
        let assertion = Assertion {
            credential_id: response.raw_id.clone(),
            authenticator_data: response.authenticator_data.clone(),
            signature: response.signature.clone(),
        };
        assert!(check(&[console], |_| None, &assertion, &hash).is_ok());
    }

    #[test]
    fn assertions_with_malformed_authenticator_data_are_refused() {
        let key = TestKey::es256(3);
        let get = Get::new(&key);
        let full = get.auth_data();
        for length in 0..full.len() {
            assert!(
                matches!(
                    verify_assertion(&get.json_with(&full[..length])),
                    Err(WebAuthnError::AuthenticatorData(_))
                ),
                "{length}"
            );
        }
        let mut trailing = full.clone();
        trailing.push(0xa0);
        assert!(matches!(
            verify_assertion(&get.json_with(&trailing)),
            Err(WebAuthnError::AuthenticatorData(_))
        ));
        // Announced extensions are fine.
        let mut extended = full.clone();
        extended[32] |= FLAG_ED;
        extended.push(0xa0);
        assert!(verify_assertion(&get.json_with(&extended)).is_ok());
        // Attested credential data has no place in an assertion.
        let mut attested = full.clone();
        attested[32] |= FLAG_AT;
        attested.extend([0; 16]);
        attested.extend([0, 48]);
        attested.extend([0xc5; 48]);
        attested.extend(key.public_key().to_cose());
        assert!(matches!(
            verify_assertion(&get.json_with(&attested)),
            Err(WebAuthnError::AuthenticatorData(_))
        ));
        let mut backup = full.clone();
        backup[32] |= FLAG_BS;
        assert_eq!(
            verify_assertion(&get.json_with(&backup)),
            Err(WebAuthnError::BackupState)
        );
        let mut get = Get::new(&key);
        get.rp_id = "evil.example".into();
        assert_eq!(get.verify(), Err(WebAuthnError::RelyingParty));
    }

    #[test]
    fn assertions_the_core_check_refuses_are_refused_there() {
        let key = TestKey::es256(3);
        let stored = stored(&key, true);
        let check_one = |body: &[u8]| {
            let presented = verify_assertion(body)?;
            Ok::<_, WebAuthnError>(check(
                std::slice::from_ref(&stored),
                |_| None,
                &presented.assertion,
                &presented.client_data_hash,
            ))
        };
        let mut get = Get::new(&key);
        get.flags = FLAG_UP | FLAG_UV;
        assert!(check_one(&get.json()).unwrap().is_ok());
        // No touch, no PIN, a signature of other bytes, another credential.
        get.flags = FLAG_UV;
        assert_eq!(
            check_one(&get.json()).unwrap().unwrap_err(),
            KeyRefusal::Assertion(AssertionError::NoUserPresence)
        );
        get.flags = FLAG_UP;
        assert_eq!(
            check_one(&get.json()).unwrap().unwrap_err(),
            KeyRefusal::NoUserVerification
        );
        get.flags = FLAG_UP | FLAG_UV;
        let mut value = json_value(&get.json());
        let other = Get::new(&key).json_with(&[&get.auth_data()[..36], &[9]].concat());
        value["response"]["signature"] = json_value(&other)["response"]["signature"].clone();
        assert_eq!(
            check_one(&body(&value)).unwrap().unwrap_err(),
            KeyRefusal::Assertion(AssertionError::BadSignature)
        );
        get.credential_id = vec![0xc6; 48];
        assert_eq!(
            check_one(&get.json()).unwrap().unwrap_err(),
            KeyRefusal::UnknownCredential
        );
    }

    #[test]
    fn assertion_json_that_is_malformed_or_oversized_is_refused() {
        let key = TestKey::es256(3);
        let good = json_value(&Get::new(&key).json());
        for (pointer, bad, refused) in [
            ("/response/signature", json!(""), "Json"),
            ("/response/signature", json!("AAAA="), "Base64"),
            (
                "/response/signature",
                json!(b64(&[1; MAX_SIGNATURE + 1])),
                "TooLarge",
            ),
            ("/response/authenticatorData", json!("+++"), "Base64"),
            (
                "/response/authenticatorData",
                json!(b64(&vec![1; MAX_AUTHENTICATOR_DATA + 1])),
                "TooLarge",
            ),
            ("/response/clientDataJSON", json!(b64(b"{}")), "ClientData"),
            ("/response/userHandle", json!("a b"), "Base64"),
            ("/response/userHandle", json!(7), "Json"),
            ("/rawId", json!(""), "CredentialId"),
            ("/response", json!({}), "Json"),
        ] {
            let mut value = good.clone();
            *value.pointer_mut(pointer).unwrap() = bad.clone();
            if pointer == "/rawId" {
                value["id"] = bad.clone();
            }
            let found = format!("{:?}", verify_assertion(&body(&value)));
            assert!(
                found.starts_with(&format!("Err({refused}")),
                "{pointer} {bad}: {found}"
            );
        }
    }

    // The whole flow, as the handlers will run it.

    #[test]
    fn a_key_registered_through_the_book_signs_in_once_per_challenge() {
        for key in [TestKey::es256(5), TestKey::eddsa(5)] {
            let rp = rp();
            let mut book = ChallengeBook::new(16, 120);
            let purpose = Purpose::Register {
                name: name(),
                user_verification: false,
            };
            let issued = book.issue(purpose, alice(), NOW).unwrap();
            let options = creation_options(
                &rp,
                &alice(),
                &[1; 16],
                &issued,
                &[],
                UserVerification::Preferred,
                60_000,
            );
            let mut reg = Reg::new(key, Statement::PackedSelf);
            reg.challenge = Challenge::parse(options["challenge"].as_str().unwrap()).unwrap();
            let response = RegistrationResponse::from_json(&reg.json()).unwrap();
            let pending = book.take(response.challenge(), NOW + 10).unwrap();
            assert_eq!(pending.user, alice());
            let Purpose::Register {
                name,
                user_verification,
            } = pending.purpose
            else {
                panic!("issued for a registration");
            };
            let registered = response
                .verify(&rp, &pending.challenge, name, user_verification, NOW + 10)
                .unwrap();
            // The answer again: its challenge is spent.
            let again = RegistrationResponse::from_json(&reg.json()).unwrap();
            assert_eq!(
                book.take(again.challenge(), NOW + 11),
                Err(WebAuthnError::ChallengeUnknown)
            );

            let keys = vec![registered.key];
            let issued = book
                .issue(Purpose::Authenticate, alice(), NOW + 20)
                .unwrap();
            let options = request_options(&rp, &issued, &keys, UserVerification::Preferred, 60_000);
            let allowed = options["allowCredentials"][0]["id"].as_str().unwrap();
            let mut get = Get::new(&reg.key);
            get.credential_id = Base64UrlUnpadded::decode_vec(allowed).unwrap();
            get.challenge = Challenge::parse(options["challenge"].as_str().unwrap()).unwrap();
            let body = get.json();
            let response = AssertionResponse::from_json(&body).unwrap();
            let pending = book.take(response.challenge(), NOW + 21).unwrap();
            assert_eq!(pending.purpose, Purpose::Authenticate);
            let presented = response.verify(&rp, &pending.challenge).unwrap();
            let accepted = check(
                &keys,
                |_| None,
                &presented.assertion,
                &presented.client_data_hash,
            )
            .unwrap();
            assert_eq!(accepted.verified.sign_count, 1);
            // Replayed: the book no longer has its challenge.
            let replayed = AssertionResponse::from_json(&body).unwrap();
            assert_eq!(
                book.take(replayed.challenge(), NOW + 22),
                Err(WebAuthnError::ChallengeUnknown)
            );
            // Answered too late.
            let issued = book
                .issue(Purpose::Authenticate, alice(), NOW + 30)
                .unwrap();
            get.challenge = issued;
            let late = AssertionResponse::from_json(&get.json()).unwrap();
            assert_eq!(
                book.take(late.challenge(), NOW + 150),
                Err(WebAuthnError::ChallengeExpired)
            );
        }
    }

    #[test]
    fn every_error_says_what_failed() {
        let errors = [
            WebAuthnError::AttestationObject("no fmt text".into()),
            WebAuthnError::AttestationSignature,
            WebAuthnError::AttestationStatement("x".into()),
            WebAuthnError::AuthenticatorData("x".into()),
            WebAuthnError::BackupState,
            WebAuthnError::Base64("rawId"),
            WebAuthnError::Cbor("attestation object", CborError::Truncated),
            WebAuthnError::ChallengeExpired,
            WebAuthnError::ChallengeMismatch,
            WebAuthnError::ChallengeUnknown,
            WebAuthnError::ClientData("x".into()),
            WebAuthnError::Config("x".into()),
            WebAuthnError::CredentialId(KeyError::BadCredentialId(0)),
            WebAuthnError::CredentialIdMismatch("id is not rawId"),
            WebAuthnError::CrossOrigin,
            WebAuthnError::Json("x".into()),
            WebAuthnError::NoAttestedCredential,
            WebAuthnError::NoUserPresence,
            WebAuthnError::NoUserVerification,
            WebAuthnError::PublicKey(KeyError::NotOnCurve),
            WebAuthnError::Randomness("x".into()),
            WebAuthnError::RelyingParty,
            WebAuthnError::TooLarge {
                what: "rawId",
                size: 2000,
                max: 1023,
            },
            WebAuthnError::UnsupportedAttestation("\"tpm\"".into()),
            WebAuthnError::WrongOrigin {
                found: "a\nb".into(),
                expected: ORIGIN.into(),
            },
            WebAuthnError::WrongType {
                found: "x".into(),
                expected: GET,
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.len() > 10 && !text.contains('\n'), "{error:?}: {text}");
        }
    }
}
