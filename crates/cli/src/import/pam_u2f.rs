//! pam_u2f's authfile (`~/.config/Yubico/u2f_keys`, or a central mapping file): one line per user,
//! `user:cred:cred...`, each credential `keyHandle,publicKey,coseType,options` (base64 key handle
//! and key; `es256` keys as the 64-byte x‖y, `eddsa` as 32 bytes; options a subset of
//! `+presence+verification+pin`), or the old two-field form `keyHandle,publicKey` with a websafe
//! base64 handle and a hex 65-byte point, which meant es256 with presence.
//!
//! Each credential is parsed on its own, so that one bad credential is reported with its line and
//! reason and the others are still imported. Like pam_u2f, only the last line of a user counts.

use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};

use twofold_core::security_key::{check_credential_id, PublicKey};

/// One credential found for the user.
#[derive(Debug, PartialEq, Eq)]
pub struct U2fCredential {
    pub line: usize,
    pub credential_id: Vec<u8>,
    pub public_key: PublicKey,
    /// `+verification` or `+pin`: the key verified the user as well.
    pub user_verification: bool,
    /// pam_u2f would accept it without a touch (no `+presence`); twofold always requires one.
    pub presence_was_optional: bool,
}

/// What the file holds for one user.
#[derive(Debug, Default)]
pub struct AuthFile {
    pub credentials: Vec<U2fCredential>,
    /// Credentials (or lines) that could not be used: line number and reason.
    pub problems: Vec<(usize, String)>,
    /// Earlier lines for the user, which pam_u2f ignores too.
    pub ignored_lines: Vec<usize>,
}

/// Parses `text` for `user`'s line (the last one naming them).
pub fn parse(text: &str, user: &str) -> AuthFile {
    let mut found = AuthFile::default();
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| line.split(':').next() == Some(user))
        .collect();
    let Some((&(number, line), earlier)) = lines.split_last() else {
        return found;
    };
    found.ignored_lines = earlier.iter().map(|(n, _)| *n).collect();
    let credentials = line.split_once(':').map_or("", |(_, rest)| rest);
    if credentials.is_empty() {
        found
            .problems
            .push((number, "no credentials after the user name".into()));
        return found;
    }
    for (index, credential) in credentials.split(':').enumerate() {
        match parse_credential(credential) {
            Ok(parsed) => found.credentials.push(U2fCredential {
                line: number,
                ..parsed
            }),
            Err(why) => found
                .problems
                .push((number, format!("credential {}: {why}", index + 1))),
        }
    }
    found
}

fn parse_credential(text: &str) -> Result<U2fCredential, String> {
    let fields: Vec<&str> = text.split(',').collect();
    let (handle, key, cose, options) = match fields.as_slice() {
        [handle, key] => (*handle, *key, None, ""),
        [handle, key, cose, options] => (*handle, *key, Some(*cose), *options),
        [handle, key, cose] => (*handle, *key, Some(*cose), ""),
        _ => {
            return Err(format!(
                "expected keyHandle,publicKey,coseType,options; found {} fields",
                fields.len()
            ))
        }
    };
    if handle == "*" {
        return Err("a resident (discoverable) credential, which twofold does not support".into());
    }
    let credential_id = decode_base64(handle).ok_or("the key handle is not base64")?;
    check_credential_id(&credential_id).map_err(|e| e.to_string())?;
    let public_key = match cose {
        // The old form: a hex uncompressed point.
        None => {
            let point = decode_hex(key).ok_or("the public key is not hex")?;
            PublicKey::es256(&point).map_err(|e| e.to_string())?
        }
        Some(cose) => {
            let raw = decode_base64(key).ok_or("the public key is not base64")?;
            match cose {
                "es256" => PublicKey::es256(&raw).map_err(|e| e.to_string())?,
                "eddsa" => PublicKey::ed25519(&raw).map_err(|e| e.to_string())?,
                "rs256" => return Err("rs256 keys are not supported (es256 and eddsa are)".into()),
                // The file's own text is not echoed: it may not be the user's to read.
                _ => return Err("unknown key type (expected es256 or eddsa)".into()),
            }
        }
    };
    let mut presence = cose.is_none();
    let mut verification = false;
    for option in options.split('+').filter(|o| !o.is_empty()) {
        match option {
            "presence" => presence = true,
            "verification" | "pin" => verification = true,
            _ => return Err("unknown option (expected +presence, +verification, +pin)".into()),
        }
    }
    Ok(U2fCredential {
        line: 0,
        credential_id,
        public_key,
        user_verification: verification,
        presence_was_optional: !presence,
    })
}

/// Standard or websafe base64, padded or not: pam_u2f wrote each over the years.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    Base64::decode_vec(text)
        .or_else(|_| Base64Unpadded::decode_vec(text))
        .or_else(|_| Base64Url::decode_vec(text))
        .or_else(|_| Base64UrlUnpadded::decode_vec(text))
        .ok()
        .filter(|bytes| !bytes.is_empty())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The P-256 generator, a valid point: x‖y.
    const XY: &str = "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
    // RFC 8032's first test key.
    const ED: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn b64(hex: &str) -> String {
        Base64::encode_string(&decode_hex(hex).unwrap())
    }

    #[test]
    fn current_old_and_several_credential_forms_are_read() {
        let text = format!(
            "bob:{kh},{pk},es256,+presence\nalice:{kh},{pk},es256,+presence+pin:{kh2},{ed},eddsa,+presence\ncarol:{old_kh},04{xy}\n",
            kh = Base64::encode_string(b"handle-one"),
            kh2 = Base64::encode_string(b"handle-two"),
            pk = b64(XY),
            ed = b64(ED),
            old_kh = Base64UrlUnpadded::encode_string(&[0xfb; 40]),
            xy = XY,
        );
        let alice = parse(&text, "alice");
        assert!(alice.problems.is_empty(), "{:?}", alice.problems);
        assert_eq!(alice.credentials.len(), 2);
        assert_eq!(alice.credentials[0].credential_id, b"handle-one");
        assert!(alice.credentials[0].user_verification);
        assert_eq!(alice.credentials[1].public_key.algorithm(), "eddsa");
        assert!(alice.credentials.iter().all(|c| c.line == 2));
        let carol = parse(&text, "carol");
        assert_eq!(carol.credentials.len(), 1, "{:?}", carol.problems);
        assert_eq!(carol.credentials[0].credential_id, [0xfb; 40]);
        assert!(!carol.credentials[0].presence_was_optional);
        assert!(parse(&text, "dave").credentials.is_empty());
    }

    #[test]
    fn bad_credentials_are_reported_and_the_others_kept() {
        let good = format!(
            "{},{},es256,+presence",
            Base64::encode_string(b"good"),
            b64(XY)
        );
        let off_curve = XY.replace("f5", "f4");
        let text = format!(
            "alice:{good}:*,{pk},es256,+presence:!!,{pk},es256,:{kh},{off},es256,:{kh},{pk},rs256,:{kh},{pk}:{kh},{pk},es256,+touch\n",
            pk = b64(XY),
            off = b64(&off_curve),
            kh = Base64::encode_string(b"kh"),
        );
        let found = parse(&text, "alice");
        assert_eq!(found.credentials.len(), 1);
        let reasons: Vec<&str> = found.problems.iter().map(|(_, r)| r.as_str()).collect();
        for needle in [
            "resident",
            "not base64",
            "curve",
            "rs256",
            "not hex",
            "unknown option",
        ] {
            assert!(
                reasons.iter().any(|r| r.contains(needle)),
                "{needle}: {reasons:?}"
            );
        }
        assert!(found.problems.iter().all(|(line, _)| *line == 1));
    }

    #[test]
    fn only_the_last_line_of_a_user_counts_and_a_credential_without_presence_is_flagged() {
        let text = format!(
            "alice:{kh},{pk},es256,+presence\nalice:{kh2},{pk},es256,\n",
            kh = Base64::encode_string(b"first"),
            kh2 = Base64::encode_string(b"second"),
            pk = b64(XY),
        );
        let found = parse(&text, "alice");
        assert_eq!(found.ignored_lines, [1]);
        assert_eq!(found.credentials.len(), 1);
        assert_eq!(found.credentials[0].credential_id, b"second");
        assert!(found.credentials[0].presence_was_optional);
        // A user name that is a prefix of another's is not theirs.
        assert!(parse("alice2:x,y\n", "alice").credentials.is_empty());
        assert!(!parse("alice:\n", "alice").problems.is_empty());
    }
}
