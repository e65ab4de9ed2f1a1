//! Text rules written once: how a typed code is cleaned, how a key is grouped for reading, and how
//! untrusted text is made safe for a log line or a one-line message.

use std::borrow::Cow;

use zeroize::Zeroizing;

/// Whether people put `c` between the digits of a code they type (`123 456`, `abcde-fghij`).
pub fn is_code_separator(c: char) -> bool {
    matches!(c, ' ' | '-')
}

/// A typed code without the spaces and dashes people add.
pub fn without_separators(code: &str) -> Zeroizing<String> {
    let mut kept = Zeroizing::new(String::with_capacity(code.len()));
    kept.extend(code.chars().filter(|&c| !is_code_separator(c)));
    kept
}

/// Appends `text` to `out` in groups of four separated by spaces (`ABCD EFGH ...`), easier to read
/// off a screen and type. `out` should be sized by the caller when `text` is a secret, so that no
/// reallocation leaves an unwiped copy behind.
pub fn push_in_fours(out: &mut String, text: &str) {
    for (i, c) in text.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
}

/// A value for a `key=value` log field: space, `=`, `"`, `\` and `%` are percent-encoded, so that
/// a hostile user name, rhost or error text can never hold something that reads as another field,
/// even to an unanchored pattern such as fail2ban's `rhost=<HOST>`. Control characters are
/// encoded too.
pub fn field(value: &str) -> Cow<'_, str> {
    const SPECIAL: &[char] = &[' ', '=', '"', '\\', '%'];
    let special = |c: char| c.is_whitespace() || c.is_control() || SPECIAL.contains(&c);
    if value.is_empty() {
        return Cow::Borrowed("(empty)");
    }
    if !value.contains(special) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if special(c) {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One `key=value ...` log line, the only way the doors build one. Tokens (names, hosts, reasons)
/// go through [`field`]; free text (an error that may quote a file, a path) is double-quoted with
/// `"` and `\` escaped and control characters as `\xNN`, so neither can pose as another field or
/// start a new line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogLine(String);

impl LogLine {
    pub fn new() -> LogLine {
        LogLine::default()
    }

    /// Adds `key=value`, `value` encoded as a token.
    pub fn token(mut self, key: &str, value: &str) -> LogLine {
        self.separate();
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&field(value));
        self
    }

    /// Adds `key="text"`, `text` quoted and escaped.
    pub fn text(mut self, key: &str, text: &str) -> LogLine {
        self.separate();
        self.0.push_str(key);
        self.0.push_str("=\"");
        for c in text.chars() {
            match c {
                '"' | '\\' => {
                    self.0.push('\\');
                    self.0.push(c);
                }
                c if c.is_control() => self.0.push_str(&format!("\\x{:02x}", u32::from(c))),
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    /// Appends every field of `other`.
    pub fn and(mut self, other: &LogLine) -> LogLine {
        if !other.0.is_empty() {
            self.separate();
            self.0.push_str(&other.0);
        }
        self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn separate(&mut self) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
    }
}

/// Replaces control characters with `\xNN`, so that text cannot start a new log line or drive a
/// terminal.
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

/// Makes text taken from a file safe for a one-line message: trailing space is dropped and
/// control characters (newlines, terminal escapes) are escaped Rust-style (`\n`, `\u{1b}`).
pub fn one_line(text: &str) -> String {
    text.trim_end()
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A Unix time as its UTC date, `2026-12-04` (the proleptic Gregorian calendar).
pub fn utc_date(time: u64) -> String {
    // Days since 1970-01-01, shifted to an era starting on 0000-03-01, then to a civil date.
    let days = (time / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let of_era = days.rem_euclid(146_097);
    let year_of_era = (of_era - of_era / 1460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * of_year + 2) / 153;
    let day = of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("a\nb\u{1b}"), "a\\x0ab\\x1b");
    }

    #[test]
    fn field_values_cannot_pose_as_other_fields() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("a rhost=1.2.3.4"), "a%20rhost%3D1.2.3.4");
        assert_eq!(field("q\"x\\%"), "q%22x%5C%25");
        assert_eq!(field(""), "(empty)");
        assert_eq!(field("a\nb"), "a%0Ab");
    }

    #[test]
    fn separators_are_dropped_from_codes() {
        assert_eq!(&*without_separators("123 456"), "123456");
        assert_eq!(&*without_separators("abcde-fghij"), "abcdefghij");
    }

    #[test]
    fn keys_are_grouped_in_fours() {
        let mut out = String::new();
        push_in_fours(&mut out, "ABCDEFGHIJ");
        assert_eq!(out, "ABCD EFGH IJ");
    }

    #[test]
    fn one_line_escapes_newlines() {
        assert_eq!(one_line("a\nb \n"), "a\\nb");
    }

    #[test]
    fn a_log_line_keeps_hostile_text_inside_its_own_field() {
        let line = LogLine::new()
            .token("user", "eve outcome=success")
            .text("error", "bad \"x\" in /home/a b\\c\n outcome=success");
        assert_eq!(
            line.as_str(),
            "user=eve%20outcome%3Dsuccess error=\"bad \\\"x\\\" in /home/a b\\\\c\\x0a outcome=success\""
        );
    }

    #[test]
    fn unix_times_become_utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_796_342_399), "2026-12-03");
        assert_eq!(utc_date(4_102_444_800), "2100-01-01");
    }
}
