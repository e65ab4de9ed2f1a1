//! twofold-web end to end: a real nginx (running the example site conf/nginx/twofold-wiki.conf)
//! in front of a stub wiki that shows the Remote-User it gets, twofold-web as its own user,
//! twofoldd as root checking passwords through PAM, and headless Chromium driven through
//! chromedriver with a virtual security key. The browser enrolls (reads the key off the page and
//! computes the code), downloads the backup codes, adds a key, and signs in with the key, a TOTP
//! code and a backup code; each page is saved as a screenshot at phone and desktop size in
//! target/web-screenshots/. What the browser's key made is verified again with Python's fido2.
//!
//! Needs root, nginx, chromium, chromium-driver, zbar-tools, oathtool and target/fido-venv
//! (tests/run.sh installs them all). Under `CI=true` a missing one fails; elsewhere the tests
//! skip with a note. Run: `cargo test -p twofold-tests --test web_e2e`.
//!
//! Everything this test assumes about twofold-web is in `contract` below.

mod common;
#[allow(dead_code, unused_imports, unused_macros)]
#[macro_use]
mod root;
#[allow(dead_code)]
mod web;

use std::time::Duration;

use serde_json::{json, Value as Json};

use twofold_tests::codes;
use web::webdriver::{self, Driver, Element, Session};
use web::{http, Screens, Stack};

/// What this test assumes of twofold-web: how it is built and started, its config, its pages.
/// Change it here when the web app differs.
pub mod contract {
    use std::path::{Path, PathBuf};

    /// The binary under test: the tests package builds twofold-web as its own binary
    /// `twofold-web-tested` (like src/bin/twofoldd-tested.rs), which cargo names in
    /// `CARGO_BIN_EXE_twofold-web-tested`. `TWOFOLD_WEB_BIN` overrides it.
    pub fn web_binary() -> PathBuf {
        if let Some(path) = std::env::var_os("TWOFOLD_WEB_BIN") {
            return path.into();
        }
        match option_env!("CARGO_BIN_EXE_twofold-web-tested") {
            Some(path) => path.into(),
            None => panic!(
                "twofold-web is not built for the tests: add the binary `twofold-web-tested` \
                 (src/bin/twofold-web-tested.rs calling twofold_web's main) to tests/Cargo.toml, \
                 or set TWOFOLD_WEB_BIN"
            ),
        }
    }

    /// `twofold-web --config <config.toml>`, in the foreground, logging to stderr. The config
    /// is the host's config.toml with `daemon_socket` and the `[web]` section (`WEB_SECTION`);
    /// twofold-web reads a copy of it (root's, mode 0644), twofoldd the original.
    pub fn web_args(config: &Path) -> Vec<std::ffi::OsString> {
        vec!["--config".into(), config.as_os_str().into()]
    }

    /// twofold-web runs as twofoldd's `web_user` (a fresh account), as in production. It must
    /// be able to read its config and connect to the daemon's socket.
    pub const WEB_RUNS_AS_ITS_OWN_USER: bool = true;

    /// The `[web]` section. Placeholders: {web_port}, {nginx_port}.
    pub const WEB_SECTION: &str = r#"[web]
listen = "127.0.0.1:{web_port}"
origin = "http://localhost:{nginx_port}"
rp_id = "localhost"
allowed_redirect_domains = ["localhost"]
cookie_secure = false
trusted_proxies = ["127.0.0.1"]
enroll_on_login = true
"#;

    /// twofoldd.toml: the web server's account, and the PAM service passwords are checked
    /// with. Placeholders: {web_user}, {pam_service}.
    pub const DAEMON_TOML: &str =
        "web_user = \"{web_user}\"\npassword_service = \"{pam_service}\"\n";

    /// The PAM stack for the password, as packaged; the test installs a copy as a fresh
    /// /etc/pam.d/twofold-web-test-* service.
    pub const PAM_STACK: &str = "../conf/pam.d/twofold-web";

    /// How many backup codes an enrollment shows (the default `[backup_codes] count`).
    pub const BACKUP_CODES: usize = 10;

    // The pages, under the prefix /twofold/ that nginx sends to twofold-web.
    pub const LOGIN: &str = "/twofold/login";
    pub const ENROLL: &str = "/twofold/enroll";
    pub const ENROLL_CODES: &str = "/twofold/enroll/codes";
    pub const ENROLL_CODES_TXT: &str = "/twofold/enroll/codes.txt";
    pub const ADD_KEY: &str = "/twofold/keys/add";
    pub const SECOND: &str = "/twofold/login/second";
    pub const SETTINGS: &str = "/twofold/settings";
    /// The forward-auth endpoint: 200 with Remote-User and Remote-Name, or 401.
    pub const AUTH: &str = "/twofold/auth";

    // Element ids. Login: the form, user, password, submit.
    pub const LOGIN_FORM: &str = "#login-form";
    pub const USER: &str = "#user";
    pub const PASSWORD: &str = "#password";
    pub const SIGN_IN: &str = "#sign-in";
    // Enrollment: the QR code (inline SVG), the key as base32 text, the code, the submit.
    pub const QR_SVG: &str = "#qr svg";
    pub const QR: &str = "#qr";
    pub const SECRET: &str = "#secret";
    /// What a user clicks to see the key as text, if it is hidden at first.
    pub const SECRET_DISCLOSURE: &str = "details:has(#secret) > summary";
    pub const CODE: &str = "#code";
    pub const ENABLE: &str = "#enable";
    pub const ENABLE_TEXT: &str = "Enable two-factor authentication";
    // The backup codes: one <li> each, the download link, continue.
    pub const BACKUP_CODE_ITEMS: &str = "#backup-codes li";
    pub const DOWNLOAD: &str = "#download";
    pub const CONTINUE: &str = "#continue";
    // Adding a security key: its name, the button (WebAuthn create, then a post), skip.
    pub const KEY_NAME: &str = "#key-name";
    pub const ADD_KEY_BUTTON: &str = "#add-key";
    pub const SKIP: &str = "#skip";
    // The second factor: a TOTP or backup code and its submit, or the key (WebAuthn get).
    pub const VERIFY: &str = "#verify";
    pub const USE_KEY: &str = "#use-key";
    // Settings: a table with a row per key, the backup codes left, regenerate, sign out.
    pub const KEY_ROWS: &str = "#keys tr";
    pub const CODES_LEFT: &str = "#codes-left";
    pub const REGENERATE: &str = "#regenerate";
    pub const SIGN_OUT: &str = "#sign-out";
    /// Any page's error message.
    pub const ERROR: &str = "#error";

    /// Remote-Name carries the account's full name (the first GECOS field).
    pub fn remote_name_ok(seen: &str, full_name: &str) -> bool {
        seen == full_name
    }
}

use contract as c;

/// authenticatorData flags: user present, user verified.
const UP: u64 = 0x01;
const UV: u64 = 0x04;
/// How long a page may take to appear after a click (a password check waits for PAM).
const PAGE: Duration = Duration::from_secs(20);
/// The wiki page the flows start from.
const WIKI_PAGE: &str = "/wiki/Main_Page";
/// The attempts at leaving the site through `rd`; each must end on a local page.
const EVIL_REDIRECTS: [&str; 5] = [
    "//evil.example",
    "/\\evil.example",
    "http://evil.example",
    "http://localhost@evil.example",
    "http%3A%2F%2Fevil.example",
];
/// More of them, tried while signed in (no factor spent).
const MORE_EVIL_REDIRECTS: [&str; 7] = [
    "https://evil.example/",
    "//evil.example/%2e%2e",
    "http://localhost.evil.example/",
    "\\\\evil.example",
    "/%5Cevil.example",
    "%2F%2Fevil.example",
    "javascript:alert(document.domain)",
];

#[test]
fn a_new_user_enrolls_adds_a_key_and_signs_in_with_the_key_a_code_and_a_backup_code() {
    if !web::web_test_starts("web_e2e::full_flow") {
        return;
    }
    let stack = Stack::start();
    let driver = Driver::start();
    let browser = Browser::open(&stack, &driver);
    let key = browser
        .session
        .add_virtual_authenticator(webdriver::usb_security_key());
    let mut screens = Screens::new("full-flow");
    let user = stack.user.name.clone();

    // The wiki sends a visitor without a session to the login page, with the way back in rd.
    browser.session.goto(&stack.url(WIKI_PAGE));
    browser.expect(c::LOGIN_FORM, "the login page, for the wiki");
    let url = browser.session.current_url();
    assert!(url.starts_with(&stack.url(c::LOGIN)), "{url}");
    assert!(url.contains("rd="), "no rd in {url}");
    screens.take(&browser.session, "login");

    // A wrong password says so, on the login page.
    browser.password(&user, "not the password");
    browser.expect(c::ERROR, "the error for a wrong password");
    browser.expect(c::LOGIN_FORM, "the login page again");
    screens.take(&browser.session, "login-wrong-password");

    // First login: the enrollment page, with the QR code and the key as text.
    browser.password(&user, &stack.user.password);
    browser.expect(c::QR_SVG, "the enrollment page's QR code");
    assert!(browser
        .session
        .current_url()
        .starts_with(&stack.url(c::ENROLL)));
    let enable = browser.session.find(c::ENABLE);
    let enable_text = browser.text_or_value(&enable);
    assert!(enable_text.contains(c::ENABLE_TEXT), "{enable_text:?}");
    screens.take(&browser.session, "enroll");
    // The key as text may sit behind a disclosure ("Can't scan it?"): open it as a user would.
    let mut secret = base32_text(&browser.session.text(&browser.session.find(c::SECRET)));
    if secret.is_empty() {
        let summary = browser.session.find(c::SECRET_DISCLOSURE);
        browser.session.click(&summary);
        secret = base32_text(&browser.session.text(&browser.session.find(c::SECRET)));
        screens.take(&browser.session, "enroll-key-shown");
    }
    assert!(secret.len() >= 16, "no key shown as text: {secret:?}");
    // The QR code holds the same key, read by an independent decoder.
    let qr_png = screens.dir().join("qr.png");
    browser
        .session
        .element_screenshot(&browser.session.find(c::QR), &qr_png);
    let uri = web::decode_qr(&qr_png);
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let qr_secret = query_value(&uri, "secret").unwrap_or_default();
    assert_eq!(
        base32_text(&qr_secret),
        secret,
        "the QR code's key is not the text's"
    );

    let mut totp = Totp::new(&secret);
    let code = totp.fresh_code();
    browser.fill(c::CODE, &code);
    browser.session.click(&enable);

    // The backup codes, shown once, and the same codes as a text file.
    browser.expect(c::BACKUP_CODE_ITEMS, "the backup codes");
    assert!(browser
        .session
        .current_url()
        .starts_with(&stack.url(c::ENROLL_CODES)));
    let backup_codes: Vec<String> = browser
        .session
        .find_all(c::BACKUP_CODE_ITEMS)
        .iter()
        .map(|li| browser.session.text(li).trim().to_string())
        .collect();
    assert_eq!(backup_codes.len(), c::BACKUP_CODES, "{backup_codes:?}");
    let mut distinct = backup_codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), backup_codes.len(), "{backup_codes:?}");
    assert!(
        backup_codes.iter().all(|code| code.len() >= 8),
        "{backup_codes:?}"
    );
    screens.take(&browser.session, "backup-codes");
    let download = browser.session.find(c::DOWNLOAD);
    let href = browser
        .session
        .attribute(&download, "href")
        .unwrap_or_default();
    assert!(href.ends_with(c::ENROLL_CODES_TXT), "{href}");
    // The button saves a text file holding the same codes.
    let downloads = common::TempDir::new("downloads");
    browser.session.allow_downloads(downloads.path());
    browser.session.click(&download);
    let text = downloaded(downloads.path());
    for code in &backup_codes {
        assert!(
            text.contains(code.as_str()),
            "{code} is not in the file: {text}"
        );
    }
    // As a text file, to be saved, not shown.
    let file = http::get(
        stack.nginx.port,
        c::ENROLL_CODES_TXT,
        &[("Cookie", &browser.session.cookie_header())],
    );
    assert_eq!(file.status, 200, "{file:?}");
    let content_type = file.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{file:?}");
    let disposition = file.header("content-disposition").unwrap_or_default();
    assert!(disposition.starts_with("attachment"), "{file:?}");
    assert_eq!(file.text(), text);
    browser.session.click(&browser.session.find(c::CONTINUE));

    // A security key, added with the browser's virtual authenticator; then back to the wiki.
    browser.expect(c::KEY_NAME, "the page to add a security key");
    assert!(browser
        .session
        .current_url()
        .starts_with(&stack.url(c::ADD_KEY)));
    assert!(
        browser.session.try_find(c::SKIP).is_some(),
        "no way to skip the key"
    );
    screens.take(&browser.session, "add-key");
    browser.fill(c::KEY_NAME, "yubi");
    browser
        .session
        .click(&browser.session.find(c::ADD_KEY_BUTTON));
    browser.expect_wiki(&stack, "the wiki, after adding the key");
    assert_eq!(browser.session.current_url(), stack.url(WIKI_PAGE));
    browser.assert_wiki_user(&stack);
    screens.take(&browser.session, "wiki-after-enrollment");
    let credentials = browser.session.authenticator_credentials(&key);
    assert_eq!(credentials.len(), 1, "{credentials:?}");
    assert_eq!(credentials[0]["rpId"], "localhost", "{credentials:?}");
    let registration = browser.webauthn_capture("create", 0);

    // Settings: the key, ten codes left.
    browser.session.goto(&stack.url(c::SETTINGS));
    browser.expect(c::CODES_LEFT, "the settings page");
    let rows = browser.key_rows();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("yubi"), "{rows:?}");
    assert_eq!(browser.codes_left(), c::BACKUP_CODES);
    assert!(browser.session.try_find(c::REGENERATE).is_some());
    screens.take(&browser.session, "settings");

    // Sign out, then in with the password and the key.
    browser.sign_out(&stack);
    browser.session.goto(&stack.url(WIKI_PAGE));
    browser.expect(c::LOGIN_FORM, "the login page, signed out");
    browser.password(&user, &stack.user.password);
    browser.expect(c::USE_KEY, "the second factor page, with the key");
    assert!(browser
        .session
        .current_url()
        .starts_with(&stack.url(c::SECOND)));
    screens.take(&browser.session, "second-factor");
    browser.session.click(&browser.session.find(c::USE_KEY));
    browser.expect_wiki(&stack, "the wiki, after the key");
    browser.assert_wiki_user(&stack);
    let assertion = browser.webauthn_capture("get", 0);
    let counter = browser.session.authenticator_credentials(&key)[0]["signCount"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        counter >= 2,
        "the key signed once more: signCount {counter}"
    );

    // Sign out, then in with the password and a TOTP code (a wrong one first).
    browser.sign_out(&stack);
    browser.session.goto(&stack.url(WIKI_PAGE));
    browser.expect(c::LOGIN_FORM, "the login page, signed out");
    browser.password(&user, &stack.user.password);
    browser.expect(c::CODE, "the second factor page");
    browser.fill(c::CODE, &totp.wrong_code());
    browser.session.click(&browser.session.find(c::VERIFY));
    browser.expect(c::ERROR, "the error for a wrong code");
    screens.take(&browser.session, "second-factor-wrong-code");
    browser.again_at_second_factor(&stack);
    browser.fill(c::CODE, &totp.fresh_code());
    browser.session.click(&browser.session.find(c::VERIFY));
    browser.expect_wiki(&stack, "the wiki, after a TOTP code");
    browser.assert_wiki_user(&stack);

    // Sign out, then in with the password and a backup code.
    browser.sign_out(&stack);
    browser.session.goto(&stack.url(WIKI_PAGE));
    browser.expect(c::LOGIN_FORM, "the login page, signed out");
    browser.password(&user, &stack.user.password);
    browser.expect(c::CODE, "the second factor page");
    browser.fill(c::CODE, &backup_codes[0]);
    browser.session.click(&browser.session.find(c::VERIFY));
    browser.expect_wiki(&stack, "the wiki, after a backup code");
    browser.assert_wiki_user(&stack);
    browser.session.goto(&stack.url(c::SETTINGS));
    browser.expect(c::CODES_LEFT, "the settings page");
    assert_eq!(browser.codes_left(), c::BACKUP_CODES - 1);
    screens.take(&browser.session, "settings-after-backup-code");

    // A spent backup code is refused.
    browser.sign_out(&stack);
    browser.session.goto(&stack.url(c::LOGIN));
    browser.expect(c::LOGIN_FORM, "the login page, signed out");
    browser.password(&user, &stack.user.password);
    browser.expect(c::CODE, "the second factor page");
    browser.fill(c::CODE, &backup_codes[0]);
    browser.session.click(&browser.session.find(c::VERIFY));
    browser.expect(c::ERROR, "the error for a spent backup code");
    assert!(browser.session.try_find("#remote-user").is_none());

    // What the browser's key made verifies with Python's fido2 as well.
    let report = web::fido2_verify(
        "localhost",
        &stack.origin(),
        &registration,
        std::slice::from_ref(&assertion),
    );
    // User presence always; user verification where the page asked for it.
    for (made, asked) in [
        (&report["registration"], &registration),
        (&report["assertions"][0], &assertion),
    ] {
        let flags = made["flags"].as_u64().unwrap_or(0);
        assert_eq!(flags & UP, UP, "{report}");
        if asked["userVerification"] == "required" {
            assert_eq!(flags & UV, UV, "{report}");
        }
    }
    assert!(
        report["assertions"][0]["sign_count"].as_u64()
            > report["registration"]["sign_count"].as_u64(),
        "{report}"
    );
    browser.session.remove_virtual_authenticator(&key);
    // Only signed-in requests reached the wiki, each with the right user.
    assert_wiki_saw_only(&stack, &user);
    eprintln!("screenshots in {}", screens.dir().display());
}

#[test]
fn a_client_sent_remote_user_never_reaches_the_wiki() {
    if !web::web_test_starts("web_e2e::forged_remote_user") {
        return;
    }
    let stack = Stack::start();
    let user = stack.user.name.clone();
    let enrolled = common::enroll_in(&stack.host.store(), &user);
    let forged: Vec<Vec<(&str, &str)>> = vec![
        vec![("Remote-User", "root")],
        vec![("remote-user", "root")],
        vec![("REMOTE-USER", "root")],
        vec![("Remote_User", "root")],
        vec![("Remote-User", "root"), ("Remote-User", "root")],
        vec![("Remote-User", "root"), ("Remote-Name", "Root Admin")],
        vec![("Remote-Name", "Root Admin")],
    ];

    // Without a session: to the login page, and nothing reaches the wiki.
    for headers in &forged {
        let response = http::get(stack.nginx.port, WIKI_PAGE, headers);
        assert_eq!(response.status, 302, "{headers:?}: {response:?}");
        let location = response.header("location").unwrap_or_default();
        assert!(location.contains(c::LOGIN), "{headers:?}: {location}");
        assert!(
            !response.text().contains("root"),
            "{headers:?}: {response:?}"
        );
    }
    assert!(stack.wiki.seen().is_empty(), "{:?}", stack.wiki.seen());
    // nginx's auth location is internal.
    let response = http::get(
        stack.nginx.port,
        "/twofold-auth",
        &[("Remote-User", "root")],
    );
    assert_eq!(response.status, 404, "{response:?}");
    // The forward-auth endpoint itself: 401 without a session, whatever the client says.
    let response = http::get(stack.web_port, c::AUTH, &[("Remote-User", "root")]);
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.header("remote-user"), None, "{response:?}");

    // With a valid session: the wiki sees the session's user, never the forged one.
    let driver = Driver::start();
    let browser = Browser::open(&stack, &driver);
    browser.session.goto(&stack.url(WIKI_PAGE));
    browser.expect(c::LOGIN_FORM, "the login page");
    browser.password(&user, &stack.user.password);
    browser.expect(c::CODE, "the second factor page");
    browser.fill(c::CODE, &enrolled.code(0));
    browser.session.click(&browser.session.find(c::VERIFY));
    browser.expect_wiki(&stack, "the wiki");
    browser.assert_wiki_user(&stack);
    let cookie = browser.session.cookie_header();
    assert!(!cookie.is_empty(), "no cookies after signing in");
    for headers in &forged {
        let mut with_cookie = headers.clone();
        with_cookie.push(("Cookie", &cookie));
        let response = http::get(stack.nginx.port, WIKI_PAGE, &with_cookie);
        assert_eq!(response.status, 200, "{headers:?}: {response:?}");
        let page = response.text();
        assert_eq!(
            element_text(&page, "remote-user"),
            user,
            "{headers:?}: {page}"
        );
        let name = element_text(&page, "remote-name");
        assert!(
            c::remote_name_ok(&name, &stack.full_name),
            "{headers:?}: {page}"
        );
    }
    let auth = http::get(
        stack.web_port,
        c::AUTH,
        &[("Cookie", &cookie), ("Remote-User", "root")],
    );
    assert_eq!(auth.status, 200, "{auth:?}");
    assert_eq!(auth.header("remote-user"), Some(user.as_str()), "{auth:?}");
    assert_wiki_saw_only(&stack, &user);

    // Signing out ends the session on the server: the old cookie no longer opens the wiki.
    browser.sign_out(&stack);
    let response = http::get(
        stack.nginx.port,
        WIKI_PAGE,
        &[("Cookie", &cookie), ("Remote-User", "root")],
    );
    assert_eq!(response.status, 302, "{response:?}");
    let auth = http::get(stack.web_port, c::AUTH, &[("Cookie", &cookie)]);
    assert_eq!(auth.status, 401, "{auth:?}");
    assert_wiki_saw_only(&stack, &user);
}

#[test]
fn open_redirect_attempts_end_on_a_local_page() {
    if !web::web_test_starts("web_e2e::open_redirects") {
        return;
    }
    let stack = Stack::start();
    let user = stack.user.name.clone();
    let enrolled = common::enroll_in(&stack.host.store(), &user);
    assert!(
        enrolled.codes.len() >= EVIL_REDIRECTS.len(),
        "{}",
        enrolled.codes.len()
    );
    let driver = Driver::start();
    let browser = Browser::open(&stack, &driver);
    let mut screens = Screens::new("open-redirects");

    // The first through a whole login with a TOTP code, the others with backup codes.
    for (i, rd) in EVIL_REDIRECTS.iter().enumerate() {
        if i > 0 {
            browser.sign_out(&stack);
        }
        browser
            .session
            .goto(&stack.url(&format!("{}?rd={rd}", c::LOGIN)));
        browser.expect(c::LOGIN_FORM, "the login page");
        browser.password(&user, &stack.user.password);
        browser.expect(c::CODE, "the second factor page");
        let code = if i == 0 {
            enrolled.code(0)
        } else {
            enrolled.codes[i - 1].clone()
        };
        browser.fill(c::CODE, &code);
        browser.session.click(&browser.session.find(c::VERIFY));
        let url = browser.settle(&stack.url(c::SECOND));
        assert!(stack.is_local(&url), "rd={rd} led to {url}");
        assert!(
            !url.starts_with(&stack.url(c::SECOND)),
            "rd={rd}: the login did not go through (at {url})"
        );
        if i == 0 {
            screens.take(&browser.session, "after-evil-rd");
        }
    }
    // Signed in, the login page with an rd does not leave the site either.
    for rd in EVIL_REDIRECTS.iter().chain(MORE_EVIL_REDIRECTS.iter()) {
        browser
            .session
            .goto(&stack.url(&format!("{}?rd={rd}", c::LOGIN)));
        let url = browser.settle("");
        assert!(stack.is_local(&url), "rd={rd} led to {url}");
    }
    // The way back is followed, query and all: nginx puts the original URL into rd unencoded.
    browser.sign_out(&stack);
    let allowed = stack.url("/wiki/Allowed?action=view&oldid=2");
    browser.session.goto(&allowed);
    browser.expect(c::LOGIN_FORM, "the login page");
    browser.password(&user, &stack.user.password);
    browser.expect(c::CODE, "the second factor page");
    browser.fill(c::CODE, &enrolled.codes[EVIL_REDIRECTS.len() - 1]);
    browser.session.click(&browser.session.find(c::VERIFY));
    browser.expect_wiki(&stack, "the wiki at the allowed rd");
    assert_eq!(browser.session.current_url(), allowed);
    assert!(stack.evil.seen().is_empty(), "{:?}", stack.evil.seen());
    // The check above can see a visit: evil.example does reach its stand-in.
    browser.session.goto("http://evil.example/");
    browser.expect("#remote-user", "evil.example's stand-in");
    assert!(!stack.evil.seen().is_empty());
}

#[test]
fn the_example_nginx_site_renders_into_a_config_nginx_accepts() {
    if !std::path::Path::new(web::NGINX).is_file() {
        assert!(
            !codes::under_ci(),
            "nginx is missing (Debian package nginx; CI=true)"
        );
        eprintln!("SKIPPED: needs nginx");
        return;
    }
    let dir = common::TempDir::new("nginx-render");
    let config = web::nginx::render(&web::nginx::example_text(), dir.path(), 1, 2, 3, 4);
    for expected in [
        "server 127.0.0.1:3;",
        "server 127.0.0.1:4;",
        "auth_request /twofold-auth;",
        "proxy_set_header Remote-User $tf_user;",
        "location @twofold_login",
    ] {
        assert!(config.contains(expected), "{expected} not in:\n{config}");
    }
    assert!(!config.contains("ssl_certificate"), "{config}");
    let path = dir.write("nginx.conf", &config);
    let out = std::process::Command::new(web::NGINX)
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{config}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Not a test: the stack for tests/bench/web.sh. It signs a user in, writes the ports and the
/// session cookie to `$TWOFOLD_WEB_BENCH_INFO` (shell assignments), and serves until that file is
/// removed.
#[test]
#[ignore = "the stack for tests/bench/web.sh, which runs it"]
fn bench_stack_serves_until_its_info_file_is_removed() {
    let Some(info) = std::env::var_os("TWOFOLD_WEB_BENCH_INFO") else {
        panic!("set TWOFOLD_WEB_BENCH_INFO to the file for the stack's ports and cookie");
    };
    let info = std::path::PathBuf::from(info);
    assert!(web::web_test_starts("web_e2e::bench_stack"));
    let stack = Stack::start();
    let user = stack.user.name.clone();
    let enrolled = common::enroll_in(&stack.host.store(), &user);
    let cookie = {
        let driver = Driver::start();
        let browser = Browser::open(&stack, &driver);
        browser.session.goto(&stack.url(WIKI_PAGE));
        browser.expect(c::LOGIN_FORM, "the login page");
        browser.password(&user, &stack.user.password);
        browser.expect(c::CODE, "the second factor page");
        browser.fill(c::CODE, &enrolled.code(0));
        browser.session.click(&browser.session.find(c::VERIFY));
        browser.expect_wiki(&stack, "the wiki");
        browser.session.cookie_header()
        // The browser closes here; the session lives on in twofold-web.
    };
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let text = format!(
        "nginx_port={}\nbaseline_port={}\nweb_port={}\ncookie={}\nwiki_page={}\nuser={}\n",
        stack.nginx.port,
        stack.nginx.baseline_port,
        stack.web_port,
        quote(&cookie),
        quote(WIKI_PAGE),
        quote(&user),
    );
    let partial = info.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &info).unwrap();
    eprintln!("bench stack up; remove {} to stop it", info.display());
    let deadline = std::time::Instant::now() + Duration::from_secs(3600);
    while info.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Chromium session on the stack, with the capture script on every page.
struct Browser<'d> {
    session: Session<'d>,
    driver: &'d Driver,
}

impl<'d> Browser<'d> {
    fn open(stack: &Stack, driver: &'d Driver) -> Browser<'d> {
        let session = driver.session(webdriver::DESKTOP, &stack.browser_args());
        session.on_every_document(web::CAPTURE_SCRIPT);
        Browser { session, driver }
    }

    /// Waits for `css`; fails with what the page shows instead.
    #[track_caller]
    fn expect(&self, css: &str, what: &str) -> Element {
        if let Some(found) = self.session.wait_for(css, PAGE) {
            return found;
        }
        let url = self.session.current_url();
        let error = self
            .session
            .try_find(c::ERROR)
            .map(|e| self.session.text(&e))
            .unwrap_or_default();
        let driver_log = self.driver.log_tail(1500);
        let failed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(web::SCREENSHOTS)
            .join("FAILED.png");
        self.session.screenshot(&failed);
        let source = self.session.source();
        let cut = source.len().min(4000);
        let cut = (cut..=source.len())
            .find(|&i| source.is_char_boundary(i))
            .unwrap_or(source.len());
        panic!(
            "expected {what} ({css}), but {url} shows {:?} (error: {error:?}); screenshot {}; \
             source:\n{}\nchromedriver:\n{}",
            self.session.title(),
            failed.display(),
            &source[..cut],
            driver_log
        );
    }

    /// Waits for the stub wiki's page.
    #[track_caller]
    fn expect_wiki(&self, stack: &Stack, what: &str) {
        self.expect("#remote-user", what);
        let url = self.session.current_url();
        assert!(stack.is_local(&url), "{what}: {url}");
    }

    /// The wiki shows the stack's user and their name.
    #[track_caller]
    fn assert_wiki_user(&self, stack: &Stack) {
        let shown = self.session.text(&self.session.find("#remote-user"));
        assert_eq!(shown, stack.user.name);
        let name = self.session.text(&self.session.find("#remote-name"));
        assert!(
            c::remote_name_ok(&name, &stack.full_name),
            "Remote-Name {name:?}"
        );
    }

    fn fill(&self, css: &str, text: &str) {
        let field = self.session.find(css);
        self.session.clear(&field);
        self.session.send_keys(&field, text);
    }

    /// Fills the login form and submits it.
    fn password(&self, user: &str, password: &str) {
        self.expect(c::LOGIN_FORM, "the login page");
        self.fill(c::USER, user);
        self.fill(c::PASSWORD, password);
        self.session.click(&self.session.find(c::SIGN_IN));
    }

    /// After a refused code: back at the code field, signing in with the password again if the
    /// app sent the browser back to the login page.
    fn again_at_second_factor(&self, stack: &Stack) {
        if self.session.try_find(c::CODE).is_none() {
            self.password(&stack.user.name, &stack.user.password);
            self.expect(c::CODE, "the second factor page");
        }
    }

    /// Signs out on the settings page and checks the wiki asks for a login again.
    fn sign_out(&self, stack: &Stack) {
        self.session.goto(&stack.url(c::SETTINGS));
        let button = self.expect(c::SIGN_OUT, "the settings page's sign-out button");
        self.session.click(&button);
        std::thread::sleep(Duration::from_millis(300));
        self.session.goto(&stack.url(WIKI_PAGE));
        self.expect(c::LOGIN_FORM, "the login page, after signing out");
    }

    /// The settings page's key rows (the header row, if any, left out), as text.
    fn key_rows(&self) -> Vec<String> {
        self.session
            .find_all(c::KEY_ROWS)
            .iter()
            .filter(|row| {
                self.session.execute(
                    "return arguments[0].querySelector('td') !== null;",
                    json!([element_json(row)]),
                ) == json!(true)
            })
            .map(|row| self.session.text(row))
            .collect()
    }

    fn codes_left(&self) -> usize {
        let text = self.session.text(&self.session.find(c::CODES_LEFT));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("#codes-left is not a number: {text:?}"))
    }

    /// A button's label, or an input's value.
    fn text_or_value(&self, element: &Element) -> String {
        let text = self.session.text(element);
        if text.is_empty() {
            self.session.attribute(element, "value").unwrap_or_default()
        } else {
            text
        }
    }

    /// The `n`th credential call of `kind` ("create" or "get") the pages made, as fido2_check
    /// takes it; checks the page posted that credential.
    #[track_caller]
    fn webauthn_capture(&self, kind: &str, n: usize) -> Json {
        let captured = web::captured(&self.session);
        let calls: Vec<&Json> = captured.iter().filter(|e| e["kind"] == kind).collect();
        let call = calls
            .get(n)
            .unwrap_or_else(|| panic!("no navigator.credentials.{kind} call #{n}: {captured:?}"));
        assert_eq!(call["rpId"], "localhost", "{call}");
        let credential = &call["credential"];
        let id = credential["id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{call}");
        let posted = captured.iter().any(|e| {
            e["kind"] == "post" && e["body"].as_str().is_some_and(|body| body.contains(id))
        });
        assert!(posted, "no post carried credential {id}: {captured:?}");
        json!({
            "challenge": call["challenge"],
            "credential": credential,
            "userVerification": call["userVerification"],
        })
    }

    /// Waits until the browser leaves `from` (if given) and its redirects settle; the URL.
    fn settle(&self, from: &str) -> String {
        if !from.is_empty() {
            self.session.wait_for_url(PAGE, |url| {
                !url.starts_with(from) || self.session.try_find(c::ERROR).is_some()
            });
        }
        std::thread::sleep(Duration::from_millis(700));
        self.session.current_url()
    }
}

/// The one file the browser saved into `dir`, once complete (waits up to `PAGE`).
fn downloaded(dir: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + PAGE;
    loop {
        let files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        let complete = |p: &std::path::PathBuf| p.extension().is_none_or(|e| e != "crdownload");
        if let [file] = files.as_slice() {
            if complete(file) {
                return std::fs::read_to_string(file).unwrap();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no download in {}: {files:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The key that makes a WebDriver element argument.
fn element_json(element: &Element) -> Json {
    json!({ "element-6066-11e4-a52e-4f735466cecf": element.id })
}

/// The base32 key as the page shows it, without spaces or padding, in capitals.
fn base32_text(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A query parameter of a URI (percent-decoded).
fn query_value(uri: &str, name: &str) -> Option<String> {
    let (_, query) = uri.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .map(percent_decode)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text of the stub wiki's element `id` in a page (HTML entities left as they are).
fn element_text(page: &str, id: &str) -> String {
    let open = format!("id=\"{id}\">");
    page.split_once(&open)
        .and_then(|(_, rest)| rest.split_once('<'))
        .map(|(text, _)| text.to_string())
        .unwrap_or_else(|| panic!("no #{id} in {page}"))
}

/// Every request that reached the wiki carried exactly the user, once.
#[track_caller]
fn assert_wiki_saw_only(stack: &Stack, user: &str) {
    for seen in stack.wiki.seen() {
        assert_eq!(seen.remote_user, vec![user.to_string()], "{seen:?}");
    }
}

/// TOTP codes for the key the enrollment page showed, never the same step twice (the replay
/// guard refuses a step already used), from the core and checked against oathtool.
struct Totp {
    secret: String,
    last_step: Option<u64>,
}

impl Totp {
    fn new(secret: &str) -> Totp {
        Totp {
            secret: secret.into(),
            last_step: None,
        }
    }

    /// The code of a step not used yet: the current one, or the next (which the default window
    /// of one step accepts early), waiting for a new step if both were used.
    fn fresh_code(&mut self) -> String {
        loop {
            let now = codes::unix_now() / 30;
            let step = match self.last_step {
                None => now,
                Some(last) if last < now => now,
                Some(last) if last == now => now + 1,
                Some(_) => {
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            self.last_step = Some(step);
            return self.code_at_step(step);
        }
    }

    /// A code no step near now has.
    fn wrong_code(&self) -> String {
        codes::wrong(&self.secret)
    }

    fn code_at_step(&self, step: u64) -> String {
        let ours = codes::at(&self.secret, step * 30);
        let theirs = codes::oathtool(&codes::key(&self.secret), &format!("@{}", step * 30), 0);
        if let Some(theirs) = theirs {
            assert_eq!(
                theirs,
                vec![ours.clone()],
                "oathtool disagrees at step {step}"
            );
        }
        ours
    }
}
