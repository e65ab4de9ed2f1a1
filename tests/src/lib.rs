//! What every test family of this package shares: where the artifacts under test are, temp
//! directories, and TOTP codes with the oathtool oracle.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod soft_key;

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

/// Temp directories and files with exact modes (the code under test checks them).
pub mod files {
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A directory (mode 0700) under the system temp dir or a given parent, removed with its
    /// contents on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(label: &str) -> TempDir {
            TempDir::new_in(&std::env::temp_dir(), label)
        }

        pub fn new_in(parent: &Path, label: &str) -> TempDir {
            TempDir::try_new_in(parent, label)
                .unwrap_or_else(|e| panic!("cannot make a temp dir in {}: {e}", parent.display()))
        }

        pub fn try_new_in(parent: &Path, label: &str) -> std::io::Result<TempDir> {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let unique = format!(
                "twofold-test-{label}-{}-{}-{nanos:x}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
            );
            let path = parent.join(unique);
            fs::DirBuilder::new().mode(0o700).create(&path)?;
            // The umask may have narrowed the mode; tests rely on exactly 0700.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
            Ok(TempDir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }

        /// Writes `name` (mode 0600, ours: a file the code under test trusts) and returns its
        /// path.
        pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
            let path = self.0.join(name);
            write_file(&path, contents.as_ref(), 0o600);
            path
        }

        /// Makes a subdirectory with mode 0700 and returns its path.
        pub fn subdir(&self, name: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::DirBuilder::new().mode(0o700).create(&path).unwrap();
            path
        }

        /// Makes a records directory (or home index) confirmed as the package confirms the
        /// real one: mode 0700, holding the store marker.
        pub fn store(&self, name: &str) -> PathBuf {
            let path = self.subdir(name);
            write_file(&path.join(STORE_MARKER), b"", 0o600);
            path
        }
    }

    /// The store marker's documented name (spelled out, so that a rename in the code is
    /// caught).
    pub const STORE_MARKER: &str = ".twofold-store";

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes `bytes` to a new or truncated file, then sets its mode exactly (umask aside).
    pub fn write_file(path: &Path, bytes: &[u8], mode: u32) {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        file.write_all(bytes).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// TOTP codes for the default parameters (SHA1, 6 digits, 30 s) from the library, and the
/// independent oracle (`oathtool`, OATH Toolkit) that the library is checked against.
pub mod codes {
    use std::process::Command;
    use std::time::{SystemTime, UNIX_EPOCH};

    use twofold_core::totp::{Algorithm, Digits, Secret, TotpKey};

    pub fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// The key for a base32 secret with the default parameters.
    pub fn key(secret: &str) -> TotpKey {
        TotpKey {
            secret: Secret::from_base32(secret).unwrap(),
            algorithm: Algorithm::Sha1,
            digits: Digits::SIX,
            period: 30,
        }
    }

    /// The default code at `unix_time`, from the library.
    pub fn at(secret: &str, unix_time: u64) -> String {
        let key = key(secret);
        key.code_at_step(key.step_of(unix_time)).to_string()
    }

    /// The current code: from the library, and checked against oathtool where it is installed.
    pub fn now(secret: &str) -> String {
        let t = unix_now();
        let ours = at(secret, t);
        if let Some(theirs) = oathtool(&key(secret), &format!("@{t}"), 0) {
            assert_eq!(
                theirs,
                std::slice::from_ref(&ours),
                "oathtool and the library disagree at {t}"
            );
        }
        ours
    }

    /// The next step's code: accepted (window 1) after the current step was spent.
    pub fn next(secret: &str) -> String {
        at(secret, unix_now() + 30)
    }

    /// A six-digit code that no step within five of now has.
    pub fn wrong(secret: &str) -> String {
        let t = unix_now();
        let near: Vec<String> = (0..=10).map(|i| at(secret, t + i * 30 - 150)).collect();
        (0..)
            .map(|n: u32| format!("{n:06}"))
            .find(|code| !near.contains(code))
            .unwrap()
    }

    /// The codes `oathtool` prints for `key` at `now` (any time oathtool's `--now` parses) and
    /// `extra_steps` steps after it, or `None` where oathtool is not installed, which is a
    /// failure under `CI=true`.
    pub fn oathtool(key: &TotpKey, now: &str, extra_steps: u64) -> Option<Vec<String>> {
        let args = [
            format!("--totp={}", key.algorithm.name()),
            format!("--digits={}", key.digits.get()),
            format!("--time-step-size={}s", key.period),
            format!("--now={now}"),
            format!("--window={extra_steps}"),
            hex(key.secret.as_bytes()),
        ];
        let output = match Command::new("oathtool").args(&args).output() {
            Ok(output) => output,
            Err(e) if !under_ci() => {
                eprintln!("oathtool not run ({e}); install the Debian package `oathtool`");
                return None;
            }
            Err(e) => panic!("cannot run oathtool under CI=true (install `oathtool`): {e}"),
        };
        assert!(
            output.status.success(),
            "oathtool {args:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        Some(stdout.lines().map(str::to_string).collect())
    }

    /// Whether this run is CI's, where nothing a test needs may be missing.
    pub fn under_ci() -> bool {
        std::env::var("CI").is_ok_and(|ci| ci == "true")
    }

    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
