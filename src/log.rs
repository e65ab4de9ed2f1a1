//! Syslog (authpriv) lines for decisions and defects. Logging is best effort: no syslog socket,
//! as in containers, never changes an outcome. Nothing here ever receives a secret or a code.
//!
//! Lines go through the C library's syslog(3), as Linux-PAM's own modules do: the host program
//! (sshd, sudo) keeps its name and pid on the line, and the module never calls `openlog`, which
//! would change how the host program's own lines are labelled. (The `syslog` crate did the same
//! job with its own socket but cost 65 KB of the module's 1 MB budget, mostly for `time`.)

use std::ffi::CString;

/// How serious a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Notice,
    Info,
    Debug,
}

/// Sends one line to syslog as `ident: message`, escaping control characters so that a hostile
/// rhost or user name cannot forge extra lines.
pub fn line(ident: &str, level: Level, message: &str) {
    let priority = libc::LOG_AUTHPRIV
        | match level {
            Level::Error => libc::LOG_ERR,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        };
    // Escaping leaves no NUL, so this cannot fail; if it somehow did, the line is dropped.
    let Ok(text) = CString::new(format!("{}: {}", escape(ident), escape(message))) else {
        return;
    };
    // SAFETY: the format is a literal with one `%s`, matched by one NUL-terminated string that
    // lives across the call; syslog(3) is thread-safe.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
}

/// A value for a `key=value` field: space, `=`, `"`, `\` and `%` are percent-encoded, so that a
/// hostile user name or rhost can never hold something that reads as another field, even to an
/// unanchored pattern such as fail2ban's `rhost=<HOST>`.
pub fn field(value: &str) -> std::borrow::Cow<'_, str> {
    const SPECIAL: &[char] = &[' ', '=', '"', '\\', '%'];
    if value.is_empty() {
        return std::borrow::Cow::Borrowed("(empty)");
    }
    if !value.contains(|c: char| c.is_whitespace() || SPECIAL.contains(&c)) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if c.is_whitespace() || SPECIAL.contains(&c) {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Replaces control characters with `\xNN`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::escape("a\nb\u{1b}"), "a\\x0ab\\x1b");
    }

    #[test]
    fn field_values_cannot_pose_as_other_fields() {
        assert_eq!(super::field("alice"), "alice");
        assert_eq!(super::field("a rhost=1.2.3.4"), "a%20rhost%3D1.2.3.4");
        assert_eq!(super::field("q\"x\\%"), "q%22x%5C%25");
        assert_eq!(super::field(""), "(empty)");
    }

    #[test]
    fn logging_without_a_socket_is_harmless() {
        super::line("twofold-test", super::Level::Info, "hello");
    }
}
