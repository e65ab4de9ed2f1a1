//! What the commands share: the failure type, whom a command acts for, the records directory,
//! showing backup codes, reading a line, and the audit line.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use twofold_core::backup;
use twofold_core::config::{Config, RecordsLocation};
use twofold_core::enroll::EnrollError;
use twofold_core::text::LogLine;
use twofold_core::user::{Account, UserName};
use twofold_host::any_store::AnyStore;
use twofold_host::file_store::as_user;
use twofold_host::passwd;
use twofold_host::sys::{self, open_flags};
use twofold_host::syslog::{self, Level};

/// A failure to report: one line on stderr, exit code 1.
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

/// The user to act on: `named`, or the invoking user. Only root may name someone else.
pub(crate) fn target_user(named: Option<&str>) -> Result<UserName, Failure> {
    let uid = sys::getuid();
    let me =
        passwd::by_uid(uid)?.ok_or_else(|| Failure(format!("uid {uid} has no passwd entry")))?;
    let Some(named) = named else {
        return Ok(me.name);
    };
    let user = UserName::parse(named)
        .ok_or_else(|| Failure(format!("`{named}` is not a valid user name")))?;
    if uid != 0 && user != me.name {
        return Err(Failure(format!(
            "only root may act for another user (you are {})",
            me.name
        )));
    }
    Ok(user)
}

/// Makes sure the records directory can take a write: creates a missing central directory (as
/// root) or missing directories under a home (as the user, mode 0700), and turns a permission
/// error into advice.
pub(crate) fn prepare_store(
    config: &Config,
    store: &AnyStore,
    user: &UserName,
) -> Result<(), Failure> {
    // Through twofoldd, the daemon's backend is its business.
    let Some(store) = store.files() else {
        return Ok(());
    };
    // The store's own answer: it keys records by the account's canonical name.
    let (record, _) = store.paths(user)?;
    let dir = record.parent().unwrap_or(Path::new("/"));
    if config.records.location() == RecordsLocation::Home {
        return prepare_home_directory(dir, user);
    }
    let euid = sys::geteuid();
    if euid == 0 && !dir.exists() {
        std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    }
    let writable = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map(|c| sys::may_write(&c))
        .unwrap_or(false);
    if !writable {
        return Err(Failure(format!(
            "cannot write {}: records there are root's; ask an administrator to run `sudo twofold enroll --user {user}`",
            dir.display()
        )));
    }
    Ok(())
}

/// Creates what is missing of a home records directory (`~/.config` on a fresh account, say),
/// with the user's file identity, so that root creates nothing the user could not, and nothing
/// outside what the user may write. The store then checks the directory as it always does.
fn prepare_home_directory(dir: &Path, user: &UserName) -> Result<(), Failure> {
    if dir.exists() {
        return Ok(());
    }
    let create = || {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    };
    let created = match acting_for(user)? {
        Some(account) => as_user(&account, create)?,
        None => create(),
    };
    created.map_err(|e| {
        Failure(format!(
            "{}: cannot create the records directory as {user}: {e}",
            dir.display()
        ))
    })
}

/// Shows new backup codes once and, if asked, writes them to a new private file. The file is
/// created only now that the codes exist: nothing is ever created, or removed, on a failure.
/// The codes file, if asked for, is created with `user`'s file identity when root acts for them,
/// since it lands where they may control the directory.
pub(crate) fn show_codes(
    codes: &[Zeroizing<String>],
    path: Option<&Path>,
    user: &UserName,
) -> Result<(), Failure> {
    if codes.is_empty() {
        println!("No backup codes (backup_codes.count is 0).");
        return Ok(());
    }
    let mut text = Zeroizing::new(String::new());
    for code in codes {
        text.push_str(&backup::display(code));
        text.push('\n');
    }
    println!("\nBackup codes: each works once, when you do not have your phone.");
    println!("Store them somewhere safe now; they will not be shown again.\n");
    print!("{}", text.as_str());
    if let Some(path) = path {
        let create = || create_private_file(path);
        let created = match acting_for(user) {
            Ok(Some(account)) => as_user(&account, create).unwrap_or_else(|e| Err(e.into())),
            Ok(None) => create(),
            Err(e) => Err(e),
        };
        let written = created.and_then(|mut file| {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| Failure(format!("{}: cannot write: {e}", path.display())))
        });
        if let Err(Failure(why)) = written {
            return Err(Failure(format!(
                "{why}; the codes shown above are saved and are the only copy"
            )));
        }
        println!("\nAlso written to {}", path.display());
    }
    Ok(())
}

/// The account whose file identity root takes on to open `user`'s files, so that a path the user
/// controls (a link, a directory of theirs) gives root no more than the user has. `None` when
/// not root, or acting for root.
pub(crate) fn acting_for(user: &UserName) -> Result<Option<Account>, Failure> {
    if sys::geteuid() != 0 {
        return Ok(None);
    }
    Ok(passwd::by_name(user)?.filter(|a| a.uid != 0))
}

/// Fails early, before anything changes, if the codes file would not be new.
pub(crate) fn refuse_existing(path: &Path) -> Result<(), Failure> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Err(Failure(format!(
            "{}: already exists; twofold never overwrites a codes file",
            path.display()
        ))),
        Err(_) => Ok(()),
    }
}

/// Creates a new file only its owner can read; refuses to overwrite or follow a link.
pub(crate) fn create_private_file(path: &Path) -> Result<File, Failure> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(open_flags::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Failure(format!("{}: cannot create: {e}", path.display())))
}

pub(crate) fn ask_line(prompt: &str) -> Result<Zeroizing<String>, Failure> {
    let mut stderr = io::stderr();
    if io::stdin().is_terminal() {
        write!(stderr, "{prompt}")?;
        stderr.flush()?;
    }
    let mut line = Zeroizing::new(String::new());
    if io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(Failure("no code given (end of input)".into()));
    }
    Ok(Zeroizing::new(line.trim().to_string()))
}

/// Reads a secret (a security key's PIN) from the terminal with echo off, or a line of stdin
/// when there is no terminal.
pub(crate) fn ask_secret(prompt: &str) -> Result<Zeroizing<String>, Failure> {
    let Ok(tty) = OpenOptions::new().read(true).write(true).open("/dev/tty") else {
        return ask_line(prompt);
    };
    write!(&tty, "{prompt}")?;
    let echoed = sys::set_echo(&tty, false);
    let mut line = Zeroizing::new(String::new());
    let read = io::BufReader::new(&tty).read_line(&mut line);
    if echoed == Some(true) {
        sys::set_echo(&tty, true);
    }
    writeln!(&tty)?;
    read?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

pub(crate) fn audit(user: &UserName, action: &str) {
    let by = sys::getuid();
    let line = LogLine::new()
        .token("user", user.as_str())
        .text("action", action)
        .token("by_uid", &by.to_string());
    syslog::line("twofold", Level::Notice, line.as_str());
}

pub(crate) fn audit_store(marker: &Path) {
    let line = LogLine::new()
        .text("action", "confirmed the records store")
        .text("marker", &marker.display().to_string())
        .token("by_uid", &sys::getuid().to_string());
    syslog::line("twofold", Level::Notice, line.as_str());
}

/// An enrollment error, with the flag that overrides it where there is one.
pub(crate) fn enroll_failure(e: EnrollError) -> Failure {
    match e {
        EnrollError::AlreadyEnrolled => {
            Failure("already enrolled; use --force to replace the enrollment".into())
        }
        e => Failure(e.to_string()),
    }
}
