//! `twofoldd`: the local broker of twofold's store. The module, the CLI and the web server send it
//! one request per connection on a unix socket (`twofold_proto`); it authorizes each caller by the
//! kernel's peer credentials, serves the store operations on its backend (the local files for
//! now), and checks a user's own code for programs that run as that user.
//!
//! It never sends a record, a state or a generation to anyone but root and the web server's
//! account, and never logs a code, a secret or a record.
//!
//! Exit codes: 0 on a clean stop, 1 when it cannot start or serve, 2 on wrong usage.

#![forbid(unsafe_code)]

pub mod authorize;
pub mod check;
pub mod config;
pub mod ldap_config;
pub mod ldap_state;
pub mod ldap_store;
pub mod listen;
pub mod records;
pub mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use twofold_core::config::DEFAULT_CONFIG_PATH;
use twofold_host::syslog::{self, Level};
use twofold_host::{config_file, passwd};

use crate::config::{DaemonConfig, DEFAULT_DAEMON_CONFIG_PATH};
use crate::ldap_store::LdapStore;
use crate::server::{Daemon, IDENT};

/// Runs the daemon with this process's arguments.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match Options::parse(&args) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("twofoldd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("twofoldd: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("twofoldd: {message}");
            syslog::line(IDENT, Level::Error, &message);
            ExitCode::from(1)
        }
    }
}

/// The command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The module's config (records, throttle, window).
    pub config: PathBuf,
    /// The daemon's own config.
    pub daemon_config: PathBuf,
    /// Bind this path instead of taking systemd's socket or the configured one.
    pub listen: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Run(Options),
    Version,
}

impl Options {
    /// Parses the arguments (without the program name); any other argument is an error.
    pub fn parse(args: &[String]) -> Result<Parsed, String> {
        let mut options = Options {
            config: PathBuf::from(DEFAULT_CONFIG_PATH),
            daemon_config: PathBuf::from(DEFAULT_DAEMON_CONFIG_PATH),
            listen: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = |flag: &str| -> Result<PathBuf, String> {
                let value = inline
                    .clone()
                    .or_else(|| args.next().cloned())
                    .ok_or_else(|| format!("{flag} needs a path"))?;
                // A relative path would depend on the directory the daemon was started in.
                if !value.starts_with('/') {
                    return Err(format!("{flag} {value}: expected an absolute path"));
                }
                Ok(PathBuf::from(value))
            };
            match flag {
                "--config" => options.config = value(flag)?,
                "--daemon-config" => options.daemon_config = value(flag)?,
                "--listen" => options.listen = Some(value(flag)?),
                "-h" | "--help" if inline.is_none() => return Ok(Parsed::Help),
                "-V" | "--version" if inline.is_none() => return Ok(Parsed::Version),
                _ => return Err(format!("unknown argument `{arg}`")),
            }
        }
        Ok(Parsed::Run(options))
    }
}

/// Loads both configs, takes the socket and serves until accepting fails.
pub fn run(options: &Options) -> Result<(), String> {
    // Before any thread: this also clears systemd's variables from the environment.
    let activated = listen::from_systemd()?;
    let daemon = DaemonConfig::load(&options.daemon_config).map_err(|e| e.to_string())?;
    let config = config_file::load(&options.config).map_err(|e| e.to_string())?;
    let web_uid = match passwd::by_name(&daemon.web_user) {
        Ok(Some(account)) => Some(account.uid),
        Ok(None) => {
            let line = format!(
                "web_user {} has no passwd entry: no web server may use the daemon",
                daemon.web_user
            );
            syslog::line(IDENT, Level::Info, &line);
            None
        }
        Err(e) => return Err(format!("cannot look up web_user {}: {e}", daemon.web_user)),
    };
    let listener = match (&options.listen, activated) {
        (Some(path), _) => listen::bind(path)?,
        (None, Some(listener)) => listener,
        (None, None) => listen::bind(&daemon.socket)?,
    };
    let ldap = match &daemon.ldap {
        Some(ldap) => Some(LdapStore::open(ldap)?),
        None => None,
    };
    let started = match &ldap {
        Some(store) => format!("started: backend=ldap {}", store.describe()),
        None => format!(
            "started: backend=files records={}",
            twofold_core::text::field(config.records.as_str())
        ),
    };
    syslog::line(IDENT, Level::Info, &started);
    let daemon = Arc::new(Daemon {
        config,
        daemon,
        web_uid,
        ldap,
    });
    server::serve(listener, daemon).map_err(|e| format!("cannot accept connections: {e}"))
}

const USAGE: &str = "usage: twofoldd [--config PATH] [--daemon-config PATH] [--listen PATH]\n\
    \n  --config PATH         the module's config (default /etc/twofold/config.toml)\
    \n  --daemon-config PATH  the daemon's config (default /etc/twofold/twofoldd.toml)\
    \n  --listen PATH         listen on PATH instead of systemd's socket or the configured one";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        Options::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_take_absolute_paths_in_either_spelling() {
        let Parsed::Run(options) = parse(&["--config", "/a.toml", "--listen=/run/s.sock"]).unwrap()
        else {
            panic!("not a run");
        };
        assert_eq!(options.config, PathBuf::from("/a.toml"));
        assert_eq!(
            options.daemon_config,
            PathBuf::from(DEFAULT_DAEMON_CONFIG_PATH)
        );
        assert_eq!(options.listen, Some(PathBuf::from("/run/s.sock")));
        assert_eq!(parse(&["--help"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn unknown_flags_missing_values_and_relative_paths_are_refused() {
        assert!(parse(&["--nope"]).unwrap_err().contains("unknown argument"));
        assert!(parse(&["--config"]).unwrap_err().contains("needs a path"));
        assert!(parse(&["--listen", "s.sock"])
            .unwrap_err()
            .contains("expected an absolute path"));
    }
}
