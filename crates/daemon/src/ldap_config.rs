//! The `[ldap]` section of twofoldd.toml: which directory servers, in which order, how to reach
//! them safely, and how long to wait.
//!
//! Parsing only: the text becomes typed values (server URLs that are allowed, timeouts in range).
//! Reading the password and CA files happens when the daemon starts (`ldap_store`), where their
//! owners and modes are checked.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;

use crate::config::ranged;

/// The validated directory settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapConfig {
    /// Tried in this order for every new connection; never spread over.
    pub servers: Vec<Server>,
    pub base_dn: String,
    /// The search filter with `{user}` where the (escaped) user name goes.
    pub user_filter: String,
    pub bind_dn: String,
    pub bind_password_file: PathBuf,
    /// The CA certificates (PEM) that a server's certificate must chain to; needed for TLS.
    pub ca_file: Option<PathBuf>,
    /// Upgrade `ldap://` connections with StartTLS.
    pub starttls: bool,
    pub connect_timeout: Duration,
    pub op_timeout: Duration,
    /// The most one request to the daemon may spend on the directory, retries included.
    pub deadline: Duration,
}

/// One server of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// The URL as ldap3 takes it (`ldapi:///` is spelled out with Debian's socket path).
    pub url: String,
    pub transport: Transport,
}

/// How a server is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `ldapi://`: a unix socket on this host.
    Ldapi,
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://` to a loopback address, without TLS.
    LoopbackPlain,
    /// `ldap://` upgraded with StartTLS.
    StartTls,
}

impl Transport {
    /// Whether the connection is TLS (and so needs the CA file).
    pub fn tls(self) -> bool {
        matches!(self, Transport::Ldaps | Transport::StartTls)
    }
}

impl LdapConfig {
    /// Checks what needs more than one key; errs with the key to blame and the message.
    pub(crate) fn from_raw(raw: RawLdap) -> Result<LdapConfig, (&'static str, String)> {
        let mut servers = Vec::with_capacity(raw.servers.len());
        for url in &raw.servers {
            let server = Server::parse(url, raw.starttls).map_err(|why| ("servers", why))?;
            if server.transport.tls() && raw.ca_file.is_none() {
                return Err((
                    "servers",
                    format!(
                        "{url}: TLS needs ca_file, the CA that signed the server's certificate"
                    ),
                ));
            }
            servers.push(server);
        }
        if raw.deadline_ms < raw.connect_timeout_ms || raw.deadline_ms < raw.op_timeout_ms {
            return Err((
                "deadline_ms",
                "deadline_ms: expected at least connect_timeout_ms and op_timeout_ms".into(),
            ));
        }
        Ok(LdapConfig {
            servers,
            base_dn: raw.base_dn,
            user_filter: raw.user_filter,
            bind_dn: raw.bind_dn,
            bind_password_file: raw.bind_password_file,
            ca_file: raw.ca_file,
            starttls: raw.starttls,
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
            op_timeout: Duration::from_millis(raw.op_timeout_ms),
            deadline: Duration::from_millis(raw.deadline_ms),
        })
    }

    /// The attribute `user_filter` compares the user name with: `uid` in `(uid={user})`.
    /// `None` when the name is not the whole value of an equality match.
    pub fn name_attribute(&self) -> Option<String> {
        let (before, after) = self.user_filter.split_once("{user}")?;
        if !after.starts_with(')') {
            return None;
        }
        let attribute = before.strip_suffix('=')?.rsplit('(').next()?;
        let plain = !attribute.is_empty()
            && attribute
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';' || c == '.');
        plain.then(|| attribute.to_string())
    }

    /// The filter that finds `user` (whose name is escaped for a filter).
    pub fn filter_for(&self, user: &str) -> String {
        self.user_filter
            .replace("{user}", &ldap3::ldap_escape(user))
    }
}

impl Server {
    /// Parses one URL of `servers`; `starttls` is the section's switch for `ldap://`.
    fn parse(url: &str, starttls: bool) -> Result<Server, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("{url}: expected ldaps://HOST[:PORT], ldap://HOST[:PORT] or ldapi://")
        })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() {
            return Err(format!("{url}: expected no DN or options in the URL"));
        }
        let transport = match scheme {
            "ldapi" => Transport::Ldapi,
            "ldaps" => Transport::Ldaps,
            "ldap" if starttls => Transport::StartTls,
            "ldap" if is_loopback(host_of(authority)) => Transport::LoopbackPlain,
            "ldap" => {
                return Err(format!(
                    "{url}: plain ldap:// is only for localhost (the bind password and the \
                     records would cross the network in clear); use ldaps://, or StartTLS \
                     (starttls = true)"
                ))
            }
            _ => return Err(format!("{url}: unknown scheme {scheme}")),
        };
        if transport != Transport::Ldapi && host_of(authority).is_empty() {
            return Err(format!("{url}: expected a host name"));
        }
        let url = match (transport, authority) {
            (Transport::Ldapi, "") => format!("ldapi://{DEFAULT_LDAPI}"),
            _ => url.trim_end_matches('/').to_string(),
        };
        Ok(Server { url, transport })
    }
}

/// The host of `host[:port]` or `[v6]:port`.
fn host_of(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

// ---- The section as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLdap {
    #[serde(deserialize_with = "servers")]
    servers: Vec<String>,
    #[serde(deserialize_with = "dn")]
    base_dn: String,
    #[serde(default = "default_filter", deserialize_with = "user_filter")]
    user_filter: String,
    #[serde(deserialize_with = "dn")]
    bind_dn: String,
    #[serde(deserialize_with = "absolute")]
    bind_password_file: PathBuf,
    #[serde(default, deserialize_with = "some_absolute")]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    starttls: bool,
    #[serde(default = "default_connect", deserialize_with = "connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_op", deserialize_with = "op_timeout_ms")]
    op_timeout_ms: u64,
    #[serde(default = "default_deadline", deserialize_with = "deadline_ms")]
    deadline_ms: u64,
}

fn servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let servers = Vec::<String>::deserialize(d)?;
    if servers.is_empty() || servers.len() > 16 {
        return Err(D::Error::custom(
            "servers: expected 1 to 16 URLs, the write provider first",
        ));
    }
    Ok(servers)
}

fn dn<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let dn = String::deserialize(d)?;
    if dn.is_empty() || dn.len() > 1024 || dn.chars().any(char::is_control) || !dn.contains('=') {
        return Err(D::Error::custom("expected a DN such as dc=example,dc=com"));
    }
    Ok(dn)
}

fn user_filter<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let filter = String::deserialize(d)?;
    if !filter.starts_with('(') || !filter.ends_with(')') || !filter.contains("{user}") {
        return Err(D::Error::custom(
            "user_filter: expected an LDAP filter with {user}, such as (uid={user})",
        ));
    }
    ldap3::parse_filter(filter.replace("{user}", "x"))
        .map_err(|_| D::Error::custom("user_filter: not a valid LDAP filter"))?;
    Ok(filter)
}

fn absolute<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = String::deserialize(d)?;
    if !path.starts_with('/') || path.contains('\0') {
        return Err(D::Error::custom("expected an absolute path"));
    }
    Ok(PathBuf::from(path))
}

fn some_absolute<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    absolute(d).map(Some)
}

// The `as` casts are lossless: `ranged` bounds each value.
fn connect_timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "connect_timeout_ms", 10, 4000).map(|v| v as u64)
}

fn op_timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "op_timeout_ms", 10, 4000).map(|v| v as u64)
}

/// Under the module's own 5 s wait for the daemon, so that the daemon answers "unavailable" with
/// the cause before the module gives up on it.
fn deadline_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "deadline_ms", 50, 4500).map(|v| v as u64)
}

fn default_filter() -> String {
    "(uid={user})".into()
}

fn default_connect() -> u64 {
    1000
}

fn default_op() -> u64 {
    1500
}

fn default_deadline() -> u64 {
    3000
}

/// Where Debian's slapd listens for `ldapi:///`, percent-encoded as an ldapi URL's host.
const DEFAULT_LDAPI: &str = "%2Frun%2Fslapd%2Fldapi";

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str, starttls: bool) -> Result<Transport, String> {
        Server::parse(url, starttls).map(|s| s.transport)
    }

    #[test]
    fn plain_ldap_is_only_for_loopback_and_ldapi() {
        assert_eq!(
            server("ldap://localhost:389", false),
            Ok(Transport::LoopbackPlain)
        );
        assert_eq!(
            server("ldap://127.0.0.1", false),
            Ok(Transport::LoopbackPlain)
        );
        assert_eq!(
            server("ldap://[::1]:389/", false),
            Ok(Transport::LoopbackPlain)
        );
        assert_eq!(server("ldapi:///", false), Ok(Transport::Ldapi));
        assert!(server("ldap://dir.example.com", false)
            .unwrap_err()
            .contains("only for localhost"));
        assert!(server("ldap://localhost.evil.com", false).is_err());
        assert_eq!(
            server("ldap://dir.example.com", true),
            Ok(Transport::StartTls)
        );
        assert_eq!(
            server("ldaps://dir.example.com:636", false),
            Ok(Transport::Ldaps)
        );
        assert!(server("http://x", false).is_err());
        assert!(server("ldaps://x/dc=a?uid", false).is_err());
        assert!(server("ldaps://:636", false).is_err());
    }

    #[test]
    fn ldapi_without_a_path_means_debians_socket() {
        let s = Server::parse("ldapi:///", false).unwrap();
        assert_eq!(s.url, "ldapi://%2Frun%2Fslapd%2Fldapi");
    }

    #[test]
    fn the_user_name_is_escaped_in_the_filter() {
        let raw: RawLdap = toml::from_str(
            "servers = [\"ldapi:///\"]\nbase_dn = \"dc=a\"\nbind_dn = \"cn=b,dc=a\"\n\
             bind_password_file = \"/p\"\n",
        )
        .unwrap();
        let config = LdapConfig::from_raw(raw).unwrap();
        assert_eq!(
            config.filter_for("al*ce)(uid=x"),
            "(uid=al\\2ace\\29\\28uid=x)"
        );
        assert_eq!(config.deadline, Duration::from_millis(3000));
    }

    #[test]
    fn the_name_attribute_is_the_one_the_filter_matches_the_user_on() {
        let with = |filter: &str| {
            let raw: RawLdap = toml::from_str(&format!(
                "servers = [\"ldapi:///\"]\nbase_dn = \"dc=a\"\nbind_dn = \"cn=b,dc=a\"\n\
                 bind_password_file = \"/p\"\nuser_filter = \"{filter}\"\n"
            ))
            .unwrap();
            LdapConfig::from_raw(raw).unwrap().name_attribute()
        };
        assert_eq!(with("(uid={user})").as_deref(), Some("uid"));
        assert_eq!(
            with("(&(objectClass=posixAccount)(sAMAccountName={user}))").as_deref(),
            Some("sAMAccountName")
        );
        // Not the whole value: no attribute holds the bare name.
        assert_eq!(with("(mail={user}@example.com)"), None);
        assert_eq!(with("(uid>={user})"), None);
    }
}
