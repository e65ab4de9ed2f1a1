//! Reading PAM service files for `twofold check`: where pam_twofold is stacked, with which
//! arguments, and whether what comes before it makes enroll-on-login safe.
//!
//! This is a linter, not a PAM implementation: it reads one file at a time and treats `@include`,
//! `include` and `substack` lines as opaque, so it warns only about what it can see.

use crate::config::ModuleArgs;

/// One `auth` line of a service file that loads pam_twofold.
#[derive(Debug, PartialEq, Eq)]
pub struct TwofoldLine {
    /// 1-based line number.
    pub line: usize,
    pub control: String,
    pub args: Vec<String>,
    /// What is wrong or risky about this line, one sentence each.
    pub problems: Vec<String>,
}

/// Finds the `auth` lines that load pam_twofold in `text` and judges each one.
/// `enroll_on_login` is the config's setting (a module argument can also turn it on).
pub fn twofold_lines(text: &str, enroll_on_login: bool) -> Vec<TwofoldLine> {
    let mut found = Vec::new();
    // What the auth lines before the current one guarantee about a wrong password.
    let mut earlier_auth = 0;
    let mut earlier_stops_on_failure = false;
    for (index, raw) in text.lines().enumerate() {
        let Some(entry) = Entry::parse(raw) else {
            continue;
        };
        match entry {
            // An included stack may well end on a failure (Debian's common-auth does).
            Entry::Include => {
                earlier_auth += 1;
                earlier_stops_on_failure = true;
            }
            Entry::Auth {
                control,
                module,
                args,
            } => {
                if is_twofold(&module) {
                    let problems = judge(
                        &control,
                        &args,
                        enroll_on_login,
                        earlier_auth,
                        earlier_stops_on_failure,
                    );
                    found.push(TwofoldLine {
                        line: index + 1,
                        control,
                        args,
                        problems,
                    });
                } else if stops_on_failure(&control) {
                    earlier_stops_on_failure = true;
                }
                earlier_auth += 1;
            }
        }
    }
    found
}

fn judge(
    control: &str,
    args: &[String],
    enroll_on_login: bool,
    earlier_auth: usize,
    earlier_stops_on_failure: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let parsed = match ModuleArgs::parse(args) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            problems.push(format!("{e}: the module refuses every login here"));
            None
        }
    };
    if control == "sufficient" || control == "optional" {
        problems.push(format!(
            "control `{control}` lets a login through without a verified second factor; use `required`"
        ));
    }
    let enrolls = enroll_on_login || parsed.as_ref().is_some_and(|a| a.enroll_on_login);
    let forwards = parsed.as_ref().is_some_and(|a| a.forward_pass);
    if enrolls && !forwards {
        if earlier_auth == 0 {
            problems.push(
                "enroll_on_login with no password module before pam_twofold: anyone who knows a user name could enroll a key for it".into(),
            );
        } else if !earlier_stops_on_failure {
            problems.push(
                "enroll_on_login, but no earlier auth line ends the stack on a wrong password (use `requisite` for the password module): anyone who knows a user name could enroll a key for it".into(),
            );
        }
    }
    problems
}

/// An `auth` line of interest.
enum Entry {
    Auth {
        control: String,
        module: String,
        args: Vec<String>,
    },
    /// `@include`, or an auth line that includes another stack.
    Include,
}

impl Entry {
    fn parse(raw: &str) -> Option<Entry> {
        let text = raw.split('#').next().unwrap_or_default().trim();
        if let Some(rest) = text.strip_prefix("@include") {
            return rest.contains("auth").then_some(Entry::Include);
        }
        let mut words = text.split_whitespace();
        let kind = words.next()?;
        if kind.trim_start_matches('-') != "auth" {
            return None;
        }
        let mut control = words.next()?.to_string();
        // A bracketed control may contain spaces: `[success=1 default=ignore]`.
        if control.starts_with('[') {
            while !control.ends_with(']') {
                control.push(' ');
                control.push_str(words.next()?);
            }
        }
        if control == "include" || control == "substack" {
            return Some(Entry::Include);
        }
        let module = words.next()?.to_string();
        Some(Entry::Auth {
            control,
            module,
            args: words.map(str::to_string).collect(),
        })
    }
}

fn is_twofold(module: &str) -> bool {
    let name = module.rsplit('/').next().unwrap_or(module);
    name == "pam_twofold.so" || name == "libpam_twofold.so"
}

/// Whether a failure of this line ends the stack (or makes it fail) before later lines run.
fn stops_on_failure(control: &str) -> bool {
    match control {
        "requisite" => true,
        bracketed if bracketed.starts_with('[') => {
            // `[... default=die]`, or an explicit `auth_err=die`, ends the stack on a failure.
            bracketed
                .trim_matches(|c| c == '[' || c == ']')
                .split_whitespace()
                .any(|pair| matches!(pair, "default=die" | "auth_err=die"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_style_stack_is_fine() {
        let text = "# sshd\n@include common-auth\nauth required pam_twofold.so nullok\n";
        let lines = twofold_lines(text, true);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line, 3);
        assert_eq!(lines[0].args, ["nullok"]);
        assert!(lines[0].problems.is_empty(), "{:?}", lines[0].problems);
    }

    #[test]
    fn requisite_or_die_password_lines_make_enrollment_safe() {
        for control in ["requisite", "[success=ok new_authtok_reqd=ok default=die]"] {
            let text = format!("auth {control} pam_unix.so\nauth required pam_twofold.so\n");
            assert!(
                twofold_lines(&text, true)[0].problems.is_empty(),
                "{control}"
            );
        }
    }

    #[test]
    fn enrollment_after_a_merely_required_password_is_flagged() {
        let text = "auth required pam_unix.so\n-auth required /lib/security/pam_twofold.so enroll_on_login\n";
        let lines = twofold_lines(text, false);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].problems[0].contains("requisite"), "{lines:?}");
        // Without enrollment at login the same stack is fine: pam_unix still fails it.
        let text = "auth required pam_unix.so\nauth required pam_twofold.so\n";
        assert!(twofold_lines(text, false)[0].problems.is_empty());
    }

    #[test]
    fn twofold_first_with_enrollment_is_flagged() {
        let lines = twofold_lines("auth required pam_twofold.so\n", true);
        assert!(lines[0].problems[0].contains("no password module"));
        // forward_pass never enrolls, so it may come first.
        let lines = twofold_lines("auth required pam_twofold.so forward_pass\n", true);
        assert!(lines[0].problems.is_empty());
    }

    #[test]
    fn weak_controls_and_unknown_arguments_are_flagged() {
        let text = "auth requisite pam_unix.so\nauth sufficient pam_twofold.so nulok # typo\n";
        let problems = &twofold_lines(text, false)[0].problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("unknown option `nulok`"));
        assert!(problems[1].contains("sufficient"));
    }

    #[test]
    fn other_lines_and_types_are_ignored() {
        let text = "account required pam_twofold.so\n#auth required pam_twofold.so\n\
                    session optional pam_twofold.so\nauth [broken\n";
        assert!(twofold_lines(text, true).is_empty());
    }
}
