//! The stub wiki behind nginx: a small HTTP/1.1 server on std::net that answers every request
//! with a page showing the Remote-User and Remote-Name headers it got (`#remote-user`,
//! `#remote-name`, or "(none)"), and records every request for the test to look at afterwards.
//!
//! It is written in Rust, not Python, so that it runs on a thread of the test, reports its port
//! without a handshake, and needs nothing installed. It also keeps connections alive with a
//! thread each, so that in the bench (tests/bench/web.sh) nginx and twofold-web are what gets
//! measured, not the stub.
//!
//! Headers are matched the way a CGI or PHP wiki maps them to variables: case-insensitive, with
//! `_` the same as `-`. A client's `Remote_User` counts as Remote-User here too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the wiki got it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Every Remote-User value, in order (more than one means a header was duplicated).
    pub remote_user: Vec<String>,
    pub remote_name: Vec<String>,
}

/// A running stub wiki, stopped on drop.
pub struct StubWiki {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl StubWiki {
    /// Listens on a free loopback port and serves on a thread.
    pub fn start() -> StubWiki {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub wiki");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let seen = Arc::clone(&seen);
                    std::thread::spawn(move || serve(stream, &seen));
                }
            })
        };
        StubWiki {
            port,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StubWiki {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The page for one request.
pub fn page(seen: &Seen) -> String {
    let show = |values: &[String]| {
        if values.is_empty() {
            "(none)".to_string()
        } else {
            escape(&values.join(", "))
        }
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Stub wiki</title></head>\n<body><h1>Stub wiki</h1>\n\
         <p>Page: <code id=\"target\">{}</code></p>\n\
         <p>Remote-User:</p><p id=\"remote-user\">{}</p>\n\
         <p>Remote-Name:</p><p id=\"remote-name\">{}</p>\n</body></html>\n",
        escape(&seen.target),
        show(&seen.remote_user),
        show(&seen.remote_name)
    )
}

/// Serves requests on one connection until the client closes it, asks to, or goes quiet.
fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some((request, keep_alive)) = read_request(&mut reader) {
        let body = page(&request);
        seen.lock().unwrap().push(request);
        // One write: a head and a body written apart wait on delayed ACKs (Nagle), 40 ms each.
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n\r\n{body}",
            body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        if writer.write_all(response.as_bytes()).is_err() {
            break;
        }
        if !keep_alive {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// Reads one request (its body, if any, is read and dropped); `None` at the end of the
/// connection or on garbage.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(Seen, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let version = parts.next().unwrap_or("HTTP/1.0").to_string();
    let mut request = Seen {
        method,
        target,
        remote_user: Vec::new(),
        remote_name: Vec::new(),
    };
    let mut keep_alive = version == "HTTP/1.1";
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase().replace('_', "-");
        let value = value.trim().to_string();
        match name.as_str() {
            "remote-user" => request.remote_user.push(value),
            "remote-name" => request.remote_name.push(value),
            "content-length" => length = value.parse().ok()?,
            "connection" if value.eq_ignore_ascii_case("close") => keep_alive = false,
            "connection" if value.eq_ignore_ascii_case("keep-alive") => keep_alive = true,
            _ => {}
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some((request, keep_alive))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
