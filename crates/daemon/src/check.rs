//! Checking a typed code for a user, in the daemon: the caller sends the answer, the core decides
//! with the same throttle and replay guard as the module, and the caller learns only the verdict.
//! The secret never leaves the daemon.

use twofold_core::clock::Clock;
use twofold_core::config::{Config, UserVerification};
use twofold_core::login::{self, Console, Denial, LoginPolicy, Outcome};
use twofold_core::prompt::OneAnswer;
use twofold_core::security_key::NoDevice;
use twofold_core::state::Origin;
use twofold_core::store::{Accounts, Store};
use twofold_core::text::LogLine;
use twofold_core::user::UserName;
use twofold_host::syslog::Level;
use twofold_proto::{Checked, Response};

/// Checks `answer` as the code `user` typed, and returns the answer for the caller and the log
/// level and fields of the outcome (never the code). The login is local (the caller is a program
/// on this machine) and never at a console: keys are not tried, a key-only user is denied.
pub fn check_code<S: Store + Accounts>(
    store: &S,
    config: &Config,
    user: &UserName,
    answer: &str,
    clock: &dyn Clock,
) -> (Response, Level, LogLine) {
    let policy = LoginPolicy {
        window: config.totp.window,
        throttle: config.throttle,
        nullok: false,
        forward_pass: false,
        enroll_on_login: None,
        origin: Origin::LOCAL,
        console: Console::NEVER,
        keys_require_uv: config.fido2.user_verification == UserVerification::Required,
    };
    let mut prompter = OneAnswer::new(answer);
    let outcome = login::authenticate(
        store,
        Some(user),
        &policy,
        &mut prompter,
        &mut NoDevice,
        clock,
    );
    verdict(&outcome)
}

/// The answer and log fields of an outcome: the one place that maps them.
fn verdict(outcome: &Outcome) -> (Response, Level, LogLine) {
    let line = LogLine::new();
    match outcome {
        Outcome::Accepted {
            factor, codes_left, ..
        } => (
            Response::Checked(Checked::Accepted {
                codes_left: codes_left.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            }),
            Level::Info,
            line.token("factor", factor.name())
                .token("outcome", "success"),
        ),
        Outcome::Denied(Denial::NotEnrolled) => (
            Response::Checked(Checked::NotEnrolled),
            Level::Notice,
            line.token("outcome", "denied")
                .token("reason", Denial::NotEnrolled.name()),
        ),
        Outcome::Denied(denial) => (
            Response::Checked(Checked::Denied),
            Level::Notice,
            line.token("outcome", "denied")
                .token("reason", denial.name()),
        ),
        Outcome::KeyRefused { why, .. } => (
            Response::Checked(Checked::Denied),
            Level::Notice,
            line.token("factor", "security-key")
                .token("outcome", "denied")
                .text("reason", &why.to_string()),
        ),
        Outcome::KeyUnavailable(_) => (
            Response::Checked(Checked::Denied),
            Level::Notice,
            line.token("factor", "security-key")
                .token("outcome", "denied")
                .text(
                    "reason",
                    "the user has only security keys, which need the console",
                ),
        ),
        Outcome::Locked { retry_after } => (
            Response::Checked(Checked::Locked {
                retry_after: *retry_after,
            }),
            Level::Notice,
            line.token("outcome", "locked")
                .token("retry_after", &format!("{retry_after}s")),
        ),
        Outcome::Unavailable(e) => unavailable(line, &e.to_string()),
        Outcome::ConversationFailed(e) => unavailable(line, &format!("conversation: {e}")),
        Outcome::EnrollmentFailed(e) => unavailable(line, &format!("enrollment: {e}")),
        // With nullok and enroll_on_login off, none of these can happen; fail closed if so.
        Outcome::NotEnrolledSkipped | Outcome::Enrolled | Outcome::EnrollmentPostponed => {
            unavailable(line, &format!("unexpected outcome {outcome:?}"))
        }
    }
}

fn unavailable(line: LogLine, why: &str) -> (Response, Level, LogLine) {
    (
        Response::Unavailable(why.into()),
        Level::Error,
        line.token("outcome", "unavailable").text("error", why),
    )
}
