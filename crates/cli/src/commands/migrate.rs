//! `twofold migrate --user NAME...`: moves users' records from this host's files (`records` in
//! config.toml) into twofoldd's store (`store = "twofoldd"`: the daemon's directory, for a fleet).
//!
//! Idempotent, and nothing is lost or revived: each user is one compare-and-swap at the daemon.
//! A user the store does not have gets the record and state as they are here. A user it already
//! has with the same record keeps it, and the two states are merged so that whatever is spent on
//! either side stays spent: the later replay guard, every spent backup code, the higher key
//! counter. A user it has with another enrollment is left alone and reported: which one is right
//! is an administrator's call.

use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::store::Store;
use twofold_core::user::UserName;
use twofold_host::any_store::AnyStore;
use twofold_host::{sys, FileStore};

use crate::support::{audit, Failure};

/// What became of one user.
enum Moved {
    Copied,
    AlreadyThere,
}

pub(crate) fn migrate(
    config: &twofold_core::config::Config,
    store: &AnyStore,
    users: &[UserName],
) -> Result<(), Failure> {
    if sys::geteuid() != 0 {
        return Err(Failure(
            "only root may migrate records (they are root's)".into(),
        ));
    }
    let AnyStore::Daemon(daemon) = store else {
        return Err(Failure(
            "migrate moves records into twofoldd's store: set store = \"twofoldd\" in the config \
             (the records to move are read from `records`, as the files store would)"
                .into(),
        ));
    };
    if users.is_empty() {
        return Err(Failure("name the users to migrate with --user".into()));
    }
    let files = FileStore::for_admin(config);
    let mut failed = 0;
    for user in users {
        let Some((record, state)) = files.load(user)? else {
            println!(
                "{user}: not enrolled in {}; nothing to move",
                config.records.as_str()
            );
            continue;
        };
        let moved = daemon.replace(user, |current, stored| -> Result<_, String> {
            match current {
                None => {
                    *stored = merged(&record, &state, stored);
                    Ok((Some(record.clone()), Moved::Copied))
                }
                Some(there) if *there == record => {
                    *stored = merged(&record, &state, stored);
                    Ok((Some(there.clone()), Moved::AlreadyThere))
                }
                Some(_) => Err(
                    "twofoldd's store has another enrollment for this user; left \
                                as it is (disable one of them first)"
                        .into(),
                ),
            }
        });
        // One user's failure (no entry in the directory, a daemon error) does not stop the rest.
        let moved = moved.unwrap_or_else(|e| Err(e.to_string()));
        match moved {
            Ok(Moved::Copied) => {
                audit(user, "migrated into twofoldd's store");
                println!("{user}: moved");
            }
            Ok(Moved::AlreadyThere) => println!("{user}: already there; spent codes merged"),
            Err(why) => {
                failed += 1;
                eprintln!("twofold: {user}: {why}");
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(Failure(format!("{n} user(s) not migrated (above)"))),
    }
}

/// The state for `record` that keeps everything spent in `here` or `there`.
fn merged(record: &Record, here: &State, there: &State) -> State {
    let mut state = here.clone();
    state.last_step = here.last_step.max(there.last_step);
    state.locked_until = here.locked_until.max(there.locked_until);
    let binding = record.backup_codes.binding();
    if there.codes_binding == binding {
        for index in 0..record.backup_codes.len() {
            if there.is_code_spent(binding, index) {
                state.spend_code(binding, index);
            }
        }
    }
    for used in &there.key_uses {
        let newer = match here.key_use(used.credential) {
            Some(mine) => used.sign_count > mine.sign_count,
            None => true,
        };
        if newer {
            state.record_key_use(used.credential, used.sign_count, used.last_used);
        }
    }
    state
}
