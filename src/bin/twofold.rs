//! `twofold`: enroll users, manage backup codes, inspect and unlock, import, check the config.
//!
//! Exit codes: 0 success, 1 failure, 2 wrong usage. Every error is one line on stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use pam_twofold::auth::{Clock, SystemClock};
use pam_twofold::backup::{self, BackupCodes, Candidate, Cost};
use pam_twofold::config::{Config, ModuleArgs, RecordsLocation, DEFAULT_CONFIG_PATH};
use pam_twofold::enroll::{self, EnrollError, Pending};
use pam_twofold::import::GoogleAuthenticator;
use pam_twofold::log::{self, Level};
use pam_twofold::pamconf::{self, Severity};
use pam_twofold::qr::{self, QrStyle};
use pam_twofold::record::Record;
use pam_twofold::state::State;
use pam_twofold::store::{as_user, FileStore, Store};
use pam_twofold::totp::{Algorithm, Digits, Secret, TotpKey};
use pam_twofold::user::{Account, UserName};

#[derive(Parser)]
#[command(
    name = "twofold",
    version,
    about = "Two-factor authentication for Linux logins"
)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll a user: show a QR code, confirm one code, show the backup codes once.
    Enroll {
        /// The user to enroll (default: you; only root may name another).
        #[arg(long)]
        user: Option<String>,
        /// Use this base32 secret instead of a random one; `-` reads it from stdin (keeps it out
        /// of the process list).
        #[arg(long, value_name = "BASE32")]
        secret: Option<String>,
        /// The confirming code, instead of asking for it.
        #[arg(long)]
        code: Option<String>,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
        /// Also write the backup codes to this new file (mode 0600).
        #[arg(long, value_name = "PATH")]
        backup_codes_file: Option<PathBuf>,
        /// How to draw the QR code.
        #[arg(long, value_enum, default_value_t = QrArg::Utf8)]
        qr: QrArg,
    },
    /// Show what a user has enrolled.
    Status {
        #[arg(long)]
        user: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage backup codes.
    Codes {
        #[command(subcommand)]
        action: CodesAction,
    },
    /// Clear a user's failed-code lock.
    Unlock {
        #[arg(long)]
        user: String,
    },
    /// Remove a user's enrollment.
    Disable {
        #[arg(long)]
        user: String,
    },
    /// Import an enrollment from another module's file.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Validate the config, the records directory, and the PAM stacks that use the module.
    Check {
        /// Where the PAM service files are.
        #[arg(long, value_name = "DIR", default_value = "/etc/pam.d")]
        pam_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum CodesAction {
    /// Replace all backup codes with new ones and show them once.
    Regenerate {
        #[arg(long)]
        user: Option<String>,
        #[arg(long, value_name = "PATH")]
        backup_codes_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImportSource {
    /// A `~/.google_authenticator` file (TOTP mode).
    GoogleAuthenticator {
        file: PathBuf,
        #[arg(long)]
        user: Option<String>,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum QrArg {
    Utf8,
    Ansi,
    None,
}

/// A failure to report: one line on stderr, exit code 1.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("twofold: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let config = Config::load(&cli.config)?;
    let store = FileStore::new(config.records.clone());
    match cli.command {
        Command::Enroll {
            user,
            secret,
            code,
            force,
            backup_codes_file,
            qr,
        } => {
            let user = target_user(user.as_deref())?;
            // `--secret -` reads it from stdin, keeping it out of argv (and so out of `ps`).
            let secret = secret
                .map(|s| {
                    if s == "-" {
                        ask_line("Secret (base32): ")
                    } else {
                        Ok(Zeroizing::new(s))
                    }
                })
                .transpose()?
                .map(|s| Secret::from_base32(&s))
                .transpose()
                .map_err(|e| Failure(format!("--secret: {e}")))?;
            enroll_user(
                &config,
                &store,
                &user,
                secret,
                code,
                force,
                backup_codes_file,
                qr,
            )
        }
        Command::Status { user, json } => status(&store, &target_user(user.as_deref())?, json),
        Command::Codes {
            action:
                CodesAction::Regenerate {
                    user,
                    backup_codes_file,
                },
        } => {
            let user = target_user(user.as_deref())?;
            prepare_store(&config, &store, &user)?;
            backup_codes_file
                .as_deref()
                .map(refuse_existing)
                .transpose()?;
            let codes =
                enroll::regenerate_codes(&store, &user, usize::from(config.backup_codes.count))?;
            audit(&user, "regenerated backup codes");
            show_codes(&codes, backup_codes_file.as_deref())
        }
        Command::Unlock { user } => {
            let user = target_user(Some(&user))?;
            enroll::unlock(&store, &user)?;
            audit(&user, "unlocked");
            println!("{user}: unlocked");
            Ok(())
        }
        Command::Disable { user } => {
            let user = target_user(Some(&user))?;
            enroll::disable(&store, &user)?;
            audit(&user, "disabled");
            println!("{user}: two-factor enrollment removed");
            Ok(())
        }
        Command::Import {
            source: ImportSource::GoogleAuthenticator { file, user, force },
        } => {
            let user = target_user(user.as_deref())?;
            import_google_authenticator(&config, &store, &user, &file, force)
        }
        Command::Check { pam_dir } => check(&cli.config, &config, &pam_dir),
    }
}

#[allow(clippy::too_many_arguments)]
fn enroll_user(
    config: &Config,
    store: &FileStore,
    user: &UserName,
    secret: Option<Secret>,
    code: Option<String>,
    force: bool,
    backup_codes_file: Option<PathBuf>,
    qr: QrArg,
) -> Result<(), Failure> {
    prepare_store(config, store, user)?;
    if !force && store.load(user)?.is_some() {
        return Err(EnrollError::AlreadyEnrolled.into());
    }
    backup_codes_file
        .as_deref()
        .map(refuse_existing)
        .transpose()?;
    let pending = Pending::new(config, secret)?;
    let uri = pending.uri(config, user);
    let mut out = io::stdout().lock();
    writeln!(out, "Scan this QR code with your authenticator app:")?;
    match qr {
        QrArg::Utf8 => out.write_all(qr::render(&uri, QrStyle::Utf8)?.as_bytes())?,
        QrArg::Ansi => out.write_all(qr::render(&uri, QrStyle::Ansi)?.as_bytes())?,
        QrArg::None => {}
    }
    writeln!(out, "{}", uri.as_str())?;
    writeln!(
        out,
        "Or type this key into the app: {}",
        group_secret(&pending.key.secret)
    )?;
    out.flush()?;
    drop(out);

    let codes = confirm_loop(config, store, user, pending, code, force)?;
    audit(user, "enrolled");
    println!("Two-factor authentication is on for {user}.");
    show_codes(&codes, backup_codes_file.as_deref())
}

/// Asks for the confirming code (up to three times when interactive) and saves on success;
/// returns the backup codes to show.
fn confirm_loop(
    config: &Config,
    store: &FileStore,
    user: &UserName,
    pending: Pending,
    code: Option<String>,
    force: bool,
) -> Result<Vec<Zeroizing<String>>, Failure> {
    let attempts = if code.is_some() { 1 } else { 3 };
    let mut given = code.map(Zeroizing::new);
    for attempt in 1..=attempts {
        let typed = match given.take() {
            Some(code) => code,
            None => ask_line("Code from the app: ")?,
        };
        match pending.confirm(store, user, config, &typed, SystemClock.now(), force) {
            Ok(()) => return Ok(pending.codes.plain),
            Err(e @ (EnrollError::WrongCode | EnrollError::ReplayedCode)) if attempt < attempts => {
                eprintln!("twofold: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(EnrollError::WrongCode.into())
}

fn status(store: &FileStore, user: &UserName, json: bool) -> Result<(), Failure> {
    let loaded = store.load(user)?;
    let now = SystemClock.now();
    let (totp, left, locked_until) = match &loaded {
        Some((record, state)) => (
            record.totp.as_ref(),
            state.codes_left(record.backup_codes.binding(), record.backup_codes.len()),
            (state.locked_until > now).then_some(state.locked_until),
        ),
        None => (None, 0, None),
    };
    if json {
        let value = serde_json::json!({
            "user": user.as_str(),
            "totp": totp.is_some(),
            "backup_codes_left": left,
            "locked_until": locked_until,
            "keys": [],
        });
        println!("{value}");
        return Ok(());
    }
    println!("user: {user}");
    match (&loaded, totp) {
        (None, _) => println!("enrolled: no"),
        (Some(_), Some(key)) => println!(
            "totp: yes ({}, {} digits, {} s)",
            key.algorithm.name(),
            key.digits.get(),
            key.period
        ),
        (Some(_), None) => println!("totp: no"),
    }
    if loaded.is_some() {
        println!("backup codes left: {left}");
        match locked_until {
            Some(until) => println!(
                "locked: yes, for {} more min (twofold unlock --user {user})",
                (until - now).div_ceil(60)
            ),
            None => println!("locked: no"),
        }
    }
    Ok(())
}

fn import_google_authenticator(
    config: &Config,
    store: &FileStore,
    user: &UserName,
    path: &Path,
    force: bool,
) -> Result<(), Failure> {
    prepare_store(config, store, user)?;
    let text = read_users_file(user, path)?;
    let ga = GoogleAuthenticator::parse(&text)
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    let key = TotpKey {
        secret: ga.secret,
        algorithm: Algorithm::Sha1,
        digits: Digits::SIX,
        period: ga.period,
    };
    // Importing the same file again must not make scratch codes spent since then valid again.
    let existing = store.load(user)?;
    let unspent: Vec<Zeroizing<String>> = ga
        .scratch_codes
        .into_iter()
        .filter(|code| !already_spent(existing.as_ref(), &key, code))
        .collect();
    let codes = BackupCodes::hash(&unspent, Cost::DEFAULT)?;
    let scratch_count = codes.len();
    let record = Record {
        totp: Some(key.clone()),
        window: ga.window,
        throttle: ga.throttle,
        backup_codes: codes,
    };
    store.replace(user, |current, state| {
        if current.is_some() && !force {
            return Err(EnrollError::AlreadyEnrolled);
        }
        // A new key starts unlocked, with no failures and its own replay guard.
        let same_key = current
            .and_then(|r| r.totp.as_ref())
            .is_some_and(|k| k.secret == key.secret && k.period == key.period);
        if !same_key {
            state.last_step = 0;
        }
        state.failures.clear();
        state.locked_until = 0;
        Ok((Some(record), ()))
    })??;
    audit(user, "imported from google-authenticator");
    println!(
        "{user}: imported {} (TOTP, {} s steps, {scratch_count} scratch codes as backup codes)",
        path.display(),
        ga.period
    );
    Ok(())
}

/// Whether `code` is a backup code of the current enrollment, with the same key, already spent.
fn already_spent(existing: Option<&(Record, State)>, key: &TotpKey, code: &str) -> bool {
    let Some((record, state)) = existing else {
        return false;
    };
    if record.totp.as_ref().is_none_or(|k| k.secret != key.secret) {
        return false;
    }
    let Some(hash) = Candidate::parse(code).and_then(|c| record.backup_codes.hash_candidate(&c))
    else {
        return false;
    };
    record
        .backup_codes
        .find(&hash)
        .is_some_and(|i| state.is_code_spent(record.backup_codes.binding(), i))
}

fn check(path: &Path, config: &Config, pam_dir: &Path) -> Result<(), Failure> {
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
    if config.records.location() == RecordsLocation::Central {
        let sample = config.records.path_for("user", None).unwrap_or_default();
        let dir = sample.parent().unwrap_or(Path::new("/"));
        match std::fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                problems += 1;
                println!("{}: not a directory", dir.display());
            }
            Ok(meta) => {
                let mode = meta.mode() & 0o7777;
                if meta.uid() != 0 || mode & 0o022 != 0 {
                    problems += 1;
                    println!(
                        "{}: unsafe: owner uid {}, mode {mode:04o}; expected root and 0700",
                        dir.display(),
                        meta.uid()
                    );
                } else {
                    println!("{}: ok (root, {mode:04o})", dir.display());
                }
                problems += check_records(config, dir);
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

/// Loads every record in a central directory, returning how many have defects.
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
                loaded = Config::load(path)
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
        // libpam reads only the file named after the service: backups are not stacks.
        const BACKUPS: &[&str] = &[
            ".dpkg-", "~", ".pam-old", ".bak", ".old", ".save", ".orig", ".ucf-", ".rpmnew",
            ".rpmsave", ".rpmorig",
        ];
        if BACKUPS.iter().any(|b| service.contains(b)) || !file.is_file() {
            continue;
        }
        let text = match std::fs::read(&file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                println!("{}: cannot read: {e}", file.display());
                continue;
            }
        };
        for found in pamconf::twofold_lines(service, &text, &read, &enrolls) {
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
            if found.findings.is_empty() {
                println!("{place}: ok ({})", line.trim_end());
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

fn check_records(config: &Config, dir: &Path) -> usize {
    let template = config.records.as_str();
    let Some(name_pattern) = template.rsplit('/').next().filter(|n| n.contains("{user}")) else {
        return 0;
    };
    let (prefix, suffix) = name_pattern
        .split_once("{user}")
        .unwrap_or((name_pattern, ""));
    let store = FileStore::new(config.records.clone());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let (mut checked, mut problems) = (0, 0);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(user) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .and_then(UserName::parse)
        else {
            continue;
        };
        checked += 1;
        if let Err(e) = store.load(&user) {
            problems += 1;
            println!("{e}");
        }
    }
    println!("records checked: {checked}, with problems: {problems}");
    problems
}

/// The user to act on: `named`, or the invoking user. Only root may name someone else.
fn target_user(named: Option<&str>) -> Result<UserName, Failure> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let me =
        Account::by_uid(uid)?.ok_or_else(|| Failure(format!("uid {uid} has no passwd entry")))?;
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
/// root) and turns a permission error into advice.
fn prepare_store(config: &Config, store: &FileStore, user: &UserName) -> Result<(), Failure> {
    if config.records.location() != RecordsLocation::Central {
        return Ok(());
    }
    // The store's own answer: it keys records by the account's canonical name.
    let (record, _) = store.paths(user)?;
    let dir = record.parent().unwrap_or(Path::new("/"));
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 && !dir.exists() {
        std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    }
    let writable = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        // SAFETY: the path is a NUL-terminated string that lives across the call.
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
        .unwrap_or(false);
    if !writable {
        return Err(Failure(format!(
            "cannot write {}: records there are root's; ask an administrator to run `sudo twofold enroll --user {user}`",
            dir.display()
        )));
    }
    Ok(())
}

/// Shows new backup codes once and, if asked, writes them to a new private file. The file is
/// created only now that the codes exist: nothing is ever created, or removed, on a failure.
fn show_codes(codes: &[Zeroizing<String>], path: Option<&Path>) -> Result<(), Failure> {
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
        let written = create_private_file(path).and_then(|mut file| {
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

/// Fails early, before anything changes, if the codes file would not be new.
fn refuse_existing(path: &Path) -> Result<(), Failure> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Err(Failure(format!(
            "{}: already exists; twofold never overwrites a codes file",
            path.display()
        ))),
        Err(_) => Ok(()),
    }
}

/// Creates a new file only its owner can read; refuses to overwrite or follow a link.
fn create_private_file(path: &Path) -> Result<File, Failure> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Failure(format!("{}: cannot create: {e}", path.display())))
}

/// Reads a small file that belongs to `user`. Run by root for someone else, it opens the file
/// with that user's rights and insists they own it and keep it private: a user must not be able
/// to point root at somebody else's file (through a link in the path, say) and import it.
fn read_users_file(user: &UserName, path: &Path) -> Result<Zeroizing<String>, Failure> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let account = Account::by_name(user)?.filter(|a| euid == 0 && a.uid != 0);
    let read = || -> Result<Zeroizing<String>, Failure> {
        use std::io::Read;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Failure(format!("{}: cannot open: {e}", path.display())))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(Failure(format!("{}: not a regular file", path.display())));
        }
        if let Some(account) = &account {
            if meta.uid() != account.uid || meta.mode() & 0o077 != 0 {
                return Err(Failure(format!(
                    "{}: must belong to {user} and be private to them (mode 0600 or 0400)",
                    path.display()
                )));
            }
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
        file.take(64 * 1024 + 1).read_to_end(&mut bytes)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Failure(format!("{}: not text", path.display())))?;
        Ok(Zeroizing::new(text.to_string()))
    };
    match &account {
        Some(account) => as_user(account, read)?,
        None => read(),
    }
}

fn ask_line(prompt: &str) -> Result<Zeroizing<String>, Failure> {
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

/// `ABCD EFGH ...`: easier to type from the screen.
fn group_secret(secret: &Secret) -> String {
    let text = secret.to_base32();
    text.as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn audit(user: &UserName, action: &str) {
    // SAFETY: getuid has no preconditions and cannot fail.
    let by = unsafe { libc::getuid() };
    log::line(
        "twofold",
        Level::Notice,
        &format!("user={user} {action} by uid={by}"),
    );
}
