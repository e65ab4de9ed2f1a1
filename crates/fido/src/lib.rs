//! The device path to FIDO2/U2F security keys: CTAPHID framing over `/dev/hidraw*` and the CTAP2
//! and U2F commands the module and the CLI need, with libc only.
