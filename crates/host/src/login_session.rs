//! Whether the process runs in a remote login session, as systemd-logind recorded it. `sudo` and
//! `su` inside an SSH session set no `PAM_RHOST`, so the remote host alone cannot tell that the
//! person is not at this machine; the login session can. Both sources are root's: the audit
//! session id (`/proc/self/sessionid`, set once by pam_loginuid at login, fixed for the session's
//! processes) and logind's record of that session.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// `Some(true)` for a session logind marks remote (sshd's), `Some(false)` for a local one, `None`
/// when the process has no session or logind keeps no record of it (no systemd, a container).
pub fn is_remote() -> Option<bool> {
    let id = fs::read_to_string("/proc/self/sessionid").ok()?;
    let id: u32 = id.trim().parse().ok().filter(|&id| id != u32::MAX)?;
    let path = format!("/run/systemd/sessions/{id}");
    let meta = fs::symlink_metadata(&path).ok()?;
    // Only logind's own file counts.
    if !meta.is_file() || meta.uid() != 0 {
        return None;
    }
    Some(remote_in(&fs::read_to_string(&path).ok()?))
}

/// Whether a logind session file (`KEY=value` lines) says `REMOTE=1`.
pub fn remote_in(session: &str) -> bool {
    session.lines().any(|line| line.trim() == "REMOTE=1")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_is_remote_only_when_logind_says_so() {
        let ssh = "# This is private data. Do not parse.\nUID=1000\nUSER=alice\nACTIVE=1\nREMOTE=1\nSERVICE=sshd\nREMOTE_HOST=203.0.113.9\n";
        let seat = "UID=1000\nUSER=alice\nACTIVE=1\nIS_DISPLAY=1\nSTATE=active\nREMOTE=0\nTYPE=wayland\nSEAT=seat0\n";
        assert!(super::remote_in(ssh));
        assert!(!super::remote_in(seat));
        assert!(!super::remote_in("UID=1000\n"));
    }
}
