//! twofold-web: the web front door. nginx asks `/twofold/auth` about every request
//! (`auth_request`); a user without a session signs in with a password (checked by twofoldd
//! through PAM), then a TOTP code, a backup code or a security key through WebAuthn. Records
//! are reached only through twofoldd: this process runs unprivileged and reads no record and no
//! `/etc/shadow`. A code spent here is spent for SSH and sudo, and the throttle is the same.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod pages;
pub mod redirect;
pub mod routes;
mod run;
pub mod session;
pub mod webauthn;

pub use run::main;
