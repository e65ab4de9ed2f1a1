//! The software security key, driven report by report from a minimal host written here (not
//! crates/fido), and its signatures checked with the core's verifier: CTAPHID framing and its
//! errors, makeCredential and getAssertion in ES256 and EdDSA, touch, cancel, busy channels,
//! counters, U2F, the deliberate faults, and the unix socket it is served on. At the end, the
//! key's clientPIN (PIN/UV auth protocols 1 and 2) meets crates/fido's host side.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use twofold_core::cbor::{self, Value};
use twofold_core::key_assertion::{rp_id_hash, verify_es256, AssertionError};
use twofold_fido::TouchError;
use twofold_tests::files::TempDir;
use twofold_tests::soft_key::{
    Alg, Attestation, Fault, Report, SignCount, SoftKey, Touch, BROADCAST_CHANNEL, MAX_MESSAGE,
};
use zeroize::Zeroizing;

const RP_ID: &str = "wiki.example";

// CTAPHID commands and codes, as the host sees them (CTAP 2.1 §11.2.9).
const PING: u8 = 0x01;
const MSG: u8 = 0x03;
const INIT: u8 = 0x06;
const CBOR: u8 = 0x10;
const CANCEL: u8 = 0x11;
const KEEPALIVE: u8 = 0x3b;
const ERROR: u8 = 0x3f;
const ERR_INVALID_CMD: u8 = 0x01;
const ERR_INVALID_LEN: u8 = 0x03;
const ERR_INVALID_SEQ: u8 = 0x04;
const ERR_CHANNEL_BUSY: u8 = 0x06;
const ERR_INVALID_CHANNEL: u8 = 0x0b;
const MAKE_CREDENTIAL: u8 = 0x01;
const GET_ASSERTION: u8 = 0x02;
const GET_INFO: u8 = 0x04;

/// One CTAPHID message as the host reassembles it.
#[derive(Debug, PartialEq, Eq)]
struct Message {
    cid: u32,
    command: u8,
    payload: Vec<u8>,
}

/// A minimal host: frames requests, reassembles replies, ticks through touch waits.
struct Host {
    key: SoftKey,
    cid: u32,
}

impl Host {
    fn new(key: SoftKey) -> Host {
        let mut host = Host {
            key,
            cid: BROADCAST_CHANNEL,
        };
        host.cid = host.init();
        host
    }

    /// CTAPHID_INIT on the broadcast channel; returns the allocated channel.
    fn init(&mut self) -> u32 {
        let nonce = *b"nonce-42";
        let reply = self.exchange(BROADCAST_CHANNEL, INIT, &nonce);
        assert_eq!(reply.len(), 1, "{reply:?}");
        let reply = &reply[0];
        assert_eq!((reply.cid, reply.command), (BROADCAST_CHANNEL, INIT));
        assert_eq!(reply.payload.len(), 17);
        assert_eq!(&reply.payload[..8], &nonce);
        u32::from_be_bytes(reply.payload[8..12].try_into().unwrap())
    }

    /// Sends one message and returns what comes back at once (no ticks).
    fn exchange(&mut self, cid: u32, command: u8, payload: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        for report in request(cid, command, payload) {
            out.extend(self.key.receive_report(report));
        }
        reassemble(&out)
    }

    /// A CTAP2 request whose reply comes at once.
    fn ctap2(&mut self, command: u8, parameters: Option<Value>) -> (u8, Option<Value>) {
        let (keepalives, reply) = self.ctap2_touched(command, parameters, 0);
        assert_eq!(keepalives, 0);
        reply
    }

    /// A CTAP2 request, ticking up to `max_ticks` times for its reply; returns the number of
    /// keepalives seen, the status and the decoded body.
    fn ctap2_touched(
        &mut self,
        command: u8,
        parameters: Option<Value>,
        max_ticks: u32,
    ) -> (u32, (u8, Option<Value>)) {
        let mut payload = vec![command];
        if let Some(parameters) = parameters {
            payload.extend(cbor::encode(&parameters));
        }
        let mut messages = self.exchange(self.cid, CBOR, &payload);
        let mut keepalives = 0;
        let mut ticks = 0;
        loop {
            for message in messages.drain(..) {
                assert_eq!(message.cid, self.cid);
                match message.command {
                    KEEPALIVE => {
                        assert_eq!(message.payload, [2], "UPNEEDED");
                        keepalives += 1;
                    }
                    CBOR => return (keepalives, status_and_body(&message.payload)),
                    other => panic!("unexpected command {other:#x}: {message:?}"),
                }
            }
            assert!(ticks < max_ticks, "no reply after {ticks} ticks");
            ticks += 1;
            messages = reassemble(&self.key.tick());
        }
    }
}

fn status_and_body(payload: &[u8]) -> (u8, Option<Value>) {
    let body = (payload.len() > 1).then(|| cbor::decode(&payload[1..]).expect("CBOR body"));
    (payload[0], body)
}

/// Frames a message into an init packet and continuation packets.
fn request(cid: u32, command: u8, payload: &[u8]) -> Vec<Report> {
    let mut reports = Vec::new();
    let mut first = [0u8; 64];
    first[..4].copy_from_slice(&cid.to_be_bytes());
    first[4] = 0x80 | command;
    first[5..7].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    let head = payload.len().min(57);
    first[7..7 + head].copy_from_slice(&payload[..head]);
    reports.push(first);
    for (seq, chunk) in payload[head..].chunks(59).enumerate() {
        let mut packet = [0u8; 64];
        packet[..4].copy_from_slice(&cid.to_be_bytes());
        packet[4] = seq as u8;
        packet[5..5 + chunk.len()].copy_from_slice(chunk);
        reports.push(packet);
    }
    reports
}

/// Reassembles complete messages; panics on anything a correct device would not send.
fn reassemble(reports: &[Report]) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut reports = reports.iter();
    while let Some(first) = reports.next() {
        assert!(first[4] & 0x80 != 0, "a message starts with an init packet");
        let cid = u32::from_be_bytes(first[..4].try_into().unwrap());
        let length = usize::from(u16::from_be_bytes([first[5], first[6]]));
        let mut payload = first[7..7 + length.min(57)].to_vec();
        let mut seq = 0;
        while payload.len() < length {
            let packet = reports.next().expect("a continuation packet");
            assert_eq!(packet[..4], first[..4]);
            assert_eq!(packet[4], seq);
            seq += 1;
            let take = (length - payload.len()).min(59);
            payload.extend_from_slice(&packet[5..5 + take]);
        }
        messages.push(Message {
            cid,
            command: first[4] & 0x7f,
            payload,
        });
    }
    messages
}

fn descriptor(id: &[u8]) -> Value {
    Value::text_map([
        ("id", Value::Bytes(id.to_vec())),
        ("type", Value::Text("public-key".into())),
    ])
}

fn make_credential_request(client_data_hash: &[u8; 32], algs: &[i64], exclude: &[&[u8]]) -> Value {
    let params = algs
        .iter()
        .map(|alg| {
            Value::text_map([
                ("alg", Value::Int(*alg)),
                ("type", Value::Text("public-key".into())),
            ])
        })
        .collect();
    let mut request = vec![
        (1, Value::Bytes(client_data_hash.to_vec())),
        (
            2,
            Value::text_map([
                ("id", Value::Text(RP_ID.into())),
                ("name", Value::Text("Wiki".into())),
            ]),
        ),
        (
            3,
            Value::text_map([
                ("id", Value::Bytes(b"user-1000".to_vec())),
                ("name", Value::Text("alice".into())),
            ]),
        ),
        (4, Value::Array(params)),
    ];
    if !exclude.is_empty() {
        request.push((
            5,
            Value::Array(exclude.iter().map(|id| descriptor(id)).collect()),
        ));
    }
    Value::int_map(request)
}

fn get_assertion_request(
    rp_id: &str,
    client_data_hash: &[u8; 32],
    allow: &[&[u8]],
    up: Option<bool>,
) -> Value {
    let mut request = vec![
        (1, Value::Text(rp_id.into())),
        (2, Value::Bytes(client_data_hash.to_vec())),
        (
            3,
            Value::Array(allow.iter().map(|id| descriptor(id)).collect()),
        ),
    ];
    if let Some(up) = up {
        request.push((5, Value::text_map([("up", Value::Bool(up))])));
    }
    Value::int_map(request)
}

/// What authenticator data with attested credential data holds (WebAuthn §6.1, §6.5.1).
struct Attested {
    flags: u8,
    counter: u32,
    aaguid: Vec<u8>,
    credential_id: Vec<u8>,
    public_key: Vec<u8>,
}

fn parse_attested(auth_data: &[u8]) -> Attested {
    assert_eq!(auth_data[..32], rp_id_hash(RP_ID));
    let id_length = usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]]));
    let credential_id = auth_data[55..55 + id_length].to_vec();
    let key_bytes = &auth_data[55 + id_length..];
    let (_, rest) = cbor::decode_prefix(key_bytes).unwrap();
    assert!(rest.is_empty(), "no extensions follow the key");
    Attested {
        flags: auth_data[32],
        counter: u32::from_be_bytes(auth_data[33..37].try_into().unwrap()),
        aaguid: auth_data[37..53].to_vec(),
        credential_id,
        public_key: key_bytes.to_vec(),
    }
}

/// The SEC1 uncompressed point of an EC2 P-256 COSE key.
fn sec1_point(cose_key: &[u8]) -> Vec<u8> {
    let key = cbor::decode(cose_key).unwrap();
    assert_eq!(key.get(1), Some(&Value::Int(2)), "kty EC2");
    assert_eq!(key.get(3), Some(&Value::Int(-7)), "alg ES256");
    assert_eq!(key.get(-1), Some(&Value::Int(1)), "crv P-256");
    let x = key.get(-2).and_then(Value::as_bytes).unwrap();
    let y = key.get(-3).and_then(Value::as_bytes).unwrap();
    assert_eq!((x.len(), y.len()), (32, 32));
    [&[0x04][..], x, y].concat()
}

fn ed25519_key(cose_key: &[u8]) -> ed25519_dalek::VerifyingKey {
    let key = cbor::decode(cose_key).unwrap();
    assert_eq!(key.get(1), Some(&Value::Int(1)), "kty OKP");
    assert_eq!(key.get(3), Some(&Value::Int(-8)), "alg EdDSA");
    assert_eq!(key.get(-1), Some(&Value::Int(6)), "crv Ed25519");
    let x: [u8; 32] = key
        .get(-2)
        .and_then(Value::as_bytes)
        .unwrap()
        .try_into()
        .unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap()
}

fn client_data_hash(label: &str) -> [u8; 32] {
    Sha256::digest(label.as_bytes()).into()
}

/// An assertion: status, credential id, authenticator data, signature.
fn assertion(body: &Value) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let credential = body.get(1).unwrap();
    assert_eq!(
        credential.get_text("type").and_then(Value::as_text),
        Some("public-key")
    );
    let id = credential
        .get_text("id")
        .and_then(Value::as_bytes)
        .unwrap()
        .to_vec();
    let auth_data = body.get(2).and_then(Value::as_bytes).unwrap().to_vec();
    let signature = body.get(3).and_then(Value::as_bytes).unwrap().to_vec();
    (id, auth_data, signature)
}

fn signed(auth_data: &[u8], client_data_hash: &[u8]) -> Vec<u8> {
    [auth_data, client_data_hash].concat()
}

#[test]
fn init_on_the_broadcast_channel_echoes_the_nonce_and_allocates_fresh_channels() {
    let mut host = Host::new(SoftKey::new());
    let first = host.cid;
    let second = host.init();
    assert!(![0, BROADCAST_CHANNEL, first].contains(&second));
    let reply = host.exchange(BROADCAST_CHANNEL, INIT, b"12345678");
    let payload = &reply[0].payload;
    assert_eq!(payload[12], 2, "CTAPHID protocol version");
    assert_eq!(
        payload[16], 0x05,
        "capabilities: CBOR | WINK, and MSG (no NMSG)"
    );
    let echoed = host.exchange(first, PING, b"ping on my own channel");
    assert_eq!(echoed[0].payload, b"ping on my own channel");
}

#[test]
fn a_u2f_only_key_has_no_cbor_capability_and_refuses_cbor() {
    let mut host = Host::new(SoftKey::new().u2f_only());
    let reply = host.exchange(BROADCAST_CHANNEL, INIT, b"12345678");
    assert_eq!(reply[0].payload[16], 0x01, "WINK only");
    let reply = host.exchange(host.cid, CBOR, &[GET_INFO]);
    assert_eq!(reply[0].command, ERROR);
    assert_eq!(reply[0].payload, [ERR_INVALID_CMD]);
}

#[test]
fn get_info_lists_versions_aaguid_and_options() {
    let mut host = Host::new(SoftKey::new().client_pin(Some(false)));
    let (status, info) = host.ctap2(GET_INFO, None);
    assert_eq!(status, 0);
    let info = info.unwrap();
    let versions: Vec<&str> = info
        .get(1)
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .filter_map(Value::as_text)
        .collect();
    assert_eq!(versions, ["FIDO_2_0", "FIDO_2_1", "U2F_V2"]);
    assert_eq!(
        info.get(3).and_then(Value::as_bytes).map(<[u8]>::len),
        Some(16)
    );
    let options = info.get(4).unwrap();
    let option = |name| options.get_text(name).and_then(Value::as_bool);
    assert_eq!(option("rk"), Some(false));
    assert_eq!(option("up"), Some(true));
    assert_eq!(option("plat"), Some(false));
    assert_eq!(option("clientPin"), Some(false));
    assert_eq!(
        info.get(6),
        Some(&Value::Array(vec![Value::Int(2), Value::Int(1)]))
    );
}

#[test]
fn es256_credential_and_assertions_verify_with_the_core_verifier() {
    let mut host = Host::new(SoftKey::new());
    let made = client_data_hash("create");
    let (status, body) = host.ctap2(
        MAKE_CREDENTIAL,
        Some(make_credential_request(&made, &[-7], &[])),
    );
    assert_eq!(status, 0);
    let body = body.unwrap();
    assert_eq!(body.get(1).and_then(Value::as_text), Some("none"));
    assert_eq!(body.get(3), Some(&Value::Map(vec![])));
    let attested = parse_attested(body.get(2).and_then(Value::as_bytes).unwrap());
    assert_eq!(attested.flags, 0x41, "UP | AT");
    assert_eq!(attested.counter, 0);
    assert_eq!(attested.aaguid.len(), 16);
    assert!((32..=64).contains(&attested.credential_id.len()));
    assert_eq!(
        host.key.last_credential(),
        Some((attested.credential_id.clone(), attested.public_key.clone()))
    );
    let point = sec1_point(&attested.public_key);

    for expected_count in 1..=3 {
        let hash = client_data_hash(&format!("get {expected_count}"));
        let request = get_assertion_request(
            RP_ID,
            &hash,
            &[b"another key's id", &attested.credential_id],
            None,
        );
        let (status, body) = host.ctap2(GET_ASSERTION, Some(request));
        assert_eq!(status, 0);
        let (id, auth_data, signature) = assertion(&body.unwrap());
        assert_eq!(id, attested.credential_id);
        assert_eq!(auth_data.len(), 37, "no attested data, no extensions");
        let verified = verify_es256(&point, RP_ID, &auth_data, &hash, &signature).unwrap();
        assert_eq!(verified.sign_count, expected_count);
        assert!(!verified.user_verified);
        let mut tampered = auth_data.clone();
        tampered[36] ^= 1;
        assert_eq!(
            verify_es256(&point, RP_ID, &tampered, &hash, &signature),
            Err(AssertionError::BadSignature)
        );
    }
    assert_eq!(host.key.counter(&attested.credential_id), Some(3));
    assert_eq!(host.key.signatures(), 3);
}

#[test]
fn eddsa_is_chosen_when_listed_first_and_its_signatures_verify() {
    let mut host = Host::new(SoftKey::new());
    let made = client_data_hash("create");
    let request = make_credential_request(&made, &[-8, -7], &[]);
    let (status, body) = host.ctap2(MAKE_CREDENTIAL, Some(request));
    assert_eq!(status, 0);
    let attested = parse_attested(body.unwrap().get(2).and_then(Value::as_bytes).unwrap());
    let key = ed25519_key(&attested.public_key);

    let hash = client_data_hash("get");
    let request = get_assertion_request(RP_ID, &hash, &[&attested.credential_id], Some(true));
    let (_, body) = host.ctap2(GET_ASSERTION, Some(request));
    let (_, auth_data, signature) = assertion(&body.unwrap());
    assert_eq!(auth_data[32], 0x01, "UP");
    let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
    key.verify_strict(&signed(&auth_data, &hash), &signature)
        .unwrap();
    assert!(key
        .verify_strict(&signed(&auth_data, &[0u8; 32]), &signature)
        .is_err());
}

#[test]
fn the_first_supported_algorithm_is_chosen_and_none_supported_is_refused() {
    let mut host = Host::new(SoftKey::new());
    let hash = client_data_hash("create");
    // RS256 (-257) is not supported, ES256 is.
    let (status, body) = host.ctap2(
        MAKE_CREDENTIAL,
        Some(make_credential_request(&hash, &[-257, -7, -8], &[])),
    );
    assert_eq!(status, 0);
    let attested = parse_attested(body.unwrap().get(2).and_then(Value::as_bytes).unwrap());
    sec1_point(&attested.public_key);
    let (status, body) = host.ctap2(
        MAKE_CREDENTIAL,
        Some(make_credential_request(&hash, &[-257, -35], &[])),
    );
    assert_eq!(
        (status, body),
        (0x26, None),
        "CTAP2_ERR_UNSUPPORTED_ALGORITHM"
    );
}

#[test]
fn packed_self_attestation_is_signed_by_the_credential_key() {
    for (alg, number) in [(-7, -7), (-8, -8)] {
        let mut host = Host::new(SoftKey::new().attestation(Attestation::PackedSelf));
        let hash = client_data_hash("create");
        let (_, body) = host.ctap2(
            MAKE_CREDENTIAL,
            Some(make_credential_request(&hash, &[alg], &[])),
        );
        let body = body.unwrap();
        assert_eq!(body.get(1).and_then(Value::as_text), Some("packed"));
        let auth_data = body.get(2).and_then(Value::as_bytes).unwrap();
        let statement = body.get(3).unwrap();
        assert_eq!(statement.get_text("alg"), Some(&Value::Int(number)));
        assert!(
            statement.get_text("x5c").is_none(),
            "self attestation has no certificate"
        );
        let signature = statement.get_text("sig").and_then(Value::as_bytes).unwrap();
        let attested = parse_attested(auth_data);
        let message = signed(auth_data, &hash);
        if alg == -7 {
            use p256::ecdsa::signature::Verifier as _;
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1_point(&attested.public_key))
                .unwrap();
            let signature = p256::ecdsa::Signature::from_der(signature).unwrap();
            key.verify(&message, &signature).unwrap();
        } else {
            let signature = ed25519_dalek::Signature::from_slice(signature).unwrap();
            ed25519_key(&attested.public_key)
                .verify_strict(&message, &signature)
                .unwrap();
        }
    }
}

#[test]
fn a_silent_probe_answers_without_a_touch_and_without_the_up_flag() {
    let (key, id, public_key) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let mut host = Host::new(key.touch(Touch::Never));
    let hash = client_data_hash("probe");
    let (status, body) = host.ctap2(
        GET_ASSERTION,
        Some(get_assertion_request(RP_ID, &hash, &[&id], Some(false))),
    );
    assert_eq!(status, 0);
    let (_, auth_data, signature) = assertion(&body.unwrap());
    assert_eq!(auth_data[32] & 0x01, 0, "no UP");
    assert_eq!(
        verify_es256(
            &sec1_point(&public_key),
            RP_ID,
            &auth_data,
            &hash,
            &signature
        ),
        Err(AssertionError::NoUserPresence)
    );
}

#[test]
fn a_foreign_credential_or_another_rp_id_gets_no_credentials() {
    let (key, id, _) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let (_, foreign, _) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let mut host = Host::new(key);
    let hash = client_data_hash("get");
    for request in [
        get_assertion_request(RP_ID, &hash, &[&foreign], None),
        get_assertion_request("other.example", &hash, &[&id], None),
        get_assertion_request(RP_ID, &hash, &[], None),
    ] {
        assert_eq!(host.ctap2(GET_ASSERTION, Some(request)), (0x2e, None));
    }
    assert_eq!(host.key.signatures(), 0);
}

#[test]
fn an_excluded_credential_is_refused_after_a_touch() {
    let (key, id, _) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let mut host = Host::new(key.touch(Touch::After(1)));
    let hash = client_data_hash("create");
    let (keepalives, reply) = host.ctap2_touched(
        MAKE_CREDENTIAL,
        Some(make_credential_request(&hash, &[-7], &[&id])),
        5,
    );
    assert_eq!(
        (keepalives, reply),
        (1, (0x19, None)),
        "CTAP2_ERR_CREDENTIAL_EXCLUDED"
    );
    assert_eq!(host.key.last_credential(), None);
}

#[test]
fn a_touch_after_n_keepalives_answers_after_exactly_n() {
    let (key, id, public_key) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let mut host = Host::new(key.touch(Touch::After(3)));
    let hash = client_data_hash("get");
    let (keepalives, (status, body)) = host.ctap2_touched(
        GET_ASSERTION,
        Some(get_assertion_request(RP_ID, &hash, &[&id], None)),
        10,
    );
    assert_eq!((keepalives, status), (3, 0));
    let (_, auth_data, signature) = assertion(&body.unwrap());
    verify_es256(
        &sec1_point(&public_key),
        RP_ID,
        &auth_data,
        &hash,
        &signature,
    )
    .unwrap();
}

#[test]
fn cancel_ends_a_touch_that_never_comes_with_keepalive_cancel() {
    let (key, id, _) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let mut host = Host::new(key.touch(Touch::Never));
    let hash = client_data_hash("get");
    let payload = [
        vec![GET_ASSERTION],
        cbor::encode(&get_assertion_request(RP_ID, &hash, &[&id], None)),
    ]
    .concat();
    assert_eq!(host.exchange(host.cid, CBOR, &payload), []);
    for _ in 0..20 {
        let keepalive = reassemble(&host.key.tick());
        assert_eq!(
            keepalive,
            [Message {
                cid: host.cid,
                command: KEEPALIVE,
                payload: vec![2]
            }]
        );
    }
    assert!(host.key.waiting_for_touch());
    let reply = host.exchange(host.cid, CANCEL, &[]);
    assert_eq!(
        reply,
        [Message {
            cid: host.cid,
            command: CBOR,
            payload: vec![0x2d]
        }]
    );
    assert!(!host.key.waiting_for_touch());
    assert_eq!(host.key.cancellations(), 1);
    assert!(host.key.tick().is_empty());
    assert_eq!(host.key.signatures(), 0);
    // The key is free again.
    assert_eq!(host.ctap2(GET_INFO, None).0, 0);
}

#[test]
fn a_cancel_from_another_channel_or_with_nothing_pending_is_ignored() {
    let (key, id, _) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let mut host = Host::new(key.touch(Touch::Never));
    let other = host.init();
    assert_eq!(host.exchange(host.cid, CANCEL, &[]), []);
    let hash = client_data_hash("get");
    let payload = [
        vec![GET_ASSERTION],
        cbor::encode(&get_assertion_request(RP_ID, &hash, &[&id], None)),
    ]
    .concat();
    host.exchange(host.cid, CBOR, &payload);
    assert_eq!(host.exchange(other, CANCEL, &[]), []);
    assert!(host.key.waiting_for_touch());
}

#[test]
fn a_denied_touch_is_operation_denied() {
    let (key, id, _) = SoftKey::with_credential(RP_ID, Alg::EdDsa);
    let mut host = Host::new(key.touch(Touch::Denied));
    let hash = client_data_hash("get");
    assert_eq!(
        host.ctap2(
            GET_ASSERTION,
            Some(get_assertion_request(RP_ID, &hash, &[&id], None))
        ),
        (0x27, None)
    );
}

#[test]
fn a_busy_key_answers_channel_busy_to_the_first_requests_and_then_serves() {
    let mut host = Host::new(SoftKey::new().busy_for(2));
    for _ in 0..2 {
        let reply = host.exchange(host.cid, CBOR, &[GET_INFO]);
        assert_eq!(
            reply,
            [Message {
                cid: host.cid,
                command: ERROR,
                payload: vec![ERR_CHANNEL_BUSY]
            }]
        );
    }
    assert_eq!(host.ctap2(GET_INFO, None).0, 0);
}

#[test]
fn another_channel_is_busy_while_a_touch_is_awaited() {
    let (key, id, _) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let mut host = Host::new(key.touch(Touch::After(2)));
    let other = host.init();
    let hash = client_data_hash("get");
    let payload = [
        vec![GET_ASSERTION],
        cbor::encode(&get_assertion_request(RP_ID, &hash, &[&id], None)),
    ]
    .concat();
    host.exchange(host.cid, CBOR, &payload);
    let reply = host.exchange(other, CBOR, &[GET_INFO]);
    assert_eq!(
        reply,
        [Message {
            cid: other,
            command: ERROR,
            payload: vec![ERR_CHANNEL_BUSY]
        }]
    );
    host.key.tick();
    let done = reassemble(&host.key.tick());
    assert_eq!(
        done.last().map(|m| (m.cid, m.command, m.payload[0])),
        Some((host.cid, CBOR, 0))
    );
}

#[test]
fn framing_errors_are_answered_with_ctaphid_errors() {
    let mut host = Host::new(SoftKey::new());
    let cid = host.cid;
    let error = |code| {
        vec![Message {
            cid,
            command: ERROR,
            payload: vec![code],
        }]
    };

    // A continuation with the wrong sequence number.
    let mut reports = request(cid, PING, &[7u8; 200]);
    reports[2][4] = 5;
    let mut out = Vec::new();
    for report in reports {
        out.extend(host.key.receive_report(report));
    }
    assert_eq!(reassemble(&out), error(ERR_INVALID_SEQ));

    // A declared length over what CTAPHID can carry.
    let mut oversized = request(cid, PING, &[])[0];
    oversized[5..7].copy_from_slice(&((MAX_MESSAGE + 1) as u16).to_be_bytes());
    assert_eq!(
        reassemble(&host.key.receive_report(oversized)),
        error(ERR_INVALID_LEN)
    );

    // An unknown command, and INIT with a nonce of the wrong size.
    assert_eq!(host.exchange(cid, 0x3a, b"?"), error(ERR_INVALID_CMD));
    let reply = host.exchange(BROADCAST_CHANNEL, INIT, b"1234");
    assert_eq!(reply[0].payload, [ERR_INVALID_LEN]);

    // A channel never allocated, and a request on the broadcast channel.
    let reply = host.exchange(0x1234_5678, PING, b"hi");
    assert_eq!(
        (reply[0].command, &reply[0].payload[..]),
        (ERROR, &[ERR_INVALID_CHANNEL][..])
    );
    let reply = host.exchange(BROADCAST_CHANNEL, PING, b"hi");
    assert_eq!(reply[0].payload, [ERR_INVALID_CHANNEL]);

    // A continuation packet out of nowhere is ignored; a new init packet mid-message is refused.
    assert!(host
        .key
        .receive_report(request(cid, PING, &[1u8; 100])[1])
        .is_empty());
    let first = request(cid, PING, &[1u8; 100])[0];
    assert!(host.key.receive_report(first).is_empty());
    assert_eq!(
        reassemble(&host.key.receive_report(first)),
        error(ERR_INVALID_SEQ)
    );

    // And the channel still works.
    assert_eq!(host.exchange(cid, PING, &[9u8; 300])[0].payload, [9u8; 300]);
}

#[test]
fn a_request_over_many_packets_is_reassembled() {
    let mut host = Host::new(SoftKey::new());
    // An allow list of 60 foreign ids and then the key's own: well over a dozen packets.
    let (own, own_key) = host.key.add_credential(RP_ID, Alg::Es256);
    let foreign: Vec<Vec<u8>> = (0..60u8).map(|i| vec![i; 48]).collect();
    let mut allow: Vec<&[u8]> = foreign.iter().map(Vec::as_slice).collect();
    allow.push(&own);
    let hash = client_data_hash("get");
    let request = get_assertion_request(RP_ID, &hash, &allow, None);
    assert!(cbor::encode(&request).len() > 57 + 59 * 10);
    let (status, body) = host.ctap2(GET_ASSERTION, Some(request));
    assert_eq!(status, 0);
    let (id, auth_data, signature) = assertion(&body.unwrap());
    assert_eq!(id, own);
    verify_es256(&sec1_point(&own_key), RP_ID, &auth_data, &hash, &signature).unwrap();
}

#[test]
fn sign_counters_can_stay_fixed_stay_zero_or_go_backwards() {
    for (mode, expected) in [
        (SignCount::Fixed(7), [7, 7, 7]),
        (SignCount::Fixed(0), [0, 0, 0]),
        (SignCount::Backwards(10), [9, 8, 7]),
        (SignCount::Incrementing, [1, 2, 3]),
    ] {
        let mut host = Host::new(SoftKey::new().sign_count(mode));
        let (id, public_key) = host.key.add_credential(RP_ID, Alg::Es256);
        for count in expected {
            let hash = client_data_hash("get");
            let (_, body) = host.ctap2(
                GET_ASSERTION,
                Some(get_assertion_request(RP_ID, &hash, &[&id], None)),
            );
            let (_, auth_data, signature) = assertion(&body.unwrap());
            let verified = verify_es256(
                &sec1_point(&public_key),
                RP_ID,
                &auth_data,
                &hash,
                &signature,
            )
            .unwrap();
            assert_eq!(verified.sign_count, count, "{mode:?}");
        }
        assert_eq!(host.key.counter(&id), Some(expected[2]));
    }
}

#[test]
fn uv_is_refused_without_built_in_verification_and_flagged_with_it() {
    let hash = client_data_hash("create");
    let mut request = make_credential_request(&hash, &[-7], &[]);
    if let Value::Map(entries) = &mut request {
        entries.push((Value::Int(7), Value::text_map([("uv", Value::Bool(true))])));
    }
    let mut host = Host::new(SoftKey::new());
    assert_eq!(
        host.ctap2(MAKE_CREDENTIAL, Some(request.clone())),
        (0x2c, None)
    );
    let mut host = Host::new(SoftKey::new().user_verification());
    let (_, body) = host.ctap2(MAKE_CREDENTIAL, Some(request));
    let attested = parse_attested(body.unwrap().get(2).and_then(Value::as_bytes).unwrap());
    assert_eq!(attested.flags, 0x45, "UP | UV | AT");
}

#[test]
fn malformed_ctap2_requests_get_ctap2_errors() {
    let mut host = Host::new(SoftKey::new());
    let status =
        |host: &mut Host, payload: &[u8]| host.exchange(host.cid, CBOR, payload)[0].payload.clone();
    assert_eq!(
        status(&mut host, &[GET_ASSERTION, 0xa1, 0x01]),
        [0x12],
        "INVALID_CBOR"
    );
    assert_eq!(
        status(&mut host, &[GET_ASSERTION, 0x01]),
        [0x11],
        "CBOR_UNEXPECTED_TYPE"
    );
    let no_hash = cbor::encode(&Value::int_map([(1, Value::Text(RP_ID.into()))]));
    assert_eq!(
        status(&mut host, &[&[GET_ASSERTION][..], &no_hash].concat()),
        [0x14],
        "MISSING_PARAMETER"
    );
    assert_eq!(status(&mut host, &[0x40]), [0x01], "INVALID_COMMAND");
    assert_eq!(status(&mut host, &[]), [0x03], "INVALID_LENGTH");
}

#[test]
fn faults_break_the_reply_in_the_way_they_say() {
    let info_fault = |fault| {
        let mut host = Host::new(SoftKey::new().fault(fault, GET_INFO));
        let mut reports = Vec::new();
        for report in request(host.cid, CBOR, &[GET_INFO]) {
            reports.extend(host.key.receive_report(report));
        }
        reports
    };
    let truncated = info_fault(Fault::TruncatedReply);
    assert_eq!(truncated.len(), 1);
    assert!(usize::from(u16::from_be_bytes([truncated[0][5], truncated[0][6]])) > 57);

    let oversized = info_fault(Fault::OversizedLength);
    assert_eq!(oversized.len(), 1);
    assert_eq!(u16::from_be_bytes([oversized[0][5], oversized[0][6]]), 7610);

    let wrong_seq = info_fault(Fault::WrongSequence);
    assert!(wrong_seq.len() > 1);
    assert_eq!(wrong_seq[1][4], 1, "the first continuation claims SEQ 1");

    let junk = reassemble(&info_fault(Fault::JunkCbor));
    assert_eq!(junk[0].payload[0], 0);
    assert!(cbor::decode(&junk[0].payload[1..]).is_err());

    // A fault aimed at getAssertion leaves getInfo alone.
    let mut host = Host::new(SoftKey::new().fault(Fault::JunkCbor, GET_ASSERTION));
    assert_eq!(host.ctap2(GET_INFO, None).0, 0);
}

/// A U2F APDU in the extended encoding, as CTAPHID_MSG carries it.
fn apdu(instruction: u8, p1: u8, data: &[u8]) -> Vec<u8> {
    let mut apdu = vec![0x00, instruction, p1, 0x00, 0x00];
    apdu.extend((data.len() as u16).to_be_bytes());
    apdu.extend(data);
    apdu.extend([0x00, 0x00]);
    apdu
}

fn status_word(reply: &[u8]) -> u16 {
    u16::from_be_bytes([reply[reply.len() - 2], reply[reply.len() - 1]])
}

#[test]
fn u2f_register_and_authenticate_work_and_the_signature_verifies() {
    let app_id = "https://wiki.example";
    let application = rp_id_hash(app_id);
    let mut host = Host::new(SoftKey::new().touch(Touch::After(1)));
    let challenge = client_data_hash("register");
    let register = apdu(0x01, 0x00, &[&challenge[..], &application[..]].concat());
    let reply = host.exchange(host.cid, MSG, &register);
    assert_eq!(status_word(&reply[0].payload), 0x6985, "touch first");
    let reply = host.exchange(host.cid, MSG, &register).remove(0).payload;
    assert_eq!(status_word(&reply), 0x9000);
    assert_eq!(reply[0], 0x05);
    let point = reply[1..66].to_vec();
    let handle = reply[67..67 + usize::from(reply[66])].to_vec();
    assert_eq!(
        reply[67 + handle.len()],
        0x30,
        "an X.509 certificate follows"
    );

    let challenge = client_data_hash("authenticate");
    let authenticate = |p1| {
        apdu(
            0x02,
            p1,
            &[
                &challenge[..],
                &application[..],
                &[handle.len() as u8],
                &handle,
            ]
            .concat(),
        )
    };
    let reply = host
        .exchange(host.cid, MSG, &authenticate(0x07))
        .remove(0)
        .payload;
    assert_eq!(reply, [0x69, 0x85], "check-only: the handle is ours");
    assert_eq!(
        status_word(&host.exchange(host.cid, MSG, &authenticate(0x03))[0].payload),
        0x6985
    );
    let reply = host
        .exchange(host.cid, MSG, &authenticate(0x03))
        .remove(0)
        .payload;
    assert_eq!(status_word(&reply), 0x9000);
    // flags ‖ counter ‖ signature: with the application parameter first, that is
    // authenticator data, and the challenge is signed where the client data hash would be.
    let auth_data = [&application[..], &reply[..5]].concat();
    let signature = &reply[5..reply.len() - 2];
    let verified = verify_es256(&point, app_id, &auth_data, &challenge, signature).unwrap();
    assert_eq!(verified.sign_count, 1);

    let foreign = apdu(
        0x02,
        0x07,
        &[&challenge[..], &application[..], &[3], b"abc"].concat(),
    );
    assert_eq!(
        host.exchange(host.cid, MSG, &foreign)[0].payload,
        [0x6a, 0x80]
    );
    let version = host
        .exchange(host.cid, MSG, &[0x00, 0x03, 0x00, 0x00])
        .remove(0)
        .payload;
    assert_eq!(version, b"U2F_V2\x90\x00");
}

#[test]
fn a_ctap2_credential_answers_u2f_for_the_same_application() {
    let (key, id, public_key) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let mut host = Host::new(key);
    let challenge = client_data_hash("authenticate");
    let data = [
        &challenge[..],
        &rp_id_hash(RP_ID)[..],
        &[id.len() as u8],
        &id,
    ]
    .concat();
    let reply = host
        .exchange(host.cid, MSG, &apdu(0x02, 0x03, &data))
        .remove(0)
        .payload;
    assert_eq!(status_word(&reply), 0x9000);
    let auth_data = [&rp_id_hash(RP_ID)[..], &reply[..5]].concat();
    verify_es256(
        &sec1_point(&public_key),
        RP_ID,
        &auth_data,
        &challenge,
        &reply[5..reply.len() - 2],
    )
    .unwrap();
}

/// A host connected to the served key's socket.
struct Connection(OwnedFd);

impl Connection {
    fn open(path: &Path) -> Connection {
        // SAFETY: socket() takes no pointers; the result is checked.
        let fd =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_un.
        let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        address.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (slot, byte) in address.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *slot = *byte as libc::c_char;
        }
        // SAFETY: `address` is an initialized sockaddr_un and the length is its size.
        let connected = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_un).cast(),
                size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid timeval and the length is its size.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0);
        Connection(fd)
    }

    fn send(&self, cid: u32, command: u8, payload: &[u8]) {
        for report in request(cid, command, payload) {
            // SAFETY: `report` is readable for the length passed.
            let n = unsafe { libc::send(self.0.as_raw_fd(), report.as_ptr().cast(), 64, 0) };
            assert_eq!(n, 64);
        }
    }

    /// Reads one whole message (keepalives included).
    fn receive(&self) -> Message {
        let mut reports = vec![self.report()];
        let length = usize::from(u16::from_be_bytes([reports[0][5], reports[0][6]]));
        let packets = if length <= 57 {
            1
        } else {
            1 + (length - 57).div_ceil(59)
        };
        while reports.len() < packets {
            reports.push(self.report());
        }
        reassemble(&reports).remove(0)
    }

    fn report(&self) -> Report {
        let mut report = [0u8; 64];
        // SAFETY: `report` is writable for the length passed.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), report.as_mut_ptr().cast(), 64, 0) };
        assert_eq!(n, 64, "recv: {}", std::io::Error::last_os_error());
        report
    }

    fn init(&self) -> u32 {
        self.send(BROADCAST_CHANNEL, INIT, b"abcdefgh");
        let reply = self.receive();
        assert_eq!(&reply.payload[..8], b"abcdefgh");
        u32::from_be_bytes(reply.payload[8..12].try_into().unwrap())
    }
}

#[test]
fn the_served_key_answers_one_connection_after_another_with_keepalives() {
    let dir = TempDir::new("soft-key");
    let (key, id, public_key) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let server = key
        .touch(Touch::After(2))
        .serve(dir.path().join("key.sock"))
        .unwrap();
    for login in 1..=3u32 {
        let connection = Connection::open(server.path());
        let cid = connection.init();
        let hash = client_data_hash(&format!("login {login}"));
        let payload = [
            vec![GET_ASSERTION],
            cbor::encode(&get_assertion_request(RP_ID, &hash, &[&id], None)),
        ]
        .concat();
        let started = Instant::now();
        connection.send(cid, CBOR, &payload);
        let mut keepalives = 0;
        let reply = loop {
            let message = connection.receive();
            assert_eq!(message.cid, cid);
            if message.command == KEEPALIVE {
                keepalives += 1;
                continue;
            }
            break message;
        };
        assert_eq!(keepalives, 2);
        assert!(started.elapsed() < Duration::from_secs(2));
        let (status, body) = status_and_body(&reply.payload);
        assert_eq!(status, 0);
        let (_, auth_data, signature) = assertion(&body.unwrap());
        let verified = verify_es256(
            &sec1_point(&public_key),
            RP_ID,
            &auth_data,
            &hash,
            &signature,
        )
        .unwrap();
        assert_eq!(verified.sign_count, login);
    }
    assert_eq!(server.key().counter(&id), Some(3));
}

#[test]
fn a_host_that_leaves_mid_touch_does_not_wedge_the_served_key() {
    let dir = TempDir::new("soft-key");
    let (key, id, _) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let server = key
        .touch(Touch::Never)
        .serve(dir.path().join("key.sock"))
        .unwrap();
    let hash = client_data_hash("login");
    let payload = [
        vec![GET_ASSERTION],
        cbor::encode(&get_assertion_request(RP_ID, &hash, &[&id], None)),
    ]
    .concat();
    {
        let connection = Connection::open(server.path());
        let cid = connection.init();
        connection.send(cid, CBOR, &payload);
        assert_eq!(connection.receive().command, KEEPALIVE);
    }
    let connection = Connection::open(server.path());
    let cid = connection.init();
    connection.send(cid, CBOR, &[GET_INFO]);
    let reply = connection.receive();
    assert_eq!((reply.command, reply.payload[0]), (CBOR, 0));
    assert!(!server.key().waiting_for_touch());
    drop(connection);
    let path = server.path().to_path_buf();
    drop(server);
    assert!(!path.exists(), "the socket is removed with the server");
}

#[test]
fn a_cancel_sent_just_before_hanging_up_is_seen_once_the_host_is_gone() {
    let dir = TempDir::new("soft-key");
    let (key, id, _) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let server = key
        .touch(Touch::Never)
        .serve(dir.path().join("key.sock"))
        .unwrap();
    let hash = client_data_hash("login");
    let payload = [
        vec![GET_ASSERTION],
        cbor::encode(&get_assertion_request(RP_ID, &hash, &[&id], None)),
    ]
    .concat();
    {
        // A host at its deadline: cancels and leaves without reading the reply.
        let connection = Connection::open(server.path());
        let cid = connection.init();
        connection.send(cid, CBOR, &payload);
        assert_eq!(connection.receive().command, KEEPALIVE);
        connection.send(cid, CANCEL, &[]);
    }
    assert!(server.wait_for_hangup(Duration::from_secs(5)));
    assert_eq!(server.key().cancellations(), 1);
    assert!(!server.key().waiting_for_touch());
}

// clientPIN end to end: crates/fido's host side (its touch layer, the one the module and the CLI
// call) against the software key's device side, report by report. The two were written apart,
// from the spec; Python's fido2 checks the host's PIN protocol primitives (tests/fido_oracle.rs).

/// crates/fido's view of the software key: what the key answers is queued, and a receive with
/// nothing queued is one keepalive interval.
struct Wired {
    key: Rc<RefCell<SoftKey>>,
    queued: VecDeque<Report>,
}

impl Wired {
    fn plugged(key: &Rc<RefCell<SoftKey>>) -> Vec<Box<dyn twofold_fido::Transport>> {
        vec![Box::new(Wired {
            key: Rc::clone(key),
            queued: VecDeque::new(),
        })]
    }
}

impl twofold_fido::Transport for Wired {
    fn send(&mut self, report: &Report) -> std::io::Result<()> {
        let out = self.key.borrow_mut().receive_report(*report);
        self.queued.extend(out);
        Ok(())
    }

    fn receive(&mut self, timeout: Duration) -> std::io::Result<Option<Report>> {
        if self.queued.is_empty() {
            let out = self.key.borrow_mut().tick();
            self.queued.extend(out);
        }
        let report = self.queued.pop_front();
        if report.is_none() {
            std::thread::sleep(timeout.min(Duration::from_millis(5)));
        }
        Ok(report)
    }

    fn describe(&self) -> String {
        "soft key".into()
    }
}

const PIN: &str = "8421";

/// A key with `PIN` and one ES256 credential for RP_ID; its id and COSE public key.
fn pin_key(key: SoftKey) -> (Rc<RefCell<SoftKey>>, Vec<u8>, Vec<u8>) {
    let mut key = key.pin(PIN);
    let (id, public_key) = key.add_credential(RP_ID, Alg::Es256);
    (Rc::new(RefCell::new(key)), id, public_key)
}

/// What a login through crates/fido came to.
type Login = Result<(String, twofold_fido::Assertion), TouchError>;

/// A login with user verification through crates/fido, giving `pin`; what the PIN prompt was
/// told of the retries, and the outcome.
fn verified_login(
    key: &Rc<RefCell<SoftKey>>,
    id: &[u8],
    pin: Option<&str>,
) -> (Vec<Option<u32>>, Login) {
    let mut asked = Vec::new();
    let result = twofold_fido::get_assertion(
        Wired::plugged(key),
        &[(RP_ID, vec![id.to_vec()])],
        &client_data_hash("pin-login"),
        Instant::now() + Duration::from_secs(10),
        true,
        &mut |retries| {
            asked.push(retries);
            pin.map(|pin| Zeroizing::new(pin.to_string()))
        },
        &mut || {},
    );
    (asked, result)
}

#[test]
fn the_right_pin_gets_an_assertion_with_uv_that_the_core_verifies() {
    let (key, id, public_key) = pin_key(SoftKey::new());
    let (asked, result) = verified_login(&key, &id, Some(PIN));
    assert_eq!(asked, [Some(8)]);
    let (rp_id, assertion) = result.unwrap();
    assert_eq!(rp_id, RP_ID);
    let verified = verify_es256(
        &sec1_point(&public_key),
        RP_ID,
        &assertion.auth_data,
        &client_data_hash("pin-login"),
        &assertion.signature,
    )
    .unwrap();
    assert!(verified.user_verified);
    assert_eq!(assertion.auth_data[32] & 0x05, 0x05, "UP and UV");
    assert_eq!(key.borrow().pin_retries(), 8);
}

#[test]
fn a_wrong_pin_is_reported_with_the_tries_left_which_count_down() {
    let (key, id, _) = pin_key(SoftKey::new());
    let (asked, result) = verified_login(&key, &id, Some("0000"));
    assert_eq!(asked, [Some(8)]);
    assert_eq!(
        result.unwrap_err(),
        TouchError::WrongPin {
            retries_left: Some(7)
        }
    );
    let (asked, result) = verified_login(&key, &id, Some("1111"));
    assert_eq!(asked, [Some(7)]);
    assert_eq!(
        result.unwrap_err().to_string(),
        "wrong PIN; the key allows 6 more tries"
    );
    // Only the silent probes signed, never a touched assertion.
    assert_eq!(key.borrow().signatures(), 2);
    // The right PIN restores the count.
    let (asked, result) = verified_login(&key, &id, Some(PIN));
    assert_eq!(asked, [Some(6)]);
    result.unwrap();
    assert_eq!(key.borrow().pin_retries(), 8);
}

#[test]
fn three_wrong_pins_block_until_replugged_and_eight_block_for_good() {
    let (key, id, _) = pin_key(SoftKey::new());
    for _ in 0..2 {
        assert!(matches!(
            verified_login(&key, &id, Some("0000")).1,
            Err(TouchError::WrongPin { .. })
        ));
    }
    assert_eq!(
        verified_login(&key, &id, Some("0000")).1.unwrap_err(),
        TouchError::PinAuthBlocked
    );
    // Even the right PIN, until the key is replugged; the blocked attempt costs no retry.
    assert_eq!(
        verified_login(&key, &id, Some(PIN)).1.unwrap_err(),
        TouchError::PinAuthBlocked
    );
    assert_eq!(key.borrow().pin_retries(), 5);
    key.borrow_mut().replug();
    verified_login(&key, &id, Some(PIN)).1.unwrap();

    for left in (1..8).rev() {
        let (_, result) = verified_login(&key, &id, Some("0000"));
        assert_eq!(
            result.unwrap_err(),
            TouchError::WrongPin {
                retries_left: Some(left)
            }
        );
        key.borrow_mut().replug();
    }
    assert_eq!(
        verified_login(&key, &id, Some("0000")).1.unwrap_err(),
        TouchError::PinBlocked
    );
    key.borrow_mut().replug();
    // Blocked for good: the user is not even asked.
    let (asked, result) = verified_login(&key, &id, Some(PIN));
    assert!(asked.is_empty());
    assert_eq!(result.unwrap_err(), TouchError::PinBlocked);
}

#[test]
fn protocol_1_and_ctap_2_0_pin_tokens_work_end_to_end() {
    for (label, key) in [
        ("protocol 1", SoftKey::new().pin_protocol_1_only()),
        ("no permissions", SoftKey::new().pin_without_permissions()),
        (
            "protocol 1, no permissions",
            SoftKey::new()
                .pin_protocol_1_only()
                .pin_without_permissions(),
        ),
    ] {
        let (key, id, public_key) = pin_key(key);
        let (_, result) = verified_login(&key, &id, Some(PIN));
        let (_, assertion) = result.unwrap_or_else(|e| panic!("{label}: {e}"));
        let verified = verify_es256(
            &sec1_point(&public_key),
            RP_ID,
            &assertion.auth_data,
            &client_data_hash("pin-login"),
            &assertion.signature,
        )
        .unwrap();
        assert!(verified.user_verified, "{label}");
        assert_eq!(
            verified_login(&key, &id, Some("0000")).1.unwrap_err(),
            TouchError::WrongPin {
                retries_left: Some(7)
            },
            "{label}"
        );
    }
}

#[test]
fn a_key_without_a_pin_says_to_set_one_and_a_key_without_pin_support_cannot_verify() {
    let mut key = SoftKey::new().client_pin(Some(false));
    let (id, _) = key.add_credential(RP_ID, Alg::Es256);
    let key = Rc::new(RefCell::new(key));
    let (asked, result) = verified_login(&key, &id, Some(PIN));
    assert!(asked.is_empty());
    let error = result.unwrap_err();
    assert_eq!(error, TouchError::PinNotSet);
    assert!(error.to_string().contains("set a PIN"), "{error}");

    let (key, id, _) = SoftKey::with_credential(RP_ID, Alg::Es256);
    let key = Rc::new(RefCell::new(key));
    assert_eq!(
        verified_login(&key, &id, Some(PIN)).1.unwrap_err(),
        TouchError::VerificationUnsupported
    );
    // And a user who gives no PIN gets no assertion.
    let (key, id, _) = pin_key(SoftKey::new());
    let (asked, result) = verified_login(&key, &id, None);
    assert_eq!(asked, [Some(8)]);
    assert_eq!(result.unwrap_err(), TouchError::PinRequired);
    assert_eq!(key.borrow().pin_retries(), 8);
}

#[test]
fn a_credential_registered_with_the_pin_is_made_with_uv() {
    let key = Rc::new(RefCell::new(SoftKey::new().pin(PIN)));
    let hash = client_data_hash("pin-register");
    let registration = twofold_fido::touch::Registration {
        rp_id: RP_ID,
        user_name: "alice",
        user_id: b"alice-handle",
        client_data_hash: &hash,
        exclude: &[],
        require_uv: true,
    };
    let made = twofold_fido::make_credential(
        Wired::plugged(&key),
        &registration,
        Instant::now() + Duration::from_secs(10),
        &mut |_| Some(Zeroizing::new(PIN.to_string())),
        &mut || {},
    )
    .unwrap();
    assert_eq!(made.auth_data[32], 0x45, "UP | UV | AT");
    let (asked, result) = verified_login(&key, &made.credential_id, Some(PIN));
    assert_eq!(asked, [Some(8)]);
    assert_eq!(result.unwrap().1.auth_data[32] & 0x05, 0x05);
}

#[test]
fn the_key_wants_its_pin_for_uv_and_refuses_a_forged_or_misbound_pin_auth_param() {
    let (key, id, _) = pin_key(SoftKey::new());
    let key = Rc::try_unwrap(key).ok().unwrap().into_inner();
    let mut host = Host::new(key);
    let hash = client_data_hash("raw");
    let with_uv = |request: Value| {
        let Value::Map(mut entries) = request else {
            unreachable!()
        };
        entries.retain(|(k, _)| *k != Value::Int(5));
        entries.push((Value::Int(5), Value::text_map([("uv", Value::Bool(true))])));
        Value::Map(entries)
    };
    assert_eq!(
        host.ctap2(
            GET_ASSERTION,
            Some(with_uv(get_assertion_request(RP_ID, &hash, &[&id], None)))
        ),
        (0x36, None),
        "PIN_REQUIRED"
    );
    let with_param = |param: Vec<u8>, protocol: i64| {
        let Value::Map(mut entries) = get_assertion_request(RP_ID, &hash, &[&id], None) else {
            unreachable!()
        };
        entries.push((Value::Int(6), Value::Bytes(param)));
        entries.push((Value::Int(7), Value::Int(protocol)));
        Value::Map(entries)
    };
    // No token was handed out yet: nothing can match.
    assert_eq!(
        host.ctap2(GET_ASSERTION, Some(with_param(vec![0; 32], 2))),
        (0x33, None),
        "PIN_AUTH_INVALID"
    );
    assert_eq!(
        host.ctap2(GET_ASSERTION, Some(with_param(vec![0; 32], 3))),
        (0x02, None),
        "an unknown protocol is an invalid parameter"
    );
    let (status, retries) = host.ctap2(
        0x06,
        Some(Value::int_map([(1, Value::Int(2)), (2, Value::Int(1))])),
    );
    assert_eq!(status, 0);
    assert_eq!(retries.unwrap().get(3), Some(&Value::Int(8)));
    let (status, agreement) = host.ctap2(
        0x06,
        Some(Value::int_map([(1, Value::Int(2)), (2, Value::Int(2))])),
    );
    assert_eq!(status, 0);
    let agreement = agreement.unwrap();
    let cose = agreement.get(1).unwrap();
    for (label, value) in [(1, 2), (3, -25), (-1, 1)] {
        assert_eq!(cose.get(label), Some(&Value::Int(value)));
    }
    assert_eq!(
        host.ctap2(
            0x06,
            Some(Value::int_map([(1, Value::Int(2)), (2, Value::Int(0x7f))]))
        ),
        (0x3e, None),
        "INVALID_SUBCOMMAND"
    );
}
