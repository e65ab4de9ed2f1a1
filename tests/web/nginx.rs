//! A private nginx for one test, run from the example site an admin copies
//! (conf/nginx/twofold-wiki.conf), so that the example is what gets tested.
//!
//! The harness keeps the example's upstreams and locations (between its `twofold-test:` marker
//! lines) as they are, puts its own ports in place of the two upstream addresses, and wraps them
//! in a plain-HTTP server on loopback. Its pid file, logs and temp files live in a temp dir, and
//! it runs in the foreground (`daemon off`), so the test owns the process. A second server
//! without auth_request serves the same wiki, as the bench's baseline.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use twofold_tests::files::TempDir;

/// The example site, relative to the tests package.
pub const EXAMPLE: &str = "../conf/nginx/twofold-wiki.conf";
/// The wiki's and twofold-web's addresses as the example spells them.
pub const EXAMPLE_WIKI: &str = "server 127.0.0.1:8080;";
pub const EXAMPLE_WEB: &str = "server 127.0.0.1:9090;";

/// A running nginx, stopped on drop.
pub struct Nginx {
    /// The site with auth_request (the example's locations).
    pub port: u16,
    /// The same wiki with no auth_request at all (the bench's baseline).
    pub baseline_port: u16,
    pub dir: TempDir,
    child: Option<Child>,
}

impl Nginx {
    /// Renders the config for the wiki and twofold-web on these loopback ports, and starts nginx.
    pub fn start(wiki_port: u16, web_port: u16) -> Nginx {
        let dir = TempDir::new("nginx");
        // The workers run as nobody and write temp files here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let port = super::free_port();
        let baseline_port = super::free_port();
        let config = render(
            &example_text(),
            dir.path(),
            port,
            baseline_port,
            wiki_port,
            web_port,
        );
        let config_path = dir.write("nginx.conf", config);
        fs::set_permissions(&config_path, fs::Permissions::from_mode(0o644)).unwrap();
        let test = Command::new(super::NGINX)
            .arg("-t")
            .args(args(dir.path(), &config_path))
            .output()
            .expect("run nginx -t");
        assert!(
            test.status.success(),
            "nginx -t refused the rendered config {}: {}",
            config_path.display(),
            String::from_utf8_lossy(&test.stderr)
        );
        let child = Command::new(super::NGINX)
            .args(args(dir.path(), &config_path))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            port,
            baseline_port,
            dir,
            child: Some(child),
        };
        nginx.wait_until_listening();
        nginx
    }

    /// The error log so far (shown when a test fails).
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nginx.conf")
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = [self.port, self.baseline_port]
                .iter()
                .all(|&port| TcpStream::connect(("127.0.0.1", port)).is_ok());
            if up {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nginx exited with {status}: {}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen in time: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: nginx's fast shutdown, workers included; SIGKILL would leave them.
            // SAFETY: kill has no memory preconditions; the pid is our own child's, not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The example's text.
pub fn example_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE);
    let mut text = String::new();
    fs::File::open(&path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text
}

/// The test's nginx.conf: the example's upstreams (with these ports) and locations, in a
/// plain-HTTP server on `port`, and a baseline server on `baseline_port`.
pub fn render(
    example: &str,
    dir: &Path,
    port: u16,
    baseline_port: u16,
    wiki_port: u16,
    web_port: u16,
) -> String {
    let upstreams = marked(example, "upstreams");
    assert_eq!(
        upstreams.matches(EXAMPLE_WIKI).count(),
        1,
        "{EXAMPLE}: {EXAMPLE_WIKI}"
    );
    assert_eq!(
        upstreams.matches(EXAMPLE_WEB).count(),
        1,
        "{EXAMPLE}: {EXAMPLE_WEB}"
    );
    let upstreams = upstreams
        .replace(EXAMPLE_WIKI, &format!("server 127.0.0.1:{wiki_port};"))
        .replace(EXAMPLE_WEB, &format!("server 127.0.0.1:{web_port};"));
    let locations = marked(example, "locations");
    let dir = dir.display();
    // As root, the workers drop to nobody (nginx's own default when it starts as root).
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user nobody nogroup;"
    } else {
        ""
    };
    format!(
        "# Rendered by tests/web/nginx.rs from {EXAMPLE}.\n\
         {user}\n\
         daemon off;\n\
         worker_processes 2;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         access_log off;\n\
         client_body_temp_path {dir}/body;\n\
         proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fastcgi;\n\
         uwsgi_temp_path {dir}/uwsgi;\n\
         scgi_temp_path {dir}/scgi;\n\
         {upstreams}\n\
         server {{\n\
         listen 127.0.0.1:{port};\n\
         server_name localhost;\n\
         {locations}\n\
         }}\n\
         # The bench's baseline: the same wiki, no auth_request.\n\
         server {{\n\
         listen 127.0.0.1:{baseline_port};\n\
         server_name localhost;\n\
         location / {{\n\
         proxy_set_header Host $host;\n\
         proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n\
         proxy_pass http://wiki;\n\
         }}\n\
         }}\n\
         }}\n"
    )
}

/// The lines between `# twofold-test: NAME begin` and `# twofold-test: NAME end`.
fn marked<'a>(text: &'a str, name: &str) -> &'a str {
    let begin = format!("# twofold-test: {name} begin\n");
    let end = format!("# twofold-test: {name} end");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("{EXAMPLE} has no line `{}`", begin.trim_end()))
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("{EXAMPLE} has no line `{end}`"))
        + start;
    &text[start..stop]
}

fn args(dir: &Path, config: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "-p".into(),
        dir.as_os_str().into(),
        "-c".into(),
        config.as_os_str().into(),
        // Before the config is read, nginx logs here instead of its compiled-in path.
        "-e".into(),
        dir.join("error.log").into_os_string(),
    ]
}
