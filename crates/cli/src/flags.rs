//! The command line: every flag in one place.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use twofold_core::config::DEFAULT_CONFIG_PATH;

#[derive(Parser)]
#[command(
    name = "twofold",
    version,
    about = "Two-factor authentication for Linux logins"
)]
pub(crate) struct Cli {
    /// The config file.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    pub(crate) config: PathBuf,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// One line per enrolled user (root, or through twofoldd root and its web user).
        #[arg(long, conflicts_with = "user")]
        all: bool,
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
    /// Register, list, rename and remove security keys (FIDO2/U2F).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Import an enrollment from another module's file.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Move users' records from this host's files (`records`) into twofoldd's store
    /// (`store = "twofoldd"`); idempotent: run it again, nothing is lost and spent codes stay
    /// spent.
    Migrate {
        /// A user to move (repeatable).
        #[arg(long = "user", value_name = "NAME", required = true)]
        users: Vec<String>,
    },
    /// Mark the records store as the real one (the package does this at install): writes
    /// `.twofold-store` in the central records directory, or creates the home index. Until then
    /// the module refuses users without a record rather than take an empty or unmounted store
    /// for "not enrolled".
    ConfirmStore,
    /// Validate the config, the records directory, and the PAM stacks that use the module.
    Check {
        /// Where the PAM service files are.
        #[arg(long, value_name = "DIR", default_value = "/etc/pam.d")]
        pam_dir: PathBuf,
    },
    /// Print each line of the live PAM files that loads pam_twofold.so (file:line:text),
    /// following includes; for the package's removal guards. Exit 0 whether or not any is found.
    PamUsers {
        /// Where the PAM service files are (repeatable; default /etc/pam.d and /usr/lib/pam.d).
        #[arg(long, value_name = "DIR")]
        pam_dir: Vec<PathBuf>,
        /// Leave out pam-auth-update's common-* files (neither read nor followed).
        #[arg(long)]
        skip_profile: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum CodesAction {
    /// Replace all backup codes with new ones and show them once.
    Regenerate {
        #[arg(long)]
        user: Option<String>,
        #[arg(long, value_name = "PATH")]
        backup_codes_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum ImportSource {
    /// A `~/.google_authenticator` file (TOTP mode).
    GoogleAuthenticator {
        file: PathBuf,
        #[arg(long)]
        user: Option<String>,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
    },
    /// A pam_u2f authfile (`~/.config/Yubico/u2f_keys` or a central mapping file): the user's
    /// credentials become keys `imported-1`, `imported-2`...
    PamU2f {
        file: PathBuf,
        #[arg(long)]
        user: Option<String>,
        /// The relying party the keys were made for (default: pam://<hostname>, pam_u2f's).
        #[arg(long, value_name = "ID")]
        rp_id: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeysAction {
    /// Register the plugged-in key under NAME (touch it when asked). Needs TOTP first.
    Add {
        name: String,
        #[arg(long)]
        user: Option<String>,
        /// The key must verify the user (its PIN or a fingerprint) at every login.
        #[arg(long)]
        pin: bool,
        /// The relying party id (default: fido2.rp_id, else pam://<hostname>).
        #[arg(long, value_name = "ID")]
        rp_id: Option<String>,
    },
    /// List the registered keys.
    List {
        #[arg(long)]
        user: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rename a key.
    Rename {
        old: String,
        new: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove a key.
    Remove {
        name: String,
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum QrArg {
    Utf8,
    Ansi,
    None,
}
