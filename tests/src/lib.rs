//! What every test family of this package shares about the artifacts under test.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `libpam_twofold.so` that cargo built for this test binary, by absolute path.
///
/// The test package depends on crates/pam, so `cargo test` compiles the module with both its
/// crate types (`cdylib` and `rlib`) into `deps/`, as new as the rlib the test links. Only
/// `cargo build` copies it up to `target/debug/`, so that copy can be stale and is a fallback.
pub fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory");
    let candidates = [
        Some(deps.join(MODULE_FILE)),
        deps.parent().map(|profile| profile.join(MODULE_FILE)),
    ];
    let module = candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{MODULE_FILE} not found beside {}", exe.display()));
    // The module and the rlib come out of one rustc run; a module older than the rlib is stale.
    let modified = |path: &Path| fs::metadata(path).and_then(|m| m.modified()).ok();
    let rlib = deps.join("libpam_twofold.rlib");
    if let (Some(so), Some(rlib)) = (modified(&module), modified(&rlib)) {
        let lag = rlib.duration_since(so).unwrap_or_default();
        assert!(
            lag < Duration::from_secs(60),
            "{} is older than the library this test links; rebuild",
            module.display()
        );
    }
    module
}

const MODULE_FILE: &str = "libpam_twofold.so";
