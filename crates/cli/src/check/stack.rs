//! Reading PAM service files for `twofold check`: where pam_twofold is stacked, with which
//! arguments, and whether the stack around it does what an administrator means.
//!
//! The stack is not judged line by line but run: every path libpam could take through the
//! `auth` lines is followed, with the module actions of pam.conf(5) (ok, done, bad, die, ignore,
//! reset, jumps; `include` inlined, `substack` one module to its parent). Each module may succeed
//! or fail, except pam_deny (fails) and pam_permit (succeeds). Three questions are asked:
//!
//! - can the stack succeed without pam_twofold running?
//! - can it succeed although pam_twofold failed (a wrong code)?
//! - with enroll_on_login: can pam_twofold run after a wrong password (no password module
//!   succeeded), where it would enroll a key for whoever typed the user name?
//!
//! It is still a model: it cannot know what a module does beyond its name, nor sshd's
//! AuthenticationMethods.

use std::collections::BTreeSet;

use twofold_core::config::ModuleArgs;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The stack is unsafe or broken: `twofold check` fails.
    Problem,
    /// Worth a look, but can be right.
    Warning,
}

/// One line of a service's stack that loads pam_twofold, and what is wrong around it.
#[derive(Debug, PartialEq, Eq)]
pub struct TwofoldLine {
    /// Where the line is: the file (as named in the include, or the service) and 1-based line.
    pub file: String,
    pub line: usize,
    pub control: String,
    pub args: Vec<String>,
    pub findings: Vec<(Severity, String)>,
}

/// Includes nested deeper than this are reported rather than followed (libpam allows 16).
const MAX_INCLUDE_DEPTH: usize = 16;
/// Paths followed before giving up on a stack too branchy to check.
const MAX_PATHS: usize = 50_000;

/// Finds the `auth` lines that load pam_twofold in service `service` (whose text is `text`) and
/// judges the stack. `read` returns the text of an included file by the name the line gives;
/// `enrolls` says whether a line's arguments (and the config they name) turn on
/// enroll_on_login, or why the module there cannot work at all.
pub fn twofold_lines(
    service: &str,
    text: &str,
    read: &dyn Fn(&str) -> Option<String>,
    enrolls: &dyn Fn(&ModuleArgs) -> Result<bool, String>,
) -> Vec<TwofoldLine> {
    let mut loader = Loader {
        read,
        labels: Vec::new(),
        cannot_start: false,
        unreadable: BTreeSet::new(),
        path: vec![service.to_string()],
    };
    let stack = loader.load(service, text);
    let mut modules = Vec::new();
    collect(&stack, &mut modules);
    let mut found: Vec<TwofoldLine> = Vec::new();
    let mut enrolling = Vec::new();
    let mut ids = Vec::new();
    for module in modules.iter().filter(|m| m.kind == Kind::Twofold) {
        ids.push(module.id);
        let mut findings = Vec::new();
        let mut enrolls_here = false;
        match ModuleArgs::parse(&module.args) {
            Ok(args) => match enrolls(&args) {
                Ok(on) => enrolls_here = on && !args.forward_pass,
                Err(why) => findings.push((Severity::Problem, why)),
            },
            Err(e) => findings.push((
                Severity::Problem,
                format!("{e}: the module refuses every login here"),
            )),
        }
        enrolling.push(enrolls_here);
        found.push(TwofoldLine {
            file: module.file.clone(),
            line: module.line,
            control: module.control.clone(),
            args: module.args.clone(),
            findings,
        });
    }
    if found.is_empty() {
        return found;
    }
    let rootok_is_root_only = ROOT_ONLY_ROOTOK.contains(&service);
    // A service libpam cannot start runs nothing, and lets nobody in.
    let runnable: &[Node] = if loader.cannot_start { &[] } else { &stack };
    let verdict = Runner::new(rootok_is_root_only, &loader.labels).run(runnable);
    let first = &mut found[0].findings;
    if verdict.too_complex {
        first.push((
            Severity::Warning,
            "the stack has too many paths to follow: not checked".into(),
        ));
    }
    if let Some(path) = &verdict.bypass {
        first.push((
            Severity::Problem,
            format!("a login can succeed without pam_twofold running, e.g. when {path}"),
        ));
    }
    for (index, twofold) in found.iter_mut().enumerate() {
        let at = ids[index];
        if let Some(path) = verdict.failed_but_passed.get(&at) {
            twofold.findings.push((
                Severity::Problem,
                format!("a wrong code here can still let the login through, e.g. when {path}"),
            ));
        }
        if let Some(reached) = verdict.reached_after_wrong_password.get(&at) {
            let harm = if enrolling[index] {
                "with enroll_on_login, anyone who knows a user name could enroll a key for it"
            } else {
                "anyone who knows a user name reaches the code prompt, learns whether the user is \
                 enrolled, and spends their failed-code allowance"
            };
            twofold.findings.push((
                Severity::Problem,
                format!(
                    "a wrong password can reach pam_twofold (e.g. when {}): {harm}; fix: make \
                     {} end the stack on failure (`requisite`), or follow it with \
                     `auth requisite pam_deny.so` as Debian's common-auth does (a `substack` \
                     cannot end the stack: give the password module its own `requisite` line)",
                    reached.path, reached.password_line
                ),
            ));
        } else if enrolling[index] && !verdict.any_password_module && !loader.cannot_start {
            // Only sshd can prove the user before PAM runs (AuthenticationMethods publickey,...),
            // and this model cannot see sshd_config: there it is the admin's call.
            let severity = if SERVICES_WITH_OWN_FIRST_FACTOR.contains(&service) {
                Severity::Warning
            } else {
                Severity::Problem
            };
            twofold.findings.push((
                severity,
                "enroll_on_login with no password module before pam_twofold: whoever reaches \
                 this service could enroll a key for an unenrolled account; safe only if \
                 something else proved the user first (sshd's AuthenticationMethods \
                 publickey,keyboard-interactive)"
                    .into(),
            ));
        }
    }
    if loader.cannot_start {
        found[0].findings.push((
            Severity::Warning,
            "libpam cannot start this service (a file it `@include`s is missing): every login \
             through it fails"
                .into(),
        ));
    }
    for name in &loader.unreadable {
        found[0].findings.push((
            Severity::Warning,
            format!("cannot follow included `{name}` (unreadable, a loop, or nested too deep): not checked"),
        ));
    }
    found
}

/// Services where pam_rootok is the "root needs no password" shortcut: it succeeds only when
/// root runs them, and root is not who a second factor keeps out. Elsewhere (sshd, login run as
/// root) it would let everyone in.
const ROOT_ONLY_ROOTOK: &[&str] = &["su", "su-l", "runuser", "runuser-l", "chfn", "chsh"];

/// Services that can prove the user before PAM's auth stack runs (sshd's public keys).
const SERVICES_WITH_OWN_FIRST_FACTOR: &[&str] = &["sshd"];

// ---- The stack as libpam sees it.

enum Node {
    Module(Box<Module>),
    /// `substack`: done and die end only the substack, and a jump in the parent counts it as
    /// one module.
    Substack(Vec<Node>),
}

#[derive(Clone)]
struct Module {
    /// Its index among the stack's modules, for the report of a path.
    id: usize,
    file: String,
    line: usize,
    control: String,
    name: String,
    args: Vec<String>,
    kind: Kind,
    /// What the control does with each return code this model follows, by `Code` index.
    actions: [Action; CODES.len()],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Twofold,
    /// Checks a password (or another first factor) against an account database.
    Password,
    Deny,
    Permit,
    Rootok,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Ignore,
    Ok,
    Done,
    Bad,
    Die,
    Reset,
    Jump(usize),
}

struct Loader<'a> {
    read: &'a dyn Fn(&str) -> Option<String>,
    /// The label of each module loaded so far, by id.
    labels: Vec<String>,
    unreadable: BTreeSet<String>,
    /// The includes being read, to stop loops.
    path: Vec<String>,
    /// libpam would refuse to start the service (a missing `@include` in the service file).
    cannot_start: bool,
}

impl Loader<'_> {
    fn load(&mut self, file: &str, text: &str) -> Vec<Node> {
        let mut nodes = Vec::new();
        for (line, entry) in logical_lines(text) {
            let (name, substack, at_form) = match Entry::parse(&entry) {
                None => continue,
                Some(Entry::Module(control, name, args)) => {
                    nodes.push(Node::Module(Box::new(
                        self.module(file, line, control, name, args),
                    )));
                    continue;
                }
                Some(Entry::Include(name)) => (name, false, false),
                Some(Entry::AtInclude(name)) => (name, false, true),
                Some(Entry::Substack(name)) => (name, true, false),
            };
            let text = (!self.path.contains(&name) && self.path.len() <= MAX_INCLUDE_DEPTH)
                .then(|| (self.read)(&name))
                .flatten();
            let Some(text) = text else {
                self.unreadable.insert(name);
                // A missing `@include` stops libpam from starting the service at all when the
                // service file names it, and is skipped silently in an included file.
                if at_form {
                    if self.path.len() == 1 {
                        self.cannot_start = true;
                    }
                    continue;
                }
                // libpam fails a stack whose include it cannot read; for a substack it keeps the
                // substack's own entry too, which a jump counts.
                if substack {
                    nodes.push(Node::Substack(Vec::new()));
                }
                nodes.push(Node::Module(Box::new(self.module(
                    file,
                    line,
                    "required".into(),
                    "pam_deny.so".into(),
                    vec![],
                ))));
                continue;
            };
            self.path.push(name.clone());
            let included = self.load(&name, &text);
            self.path.pop();
            if substack {
                nodes.push(Node::Substack(included));
            } else {
                nodes.extend(included);
            }
        }
        nodes
    }
}

impl Loader<'_> {
    fn module(
        &mut self,
        file: &str,
        line: usize,
        control: String,
        name: String,
        args: Vec<String>,
    ) -> Module {
        let module = Module::new(self.labels.len(), file, line, control, name, args);
        self.labels.push(module.label());
        module
    }
}

impl Module {
    fn new(
        id: usize,
        file: &str,
        line: usize,
        control: String,
        name: String,
        args: Vec<String>,
    ) -> Module {
        let kind = match name.rsplit('/').next().unwrap_or(&name) {
            "pam_twofold.so" | "libpam_twofold.so" => Kind::Twofold,
            "pam_unix.so" | "pam_sss.so" | "pam_ldap.so" | "pam_krb5.so" | "pam_winbind.so"
            | "pam_userdb.so" | "pam_pwdb.so" | "pam_radius_auth.so" | "pam_tacplus.so" => {
                Kind::Password
            }
            "pam_deny.so" => Kind::Deny,
            "pam_permit.so" => Kind::Permit,
            "pam_rootok.so" => Kind::Rootok,
            _ => Kind::Other,
        };
        let actions = actions(&control);
        Module {
            id,
            file: file.to_string(),
            line,
            control,
            name,
            args,
            kind,
            actions,
        }
    }

    fn label(&self) -> String {
        let name = self.name.rsplit('/').next().unwrap_or(&self.name);
        format!("{name} ({}:{})", self.file, self.line)
    }
}

/// The return codes the model follows: what a password or code check gives (success, a wrong
/// answer), and the others modules commonly return, each of which a control may route apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    Success,
    AuthErr,
    Ignore,
    UserUnknown,
    AuthinfoUnavail,
    Maxtries,
    ConvErr,
}

const CODES: [Code; 7] = [
    Code::Success,
    Code::AuthErr,
    Code::Ignore,
    Code::UserUnknown,
    Code::AuthinfoUnavail,
    Code::Maxtries,
    Code::ConvErr,
];

impl Code {
    fn index(self) -> usize {
        CODES.iter().position(|&c| c == self).unwrap_or(0)
    }

    /// Its name in a bracketed control.
    fn name(self) -> &'static str {
        match self {
            Code::Success => "success",
            Code::AuthErr => "auth_err",
            Code::Ignore => "ignore",
            Code::UserUnknown => "user_unknown",
            Code::AuthinfoUnavail => "authinfo_unavail",
            Code::Maxtries => "maxtries",
            Code::ConvErr => "conv_err",
        }
    }
}

/// Every value name a bracketed control may use (pam.conf(5)); any other makes libpam treat the
/// whole line as `bad` for every value.
const VALUE_NAMES: &[&str] = &[
    "success",
    "open_err",
    "symbol_err",
    "service_err",
    "system_err",
    "buf_err",
    "perm_denied",
    "auth_err",
    "cred_insufficient",
    "authinfo_unavail",
    "user_unknown",
    "maxtries",
    "new_authtok_reqd",
    "acct_expired",
    "session_err",
    "cred_unavail",
    "cred_expired",
    "cred_err",
    "no_module_data",
    "conv_err",
    "authtok_err",
    "authtok_recover_err",
    "authtok_lock_busy",
    "authtok_disable_aging",
    "try_again",
    "ignore",
    "abort",
    "authtok_expired",
    "module_unknown",
    "bad_item",
    "conv_again",
    "incomplete",
    "default",
];

/// What a control does with each code, as libpam reads it.
fn actions(control: &str) -> [Action; CODES.len()] {
    let keyword = |success: Action, ignore: Action, other: Action| {
        CODES.map(|code| match code {
            Code::Success => success,
            Code::Ignore => ignore,
            _ => other,
        })
    };
    // Keywords are read without regard to case; a bracket's contents are not.
    match control.to_ascii_lowercase().as_str() {
        "required" => return keyword(Action::Ok, Action::Ignore, Action::Bad),
        "requisite" => return keyword(Action::Ok, Action::Ignore, Action::Die),
        "sufficient" => return keyword(Action::Done, Action::Ignore, Action::Ignore),
        "optional" => return keyword(Action::Ok, Action::Ignore, Action::Ignore),
        _ => {}
    }
    let all_bad = [Action::Bad; CODES.len()];
    let Some(inner) = control.strip_prefix('[').and_then(|c| c.strip_suffix(']')) else {
        return all_bad;
    };
    // `value=action` pairs in order: a later value overrides an earlier one, and `default` fills
    // only what is still unset when it is read. Unset at the end means bad. Anything libpam
    // cannot parse makes every value bad.
    let mut table: [Option<Action>; CODES.len()] = [None; CODES.len()];
    for pair in inner.split_whitespace() {
        let Some((value, action)) = pair.split_once('=') else {
            return all_bad;
        };
        let action = match action {
            "ignore" => Action::Ignore,
            "ok" => Action::Ok,
            "done" => Action::Done,
            "bad" => Action::Bad,
            "die" => Action::Die,
            "reset" => Action::Reset,
            n => match n.parse::<usize>() {
                Ok(jump) if jump > 0 => Action::Jump(jump),
                _ => return all_bad,
            },
        };
        if !VALUE_NAMES.contains(&value) {
            return all_bad;
        }
        if value == "default" {
            for slot in table.iter_mut().filter(|slot| slot.is_none()) {
                *slot = Some(action);
            }
        } else if let Some(code) = CODES.iter().find(|c| c.name() == value) {
            table[code.index()] = Some(action);
        }
    }
    table.map(|action| action.unwrap_or(Action::Bad))
}

/// Lines with comments removed and `\` continuations joined, each with its first line number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        let without_comment = raw.split('#').next().unwrap_or_default();
        match without_comment.strip_suffix('\\') {
            Some(continued) => {
                joined.push_str(continued);
                joined.push(' ');
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(without_comment);
                lines.push((start, joined));
            }
        }
    }
    lines.extend(pending);
    lines
}

/// An `auth` line, or an include of another file's auth lines.
enum Entry {
    Module(String, String, Vec<String>),
    Include(String),
    /// `@include`, which libpam treats differently when the file is missing.
    AtInclude(String),
    Substack(String),
}

impl Entry {
    fn parse(text: &str) -> Option<Entry> {
        let text = text.trim();
        if let Some(name) = text.strip_prefix("@include") {
            let name = name.strip_prefix(char::is_whitespace)?.trim();
            return (!name.is_empty()).then(|| Entry::AtInclude(name.to_string()));
        }
        let (kind, rest) = text.split_once(char::is_whitespace)?;
        // Linux-PAM reads types and controls without regard to case; `-` hides a missing module.
        let kind = kind.to_ascii_lowercase();
        if kind.strip_prefix('-').unwrap_or(&kind) != "auth" {
            return None;
        }
        let rest = rest.trim_start();
        // A bracketed control may contain spaces, and the module may follow `]` directly.
        let (control, rest) = if rest.starts_with('[') {
            let end = rest.find(']')?;
            (rest[..=end].to_string(), &rest[end + 1..])
        } else {
            let (control, rest) = rest.split_once(char::is_whitespace)?;
            (control.to_ascii_lowercase(), rest)
        };
        let mut words = rest.split_whitespace();
        let module = words.next()?.to_string();
        match control.as_str() {
            "include" => Some(Entry::Include(module)),
            "substack" => Some(Entry::Substack(module)),
            _ => Some(Entry::Module(
                control,
                module,
                words.map(str::to_string).collect(),
            )),
        }
    }
}

fn collect<'s>(nodes: &'s [Node], out: &mut Vec<&'s Module>) {
    for node in nodes {
        match node {
            Node::Module(module) => out.push(module),
            Node::Substack(inner) => collect(inner, out),
        }
    }
}

// ---- Running the stack.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Impression {
    Undecided,
    Positive,
    Negative,
}

/// What `Run::key` compares.
type RunKey = (
    Impression,
    bool,
    Vec<(Impression, bool)>,
    bool,
    Option<usize>,
    bool,
    bool,
);

/// The state of one path through the stack.
#[derive(Clone)]
struct Run {
    /// What the path decides so far: libpam's impression, and with a positive one whether the
    /// status it holds is success.
    impression: Impression,
    status_success: bool,
    /// The decision at the start of each substack being run: `reset` goes back to it.
    entered: Vec<(Impression, bool)>,
    twofold_ran: bool,
    /// A pam_twofold line that returned anything but success on this path.
    twofold_failed: Option<usize>,
    password_succeeded: bool,
    password_failed: bool,
    /// The module results of this path (module id, succeeded), for the report.
    trail: Vec<(usize, bool)>,
}

impl Run {
    /// Everything that decides how the path goes on, without how it got here.
    fn key(&self) -> RunKey {
        (
            self.impression,
            self.status_success,
            self.entered.clone(),
            self.twofold_ran,
            self.twofold_failed,
            self.password_succeeded,
            self.password_failed,
        )
    }
}

#[derive(Default)]
struct Verdict {
    bypass: Option<String>,
    /// By pam_twofold module id.
    failed_but_passed: std::collections::BTreeMap<usize, String>,
    reached_after_wrong_password: std::collections::BTreeMap<usize, WrongPassword>,
    /// The ids of the password modules seen.
    password_modules: BTreeSet<usize>,
    any_password_module: bool,
    too_complex: bool,
}

/// How a wrong password reaches pam_twofold: an example path, and the password line it failed.
struct WrongPassword {
    path: String,
    password_line: String,
}

struct Runner<'l> {
    rootok_is_root_only: bool,
    labels: &'l [String],
    paths: usize,
    verdict: Verdict,
}

impl<'l> Runner<'l> {
    fn new(rootok_is_root_only: bool, labels: &'l [String]) -> Runner<'l> {
        Runner {
            rootok_is_root_only,
            labels,
            paths: 0,
            verdict: Verdict::default(),
        }
    }

    fn run(mut self, stack: &[Node]) -> Verdict {
        let start = Run {
            impression: Impression::Undecided,
            status_success: false,
            entered: Vec::new(),
            twofold_ran: false,
            twofold_failed: None,
            password_succeeded: false,
            password_failed: false,
            trail: Vec::new(),
        };
        for run in self.sequence(stack, start) {
            let success = run.impression == Impression::Positive && run.status_success;
            if !success {
                continue;
            }
            if !run.twofold_ran && self.verdict.bypass.is_none() {
                self.verdict.bypass = Some(self.describe(&run.trail));
            }
            if let Some(id) = run.twofold_failed {
                let path = self.describe(&run.trail);
                self.verdict.failed_but_passed.entry(id).or_insert(path);
            }
        }
        self.verdict
    }

    /// Every way `nodes` (one level: the stack, or a substack) can end, starting from `run`.
    /// Paths that reach a node in the same state are followed once.
    fn sequence(&mut self, nodes: &[Node], run: Run) -> Vec<Run> {
        let mut ended = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut pending = vec![(0usize, run)];
        while let Some((at, mut run)) = pending.pop() {
            if !seen.insert((at, run.key())) {
                continue;
            }
            if self.paths > MAX_PATHS {
                self.verdict.too_complex = true;
                return ended;
            }
            self.paths += 1;
            if at > nodes.len() {
                // libpam: a jump past the end of its level is a bad jump, which fails the login.
                run.impression = Impression::Negative;
            }
            let Some(node) = nodes.get(at) else {
                ended.push(run);
                continue;
            };
            match node {
                Node::Substack(inner) => {
                    let mut entering = run;
                    entering
                        .entered
                        .push((entering.impression, entering.status_success));
                    for mut left in self.sequence(inner, entering) {
                        left.entered.pop();
                        pending.push((at + 1, left));
                    }
                }
                Node::Module(module) => {
                    // Codes the control routes the same way lead to the same state.
                    let mut taken = Vec::new();
                    for &code in self.codes(module) {
                        let action = module.actions[code.index()];
                        let succeeds = code == Code::Success;
                        if taken.contains(&(action, succeeds)) {
                            continue;
                        }
                        taken.push((action, succeeds));
                        let mut next = run.clone();
                        next.trail.push((module.id, succeeds));
                        self.note(module, succeeds, &mut next);
                        match apply(action, succeeds, &mut next) {
                            Next::Continue => pending.push((at + 1, next)),
                            Next::Jump(n) => pending.push((at + 1 + n, next)),
                            Next::Stop => ended.push(next),
                        }
                    }
                }
            }
        }
        ended
    }

    /// What a module may return on some login.
    fn codes(&self, module: &Module) -> &'static [Code] {
        match module.kind {
            Kind::Deny => &[Code::AuthErr],
            Kind::Permit => &[Code::Success],
            Kind::Rootok if self.rootok_is_root_only => &[Code::AuthErr],
            // A locked user gets PAM_MAXTRIES, a hang-up PAM_CONV_ERR, a broken file
            // PAM_AUTHINFO_UNAVAIL. (PAM_IGNORE, for nullok, is meant to let users through.)
            Kind::Twofold => &[
                Code::Success,
                Code::AuthErr,
                Code::Maxtries,
                Code::ConvErr,
                Code::AuthinfoUnavail,
            ],
            // Password modules answer for the accounts they know; pam_unix never ignores.
            Kind::Password => &[
                Code::Success,
                Code::AuthErr,
                Code::UserUnknown,
                Code::AuthinfoUnavail,
            ],
            _ => &[
                Code::Success,
                Code::AuthErr,
                Code::Ignore,
                Code::UserUnknown,
                Code::AuthinfoUnavail,
            ],
        }
    }

    /// Records what the module's result means for the three questions.
    fn note(&mut self, module: &Module, succeeds: bool, run: &mut Run) {
        match module.kind {
            Kind::Password => {
                self.verdict.any_password_module = true;
                self.verdict.password_modules.insert(module.id);
                if succeeds {
                    run.password_succeeded = true;
                } else {
                    run.password_failed = true;
                }
            }
            Kind::Twofold => {
                run.twofold_ran = true;
                if run.password_failed && !run.password_succeeded {
                    let before = &run.trail[..run.trail.len() - 1];
                    let failed_password = before
                        .iter()
                        .rev()
                        .find(|(id, ok)| !ok && self.verdict.password_modules.contains(id));
                    let password_line = failed_password
                        .and_then(|(id, _)| self.labels.get(*id))
                        .map_or("the password line".into(), |label| format!("`{label}`"));
                    let reached = WrongPassword {
                        path: self.describe(before),
                        password_line,
                    };
                    self.verdict
                        .reached_after_wrong_password
                        .entry(module.id)
                        .or_insert(reached);
                }
                if !succeeds && run.twofold_failed.is_none() {
                    run.twofold_failed = Some(module.id);
                }
            }
            _ => {}
        }
    }

    /// A path in words: "pam_unix.so (common-auth:1) fails, pam_deny.so (...) fails".
    fn describe(&self, trail: &[(usize, bool)]) -> String {
        if trail.is_empty() {
            return "no module runs".into();
        }
        let steps: Vec<String> = trail
            .iter()
            .map(|&(id, succeeded)| {
                let label = self.labels.get(id).map_or("?", String::as_str);
                format!("{label} {}", if succeeded { "succeeds" } else { "fails" })
            })
            .collect();
        steps.join(", ")
    }
}

enum Next {
    Continue,
    Jump(usize),
    Stop,
}

/// Linux-PAM's rules for one module's result (pam.conf(5), "actions").
fn apply(action: Action, succeeds: bool, run: &mut Run) -> Next {
    match action {
        Action::Ignore => Next::Continue,
        Action::Ok | Action::Done => {
            let undecided_or_good = run.impression == Impression::Undecided
                || (run.impression == Impression::Positive && run.status_success);
            if undecided_or_good {
                run.impression = Impression::Positive;
                run.status_success = succeeds;
            }
            if action == Action::Done && run.impression != Impression::Negative {
                Next::Stop
            } else {
                Next::Continue
            }
        }
        Action::Bad | Action::Die => {
            run.impression = Impression::Negative;
            if action == Action::Die {
                Next::Stop
            } else {
                Next::Continue
            }
        }
        Action::Reset => {
            // Back to the decision at the start of the substack, or of the stack.
            (run.impression, run.status_success) = run
                .entered
                .last()
                .copied()
                .unwrap_or((Impression::Undecided, false));
            Next::Continue
        }
        Action::Jump(n) => Next::Jump(n),
    }
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
            "loop" => Some("auth include loop\n@include loop\n".into()),
            _ => None,
        }
    }

    fn lint_as(service: &str, text: &str, enroll_on_login: bool) -> Vec<TwofoldLine> {
        twofold_lines(service, text, &files, &|args| {
            Ok(enroll_on_login || args.enroll_on_login)
        })
    }

    fn lint(text: &str, enroll_on_login: bool) -> Vec<TwofoldLine> {
        lint_as("svc", text, enroll_on_login)
    }

    fn problems(lines: &[TwofoldLine]) -> Vec<String> {
        lines
            .iter()
            .flat_map(|l| &l.findings)
            .filter(|(s, _)| *s == Severity::Problem)
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn is_clean(text: &str, enroll_on_login: bool) -> bool {
        let lines = lint(text, enroll_on_login);
        assert!(!lines.is_empty(), "no twofold line in {text}");
        lines.iter().all(|l| l.findings.is_empty())
    }

    #[test]
    fn debian_style_stacks_are_fine() {
        let lines = lint(
            "# sshd\n@include common-auth\nauth required pam_twofold.so nullok\n",
            true,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].file.as_str(), lines[0].line), ("svc", 3));
        assert_eq!(lines[0].args, ["nullok"]);
        assert!(lines[0].findings.is_empty(), "{:?}", lines[0].findings);
        // The line pam-auth-update adds inside common-auth.
        let common = format!("{DEBIAN_COMMON_AUTH}auth required pam_twofold.so\n");
        let read = |name: &str| (name == "common-auth").then(|| common.clone());
        let lines = twofold_lines("sshd", "@include common-auth\n", &read, &|_| Ok(true));
        assert_eq!((lines[0].file.as_str(), lines[0].line), ("common-auth", 4));
        assert!(lines[0].findings.is_empty(), "{:?}", lines[0].findings);
        // su: root's pam_rootok shortcut is not a bypass there.
        let su =
            "auth sufficient pam_rootok.so\n@include common-auth\nauth required pam_twofold.so\n";
        assert!(lint_as("su", su, true)
            .iter()
            .all(|l| l.findings.is_empty()));
    }

    #[test]
    fn requisite_or_die_password_lines_make_enrollment_safe() {
        for control in [
            "requisite",
            "[success=ok new_authtok_reqd=ok default=die]",
            "REQUISITE",
        ] {
            let text = format!("auth {control} pam_unix.so\nauth required pam_twofold.so\n");
            assert!(is_clean(&text, true), "{control}");
        }
        // A requisite line that is not about the password does not end a wrong-password path.
        let text = "auth required pam_unix.so\nauth requisite pam_succeed_if.so uid >= 1000\n\
                    auth required pam_twofold.so\n";
        assert_eq!(problems(&lint(text, true)).len(), 1);
    }

    #[test]
    fn a_wrong_password_reaching_the_module_is_a_problem_naming_the_line_to_change() {
        let text = "auth required pam_unix.so\n-auth required /lib/security/pam_twofold.so\n";
        for enroll_on_login in [false, true] {
            let found = problems(&lint(text, enroll_on_login));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].contains("pam_unix.so (svc:1) fails"), "{found:?}");
            assert!(
                found[0].contains("fix: make `pam_unix.so (svc:1)` end the stack"),
                "{found:?}"
            );
            assert_eq!(
                found[0].contains("could enroll a key"),
                enroll_on_login,
                "{found:?}"
            );
        }
    }

    #[test]
    fn explicit_values_override_default_and_jumps_skip_the_deny() {
        for password in [
            "auth [success=ok auth_err=ignore default=die] pam_unix.so\n",
            "auth [success=ok default=1] pam_unix.so\nauth requisite pam_deny.so\n",
            "auth requisite pam_nologin.so\nauth required pam_unix.so\n",
        ] {
            let text = format!("{password}auth required pam_twofold.so\n");
            assert_eq!(problems(&lint(&text, true)).len(), 1, "{text}");
            assert_eq!(problems(&lint(&text, false)).len(), 1, "{text}");
        }
    }

    #[test]
    fn rhel_include_lets_the_password_alone_through() {
        let found = problems(&lint(
            "auth include system-auth\nauth required pam_twofold.so\n",
            false,
        ));
        // And a wrong password runs on to the module through the final, merely required deny.
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].contains("wrong password can reach"), "{found:?}");
        assert!(
            found[0].contains("without pam_twofold running"),
            "{found:?}"
        );
        assert!(
            found[0].contains("pam_unix.so (system-auth:2) succeeds"),
            "{found:?}"
        );
    }

    #[test]
    fn rhel_substack_lets_a_wrong_password_reach_the_module() {
        let text = "auth substack password-auth\nauth required pam_twofold.so\n";
        // The substack's sufficient ends only the substack: the module always runs. But a failed
        // substack does not end the stack either: a wrong password reaches the module.
        for enroll_on_login in [false, true] {
            let found = problems(&lint(text, enroll_on_login));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].contains("`substack` cannot end"), "{found:?}");
        }
        // The recipe the README gives for RHEL: the password on its own requisite line.
        let recipe = "auth required pam_env.so\nauth requisite pam_unix.so\n\
                      auth required pam_twofold.so\n";
        assert!(is_clean(recipe, true));
        // Inside a substack, a sufficient line before the module skips it.
        let read = |name: &str| {
            (name == "pw")
                .then(|| "auth sufficient pam_unix.so\nauth required pam_twofold.so\n".into())
        };
        let lines = twofold_lines("sshd", "auth substack pw\n", &read, &|_| Ok(false));
        assert!(problems(&lines)[0].contains("without pam_twofold running"));
    }

    #[test]
    fn weak_controls_on_the_module_are_problems() {
        for control in [
            "sufficient",
            "optional",
            "[success=ok default=ignore]",
            "[success=ok auth_err=ignore default=bad]",
        ] {
            let text = format!("auth requisite pam_unix.so\nauth {control} pam_twofold.so\n");
            let found = problems(&lint(&text, false));
            assert!(
                found
                    .iter()
                    .any(|m| m.contains("wrong code here can still let")),
                "{control}: {found:?}"
            );
        }
    }

    #[test]
    fn jumps_done_and_substack_jumps_past_the_module_are_problems() {
        for text in [
            "auth [success=2 default=ignore] pam_unix.so\nauth requisite pam_deny.so\n\
             auth required pam_twofold.so\nauth required pam_permit.so\n",
            "auth [success=done default=die] pam_unix.so\nauth required pam_twofold.so\n",
            "auth requisite pam_unix.so\nauth [success=ignore default=1] pam_succeed_if.so user ingroup mfa\n\
             auth required pam_twofold.so\nauth required pam_permit.so\n",
            "auth requisite pam_unix.so\nauth [success=2 default=ignore] pam_succeed_if.so quiet\n\
             auth substack common-auth\nauth required pam_twofold.so\nauth required pam_permit.so\n",
            "auth sufficient pam_rootok.so\n@include common-auth\nauth required pam_twofold.so\n",
            "auth [success=done \\\n default=ignore] pam_unix.so\nauth required pam_twofold.so\n",
            "auth [success=done default=ignore]pam_unix.so\nauth required pam_twofold.so\n",
        ] {
            let found = problems(&lint(text, false));
            assert!(
                found.iter().any(|m| m.contains("without pam_twofold running")),
                "{text}: {found:?}"
            );
        }
    }

    #[test]
    fn enrollment_with_no_first_factor_is_a_problem_but_sshd_may_have_one_of_its_own() {
        for service in ["login", "su", "svc"] {
            let lines = lint_as(service, "auth required pam_twofold.so\n", true);
            assert_eq!(lines[0].findings.len(), 1);
            assert_eq!(lines[0].findings[0].0, Severity::Problem, "{service}");
            assert!(lines[0].findings[0].1.contains("could enroll a key"));
        }
        let lines = lint_as("sshd", "auth required pam_twofold.so\n", true);
        assert_eq!(lines[0].findings.len(), 1);
        assert_eq!(lines[0].findings[0].0, Severity::Warning);
        assert!(is_clean("auth required pam_twofold.so\n", false));
        assert!(is_clean(
            "auth required pam_twofold.so forward_pass\n",
            true
        ));
    }

    #[test]
    fn unknown_arguments_and_unusable_configs_are_problems() {
        let found = problems(&lint(
            "auth requisite pam_unix.so\nauth required pam_twofold.so nulok\n",
            false,
        ));
        assert!(found[0].contains("unknown option `nulok`"), "{found:?}");
        let lines = twofold_lines(
            "svc",
            "auth requisite pam_unix.so\nauth required pam_twofold.so config=/x.toml\n",
            &files,
            &|_| Err("config=/x.toml: cannot read".into()),
        );
        assert_eq!(problems(&lines), ["config=/x.toml: cannot read"]);
    }

    #[test]
    fn unreadable_and_looping_includes_are_reported_once_and_fail_closed() {
        let text = "auth include missing-file\nauth include loop\nauth required pam_twofold.so\n";
        let lines = lint(text, false);
        let warnings: Vec<_> = lines[0].findings.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
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
    fn a_missing_at_include_stops_the_service_or_is_skipped_in_an_included_file() {
        // In the service file: libpam cannot start the service, so nothing runs.
        let text =
            "auth required pam_unix.so\n@include /nonexistent\nauth required pam_twofold.so\n";
        let lines = lint(text, true);
        assert!(problems(&lines).is_empty(), "{lines:?}");
        assert!(lines[0]
            .findings
            .iter()
            .any(|(_, m)| m.contains("cannot start")));
        // In an included file: skipped, and the lines after it still run.
        let read = |name: &str| {
            (name == "inc").then(|| {
                "auth optional pam_permit.so\n@include /nonexistent\nauth optional pam_twofold.so\n"
                    .to_string()
            })
        };
        let lines = twofold_lines("svc", "auth include inc\n", &read, &|_| Ok(false));
        assert!(
            problems(&lines)
                .iter()
                .any(|m| m.contains("wrong code here")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_long_stack_is_checked_by_states_not_by_paths() {
        // 2^40 paths, but few distinct states at each line.
        let text = format!(
            "auth requisite pam_unix.so\n{}auth required pam_twofold.so\n",
            "auth optional pam_other.so\n".repeat(40)
        );
        assert!(is_clean(&text, true));
    }

    #[test]
    fn libpam_details_reset_bad_jumps_parse_errors_and_other_codes() {
        let with = |svc: &str, inc: &str, enroll: bool| {
            let inc = inc.to_string();
            let read = move |name: &str| (name == "inc").then(|| inc.clone());
            problems(&twofold_lines("svc", svc, &read, &|_| Ok(enroll)))
        };
        // reset in a substack goes back to the decision at its start (here: the password's).
        let found = with(
            "auth required pam_unix.so\nauth substack inc\n",
            "auth [default=reset] pam_twofold.so\n",
            false,
        );
        assert!(
            found.iter().any(|m| m.contains("wrong code here")),
            "{found:?}"
        );
        // A jump past the end fails the login: no false alarm...
        assert!(is_clean(
            "auth required pam_permit.so\nauth [success=ok default=1] pam_twofold.so\n",
            false
        ));
        // ...and a failed substack does not stop a later sufficient line from running on.
        let found = with(
            "auth substack inc\nauth sufficient pam_permit.so\nauth required pam_twofold.so\n",
            "auth [success=ok default=1] pam_unix.so\n",
            true,
        );
        assert!(
            found.iter().any(|m| m.contains("wrong password can reach")),
            "{found:?}"
        );
        // A bracket libpam cannot parse is bad for every value, success included.
        for control in [
            "[success=ok default=die foo=bar]",
            "[SUCCESS=ok DEFAULT=die]",
            "[success=0 default=die]",
            "[success=okay default=die]",
            "[success=ok auth_err=die auth_err=ignore]",
        ] {
            let text = format!("auth {control} pam_unix.so\nauth required pam_twofold.so\n");
            assert_eq!(problems(&lint(&text, true)).len(), 1, "{control}");
        }
        // pam_twofold's other failures (a locked user: PAM_MAXTRIES) go through `default`.
        let text = "auth requisite pam_unix.so\nauth [success=ok auth_err=bad default=ignore] pam_twofold.so\n";
        assert!(problems(&lint(text, false))[0].contains("wrong code here"));
        // Other modules may return PAM_IGNORE, which a control may route apart.
        let text = "auth [default=ignore success=1 auth_err=bad] pam_foo.so\nauth sufficient pam_permit.so\n\
                    auth required pam_twofold.so\n";
        assert!(problems(&lint(text, false))[0].contains("without pam_twofold running"));
    }

    #[test]
    fn other_lines_and_types_are_ignored() {
        let text = "account required pam_twofold.so\n#auth required pam_twofold.so\n\
                    session optional pam_twofold.so\nauth [broken\n@includefoo\n";
        assert!(lint(text, true).is_empty());
    }
}
