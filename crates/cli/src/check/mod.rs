//! `twofold check`: the config, the records directory, and the PAM stacks that load the module.

pub mod stack;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use twofold_core::config::StoreKind;
use twofold_core::config::{Config, ModuleArgs, RecordsLocation};
use twofold_core::store::Store;
use twofold_host::daemon_store::DaemonStore;
use twofold_host::store_marker::Anchor;
use twofold_host::{config_file, file_store, FileStore};
use twofold_proto::{Request, Response};

use crate::pam_files;
use crate::support::Failure;
use stack::Severity;

pub(crate) fn check(path: &Path, config: &Config, pam_dir: &Path) -> Result<(), Failure> {
    if path.exists() {
        println!("{}: ok", path.display());
    } else {
        println!("{}: absent, using the defaults", path.display());
    }
    println!(
        "records: {} ({})",
        config.records.as_str(),
        match config.records.location() {
            RecordsLocation::Central => "central",
            RecordsLocation::Home => "in each user's home",
        }
    );
    println!(
        "nullok: {}",
        if config.nullok {
            "on (unenrolled users skip the second factor)"
        } else {
            "off"
        }
    );
    println!(
        "enroll_on_login: {}",
        if config.enroll_on_login {
            "on (unenrolled users enroll at their next login)"
        } else {
            "off"
        }
    );
    let mut problems = check_pam_stacks(pam_dir, path, config);
    if config.store == StoreKind::Twofoldd {
        // The daemon holds the records: its answer is the check.
        let daemon = DaemonStore::new(config);
        match daemon.call(&Request::Status) {
            Ok(Response::Status { store, detail }) => println!(
                "store: twofoldd ({}): up, backend {store}: {detail}",
                daemon.socket().display()
            ),
            Ok(other) => {
                problems += 1;
                println!("store: twofoldd: unexpected answer {other:?}");
            }
            Err(e) => {
                problems += 1;
                println!("store: {e}; every login fails closed until it answers");
            }
        }
    } else {
        problems += check_store_confirmed(config);
    }
    if config.store == StoreKind::Files && config.records.location() == RecordsLocation::Central {
        let sample = config.records.path_for("user", None).unwrap_or_default();
        let dir = sample.parent().unwrap_or(Path::new("/"));
        // Central records are root's: the rule the module applies when it runs as root.
        match std::fs::metadata(dir) {
            Ok(meta) => {
                match file_store::records_directory_problem(&meta, 0) {
                    Some(why) => {
                        problems += 1;
                        println!("{}: unsafe: {why}", dir.display());
                    }
                    None => println!("{}: ok (root, {:04o})", dir.display(), meta.mode() & 0o7777),
                }
                if meta.is_dir() {
                    problems += check_records(config);
                }
            }
            Err(e) => {
                problems += 1;
                println!("{}: {e}", dir.display());
            }
        }
    }
    if problems == 0 {
        println!("no problems found");
        Ok(())
    } else {
        Err(Failure(format!("{problems} problem(s) found")))
    }
}

/// PAM services of screen lockers and other programs that check a password as the user, not
/// as root: with central records, the module there can read no record.
const SCREEN_LOCKERS: &[&str] = &[
    "cinnamon-screensaver",
    "gnome-screensaver",
    "i3lock",
    "kscreensaver",
    "light-locker",
    "mate-screensaver",
    "physlock",
    "swaylock",
    "vlock",
    "xfce4-screensaver",
    "xlock",
    "xscreensaver",
];

/// Reports every service file in `dir` that loads the module (directly or through an include),
/// and what is risky about it.
fn check_pam_stacks(dir: &Path, main_config: &Path, config: &Config) -> usize {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(e) => {
            println!("{}: cannot list: {e}", dir.display());
            return 1;
        }
    };
    files.sort();
    // Included names are relative to the PAM directory, as libpam reads them.
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    // Whether a line enrolls at login (its own argument, or the config it names), or why the
    // module there refuses every login.
    let enrolls = |args: &ModuleArgs| {
        let loaded;
        let named = match args.config_path() {
            path if path == main_config => config,
            path => {
                loaded = config_file::load(path)
                    .map_err(|e| format!("config {e}: the module refuses every login here"))?;
                &loaded
            }
        };
        args.enrolls_on_login(named)
            .map_err(|why| format!("module argument {why}: the module refuses every login here"))
    };
    let (mut uses, mut problems) = (0, 0);
    for file in files {
        let Some(service) = file.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !pam_files::is_live_service(service) || !file.is_file() {
            continue;
        }
        let text = match std::fs::read(&file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                println!("{}: cannot read: {e}", file.display());
                continue;
            }
        };
        for found in stack::twofold_lines(service, &text, &read, &enrolls) {
            uses += 1;
            let place = if found.file == service {
                format!("{}:{}", file.display(), found.line)
            } else {
                format!("{} (via {}:{})", file.display(), found.file, found.line)
            };
            let line = format!(
                "auth {} pam_twofold.so {}",
                found.control,
                found.args.join(" ")
            );
            let runs_as_user = config.records.location() == RecordsLocation::Central
                && SCREEN_LOCKERS.contains(&service);
            if found.findings.is_empty() && !runs_as_user {
                println!("{place}: ok ({})", line.trim_end());
            }
            if runs_as_user {
                println!(
                    "{place}: warning: {service} is a screen locker, which runs as the user and \
                     cannot read root's central records: the module there asks twofoldd to check \
                     the user's own code, and refuses every enrolled user while twofoldd is not \
                     running. Run twofoldd, or give the locker a stack without pam_twofold.so (it \
                     unlocks a session that already passed the second factor)"
                );
            }
            for (severity, finding) in &found.findings {
                match severity {
                    Severity::Problem => {
                        problems += 1;
                        println!("{place}: {finding}");
                    }
                    Severity::Warning => println!("{place}: warning: {finding}"),
                }
            }
        }
    }
    if uses == 0 {
        println!("{}: no service uses pam_twofold.so yet", dir.display());
    }
    problems
}

/// Whether the module can tell a user without a record from an unmounted store (see
/// `store_marker`): without the marker or the home index it refuses every such user.
fn check_store_confirmed(config: &Config) -> usize {
    let anchor = Anchor::for_config(config);
    match anchor.problem() {
        None => {
            println!("{}: ok (the store is confirmed)", anchor.marker().display());
            0
        }
        Some(why) => {
            println!(
                "store not confirmed: {why}; the module refuses every user without a record \
                 (PAM_AUTHINFO_UNAVAIL) until root runs `twofold confirm-store` with the store \
                 mounted"
            );
            1
        }
    }
}

/// Loads every record in a central directory, returning how many have defects.
fn check_records(config: &Config) -> usize {
    let store = FileStore::for_admin(config);
    let users = match store.list_users() {
        Ok(users) => users,
        Err(e) => {
            println!("{e}");
            return 1;
        }
    };
    let (mut checked, mut problems) = (0, 0);
    for user in users {
        checked += 1;
        if let Err(e) = store.load(&user) {
            problems += 1;
            println!("{e}");
        }
    }
    println!("records checked: {checked}, with problems: {problems}");
    problems
}
