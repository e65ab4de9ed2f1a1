//! twofold: a second factor for Linux logins.
//!
//! The crate builds `pam_twofold.so` (the `pam` module is its only PAM-aware part) and the core
//! that the `twofold` CLI shares with it: config, records and state, TOTP, backup codes, the
//! login decision and enrollment.

pub mod auth;
pub mod backup;
pub mod config;
pub mod enroll;
pub mod import;
pub mod log;
pub mod pam;
pub mod pamconf;
pub mod qr;
pub mod record;
pub mod state;
pub mod store;
pub mod totp;
pub mod user;
