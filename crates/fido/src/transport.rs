//! The one thing the protocol layers need from a device: moving 64-byte HID reports.

use std::io;
use std::time::Duration;

/// The size of every CTAPHID report (CTAP 2.1 §11.2.4, full-speed USB HID).
pub const REPORT_SIZE: usize = 64;

/// A FIDO device seen as a pipe of 64-byte reports, without the report id.
pub trait Transport {
    /// Sends one output report.
    fn send(&mut self, report: &[u8; REPORT_SIZE]) -> io::Result<()>;

    /// Waits up to `timeout` for one input report; `Ok(None)` when none came in time.
    fn receive(&mut self, timeout: Duration) -> io::Result<Option<[u8; REPORT_SIZE]>>;

    /// Names the device for messages and logs (a device path).
    fn describe(&self) -> String;
}
