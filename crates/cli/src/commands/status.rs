//! `twofold status`: what a user has enrolled, in words or JSON.

use twofold_core::clock::Clock;
use twofold_core::store::Store;
use twofold_core::user::UserName;
use twofold_host::{FileStore, SystemClock};

use crate::support::Failure;

pub(crate) fn status(store: &FileStore, user: &UserName, json: bool) -> Result<(), Failure> {
    let loaded = store.load(user)?;
    let now = SystemClock.now();
    let (totp, left, locked_until) = match &loaded {
        Some((record, state)) => (
            record.totp.as_ref(),
            state.codes_left(record.backup_codes.binding(), record.backup_codes.len()),
            (state.locked_until > now).then_some(state.locked_until),
        ),
        None => (None, 0, None),
    };
    if json {
        let value = serde_json::json!({
            "user": user.as_str(),
            "totp": totp.is_some(),
            "backup_codes_left": left,
            "locked_until": locked_until,
            "keys": [],
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
        match locked_until {
            Some(until) => println!(
                "locked: yes, for {} more min (twofold unlock --user {user})",
                (until - now).div_ceil(60)
            ),
            None => println!("locked: no"),
        }
    }
    Ok(())
}
