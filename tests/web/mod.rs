//! The harness of twofold-web's end-to-end tests: the whole stack on loopback for one test, and
//! the tools to look at it.
//!
//! ```text
//! Chromium (headless, virtual security key) --> nginx (conf/nginx/twofold-wiki.conf)
//!     --> /twofold/* and auth_request --> twofold-web (its own user) --> twofoldd (root, PAM)
//!     --> everything else --> the stub wiki (shows the Remote-User it got)
//! ```
//!
//! It makes real accounts and a real `/etc/pam.d` file, so it needs root. Under `CI=true` a
//! missing tool or a run without root fails the test; elsewhere the test is skipped with a note.
//! What twofold-web must do, and how it is started, is in `crate::contract`.

pub mod nginx;
pub mod stub_wiki;
pub mod webdriver;

use std::fs::{self, File};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::common::{start_twofoldd, Host, TempDir};
use crate::contract;
use crate::root::{unique, TestUser};

use nginx::Nginx;
use stub_wiki::StubWiki;

pub const NGINX: &str = "/usr/sbin/nginx";
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const ZBARIMG: &str = "/usr/bin/zbarimg";
/// The Python with fido2 2.2.1 that tests/run.sh makes.
pub const FIDO_PYTHON: &str = "../target/fido-venv/bin/python";
/// Where screenshots go, relative to the tests package.
pub const SCREENSHOTS: &str = "../target/web-screenshots";

/// Whether a web test can run here: `false` (after saying why) when not, so that it returns
/// early; panics under `CI=true`, where a skipped test hides a failure. A missing twofold-web
/// binary fails everywhere: the test exists to run it.
pub fn web_test_starts(test: &str) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (test accounts, /etc/pam.d, twofold-web as its own user)".to_string());
    }
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (tool, package_name) in [
        (NGINX, "nginx"),
        (CHROMIUM, "chromium"),
        (CHROMEDRIVER, "chromium-driver"),
        (ZBARIMG, "zbar-tools"),
        ("/usr/bin/oathtool", "oathtool"),
    ] {
        if !Path::new(tool).is_file() {
            missing.push(format!("{tool} (Debian package {package_name})"));
        }
    }
    let python = package.join(FIDO_PYTHON);
    let fido2 = Command::new(&python)
        .args(["-c", "import fido2.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !fido2 {
        missing.push(format!(
            "{} with fido2 (tests/run.sh makes it)",
            python.display()
        ));
    }
    if !missing.is_empty() {
        let why = format!("{test} needs {}", missing.join(", "));
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{why} (CI=true)"
        );
        eprintln!("SKIPPED {why}");
        return false;
    }
    contract::web_binary();
    // Root and every tool are here: leave the root-only test's marker (tests/run.sh counts them).
    crate::root::root_test_starts(test)
}

/// A free loopback TCP port (free when asked; good enough on a test machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One stack at a time: each runs a browser, and TOTP steps and two cores are shared.
static ONE_STACK: Mutex<()> = Mutex::new(());

/// The whole stack for one test. Dropping it stops every process and removes the accounts and
/// the PAM service; when the test is failing, it prints every log first.
pub struct Stack {
    /// The person who signs in (a real account with a password).
    pub user: TestUser,
    /// Their full name (the GECOS field), which Remote-Name may carry.
    pub full_name: String,
    /// The account twofold-web runs as: twofoldd's `web_user`.
    pub web_user: TestUser,
    /// The host config and records directory twofoldd serves.
    pub host: Host,
    pub wiki: StubWiki,
    /// Stands in for evil.example (the browser resolves it here): it must never get a request.
    pub evil: StubWiki,
    pub nginx: Nginx,
    pub web_port: u16,
    pub socket: PathBuf,
    pub pam_service: String,
    daemon: Option<Child>,
    web: Option<Child>,
    run: TempDir,
    _one: MutexGuard<'static, ()>,
}

impl Stack {
    pub fn start() -> Stack {
        let one = ONE_STACK.lock().unwrap_or_else(|p| p.into_inner());
        let user = TestUser::create("web");
        let full_name = format!("Alice Example {}", unique("n"));
        set_full_name(&user.name, &full_name);
        let web_user = TestUser::create("websrv");
        let run = TempDir::new("web-run");
        fs::set_permissions(run.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let pam_service = format!("twofold-web-test-{}", unique("s"));
        let stack_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(contract::PAM_STACK);
        let pam_stack = fs::read_to_string(&stack_path)
            .unwrap_or_else(|e| panic!("{}: {e}", stack_path.display()));
        write_public(&Path::new("/etc/pam.d").join(&pam_service), &pam_stack);

        let host = Host::new("");
        let socket = run.path().join("twofoldd.sock");
        let wiki = StubWiki::start();
        let evil = StubWiki::start();
        let web_port = free_port();
        let nginx = Nginx::start(wiki.port, web_port);
        let fill = |template: &str| {
            template
                .replace("{web_port}", &web_port.to_string())
                .replace("{nginx_port}", &nginx.port.to_string())
                .replace("{web_user}", &web_user.name)
                .replace("{pam_service}", &pam_service)
        };
        let daemon_toml = host.dir.write("twofoldd.toml", fill(contract::DAEMON_TOML));
        // One config for both: the daemon reads the host's (root's, 0600), twofold-web a copy
        // it may read. Top-level keys come before the [web] table.
        let base = fs::read_to_string(&host.config).unwrap();
        let config = format!(
            "{base}daemon_socket = \"{}\"\n{}",
            socket.display(),
            fill(contract::WEB_SECTION)
        );
        host.write_config(&config);
        let web_config = run.path().join("config.toml");
        write_public(&web_config, &config);

        let mut stack = Stack {
            user,
            full_name,
            web_user,
            host,
            wiki,
            evil,
            nginx,
            web_port,
            socket,
            pam_service,
            daemon: None,
            web: None,
            run,
            _one: one,
        };
        stack.daemon = Some(start_twofoldd(
            &stack.host.config,
            &daemon_toml,
            &stack.socket,
        ));
        stack.web = Some(stack.start_web(&web_config));
        stack
    }

    /// `http://localhost:<nginx>` + `path`: what the browser visits.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    pub fn origin(&self) -> String {
        format!("http://localhost:{}", self.nginx.port)
    }

    /// Whether `url` is on this site (scheme, host and port), and not another.
    pub fn is_local(&self, url: &str) -> bool {
        url == self.origin() || url.starts_with(&format!("{}/", self.origin()))
    }

    /// Chromium's flags for this stack: evil.example and its subdomains resolve to `evil`.
    pub fn browser_args(&self) -> Vec<String> {
        vec![format!(
            "--host-resolver-rules=MAP evil.example 127.0.0.1:{port}, \
             MAP *.evil.example 127.0.0.1:{port}",
            port = self.evil.port
        )]
    }

    /// twofold-web's log so far.
    pub fn web_log(&self) -> String {
        fs::read_to_string(self.run.path().join("twofold-web.log")).unwrap_or_default()
    }

    fn start_web(&self, config: &Path) -> Child {
        let log = File::create(self.run.path().join("twofold-web.log")).unwrap();
        let mut command = Command::new(contract::web_binary());
        command
            .args(contract::web_args(config))
            .current_dir("/")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if contract::WEB_RUNS_AS_ITS_OWN_USER {
            command.uid(self.web_user.uid).gid(self.web_user.gid);
        }
        let mut child = command.spawn().expect("start twofold-web");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.web_port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "twofold-web exited with {status} before it listened on {}:\n{}",
                    self.web_port,
                    self.web_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "twofold-web did not listen on {} in time:\n{}",
                self.web_port,
                self.web_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in [self.web.take(), self.daemon.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_file(Path::new("/etc/pam.d").join(&self.pam_service));
        if std::thread::panicking() {
            eprintln!("---- twofold-web log ----\n{}", self.web_log());
            eprintln!("---- nginx error log ----\n{}", self.nginx.error_log());
            eprintln!(
                "---- requests the stub wiki got ----\n{:#?}",
                self.wiki.seen()
            );
            eprintln!(
                "---- requests evil.example got ----\n{:#?}",
                self.evil.seen()
            );
        }
    }
}

/// Sets the GECOS full name, which twofold-web may show and send as Remote-Name.
fn set_full_name(user: &str, name: &str) {
    for _ in 0..10 {
        let out = Command::new("usermod")
            .args(["-c", name, user])
            .output()
            .expect("run usermod");
        if out.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("usermod -c failed for {user}");
}

/// Writes a file others may read (mode 0644), such as a config for the web server's user.
fn write_public(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.write_all(text.as_bytes()).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// The script every page gets before its own (see `webdriver::Session::on_every_document`):
/// it records what `navigator.credentials.create/get` were asked and returned, and the bodies
/// the page posts, in `sessionStorage` under `CAPTURED`, which outlives the page's navigation
/// to the next page of the same origin.
pub const CAPTURE_SCRIPT: &str = r#"(() => {
  const KEY = 'twofold-test-captured';
  const load = () => { try { return JSON.parse(sessionStorage.getItem(KEY) || '[]'); } catch (e) { return []; } };
  const save = (entry) => { try { const all = load(); all.push(entry); sessionStorage.setItem(KEY, JSON.stringify(all)); } catch (e) {} };
  const bytes = (v) => v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const b64url = (v) => { let s = ''; for (const b of bytes(v)) s += String.fromCharCode(b); return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''); };
  const text = (body) => {
    if (typeof body === 'string') return body;
    if (body instanceof URLSearchParams) return body.toString();
    if (body instanceof FormData) return new URLSearchParams(body).toString();
    return null;
  };
  const creds = navigator.credentials;
  if (creds) {
    for (const kind of ['create', 'get']) {
      const original = creds[kind].bind(creds);
      creds[kind] = async (options) => {
        const credential = await original(options);
        try {
          const pk = (options && options.publicKey) || {};
          save({ kind, page: location.pathname,
                 challenge: pk.challenge ? b64url(pk.challenge) : null,
                 rpId: kind === 'create' ? (pk.rp && pk.rp.id) : pk.rpId,
                 userVerification: kind === 'create' ? (pk.authenticatorSelection || {}).userVerification : pk.userVerification,
                 credential: credential && credential.toJSON ? credential.toJSON() : null });
        } catch (e) { save({ kind, error: String(e) }); }
        return credential;
      };
    }
  }
  const originalFetch = window.fetch;
  window.fetch = function (input, init) {
    try { const body = init && text(init.body); if (body !== null && body !== undefined) save({ kind: 'post', url: String((input && input.url) || input), body }); } catch (e) {}
    return originalFetch.apply(this, arguments);
  };
  const originalSend = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (body) {
    try { const t = text(body); if (t !== null) save({ kind: 'post', url: 'xhr', body: t }); } catch (e) {}
    return originalSend.apply(this, arguments);
  };
  const form = (f) => { try { save({ kind: 'post', url: f.action, body: new URLSearchParams(new FormData(f)).toString() }); } catch (e) {} };
  document.addEventListener('submit', (ev) => form(ev.target), true);
  const originalSubmit = HTMLFormElement.prototype.submit;
  HTMLFormElement.prototype.submit = function () { form(this); return originalSubmit.apply(this, arguments); };
})();"#;

/// What `CAPTURE_SCRIPT` recorded so far in this tab (read from any page of the origin).
pub fn captured(session: &webdriver::Session) -> Vec<Json> {
    let value = session.execute(
        "return sessionStorage.getItem('twofold-test-captured') || '[]';",
        json!([]),
    );
    serde_json::from_str(value.as_str().unwrap_or("[]")).unwrap_or_default()
}

/// Verifies a registration and assertions the browser made with Python fido2's `Fido2Server`
/// (tests/web/fido2_check.py); returns its report (flags and counters).
pub fn fido2_verify(rp_id: &str, origin: &str, registration: &Json, assertions: &[Json]) -> Json {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new("fido2-web");
    let input = dir.write(
        "cases.json",
        json!({
            "rp_id": rp_id,
            "origin": origin,
            "registration": registration,
            "assertions": assertions,
        })
        .to_string(),
    );
    let out = Command::new(package.join(FIDO_PYTHON))
        .arg(package.join("web/fido2_check.py"))
        .arg(&input)
        .output()
        .expect("run fido2_check.py");
    assert!(
        out.status.success(),
        "fido2 refused what the browser made: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("fido2_check.py prints JSON")
}

/// Decodes the QR code in a PNG with zbarimg (an independent decoder).
pub fn decode_qr(png: &Path) -> String {
    let out = Command::new(ZBARIMG)
        .args(["--raw", "-q"])
        .arg(png)
        .output()
        .expect("run zbarimg");
    assert!(
        out.status.success(),
        "zbarimg found no QR code in {}",
        png.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Screenshots of every page of the flow, at both sizes, numbered in the order taken.
pub struct Screens {
    dir: PathBuf,
    test: String,
    next: u32,
}

impl Screens {
    /// Starts `target/web-screenshots/<test>/` afresh.
    pub fn new(test: &str) -> Screens {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(SCREENSHOTS)
            .join(test);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Screens {
            dir,
            test: test.into(),
            next: 1,
        }
    }

    /// Saves the current page as `NN-<name>-phone.png` and `NN-<name>-desktop.png`, and leaves
    /// the window at desktop size.
    pub fn take(&mut self, session: &webdriver::Session, name: &str) {
        for size in [webdriver::PHONE, webdriver::DESKTOP] {
            session.set_size(size);
            // A moment for the new layout (and fonts) before the picture.
            std::thread::sleep(Duration::from_millis(150));
            let file = format!("{:02}-{name}-{}.png", self.next, size.name);
            session.screenshot(&self.dir.join(file));
        }
        self.next += 1;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn test(&self) -> &str {
        &self.test
    }
}

/// Raw HTTP on loopback, for what a browser would not send (a forged Remote-User).
pub mod http {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    #[derive(Debug)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        /// The first header called `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// `GET path` on 127.0.0.1:`port` with exactly these extra header lines (names may repeat),
    /// as `Host: localhost:<port>`, on a connection of its own.
    pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        read_response(&mut stream).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Reads one response: up to its Content-Length, its last chunk, or the end of the
    /// connection (a server may keep it open despite `Connection: close`, as chromedriver does).
    pub fn read_response(stream: &mut impl Read) -> Result<Response, String> {
        let mut raw = Vec::new();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Ok(response) = parse_response(&raw) {
                if complete(&response, &raw) {
                    return Ok(response);
                }
            }
            let n = stream
                .read(&mut buffer)
                .map_err(|e| format!("reading the response: {e}"))?;
            if n == 0 {
                return parse_response(&raw);
            }
            raw.extend_from_slice(&buffer[..n]);
        }
    }

    /// Whether `raw` holds all of `response`, by what its head says.
    fn complete(response: &Response, raw: &[u8]) -> bool {
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            return raw.ends_with(b"0\r\n\r\n");
        }
        match response.header("content-length") {
            Some(length) => length.parse() == Ok(response.body.len()),
            None => false,
        }
    }

    /// Parses a whole response read to the end of the connection: Content-Length, chunked, or
    /// everything after the head.
    pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no end of headers")?;
        let head = std::str::from_utf8(&raw[..end]).map_err(|_| "head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().ok_or("empty response")?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let rest = &raw[end + 4..];
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let body = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            dechunk(rest)?
        } else if let Some(length) = find("content-length") {
            let length: usize = length.parse().map_err(|_| "bad Content-Length")?;
            rest.get(..length).ok_or("body cut short")?.to_vec()
        } else {
            rest.to_vec()
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("chunk size line")?;
            let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "chunk size")?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| "chunk size")?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(rest.get(..size).ok_or("chunk cut short")?);
            rest = rest.get(size + 2..).ok_or("chunk end")?;
        }
    }
}
