//! The libpam handle, as safe methods: the items the module reads, the user name, the password it
//! hands on, the fail delay, and one conversation round. Every unsafe call of the module is here.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::ptr;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::sys::{self, PamConv, PamHandle, PamMessage, PamResponse};

/// The handle libpam passed to a hook, for the duration of that hook.
pub struct Handle {
    raw: *mut PamHandle,
}

/// Why a conversation round failed.
#[derive(Debug)]
pub enum ConvError {
    /// The application registered no conversation function.
    NoConversation,
    /// The conversation function returned this PAM code.
    Failed(c_int),
    /// A prompt got no answer (or one that is not UTF-8).
    NoAnswer,
}

impl Handle {
    /// # Safety
    /// `raw` must be the live handle libpam passed to the current hook, used only during it.
    pub unsafe fn new(raw: *mut PamHandle) -> Option<Handle> {
        (!raw.is_null()).then_some(Handle { raw })
    }

    /// A string item (`PAM_SERVICE`, `PAM_RHOST`...), lossily decoded.
    pub fn string_item(&self, item_type: c_int) -> Option<String> {
        self.c_item(item_type)
            .map(|item| item.to_string_lossy().into_owned())
    }

    /// The user name, asking the application for it if libpam has none yet. `Err` when the
    /// application gave none.
    pub fn user(&self) -> Result<&CStr, c_int> {
        let mut user: *const c_char = ptr::null();
        // SAFETY: the handle is live for this hook; `user` is a valid out pointer and a null
        // prompt asks libpam for its default.
        let rc = unsafe { sys::pam_get_user(self.raw, &mut user, ptr::null()) };
        if rc != sys::PAM_SUCCESS || user.is_null() {
            return Err(if rc == sys::PAM_SUCCESS {
                sys::PAM_AUTH_ERR
            } else {
                rc
            });
        }
        // SAFETY: libpam owns the NUL-terminated name for as long as the handle, which outlives
        // the borrow of `self`.
        Ok(unsafe { CStr::from_ptr(user) })
    }

    /// Whether `answer` equals `PAM_AUTHTOK`, compared in constant time.
    pub fn is_authtok(&self, answer: &str) -> bool {
        let Some(password) = self.c_item(sys::PAM_AUTHTOK) else {
            return false;
        };
        let password = password.to_bytes();
        password.len() == answer.len() && bool::from(password.ct_eq(answer.as_bytes()))
    }

    /// Sets `PAM_AUTHTOK` (libpam copies it), then wipes our copy.
    pub fn set_authtok(&self, password: &str) -> Result<(), c_int> {
        if password.as_bytes().contains(&0) {
            return Err(sys::PAM_AUTHTOK_ERR);
        }
        // Sized for the NUL up front, so that no reallocation leaves an unwiped copy behind.
        let mut bytes = Zeroizing::new(Vec::with_capacity(password.len() + 1));
        bytes.extend_from_slice(password.as_bytes());
        bytes.push(0);
        // SAFETY: bytes is NUL-terminated with no interior NUL; libpam copies the string before
        // it returns, and we zeroize ours when `bytes` drops.
        let rc = unsafe { sys::pam_set_item(self.raw, sys::PAM_AUTHTOK, bytes.as_ptr().cast()) };
        if rc == sys::PAM_SUCCESS {
            Ok(())
        } else {
            Err(rc)
        }
    }

    /// Asks libpam to delay a failing stack by at least `micros`.
    pub fn request_fail_delay(&self, micros: c_uint) {
        // SAFETY: the handle is live for this hook; pam_fail_delay only records the value.
        unsafe { sys::pam_fail_delay(self.raw, micros) };
    }

    /// Sends one message and returns the answer, if the style asks for one (an empty string for
    /// the others). The copy of the text handed to the application is wiped afterwards.
    pub fn converse(&self, style: c_int, text: &str) -> Result<Zeroizing<String>, ConvError> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: the handle is live for this hook; item is a valid out pointer.
        let rc = unsafe { sys::pam_get_item(self.raw, sys::PAM_CONV, &mut item) };
        if rc != sys::PAM_SUCCESS || item.is_null() {
            return Err(ConvError::NoConversation);
        }
        // SAFETY: libpam stores a `struct pam_conv` for PAM_CONV, which lives as long as the
        // handle.
        let conv = unsafe { &*item.cast::<PamConv>() };
        let Some(callback) = conv.conv else {
            return Err(ConvError::NoConversation);
        };
        // Some messages carry a secret (the enrollment QR code and key). A NUL would cut the
        // message short, so it becomes a space.
        let mut text_nul = Zeroizing::new(Vec::with_capacity(text.len() + 1));
        text_nul.extend(text.bytes().map(|b| if b == 0 { b' ' } else { b }));
        text_nul.push(0);
        let message = PamMessage {
            msg_style: style,
            msg: text_nul.as_ptr().cast::<c_char>(),
        };
        let mut message_ptr: *const PamMessage = &message;
        let mut responses: *mut PamResponse = ptr::null_mut();
        // SAFETY: one valid message whose text outlives the call; responses is a valid out
        // pointer; appdata_ptr is the application's own, handed back unchanged.
        let rc = unsafe { callback(1, &mut message_ptr, &mut responses, conv.appdata_ptr) };
        // SAFETY: whatever the return code, libpam's contract makes `responses` either null or a
        // malloc'd array of one response that we now own.
        let answer = unsafe { take_response(responses) };
        if rc != sys::PAM_SUCCESS {
            return Err(ConvError::Failed(rc));
        }
        match answer {
            Some(answer) => Ok(answer),
            None if style == sys::PAM_PROMPT_ECHO_OFF || style == sys::PAM_PROMPT_ECHO_ON => {
                Err(ConvError::NoAnswer)
            }
            None => Ok(Zeroizing::new(String::new())),
        }
    }

    fn c_item(&self, item_type: c_int) -> Option<&CStr> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: the handle is live for this hook; item is a valid out pointer.
        let rc = unsafe { sys::pam_get_item(self.raw, item_type, &mut item) };
        if rc != sys::PAM_SUCCESS || item.is_null() {
            return None;
        }
        // SAFETY: string items are NUL-terminated strings owned by libpam, alive as long as the
        // handle (and unchanged while this hook runs).
        Some(unsafe { CStr::from_ptr(item.cast::<c_char>()) })
    }
}

/// The module's arguments from libpam's argc/argv; an argument that is not UTF-8 is kept as
/// lossy text, so that it is refused as unknown rather than dropped.
///
/// # Safety
/// `argv` must be null or point to `argc` NUL-terminated strings, alive during the call.
pub unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    let count = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() || count == 0 {
        return Vec::new();
    }
    // SAFETY: by this function's contract, argv points to argc pointers.
    let pointers = unsafe { std::slice::from_raw_parts(argv, count) };
    pointers
        .iter()
        .filter(|p| !p.is_null())
        // SAFETY: each non-null pointer is a NUL-terminated string, by contract.
        .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        .collect()
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
        // SAFETY: wipes the string we own; nothing reads it afterwards.
        unsafe { libc::explicit_bzero(text.cast(), len) };
        // SAFETY: frees the string we own, once.
        unsafe { libc::free(text.cast()) };
        answer
    };
    // SAFETY: the array itself is ours to free.
    unsafe { libc::free(responses.cast()) };
    answer
}
