//! Syslog (authpriv) lines for decisions and defects. Logging is best effort: no syslog socket,
//! as in containers, never changes an outcome. Nothing here ever receives a secret or a code.

use syslog::{Facility, Formatter3164};

/// How serious a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Notice,
    Info,
    Debug,
}

/// Sends one line to syslog as `ident`, escaping control characters so that a hostile rhost or
/// user name cannot forge extra lines.
pub fn line(ident: &str, level: Level, message: &str) {
    let formatter = Formatter3164 {
        facility: Facility::LOG_AUTHPRIV,
        hostname: None,
        process: ident.into(),
        pid: std::process::id(),
    };
    let Ok(mut logger) = syslog::unix(formatter) else {
        return;
    };
    let message = escape(message);
    let _ = match level {
        Level::Error => logger.err(message),
        Level::Notice => logger.notice(message),
        Level::Info => logger.info(message),
        Level::Debug => logger.debug(message),
    };
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
    fn logging_without_a_socket_is_harmless() {
        super::line("twofold-test", super::Level::Info, "hello");
    }
}
