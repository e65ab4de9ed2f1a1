//! `twofoldd` as this test package builds it, so that cargo rebuilds it with the tests and hands
//! them its path (`CARGO_BIN_EXE_twofoldd-tested`). It is the same `main` as the installed
//! daemon's.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    twofold_daemon::main()
}
