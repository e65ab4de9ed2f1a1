//! pam_twofold.so, the PAM front door: the exported hooks, and the one place where the core's
//! outcome becomes a PAM return code, a message to the user and a syslog line.
//!
//! Every hook runs inside `catch_unwind`, so no panic reaches libpam's caller. This crate never
//! writes to stdout or stderr, and never logs a code or a secret. Its unsafe code is the libpam
//! edge: the declarations in `sys`, the handle in `handle`, and the six entry points below.

mod conversation;
mod handle;
pub mod sys;

use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use twofold_core::config::ModuleArgs;
use twofold_core::login::{self, LoginPolicy, Outcome};
use twofold_core::prompt::Prompter;
use twofold_core::text::field;
use twofold_core::user::UserName;
use twofold_host::config_file;
use twofold_host::syslog::{self, Level};
use twofold_host::{FileStore, SystemClock};

use conversation::Conversation;
use handle::Handle;
use sys::PamHandle;

/// `pam_sm_authenticate`: the second factor.
///
/// # Safety
/// Called by libpam with a live handle and `argc` argument strings.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    guarded(|| {
        // SAFETY: libpam passes the live handle of this call, used only during it.
        let Some(handle) = (unsafe { Handle::new(pamh) }) else {
            return sys::PAM_SERVICE_ERR;
        };
        // SAFETY: libpam passes argc valid argument strings that live during the call.
        let args = unsafe { handle::arguments(argc, argv) };
        authenticate(&handle, flags, &args)
    })
}

/// `pam_sm_setcred`: nothing to set; succeeds, as a module without credentials must (an
/// unimplemented hook would fail every login that reaches `pam_setcred`).
///
/// # Safety
/// Called by libpam; the arguments are not used.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    sys::PAM_SUCCESS
}

/// `pam_sm_acct_mgmt`: not this module's business.
///
/// # Safety
/// Called by libpam; the arguments are not used.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    sys::PAM_IGNORE
}

/// `pam_sm_chauthtok`: not this module's business.
///
/// # Safety
/// Called by libpam; the arguments are not used.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_chauthtok(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    sys::PAM_IGNORE
}

/// `pam_sm_open_session`: not this module's business.
///
/// # Safety
/// Called by libpam; the arguments are not used.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_open_session(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    sys::PAM_IGNORE
}

/// `pam_sm_close_session`: not this module's business.
///
/// # Safety
/// Called by libpam; the arguments are not used.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_close_session(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    sys::PAM_IGNORE
}

/// Runs a hook; a panic becomes a logged `PAM_SERVICE_ERR`, never a crash of sshd or sudo.
fn guarded(hook: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(hook)).unwrap_or_else(|_| {
        syslog::line(
            IDENT,
            Level::Error,
            "internal error (panic caught); authentication refused",
        );
        sys::PAM_SERVICE_ERR
    })
}

fn authenticate(handle: &Handle, flags: c_int, args: &[String]) -> c_int {
    let service = handle
        .string_item(sys::PAM_SERVICE)
        .unwrap_or_else(|| "?".into());
    let service = field(&service).into_owned();
    let rhost = handle.string_item(sys::PAM_RHOST);
    let silent = flags & sys::PAM_SILENT != 0;
    let args = match ModuleArgs::parse(args) {
        Ok(args) => args,
        Err(e) => {
            syslog::line(
                IDENT,
                Level::Error,
                &format!("service={service}: {e}; refusing to authenticate"),
            );
            return sys::PAM_SERVICE_ERR;
        }
    };
    // Like pam_unix: ask libpam to delay a failed stack, so codes cannot be tried at full speed.
    handle.request_fail_delay(FAIL_DELAY_MICROS);
    let mut conversation = Conversation::new(handle, silent);
    let config = match config_file::load(args.config_path()) {
        Ok(config) => config,
        Err(e) => {
            syslog::line(
                IDENT,
                Level::Error,
                &format!("service={service}: config {e}"),
            );
            conversation.error(UNAVAILABLE_HINT);
            return sys::PAM_AUTHINFO_UNAVAIL;
        }
    };
    let enroll_on_login = match args.enrolls_on_login(&config) {
        Ok(on) => on,
        Err(why) => {
            syslog::line(
                IDENT,
                Level::Error,
                &format!("service={service}: module argument {why}"),
            );
            conversation.error(UNAVAILABLE_HINT);
            return sys::PAM_AUTHINFO_UNAVAIL;
        }
    };
    let (user_text, utf8) = match handle.user() {
        Ok(user) => (user.to_string_lossy().into_owned(), user.to_str().is_ok()),
        Err(_) => {
            syslog::line(
                IDENT,
                Level::Error,
                &format!("service={service}: no user name"),
            );
            return sys::PAM_AUTH_ERR;
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
    let policy = LoginPolicy {
        window: config.totp.window,
        throttle: config.throttle,
        nullok: config.nullok || args.nullok,
        forward_pass: args.forward_pass,
        enroll_on_login: (enroll_on_login && !silent).then_some(&config),
    };
    let store = FileStore::new(config.records.clone());
    if args.debug {
        syslog::line(
            IDENT,
            Level::Debug,
            &format!(
                "service={service} user={} config={} records={}",
                field(&user_text),
                args.config_path().display(),
                config.records.as_str()
            ),
        );
    }
    let outcome = login::authenticate(
        &store,
        user.as_ref(),
        &policy,
        &mut conversation,
        &SystemClock,
    );
    let who = format!(
        "service={service} user={} rhost={}",
        field(&user_text),
        field(rhost.as_deref().unwrap_or("-"))
    );
    finish(handle, &mut conversation, &who, outcome)
}

/// Maps an outcome to its PAM code, user message and log line: the only place that does.
fn finish(handle: &Handle, conversation: &mut Conversation, who: &str, outcome: Outcome) -> c_int {
    match outcome {
        Outcome::Accepted {
            factor,
            codes_left,
            password,
        } => {
            if let Some(password) = password {
                if let Err(e) = handle.set_authtok(&password) {
                    syslog::line(
                        IDENT,
                        Level::Error,
                        &format!("{who}: cannot hand on the password: {e:?}"),
                    );
                    return sys::PAM_AUTH_ERR;
                }
            }
            if let Some(left) = codes_left {
                conversation.info(&format!("Backup code accepted; {left} left"));
            }
            syslog::line(
                IDENT,
                Level::Info,
                &format!("{who} factor={} outcome=success", factor.name()),
            );
            sys::PAM_SUCCESS
        }
        Outcome::Denied(denial) => {
            syslog::line(
                IDENT,
                Level::Notice,
                &format!("{who} outcome=denied reason={}", denial.name()),
            );
            sys::PAM_AUTH_ERR
        }
        Outcome::Locked { retry_after } => {
            let minutes = retry_after.div_ceil(60).max(1);
            conversation.error(&format!(
                "Too many failed codes; try again in {minutes} min"
            ));
            syslog::line(
                IDENT,
                Level::Notice,
                &format!("{who} outcome=locked retry_after={retry_after}s"),
            );
            sys::PAM_MAXTRIES
        }
        Outcome::NotEnrolledSkipped => {
            syslog::line(
                IDENT,
                Level::Info,
                &format!("{who} outcome=ignored reason=not-enrolled nullok"),
            );
            sys::PAM_IGNORE
        }
        Outcome::Enrolled => {
            syslog::line(
                IDENT,
                Level::Notice,
                &format!("{who} factor=totp outcome=enrolled"),
            );
            sys::PAM_SUCCESS
        }
        Outcome::EnrollmentPostponed => {
            syslog::line(
                IDENT,
                Level::Info,
                &format!("{who} outcome=ignored reason=enrollment-postponed nullok"),
            );
            sys::PAM_IGNORE
        }
        Outcome::EnrollmentFailed(e) => {
            conversation.error(UNAVAILABLE_HINT);
            syslog::line(
                IDENT,
                Level::Error,
                &format!("{who} outcome=unavailable: enrollment failed: {e}"),
            );
            sys::PAM_AUTHINFO_UNAVAIL
        }
        Outcome::ConversationFailed(e) => {
            syslog::line(
                IDENT,
                Level::Notice,
                &format!("{who} outcome=conversation-failed ({e})"),
            );
            sys::PAM_CONV_ERR
        }
        Outcome::Unavailable(e) => {
            conversation.error(UNAVAILABLE_HINT);
            syslog::line(
                IDENT,
                Level::Error,
                &format!("{who} outcome=unavailable: {e}"),
            );
            sys::PAM_AUTHINFO_UNAVAIL
        }
    }
}

const IDENT: &str = "pam_twofold";
const UNAVAILABLE_HINT: &str =
    "Two-factor authentication is unavailable; contact your administrator.";
/// pam_unix's default delay.
const FAIL_DELAY_MICROS: u32 = 2_000_000;
