//! The endpoints, all under `/twofold/`, and the one place where outcomes become HTTP answers.
//!
//! - `GET /twofold/auth`: nginx's `auth_request` question: 200 with `Remote-User` and
//!   `Remote-Name` for a signed-in session, 401 otherwise.
//! - The sign-in flow: `login` (password), then `login/second` (a code) or `login/key`
//!   (WebAuthn), or, at the first login, `enroll` (QR code), `enroll/codes`, `keys/add`.
//! - `settings`: keys (rename, remove, add), new backup codes, sign out.
//!
//! Every form carries the session's CSRF token, every JSON call sends it in `X-CSRF-Token`. The
//! user sees one generic line per failure; syslog gets the precise cause, never a password or a
//! code.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use twofold_core::enroll::{self, EnrollError, Pending};
use twofold_core::keys::{self, KeyChangeError};
use twofold_core::login::{self, Denial, Factor, Outcome};
use twofold_core::prompt::OneAnswer;
use twofold_core::qr;
use twofold_core::security_key::{KeyName, NoDevice, SecurityKey};
use twofold_core::store::Store;
use twofold_core::text::LogLine;
use twofold_core::user::UserName;
use twofold_host::syslog::Level;
use twofold_host::SystemClock;

use crate::app::{
    client_key, user_name, App, PasswordCheck, CHALLENGE_LIFETIME_SECS, TOUCH_TIMEOUT_MS,
};
use crate::pages::{self, KeyRow};
use crate::redirect;
use crate::session::{Session, Stage};
use crate::webauthn::{self, AssertionResponse, Purpose, RegistrationResponse};

/// Where twofold-web's pages live on the site.
pub const PREFIX: &str = "/twofold";

/// The router, with the security headers on every answer.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/twofold/auth", get(auth))
        .route("/twofold/login", get(login_page).post(login_password))
        .route("/twofold/login/second", get(second_page).post(second_code))
        .route("/twofold/login/key/options", post(key_sign_in_options))
        .route("/twofold/login/key", post(key_sign_in))
        .route("/twofold/enroll", get(enroll_page).post(enroll_confirm))
        .route("/twofold/enroll/codes", get(codes_page).post(codes_done))
        .route("/twofold/enroll/codes.txt", get(codes_download))
        .route("/twofold/keys/add", get(add_key_page))
        .route("/twofold/keys/options", post(key_add_options))
        .route("/twofold/keys", post(key_add))
        .route("/twofold/settings", get(settings_page))
        .route("/twofold/settings/keys/rename", post(key_rename))
        .route("/twofold/settings/keys/remove", post(key_remove))
        .route("/twofold/settings/codes", post(codes_regenerate))
        .route("/twofold/logout", post(logout))
        .route("/twofold/static/style.css", get(style))
        .route("/twofold/static/twofold.js", get(script))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(pages_only_by_navigation))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&app),
            security_headers,
        ))
        .with_state(app)
}

type Shared = State<Arc<App>>;
type Peer = ConnectInfo<SocketAddr>;

// ---- nginx's question

async fn auth(State(app): Shared, headers: HeaderMap) -> Response {
    let Some(id) = session_id(&app, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Some((user, full_name, due)) = app.sessions.signed_in(&id) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    // Now and then, one request of a session asks the store whether the user is still
    // enrolled: a disabled user is signed out. A store that cannot answer keeps the session
    // (new sign-ins fail closed; signed-in users are not thrown out by a daemon restart).
    if due {
        let loaded = {
            let app = Arc::clone(&app);
            let user = user.clone();
            blocking(move || app.store.load(&user)).await
        };
        match loaded {
            Ok(Some(_)) => {}
            Ok(None) => {
                app.sessions.end(&id);
                let line = LogLine::new()
                    .token("user", user.as_str())
                    .token("outcome", "signed-out")
                    .text("reason", "no longer enrolled");
                app.log(Level::Notice, line.as_str());
                return StatusCode::UNAUTHORIZED.into_response();
            }
            Err(e) => app.log(
                Level::Warning,
                &format!("cannot recheck the enrollment of {}: {e}", user.as_str()),
            ),
        }
    }
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    // A user name is printable and has no spaces or colons (UserName::parse); a full name has
    // no control characters (passwd::full_name).
    let Ok(value) = HeaderValue::from_str(user.as_str()) else {
        // A name a header cannot carry (not ASCII): never let nginx through without a user.
        return StatusCode::FORBIDDEN.into_response();
    };
    headers.insert(REMOTE_USER, value);
    let name = full_name.as_deref().unwrap_or(user.as_str());
    if let Ok(value) = HeaderValue::from_bytes(name.as_bytes()) {
        headers.insert(REMOTE_NAME, value);
    }
    response
}

// ---- the password

/// `rd` from the login page's query. nginx sends the original URL unencoded
/// (`rd=$scheme://$http_host$request_uri`), so `rd` is the last parameter and everything after
/// `rd=` is the URL, `&` and `%xx` included; an `rd` that arrives encoded (from a proxy that
/// encodes) is decoded once. The result is checked against the allowed domains either way.
fn redirect_parameter(query: &str) -> Option<String> {
    let raw = match query.strip_prefix("rd=") {
        Some(rest) => rest,
        None => &query[query.find("&rd=")? + 4..],
    };
    if raw.starts_with('/') || raw.contains("://") {
        return Some(raw.to_string());
    }
    percent_decode(raw)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = text.get(index + 1..index + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn login_page(State(app): Shared, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let redirect = query
        .as_deref()
        .and_then(redirect_parameter)
        .and_then(|rd| checked_redirect(&app, &rd));
    if let Some((id, session)) = current(&app, &headers) {
        // A new rd (a second wiki page asking) replaces the old one.
        if redirect.is_some() {
            app.sessions.with(&id, |s| s.redirect.clone_from(&redirect));
        }
        return match session.stage {
            Stage::SignedIn { .. } => see_other(&final_target(&app, redirect.or(session.redirect))),
            Stage::Password { .. } => see_other(&format!("{PREFIX}/login/second")),
            Stage::Enrolling { .. } => see_other(&format!("{PREFIX}/enroll")),
        };
    }
    // No session before the password: the form's token is bound to a random cookie by a keyed
    // hash, so that showing the form costs no memory however often it is asked for.
    let nonce = match login_nonce(&app, &headers) {
        Some(nonce) => nonce,
        None => match crate::session::random_token() {
            Some(nonce) => nonce,
            None => return unavailable_page(),
        },
    };
    let page = html(pages::login(
        &app.login_token(&nonce),
        None,
        "",
        redirect.as_deref(),
    ));
    with_login_cookie(&app, &nonce, page)
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: Hidden,
}

async fn login_password(
    State(app): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let client = client_address(&app, peer, &headers);
    let Some(nonce) = login_nonce(&app, &headers) else {
        return expired_page();
    };
    let csrf = app.login_token(&nonce);
    if !bool::from(csrf.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return forbidden();
    }
    let redirect = checked_redirect(&app, &form.rd);
    let again = |error: &str| {
        html(pages::login(
            &csrf,
            Some(error),
            &form.user,
            redirect.as_deref(),
        ))
    };
    if form.user.is_empty()
        || form.password.is_empty()
        || form.user.len() > 256
        || form.password.len() > 1024
    {
        return again("Enter your user name and password.");
    }
    let address = client_key(client);
    let typed = form.user.trim().to_string();
    // Both throttles count the attempt now, before the daemon is asked, so that a burst of
    // parallel attempts is cut off at the limit; a right password is forgiven below.
    let throttled = app.addresses.begin(&address).and_then(|()| {
        app.passwords
            .begin(&typed)
            .inspect_err(|_| app.addresses.forgive(&address))
    });
    if let Err(wait) = throttled {
        log_line(
            &app,
            Level::Notice,
            "password",
            user_name(&typed).as_ref(),
            client,
            "throttled",
            None,
        );
        return again(&throttled_text(wait));
    }
    let forgive = || {
        app.addresses.forgive(&address);
        app.passwords.forgive(&typed);
    };
    // A name that cannot be a user is a wrong password, counted like one, without the daemon.
    let Some(name) = user_name(&typed) else {
        log_line(
            &app,
            Level::Notice,
            "password",
            None,
            client,
            "denied",
            Some("not a user name"),
        );
        return again(WRONG_PASSWORD);
    };
    let Ok(permit) = app.password_checks.try_acquire() else {
        forgive();
        log_line(
            &app,
            Level::Warning,
            "password",
            Some(&name),
            client,
            "busy",
            None,
        );
        return again("Sign-in is busy. Try again in a moment.");
    };
    let checked = {
        let app = Arc::clone(&app);
        let password = form.password.0.clone();
        let typed = typed.clone();
        blocking(move || app.check_password(&typed, &password, client)).await
    };
    drop(permit);
    let user = match checked {
        Ok(PasswordCheck::Accepted) => {
            forgive();
            name
        }
        Ok(PasswordCheck::Refused) => {
            log_line(
                &app,
                Level::Notice,
                "password",
                Some(&name),
                client,
                "denied",
                None,
            );
            return again(WRONG_PASSWORD);
        }
        Err(e) => {
            forgive();
            log_line(
                &app,
                Level::Error,
                "password",
                Some(&name),
                client,
                "unavailable",
                Some(&e.to_string()),
            );
            return again(UNAVAILABLE);
        }
    };
    // What the user has decides the next page.
    let loaded = {
        let app = Arc::clone(&app);
        let user = user.clone();
        blocking(move || app.store.load(&user)).await
    };
    // The new backup codes' hashes are slow: made off the async workers.
    let pending = match (&loaded, app.web.enroll_on_login) {
        (Ok(None), true) => {
            let app = Arc::clone(&app);
            blocking(move || Pending::new(&app.config, None)).await
        }
        _ => Err(EnrollError::NotEnrolled),
    };
    let mut factors = (false, true);
    let stage = match loaded {
        Ok(Some((record, _))) => {
            factors = (
                record.keys.iter().any(|k| k.rp_id == app.rp.id()),
                record.totp.is_some() || !record.backup_codes.is_empty(),
            );
            Stage::Password { user: user.clone() }
        }
        Ok(None) if app.web.enroll_on_login => match pending {
            Ok(pending) => Stage::Enrolling {
                user: user.clone(),
                pending: Arc::new(pending),
            },
            Err(e) => {
                log_line(
                    &app,
                    Level::Error,
                    "password",
                    Some(&user),
                    client,
                    "unavailable",
                    Some(&e.to_string()),
                );
                return again(UNAVAILABLE);
            }
        },
        Ok(None) => {
            log_line(
                &app,
                Level::Notice,
                "password",
                Some(&user),
                client,
                "denied",
                Some("not enrolled, and enroll_on_login is off"),
            );
            return html(pages::message(
                "Two-factor authentication is not set up",
                "Your account has no second factor yet. Set one up with the twofold command on a server, or ask your administrator.",
            ));
        }
        Err(e) => {
            log_line(
                &app,
                Level::Error,
                "password",
                Some(&user),
                client,
                "unavailable",
                Some(&e.to_string()),
            );
            return again(UNAVAILABLE);
        }
    };
    let next = match stage {
        Stage::Enrolling { .. } => format!("{PREFIX}/enroll"),
        _ => format!("{PREFIX}/login/second"),
    };
    log_line(
        &app,
        Level::Info,
        "password",
        Some(&user),
        client,
        "success",
        None,
    );
    let full_name = {
        let user = user.clone();
        blocking(move || twofold_host::passwd::full_name(&user).ok().flatten()).await
    };
    let Some(id) = app.sessions.start(stage, redirect.clone()) else {
        return again(UNAVAILABLE);
    };
    app.sessions.with(&id, |s| {
        s.full_name = full_name;
        s.factors = factors;
    });
    with_cookie(&app, &id, see_other(&next))
}

// ---- the second factor

async fn second_page(State(app): Shared, headers: HeaderMap) -> Response {
    let Some((_, session)) = current(&app, &headers) else {
        return to_login();
    };
    let Stage::Password { user } = &session.stage else {
        return redirect_for_stage(&app, &session);
    };
    let loaded = {
        let app = Arc::clone(&app);
        let user = user.clone();
        blocking(move || app.store.load(&user)).await
    };
    match loaded {
        Ok(Some((record, _))) => {
            let has_keys = record.keys.iter().any(|k| k.rp_id == app.rp.id());
            let has_codes = record.totp.is_some() || !record.backup_codes.is_empty();
            html(pages::second(&session.csrf, None, has_keys, has_codes))
        }
        // Disabled since the password: start again.
        Ok(None) => {
            if let Some(id) = session_id(&app, &headers) {
                app.sessions.end(&id);
            }
            to_login()
        }
        Err(e) => {
            app.log(
                Level::Error,
                &format!("cannot load the record of {}: {e}", user.as_str()),
            );
            unavailable_page()
        }
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: Hidden,
}

async fn second_code(
    State(app): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let client = client_address(&app, peer, &headers);
    let Some((id, session)) = current(&app, &headers) else {
        return expired_page();
    };
    if !session.csrf_matches(&form.csrf) {
        return forbidden();
    }
    let Stage::Password { user } = session.stage.clone() else {
        return redirect_for_stage(&app, &session);
    };
    let (has_keys, has_codes) = session.factors;
    let again = |error: &str| {
        html(pages::second(
            &session.csrf,
            Some(error),
            has_keys,
            has_codes,
        ))
    };
    if let Some(wait) = app.addresses.begin(&client_key(client)).err() {
        log_line(
            &app,
            Level::Notice,
            "code",
            Some(&user),
            client,
            "throttled",
            None,
        );
        return again(&throttled_text(wait));
    }
    if form.code.trim().is_empty() || form.code.len() > 64 {
        return again("Enter a code.");
    }
    let outcome = {
        let app = Arc::clone(&app);
        let user = user.clone();
        let code = form.code.0.clone();
        blocking(move || {
            let policy = app.policy(client);
            login::authenticate(
                &app.store,
                Some(&user),
                &policy,
                &mut OneAnswer::new(&code),
                &mut NoDevice,
                &SystemClock,
            )
        })
        .await
    };
    match outcome {
        Outcome::Accepted {
            factor, codes_left, ..
        } => {
            app.addresses.forgive(&client_key(client));
            let detail = codes_left.map(|n| format!("{n} backup codes left"));
            log_line(
                &app,
                Level::Info,
                factor.name(),
                Some(&user),
                client,
                "success",
                detail.as_deref(),
            );
            signed_in_redirect(&app, &id, user, factor)
        }
        Outcome::Locked { retry_after } => {
            log_line(
                &app,
                Level::Notice,
                "code",
                Some(&user),
                client,
                "locked",
                None,
            );
            again(&format!(
                "Too many failed attempts. Try again in {} minutes.",
                retry_after.div_ceil(60)
            ))
        }
        Outcome::Denied(denial) => {
            log_line(
                &app,
                Level::Notice,
                "code",
                Some(&user),
                client,
                "denied",
                Some(denial.name()),
            );
            let text = match denial {
                Denial::ReplayedCode => "That code was already used. Wait for the next one.",
                _ => "That code did not work. Try again.",
            };
            again(text)
        }
        Outcome::Unavailable(e) => {
            log_line(
                &app,
                Level::Error,
                "code",
                Some(&user),
                client,
                "unavailable",
                Some(&e.to_string()),
            );
            again(UNAVAILABLE)
        }
        other => {
            log_line(
                &app,
                Level::Error,
                "code",
                Some(&user),
                client,
                "unavailable",
                Some(&format!("unexpected outcome {other:?}")),
            );
            again(UNAVAILABLE)
        }
    }
}

async fn key_sign_in_options(State(app): Shared, headers: HeaderMap) -> Response {
    let Some((id, session)) = current_json(&app, &headers) else {
        return json_error(StatusCode::FORBIDDEN, EXPIRED);
    };
    let Stage::Password { user } = session.stage.clone() else {
        return json_error(StatusCode::CONFLICT, EXPIRED);
    };
    let loaded = {
        let app = Arc::clone(&app);
        let user = user.clone();
        blocking(move || app.store.load(&user)).await
    };
    let keys: Vec<SecurityKey> = match loaded {
        Ok(Some((record, _))) => record
            .keys
            .into_iter()
            .filter(|k| k.rp_id == app.rp.id())
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            app.log(
                Level::Error,
                &format!("cannot load the record of {}: {e}", user.as_str()),
            );
            return json_error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE);
        }
    };
    if keys.is_empty() {
        return json_error(
            StatusCode::CONFLICT,
            "No security key is registered for this site.",
        );
    }
    let issued = app.challenges_issue(&id, Purpose::Authenticate, user);
    match issued {
        Ok(challenge) => axum::Json(webauthn::request_options(
            &app.rp,
            &challenge,
            &keys,
            app.config.fido2.user_verification,
            TOUCH_TIMEOUT_MS,
        ))
        .into_response(),
        Err(e) => {
            app.log(Level::Error, &format!("cannot issue a challenge: {e}"));
            json_error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
        }
    }
}

async fn key_sign_in(
    State(app): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = client_address(&app, peer, &headers);
    let Some((id, session)) = current_json(&app, &headers) else {
        return json_error(StatusCode::FORBIDDEN, EXPIRED);
    };
    let Stage::Password { user } = session.stage.clone() else {
        return json_error(StatusCode::CONFLICT, EXPIRED);
    };
    if let Some(wait) = app.addresses.begin(&client_key(client)).err() {
        log_line(
            &app,
            Level::Notice,
            "security-key",
            Some(&user),
            client,
            "throttled",
            None,
        );
        return json_error(StatusCode::TOO_MANY_REQUESTS, &throttled_text(wait));
    }
    let refused = |why: &str| {
        log_line(
            &app,
            Level::Notice,
            "security-key",
            Some(&user),
            client,
            "denied",
            Some(why),
        );
        json_error(StatusCode::FORBIDDEN, KEY_REFUSED)
    };
    let response = match AssertionResponse::from_json(&body) {
        Ok(response) => response,
        Err(e) => return refused(&e.to_string()),
    };
    let pending = match app.challenges_take(&id, response.challenge()) {
        Ok(pending) => pending,
        Err(e) => return refused(&e.to_string()),
    };
    if pending.user != user || pending.purpose != Purpose::Authenticate {
        return refused("the challenge was issued for another sign-in");
    }
    let presented = match response.verify(&app.rp, &pending.challenge) {
        Ok(presented) => presented,
        Err(e) => return refused(&e.to_string()),
    };
    let outcome = {
        let app = Arc::clone(&app);
        let user = user.clone();
        blocking(move || {
            let policy = app.policy(client);
            login::check_key_assertion(
                &app.store,
                &user,
                &policy,
                &presented.assertion,
                &presented.client_data_hash,
                &SystemClock,
            )
        })
        .await
    };
    match outcome {
        Outcome::Accepted { factor, key, .. } => {
            app.addresses.forgive(&client_key(client));
            let key = key.map(|k| format!("key {}", k.as_str()));
            log_line(
                &app,
                Level::Info,
                factor.name(),
                Some(&user),
                client,
                "success",
                key.as_deref(),
            );
            match app.sessions.advance(&id, |s| {
                s.stage = Stage::SignedIn { user, factor };
            }) {
                Some(new_id) => {
                    let target = final_target(&app, session.redirect.clone());
                    with_cookie(
                        &app,
                        &new_id,
                        axum::Json(json!({ "redirect": target })).into_response(),
                    )
                }
                None => json_error(StatusCode::FORBIDDEN, EXPIRED),
            }
        }
        Outcome::Locked { .. } => {
            log_line(
                &app,
                Level::Notice,
                "security-key",
                Some(&user),
                client,
                "locked",
                None,
            );
            json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed attempts. Try again later.",
            )
        }
        Outcome::KeyRefused { key, why } => {
            let detail = match key {
                Some(key) => format!("key {}: {why}", key.as_str()),
                None => why.to_string(),
            };
            log_line(
                &app,
                Level::Notice,
                "security-key",
                Some(&user),
                client,
                "denied",
                Some(&detail),
            );
            json_error(StatusCode::FORBIDDEN, KEY_REFUSED)
        }
        Outcome::Unavailable(e) => {
            log_line(
                &app,
                Level::Error,
                "security-key",
                Some(&user),
                client,
                "unavailable",
                Some(&e.to_string()),
            );
            json_error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
        }
        other => {
            log_line(
                &app,
                Level::Notice,
                "security-key",
                Some(&user),
                client,
                "denied",
                Some(&format!("{other:?}")),
            );
            json_error(StatusCode::FORBIDDEN, KEY_REFUSED)
        }
    }
}

// ---- the first login

async fn enroll_page(State(app): Shared, headers: HeaderMap) -> Response {
    let Some((_, session)) = current(&app, &headers) else {
        return to_login();
    };
    let Stage::Enrolling { user, pending } = &session.stage else {
        return redirect_for_stage(&app, &session);
    };
    enroll_form(&app, &session.csrf, user, pending, None)
}

fn enroll_form(
    app: &App,
    csrf: &str,
    user: &UserName,
    pending: &Pending,
    error: Option<&str>,
) -> Response {
    let uri = pending.uri(&app.config, user);
    let svg = match qr::modules(&uri) {
        Ok(modules) => pages::qr_svg(&modules),
        Err(e) => {
            app.log(Level::Error, &format!("cannot draw the QR code: {e}"));
            String::new()
        }
    };
    html(pages::enroll(
        csrf,
        error,
        &svg,
        &pending.key_text(),
        pending.key.period,
    ))
}

async fn enroll_confirm(
    State(app): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let client = client_address(&app, peer, &headers);
    let Some((id, session)) = current(&app, &headers) else {
        return expired_page();
    };
    if !session.csrf_matches(&form.csrf) {
        return forbidden();
    }
    let Stage::Enrolling { user, pending } = session.stage.clone() else {
        return redirect_for_stage(&app, &session);
    };
    if let Some(wait) = app.addresses.begin(&client_key(client)).err() {
        return enroll_form(
            &app,
            &session.csrf,
            &user,
            &pending,
            Some(&throttled_text(wait)),
        );
    }
    let confirmed = {
        let app = Arc::clone(&app);
        let user = user.clone();
        let pending = Arc::clone(&pending);
        let code = form.code.0.clone();
        blocking(move || pending.confirm(&app.store, &user, &app.config, &code, app.now(), false))
            .await
    };
    match confirmed {
        Ok(()) => {
            app.addresses.forgive(&client_key(client));
            log_line(
                &app,
                Level::Info,
                "enroll",
                Some(&user),
                client,
                "success",
                None,
            );
            let codes: Vec<Zeroizing<String>> = pending.codes.plain.clone();
            match app.sessions.advance(&id, |s| {
                s.stage = Stage::SignedIn {
                    user,
                    factor: Factor::Totp,
                };
                s.show_codes(codes);
            }) {
                Some(new_id) => {
                    with_cookie(&app, &new_id, see_other(&format!("{PREFIX}/enroll/codes")))
                }
                None => expired_page(),
            }
        }
        Err(EnrollError::WrongCode | EnrollError::ReplayedCode) => {
            log_line(
                &app,
                Level::Notice,
                "enroll",
                Some(&user),
                client,
                "denied",
                Some("wrong confirming code"),
            );
            enroll_form(
                &app,
                &session.csrf,
                &user,
                &pending,
                Some("That code did not work. Check the app's clock and try the current code."),
            )
        }
        Err(EnrollError::AlreadyEnrolled) => {
            // Enrolled elsewhere meanwhile: that enrollment stands; sign in with it.
            log_line(
                &app,
                Level::Notice,
                "enroll",
                Some(&user),
                client,
                "denied",
                Some("enrolled meanwhile"),
            );
            app.sessions
                .advance(&id, |s| s.stage = Stage::Password { user })
                .map_or_else(expired_page, |new_id| {
                    with_cookie(&app, &new_id, see_other(&format!("{PREFIX}/login/second")))
                })
        }
        Err(e) => {
            log_line(
                &app,
                Level::Error,
                "enroll",
                Some(&user),
                client,
                "unavailable",
                Some(&e.to_string()),
            );
            enroll_form(&app, &session.csrf, &user, &pending, Some(UNAVAILABLE))
        }
    }
}

async fn codes_page(State(app): Shared, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&app, &headers) else {
        return to_login();
    };
    let Some(codes) = session.shown_codes() else {
        return see_other(&format!("{PREFIX}/settings"));
    };
    let shown: Vec<String> = codes
        .iter()
        .map(|c| twofold_core::backup::display(c))
        .collect();
    html(pages::codes(&session.csrf, &shown))
}

fn session_is_new_enrollment(session: &Session) -> bool {
    !session.regenerated
}

async fn codes_download(State(app): Shared, headers: HeaderMap) -> Response {
    let Some((_, session)) = signed_in(&app, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let (Some(codes), Some(user)) = (session.shown_codes(), session.stage.user()) else {
        return (StatusCode::GONE, "These codes are no longer shown.\n").into_response();
    };
    let shown: Vec<String> = codes
        .iter()
        .map(|c| twofold_core::backup::display(c))
        .collect();
    let text = pages::codes_text(user.as_str(), &app.config.issuer(), &shown);
    let mut response = (StatusCode::OK, text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"backup-codes.txt\""),
    );
    response
}

#[derive(Deserialize)]
struct NextForm {
    #[serde(default)]
    csrf: String,
}

async fn codes_done(
    State(app): Shared,
    headers: HeaderMap,
    Form(form): Form<NextForm>,
) -> Response {
    let Some((id, session)) = signed_in(&app, &headers) else {
        return expired_page();
    };
    if !session.csrf_matches(&form.csrf) {
        return forbidden();
    }
    let new_enrollment = session_is_new_enrollment(&session);
    app.sessions.with(&id, |s| {
        s.new_codes = None;
        s.codes_until = None;
        s.regenerated = false;
    });
    // After the first login's codes comes the key offer; after new codes, the settings.
    let next = match new_enrollment {
        true if app.config.fido2.max_keys > 0 => format!("{PREFIX}/keys/add?first=1"),
        true => final_target(&app, session.redirect.clone()),
        false => format!("{PREFIX}/settings"),
    };
    see_other(&next)
}

// ---- security keys

#[derive(Deserialize)]
struct AddKeyQuery {
    first: Option<String>,
}

async fn add_key_page(
    State(app): Shared,
    headers: HeaderMap,
    Query(query): Query<AddKeyQuery>,
) -> Response {
    let Some((_, session)) = signed_in(&app, &headers) else {
        return to_login();
    };
    let (skip, label) = match query.first.is_some() {
        true => (final_target(&app, session.redirect.clone()), "Skip"),
        false => (format!("{PREFIX}/settings"), "Back to settings"),
    };
    html(pages::add_key(&session.csrf, None, &skip, label))
}

#[derive(Deserialize)]
struct KeyNameBody {
    #[serde(default)]
    name: String,
}

async fn key_add_options(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let Some((id, session)) = signed_in_json(&app, &headers) else {
        return json_error(StatusCode::FORBIDDEN, EXPIRED);
    };
    let Some(user) = session.stage.user().cloned() else {
        return json_error(StatusCode::FORBIDDEN, EXPIRED);
    };
    let Ok(KeyNameBody { name }) = serde_json::from_slice::<KeyNameBody>(&body) else {
        return json_error(StatusCode::BAD_REQUEST, "The request was malformed.");
    };
    let Ok(name) = KeyName::parse(name.trim()) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "Give the key a name of 1 to 32 letters, digits, dots, dashes or underscores.",
        );
    };
    let loaded = {
        let app = Arc::clone(&app);
        let user = user.clone();
        blocking(move || app.store.load(&user)).await
    };
    let record = match loaded {
        Ok(Some((record, _))) => record,
        Ok(None) => return json_error(StatusCode::CONFLICT, "Set up an authenticator app first."),
        Err(e) => {
            app.log(
                Level::Error,
                &format!("cannot load the record of {}: {e}", user.as_str()),
            );
            return json_error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE);
        }
    };
    if let Err(e) = keys::can_add(
        Some(&record),
        &name,
        usize::from(app.config.fido2.max_keys),
        true,
    ) {
        return json_error(StatusCode::CONFLICT, &key_change_text(&e));
    }
    let user_verification =
        app.config.fido2.user_verification == twofold_core::config::UserVerification::Required;
    let issued = app.challenges_issue(
        &id,
        Purpose::Register {
            name,
            user_verification,
        },
        user.clone(),
    );
    match issued {
        Ok(challenge) => axum::Json(webauthn::creation_options(
            &app.rp,
            &user,
            &user_handle(&app, &user),
            &challenge,
            &record.keys,
            app.config.fido2.user_verification,
            TOUCH_TIMEOUT_MS,
        ))
        .into_response(),
        Err(e) => {
            app.log(Level::Error, &format!("cannot issue a challenge: {e}"));
            json_error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
        }
    }
}

async fn key_add(
    State(app): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = client_address(&app, peer, &headers);
    let Some((id, session)) = signed_in_json(&app, &headers) else {
        return json_error(StatusCode::FORBIDDEN, EXPIRED);
    };
    let Some(user) = session.stage.user().cloned() else {
        return json_error(StatusCode::FORBIDDEN, EXPIRED);
    };
    let refused = |why: &str| {
        log_line(
            &app,
            Level::Notice,
            "key-add",
            Some(&user),
            client,
            "denied",
            Some(why),
        );
        json_error(
            StatusCode::BAD_REQUEST,
            "The key's answer could not be used. Try again.",
        )
    };
    let response = match RegistrationResponse::from_json(&body) {
        Ok(response) => response,
        Err(e) => return refused(&e.to_string()),
    };
    let pending = match app.challenges_take(&id, response.challenge()) {
        Ok(pending) => pending,
        Err(e) => return refused(&e.to_string()),
    };
    let Purpose::Register {
        name,
        user_verification,
    } = pending.purpose.clone()
    else {
        return refused("the challenge was issued for a sign-in");
    };
    if pending.user != user {
        return refused("the challenge was issued to another user");
    }
    let registered = match response.verify(
        &app.rp,
        &pending.challenge,
        name.clone(),
        user_verification,
        app.now(),
    ) {
        Ok(registered) => registered,
        Err(e) => return refused(&e.to_string()),
    };
    let added = {
        let app = Arc::clone(&app);
        let user = user.clone();
        let key = registered.key.clone();
        blocking(move || {
            keys::add(
                &app.store,
                &user,
                &[key],
                usize::from(app.config.fido2.max_keys),
                true,
            )
        })
        .await
    };
    match added {
        Ok(()) => {
            log_line(
                &app,
                Level::Info,
                "key-add",
                Some(&user),
                client,
                "success",
                Some(&format!("key {}", name.as_str())),
            );
            // At the first login, on to where the user was going; later, back to the settings.
            let target = match session.redirect.is_some() {
                true => final_target(&app, session.redirect.clone()),
                false => format!("{PREFIX}/settings"),
            };
            axum::Json(json!({ "redirect": target })).into_response()
        }
        Err(KeyChangeError::Store(e)) => {
            log_line(
                &app,
                Level::Error,
                "key-add",
                Some(&user),
                client,
                "unavailable",
                Some(&e.to_string()),
            );
            json_error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
        }
        Err(e) => {
            log_line(
                &app,
                Level::Notice,
                "key-add",
                Some(&user),
                client,
                "denied",
                Some(&e.to_string()),
            );
            json_error(StatusCode::CONFLICT, &key_change_text(&e))
        }
    }
}

// ---- settings

#[derive(Deserialize)]
struct NoticeQuery {
    done: Option<String>,
}

async fn settings_page(
    State(app): Shared,
    headers: HeaderMap,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let Some((_, session)) = signed_in(&app, &headers) else {
        return to_login();
    };
    let Some(user) = session.stage.user().cloned() else {
        return to_login();
    };
    let loaded = {
        let app = Arc::clone(&app);
        let user = user.clone();
        blocking(move || app.store.load(&user)).await
    };
    let (record, state) = match loaded {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return to_login(),
        Err(e) => {
            app.log(
                Level::Error,
                &format!("cannot load the record of {}: {e}", user.as_str()),
            );
            return unavailable_page();
        }
    };
    let rows: Vec<KeyRow> = record
        .keys
        .iter()
        .map(|k| KeyRow {
            name: k.name.as_str().to_string(),
            added: date(k.added),
            last_used: state
                .key_use(k.tag())
                .map_or_else(|| "never".into(), |u| date(u.last_used)),
        })
        .collect();
    let codes_left = state.codes_left(record.backup_codes.binding(), record.backup_codes.len());
    let notice = match query.done.as_deref() {
        Some("renamed") => Some("The key was renamed."),
        Some("removed") => Some("The key was removed."),
        _ => None,
    };
    html(pages::settings(
        &session.csrf,
        user.as_str(),
        notice,
        &rows,
        codes_left,
    ))
}

#[derive(Deserialize)]
struct RenameForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    new_name: String,
}

async fn key_rename(
    State(app): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<RenameForm>,
) -> Response {
    let client = client_address(&app, peer, &headers);
    let Some((_, session)) = signed_in(&app, &headers) else {
        return expired_page();
    };
    if !session.csrf_matches(&form.csrf) {
        return forbidden();
    }
    let Some(user) = session.stage.user().cloned() else {
        return to_login();
    };
    let (Ok(old), Ok(new)) = (
        KeyName::parse(&form.name),
        KeyName::parse(form.new_name.trim()),
    ) else {
        return html(pages::message(
            "The key was not renamed",
            "Key names are 1 to 32 letters, digits, dots, dashes or underscores.",
        ));
    };
    let renamed = {
        let app = Arc::clone(&app);
        let user = user.clone();
        blocking(move || keys::rename(&app.store, &user, &old, &new)).await
    };
    match renamed {
        Ok(()) => {
            log_line(
                &app,
                Level::Info,
                "key-rename",
                Some(&user),
                client,
                "success",
                None,
            );
            see_other(&format!("{PREFIX}/settings?done=renamed"))
        }
        Err(e) => {
            log_line(
                &app,
                Level::Notice,
                "key-rename",
                Some(&user),
                client,
                "denied",
                Some(&e.to_string()),
            );
            html(pages::message(
                "The key was not renamed",
                &key_change_text(&e),
            ))
        }
    }
}

#[derive(Deserialize)]
struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

async fn key_remove(
    State(app): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<RemoveForm>,
) -> Response {
    let client = client_address(&app, peer, &headers);
    let Some((_, session)) = signed_in(&app, &headers) else {
        return expired_page();
    };
    if !session.csrf_matches(&form.csrf) {
        return forbidden();
    }
    let Some(user) = session.stage.user().cloned() else {
        return to_login();
    };
    let Ok(name) = KeyName::parse(&form.name) else {
        return html(pages::message(
            "The key was not removed",
            "There is no key of that name.",
        ));
    };
    let removed = {
        let app = Arc::clone(&app);
        let user = user.clone();
        blocking(move || keys::remove(&app.store, &user, &name)).await
    };
    match removed {
        Ok(()) => {
            log_line(
                &app,
                Level::Info,
                "key-remove",
                Some(&user),
                client,
                "success",
                None,
            );
            see_other(&format!("{PREFIX}/settings?done=removed"))
        }
        Err(e) => {
            log_line(
                &app,
                Level::Notice,
                "key-remove",
                Some(&user),
                client,
                "denied",
                Some(&e.to_string()),
            );
            html(pages::message(
                "The key was not removed",
                &key_change_text(&e),
            ))
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn codes_regenerate(
    State(app): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let client = client_address(&app, peer, &headers);
    let Some((id, session)) = signed_in(&app, &headers) else {
        return expired_page();
    };
    if !session.csrf_matches(&form.csrf) {
        return forbidden();
    }
    let Some(user) = session.stage.user().cloned() else {
        return to_login();
    };
    let made = {
        let app = Arc::clone(&app);
        let user = user.clone();
        blocking(move || {
            enroll::regenerate_codes(
                &app.store,
                &user,
                usize::from(app.config.backup_codes.count),
            )
        })
        .await
    };
    match made {
        Ok(codes) => {
            log_line(
                &app,
                Level::Info,
                "codes-regenerate",
                Some(&user),
                client,
                "success",
                None,
            );
            app.sessions.with(&id, |s| {
                s.show_codes(codes);
                s.regenerated = true;
            });
            see_other(&format!("{PREFIX}/enroll/codes"))
        }
        Err(e) => {
            log_line(
                &app,
                Level::Error,
                "codes-regenerate",
                Some(&user),
                client,
                "unavailable",
                Some(&e.to_string()),
            );
            html(pages::message("No new codes were made", UNAVAILABLE))
        }
    }
}

async fn logout(State(app): Shared, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Some((id, session)) = current(&app, &headers) {
        if !session.csrf_matches(&form.csrf) {
            return forbidden();
        }
        if let Some(user) = session.stage.user() {
            app.log(
                Level::Info,
                LogLine::new()
                    .token("user", user.as_str())
                    .token("outcome", "signed-out")
                    .as_str(),
            );
        }
        app.sessions.end(&id);
    }
    let mut response = see_other(&format!("{PREFIX}/login"));
    if let Ok(value) = HeaderValue::from_str(&clear_cookie(&app)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

// ---- static files and errors

async fn style() -> Response {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    )
}

async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../static/twofold.js"),
    )
}

fn static_file(kind: &'static str, text: &'static str) -> Response {
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not found\n").into_response()
}

/// Refuses the pages that hold a CSRF token or backup codes to anything but the browser's own
/// navigation. twofold-web shares its origin with the wiki, so a script on a wiki page (an
/// admin's site script, a stored XSS) could otherwise `fetch()` the settings page, read its
/// token, and make itself new backup codes or add its own key. Browsers mark their requests
/// (`Sec-Fetch-Mode`); a script cannot make a fetch look like a navigation. Framing is refused by
/// the CSP, and a window the script opens is cut off from it (`Cross-Origin-Opener-Policy`).
async fn pages_only_by_navigation(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let exempt = path == "/twofold/auth" || path.starts_with("/twofold/static/");
    let mode = request
        .headers()
        .get("sec-fetch-mode")
        .and_then(|v| v.to_str().ok());
    let scripted = matches!(mode, Some(mode) if mode != "navigate");
    if request.method() == axum::http::Method::GET && !exempt && scripted {
        return (StatusCode::FORBIDDEN, "Open this page in the browser.\n").into_response();
    }
    next.run(request).await
}

/// The headers every answer carries: a CSP that allows only our own script and style (and form
/// posts that end in a redirect to an allowed domain), no framing, no sniffing, no referrer, and
/// no caching of pages that hold tokens or codes.
async fn security_headers(State(app): Shared, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, app.csp.clone());
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

// ---- helpers

/// A form field that holds a secret (a password, a code): wiped when dropped.
#[derive(Default)]
struct Hidden(Zeroizing<String>);

impl<'de> Deserialize<'de> for Hidden {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hidden, D::Error> {
        String::deserialize(d).map(|text| Hidden(Zeroizing::new(text)))
    }
}

impl std::ops::Deref for Hidden {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl App {
    /// A fresh challenge for the session `id`, replacing any it had: one pending ceremony per
    /// session, so that nobody can crowd out other users' challenges.
    fn challenges_issue(
        &self,
        id: &str,
        purpose: Purpose,
        user: UserName,
    ) -> Result<webauthn::Challenge, webauthn::WebAuthnError> {
        let challenge = webauthn::Challenge::random()?;
        let pending = webauthn::Pending {
            challenge: challenge.clone(),
            purpose,
            user,
            expires: self.now().saturating_add(CHALLENGE_LIFETIME_SECS),
        };
        self.sessions
            .with(id, |s| s.challenge = Some(pending))
            .ok_or(webauthn::WebAuthnError::ChallengeUnknown)?;
        Ok(challenge)
    }

    /// Takes the session's pending challenge (so that it answers once), if it is the one the
    /// browser signed and it has not expired.
    fn challenges_take(
        &self,
        id: &str,
        challenge: &webauthn::Challenge,
    ) -> Result<webauthn::Pending, webauthn::WebAuthnError> {
        let pending = self
            .sessions
            .with(id, |s| s.challenge.take())
            .flatten()
            .ok_or(webauthn::WebAuthnError::ChallengeUnknown)?;
        if pending.challenge != *challenge {
            return Err(webauthn::WebAuthnError::ChallengeUnknown);
        }
        if self.now() >= pending.expires {
            return Err(webauthn::WebAuthnError::ChallengeExpired);
        }
        Ok(pending)
    }
}

/// Runs a blocking call (the daemon, PAM) on tokio's blocking pool.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(call).await {
        Ok(value) => value,
        // The call panicked: re-raise here, where axum turns it into a 500 for this request.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn session_id(app: &App, headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, &app.web.cookie_name).filter(|id| id.len() == 43)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_string())
}

fn current(app: &App, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = session_id(app, headers)?;
    let session = app.sessions.get(&id)?;
    Some((id, session))
}

/// The session of a JSON call, which must carry the CSRF token in `X-CSRF-Token`.
fn current_json(app: &App, headers: &HeaderMap) -> Option<(String, Session)> {
    let (id, session) = current(app, headers)?;
    let token = headers.get("x-csrf-token")?.to_str().ok()?;
    session.csrf_matches(token).then_some((id, session))
}

fn signed_in(app: &App, headers: &HeaderMap) -> Option<(String, Session)> {
    current(app, headers).filter(|(_, s)| matches!(s.stage, Stage::SignedIn { .. }))
}

fn signed_in_json(app: &App, headers: &HeaderMap) -> Option<(String, Session)> {
    current_json(app, headers).filter(|(_, s)| matches!(s.stage, Stage::SignedIn { .. }))
}

/// Signs the session in after a verified factor, under a new id, and sends the user on.
fn signed_in_redirect(app: &App, id: &str, user: UserName, factor: Factor) -> Response {
    let mut target = None;
    let new_id = app.sessions.advance(id, |s| {
        target = s.redirect.clone();
        s.stage = Stage::SignedIn { user, factor };
    });
    match new_id {
        Some(new_id) => with_cookie(app, &new_id, see_other(&final_target(app, target))),
        None => expired_page(),
    }
}

fn redirect_for_stage(app: &App, session: &Session) -> Response {
    match session.stage {
        Stage::Password { .. } => see_other(&format!("{PREFIX}/login/second")),
        Stage::Enrolling { .. } => see_other(&format!("{PREFIX}/enroll")),
        Stage::SignedIn { .. } => see_other(&final_target(app, session.redirect.clone())),
    }
}

/// Where a signed-in user goes: the checked `rd`, else the settings.
fn final_target(_app: &App, redirect: Option<String>) -> String {
    redirect.unwrap_or_else(|| format!("{PREFIX}/settings"))
}

fn checked_redirect(app: &App, rd: &str) -> Option<String> {
    redirect::checked(
        rd,
        &app.web.allowed_redirect_domains,
        app.web.origin.starts_with("http://"),
    )
}

/// The client's address: the last `X-Forwarded-For` entry when the peer is a trusted proxy
/// (nginx appends the address it saw), else the peer itself.
fn client_address(app: &App, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if !app.web.trusted_proxies.contains(&peer.ip()) {
        return peer.ip();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer.ip())
}

/// A stable, opaque WebAuthn user handle: the browser never needs the name in it.
fn user_handle(app: &App, user: &UserName) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(b"twofold-web user handle\0");
    hash.update(app.rp.id().as_bytes());
    hash.update([0]);
    hash.update(user.as_str().as_bytes());
    hash.finalize().to_vec()
}

fn throttled_text(wait: u64) -> String {
    format!(
        "Too many failed attempts. Try again in {} minutes.",
        wait.div_ceil(60)
    )
}

fn key_change_text(e: &KeyChangeError) -> String {
    match e {
        KeyChangeError::NameTaken(name) => {
            format!("You already have a key named {}.", name.as_str())
        }
        KeyChangeError::TooMany(max) => format!("You already have {max} keys, the most allowed."),
        KeyChangeError::AlreadyRegistered(name) => {
            format!("This key is already registered, as {}.", name.as_str())
        }
        KeyChangeError::NoTotp => "Set up an authenticator app first.".into(),
        KeyChangeError::NoSuchKey(_) => "There is no key of that name.".into(),
        KeyChangeError::LastFactor(_) => {
            "This is your only way to sign in; add another first.".into()
        }
        KeyChangeError::NotEnrolled => "Two-factor authentication is not set up.".into(),
        _ => UNAVAILABLE.into(),
    }
}

fn log_line(
    app: &App,
    level: Level,
    step: &str,
    user: Option<&UserName>,
    client: IpAddr,
    outcome: &str,
    detail: Option<&str>,
) {
    let line = LogLine::new().token("step", step);
    let line = match user {
        Some(user) => line.token("user", user.as_str()),
        None => line,
    };
    let line = line
        .text("rhost", &client.to_string())
        .token("outcome", outcome);
    let line = match detail {
        Some(detail) => line.text("reason", detail),
        None => line,
    };
    app.log(level, line.as_str());
}

fn date(unix: u64) -> String {
    match unix {
        0 => "never".into(),
        time => twofold_core::text::utc_date(time),
    }
}

fn html(text: String) -> Response {
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn to_login() -> Response {
    see_other(&format!("{PREFIX}/login"))
}

fn forbidden() -> Response {
    let mut response = html(pages::message(
        "This form has expired",
        "Reload the page and try again.",
    ));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

fn expired_page() -> Response {
    let mut response = html(pages::message("Your sign-in has expired", "Sign in again."));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

fn unavailable_page() -> Response {
    let mut response = html(pages::message("Sign-in is unavailable", UNAVAILABLE));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

fn json_error(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "error": text }))).into_response()
}

/// The login form's random cookie, if the browser sent a well-formed one.
fn login_nonce(app: &App, headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, &app.login_cookie_name()).filter(|n| n.len() == 43)
}

/// Sets the login form's cookie: for this site's paths, short-lived, never sent cross-site.
fn with_login_cookie(app: &App, nonce: &str, mut response: Response) -> Response {
    let mut cookie = format!(
        "{}={nonce}; Path=/; HttpOnly; SameSite=Strict; Max-Age=1800",
        app.login_cookie_name()
    );
    if app.web.cookie_secure {
        cookie.push_str("; Secure");
    }
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn with_cookie(app: &App, id: &str, mut response: Response) -> Response {
    let mut cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Lax",
        app.web.cookie_name
    );
    if app.web.cookie_secure {
        cookie.push_str("; Secure");
    }
    if let Some(domain) = &app.web.cookie_domain {
        cookie.push_str("; Domain=");
        cookie.push_str(domain);
    }
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn clear_cookie(app: &App) -> String {
    let mut cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        app.web.cookie_name
    );
    if app.web.cookie_secure {
        cookie.push_str("; Secure");
    }
    if let Some(domain) = &app.web.cookie_domain {
        cookie.push_str("; Domain=");
        cookie.push_str(domain);
    }
    cookie
}

const REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
const REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");
const WRONG_PASSWORD: &str = "Wrong user name or password.";
const UNAVAILABLE: &str = "Sign-in is unavailable right now. Try again in a minute; if it persists, tell your administrator.";
const EXPIRED: &str = "Your sign-in has expired. Reload the page and sign in again.";
const KEY_REFUSED: &str = "That security key was not accepted. Try again, or use a code.";
/// The largest request body: forms and WebAuthn answers are a few KB.
const MAX_BODY: usize = 64 * 1024;
