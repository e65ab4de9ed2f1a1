//! Who is at the other end of a unix socket, from the kernel's `SO_PEERCRED`: the daemon tells
//! its callers apart by uid, and its clients check that the daemon is root's (or its own
//! account's). The credentials are those of the process when it connected (or, for the
//! listening side, when it called `listen`); a peer cannot choose them.

use std::io;
use std::os::unix::net::UnixStream;

use crate::sys;

/// The kernel's record of a socket's peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The process, user and group at the other end of `stream`.
pub fn peer(stream: &UnixStream) -> io::Result<Peer> {
    let (pid, uid, gid) = sys::peer_credentials(stream)?;
    Ok(Peer { pid, uid, gid })
}

/// The uid at the other end of `stream`.
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    Ok(peer(stream)?.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_of_a_socket_pair_are_this_process() {
        let (a, b) = UnixStream::pair().unwrap();
        let me = peer(&a).unwrap();
        assert_eq!(me.uid, sys::geteuid());
        assert_eq!(me.pid, std::process::id() as i32);
        assert_eq!(peer_uid(&b).unwrap(), me.uid);
    }
}
