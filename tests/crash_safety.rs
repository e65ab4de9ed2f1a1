//! What a crash leaves behind. A writer process (a re-exec of this test binary, see
//! `writer_worker`) changes one user's files through the library's `FileStore` as fast as it can,
//! and is SIGKILLed at random moments; after each kill the files must still be whole, and nothing
//! the writer was told is durable may have been lost or undone. Torn state slots, which a kill
//! cannot produce (the kernel finishes the write), are made by hand.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use twofold_core::backup::BackupCodes;
use twofold_core::config::{Config, RecordsTemplate};
use twofold_core::record::Record;
use twofold_core::state::State;
use twofold_core::store::Store;
use twofold_core::user::UserName;
use twofold_host::state_file::{self, Slotted, SLOT_SIZE};
use twofold_host::FileStore;

use common::*;
use twofold_tests::files::STORE_MARKER;

/// The test that acts as the writer in a re-exec'd process.
const WORKER: &str = "writer_worker";
/// What the writer says after each change that the store reported durable: the generation then
/// on disk (the writer is the only one), the last step and the code binding.
const COMMITTED: &str = "twofold-committed=";

#[test]
fn writer_worker() {
    let Some(role) = worker_role() else {
        return; // An ordinary test run: nothing to do.
    };
    assert_eq!(role, "writer");
    let template = std::env::var("TWOFOLD_RECORDS").expect("TWOFOLD_RECORDS");
    let store = FileStore::new(&Config {
        records: RecordsTemplate::parse(&template).unwrap(),
        ..Config::default()
    });
    let user = user_name(&std::env::var("TWOFOLD_USER").expect("TWOFOLD_USER"));
    let seed = std::env::var("TWOFOLD_WRITER_SEED").expect("TWOFOLD_WRITER_SEED");
    let mut rng = Rng::new(seed.parse().unwrap());
    loop {
        // Mostly logins (a step accepted, a code spent), and one time in four new backup codes.
        let committed = if rng.below(4) == 0 {
            store
                .replace(&user, |current, state| {
                    let mut record = current.cloned().expect("enrolled");
                    record.backup_codes =
                        BackupCodes::generate(BACKUP_CODES, CHEAP).unwrap().hashed;
                    let binding = record.backup_codes.binding();
                    Ok::<_, ()>((Some(record), (state.last_step, binding)))
                })
                .unwrap()
                .unwrap()
        } else {
            store
                .update(&user, |record, state| {
                    state.last_step += 1;
                    let binding = record.backup_codes.binding();
                    state.spend_code(binding, (state.last_step % BACKUP_CODES as u64) as usize);
                    (state.last_step, binding)
                })
                .unwrap()
                .expect("enrolled")
        };
        let (last_step, binding) = committed;
        let generation = state_file::decode(&fs::read(store.paths(&user).unwrap().1).unwrap())
            .unwrap()
            .generation;
        report(COMMITTED, format!("{generation} {last_step} {binding}"));
    }
}

#[test]
fn files_survive_a_writer_killed_at_random_moments() {
    let host = Host::new("");
    host.enroll("alice");
    let record_path = host.record_path("alice");
    let state_path = host.state_path("alice");
    let template = format!("{}/{{user}}.toml", host.records.display());
    let mut rng = Rng::from_env_or_random();
    let mut before = host.slotted("alice");
    let mut ahead_of_report = 0;
    let mut replaces_seen = 0;
    let mut spends_seen = 0;
    let mut commits = 0;
    for kill in 0..KILLS {
        let mut command = worker_command(WORKER, "writer");
        command
            .env("TWOFOLD_RECORDS", &template)
            .env("TWOFOLD_USER", "alice")
            .env("TWOFOLD_WRITER_SEED", rng.next().to_string());
        let mut writer = Worker::spawn(command);
        writer.wait_for(COMMITTED);
        std::thread::sleep(Duration::from_micros(rng.below(5_000)));
        writer.kill();
        let (_, lines) = writer.finish();
        let reported: Vec<(u64, u64, u64)> = lines
            .iter()
            .filter_map(|line| line.strip_prefix(COMMITTED))
            .map(|fields| {
                let numbers: Vec<u64> = fields.split(' ').map(|n| n.parse().unwrap()).collect();
                (numbers[0], numbers[1], numbers[2])
            })
            .collect();
        let &(last_generation, last_step, _) = reported.last().expect("one commit at least");
        commits += reported.len();

        let record = Record::parse(&fs::read(&record_path).unwrap())
            .unwrap_or_else(|e| panic!("kill {kill}: record does not parse: {e}"));
        let after = state_file::decode(&fs::read(&state_path).unwrap())
            .unwrap_or_else(|e| panic!("kill {kill}: state does not decode: {e}"));
        let (loaded_record, loaded_state) = host
            .store()
            .load(&user_name("alice"))
            .unwrap_or_else(|e| panic!("kill {kill}: store refuses the files: {e}"))
            .expect("still enrolled");
        assert_eq!(
            (&loaded_record, &loaded_state),
            (&record, &after.state),
            "kill {kill}"
        );

        // Nothing reported durable is lost, and at most the one change in flight is extra.
        assert!(
            (last_generation..=last_generation + 1).contains(&after.generation),
            "kill {kill}: generation {} on disk, {last_generation} reported",
            after.generation
        );
        assert!(
            after.state.last_step >= last_step,
            "kill {kill}: a reported step was lost"
        );
        ahead_of_report += usize::from(after.generation > last_generation);
        // Across kills: nothing goes backwards, and no spent code comes back.
        assert!(
            after.generation >= before.generation,
            "kill {kill}: generation went back"
        );
        assert!(
            after.state.last_step >= before.state.last_step,
            "kill {kill}: last_step went back"
        );
        if after.state.codes_binding == before.state.codes_binding {
            assert_eq!(
                before.state.spent_codes & !after.state.spent_codes,
                0,
                "kill {kill}: a spent code became unspent"
            );
        } else {
            replaces_seen += 1;
        }
        spends_seen += usize::from(after.state.spent_codes != before.state.spent_codes);
        assert_only_expected_files(&host.records);
        before = after;
    }
    let leftovers = temp_files(&host.records);
    eprintln!(
        "{KILLS} kills after {commits} commits: {ahead_of_report} left a change not yet reported, \
         {replaces_seen} saw new codes, {spends_seen} saw codes spent, {leftovers} temp files left"
    );
    // The kills must have hit the writer at work, not only before or after it.
    assert!(
        replaces_seen > 0 && spends_seen > 0,
        "the writer did too little"
    );
    // The next record replacement clears what killed writers left behind.
    let user = UserName::parse("alice").unwrap();
    host.store()
        .replace(&user, |current, _| Ok::<_, ()>((current.cloned(), ())))
        .unwrap()
        .unwrap();
    assert_eq!(
        temp_files(&host.records),
        0,
        "stale temp files survived a replacement"
    );
}

const KILLS: usize = 200;

/// The records directory holds the store marker, the record, the state and, after a kill during
/// a record replacement, nothing but the replacement's temp files.
fn assert_only_expected_files(records: &Path) {
    for entry in fs::read_dir(records).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let expected = name == STORE_MARKER
            || name == "alice.toml"
            || name == "alice.state"
            || (name.starts_with(".alice.toml.") && name.ends_with(".tmp"));
        assert!(expected, "unexpected file {name}");
    }
}

fn temp_files(records: &Path) -> usize {
    fs::read_dir(records)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count()
}

/// Two store updates, so that both slots hold a state: returns (older, newer).
fn two_states(host: &Host, user: &str) -> (Slotted, Slotted) {
    let store = host.store();
    let name = user_name(user);
    for step in [1_000, 2_000] {
        store
            .update(&name, |_, state| state.last_step = step)
            .unwrap()
            .unwrap();
    }
    let newer = host.slotted(user);
    assert_eq!(newer.state.last_step, 2_000);
    let older = Slotted {
        old_layout: false,
        generation: newer.generation - 1,
        state: State {
            last_step: 1_000,
            ..newer.state.clone()
        },
    };
    (older, newer)
}

/// The file offset of the slot holding `state`.
fn slot_of(state: &Slotted) -> usize {
    state.encode_slot().0 as usize
}

fn edit_state(host: &Host, user: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = host.state_path(user);
    let mut bytes = fs::read(&path).unwrap();
    edit(&mut bytes);
    write_file(&path, &bytes, 0o600);
}

#[test]
fn torn_newer_state_slot_falls_back_to_the_older_one() {
    let host = Host::new("");
    host.enroll("alice");
    let (older, newer) = two_states(&host, "alice");
    // A write that stopped half way: the slot's second half still holds zeros.
    let at = slot_of(&newer);
    edit_state(&host, "alice", |bytes| {
        bytes[at + SLOT_SIZE / 2..at + SLOT_SIZE].fill(0)
    });
    assert_eq!(host.slotted("alice"), older);
    let (_, loaded) = host.store().load(&user_name("alice")).unwrap().unwrap();
    assert_eq!(loaded, older.state);
    // The next write goes into the torn slot and leaves the older one alone.
    let older_slot =
        fs::read(host.state_path("alice")).unwrap()[slot_of(&older)..][..SLOT_SIZE].to_vec();
    host.store()
        .update(&user_name("alice"), |_, state| state.last_step = 3_000)
        .unwrap()
        .unwrap();
    let state = host.slotted("alice");
    assert_eq!(
        (state.generation, state.state.last_step),
        (newer.generation, 3_000)
    );
    let bytes = fs::read(host.state_path("alice")).unwrap();
    assert_eq!(&bytes[slot_of(&older)..][..SLOT_SIZE], &older_slot[..]);
}

#[test]
fn corrupted_newer_state_slot_falls_back_and_logins_go_on() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    let (older, newer) = two_states(&host, "alice");
    let at = slot_of(&newer);
    edit_state(&host, "alice", |bytes| bytes[at + 40] ^= 0x01);
    assert_eq!(host.slotted("alice"), older);
    host.login("alice", &[&alice.code(0)])
        .assert_rc(PAM_SUCCESS);
    let state = host.slotted("alice");
    assert_eq!(state.generation, newer.generation);
    assert!(state.state.last_step + 1 >= current_step(30));
}

#[test]
fn state_with_no_valid_slot_makes_login_unavailable() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    let (older, newer) = two_states(&host, "alice");
    let (a, b) = (slot_of(&older), slot_of(&newer));
    edit_state(&host, "alice", |bytes| {
        bytes[a + 100] ^= 0x80;
        bytes[b + SLOT_SIZE - 1] ^= 0x01;
    });
    for answer in [alice.code(0), alice.codes[0].clone()] {
        let login = host.login("alice", &[&answer]);
        login.assert_rc(PAM_AUTHINFO_UNAVAIL);
        assert_eq!(login.messages, vec![Message::Error(UNAVAILABLE.into())]);
    }
}

#[test]
fn state_file_of_the_wrong_size_makes_login_unavailable() {
    let host = Host::new("");
    let alice = host.enroll("alice");
    two_states(&host, "alice");
    for size in [
        1,
        SLOT_SIZE,
        SLOT_SIZE + 100,
        2 * SLOT_SIZE - 1,
        2 * SLOT_SIZE + 1,
    ] {
        edit_state(&host, "alice", |bytes| bytes.resize(size, 0));
        let login = host.login("alice", &[&alice.code(0)]);
        assert_eq!(login.rc, PAM_AUTHINFO_UNAVAIL, "size {size}: {login:#?}");
        assert!(login.prompts().is_empty(), "size {size}");
    }
}
