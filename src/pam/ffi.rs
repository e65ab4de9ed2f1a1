//! The libpam calls pamsm lacks or gets wrong for us: a conversation that frees and zeroizes
//! every answer, `pam_fail_delay`, and setting `PAM_AUTHTOK` from a zeroized buffer.

use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::ptr;

use pamsm::Pam;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::auth::{PromptError, Prompter};

/// The conversation with the application (sshd, sudo...), as the core's `Prompter`.
pub struct Conversation<'a> {
    pamh: &'a Pam,
    /// `PAM_SILENT`: the application asked for no informational messages.
    silent: bool,
}

impl<'a> Conversation<'a> {
    pub fn new(pamh: &'a Pam, silent: bool) -> Conversation<'a> {
        Conversation { pamh, silent }
    }

    pub fn info_line(&mut self, text: &str) {
        if !self.silent {
            let _ = self.send(PAM_TEXT_INFO, text);
        }
    }

    pub fn error_line(&mut self, text: &str) {
        if !self.silent {
            let _ = self.send(PAM_ERROR_MSG, text);
        }
    }

    /// Sends one message and returns the answer, if the style asks for one.
    fn send(&mut self, style: c_int, text: &str) -> Result<Zeroizing<String>, PromptError> {
        let handle = raw_handle(self.pamh);
        let mut item: *const c_void = ptr::null();
        // SAFETY: handle is the live handle libpam passed to this hook; item is a valid out pointer.
        let rc = unsafe { pam_get_item(handle, PAM_CONV, &mut item) };
        if rc != PAM_SUCCESS || item.is_null() {
            return Err(PromptError(
                "the application has no conversation function".into(),
            ));
        }
        // SAFETY: libpam stores a `struct pam_conv` for PAM_CONV, which lives as long as the handle.
        let conv = unsafe { &*item.cast::<PamConv>() };
        let Some(callback) = conv.conv else {
            return Err(PromptError("the conversation function is null".into()));
        };
        // Some messages carry a secret (the enrollment QR code and key): the copy handed to the
        // application is wiped afterwards. A NUL would cut the message short, so it becomes a space.
        let mut text_nul = Zeroizing::new(Vec::with_capacity(text.len() + 1));
        text_nul.extend(text.bytes().map(|b| if b == 0 { b' ' } else { b }));
        text_nul.push(0);
        let message = PamMessage {
            msg_style: style,
            msg: text_nul.as_ptr().cast::<c_char>(),
        };
        let mut message_ptr: *const PamMessage = &message;
        let mut responses: *mut PamResponse = ptr::null_mut();
        // SAFETY: one valid message whose text outlives the call; responses is a valid out pointer.
        let rc = unsafe { callback(1, &mut message_ptr, &mut responses, conv.appdata_ptr) };
        // SAFETY: whatever the return code, libpam's contract makes `responses` either null or a
        // malloc'd array of one response that we now own.
        let answer = unsafe { take_response(responses) };
        if rc != PAM_SUCCESS {
            return Err(PromptError(format!(
                "the conversation failed (PAM code {rc})"
            )));
        }
        match answer {
            Some(answer) => Ok(answer),
            None if style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON => {
                Err(PromptError("no answer".into()))
            }
            None => Ok(Zeroizing::new(String::new())),
        }
    }
}

impl Prompter for Conversation<'_> {
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.send(PAM_PROMPT_ECHO_OFF, prompt)
    }

    fn ask_visible(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.send(PAM_PROMPT_ECHO_ON, prompt)
    }

    fn info(&mut self, text: &str) {
        self.info_line(text);
    }

    fn error(&mut self, text: &str) {
        self.error_line(text);
    }

    fn repeats_password(&self, answer: &str) -> bool {
        let mut item: *const c_void = ptr::null();
        // SAFETY: the handle is live for this hook; item is a valid out pointer.
        let rc = unsafe { pam_get_item(raw_handle(self.pamh), PAM_AUTHTOK, &mut item) };
        if rc != PAM_SUCCESS || item.is_null() {
            return false;
        }
        // SAFETY: PAM_AUTHTOK is a NUL-terminated string owned by libpam, alive for this call.
        let password = unsafe { std::ffi::CStr::from_ptr(item.cast::<c_char>()) }.to_bytes();
        // Constant time, as every comparison with a secret.
        password.len() == answer.len() && bool::from(password.ct_eq(answer.as_bytes()))
    }
}

/// Asks libpam to delay a failing stack by at least `micros`.
pub fn request_fail_delay(pamh: &Pam, micros: c_uint) {
    // SAFETY: the handle is live for this hook; pam_fail_delay only records the value.
    unsafe {
        pam_fail_delay(raw_handle(pamh), micros);
    }
}

/// Sets `PAM_AUTHTOK` (libpam copies it), then wipes our copy.
pub fn set_authtok(pamh: &Pam, password: &str) -> Result<(), c_int> {
    if password.as_bytes().contains(&0) {
        return Err(PAM_AUTHTOK_ERR);
    }
    // Sized for the NUL up front, so that no reallocation leaves an unwiped copy behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(password.len() + 1));
    bytes.extend_from_slice(password.as_bytes());
    bytes.push(0);
    // SAFETY: bytes is NUL-terminated with no interior NUL; libpam copies the string before it
    // returns, and we zeroize ours when `bytes` drops.
    let rc = unsafe { pam_set_item(raw_handle(pamh), PAM_AUTHTOK, bytes.as_ptr().cast()) };
    if rc == PAM_SUCCESS {
        Ok(())
    } else {
        Err(rc)
    }
}

/// Copies the answer out of libpam's response array, wipes it and frees it.
///
/// # Safety
/// `responses` must be null or a malloc'd array of at least one `PamResponse` whose `resp` is null
/// or a malloc'd NUL-terminated string, all owned by the caller.
unsafe fn take_response(responses: *mut PamResponse) -> Option<Zeroizing<String>> {
    if responses.is_null() {
        return None;
    }
    // SAFETY: non-null and, by this function's contract, points to one response.
    let text = unsafe { (*responses).resp };
    let answer = if text.is_null() {
        None
    } else {
        // SAFETY: by contract, a NUL-terminated string we own.
        let len = unsafe { libc::strlen(text) };
        // SAFETY: text is valid for len bytes, as strlen just measured.
        let bytes = unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) };
        let answer = std::str::from_utf8(bytes)
            .ok()
            .map(|s| Zeroizing::new(s.to_owned()));
        // SAFETY: wipes then frees the string we own; nothing reads it afterwards.
        unsafe {
            libc::explicit_bzero(text.cast(), len);
            libc::free(text.cast());
        }
        answer
    };
    // SAFETY: the array itself is ours to free.
    unsafe { libc::free(responses.cast()) };
    answer
}

/// The raw `pam_handle_t *` inside pamsm's `Pam`.
fn raw_handle(pamh: &Pam) -> *mut c_void {
    // SAFETY: pamsm declares `Pam` as `#[repr(transparent)]` over its `PamHandle`, a
    // `*const c_void`, so a `&Pam` points to exactly that pointer.
    unsafe { *(pamh as *const Pam).cast::<*const c_void>() as *mut c_void }
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
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvCallback>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_get_item(pamh: *mut c_void, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_fail_delay(pamh: *mut c_void, usec: c_uint) -> c_int;
}

// Values from <security/_pam_types.h>.
const PAM_SUCCESS: c_int = 0;
const PAM_AUTHTOK_ERR: c_int = 20;
const PAM_AUTHTOK: c_int = 6;
const PAM_CONV: c_int = 5;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
