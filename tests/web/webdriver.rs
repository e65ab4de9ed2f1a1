//! A small W3C WebDriver client for chromedriver and headless Chromium, on std::net and
//! serde_json: one HTTP/1.1 request per connection, with Content-Length.
//!
//! It covers what the end-to-end test needs: sessions, navigation, elements (find, click, keys,
//! text, attributes), scripts (sync and async), page source, cookies, window sizes (phone and
//! desktop), screenshots saved as PNG, the WebAuthn virtual authenticator extension, and a few
//! Chrome DevTools commands through chromedriver's `goog/cdp/execute` (a script on every new
//! document, full-page screenshots, mobile emulation).

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use serde_json::{json, Value as Json};

use twofold_tests::files::TempDir;

/// W3C's key for an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A window size: width and height in CSS pixels.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    /// Emulate a phone: touch, device pixel ratio 2 and the page's viewport meta honoured, so a
    /// page without `<meta name=viewport>` shows as a phone would show it.
    pub mobile: bool,
}

pub const PHONE: Size = Size {
    name: "phone",
    width: 390,
    height: 844,
    mobile: true,
};
pub const DESKTOP: Size = Size {
    name: "desktop",
    width: 1280,
    height: 900,
    mobile: false,
};

/// The virtual authenticator's options: a CTAP2 USB key that is not discoverable (no resident
/// key), verifies the user, and always consents.
pub fn usb_security_key() -> Json {
    json!({
        "protocol": "ctap2",
        "transport": "usb",
        "hasResidentKey": false,
        "hasUserVerification": true,
        "isUserConsenting": true,
        "isUserVerified": true,
    })
}

/// A running chromedriver, killed on drop.
pub struct Driver {
    port: u16,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Driver {
    /// Starts `chromedriver --port=<free>` and waits until it answers `/status`.
    pub fn start() -> Driver {
        let dir = TempDir::new("chromedriver");
        let port = super::free_port();
        let log = dir.path().join("chromedriver.log");
        let child = Command::new(super::CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            port,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = request(port, "GET", "/status", None) {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new session with headless Chromium, at `size`. `extra_args` go to Chromium.
    pub fn session(&self, size: Size, extra_args: &[String]) -> Session<'_> {
        let profile = TempDir::new("chromium-profile");
        let mut args: Vec<String> = [
            "--headless=new",
            // Chromium's sandbox refuses to run as root.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--password-store=basic",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--window-size={},{}", size.width, size.height));
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra_args.iter().cloned());
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": super::CHROMIUM, "args": args },
                    "timeouts": { "pageLoad": 30000, "script": 30000 },
                }
            }
        });
        let value = self.call("POST", "/session", Some(&capabilities));
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {value}"))
            .to_string();
        let session = Session {
            driver: self,
            id,
            _profile: profile,
        };
        session.set_size(size);
        session
    }

    /// chromedriver's log (shown when a test fails).
    pub fn log_tail(&self, bytes: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(bytes);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    /// One WebDriver command; panics with the driver's error when it fails.
    fn call(&self, method: &str, path: &str, body: Option<&Json>) -> Json {
        match self.try_call(method, path, body) {
            Ok(value) => value,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn try_call(&self, method: &str, path: &str, body: Option<&Json>) -> Result<Json, String> {
        let (status, reply) = request(self.port, method, path, body)
            .map_err(|e| format!("cannot reach chromedriver: {e}"))?;
        let value = reply.get("value").cloned().unwrap_or(Json::Null);
        if status == 200 {
            Ok(value)
        } else {
            Err(format!(
                "HTTP {status}: {} {}",
                value["error"].as_str().unwrap_or("?"),
                value["message"].as_str().unwrap_or(&reply.to_string())
            ))
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session, deleted (and the browser closed) on drop.
pub struct Session<'d> {
    driver: &'d Driver,
    pub id: String,
    _profile: TempDir,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub struct Element {
    pub id: String,
}

impl Session<'_> {
    pub fn goto(&self, url: &str) {
        self.call("POST", "url", Some(json!({ "url": url })));
    }

    pub fn current_url(&self) -> String {
        self.call("GET", "url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn source(&self) -> String {
        self.call("GET", "source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn title(&self) -> String {
        self.call("GET", "title", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css`; panics if there is none.
    pub fn find(&self, css: &str) -> Element {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element {css} on {}", self.current_url()))
    }

    /// The first element matching `css`, if any.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let body = json!({ "using": "css selector", "value": css });
        let value = self.try_call("POST", "element", Some(body)).ok()?;
        Some(element(&value))
    }

    /// Every element matching `css`.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let body = json!({ "using": "css selector", "value": css });
        let value = self.call("POST", "elements", Some(body));
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(element)
            .collect()
    }

    /// Waits up to `timeout` for an element matching `css`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Option<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.try_find(css) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `timeout` until `done` holds for the current URL; returns the last URL.
    pub fn wait_for_url(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self.current_url();
            if done(&url) || Instant::now() >= deadline {
                return url;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, element: &Element) {
        self.call(
            "POST",
            &format!("element/{}/click", element.id),
            Some(json!({})),
        );
    }

    /// Types `text` into the element (after what it holds).
    pub fn send_keys(&self, element: &Element, text: &str) {
        self.call(
            "POST",
            &format!("element/{}/value", element.id),
            Some(json!({ "text": text })),
        );
    }

    pub fn clear(&self, element: &Element) {
        self.call(
            "POST",
            &format!("element/{}/clear", element.id),
            Some(json!({})),
        );
    }

    /// The element's rendered text.
    pub fn text(&self, element: &Element) -> String {
        self.call("GET", &format!("element/{}/text", element.id), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element's attribute or property `name` (WebDriver's "Get Element Attribute").
    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let value = self.call(
            "GET",
            &format!("element/{}/attribute/{name}", element.id),
            None,
        );
        value.as_str().map(str::to_string)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns what it returns.
    pub fn execute(&self, script: &str, args: Json) -> Json {
        self.call(
            "POST",
            "execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` asynchronously: it calls `arguments[arguments.length - 1]` with its result.
    pub fn execute_async(&self, script: &str, args: Json) -> Json {
        self.call(
            "POST",
            "execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Every cookie the browser would send to the current page, HttpOnly ones too.
    pub fn cookies(&self) -> Vec<Json> {
        self.call("GET", "cookie", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The cookies as a `Cookie:` header value.
    pub fn cookie_header(&self) -> String {
        self.cookies()
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap_or_default(),
                    c["value"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Resizes the window and, for a phone, emulates its screen (see `Size::mobile`).
    pub fn set_size(&self, size: Size) {
        self.call(
            "POST",
            "window/rect",
            Some(json!({ "width": size.width, "height": size.height })),
        );
        if size.mobile {
            self.cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({
                    "width": size.width,
                    "height": size.height,
                    "deviceScaleFactor": 2,
                    "mobile": true,
                }),
            );
            self.cdp(
                "Emulation.setTouchEmulationEnabled",
                json!({ "enabled": true, "maxTouchPoints": 5 }),
            );
        } else {
            self.cdp("Emulation.clearDeviceMetricsOverride", json!({}));
            self.cdp(
                "Emulation.setTouchEmulationEnabled",
                json!({ "enabled": false }),
            );
        }
    }

    /// Saves the whole page (beyond the viewport) as a PNG at `path`.
    pub fn screenshot(&self, path: &Path) {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({}));
        let content = &metrics["cssContentSize"];
        let width = content["width"].as_f64().unwrap_or(0.0).ceil();
        let height = content["height"].as_f64().unwrap_or(0.0).ceil();
        let shot = if width > 0.0 && height > 0.0 {
            let clip = json!({ "x": 0, "y": 0, "width": width, "height": height, "scale": 1 });
            let params = json!({ "format": "png", "captureBeyondViewport": true, "clip": clip });
            self.cdp("Page.captureScreenshot", params)["data"].clone()
        } else {
            self.call("GET", "screenshot", None)
        };
        save_png(path, &shot);
    }

    /// Saves a PNG of one element (for the QR decoder).
    pub fn element_screenshot(&self, element: &Element, path: &Path) {
        let shot = self.call("GET", &format!("element/{}/screenshot", element.id), None);
        save_png(path, &shot);
    }

    /// Saves downloads (a link's click) into `dir`, without asking.
    pub fn allow_downloads(&self, dir: &Path) {
        let params = json!({ "behavior": "allow", "downloadPath": dir.display().to_string() });
        if self
            .try_call(
                "POST",
                "goog/cdp/execute",
                Some(json!({ "cmd": "Browser.setDownloadBehavior", "params": params.clone() })),
            )
            .is_err()
        {
            self.cdp("Page.setDownloadBehavior", params);
        }
    }

    /// Runs `source` in every document this session opens from now on, before the page's own
    /// scripts (Chrome DevTools' Page.addScriptToEvaluateOnNewDocument).
    pub fn on_every_document(&self, source: &str) {
        self.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": source }),
        );
    }

    /// One Chrome DevTools Protocol command through chromedriver.
    pub fn cdp(&self, command: &str, params: Json) -> Json {
        self.call(
            "POST",
            "goog/cdp/execute",
            Some(json!({ "cmd": command, "params": params })),
        )
    }

    /// Adds a virtual authenticator (W3C WebAuthn automation); returns its id.
    pub fn add_virtual_authenticator(&self, options: Json) -> String {
        let value = self.call("POST", "webauthn/authenticator", Some(options));
        // chromedriver answers the id itself; the spec's shape is {"authenticatorId": ...}.
        value
            .as_str()
            .or_else(|| value["authenticatorId"].as_str())
            .unwrap_or_else(|| panic!("no authenticator id in {value}"))
            .to_string()
    }

    /// The credentials a virtual authenticator holds (credentialId, rpId, signCount...).
    pub fn authenticator_credentials(&self, authenticator: &str) -> Vec<Json> {
        self.call(
            "GET",
            &format!("webauthn/authenticator/{authenticator}/credentials"),
            None,
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    pub fn remove_virtual_authenticator(&self, authenticator: &str) {
        self.call(
            "DELETE",
            &format!("webauthn/authenticator/{authenticator}"),
            None,
        );
    }

    fn call(&self, method: &str, command: &str, body: Option<Json>) -> Json {
        self.driver.call(
            method,
            &format!("/session/{}/{command}", self.id),
            body.as_ref(),
        )
    }

    fn try_call(&self, method: &str, command: &str, body: Option<Json>) -> Result<Json, String> {
        self.driver.try_call(
            method,
            &format!("/session/{}/{command}", self.id),
            body.as_ref(),
        )
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .try_call("DELETE", &format!("/session/{}", self.id), None);
    }
}

fn element(value: &Json) -> Element {
    Element {
        id: value[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("not an element: {value}"))
            .to_string(),
    }
}

fn save_png(path: &Path, base64: &Json) {
    let data = base64
        .as_str()
        .unwrap_or_else(|| panic!("no image in {base64}"));
    let png = Base64::decode_vec(data).expect("a base64 screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// One HTTP/1.1 request to chromedriver: the status and the JSON answer.
fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Json>,
) -> std::io::Result<(u16, Json)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    // Page loads and async scripts wait inside a command, up to the session's 30 s timeouts.
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let response = super::http::read_response(&mut stream)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let json = if response.body.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(&response.body).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not JSON: {e}"))
        })?
    };
    Ok((response.status, json))
}
