//! Lookups in the passwd database (through NSS, as every login program does).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use twofold_core::user::{Account, UserName};

use crate::sys::{self, PasswdKey, PasswdLookup};

/// Looks `name` up in the passwd database; `Ok(None)` if there is no such user.
pub fn by_name(name: &UserName) -> io::Result<Option<Account>> {
    let c_name = CString::new(name.as_str()).map_err(|_| io::ErrorKind::InvalidInput)?;
    lookup(&PasswdKey::Name(&c_name))
}

/// Looks a uid up in the passwd database.
pub fn by_uid(uid: u32) -> io::Result<Option<Account>> {
    lookup(&PasswdKey::Uid(uid))
}

/// The full name of `name` (the first field of its GECOS), if it has one: what a web app may
/// show. Control characters are refused, as a header value must not carry them.
pub fn full_name(name: &UserName) -> io::Result<Option<String>> {
    let c_name = CString::new(name.as_str()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let found = entry(&PasswdKey::Name(&c_name))?;
    Ok(found.and_then(|(_, gecos)| {
        let first = gecos.split(',').next()?.trim();
        let usable = !first.is_empty() && !first.chars().any(char::is_control);
        usable.then(|| first.to_string())
    }))
}

fn lookup(key: &PasswdKey<'_>) -> io::Result<Option<Account>> {
    Ok(entry(key)?.map(|(account, _)| account))
}

/// The account, and its GECOS field as text (lossy: it is only ever shown).
fn entry(key: &PasswdKey<'_>) -> io::Result<Option<(Account, String)>> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        let (name, uid, gid, home, gecos) = match sys::getpw(key, &mut buf) {
            PasswdLookup::BufferTooSmall if size < 1 << 20 => {
                size *= 4;
                continue;
            }
            PasswdLookup::BufferTooSmall => return Err(io::Error::from_raw_os_error(libc::ERANGE)),
            PasswdLookup::Failed(errno) => return Err(io::Error::from_raw_os_error(errno)),
            PasswdLookup::Missing => return Ok(None),
            PasswdLookup::Found {
                name,
                uid,
                gid,
                home,
                gecos,
            } => (name, uid, gid, home, gecos),
        };
        // An account whose own name we cannot use is an error, not "no such user".
        let Some(name) = name.to_str().ok().and_then(UserName::parse) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the account's name is not usable in a path",
            ));
        };
        let account = Account {
            name,
            uid,
            gid,
            home: PathBuf::from(OsStr::from_bytes(home.to_bytes())),
        };
        return Ok(Some((account, gecos.to_string_lossy().into_owned())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_passwd_and_a_stranger_is_not() {
        let root = by_uid(0).unwrap().unwrap();
        assert_eq!(root.name.as_str(), "root");
        assert_eq!(by_name(&root.name).unwrap().unwrap().uid, 0);
        let stranger = UserName::parse("twofold-no-such-user").unwrap();
        assert_eq!(by_name(&stranger).unwrap(), None);
    }
}
