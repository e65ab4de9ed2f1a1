//! `twofold-web` as this test package builds it, so that cargo rebuilds it with the tests and
//! hands them its path (`CARGO_BIN_EXE_twofold-web-tested`). It is the same `main` as the
//! installed program's.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    twofold_web::main()
}
