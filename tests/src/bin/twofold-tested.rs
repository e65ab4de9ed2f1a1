//! The `twofold` CLI as this test package builds it, so that cargo rebuilds it with the tests and
//! hands them its path (`CARGO_BIN_EXE_twofold-tested`). It is the same `main` as the installed
//! binary's.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    twofold_cli::main()
}
