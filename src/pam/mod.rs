//! The PAM front door: the exported hooks, the conversation, and the one place where the core's
//! outcome becomes a PAM return code, a message to the user and a syslog line.
//!
//! Every hook runs inside `catch_unwind`, so no panic reaches libpam's caller. This module never
//! writes to stdout or stderr, and never logs a code or a secret.

mod ffi;

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pamsm::{Pam, PamError, PamFlags, PamLibExt, PamServiceModule};

use crate::auth::{self, LoginPolicy, Outcome, SystemClock};
use crate::config::{Config, ModuleArgs};
use crate::log::{self, Level};
use crate::store::FileStore;
use crate::user::UserName;

use ffi::Conversation;

/// The module type behind pamsm's exported symbols.
pub struct Twofold;

pamsm::pam_module!(Twofold);

impl PamServiceModule for Twofold {
    fn authenticate(pamh: Pam, flags: PamFlags, args: Vec<String>) -> PamError {
        guarded(|| authenticate(&pamh, flags, &args))
    }

    fn setcred(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::SUCCESS
    }

    fn acct_mgmt(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::IGNORE
    }

    fn chauthtok(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::IGNORE
    }

    fn open_session(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::IGNORE
    }

    fn close_session(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::IGNORE
    }
}

/// Runs a hook; a panic becomes a logged `PAM_SERVICE_ERR`, never a crash of sshd or sudo.
fn guarded(hook: impl FnOnce() -> PamError) -> PamError {
    catch_unwind(AssertUnwindSafe(hook)).unwrap_or_else(|_| {
        log::line(
            IDENT,
            Level::Error,
            "internal error (panic caught); authentication refused",
        );
        PamError::SERVICE_ERR
    })
}

fn authenticate(pamh: &Pam, flags: PamFlags, args: &[String]) -> PamError {
    let service = cstr_item(pamh.get_service()).unwrap_or_else(|| "?".into());
    let service = log::field(&service).into_owned();
    let rhost = cstr_item(pamh.get_rhost());
    let args = match ModuleArgs::parse(args) {
        Ok(args) => args,
        Err(e) => {
            log::line(
                IDENT,
                Level::Error,
                &format!("service={service}: {e}; refusing to authenticate"),
            );
            return PamError::SERVICE_ERR;
        }
    };
    // Like pam_unix: ask libpam to delay a failed stack, so codes cannot be tried at full speed.
    ffi::request_fail_delay(pamh, FAIL_DELAY_MICROS);
    let mut conversation = Conversation::new(pamh, flags.contains(PamFlags::SILENT));
    let config = match Config::load(args.config_path()) {
        Ok(config) => config,
        Err(e) => {
            log::line(
                IDENT,
                Level::Error,
                &format!("service={service}: config {e}"),
            );
            conversation.error_line(UNAVAILABLE_HINT);
            return PamError::AUTHINFO_UNAVAIL;
        }
    };
    let enroll_on_login = match args.enrolls_on_login(&config) {
        Ok(on) => on,
        Err(why) => {
            log::line(
                IDENT,
                Level::Error,
                &format!("service={service}: module argument {why}"),
            );
            conversation.error_line(UNAVAILABLE_HINT);
            return PamError::AUTHINFO_UNAVAIL;
        }
    };
    let (user_text, utf8) = match pamh.get_user(None) {
        Ok(Some(user)) => (user.to_string_lossy().into_owned(), user.to_str().is_ok()),
        Ok(None) | Err(_) => {
            log::line(
                IDENT,
                Level::Error,
                &format!("service={service}: no user name"),
            );
            return PamError::AUTH_ERR;
        }
    };
    // A name we cannot use safely (not UTF-8, a `/`...) is refused after the prompt; the core
    // never lets nullok skip it.
    let user = if utf8 {
        UserName::parse(&user_text)
    } else {
        None
    };
    // Enrolling shows a QR code, which PAM_SILENT forbids: such a login is treated as if
    // enroll_on_login were off.
    let silent = flags.contains(PamFlags::SILENT);
    let policy = LoginPolicy {
        window: config.totp.window,
        throttle: config.throttle,
        nullok: config.nullok || args.nullok,
        forward_pass: args.forward_pass,
        enroll_on_login: (enroll_on_login && !silent).then_some(&config),
    };
    let store = FileStore::new(config.records.clone());
    if args.debug {
        log::line(
            IDENT,
            Level::Debug,
            &format!(
                "service={service} user={} config={} records={}",
                log::field(&user_text),
                args.config_path().display(),
                config.records.as_str()
            ),
        );
    }
    let outcome = auth::authenticate(
        &store,
        user.as_ref(),
        &policy,
        &mut conversation,
        &SystemClock,
    );
    let who = format!(
        "service={service} user={} rhost={}",
        log::field(&user_text),
        log::field(rhost.as_deref().unwrap_or("-"))
    );
    finish(pamh, &mut conversation, &who, outcome)
}

/// Maps an outcome to its PAM code, user message and log line: the only place that does.
fn finish(pamh: &Pam, conversation: &mut Conversation, who: &str, outcome: Outcome) -> PamError {
    match outcome {
        Outcome::Accepted {
            factor,
            codes_left,
            password,
        } => {
            if let Some(password) = password {
                if let Err(e) = ffi::set_authtok(pamh, &password) {
                    log::line(
                        IDENT,
                        Level::Error,
                        &format!("{who}: cannot hand on the password: {e:?}"),
                    );
                    return PamError::AUTH_ERR;
                }
            }
            if let Some(left) = codes_left {
                conversation.info_line(&format!("Backup code accepted; {left} left"));
            }
            log::line(
                IDENT,
                Level::Info,
                &format!("{who} factor={} outcome=success", factor.name()),
            );
            PamError::SUCCESS
        }
        Outcome::Denied(denial) => {
            log::line(
                IDENT,
                Level::Notice,
                &format!("{who} outcome=denied reason={}", denial.name()),
            );
            PamError::AUTH_ERR
        }
        Outcome::Locked { retry_after } => {
            let minutes = retry_after.div_ceil(60).max(1);
            conversation.error_line(&format!(
                "Too many failed codes; try again in {minutes} min"
            ));
            log::line(
                IDENT,
                Level::Notice,
                &format!("{who} outcome=locked retry_after={retry_after}s"),
            );
            PamError::MAXTRIES
        }
        Outcome::NotEnrolledSkipped => {
            log::line(
                IDENT,
                Level::Info,
                &format!("{who} outcome=ignored reason=not-enrolled nullok"),
            );
            PamError::IGNORE
        }
        Outcome::Enrolled => {
            log::line(
                IDENT,
                Level::Notice,
                &format!("{who} factor=totp outcome=enrolled"),
            );
            PamError::SUCCESS
        }
        Outcome::EnrollmentPostponed => {
            log::line(
                IDENT,
                Level::Info,
                &format!("{who} outcome=ignored reason=enrollment-postponed nullok"),
            );
            PamError::IGNORE
        }
        Outcome::EnrollmentFailed(e) => {
            conversation.error_line(UNAVAILABLE_HINT);
            log::line(
                IDENT,
                Level::Error,
                &format!("{who} outcome=unavailable: enrollment failed: {e}"),
            );
            PamError::AUTHINFO_UNAVAIL
        }
        Outcome::ConversationFailed(e) => {
            log::line(
                IDENT,
                Level::Notice,
                &format!("{who} outcome=conversation-failed ({e})"),
            );
            PamError::CONV_ERR
        }
        Outcome::Unavailable(e) => {
            conversation.error_line(UNAVAILABLE_HINT);
            log::line(
                IDENT,
                Level::Error,
                &format!("{who} outcome=unavailable: {e}"),
            );
            PamError::AUTHINFO_UNAVAIL
        }
    }
}

fn cstr_item(item: Result<Option<&CStr>, PamError>) -> Option<String> {
    item.ok()
        .flatten()
        .map(|s| s.to_string_lossy().into_owned())
}

const IDENT: &str = "pam_twofold";
const UNAVAILABLE_HINT: &str =
    "Two-factor authentication is unavailable; contact your administrator.";
/// pam_unix's default delay.
const FAIL_DELAY_MICROS: u32 = 2_000_000;
