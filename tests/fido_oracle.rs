//! The software key and the core's verifier against an independent FIDO2 implementation:
//! Yubico's Python `fido2` package (with `cryptography`), from the venv that tests/run.sh makes
//! in `target/fido-venv`.
//!
//! One way, fido2's WebAuthn server accepts what the software key makes (registrations with
//! "none" and "packed" self attestation, assertions, U2F registrations and signatures) and
//! refuses those things altered. The other way, the core's verifier accepts assertions that
//! fido2 and `cryptography` made and refuses them with any sampled bit flipped. And crates/fido's
//! PIN/UV auth protocols 1 and 2 (key agreement, kdf, encrypt, decrypt, authenticate) agree
//! byte for byte with fido2's PinProtocolV1 and PinProtocolV2 on fixed inputs.
//!
//! With CI=true a missing venv fails the tests; elsewhere they skip with a note.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use twofold_core::cbor::{self, Value};
use twofold_core::key_assertion::{rp_id_hash, verify, verify_es256};
use twofold_core::security_key::PublicKey;
use twofold_fido::pin::{self, Protocol};
use twofold_tests::files::TempDir;
use twofold_tests::soft_key::{Alg, Attestation, Report, SoftKey, BROADCAST_CHANNEL};
use zeroize::Zeroizing;

const RP_ID: &str = "wiki.example";
const ORIGIN: &str = "https://wiki.example";
/// What the expected outcome of a case is when fido2 must accept it (otherwise: part of the
/// error fido2 must refuse it with).
const ACCEPTED: &str = "";

#[test]
fn fido2_accepts_what_the_soft_key_makes_and_refuses_it_altered() {
    let Some(python) = oracle_python() else {
        return;
    };
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (alg, attestation) in [
        (Alg::Es256, Attestation::None),
        (Alg::Es256, Attestation::PackedSelf),
        (Alg::EdDsa, Attestation::None),
        (Alg::EdDsa, Attestation::PackedSelf),
    ] {
        let name = format!("{alg:?}-{attestation:?}");
        let mut host = Host::new(SoftKey::new().attestation(attestation));
        let registration = host.register(alg);
        cases.push(registration.case(&format!("register-{name}")));
        expected.push((format!("register-{name}"), ACCEPTED));
        if attestation == Attestation::PackedSelf {
            let mut tampered = registration.clone();
            tampered.flip_attestation_signature();
            cases.push(tampered.case(&format!("register-{name}-bad-attestation")));
            expected.push((
                format!("register-{name}-bad-attestation"),
                "InvalidSignature",
            ));
        }
        let mut tampered = registration.clone();
        tampered.challenge[0] ^= 1;
        cases.push(tampered.case(&format!("register-{name}-other-challenge")));
        expected.push((
            format!("register-{name}-other-challenge"),
            "Wrong challenge",
        ));

        for round in 1..=2 {
            let assertion = host.authenticate(RP_ID, &registration, true);
            let case = format!("authenticate-{name}-{round}");
            cases.push(assertion.case(&case));
            expected.push((case, ACCEPTED));
        }
        let assertion = host.authenticate(RP_ID, &registration, true);
        let mut bad_signature = assertion.clone();
        let last = bad_signature.signature.len() - 1;
        bad_signature.signature[last] ^= 0x01;
        let mut bad_auth_data = assertion.clone();
        bad_auth_data.auth_data[36] ^= 0x80;
        let silent = host.authenticate(RP_ID, &registration, false);
        // A credential the key holds for another relying party, presented to this one.
        let (id, public_key) = host.key.add_credential("other.example", alg);
        let other = Registration {
            credential_id: id,
            public_key,
            ..registration.clone()
        };
        let mut other_rp = host.authenticate("other.example", &other, true);
        other_rp.rp_id = RP_ID.into();
        for (label, case, error) in [
            ("bad-signature", bad_signature, "InvalidSignature"),
            ("bad-auth-data", bad_auth_data, "InvalidSignature"),
            ("no-user-presence", silent, "User Present flag not set"),
            ("other-rp", other_rp, "Wrong RP ID hash"),
        ] {
            let case_name = format!("authenticate-{name}-{label}");
            cases.push(case.case(&case_name));
            expected.push((case_name, error));
        }
    }
    let (u2f_cases, u2f_expected) = u2f_cases();
    cases.extend(u2f_cases);
    expected.extend(u2f_expected);

    let dir = TempDir::new("fido-oracle");
    let input = dir.path().join("cases.json");
    std::fs::write(&input, json!({ "cases": cases }).to_string()).unwrap();
    let results = run_oracle(&python, &["verify".as_ref(), input.as_os_str()]);
    let results = &results["results"];
    for (name, error) in &expected {
        let result = &results[name];
        if *error == ACCEPTED {
            assert_eq!(result["ok"], true, "fido2 refused {name}: {result}");
        } else {
            assert_eq!(result["ok"], false, "fido2 accepted {name}");
            let found = result["error"].as_str().unwrap_or_default();
            assert!(
                found.contains(error),
                "fido2 refused {name} for another reason: {found}"
            );
        }
    }
    assert_eq!(results.as_object().map(|r| r.len()), Some(expected.len()));
    // What fido2 read back agrees with what the key says it made.
    assert_eq!(results["register-Es256-None"]["fmt"], "none");
    assert_eq!(results["register-EdDsa-PackedSelf"]["fmt"], "packed");
    assert_eq!(results["register-Es256-None"]["flags"], 0x41);
    assert_eq!(results["authenticate-Es256-None-1"]["sign_count"], 1);
    assert_eq!(results["authenticate-EdDsa-PackedSelf-2"]["sign_count"], 2);
    assert_eq!(results["u2f-authenticate"]["flags"], 1);
}

#[test]
fn the_core_verifier_accepts_what_fido2_makes_and_refuses_flipped_bits() {
    let Some(python) = oracle_python() else {
        return;
    };
    let seed = format!("twofold-{}", std::process::id());
    let made = run_oracle(&python, &["make".as_ref(), seed.as_ref()]);
    let cases = made["cases"].as_array().unwrap();
    assert!(cases.len() >= 6, "{made}");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let field = |key: &str| unhex(case[key].as_str().unwrap());
        let key = PublicKey::from_cose(&field("cose_public_key")).unwrap();
        let rp_id = case["rp_id"].as_str().unwrap();
        let auth_data = field("auth_data");
        let client_data_hash: [u8; 32] = field("client_data_hash").try_into().unwrap();
        let signature = field("signature");

        let verified = verify(&key, rp_id, &auth_data, &client_data_hash, &signature)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            u64::from(verified.sign_count),
            case["sign_count"].as_u64().unwrap()
        );
        assert_eq!(
            verified.user_verified,
            case["user_verified"].as_bool().unwrap()
        );
        if let PublicKey::Es256(point) = &key {
            verify_es256(point, rp_id, &auth_data, &client_data_hash, &signature).unwrap();
        }
        assert!(verify(
            &key,
            "other.example",
            &auth_data,
            &client_data_hash,
            &signature
        )
        .is_err());

        // Every bit of the flags and the counter, and a sample of the rest (every 5th bit
        // elsewhere keeps the debug-build run short), flipped one at a time.
        let parts = [auth_data.len(), 32, signature.len()];
        let total_bits = parts.iter().sum::<usize>() * 8;
        for bit in (0..total_bits).filter(|bit| (256..296).contains(bit) || bit % 5 == 0) {
            let (mut a, mut c, mut s) = (auth_data.clone(), client_data_hash, signature.clone());
            let byte = bit / 8;
            let mask = 1u8 << (bit % 8);
            if byte < parts[0] {
                a[byte] ^= mask;
            } else if byte < parts[0] + parts[1] {
                c[byte - parts[0]] ^= mask;
            } else {
                s[byte - parts[0] - parts[1]] ^= mask;
            }
            assert!(
                verify(&key, rp_id, &a, &c, &s).is_err(),
                "{name}: bit {bit} flipped was accepted"
            );
        }
    }
}

#[test]
fn fido2_pin_protocols_agree_with_ours_byte_for_byte() {
    let Some(python) = oracle_python() else {
        return;
    };
    let iv = [0x3c; 16];
    let client_data_hash: [u8; 32] = Sha256::digest(b"pin oracle").into();
    let mut ours = Vec::new();
    let mut cases = Vec::new();
    for (protocol, token_length) in [
        (Protocol::One, 16),
        (Protocol::One, 32),
        (Protocol::Two, 32),
    ] {
        let name = format!("protocol-{}-token-{token_length}", protocol.number());
        let authenticator_scalar: [u8; 32] = Sha256::digest(format!("{name}/authenticator")).into();
        let platform_scalar: [u8; 32] = Sha256::digest(format!("{name}/platform")).into();
        let authenticator_key = cose_key_agreement(&authenticator_scalar);
        let (platform_key, shared) = pin::agree(
            protocol,
            &Zeroizing::new(platform_scalar),
            &authenticator_key,
        )
        .unwrap();
        let pin = "1234-äö";
        let pin_hash = &Sha256::digest(pin.as_bytes())[..16];
        let pin_hash_enc = shared.encrypt_with_iv(&iv, pin_hash).unwrap();
        let token: Vec<u8> = Sha256::digest(format!("{name}/token"))[..token_length].to_vec();
        let coordinate = |label| hex(platform_key.get(label).unwrap().as_bytes().unwrap());
        cases.push(json!({
            "name": name,
            "protocol": protocol.number(),
            "authenticator_scalar": hex(&authenticator_scalar),
            "platform_key": { "x": coordinate(-2), "y": coordinate(-3) },
            "iv": hex(&iv),
            "pin": pin,
            "token": hex(&token),
            "client_data_hash": hex(&client_data_hash),
            "our_pin_hash_enc": hex(&pin_hash_enc),
        }));
        ours.push((
            name,
            protocol,
            platform_scalar,
            shared,
            pin_hash.to_vec(),
            pin_hash_enc,
            token,
        ));
    }
    let dir = TempDir::new("fido-oracle-pin");
    let input = dir.path().join("pin.json");
    std::fs::write(&input, json!({ "cases": cases }).to_string()).unwrap();
    let results = run_oracle(&python, &["pin".as_ref(), input.as_os_str()]);
    for (name, protocol, platform_scalar, shared, pin_hash, pin_hash_enc, token) in ours {
        let theirs = &results["results"][&name];
        let field = |key: &str| {
            unhex(
                theirs[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {key}")),
            )
        };
        assert_eq!(
            hex(&shared.bytes()),
            theirs["shared_secret"],
            "{name}: kdf(Z)"
        );
        assert_eq!(field("pin_hash_enc"), pin_hash_enc, "{name}: encrypt");
        assert_eq!(
            field("their_pin_hash"),
            pin_hash,
            "{name}: fido2 decrypts ours"
        );
        assert_eq!(
            shared.decrypt(&field("token_enc")).unwrap()[..],
            token[..],
            "{name}: we decrypt fido2's"
        );
        assert_eq!(
            field("param"),
            pin::authenticate(protocol, &token, &client_data_hash),
            "{name}: authenticate(token, clientDataHash)"
        );
        assert_eq!(
            field("shared_mac"),
            shared.authenticate(&client_data_hash),
            "{name}: authenticate(sharedSecret, ...)"
        );
        assert_eq!(field("valid_token"), token);
        // fido2's own ephemeral key, against our platform key: the same secret both ways.
        let encapsulated = &theirs["encapsulated"];
        let their_key = Value::int_map([
            (1, Value::Int(2)),
            (3, Value::Int(-25)),
            (-1, Value::Int(1)),
            (-2, Value::Bytes(unhex(encapsulated["x"].as_str().unwrap()))),
            (-3, Value::Bytes(unhex(encapsulated["y"].as_str().unwrap()))),
        ]);
        let (_, agreed) =
            pin::agree(protocol, &Zeroizing::new(platform_scalar), &their_key).unwrap();
        assert_eq!(
            hex(&agreed.bytes()),
            encapsulated["shared_secret"],
            "{name}: fido2's encapsulate"
        );
    }
    assert_eq!(
        results["results"].as_object().map(|r| r.len()),
        Some(3),
        "{results}"
    );
}

/// The COSE key agreement key (EC2, P-256, ECDH-ES+HKDF-256) of a private scalar.
fn cose_key_agreement(scalar: &[u8; 32]) -> Value {
    use p256::elliptic_curve::sec1::ToSec1Point;
    let point = p256::SecretKey::from_slice(scalar)
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

/// A registration as a browser would pass it on: clientDataJSON and the attestation object.
#[derive(Clone)]
struct Registration {
    challenge: Vec<u8>,
    client_data_json: Vec<u8>,
    attestation_object: Vec<u8>,
    format: String,
    auth_data: Vec<u8>,
    statement: Value,
    credential_id: Vec<u8>,
    public_key: Vec<u8>,
    aaguid: Vec<u8>,
}

impl Registration {
    fn flip_attestation_signature(&mut self) {
        if let Value::Map(entries) = &mut self.statement {
            for (key, value) in entries {
                if let (Value::Text(k), Value::Bytes(sig)) = (key, value) {
                    if k == "sig" {
                        let last = sig.len() - 1;
                        sig[last] ^= 1;
                    }
                }
            }
        }
        self.attestation_object =
            attestation_object(&self.format, &self.auth_data, &self.statement);
    }

    fn case(&self, name: &str) -> Json {
        json!({
            "kind": "register",
            "name": name,
            "rp_id": RP_ID,
            "challenge": hex(&self.challenge),
            "client_data_json": hex(&self.client_data_json),
            "attestation_object": hex(&self.attestation_object),
            "credential_id": hex(&self.credential_id),
            "cose_public_key": hex(&self.public_key),
        })
    }
}

/// An assertion as a browser would pass it on.
#[derive(Clone)]
struct Assertion {
    rp_id: String,
    challenge: Vec<u8>,
    client_data_json: Vec<u8>,
    auth_data: Vec<u8>,
    signature: Vec<u8>,
    credential_id: Vec<u8>,
    public_key: Vec<u8>,
    aaguid: Vec<u8>,
}

impl Assertion {
    fn case(&self, name: &str) -> Json {
        json!({
            "kind": "authenticate",
            "name": name,
            "rp_id": self.rp_id,
            "challenge": hex(&self.challenge),
            "client_data_json": hex(&self.client_data_json),
            "auth_data": hex(&self.auth_data),
            "signature": hex(&self.signature),
            "credential_id": hex(&self.credential_id),
            "cose_public_key": hex(&self.public_key),
            "aaguid": hex(&self.aaguid),
        })
    }
}

/// A U2F registration and authentication over CTAPHID_MSG, and the registration with its
/// attestation signature altered.
fn u2f_cases() -> (Vec<Json>, Vec<(String, &'static str)>) {
    let mut host = Host::new(SoftKey::new());
    let application = rp_id_hash(ORIGIN);
    let challenge = random::<32>();
    let reply = host.u2f(0x01, 0x00, &[&challenge[..], &application[..]].concat());
    let point = reply[1..66].to_vec();
    let handle = reply[67..67 + usize::from(reply[66])].to_vec();
    let mut tampered = reply.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let register = |name: &str, data: &[u8]| {
        json!({
            "kind": "u2f_register",
            "name": name,
            "app_param": hex(&application),
            "client_param": hex(&challenge),
            "registration_data": hex(data),
        })
    };
    let sign_challenge = random::<32>();
    let data = [
        &sign_challenge[..],
        &application[..],
        &[handle.len() as u8],
        &handle,
    ]
    .concat();
    let signature = host.u2f(0x02, 0x03, &data);
    let mut bad_signature = signature.clone();
    bad_signature[1] ^= 1; // the counter
    let authenticate = |name: &str, signature_data: &[u8]| {
        json!({
            "kind": "u2f_authenticate",
            "name": name,
            "app_param": hex(&application),
            "client_param": hex(&sign_challenge),
            "public_key": hex(&point),
            "signature_data": hex(signature_data),
        })
    };
    (
        vec![
            register("u2f-register", &reply),
            register("u2f-register-bad-attestation", &tampered),
            authenticate("u2f-authenticate", &signature),
            authenticate("u2f-authenticate-bad-counter", &bad_signature),
        ],
        vec![
            ("u2f-register".into(), ACCEPTED),
            ("u2f-register-bad-attestation".into(), "InvalidSignature"),
            ("u2f-authenticate".into(), ACCEPTED),
            ("u2f-authenticate-bad-counter".into(), "InvalidSignature"),
        ],
    )
}

/// The minimal host side this test needs: INIT, then one request and its reply at a time
/// (the key is touched at once, so no keepalives come).
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
        let reply = host.exchange(0x06, b"oraclenc");
        host.cid = u32::from_be_bytes(reply[8..12].try_into().unwrap());
        host
    }

    fn register(&mut self, alg: Alg) -> Registration {
        let challenge = random::<32>().to_vec();
        let client_data_json = client_data("webauthn.create", &challenge);
        let cose_alg = match alg {
            Alg::EdDsa => -8,
            Alg::Es256 => -7,
        };
        let request = Value::int_map([
            (1, Value::Bytes(Sha256::digest(&client_data_json).to_vec())),
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
                    ("id", Value::Bytes(b"alice".to_vec())),
                    ("name", Value::Text("alice".into())),
                ]),
            ),
            (
                4,
                Value::Array(vec![Value::text_map([
                    ("alg", Value::Int(cose_alg)),
                    ("type", Value::Text("public-key".into())),
                ])]),
            ),
        ]);
        let body = self.ctap2(0x01, &request);
        let format = body.get(1).and_then(Value::as_text).unwrap().to_string();
        let auth_data = body.get(2).and_then(Value::as_bytes).unwrap().to_vec();
        let statement = body.get(3).unwrap().clone();
        let (credential_id, public_key) = self.key.last_credential().unwrap();
        Registration {
            attestation_object: attestation_object(&format, &auth_data, &statement),
            aaguid: auth_data[37..53].to_vec(),
            challenge,
            client_data_json,
            format,
            auth_data,
            statement,
            credential_id,
            public_key,
        }
    }

    fn authenticate(
        &mut self,
        rp_id: &str,
        registration: &Registration,
        user_presence: bool,
    ) -> Assertion {
        let challenge = random::<32>().to_vec();
        let client_data_json = client_data("webauthn.get", &challenge);
        let request = Value::int_map([
            (1, Value::Text(rp_id.into())),
            (2, Value::Bytes(Sha256::digest(&client_data_json).to_vec())),
            (
                3,
                Value::Array(vec![Value::text_map([
                    ("id", Value::Bytes(registration.credential_id.clone())),
                    ("type", Value::Text("public-key".into())),
                ])]),
            ),
            (5, Value::text_map([("up", Value::Bool(user_presence))])),
        ]);
        let body = self.ctap2(0x02, &request);
        Assertion {
            rp_id: rp_id.into(),
            challenge,
            client_data_json,
            auth_data: body.get(2).and_then(Value::as_bytes).unwrap().to_vec(),
            signature: body.get(3).and_then(Value::as_bytes).unwrap().to_vec(),
            credential_id: registration.credential_id.clone(),
            public_key: registration.public_key.clone(),
            aaguid: registration.aaguid.clone(),
        }
    }

    /// A U2F APDU (extended encoding); returns the response data after a 0x9000 status.
    fn u2f(&mut self, instruction: u8, p1: u8, data: &[u8]) -> Vec<u8> {
        let mut apdu = vec![0x00, instruction, p1, 0x00, 0x00];
        apdu.extend((data.len() as u16).to_be_bytes());
        apdu.extend(data);
        apdu.extend([0x00, 0x00]);
        let mut reply = self.exchange(0x03, &apdu);
        let status = reply.split_off(reply.len() - 2);
        assert_eq!(status, [0x90, 0x00]);
        reply
    }

    fn ctap2(&mut self, command: u8, request: &Value) -> Value {
        let payload = [vec![command], cbor::encode(request)].concat();
        let reply = self.exchange(0x10, &payload);
        assert_eq!(reply[0], 0, "CTAP2 status");
        cbor::decode(&reply[1..]).unwrap()
    }

    /// One CTAPHID message out and the reply's payload back.
    fn exchange(&mut self, command: u8, payload: &[u8]) -> Vec<u8> {
        let cid = self.cid.to_be_bytes();
        let mut out: Vec<Report> = Vec::new();
        let mut packet = [0u8; 64];
        packet[..4].copy_from_slice(&cid);
        packet[4] = 0x80 | command;
        packet[5..7].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        let head = payload.len().min(57);
        packet[7..7 + head].copy_from_slice(&payload[..head]);
        out.extend(self.key.receive_report(packet));
        for (seq, chunk) in payload[head..].chunks(59).enumerate() {
            let mut packet = [0u8; 64];
            packet[..4].copy_from_slice(&cid);
            packet[4] = seq as u8;
            packet[5..5 + chunk.len()].copy_from_slice(chunk);
            out.extend(self.key.receive_report(packet));
        }
        let first = out.first().expect("a reply");
        assert_eq!(first[4], 0x80 | command, "reply command");
        let length = usize::from(u16::from_be_bytes([first[5], first[6]]));
        let mut reply = first[7..7 + length.min(57)].to_vec();
        for packet in &out[1..] {
            let take = (length - reply.len()).min(59);
            reply.extend_from_slice(&packet[5..5 + take]);
        }
        assert_eq!(reply.len(), length);
        reply
    }
}

/// clientDataJSON as a browser writes it (WebAuthn §5.8.1).
fn client_data(kind: &str, challenge: &[u8]) -> Vec<u8> {
    json!({
        "type": kind,
        "challenge": Base64UrlUnpadded::encode_string(challenge),
        "origin": ORIGIN,
        "crossOrigin": false,
    })
    .to_string()
    .into_bytes()
}

/// The WebAuthn attestation object: makeCredential's integer keys as text keys.
fn attestation_object(format: &str, auth_data: &[u8], statement: &Value) -> Vec<u8> {
    cbor::encode(&Value::text_map([
        ("attStmt", statement.clone()),
        ("authData", Value::Bytes(auth_data.to_vec())),
        ("fmt", Value::Text(format.into())),
    ]))
}

/// The venv's python with fido2 importable, or `None` (outside CI) to skip.
fn oracle_python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = root.join("target/fido-venv/bin/python");
    let usable = python.is_file()
        && Command::new(&python)
            .args(["-c", "import fido2, cryptography"])
            .status()
            .is_ok_and(|status| status.success());
    if usable {
        return Some(python);
    }
    let why = format!(
        "{} with fido2 is missing; make it with: python3 -m venv target/fido-venv && \
         target/fido-venv/bin/pip install fido2==2.2.1 (tests/run.sh does)",
        python.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("skipped: {why}");
    None
}

fn run_oracle(python: &Path, args: &[&std::ffi::OsStr]) -> Json {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fido_oracle/check.py");
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
