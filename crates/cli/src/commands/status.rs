//! `twofold status`: what a user has enrolled, in words or JSON.

use twofold_core::clock::Clock;
use twofold_core::store::Store;
use twofold_core::user::UserName;
use twofold_host::any_store::AnyStore;
use twofold_host::SystemClock;

use crate::support::Failure;

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
        let value = serde_json::json!({
            "user": user.as_str(),
            "totp": totp.is_some(),
            "backup_codes_left": left,
            "locked_until": locked_until,
            "hosts_locked_until": hosts_locked,
            "keys": keys,
        });
        println!("{value}");
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
