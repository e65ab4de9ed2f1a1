//! `twofold`: enroll users, manage backup codes, inspect and unlock, import, check the config.
//!
//! Exit codes: 0 success, 1 failure, 2 wrong usage. Every error is one line on stderr.

#![forbid(unsafe_code)]

pub mod check;
mod commands;
mod flags;
pub mod import;
pub mod pam_files;
mod support;

use std::process::ExitCode;

use clap::Parser;
use zeroize::Zeroizing;

use twofold_core::totp::Secret;
use twofold_host::any_store::AnyStore;
use twofold_host::config_file;

use commands::{
    codes, confirm_store, disable, enroll, import as import_command, keys, migrate, status, unlock,
};
use flags::{Cli, CodesAction, Command, ImportSource, KeysAction};
use support::{ask_line, target_user, Failure};

/// Runs the command line of this process.
pub fn main() -> ExitCode {
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
    // The removal guards must work whatever state the config is in.
    if let Command::PamUsers {
        pam_dir,
        skip_profile,
    } = &cli.command
    {
        return pam_users(pam_dir, *skip_profile);
    }
    let config = config_file::load(&cli.config)?;
    let store = AnyStore::for_admin(&config);
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
            enroll::enroll_user(
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
        Command::Status {
            all: true, json, ..
        } => status::status_all(&store, json),
        Command::Status { user, json, .. } => {
            status::status(&store, &target_user(user.as_deref())?, json)
        }
        Command::Codes {
            action:
                CodesAction::Regenerate {
                    user,
                    backup_codes_file,
                },
        } => codes::regenerate(
            &config,
            &store,
            &target_user(user.as_deref())?,
            backup_codes_file.as_deref(),
        ),
        Command::Unlock { user } => unlock::unlock(&store, &target_user(Some(&user))?),
        Command::Disable { user } => disable::disable(&store, &target_user(Some(&user))?),
        Command::Import {
            source: ImportSource::GoogleAuthenticator { file, user, force },
        } => {
            let user = target_user(user.as_deref())?;
            import_command::import_google_authenticator(&config, &store, &user, &file, force)
        }
        Command::Import {
            source: ImportSource::PamU2f { file, user, rp_id },
        } => {
            let user = target_user(user.as_deref())?;
            keys::import_pam_u2f(&config, &store, &user, &file, rp_id)
        }
        Command::Keys { action } => match action {
            KeysAction::Add {
                name,
                user,
                pin,
                rp_id,
            } => keys::add(
                &config,
                &store,
                &target_user(user.as_deref())?,
                &name,
                pin,
                rp_id,
            ),
            KeysAction::List { user, json } => {
                keys::list(&store, &target_user(user.as_deref())?, json)
            }
            KeysAction::Rename { old, new, user } => {
                keys::rename(&store, &target_user(user.as_deref())?, &old, &new)
            }
            KeysAction::Remove { name, user } => {
                keys::remove(&store, &target_user(user.as_deref())?, &name)
            }
        },
        Command::Migrate { users } => {
            let users = users
                .iter()
                .map(|name| target_user(Some(name)))
                .collect::<Result<Vec<_>, _>>()?;
            migrate::migrate(&config, &store, &users)
        }
        Command::ConfirmStore => confirm_store::confirm_store(&store),
        Command::Check { pam_dir } => check::check(&cli.config, &config, &pam_dir),
        Command::PamUsers {
            pam_dir,
            skip_profile,
        } => pam_users(&pam_dir, skip_profile),
    }
}

fn pam_users(dirs: &[std::path::PathBuf], skip_profile: bool) -> Result<(), Failure> {
    let dirs: Vec<std::path::PathBuf> = if dirs.is_empty() {
        pam_files::PAM_DIRS.iter().map(Into::into).collect()
    } else {
        dirs.to_vec()
    };
    for line in pam_files::module_lines(&dirs, skip_profile).map_err(Failure)? {
        println!("{line}");
    }
    Ok(())
}
