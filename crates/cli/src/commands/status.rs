//! `twofold status`: what a user has enrolled, in words or JSON; with `--all`, one line (or one
//! JSON object) per enrolled user, for an administrator watching a rollout.

use twofold_core::clock::Clock;
use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::store::Store;
use twofold_core::user::UserName;
use twofold_host::any_store::AnyStore;
use twofold_host::SystemClock;

use crate::support::Failure;

/// Every enrolled user's factors and lock, as the store lists them: aligned columns, or a JSON
/// array of what `status --json` prints for each. A user that cannot be read is reported on
/// stderr and makes the command fail once the others are shown.
pub(crate) fn status_all(store: &AnyStore, json: bool) -> Result<(), Failure> {
    let users = match store {
        AnyStore::Files(files) => files.list_users()?,
        AnyStore::Daemon(daemon) => daemon.list_users()?,
    };
    let now = SystemClock.now();
    let mut rows = Vec::with_capacity(users.len());
    let mut unreadable = 0;
    for user in &users {
        match store.load(user) {
            Ok(loaded) => rows.push((user, loaded)),
            Err(e) => {
                unreadable += 1;
                eprintln!("twofold: {user}: {e}");
            }
        }
    }
    if json {
        let all: Vec<serde_json::Value> = rows
            .iter()
            .map(|(user, loaded)| status_json(user, loaded.as_ref(), now))
            .collect();
        println!("{}", serde_json::Value::Array(all));
    } else {
        let lines: Vec<[String; 5]> = rows
            .iter()
            .map(|(user, loaded)| summary_line(user, loaded.as_ref(), now))
            .collect();
        let mut widths = [0usize; 5];
        for line in &lines {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for line in &lines {
            let mut text = String::new();
            for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
                match i {
                    4 => text.push_str(cell),
                    _ => text.push_str(&format!("{cell:<width$}  ")),
                }
            }
            println!("{}", text.trim_end());
        }
    }
    match unreadable {
        0 => Ok(()),
        n => Err(Failure(format!(
            "{n} of {} enrolled user(s) could not be read (above)",
            users.len()
        ))),
    }
}

/// One user's columns: name, TOTP, backup codes left of the set, keys, lock.
fn summary_line(user: &UserName, loaded: Option<&(Record, State)>, now: u64) -> [String; 5] {
    let Some((record, state)) = loaded else {
        // Listed, but the record is gone (disabled meanwhile, or a home not mounted).
        return [
            user.to_string(),
            "not enrolled".into(),
            String::new(),
            String::new(),
            String::new(),
        ];
    };
    let total = record.backup_codes.len();
    let left = state.codes_left(record.backup_codes.binding(), total);
    let lock = if state.locked_until > now {
        "locked"
    } else if state.origin_locks.iter().any(|l| l.until > now) {
        "origins locked"
    } else {
        "unlocked"
    };
    [
        user.to_string(),
        match record.totp {
            Some(_) => "totp".into(),
            None => "no totp".into(),
        },
        format!("codes {left}/{total}"),
        format!("keys {}", record.keys.len()),
        lock.into(),
    ]
}

/// What `status --json` prints for `user`.
fn status_json(user: &UserName, loaded: Option<&(Record, State)>, now: u64) -> serde_json::Value {
    let (totp, left, locked_until, hosts_locked, keys) = match loaded {
        Some((record, state)) => (
            record.totp.is_some(),
            state.codes_left(record.backup_codes.binding(), record.backup_codes.len()),
            (state.locked_until > now).then_some(state.locked_until),
            state
                .origin_locks
                .iter()
                .filter(|l| l.until > now)
                .map(|l| l.until)
                .collect::<Vec<u64>>(),
            record
                .keys
                .iter()
                .map(|key| {
                    super::keys::key_json(key, state.key_use(key.tag()).map(|u| u.last_used))
                })
                .collect::<Vec<_>>(),
        ),
        None => (false, 0, None, Vec::new(), Vec::new()),
    };
    serde_json::json!({
        "user": user.as_str(),
        "totp": totp,
        "backup_codes_left": left,
        "locked_until": locked_until,
        "hosts_locked_until": hosts_locked,
        "keys": keys,
    })
}

pub(crate) fn status(store: &AnyStore, user: &UserName, json: bool) -> Result<(), Failure> {
    let loaded = store.load(user)?;
    let now = SystemClock.now();
    let (totp, left, locked_until, hosts_locked) = match &loaded {
        Some((record, state)) => (
            record.totp.as_ref(),
            state.codes_left(record.backup_codes.binding(), record.backup_codes.len()),
            (state.locked_until > now).then_some(state.locked_until),
            // Origins locked on their own (a host, or the console), by when each lock ends.
            state
                .origin_locks
                .iter()
                .filter(|l| l.until > now)
                .map(|l| l.until)
                .collect::<Vec<u64>>(),
        ),
        None => (None, 0, None, Vec::new()),
    };
    let keys: Vec<serde_json::Value> = loaded
        .as_ref()
        .map(|(record, state)| {
            record
                .keys
                .iter()
                .map(|key| {
                    super::keys::key_json(key, state.key_use(key.tag()).map(|u| u.last_used))
                })
                .collect()
        })
        .unwrap_or_default();
    if json {
        println!("{}", status_json(user, loaded.as_ref(), now));
        return Ok(());
    }
    println!("user: {user}");
    match (&loaded, totp) {
        (None, _) => println!("enrolled: no"),
        (Some(_), Some(key)) => println!(
            "totp: yes ({}, {} digits, {} s)",
            key.algorithm.name(),
            key.digits.get(),
            key.period
        ),
        (Some(_), None) => println!("totp: no"),
    }
    if loaded.is_some() {
        println!("backup codes left: {left}");
        match keys.len() {
            0 => println!("security keys: none"),
            _ => println!(
                "security keys: {}",
                keys.iter()
                    .filter_map(|k| k["name"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        match locked_until {
            Some(until) => println!(
                "locked: yes, for {} more min (twofold unlock --user {user})",
                (until - now).div_ceil(60)
            ),
            None if !hosts_locked.is_empty() => {
                println!(
                "locked: for {} login origin(s) (a host, or the console) that failed too often, \
                 for up to {} more min (twofold unlock --user {user})",
                hosts_locked.len(),
                hosts_locked.iter().max().map_or(0, |u| (u - now).div_ceil(60))
            )
            }
            None => println!("locked: no"),
        }
    }
    Ok(())
}
