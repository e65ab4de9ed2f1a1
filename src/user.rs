//! User names as typed values, and lookups in the passwd database.

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
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

impl Account {
    /// Looks `name` up in the passwd database; `Ok(None)` if there is no such user.
    pub fn by_name(name: &UserName) -> std::io::Result<Option<Account>> {
        let c_name = CString::new(name.as_str()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        lookup(|pwd, buf, result| {
            // SAFETY: every pointer is valid for the call: c_name is NUL-terminated, pwd and
            // result point to live locals, and buf is writable for the length passed.
            unsafe { libc::getpwnam_r(c_name.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), result) }
        })
    }

    /// Looks a uid up in the passwd database.
    pub fn by_uid(uid: u32) -> std::io::Result<Option<Account>> {
        lookup(|pwd, buf, result| {
            // SAFETY: as in `by_name`: pwd and result point to live locals and buf is writable for
            // the length passed.
            unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), result) }
        })
    }
}

fn lookup(
    call: impl Fn(*mut libc::passwd, &mut [libc::c_char], *mut *mut libc::passwd) -> libc::c_int,
) -> std::io::Result<Option<Account>> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: passwd is a plain C struct of integers and pointers; all-zero is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&mut pwd, &mut buf, &mut result);
        if rc == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: on success pw_name and pw_dir point to NUL-terminated strings inside buf, which
        // is alive until the end of this iteration.
        let (name, home) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
        // An account whose own name we cannot use is an error, not "no such user".
        let Some(name) = name.to_str().ok().and_then(UserName::parse) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the account's name is not usable in a path",
            ));
        };
        return Ok(Some(Account {
            name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home: PathBuf::from(std::ffi::OsStr::from_bytes(home.to_bytes())),
        }));
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

    #[test]
    fn root_is_in_passwd_and_a_stranger_is_not() {
        let root = Account::by_uid(0).unwrap().unwrap();
        assert_eq!(root.name.as_str(), "root");
        assert_eq!(Account::by_name(&root.name).unwrap().unwrap().uid, 0);
        let stranger = UserName::parse("twofold-no-such-user").unwrap();
        assert_eq!(Account::by_name(&stranger).unwrap(), None);
    }
}
