//! The pages users see, as HTML text. Every value from outside is escaped here, at the one place
//! it meets markup. The pages use one stylesheet and one script, both served by twofold-web
//! itself (the CSP allows nothing else), and work without the script except for security keys.

use std::fmt::Write as _;

use crate::routes::PREFIX;

/// One key's row on the settings page.
pub struct KeyRow {
    pub name: String,
    pub added: String,
    pub last_used: String,
}

/// The password form.
pub fn login(csrf: &str, error: Option<&str>, user: &str, rd: Option<&str>) -> String {
    let body = format!(
        r#"<h1>Sign in</h1>
{error}<form id="login-form" method="post" action="{PREFIX}/login">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="rd" value="{rd}">
<label for="user">User name</label>
<input id="user" name="user" autocomplete="username" autocapitalize="none" spellcheck="false" required value="{user}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="sign-in" type="submit">Sign in</button>
</form>"#,
        error = error_block(error),
        csrf = escape(csrf),
        user = escape(user),
        rd = escape(rd.unwrap_or_default()),
    );
    layout("Sign in", csrf, &body)
}

/// The second step: a code, or a key.
pub fn second(csrf: &str, error: Option<&str>, has_keys: bool, has_codes: bool) -> String {
    let key = match has_keys {
        true => format!(
            r#"<button id="use-key" type="button" class="primary" data-options="{PREFIX}/login/key/options" data-finish="{PREFIX}/login/key">Use security key</button>
<p class="or">or</p>"#
        ),
        false => String::new(),
    };
    let code_form = match has_codes {
        true => format!(
            r#"<form id="code-form" method="post" action="{PREFIX}/login/second">
<input type="hidden" name="csrf" value="{csrf}">
<label for="code">Code from your authenticator app, or a backup code</label>
<input id="code" name="code" autocomplete="one-time-code" autocapitalize="none" autocorrect="off" spellcheck="false" required autofocus>
<button id="verify" type="submit"{class}>Verify</button>
</form>"#,
            csrf = escape(csrf),
            class = if has_keys { "" } else { r#" class="primary""# },
        ),
        false => String::new(),
    };
    let body = format!(
        r#"<h1>Two-factor authentication</h1>
{error}{key}{code_form}
<form method="post" action="{PREFIX}/logout" class="quiet"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" class="link">Cancel</button></form>"#,
        error = error_block(error),
        csrf = escape(csrf),
    );
    layout("Two-factor authentication", csrf, &body)
}

/// The first login's QR code.
pub fn enroll(
    csrf: &str,
    error: Option<&str>,
    qr_svg: &str,
    key_text: &str,
    period: u32,
) -> String {
    let body = format!(
        r#"<h1>Set up two-factor authentication</h1>
<p>Scan this code with an authenticator app (Google Authenticator, Aegis, FreeOTP, 1Password…).</p>
<div id="qr">{qr_svg}</div>
<details><summary>Can't scan it? Enter the key instead</summary>
<p><code id="secret">{key}</code></p>
<p class="hint">Time-based, {period}-second codes.</p></details>
<p class="hint">The app's code changes in <span id="countdown" data-period="{period}">{period}</span> seconds.</p>
{error}<form method="post" action="{PREFIX}/enroll">
<input type="hidden" name="csrf" value="{csrf}">
<label for="code">Enter the code the app shows</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus>
<button id="enable" type="submit" class="primary">Enable two-factor authentication</button>
</form>"#,
        error = error_block(error),
        key = escape(key_text),
        csrf = escape(csrf),
    );
    layout("Set up two-factor authentication", csrf, &body)
}

/// Backup codes, shown once.
pub fn codes(csrf: &str, codes: &[String]) -> String {
    let mut items = String::new();
    for code in codes {
        let _ = write!(items, "<li><code>{}</code></li>", escape(code));
    }
    let body = format!(
        r#"<h1>Your backup codes</h1>
<p>Each code works once, when your phone is not at hand. Keep them somewhere safe: they are not shown again.</p>
<ul id="backup-codes">{items}</ul>
<p><a id="download" class="button" href="{PREFIX}/enroll/codes.txt" download="backup-codes.txt">Download codes</a></p>
<form method="post" action="{PREFIX}/enroll/codes">
<input type="hidden" name="csrf" value="{csrf}">
<button id="continue" type="submit" class="primary">Continue</button>
</form>"#,
        csrf = escape(csrf),
    );
    layout("Your backup codes", csrf, &body)
}

/// Adding a security key (after enrolling, or from the settings).
pub fn add_key(csrf: &str, error: Option<&str>, skip: &str, skip_label: &str) -> String {
    let body = format!(
        r#"<h1>Add a security key</h1>
<p>A security key (YubiKey, SoloKey, a passkey on this device…) signs you in with a touch. Your authenticator app and backup codes keep working.</p>
{error}<div id="error" class="error" hidden></div>
<label for="key-name">Name for this key</label>
<input id="key-name" name="name" maxlength="32" pattern="[A-Za-z0-9._\-]+" placeholder="yubikey" required>
<p class="hint">Letters, digits, dots, dashes and underscores.</p>
<button id="add-key" type="button" class="primary" data-options="{PREFIX}/keys/options" data-finish="{PREFIX}/keys">Add security key</button>
<p><a id="skip" href="{skip}">{skip_label}</a></p>"#,
        error = error_block(error),
        skip = escape(skip),
        skip_label = escape(skip_label),
    );
    layout("Add a security key", csrf, &body)
}

/// The settings page.
pub fn settings(
    csrf: &str,
    user: &str,
    notice: Option<&str>,
    keys: &[KeyRow],
    codes_left: usize,
) -> String {
    let csrf = escape(csrf);
    let mut rows = String::new();
    for key in keys {
        let name = escape(&key.name);
        let _ = write!(
            rows,
            r#"<tr><td data-label="Name">{name}</td><td data-label="Added">{added}</td><td data-label="Last used">{used}</td><td class="actions">
<form method="post" action="{PREFIX}/settings/keys/rename" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="name" value="{name}"><input name="new_name" aria-label="New name for {name}" maxlength="32" placeholder="new name" required><button type="submit">Rename</button></form>
<form method="post" action="{PREFIX}/settings/keys/remove" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="name" value="{name}"><button type="submit" class="danger">Remove</button></form></td></tr>"#,
            added = escape(&key.added),
            used = escape(&key.last_used),
        );
    }
    let keys_table = match keys.is_empty() {
        true => {
            r#"<table id="keys"><tbody></tbody></table><p class="hint">No security keys yet.</p>"#
                .to_string()
        }
        false => format!(
            r#"<table id="keys"><thead><tr><th>Name</th><th>Added</th><th>Last used</th><th></th></tr></thead><tbody>{rows}</tbody></table>"#
        ),
    };
    let notice = match notice {
        Some(text) => format!(r#"<p id="notice" class="notice">{}</p>"#, escape(text)),
        None => String::new(),
    };
    let body = format!(
        r#"<h1>Two-factor settings</h1>
<p>Signed in as <strong id="user-name">{user}</strong>.</p>
{notice}<h2>Security keys</h2>
{keys_table}
<p><a id="add-another" class="button" href="{PREFIX}/keys/add">Add security key</a></p>
<h2>Backup codes</h2>
<p><span id="codes-left">{codes_left}</span> unused backup codes left.</p>
<form method="post" action="{PREFIX}/settings/codes"><input type="hidden" name="csrf" value="{csrf}"><button id="regenerate" type="submit">Make new backup codes</button></form>
<p class="hint">New codes replace all the old ones.</p>
<form method="post" action="{PREFIX}/logout"><input type="hidden" name="csrf" value="{csrf}"><button id="sign-out" type="submit">Sign out</button></form>"#,
        user = escape(user),
    );
    layout("Two-factor settings", &csrf, &body)
}

/// A page that only says something (an account that cannot sign in here, a failure).
pub fn message(title: &str, text: &str) -> String {
    let body = format!(
        r#"<h1>{}</h1>
<p id="error" class="error">{}</p>
<p><a href="{PREFIX}/login">Back to sign in</a></p>"#,
        escape(title),
        escape(text)
    );
    layout(title, "", &body)
}

/// The backup codes as a text file to keep.
pub fn codes_text(user: &str, issuer: &str, codes: &[String]) -> String {
    let mut text = format!(
        "Backup codes for {user} at {issuer}\nEach code works once. Keep this file somewhere safe.\n\n"
    );
    for code in codes {
        text.push_str(code);
        text.push('\n');
    }
    text
}

/// The QR code as SVG: one path of dark modules, quiet zone included in `modules`.
pub fn qr_svg(modules: &[Vec<bool>]) -> String {
    let size = modules.len();
    let mut path = String::new();
    for (y, row) in modules.iter().enumerate() {
        for (x, dark) in row.iter().enumerate() {
            if *dark {
                let _ = write!(path, "M{x} {y}h1v1h-1z");
            }
        }
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="240" height="240" role="img" aria-label="QR code for your authenticator app" shape-rendering="crispEdges"><rect width="{size}" height="{size}" fill="#fff"/><path d="{path}" fill="#000"/></svg>"##
    )
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn error_block(error: Option<&str>) -> String {
    match error {
        Some(text) => format!(
            r#"<p id="error" class="error" role="alert">{}</p>"#,
            escape(text)
        ),
        None => String::new(),
    }
}

fn layout(title: &str, csrf: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{csrf}">
<title>{title}</title>
<link rel="stylesheet" href="{PREFIX}/static/style.css">
<script src="{PREFIX}/static/twofold.js" defer></script>
</head><body><main class="card">
{body}
</main></body></html>
"#,
        title = escape(title),
        csrf = escape(csrf),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_escaped_everywhere_it_appears() {
        let page = login(
            "tok\"en",
            Some("<b>no</b>"),
            "\"><script>alert(1)</script>",
            Some("/\"x"),
        );
        assert!(page.contains("value=\"/&quot;x\""));
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;b&gt;no&lt;/b&gt;"));
        assert!(page.contains("value=\"tok&quot;en\""));
        let rows = [KeyRow {
            name: "<x>".into(),
            added: "2026-12-04".into(),
            last_used: "never".into(),
        }];
        let page = settings("t", "a&b", None, &rows, 3);
        assert!(page.contains("a&amp;b") && page.contains("&lt;x&gt;") && !page.contains("<x>"));
    }

    #[test]
    fn the_qr_svg_draws_each_dark_module_once() {
        let modules = vec![vec![true, false], vec![false, true]];
        let svg = qr_svg(&modules);
        assert!(svg.contains("viewBox=\"0 0 2 2\""));
        assert_eq!(svg.matches("h1v1h-1z").count(), 2);
    }
}
