//! What the PAM module and the CLI call: "sign this with whichever plugged-in key holds one of
//! these credentials" and "make a credential on the key plugged in".
//!
//! A login first finds the key silently (a CTAP2 getAssertion without user presence, or a U2F
//! check-only), so that only the key that can answer blinks; the user is cued to touch only once
//! that key asks for a touch, never before. No step outlasts the caller's deadline.
//!
//! Where user verification is required and the key has no built-in verification but a PIN, the
//! PIN is asked for after the silent probe found the key and before the touch; it becomes a PIN
//! token for the one request (clientPIN, in [`crate::pin`]) and is never logged or shown.

use std::fmt;
use std::time::{Duration, Instant};

use twofold_core::key_assertion::rp_id_hash;
use zeroize::Zeroizing;

use crate::ctap2::{
    self, Assertion, AssertionRequest, CredentialRequest, CtapError, Info, MadeCredential, Status,
};
use crate::ctaphid::{Channel, HidError, Keepalive, CAPABILITY_NMSG};
use crate::pin::{self, PinToken, Protocol};
use crate::transport::Transport;
use crate::u2f;

/// Why no assertion or credential was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TouchError {
    /// Registering: the key already holds one of the user's credentials.
    AlreadyRegistered,
    /// The key or the user refused.
    Denied,
    /// A device failed; the text names it and says how.
    Device(String),
    /// No FIDO device is plugged in.
    NoDevice,
    /// Keys are plugged in, but none holds a credential of this account.
    NotRegistered,
    /// Too many wrong PINs since the key was plugged in: it takes no more until it is
    /// unplugged and plugged in again.
    PinAuthBlocked,
    /// The key's PIN is blocked for good (no retries left): only a reset of the key helps.
    PinBlocked,
    /// User verification is required, the key could verify with a PIN, but it has none set.
    PinNotSet,
    /// The key needs its PIN (or built-in verification), and none was given.
    PinRequired,
    /// Nobody touched the key by the deadline.
    Timeout,
    /// User verification is required, and the key can do it neither with a PIN nor built in
    /// (a U2F key, or a FIDO2 key without PIN support).
    VerificationUnsupported,
    /// The key refused the PIN; `retries_left` is how many more tries it allows, when known.
    WrongPin {
        /// PIN attempts left before the key blocks its PIN.
        retries_left: Option<u32>,
    },
}

impl fmt::Display for TouchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TouchError::AlreadyRegistered => f.write_str("this security key is already registered"),
            TouchError::Denied => f.write_str("the security key refused the request"),
            TouchError::Device(detail) => write!(f, "security key error: {detail}"),
            TouchError::NoDevice => f.write_str("no security key found: plug one in"),
            TouchError::NotRegistered => {
                f.write_str("no plugged-in security key is registered for this account")
            }
            TouchError::PinAuthBlocked => {
                f.write_str("too many wrong PINs: unplug and replug the security key, then retry")
            }
            TouchError::PinBlocked => {
                f.write_str("the security key's PIN is blocked: reset the key (this erases its credentials)")
            }
            TouchError::PinNotSet => f.write_str(
                "the security key has no PIN, and user verification needs one: set a PIN on the key",
            ),
            TouchError::PinRequired => {
                f.write_str("the security key needs its PIN, and none was given")
            }
            TouchError::Timeout => f.write_str("the security key was not touched in time"),
            TouchError::VerificationUnsupported => f.write_str(
                "the security key can verify the user neither with a PIN nor built in: use another key",
            ),
            TouchError::WrongPin { retries_left } => match retries_left {
                Some(1) => f.write_str("wrong PIN; the key allows 1 more try before it blocks"),
                Some(n) => write!(f, "wrong PIN; the key allows {n} more tries"),
                None => f.write_str("wrong PIN"),
            },
        }
    }
}

impl std::error::Error for TouchError {}

/// What `twofold keys add` asks a key to make.
#[derive(Clone, Copy, Debug)]
pub struct Registration<'a> {
    /// The relying party the credential is for.
    pub rp_id: &'a str,
    /// The account name (also shown as the display name).
    pub user_name: &'a str,
    /// The user handle, at most 64 bytes.
    pub user_id: &'a [u8],
    /// SHA-256 of the client data the attestation signs.
    pub client_data_hash: &'a [u8; 32],
    /// The user's registered credentials: a key holding one refuses.
    pub exclude: &'a [Vec<u8>],
    /// Make a credential that verifies the user (built-in UV, or else the key's PIN).
    pub require_uv: bool,
}

/// Where the PIN comes from, when a key needs it: called at most once per call of
/// [`get_assertion`] or [`make_credential`], after the key was found and before the touch, with
/// the PIN attempts the key has left when it said. `None` (or an empty PIN) means the user gave
/// none, and the call ends with [`TouchError::PinRequired`].
pub type PinSource<'a> = dyn FnMut(Option<u32>) -> Option<Zeroizing<String>> + 'a;

/// Signs `client_data_hash` with the first device that holds one of the credentials. Each group
/// is an rp_id with the credential ids registered for it; the rp_id of the group that matched
/// is returned with the assertion. With `require_uv`, a key without built-in verification is
/// asked for a PIN token, with the PIN from `pin`. `cue` is called at most once, when the key
/// first asks for a touch.
pub fn get_assertion(
    mut devices: Vec<Box<dyn Transport>>,
    rp_id_groups: &[(&str, Vec<Vec<u8>>)],
    client_data_hash: &[u8; 32],
    deadline: Instant,
    require_uv: bool,
    pin: &mut PinSource<'_>,
    cue: &mut dyn FnMut(),
) -> Result<(String, Assertion), TouchError> {
    if devices.is_empty() {
        return Err(TouchError::NoDevice);
    }
    // The first failure is reported when no device holds a credential: it is likelier to be
    // why than "not registered" is.
    let mut failure = None;
    for device in &mut devices {
        let name = device.describe();
        let mut channel = match Channel::open(device.as_mut(), deadline) {
            Ok(channel) => channel,
            Err(error) => {
                failure.get_or_insert(touch_error(&name, error.into()));
                continue;
            }
        };
        let found = if channel.has_cbor() {
            find_ctap2(&mut channel, rp_id_groups, client_data_hash, deadline)
        } else if channel.capabilities() & CAPABILITY_NMSG == 0 {
            find_u2f(&mut channel, rp_id_groups, deadline).map(|found| found.map(|f| (f, None)))
        } else {
            Err(CtapError::Malformed(
                "the device speaks neither CTAP2 nor U2F",
            ))
        };
        match found {
            Ok(Some(((rp_id, credential), info))) => {
                let assertion = sign(
                    &mut channel,
                    info.as_ref(),
                    &rp_id,
                    &credential,
                    client_data_hash,
                    deadline,
                    require_uv,
                    pin,
                    cue,
                )?;
                return Ok((rp_id, assertion));
            }
            Ok(None) => {}
            Err(error) => {
                failure.get_or_insert(touch_error(&name, error));
            }
        }
        if Instant::now() >= deadline {
            return Err(TouchError::Timeout);
        }
    }
    Err(failure.unwrap_or(TouchError::NotRegistered))
}

/// Makes a credential on the first device that answers CTAP2 (INIT and getInfo): with several
/// keys plugged in, that is the lowest-numbered hidraw device that works, not the one the user
/// touches. With `registration.require_uv`, a key without built-in verification is asked for a
/// PIN token, with the PIN from `pin`. `cue` is called at most once, when the key first asks
/// for a touch.
pub fn make_credential(
    mut devices: Vec<Box<dyn Transport>>,
    registration: &Registration<'_>,
    deadline: Instant,
    pin: &mut PinSource<'_>,
    cue: &mut dyn FnMut(),
) -> Result<MadeCredential, TouchError> {
    let mut failure = None;
    for device in &mut devices {
        let name = device.describe();
        let mut channel = match Channel::open(device.as_mut(), deadline) {
            Ok(channel) => channel,
            Err(error) => {
                failure.get_or_insert(touch_error(&name, error.into()));
                continue;
            }
        };
        if !channel.has_cbor() {
            failure.get_or_insert(TouchError::Device(format!(
                "{name}: a U2F-only key, and only FIDO2 keys can be registered"
            )));
            continue;
        }
        let info = match ctap2::get_info(&mut channel, deadline) {
            Ok(info) => info,
            Err(error) => {
                failure.get_or_insert(touch_error(&name, error));
                continue;
            }
        };
        let token = if registration.require_uv && info.options.uv != Some(true) {
            Some(pin_token(
                &mut channel,
                &info,
                (pin::PERMISSION_MAKE_CREDENTIAL, registration.rp_id),
                deadline,
                pin,
            )?)
        } else {
            None
        };
        let param = token
            .as_ref()
            .map(|token| (token.param(registration.client_data_hash), token.protocol()));
        let request = CredentialRequest {
            client_data_hash: registration.client_data_hash,
            rp_id: registration.rp_id,
            user_id: registration.user_id,
            user_name: registration.user_name,
            user_display_name: registration.user_name,
            exclude: registration.exclude,
            // With a pinUvAuthParam, the uv option stays out (CTAP 2.1 §6.1.1).
            uv: registration.require_uv && param.is_none(),
            pin_uv_auth: param
                .as_ref()
                .map(|(param, protocol)| (&param[..], protocol.number())),
        };
        let mut on_keepalive = cue_once(cue);
        return ctap2::make_credential(&mut channel, &request, deadline, &mut on_keepalive)
            .map_err(|error| touch_error(&name, error));
    }
    Err(failure.unwrap_or(TouchError::NoDevice))
}

/// An rp_id and the credential it holds for it.
type Found = (String, Vec<u8>);

/// Which credential a CTAP2 key holds, asked without a touch, with the key's getInfo.
fn find_ctap2(
    channel: &mut Channel<'_>,
    rp_id_groups: &[(&str, Vec<Vec<u8>>)],
    client_data_hash: &[u8; 32],
    deadline: Instant,
) -> Result<Option<(Found, Option<Info>)>, CtapError> {
    let info = ctap2::get_info(channel, probe_deadline(deadline))?;
    // A key that does not say how long an allow list may be is asked one credential at a time.
    let chunk = info.max_credential_count.unwrap_or(1).max(1);
    for (rp_id, credentials) in rp_id_groups {
        for allow in credentials.chunks(chunk) {
            let request = AssertionRequest {
                rp_id,
                client_data_hash,
                allow,
                up: false,
                uv: false,
                pin_uv_auth: None,
            };
            match ctap2::get_assertion(channel, &request, probe_deadline(deadline), &mut |_| {}) {
                Ok(assertion) => {
                    return Ok(Some((
                        (rp_id.to_string(), assertion.credential_id),
                        Some(info),
                    )))
                }
                // Some keys answer a foreign or over-long credential id with another error than
                // NO_CREDENTIALS; either way this key does not hold it.
                Err(CtapError::Status(Status::NoCredentials | Status::Other(_))) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(None)
}

/// Which key handle a U2F key holds, asked without a touch.
fn find_u2f(
    channel: &mut Channel<'_>,
    rp_id_groups: &[(&str, Vec<Vec<u8>>)],
    deadline: Instant,
) -> Result<Option<Found>, CtapError> {
    for (rp_id, handles) in rp_id_groups {
        let app_param = rp_id_hash(rp_id);
        for handle in handles {
            if u2f::holds(channel, &app_param, handle, probe_deadline(deadline))? {
                return Ok(Some((rp_id.to_string(), handle.clone())));
            }
        }
    }
    Ok(None)
}

/// The real, touched assertion with `credential` on the key that holds it.
#[allow(clippy::too_many_arguments)] // One private call site; a struct would only rename them.
fn sign(
    channel: &mut Channel<'_>,
    info: Option<&Info>,
    rp_id: &str,
    credential: &[u8],
    client_data_hash: &[u8; 32],
    deadline: Instant,
    require_uv: bool,
    pin: &mut PinSource<'_>,
    cue: &mut dyn FnMut(),
) -> Result<Assertion, TouchError> {
    let name = channel.describe();
    let Some(info) = info else {
        // U2F cannot verify the user.
        if require_uv {
            return Err(TouchError::VerificationUnsupported);
        }
        return u2f::authenticate(
            channel,
            client_data_hash,
            &rp_id_hash(rp_id),
            credential,
            deadline,
            cue,
        )
        .map_err(|error| touch_error(&name, error));
    };
    let token = if require_uv && info.options.uv != Some(true) {
        Some(pin_token(
            channel,
            info,
            (pin::PERMISSION_GET_ASSERTION, rp_id),
            deadline,
            pin,
        )?)
    } else {
        None
    };
    let param = token
        .as_ref()
        .map(|token| (token.param(client_data_hash), token.protocol()));
    let allow = [credential.to_vec()];
    let request = AssertionRequest {
        rp_id,
        client_data_hash,
        allow: &allow,
        up: true,
        // With a pinUvAuthParam, the uv option stays out (CTAP 2.1 §6.2.1).
        uv: require_uv && param.is_none(),
        pin_uv_auth: param
            .as_ref()
            .map(|(param, protocol)| (&param[..], protocol.number())),
    };
    let mut on_keepalive = cue_once(cue);
    ctap2::get_assertion(channel, &request, deadline, &mut on_keepalive)
        .map_err(|error| touch_error(&name, error))
}

/// A PIN token for one request (`permission` for that rp_id) from a key without built-in
/// verification: the PIN comes from `pin`, after the key said how many attempts it has left.
fn pin_token(
    channel: &mut Channel<'_>,
    info: &Info,
    (permission, rp_id): (u8, &str),
    deadline: Instant,
    pin: &mut PinSource<'_>,
) -> Result<PinToken, TouchError> {
    let name = channel.describe();
    match info.options.client_pin {
        None => return Err(TouchError::VerificationUnsupported),
        Some(false) => return Err(TouchError::PinNotSet),
        Some(true) => {}
    }
    let protocol = Protocol::for_key(info).ok_or_else(|| {
        TouchError::Device(format!(
            "{name}: the key offers no PIN protocol this host speaks (1 or 2)"
        ))
    })?;
    // Without a count, the user is still asked: the attempt itself tells.
    let retries = pin::retries(channel, protocol, deadline).ok();
    if retries == Some(0) {
        return Err(TouchError::PinBlocked);
    }
    let given = pin(retries).filter(|given| !given.is_empty());
    let Some(given) = given else {
        return Err(TouchError::PinRequired);
    };
    // CTAP 2.0 keys know only getPinToken, whose token holds no permissions.
    let permissions = info
        .options
        .pin_uv_auth_token
        .then_some((permission, rp_id));
    match pin::token(channel, protocol, &given, permissions, deadline) {
        Ok(token) => Ok(token),
        Err(CtapError::Status(Status::PinInvalid)) => Err(TouchError::WrongPin {
            retries_left: pin::retries(channel, protocol, deadline).ok(),
        }),
        Err(error) => Err(touch_error(&name, error)),
    }
}

/// A keepalive handler that calls `cue` at the first request for a touch, and never again.
fn cue_once(cue: &mut dyn FnMut()) -> impl FnMut(Keepalive) + '_ {
    let mut cued = false;
    move |keepalive| {
        if keepalive == Keepalive::UserPresenceNeeded && !cued {
            cued = true;
            cue();
        }
    }
}

/// Silent probes answer at once; one that hangs must not eat the whole login's time.
fn probe_deadline(deadline: Instant) -> Instant {
    deadline.min(Instant::now() + PROBE_TIME)
}

/// The one place device errors become what the user is told.
fn touch_error(device: &str, error: CtapError) -> TouchError {
    match error {
        CtapError::Hid(HidError::Timeout) => TouchError::Timeout,
        CtapError::Status(Status::UserActionTimeout | Status::KeepaliveCancel) => {
            TouchError::Timeout
        }
        CtapError::Status(Status::OperationDenied) => TouchError::Denied,
        CtapError::Status(Status::PinAuthBlocked) => TouchError::PinAuthBlocked,
        CtapError::Status(Status::PinBlocked) => TouchError::PinBlocked,
        CtapError::Status(Status::PinInvalid) => TouchError::WrongPin { retries_left: None },
        CtapError::Status(Status::PinNotSet) => TouchError::PinNotSet,
        CtapError::Status(Status::PinRequired) => TouchError::PinRequired,
        CtapError::Status(Status::NoCredentials) => TouchError::NotRegistered,
        CtapError::Status(Status::CredentialExcluded) => TouchError::AlreadyRegistered,
        other => TouchError::Device(format!("{device}: {other}")),
    }
}

const PROBE_TIME: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::Cell;
    use std::rc::Rc;

    use p256::elliptic_curve::sec1::ToSec1Point;
    use sha2::Digest;
    use twofold_core::cbor::{self, Value};

    use crate::ctaphid::{CAPABILITY_CBOR, CMD_CBOR, CMD_KEEPALIVE, CMD_MSG};
    use crate::scripted::{answer, cbor_reply, packet, reply, Handler, Log, Scripted, CID};

    const HASH: [u8; 32] = [0x5a; 32];

    fn soon(millis: u64) -> Instant {
        Instant::now() + Duration::from_millis(millis)
    }

    fn info_reply(options: Value) -> Handler {
        let info = Value::int_map([
            (1, Value::Array(vec![Value::Text("FIDO_2_0".into())])),
            (4, options),
        ]);
        answer(cbor_reply(0, Some(&info)))
    }

    fn plain_info() -> Handler {
        info_reply(Value::text_map([("up", Value::Bool(true))]))
    }

    fn auth_data(rp_id: &str, flags: u8) -> Vec<u8> {
        let mut data = rp_id_hash(rp_id).to_vec();
        data.push(flags);
        data.extend(3u32.to_be_bytes());
        data
    }

    fn assertion_body(rp_id: &str, flags: u8) -> Value {
        Value::int_map([
            (2, Value::Bytes(auth_data(rp_id, flags))),
            (3, Value::Bytes(vec![0x30, 0x02, 0x05, 0x00])),
        ])
    }

    fn status(code: u8) -> Handler {
        answer(cbor_reply(code, None))
    }

    /// The decoded parameters of each CTAP2 request with command byte `code`.
    fn parameters(log: &Log, code: u8) -> Vec<Value> {
        log.requests(CMD_CBOR)
            .into_iter()
            .filter(|r| r.first() == Some(&code))
            .map(|r| cbor::decode(&r[1..]).unwrap())
            .collect()
    }

    fn up_option(request: &Value) -> Option<bool> {
        request.get(5)?.get_text("up")?.as_bool()
    }

    fn allowed(request: &Value) -> Vec<Vec<u8>> {
        request
            .get(3)
            .and_then(Value::as_array)
            .unwrap_or_default()
            .iter()
            .map(|d| d.get_text("id").unwrap().as_bytes().unwrap().to_vec())
            .collect()
    }

    #[test]
    fn the_key_holding_a_credential_is_found_silently_then_touched() {
        let touched = [
            vec![
                packet(CID, CMD_KEEPALIVE, 1, &[1]),
                packet(CID, CMD_KEEPALIVE, 1, &[2]),
                packet(CID, CMD_KEEPALIVE, 1, &[2]),
            ],
            cbor_reply(0, Some(&assertion_body("pam://b", 0x01))),
        ]
        .concat();
        let after_cue = touched.len() - 2;
        let device = Scripted::new(vec![
            plain_info(),
            status(0x2e),
            answer(cbor_reply(0, Some(&assertion_body("pam://b", 0x00)))),
            answer(touched),
        ])
        .with_init(CAPABILITY_CBOR);
        let log = device.log.clone();
        let groups = [
            ("pam://a", vec![vec![1; 16]]),
            ("pam://b", vec![vec![2; 16]]),
        ];
        let cued_at = Rc::new(Cell::new(Vec::new()));
        let mut cue = {
            let (log, cued_at) = (log.clone(), cued_at.clone());
            move || {
                let mut seen = cued_at.take();
                seen.push(log.received());
                cued_at.set(seen);
            }
        };
        let (rp_id, assertion) = get_assertion(
            vec![Box::new(device)],
            &groups,
            &HASH,
            soon(5000),
            false,
            &mut |_| None,
            &mut cue,
        )
        .unwrap();
        assert_eq!(rp_id, "pam://b");
        assert_eq!(assertion.credential_id, vec![2; 16]);
        assert_eq!(assertion.auth_data, auth_data("pam://b", 0x01));
        // Cued once, right at the first UPNEEDED keepalive.
        assert_eq!(cued_at.take(), [log.received() - after_cue]);
        let requests = parameters(&log, ctap2::GET_ASSERTION);
        assert_eq!(requests.len(), 3);
        assert_eq!(
            requests.iter().map(up_option).collect::<Vec<_>>(),
            [Some(false), Some(false), Some(true)]
        );
        assert_eq!(allowed(&requests[2]), [vec![2; 16]]);
        assert_eq!(requests[2].get(1).unwrap().as_text(), Some("pam://b"));
        assert_eq!(requests[2].get(2).unwrap().as_bytes(), Some(&HASH[..]));
    }

    #[test]
    fn allow_lists_are_cut_to_the_key_s_limit() {
        let device = Scripted::new(vec![
            info_reply(Value::text_map([])),
            status(0x2e),
            status(0x2e),
            status(0x2e),
        ])
        .with_init(CAPABILITY_CBOR);
        let log = device.log.clone();
        let groups = [("pam://a", vec![vec![1; 16], vec![2; 16], vec![3; 16]])];
        let result = get_assertion(
            vec![Box::new(device)],
            &groups,
            &HASH,
            soon(5000),
            false,
            &mut |_| None,
            &mut || {},
        );
        assert_eq!(result, Err(TouchError::NotRegistered));
        let requests = parameters(&log, ctap2::GET_ASSERTION);
        assert_eq!(
            requests.iter().map(allowed).collect::<Vec<_>>(),
            [vec![vec![1; 16]], vec![vec![2; 16]], vec![vec![3; 16]]]
        );
    }

    fn u2f(word: u16, data: &[u8]) -> Handler {
        let mut payload = data.to_vec();
        payload.extend(word.to_be_bytes());
        answer(reply(CID, CMD_MSG, &payload))
    }

    #[test]
    fn a_u2f_key_is_probed_then_polled_until_touched() {
        let signed = [&[0x01u8, 0, 0, 0, 9][..], &[0x30, 0x02, 0x05, 0x00]].concat();
        let device = Scripted::new(vec![
            u2f(0x6a80, &[]),
            u2f(0x6985, &[]),
            u2f(0x6985, &[]),
            u2f(0x6985, &[]),
            u2f(0x9000, &signed),
        ])
        .with_init(0);
        let log = device.log.clone();
        let groups = [("pam://host", vec![vec![1; 64], vec![2; 64]])];
        let cued_at = Rc::new(Cell::new(Vec::new()));
        let mut cue = {
            let (log, cued_at) = (log.clone(), cued_at.clone());
            move || {
                let mut seen = cued_at.take();
                seen.push(log.received());
                cued_at.set(seen);
            }
        };
        let (rp_id, assertion) = get_assertion(
            vec![Box::new(device)],
            &groups,
            &HASH,
            soon(5000),
            false,
            &mut |_| None,
            &mut cue,
        )
        .unwrap();
        assert_eq!(rp_id, "pam://host");
        assert_eq!(assertion.credential_id, vec![2; 64]);
        let mut expected = rp_id_hash("pam://host").to_vec();
        expected.extend([0x01, 0, 0, 0, 9]);
        assert_eq!(assertion.auth_data, expected);
        // INIT, two checks, then the first "touch needed".
        assert_eq!(cued_at.take(), [4]);
        let apdus = log.requests(CMD_MSG);
        assert_eq!(
            apdus.iter().map(|a| a[2]).collect::<Vec<_>>(),
            [7, 7, 3, 3, 3]
        );
        assert_eq!(apdus[2][7..39], HASH);
    }

    #[test]
    fn no_device_and_no_credential_are_told_apart() {
        assert_eq!(
            get_assertion(
                vec![],
                &[("a", vec![vec![1]])],
                &HASH,
                soon(1000),
                false,
                &mut |_| None,
                &mut || {}
            ),
            Err(TouchError::NoDevice)
        );
        let ctap2_key = Scripted::new(vec![plain_info(), status(0x2e)]).with_init(CAPABILITY_CBOR);
        let u2f_key = Scripted::new(vec![u2f(0x6a80, &[])]).with_init(0);
        let mut cued = false;
        let result = get_assertion(
            vec![Box::new(ctap2_key), Box::new(u2f_key)],
            &[("a", vec![vec![1]])],
            &HASH,
            soon(5000),
            false,
            &mut |_| None,
            &mut || cued = true,
        );
        assert_eq!(result, Err(TouchError::NotRegistered));
        assert!(!cued);
    }

    fn holding_key(then: Handler) -> Scripted {
        Scripted::new(vec![
            plain_info(),
            answer(cbor_reply(0, Some(&assertion_body("a", 0)))),
            then,
        ])
        .with_init(CAPABILITY_CBOR)
    }

    #[test]
    fn a_key_never_touched_times_out_and_is_cancelled() {
        let device = holding_key(answer(vec![packet(CID, CMD_KEEPALIVE, 1, &[2])]));
        let log = device.log.clone();
        let mut cues = 0;
        let result = get_assertion(
            vec![Box::new(device)],
            &[("a", vec![vec![1]])],
            &HASH,
            soon(400),
            false,
            &mut |_| None,
            &mut || cues += 1,
        );
        assert_eq!(result, Err(TouchError::Timeout));
        assert!(log.cancelled(CID));
        assert_eq!(cues, 1);
    }

    #[test]
    fn refusals_map_to_their_touch_errors() {
        for (code, expected) in [
            (0x27, TouchError::Denied),
            (0x2f, TouchError::Timeout),
            (0x36, TouchError::PinRequired),
            (0x32, TouchError::PinBlocked),
            (0x34, TouchError::PinAuthBlocked),
            (0x35, TouchError::PinNotSet),
        ] {
            let device = holding_key(status(code));
            let result = get_assertion(
                vec![Box::new(device)],
                &[("a", vec![vec![1]])],
                &HASH,
                soon(5000),
                false,
                &mut |_| None,
                &mut || {},
            );
            assert_eq!(result, Err(expected));
        }
        let device = holding_key(status(0x33));
        let result = get_assertion(
            vec![Box::new(device)],
            &[("a", vec![vec![1]])],
            &HASH,
            soon(5000),
            false,
            &mut |_| None,
            &mut || {},
        );
        let Err(TouchError::Device(detail)) = result else {
            panic!("{result:?}")
        };
        assert!(
            detail.contains("scripted device") && detail.contains("PIN token"),
            "{detail}"
        );
    }

    #[test]
    fn verification_on_a_key_with_neither_pin_nor_built_in_uv_is_unsupported() {
        let device = holding_key(status(0));
        let log = device.log.clone();
        let mut asked = false;
        let result = get_assertion(
            vec![Box::new(device)],
            &[("a", vec![vec![1]])],
            &HASH,
            soon(5000),
            true,
            &mut |_| {
                asked = true;
                None
            },
            &mut || {},
        );
        assert_eq!(result, Err(TouchError::VerificationUnsupported));
        assert!(!asked);
        assert!(parameters(&log, pin::CLIENT_PIN).is_empty());
    }

    #[test]
    fn a_broken_device_does_not_hide_the_one_that_holds_the_credential() {
        let broken = Scripted::new(vec![answer(vec![packet(CID, CMD_CBOR, 3, &[0, 0xa1])])])
            .with_init(CAPABILITY_CBOR);
        let good = holding_key(answer(cbor_reply(0, Some(&assertion_body("a", 1)))));
        let (_, assertion) = get_assertion(
            vec![Box::new(broken), Box::new(good)],
            &[("a", vec![vec![1]])],
            &HASH,
            soon(5000),
            false,
            &mut |_| None,
            &mut || {},
        )
        .unwrap();
        assert_eq!(assertion.auth_data, auth_data("a", 1));
    }

    fn made_reply(rp_id: &str) -> Vec<[u8; 64]> {
        let mut data = auth_data(rp_id, 0x41);
        data.extend([0; 16]);
        data.extend(4u16.to_be_bytes());
        data.extend([8; 4]);
        let key = Value::int_map([(1, Value::Int(1)), (3, Value::Int(-8))]);
        data.extend(cbor::encode(&key));
        let body = Value::int_map([
            (1, Value::Text("none".into())),
            (2, Value::Bytes(data)),
            (3, Value::Map(vec![])),
        ]);
        cbor_reply(0, Some(&body))
    }

    fn registration<'a>(exclude: &'a [Vec<u8>]) -> Registration<'a> {
        Registration {
            rp_id: "pam://host",
            user_name: "alice",
            user_id: b"alice-id",
            client_data_hash: &HASH,
            exclude,
            require_uv: false,
        }
    }

    #[test]
    fn a_credential_is_made_on_the_first_fido2_key() {
        let u2f_only = Scripted::new(vec![]).with_init(0);
        let touched = [
            vec![packet(CID, CMD_KEEPALIVE, 1, &[2])],
            made_reply("pam://host"),
        ]
        .concat();
        let device = Scripted::new(vec![plain_info(), answer(touched)]).with_init(CAPABILITY_CBOR);
        let log = device.log.clone();
        let mut cues = 0;
        let exclude = [vec![7; 16]];
        let made = make_credential(
            vec![Box::new(u2f_only), Box::new(device)],
            &registration(&exclude),
            soon(5000),
            &mut |_| None,
            &mut || cues += 1,
        )
        .unwrap();
        assert_eq!(made.credential_id, [8; 4]);
        assert_eq!(made.format, "none");
        assert_eq!(cues, 1);
        let request = &parameters(&log, ctap2::MAKE_CREDENTIAL)[0];
        assert_eq!(
            request.get(2).unwrap().get_text("id").unwrap().as_text(),
            Some("pam://host")
        );
        assert_eq!(
            request.get(3).unwrap().get_text("name").unwrap().as_text(),
            Some("alice")
        );
        let algorithms: Vec<i64> = request
            .get(4)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.get_text("alg").unwrap().as_int().unwrap())
            .collect();
        assert_eq!(algorithms, [-7, -8]);
        assert_eq!(
            allowed(&Value::int_map([(3, request.get(5).unwrap().clone())])),
            exclude
        );
        assert_eq!(
            request.get(7).unwrap().get_text("rk"),
            Some(&Value::Bool(false))
        );
    }

    #[test]
    fn registering_a_key_twice_is_refused_as_already_registered() {
        let device = Scripted::new(vec![plain_info(), status(0x19)]).with_init(CAPABILITY_CBOR);
        let exclude = [vec![7; 16]];
        assert_eq!(
            make_credential(
                vec![Box::new(device)],
                &registration(&exclude),
                soon(5000),
                &mut |_| None,
                &mut || {}
            ),
            Err(TouchError::AlreadyRegistered)
        );
        assert_eq!(
            make_credential(
                vec![],
                &registration(&exclude),
                soon(5000),
                &mut |_| None,
                &mut || {}
            ),
            Err(TouchError::NoDevice)
        );
    }

    #[test]
    fn every_touch_error_reads_as_one_line() {
        for error in [
            TouchError::AlreadyRegistered,
            TouchError::Denied,
            TouchError::Device("x".into()),
            TouchError::NoDevice,
            TouchError::NotRegistered,
            TouchError::PinAuthBlocked,
            TouchError::PinBlocked,
            TouchError::PinNotSet,
            TouchError::PinRequired,
            TouchError::Timeout,
            TouchError::VerificationUnsupported,
            TouchError::WrongPin { retries_left: None },
            TouchError::WrongPin {
                retries_left: Some(1),
            },
            TouchError::WrongPin {
                retries_left: Some(7),
            },
        ] {
            let text = error.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text}");
        }
        assert_eq!(
            TouchError::WrongPin {
                retries_left: Some(7)
            }
            .to_string(),
            "wrong PIN; the key allows 7 more tries"
        );
    }

    // clientPIN, against a scripted key whose side of the protocol is computed here with the
    // same primitives (the software key in tests/ and Python's fido2 are the independent checks).

    const PIN: &str = "4711-secret";
    const TOKEN: [u8; 32] = [0x77; 32];
    const DEVICE_SCALAR: [u8; 32] = [0x42; 32];

    fn pin_info(protocols: &[i64], permissions: bool, client_pin: bool) -> Handler {
        let mut options = vec![
            ("clientPin", Value::Bool(client_pin)),
            ("up", Value::Bool(true)),
        ];
        if permissions {
            options.push(("pinUvAuthToken", Value::Bool(true)));
        }
        let info = Value::int_map([
            (1, Value::Array(vec![Value::Text("FIDO_2_1".into())])),
            (4, Value::text_map(options)),
            (
                6,
                Value::Array(protocols.iter().map(|p| Value::Int(*p)).collect()),
            ),
        ]);
        answer(cbor_reply(0, Some(&info)))
    }

    fn retries_reply(left: i64) -> Handler {
        answer(cbor_reply(
            0,
            Some(&Value::int_map([(3, Value::Int(left))])),
        ))
    }

    fn device_key() -> Value {
        let point = p256::SecretKey::from_slice(&DEVICE_SCALAR)
            .unwrap()
            .public_key()
            .to_sec1_point(false);
        Value::int_map([
            (1, Value::Int(2)),
            (3, Value::Int(-25)),
            (-1, Value::Int(1)),
            (-2, Value::Bytes(point.x().unwrap().to_vec())),
            (-3, Value::Bytes(point.y().unwrap().to_vec())),
        ])
    }

    fn key_agreement_reply() -> Handler {
        answer(cbor_reply(0, Some(&Value::int_map([(1, device_key())]))))
    }

    /// The key's side of a token request: checks the PIN hash and answers the encrypted token
    /// (or `status` when it is not 0).
    fn token_reply(protocol: Protocol, status: u8) -> Handler {
        Box::new(move |request| {
            let parameters = cbor::decode(&request.payload[1..]).unwrap();
            let platform = parameters.get(3).unwrap();
            let (_, shared) = pin::agree(protocol, &Zeroizing::new(DEVICE_SCALAR), platform)
                .expect("the platform key is a P-256 point");
            let pin_hash = shared
                .decrypt(parameters.get(6).unwrap().as_bytes().unwrap())
                .unwrap();
            assert_eq!(pin_hash[..], sha2::Sha256::digest(PIN)[..16]);
            if status != 0 {
                return cbor_reply(status, None);
            }
            let token = shared.encrypt(&TOKEN).unwrap();
            cbor_reply(0, Some(&Value::int_map([(2, Value::Bytes(token))])))
        })
    }

    fn pin_assertion(
        device: Scripted,
        pin_source: &mut PinSource<'_>,
    ) -> Result<(String, Assertion), TouchError> {
        get_assertion(
            vec![Box::new(device)],
            &[("a", vec![vec![1]])],
            &HASH,
            soon(5000),
            true,
            pin_source,
            &mut || {},
        )
    }

    fn probe_reply() -> Handler {
        answer(cbor_reply(0, Some(&assertion_body("a", 0))))
    }

    fn uv_option(request: &Value) -> Option<bool> {
        request.get(5)?.get_text("uv")?.as_bool()
    }

    #[test]
    fn a_pin_token_with_permissions_authorizes_the_assertion_in_protocol_2() {
        let device = Scripted::new(vec![
            pin_info(&[2, 1], true, true),
            probe_reply(),
            retries_reply(8),
            key_agreement_reply(),
            token_reply(Protocol::Two, 0),
            answer(cbor_reply(0, Some(&assertion_body("a", 0x05)))),
        ])
        .with_init(CAPABILITY_CBOR);
        let log = device.log.clone();
        let mut asked = Vec::new();
        let (_, assertion) = pin_assertion(device, &mut |retries| {
            asked.push(retries);
            Some(Zeroizing::new(PIN.to_string()))
        })
        .unwrap();
        assert_eq!(asked, [Some(8)]);
        assert_eq!(assertion.auth_data, auth_data("a", 0x05));
        let pin_requests = parameters(&log, pin::CLIENT_PIN);
        let field = |request: &Value, key| request.get(key).and_then(Value::as_int);
        assert_eq!(
            pin_requests
                .iter()
                .map(|r| (field(r, 1), field(r, 2)))
                .collect::<Vec<_>>(),
            [(Some(2), Some(1)), (Some(2), Some(2)), (Some(2), Some(9))]
        );
        let token_request = &pin_requests[2];
        assert_eq!(field(token_request, 9), Some(0x02), "ga permission");
        assert_eq!(token_request.get(0x0a).and_then(Value::as_text), Some("a"));
        // pinHashEnc: a 16-byte IV, then one block.
        assert_eq!(token_request.get(6).unwrap().as_bytes().unwrap().len(), 32);
        let platform = token_request.get(3).unwrap();
        for (label, value) in [(1, 2), (3, -25), (-1, 1)] {
            assert_eq!(platform.get(label).and_then(Value::as_int), Some(value));
        }
        for label in [-2, -3] {
            assert_eq!(platform.get(label).unwrap().as_bytes().unwrap().len(), 32);
        }
        let signed = &parameters(&log, ctap2::GET_ASSERTION)[1];
        assert_eq!(
            signed.get(6).and_then(Value::as_bytes),
            Some(&pin::authenticate(Protocol::Two, &TOKEN, &HASH)[..])
        );
        assert_eq!(signed.get(6).unwrap().as_bytes().unwrap().len(), 32);
        assert_eq!(signed.get(7).and_then(Value::as_int), Some(2));
        assert_eq!(
            uv_option(signed),
            None,
            "no uv option beside a pinUvAuthParam"
        );
        assert_eq!(up_option(signed), Some(true));
    }

    #[test]
    fn a_ctap_2_0_key_with_protocol_1_only_gets_a_plain_pin_token() {
        let device = Scripted::new(vec![
            pin_info(&[1], false, true),
            probe_reply(),
            retries_reply(5),
            key_agreement_reply(),
            token_reply(Protocol::One, 0),
            answer(cbor_reply(0, Some(&assertion_body("a", 0x05)))),
        ])
        .with_init(CAPABILITY_CBOR);
        let log = device.log.clone();
        pin_assertion(device, &mut |_| Some(Zeroizing::new(PIN.to_string()))).unwrap();
        let pin_requests = parameters(&log, pin::CLIENT_PIN);
        let token_request = &pin_requests[2];
        assert_eq!(token_request.get(1).and_then(Value::as_int), Some(1));
        assert_eq!(token_request.get(2).and_then(Value::as_int), Some(5));
        assert_eq!(token_request.get(9), None);
        assert_eq!(token_request.get(0x0a), None);
        // No IV in protocol 1: the one block alone.
        assert_eq!(token_request.get(6).unwrap().as_bytes().unwrap().len(), 16);
        let signed = &parameters(&log, ctap2::GET_ASSERTION)[1];
        assert_eq!(
            signed.get(6).and_then(Value::as_bytes),
            Some(&pin::authenticate(Protocol::One, &TOKEN, &HASH)[..])
        );
        assert_eq!(signed.get(6).unwrap().as_bytes().unwrap().len(), 16);
        assert_eq!(signed.get(7).and_then(Value::as_int), Some(1));
    }

    #[test]
    fn a_wrong_pin_reports_the_tries_left() {
        let device = Scripted::new(vec![
            pin_info(&[2, 1], true, true),
            probe_reply(),
            retries_reply(7),
            key_agreement_reply(),
            token_reply(Protocol::Two, 0x31),
            retries_reply(6),
        ])
        .with_init(CAPABILITY_CBOR);
        let log = device.log.clone();
        let result = pin_assertion(device, &mut |_| Some(Zeroizing::new(PIN.to_string())));
        let error = result.unwrap_err();
        assert_eq!(
            error,
            TouchError::WrongPin {
                retries_left: Some(6)
            }
        );
        assert_eq!(error.to_string(), "wrong PIN; the key allows 6 more tries");
        // No assertion was asked for after the refusal.
        assert_eq!(parameters(&log, ctap2::GET_ASSERTION).len(), 1);
    }

    #[test]
    fn blocked_pins_end_before_or_after_the_pin_is_asked() {
        // No tries left: the user is not even asked.
        let device = Scripted::new(vec![
            pin_info(&[2], true, true),
            probe_reply(),
            retries_reply(0),
        ])
        .with_init(CAPABILITY_CBOR);
        let mut asked = false;
        let result = pin_assertion(device, &mut |_| {
            asked = true;
            Some(Zeroizing::new(PIN.to_string()))
        });
        assert_eq!(result, Err(TouchError::PinBlocked));
        assert!(!asked);
        for (code, expected) in [
            (0x34, TouchError::PinAuthBlocked),
            (0x32, TouchError::PinBlocked),
        ] {
            let device = Scripted::new(vec![
                pin_info(&[2], true, true),
                probe_reply(),
                retries_reply(3),
                key_agreement_reply(),
                token_reply(Protocol::Two, code),
            ])
            .with_init(CAPABILITY_CBOR);
            let result = pin_assertion(device, &mut |_| Some(Zeroizing::new(PIN.to_string())));
            assert_eq!(result, Err(expected));
        }
        assert_eq!(
            TouchError::PinAuthBlocked.to_string(),
            "too many wrong PINs: unplug and replug the security key, then retry"
        );
    }

    #[test]
    fn a_key_without_a_pin_set_or_a_user_without_one_ends_before_any_token() {
        let device = Scripted::new(vec![pin_info(&[2, 1], true, false), probe_reply()])
            .with_init(CAPABILITY_CBOR);
        let log = device.log.clone();
        let mut asked = false;
        let result = pin_assertion(device, &mut |_| {
            asked = true;
            None
        });
        assert_eq!(result, Err(TouchError::PinNotSet));
        assert!(!asked);
        assert!(parameters(&log, pin::CLIENT_PIN).is_empty());
        assert!(TouchError::PinNotSet.to_string().contains("set a PIN"));

        for given in [None, Some(String::new())] {
            let device = Scripted::new(vec![
                pin_info(&[2, 1], true, true),
                probe_reply(),
                retries_reply(8),
            ])
            .with_init(CAPABILITY_CBOR);
            let log = device.log.clone();
            let result = pin_assertion(device, &mut |_| given.clone().map(Zeroizing::new));
            assert_eq!(result, Err(TouchError::PinRequired));
            // getPINRetries only: no key agreement, no token, no touch.
            assert_eq!(parameters(&log, pin::CLIENT_PIN).len(), 1);
            assert_eq!(parameters(&log, ctap2::GET_ASSERTION).len(), 1);
        }
    }

    #[test]
    fn a_key_with_built_in_uv_is_asked_for_uv_and_never_for_a_pin() {
        let info = info_reply(Value::text_map([
            ("clientPin", Value::Bool(true)),
            ("uv", Value::Bool(true)),
        ]));
        let device = Scripted::new(vec![
            info,
            probe_reply(),
            answer(cbor_reply(0, Some(&assertion_body("a", 0x05)))),
        ])
        .with_init(CAPABILITY_CBOR);
        let log = device.log.clone();
        let mut asked = false;
        pin_assertion(device, &mut |_| {
            asked = true;
            None
        })
        .unwrap();
        assert!(!asked);
        assert!(parameters(&log, pin::CLIENT_PIN).is_empty());
        let signed = &parameters(&log, ctap2::GET_ASSERTION)[1];
        assert_eq!(uv_option(signed), Some(true));
        assert_eq!(signed.get(6), None);
    }

    #[test]
    fn a_credential_needing_verification_is_made_with_a_make_credential_token() {
        let device = Scripted::new(vec![
            pin_info(&[2, 1], true, true),
            retries_reply(8),
            key_agreement_reply(),
            token_reply(Protocol::Two, 0),
            answer(made_reply("pam://host")),
        ])
        .with_init(CAPABILITY_CBOR);
        let log = device.log.clone();
        let registration = Registration {
            require_uv: true,
            ..registration(&[])
        };
        let mut asked = Vec::new();
        make_credential(
            vec![Box::new(device)],
            &registration,
            soon(5000),
            &mut |retries| {
                asked.push(retries);
                Some(Zeroizing::new(PIN.to_string()))
            },
            &mut || {},
        )
        .unwrap();
        assert_eq!(asked, [Some(8)]);
        let token_request = &parameters(&log, pin::CLIENT_PIN)[2];
        assert_eq!(token_request.get(9).and_then(Value::as_int), Some(0x01));
        assert_eq!(
            token_request.get(0x0a).and_then(Value::as_text),
            Some("pam://host")
        );
        let request = &parameters(&log, ctap2::MAKE_CREDENTIAL)[0];
        assert_eq!(
            request.get(8).and_then(Value::as_bytes),
            Some(&pin::authenticate(Protocol::Two, &TOKEN, &HASH)[..])
        );
        assert_eq!(request.get(9).and_then(Value::as_int), Some(2));
        assert_eq!(request.get(7).unwrap().get_text("uv"), None);
    }

    #[test]
    fn a_key_agreement_key_off_the_curve_is_refused() {
        let mut off_curve = device_key();
        if let Value::Map(entries) = &mut off_curve {
            for (label, value) in entries {
                if *label == Value::Int(-3) {
                    *value = Value::Bytes(vec![1; 32]);
                }
            }
        }
        let device = Scripted::new(vec![
            pin_info(&[2], true, true),
            probe_reply(),
            retries_reply(8),
            answer(cbor_reply(0, Some(&Value::int_map([(1, off_curve)])))),
        ])
        .with_init(CAPABILITY_CBOR);
        let result = pin_assertion(device, &mut |_| Some(Zeroizing::new(PIN.to_string())));
        let Err(TouchError::Device(detail)) = result else {
            panic!("{result:?}")
        };
        assert!(detail.contains("not on P-256"), "{detail}");
    }
}
