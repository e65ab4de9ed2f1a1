//! twofold-web's WebAuthn verifier against an independent implementation: Yubico's Python
//! `fido2` (2.2.1, from the venv that tests/run.sh makes in `target/fido-venv`).
//!
//! fido2 plays the browser and its security key (tests/webauthn_oracle/browser.py): it parses
//! the creation and request options twofold-web writes, answers them as `credential.toJSON()`
//! would (none and packed self attestation, ES256 and EdDSA), altered in one way per case, and
//! its `Fido2Server` verifies each answer. twofold-web, through the path its handlers take (the
//! challenge book, `verify`, then the core's `key_assertion::check` with the stored counters),
//! must accept what fido2's server accepts and refuse what it refuses. Where twofold-web is
//! stricter than fido2 (the exact origin, crossOrigin, rawId against the attested id, the
//! counter), the case says so and fido2 must still accept it, so that the difference stays
//! known.
//!
//! With CI=true a missing venv fails the test; elsewhere it skips with a note.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{json, Value as Json};

use twofold_core::config::UserVerification;
use twofold_core::key_assertion::check;
use twofold_core::security_key::{CredentialTag, KeyName, PublicKey, SecurityKey};
use twofold_core::user::UserName;
use twofold_tests::files::TempDir;
use twofold_web::webauthn::{
    creation_options, request_options, AssertionResponse, ChallengeBook, Purpose,
    RegistrationResponse, RelyingParty,
};
use Expect::{Accepted, Refused, Stricter};

const RP_ID: &str = "wiki.example";
const ORIGIN: &str = "https://wiki.example";
const NOW: u64 = 1_800_000_000;

/// What must come of a case.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Both accept.
    Accepted,
    /// Both refuse, twofold-web with the error (or the core's refusal) whose Debug begins so.
    Refused(&'static str),
    /// fido2 accepts and twofold-web refuses, so: a check fido2's server does not make.
    Stricter(&'static str),
}

/// Registration cases: the alteration, the attestation formats it applies to, the outcome.
const REGISTRATIONS: &[(&str, &[&str], Expect)] = &[
    ("", BOTH, Accepted),
    ("uv", BOTH, Accepted),
    ("challenge", BOTH, Refused("ChallengeUnknown")),
    ("type", BOTH, Refused("WrongType")),
    ("origin-http", BOTH, Refused("WrongOrigin")),
    ("origin-other", NONE, Refused("WrongOrigin")),
    ("rp-id", BOTH, Refused("RelyingParty")),
    ("no-up", BOTH, Refused("NoUserPresence")),
    ("no-uv", BOTH, Refused("NoUserVerification")),
    ("bad-attestation", PACKED, Refused("AttestationSignature")),
    ("x5c", PACKED, Refused("UnsupportedAttestation")),
    ("none-statement", NONE, Refused("AttestationStatement")),
    // fido2 takes any https subdomain of the rp id; twofold-web the one configured origin.
    ("origin-sub", NONE, Stricter("WrongOrigin")),
    ("cross-origin", NONE, Stricter("CrossOrigin")),
    // fido2's register_complete does not compare rawId with the attested credential id.
    ("raw-id", NONE, Stricter("CredentialIdMismatch")),
];
const BOTH: &[&str] = &["none", "packed"];
const NONE: &[&str] = &["none"];
const PACKED: &[&str] = &["packed"];

/// Assertion cases for each registered key, in order: the alteration, the counter the key
/// reports, the outcome.
const ASSERTIONS: &[(&str, u32, Expect)] = &[
    ("", 1, Accepted),
    ("", 2, Accepted),
    // fido2's server leaves the counter to its caller.
    ("counter-replay", 2, Stricter("CounterRegressed")),
    ("challenge", 3, Refused("ChallengeUnknown")),
    ("type", 3, Refused("WrongType")),
    ("origin-http", 3, Refused("WrongOrigin")),
    ("origin-other", 3, Refused("WrongOrigin")),
    ("rp-id", 3, Refused("RelyingParty")),
    ("no-up", 3, Refused("Assertion(NoUserPresence)")),
    ("bad-signature", 3, Refused("Assertion(BadSignature)")),
    ("unknown-credential", 3, Refused("UnknownCredential")),
    ("origin-sub", 3, Stricter("WrongOrigin")),
    ("cross-origin", 3, Stricter("CrossOrigin")),
    ("", 3, Accepted),
];

#[test]
fn twofold_web_accepts_what_fido2s_server_accepts_and_refuses_what_it_refuses() {
    let Some(python) = oracle_python() else {
        return;
    };
    let rp = RelyingParty::new(RP_ID, "Wiki", ORIGIN).unwrap();
    let alice = UserName::parse("alice").unwrap();
    let mut book = ChallengeBook::new(256, 120);
    let seed = format!("twofold-web-{}", std::process::id());
    let dir = TempDir::new("webauthn-oracle");

    // Registrations: our creation options, fido2's answers.
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (alg, alg_name) in [(-7, "es256"), (-8, "eddsa")] {
        for format in ["none", "packed"] {
            for &(tamper, formats, expect) in REGISTRATIONS {
                if !formats.contains(&format) {
                    continue;
                }
                let name = case_name("register", alg_name, format, tamper);
                let user_verification = matches!(tamper, "uv" | "no-uv");
                let purpose = Purpose::Register {
                    name: KeyName::parse(&format!("{alg_name}-{format}")).unwrap(),
                    user_verification,
                };
                let challenge = book.issue(purpose, alice.clone(), NOW).unwrap();
                let setting = match user_verification {
                    true => UserVerification::Required,
                    false => UserVerification::Discouraged,
                };
                let options =
                    creation_options(&rp, &alice, &[0x11; 16], &challenge, &[], setting, 60_000);
                cases.push(json!({
                    "name": name,
                    "options": options,
                    "alg": alg,
                    "fmt": format,
                    "tamper": tamper,
                    "origin": ORIGIN,
                }));
                expected.push((name, alg, expect));
            }
        }
    }
    let results = run_browser(&python, &dir, "register", &seed, cases);
    let mut keys: Vec<SecurityKey> = Vec::new();
    let mut registrations = Vec::new();
    for (name, alg, expect) in &expected {
        let result = &results[name];
        let ours = register(&mut book, &rp, &alice, &result["answer"]);
        judge(name, *expect, &result["fido2"], &ours);
        if let (Ok(key), Accepted) = (ours, expect) {
            // What we stored is the credential fido2's key made.
            let cose = Base64UrlUnpadded::decode_vec(result["cose_public_key"].as_str().unwrap());
            assert_eq!(
                key.public_key,
                PublicKey::from_cose(&cose.unwrap()).unwrap()
            );
            assert_eq!(
                Base64UrlUnpadded::encode_string(&key.credential_id),
                result["credential_id"]
            );
            if !key.user_verification {
                registrations.push((name.clone(), *alg, keys.len()));
            }
            keys.push(key);
        }
    }
    assert_eq!(
        registrations.len(),
        4,
        "one plain registration per algorithm and format"
    );
    assert!(
        book.len() >= 4,
        "the refused cases' challenges were never answered"
    );

    // Assertions by each registered key: our request options, fido2's answers, our check.
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (registration, alg, index) in &registrations {
        for (round, &(tamper, counter, expect)) in ASSERTIONS.iter().enumerate() {
            let name = format!("{registration}/authenticate-{round}-{}", or_valid(tamper));
            let challenge = book
                .issue(Purpose::Authenticate, alice.clone(), NOW)
                .unwrap();
            let allow = std::slice::from_ref(&keys[*index]);
            let options = request_options(
                &rp,
                &challenge,
                allow,
                UserVerification::Discouraged,
                60_000,
            );
            cases.push(json!({
                "name": name,
                "options": options,
                "registration": registration,
                "alg": alg,
                "counter": counter,
                "tamper": tamper,
                "origin": ORIGIN,
            }));
            expected.push((name, expect));
        }
    }
    let results = run_browser(&python, &dir, "authenticate", &seed, cases);
    let mut counters: HashMap<CredentialTag, u32> = HashMap::new();
    for (name, expect) in &expected {
        let result = &results[name];
        let ours = authenticate(
            &mut book,
            &rp,
            &alice,
            &keys,
            &mut counters,
            &result["answer"],
        );
        judge(name, *expect, &result["fido2"], &ours);
    }
    // Each plain registration's key signed in three times, its counter at the last one's.
    assert_eq!(counters.len(), 4);
    assert!(counters.values().all(|&count| count == 3), "{counters:?}");
}

/// A registration through the handlers' path: parse, spend the challenge, verify.
fn register(
    book: &mut ChallengeBook,
    rp: &RelyingParty,
    user: &UserName,
    answer: &Json,
) -> Result<SecurityKey, String> {
    let body = serde_json::to_vec(answer).unwrap();
    let response = RegistrationResponse::from_json(&body).map_err(|e| format!("{e:?}"))?;
    let pending = book
        .take(response.challenge(), NOW + 1)
        .map_err(|e| format!("{e:?}"))?;
    assert_eq!(pending.user, *user);
    let Purpose::Register {
        name,
        user_verification,
    } = pending.purpose
    else {
        return Err("issued for an authentication".into());
    };
    response
        .verify(rp, &pending.challenge, name, user_verification, NOW + 1)
        .map(|registered| registered.key)
        .map_err(|e| format!("{e:?}"))
}

/// An assertion through the handlers' path: parse, spend the challenge, verify the client data,
/// then the core's check against the user's keys and counters, recording the new counter.
fn authenticate(
    book: &mut ChallengeBook,
    rp: &RelyingParty,
    user: &UserName,
    keys: &[SecurityKey],
    counters: &mut HashMap<CredentialTag, u32>,
    answer: &Json,
) -> Result<(), String> {
    let body = serde_json::to_vec(answer).unwrap();
    let response = AssertionResponse::from_json(&body).map_err(|e| format!("{e:?}"))?;
    let pending = book
        .take(response.challenge(), NOW + 2)
        .map_err(|e| format!("{e:?}"))?;
    assert_eq!(
        (&pending.user, &pending.purpose),
        (user, &Purpose::Authenticate)
    );
    let presented = response
        .verify(rp, &pending.challenge)
        .map_err(|e| format!("{e:?}"))?;
    let accepted = check(
        keys,
        |key| counters.get(&key.tag()).copied(),
        &presented.assertion,
        &presented.client_data_hash,
    )
    .map_err(|e| format!("{e:?}"))?;
    counters.insert(keys[accepted.key].tag(), accepted.verified.sign_count);
    Ok(())
}

fn judge<T>(name: &str, expect: Expect, fido2: &Json, ours: &Result<T, String>) {
    let fido2_accepted = fido2["ok"] == true;
    let ours = ours.as_ref().map(|_| ());
    match expect {
        Accepted => {
            assert!(fido2_accepted, "fido2 refused {name}: {fido2}");
            assert_eq!(ours, Ok(()), "twofold-web refused {name}");
        }
        Refused(error) => {
            assert!(!fido2_accepted, "fido2 accepted {name}");
            assert!(
                ours.is_err_and(|found| found.starts_with(error)),
                "twofold-web on {name}: {ours:?}, expected {error}"
            );
        }
        Stricter(error) => {
            assert!(
                fido2_accepted,
                "fido2 now refuses {name} too ({fido2}): make the case Refused"
            );
            assert!(
                ours.is_err_and(|found| found.starts_with(error)),
                "twofold-web on {name}: {ours:?}, expected {error}"
            );
        }
    }
}

fn case_name(ceremony: &str, alg: &str, format: &str, tamper: &str) -> String {
    format!("{ceremony}-{alg}-{format}-{}", or_valid(tamper))
}

fn or_valid(tamper: &str) -> &str {
    match tamper {
        "" => "valid",
        other => other,
    }
}

/// Runs browser.py on `cases` and returns its results by case name.
fn run_browser(python: &Path, dir: &TempDir, ceremony: &str, seed: &str, cases: Vec<Json>) -> Json {
    let count = cases.len();
    let input = dir.path().join(format!("{ceremony}.json"));
    std::fs::write(&input, json!({ "seed": seed, "cases": cases }).to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("webauthn_oracle/browser.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(ceremony)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "browser.py {ceremony} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Json = serde_json::from_slice(&out.stdout).unwrap();
    let results = results["results"].clone();
    assert_eq!(results.as_object().map(|r| r.len()), Some(count));
    results
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
