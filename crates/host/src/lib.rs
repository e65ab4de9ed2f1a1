//! Everything of twofold that touches this machine: the file store (central and home records),
//! passwd lookups, the filesystem identity switch, flock, syslog, the system clock and reading the
//! config file.
//!
//! Every system call goes through one safe wrapper in `sys`, each with its own `// SAFETY:`; the
//! rest of this crate is safe code. It makes no login decision: that is the core's.

pub mod any_store;
pub mod clock;
pub mod config_file;
pub mod daemon_store;
pub mod file_store;
pub mod login_session;
#[cfg(feature = "pam-client")]
pub mod pam_client;
pub mod passwd;
pub mod peer;
pub mod state_file;
pub mod store_marker;
pub mod sys;
pub mod syslog;

pub use clock::SystemClock;
pub use file_store::FileStore;
