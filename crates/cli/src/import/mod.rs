//! Parsers for other modules' enrollment files. They turn hostile text into typed values; what is
//! kept of them is decided by the core, under the user's lock.

pub mod google_authenticator;
pub mod pam_u2f;
