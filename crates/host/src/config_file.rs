//! Reading the host config file: opened without following links, owned by root (or the account
//! reading it), writable by nobody else, and bounded in size. Its text goes to the core's
//! `Config::parse`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use twofold_core::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};

use crate::sys;

/// Loads and validates the config at `path`. A missing file means the defaults. An unset issuer
/// becomes this machine's host name.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_text(path).map(|(config, _)| config)
}

/// `load`, and the file's text, for a front door that reads a section of its own from it
/// (twofold-web's `[web]`). A missing default file has the empty text.
pub fn load_with_text(path: &Path) -> Result<(Config, String), ConfigError> {
    let (mut config, text) = read(path)?;
    if config.issuer.is_none() {
        config.issuer = Some(sys::hostname().unwrap_or_else(|| "localhost".into()));
    }
    Ok((config, text))
}

fn read(path: &Path) -> Result<(Config, String), ConfigError> {
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        // Only the default file may be missing: a path someone named must exist, or a typo in
        // a service file would silently mean the defaults.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && path == Path::new(DEFAULT_CONFIG_PATH) =>
        {
            return Ok((Config::default(), String::new()))
        }
        Err(cause) => {
            return Err(ConfigError::Unreadable {
                path: path.into(),
                cause,
            })
        }
    };
    let meta = file.metadata().map_err(|cause| ConfigError::Unreadable {
        path: path.into(),
        cause,
    })?;
    check_config_metadata(path, &meta)?;
    let mut text = String::with_capacity(meta.len().min(MAX_CONFIG_BYTES) as usize + 1);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|cause| ConfigError::Unreadable {
            path: path.into(),
            cause,
        })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::Invalid {
            path: path.into(),
            line: None,
            message: format!("larger than {MAX_CONFIG_BYTES} bytes"),
        });
    }
    Ok((Config::parse(path, &text)?, text))
}

/// The config only needs to be trusted as much as the account that reads it: it must belong to
/// root or to that account, and nobody else may write it.
fn check_config_metadata(path: &Path, meta: &fs::Metadata) -> Result<(), ConfigError> {
    let unsafe_because = |why: String| ConfigError::Unsafe {
        path: path.into(),
        why,
    };
    if !meta.file_type().is_file() {
        return Err(unsafe_because("not a regular file".into()));
    }
    let euid = sys::geteuid();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(unsafe_because(format!(
            "owned by uid {}, expected root (uid 0)",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_because(format!(
            "mode {:04o} lets group or others write it; run chmod go-w",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

const MAX_CONFIG_BYTES: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_config_file_must_exist() {
        let missing = Path::new("/nonexistent/twofold/config.toml");
        let err = load(missing).unwrap_err().to_string();
        assert!(
            err.starts_with("/nonexistent/twofold/config.toml: cannot read"),
            "{err}"
        );
    }
}
