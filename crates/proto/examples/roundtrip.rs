//! Times twofoldd's socket round trip: connect, send one request, read the answer, as the module
//! does once per store operation. Prints the percentiles in microseconds.
//!
//! ```sh
//! cargo run --release -p twofold-proto --example roundtrip -- SOCKET [N] status
//! cargo run --release -p twofold-proto --example roundtrip -- SOCKET [N] load USER
//! ```
//!
//! `status` asks nothing of the store (the daemon and the socket alone); `load` reads a user's
//! copy (as root), so it adds the backend: a file read, or a directory search. The first 100
//! requests warm up and are not counted. Any answer other than the expected kind stops it.

use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use twofold_proto::{exchange, Request, Response};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("roundtrip: {why}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (socket, rest) = args.split_first().ok_or(USAGE)?;
    let (count, rest) = match rest.first().map(|n| n.parse::<usize>()) {
        Some(Ok(n)) if n > 0 => (n, &rest[1..]),
        Some(Ok(_)) => return Err("N: expected at least 1".into()),
        _ => (10_000, rest),
    };
    let (label, request) = match rest {
        [op] if op == "status" => ("status".to_string(), Request::Status),
        [op, user] if op == "load" => {
            (format!("load {user}"), Request::Load { user: user.clone() })
        }
        _ => return Err(USAGE.into()),
    };
    let mut times = Vec::with_capacity(count);
    for i in 0..WARM_UP + count {
        let started = Instant::now();
        let mut stream =
            UnixStream::connect(socket).map_err(|e| format!("connect to {socket}: {e}"))?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| format!("{socket}: {e}"))?;
        let answer = exchange(&mut stream, &request).map_err(|e| format!("{socket}: {e}"))?;
        let took = started.elapsed();
        drop(stream);
        let expected = match (&request, &answer) {
            (Request::Status, Response::Status { .. }) => true,
            (Request::Load { .. }, Response::Loaded(snapshot)) => snapshot.record.is_some(),
            _ => false,
        };
        if !expected {
            return Err(format!("{label}: unexpected answer {answer:?}"));
        }
        if i >= WARM_UP {
            times.push(took);
        }
    }
    times.sort();
    let at = |p: usize| micros(times[(times.len() - 1) * p / 100]);
    let mean = micros(times.iter().sum::<Duration>()) / times.len() as f64;
    println!(
        "roundtrip {label}: n={count} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} mean_us={mean:.1}",
        at(50),
        at(90),
        at(99),
        at(100),
    );
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

const USAGE: &str = "usage: roundtrip SOCKET [N] status | roundtrip SOCKET [N] load USER";
const WARM_UP: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(10);
