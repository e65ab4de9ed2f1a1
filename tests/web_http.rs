//! twofold-web at the HTTP level, as root: the real program in front of the real twofoldd, which
//! checks passwords of a real account through a real PAM stack (pam_unix) and keeps the records
//! in a throwaway host's files. Requests are raw HTTP/1.1 on loopback, so every bad input can be
//! sent exactly as an attacker would. Under `CI=true` these fail rather than skip without root.

// Only the root-test gate, accounts and PAM services of tests/root are used here.
#[allow(dead_code, unused_imports)]
#[macro_use]
mod root;
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use twofold_core::totp::{Algorithm, Digits, Secret, TotpKey};

/// The stack: a user with a password, the PAM service for the web's passwords, a daemon, and
/// twofold-web on a free port; all stopped and removed when dropped.
struct Web {
    user: root::TestUser,
    host: Host,
    port: u16,
    web: Child,
    daemon: Child,
    _service: root::Service,
    _run: TempDir,
}

impl Web {
    fn start(web_section: &str) -> Web {
        let user = root::TestUser::create("http");
        // The shipped stack, as packaged.
        let shipped = std::fs::read_to_string("../conf/pam.d/twofold-web").unwrap();
        let lines: Vec<&str> = shipped
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        let service = root::Service::create("web", &lines);
        let host = Host::new("");
        let run = TempDir::new("web-run");
        let socket = run.path().join("twofoldd.sock");
        let port = free_port();
        let text = std::fs::read_to_string(&host.config).unwrap();
        host.write_config(&format!(
            "{text}daemon_socket = \"{}\"\n[web]\nlisten = \"127.0.0.1:{port}\"\n\
             origin = \"http://localhost:{port}\"\ncookie_secure = false\n{web_section}",
            socket.display()
        ));
        let daemon_toml = host.dir.write(
            "twofoldd.toml",
            format!("password_service = \"{}\"\n", service.name),
        );
        let daemon = start_twofoldd(&host.config, &daemon_toml, &socket);
        let web = Command::new(env!("CARGO_BIN_EXE_twofold-web-tested"))
            .arg("--config")
            .arg(&host.config)
            .stdin(Stdio::null())
            .spawn()
            .expect("start twofold-web");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "twofold-web did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Web {
            user,
            host,
            port,
            web,
            daemon,
            _service: service,
            _run: run,
        }
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.send("GET", path, cookie, &[], "")
    }

    fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        self.send(
            "POST",
            path,
            cookie,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &body.join("&"),
        )
    }

    fn post_json(&self, path: &str, cookie: Option<&str>, csrf: Option<&str>, body: &str) -> Reply {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(csrf) = csrf {
            headers.push(("X-CSRF-Token", csrf));
        }
        self.send("POST", path, cookie, &headers, body)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        send(self.port, method, path, cookie, headers, body)
    }

    /// A fresh login form: the session cookie and its CSRF token.
    fn form(&self, path: &str) -> (String, String) {
        let page = self.get(path, None);
        assert_eq!(page.status, 200, "{}", page.body);
        (page.cookie().expect("a session cookie"), page.csrf())
    }

    /// Signs in with the password: the new cookie, and where the answer sent the browser.
    fn password(&self, password: &str) -> (String, String) {
        let (cookie, csrf) = self.form("/twofold/login");
        let reply = self.post(
            "/twofold/login",
            Some(&cookie),
            &[
                ("csrf", &csrf),
                ("user", &self.user.name),
                ("password", password),
            ],
        );
        assert_eq!(reply.status, 303, "{}", reply.body);
        let new = reply.cookie().expect("a new session id after the password");
        assert!(
            new.starts_with("twofold_session="),
            "a session starts at the password"
        );
        (new, reply.location())
    }

    /// Enrolls through the pages: the TOTP key from the page, and the signed-in cookie.
    fn enroll(&self) -> (TotpKey, String, Vec<String>) {
        let (cookie, next) = self.password(&self.user.password);
        assert_eq!(next, "/twofold/enroll");
        let page = self.get("/twofold/enroll", Some(&cookie));
        let key = key_on(&page.body);
        let code = key.code_at_step(settle_step(key.period, 3)).to_string();
        let reply = self.post(
            "/twofold/enroll",
            Some(&cookie),
            &[("csrf", &page.csrf()), ("code", &code)],
        );
        assert_eq!(reply.status, 303, "{}", reply.body);
        assert_eq!(reply.location(), "/twofold/enroll/codes");
        let cookie = reply.cookie().expect("a new session id after the factor");
        let codes_page = self.get("/twofold/enroll/codes", Some(&cookie));
        let codes = list_items(&codes_page.body, "backup-codes");
        (key, cookie, codes)
    }

    fn auth(&self, cookie: Option<&str>) -> Reply {
        self.get("/twofold/auth", cookie)
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        for child in [&mut self.web, &mut self.daemon] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn location(&self) -> String {
        self.header("location").unwrap_or_default().to_string()
    }

    /// The cookie the answer set, as `name=value` for the next request's `Cookie` header.
    fn cookie(&self) -> Option<String> {
        let value = self.header("set-cookie")?;
        let pair = value.split(';').next()?;
        let (name, id) = pair.split_once('=')?;
        (name.starts_with("twofold_session") && !id.is_empty()).then(|| pair.to_string())
    }

    /// The value of the hidden form field `name`.
    fn hidden(&self, name: &str) -> String {
        attribute_after(&self.body, &format!("name=\"{name}\" value=\"")).unwrap_or_default()
    }

    fn csrf(&self) -> String {
        attribute_after(&self.body, "name=\"csrf\" content=\"").expect("a CSRF token")
    }
}

fn send(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw(port, request.as_bytes())
}

fn raw(port: u16, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn attribute_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let end = text[start..].find('"')?;
    Some(text[start..start + end].to_string())
}

fn key_on(page: &str) -> TotpKey {
    let start = page
        .find("<code id=\"secret\">")
        .expect("the key on the page")
        + 18;
    let end = page[start..].find("</code>").unwrap();
    let text: String = page[start..start + end].split_whitespace().collect();
    TotpKey {
        secret: Secret::from_base32(&text).expect("base32"),
        algorithm: Algorithm::Sha1,
        digits: Digits::SIX,
        period: 30,
    }
}

fn list_items(page: &str, id: &str) -> Vec<String> {
    let start = page.find(&format!("id=\"{id}\"")).expect("the list");
    let end = start + page[start..].find("</ul>").unwrap();
    page[start..end]
        .split("<code>")
        .skip(1)
        .filter_map(|s| s.split("</code>").next())
        .map(str::to_string)
        .collect()
}

fn decode_entities(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_first_login_enrolls_and_later_logins_take_a_code_or_a_backup_code_once() {
    needs_root!();
    let web = Web::start("");
    assert_eq!(web.auth(None).status, 401);
    let named = Command::new("usermod")
        .args(["-c", "Alice Example,,,", &web.user.name])
        .status()
        .unwrap();
    assert!(named.success());
    let (key, cookie, codes) = web.enroll();
    assert_eq!(codes.len(), 10, "the backup codes are shown once");
    let auth = web.auth(Some(&cookie));
    assert_eq!(auth.status, 200);
    assert_eq!(auth.header("remote-user"), Some(web.user.name.as_str()));
    assert_eq!(auth.header("remote-name"), Some("Alice Example"));
    // The codes download as a text file while they are shown.
    let file = web.get("/twofold/enroll/codes.txt", Some(&cookie));
    assert_eq!(file.status, 200);
    assert!(file
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    for code in &codes {
        assert!(file.body.contains(code.as_str()), "{code} in the file");
    }
    // Continue: the key offer, then the codes are gone for good.
    let page = web.get("/twofold/enroll/codes", Some(&cookie));
    let next = web.post(
        "/twofold/enroll/codes",
        Some(&cookie),
        &[("csrf", &page.csrf())],
    );
    assert_eq!(next.location(), "/twofold/keys/add?first=1");
    assert_eq!(
        web.get("/twofold/enroll/codes.txt", Some(&cookie)).status,
        410
    );
    // Sign out: the cookie is worthless.
    let settings = web.get("/twofold/settings", Some(&cookie));
    assert!(
        settings.body.contains("id=\"codes-left\">10<"),
        "{}",
        settings.body
    );
    let out = web.post(
        "/twofold/logout",
        Some(&cookie),
        &[("csrf", &settings.csrf())],
    );
    assert_eq!(out.status, 303);
    assert_eq!(web.auth(Some(&cookie)).status, 401);

    // A later login: the code confirmed at enrollment is spent; the next step's is not.
    let (cookie, next) = web.password(&web.user.password);
    assert_eq!(next, "/twofold/login/second");
    let page = web.get("/twofold/login/second", Some(&cookie));
    let step = settle_step(30, 3);
    let spent = key.code_at_step(step).to_string();
    let reply = web.post(
        "/twofold/login/second",
        Some(&cookie),
        &[("csrf", &page.csrf()), ("code", &spent)],
    );
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("already used"), "{}", reply.body);
    assert_eq!(web.auth(Some(&cookie)).status, 401);
    let fresh = key.code_at_step(step + 1).to_string();
    let reply = web.post(
        "/twofold/login/second",
        Some(&cookie),
        &[("csrf", &page.csrf()), ("code", &fresh)],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    let signed = reply.cookie().unwrap();
    assert_eq!(web.auth(Some(&signed)).status, 200);
    assert_eq!(
        web.auth(Some(&cookie)).status,
        401,
        "the pre-factor id ended"
    );

    // A backup code works once; the second time it is refused.
    for (attempt, expected) in [(1, 303), (2, 200)] {
        let (cookie, _) = web.password(&web.user.password);
        let page = web.get("/twofold/login/second", Some(&cookie));
        let reply = web.post(
            "/twofold/login/second",
            Some(&cookie),
            &[("csrf", &page.csrf()), ("code", &codes[0])],
        );
        assert_eq!(reply.status, expected, "attempt {attempt}: {}", reply.body);
    }
    // What the web spent is spent for the PAM module too: one store.
    let state = web.host.state(&web.user.name);
    assert_eq!(state.last_step, step + 1);
    assert_eq!(state.spent_codes.count_ones(), 1);
}

#[test]
fn wrong_passwords_unknown_users_and_bad_forms_get_one_generic_answer() {
    needs_root!();
    let web = Web::start("");
    let (cookie, csrf) = web.form("/twofold/login");
    let try_login = |user: &str, password: &str| {
        web.post(
            "/twofold/login",
            Some(&cookie),
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
    };
    let wrong = try_login(&web.user.name, "not the password");
    let unknown = try_login("tf_nobody_at_all", "whatever");
    for reply in [&wrong, &unknown] {
        assert_eq!(reply.status, 200);
        assert!(
            reply.body.contains("Wrong user name or password."),
            "{}",
            reply.body
        );
    }
    assert!(try_login("", "")
        .body
        .contains("Enter your user name and password."));
    // A wrong or missing CSRF token is refused before the password is looked at.
    let forged = web.post(
        "/twofold/login",
        Some(&cookie),
        &[
            ("csrf", "forged"),
            ("user", &web.user.name),
            ("password", &web.user.password),
        ],
    );
    assert_eq!(forged.status, 403);
    let no_session = web.post(
        "/twofold/login",
        None,
        &[
            ("csrf", &csrf),
            ("user", &web.user.name),
            ("password", &web.user.password),
        ],
    );
    assert_eq!(no_session.status, 403);
    // Oversized and malformed bodies.
    let big = "a".repeat(100 * 1024);
    let oversized = web.post(
        "/twofold/login",
        Some(&cookie),
        &[("csrf", &csrf), ("user", &big)],
    );
    assert_eq!(oversized.status, 413);
    let garbage = web.send(
        "POST",
        "/twofold/login",
        Some(&cookie),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "%zz=%",
    );
    assert!(
        garbage.status >= 400 && garbage.status < 500,
        "{}",
        garbage.status
    );
    // No page of the flow is reachable before its step.
    for path in [
        "/twofold/login/second",
        "/twofold/enroll",
        "/twofold/settings",
        "/twofold/keys/add",
    ] {
        let reply = web.get(path, Some(&cookie));
        assert_eq!(reply.status, 303, "{path}");
        assert_eq!(reply.location(), "/twofold/login", "{path}");
    }
    // JSON calls need the token in their header.
    let (signed_in, _) = web.password(&web.user.password);
    let keyless = web.post_json(
        "/twofold/keys/options",
        Some(&signed_in),
        None,
        "{\"name\":\"k\"}",
    );
    assert_eq!(keyless.status, 403);
}

#[test]
fn an_ended_or_unknown_session_and_malformed_ceremonies_are_refused_at_every_endpoint() {
    needs_root!();
    let web = Web::start("");
    let (_, cookie, codes) = web.enroll();
    let csrf = web.get("/twofold/settings", Some(&cookie)).csrf();
    // Malformed WebAuthn answers and missing fields: refused, nothing added.
    for body in [
        "{}",
        "not json",
        r#"{"id":"x","rawId":"x","type":"public-key","response":{}}"#,
    ] {
        let reply = web.post_json("/twofold/keys", Some(&cookie), Some(&csrf), body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
    }
    let nameless = web.post_json("/twofold/keys/options", Some(&cookie), Some(&csrf), "{}");
    assert_eq!(nameless.status, 400);
    let bad_name = web.post_json(
        "/twofold/keys/options",
        Some(&cookie),
        Some(&csrf),
        r#"{"name":"../x"}"#,
    );
    assert_eq!(bad_name.status, 400);
    // Sign out; then the old cookie, and a made-up one, reach nothing.
    web.post("/twofold/logout", Some(&cookie), &[("csrf", &csrf)]);
    let made_up = format!("twofold_session={}", "A".repeat(43));
    for stale in [cookie.as_str(), made_up.as_str()] {
        for path in [
            "/twofold/settings",
            "/twofold/enroll/codes",
            "/twofold/keys/add",
            "/twofold/login/second",
        ] {
            let reply = web.get(path, Some(stale));
            assert_eq!(
                (reply.status, reply.location()),
                (303, "/twofold/login".into()),
                "{path}"
            );
        }
        assert_eq!(
            web.get("/twofold/enroll/codes.txt", Some(stale)).status,
            401
        );
        for path in [
            "/twofold/settings/codes",
            "/twofold/settings/keys/remove",
            "/twofold/login/second",
            "/twofold/enroll",
        ] {
            let reply = web.post(
                path,
                Some(stale),
                &[("csrf", &csrf), ("code", &codes[0]), ("name", "k")],
            );
            assert_eq!(reply.status, 403, "{path}");
        }
        for path in [
            "/twofold/keys/options",
            "/twofold/keys",
            "/twofold/login/key/options",
            "/twofold/login/key",
        ] {
            let reply = web.post_json(path, Some(stale), Some(&csrf), "{}");
            assert_eq!(reply.status, 403, "{path}");
        }
        assert_eq!(web.auth(Some(stale)).status, 401);
    }
    // The backup code posted with a stale session was never checked: it still works.
    let (cookie, _) = web.password(&web.user.password);
    let page = web.get("/twofold/login/second", Some(&cookie));
    let reply = web.post(
        "/twofold/login/second",
        Some(&cookie),
        &[("csrf", &page.csrf()), ("code", &codes[0])],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
}

#[test]
fn every_answer_carries_the_security_headers_and_the_cookie_is_locked_down() {
    needs_root!();
    let web = Web::start("");
    let page = web.get("/twofold/login", None);
    // Before the password only the form's cookie, which is never sent cross-site.
    let form_cookie = page.header("set-cookie").unwrap();
    assert!(
        form_cookie.starts_with("twofold_session_login=")
            && form_cookie.contains("HttpOnly")
            && form_cookie.contains("SameSite=Strict"),
        "{form_cookie}"
    );
    let (form, csrf) = web.form("/twofold/login");
    let signed = web.post(
        "/twofold/login",
        Some(&form),
        &[
            ("csrf", &csrf),
            ("user", &web.user.name),
            ("password", &web.user.password),
        ],
    );
    let cookie = signed.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("twofold_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    // A form token is worthless with another form cookie.
    let (other_form, _) = web.form("/twofold/login");
    let crossed = web.post(
        "/twofold/login",
        Some(&other_form),
        &[
            ("csrf", &csrf),
            ("user", &web.user.name),
            ("password", &web.user.password),
        ],
    );
    assert_eq!(crossed.status, 403);
    for reply in [
        page,
        web.auth(None),
        web.get("/twofold/nothing-here", None),
        web.get("/twofold/static/twofold.js", None),
    ] {
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    }
}

#[test]
fn rd_sends_the_user_back_only_to_this_site() {
    needs_root!();
    let web = Web::start("allowed_redirect_domains = [\"localhost\"]\n");
    let (_, _, codes) = web.enroll();
    let cases = [
        ("/wiki/Page", "/wiki/Page"),
        ("http://localhost:8080/wiki", "http://localhost:8080/wiki"),
        ("//evil.example/", "/twofold/settings"),
        ("/\\evil.example", "/twofold/settings"),
        ("http://evil.example/", "/twofold/settings"),
        ("http://localhost@evil.example/", "/twofold/settings"),
        ("http%3A%2F%2Fevil.example", "/twofold/settings"),
        ("https://localhost.evil.example/", "/twofold/settings"),
        // nginx sends the page's URL as it was, query included.
        (
            "http://localhost:8080/index.php?title=A&action=edit",
            "http://localhost:8080/index.php?title=A&action=edit",
        ),
    ];
    // One backup code per case: each sign-in needs a factor of its own.
    for ((rd, expected), code) in cases.into_iter().zip(&codes) {
        let query = match rd.contains('&') {
            // As nginx sends it: unencoded, the last parameter.
            true => rd.to_string(),
            false => url_encode(rd),
        };
        let page = web.get(&format!("/twofold/login?rd={query}"), None);
        let (cookie, csrf, rd_field) = (page.cookie().unwrap(), page.csrf(), page.hidden("rd"));
        let reply = web.post(
            "/twofold/login",
            Some(&cookie),
            &[
                ("csrf", &csrf),
                ("rd", &decode_entities(&rd_field)),
                ("user", &web.user.name),
                ("password", &web.user.password),
            ],
        );
        let cookie = reply.cookie().unwrap();
        let page = web.get("/twofold/login/second", Some(&cookie));
        let reply = web.post(
            "/twofold/login/second",
            Some(&cookie),
            &[("csrf", &page.csrf()), ("code", code)],
        );
        assert_eq!(reply.status, 303, "{rd}: {}", reply.body);
        assert_eq!(reply.location(), expected, "rd={rd}");
    }
}

/// A security key made in the test (P-256), answering WebAuthn ceremonies as a browser would
/// post them: the HTTP path of key registration and sign-in, apart from any browser.
struct TestKey {
    key: p256::ecdsa::SigningKey,
    credential_id: Vec<u8>,
    counter: u32,
}

impl TestKey {
    fn new() -> TestKey {
        let mut id = vec![0u8; 32];
        getrandom::fill(&mut id).unwrap();
        loop {
            let mut scalar = [0u8; 32];
            getrandom::fill(&mut scalar).unwrap();
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&scalar) {
                return TestKey {
                    key,
                    credential_id: id,
                    counter: 0,
                };
            }
        }
    }

    fn client_data(kind: &str, options: &serde_json::Value, origin: &str) -> String {
        serde_json::json!({
            "type": kind,
            "challenge": options["challenge"],
            "origin": origin,
            "crossOrigin": false,
        })
        .to_string()
    }

    /// The answer to `navigator.credentials.create(options)`, attestation "none".
    fn register(&self, options: &serde_json::Value, origin: &str) -> String {
        use twofold_core::cbor::Value;
        let rp_id = options["rp"]["id"].as_str().unwrap();
        let point = self.key.verifying_key().to_sec1_point(false);
        let cose = twofold_core::security_key::PublicKey::es256(point.as_bytes())
            .unwrap()
            .to_cose();
        let mut auth_data = twofold_core::key_assertion::rp_id_hash(rp_id).to_vec();
        auth_data.push(0x41); // UP, AT
        auth_data.extend(self.counter.to_be_bytes());
        auth_data.extend([0u8; 16]);
        auth_data.extend((self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&self.credential_id);
        auth_data.extend(cose);
        let object = twofold_core::cbor::encode(&Value::text_map([
            ("fmt", Value::Text("none".into())),
            ("attStmt", Value::Map(Vec::new())),
            ("authData", Value::Bytes(auth_data)),
        ]));
        let client_data = TestKey::client_data("webauthn.create", options, origin);
        self.credential(serde_json::json!({
            "clientDataJSON": b64url(client_data.as_bytes()),
            "attestationObject": b64url(&object),
        }))
    }

    /// The answer to `navigator.credentials.get(options)`.
    fn sign(&mut self, options: &serde_json::Value, origin: &str) -> String {
        use p256::ecdsa::signature::Signer as _;
        use sha2::Digest as _;
        self.counter += 1;
        let rp_id = options["rpId"].as_str().unwrap();
        let mut auth_data = twofold_core::key_assertion::rp_id_hash(rp_id).to_vec();
        auth_data.push(0x01); // UP
        auth_data.extend(self.counter.to_be_bytes());
        let client_data = TestKey::client_data("webauthn.get", options, origin);
        let signed = [
            &auth_data[..],
            &sha2::Sha256::digest(client_data.as_bytes())[..],
        ]
        .concat();
        let signature: p256::ecdsa::DerSignature = self.key.sign(&signed);
        self.credential(serde_json::json!({
            "clientDataJSON": b64url(client_data.as_bytes()),
            "authenticatorData": b64url(&auth_data),
            "signature": b64url(signature.as_bytes()),
        }))
    }

    fn credential(&self, response: serde_json::Value) -> String {
        serde_json::json!({
            "id": b64url(&self.credential_id),
            "rawId": b64url(&self.credential_id),
            "type": "public-key",
            "response": response,
        })
        .to_string()
    }
}

fn b64url(bytes: &[u8]) -> String {
    use base64ct::Encoding as _;
    base64ct::Base64UrlUnpadded::encode_string(bytes)
}

#[test]
fn a_key_registered_on_the_web_signs_in_once_per_challenge_and_only_from_this_origin() {
    needs_root!();
    let web = Web::start("");
    let origin = format!("http://localhost:{}", web.port);
    let (_, cookie, _) = web.enroll();
    let page = web.get("/twofold/keys/add", Some(&cookie));
    let csrf = page.csrf();
    let mut key = TestKey::new();
    let options = web.post_json(
        "/twofold/keys/options",
        Some(&cookie),
        Some(&csrf),
        r#"{"name":"yubi"}"#,
    );
    assert_eq!(options.status, 200, "{}", options.body);
    let options: serde_json::Value = serde_json::from_str(&options.body).unwrap();
    assert_eq!(options["rp"]["id"], "localhost");
    // An answer for another origin is refused, and spends the challenge.
    let foreign = key.register(&options, "http://evil.example");
    let refused = web.post_json("/twofold/keys", Some(&cookie), Some(&csrf), &foreign);
    assert_eq!(refused.status, 400, "{}", refused.body);
    let again = web.post_json(
        "/twofold/keys",
        Some(&cookie),
        Some(&csrf),
        &key.register(&options, &origin),
    );
    assert_eq!(
        again.status, 400,
        "a challenge answers once: {}",
        again.body
    );
    // A fresh challenge, the right origin: the key is added.
    let options = web.post_json(
        "/twofold/keys/options",
        Some(&cookie),
        Some(&csrf),
        r#"{"name":"yubi"}"#,
    );
    let options: serde_json::Value = serde_json::from_str(&options.body).unwrap();
    let added = web.post_json(
        "/twofold/keys",
        Some(&cookie),
        Some(&csrf),
        &key.register(&options, &origin),
    );
    assert_eq!(added.status, 200, "{}", added.body);
    let settings = web.get("/twofold/settings", Some(&cookie));
    assert!(
        settings.body.contains("<td data-label=\"Name\">yubi</td>"),
        "{}",
        settings.body
    );
    // The name is taken now.
    let taken = web.post_json(
        "/twofold/keys/options",
        Some(&cookie),
        Some(&csrf),
        r#"{"name":"yubi"}"#,
    );
    assert_eq!(taken.status, 409);

    // Sign in with it: password, then the key.
    let (cookie, _) = web.password(&web.user.password);
    let page = web.get("/twofold/login/second", Some(&cookie));
    assert!(page.body.contains("id=\"use-key\""));
    let csrf = page.csrf();
    let ask = || {
        let reply = web.post_json(
            "/twofold/login/key/options",
            Some(&cookie),
            Some(&csrf),
            "{}",
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()
    };
    let options = ask();
    let wrong_origin = key.sign(&options, "http://localhost:1");
    assert_eq!(
        web.post_json(
            "/twofold/login/key",
            Some(&cookie),
            Some(&csrf),
            &wrong_origin
        )
        .status,
        403
    );
    let options = ask();
    let assertion = key.sign(&options, &origin);
    let signed = web.post_json("/twofold/login/key", Some(&cookie), Some(&csrf), &assertion);
    assert_eq!(signed.status, 200, "{}", signed.body);
    let signed_cookie = signed.cookie().expect("a new session id after the key");
    assert_eq!(web.auth(Some(&signed_cookie)).status, 200);
    // The same assertion again, in another sign-in: its challenge is spent.
    let (cookie, _) = web.password(&web.user.password);
    let page = web.get("/twofold/login/second", Some(&cookie));
    let replay = web.post_json(
        "/twofold/login/key",
        Some(&cookie),
        Some(&page.csrf()),
        &assertion,
    );
    assert_eq!(replay.status, 403);
    assert_eq!(web.auth(Some(&cookie)).status, 401);
    // The counter the key reached is in the shared state.
    let state = web.host.state(&web.user.name);
    assert_eq!(state.key_uses.len(), 1);
    assert_eq!(state.key_uses[0].sign_count, 2);
}

#[test]
fn pages_with_tokens_or_codes_open_only_as_the_browser_navigates() {
    needs_root!();
    let web = Web::start("");
    let (_, cookie, _) = web.enroll();
    for path in [
        "/twofold/settings",
        "/twofold/enroll/codes",
        "/twofold/enroll/codes.txt",
        "/twofold/keys/add",
    ] {
        // What a script on a wiki page of the same origin would send with fetch().
        let fetched = web.send(
            "GET",
            path,
            Some(&cookie),
            &[("Sec-Fetch-Mode", "cors")],
            "",
        );
        assert_eq!(fetched.status, 403, "{path}");
        assert!(!fetched.body.contains("csrf"), "{path}");
        let navigated = web.send(
            "GET",
            path,
            Some(&cookie),
            &[("Sec-Fetch-Mode", "navigate")],
            "",
        );
        assert_eq!(navigated.status, 200, "{path}");
    }
    // nginx's question is asked by nginx, not navigated.
    let auth = web.send(
        "GET",
        "/twofold/auth",
        Some(&cookie),
        &[("Sec-Fetch-Mode", "cors")],
        "",
    );
    assert_eq!(auth.status, 200);
}

/// Wrong passwords sent at once, each from `address(i)` (the trusted proxy's
/// `X-Forwarded-For`), for `user(i)`: the answers' texts, in no order.
fn burst(
    web: &Web,
    count: usize,
    user: impl Fn(usize) -> String,
    address: impl Fn(usize) -> String,
) -> Vec<String> {
    let (cookie, csrf) = web.form("/twofold/login");
    let requests: Vec<(String, String)> = (0..count).map(|i| (user(i), address(i))).collect();
    let port = web.port;
    std::thread::scope(|scope| {
        let running: Vec<_> = requests
            .iter()
            .map(|(user, address)| {
                let (cookie, csrf) = (&cookie, &csrf);
                scope.spawn(move || {
                    let body = format!(
                        "csrf={}&user={}&password=wrong",
                        url_encode(csrf),
                        url_encode(user)
                    );
                    send(
                        port,
                        "POST",
                        "/twofold/login",
                        Some(cookie),
                        &[
                            ("Content-Type", "application/x-www-form-urlencoded"),
                            ("X-Forwarded-For", address),
                        ],
                        &body,
                    )
                    .body
                })
            })
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

fn count(answers: &[String], text: &str) -> usize {
    answers.iter().filter(|a| a.contains(text)).count()
}

#[test]
fn a_burst_of_wrong_passwords_is_cut_off_at_the_limit_per_address_and_per_user() {
    needs_root!();
    let web = Web::start("");
    // 25 names at once from one address: at most 16 reach PAM at once; the others are told
    // it is busy, and not counted.
    let tally = |answers: &[String]| {
        (
            count(answers, "Wrong user name or password."),
            count(answers, "Sign-in is busy"),
            count(answers, "Too many failed attempts"),
        )
    };
    let (wrong, busy, throttled) = tally(&burst(
        &web,
        25,
        |i| format!("tf_nobody_{i}"),
        |_| "198.51.100.7".into(),
    ));
    assert!(
        wrong <= 16 && wrong + busy == 25 && throttled == 0,
        "{wrong} wrong, {busy} busy, {throttled} throttled"
    );
    // 10 more: only the attempts left of the address's 20 reach PAM, the rest are refused.
    let (wrong_after, busy, throttled) = tally(&burst(
        &web,
        10,
        |i| format!("tf_nobody_{i}"),
        |_| "198.51.100.7".into(),
    ));
    assert_eq!(
        (wrong_after, busy, throttled),
        (20 - wrong, 0, 10 - (20 - wrong))
    );
    // The address is refused now, even with the right password.
    let (cookie, csrf) = web.form("/twofold/login");
    let body = format!(
        "csrf={}&user={}&password={}",
        url_encode(&csrf),
        web.user.name,
        url_encode(&web.user.password)
    );
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Forwarded-For", "198.51.100.7"),
    ];
    let refused = web.send("POST", "/twofold/login", Some(&cookie), &form, &body);
    assert!(
        refused.body.contains("Too many failed attempts"),
        "{}",
        refused.body
    );
    // One user from many addresses (an IPv6 address each, in separate /64s): 10 wrong passwords,
    // then that user is refused, from anywhere.
    let answers = burst(
        &web,
        12,
        |_| web.user.name.clone(),
        |i| format!("2001:db8:{i}::1"),
    );
    assert_eq!(
        count(&answers, "Too many failed attempts"),
        2,
        "{answers:?}"
    );
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Forwarded-For", "203.0.113.9"),
    ];
    let (cookie, csrf) = web.form("/twofold/login");
    let body = format!(
        "csrf={}&user={}&password={}",
        url_encode(&csrf),
        web.user.name,
        url_encode(&web.user.password)
    );
    let refused = web.send("POST", "/twofold/login", Some(&cookie), &form, &body);
    assert!(
        refused.body.contains("Too many failed attempts"),
        "{}",
        refused.body
    );
    // Another user from a fresh address is not held up.
    let other = burst(
        &web,
        1,
        |_| "tf_someone_else".into(),
        |_| "203.0.113.10".into(),
    );
    assert_eq!(count(&other, "Wrong user name or password."), 1);
}

#[test]
fn a_user_disabled_with_the_cli_is_signed_out_of_the_web() {
    needs_root!();
    let web = Web::start("recheck_secs = 1\n");
    let (_, cookie, _) = web.enroll();
    assert_eq!(web.auth(Some(&cookie)).status, 200);
    // The admin disables the user (the host's files store, the one the daemon serves).
    let disabled = root::twofold(&web.host.config, &["disable", "--user", &web.user.name])
        .output()
        .unwrap();
    assert!(
        disabled.status.success(),
        "{}",
        String::from_utf8_lossy(&disabled.stderr)
    );
    std::thread::sleep(Duration::from_millis(1100));
    // The next question nginx asks finds the enrollment gone and ends the session.
    assert_eq!(web.auth(Some(&cookie)).status, 401);
    assert_eq!(web.get("/twofold/settings", Some(&cookie)).status, 303);
}
