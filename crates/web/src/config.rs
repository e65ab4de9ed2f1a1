//! twofold-web's `[web]` section of `/etc/twofold/config.toml`. The core skips the section; it is
//! parsed here as strictly as the rest: unknown keys and values out of range are errors that
//! name the file and the line.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;

use twofold_core::config::{line_of, one_line, ConfigError};
use twofold_core::security_key::check_rp_id;

/// The validated `[web]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    /// Where twofold-web listens (nginx's upstream).
    pub listen: SocketAddr,
    /// The public origin users see (`https://wiki.example.com`): WebAuthn checks it, and
    /// redirects after login go back under it.
    pub origin: String,
    /// The WebAuthn relying party id: the origin's host or a parent domain of it.
    pub rp_id: String,
    /// The name shown by the browser when a key is added.
    pub rp_name: String,
    /// Hosts (and their subdomains) that `rd` may send the user back to after login.
    pub allowed_redirect_domains: Vec<String>,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after the password, however busy.
    pub session_lifetime: Duration,
    pub cookie_name: String,
    /// `Domain=` of the cookie, to share the session across subdomains; none: this host only.
    pub cookie_domain: Option<String>,
    /// Mark the cookie `Secure`. Only a plain-HTTP test on loopback turns this off.
    pub cookie_secure: bool,
    /// Peers whose `X-Forwarded-For` is believed: the client's address is its last entry.
    pub trusted_proxies: Vec<IpAddr>,
    /// Users without an enrollment set one up after the password (QR code, backup codes).
    pub enroll_on_login: bool,
    /// How often a signed-in session looks again whether its user is still enrolled: a user
    /// disabled with `twofold disable` is signed out of the web within this time.
    pub recheck: Duration,
}

impl WebConfig {
    /// Parses the `[web]` section of the config text; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<WebConfig, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            line: e.span().map(|span| line_of(text, span.start)),
            message: one_line(e.message()),
        })?;
        let raw = file.web;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.into(),
            line: section_key_line(text, key),
            message: format!("[web] {key}: {message}"),
        };
        let origin = parse_origin(&raw.origin).map_err(|why| invalid("origin", why))?;
        let origin_host = origin
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let rp_id = raw.rp_id.unwrap_or_else(|| origin_host.clone());
        check_rp_id(&rp_id).map_err(|e| invalid("rp_id", e.to_string()))?;
        if !is_host_name(&rp_id) {
            return Err(invalid("rp_id", "expected a domain name".into()));
        }
        if !(origin_host == rp_id || origin_host.ends_with(&format!(".{rp_id}"))) {
            return Err(invalid(
                "rp_id",
                format!("must be the origin's host {origin_host} or a parent domain of it"),
            ));
        }
        if origin.scheme == "http" && !is_loopback_name(&origin_host) {
            return Err(invalid(
                "origin",
                "plain http is only for localhost: browsers refuse WebAuthn elsewhere, and \
                 passwords would cross the network in clear"
                    .into(),
            ));
        }
        if raw.session_idle_secs > raw.session_lifetime_secs {
            return Err(invalid(
                "session_idle_secs",
                "must not be longer than session_lifetime_secs".into(),
            ));
        }
        let mut domains = raw.allowed_redirect_domains;
        for domain in &domains {
            if !is_host_name(domain) {
                return Err(invalid(
                    "allowed_redirect_domains",
                    format!("{domain:?} is not a host name"),
                ));
            }
        }
        if domains.is_empty() {
            domains.push(origin_host.to_ascii_lowercase());
        }
        let cookie_domain = match raw.cookie_domain {
            Some(d) if !is_host_name(&d) => {
                return Err(invalid(
                    "cookie_domain",
                    format!("{d:?} is not a host name"),
                ))
            }
            other => other,
        };
        if !is_cookie_name(&raw.cookie_name) {
            return Err(invalid(
                "cookie_name",
                "expected letters, digits, `_` or `-`".into(),
            ));
        }
        Ok(WebConfig {
            listen: raw
                .listen
                .parse()
                .map_err(|_| invalid("listen", "expected an address and port".into()))?,
            origin: origin.text,
            rp_id,
            rp_name: raw.rp_name,
            allowed_redirect_domains: domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            session_idle: Duration::from_secs(raw.session_idle_secs),
            session_lifetime: Duration::from_secs(raw.session_lifetime_secs),
            // A Secure cookie for this host alone carries the `__Host-` prefix: browsers then
            // refuse the same name set by a sibling subdomain or over plain http.
            cookie_name: match (raw.cookie_secure, &cookie_domain) {
                (true, None) if !raw.cookie_name.starts_with("__Host-") => {
                    format!("__Host-{}", raw.cookie_name)
                }
                _ => raw.cookie_name,
            },
            cookie_domain,
            cookie_secure: raw.cookie_secure,
            trusted_proxies: raw
                .trusted_proxies
                .iter()
                .map(|p| p.parse())
                .collect::<Result<_, _>>()
                .map_err(|_| invalid("trusted_proxies", "expected IP addresses".into()))?,
            enroll_on_login: raw.enroll_on_login,
            recheck: Duration::from_secs(raw.recheck_secs),
        })
    }
}

/// An origin as browsers serialize it: scheme, host, and a port only when not the default.
struct Origin {
    scheme: &'static str,
    host: String,
    text: String,
}

fn parse_origin(text: &str) -> Result<Origin, String> {
    let expected = "expected scheme://host[:port] with no path, like https://wiki.example.com";
    let (scheme, rest) = match text.split_once("://") {
        Some(("https", rest)) => ("https", rest),
        Some(("http", rest)) => ("http", rest),
        _ => return Err(expected.into()),
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(expected.into());
    }
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 address without brackets has colons and no port.
        Some((host, _)) if !host.ends_with(']') && host.contains(':') => (rest, None),
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| expected.to_string())?),
        None => None,
    };
    let host = host.to_ascii_lowercase();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if !is_host_name(bare) && bare.parse::<IpAddr>().is_err() {
        return Err(expected.into());
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let text = match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    };
    Ok(Origin { scheme, host, text })
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A DNS name: labels of letters, digits and inner hyphens.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_cookie_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The line of `key` inside the `[web]` table, or of the table header.
fn section_key_line(text: &str, key: &str) -> Option<usize> {
    let mut in_web = false;
    let mut header = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with('[') {
            in_web = line.starts_with("[web]");
            if in_web {
                header = Some(index + 1);
            }
            continue;
        }
        if in_web
            && line
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return Some(index + 1);
        }
    }
    header
}

// ---- The section as written.

/// The whole file, of which only `[web]` is read here (the core parses the rest).
#[derive(Deserialize)]
struct File {
    #[serde(default)]
    web: RawWeb,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWeb {
    listen: String,
    origin: String,
    rp_id: Option<String>,
    rp_name: String,
    allowed_redirect_domains: Vec<String>,
    #[serde(deserialize_with = "session_idle_secs")]
    session_idle_secs: u64,
    #[serde(deserialize_with = "session_lifetime_secs")]
    session_lifetime_secs: u64,
    cookie_name: String,
    cookie_domain: Option<String>,
    cookie_secure: bool,
    trusted_proxies: Vec<String>,
    enroll_on_login: bool,
    #[serde(deserialize_with = "recheck_secs")]
    recheck_secs: u64,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            listen: "127.0.0.1:9090".into(),
            origin: "http://localhost".into(),
            rp_id: None,
            rp_name: "twofold".into(),
            allowed_redirect_domains: Vec::new(),
            session_idle_secs: 30 * 60,
            session_lifetime_secs: 12 * 3600,
            cookie_name: "twofold_session".into(),
            cookie_domain: None,
            cookie_secure: true,
            trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
            enroll_on_login: true,
            recheck_secs: 60,
        }
    }
}

fn ranged<'de, D: Deserializer<'de>>(d: D, key: &str, min: u64, max: u64) -> Result<u64, D::Error> {
    let value = i64::deserialize(d)?;
    match u64::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(D::Error::custom(format!(
            "{key}: expected an integer from {min} to {max}, found {value}"
        ))),
    }
}

fn session_idle_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "session_idle_secs", 60, 7 * 24 * 3600)
}

fn recheck_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "recheck_secs", 1, 3600)
}

fn session_lifetime_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "session_lifetime_secs", 60, 30 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, String> {
        WebConfig::parse(Path::new("/etc/twofold/config.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn no_section_means_the_documented_defaults() {
        let config = parse("nullok = false\n").unwrap();
        assert_eq!(config.listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config.origin, "http://localhost");
        assert_eq!(config.rp_id, "localhost");
        assert_eq!(config.allowed_redirect_domains, ["localhost"]);
        assert_eq!(config.session_idle, Duration::from_secs(1800));
        assert_eq!(config.session_lifetime, Duration::from_secs(43200));
        assert!(config.cookie_secure);
        assert!(config.enroll_on_login);
        assert_eq!(config.recheck, Duration::from_secs(60));
        assert_eq!(config.cookie_name, "__Host-twofold_session");
        let shared = parse("[web]\ncookie_domain = \"example.org\"\n").unwrap();
        assert_eq!(shared.cookie_name, "twofold_session");
        let plain = parse("[web]\ncookie_secure = false\n").unwrap();
        assert_eq!(plain.cookie_name, "twofold_session");
    }

    #[test]
    fn the_annotated_section_of_the_shipped_config_parses_with_every_example_set() {
        let text = include_str!("../../../conf/config.toml");
        let web = &text[text.find("\n[web]\n").expect("a [web] section") + 1..];
        // Each `#key = value` line set (prose comments start with `# `), as an admin who takes
        // every example would.
        let set: String = web
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(example) if example.starts_with(|c: char| c.is_ascii_lowercase()) => example,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let config = parse(&set).unwrap();
        assert_eq!(config.origin, "https://wiki.example.com");
        assert_eq!(config.rp_id, "example.com");
        assert_eq!(config.recheck, Duration::from_secs(60));
        assert_eq!(config.cookie_domain.as_deref(), Some("example.com"));
    }

    #[test]
    fn a_production_section_parses() {
        let config = parse(
            "[web]\norigin = \"https://Wiki.Example.com:443\"\nrp_id = \"example.com\"\n\
             allowed_redirect_domains = [\"wiki.example.com\", \"docs.example.com\"]\n",
        )
        .unwrap();
        assert_eq!(config.origin, "https://wiki.example.com");
        assert_eq!(config.rp_id, "example.com");
        assert_eq!(config.allowed_redirect_domains.len(), 2);
        let port = parse("[web]\norigin = \"http://localhost:8443\"\n").unwrap();
        assert_eq!(port.origin, "http://localhost:8443");
    }

    #[test]
    fn bad_values_name_the_line_and_the_key() {
        let err = parse("nullok = true\n[web]\nlistn = \"x\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/twofold/config.toml:3: unknown field `listn`"),
            "{err}"
        );
        let err = parse("[web]\norigin = \"https://a.example.com\"\nrp_id = \"b.example.com\"\n")
            .unwrap_err();
        assert!(
            err.starts_with("/etc/twofold/config.toml:3: [web] rp_id"),
            "{err}"
        );
        for origin in [
            "https://wiki.example.com/",
            "ftp://x",
            "https://user@wiki.example.com",
            "wiki.example.com",
            "https://wiki.example.com:99999",
        ] {
            let err = parse(&format!("[web]\norigin = \"{origin}\"\n")).unwrap_err();
            assert!(err.contains("[web] origin"), "{origin}: {err}");
        }
        let err = parse("[web]\norigin = \"http://wiki.example.com\"\n").unwrap_err();
        assert!(err.contains("plain http is only for localhost"), "{err}");
        let err = parse("[web]\nsession_idle_secs = 5\n").unwrap_err();
        assert!(
            err.contains("session_idle_secs: expected an integer from 60"),
            "{err}"
        );
        let err =
            parse("[web]\nsession_idle_secs = 7200\nsession_lifetime_secs = 3600\n").unwrap_err();
        assert!(err.contains("must not be longer"), "{err}");
        let err = parse("[web]\nallowed_redirect_domains = [\"evil.example/x\"]\n").unwrap_err();
        assert!(err.contains("is not a host name"), "{err}");
        let err = parse("[web]\ntrusted_proxies = [\"nginx\"]\n").unwrap_err();
        assert!(err.contains("trusted_proxies"), "{err}");
        let err = parse("[web]\ncookie_name = \"a b\"\n").unwrap_err();
        assert!(err.contains("cookie_name"), "{err}");
    }
}
