//! Where the daemon's socket comes from: systemd's socket activation (sd_listen_fds(3)), or a
//! path the daemon binds itself.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

use twofold_host::sys;

/// The listening socket systemd passed, if this process was socket-activated. The variables are
/// removed either way, so that nothing the daemon starts believes they are meant for it.
pub fn from_systemd() -> Result<Option<UnixListener>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    // Called before any thread starts: changing the environment is safe then.
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let Some(pid) = pid else {
        return Ok(None);
    };
    // Variables meant for another process (a parent that was activated) are not ours.
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    match fds.as_deref().map(str::trim) {
        Some("1") => {}
        other => {
            return Err(format!(
                "systemd passed LISTEN_FDS={}, expected exactly one socket (check twofoldd.socket)",
                other.unwrap_or("(unset)")
            ))
        }
    }
    sys::take_listen_socket()
        .map(Some)
        .map_err(|e| format!("the socket from systemd: {e}"))
}

/// Binds `path` and opens it to every local user (what each may do is decided by uid). A stale
/// socket there is removed only if it is a socket of ours; the parent directory is made (0755)
/// if it is missing.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    let fail = |action: &str, e: io::Error| format!("{}: cannot {action}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        match fs::symlink_metadata(dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|e| fail("create its directory", e))?;
                // The umask may have narrowed it; clients must be able to reach the socket.
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                    .map_err(|e| fail("open its directory to clients", e))?;
            }
            Err(e) => return Err(fail("inspect its directory", e)),
        }
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() && meta.uid() == sys::geteuid() => {
            fs::remove_file(path).map_err(|e| fail("remove the stale socket", e))?;
        }
        Ok(meta) if meta.file_type().is_socket() => {
            return Err(format!(
                "{}: a socket of uid {} is there; refusing to replace it",
                path.display(),
                meta.uid()
            ))
        }
        Ok(_) => {
            return Err(format!(
                "{}: something other than a socket is there; refusing to replace it",
                path.display()
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("inspect", e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| fail("listen on", e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))
        .map_err(|e| fail("open the socket to clients", e))?;
    Ok(listener)
}
