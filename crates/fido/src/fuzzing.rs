//! Entry points for the fuzz targets (fuzz/fuzz_targets/ctap_response.rs); not an API.

use std::io;
use std::time::{Duration, Instant};

use crate::ctap2;
use crate::ctaphid::{Channel, CMD_CBOR};
use crate::transport::{Transport, REPORT_SIZE};
use crate::u2f;

/// Feeds `data` to every reply parser, and, cut into 64-byte reports, to CTAPHID reassembly.
pub fn ctap_response(data: &[u8]) {
    let _ = ctap2::parse_info(data);
    let _ = ctap2::parse_made_credential(data, "example.org");
    let _ = ctap2::parse_assertion(data, &[]);
    let _ = ctap2::parse_assertion(data, &[vec![1, 2, 3]]);
    let _ = ctap2::AuthData::parse(data);
    let _ = u2f::parse_authenticate(&[0; 32], &[1], data);

    let mut replay = Replay::new(data);
    // The channel is the first report's, so that the fuzzer reaches reassembly easily.
    let cid = data
        .first_chunk::<4>()
        .map_or(0x0102_0304, |c| u32::from_be_bytes(*c));
    let mut channel = Channel::assume(&mut replay, cid, 0);
    channel.busy_pause = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(5);
    if let Ok(reply) = channel.call(CMD_CBOR, &[0x04], deadline, &mut |_| {}) {
        let _ = ctap2::parse_info(&reply);
    }
}

/// A device that replays fixed bytes as reports, then fails (so that nothing waits).
pub struct Replay {
    reports: Vec<[u8; REPORT_SIZE]>,
    next: usize,
}

impl Replay {
    /// `data` cut into 64-byte reports, the last one padded with zeros.
    pub fn new(data: &[u8]) -> Self {
        let reports = data
            .chunks(REPORT_SIZE)
            .map(|chunk| {
                let mut report = [0u8; REPORT_SIZE];
                for (slot, byte) in report.iter_mut().zip(chunk) {
                    *slot = *byte;
                }
                report
            })
            .collect();
        Replay { reports, next: 0 }
    }
}

impl Transport for Replay {
    fn send(&mut self, _report: &[u8; REPORT_SIZE]) -> io::Result<()> {
        Ok(())
    }

    fn receive(&mut self, _timeout: Duration) -> io::Result<Option<[u8; REPORT_SIZE]>> {
        let report = self.reports.get(self.next).copied();
        self.next += 1;
        report
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "replay exhausted"))
    }

    fn describe(&self) -> String {
        "replay".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scripted::{reply, CID};

    /// A cheap stand-in for the fuzzer in every `cargo test`: random bytes, and random bit flips
    /// of a well-formed framed reply, must not panic.
    #[test]
    fn random_and_mutated_replies_do_not_panic() {
        let mut seed = [0u8; 512];
        let framed: Vec<u8> = reply(CID, CMD_CBOR, &[0x00; 150]).concat();
        for round in 0..2000 {
            getrandom::fill(&mut seed).unwrap();
            let length = usize::from(seed[0]) * 2;
            ctap_response(&seed[..length]);
            let mut mutated = framed.clone();
            let at = usize::from(u16::from_be_bytes([seed[1], seed[2]])) % mutated.len();
            mutated[at] ^= seed[3] | 1;
            mutated.truncate(mutated.len() - usize::from(seed[4]) % 3 * (round % 2));
            ctap_response(&mutated);
        }
    }
}
