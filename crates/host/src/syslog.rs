//! Syslog (authpriv) lines for decisions and defects. Logging is best effort: no syslog socket,
//! as in containers, never changes an outcome. Nothing here ever receives a secret or a code.
//!
//! Lines go through the C library's syslog(3), as Linux-PAM's own modules do: the host program
//! (sshd, sudo) keeps its name and pid on the line, and the module never calls `openlog`, which
//! would change how the host program's own lines are labelled. (The `syslog` crate did the same
//! job with its own socket but cost 65 KB of the module's 1 MB budget, mostly for `time`.)

use std::ffi::CString;

use twofold_core::text::escape;

/// How serious a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Error,
    Info,
    Notice,
    Warning,
}

/// Sends one line to syslog as `ident: message`, escaping control characters so that a hostile
/// rhost or user name cannot forge extra lines.
pub fn line(ident: &str, level: Level, message: &str) {
    let priority = libc::LOG_AUTHPRIV
        | match level {
            Level::Error => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        };
    // Escaping leaves no NUL, so this cannot fail; if it somehow did, the line is dropped.
    let Ok(text) = CString::new(format!("{}: {}", escape(ident), escape(message))) else {
        return;
    };
    crate::sys::syslog(priority, &text);
}

#[cfg(test)]
mod tests {
    #[test]
    fn logging_without_a_socket_is_harmless() {
        super::line("twofold-test", super::Level::Info, "hello");
    }
}
