//! pam_twofold.so, the PAM front door: the exported hooks, and the one place where the core's
//! outcome becomes a PAM return code, a message to the user and a syslog line.
//!
//! Every hook runs inside `catch_unwind`, so no panic reaches libpam's caller. This crate never
//! writes to stdout or stderr, and never logs a code or a secret. Its unsafe code is the libpam
//! edge: the declarations in `sys`, the handle in `handle`, and the six entry points below.

mod conversation;
mod handle;
mod keys;
pub mod sys;

use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use twofold_core::config::{Config, ModuleArgs, RecordsLocation, StoreKind, UserVerification};
use twofold_core::key_assertion::KeyRefusal;
use twofold_core::login::{self, Console, KeyUnusable, LoginPolicy, Outcome};
use twofold_core::prompt::Prompter;
use twofold_core::security_key::TouchFailure;
use twofold_core::state::Origin;
use twofold_core::text::LogLine;
use twofold_core::user::UserName;
use twofold_host::any_store::AnyStore;
use twofold_host::daemon_store::DaemonStore;
use twofold_host::syslog::{self, Level};
use twofold_host::SystemClock;
use twofold_host::{config_file, login_session};
use twofold_proto::{Checked, Request, Response, Secret};

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
    let at_service = LogLine::new().token("service", &service);
    let rhost = handle.string_item(sys::PAM_RHOST);
    let silent = flags & sys::PAM_SILENT != 0;
    let args = match ModuleArgs::parse(args) {
        Ok(args) => args,
        Err(e) => {
            syslog::line(
                IDENT,
                Level::Error,
                at_service
                    .clone()
                    .token("outcome", "refused")
                    .text("error", &format!("{e}; refusing to authenticate"))
                    .as_str(),
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
                at_service
                    .clone()
                    .token("outcome", "unavailable")
                    .text("error", &format!("config {e}"))
                    .as_str(),
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
                at_service
                    .clone()
                    .token("outcome", "unavailable")
                    .text("error", &format!("module argument {why}"))
                    .as_str(),
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
                at_service
                    .clone()
                    .token("outcome", "refused")
                    .text("error", "no user name")
                    .as_str(),
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
    // Asked only for a user with keys: the session lookup reads files a code login need not.
    let at_this_machine = || {
        at_console(
            &service,
            rhost.as_deref(),
            handle.string_item(sys::PAM_TTY).as_deref(),
        )
    };
    let policy = LoginPolicy {
        window: config.totp.window,
        throttle: config.throttle,
        nullok: config.nullok || args.nullok,
        forward_pass: args.forward_pass,
        enroll_on_login: (enroll_on_login && !silent).then_some(&config),
        origin: Origin::remote(rhost.as_deref().unwrap_or("")),
        console: Console(&at_this_machine),
        keys_require_uv: config.fido2.user_verification == UserVerification::Required,
    };
    // A program running as the user (a screen locker) cannot read root's records: the daemon
    // checks the user's own code for it, on either store, with the same throttle.
    let own_code_check = twofold_host::sys::geteuid() != 0
        && (config.store == StoreKind::Twofoldd
            || config.records.location() == RecordsLocation::Central);
    let store = AnyStore::new(&config);
    if args.debug {
        syslog::line(
            IDENT,
            Level::Debug,
            at_service
                .clone()
                .token("user", &user_text)
                .text("config", &args.config_path().display().to_string())
                .text("records", config.records.as_str())
                .as_str(),
        );
    }
    let who = at_service
        .token("user", &user_text)
        .token("rhost", rhost.as_deref().unwrap_or("-"));
    if own_code_check {
        return check_own_code(&config, user.as_ref(), &policy, &mut conversation, &who);
    }
    // The device code runs only for a user who has keys (the core calls it then).
    let mut keys = keys::Toucher::new(&config.fido2, &who);
    let outcome = login::authenticate(
        &store,
        user.as_ref(),
        &policy,
        &mut conversation,
        &mut keys,
        &SystemClock,
    );
    finish(handle, &mut conversation, &who, outcome)
}

/// The module running as the user: asks for the code and lets twofoldd decide (the daemon checks
/// that the user is the caller). No secret reaches this process.
fn check_own_code(
    config: &Config,
    user: Option<&UserName>,
    policy: &LoginPolicy,
    conversation: &mut Conversation,
    who: &LogLine,
) -> c_int {
    let daemon = DaemonStore::new(config);
    let unavailable = |conversation: &mut Conversation, why: &str| {
        let line = who
            .clone()
            .token("outcome", "unavailable")
            .text("error", &format!("own-code check through twofoldd: {why}"));
        syslog::line(IDENT, Level::Error, line.as_str());
        conversation.error(UNAVAILABLE_HINT);
        sys::PAM_AUTHINFO_UNAVAIL
    };
    let Some(user) = user else {
        let line = who
            .clone()
            .token("outcome", "denied")
            .token("reason", "unusable-name");
        syslog::line(IDENT, Level::Notice, line.as_str());
        return sys::PAM_AUTH_ERR;
    };
    let answer = match conversation.ask_hidden(login::CODE_PROMPT) {
        Ok(answer) => answer,
        Err(e) => {
            let line = who
                .clone()
                .token("outcome", "conversation-failed")
                .text("error", &e.to_string());
            syslog::line(IDENT, Level::Notice, line.as_str());
            return sys::PAM_CONV_ERR;
        }
    };
    let request = Request::CheckCode {
        user: user.as_str().to_string(),
        answer: Secret(answer),
    };
    let checked = match daemon.call(&request) {
        Ok(Response::Checked(checked)) => checked,
        Ok(Response::Refused(why) | Response::Unavailable(why) | Response::Invalid(why)) => {
            return unavailable(conversation, &why)
        }
        Ok(other) => return unavailable(conversation, &format!("unexpected answer {other:?}")),
        Err(e) => return unavailable(conversation, &e.to_string()),
    };
    let line = who.clone().token("check", "twofoldd");
    let (level, line, rc) = match checked {
        Checked::Accepted { codes_left } => {
            if let Some(left) = codes_left {
                conversation.info(&format!("Backup code accepted; {left} left"));
            }
            (
                Level::Info,
                line.token("outcome", "success"),
                sys::PAM_SUCCESS,
            )
        }
        Checked::Denied => (
            Level::Notice,
            line.token("outcome", "denied"),
            sys::PAM_AUTH_ERR,
        ),
        Checked::Locked { retry_after } => {
            let minutes = retry_after.div_ceil(60).max(1);
            conversation.error(&format!(
                "Too many failed codes; try again in {minutes} min"
            ));
            (
                Level::Notice,
                line.token("outcome", "locked")
                    .token("retry_after", &format!("{retry_after}s")),
                sys::PAM_MAXTRIES,
            )
        }
        Checked::NotEnrolled if policy.nullok => (
            Level::Info,
            line.token("outcome", "ignored")
                .token("reason", "not-enrolled")
                .token("nullok", "yes"),
            sys::PAM_IGNORE,
        ),
        Checked::NotEnrolled => (
            Level::Notice,
            line.token("outcome", "denied")
                .token("reason", "not-enrolled"),
            sys::PAM_AUTH_ERR,
        ),
    };
    syslog::line(IDENT, level, line.as_str());
    rc
}

/// Maps an outcome to its PAM code, user message and log line: the only place that does.
fn finish(
    handle: &Handle,
    conversation: &mut Conversation,
    who: &LogLine,
    outcome: Outcome,
) -> c_int {
    // The password is handed on before the success is logged, so a failure here is the line.
    if let Outcome::Accepted {
        password: Some(password),
        ..
    } = &outcome
    {
        if let Err(e) = handle.set_authtok(password) {
            let line = who
                .clone()
                .token("outcome", "refused")
                .text("error", &format!("cannot hand on the password: {e:?}"));
            syslog::line(IDENT, Level::Error, line.as_str());
            return sys::PAM_AUTH_ERR;
        }
    }
    let (level, line) = log_line(who, &outcome);
    syslog::line(IDENT, level, line.as_str());
    match outcome {
        Outcome::Accepted { codes_left, .. } => {
            if let Some(left) = codes_left {
                conversation.info(&format!("Backup code accepted; {left} left"));
            }
            sys::PAM_SUCCESS
        }
        Outcome::Denied(_) | Outcome::KeyRefused { .. } => sys::PAM_AUTH_ERR,
        Outcome::KeyUnavailable(why) => {
            conversation.error(match why {
                KeyUnusable::Remote => {
                    "This account logs in with a security key, which works only at this machine."
                }
                KeyUnusable::Touch(TouchFailure::NoDevice) => {
                    "No security key found; plug in your key and try again."
                }
                KeyUnusable::Touch(TouchFailure::Timeout) => "No touch; try again.",
                KeyUnusable::Touch(TouchFailure::NotRegistered) => {
                    "This security key is not registered for you."
                }
                KeyUnusable::Touch(_) => "The security key could not be used; try again.",
            });
            sys::PAM_AUTH_ERR
        }
        Outcome::Locked { retry_after } => {
            let minutes = retry_after.div_ceil(60).max(1);
            conversation.error(&format!(
                "Too many failed codes; try again in {minutes} min"
            ));
            sys::PAM_MAXTRIES
        }
        Outcome::NotEnrolledSkipped | Outcome::EnrollmentPostponed => sys::PAM_IGNORE,
        Outcome::Enrolled => sys::PAM_SUCCESS,
        Outcome::ConversationFailed(_) => sys::PAM_CONV_ERR,
        Outcome::EnrollmentFailed(_) | Outcome::Unavailable(_) => {
            conversation.error(UNAVAILABLE_HINT);
            sys::PAM_AUTHINFO_UNAVAIL
        }
    }
}

/// The syslog line of an outcome: `who` (service, user, rhost), then the outcome's own fields.
/// Error text, which may quote a record or name a path, is one quoted field.
fn log_line(who: &LogLine, outcome: &Outcome) -> (Level, LogLine) {
    let line = who.clone();
    match outcome {
        Outcome::Accepted { factor, key, .. } => {
            let line = line.token("factor", factor.name());
            let line = match key {
                Some(key) => line.token("key", key.as_str()),
                None => line,
            };
            (Level::Info, line.token("outcome", "success"))
        }
        Outcome::KeyRefused { key, why } => {
            let line = match key {
                Some(key) => line.token("key", key.as_str()),
                None => line,
            };
            // A counter that went back is a cloned key: worth an admin's attention.
            let level = match why {
                KeyRefusal::CounterRegressed { .. } => Level::Warning,
                _ => Level::Notice,
            };
            (
                level,
                line.token("factor", "security-key")
                    .token("outcome", "denied")
                    .text("reason", &why.to_string()),
            )
        }
        Outcome::KeyUnavailable(why) => (
            Level::Notice,
            line.token("factor", "security-key")
                .token("outcome", "denied")
                .text(
                    "reason",
                    &match why {
                        KeyUnusable::Remote => {
                            "remote login; the user has only security keys".into()
                        }
                        KeyUnusable::Touch(failure) => failure.to_string(),
                    },
                ),
        ),
        Outcome::Denied(denial) => (
            Level::Notice,
            line.token("outcome", "denied")
                .token("reason", denial.name()),
        ),
        Outcome::Locked { retry_after } => (
            Level::Notice,
            line.token("outcome", "locked")
                .token("retry_after", &format!("{retry_after}s")),
        ),
        Outcome::NotEnrolledSkipped => (
            Level::Info,
            line.token("outcome", "ignored")
                .token("reason", "not-enrolled")
                .token("nullok", "yes"),
        ),
        Outcome::Enrolled => (
            Level::Notice,
            line.token("factor", "totp").token("outcome", "enrolled"),
        ),
        Outcome::EnrollmentPostponed => (
            Level::Info,
            line.token("outcome", "ignored")
                .token("reason", "enrollment-postponed")
                .token("nullok", "yes"),
        ),
        Outcome::EnrollmentFailed(e) => (
            Level::Error,
            line.token("outcome", "unavailable")
                .text("error", &format!("enrollment failed: {e}")),
        ),
        Outcome::ConversationFailed(e) => (
            Level::Notice,
            line.token("outcome", "conversation-failed")
                .text("error", &e.to_string()),
        ),
        Outcome::Unavailable(e) => (
            Level::Error,
            line.token("outcome", "unavailable")
                .text("error", &e.to_string()),
        ),
    }
}

/// Whether the person logging in is at this machine, so that a security key plugged in here is
/// theirs to touch. Never for sshd (over SSH the key is at the client), nor for a remote host.
/// `sudo` and `su` set no remote host, so the login session decides: logind's record of it where
/// there is one; otherwise a pseudo-terminal (an SSH session, or a terminal window) counts as
/// not at the machine, which only means a code is asked instead.
fn at_console(service: &str, rhost: Option<&str>, tty: Option<&str>) -> bool {
    let local_host = matches!(rhost.unwrap_or(""), "" | "localhost" | "127.0.0.1" | "::1");
    if service == "sshd" || !local_host {
        return false;
    }
    match login_session::is_remote() {
        Some(remote) => !remote,
        None => !tty.is_some_and(|tty| tty.starts_with("/dev/pts/") || tty.starts_with("pts/")),
    }
}

const IDENT: &str = "pam_twofold";
const UNAVAILABLE_HINT: &str =
    "Two-factor authentication is unavailable; contact your administrator.";
/// pam_unix's default delay.
const FAIL_DELAY_MICROS: u32 = 2_000_000;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use twofold_core::store::StoreError;

    use super::*;

    #[test]
    fn hostile_text_in_an_unavailable_line_stays_inside_its_quoted_field() {
        let who = LogLine::new()
            .token("service", "sshd")
            .token("user", "eve rhost=10.0.0.1")
            .token("rhost", "-");
        let error = StoreError::Unsafe {
            path: PathBuf::from("/home/eve/x\nsshd: outcome=success"),
            why: "quoted \"user=root\"".into(),
        };
        let (level, line) = log_line(&who, &Outcome::Unavailable(error));
        assert_eq!(level, Level::Error);
        assert_eq!(
            line.as_str(),
            "service=sshd user=eve%20rhost%3D10.0.0.1 rhost=- outcome=unavailable \
             error=\"/home/eve/x\\x0asshd: outcome=success: refused: quoted \\\"user=root\\\"\""
        );
    }
}
