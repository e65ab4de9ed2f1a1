//! The security-key verifier against an independent implementation: OpenSSL makes the P-256 key
//! and the ECDSA signatures, as a FIDO2 authenticator would over `authenticatorData ||
//! clientDataHash`, and the core's verifier must accept exactly those and nothing altered.

use std::process::Command;

use sha2::{Digest, Sha256};
use twofold_core::key_assertion::{rp_id_hash, verify_es256, AssertionError, Verified};
use twofold_tests::files::TempDir;

/// An OpenSSL-made P-256 key: signs like an authenticator, and gives its SEC1 public key.
struct OpensslKey {
    dir: TempDir,
}

impl OpensslKey {
    fn generate() -> OpensslKey {
        let dir = TempDir::new("p256");
        run(Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(dir.path().join("key.pem")));
        OpensslKey { dir }
    }

    /// The uncompressed point: the last 65 bytes of the DER SubjectPublicKeyInfo.
    fn public_key(&self) -> Vec<u8> {
        let spki = run(Command::new("openssl")
            .args(["ec", "-pubout", "-outform", "DER", "-in"])
            .arg(self.dir.path().join("key.pem")));
        let point = spki[spki.len() - 65..].to_vec();
        assert_eq!(point[0], 0x04, "uncompressed point");
        point
    }

    /// A DER ECDSA signature over SHA-256 of `message`.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let input = self.dir.write("message", message);
        run(Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(self.dir.path().join("key.pem"))
            .arg(&input))
    }
}

fn run(command: &mut Command) -> Vec<u8> {
    let out = command.output().expect("openssl runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn authenticator_data(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut data = rp_id_hash(rp_id).to_vec();
    data.push(flags);
    data.extend_from_slice(&counter.to_be_bytes());
    data
}

fn signed(key: &OpensslKey, data: &[u8], client_hash: &[u8; 32]) -> Vec<u8> {
    key.sign(&[data, client_hash.as_slice()].concat())
}

#[test]
fn assertions_signed_by_openssl_verify_and_every_alteration_is_refused() {
    let key = OpensslKey::generate();
    let public = key.public_key();
    let client_hash: [u8; 32] = Sha256::digest(b"{\"type\":\"webauthn.get\"}").into();
    let data = authenticator_data("host.example", 0x01, 41);
    let signature = signed(&key, &data, &client_hash);
    assert_eq!(
        verify_es256(&public, "host.example", &data, &client_hash, &signature),
        Ok(Verified {
            sign_count: 41,
            user_verified: false
        })
    );
    // User verification is reported.
    let uv = authenticator_data("host.example", 0x05, 42);
    let uv_signature = signed(&key, &uv, &client_hash);
    assert!(
        verify_es256(&public, "host.example", &uv, &client_hash, &uv_signature)
            .unwrap()
            .user_verified
    );

    // Another relying party, before any signature work.
    assert_eq!(
        verify_es256(&public, "other.example", &data, &client_hash, &signature),
        Err(AssertionError::WrongRelyingParty)
    );
    // Every single flipped bit of the signed data or of the client data hash is refused.
    for i in 0..data.len() {
        let mut altered = data.clone();
        altered[i] ^= 0x80;
        let refused = verify_es256(&public, "host.example", &altered, &client_hash, &signature);
        assert!(refused.is_err(), "byte {i} of the authenticator data");
    }
    for i in 0..32 {
        let mut altered = client_hash;
        altered[i] ^= 1;
        assert_eq!(
            verify_es256(&public, "host.example", &data, &altered, &signature),
            Err(AssertionError::BadSignature),
            "byte {i} of the client data hash"
        );
    }
    // Another key's signature, a truncated signature, truncated data.
    let stranger = OpensslKey::generate();
    assert_eq!(
        verify_es256(
            &stranger.public_key(),
            "host.example",
            &data,
            &client_hash,
            &signature
        ),
        Err(AssertionError::BadSignature)
    );
    assert_eq!(
        verify_es256(
            &public,
            "host.example",
            &data,
            &client_hash,
            &signature[..signature.len() - 1]
        ),
        Err(AssertionError::BadSignature)
    );
    assert_eq!(
        verify_es256(
            &public,
            "host.example",
            &data[..36],
            &client_hash,
            &signature
        ),
        Err(AssertionError::Truncated)
    );
    assert_eq!(
        verify_es256(
            &public[..64],
            "host.example",
            &data,
            &client_hash,
            &signature
        ),
        Err(AssertionError::BadPublicKey)
    );
}

#[test]
fn a_signed_assertion_without_a_touch_is_refused() {
    let key = OpensslKey::generate();
    let client_hash = [7u8; 32];
    // Signed correctly, but UP is clear: a key that signs without a touch proves nothing.
    let data = authenticator_data("host.example", 0x00, 1);
    let signature = signed(&key, &data, &client_hash);
    assert_eq!(
        verify_es256(
            &key.public_key(),
            "host.example",
            &data,
            &client_hash,
            &signature
        ),
        Err(AssertionError::NoUserPresence)
    );
}
