//! Shared helpers for the integration tests: a small hand-written libpam client, throwaway hosts
//! (a temp dir with a config, a records directory and PAM service files that load the built
//! `libpam_twofold.so`), enrollment through the library, and re-exec'd worker processes.
//!
//! Everything here drives the real module through the real Linux-PAM, with `pam_start_confdir`,
//! so no test needs root or touches `/etc/pam.d`.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use twofold_core::backup::{BackupCodes, Cost, NewCodes};
use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::store::Store;
use twofold_core::totp::{Algorithm, Digits, Secret, TotpKey};
use twofold_core::user::UserName;
use twofold_host::state_file::{self, Slotted};
use twofold_host::FileStore;

// ---- PAM return codes and items, from <security/_pam_types.h> (Linux-PAM 1.5.2).

pub const PAM_SUCCESS: i32 = 0;
pub const PAM_SERVICE_ERR: i32 = 3;
pub const PAM_PERM_DENIED: i32 = 6;
pub const PAM_AUTH_ERR: i32 = 7;
pub const PAM_AUTHINFO_UNAVAIL: i32 = 9;
pub const PAM_MAXTRIES: i32 = 11;
pub const PAM_CONV_ERR: i32 = 19;
pub const PAM_IGNORE: i32 = 25;
/// `pam_authenticate` flag: no informational messages.
pub const PAM_SILENT: i32 = 0x8000;

pub const PAM_FAIL_DELAY: c_int = 10;
pub const PAM_RHOST: c_int = 4;
pub const PAM_TTY: c_int = 3;
pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_PROMPT_ECHO_ON: c_int = 2;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;
pub const PAM_MAX_NUM_MSG: c_int = 32;

/// Every libpam constant this client uses, by its name in `<security/_pam_types.h>`.
pub const PAM_CONSTANTS: &[(&str, i32)] = &[
    ("PAM_SUCCESS", PAM_SUCCESS),
    ("PAM_SERVICE_ERR", PAM_SERVICE_ERR),
    ("PAM_PERM_DENIED", PAM_PERM_DENIED),
    ("PAM_AUTH_ERR", PAM_AUTH_ERR),
    ("PAM_AUTHINFO_UNAVAIL", PAM_AUTHINFO_UNAVAIL),
    ("PAM_MAXTRIES", PAM_MAXTRIES),
    ("PAM_CONV_ERR", PAM_CONV_ERR),
    ("PAM_IGNORE", PAM_IGNORE),
    ("PAM_SILENT", PAM_SILENT),
    ("PAM_FAIL_DELAY", PAM_FAIL_DELAY),
    ("PAM_PROMPT_ECHO_OFF", PAM_PROMPT_ECHO_OFF),
    ("PAM_PROMPT_ECHO_ON", PAM_PROMPT_ECHO_ON),
    ("PAM_ERROR_MSG", PAM_ERROR_MSG),
    ("PAM_TEXT_INFO", PAM_TEXT_INFO),
    ("PAM_MAX_NUM_MSG", PAM_MAX_NUM_MSG),
];

/// The module's prompts and messages, as the user sees them.
pub const CODE_PROMPT: &str = "Verification code: ";
pub const PASSWORD_AND_CODE_PROMPT: &str = "Password and verification code: ";
pub const UNAVAILABLE: &str =
    "Two-factor authentication is unavailable; contact your administrator.";

/// Cheap argon2 costs, so that backup codes do not slow debug tests down.
pub const CHEAP: Cost = Cost {
    m_kib: 64,
    t: 1,
    p: 1,
};

/// How many backup codes `Host::enroll` makes.
pub const BACKUP_CODES: usize = 5;

/// The environment variable that turns a re-exec'd test binary into a worker.
pub const WORKER_ENV: &str = "TWOFOLD_TEST_WORKER";

// ---- The PAM client.

/// One message the module sent through the conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Prompt { echo: bool, text: String },
    Info(String),
    Error(String),
}

/// What one `pam_authenticate` produced.
#[derive(Debug)]
pub struct Login {
    /// `pam_authenticate`'s return code.
    pub rc: i32,
    /// Every prompt and message, in order.
    pub messages: Vec<Message>,
    /// The failure delay libpam asked the application to wait, in microseconds, if any.
    pub fail_delay: Option<u32>,
}

impl Login {
    pub fn prompts(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::Prompt { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn infos(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::Info(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn errors(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::Error(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Asserts the return code, showing the whole transcript when it differs.
    #[track_caller]
    pub fn assert_rc(&self, expected: i32) -> &Login {
        assert_eq!(self.rc, expected, "unexpected PAM code; login: {self:#?}");
        self
    }

    /// Asserts the module asked exactly once for the code, hidden, and said nothing else.
    #[track_caller]
    pub fn assert_only_prompt(&self, prompt: &str) -> &Login {
        assert_eq!(
            self.messages,
            vec![Message::Prompt {
                echo: false,
                text: prompt.into()
            }],
            "login: {self:#?}"
        );
        self
    }
}

/// A live PAM handle with a scripted conversation. Dropping it calls `pam_end`.
pub struct Session {
    handle: *mut c_void,
    script: *mut Script,
    last_rc: c_int,
}

/// The conversation's state, reached from libpam's callbacks through `appdata_ptr`.
struct Script {
    answers: VecDeque<String>,
    messages: Vec<Message>,
    fail_delay: Option<u32>,
    /// Runs when a prompt arrives, before it is answered: what happens "while the user types".
    on_prompt: Option<Box<dyn FnMut()>>,
}

impl Session {
    /// `pam_start_confdir(service, user)` with answers for the prompts, in order; libpam reads
    /// the service file and loads the modules here.
    pub fn start(confdir: &Path, service: &str, user: &str, answers: &[&str]) -> Session {
        let script = Box::into_raw(Box::new(Script {
            answers: answers.iter().map(|a| a.to_string()).collect(),
            messages: Vec::new(),
            fail_delay: None,
            on_prompt: None,
        }));
        let conv = PamConv {
            conv: Some(converse),
            appdata_ptr: script.cast(),
        };
        let service = CString::new(service).unwrap();
        let user = CString::new(user).unwrap();
        let confdir = CString::new(confdir.as_os_str().as_bytes()).unwrap();
        let mut handle = std::ptr::null_mut();
        // SAFETY: every string is NUL-terminated and lives across the call; libpam copies the
        // conversation struct, whose appdata pointer stays valid until `Drop` frees it.
        let rc = unsafe {
            pam_start_confdir(
                service.as_ptr(),
                user.as_ptr(),
                &conv,
                confdir.as_ptr(),
                &mut handle,
            )
        };
        if rc != PAM_SUCCESS {
            // SAFETY: the script came from Box::into_raw above and libpam did not keep it.
            drop(unsafe { Box::from_raw(script) });
            panic!("pam_start_confdir failed with {rc}");
        }
        let callback: DelayCallback = record_delay;
        // SAFETY: the handle is live; PAM_FAIL_DELAY takes a function pointer, which libpam calls
        // with the conversation's appdata pointer (our script) instead of sleeping.
        let rc = unsafe { pam_set_item(handle, PAM_FAIL_DELAY, callback as *const c_void) };
        assert_eq!(rc, PAM_SUCCESS, "pam_set_item(PAM_FAIL_DELAY)");
        Session {
            handle,
            script,
            last_rc: PAM_SUCCESS,
        }
    }

    /// Sets `PAM_RHOST`, as sshd does for a remote login.
    pub fn set_rhost(&mut self, rhost: &str) {
        let rhost = CString::new(rhost).unwrap();
        // SAFETY: the handle is live; libpam copies the string item.
        let rc = unsafe { pam_set_item(self.handle, PAM_RHOST, rhost.as_ptr().cast()) };
        assert_eq!(rc, PAM_SUCCESS, "pam_set_item(PAM_RHOST)");
    }

    /// Runs `hook` at each prompt, before it is answered (a server dying while the user types).
    pub fn on_prompt(&mut self, hook: impl FnMut() + 'static) {
        // SAFETY: the script lives until Drop, and libpam calls back on this thread only, during
        // pam_authenticate, never while this runs.
        unsafe { (*self.script).on_prompt = Some(Box::new(hook)) };
    }

    /// Sets `PAM_TTY`, as login, sudo and su do.
    pub fn set_tty(&mut self, tty: &str) {
        let tty = CString::new(tty).unwrap();
        // SAFETY: the handle is live; libpam copies the string item.
        let rc = unsafe { pam_set_item(self.handle, PAM_TTY, tty.as_ptr().cast()) };
        assert_eq!(rc, PAM_SUCCESS, "pam_set_item(PAM_TTY)");
    }

    /// `pam_authenticate(flags)`.
    pub fn authenticate(&mut self, flags: i32) -> i32 {
        // SAFETY: the handle is live until Drop.
        self.last_rc = unsafe { pam_authenticate(self.handle, flags) };
        self.last_rc
    }

    /// Ends the session and returns what happened in it.
    pub fn finish(self) -> Login {
        let rc = self.last_rc;
        // SAFETY: no libpam call is running, so nothing else touches the script now.
        let script = unsafe { &mut *self.script };
        let messages = std::mem::take(&mut script.messages);
        let fail_delay = script.fail_delay;
        drop(self);
        Login {
            rc,
            messages,
            fail_delay,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the handle is live and is not used after this.
        unsafe { pam_end(self.handle, self.last_rc) };
        // SAFETY: pam_end has returned, so libpam no longer holds the script pointer.
        drop(unsafe { Box::from_raw(self.script) });
    }
}

/// What `pam_exec expose_authtok` handed on, if it ran: the text before its terminating NUL.
pub fn captured_authtok(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    Some(String::from_utf8_lossy(text).into_owned())
}

/// One whole login: start, authenticate with `answers`, end.
pub fn login(confdir: &Path, service: &str, user: &str, answers: &[&str]) -> Login {
    login_with_flags(confdir, service, user, answers, 0)
}

pub fn login_with_flags(
    confdir: &Path,
    service: &str,
    user: &str,
    answers: &[&str],
    flags: i32,
) -> Login {
    let mut session = Session::start(confdir, service, user, answers);
    session.authenticate(flags);
    session.finish()
}

/// libpam's conversation callback: records each message and answers prompts from the script.
/// A prompt with no answer left fails the conversation, as a client that hung up would.
unsafe extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    // A panic must not unwind into libpam.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: libpam passes the arguments its contract describes, and appdata is our script.
        unsafe { converse_inner(num_msg, msg, resp, appdata.cast::<Script>()) }
    }))
    .unwrap_or(PAM_CONV_ERR)
}

/// # Safety
/// `msg` must point to `num_msg` valid message pointers, `resp` must be writable and `script`
/// must be the live script of the session.
unsafe fn converse_inner(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    script: *mut Script,
) -> c_int {
    if !(1..=PAM_MAX_NUM_MSG).contains(&num_msg) || msg.is_null() || resp.is_null() {
        return PAM_CONV_ERR;
    }
    let count = num_msg as usize;
    // SAFETY: the script outlives the handle, and libpam calls back on this thread only.
    let script = unsafe { &mut *script };
    // SAFETY: calloc returns zeroed memory (null strings) or null.
    let responses =
        unsafe { libc::calloc(count, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if responses.is_null() {
        return PAM_CONV_ERR;
    }
    for i in 0..count {
        // SAFETY: libpam passes an array of `num_msg` pointers to valid messages.
        let message = unsafe { &**msg.add(i) };
        let text = if message.msg.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null message text is NUL-terminated.
            unsafe { CStr::from_ptr(message.msg) }
                .to_string_lossy()
                .into_owned()
        };
        match message.msg_style {
            PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => {
                let echo = message.msg_style == PAM_PROMPT_ECHO_ON;
                script.messages.push(Message::Prompt { echo, text });
                if let Some(hook) = script.on_prompt.as_mut() {
                    hook();
                }
                let answer = script
                    .answers
                    .pop_front()
                    .map(|a| resolve_answer(a, &script.messages))
                    .and_then(|a| CString::new(a).ok());
                let Some(answer) = answer else {
                    // SAFETY: responses holds `count` entries, each null or from strdup.
                    unsafe { free_responses(responses, count) };
                    return PAM_CONV_ERR;
                };
                // SAFETY: libpam frees each answer with free(), so it must come from malloc.
                let copy = unsafe { libc::strdup(answer.as_ptr()) };
                // SAFETY: i < count, inside the calloc'd array.
                unsafe { (*responses.add(i)).resp = copy };
            }
            PAM_TEXT_INFO => script.messages.push(Message::Info(text)),
            PAM_ERROR_MSG => script.messages.push(Message::Error(text)),
            _ => {
                // SAFETY: as above.
                unsafe { free_responses(responses, count) };
                return PAM_CONV_ERR;
            }
        }
    }
    // SAFETY: resp is writable; libpam takes ownership of the array.
    unsafe { *resp = responses };
    PAM_SUCCESS
}

/// An answer that stands for the current code of the key the module showed while enrolling the
/// user at login, as a person would read it off the screen into their phone.
pub const CODE_FOR_SHOWN_KEY: &str = "<code for the key shown>";

/// The text of the module's enrollment line carrying the key.
pub const SHOWN_KEY_LINE: &str = "Or type this key into the app: ";

fn resolve_answer(answer: String, shown: &[Message]) -> String {
    if answer != CODE_FOR_SHOWN_KEY {
        return answer;
    }
    match shown_key(shown) {
        Some(key) => code_at(&key, key.step_of(now())),
        None => "no key was shown".into(),
    }
}

/// The key the module showed while enrolling at login (default SHA1, 6 digits, 30 s).
pub fn shown_key(shown: &[Message]) -> Option<TotpKey> {
    let base32 = shown.iter().find_map(|m| match m {
        Message::Info(text) => text.strip_prefix(SHOWN_KEY_LINE),
        _ => None,
    })?;
    Some(TotpKey {
        secret: Secret::from_base32(&base32.replace(' ', "")).ok()?,
        algorithm: Algorithm::Sha1,
        digits: Digits::SIX,
        period: 30,
    })
}

/// # Safety
/// `responses` must be a malloc'd array of `count` responses whose strings are null or malloc'd.
unsafe fn free_responses(responses: *mut PamResponse, count: usize) {
    for i in 0..count {
        // SAFETY: within the array; each string is null or ours.
        unsafe { libc::free((*responses.add(i)).resp.cast()) };
    }
    // SAFETY: the array itself came from calloc.
    unsafe { libc::free(responses.cast()) };
}

/// libpam's `PAM_FAIL_DELAY` callback: records the delay instead of sleeping it.
unsafe extern "C" fn record_delay(status: c_int, delay: c_uint, appdata: *mut c_void) {
    if status != PAM_SUCCESS && !appdata.is_null() {
        // SAFETY: appdata is the conversation's appdata pointer, our live script.
        let script = unsafe { &mut *appdata.cast::<Script>() };
        script.fail_delay = Some(delay);
    }
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvCallback = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

type DelayCallback = unsafe extern "C" fn(c_int, c_uint, *mut c_void);

#[repr(C)]
struct PamConv {
    conv: Option<ConvCallback>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
}

// ---- The module under test.

pub use twofold_tests::module_path;

// ---- Throwaway hosts.

/// A temp dir holding a config file, a records directory and PAM service files. Removed on drop.
pub struct Host {
    pub dir: TempDir,
    pub config: PathBuf,
    pub records: PathBuf,
    pub confdir: PathBuf,
    config_text: std::cell::RefCell<String>,
}

/// A user enrolled by a test: their key and plain backup codes.
pub struct Enrolled {
    pub user: String,
    pub key: TotpKey,
    pub codes: Vec<String>,
}

impl Host {
    /// A host whose config puts records in its own records directory, plus `extra` TOML
    /// (tables such as `[totp]` go there).
    pub fn new(extra: &str) -> Host {
        let dir = TempDir::new("host");
        let records = dir.store("records");
        let confdir = dir.path().join("pam.d");
        fs::create_dir(&confdir).unwrap();
        let config = dir.path().join("config.toml");
        let config_text = format!("records = \"{}/{{user}}.toml\"\n{extra}", records.display());
        write_file(&config, config_text.as_bytes(), 0o600);
        let config_text = std::cell::RefCell::new(config_text);
        let host = Host {
            dir,
            config,
            records,
            confdir,
            config_text,
        };
        host.service("twofold", "");
        host
    }

    /// Writes the service file `name`: the module as `auth required`, with `args`.
    pub fn service(&self, name: &str, args: &str) {
        self.service_with_control(name, "required", args);
    }

    /// Writes the service file `name` with a given control field (`required`, `[...]`).
    pub fn service_with_control(&self, name: &str, control: &str, args: &str) {
        let line = format!(
            "auth {control} {} config={} {args}\n",
            module_path().display(),
            self.config.display()
        );
        self.service_lines(name, &line);
    }

    /// Writes the service file `name`: the module with `control` and `args`, then `pam_exec`
    /// handing `PAM_AUTHTOK` to `tee`, which saves it in the returned file. This is how a test
    /// sees what the module forwards: libpam refuses `PAM_AUTHTOK` to applications and wipes it
    /// before `pam_authenticate` returns, so only a later module in the stack can read it.
    pub fn service_capturing_authtok(&self, name: &str, control: &str, args: &str) -> PathBuf {
        let captured = self.dir.path().join(format!("{name}.authtok"));
        let text = format!(
            "auth {control} {} config={} {args}\n\
             auth required pam_exec.so expose_authtok quiet /usr/bin/tee {}\n",
            module_path().display(),
            self.config.display(),
            captured.display()
        );
        self.service_lines(name, &text);
        captured
    }

    /// Writes the service file `name` verbatim.
    pub fn service_lines(&self, name: &str, text: &str) {
        write_file(&self.confdir.join(name), text.as_bytes(), 0o644);
    }

    /// Replaces the config file's text.
    pub fn write_config(&self, text: &str) {
        write_file(&self.config, text.as_bytes(), 0o600);
        *self.config_text.borrow_mut() = text.to_string();
    }

    /// Puts records under each home (`template` starts with `~/`), with a home index of this
    /// host's own, created as the package would: a private directory holding the store marker.
    pub fn home_records(&self, template: &str, extra: &str) -> PathBuf {
        let index = self.home_index();
        if !index.exists() {
            self.dir.store("homes");
        }
        self.write_config(&format!(
            "records = \"{template}\"\nhome_index = \"{}\"\n{extra}",
            index.display()
        ));
        index
    }

    /// Where `home_records` keeps this host's home index.
    pub fn home_index(&self) -> PathBuf {
        self.dir.path().join("homes")
    }

    /// The config the module reads, parsed by the library.
    pub fn config(&self) -> twofold_core::config::Config {
        twofold_core::config::Config::parse(&self.config, &self.config_text.borrow()).unwrap()
    }

    pub fn store(&self) -> FileStore {
        FileStore::new(&self.config())
    }

    pub fn record_path(&self, user: &str) -> PathBuf {
        self.records.join(format!("{user}.toml"))
    }

    pub fn state_path(&self, user: &str) -> PathBuf {
        self.records.join(format!("{user}.state"))
    }

    /// Enrolls `user` with a random SHA1/6-digit/30 s key and `BACKUP_CODES` cheap backup codes,
    /// writing the record through the library's store.
    pub fn enroll(&self, user: &str) -> Enrolled {
        enroll_in(&self.store(), user)
    }

    /// Logs `user` in through the service `twofold`.
    pub fn login(&self, user: &str, answers: &[&str]) -> Login {
        login(&self.confdir, "twofold", user, answers)
    }

    /// Logs `user` in from the remote host `rhost` (`PAM_RHOST`).
    pub fn login_from(&self, rhost: &str, user: &str, answers: &[&str]) -> Login {
        let mut session = Session::start(&self.confdir, "twofold", user, answers);
        session.set_rhost(rhost);
        session.authenticate(0);
        session.finish()
    }

    /// Logs `user` in through the service `service`.
    pub fn login_via(&self, service: &str, user: &str, answers: &[&str]) -> Login {
        login(&self.confdir, service, user, answers)
    }

    /// The user's state as it is on disk.
    pub fn state(&self, user: &str) -> State {
        self.slotted(user).state
    }

    /// The user's state as it is on disk, with the generation of the slot it was read from.
    pub fn slotted(&self, user: &str) -> Slotted {
        state_file::decode(&fs::read(self.state_path(user)).unwrap()).unwrap()
    }
}

/// Enrolls `user` in `store` (see `Host::enroll`).
pub fn enroll_in<S: Store>(store: &S, user: &str) -> Enrolled {
    let key = TotpKey {
        secret: Secret::generate().unwrap(),
        algorithm: Algorithm::Sha1,
        digits: Digits::SIX,
        period: 30,
    };
    let NewCodes { plain, hashed } = BackupCodes::generate(BACKUP_CODES, CHEAP).unwrap();
    let record = Record {
        totp: Some(key.clone()),
        window: None,
        throttle: None,
        backup_codes: hashed,
        keys: Vec::new(),
    };
    store
        .replace(&user_name(user), |_, _| {
            Ok::<_, ()>((Some(record.clone()), ()))
        })
        .expect("store")
        .expect("replace");
    Enrolled {
        user: user.into(),
        key,
        codes: plain.iter().map(|c| c.to_string()).collect(),
    }
}

impl Enrolled {
    /// The code for the current step plus `offset` steps.
    pub fn code(&self, offset: i64) -> String {
        code_at(
            &self.key,
            current_step(self.key.period).saturating_add_signed(offset),
        )
    }

    /// A six-digit code that no step within `reach` of now accepts.
    pub fn wrong_code(&self, reach: i64) -> String {
        let near: Vec<String> = (-reach..=reach).map(|offset| self.code(offset)).collect();
        let mut guess: u32 = self.code(0).parse().unwrap();
        loop {
            guess = (guess + 1) % 1_000_000;
            let candidate = format!("{guess:06}");
            if !near.contains(&candidate) {
                return candidate;
            }
        }
    }
}

pub fn code_at(key: &TotpKey, step: u64) -> String {
    key.code_at_step(step).to_string()
}

/// Starts the real twofoldd (this package's build) with `config` and `daemon_toml` on `socket`,
/// and waits until it listens. The caller kills it.
pub fn start_twofoldd(config: &Path, daemon_toml: &Path, socket: &Path) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_twofoldd-tested"))
        .arg("--config")
        .arg(config)
        .arg("--daemon-config")
        .arg(daemon_toml)
        .arg("--listen")
        .arg(socket)
        .spawn()
        .expect("start twofoldd");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "twofoldd did not listen in time"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// One request to the daemon at `socket`, on a connection of its own.
pub fn ask_twofoldd(socket: &Path, request: &twofold_proto::Request) -> twofold_proto::Response {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect to twofoldd");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    twofold_proto::exchange(&mut stream, request).expect("exchange")
}

/// The invoking user's name: the CLI acts for them without root.
pub fn me() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    twofold_host::passwd::by_uid(uid)
        .unwrap()
        .unwrap_or_else(|| panic!("uid {uid} has no passwd entry"))
        .name
        .as_str()
        .to_string()
}

pub fn user_name(user: &str) -> UserName {
    UserName::parse(user).expect("valid user name")
}

// ---- Time.

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn current_step(period: u32) -> u64 {
    now() / u64::from(period)
}

/// Waits, if fewer than `margin` seconds remain in the current step, for the next one; returns
/// the step that is then current. Tests that need "the current step" to hold still call this.
pub fn settle_step(period: u32, margin: u64) -> u64 {
    loop {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let period_ms = u128::from(period) * 1000;
        let into_step = since_epoch.as_millis() % period_ms;
        let left = period_ms - into_step;
        if left > u128::from(margin) * 1000 {
            return since_epoch.as_secs() / u64::from(period);
        }
        std::thread::sleep(Duration::from_millis(left as u64 + 50));
    }
}

// ---- Files.

pub use twofold_tests::files::{write_file, TempDir};

// ---- Randomness, without a crate.

pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: bytes is writable for its whole length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n, 8, "getrandom");
    u64::from_le_bytes(bytes)
}

/// A small deterministic generator (xorshift64*), seeded once and printed so a failure can be
/// replayed with `TWOFOLD_TEST_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn from_env_or_random() -> Rng {
        let seed = std::env::var("TWOFOLD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(random_u64)
            | 1;
        eprintln!("random seed {seed} (set TWOFOLD_TEST_SEED={seed} to replay)");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

// ---- Worker processes.

/// The worker role this process was started with, if it is a worker.
pub fn worker_role() -> Option<String> {
    std::env::var(WORKER_ENV).ok()
}

/// A command that re-runs this test binary as a worker: only the test `test_name` runs, with
/// `WORKER_ENV` set to `role`, output uncaptured.
pub fn worker_command(test_name: &str, role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            test_name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(WORKER_ENV, role);
    command
}

/// A worker process, talked to through pipes: it reports on stdout, one line per fact, and its
/// stdin is the starting gun (closing it releases the worker).
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Every complete line read so far.
    pub lines: Vec<String>,
}

impl Worker {
    pub fn spawn(mut command: Command) -> Worker {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn worker");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Worker {
            child,
            stdin,
            stdout,
            lines: Vec::new(),
        }
    }

    /// Reads lines until one starts with `prefix`, and returns the rest of that line. Panics if
    /// the worker ends first.
    pub fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            let line = self.read_line().unwrap_or_else(|| {
                panic!(
                    "worker ended before saying {prefix:?}; it said {:?}",
                    self.lines
                )
            });
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    }

    /// Closes the worker's stdin, which it takes as the signal to go.
    pub fn release(&mut self) {
        self.stdin = None;
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Reads what is left of the output, waits for the exit, and returns whether it succeeded.
    pub fn finish(mut self) -> (bool, Vec<String>) {
        self.stdin = None;
        while self.read_line().is_some() {}
        let status = self.child.wait().expect("wait for worker");
        (status.success(), std::mem::take(&mut self.lines))
    }

    /// The next complete line; `None` at the end of output (a cut-off last line is dropped).
    fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) if !line.ends_with('\n') => None,
            Ok(_) => {
                let line = line.trim_end_matches('\n').to_string();
                self.lines.push(line.clone());
                Some(line)
            }
        }
    }
}

impl Drop for Worker {
    /// A test that fails half way must not leave a worker running (a writer loops for ever).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a worker: tells the parent a fact, as one line.
pub fn report(prefix: &str, value: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{prefix}{value}").unwrap();
    out.flush().unwrap();
}

/// In a worker: blocks until the parent closes our stdin.
pub fn wait_for_release() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
}

pub const READY: &str = "twofold-worker-ready";
pub const RESULT: &str = "twofold-worker-result=";
