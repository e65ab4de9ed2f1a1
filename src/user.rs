//! User names as typed values, and the passwd entry the store needs (looked up by the host).

use std::fmt;
use std::path::PathBuf;

/// A login name that is safe to put into a file path and an otpauth label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserName(String);

/// A passwd entry: what the store needs to find and own a user's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: UserName,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl UserName {
    /// Accepts 1 to 256 bytes of printable characters without `/`, `:` or whitespace, not starting
    /// with `.` or `-`. Anything else could escape the records directory or confuse a label.
    pub fn parse(name: &str) -> Option<UserName> {
        let ok = !name.is_empty()
            && name.len() <= 256
            && !name.starts_with('.')
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| !c.is_control() && !c.is_whitespace() && c != '/' && c != ':');
        ok.then(|| UserName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in [
            "alice",
            "bob.smith",
            "svc_backup",
            "user@example.com",
            "DOMAIN\\joe",
            "a-b",
        ] {
            assert!(UserName::parse(name).is_some(), "{name}");
        }
    }

    #[test]
    fn names_that_could_escape_a_path_are_refused() {
        for name in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "-rf",
            "a b",
            "a:b",
            "a\nb",
            "a\0b",
        ] {
            assert!(UserName::parse(name).is_none(), "{name:?}");
        }
        assert!(UserName::parse(&"x".repeat(257)).is_none());
    }
}
