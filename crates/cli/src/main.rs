//! `twofold`: the enrollment and admin CLI. Everything lives in the library, so that the tests can
//! reach the parsers it owns.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    twofold_cli::main()
}
