#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    twofold_web::main()
}
