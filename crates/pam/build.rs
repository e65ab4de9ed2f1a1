//! Links the unwinder statically (libgcc_eh) instead of loading libgcc_s.so.
//!
//! libpam dlopens the module at every login, and each shared library the module needs is loaded,
//! relocated and unloaded with it: libgcc_s alone cost about 0.17 ms per login here, a tenth of a
//! whole login. Rust asks the linker for `-lgcc_s`; a linker script of that name placed first on
//! the search path hands it the static archive instead. Where no libgcc_eh.a is found, the
//! ordinary dynamic libgcc_s is used.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.ends_with("-linux-gnu") {
        return;
    }
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(output) = Command::new(compiler)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let archive = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !output.status.success() || !archive.is_absolute() || !archive.exists() {
        return;
    }
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let script = out_dir.join("libgcc_s.so");
    if std::fs::write(&script, format!("INPUT({})\n", archive.display())).is_ok() {
        println!("cargo:rustc-link-search=native={}", out_dir.display());
    }
}
