//! `twofold enroll`: a new key shown as a QR code and as text, one confirming code, the backup
//! codes once.

use std::io::{self, Write};
use std::path::PathBuf;

use zeroize::Zeroizing;

use twofold_core::clock::Clock;
use twofold_core::config::Config;
use twofold_core::enroll::{self, EnrollError, Pending};
use twofold_core::qr::{self, QrStyle};
use twofold_core::store::Store;
use twofold_core::totp::Secret;
use twofold_core::user::UserName;
use twofold_host::any_store::AnyStore;
use twofold_host::SystemClock;

use crate::flags::QrArg;
use crate::support::{
    ask_line, audit, enroll_failure, prepare_store, refuse_existing, show_codes, Failure,
};

#[allow(clippy::too_many_arguments)]
pub(crate) fn enroll_user(
    config: &Config,
    store: &AnyStore,
    user: &UserName,
    secret: Option<Secret>,
    code: Option<String>,
    force: bool,
    backup_codes_file: Option<PathBuf>,
    qr: QrArg,
) -> Result<(), Failure> {
    prepare_store(config, store, user)?;
    if !force && store.load(user)?.is_some() {
        return Err(enroll_failure(EnrollError::AlreadyEnrolled));
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
    writeln!(out, "{}{}", enroll::KEY_LINE, pending.key_text().as_str())?;
    out.flush()?;
    drop(out);

    let codes = confirm_loop(config, store, user, pending, code, force)?;
    audit(user, "enrolled");
    println!("Two-factor authentication is on for {user}.");
    show_codes(&codes, backup_codes_file.as_deref(), user)
}

/// Asks for the confirming code (up to three times when interactive) and saves on success;
/// returns the backup codes to show.
fn confirm_loop(
    config: &Config,
    store: &AnyStore,
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
            Err(e) => return Err(enroll_failure(e)),
        }
    }
    Err(EnrollError::WrongCode.into())
}
