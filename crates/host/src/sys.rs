//! One safe wrapper per system call the host adapter needs, each with its own `// SAFETY:`.
//!
//! Nothing else in the workspace outside the PAM edge calls libc directly: the rest of the host
//! adapter goes through these.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// The effective uid of this process.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The real uid of this process: who ran the CLI, even through a setuid wrapper or sudo's root.
pub fn getuid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Sets this thread's filesystem uid and returns the previous one. `u32::MAX` (an invalid id)
/// changes nothing and only reports the current value.
pub fn setfsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid only changes this thread's filesystem credentials; it cannot fail outright.
    unsafe { libc::setfsuid(uid) as u32 }
}

/// Sets this thread's filesystem gid and returns the previous one, as `setfsuid`.
pub fn setfsgid(gid: u32) -> u32 {
    // SAFETY: setfsgid only changes this thread's filesystem credentials; it cannot fail outright.
    unsafe { libc::setfsgid(gid) as u32 }
}

/// Tries once to take an exclusive `flock` on `file` without blocking.
pub fn try_lock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: the descriptor is open for the lifetime of `file`; flock takes no pointers.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the real uid may write `path` (`access(2)` with `W_OK`).
pub fn may_write(path: &CStr) -> bool {
    // SAFETY: path is NUL-terminated and lives across the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}

/// This machine's host name, or `None` when it cannot be had.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length, and we pass that length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// Sends one line to syslog(3) at `priority`, under the host program's own ident and facility.
pub fn syslog(priority: libc::c_int, text: &CStr) {
    // SAFETY: a constant "%s" format with one NUL-terminated argument that lives across the call.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
}

/// The raw answer of `getpwnam_r`/`getpwuid_r` for one buffer size.
pub enum PasswdLookup<'b> {
    /// The buffer was too small.
    BufferTooSmall,
    /// The call failed with this errno.
    Failed(i32),
    /// No such entry.
    Missing,
    /// The entry: name, uid, gid, home, GECOS (borrowing the buffer).
    Found {
        name: &'b CStr,
        uid: u32,
        gid: u32,
        home: &'b CStr,
        gecos: &'b CStr,
    },
}

/// Which entry to look up.
pub enum PasswdKey<'a> {
    Name(&'a CStr),
    Uid(u32),
}

/// One call of `getpwnam_r` or `getpwuid_r` into `buf`.
pub fn getpw<'b>(key: &PasswdKey<'_>, buf: &'b mut [libc::c_char]) -> PasswdLookup<'b> {
    // SAFETY: passwd is a plain C struct of integers and pointers; all-zero is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = match key {
        // SAFETY: name is NUL-terminated, pwd and result point to live locals, and buf is
        // writable for the length passed.
        PasswdKey::Name(name) => unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        },
        // SAFETY: as above.
        PasswdKey::Uid(uid) => unsafe {
            libc::getpwuid_r(*uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
        },
    };
    if rc == libc::ERANGE {
        return PasswdLookup::BufferTooSmall;
    }
    if rc != 0 {
        return PasswdLookup::Failed(rc);
    }
    if result.is_null() {
        return PasswdLookup::Missing;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside buf, which the
    // returned borrow keeps alive.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    // SAFETY: as for pw_name.
    let home = unsafe { CStr::from_ptr(pwd.pw_dir) };
    // NSS modules may leave pw_gecos NULL.
    let gecos = match pwd.pw_gecos.is_null() {
        true => c"",
        // SAFETY: as for pw_name.
        false => unsafe { CStr::from_ptr(pwd.pw_gecos) },
    };
    PasswdLookup::Found {
        name,
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home,
        gecos,
    }
}

/// Open flags for callers that open files themselves (with `OpenOptionsExt::custom_flags`).
pub mod open_flags {
    pub use libc::{O_CLOEXEC, O_NOFOLLOW, O_NONBLOCK};
}

/// Turns the terminal's echo off (`false`) or back on, returning whether it was on; `None` when
/// `file` is not a terminal.
pub fn set_echo(file: &File, on: bool) -> Option<bool> {
    let fd = file.as_raw_fd();
    let mut settings = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: settings is writable memory of the right type; tcgetattr fills it or fails.
    if unsafe { libc::tcgetattr(fd, settings.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: tcgetattr succeeded, so it initialised settings.
    let mut settings = unsafe { settings.assume_init() };
    let was_on = settings.c_lflag & libc::ECHO != 0;
    if on {
        settings.c_lflag |= libc::ECHO;
    } else {
        settings.c_lflag &= !libc::ECHO;
    }
    // SAFETY: settings is a valid termios read from this descriptor, which is open.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &settings) } != 0 {
        return None;
    }
    Some(was_on)
}

/// The process id, user id and group id of the peer of a connected unix socket, as the kernel
/// recorded them when the peer connected (`SO_PEERCRED`): the peer cannot forge them.
pub fn peer_credentials(socket: &impl AsFd) -> io::Result<(i32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the descriptor is open for the lifetime of `socket`; cred and len point to live
    // locals, and len holds the size of cred, which getsockopt writes at most.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_PEERCRED returned a short answer",
        ));
    }
    Ok((cred.pid, cred.uid, cred.gid))
}

/// The first descriptor systemd passes to a socket-activated service (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: i32 = 3;

/// Takes the listening unix socket that systemd passed as descriptor 3. Call it only after
/// checking `LISTEN_PID` and `LISTEN_FDS` (sd_listen_fds(3)): they say the descriptor is ours.
/// It can be taken once per process; later calls fail, so that no two owners close it. Errs
/// unless descriptor 3 is a socket; it is made close-on-exec.
pub fn take_listen_socket() -> io::Result<std::os::unix::net::UnixListener> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the systemd socket was taken already",
        ));
    }
    let fd = LISTEN_FDS_START;
    // SAFETY: stat is a plain C struct of integers; all-zero is a valid value.
    let mut meta: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: meta is a live local of the type fstat fills; a closed fd makes it fail (EBADF).
    if unsafe { libc::fstat(fd, &mut meta) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if meta.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptor 3 from systemd is not a socket",
        ));
    }
    // SAFETY: fcntl on an open descriptor with integer arguments only.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: descriptor 3 is open (fstat succeeded) and systemd handed it to this process
    // (the caller checked LISTEN_PID); nothing else in the process owns it, and the flag above
    // makes this the only place that ever wraps it, so exactly one owner will close it.
    Ok(unsafe { <std::os::unix::net::UnixListener as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Error numbers callers match on (`io::Error::raw_os_error`).
pub mod errno {
    pub use libc::{EMFILE, ENFILE};
}
