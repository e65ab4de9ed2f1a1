//! The program: `twofold-web [--config PATH]`. Reads `/etc/twofold/config.toml` (the `[web]`
//! section and the host's TOTP, backup-code and throttle settings), listens on `[web] listen`,
//! and serves until stopped. A bad config stops it at once with the file and line named.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::config::WebConfig;
use crate::routes;
use crate::webauthn::RelyingParty;
use twofold_core::config::DEFAULT_CONFIG_PATH;
use twofold_host::config_file;
use twofold_host::syslog::Level;

/// Runs twofold-web with the process's arguments.
pub fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path = PathBuf::from(DEFAULT_CONFIG_PATH);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--config", Some(path)) => config_path = PathBuf::from(path),
            ("--help" | "-h", _) => {
                println!("usage: twofold-web [--config PATH]\nSee twofold-web(8).");
                return ExitCode::SUCCESS;
            }
            _ => {
                return fail(&format!(
                    "unknown argument {arg:?}; usage: twofold-web [--config PATH]"
                ))
            }
        }
    }
    let (config, text) = match config_file::load_with_text(&config_path) {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e.to_string()),
    };
    let web = match WebConfig::parse(&config_path, &text) {
        Ok(web) => web,
        Err(e) => return fail(&e.to_string()),
    };
    let rp = match RelyingParty::new(&web.rp_id, &web.rp_name, &web.origin) {
        Ok(rp) => rp,
        Err(e) => return fail(&format!("{}: [web]: {e}", config_path.display())),
    };
    let listen = web.listen;
    let Some(app) = App::new(config, web, rp) else {
        return fail("no randomness for the login form's key");
    };
    let app = Arc::new(app);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(serve(app, listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn serve(app: Arc<App>, listen: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    app.log(Level::Info, &format!("listening on {listen}"));
    let sweeper = Arc::clone(&app);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            sweeper.sessions.sweep_now();
        }
    });
    let service = routes::router(app).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|e| format!("serving failed: {e}"))
}

/// Resolves at SIGTERM (systemd's stop) or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers, run until killed.
        _ => std::future::pending().await,
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("twofold-web: {message}");
    twofold_host::syslog::line(crate::app::IDENT, Level::Error, message);
    ExitCode::FAILURE
}
