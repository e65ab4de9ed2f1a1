//! Test builds only: a [`Transport`] over a unix `SOCK_SEQPACKET` socket, through which the
//! tests' software authenticator stands in for a USB key. Each message is one 64-byte report.
//!
//! Compiled only with the `test-socket` feature; the release module must not contain it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::sys;
use crate::transport::{Transport, REPORT_SIZE};

/// The environment variable that names the software authenticator's socket.
pub const SOCKET_VARIABLE: &str = "TWOFOLD_TEST_FIDO_SOCKET";

/// The socket named by [`SOCKET_VARIABLE`], connected; `None` when it is unset or refuses.
pub fn from_environment() -> Option<TestSocket> {
    let path = PathBuf::from(std::env::var_os(SOCKET_VARIABLE)?);
    TestSocket::connect(path).ok()
}

/// A connection to a software authenticator.
pub struct TestSocket {
    path: PathBuf,
    socket: File,
}

impl TestSocket {
    /// Connects to the authenticator listening at `path`.
    pub fn connect(path: PathBuf) -> io::Result<Self> {
        let socket = File::from(sys::connect_seqpacket(&path)?);
        Ok(TestSocket { path, socket })
    }
}

impl Transport for TestSocket {
    fn send(&mut self, report: &[u8; REPORT_SIZE]) -> io::Result<()> {
        let written = self.socket.write(report)?;
        if written != REPORT_SIZE {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        Ok(())
    }

    fn receive(&mut self, timeout: Duration) -> io::Result<Option<[u8; REPORT_SIZE]>> {
        if !sys::wait_readable(self.socket.as_fd(), timeout)? {
            return Ok(None);
        }
        // One byte more than a report: a longer message is truncated to it, and so noticed.
        let mut buffer = [0u8; REPORT_SIZE + 1];
        let length = self.socket.read(&mut buffer)?;
        if length == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the software authenticator closed the socket",
            ));
        }
        let mut report = [0u8; REPORT_SIZE];
        match buffer.get(..length) {
            Some(bytes) if length == REPORT_SIZE => report.copy_from_slice(bytes),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a {length}-byte message, not {REPORT_SIZE}"),
                ))
            }
        }
        Ok(Some(report))
    }

    fn describe(&self) -> String {
        format!("test socket {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::fd::{FromRawFd, OwnedFd};

    #[test]
    fn reports_cross_a_seqpacket_socket_one_per_message() {
        let dir = std::env::temp_dir().join(format!("twofold-fido-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        let _ = std::fs::remove_file(&path);
        let listener = listen(&path);
        let mut client = TestSocket::connect(path.clone()).unwrap();
        let server = accept(&listener);
        let mut server = File::from(server);

        let report = [7u8; REPORT_SIZE];
        client.send(&report).unwrap();
        let mut got = [0u8; 65];
        assert_eq!(server.read(&mut got).unwrap(), REPORT_SIZE);

        assert_eq!(client.receive(Duration::from_millis(10)).unwrap(), None);
        server.write_all(&[9u8; REPORT_SIZE]).unwrap();
        assert_eq!(
            client.receive(Duration::from_secs(5)).unwrap(),
            Some([9u8; REPORT_SIZE])
        );
        server.write_all(&[1u8; 10]).unwrap();
        assert!(client.receive(Duration::from_secs(5)).is_err());
        drop(server);
        assert!(client.receive(Duration::from_secs(5)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn listen(path: &std::path::Path) -> OwnedFd {
        use std::os::unix::ffi::OsStrExt;
        let mut address = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; 108],
        };
        for (slot, byte) in address.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *slot = *byte as libc::c_char;
        }
        // SAFETY: socket takes no pointers.
        let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0) };
        assert!(raw >= 0);
        // SAFETY: `raw` was just returned by socket() and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let length = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: `address` is a valid sockaddr_un of `length` bytes that outlives the call.
        let bound = unsafe {
            libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&address as *const libc::sockaddr_un).cast(),
                length,
            )
        };
        assert_eq!(bound, 0);
        // SAFETY: listen takes no pointers.
        let listening = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&fd), 1) };
        assert_eq!(listening, 0);
        fd
    }

    fn accept(listener: &OwnedFd) -> OwnedFd {
        // SAFETY: null address pointers are allowed and mean "don't report the peer".
        let raw = unsafe {
            libc::accept(
                std::os::fd::AsRawFd::as_raw_fd(listener),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert!(raw >= 0);
        // SAFETY: `raw` was just returned by accept() and is owned by nothing else.
        unsafe { OwnedFd::from_raw_fd(raw) }
    }
}
