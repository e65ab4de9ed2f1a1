//! Which PAM files are live, and which of their lines load the module: the one rule that
//! `twofold check`, `twofold pam-users` and, through `pam-users`, the Debian prerm, the RPM
//! `%preun` and packaging/check.sh follow.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where libpam looks for service files: the admin's, then the distribution's (Linux-PAM's
/// vendor directory).
pub const PAM_DIRS: &[&str] = &["/etc/pam.d", "/usr/lib/pam.d"];

/// The files pam-auth-update writes from its profiles (Debian).
pub const PROFILE_FILES: &[&str] = &[
    "common-auth",
    "common-account",
    "common-password",
    "common-session",
    "common-session-noninteractive",
];

/// Whether libpam would read this file name as a service: it reads only the file named after
/// the service, so the backups that editors and package managers leave beside it are not stacks.
pub fn is_live_service(name: &str) -> bool {
    const BACKUPS: &[&str] = &[
        ".dpkg-", "~", ".pam-old", ".bak", ".old", ".save", ".orig", ".ucf-", ".rpmnew",
        ".rpmsave", ".rpmorig",
    ];
    !BACKUPS.iter().any(|b| name.contains(b))
}

/// A line that loads the module: where it is and what it says.
#[derive(Debug, PartialEq, Eq)]
pub struct ModuleLine {
    pub file: PathBuf,
    pub number: usize,
    pub text: String,
}

impl fmt::Display for ModuleLine {
    /// `file:line:text`, as `grep -Hn` prints it (and as the maintainer scripts always did).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.number, self.text)
    }
}

/// Every line that loads pam_twofold.so in the live service files of `dirs`, and in the files
/// they include (`@include`, `include`, `substack`; by name in the same directories, or by
/// absolute path), each file read once. With `skip_profile`, pam-auth-update's common-* files
/// are neither scanned nor followed: the Debian prerm asks pam-auth-update about those.
/// Unreadable files are errors: a removal guard must not pass on a file it could not read.
pub fn module_lines(dirs: &[PathBuf], skip_profile: bool) -> Result<Vec<ModuleLine>, String> {
    let mut scan = Scan {
        dirs,
        skip_profile,
        seen: BTreeSet::new(),
        found: Vec::new(),
    };
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: cannot list: {e}", dir.display())),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| is_live_service(name))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            if path.is_file() && !scan.skipped(&path) {
                scan.file(&path)?;
            }
        }
    }
    Ok(scan.found)
}

struct Scan<'a> {
    dirs: &'a [PathBuf],
    skip_profile: bool,
    seen: BTreeSet<PathBuf>,
    found: Vec<ModuleLine>,
}

impl Scan<'_> {
    fn skipped(&self, path: &Path) -> bool {
        self.skip_profile
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| PROFILE_FILES.contains(&n))
    }

    fn file(&mut self, path: &Path) -> Result<(), String> {
        if !self.seen.insert(path.to_path_buf()) {
            return Ok(());
        }
        let bytes =
            std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let mut includes = Vec::new();
        for (index, line) in text.lines().enumerate() {
            match parse_line(line) {
                Some(Loads::Module(module)) if is_twofold(module) => self.found.push(ModuleLine {
                    file: path.to_path_buf(),
                    number: index + 1,
                    text: line.to_string(),
                }),
                Some(Loads::Include(name)) => includes.push(name.to_string()),
                _ => {}
            }
        }
        for name in includes {
            if let Some(included) = self.resolve(&name) {
                if !self.skipped(&included) {
                    self.file(&included)?;
                }
            }
        }
        Ok(())
    }

    /// An included name, as libpam finds it: an absolute path as it is, a bare name in the PAM
    /// directories in order. A missing file loads nothing.
    fn resolve(&self, name: &str) -> Option<PathBuf> {
        if name.starts_with('/') {
            let path = PathBuf::from(name);
            return path.is_file().then_some(path);
        }
        self.dirs
            .iter()
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    }
}

enum Loads<'a> {
    Module(&'a str),
    Include(&'a str),
}

/// What a service-file line loads: a module, or another file. `None` for comments, blank lines
/// and lines libpam cannot parse.
fn parse_line(line: &str) -> Option<Loads<'_>> {
    let line = line.split('#').next().unwrap_or("");
    let mut rest = line.trim_start();
    if let Some(name) = rest.strip_prefix("@include") {
        return name.split_whitespace().next().map(Loads::Include);
    }
    let kind = next_token(&mut rest)?;
    let kind = kind.strip_prefix('-').unwrap_or(kind);
    if !["auth", "account", "password", "session"].contains(&kind) {
        return None;
    }
    // A bracketed control may hold spaces, and the module may follow the bracket directly.
    rest = rest.trim_start();
    let control = if rest.starts_with('[') {
        let end = rest.find(']')?;
        let control = &rest[..=end];
        rest = &rest[end + 1..];
        control
    } else {
        next_token(&mut rest)?
    };
    let target = next_token(&mut rest)?;
    Some(match control {
        "include" | "substack" => Loads::Include(target),
        _ => Loads::Module(target),
    })
}

fn next_token<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let trimmed = rest.trim_start();
    let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
    let (token, after) = trimmed.split_at(end);
    *rest = after;
    (!token.is_empty()).then_some(token)
}

/// The module by bare name or by any path to it (not a file that merely ends in the name, such
/// as libpam_twofold.so).
fn is_twofold(module: &str) -> bool {
    module.rsplit('/').next() == Some("pam_twofold.so")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(line: &str) -> Option<(&'static str, String)> {
        parse_line(line).map(|l| match l {
            Loads::Module(m) => ("module", m.to_string()),
            Loads::Include(i) => ("include", i.to_string()),
        })
    }

    #[test]
    fn lines_are_read_as_libpam_reads_them() {
        let module = |m: &str| Some(("module", m.to_string()));
        let include = |i: &str| Some(("include", i.to_string()));
        assert_eq!(
            loads("auth required pam_twofold.so"),
            module("pam_twofold.so")
        );
        assert_eq!(
            loads("  -auth\toptional\t/lib/security/pam_twofold.so x=1"),
            module("/lib/security/pam_twofold.so")
        );
        assert_eq!(
            loads("auth [success=1 default=ignore]pam_twofold.so"),
            module("pam_twofold.so")
        );
        assert_eq!(
            loads("auth [success=1 default=ignore] pam_unix.so"),
            module("pam_unix.so")
        );
        assert_eq!(loads("@include common-auth"), include("common-auth"));
        assert_eq!(
            loads("auth include /etc/twofold/pam"),
            include("/etc/twofold/pam")
        );
        assert_eq!(
            loads("auth substack password-auth"),
            include("password-auth")
        );
        assert_eq!(loads("# auth required pam_twofold.so"), None);
        assert_eq!(loads("auth required # pam_twofold.so"), None);
        assert_eq!(loads("banana required pam_twofold.so"), None);
        assert_eq!(loads(""), None);
        assert!(!is_twofold("/opt/bench/libpam_twofold.so"));
        assert!(is_twofold(
            "/usr/lib/x86_64-linux-gnu/security/pam_twofold.so"
        ));
    }

    #[test]
    fn backups_are_not_services() {
        for name in [
            "sshd.dpkg-old",
            "sshd~",
            "sshd.bak",
            "sshd.rpmsave",
            "common-auth.pam-old",
        ] {
            assert!(!is_live_service(name), "{name}");
        }
        for name in ["sshd", "common-auth", "sudo-i"] {
            assert!(is_live_service(name), "{name}");
        }
    }
}
