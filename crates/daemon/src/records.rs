//! The store operations of the files backend: load, compare-and-swap updates of the state, and
//! record replacements, each under the store's own per-user lock.
//!
//! The file store keeps no generation a caller can name, so the daemon defines one: a hash of the
//! user's whole copy (`generation`). A caller that read generation g may write only while the
//! copy still hashes to g; otherwise it gets the current copy and decides again, which is how a
//! directory backend's assertion-guarded modify will behave too.
//!
//! Whatever the caller, a write never lowers the replay guard, revives a spent backup code or
//! lowers a security key's signature counter (`check_invariants`): root and the web server are
//! trusted with the records, but a confused or stale client must not undo a login.

use sha2::{Digest, Sha256};

use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::store::Store;
use twofold_core::user::UserName;
use twofold_proto::{Request, Response, Secret, Snapshot};

/// The user's record (if enrolled), state and generation, read without the lock. The store must
/// confirm that a missing record means "not enrolled" (`FileStore::new`): the module decides a
/// login from this answer, and nullok must never skip a user whose records are not mounted.
pub fn load<S: Store>(store: &S, user: &UserName) -> Response {
    match store.load(user) {
        Ok(Some((record, state))) => Response::Loaded(snapshot(Some(&record), &state)),
        Ok(None) => Response::Loaded(snapshot(None, &State::default())),
        Err(e) => Response::Unavailable(e.to_string()),
    }
}

/// Sets the user's state to `state` if their copy is still at `generation`.
pub fn update<S: Store>(store: &S, user: &UserName, generation: u64, state: &State) -> Response {
    let decided = store.update(user, |record, current| {
        if self::generation(Some(record), current) != generation {
            return Err(Box::new(Response::Conflict(snapshot(
                Some(record),
                current,
            ))));
        }
        check_invariants(Some(record), current, Some(record), state).map_err(invalid)?;
        *current = state.clone();
        Ok(self::generation(Some(record), state))
    });
    match decided {
        Ok(Some(Ok(generation))) => Response::Written { generation },
        Ok(Some(Err(refusal))) => *refusal,
        // Not enrolled: there is no state to update; the caller sees "not enrolled".
        Ok(None) => Response::Conflict(snapshot(None, &State::default())),
        Err(e) => Response::Unavailable(e.to_string()),
    }
}

/// Replaces the user's record (`None`: removes the enrollment) and state if their copy is still
/// at `generation`. `record` is TOML text, parsed as a record file would be.
pub fn replace<S: Store>(
    store: &S,
    user: &UserName,
    generation: u64,
    record: Option<&Secret>,
    state: &State,
) -> Response {
    let record = match record
        .map(|text| Record::parse(text.0.as_bytes()))
        .transpose()
    {
        Ok(record) => record,
        Err(e) => return Response::Invalid(format!("record: {e}")),
    };
    let decided = store.replace(user, |current, stored| {
        if self::generation(current, stored) != generation {
            return Err(Box::new(Response::Conflict(snapshot(current, stored))));
        }
        check_invariants(current, stored, record.as_ref(), state).map_err(invalid)?;
        *stored = state.clone();
        let written = match &record {
            Some(record) => self::generation(Some(record), state),
            // A removed enrollment takes its state with it: nothing is stored.
            None => 0,
        };
        Ok((record.clone(), written))
    });
    match decided {
        Ok(Ok(generation)) => Response::Written { generation },
        Ok(Err(refusal)) => *refusal,
        Err(e) => Response::Unavailable(e.to_string()),
    }
}

/// The generation of a user's copy: the first 8 bytes (big-endian) of SHA-256 over a label, the
/// record's TOML text (empty without a record), a 0 byte, and the state as the wire format
/// encodes it. 0 means "no record and the default state" (nothing stored), and no stored copy
/// hashes to 0. Any change to the record or the state changes it, so a compare-and-swap on it
/// cannot be fooled by an ABA write of equal generation counters.
pub fn generation(record: Option<&Record>, state: &State) -> u64 {
    if record.is_none() && *state == State::default() {
        return 0;
    }
    let text = record.map(Record::to_toml);
    // The state's wire encoding, inside the one message that carries nothing but a state.
    let encoded = Request::Update {
        user: String::new(),
        generation: 0,
        state: state.clone(),
    }
    .encode();
    let digest = Sha256::new()
        .chain_update(b"twofoldd generation\0")
        .chain_update(text.as_ref().map_or(&b""[..], |t| t.as_bytes()))
        .chain_update([0u8])
        .chain_update(&encoded[..])
        .finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(word).max(1)
}

/// Errs unless going from (`old_record`, `old`) to (`new_record`, `new`) keeps every use
/// durable: the replay guard does not go down, no backup code spent in the set in force comes
/// back, and no registered key's signature counter goes down. Removing the enrollment
/// (`new_record` `None`) may reset everything; a new TOTP key starts a new replay guard; a new
/// backup-code set starts with no spent codes (its marks name another set).
pub fn check_invariants(
    old_record: Option<&Record>,
    old: &State,
    new_record: Option<&Record>,
    new: &State,
) -> Result<(), &'static str> {
    let Some(new_record) = new_record else {
        return Ok(());
    };
    // The replay guard belongs to a key (as in enroll.rs): a new key's codes start afresh.
    let same_key = match (old_record.and_then(|r| r.totp.as_ref()), &new_record.totp) {
        (Some(old_key), Some(new_key)) => {
            old_key.secret == new_key.secret && old_key.period == new_key.period
        }
        _ => false,
    };
    if same_key && new.last_step < old.last_step {
        return Err("the write would lower the replay guard (last_step)");
    }
    // Spent marks of the code set in force: the new record's.
    let binding = new_record.backup_codes.binding();
    let spent_in = |state: &State| match state.codes_binding == binding {
        true => state.spent_codes,
        false => 0,
    };
    let revived_in_force = spent_in(old) & !spent_in(new) != 0;
    let revived_same_set =
        old.codes_binding == new.codes_binding && old.spent_codes & !new.spent_codes != 0;
    if revived_in_force || revived_same_set {
        return Err("the write would un-spend a backup code");
    }
    for used in &old.key_uses {
        let registered = new_record.keys.iter().any(|k| k.tag() == used.credential);
        let kept = new.key_use(used.credential).map(|u| u.sign_count);
        if registered && kept.is_none_or(|count| count < used.sign_count) {
            return Err("the write would lower a security key's signature counter");
        }
    }
    Ok(())
}

/// A user's copy as the wire carries it.
pub fn snapshot(record: Option<&Record>, state: &State) -> Snapshot {
    Snapshot {
        record: record.map(|r| Secret(r.to_toml())),
        state: state.clone(),
        generation: generation(record, state),
    }
}

/// A refusal from inside a store closure (boxed: a snapshot is large beside a generation).
fn invalid(why: &'static str) -> Box<Response> {
    Box::new(Response::Invalid(why.into()))
}

#[cfg(test)]
mod tests {
    use twofold_core::backup::{BackupCodes, Cost};
    use twofold_core::security_key::{CredentialTag, KeyName, PublicKey, SecurityKey};
    use twofold_core::state::KeyUse;
    use twofold_core::totp::{Algorithm, Digits, Secret as TotpSecret, TotpKey};

    use super::*;

    const CHEAP: Cost = Cost {
        m_kib: 8,
        t: 1,
        p: 1,
    };

    fn record() -> Record {
        Record {
            totp: Some(TotpKey {
                secret: TotpSecret::generate().unwrap(),
                algorithm: Algorithm::Sha1,
                digits: Digits::SIX,
                period: 30,
            }),
            window: None,
            throttle: None,
            backup_codes: BackupCodes::generate(4, CHEAP).unwrap().hashed,
            keys: vec![SecurityKey {
                name: KeyName::parse("yubi").unwrap(),
                credential_id: vec![7; 32],
                public_key: PublicKey::EdDsa([9; 32]),
                rp_id: "pam://host".into(),
                user_verification: false,
                added: 1,
            }],
        }
    }

    fn used(record: &Record) -> State {
        State {
            last_step: 100,
            spent_codes: 0b101,
            codes_binding: record.backup_codes.binding(),
            key_uses: vec![KeyUse {
                credential: record.keys[0].tag(),
                sign_count: 50,
                last_used: 1,
            }],
            ..State::default()
        }
    }

    #[test]
    fn nothing_stored_is_generation_zero_and_every_change_moves_it() {
        let record = record();
        let state = used(&record);
        assert_eq!(generation(None, &State::default()), 0);
        let at = generation(Some(&record), &state);
        assert_ne!(at, 0);
        assert_ne!(generation(None, &state), 0);
        assert_eq!(generation(Some(&record), &state.clone()), at);
        let mut failed = state.clone();
        failed.locked_until = 1;
        assert_ne!(generation(Some(&record), &failed), at);
        let mut other = record.clone();
        other.window = Some(0);
        assert_ne!(generation(Some(&other), &state), at);
        // The generation survives the record being written out and read back.
        let reread = Record::parse(record.to_toml().as_bytes()).unwrap();
        assert_eq!(generation(Some(&reread), &state), at);
    }

    #[test]
    fn the_replay_guard_never_goes_down_for_the_same_key() {
        let record = record();
        let old = used(&record);
        let lower = State {
            last_step: 99,
            ..old.clone()
        };
        assert!(check_invariants(Some(&record), &old, Some(&record), &lower).is_err());
        let higher = State {
            last_step: 101,
            ..old.clone()
        };
        assert_eq!(
            check_invariants(Some(&record), &old, Some(&record), &higher),
            Ok(())
        );
        // A new key starts its own guard (a re-enrollment).
        let mut new_key = record.clone();
        new_key.totp = self::record().totp;
        assert_eq!(
            check_invariants(Some(&record), &old, Some(&new_key), &lower),
            Ok(())
        );
    }

    #[test]
    fn a_spent_code_stays_spent_unless_the_codes_are_new() {
        let record = record();
        let old = used(&record);
        let revived = State {
            spent_codes: 0b001,
            ..old.clone()
        };
        assert!(check_invariants(Some(&record), &old, Some(&record), &revived).is_err());
        // Moving the marks to another set would revive the set in force as well.
        let rebound = State {
            codes_binding: old.codes_binding ^ 1,
            spent_codes: 0,
            ..old.clone()
        };
        assert!(check_invariants(Some(&record), &old, Some(&record), &rebound).is_err());
        let spent_more = State {
            spent_codes: 0b111,
            ..old.clone()
        };
        assert_eq!(
            check_invariants(Some(&record), &old, Some(&record), &spent_more),
            Ok(())
        );
        // New backup codes: the new set starts unspent.
        let mut new_codes = record.clone();
        new_codes.backup_codes = BackupCodes::generate(4, CHEAP).unwrap().hashed;
        let fresh = State {
            codes_binding: new_codes.backup_codes.binding(),
            spent_codes: 0,
            ..old.clone()
        };
        assert_eq!(
            check_invariants(Some(&record), &old, Some(&new_codes), &fresh),
            Ok(())
        );
    }

    #[test]
    fn a_registered_keys_counter_never_goes_down() {
        let record = record();
        let old = used(&record);
        let mut lower = old.clone();
        lower.key_uses[0].sign_count = 49;
        assert!(check_invariants(Some(&record), &old, Some(&record), &lower).is_err());
        let mut forgotten = old.clone();
        forgotten.key_uses.clear();
        assert!(check_invariants(Some(&record), &old, Some(&record), &forgotten).is_err());
        // A removed key's use may go with it.
        let mut removed = record.clone();
        removed.keys.clear();
        assert_eq!(
            check_invariants(Some(&record), &old, Some(&removed), &forgotten),
            Ok(())
        );
        // An unrelated use is no concern.
        let mut other = old.clone();
        other.key_uses.push(KeyUse {
            credential: CredentialTag(1),
            sign_count: 0,
            last_used: 0,
        });
        assert_eq!(
            check_invariants(Some(&record), &old, Some(&record), &other),
            Ok(())
        );
    }

    #[test]
    fn removing_the_enrollment_may_reset_everything() {
        let record = record();
        let old = used(&record);
        assert_eq!(
            check_invariants(Some(&record), &old, None, &State::default()),
            Ok(())
        );
    }
}
