//! `twofoldd`: the local broker of twofold's store. Everything lives in the library, so that the
//! tests can build the same `main` as their own binary and reach the pure parts.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    twofold_daemon::main()
}
