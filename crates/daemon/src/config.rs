//! The daemon's own config file (`/etc/twofold/twofoldd.toml`): which backend, where the socket
//! is, which account the web server runs as, and the connection limits.
//!
//! Parsed as the core parses `config.toml`: unknown keys and values out of range are errors that
//! name the file and the line. The file is read like `config.toml`: without following links,
//! owned by root (or the account running the daemon), writable by nobody else.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;

use twofold_core::config::{line_of, one_line, ConfigError};
use twofold_core::user::UserName;
use twofold_host::sys;

use crate::ldap_config::{LdapConfig, RawLdap};

/// Where the daemon's config lives unless `--daemon-config PATH` says otherwise.
pub const DEFAULT_DAEMON_CONFIG_PATH: &str = "/etc/twofold/twofoldd.toml";
/// The socket systemd listens on, and the one `--listen` defaults to in the config.
pub const DEFAULT_SOCKET: &str = "/run/twofold/twofoldd.sock";

/// The validated daemon configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub backend: Backend,
    /// The socket to listen on when systemd does not pass one.
    pub socket: PathBuf,
    /// The account the web server runs as: it may do everything root may, for any user.
    pub web_user: UserName,
    /// The PAM service that checks the web's passwords (`/etc/pam.d/<name>`).
    pub password_service: String,
    /// How long one connection may take to send its request, and to take the answer.
    pub io_timeout: Duration,
    /// Connections served at once; more are answered "busy".
    pub max_connections: usize,
    /// The directory (`[ldap]`), present exactly when the backend is `ldap`.
    pub ldap: Option<LdapConfig>,
}

/// Where the daemon keeps records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The same files as the module's embedded store (`records` in config.toml).
    Files,
    /// A directory server (`[ldap]`): one entry per user, for fleets.
    Ldap,
}

impl DaemonConfig {
    /// Parses config text; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<DaemonConfig, ConfigError> {
        let mut raw: RawDaemonConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            line: e.span().map(|span| line_of(text, span.start)),
            message: one_line(e.message()),
        })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.into(),
            line: key_line(text, key),
            message,
        };
        let ldap = match (raw.backend, raw.ldap.take()) {
            (Backend::Ldap, Some(section)) => {
                Some(LdapConfig::from_raw(section).map_err(|(key, why)| invalid(key, why))?)
            }
            (Backend::Ldap, None) => {
                return Err(invalid(
                    "backend",
                    "backend = \"ldap\" needs an [ldap] section (servers, base_dn, bind_dn, \
                     bind_password_file)"
                        .into(),
                ))
            }
            // A section the backend does not use would be a silent surprise later.
            (Backend::Files, Some(_)) => {
                return Err(invalid(
                    "[ldap]",
                    "an [ldap] section is only read with backend = \"ldap\"".into(),
                ))
            }
            (Backend::Files, None) => None,
        };
        Ok(DaemonConfig { ldap, ..raw.into() })
    }

    /// Loads `path`. Only the default path may be missing (meaning the defaults): a file someone
    /// named must exist, or a typo in a unit file would silently mean the defaults.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let unreadable = |cause| ConfigError::Unreadable {
            path: path.into(),
            cause,
        };
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                sys::open_flags::O_NOFOLLOW
                    | sys::open_flags::O_CLOEXEC
                    | sys::open_flags::O_NONBLOCK,
            )
            .open(path)
        {
            Ok(file) => file,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_DAEMON_CONFIG_PATH) =>
            {
                return Ok(DaemonConfig::default())
            }
            Err(cause) => return Err(unreadable(cause)),
        };
        let meta = file.metadata().map_err(unreadable)?;
        let unsafe_because = |why: String| ConfigError::Unsafe {
            path: path.into(),
            why,
        };
        if !meta.file_type().is_file() {
            return Err(unsafe_because("not a regular file".into()));
        }
        if meta.uid() != 0 && meta.uid() != sys::geteuid() {
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
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line: None,
                message: format!("larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        DaemonConfig::parse(path, &text)
    }
}

impl Default for DaemonConfig {
    fn default() -> DaemonConfig {
        RawDaemonConfig::default().into()
    }
}

impl From<RawDaemonConfig> for DaemonConfig {
    fn from(raw: RawDaemonConfig) -> DaemonConfig {
        DaemonConfig {
            backend: raw.backend,
            socket: raw.socket,
            web_user: raw.web_user,
            password_service: raw.password_service,
            io_timeout: Duration::from_millis(raw.io_timeout_ms),
            max_connections: raw.max_connections,
            ldap: None,
        }
    }
}

// ---- The file as written, each value range-checked while parsing so that errors carry a line.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDaemonConfig {
    backend: Backend,
    #[serde(deserialize_with = "socket")]
    socket: PathBuf,
    #[serde(deserialize_with = "web_user")]
    web_user: UserName,
    #[serde(deserialize_with = "password_service")]
    password_service: String,
    #[serde(deserialize_with = "io_timeout_ms")]
    io_timeout_ms: u64,
    #[serde(deserialize_with = "max_connections")]
    max_connections: usize,
    ldap: Option<RawLdap>,
}

impl Default for RawDaemonConfig {
    fn default() -> Self {
        RawDaemonConfig {
            backend: Backend::Files,
            socket: PathBuf::from(DEFAULT_SOCKET),
            // The constant is a valid name (letters and a dash, see UserName::parse).
            web_user: UserName::parse(DEFAULT_WEB_USER).expect("a valid default name"),
            password_service: DEFAULT_PASSWORD_SERVICE.into(),
            io_timeout_ms: DEFAULT_IO_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            ldap: None,
        }
    }
}

fn socket<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = String::deserialize(d)?;
    // sun_path holds 108 bytes with the terminating NUL.
    if !path.starts_with('/')
        || path.contains('\0')
        || path.len() > 107
        || path.ends_with('/')
        || path.split('/').any(|part| part == "..")
    {
        return Err(D::Error::custom(
            "socket: expected an absolute path of at most 107 bytes, without `..`",
        ));
    }
    Ok(PathBuf::from(path))
}

fn web_user<'de, D: Deserializer<'de>>(d: D) -> Result<UserName, D::Error> {
    let name = String::deserialize(d)?;
    UserName::parse(&name).ok_or_else(|| D::Error::custom("web_user: expected an account name"))
}

/// A file name in /etc/pam.d: letters, digits, `.`, `_`, `-`, not starting with a dot.
fn password_service<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    let fits = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    match fits {
        true => Ok(name),
        false => Err(D::Error::custom(
            "password_service: expected a PAM service name (a file name in /etc/pam.d)",
        )),
    }
}

pub(crate) fn ranged<'de, D: Deserializer<'de>>(
    d: D,
    key: &str,
    min: i64,
    max: i64,
) -> Result<i64, D::Error> {
    let value = i64::deserialize(d)?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(D::Error::custom(format!(
            "{key}: expected an integer from {min} to {max}, found {value}"
        )))
    }
}

// The `as` casts are lossless: `ranged` bounds each value to its target type.
fn io_timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "io_timeout_ms", 10, 60_000).map(|v| v as u64)
}

fn max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    ranged(d, "max_connections", 1, 4096).map(|v| v as usize)
}

/// The line (1-based) where `key` is first set, or where the `[section]` header `key` is.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            match key.starts_with('[') {
                true => l.starts_with(key),
                false => l
                    .strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with('=')),
            }
        })
        .map(|index| index + 1)
}

const DEFAULT_WEB_USER: &str = "twofold-web";
const DEFAULT_PASSWORD_SERVICE: &str = "twofold-web";
const DEFAULT_IO_TIMEOUT_MS: u64 = 2000;
const DEFAULT_MAX_CONNECTIONS: usize = 64;
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DaemonConfig, String> {
        DaemonConfig::parse(Path::new("/etc/twofold/twofoldd.toml"), text)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_file_means_the_documented_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, DaemonConfig::default());
        assert_eq!(config.backend, Backend::Files);
        assert_eq!(config.socket, PathBuf::from("/run/twofold/twofoldd.sock"));
        assert_eq!(config.web_user.as_str(), "twofold-web");
        assert_eq!(config.password_service, "twofold-web");
        assert_eq!(config.io_timeout, Duration::from_millis(2000));
        assert_eq!(config.max_connections, 64);
    }

    #[test]
    fn the_annotated_default_file_parses_to_the_defaults() {
        let text = include_str!("../../../conf/twofoldd.toml");
        assert_eq!(parse(text).unwrap(), DaemonConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_line() {
        let err = parse("backend = \"files\"\nsockets = \"/x\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/twofold/twofoldd.toml:2: unknown field `sockets`"),
            "{err}"
        );
        let err = parse("\nio_timeout_ms = 0\n").unwrap_err();
        assert_eq!(
            err,
            "/etc/twofold/twofoldd.toml:2: io_timeout_ms: expected an integer from 10 to 60000, found 0"
        );
        let err = parse("max_connections = 100000\n").unwrap_err();
        assert!(
            err.starts_with("/etc/twofold/twofoldd.toml:1: max_connections"),
            "{err}"
        );
        let err = parse("socket = \"run/x.sock\"\n").unwrap_err();
        assert!(err.contains("socket: expected an absolute path"), "{err}");
        let err = parse("web_user = \"a/b\"\n").unwrap_err();
        assert!(err.contains("web_user"), "{err}");
        for bad in ["../shadow", ".hidden", "", "a b"] {
            let err = parse(&format!("password_service = \"{bad}\"\n")).unwrap_err();
            assert!(err.contains("password_service: expected"), "{bad}: {err}");
        }
        let err = parse("backend = \"nfs\"\n").unwrap_err();
        assert!(err.starts_with("/etc/twofold/twofoldd.toml:1:"), "{err}");
    }

    const LDAP: &str = "backend = \"ldap\"\n[ldap]\n\
        servers = [\"ldaps://dir.example.com:636\", \"ldap://localhost:389\", \"ldapi:///\"]\n\
        base_dn = \"dc=example,dc=com\"\n\
        bind_dn = \"cn=twofoldd,dc=example,dc=com\"\n\
        bind_password_file = \"/etc/twofold/ldap.secret\"\n\
        ca_file = \"/etc/twofold/ldap-ca.pem\"\n";

    #[test]
    fn the_ldap_backend_needs_its_section_and_takes_its_defaults() {
        let err = parse("socket = \"/run/x.sock\"\nbackend = \"ldap\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/twofold/twofoldd.toml:2: backend = \"ldap\" needs an [ldap]"),
            "{err}"
        );
        let config = parse(LDAP).unwrap();
        let ldap = config.ldap.unwrap();
        assert_eq!(ldap.servers.len(), 3);
        assert_eq!(ldap.user_filter, "(uid={user})");
        assert_eq!(ldap.connect_timeout, Duration::from_millis(1000));
        assert_eq!(ldap.op_timeout, Duration::from_millis(1500));
        assert_eq!(ldap.deadline, Duration::from_millis(3000));
        assert!(!ldap.starttls);
    }

    #[test]
    fn tls_without_a_ca_file_plain_remote_ldap_and_a_stray_section_are_refused() {
        let no_ca = LDAP.replace("ca_file = \"/etc/twofold/ldap-ca.pem\"\n", "");
        let err = parse(&no_ca).unwrap_err();
        assert!(
            err.starts_with("/etc/twofold/twofoldd.toml:3: ldaps://"),
            "{err}"
        );
        assert!(err.contains("needs ca_file"), "{err}");
        let remote = LDAP.replace("ldap://localhost:389", "ldap://dir.example.com");
        let err = parse(&remote).unwrap_err();
        assert!(err.contains("only for localhost"), "{err}");
        let stray = LDAP.replace("backend = \"ldap\"", "backend = \"files\"");
        let err = parse(&stray).unwrap_err();
        assert!(
            err.starts_with("/etc/twofold/twofoldd.toml:2: an [ldap] section"),
            "{err}"
        );
        let slow = format!("{LDAP}deadline_ms = 5000\n");
        let err = parse(&slow).unwrap_err();
        assert!(
            err.contains("deadline_ms: expected an integer from 50 to 4500"),
            "{err}"
        );
        let typo = format!("{LDAP}server = []\n");
        assert!(parse(&typo).unwrap_err().contains("unknown field `server`"));
    }
}
