//! The part of libpam's C interface the module uses: types, functions and constants, declared by
//! hand from `<security/_pam_types.h>` and `<security/pam_modules.h>` (Linux-PAM 1.5). A unit
//! test checks every constant against the installed header.

use std::os::raw::{c_char, c_int, c_uint, c_void};

/// libpam's opaque handle.
#[repr(C)]
pub struct PamHandle {
    _private: [u8; 0],
}

#[repr(C)]
pub struct PamMessage {
    pub msg_style: c_int,
    pub msg: *const c_char,
}

#[repr(C)]
pub struct PamResponse {
    pub resp: *mut c_char,
    pub resp_retcode: c_int,
}

pub type ConvCallback = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
pub struct PamConv {
    pub conv: Option<ConvCallback>,
    pub appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    pub fn pam_get_item(
        pamh: *const PamHandle,
        item_type: c_int,
        item: *mut *const c_void,
    ) -> c_int;
    pub fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    pub fn pam_get_user(
        pamh: *mut PamHandle,
        user: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    pub fn pam_fail_delay(pamh: *mut PamHandle, usec: c_uint) -> c_int;
}

// Return codes.
pub const PAM_SUCCESS: c_int = 0;
pub const PAM_SERVICE_ERR: c_int = 3;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
pub const PAM_MAXTRIES: c_int = 11;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_AUTHTOK_ERR: c_int = 20;
pub const PAM_IGNORE: c_int = 25;

// Items.
pub const PAM_SERVICE: c_int = 1;
pub const PAM_CONV: c_int = 5;
pub const PAM_AUTHTOK: c_int = 6;
pub const PAM_RHOST: c_int = 4;
pub const PAM_TTY: c_int = 3;

// Message styles.
pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_PROMPT_ECHO_ON: c_int = 2;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;

// Flags.
pub const PAM_SILENT: c_int = 0x8000;

/// Every constant above by its name in the header, for the test that checks them.
pub const CONSTANTS: &[(&str, c_int)] = &[
    ("PAM_SUCCESS", PAM_SUCCESS),
    ("PAM_SERVICE_ERR", PAM_SERVICE_ERR),
    ("PAM_AUTH_ERR", PAM_AUTH_ERR),
    ("PAM_AUTHINFO_UNAVAIL", PAM_AUTHINFO_UNAVAIL),
    ("PAM_MAXTRIES", PAM_MAXTRIES),
    ("PAM_CONV_ERR", PAM_CONV_ERR),
    ("PAM_AUTHTOK_ERR", PAM_AUTHTOK_ERR),
    ("PAM_IGNORE", PAM_IGNORE),
    ("PAM_SERVICE", PAM_SERVICE),
    ("PAM_CONV", PAM_CONV),
    ("PAM_AUTHTOK", PAM_AUTHTOK),
    ("PAM_RHOST", PAM_RHOST),
    ("PAM_TTY", PAM_TTY),
    ("PAM_PROMPT_ECHO_OFF", PAM_PROMPT_ECHO_OFF),
    ("PAM_PROMPT_ECHO_ON", PAM_PROMPT_ECHO_ON),
    ("PAM_ERROR_MSG", PAM_ERROR_MSG),
    ("PAM_TEXT_INFO", PAM_TEXT_INFO),
    ("PAM_SILENT", PAM_SILENT),
];

#[cfg(test)]
mod tests {
    use super::CONSTANTS;

    #[test]
    fn constants_match_the_linux_pam_header() {
        let header = std::fs::read_to_string("/usr/include/security/_pam_types.h")
            .expect("libpam0g-dev's _pam_types.h");
        for &(name, value) in CONSTANTS {
            let defined = header
                .lines()
                .filter_map(|line| line.strip_prefix("#define "))
                .find_map(|rest| {
                    let mut words = rest.split_whitespace();
                    (words.next() == Some(name)).then(|| words.next()).flatten()
                })
                .unwrap_or_else(|| panic!("{name} is not defined in the header"));
            let digits = defined.trim_end_matches('U');
            let parsed = match digits.strip_prefix("0x") {
                Some(hex) => i32::from_str_radix(hex, 16),
                None => digits.parse(),
            };
            assert_eq!(parsed, Ok(value), "{name} is {defined} in the header");
        }
    }
}
