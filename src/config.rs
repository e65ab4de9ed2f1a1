//! The host configuration (`/etc/twofold/config.toml`) and the PAM module arguments.
//!
//! This module owns parsing and validation: every value that leaves it is in range, so the rest of
//! the crate never re-checks. It never touches a file: the host adapter reads the file and hands
//! its text to `Config::parse`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;

use crate::totp::{Algorithm, Digits};

/// Why enroll_on_login and a home records template do not mix.
pub const ENROLL_NEEDS_CENTRAL_RECORDS: &str =
    "enroll_on_login needs records in a central directory: a home that is not mounted yet at \
     login would look unenrolled, and whoever has the password could enroll a key there";

/// Where the config lives unless `config=PATH` or `--config PATH` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/twofold/config.toml";

/// The validated host configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The label shown in authenticator apps; `None` means the host name (filled in on load).
    pub issuer: Option<String>,
    /// Where each user's record lives.
    pub records: RecordsTemplate,
    /// With home records: the root-owned directory that lists who has enrolled, so that a home
    /// that is not mounted is told apart from a user who never enrolled.
    pub home_index: PathBuf,
    /// Unenrolled users skip the module (`PAM_IGNORE`) instead of failing. Weakens security.
    pub nullok: bool,
    /// Unenrolled users who passed the password step enroll during the login.
    pub enroll_on_login: bool,
    /// TOTP parameters for new enrollments and the verification window.
    pub totp: TotpPolicy,
    /// How many backup codes a new enrollment gets.
    pub backup_codes: BackupCodePolicy,
    /// Failed-attempt limits.
    pub throttle: ThrottlePolicy,
    /// Security keys.
    pub fido2: Fido2Policy,
    /// Where records and states are kept: in-process files, or through twofoldd.
    pub store: StoreKind,
    /// twofoldd's socket, with `store = "twofoldd"`.
    pub daemon_socket: PathBuf,
}

/// Which store the module and the CLI use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The records (and states) as files on this host, read and written in-process.
    Files,
    /// Everything through the local broker twofoldd (its own config names its backend).
    Twofoldd,
}

/// Security-key settings (`[fido2]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fido2Policy {
    /// The relying party id new keys are made for; `None` means `pam://<hostname>` (pam_u2f's
    /// default, filled in by the host). Each key keeps its own, so a rename never breaks a key.
    pub rp_id: Option<String>,
    /// The longest a login or `keys add` waits for a touch.
    pub touch_timeout_secs: u32,
    pub user_verification: UserVerification,
    /// How many keys one user may register.
    pub max_keys: u8,
    /// Shown when the key asks for a touch.
    pub cue: String,
}

/// Whether keys must verify the user (PIN or biometrics) as well as their presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserVerification {
    /// Presence only, unless the key was registered with `--pin`.
    Discouraged,
    /// Asked for where the key can (a PIN is set); keys registered so require it.
    Preferred,
    /// Every key must verify the user: registrations need a PIN, logins refuse assertions without UV.
    Required,
}

/// TOTP settings: the first three apply to new enrollments, `window` to every login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotpPolicy {
    pub algorithm: Algorithm,
    pub digits: Digits,
    pub period: u32,
    /// Steps accepted on each side of the current one.
    pub window: u8,
}

/// Backup-code settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupCodePolicy {
    pub count: u8,
}

/// After `max_failures` failed codes within `window_secs`, the second factor is locked for
/// `lock_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub max_failures: u8,
    pub window_secs: u32,
    pub lock_secs: u32,
}

/// A validated records path template, such as `/var/lib/twofold/{user}.toml` or
/// `~/.config/twofold.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordsTemplate {
    template: String,
}

/// Whether records live in a root-owned directory or in each user's home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordsLocation {
    /// One directory for everybody, owned by the account that runs PAM (root).
    Central,
    /// Under the user's home: read and written with the user's identity.
    Home,
}

/// The arguments on the module's line in a PAM service file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleArgs {
    pub config_path: Option<PathBuf>,
    pub debug: bool,
    pub forward_pass: bool,
    pub nullok: bool,
    pub enroll_on_login: bool,
}

/// What can be wrong with a config file or the module arguments.
#[derive(Debug)]
pub enum ConfigError {
    /// A module argument the module does not know.
    UnknownOption(String),
    /// A module argument that needs a value and has none, such as `config=`.
    MissingOptionValue(String),
    /// `config=` names a relative path.
    RelativeConfigPath(String),
    /// The file exists but could not be read.
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The file is writable by someone other than root (or the account running the check).
    Unsafe { path: PathBuf, why: String },
    /// The file is not valid TOML, has an unknown key, a wrong type or a value out of range.
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
}

impl Config {
    /// Parses config text; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            line: e.span().map(|span| line_of(text, span.start)),
            message: one_line(e.message()),
        })?;
        let config: Config = raw.into();
        if config.enroll_on_login && config.records.location() == RecordsLocation::Home {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("enroll_on_login"))
                .map(|index| index + 1);
            return Err(ConfigError::Invalid {
                path: path.into(),
                line,
                message: ENROLL_NEEDS_CENTRAL_RECORDS.into(),
            });
        }
        Ok(config)
    }

    /// The issuer label: the configured one, else the host name the host adapter filled in
    /// when it loaded the file.
    pub fn issuer(&self) -> String {
        self.issuer.clone().unwrap_or_else(|| "localhost".into())
    }
}

impl Default for Config {
    fn default() -> Config {
        RawConfig::default().into()
    }
}

impl ModuleArgs {
    /// Parses the module's arguments; any argument it does not know is an error.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<ModuleArgs, ConfigError> {
        let mut parsed = ModuleArgs::default();
        for arg in args {
            let arg = arg.as_ref();
            match arg.split_once('=') {
                Some(("config", "")) => return Err(ConfigError::MissingOptionValue(arg.into())),
                // A relative path would resolve against whatever directory the caller runs in.
                Some(("config", path)) if !path.starts_with('/') => {
                    return Err(ConfigError::RelativeConfigPath(path.into()))
                }
                Some(("config", path)) => parsed.config_path = Some(PathBuf::from(path)),
                None if arg == "config" => return Err(ConfigError::MissingOptionValue(arg.into())),
                None if arg == "debug" => parsed.debug = true,
                None if arg == "forward_pass" => parsed.forward_pass = true,
                None if arg == "nullok" => parsed.nullok = true,
                None if arg == "enroll_on_login" => parsed.enroll_on_login = true,
                _ => return Err(ConfigError::UnknownOption(arg.into())),
            }
        }
        Ok(parsed)
    }

    /// The config file these arguments select.
    pub fn config_path(&self) -> &Path {
        self.config_path
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_CONFIG_PATH))
    }

    /// Whether unenrolled users enroll at login on this line (the argument, or the config it
    /// reads); an error when the argument asks for it where records live in homes, which the
    /// config file itself may not ask for either.
    pub fn enrolls_on_login(&self, config: &Config) -> Result<bool, &'static str> {
        if self.enroll_on_login && config.records.location() == RecordsLocation::Home {
            return Err(ENROLL_NEEDS_CENTRAL_RECORDS);
        }
        Ok(self.enroll_on_login || config.enroll_on_login)
    }
}

impl RecordsTemplate {
    /// Checks a template: it must name a per-user file by an absolute path, `{home}` or `~/`.
    pub fn parse(template: &str) -> Result<RecordsTemplate, String> {
        let rest = template
            .strip_prefix("~/")
            .or_else(|| template.strip_prefix("{home}/"));
        let per_user_home = rest.is_some();
        let body = rest.unwrap_or(template);
        if !per_user_home && !template.starts_with('/') {
            return Err("must be an absolute path, or start with `~/` or `{home}/`".into());
        }
        if body.contains("{home}") || body.contains('~') && body.starts_with('~') {
            return Err("`{home}` and `~` may only start the path".into());
        }
        let without_user = body.replace("{user}", "");
        if without_user.contains('{') || without_user.contains('}') {
            return Err("the only placeholders are `{user}`, `{home}` and a leading `~/`".into());
        }
        if !per_user_home && !body.contains("{user}") {
            return Err("a path outside the home must contain `{user}`".into());
        }
        // `.toml` also keeps every record path apart from every state path (`.state`).
        if !template.ends_with(".toml") || template.contains('\0') {
            return Err("must name a `.toml` file".into());
        }
        if body.split('/').any(|part| part == "..") {
            return Err("must not contain `..`".into());
        }
        Ok(RecordsTemplate {
            template: template.to_string(),
        })
    }

    /// Where records live.
    pub fn location(&self) -> RecordsLocation {
        if self.template.starts_with("~/") || self.template.starts_with("{home}/") {
            RecordsLocation::Home
        } else {
            RecordsLocation::Central
        }
    }

    /// The record path for `user`, whose home is `home` (needed only for home templates).
    pub fn path_for(&self, user: &str, home: Option<&Path>) -> Option<PathBuf> {
        let expanded = self.template.replace("{user}", user);
        match self.location() {
            RecordsLocation::Central => Some(PathBuf::from(expanded)),
            RecordsLocation::Home => {
                let rest = expanded
                    .strip_prefix("~/")
                    .or_else(|| expanded.strip_prefix("{home}/"))?;
                Some(home?.join(rest))
            }
        }
    }

    /// For central templates, the directory every record lies under: the path up to the first
    /// part that names the user. Its store marker says that this directory is the real store.
    pub fn fixed_directory(&self) -> Option<PathBuf> {
        if self.location() != RecordsLocation::Central {
            return None;
        }
        let mut dir = PathBuf::from("/");
        let parts: Vec<&str> = self.template.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if part.contains("{user}") {
                break;
            }
            dir.push(part);
        }
        Some(dir)
    }

    /// The template as written in the config.
    pub fn as_str(&self) -> &str {
        &self.template
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownOption(arg) => write!(
                f,
                "unknown option `{arg}` (known: config=PATH, nullok, enroll_on_login, forward_pass, debug)"
            ),
            ConfigError::MissingOptionValue(arg) => {
                write!(f, "option `{arg}` needs a value (config=/absolute/path)")
            }
            ConfigError::RelativeConfigPath(path) => {
                write!(f, "config={} must be an absolute path", one_line(path))
            }
            ConfigError::Unreadable { path, cause } => {
                write!(f, "{}: cannot read: {cause}", path.display())
            }
            ConfigError::Unsafe { path, why } => write!(f, "{}: unsafe: {why}", path.display()),
            ConfigError::Invalid {
                path,
                line: Some(line),
                message,
            } => {
                write!(f, "{}:{line}: {message}", path.display())
            }
            ConfigError::Invalid {
                path,
                line: None,
                message,
            } => {
                write!(f, "{}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The line (from 1) that byte `offset` of `text` is on.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

pub use crate::text::one_line;

// ---- The file as written, with each value range-checked while parsing so that errors carry a
// ---- line number.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    #[serde(deserialize_with = "issuer")]
    issuer: Option<String>,
    #[serde(deserialize_with = "records")]
    records: RecordsTemplate,
    #[serde(deserialize_with = "home_index")]
    home_index: PathBuf,
    nullok: bool,
    enroll_on_login: bool,
    totp: RawTotp,
    backup_codes: RawBackupCodes,
    throttle: RawThrottle,
    fido2: RawFido2,
    store: StoreKind,
    #[serde(deserialize_with = "daemon_socket")]
    daemon_socket: PathBuf,
    /// twofold-web's section: parsed (strictly) by twofold-web, skipped here, so that the module
    /// carries none of its parsing.
    #[allow(dead_code)]
    web: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFido2 {
    #[serde(deserialize_with = "rp_id")]
    rp_id: Option<String>,
    #[serde(deserialize_with = "touch_timeout")]
    touch_timeout_secs: u32,
    user_verification: UserVerification,
    #[serde(deserialize_with = "max_keys")]
    max_keys: u8,
    #[serde(deserialize_with = "cue")]
    cue: String,
}

impl Default for RawFido2 {
    fn default() -> Self {
        RawFido2 {
            rp_id: None,
            touch_timeout_secs: 15,
            user_verification: UserVerification::Discouraged,
            max_keys: 10,
            cue: DEFAULT_CUE.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTotp {
    algorithm: Algorithm,
    digits: Digits,
    #[serde(deserialize_with = "period")]
    period: u32,
    #[serde(deserialize_with = "window")]
    window: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBackupCodes {
    #[serde(deserialize_with = "code_count")]
    count: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawThrottle {
    #[serde(deserialize_with = "max_failures")]
    max_failures: u8,
    #[serde(deserialize_with = "throttle_window")]
    window_secs: u32,
    #[serde(deserialize_with = "lock_secs")]
    lock_secs: u32,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            issuer: None,
            records: RecordsTemplate {
                template: DEFAULT_RECORDS.into(),
            },
            home_index: PathBuf::from(DEFAULT_HOME_INDEX),
            nullok: false,
            enroll_on_login: false,
            totp: RawTotp::default(),
            backup_codes: RawBackupCodes::default(),
            throttle: RawThrottle::default(),
            fido2: RawFido2::default(),
            store: StoreKind::Files,
            daemon_socket: PathBuf::from(DEFAULT_DAEMON_SOCKET),
            web: None,
        }
    }
}

impl Default for RawTotp {
    fn default() -> Self {
        RawTotp {
            algorithm: Algorithm::Sha1,
            digits: Digits::SIX,
            period: 30,
            window: 1,
        }
    }
}

impl Default for RawBackupCodes {
    fn default() -> Self {
        RawBackupCodes { count: 10 }
    }
}

impl Default for RawThrottle {
    fn default() -> Self {
        RawThrottle {
            max_failures: 5,
            window_secs: 300,
            lock_secs: 900,
        }
    }
}

impl From<RawConfig> for Config {
    fn from(raw: RawConfig) -> Config {
        Config {
            issuer: raw.issuer,
            records: raw.records,
            home_index: raw.home_index,
            nullok: raw.nullok,
            enroll_on_login: raw.enroll_on_login,
            totp: TotpPolicy {
                algorithm: raw.totp.algorithm,
                digits: raw.totp.digits,
                period: raw.totp.period,
                window: raw.totp.window,
            },
            backup_codes: BackupCodePolicy {
                count: raw.backup_codes.count,
            },
            throttle: ThrottlePolicy {
                max_failures: raw.throttle.max_failures,
                window_secs: raw.throttle.window_secs,
                lock_secs: raw.throttle.lock_secs,
            },
            fido2: Fido2Policy {
                rp_id: raw.fido2.rp_id,
                touch_timeout_secs: raw.fido2.touch_timeout_secs,
                user_verification: raw.fido2.user_verification,
                max_keys: raw.fido2.max_keys,
                cue: raw.fido2.cue,
            },
            store: raw.store,
            daemon_socket: raw.daemon_socket,
        }
    }
}

fn issuer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let issuer = String::deserialize(d)?;
    if issuer.is_empty()
        || issuer.len() > MAX_ISSUER_BYTES
        || issuer.contains(':')
        || issuer.chars().any(char::is_control)
    {
        return Err(D::Error::custom(
            "issuer: expected 1 to 32 bytes, without `:` or control characters",
        ));
    }
    Ok(Some(issuer))
}

fn records<'de, D: Deserializer<'de>>(d: D) -> Result<RecordsTemplate, D::Error> {
    let template = String::deserialize(d)?;
    RecordsTemplate::parse(&template).map_err(|why| D::Error::custom(format!("records: {why}")))
}

fn home_index<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = String::deserialize(d)?;
    if !path.starts_with('/') || path.contains('\0') || path.split('/').any(|part| part == "..") {
        return Err(D::Error::custom(
            "home_index: must be an absolute path without `..`",
        ));
    }
    Ok(PathBuf::from(path))
}

fn ranged<'de, D: Deserializer<'de>>(d: D, key: &str, min: i64, max: i64) -> Result<i64, D::Error> {
    let value = i64::deserialize(d)?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(D::Error::custom(format!(
            "{key}: expected an integer from {min} to {max}, found {value}"
        )))
    }
}

// The `as` casts below are lossless: `ranged` bounds each value to its target type.
pub(crate) fn period<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "totp.period", 10, 300).map(|v| v as u32)
}

pub(crate) fn window<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    ranged(d, "totp.window", 0, 10).map(|v| v as u8)
}

fn code_count<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    ranged(d, "backup_codes.count", 0, 20).map(|v| v as u8)
}

pub(crate) fn max_failures<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    ranged(
        d,
        "throttle.max_failures",
        1,
        crate::state::MAX_FAILURES as i64,
    )
    .map(|v| v as u8)
}

pub(crate) fn throttle_window<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "throttle.window_secs", 1, 86_400).map(|v| v as u32)
}

fn lock_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "throttle.lock_secs", 1, 604_800).map(|v| v as u32)
}

fn rp_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let id = String::deserialize(d)?;
    crate::security_key::check_rp_id(&id)
        .map(|()| Some(id))
        .map_err(|e| D::Error::custom(format!("fido2.{e}")))
}

fn touch_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "fido2.touch_timeout_secs", 1, 120).map(|v| v as u32)
}

fn max_keys<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    ranged(d, "fido2.max_keys", 1, crate::security_key::MAX_KEYS as i64).map(|v| v as u8)
}

fn cue<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let cue = String::deserialize(d)?;
    if cue.is_empty() || cue.len() > 200 || cue.chars().any(char::is_control) {
        return Err(D::Error::custom(
            "fido2.cue: expected 1 to 200 bytes without control characters",
        ));
    }
    Ok(cue)
}

const DEFAULT_CUE: &str = "Touch your security key.";
const DEFAULT_DAEMON_SOCKET: &str = "/run/twofold/twofoldd.sock";

fn daemon_socket<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = String::deserialize(d)?;
    if !path.starts_with('/') || path.contains('\0') || path.split('/').any(|part| part == "..") {
        return Err(D::Error::custom(
            "daemon_socket: must be an absolute path without `..`",
        ));
    }
    Ok(PathBuf::from(path))
}

/// Keeps the otpauth URI (which carries the issuer twice, percent-encoded) small enough for a QR
/// code that fits an 80-column terminal.
const MAX_ISSUER_BYTES: usize = 32;
const DEFAULT_RECORDS: &str = "/var/lib/twofold/{user}.toml";
const DEFAULT_HOME_INDEX: &str = "/var/lib/twofold/homes";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/twofold/config.toml"), text)
    }

    #[test]
    fn empty_file_means_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.records.as_str(), "/var/lib/twofold/{user}.toml");
        assert!(!config.nullok);
        assert!(!config.enroll_on_login);
        assert_eq!(config.totp.window, 1);
        assert_eq!(config.backup_codes.count, 10);
        assert_eq!(config.throttle.max_failures, 5);
    }

    #[test]
    fn full_file_is_read() {
        let config = parse(
            "issuer = \"example\"\nrecords = \"~/.twofold.toml\"\nnullok = true\n\
             [totp]\nalgorithm = \"SHA512\"\ndigits = 8\nperiod = 60\nwindow = 2\n\
             [backup_codes]\ncount = 5\n[throttle]\nmax_failures = 3\nwindow_secs = 60\nlock_secs = 120\n",
        )
        .unwrap();
        assert_eq!(config.issuer.as_deref(), Some("example"));
        assert_eq!(config.records.location(), RecordsLocation::Home);
        assert!(config.nullok);
        assert!(parse("enroll_on_login = true\n").unwrap().enroll_on_login);
        assert_eq!(config.totp.algorithm, Algorithm::Sha512);
        assert_eq!(config.totp.digits.get(), 8);
        assert_eq!(config.throttle.lock_secs, 120);
    }

    #[test]
    fn enroll_on_login_with_home_records_is_refused() {
        let err = parse("records = \"~/.twofold.toml\"\n\nenroll_on_login = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "/etc/twofold/config.toml:3: enroll_on_login needs records in a central directory"
            ),
            "{err}"
        );
    }

    #[test]
    fn value_out_of_range_names_line_and_range() {
        let err = parse("[totp]\n\ndigits = 9\n").unwrap_err().to_string();
        assert!(err.starts_with("/etc/twofold/config.toml:3:"), "{err}");
        assert!(err.contains("6 to 8"), "{err}");
        let err = parse("[totp]\nwindow = 11\n").unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("0 to 10"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = parse("[totp]\nwindw = 1\n").unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("windw"), "{err}");
        let err = parse("colour = 1\n").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = parse("nullok = \"yes\"\n").unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
        let err = parse("[totp]\nalgorithm = \"MD5\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("SHA1"), "{err}");
    }

    #[test]
    fn the_fixed_directory_stops_before_the_user() {
        let fixed = |t: &str| RecordsTemplate::parse(t).unwrap().fixed_directory();
        assert_eq!(
            fixed("/var/lib/twofold/{user}.toml"),
            Some("/var/lib/twofold".into())
        );
        assert_eq!(
            fixed("/srv/2fa/{user}/record.toml"),
            Some("/srv/2fa".into())
        );
        assert_eq!(fixed("/srv/u-{user}/record.toml"), Some("/srv".into()));
        assert_eq!(fixed("~/.config/twofold.toml"), None);
    }

    #[test]
    fn home_index_must_be_absolute() {
        assert_eq!(
            parse("").unwrap().home_index,
            PathBuf::from("/var/lib/twofold/homes")
        );
        assert_eq!(
            parse("home_index = \"/srv/idx\"\n").unwrap().home_index,
            PathBuf::from("/srv/idx")
        );
        for bad in ["idx", "/srv/../etc"] {
            let err = parse(&format!("home_index = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("home_index: must be an absolute path"),
                "{err}"
            );
        }
    }

    #[test]
    fn records_templates_are_checked() {
        assert!(RecordsTemplate::parse("/var/lib/twofold/{user}.toml").is_ok());
        assert!(RecordsTemplate::parse("{home}/.twofold.toml").is_ok());
        assert!(RecordsTemplate::parse("~/.twofold.toml").is_ok());
        assert!(RecordsTemplate::parse("/var/lib/twofold/all.toml").is_err());
        assert!(RecordsTemplate::parse("relative/{user}").is_err());
        assert!(RecordsTemplate::parse("/x/{uid}/{user}").is_err());
        assert!(RecordsTemplate::parse("/x/../{user}").is_err());
        assert!(RecordsTemplate::parse("/x/{home}/{user}").is_err());
        let home = RecordsTemplate::parse("~/.config/{user}.toml").unwrap();
        assert_eq!(
            home.path_for("bob", Some(Path::new("/home/bob"))).unwrap(),
            PathBuf::from("/home/bob/.config/bob.toml")
        );
    }

    #[test]
    fn module_args_are_strict() {
        let args = ModuleArgs::parse(&[
            "nullok",
            "enroll_on_login",
            "forward_pass",
            "debug",
            "config=/x.toml",
        ])
        .unwrap();
        assert!(args.nullok && args.enroll_on_login && args.forward_pass && args.debug);
        assert_eq!(args.config_path(), Path::new("/x.toml"));
        assert!(matches!(
            ModuleArgs::parse(&["nulok"]),
            Err(ConfigError::UnknownOption(_))
        ));
        assert!(ModuleArgs::parse(&["config="]).is_err());
        assert!(ModuleArgs::parse(&["debug=1"]).is_err());
    }
}
