//! `twofold keys add|list|rename|remove` and `twofold import pam-u2f`: a user's security keys.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use base64ct::{Base64UrlUnpadded, Encoding};

use twofold_core::clock::Clock;
use twofold_core::config::{Config, UserVerification};
use twofold_core::key_assertion::rp_id_hash;
use twofold_core::keys::{self, KeyChangeError};
use twofold_core::security_key::{check_rp_id, KeyName, PublicKey, SecurityKey};
use twofold_core::store::Store;
use twofold_core::user::UserName;
use twofold_fido::touch::Registration;
use twofold_host::any_store::AnyStore;
use twofold_host::file_store::as_user;
use twofold_host::sys::{self, open_flags};
use twofold_host::SystemClock;

use crate::import::pam_u2f;
use crate::support::{acting_for, ask_secret, audit, prepare_store, Failure};

/// Flag bits of authenticator data.
const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;

/// The relying party new keys are made for: `--rp-id`, else `fido2.rp_id`, else pam_u2f's
/// `pam://<hostname>`.
fn rp_id(config: &Config, flag: Option<String>) -> Result<String, Failure> {
    let id = match flag.or_else(|| config.fido2.rp_id.clone()) {
        Some(id) => id,
        None => format!(
            "pam://{}",
            sys::hostname().ok_or_else(|| Failure("cannot read the host name".into()))?
        ),
    };
    check_rp_id(&id).map_err(|e| Failure(format!("--rp-id: {e}")))?;
    Ok(id)
}

fn key_name(name: &str) -> Result<KeyName, Failure> {
    KeyName::parse(name).map_err(Failure::from)
}

pub(crate) fn add(
    config: &Config,
    store: &AnyStore,
    user: &UserName,
    name: &str,
    pin: bool,
    rp_id_flag: Option<String>,
) -> Result<(), Failure> {
    let name = key_name(name)?;
    let rp_id = rp_id(config, rp_id_flag)?;
    let max_keys = usize::from(config.fido2.max_keys);
    prepare_store(config, store, user)?;
    // Checked before the touch, so that nobody touches a key for a registration that must fail.
    let record = store.load(user)?.map(|(record, _)| record);
    keys::can_add(record.as_ref(), &name, max_keys, true).map_err(Failure::from)?;
    let require_uv = pin || config.fido2.user_verification == UserVerification::Required;
    let mut challenge = [0u8; 32];
    let mut user_id = [0u8; 16];
    getrandom::fill(&mut challenge)
        .and_then(|()| getrandom::fill(&mut user_id))
        .map_err(|e| Failure(format!("no randomness: {e}")))?;
    let exclude: Vec<Vec<u8>> = record
        .iter()
        .flat_map(|r| &r.keys)
        .filter(|k| k.rp_id == rp_id)
        .map(|k| k.credential_id.clone())
        .collect();
    let registration = Registration {
        rp_id: &rp_id,
        user_name: user.as_str(),
        user_id: &user_id,
        client_data_hash: &challenge,
        exclude: &exclude,
        require_uv,
    };
    let timeout = Duration::from_secs(config.fido2.touch_timeout_secs.into());
    let deadline = Instant::now() + timeout;
    let devices = twofold_fido::devices(deadline);
    let made = twofold_fido::make_credential(
        devices,
        &registration,
        deadline,
        &mut |retries| {
            let prompt = match retries {
                Some(left) => format!("Security key PIN ({left} tries left): "),
                None => "Security key PIN: ".to_string(),
            };
            ask_secret(&prompt).ok().filter(|pin| !pin.is_empty())
        },
        &mut || eprintln!("Touch your security key to register it as {name}."),
    )
    .map_err(|e| Failure(format!("{e}; nothing was registered")))?;
    let public_key = PublicKey::from_cose(&made.cose_public_key)
        .map_err(|e| Failure(format!("the key's answer: {e}; nothing was registered")))?;
    // The key must have made the credential for this relying party, with the touch (and the
    // verification) asked for: a key that says otherwise is not registered.
    let flags = made.auth_data.get(32).copied().unwrap_or(0);
    if made.auth_data.get(..32) != Some(&rp_id_hash(&rp_id)[..]) || flags & USER_PRESENT == 0 {
        return Err(Failure(
            "the key's answer is not a credential for this relying party made with a touch; nothing was registered".into(),
        ));
    }
    if require_uv && flags & USER_VERIFIED == 0 {
        return Err(Failure(
            "the key did not verify the user (PIN or fingerprint); nothing was registered".into(),
        ));
    }
    let key = SecurityKey {
        name: name.clone(),
        credential_id: made.credential_id,
        public_key,
        rp_id: rp_id.clone(),
        user_verification: require_uv,
        added: SystemClock.now(),
    };
    keys::add(store, user, &[key], max_keys, true).map_err(Failure::from)?;
    audit(user, &format!("registered security key {name}"));
    println!("{user}: security key {name} registered (relying party {rp_id})");
    Ok(())
}

pub(crate) fn list(store: &AnyStore, user: &UserName, json: bool) -> Result<(), Failure> {
    let loaded = store.load(user)?;
    let keys: Vec<serde_json::Value> = loaded
        .as_ref()
        .map(|(record, state)| {
            record
                .keys
                .iter()
                .map(|key| key_json(key, state.key_use(key.tag()).map(|u| u.last_used)))
                .collect()
        })
        .unwrap_or_default();
    if json {
        let value = serde_json::json!({ "user": user.as_str(), "keys": keys });
        println!("{value}");
        return Ok(());
    }
    if keys.is_empty() {
        println!("{user}: no security keys");
        return Ok(());
    }
    for key in &keys {
        println!(
            "{}\t{}\t{}\tadded {}\tlast used {}{}",
            key["name"].as_str().unwrap_or(""),
            key["algorithm"].as_str().unwrap_or(""),
            key["rp_id"].as_str().unwrap_or(""),
            day(key["added"].as_u64()),
            day(key["last_used"].as_u64()),
            if key["user_verification"] == true {
                "\tPIN"
            } else {
                ""
            },
        );
    }
    Ok(())
}

/// A key as `keys list --json` and `status --json` show it (never the public key's bytes).
pub(crate) fn key_json(key: &SecurityKey, last_used: Option<u64>) -> serde_json::Value {
    serde_json::json!({
        "name": key.name.as_str(),
        "algorithm": key.public_key.algorithm(),
        "rp_id": key.rp_id,
        "user_verification": key.user_verification,
        "credential_id": Base64UrlUnpadded::encode_string(&key.credential_id),
        "added": key.added,
        "last_used": last_used,
    })
}

/// A Unix time as its UTC date (`2026-12-04`), or `never`.
fn day(time: Option<u64>) -> String {
    time.map_or_else(|| "never".into(), twofold_core::text::utc_date)
}

pub(crate) fn rename(
    store: &AnyStore,
    user: &UserName,
    old: &str,
    new: &str,
) -> Result<(), Failure> {
    let (old, new) = (key_name(old)?, key_name(new)?);
    keys::rename(store, user, &old, &new).map_err(Failure::from)?;
    audit(user, &format!("renamed security key {old} to {new}"));
    println!("{user}: security key {old} is now {new}");
    Ok(())
}

pub(crate) fn remove(store: &AnyStore, user: &UserName, name: &str) -> Result<(), Failure> {
    let name = key_name(name)?;
    keys::remove(store, user, &name).map_err(Failure::from)?;
    audit(user, &format!("removed security key {name}"));
    println!("{user}: security key {name} removed");
    Ok(())
}

pub(crate) fn import_pam_u2f(
    config: &Config,
    store: &AnyStore,
    user: &UserName,
    path: &Path,
    rp_id_flag: Option<String>,
) -> Result<(), Failure> {
    // pam_u2f's default origin and appid are pam://<hostname>, whatever fido2.rp_id says.
    let rp_id = match rp_id_flag {
        Some(id) => rp_id(config, Some(id))?,
        None => rp_id(
            config,
            Some(format!(
                "pam://{}",
                sys::hostname().ok_or_else(|| Failure("cannot read the host name".into()))?
            )),
        )?,
    };
    prepare_store(config, store, user)?;
    let text = read_key_file(user, path)?;
    let found = pam_u2f::parse(&text, user.as_str());
    for (line, why) in &found.problems {
        eprintln!("twofold: {}:{line}: {why}; not imported", path.display());
    }
    for line in &found.ignored_lines {
        eprintln!(
            "twofold: {}:{line}: an earlier line for {user}, which pam_u2f ignores too; not imported",
            path.display()
        );
    }
    if found.credentials.is_empty() {
        return Err(Failure(format!(
            "{}: no usable credential for {user}; nothing imported",
            path.display()
        )));
    }
    let record = store.load(user)?.map(|(record, _)| record);
    let existing = record.as_ref().map_or(&[][..], |r| &r.keys[..]);
    let now = SystemClock.now();
    let mut next = 1;
    let mut imported = Vec::new();
    for credential in &found.credentials {
        let taken = |n: usize| {
            let name = format!("imported-{n}");
            existing.iter().any(|k| k.name.as_str() == name)
        };
        while taken(next) {
            next += 1;
        }
        if credential.presence_was_optional {
            eprintln!(
                "twofold: {}:{}: this credential did not require a touch under pam_u2f; twofold always does",
                path.display(),
                credential.line
            );
        }
        let name = key_name(&format!("imported-{next}"))?;
        next += 1;
        if let Some(same) = existing
            .iter()
            .find(|k| k.credential_id == credential.credential_id)
        {
            eprintln!(
                "twofold: {}:{}: registered already, as {}; skipped",
                path.display(),
                credential.line,
                same.name
            );
            continue;
        }
        imported.push(SecurityKey {
            name,
            credential_id: credential.credential_id.clone(),
            public_key: credential.public_key.clone(),
            rp_id: rp_id.clone(),
            user_verification: credential.user_verification,
            added: now,
        });
    }
    if imported.is_empty() {
        println!(
            "{user}: every credential in {} is registered already",
            path.display()
        );
        return Ok(());
    }
    let max_keys = usize::from(config.fido2.max_keys);
    match record {
        Some(_) => keys::add(store, user, &imported, max_keys, false),
        None if imported.len() > max_keys => Err(KeyChangeError::TooMany(max_keys)),
        None => keys::create_with(store, user, &imported),
    }
    .map_err(|e| Failure(format!("{e}; nothing imported")))?;
    audit(
        user,
        &format!("imported {} security key(s) from pam_u2f", imported.len()),
    );
    let names: Vec<&str> = imported.iter().map(|k| k.name.as_str()).collect();
    println!(
        "{user}: imported {} security key(s) from {} as {} (relying party {rp_id})",
        imported.len(),
        path.display(),
        names.join(", ")
    );
    Ok(())
}

/// Reads a pam_u2f authfile. Run by root for another user, it opens the file with that user's
/// rights, so that nobody can point root at a file they could not read themselves. Public keys
/// are not secret, so the file may be readable by others (pamu2fcfg writes it under the umask),
/// but it must belong to the user or root, and no one else may write it.
fn read_key_file(user: &UserName, path: &Path) -> Result<String, Failure> {
    let account = acting_for(user)?;
    let owner = account.as_ref().map_or_else(sys::geteuid, |a| a.uid);
    let read = || -> Result<String, Failure> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(open_flags::O_NOFOLLOW | open_flags::O_NONBLOCK)
            .open(path)
            .map_err(|e| Failure(format!("{}: cannot open: {e}", path.display())))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(Failure(format!("{}: not a regular file", path.display())));
        }
        if (meta.uid() != owner && meta.uid() != 0) || meta.mode() & 0o022 != 0 {
            return Err(Failure(format!(
                "{}: must belong to {user} or root, and be writable by its owner only",
                path.display()
            )));
        }
        // Root's file read for another user: only if anyone may read it (a central mapping
        // file), since root's supplementary groups still apply to the open above.
        if account.is_some() && meta.uid() == 0 && meta.mode() & 0o004 == 0 {
            return Err(Failure(format!(
                "{}: root's file, not readable by {user}; copy {user}'s line to a file of theirs",
                path.display()
            )));
        }
        let mut bytes = Vec::new();
        file.take(64 * 1024 + 1).read_to_end(&mut bytes)?;
        if bytes.len() > 64 * 1024 {
            return Err(Failure(format!("{}: larger than 64 KiB", path.display())));
        }
        String::from_utf8(bytes).map_err(|_| Failure(format!("{}: not text", path.display())))
    };
    match &account {
        Some(account) => as_user(account, read)?,
        None => read(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_civil_dates() {
        assert_eq!(super::day(Some(0)), "1970-01-01");
        assert_eq!(super::day(Some(951_782_400)), "2000-02-29");
        assert_eq!(super::day(Some(1_796_342_400)), "2026-12-04");
        assert_eq!(super::day(None), "never");
    }
}
