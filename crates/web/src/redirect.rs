//! Where `rd` may send a user after signing in: a path on this site, or an http(s) URL on one
//! of the configured domains (or their subdomains). Everything else is refused, and the user
//! lands on the settings page instead: no open redirect.
//!
//! The check is on the text browsers will act on, and errs on refusing: no backslashes (which
//! browsers read as slashes), no `//` at the start of a path (another host), no userinfo (where
//! `https://wiki@evil` goes to evil), no spaces, controls or non-ASCII (which browsers trim or
//! re-encode in ways a check could miss).

use crate::config::is_host_name;

/// `rd` if it may be followed, given the allowed domains; `None` otherwise.
pub fn checked(rd: &str, allowed_domains: &[String], allow_http: bool) -> Option<String> {
    if rd.is_empty()
        || rd.len() > MAX_REDIRECT
        || !rd.bytes().all(|b| b.is_ascii_graphic())
        || rd.contains('\\')
    {
        return None;
    }
    if let Some(path) = rd.strip_prefix('/') {
        // `//host` and `/\host` (refused above) leave this site.
        return (!path.starts_with('/')).then(|| rd.to_string());
    }
    let rest = match rd.split_once("://") {
        Some(("https", rest)) => rest,
        Some(("http", rest)) if allow_http => rest,
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return None;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().ok()?;
            host
        }
        None => authority,
    };
    let host = host.to_ascii_lowercase();
    if !is_host_name(&host) {
        return None;
    }
    let allowed = allowed_domains
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")));
    allowed.then(|| rd.to_string())
}

/// Longer than any page address a wiki needs.
const MAX_REDIRECT: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rd: &str) -> Option<String> {
        checked(rd, &["wiki.example.com".into(), "localhost".into()], false)
    }

    #[test]
    fn paths_and_urls_on_the_allowed_domains_are_followed() {
        for rd in [
            "/",
            "/wiki/Main_Page?action=edit#top",
            "https://wiki.example.com/wiki/Main_Page",
            "https://WIKI.example.com:8443/x",
            "https://docs.wiki.example.com",
            "https://localhost/x",
        ] {
            assert_eq!(check(rd).as_deref(), Some(rd), "{rd}");
        }
    }

    #[test]
    fn everything_that_could_leave_the_site_is_refused() {
        for rd in [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "https://wiki.example.com.evil.example/",
            "https://evilwiki.example.com/",
            "https://wiki.example.com@evil.example/",
            "https://user:pw@wiki.example.com/",
            "https://wiki.example.com\\@evil.example/",
            "http://wiki.example.com/",
            "javascript:alert(1)",
            "data:text/html,x",
            "evil.example",
            "http%3A%2F%2Fevil.example",
            "https:/evil.example",
            "https://evil.example%2F@wiki.example.com",
            " https://wiki.example.com/",
            "https://wiki.example.com/\n",
            "/\t/evil.example",
            "https://wiki.example.com:99999/",
            "https://wïki.example.com/",
        ] {
            assert_eq!(check(rd), None, "{rd:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_REDIRECT));
        assert_eq!(check(&long), None);
    }

    #[test]
    fn plain_http_only_when_the_site_itself_is_plain_http() {
        let domains = ["localhost".to_string()];
        assert_eq!(checked("http://localhost:8080/", &domains, false), None);
        assert!(checked("http://localhost:8080/", &domains, true).is_some());
    }
}
