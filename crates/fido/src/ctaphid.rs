//! CTAPHID (CTAP 2.1 §11.2): messages framed into 64-byte reports on a channel of one device.
//!
//! The device is hostile input: a reply is reassembled only from packets of this channel, in
//! sequence, up to the length the first packet announced and never beyond 7609 bytes. Anything
//! else is a protocol error; no packet panics this code, and no wait outlasts the caller's
//! deadline (at the deadline the request is cancelled on the device).

use std::fmt;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use crate::transport::{Transport, REPORT_SIZE};

/// CTAPHID_MSG: a U2F (CTAP1) APDU.
pub const CMD_MSG: u8 = 0x03;
/// CTAPHID_INIT: allocates a channel.
pub const CMD_INIT: u8 = 0x06;
/// CTAPHID_CBOR: a CTAP2 request.
pub const CMD_CBOR: u8 = 0x10;
/// CTAPHID_CANCEL: abandons the pending request on a channel.
pub const CMD_CANCEL: u8 = 0x11;
/// CTAPHID_KEEPALIVE: the device is still working on a request.
pub const CMD_KEEPALIVE: u8 = 0x3b;
/// CTAPHID_ERROR: the device refused a message.
pub const CMD_ERROR: u8 = 0x3f;

/// Capability flag: the device can wink.
pub const CAPABILITY_WINK: u8 = 0x01;
/// Capability flag: the device speaks CTAP2 (CTAPHID_CBOR).
pub const CAPABILITY_CBOR: u8 = 0x04;
/// Capability flag: the device does *not* speak U2F (CTAPHID_MSG).
pub const CAPABILITY_NMSG: u8 = 0x08;

/// The longest message: 57 bytes in the first packet and 59 in each of 128 continuations.
pub const MAX_MESSAGE: usize = INIT_DATA + CONT_DATA * 128;

/// A keepalive's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keepalive {
    /// The device is working.
    Processing,
    /// The device waits for a touch.
    UserPresenceNeeded,
    /// A status this host does not know.
    Other(u8),
}

/// Why a CTAPHID exchange failed.
#[derive(Debug)]
pub enum HidError {
    /// The device answered CTAPHID_ERROR with this code.
    Device(u8),
    /// Reading or writing the device failed.
    Io(io::Error),
    /// The device broke the framing rules.
    Protocol(&'static str),
    /// No complete reply by the deadline (the request was cancelled on the device).
    Timeout,
}

impl fmt::Display for HidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HidError::Device(code) => write!(
                f,
                "the device refused the message: {} (CTAPHID error {code:#04x})",
                device_error_name(*code)
            ),
            HidError::Io(error) => write!(f, "device I/O failed: {error}"),
            HidError::Protocol(what) => write!(f, "the device broke the CTAPHID protocol: {what}"),
            HidError::Timeout => f.write_str("the device did not answer in time"),
        }
    }
}

impl std::error::Error for HidError {}

impl From<io::Error> for HidError {
    fn from(error: io::Error) -> Self {
        HidError::Io(error)
    }
}

/// A channel on one device, allocated by CTAPHID_INIT.
pub struct Channel<'t> {
    transport: &'t mut dyn Transport,
    cid: u32,
    capabilities: u8,
    /// How long to wait before retrying a request the device was too busy for.
    pub(crate) busy_pause: Duration,
}

impl<'t> Channel<'t> {
    /// Allocates a channel on `transport` (CTAPHID_INIT on the broadcast channel, with a random
    /// nonce; replies meant for others, whose nonce differs, are ignored).
    pub fn open(transport: &'t mut dyn Transport, deadline: Instant) -> Result<Self, HidError> {
        let mut nonce = [0u8; NONCE_SIZE];
        getrandom::fill(&mut nonce)
            .map_err(|_| HidError::Io(io::Error::other("no random numbers for the nonce")))?;
        let mut broadcast = Channel::assume(transport, BROADCAST_CID, 0);
        let reply = broadcast.exchange(CMD_INIT, &nonce, deadline, &mut |_| {}, &|reply| {
            reply.get(..NONCE_SIZE) == Some(&nonce[..])
        })?;
        // nonce (8), channel id (4), protocol version, major, minor, build, capabilities.
        let (cid, capabilities) = match reply.get(NONCE_SIZE..INIT_REPLY_SIZE) {
            Some([a, b, c, d, _, _, _, _, capabilities]) => {
                (u32::from_be_bytes([*a, *b, *c, *d]), *capabilities)
            }
            _ => return Err(HidError::Protocol("the INIT reply is too short")),
        };
        if cid == BROADCAST_CID || cid == 0 {
            return Err(HidError::Protocol("the device assigned a reserved channel"));
        }
        Ok(Channel::assume(broadcast.transport, cid, capabilities))
    }

    /// A channel already allocated (for tests and fuzzing, which skip CTAPHID_INIT).
    #[doc(hidden)]
    pub fn assume(transport: &'t mut dyn Transport, cid: u32, capabilities: u8) -> Self {
        Channel {
            transport,
            cid,
            capabilities,
            busy_pause: BUSY_PAUSE,
        }
    }

    /// The capability flags from CTAPHID_INIT (`CAPABILITY_*`).
    pub fn capabilities(&self) -> u8 {
        self.capabilities
    }

    /// Whether the device speaks CTAP2.
    pub fn has_cbor(&self) -> bool {
        self.capabilities & CAPABILITY_CBOR != 0
    }

    /// Names the device.
    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// Sends command `cmd` with `payload` and returns the reply's payload. Keepalives go to
    /// `on_keepalive`; a busy device is asked again after a short pause; at `deadline` the
    /// request is cancelled and the result is [`HidError::Timeout`].
    pub fn call(
        &mut self,
        cmd: u8,
        payload: &[u8],
        deadline: Instant,
        on_keepalive: &mut dyn FnMut(Keepalive),
    ) -> Result<Vec<u8>, HidError> {
        self.exchange(cmd, payload, deadline, on_keepalive, &|_| true)
    }

    /// [`Channel::call`], ignoring complete replies that `accept` refuses.
    fn exchange(
        &mut self,
        cmd: u8,
        payload: &[u8],
        deadline: Instant,
        on_keepalive: &mut dyn FnMut(Keepalive),
        accept: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, HidError> {
        let packets = frame(self.cid, cmd, payload)?;
        'request: loop {
            for packet in &packets {
                self.transport.send(packet)?;
            }
            loop {
                let Some(report) = self.next_report(deadline)? else {
                    return Err(self.timed_out());
                };
                if channel_of(&report) != self.cid {
                    // Another process's channel (hidraw shows every reader every report).
                    continue;
                }
                let [_, _, _, _, command, _, _, first, ..] = report;
                if command & TYPE_INIT == 0 {
                    return Err(HidError::Protocol(
                        "a continuation packet without its first packet",
                    ));
                }
                match command & !TYPE_INIT {
                    CMD_KEEPALIVE => on_keepalive(match first {
                        KEEPALIVE_PROCESSING => Keepalive::Processing,
                        KEEPALIVE_UP_NEEDED => Keepalive::UserPresenceNeeded,
                        other => Keepalive::Other(other),
                    }),
                    CMD_ERROR if first == ERR_CHANNEL_BUSY => {
                        let now = Instant::now();
                        if now >= deadline {
                            return Err(self.timed_out());
                        }
                        thread::sleep(self.busy_pause.min(deadline - now));
                        continue 'request;
                    }
                    CMD_ERROR => return Err(HidError::Device(first)),
                    reply if reply == cmd => {
                        let message = self.reassemble(&report, deadline)?;
                        if accept(&message) {
                            return Ok(message);
                        }
                    }
                    _ => return Err(HidError::Protocol("a reply to another command")),
                }
            }
        }
    }

    /// The rest of a message whose first packet is `first`.
    fn reassemble(
        &mut self,
        first: &[u8; REPORT_SIZE],
        deadline: Instant,
    ) -> Result<Vec<u8>, HidError> {
        let [_, _, _, _, _, high, low, data @ ..] = first;
        let total = usize::from(u16::from_be_bytes([*high, *low]));
        if total > MAX_MESSAGE {
            return Err(HidError::Protocol("a reply longer than 7609 bytes"));
        }
        let mut message = Vec::with_capacity(total);
        message.extend(data.iter().take(total));
        let mut sequence: u8 = 0;
        while message.len() < total {
            // Continuations follow at once; a device silent mid-message has failed.
            let gap_end = deadline.min(Instant::now() + MESSAGE_GAP);
            let Some(report) = self.next_report(gap_end)? else {
                if Instant::now() >= deadline {
                    return Err(self.timed_out());
                }
                return Err(HidError::Protocol("the device went silent inside a reply"));
            };
            if channel_of(&report) != self.cid {
                continue;
            }
            let [_, _, _, _, marker, data @ ..] = report;
            if marker & TYPE_INIT != 0 {
                return Err(HidError::Protocol("a new message began inside a reply"));
            }
            if marker != sequence {
                return Err(HidError::Protocol("continuation packets out of sequence"));
            }
            // At most 128 continuations fit MAX_MESSAGE, so the sequence stays within 0..=0x7f.
            sequence = sequence.wrapping_add(1);
            let missing = total - message.len();
            message.extend(data.iter().take(missing));
        }
        Ok(message)
    }

    /// The next report, waiting in short slices so that the deadline is checked often.
    fn next_report(&mut self, until: Instant) -> Result<Option<[u8; REPORT_SIZE]>, HidError> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            if let Some(report) = self.transport.receive(POLL_SLICE.min(until - now))? {
                return Ok(Some(report));
            }
        }
    }

    /// Cancels the pending request on the device (best effort) and reports the timeout.
    fn timed_out(&mut self) -> HidError {
        // Nothing is pending on the broadcast channel that could be cancelled.
        if self.cid != BROADCAST_CID {
            let mut packet = [0u8; REPORT_SIZE];
            let header = self
                .cid
                .to_be_bytes()
                .into_iter()
                .chain([CMD_CANCEL | TYPE_INIT]);
            for (slot, byte) in packet.iter_mut().zip(header) {
                *slot = byte;
            }
            // The device may be gone; the timeout is the error that matters.
            let _ = self.transport.send(&packet);
        }
        HidError::Timeout
    }
}

/// Frames one message into its first packet and continuation packets (CTAP 2.1 §11.2.4).
#[doc(hidden)]
pub fn frame(cid: u32, cmd: u8, payload: &[u8]) -> Result<Vec<[u8; REPORT_SIZE]>, HidError> {
    let length = u16::try_from(payload.len())
        .ok()
        .filter(|&n| usize::from(n) <= MAX_MESSAGE)
        .ok_or(HidError::Protocol("a request longer than 7609 bytes"))?;
    let (head, tail) = payload.split_at(payload.len().min(INIT_DATA));
    let mut first = [0u8; REPORT_SIZE];
    let header = cid.to_be_bytes().into_iter().chain([cmd | TYPE_INIT]);
    let header = header.chain(length.to_be_bytes());
    for (slot, byte) in first.iter_mut().zip(header.chain(head.iter().copied())) {
        *slot = byte;
    }
    let mut packets = vec![first];
    // The length check bounds the continuations to 128, so the sequence fits 0..=0x7f.
    for (sequence, chunk) in (0u8..).zip(tail.chunks(CONT_DATA)) {
        let mut packet = [0u8; REPORT_SIZE];
        let header = cid.to_be_bytes().into_iter().chain([sequence]);
        for (slot, byte) in packet.iter_mut().zip(header.chain(chunk.iter().copied())) {
            *slot = byte;
        }
        packets.push(packet);
    }
    Ok(packets)
}

fn channel_of(report: &[u8; REPORT_SIZE]) -> u32 {
    let [a, b, c, d, ..] = *report;
    u32::from_be_bytes([a, b, c, d])
}

fn device_error_name(code: u8) -> &'static str {
    match code {
        0x01 => "invalid command",
        0x02 => "invalid parameter",
        0x03 => "invalid length",
        0x04 => "invalid sequence",
        0x05 => "message timeout",
        ERR_CHANNEL_BUSY => "channel busy",
        0x0a => "lock required",
        0x0b => "invalid channel",
        _ => "other error",
    }
}

const TYPE_INIT: u8 = 0x80;
const INIT_DATA: usize = REPORT_SIZE - 7;
const CONT_DATA: usize = REPORT_SIZE - 5;
const BROADCAST_CID: u32 = 0xffff_ffff;
const NONCE_SIZE: usize = 8;
const INIT_REPLY_SIZE: usize = 17;
const KEEPALIVE_PROCESSING: u8 = 1;
const KEEPALIVE_UP_NEEDED: u8 = 2;
const ERR_CHANNEL_BUSY: u8 = 0x06;
/// The longest single wait, so that deadlines are noticed promptly.
const POLL_SLICE: Duration = Duration::from_millis(100);
const BUSY_PAUSE: Duration = Duration::from_millis(100);
/// How long a device may pause between the packets of one reply.
const MESSAGE_GAP: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scripted::{answer, continuation, init_reply, packet, reply, Scripted, CID};

    fn soon(millis: u64) -> Instant {
        Instant::now() + Duration::from_millis(millis)
    }

    fn call(device: &mut Scripted, deadline: Instant) -> Result<Vec<u8>, HidError> {
        Channel::assume(device, CID, CAPABILITY_CBOR).call(CMD_CBOR, &[4], deadline, &mut |_| {})
    }

    #[test]
    fn requests_are_framed_at_the_packet_boundaries() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(MAX_MESSAGE).collect();
        for (length, packets) in [(0, 1), (57, 1), (58, 2), (57 + 59, 2), (57 + 59 + 1, 3)] {
            let framed = frame(CID, CMD_CBOR, &payload[..length]).unwrap();
            assert_eq!(framed.len(), packets, "{length}");
            let first = framed[0];
            assert_eq!(first[..4], CID.to_be_bytes());
            assert_eq!(first[4], 0x90);
            assert_eq!(
                usize::from(u16::from_be_bytes([first[5], first[6]])),
                length
            );
            let head = length.min(57);
            assert_eq!(first[7..7 + head], payload[..head]);
            assert!(first[7 + head..].iter().all(|&b| b == 0), "{length}");
            let mut joined = first[7..].to_vec();
            for (sequence, continuation) in framed[1..].iter().enumerate() {
                assert_eq!(continuation[..4], CID.to_be_bytes());
                assert_eq!(usize::from(continuation[4]), sequence);
                joined.extend(&continuation[5..]);
            }
            assert_eq!(joined[..length], payload[..length]);
            assert!(joined[length..].iter().all(|&b| b == 0), "{length}");
        }
        let largest = frame(CID, CMD_CBOR, &payload).unwrap();
        assert_eq!(largest.len(), 129);
        assert_eq!(largest[128][4], 0x7f);
        let too_long = [payload.clone(), vec![0]].concat();
        assert!(matches!(
            frame(CID, CMD_CBOR, &too_long),
            Err(HidError::Protocol(_))
        ));
    }

    #[test]
    fn an_init_reply_with_another_nonce_is_ignored() {
        let handler = Box::new(|request: &crate::scripted::Request| {
            assert_eq!(request.cid, BROADCAST_CID);
            assert_eq!(request.payload.len(), NONCE_SIZE);
            let mut wrong = request.payload.clone();
            wrong[0] ^= 1;
            [
                init_reply(&wrong, 0x0bad_0bad, 0),
                init_reply(&request.payload, CID, CAPABILITY_CBOR | CAPABILITY_WINK),
            ]
            .concat()
        });
        let mut device = Scripted::new(vec![handler]);
        let channel = Channel::open(&mut device, soon(5000)).unwrap();
        assert_eq!(channel.cid, CID);
        assert!(channel.has_cbor());
        assert_eq!(channel.capabilities(), CAPABILITY_CBOR | CAPABILITY_WINK);
    }

    #[test]
    fn an_init_reply_assigning_the_broadcast_channel_is_refused() {
        let handler = Box::new(|request: &crate::scripted::Request| {
            init_reply(&request.payload, BROADCAST_CID, 0)
        });
        let mut device = Scripted::new(vec![handler]);
        assert!(matches!(
            Channel::open(&mut device, soon(5000)),
            Err(HidError::Protocol(_))
        ));
    }

    #[test]
    fn a_reply_is_reassembled_across_continuations_ignoring_other_channels() {
        let payload: Vec<u8> = (0..200u8).collect();
        let mut reports = reply(CID, CMD_CBOR, &payload);
        let stranger = reply(0x5555_5555, CMD_CBOR, &[9; 100]);
        // Another channel's packets before, between and inside ours.
        reports.insert(0, stranger[0]);
        reports.insert(2, stranger[1]);
        reports.insert(3, continuation(0x5555_5555, 7, &[1; 59]));
        let mut device = Scripted::new(vec![answer(reports)]);
        assert_eq!(call(&mut device, soon(5000)).unwrap(), payload);
    }

    #[test]
    fn the_longest_reply_is_reassembled() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(MAX_MESSAGE).collect();
        let mut device = Scripted::new(vec![answer(reply(CID, CMD_CBOR, &payload))]);
        assert_eq!(call(&mut device, soon(5000)).unwrap(), payload);
    }

    #[test]
    fn keepalives_reach_the_callback_and_the_reply_still_comes() {
        let reports = [
            packet(CID, CMD_KEEPALIVE, 1, &[KEEPALIVE_PROCESSING]),
            packet(CID, CMD_KEEPALIVE, 1, &[KEEPALIVE_UP_NEEDED]),
            packet(CID, CMD_KEEPALIVE, 1, &[KEEPALIVE_UP_NEEDED]),
            packet(CID, CMD_KEEPALIVE, 1, &[0x42]),
            packet(CID, CMD_CBOR, 1, &[0]),
        ];
        let mut device = Scripted::new(vec![answer(reports.to_vec())]);
        let mut seen = Vec::new();
        let reply = Channel::assume(&mut device, CID, CAPABILITY_CBOR)
            .call(CMD_CBOR, &[4], soon(5000), &mut |k| seen.push(k))
            .unwrap();
        assert_eq!(reply, [0]);
        assert_eq!(
            seen,
            [
                Keepalive::Processing,
                Keepalive::UserPresenceNeeded,
                Keepalive::UserPresenceNeeded,
                Keepalive::Other(0x42)
            ]
        );
    }

    #[test]
    fn a_busy_channel_is_asked_again_within_the_deadline() {
        let busy = vec![packet(CID, CMD_ERROR, 1, &[ERR_CHANNEL_BUSY])];
        let mut device = Scripted::new(vec![
            answer(busy.clone()),
            answer(busy),
            answer(reply(CID, CMD_CBOR, &[0, 0xa0])),
        ]);
        let log = device.log.clone();
        assert_eq!(call(&mut device, soon(5000)).unwrap(), [0, 0xa0]);
        assert_eq!(log.requests(CMD_CBOR).len(), 3);
    }

    #[test]
    fn a_device_busy_past_the_deadline_times_out() {
        let busy = || answer(vec![packet(CID, CMD_ERROR, 1, &[ERR_CHANNEL_BUSY])]);
        let mut device = Scripted::new((0..100).map(|_| busy()).collect());
        let log = device.log.clone();
        assert!(matches!(
            call(&mut device, soon(250)),
            Err(HidError::Timeout)
        ));
        assert!(log.cancelled(CID));
    }

    #[test]
    fn a_silent_device_times_out_and_the_request_is_cancelled() {
        let mut device = Scripted::new(vec![]);
        let log = device.log.clone();
        assert!(matches!(
            call(&mut device, soon(200)),
            Err(HidError::Timeout)
        ));
        assert!(log.cancelled(CID));
    }

    #[test]
    fn an_error_frame_is_an_error_with_its_code() {
        let mut device = Scripted::new(vec![answer(vec![packet(CID, CMD_ERROR, 1, &[0x01])])]);
        let error = call(&mut device, soon(5000)).unwrap_err();
        assert!(matches!(error, HidError::Device(0x01)));
        assert!(error.to_string().contains("invalid command"));
    }

    #[test]
    fn a_length_over_7609_is_a_protocol_error() {
        let reports = vec![packet(CID, CMD_CBOR, 7610, &[0; 57])];
        let mut device = Scripted::new(vec![answer(reports)]);
        assert!(matches!(
            call(&mut device, soon(5000)),
            Err(HidError::Protocol(_))
        ));
    }

    #[test]
    fn a_wrong_sequence_number_is_a_protocol_error() {
        let mut reports = reply(CID, CMD_CBOR, &[7; 200]);
        reports[2][4] = 2;
        let mut device = Scripted::new(vec![answer(reports)]);
        assert!(matches!(
            call(&mut device, soon(5000)),
            Err(HidError::Protocol(_))
        ));
    }

    #[test]
    fn a_device_silent_mid_message_is_a_protocol_error_before_the_deadline() {
        let reports = reply(CID, CMD_CBOR, &[7; 200]);
        let mut device = Scripted::new(vec![answer(reports[..2].to_vec())]);
        assert!(matches!(
            call(&mut device, soon(60_000)),
            Err(HidError::Protocol(_))
        ));
        // With the deadline nearer than the allowed gap, it is a timeout.
        let mut device = Scripted::new(vec![answer(reports[..2].to_vec())]);
        let log = device.log.clone();
        assert!(matches!(
            call(&mut device, soon(150)),
            Err(HidError::Timeout)
        ));
        assert!(log.cancelled(CID));
    }

    #[test]
    fn misordered_packets_are_protocol_errors() {
        let full = reply(CID, CMD_CBOR, &[7; 200]);
        let cases = [
            // A continuation with no first packet.
            vec![continuation(CID, 0, &[1; 59])],
            // A new first packet inside a reply.
            vec![full[0], full[0]],
            // A keepalive inside a reply.
            vec![full[0], packet(CID, CMD_KEEPALIVE, 1, &[1])],
            // A reply to another command.
            vec![packet(CID, CMD_MSG, 2, &[0x90, 0x00])],
        ];
        for reports in cases {
            let mut device = Scripted::new(vec![answer(reports)]);
            assert!(matches!(
                call(&mut device, soon(5000)),
                Err(HidError::Protocol(_))
            ));
        }
    }

    #[test]
    fn a_device_read_error_is_reported() {
        struct Broken;
        impl Transport for Broken {
            fn send(&mut self, _: &[u8; REPORT_SIZE]) -> io::Result<()> {
                Ok(())
            }
            fn receive(&mut self, _: Duration) -> io::Result<Option<[u8; REPORT_SIZE]>> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
            }
            fn describe(&self) -> String {
                "broken".into()
            }
        }
        let mut device = Broken;
        let result =
            Channel::assume(&mut device, CID, 0).call(CMD_CBOR, &[4], soon(5000), &mut |_| {});
        assert!(matches!(result, Err(HidError::Io(_))));
    }
}
