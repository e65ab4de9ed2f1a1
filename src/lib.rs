//! twofold's core: the login decision, enrollment, TOTP, backup codes, and the records and state
//! they live in.
//!
//! The core never sees PAM, HTTP, a terminal, a socket, the file system or the system clock: the
//! front doors (the PAM module, the CLI) and the host adapter supply the traits it owns
//! (`Prompter`, `Clock`, `Store`, `Accounts`) and map its outcomes to their own world.

#![forbid(unsafe_code)]

pub mod backup;
pub mod cbor;
pub mod clock;
pub mod config;
pub mod enroll;
pub mod key_assertion;
pub mod keys;
pub mod login;
pub mod prompt;
pub mod qr;
pub mod record;
pub mod security_key;
pub mod state;
pub mod store;
pub mod text;
pub mod totp;
pub mod user;
