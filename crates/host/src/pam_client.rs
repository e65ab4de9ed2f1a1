//! Checking a password through Linux-PAM as an application (`pam_start`, `pam_authenticate`,
//! `pam_acct_mgmt`): twofoldd does it for the web server, which runs unprivileged and must never
//! read `/etc/shadow` itself. Whatever the service's stack says (normally `pam_unix`) decides.
//!
//! Only twofoldd builds this (feature `pam-client`): the module is PAM's guest, never its
//! application. The conversation answers the first hidden prompt with the password and fails
//! every other prompt, so a stack that asks for more than a password fails closed. The password
//! is never logged, and the copy handed to libpam is wiped by the module that takes it
//! (`pam_unix` overwrites replies before freeing them); ours is wiped when dropped.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::ptr;

use zeroize::{Zeroize, Zeroizing};

/// What the service's stack said about a user name and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordVerdict {
    /// The password is right and the account may log in.
    Accepted,
    /// The password is right but the account may not log in now (expired, locked, a password
    /// change due); the text is libpam's reason, for the log.
    AccountRefused(String),
    /// Wrong password, unknown user, or too many tries: one answer for all, so that callers
    /// cannot tell users apart.
    Refused,
}

/// PAM itself failed: the service could not start, a module is missing, or the stack asked for
/// something other than one password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PamClientError(pub String);

impl fmt::Display for PamClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks `password` for `user` through PAM service `service`, with `rhost` (the web client's
/// address) as `PAM_RHOST` for modules that log or filter by it.
pub fn check_password(
    service: &str,
    user: &str,
    password: &str,
    rhost: Option<&str>,
) -> Result<PasswordVerdict, PamClientError> {
    let nul = |what: &str| PamClientError(format!("the {what} contains a NUL byte"));
    let service = CString::new(service).map_err(|_| nul("service name"))?;
    let user = CString::new(user).map_err(|_| nul("user name"))?;
    let rhost = rhost
        .map(|r| CString::new(r).map_err(|_| nul("remote host")))
        .transpose()?;
    // Shared with the conversation through a pointer libpam holds, hence the RefCell.
    let answer = RefCell::new(Answer {
        password: Some(nul_terminated(password).ok_or_else(|| nul("password"))?),
        unexpected: None,
    });
    let conversation = PamConv {
        conv: converse,
        appdata_ptr: (&answer as *const RefCell<Answer>).cast_mut().cast(),
    };
    let mut handle: *mut c_void = ptr::null_mut();
    // SAFETY: every pointer is to a live NUL-terminated string or to `conversation` and
    // `handle`, which outlive the transaction (pam_end is called below before they drop).
    let started = unsafe { pam_start(service.as_ptr(), user.as_ptr(), &conversation, &mut handle) };
    if started != PAM_SUCCESS || handle.is_null() {
        return Err(PamClientError(format!(
            "pam_start for service {:?} failed (code {started})",
            service
        )));
    }
    let transaction = Transaction(handle);
    if let Some(rhost) = &rhost {
        // SAFETY: the handle is live; libpam copies the string.
        let set = unsafe { pam_set_item(transaction.0, PAM_RHOST, rhost.as_ptr().cast()) };
        if set != PAM_SUCCESS {
            return Err(transaction.error("pam_set_item(PAM_RHOST)", set));
        }
    }
    // SAFETY: the handle is live, and the conversation's data (`answer`) outlives it.
    let authenticated = unsafe { pam_authenticate(transaction.0, PAM_DISALLOW_NULL_AUTHTOK) };
    if let Some(prompt) = answer.borrow_mut().unexpected.take() {
        return Err(PamClientError(format!(
            "the stack of service {:?} asked for more than a password ({prompt})",
            service
        )));
    }
    match authenticated {
        PAM_SUCCESS => {
            // A stack may map the name it was given to another (a case-insensitive directory,
            // `user@domain`): the caller acts on the name it asked for, so only that one counts.
            if transaction.user().as_deref() != Some(user.to_bytes()) {
                return Ok(PasswordVerdict::AccountRefused(
                    "the PAM stack authenticated another name than the one given".into(),
                ));
            }
        }
        PAM_AUTH_ERR | PAM_USER_UNKNOWN | PAM_MAXTRIES | PAM_CRED_INSUFFICIENT => {
            return Ok(PasswordVerdict::Refused)
        }
        code => return Err(transaction.error("pam_authenticate", code)),
    }
    // SAFETY: as above.
    let account = unsafe { pam_acct_mgmt(transaction.0, PAM_DISALLOW_NULL_AUTHTOK) };
    match account {
        PAM_SUCCESS => Ok(PasswordVerdict::Accepted),
        PAM_ACCT_EXPIRED | PAM_NEW_AUTHTOK_REQD | PAM_PERM_DENIED | PAM_AUTH_ERR
        | PAM_USER_UNKNOWN => Ok(PasswordVerdict::AccountRefused(
            transaction.describe(account),
        )),
        code => Err(transaction.error("pam_acct_mgmt", code)),
    }
}

/// A started PAM transaction, ended when dropped.
struct Transaction(*mut c_void);

impl Transaction {
    /// `PAM_USER` as the stack left it.
    fn user(&self) -> Option<Vec<u8>> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: the handle is live; libpam stores a pointer to its own copy in `item`.
        let got = unsafe { pam_get_item(self.0, PAM_USER, &mut item) };
        if got != PAM_SUCCESS || item.is_null() {
            return None;
        }
        // SAFETY: PAM_USER is a NUL-terminated string owned by the live handle.
        let name = unsafe { CStr::from_ptr(item.cast::<c_char>()) };
        Some(name.to_bytes().to_vec())
    }

    fn describe(&self, code: c_int) -> String {
        // SAFETY: the handle is live; pam_strerror returns a static string (or NULL).
        let text = unsafe { pam_strerror(self.0, code) };
        if text.is_null() {
            return format!("PAM code {code}");
        }
        // SAFETY: a non-NULL pam_strerror result is a NUL-terminated static string.
        let text = unsafe { CStr::from_ptr(text) };
        text.to_string_lossy().into_owned()
    }

    fn error(&self, call: &str, code: c_int) -> PamClientError {
        PamClientError(format!("{call} failed: {}", self.describe(code)))
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // SAFETY: the handle came from pam_start and is ended exactly once, here.
        unsafe { pam_end(self.0, PAM_SUCCESS) };
    }
}

/// The conversation's data: the password, taken by the first hidden prompt, and the first
/// prompt that could not be answered.
struct Answer {
    /// The password and its NUL terminator.
    password: Option<Zeroizing<Vec<u8>>>,
    unexpected: Option<&'static str>,
}

/// The conversation function libpam calls. Answers one hidden prompt; informational messages
/// get empty replies; anything else fails the conversation.
extern "C" fn converse(
    count: c_int,
    messages: *mut *const PamMessage,
    replies: *mut *mut PamResponse,
    data: *mut c_void,
) -> c_int {
    // Nothing here may unwind into libpam.
    std::panic::catch_unwind(|| {
        // SAFETY: libpam passes the `appdata_ptr` given to pam_start: a live
        // `RefCell<Answer>` that outlives the transaction.
        let answer = unsafe { &*data.cast::<RefCell<Answer>>() };
        let Ok(mut answer) = answer.try_borrow_mut() else {
            return PAM_CONV_ERR;
        };
        converse_with(&mut answer, count, messages, replies)
    })
    .unwrap_or(PAM_CONV_ERR)
}

fn converse_with(
    answer: &mut Answer,
    count: c_int,
    messages: *mut *const PamMessage,
    replies: *mut *mut PamResponse,
) -> c_int {
    let Ok(count) = usize::try_from(count) else {
        return PAM_CONV_ERR;
    };
    if count == 0 || count > PAM_MAX_NUM_MSG || messages.is_null() || replies.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: Linux-PAM passes `messages` as an array of `count` pointers to messages.
    let messages = unsafe { std::slice::from_raw_parts(messages, count) };
    // SAFETY: calloc of `count` replies; libpam frees the array and each `resp` with free(3).
    let array = unsafe { libc::calloc(count, size_of::<PamResponse>()) }.cast::<PamResponse>();
    if array.is_null() {
        return PAM_BUF_ERR;
    }
    // SAFETY: `array` holds `count` zeroed replies (NULL `resp`, a valid value), ours alone
    // until handed to libpam.
    let filled = unsafe { std::slice::from_raw_parts_mut(array, count) };
    for (message, reply) in messages.iter().zip(filled.iter_mut()) {
        if message.is_null() {
            return fail(filled, answer, "a NULL message");
        }
        // SAFETY: a non-NULL message pointer from libpam points to a live pam_message.
        let style = unsafe { (**message).msg_style };
        reply.resp = match style {
            PAM_PROMPT_ECHO_OFF => match answer.password.take() {
                // SAFETY: strdup copies the NUL-terminated password into memory libpam frees.
                Some(password) => unsafe { libc::strdup(password.as_ptr().cast()) },
                None => return fail(filled, answer, "a second hidden prompt"),
            },
            PAM_ERROR_MSG | PAM_TEXT_INFO => ptr::null_mut(),
            PAM_PROMPT_ECHO_ON => return fail(filled, answer, "a visible prompt"),
            _ => return fail(filled, answer, "an unknown kind of prompt"),
        };
        if style == PAM_PROMPT_ECHO_OFF && reply.resp.is_null() {
            return fail(filled, answer, "no memory for the reply");
        }
    }
    // SAFETY: libpam takes ownership of the array.
    unsafe { *replies = array };
    PAM_SUCCESS
}

/// Frees a partly filled reply array (wiping any password copy in it) and fails the
/// conversation, remembering why.
fn fail(filled: &mut [PamResponse], answer: &mut Answer, why: &'static str) -> c_int {
    answer.unexpected.get_or_insert(why);
    for reply in filled.iter_mut() {
        let text = std::mem::replace(&mut reply.resp, ptr::null_mut());
        if text.is_null() {
            continue;
        }
        // SAFETY: `text` is a NUL-terminated string from strdup above.
        let length = unsafe { libc::strlen(text) };
        // SAFETY: the `length` bytes before its NUL are ours, and nothing else refers to them.
        let bytes = unsafe { std::slice::from_raw_parts_mut(text.cast::<u8>(), length) };
        // Volatile writes, which the free below cannot make dead.
        bytes.zeroize();
        // SAFETY: it came from strdup and is freed once, here.
        unsafe { libc::free(text.cast()) };
    }
    // SAFETY: the array came from calloc and is not handed to libpam.
    unsafe { libc::free(filled.as_mut_ptr().cast()) };
    PAM_CONV_ERR
}

/// `text` with a NUL appended, in memory that is wiped when dropped; `None` if it holds a NUL.
fn nul_terminated(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if text.as_bytes().contains(&0) {
        return None;
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(text.len() + 1));
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    Some(bytes)
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

#[repr(C)]
struct PamConv {
    conv: extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conversation: *const PamConv,
        handle: *mut *mut c_void,
    ) -> c_int;
    fn pam_set_item(handle: *mut c_void, item: c_int, value: *const c_void) -> c_int;
    fn pam_get_item(handle: *const c_void, item: c_int, value: *mut *const c_void) -> c_int;
    fn pam_authenticate(handle: *mut c_void, flags: c_int) -> c_int;
    fn pam_acct_mgmt(handle: *mut c_void, flags: c_int) -> c_int;
    fn pam_end(handle: *mut c_void, status: c_int) -> c_int;
    fn pam_strerror(handle: *mut c_void, code: c_int) -> *const c_char;
}

// Linux-PAM's values (<security/_pam_types.h>).
const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_PERM_DENIED: c_int = 6;
const PAM_AUTH_ERR: c_int = 7;
const PAM_CRED_INSUFFICIENT: c_int = 8;
const PAM_USER_UNKNOWN: c_int = 10;
const PAM_MAXTRIES: c_int = 11;
const PAM_NEW_AUTHTOK_REQD: c_int = 12;
const PAM_ACCT_EXPIRED: c_int = 13;
const PAM_CONV_ERR: c_int = 19;
const PAM_USER: c_int = 2;
const PAM_RHOST: c_int = 4;
const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x1;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_MAX_NUM_MSG: usize = 32;
