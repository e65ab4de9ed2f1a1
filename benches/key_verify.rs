//! How long the core's key verifier takes for one assertion (ES256 and EdDSA), the cost a key
//! login adds to the decision: `cargo bench -p twofold-core --bench key_verify`. A benchmark, not
//! a test: it prints the median of several runs and asserts nothing about time.

use std::hint::black_box;
use std::time::Instant;

use p256::ecdsa::signature::Signer;
use twofold_core::key_assertion::{rp_id_hash, verify};
use twofold_core::security_key::PublicKey;

const RP: &str = "pam://bench";
const ROUNDS: usize = 2_000;
const RUNS: usize = 7;

fn main() {
    let client_data_hash = [7u8; 32];
    let mut data = rp_id_hash(RP).to_vec();
    data.push(0x01);
    data.extend(42u32.to_be_bytes());
    let signed = [data.as_slice(), &client_data_hash].concat();

    let es_key = p256::ecdsa::SigningKey::from_slice(&[3u8; 32]).unwrap();
    let es_sig: p256::ecdsa::Signature = es_key.sign(&signed);
    let es_der = es_sig.to_der().as_bytes().to_vec();
    let es_public =
        PublicKey::es256(es_key.verifying_key().to_sec1_point(false).as_bytes()).unwrap();

    let ed_key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let ed_sig = ed25519_dalek::Signer::sign(&ed_key, &signed).to_bytes();
    let ed_public = PublicKey::ed25519(ed_key.verifying_key().as_bytes()).unwrap();

    report("es256", || {
        verify(&es_public, RP, &data, &client_data_hash, &es_der).is_ok()
    });
    report("eddsa", || {
        verify(&ed_public, RP, &data, &client_data_hash, &ed_sig).is_ok()
    });
}

fn report(name: &str, mut once: impl FnMut() -> bool) {
    // What is timed is a verify that succeeds, as at a real login.
    assert!(once(), "{name}: the assertion should verify");
    // `cargo test --all-targets` runs this too (without `--bench`): checking is enough there.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ROUNDS {
                black_box(once());
            }
            start.elapsed().as_secs_f64() / ROUNDS as f64 * 1e6
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    println!(
        "{name}: {:.1} µs per verify (median of {RUNS} runs of {ROUNDS})",
        runs[RUNS / 2]
    );
}
