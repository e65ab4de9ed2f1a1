//! Test support: a scripted device that reassembles the host's requests and answers each with
//! what the test's handler says, recording every report it was sent.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use crate::ctaphid::{frame, CMD_CANCEL, CMD_INIT};
use crate::transport::{Transport, REPORT_SIZE};

/// The channel the scripted device hands out.
pub const CID: u32 = 0x1122_3344;

/// A request as the device saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub cid: u32,
    pub cmd: u8,
    pub payload: Vec<u8>,
}

/// What a handler tells the device to do with a request: reports to queue for the host.
pub type Handler = Box<dyn FnMut(&Request) -> Vec<[u8; REPORT_SIZE]>>;

/// Shared view of what the device was sent and how many reports the host took, for checks
/// after the transport was consumed.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<[u8; REPORT_SIZE]>>>, Rc<Cell<usize>>);

impl Log {
    /// How many reports the host has received so far.
    pub fn received(&self) -> usize {
        self.1.get()
    }

    /// The complete requests sent with command `cmd`, reassembled.
    pub fn requests(&self, cmd: u8) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut current: Option<(Vec<u8>, usize)> = None;
        for r in self.reports() {
            if r[4] & 0x80 != 0 {
                current = None;
                if r[4] & 0x7f == cmd {
                    let length = usize::from(u16::from_be_bytes([r[5], r[6]]));
                    current = Some((r[7..].iter().take(length).copied().collect(), length));
                }
            } else if let Some((payload, length)) = &mut current {
                let missing = *length - payload.len();
                payload.extend(r[5..].iter().take(missing));
            }
            if let Some((payload, length)) = &current {
                if payload.len() == *length {
                    out.push(payload.clone());
                    current = None;
                }
            }
        }
        out
    }

    pub fn reports(&self) -> Vec<[u8; REPORT_SIZE]> {
        self.0.borrow().clone()
    }

    /// Whether a CTAPHID_CANCEL was sent on `cid`.
    pub fn cancelled(&self, cid: u32) -> bool {
        self.reports()
            .iter()
            .any(|r| r[..4] == cid.to_be_bytes() && r[4] == CMD_CANCEL | 0x80)
    }
}

pub struct Scripted {
    handlers: VecDeque<Handler>,
    outbox: VecDeque<[u8; REPORT_SIZE]>,
    pending: Option<(Request, usize)>,
    /// Sequence number expected next in a multi-packet request.
    sequence: u8,
    pub log: Log,
    /// Answer INIT by itself (echoing the nonce, with these capabilities) before the handlers.
    pub auto_init: Option<u8>,
}

impl Scripted {
    pub fn new(handlers: Vec<Handler>) -> Self {
        Scripted {
            handlers: handlers.into(),
            outbox: VecDeque::new(),
            pending: None,
            sequence: 0,
            log: Log::default(),
            auto_init: None,
        }
    }

    /// Also answers INIT by itself, with `capabilities`.
    pub fn with_init(mut self, capabilities: u8) -> Self {
        self.auto_init = Some(capabilities);
        self
    }

    fn complete(&mut self, request: Request) {
        if request.cmd == CMD_CANCEL {
            return;
        }
        if let (Some(capabilities), CMD_INIT) = (self.auto_init, request.cmd) {
            self.outbox
                .extend(init_reply(&request.payload, CID, capabilities));
            return;
        }
        if let Some(mut handler) = self.handlers.pop_front() {
            self.outbox.extend(handler(&request));
        }
    }
}

impl Transport for Scripted {
    fn send(&mut self, report: &[u8; REPORT_SIZE]) -> io::Result<()> {
        self.log.0.borrow_mut().push(*report);
        let cid = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        if report[4] & 0x80 != 0 {
            let length = usize::from(u16::from_be_bytes([report[5], report[6]]));
            let mut payload = report[7..].to_vec();
            payload.truncate(length);
            let request = Request {
                cid,
                cmd: report[4] & 0x7f,
                payload,
            };
            self.sequence = 0;
            if request.payload.len() >= length {
                self.complete(request);
            } else {
                self.pending = Some((request, length));
            }
        } else if let Some((mut request, length)) = self.pending.take() {
            assert_eq!(report[4], self.sequence, "continuation out of sequence");
            self.sequence += 1;
            let missing = length - request.payload.len();
            request.payload.extend(report[5..].iter().take(missing));
            if request.payload.len() >= length {
                self.complete(request);
            } else {
                self.pending = Some((request, length));
            }
        }
        Ok(())
    }

    fn receive(&mut self, timeout: Duration) -> io::Result<Option<[u8; REPORT_SIZE]>> {
        match self.outbox.pop_front() {
            Some(report) => {
                self.log.1.set(self.log.1.get() + 1);
                Ok(Some(report))
            }
            None => {
                std::thread::sleep(timeout);
                Ok(None)
            }
        }
    }

    fn describe(&self) -> String {
        "scripted device".to_string()
    }
}

/// The reports of a reply `cmd` carrying `payload` on `cid`.
pub fn reply(cid: u32, cmd: u8, payload: &[u8]) -> Vec<[u8; REPORT_SIZE]> {
    // Test replies are a few hundred bytes, well under the 7609-byte message limit.
    frame(cid, cmd, payload).expect("a test reply fits one CTAPHID message")
}

/// An INIT reply echoing `nonce`, assigning `cid`.
pub fn init_reply(nonce: &[u8], cid: u32, capabilities: u8) -> Vec<[u8; REPORT_SIZE]> {
    let mut payload = nonce.to_vec();
    payload.extend(cid.to_be_bytes());
    payload.extend([2, 5, 4, 3, capabilities]);
    reply(0xffff_ffff, CMD_INIT, &payload)
}

/// A single first packet with a chosen length field and data.
pub fn packet(cid: u32, cmd: u8, length: u16, data: &[u8]) -> [u8; REPORT_SIZE] {
    let mut report = [0u8; REPORT_SIZE];
    report[..4].copy_from_slice(&cid.to_be_bytes());
    report[4] = cmd | 0x80;
    report[5..7].copy_from_slice(&length.to_be_bytes());
    report[7..7 + data.len()].copy_from_slice(data);
    report
}

/// A continuation packet.
pub fn continuation(cid: u32, sequence: u8, data: &[u8]) -> [u8; REPORT_SIZE] {
    let mut report = [0u8; REPORT_SIZE];
    report[..4].copy_from_slice(&cid.to_be_bytes());
    report[4] = sequence;
    report[5..5 + data.len()].copy_from_slice(data);
    report
}

/// A handler that answers any request with these reports.
pub fn answer(reports: Vec<[u8; REPORT_SIZE]>) -> Handler {
    let mut reports = Some(reports);
    Box::new(move |_| reports.take().unwrap_or_default())
}

/// A CTAP2 reply: the status byte, then the CBOR map if any.
pub fn cbor_reply(status: u8, body: Option<&twofold_core::cbor::Value>) -> Vec<[u8; REPORT_SIZE]> {
    let mut payload = vec![status];
    if let Some(body) = body {
        payload.extend(twofold_core::cbor::encode(body));
    }
    reply(CID, crate::ctaphid::CMD_CBOR, &payload)
}
