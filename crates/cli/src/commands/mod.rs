//! One file per command.

pub mod codes;
pub mod confirm_store;
pub mod disable;
pub mod enroll;
pub mod import;
pub mod keys;
pub mod migrate;
pub mod status;
pub mod unlock;
