//! FIDO security keys on Linux's `/dev/hidraw*`: finding them by their HID report descriptor,
//! and a [`Transport`] over one that holds an exclusive lock on it.
//!
//! Every open hidraw file sees every input report of its device, so two processes talking to
//! one key would read each other's replies: the lock (`flock`) keeps a second login waiting
//! instead, never past its deadline. This module never follows a symlink and never opens what
//! is not a character device.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::sys;
use crate::transport::{Transport, REPORT_SIZE};

/// The hidraw devices whose report descriptor declares the FIDO usage, in device-number order.
/// Devices whose descriptor cannot be read are left out.
pub fn device_paths() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(SYSFS_CLASS) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = hidraw_number(name.to_str()?)?;
            let descriptor = read_descriptor(&entry.path().join("device/report_descriptor"))?;
            is_fido_descriptor(&descriptor)
                .then(|| (number, Path::new("/dev").join(format!("hidraw{number}"))))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, path)| path).collect()
}

/// Whether a HID report descriptor declares a top-level collection with the FIDO Alliance usage
/// page (0xF1D0) and usage 0x01 (CTAPHID). A malformed or truncated descriptor is refused.
pub fn is_fido_descriptor(descriptor: &[u8]) -> bool {
    fido_collection(descriptor).unwrap_or(false)
}

/// A security key at a hidraw path, opened and locked at its first use.
pub struct Hidraw {
    path: PathBuf,
    lock_deadline: Instant,
    file: Option<File>,
}

impl Hidraw {
    /// A device at `path` that will wait for its lock until `lock_deadline` at most.
    pub fn new(path: PathBuf, lock_deadline: Instant) -> Self {
        Hidraw {
            path,
            lock_deadline,
            file: None,
        }
    }

    /// The open, locked device: opened now if this is the first use.
    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            self.file = Some(open_locked(&self.path, self.lock_deadline)?);
        }
        // Just filled if it was empty.
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the device is not open"))
    }
}

impl Transport for Hidraw {
    fn send(&mut self, report: &[u8; REPORT_SIZE]) -> io::Result<()> {
        // Report id 0 first: FIDO devices use unnumbered reports.
        let mut out = [0u8; REPORT_SIZE + 1];
        out[1..].copy_from_slice(report);
        let written = self.file()?.write(&out)?;
        if written != out.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the device",
            ));
        }
        Ok(())
    }

    fn receive(&mut self, timeout: Duration) -> io::Result<Option<[u8; REPORT_SIZE]>> {
        let file = self.file()?;
        if !sys::wait_readable(file.as_fd(), timeout)? {
            return Ok(None);
        }
        // One byte more than a report, to notice a device whose reports are longer.
        let mut buffer = [0u8; REPORT_SIZE + 1];
        let length = match file.read(&mut buffer) {
            Ok(length) => length,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(error) => return Err(error),
        };
        let mut report = [0u8; REPORT_SIZE];
        match buffer.get(..length) {
            Some(bytes) if length == REPORT_SIZE => report.copy_from_slice(bytes),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the device sent a {length}-byte report, not {REPORT_SIZE}"),
                ))
            }
        }
        Ok(Some(report))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Opens `path` for reading and writing, refuses anything but a character device, and takes the
/// exclusive lock, retrying in short sleeps until `deadline`.
fn open_locked(path: &Path, deadline: Instant) -> io::Result<File> {
    // std adds O_CLOEXEC itself. O_NONBLOCK: reads never block; receive() waits in poll().
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_char_device() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a character device",
        ));
    }
    loop {
        if sys::try_lock_exclusive(file.as_fd())? {
            return Ok(file);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the security key is in use by another process",
            ));
        }
        thread::sleep(LOCK_RETRY.min(deadline - now));
    }
}

/// `N` of a sysfs entry named `hidrawN`.
fn hidraw_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("hidraw")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn read_descriptor(path: &Path) -> Option<Vec<u8>> {
    let file = File::open(path).ok()?;
    let mut descriptor = Vec::new();
    // The kernel caps descriptors at 4096 bytes; read one more to notice anything larger.
    file.take(MAX_DESCRIPTOR as u64 + 1)
        .read_to_end(&mut descriptor)
        .ok()?;
    (descriptor.len() <= MAX_DESCRIPTOR).then_some(descriptor)
}

/// Walks the descriptor's items (HID 1.11 §6.2.2): `None` when it is malformed.
fn fido_collection(descriptor: &[u8]) -> Option<bool> {
    let mut usage_page: u32 = 0;
    // Globals saved by Push, restored by Pop; only the usage page matters here.
    let mut saved_pages: Vec<u32> = Vec::new();
    // Local items last until the next main item.
    let mut usages: Vec<(u32, u32)> = Vec::new();
    let mut depth: usize = 0;
    let mut found = false;
    let mut rest = descriptor;
    while let Some((&prefix, after)) = rest.split_first() {
        if prefix == LONG_ITEM {
            // bDataSize, bLongItemTag, then the data: no long item is defined, so skip it.
            let (&size, after) = after.split_first()?;
            rest = after.get(1 + usize::from(size)..)?;
            continue;
        }
        let size = match prefix & 0x03 {
            3 => 4,
            n => usize::from(n),
        };
        let data = after.get(..size)?;
        rest = after.get(size..)?;
        let value = data
            .iter()
            .rev()
            .fold(0u32, |acc, &byte| (acc << 8) | u32::from(byte));
        let (kind, tag) = ((prefix >> 2) & 0x03, prefix >> 4);
        match (kind, tag) {
            (TYPE_MAIN, TAG_COLLECTION) => {
                if depth == 0 {
                    // A 4-byte usage names its own page in the high half.
                    found |= usages.iter().any(|&(page, usage)| {
                        (page, usage) == (FIDO_USAGE_PAGE, FIDO_USAGE_CTAPHID)
                    });
                }
                depth = depth.checked_add(1)?;
                usages.clear();
            }
            (TYPE_MAIN, TAG_END_COLLECTION) => {
                depth = depth.checked_sub(1)?;
                usages.clear();
            }
            (TYPE_MAIN, _) => usages.clear(),
            (TYPE_GLOBAL, TAG_USAGE_PAGE) => usage_page = value,
            (TYPE_GLOBAL, TAG_PUSH) => {
                if saved_pages.len() >= MAX_PUSH {
                    return None;
                }
                saved_pages.push(usage_page);
            }
            (TYPE_GLOBAL, TAG_POP) => usage_page = saved_pages.pop()?,
            (TYPE_LOCAL, TAG_USAGE) => {
                let usage = if size == 4 {
                    (value >> 16, value & 0xffff)
                } else {
                    (usage_page, value)
                };
                if usages.len() < MAX_USAGES {
                    usages.push(usage);
                }
            }
            _ => {}
        }
    }
    // Every collection must be closed.
    (depth == 0).then_some(found)
}

const SYSFS_CLASS: &str = "/sys/class/hidraw";
/// HID_MAX_DESCRIPTOR_SIZE in the kernel.
const MAX_DESCRIPTOR: usize = 4096;
/// How often a busy key's lock is tried again.
const LOCK_RETRY: Duration = Duration::from_millis(50);

const FIDO_USAGE_PAGE: u32 = 0xf1d0;
const FIDO_USAGE_CTAPHID: u32 = 0x01;

const LONG_ITEM: u8 = 0xfe;
const TYPE_MAIN: u8 = 0;
const TYPE_GLOBAL: u8 = 1;
const TYPE_LOCAL: u8 = 2;
const TAG_COLLECTION: u8 = 0x0a;
const TAG_END_COLLECTION: u8 = 0x0c;
const TAG_USAGE_PAGE: u8 = 0x00;
const TAG_PUSH: u8 = 0x0a;
const TAG_POP: u8 = 0x0b;
const TAG_USAGE: u8 = 0x00;
/// Bounds on what a hostile descriptor can make this parser hold.
const MAX_PUSH: usize = 16;
const MAX_USAGES: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// A YubiKey 5's FIDO interface.
    const YUBIKEY_FIDO: [u8; 34] = [
        0x06, 0xd0, 0xf1, 0x09, 0x01, 0xa1, 0x01, 0x09, 0x20, 0x15, 0x00, 0x26, 0xff, 0x00, 0x75,
        0x08, 0x95, 0x40, 0x81, 0x02, 0x09, 0x21, 0x15, 0x00, 0x26, 0xff, 0x00, 0x75, 0x08, 0x95,
        0x40, 0x91, 0x02, 0xc0,
    ];

    /// The boot keyboard descriptor of HID 1.11 Appendix B.1 (a YubiKey's OTP interface is one).
    const KEYBOARD: [u8; 63] = [
        0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0x05, 0x07, 0x19, 0xe0, 0x29, 0xe7, 0x15, 0x00, 0x25,
        0x01, 0x75, 0x01, 0x95, 0x08, 0x81, 0x02, 0x95, 0x01, 0x75, 0x08, 0x81, 0x01, 0x95, 0x05,
        0x75, 0x01, 0x05, 0x08, 0x19, 0x01, 0x29, 0x05, 0x91, 0x02, 0x95, 0x01, 0x75, 0x03, 0x91,
        0x01, 0x95, 0x06, 0x75, 0x08, 0x15, 0x00, 0x25, 0x65, 0x05, 0x07, 0x19, 0x00, 0x29, 0x65,
        0x81, 0x00, 0xc0,
    ];

    #[test]
    fn a_yubikey_fido_descriptor_is_a_fido_device() {
        assert!(is_fido_descriptor(&YUBIKEY_FIDO));
    }

    #[test]
    fn a_keyboard_descriptor_is_refused() {
        assert!(!is_fido_descriptor(&KEYBOARD));
    }

    #[test]
    fn every_truncation_of_a_fido_descriptor_is_refused() {
        for length in 0..YUBIKEY_FIDO.len() {
            assert!(!is_fido_descriptor(&YUBIKEY_FIDO[..length]), "{length}");
        }
    }

    #[test]
    fn a_fido_usage_inside_another_collection_is_not_top_level() {
        let nested = [
            &[0x05, 0x01, 0x09, 0x06, 0xa1, 0x01][..],
            &YUBIKEY_FIDO[..],
            &[0xc0],
        ]
        .concat();
        assert!(!is_fido_descriptor(&nested));
    }

    #[test]
    fn an_extended_usage_and_a_long_item_are_understood() {
        // Usage Page 0x01, then a 4-byte usage naming page 0xF1D0 itself; a long item first.
        let descriptor = [
            0xfe, 0x02, 0x10, 0xaa, 0xbb, 0x05, 0x01, 0x0b, 0x01, 0x00, 0xd0, 0xf1, 0xa1, 0x01,
            0xc0,
        ];
        assert!(is_fido_descriptor(&descriptor));
        // A long item whose data runs past the end.
        assert!(!is_fido_descriptor(&[0xfe, 0x05, 0x10, 0x00]));
    }

    #[test]
    fn push_and_pop_restore_the_usage_page() {
        let descriptor = [
            0x06, 0xd0, 0xf1, 0xa4, 0x05, 0x01, 0xb4, 0x09, 0x01, 0xa1, 0x01, 0xc0,
        ];
        assert!(is_fido_descriptor(&descriptor));
        // A Pop with nothing pushed, and an End Collection with nothing open, are malformed.
        assert!(!is_fido_descriptor(&[0xb4]));
        assert!(!is_fido_descriptor(&[0xc0]));
    }

    #[test]
    fn hidraw_names_are_parsed_strictly() {
        assert_eq!(hidraw_number("hidraw0"), Some(0));
        assert_eq!(hidraw_number("hidraw12"), Some(12));
        assert_eq!(hidraw_number("hidraw"), None);
        assert_eq!(hidraw_number("hidraw+1"), None);
        assert_eq!(hidraw_number("hidraw1/../x"), None);
    }

    #[test]
    fn a_regular_file_is_not_opened_as_a_device() {
        let path = std::env::temp_dir().join(format!("twofold-fido-{}", std::process::id()));
        fs::write(&path, b"").unwrap();
        let error = open_locked(&path, Instant::now()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        fs::remove_file(&path).unwrap();
    }
}
