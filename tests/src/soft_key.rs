//! A software FIDO2/U2F security key for tests: the *device* side of CTAPHID (CTAP 2.1 §11.2)
//! over 64-byte reports, the CTAP2 commands authenticatorGetInfo, authenticatorMakeCredential,
//! authenticatorGetAssertion, authenticatorClientPIN (PIN/UV auth protocols 1 and 2, §6.5) and
//! authenticatorSelection (§6), and the U2F register and authenticate APDUs, written from the
//! specifications and not from the host code it tests.
//!
//! Its core is deterministic: `receive_report` takes one report from the host and returns the
//! reports the device sends back, and `tick` is one keepalive interval while it waits for a
//! touch. `serve` puts that core behind a unix SOCK_SEQPACKET socket (one message per report),
//! where a test build of the module reaches it through `TWOFOLD_TEST_FIDO_SOCKET`.
//!
//! It is fake hardware and must never hold a real secret: its keys live in memory, its
//! attestation is self-made, and it can be told to misbehave (`Fault`) so that the host's
//! refusals can be tested.

use std::collections::HashMap;
use std::ffi::c_char;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use sha2::{Digest, Sha256};
use twofold_core::cbor::{self, Value};

/// One HID report: the unit of every CTAPHID transfer.
pub type Report = [u8; REPORT_SIZE];

/// The bytes in one HID report.
pub const REPORT_SIZE: usize = 64;
/// The largest message CTAPHID can carry: 57 bytes in the init packet and 59 in each of 128
/// continuation packets.
pub const MAX_MESSAGE: usize = 7609;
/// The channel every host starts on, to ask for a channel of its own (CTAPHID_INIT).
pub const BROADCAST_CHANNEL: u32 = 0xffff_ffff;
/// How often `serve` lets the key send a keepalive while it waits for a touch.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(50);

/// A credential's signature algorithm, with its COSE number (RFC 9053).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// Ed25519 (COSE -8), as pam_u2f keys made with `-r` may carry.
    EdDsa,
    /// ECDSA P-256 with SHA-256 (COSE -7), what every FIDO key supports.
    Es256,
}

/// What the key does when an operation needs a touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// The user touches after this many keepalive intervals (`After(0)`: at once, with no
    /// keepalive). In U2F, this many "conditions not satisfied" answers come first.
    After(u32),
    /// The user refuses (CTAP2_ERR_OPERATION_DENIED); in U2F, no touch ever comes.
    Denied,
    /// Nobody touches: keepalives (UPNEEDED) until the host cancels.
    Never,
}

/// How the signature counter moves, to test the host's clone detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignCount {
    /// Starts at this value at makeCredential and drops by one at each assertion (a cloned key
    /// seen from the relying party's side).
    Backwards(u32),
    /// Always this value (`Fixed(0)`: a key without a counter, which WebAuthn allows).
    Fixed(u32),
    /// Starts at 0 and grows by one at each assertion, per credential (the default).
    Incrementing,
}

/// The attestation statement makeCredential returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attestation {
    /// Format "none" with an empty statement (the default).
    None,
    /// Format "packed", self attestation: the credential key signs authData ‖ clientDataHash.
    PackedSelf,
}

/// A deliberate protocol fault in the key's reply to one CTAP2 command, for robustness tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Status 0 and then a CBOR map that ends early.
    JunkCbor,
    /// The init packet declares a length of `MAX_MESSAGE + 1`.
    OversizedLength,
    /// Only the init packet is sent, then silence; a reply that would fit in one packet
    /// declares 59 bytes more than it has, so that it is truncated too.
    TruncatedReply,
    /// The continuation packets are numbered from 1 instead of 0 (the reply must be longer
    /// than 57 bytes, as every makeCredential, getAssertion and getInfo reply is).
    WrongSequence,
}

/// A software authenticator; build it with `new` and the configuration methods below.
pub struct SoftKey {
    aaguid: [u8; 16],
    attestation: Attestation,
    attestation_key: p256::ecdsa::SigningKey,
    busy_for: u32,
    client_pin: Option<bool>,
    pin_hash: Option<[u8; 16]>,
    pin_protocols: Vec<i64>,
    pin_permissions: bool,
    credentials: HashMap<Vec<u8>, Credential>,
    fault: Option<(Fault, u8)>,
    sign_count: SignCount,
    touch: Touch,
    u2f_only: bool,
    user_verification: bool,
    // The transport and its transaction, and what tests may inspect afterwards.
    channels: Vec<u32>,
    next_channel: u32,
    incoming: Option<Incoming>,
    waiting: Option<Waiting>,
    u2f_polls: u32,
    last_credential: Option<Vec<u8>>,
    signatures: u32,
    cancellations: u32,
    // The PIN's state: retries survive a replug, the rest is per power-up.
    pin_retries: u8,
    wrong_pins_since_plugged: u8,
    key_agreement: p256::SecretKey,
    pin_token: [u8; 32],
    token_grant: Option<TokenGrant>,
}

/// A `SoftKey` served on a unix socket by a background thread, until this is dropped.
pub struct ServerHandle {
    key: Arc<Mutex<SoftKey>>,
    path: PathBuf,
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Default for SoftKey {
    fn default() -> SoftKey {
        SoftKey::new()
    }
}

impl SoftKey {
    /// A CTAP2 key with no credentials that is touched at once, counts up and attests "none".
    pub fn new() -> SoftKey {
        SoftKey {
            aaguid: AAGUID,
            attestation: Attestation::None,
            attestation_key: random_p256_key(),
            busy_for: 0,
            client_pin: None,
            pin_hash: None,
            pin_protocols: vec![2, 1],
            pin_permissions: true,
            credentials: HashMap::new(),
            fault: None,
            sign_count: SignCount::Incrementing,
            touch: Touch::After(0),
            u2f_only: false,
            user_verification: false,
            channels: Vec::new(),
            next_channel: 1,
            incoming: None,
            waiting: None,
            u2f_polls: 0,
            last_credential: None,
            signatures: 0,
            cancellations: 0,
            pin_retries: PIN_RETRIES,
            wrong_pins_since_plugged: 0,
            key_agreement: random_p256_secret(),
            pin_token: random_token(),
            token_grant: None,
        }
    }

    /// A key that already holds one credential for `rp_id`, with that credential's id and
    /// COSE public key.
    pub fn with_credential(rp_id: &str, alg: Alg) -> (SoftKey, Vec<u8>, Vec<u8>) {
        let mut key = SoftKey::new();
        let (id, public_key) = key.add_credential(rp_id, alg);
        (key, id, public_key)
    }

    /// Provisions one more credential for `rp_id` without a makeCredential; returns its id and
    /// COSE public key.
    pub fn add_credential(&mut self, rp_id: &str, alg: Alg) -> (Vec<u8>, Vec<u8>) {
        let id = self.insert_credential(Sha256::digest(rp_id.as_bytes()).into(), alg);
        let public_key = self.credentials[&id].key.cose_public_key();
        (id, public_key)
    }

    pub fn touch(mut self, touch: Touch) -> SoftKey {
        self.touch = touch;
        self
    }

    pub fn sign_count(mut self, sign_count: SignCount) -> SoftKey {
        self.sign_count = sign_count;
        self
    }

    pub fn attestation(mut self, attestation: Attestation) -> SoftKey {
        self.attestation = attestation;
        self
    }

    /// Answers ERR_CHANNEL_BUSY to the first `requests` requests (CTAPHID_INIT excepted).
    pub fn busy_for(mut self, requests: u32) -> SoftKey {
        self.busy_for = requests;
        self
    }

    /// What getInfo says of a PIN: `None` no PIN support (the default), `Some(false)` supported
    /// but not set, `Some(true)` set (to a PIN nobody knows, unless `pin` set it).
    pub fn client_pin(mut self, client_pin: Option<bool>) -> SoftKey {
        self.client_pin = client_pin;
        self
    }

    /// A key whose PIN is `pin` (clientPIN, PIN/UV auth protocols 2 and 1, with permissions):
    /// its tokens authorize makeCredential and getAssertion and set the UV flag.
    pub fn pin(mut self, pin: &str) -> SoftKey {
        self.client_pin = Some(true);
        self.pin_hash = Some(left_16(&Sha256::digest(pin.as_bytes())));
        self
    }

    /// Offers only PIN/UV auth protocol 1 (getInfo lists `[1]`; protocol 2 is refused).
    pub fn pin_protocol_1_only(mut self) -> SoftKey {
        self.pin_protocols = vec![1];
        self
    }

    /// A CTAP 2.0-style PIN: no "pinUvAuthToken" option, and no
    /// getPinUvAuthTokenUsingPinWithPermissions (getPinToken's tokens are not bound to an rp).
    pub fn pin_without_permissions(mut self) -> SoftKey {
        self.pin_permissions = false;
        self
    }

    /// How many PIN attempts are left (8 at first, back to 8 at a right PIN).
    pub fn pin_retries(&self) -> u8 {
        self.pin_retries
    }

    /// Unplugs the key and plugs it in again: the transaction in flight is gone, and so are the
    /// count of wrong PINs since it was plugged in (PIN_AUTH_BLOCKED), its key agreement key
    /// and its PIN token. The retries left stay, as on a real key.
    pub fn replug(&mut self) {
        self.reset_transport();
        self.wrong_pins_since_plugged = 0;
        self.key_agreement = random_p256_secret();
        self.pin_token = random_token();
        self.token_grant = None;
    }

    /// A U2F-only key: no CBOR capability, CTAPHID_CBOR is an invalid command.
    pub fn u2f_only(mut self) -> SoftKey {
        self.u2f_only = true;
        self
    }

    /// A key with built-in user verification (getInfo "uv": true): a request with the uv
    /// option gets the UV flag once touched.
    pub fn user_verification(mut self) -> SoftKey {
        self.user_verification = true;
        self
    }

    /// Replies to CTAP2 command `command` (0x01 makeCredential, 0x02 getAssertion, 0x04
    /// getInfo) with `fault`.
    pub fn fault(mut self, fault: Fault, command: u8) -> SoftKey {
        self.fault = Some((fault, command));
        self
    }

    /// The credential made by the last makeCredential or U2F register: its id and COSE key.
    pub fn last_credential(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let id = self.last_credential.clone()?;
        let public_key = self.credentials.get(&id)?.key.cose_public_key();
        Some((id, public_key))
    }

    /// The COSE public key of credential `id`.
    pub fn public_key(&self, id: &[u8]) -> Option<Vec<u8>> {
        Some(self.credentials.get(id)?.key.cose_public_key())
    }

    /// The signature counter credential `id` last reported.
    pub fn counter(&self, id: &[u8]) -> Option<u32> {
        Some(self.credentials.get(id)?.counter)
    }

    /// How many assertions (CTAP2 and U2F) the key has signed.
    pub fn signatures(&self) -> u32 {
        self.signatures
    }

    /// How many touch waits a CTAPHID_CANCEL ended.
    pub fn cancellations(&self) -> u32 {
        self.cancellations
    }

    /// Whether an operation is waiting for a touch (keepalives are due).
    pub fn waiting_for_touch(&self) -> bool {
        self.waiting.is_some()
    }

    /// Forgets the transaction in flight, as when the host goes away; channels stay allocated.
    pub fn reset_transport(&mut self) {
        self.incoming = None;
        self.waiting = None;
    }

    /// Takes one report from the host and returns what the device sends back.
    pub fn receive_report(&mut self, report: Report) -> Vec<Report> {
        let cid = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        if report[4] & PACKET_INIT == 0 {
            return self.continuation(cid, report[4], &report[5..]);
        }
        let command = report[4] & !PACKET_INIT;
        let length = usize::from(u16::from_be_bytes([report[5], report[6]]));
        let data = &report[7..];
        if cid == 0 {
            return error(cid, ERR_INVALID_CHANNEL);
        }
        if command == CMD_INIT {
            return self.init(cid, length, data);
        }
        if cid == BROADCAST_CHANNEL || !self.channels.contains(&cid) {
            return error(cid, ERR_INVALID_CHANNEL);
        }
        if command == CMD_CANCEL {
            return self.cancel(cid);
        }
        if self.waiting.is_some() {
            return error(cid, ERR_CHANNEL_BUSY);
        }
        if let Some(incoming) = &self.incoming {
            if incoming.cid != cid {
                return error(cid, ERR_CHANNEL_BUSY);
            }
            self.incoming = None;
            return error(cid, ERR_INVALID_SEQ);
        }
        if length > MAX_MESSAGE {
            return error(cid, ERR_INVALID_LEN);
        }
        if self.busy_for > 0 {
            self.busy_for -= 1;
            return error(cid, ERR_CHANNEL_BUSY);
        }
        if length <= INIT_DATA {
            return self.dispatch(cid, command, data[..length].to_vec());
        }
        self.incoming = Some(Incoming {
            cid,
            command,
            length,
            data: data.to_vec(),
            next_seq: 0,
        });
        Vec::new()
    }

    /// One keepalive interval: while an operation waits for a touch, a KEEPALIVE (UPNEEDED),
    /// and the reply once the touch comes.
    pub fn tick(&mut self) -> Vec<Report> {
        let Some(waiting) = &mut self.waiting else {
            return Vec::new();
        };
        let mut out = frames(waiting.cid, CMD_KEEPALIVE, &[STATUS_UPNEEDED], None);
        if let Some(left) = &mut waiting.keepalives_left {
            *left = left.saturating_sub(1);
            if *left == 0 {
                if let Some(waiting) = self.waiting.take() {
                    let result = self.complete(waiting.operation);
                    out.extend(self.reply(waiting.cid, waiting.command, result));
                }
            }
        }
        out
    }

    /// Serves this key on a unix SOCK_SEQPACKET socket bound at `path` (which must not exist),
    /// one connection at a time, until the handle is dropped.
    pub fn serve(self, path: impl AsRef<Path>) -> io::Result<ServerHandle> {
        let path = path.as_ref().to_path_buf();
        let listener = socket::listen(&path)?;
        let key = Arc::new(Mutex::new(self));
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let thread = {
            let (key, connected, stop) =
                (Arc::clone(&key), Arc::clone(&connected), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("soft-key".into())
                .spawn(move || socket::serve(&listener, &key, &connected, &stop))?
        };
        Ok(ServerHandle {
            key,
            path,
            connected,
            stop,
            thread: Some(thread),
        })
    }

    fn continuation(&mut self, cid: u32, seq: u8, data: &[u8]) -> Vec<Report> {
        // A continuation with no transaction of its own is spurious and ignored (§11.2.4).
        let Some(incoming) = self.incoming.as_mut().filter(|i| i.cid == cid) else {
            return Vec::new();
        };
        if seq != incoming.next_seq {
            self.incoming = None;
            return error(cid, ERR_INVALID_SEQ);
        }
        // A message that needs continuations filled its init packet, so data.len() < length.
        let wanted = (incoming.length - incoming.data.len()).min(CONT_DATA);
        incoming.data.extend_from_slice(&data[..wanted]);
        incoming.next_seq += 1;
        if incoming.data.len() < incoming.length {
            return Vec::new();
        }
        match self.incoming.take() {
            Some(done) => self.dispatch(done.cid, done.command, done.data),
            None => Vec::new(),
        }
    }

    fn init(&mut self, cid: u32, length: usize, data: &[u8]) -> Vec<Report> {
        if length != NONCE_SIZE {
            return error(cid, ERR_INVALID_LEN);
        }
        if cid != BROADCAST_CHANNEL && !self.channels.contains(&cid) {
            return error(cid, ERR_INVALID_CHANNEL);
        }
        // INIT on a channel resynchronizes it: whatever it had in flight is abandoned.
        if self.incoming.as_ref().is_some_and(|i| i.cid == cid) {
            self.incoming = None;
        }
        if self.waiting.as_ref().is_some_and(|w| w.cid == cid) {
            self.waiting = None;
        }
        let channel = if cid == BROADCAST_CHANNEL {
            self.allocate_channel()
        } else {
            cid
        };
        let mut payload = data[..NONCE_SIZE].to_vec();
        payload.extend(channel.to_be_bytes());
        payload.extend([PROTOCOL_VERSION, DEVICE_MAJOR, DEVICE_MINOR, DEVICE_BUILD]);
        let capabilities = if self.u2f_only {
            CAPABILITY_WINK
        } else {
            CAPABILITY_WINK | CAPABILITY_CBOR
        };
        payload.push(capabilities);
        frames(cid, CMD_INIT, &payload, None)
    }

    fn allocate_channel(&mut self) -> u32 {
        let channel = self.next_channel;
        self.next_channel = match self.next_channel.wrapping_add(1) {
            0 | BROADCAST_CHANNEL => 1,
            next => next,
        };
        self.channels.push(channel);
        channel
    }

    fn cancel(&mut self, cid: u32) -> Vec<Report> {
        if self.incoming.as_ref().is_some_and(|i| i.cid == cid) {
            self.incoming = None;
        }
        // CANCEL has no reply of its own; the request it cancels ends with KEEPALIVE_CANCEL.
        match self.waiting.take() {
            Some(waiting) if waiting.cid == cid => {
                self.cancellations += 1;
                self.reply(cid, waiting.command, Err(CTAP2_ERR_KEEPALIVE_CANCEL))
            }
            other => {
                self.waiting = other;
                Vec::new()
            }
        }
    }

    fn dispatch(&mut self, cid: u32, command: u8, payload: Vec<u8>) -> Vec<Report> {
        match command {
            CMD_PING => frames(cid, CMD_PING, &payload, None),
            CMD_WINK => frames(cid, CMD_WINK, &[], None),
            CMD_MSG => {
                let response = self.u2f(&payload);
                frames(cid, CMD_MSG, &response, None)
            }
            CMD_CBOR if !self.u2f_only => self.ctap2(cid, &payload),
            _ => error(cid, ERR_INVALID_CMD),
        }
    }

    fn ctap2(&mut self, cid: u32, payload: &[u8]) -> Vec<Report> {
        let Some((&command, parameters)) = payload.split_first() else {
            return frames(cid, CMD_CBOR, &[CTAP1_ERR_INVALID_LENGTH], None);
        };
        if command == AUTHENTICATOR_CLIENT_PIN {
            // clientPIN needs no touch: it is answered at once.
            let result = self.client_pin_command(parameters);
            return self.reply(cid, command, result);
        }
        let operation = match command {
            AUTHENTICATOR_GET_INFO => Ok(Operation::Info),
            AUTHENTICATOR_MAKE_CREDENTIAL => self.parse_make_credential(parameters),
            AUTHENTICATOR_GET_ASSERTION => self.parse_get_assertion(parameters),
            AUTHENTICATOR_SELECTION => Ok(Operation::Selection),
            _ => Err(CTAP1_ERR_INVALID_COMMAND),
        };
        let operation = match operation {
            Ok(operation) => operation,
            Err(code) => return self.reply(cid, command, Err(code)),
        };
        if !operation.needs_touch() {
            let result = self.complete(operation);
            return self.reply(cid, command, result);
        }
        match self.touch {
            Touch::Denied => self.reply(cid, command, Err(CTAP2_ERR_OPERATION_DENIED)),
            Touch::After(0) => {
                let result = self.complete(operation);
                self.reply(cid, command, result)
            }
            Touch::After(n) => {
                self.wait(cid, command, operation, Some(n));
                Vec::new()
            }
            Touch::Never => {
                self.wait(cid, command, operation, None);
                Vec::new()
            }
        }
    }

    fn wait(&mut self, cid: u32, command: u8, operation: Operation, keepalives: Option<u32>) {
        self.waiting = Some(Waiting {
            cid,
            command,
            operation,
            keepalives_left: keepalives,
        });
    }

    fn parse_make_credential(&self, parameters: &[u8]) -> Result<Operation, u8> {
        let request = decode_map(parameters)?;
        let client_data_hash = client_data_hash(&request, 1)?;
        let rp = required(&request, 2)?;
        let rp_id = text(required_text_key(rp, "id")?)?;
        let user = required(&request, 3)?;
        let user_id = bytes(required_text_key(user, "id")?)?;
        if user_id.len() > 64 {
            return Err(CTAP1_ERR_INVALID_PARAMETER);
        }
        let mut alg = None;
        for parameter in array(required(&request, 4)?)? {
            let kind = text(required_text_key(parameter, "type")?)?;
            let number = int(required_text_key(parameter, "alg")?)?;
            let supported = match number {
                COSE_ES256 => Some(Alg::Es256),
                COSE_EDDSA => Some(Alg::EdDsa),
                _ => None,
            };
            if kind == "public-key" && alg.is_none() {
                alg = supported;
            }
        }
        let alg = alg.ok_or(CTAP2_ERR_UNSUPPORTED_ALGORITHM)?;
        let rp_id_hash: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
        let mut excluded = false;
        if let Some(list) = request.get(5) {
            for id in descriptor_ids(list)? {
                excluded |= self.credential_for(&id, &rp_id_hash).is_some();
            }
        }
        let options = Options::parse(request.get(7))?;
        if options.rk == Some(true) {
            return Err(CTAP2_ERR_UNSUPPORTED_OPTION);
        }
        if options.up == Some(false) {
            return Err(CTAP2_ERR_INVALID_OPTION);
        }
        let pin_verified = self.pin_verified(
            &request,
            8,
            PERMISSION_MAKE_CREDENTIAL,
            rp_id,
            &client_data_hash,
        )?;
        let user_verified = self.user_verified(&options, pin_verified)?;
        if excluded {
            return Ok(Operation::Excluded);
        }
        Ok(Operation::MakeCredential {
            rp_id_hash,
            client_data_hash,
            alg,
            user_verified,
        })
    }

    fn parse_get_assertion(&self, parameters: &[u8]) -> Result<Operation, u8> {
        let request = decode_map(parameters)?;
        let rp_id = text(required(&request, 1)?)?;
        let client_data_hash = client_data_hash(&request, 2)?;
        let rp_id_hash: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
        let allowed = match request.get(3) {
            Some(list) => descriptor_ids(list)?,
            None => Vec::new(),
        };
        let options = Options::parse(request.get(5))?;
        if options.rk.is_some() {
            return Err(CTAP2_ERR_UNSUPPORTED_OPTION);
        }
        let pin_verified = self.pin_verified(
            &request,
            6,
            PERMISSION_GET_ASSERTION,
            rp_id,
            &client_data_hash,
        )?;
        let user_verified = self.user_verified(&options, pin_verified)?;
        // Without resident keys, only the allow list can name a credential.
        let credential_id = allowed
            .into_iter()
            .find(|id| self.credential_for(id, &rp_id_hash).is_some())
            .ok_or(CTAP2_ERR_NO_CREDENTIALS)?;
        Ok(Operation::Assert {
            credential_id,
            client_data_hash,
            user_present: options.up != Some(false),
            user_verified,
        })
    }

    /// Whether the user was verified: by a valid pinUvAuthParam, or by built-in verification
    /// when the uv option asks for it. A key with a PIN but no built-in verification wants the
    /// PIN instead (PIN_REQUIRED); one with neither refuses the option.
    fn user_verified(&self, options: &Options, pin_verified: bool) -> Result<bool, u8> {
        match options.uv {
            _ if pin_verified => Ok(true),
            Some(true) if self.user_verification => Ok(true),
            Some(true) if self.client_pin.is_some() => Err(CTAP2_ERR_PIN_REQUIRED),
            Some(true) => Err(CTAP2_ERR_INVALID_OPTION),
            _ => Ok(false),
        }
    }

    /// Checks the pinUvAuthParam at `key` (its protocol at `key + 1`), if any: it must be
    /// authenticate(token, clientDataHash) for the current token, which must hold `permission`
    /// (and be bound to `rp_id`, if bound at all).
    fn pin_verified(
        &self,
        request: &Value,
        key: i64,
        permission: i64,
        rp_id: &str,
        client_data_hash: &[u8],
    ) -> Result<bool, u8> {
        let Some(param) = request.get(key) else {
            return Ok(false);
        };
        if self.client_pin != Some(true) {
            return Err(CTAP2_ERR_PIN_NOT_SET);
        }
        let param = bytes(param)?;
        let protocol = self.pin_protocol(required(request, key + 1)?)?;
        let Some(grant) = &self.token_grant else {
            return Err(CTAP2_ERR_PIN_AUTH_INVALID);
        };
        let expected = pin_protocol::authenticate(protocol, &self.pin_token, client_data_hash);
        let bound_elsewhere = grant.rp_id.as_deref().is_some_and(|bound| bound != rp_id);
        if param != expected || grant.permissions & permission == 0 || bound_elsewhere {
            return Err(CTAP2_ERR_PIN_AUTH_INVALID);
        }
        Ok(true)
    }

    /// A protocol number this key offers.
    fn pin_protocol(&self, value: &Value) -> Result<i64, u8> {
        let protocol = int(value)?;
        if !self.pin_protocols.contains(&protocol) {
            return Err(CTAP1_ERR_INVALID_PARAMETER);
        }
        Ok(protocol)
    }

    /// authenticatorClientPIN (§6.5.5): getPINRetries, getKeyAgreement, getPinToken and
    /// getPinUvAuthTokenUsingPinWithPermissions.
    fn client_pin_command(&mut self, parameters: &[u8]) -> Result<Vec<u8>, u8> {
        if self.client_pin.is_none() {
            return Err(CTAP1_ERR_INVALID_COMMAND);
        }
        let request = decode_map(parameters)?;
        let subcommand = int(required(&request, 0x02)?)?;
        // getPINRetries alone may leave the protocol out (§6.5.5.2).
        let protocol = match request.get(0x01) {
            Some(value) => Some(self.pin_protocol(value)?),
            None => None,
        };
        match subcommand {
            PIN_GET_RETRIES => Ok(cbor::encode(&Value::int_map([(
                0x03,
                Value::Int(i64::from(self.pin_retries)),
            )]))),
            PIN_GET_KEY_AGREEMENT => {
                protocol.ok_or(CTAP2_ERR_MISSING_PARAMETER)?;
                Ok(cbor::encode(&Value::int_map([(
                    0x01,
                    cose_key_agreement(&self.key_agreement.public_key()),
                )])))
            }
            PIN_GET_PIN_TOKEN => self.issue_token(
                protocol.ok_or(CTAP2_ERR_MISSING_PARAMETER)?,
                &request,
                false,
            ),
            PIN_GET_TOKEN_WITH_PERMISSIONS if self.pin_permissions => {
                self.issue_token(protocol.ok_or(CTAP2_ERR_MISSING_PARAMETER)?, &request, true)
            }
            _ => Err(CTAP2_ERR_INVALID_SUBCOMMAND),
        }
    }

    /// getPinToken (`with_permissions` false: a token for makeCredential and getAssertion on
    /// any rp) or getPinUvAuthTokenUsingPinWithPermissions: checks the PIN hash, counting wrong
    /// ones, and answers a fresh token encrypted to the shared secret.
    fn issue_token(
        &mut self,
        protocol: i64,
        request: &Value,
        with_permissions: bool,
    ) -> Result<Vec<u8>, u8> {
        let platform_key = required(request, 0x03)?;
        let pin_hash_enc = bytes(required(request, 0x06)?)?;
        let grant = if with_permissions {
            let permissions = int(required(request, 0x09)?)?;
            if !(1..=0xff).contains(&permissions) {
                return Err(CTAP1_ERR_INVALID_PARAMETER);
            }
            let rp_id = request.get(0x0a).map(text).transpose()?.map(str::to_string);
            let needs_rp = PERMISSION_MAKE_CREDENTIAL | PERMISSION_GET_ASSERTION;
            if permissions & needs_rp != 0 && rp_id.is_none() {
                return Err(CTAP2_ERR_MISSING_PARAMETER);
            }
            TokenGrant { permissions, rp_id }
        } else {
            if request.get(0x09).is_some() || request.get(0x0a).is_some() {
                return Err(CTAP1_ERR_INVALID_PARAMETER);
            }
            TokenGrant {
                permissions: PERMISSION_MAKE_CREDENTIAL | PERMISSION_GET_ASSERTION,
                rp_id: None,
            }
        };
        if self.client_pin != Some(true) {
            return Err(CTAP2_ERR_PIN_NOT_SET);
        }
        if self.pin_retries == 0 {
            return Err(CTAP2_ERR_PIN_BLOCKED);
        }
        if self.wrong_pins_since_plugged >= WRONG_PINS_PER_PLUG {
            return Err(CTAP2_ERR_PIN_AUTH_BLOCKED);
        }
        let shared = pin_protocol::shared_secret(protocol, &self.key_agreement, platform_key)?;
        // The attempt counts before the PIN is checked, so that pulling the key out mid-check
        // saves no attempt.
        self.pin_retries -= 1;
        let pin_hash = pin_protocol::decrypt(protocol, &shared, pin_hash_enc)?;
        let right =
            pin_hash.len() == 16 && self.pin_hash.is_some_and(|hash| hash[..] == pin_hash[..]);
        if !right {
            self.key_agreement = random_p256_secret();
            self.wrong_pins_since_plugged += 1;
            if self.pin_retries == 0 {
                return Err(CTAP2_ERR_PIN_BLOCKED);
            }
            if self.wrong_pins_since_plugged >= WRONG_PINS_PER_PLUG {
                return Err(CTAP2_ERR_PIN_AUTH_BLOCKED);
            }
            return Err(CTAP2_ERR_PIN_INVALID);
        }
        self.pin_retries = PIN_RETRIES;
        self.wrong_pins_since_plugged = 0;
        // Every token handed out replaces the last (resetPinUvAuthToken, §6.5.5.7).
        self.pin_token = random_token();
        self.token_grant = Some(grant);
        let encrypted = pin_protocol::encrypt(protocol, &shared, &self.pin_token);
        Ok(cbor::encode(&Value::int_map([(
            0x02,
            Value::Bytes(encrypted),
        )])))
    }

    fn credential_for(&self, id: &[u8], app_hash: &[u8; 32]) -> Option<&Credential> {
        self.credentials
            .get(id)
            .filter(|credential| credential.app_hash == *app_hash)
    }

    fn complete(&mut self, operation: Operation) -> Result<Vec<u8>, u8> {
        match operation {
            Operation::Assert {
                credential_id,
                client_data_hash,
                user_present,
                user_verified,
            } => self.assert(
                &credential_id,
                &client_data_hash,
                user_present,
                user_verified,
            ),
            Operation::Excluded => Err(CTAP2_ERR_CREDENTIAL_EXCLUDED),
            Operation::Info => Ok(self.info()),
            Operation::MakeCredential {
                rp_id_hash,
                client_data_hash,
                alg,
                user_verified,
            } => Ok(self.make_credential(rp_id_hash, &client_data_hash, alg, user_verified)),
            Operation::Selection => Ok(Vec::new()),
        }
    }

    fn info(&self) -> Vec<u8> {
        let mut options = vec![
            ("plat", Value::Bool(false)),
            ("rk", Value::Bool(false)),
            ("up", Value::Bool(true)),
        ];
        if self.user_verification {
            options.push(("uv", Value::Bool(true)));
        }
        if let Some(set) = self.client_pin {
            options.push(("clientPin", Value::Bool(set)));
            if self.pin_permissions {
                options.push(("pinUvAuthToken", Value::Bool(true)));
            }
        }
        let public_key = |alg| {
            Value::text_map([
                ("alg", Value::Int(alg)),
                ("type", Value::Text("public-key".into())),
            ])
        };
        let mut info = vec![
            (
                1,
                Value::Array(
                    ["FIDO_2_0", "FIDO_2_1", "U2F_V2"]
                        .map(|v| Value::Text(v.into()))
                        .to_vec(),
                ),
            ),
            (3, Value::Bytes(self.aaguid.to_vec())),
            (4, Value::text_map(options)),
            (5, Value::Int(MAX_CTAP2_MESSAGE)),
            (
                10,
                Value::Array(vec![public_key(COSE_ES256), public_key(COSE_EDDSA)]),
            ),
        ];
        if self.client_pin.is_some() {
            let protocols = self.pin_protocols.iter().map(|p| Value::Int(*p)).collect();
            info.push((6, Value::Array(protocols)));
        }
        cbor::encode(&Value::int_map(info))
    }

    fn make_credential(
        &mut self,
        rp_id_hash: [u8; 32],
        client_data_hash: &[u8],
        alg: Alg,
        user_verified: bool,
    ) -> Vec<u8> {
        let id = self.insert_credential(rp_id_hash, alg);
        self.last_credential = Some(id.clone());
        let credential = &self.credentials[&id];
        let mut flags = FLAG_UP | FLAG_AT;
        if user_verified {
            flags |= FLAG_UV;
        }
        let mut auth_data = rp_id_hash.to_vec();
        auth_data.push(flags);
        auth_data.extend(credential.counter.to_be_bytes());
        auth_data.extend(self.aaguid);
        // Credential ids are 32..=64 bytes here, so the length fits in two bytes.
        auth_data.extend((id.len() as u16).to_be_bytes());
        auth_data.extend(&id);
        auth_data.extend(credential.key.cose_public_key());
        let (format, statement) = match self.attestation {
            Attestation::None => ("none", Value::Map(Vec::new())),
            Attestation::PackedSelf => {
                let signature = credential
                    .key
                    .sign(&[&auth_data[..], client_data_hash].concat());
                let statement = Value::text_map([
                    ("alg", Value::Int(credential.key.alg_number())),
                    ("sig", Value::Bytes(signature)),
                ]);
                ("packed", statement)
            }
        };
        cbor::encode(&Value::int_map([
            (1, Value::Text(format.into())),
            (2, Value::Bytes(auth_data)),
            (3, statement),
        ]))
    }

    fn assert(
        &mut self,
        credential_id: &[u8],
        client_data_hash: &[u8],
        user_present: bool,
        user_verified: bool,
    ) -> Result<Vec<u8>, u8> {
        let sign_count = self.sign_count;
        let credential = self
            .credentials
            .get_mut(credential_id)
            .ok_or(CTAP2_ERR_NO_CREDENTIALS)?;
        credential.counter = next_counter(sign_count, credential.counter);
        let mut flags = 0;
        if user_present {
            flags |= FLAG_UP;
        }
        if user_verified {
            flags |= FLAG_UV;
        }
        let mut auth_data = credential.app_hash.to_vec();
        auth_data.push(flags);
        auth_data.extend(credential.counter.to_be_bytes());
        let signature = credential
            .key
            .sign(&[&auth_data[..], client_data_hash].concat());
        self.signatures += 1;
        Ok(cbor::encode(&Value::int_map([
            (
                1,
                Value::text_map([
                    ("id", Value::Bytes(credential_id.to_vec())),
                    ("type", Value::Text("public-key".into())),
                ]),
            ),
            (2, Value::Bytes(auth_data)),
            (3, Value::Bytes(signature)),
        ])))
    }

    fn insert_credential(&mut self, app_hash: [u8; 32], alg: Alg) -> Vec<u8> {
        let mut length = [0u8; 1];
        fill_random(&mut length);
        // An opaque handle of 32..=64 random bytes, so hosts cannot assume one length.
        let mut id = vec![0u8; 32 + usize::from(length[0] % 33)];
        fill_random(&mut id);
        let counter = match self.sign_count {
            SignCount::Backwards(start) | SignCount::Fixed(start) => start,
            SignCount::Incrementing => 0,
        };
        let credential = Credential {
            app_hash,
            key: CredentialKey::generate(alg),
            counter,
        };
        self.credentials.insert(id.clone(), credential);
        id
    }

    /// Builds the CTAPHID_CBOR reply to `command`: the status byte, then the CBOR, with the
    /// configured fault if it is aimed at this command.
    fn reply(&self, cid: u32, command: u8, result: Result<Vec<u8>, u8>) -> Vec<Report> {
        let fault = self
            .fault
            .filter(|(_, target)| *target == command)
            .map(|(fault, _)| fault);
        let payload = match (result, fault) {
            (_, Some(Fault::JunkCbor)) => vec![CTAP2_OK, 0xa2, 0x01],
            (Ok(body), _) => [&[CTAP2_OK][..], &body].concat(),
            (Err(code), _) => vec![code],
        };
        frames(cid, CMD_CBOR, &payload, fault)
    }

    fn u2f(&mut self, apdu: &[u8]) -> Vec<u8> {
        match self.u2f_response(apdu) {
            Ok(mut body) => {
                body.extend(SW_NO_ERROR.to_be_bytes());
                body
            }
            Err(status) => status.to_be_bytes().to_vec(),
        }
    }

    fn u2f_response(&mut self, apdu: &[u8]) -> Result<Vec<u8>, u16> {
        let (header, data) = apdu_parts(apdu)?;
        let [class, instruction, p1, _p2] = header;
        if class != 0 {
            return Err(SW_CLA_NOT_SUPPORTED);
        }
        match instruction {
            U2F_REGISTER => self.u2f_register(data),
            U2F_AUTHENTICATE => self.u2f_authenticate(p1, data),
            U2F_VERSION => Ok(b"U2F_V2".to_vec()),
            _ => Err(SW_INS_NOT_SUPPORTED),
        }
    }

    fn u2f_register(&mut self, data: &[u8]) -> Result<Vec<u8>, u16> {
        if data.len() != 64 {
            return Err(SW_WRONG_LENGTH);
        }
        let (challenge, application) = data.split_at(32);
        if !self.u2f_touched() {
            return Err(SW_CONDITIONS_NOT_SATISFIED);
        }
        let mut app_hash = [0u8; 32];
        app_hash.copy_from_slice(application);
        let handle = self.insert_credential(app_hash, Alg::Es256);
        self.last_credential = Some(handle.clone());
        let CredentialKey::Es256(key) = &self.credentials[&handle].key else {
            return Err(SW_WRONG_DATA);
        };
        let point = key.verifying_key().to_sec1_point(false);
        let point = point.as_bytes();
        let signed = [&[0x00][..], application, challenge, &handle, point].concat();
        let signature: p256::ecdsa::DerSignature = self.attestation_key.sign(&signed);
        let mut response = vec![0x05];
        response.extend(point);
        // Handles are at most 64 bytes.
        response.push(handle.len() as u8);
        response.extend(&handle);
        response.extend(attestation_certificate(&self.attestation_key));
        response.extend(signature.as_bytes());
        Ok(response)
    }

    fn u2f_authenticate(&mut self, p1: u8, data: &[u8]) -> Result<Vec<u8>, u16> {
        if data.len() < 65 || data.len() != 65 + usize::from(data[64]) {
            return Err(SW_WRONG_LENGTH);
        }
        let (challenge, application, handle) = (&data[..32], &data[32..64], &data[65..]);
        let mut app_hash = [0u8; 32];
        app_hash.copy_from_slice(application);
        match self.credential_for(handle, &app_hash) {
            Some(credential) if matches!(credential.key, CredentialKey::Es256(_)) => {}
            _ => return Err(SW_WRONG_DATA),
        }
        let user_present = match p1 {
            U2F_CHECK_ONLY => return Err(SW_CONDITIONS_NOT_SATISFIED),
            U2F_ENFORCE_PRESENCE => {
                if !self.u2f_touched() {
                    return Err(SW_CONDITIONS_NOT_SATISFIED);
                }
                true
            }
            U2F_DONT_ENFORCE_PRESENCE => false,
            _ => return Err(SW_WRONG_P1P2),
        };
        let sign_count = self.sign_count;
        let credential = self.credentials.get_mut(handle).ok_or(SW_WRONG_DATA)?;
        credential.counter = next_counter(sign_count, credential.counter);
        let flags = if user_present { FLAG_UP } else { 0 };
        let mut response = vec![flags];
        response.extend(credential.counter.to_be_bytes());
        let signed = [application, &response[..], challenge].concat();
        response.extend(credential.key.sign(&signed));
        self.signatures += 1;
        Ok(response)
    }

    /// U2F has no keepalive: the host polls, and the key says "conditions not satisfied"
    /// until it is touched.
    fn u2f_touched(&mut self) -> bool {
        match self.touch {
            Touch::After(polls) if self.u2f_polls >= polls => {
                self.u2f_polls = 0;
                true
            }
            Touch::After(_) => {
                self.u2f_polls += 1;
                false
            }
            Touch::Denied | Touch::Never => false,
        }
    }
}

impl ServerHandle {
    /// Where the socket is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The served key, to inspect its counters or credentials; the server waits while this is
    /// held, so do not hold it across a host's request.
    pub fn key(&self) -> MutexGuard<'_, SoftKey> {
        lock(&self.key)
    }

    /// Waits up to `timeout` until no host is connected, so that everything the last host sent
    /// before it hung up (a CANCEL, say) has been handled; false if one is still connected.
    /// A host that does not wait for the reply to its last report returns before the server has
    /// read it: call this before looking at the key after such a host is done.
    pub fn wait_for_hangup(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.connected.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the current PIN token may authorize.
struct TokenGrant {
    permissions: i64,
    /// The rp the token is bound to (getPinToken's tokens are bound to none).
    rp_id: Option<String>,
}

/// A message being reassembled from an init packet and continuation packets.
struct Incoming {
    cid: u32,
    command: u8,
    length: usize,
    data: Vec<u8>,
    next_seq: u8,
}

/// An operation that waits for a touch; `keepalives_left` is `None` when no touch will come.
struct Waiting {
    cid: u32,
    command: u8,
    operation: Operation,
    keepalives_left: Option<u32>,
}

/// A CTAP2 request, parsed and checked, to be carried out (after a touch if it needs one).
enum Operation {
    Assert {
        credential_id: Vec<u8>,
        client_data_hash: Vec<u8>,
        user_present: bool,
        user_verified: bool,
    },
    /// makeCredential found one of its credentials in the exclude list.
    Excluded,
    Info,
    MakeCredential {
        rp_id_hash: [u8; 32],
        client_data_hash: Vec<u8>,
        alg: Alg,
        user_verified: bool,
    },
    Selection,
}

impl Operation {
    fn needs_touch(&self) -> bool {
        match self {
            Operation::Assert { user_present, .. } => *user_present,
            Operation::Excluded | Operation::MakeCredential { .. } | Operation::Selection => true,
            Operation::Info => false,
        }
    }
}

/// The options map of makeCredential and getAssertion; absent options are `None`.
struct Options {
    rk: Option<bool>,
    up: Option<bool>,
    uv: Option<bool>,
}

impl Options {
    fn parse(value: Option<&Value>) -> Result<Options, u8> {
        let Some(value) = value else {
            return Ok(Options {
                rk: None,
                up: None,
                uv: None,
            });
        };
        if !matches!(value, Value::Map(_)) {
            return Err(CTAP2_ERR_CBOR_UNEXPECTED_TYPE);
        }
        let option = |name| {
            value
                .get_text(name)
                .map(|v| v.as_bool().ok_or(CTAP2_ERR_CBOR_UNEXPECTED_TYPE))
                .transpose()
        };
        Ok(Options {
            rk: option("rk")?,
            up: option("up")?,
            uv: option("uv")?,
        })
    }
}

struct Credential {
    /// SHA-256 of the rp id (CTAP2) or the application parameter (U2F): the two are the same
    /// thing, so a credential made by one protocol answers the other.
    app_hash: [u8; 32],
    key: CredentialKey,
    counter: u32,
}

enum CredentialKey {
    EdDsa(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
}

impl CredentialKey {
    fn generate(alg: Alg) -> CredentialKey {
        match alg {
            Alg::EdDsa => {
                let mut seed = [0u8; 32];
                fill_random(&mut seed);
                CredentialKey::EdDsa(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            Alg::Es256 => CredentialKey::Es256(random_p256_key()),
        }
    }

    fn alg_number(&self) -> i64 {
        match self {
            CredentialKey::EdDsa(_) => COSE_EDDSA,
            CredentialKey::Es256(_) => COSE_ES256,
        }
    }

    /// The COSE_Key (RFC 9053 §7.1 EC2, §7.2 OKP), canonical CBOR.
    fn cose_public_key(&self) -> Vec<u8> {
        let key = match self {
            CredentialKey::EdDsa(key) => Value::int_map([
                (1, Value::Int(COSE_KTY_OKP)),
                (3, Value::Int(COSE_EDDSA)),
                (-1, Value::Int(COSE_CRV_ED25519)),
                (-2, Value::Bytes(key.verifying_key().to_bytes().to_vec())),
            ]),
            CredentialKey::Es256(key) => {
                let point = key.verifying_key().to_sec1_point(false);
                // An uncompressed SEC1 point: 0x04 ‖ x (32) ‖ y (32).
                let point = point.as_bytes();
                Value::int_map([
                    (1, Value::Int(COSE_KTY_EC2)),
                    (3, Value::Int(COSE_ES256)),
                    (-1, Value::Int(COSE_CRV_P256)),
                    (-2, Value::Bytes(point[1..33].to_vec())),
                    (-3, Value::Bytes(point[33..65].to_vec())),
                ])
            }
        };
        cbor::encode(&key)
    }

    /// ES256: a DER ECDSA signature (RFC 6979 nonces); EdDSA: the raw 64 bytes.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            CredentialKey::EdDsa(key) => ed25519_dalek::Signer::sign(key, message)
                .to_bytes()
                .to_vec(),
            CredentialKey::Es256(key) => {
                let signature: p256::ecdsa::DerSignature = key.sign(message);
                signature.as_bytes().to_vec()
            }
        }
    }
}

fn next_counter(sign_count: SignCount, counter: u32) -> u32 {
    match sign_count {
        SignCount::Backwards(_) => counter.saturating_sub(1),
        SignCount::Fixed(value) => value,
        SignCount::Incrementing => counter.wrapping_add(1),
    }
}

/// Splits a message into one init packet and continuation packets, applying a transport fault.
fn frames(cid: u32, command: u8, payload: &[u8], fault: Option<Fault>) -> Vec<Report> {
    let declared = match fault {
        Some(Fault::OversizedLength) => MAX_MESSAGE + 1,
        Some(Fault::TruncatedReply) if payload.len() <= INIT_DATA => payload.len() + CONT_DATA,
        _ => payload.len(),
    };
    let mut first = [0u8; REPORT_SIZE];
    first[..4].copy_from_slice(&cid.to_be_bytes());
    first[4] = command | PACKET_INIT;
    // Declared lengths stay below 2^16 (MAX_MESSAGE + 1 at most).
    first[5..7].copy_from_slice(&(declared as u16).to_be_bytes());
    let (head, mut rest) = payload.split_at(payload.len().min(INIT_DATA));
    first[7..7 + head.len()].copy_from_slice(head);
    let mut out = vec![first];
    if matches!(
        fault,
        Some(Fault::TruncatedReply) | Some(Fault::OversizedLength)
    ) {
        return out;
    }
    let mut seq: u8 = if fault == Some(Fault::WrongSequence) {
        1
    } else {
        0
    };
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(CONT_DATA));
        let mut packet = [0u8; REPORT_SIZE];
        packet[..4].copy_from_slice(&cid.to_be_bytes());
        packet[4] = seq;
        packet[5..5 + chunk.len()].copy_from_slice(chunk);
        out.push(packet);
        seq = seq.wrapping_add(1);
        rest = tail;
    }
    out
}

fn error(cid: u32, code: u8) -> Vec<Report> {
    frames(cid, CMD_ERROR, &[code], None)
}

fn decode_map(parameters: &[u8]) -> Result<Value, u8> {
    let request = cbor::decode(parameters).map_err(|_| CTAP2_ERR_INVALID_CBOR)?;
    match request {
        Value::Map(_) => Ok(request),
        _ => Err(CTAP2_ERR_CBOR_UNEXPECTED_TYPE),
    }
}

fn required(map: &Value, key: i64) -> Result<&Value, u8> {
    map.get(key).ok_or(CTAP2_ERR_MISSING_PARAMETER)
}

fn required_text_key<'a>(map: &'a Value, key: &str) -> Result<&'a Value, u8> {
    if !matches!(map, Value::Map(_)) {
        return Err(CTAP2_ERR_CBOR_UNEXPECTED_TYPE);
    }
    map.get_text(key).ok_or(CTAP2_ERR_MISSING_PARAMETER)
}

fn client_data_hash(map: &Value, key: i64) -> Result<Vec<u8>, u8> {
    let hash = bytes(required(map, key)?)?;
    if hash.len() != 32 {
        return Err(CTAP1_ERR_INVALID_LENGTH);
    }
    Ok(hash.to_vec())
}

fn text(value: &Value) -> Result<&str, u8> {
    value.as_text().ok_or(CTAP2_ERR_CBOR_UNEXPECTED_TYPE)
}

fn bytes(value: &Value) -> Result<&[u8], u8> {
    value.as_bytes().ok_or(CTAP2_ERR_CBOR_UNEXPECTED_TYPE)
}

fn int(value: &Value) -> Result<i64, u8> {
    value.as_int().ok_or(CTAP2_ERR_CBOR_UNEXPECTED_TYPE)
}

fn array(value: &Value) -> Result<&[Value], u8> {
    value.as_array().ok_or(CTAP2_ERR_CBOR_UNEXPECTED_TYPE)
}

/// The ids of a list of PublicKeyCredentialDescriptors of type "public-key" (others are skipped).
fn descriptor_ids(list: &Value) -> Result<Vec<Vec<u8>>, u8> {
    let mut ids = Vec::new();
    for descriptor in array(list)? {
        let kind = text(required_text_key(descriptor, "type")?)?;
        let id = bytes(required_text_key(descriptor, "id")?)?;
        if kind == "public-key" {
            ids.push(id.to_vec());
        }
    }
    Ok(ids)
}

/// An APDU's header and its data, in the short or the extended encoding (ISO 7816-4).
fn apdu_parts(apdu: &[u8]) -> Result<([u8; 4], &[u8]), u16> {
    let Some((header, body)) = apdu.split_first_chunk::<4>() else {
        return Err(SW_WRONG_LENGTH);
    };
    let data = match body {
        [] => &[][..],
        // Short case 2: only Le.
        [_le] => &[][..],
        [0, high, low, rest @ ..] => {
            let length = usize::from(u16::from_be_bytes([*high, *low]));
            match rest.len().checked_sub(length) {
                // Nothing after the data, or an extended Le of two bytes.
                Some(0 | 2) => &rest[..length],
                _ => return Err(SW_WRONG_LENGTH),
            }
        }
        [length, rest @ ..] => {
            let length = usize::from(*length);
            match rest.len().checked_sub(length) {
                Some(0 | 1) => &rest[..length],
                _ => return Err(SW_WRONG_LENGTH),
            }
        }
    };
    Ok((*header, data))
}

/// A self-signed X.509 v3 certificate for the U2F attestation key, in DER (RFC 5280).
fn attestation_certificate(key: &p256::ecdsa::SigningKey) -> Vec<u8> {
    let algorithm = der(0x30, &der(0x06, OID_ECDSA_WITH_SHA256));
    let common_name = [der(0x06, OID_COMMON_NAME), der(0x0c, b"twofold soft key")].concat();
    let name = der(0x30, &der(0x31, &der(0x30, &common_name)));
    let validity = der(
        0x30,
        &[der(0x17, b"250101000000Z"), der(0x17, b"491231235959Z")].concat(),
    );
    let point = key.verifying_key().to_sec1_point(false);
    let key_algorithm = der(
        0x30,
        &[der(0x06, OID_EC_PUBLIC_KEY), der(0x06, OID_PRIME256V1)].concat(),
    );
    let public_key = der(
        0x30,
        &[
            key_algorithm,
            der(0x03, &[&[0x00][..], point.as_bytes()].concat()),
        ]
        .concat(),
    );
    let version = der(0xa0, &der(0x02, &[0x02]));
    let serial = der(0x02, &[0x01]);
    let tbs = der(
        0x30,
        &[
            version,
            serial,
            algorithm.clone(),
            name.clone(),
            validity,
            name,
            public_key,
        ]
        .concat(),
    );
    let signature: p256::ecdsa::DerSignature = key.sign(&tbs);
    let signature = der(0x03, &[&[0x00][..], signature.as_bytes()].concat());
    der(0x30, &[tbs, algorithm, signature].concat())
}

/// One DER TLV; the certificate's parts are far below 64 KiB.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n @ 0..=0x7f => out.push(n as u8),
        n @ 0x80..=0xff => out.extend([0x81, n as u8]),
        n => {
            out.push(0x82);
            out.extend((n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
}

/// The key agreement key as a COSE_Key: EC2, P-256, and the algorithm ECDH-ES+HKDF-256 that
/// §6.5.6 has it name.
fn cose_key_agreement(key: &p256::PublicKey) -> Value {
    let point = key.to_sec1_point(false);
    let point = point.as_bytes();
    Value::int_map([
        (1, Value::Int(COSE_KTY_EC2)),
        (3, Value::Int(COSE_ECDH_ES_HKDF_256)),
        (-1, Value::Int(COSE_CRV_P256)),
        (-2, Value::Bytes(point[1..33].to_vec())),
        (-3, Value::Bytes(point[33..65].to_vec())),
    ])
}

fn left_16(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes[..16]);
    out
}

fn random_token() -> [u8; 32] {
    let mut token = [0u8; 32];
    fill_random(&mut token);
    token
}

fn random_p256_secret() -> p256::SecretKey {
    p256::SecretKey::from(random_p256_key().as_nonzero_scalar())
}

fn random_p256_key() -> p256::ecdsa::SigningKey {
    loop {
        let mut scalar = [0u8; 32];
        fill_random(&mut scalar);
        // Fails only for zero or a value at or above the group order: draw again.
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&scalar) {
            return key;
        }
    }
}

fn fill_random(buffer: &mut [u8]) {
    getrandom::fill(buffer).expect("the system random source works");
}

fn lock(key: &Mutex<SoftKey>) -> MutexGuard<'_, SoftKey> {
    // A test that panicked while holding the key has failed already; keep serving the others.
    key.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The device's half of the PIN/UV auth protocols (CTAP 2.1 §6.5.6 and §6.5.7), as the spec
/// writes them: the shared secret is 32 bytes (protocol 1) or the HMAC key ‖ the AES key (2).
mod pin_protocol {
    use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
    use hmac::{KeyInit, Mac};

    use super::*;

    /// ECDH with the platform's COSE key, then kdf(Z).
    pub(super) fn shared_secret(
        protocol: i64,
        key: &p256::SecretKey,
        platform: &Value,
    ) -> Result<Vec<u8>, u8> {
        let label = |l| platform.get(l).and_then(Value::as_int);
        if label(1) != Some(COSE_KTY_EC2)
            || label(3) != Some(COSE_ECDH_ES_HKDF_256)
            || label(-1) != Some(COSE_CRV_P256)
        {
            return Err(CTAP1_ERR_INVALID_PARAMETER);
        }
        let coordinate = |l| {
            platform
                .get(l)
                .and_then(Value::as_bytes)
                .filter(|c| c.len() == 32)
                .ok_or(CTAP1_ERR_INVALID_PARAMETER)
        };
        let sec1 = [&[0x04][..], coordinate(-2)?, coordinate(-3)?].concat();
        let peer =
            p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| CTAP1_ERR_INVALID_PARAMETER)?;
        let z = key.diffie_hellman(&peer);
        let z = z.raw_secret_bytes();
        Ok(match protocol {
            1 => Sha256::digest(z).to_vec(),
            _ => {
                let hkdf = hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32][..]), z);
                let mut secret = vec![0u8; 64];
                let (hmac_key, aes_key) = secret.split_at_mut(32);
                hkdf.expand(b"CTAP2 HMAC key", hmac_key)
                    .expect("32 bytes is a valid HKDF-SHA-256 length");
                hkdf.expand(b"CTAP2 AES key", aes_key)
                    .expect("32 bytes is a valid HKDF-SHA-256 length");
                secret
            }
        })
    }

    /// AES-256-CBC of whole blocks: protocol 1 with the zero IV, protocol 2 with a random IV
    /// sent first.
    pub(super) fn encrypt(protocol: i64, shared: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let (key, mut out, iv) = match protocol {
            1 => (&shared[..32], Vec::new(), [0u8; 16]),
            _ => {
                let mut iv = [0u8; 16];
                fill_random(&mut iv);
                (&shared[32..], iv.to_vec(), iv)
            }
        };
        let mut cipher = cbc::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .expect("a 32-byte key and a 16-byte IV");
        for block in plaintext.chunks(16) {
            let mut block = aes::Block::try_from(block).expect("whole blocks");
            cipher.encrypt_block(&mut block);
            out.extend_from_slice(&block);
        }
        out
    }

    /// The inverse of `encrypt`; what is not whole blocks is an invalid parameter.
    pub(super) fn decrypt(protocol: i64, shared: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, u8> {
        let (key, iv, body) = match protocol {
            1 => (&shared[..32], &[0u8; 16][..], ciphertext),
            _ if ciphertext.len() >= 16 => (&shared[32..], &ciphertext[..16], &ciphertext[16..]),
            _ => return Err(CTAP1_ERR_INVALID_PARAMETER),
        };
        if body.is_empty() || !body.len().is_multiple_of(16) {
            return Err(CTAP1_ERR_INVALID_PARAMETER);
        }
        let mut cipher = cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .expect("a 32-byte key and a 16-byte IV");
        let mut out = Vec::new();
        for block in body.chunks(16) {
            let mut block = aes::Block::try_from(block).expect("whole blocks");
            cipher.decrypt_block(&mut block);
            out.extend_from_slice(&block);
        }
        Ok(out)
    }

    /// HMAC-SHA-256 with the first 32 bytes of `key`; protocol 1 keeps 16 bytes of it.
    pub(super) fn authenticate(protocol: i64, key: &[u8], message: &[u8]) -> Vec<u8> {
        let key = &key[..key.len().min(32)];
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(message);
        let tag = mac.finalize().into_bytes();
        match protocol {
            1 => tag[..16].to_vec(),
            _ => tag.to_vec(),
        }
    }
}

/// The unix SOCK_SEQPACKET transport: one message is one report, in both directions.
mod socket {
    use super::*;

    pub(super) fn listen(path: &Path) -> io::Result<OwnedFd> {
        let address = address(path)?;
        // SAFETY: socket() takes no pointers; the result is checked below.
        let fd =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor that socket() just opened and that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `address` is an initialized sockaddr_un and the length passed is its size.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: listen() takes no pointers; `fd` is a bound socket we own.
        if unsafe { libc::listen(fd.as_raw_fd(), 4) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }

    /// Accepts and serves connections one after another until `stop`.
    pub(super) fn serve(
        listener: &OwnedFd,
        key: &Mutex<SoftKey>,
        connected: &AtomicBool,
        stop: &AtomicBool,
    ) {
        while !stop.load(Ordering::Relaxed) {
            match readable(listener, POLL_STEP) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    eprintln!("soft key: poll on the listening socket: {e}");
                    return;
                }
            }
            // SAFETY: accept() may take null address pointers; `listener` is a listening socket.
            let fd = unsafe {
                libc::accept4(
                    listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                continue;
            }
            // SAFETY: `fd` is a descriptor that accept4() just opened and nothing else owns.
            let connection = unsafe { OwnedFd::from_raw_fd(fd) };
            connected.store(true, Ordering::Release);
            if let Err(e) = serve_connection(&connection, key, stop) {
                eprintln!("soft key: connection ended: {e}");
            }
            // The host went away: a new one starts a new transaction.
            lock(key).reset_transport();
            connected.store(false, Ordering::Release);
        }
    }

    fn serve_connection(
        connection: &OwnedFd,
        key: &Mutex<SoftKey>,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        let mut next_tick = Instant::now() + KEEPALIVE_INTERVAL;
        while !stop.load(Ordering::Relaxed) {
            let timeout = next_tick
                .saturating_duration_since(Instant::now())
                .min(POLL_STEP);
            if readable(connection, timeout)? {
                // One byte more than a report, to notice (and drop) messages of another size.
                let mut buffer = [0u8; REPORT_SIZE + 1];
                // SAFETY: `buffer` is writable for its whole length, which is what is passed.
                let n = unsafe {
                    libc::recv(
                        connection.as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        0,
                    )
                };
                match n {
                    0 => return Ok(()),
                    n if n < 0 => return Err(io::Error::last_os_error()),
                    n if n as usize == REPORT_SIZE => {
                        let mut report = [0u8; REPORT_SIZE];
                        report.copy_from_slice(&buffer[..REPORT_SIZE]);
                        let out = lock(key).receive_report(report);
                        send_all(connection, &out)?;
                    }
                    _ => {}
                }
            }
            if Instant::now() >= next_tick {
                let out = lock(key).tick();
                send_all(connection, &out)?;
                next_tick = Instant::now() + KEEPALIVE_INTERVAL;
            }
        }
        Ok(())
    }

    fn send_all(connection: &OwnedFd, reports: &[Report]) -> io::Result<()> {
        for report in reports {
            // SAFETY: `report` is readable for its whole length, which is what is passed;
            // MSG_NOSIGNAL turns a closed peer into EPIPE instead of SIGPIPE.
            let n = unsafe {
                libc::send(
                    connection.as_raw_fd(),
                    report.as_ptr().cast(),
                    report.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Whether `fd` has input (or a hang-up) within `timeout`.
    fn readable(fd: &OwnedFd, timeout: Duration) -> io::Result<bool> {
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // The timeouts here are below a second.
        let millis = timeout.as_millis() as libc::c_int;
        // SAFETY: `poll` is one valid pollfd and the count passed is 1.
        let n = unsafe { libc::poll(&mut poll, 1, millis) };
        match n {
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            0 => Ok(false),
            _ => Ok(true),
        }
    }

    fn address(path: &Path) -> io::Result<libc::sockaddr_un> {
        // SAFETY: sockaddr_un is plain old data, for which all zero bytes is a valid value.
        let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        address.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_bytes();
        // One byte stays zero to end the path.
        if bytes.is_empty() || bytes.len() >= address.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is too long for a unix socket path", path.display()),
            ));
        }
        for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
            *slot = *byte as c_char;
        }
        Ok(address)
    }

    /// How long the server thread sleeps at most before it looks at the stop flag.
    const POLL_STEP: Duration = Duration::from_millis(20);
}

const AAGUID: [u8; 16] = *b"twofold-softkey1";
const NONCE_SIZE: usize = 8;
const INIT_DATA: usize = REPORT_SIZE - 7;
const CONT_DATA: usize = REPORT_SIZE - 5;
const PACKET_INIT: u8 = 0x80;
const PROTOCOL_VERSION: u8 = 2;
const DEVICE_MAJOR: u8 = 0;
const DEVICE_MINOR: u8 = 1;
const DEVICE_BUILD: u8 = 0;
const CAPABILITY_WINK: u8 = 0x01;
const CAPABILITY_CBOR: u8 = 0x04;

// CTAPHID commands (CTAP 2.1 §11.2.9), without the init-packet bit.
const CMD_PING: u8 = 0x01;
const CMD_MSG: u8 = 0x03;
const CMD_INIT: u8 = 0x06;
const CMD_WINK: u8 = 0x08;
const CMD_CBOR: u8 = 0x10;
const CMD_CANCEL: u8 = 0x11;
const CMD_KEEPALIVE: u8 = 0x3b;
const CMD_ERROR: u8 = 0x3f;
const STATUS_UPNEEDED: u8 = 2;

// CTAPHID_ERROR codes (§11.2.9.1.6).
const ERR_INVALID_CMD: u8 = 0x01;
const ERR_INVALID_LEN: u8 = 0x03;
const ERR_INVALID_SEQ: u8 = 0x04;
const ERR_CHANNEL_BUSY: u8 = 0x06;
const ERR_INVALID_CHANNEL: u8 = 0x0b;

// CTAP2 commands (§6) and status codes (§8.2).
const AUTHENTICATOR_MAKE_CREDENTIAL: u8 = 0x01;
const AUTHENTICATOR_GET_ASSERTION: u8 = 0x02;
const AUTHENTICATOR_GET_INFO: u8 = 0x04;
const AUTHENTICATOR_CLIENT_PIN: u8 = 0x06;
const AUTHENTICATOR_SELECTION: u8 = 0x0b;
const MAX_CTAP2_MESSAGE: i64 = 1200;
const CTAP2_OK: u8 = 0x00;
const CTAP1_ERR_INVALID_COMMAND: u8 = 0x01;
const CTAP1_ERR_INVALID_PARAMETER: u8 = 0x02;
const CTAP1_ERR_INVALID_LENGTH: u8 = 0x03;
const CTAP2_ERR_CBOR_UNEXPECTED_TYPE: u8 = 0x11;
const CTAP2_ERR_INVALID_CBOR: u8 = 0x12;
const CTAP2_ERR_MISSING_PARAMETER: u8 = 0x14;
const CTAP2_ERR_CREDENTIAL_EXCLUDED: u8 = 0x19;
const CTAP2_ERR_UNSUPPORTED_ALGORITHM: u8 = 0x26;
const CTAP2_ERR_OPERATION_DENIED: u8 = 0x27;
const CTAP2_ERR_UNSUPPORTED_OPTION: u8 = 0x2b;
const CTAP2_ERR_INVALID_OPTION: u8 = 0x2c;
const CTAP2_ERR_KEEPALIVE_CANCEL: u8 = 0x2d;
const CTAP2_ERR_NO_CREDENTIALS: u8 = 0x2e;
const CTAP2_ERR_PIN_INVALID: u8 = 0x31;
const CTAP2_ERR_PIN_BLOCKED: u8 = 0x32;
const CTAP2_ERR_PIN_AUTH_INVALID: u8 = 0x33;
const CTAP2_ERR_PIN_AUTH_BLOCKED: u8 = 0x34;
const CTAP2_ERR_PIN_NOT_SET: u8 = 0x35;
const CTAP2_ERR_PIN_REQUIRED: u8 = 0x36;
const CTAP2_ERR_INVALID_SUBCOMMAND: u8 = 0x3e;

// authenticatorClientPIN (§6.5.5): subcommands, permissions, and the PIN's limits.
const PIN_GET_RETRIES: i64 = 0x01;
const PIN_GET_KEY_AGREEMENT: i64 = 0x02;
const PIN_GET_PIN_TOKEN: i64 = 0x05;
const PIN_GET_TOKEN_WITH_PERMISSIONS: i64 = 0x09;
const PERMISSION_MAKE_CREDENTIAL: i64 = 0x01;
const PERMISSION_GET_ASSERTION: i64 = 0x02;
const PIN_RETRIES: u8 = 8;
const WRONG_PINS_PER_PLUG: u8 = 3;

// Authenticator data flags (WebAuthn §6.1).
const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

// COSE (RFC 9053).
const COSE_ES256: i64 = -7;
const COSE_EDDSA: i64 = -8;
const COSE_KTY_OKP: i64 = 1;
const COSE_KTY_EC2: i64 = 2;
const COSE_CRV_P256: i64 = 1;
const COSE_CRV_ED25519: i64 = 6;
const COSE_ECDH_ES_HKDF_256: i64 = -25;

// U2F raw messages (FIDO U2F Raw Message Formats) and ISO 7816 status words.
const U2F_REGISTER: u8 = 0x01;
const U2F_AUTHENTICATE: u8 = 0x02;
const U2F_VERSION: u8 = 0x03;
const U2F_ENFORCE_PRESENCE: u8 = 0x03;
const U2F_CHECK_ONLY: u8 = 0x07;
const U2F_DONT_ENFORCE_PRESENCE: u8 = 0x08;
const SW_NO_ERROR: u16 = 0x9000;
const SW_WRONG_LENGTH: u16 = 0x6700;
const SW_CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
const SW_WRONG_DATA: u16 = 0x6a80;
const SW_WRONG_P1P2: u16 = 0x6b00;
const SW_INS_NOT_SUPPORTED: u16 = 0x6d00;
const SW_CLA_NOT_SUPPORTED: u16 = 0x6e00;

// X.509 object identifiers, DER-encoded contents.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
