//! Reading PAM service files for `twofold check`: where pam_twofold is stacked, with which
//! arguments, and whether the lines before it make it run at all and make enroll-on-login safe.
//!
//! This is a linter, not a PAM implementation. It follows `@include`, `include` and `substack`
//! through a reader the caller supplies, and models only what decides the two questions that
//! matter: can a success before the module skip it, and does a wrong password end the stack
//! before the module could enroll a key?

use crate::config::ModuleArgs;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The stack is unsafe or broken: `twofold check` fails.
    Problem,
    /// Worth a look, but can be right (the linter cannot see sshd's AuthenticationMethods).
    Warning,
}

/// One `auth` line of a service file that loads pam_twofold.
#[derive(Debug, PartialEq, Eq)]
pub struct TwofoldLine {
    /// Where the line is: the file (as named in the include, or the service) and 1-based line.
    pub file: String,
    pub line: usize,
    pub control: String,
    pub args: Vec<String>,
    pub findings: Vec<(Severity, String)>,
}

/// Includes nested deeper than this are reported rather than followed (and end a loop).
const MAX_INCLUDE_DEPTH: usize = 8;

/// Finds the `auth` lines that load pam_twofold in service `service` (whose text is `text`) and
/// judges each one. `read` returns the text of an included file by the name the line gives;
/// `enrolls` says whether a line's arguments (and the config they name) turn on enroll_on_login.
pub fn twofold_lines(
    service: &str,
    text: &str,
    read: &dyn Fn(&str) -> Option<String>,
    enrolls: &dyn Fn(&ModuleArgs) -> bool,
) -> Vec<TwofoldLine> {
    let mut lines = Vec::new();
    let mut unreadable = Vec::new();
    flatten(service, text, read, 0, false, &mut lines, &mut unreadable);
    let mut found = Vec::new();
    for (index, entry) in lines.iter().enumerate() {
        if !is_twofold(&entry.module) {
            continue;
        }
        let mut findings = judge(&lines, index, enrolls);
        for name in &unreadable {
            findings.push((
                Severity::Warning,
                format!(
                    "cannot follow included `{name}` (unreadable, or nested too deep): not checked"
                ),
            ));
        }
        found.push(TwofoldLine {
            file: entry.file.clone(),
            line: entry.line,
            control: entry.control.clone(),
            args: entry.args.clone(),
            findings,
        });
    }
    found
}

/// One auth line, with includes expanded in place.
#[derive(Clone, Debug)]
struct Line {
    file: String,
    line: usize,
    control: String,
    module: String,
    args: Vec<String>,
    /// Inside a substack: its `done` and `die` end only the substack.
    in_substack: bool,
}

fn flatten(
    file: &str,
    text: &str,
    read: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    in_substack: bool,
    out: &mut Vec<Line>,
    unreadable: &mut Vec<String>,
) {
    for (index, raw) in text.lines().enumerate() {
        let Some(entry) = Entry::parse(raw) else {
            continue;
        };
        let (name, substack) = match entry {
            Entry::Auth {
                control,
                module,
                args,
            } => {
                out.push(Line {
                    file: file.to_string(),
                    line: index + 1,
                    control,
                    module,
                    args,
                    in_substack,
                });
                continue;
            }
            Entry::Include(name) => (name, false),
            Entry::Substack(name) => (name, true),
        };
        match read(&name).filter(|_| depth < MAX_INCLUDE_DEPTH) {
            Some(included) => flatten(
                &name,
                &included,
                read,
                depth + 1,
                in_substack || substack,
                out,
                unreadable,
            ),
            None => unreadable.push(name),
        }
    }
}

fn judge(
    lines: &[Line],
    at: usize,
    enrolls: &dyn Fn(&ModuleArgs) -> bool,
) -> Vec<(Severity, String)> {
    let ours = &lines[at];
    let mut findings = Vec::new();
    let parsed = match ModuleArgs::parse(&ours.args) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            findings.push((
                Severity::Problem,
                format!("{e}: the module refuses every login here"),
            ));
            None
        }
    };
    if matches!(ours.control.as_str(), "sufficient" | "optional") {
        findings.push((
            Severity::Problem,
            format!(
                "control `{}` lets a login through without a verified second factor; use `required`",
                ours.control
            ),
        ));
    }
    for (index, earlier) in lines[..at].iter().enumerate() {
        if let Some(how) = skips_to_the_end(earlier, index, at) {
            findings.push((
                Severity::Problem,
                format!(
                    "{}:{}: `{}` {how} before pam_twofold runs, so a login can succeed without the second factor",
                    earlier.file, earlier.line, earlier.module
                ),
            ));
        }
    }
    let enrolling = parsed
        .as_ref()
        .is_some_and(|args| !args.forward_pass && enrolls(args));
    if enrolling {
        if let Some(finding) = enrollment_risk(&lines[..at]) {
            findings.push(finding);
        }
    }
    findings
}

/// Whether a success of `line` (at `index`) can end the stack, or jump past pam_twofold (at
/// `twofold`), so that the module never runs.
fn skips_to_the_end(line: &Line, index: usize, twofold: usize) -> Option<&'static str> {
    // done/die in a substack end only the substack, and jumps stay inside it. pam_rootok
    // succeeds only for root (su's stock first line): no login gets past the module through it.
    if line.in_substack || module_name(&line.module) == "pam_rootok.so" {
        return None;
    }
    if line.control == "sufficient" {
        return Some("is `sufficient`: its success ends the stack");
    }
    let actions = bracketed(&line.control)?;
    let on_success = actions
        .iter()
        .find(|(value, _)| *value == "success")
        .or_else(|| actions.iter().find(|(value, _)| *value == "default"))
        .map(|(_, action)| *action)?;
    if on_success == "done" {
        return Some("ends the stack on success (`success=done`)");
    }
    match on_success.parse::<usize>() {
        Ok(jump) if index + jump >= twofold => Some("jumps past it on success"),
        _ => None,
    }
}

/// With enroll_on_login, a wrong password must end the stack before the module: otherwise anyone
/// who knows a user name could enroll a key for it.
fn enroll_risk_message(detail: &str) -> String {
    format!(
        "enroll_on_login, but {detail}: anyone who knows a user name could enroll a key for it \
         (make the password module `requisite`, or follow it with `requisite pam_deny.so` as \
         Debian's common-auth does)"
    )
}

fn enrollment_risk(before: &[Line]) -> Option<(Severity, String)> {
    let Some(password) = before.iter().position(|l| is_password_module(&l.module)) else {
        return Some((
            Severity::Warning,
            "enroll_on_login with no password module before pam_twofold: safe only if \
             something else proved the user first (sshd's AuthenticationMethods \
             publickey,keyboard-interactive)"
                .into(),
        ));
    };
    // From the password module on, some line must end the stack when the password was wrong.
    let ends = before[password..]
        .iter()
        .any(|l| !l.in_substack && stops_on_failure(&l.control));
    if ends {
        return None;
    }
    let detail = if before[password..].iter().all(|l| l.in_substack) {
        "the password is checked in a substack, whose failure does not end the stack"
    } else {
        "no line from the password module on ends the stack on a wrong password"
    };
    Some((Severity::Problem, enroll_risk_message(detail)))
}

/// An `auth` line, or an include of another file's auth lines.
enum Entry {
    Auth {
        control: String,
        module: String,
        args: Vec<String>,
    },
    Include(String),
    Substack(String),
}

impl Entry {
    fn parse(raw: &str) -> Option<Entry> {
        let text = raw.split('#').next().unwrap_or_default().trim();
        if let Some(rest) = text.strip_prefix("@include") {
            return Some(Entry::Include(rest.trim().to_string())).filter(|_| !rest.is_empty());
        }
        let mut words = text.split_whitespace();
        // Linux-PAM reads types and controls without regard to case.
        let kind = words.next()?.to_ascii_lowercase();
        if kind.trim_start_matches('-') != "auth" {
            return None;
        }
        let mut control = words.next()?.to_ascii_lowercase();
        // A bracketed control may contain spaces: `[success=1 default=ignore]`.
        if control.starts_with('[') {
            while !control.ends_with(']') {
                control.push(' ');
                control.push_str(&words.next()?.to_ascii_lowercase());
            }
        }
        let module = words.next()?.to_string();
        match control.as_str() {
            "include" => return Some(Entry::Include(module)),
            "substack" => return Some(Entry::Substack(module)),
            _ => {}
        }
        Some(Entry::Auth {
            control,
            module,
            args: words.map(str::to_string).collect(),
        })
    }
}

fn module_name(module: &str) -> &str {
    module.rsplit('/').next().unwrap_or(module)
}

fn is_twofold(module: &str) -> bool {
    matches!(module_name(module), "pam_twofold.so" | "libpam_twofold.so")
}

/// Modules that check a password (or another first factor) against an account database.
fn is_password_module(module: &str) -> bool {
    matches!(
        module_name(module),
        "pam_unix.so"
            | "pam_sss.so"
            | "pam_ldap.so"
            | "pam_krb5.so"
            | "pam_winbind.so"
            | "pam_userdb.so"
            | "pam_pwdb.so"
    )
}

/// The `value=action` pairs of a bracketed control.
fn bracketed(control: &str) -> Option<Vec<(&str, &str)>> {
    let inner = control.strip_prefix('[')?.strip_suffix(']')?;
    Some(
        inner
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .collect(),
    )
}

/// Whether a failure of this line ends the stack before later lines run.
fn stops_on_failure(control: &str) -> bool {
    if control == "requisite" {
        return true;
    }
    bracketed(control).is_some_and(|actions| {
        actions
            .iter()
            .any(|&(value, action)| action == "die" && matches!(value, "default" | "auth_err"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 12's stock common-auth.
    const DEBIAN_COMMON_AUTH: &str = "auth [success=1 default=ignore] pam_unix.so nullok\n\
                                      auth requisite pam_deny.so\n\
                                      auth required pam_permit.so\n";
    /// RHEL 9's system-auth (abridged): pam_unix is sufficient, the final deny only required.
    const RHEL_SYSTEM_AUTH: &str = "auth required pam_env.so\n\
                                    auth sufficient pam_unix.so try_first_pass nullok\n\
                                    auth required pam_deny.so\n";

    fn files(name: &str) -> Option<String> {
        match name {
            "common-auth" => Some(DEBIAN_COMMON_AUTH.into()),
            "system-auth" | "password-auth" => Some(RHEL_SYSTEM_AUTH.into()),
            "loop" => Some("auth include loop\n".into()),
            _ => None,
        }
    }

    fn lint(text: &str, enroll_on_login: bool) -> Vec<TwofoldLine> {
        twofold_lines("svc", text, &files, &|args| {
            enroll_on_login || args.enroll_on_login
        })
    }

    fn problems(line: &TwofoldLine) -> Vec<&str> {
        line.findings
            .iter()
            .filter(|(s, _)| *s == Severity::Problem)
            .map(|(_, m)| m.as_str())
            .collect()
    }

    #[test]
    fn debian_style_stack_is_fine() {
        let lines = lint(
            "# sshd\n@include common-auth\nauth required pam_twofold.so nullok\n",
            true,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].file.as_str(), lines[0].line), ("svc", 3));
        assert_eq!(lines[0].args, ["nullok"]);
        assert!(lines[0].findings.is_empty(), "{:?}", lines[0].findings);
    }

    #[test]
    fn the_pam_auth_update_line_inside_common_auth_is_found_and_fine() {
        let common = format!("{DEBIAN_COMMON_AUTH}auth required pam_twofold.so\n");
        let read = |name: &str| (name == "common-auth").then(|| common.clone());
        let lines = twofold_lines("sshd", "@include common-auth\n", &read, &|_| true);
        assert_eq!((lines[0].file.as_str(), lines[0].line), ("common-auth", 4));
        assert!(lines[0].findings.is_empty(), "{:?}", lines[0].findings);
    }

    #[test]
    fn requisite_or_die_password_lines_make_enrollment_safe() {
        for control in [
            "requisite",
            "[success=ok new_authtok_reqd=ok default=die]",
            "REQUISITE",
        ] {
            let text = format!("auth {control} pam_unix.so\nauth required pam_twofold.so\n");
            assert!(lint(&text, true)[0].findings.is_empty(), "{control}");
        }
    }

    #[test]
    fn enrollment_after_a_merely_required_password_is_a_problem() {
        let text = "auth required pam_unix.so\n-auth required /lib/security/pam_twofold.so enroll_on_login\n";
        let lines = lint(text, false);
        assert!(problems(&lines[0])[0].contains("requisite"), "{lines:?}");
        // Without enrollment at login the same stack is fine: pam_unix still fails it.
        let text = "auth required pam_unix.so\nauth required pam_twofold.so\n";
        assert!(lint(text, false)[0].findings.is_empty());
    }

    #[test]
    fn a_requisite_line_before_the_password_does_not_count() {
        let text = "auth requisite pam_nologin.so\nauth required pam_unix.so\n\
                    auth required pam_twofold.so\n";
        assert_eq!(problems(&lint(text, true)[0]).len(), 1);
    }

    #[test]
    fn rhel_include_lets_the_password_alone_through() {
        let lines = lint(
            "auth include system-auth\nauth required pam_twofold.so\n",
            false,
        );
        let found = problems(&lines[0]);
        assert!(
            found[0].starts_with("system-auth:2: `pam_unix.so` is `sufficient`"),
            "{found:?}"
        );
    }

    #[test]
    fn rhel_substack_does_not_end_the_stack_on_a_wrong_password() {
        let text = "auth substack password-auth\nauth required pam_twofold.so\n";
        // Without enrollment the substack is fine: its sufficient ends only the substack.
        assert!(lint(text, false)[0].findings.is_empty());
        let found = problems(&lint(text, true)[0]).join("\n");
        assert!(found.contains("substack"), "{found}");
    }

    #[test]
    fn jumps_and_done_past_the_module_are_problems() {
        let text = "auth [success=2 default=ignore] pam_unix.so\nauth requisite pam_deny.so\n\
                    auth required pam_twofold.so\nauth required pam_permit.so\n";
        assert!(problems(&lint(text, false)[0])[0].contains("jumps past it"));
        let text = "auth [success=done default=die] pam_unix.so\nauth required pam_twofold.so\n";
        assert!(problems(&lint(text, false)[0])[0].contains("success=done"));
    }

    #[test]
    fn su_s_root_shortcut_is_not_a_bypass() {
        let text =
            "auth sufficient pam_rootok.so\n@include common-auth\nauth required pam_twofold.so\n";
        assert!(lint(text, true)[0].findings.is_empty());
    }

    #[test]
    fn twofold_alone_with_enrollment_is_a_warning_and_forward_pass_never_enrolls() {
        let lines = lint("auth required pam_twofold.so\n", true);
        assert_eq!(lines[0].findings.len(), 1);
        assert_eq!(lines[0].findings[0].0, Severity::Warning);
        assert!(lint("auth required pam_twofold.so forward_pass\n", true)[0]
            .findings
            .is_empty());
    }

    #[test]
    fn weak_controls_and_unknown_arguments_are_problems() {
        let text = "auth requisite pam_unix.so\nauth sufficient pam_twofold.so nulok # typo\n";
        let lines = lint(text, false);
        let found = problems(&lines[0]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("unknown option `nulok`"));
        assert!(found[1].contains("sufficient"));
    }

    #[test]
    fn unreadable_and_looping_includes_are_reported_not_followed_forever() {
        let text = "@include missing-file\nauth include loop\nauth required pam_twofold.so\n";
        let lines = lint(text, false);
        let warnings: Vec<_> = lines[0].findings.iter().map(|(_, m)| m.as_str()).collect();
        assert!(
            warnings.iter().any(|m| m.contains("`missing-file`")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|m| m.contains("`loop`")),
            "{warnings:?}"
        );
    }

    #[test]
    fn other_lines_and_types_are_ignored() {
        let text = "account required pam_twofold.so\n#auth required pam_twofold.so\n\
                    session optional pam_twofold.so\nauth [broken\n";
        assert!(lint(text, true).is_empty());
    }
}
