//! The file store's state file: two fixed-size slots.
//!
//! Layouts: `twofold3` (1 KiB slots, with security-key counters) is written; the 512-byte slots of
//! `twofold2` and `twofold1` files are still read. The first write to an old file puts the new
//! slot after the old ones, so a torn write there still leaves the old state readable.
//!
//! Each write goes to the slot not holding the newest state, stamped with the next generation and
//! a SHA-256 checksum, and is made durable with `fdatasync`. A torn or lost write therefore leaves
//! the older slot intact and valid: a reader sees the old state or the new one, never a mix, and a
//! login is reported successful only once its new state is durable. This costs one small in-place
//! write per login instead of a temp file, two fsyncs and a rename (see the README's design
//! section). The generation is this file's own business: the core never sees it.

use sha2::{Digest, Sha256};

use twofold_core::security_key::{CredentialTag, MAX_KEYS};
use twofold_core::state::{
    Failure, KeyUse, Origin, OriginLock, State, MAX_FAILURES, ORIGINS_BEFORE_GLOBAL_LOCK,
};

/// Bytes per slot; the file is two slots.
pub const SLOT_SIZE: usize = 1024;
/// Bytes in a state file.
pub const FILE_SIZE: usize = 2 * SLOT_SIZE;
/// Slots of the `twofold1` and `twofold2` layouts, and so the size of their files.
pub const LEGACY_SLOT_SIZE: usize = 512;
pub const LEGACY_FILE_SIZE: usize = 2 * LEGACY_SLOT_SIZE;

/// A state as read from its slot: the values and the slot's generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slotted {
    /// Bumped at every write; the valid slot with the highest generation is current.
    pub generation: u64,
    pub state: State,
    /// Read from an old layout's slots: the next write must leave them alone (see `for_upgrade`).
    /// True until a new-layout slot has been written and reads back valid, so a torn upgrade is
    /// retried the same safe way rather than overwriting the only valid copy.
    pub old_layout: bool,
}

/// Why a state file could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum StateError {
    /// The file has a size other than 0 or two slots.
    BadSize(u64),
    /// Neither slot has a valid checksum: the file was damaged or written by something else.
    NoValidSlot,
}

/// Decodes a state file's bytes. An empty file is a fresh state.
pub fn decode(bytes: &[u8]) -> Result<Slotted, StateError> {
    match bytes.len() {
        0 => Ok(Slotted::default()),
        LEGACY_FILE_SIZE => decode_old(bytes),
        // Being moved to the new layout: the old slots first, then the new slot (maybe torn).
        n if n > LEGACY_FILE_SIZE && n <= FILE_SIZE => {
            let upgraded = match n {
                FILE_SIZE => decode_pair(bytes, SLOT_SIZE).ok(),
                _ => None,
            };
            upgraded
                .map(Ok)
                .unwrap_or_else(|| decode_old(&bytes[..LEGACY_FILE_SIZE]))
        }
        n => Err(StateError::BadSize(n as u64)),
    }
}

fn decode_old(bytes: &[u8]) -> Result<Slotted, StateError> {
    decode_pair(bytes, LEGACY_SLOT_SIZE).map(|slotted| Slotted {
        old_layout: true,
        ..slotted
    })
}

fn decode_pair(bytes: &[u8], slot_size: usize) -> Result<Slotted, StateError> {
    let (a, b) = bytes.split_at(slot_size);
    // Try the slot that claims the higher generation first: it is the current one unless its
    // write was torn, so one checksum is usually enough.
    let (first, second) = if claimed_generation(b) > claimed_generation(a) {
        (b, a)
    } else {
        (a, b)
    };
    decode_slot(first)
        .or_else(|| decode_slot(second))
        .ok_or(StateError::NoValidSlot)
}

impl Slotted {
    /// Encodes `self` as the slot for its generation, returning the slot's file offset and bytes.
    pub fn encode_slot(&self) -> (u64, [u8; SLOT_SIZE]) {
        let state = &self.state;
        let mut slot = [0u8; SLOT_SIZE];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            slot[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(MAGIC);
        put(&self.generation.to_le_bytes());
        put(&state.last_step.to_le_bytes());
        put(&state.locked_until.to_le_bytes());
        put(&state.spent_codes.to_le_bytes());
        put(&state.codes_binding.to_le_bytes());
        let kept = &state.failures[state.failures.len().saturating_sub(MAX_FAILURES)..];
        put(&(kept.len() as u64).to_le_bytes());
        for failure in kept {
            put(&failure.at.to_le_bytes());
            put(&failure.origin.0.to_le_bytes());
        }
        let locks = &state.origin_locks[..state.origin_locks.len().min(MAX_ORIGIN_LOCKS)];
        put(&(locks.len() as u64).to_le_bytes());
        for lock in locks {
            put(&lock.origin.0.to_le_bytes());
            put(&lock.until.to_le_bytes());
        }
        let uses = &state.key_uses[state.key_uses.len().saturating_sub(MAX_KEYS)..];
        put(&(uses.len() as u64).to_le_bytes());
        for key_use in uses {
            put(&key_use.credential.0.to_le_bytes());
            put(&u64::from(key_use.sign_count).to_le_bytes());
            put(&key_use.last_used.to_le_bytes());
        }
        let digest = Sha256::digest(&slot[..at]);
        slot[CHECKSUM_AT..].copy_from_slice(&digest);
        let offset = (self.generation % 2) * SLOT_SIZE as u64;
        (offset, slot)
    }

    /// The first write to an old layout's file goes to the second new slot, past the old slots, so
    /// that the old state survives if it is torn: its generation is made odd.
    pub fn for_upgrade(self) -> Slotted {
        Slotted {
            generation: self.generation | 1,
            state: self.state,
            old_layout: false,
        }
    }

    /// `state` written as the next generation (so into the other slot).
    pub fn next(&self, state: State) -> Slotted {
        Slotted {
            generation: self.generation.wrapping_add(1),
            state,
            old_layout: self.old_layout,
        }
    }
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::BadSize(n) => {
                write!(f, "state file has {n} bytes, expected 0 or {FILE_SIZE}")
            }
            StateError::NoValidSlot => f.write_str("state file has no slot with a valid checksum"),
        }
    }
}

impl std::error::Error for StateError {}

/// A slot's generation as written, before any check: only to choose which slot to check first.
fn claimed_generation(slot: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&slot[MAGIC.len()..MAGIC.len() + 8]);
    u64::from_le_bytes(bytes)
}

/// A slot is valid when its magic is right for its size, the checksum covers its payload (which
/// says its own length), and everything between payload and checksum is zero, as written.
fn decode_slot(slot: &[u8]) -> Option<Slotted> {
    let layout = match (&slot[..MAGIC.len()], slot.len()) {
        (m, SLOT_SIZE) if m == MAGIC => Layout::Current,
        (m, LEGACY_SLOT_SIZE) if m == ORIGINS_MAGIC => Layout::Origins,
        (m, LEGACY_SLOT_SIZE) if m == FIRST_MAGIC => Layout::First,
        _ => return None,
    };
    let checksum_at = slot.len() - 32;
    let word = |i: usize| -> Option<u64> {
        let at = MAGIC.len() + 8 * i;
        let bytes = slot.get(at..at + 8).filter(|_| at + 8 <= checksum_at)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    };
    let count = usize::try_from(word(5)?)
        .ok()
        .filter(|&n| n <= MAX_FAILURES)?;
    // twofold1 kept one word per failure (its time, all local) and no origin locks.
    let per_failure = if layout == Layout::First { 1 } else { 2 };
    let locks_at = 6 + per_failure * count;
    let lock_count = match layout {
        Layout::First => 0,
        _ => usize::try_from(word(locks_at)?)
            .ok()
            .filter(|&n| n <= MAX_ORIGIN_LOCKS)?,
    };
    let uses_at = locks_at + 1 + 2 * lock_count;
    let use_count = match layout {
        Layout::Current => usize::try_from(word(uses_at)?)
            .ok()
            .filter(|&n| n <= MAX_KEYS)?,
        _ => 0,
    };
    let words = match layout {
        Layout::First => locks_at,
        Layout::Origins => uses_at,
        Layout::Current => uses_at + 1 + 3 * use_count,
    };
    let end = MAGIC.len() + 8 * words;
    if end > checksum_at || slot[end..checksum_at].iter().any(|&b| b != 0) {
        return None;
    }
    let digest = Sha256::digest(&slot[..end]);
    if digest.as_slice() != &slot[checksum_at..] {
        return None;
    }
    let failures = (0..count)
        .map(|i| match layout {
            Layout::First => Some(Failure {
                at: word(6 + i)?,
                origin: Origin::LOCAL,
            }),
            _ => Some(Failure {
                at: word(6 + 2 * i)?,
                origin: Origin(word(7 + 2 * i)?),
            }),
        })
        .collect::<Option<Vec<_>>>()?;
    let origin_locks = (0..lock_count)
        .map(|i| {
            Some(OriginLock {
                origin: Origin(word(locks_at + 1 + 2 * i)?),
                until: word(locks_at + 2 + 2 * i)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let key_uses = (0..use_count)
        .map(|i| {
            let at = uses_at + 1 + 3 * i;
            Some(KeyUse {
                credential: CredentialTag(word(at)?),
                sign_count: u32::try_from(word(at + 1)?).ok()?,
                last_used: word(at + 2)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Slotted {
        old_layout: false,
        generation: word(0)?,
        state: State {
            last_step: word(1)?,
            locked_until: word(2)?,
            spent_codes: word(3)?,
            codes_binding: word(4)?,
            failures,
            origin_locks,
            key_uses,
        },
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// twofold1: failures as bare times, no origin locks.
    First,
    /// twofold2: failures with origins, then the origin locks.
    Origins,
    /// twofold3: as twofold2, then the security keys' counters, in 1 KiB slots.
    Current,
}

const MAGIC: &[u8; 8] = b"twofold3";
const ORIGINS_MAGIC: &[u8; 8] = b"twofold2";
const FIRST_MAGIC: &[u8; 8] = b"twofold1";
const MAX_ORIGIN_LOCKS: usize = ORIGINS_BEFORE_GLOBAL_LOCK - 1;
const CHECKSUM_AT: usize = SLOT_SIZE - 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Slotted {
        Slotted {
            old_layout: false,
            generation: 7,
            state: State {
                last_step: 59_093_131,
                failures: vec![failure(1, 0), failure(2, 7), failure(3, 0)],
                locked_until: 99,
                origin_locks: vec![OriginLock {
                    origin: Origin(7),
                    until: 1_000,
                }],
                spent_codes: 0b101,
                codes_binding: 42,
                key_uses: vec![KeyUse {
                    credential: CredentialTag(0xfeed),
                    sign_count: 17,
                    last_used: 1_700_000_000,
                }],
            },
        }
    }

    fn failure(at: u64, origin: u64) -> Failure {
        Failure {
            at,
            origin: Origin(origin),
        }
    }

    fn file_with(states: &[&Slotted]) -> Vec<u8> {
        let mut file = vec![0u8; FILE_SIZE];
        for state in states {
            let (offset, slot) = state.encode_slot();
            let offset = offset as usize;
            file[offset..offset + SLOT_SIZE].copy_from_slice(&slot);
        }
        file
    }

    #[test]
    fn empty_file_is_a_fresh_state() {
        assert_eq!(decode(&[]).unwrap(), Slotted::default());
    }

    #[test]
    fn newest_valid_slot_wins() {
        let old = sample();
        let new = old.next(State {
            last_step: 59_093_132,
            ..old.state.clone()
        });
        assert_eq!(decode(&file_with(&[&old, &new])).unwrap(), new);
    }

    #[test]
    fn torn_newer_slot_falls_back_to_older() {
        let old = sample();
        let new = old.next(State {
            last_step: 59_093_132,
            ..old.state.clone()
        });
        let mut file = file_with(&[&old, &new]);
        let (offset, _) = new.encode_slot();
        // A write that stopped half way: the second half still holds zeros.
        for byte in &mut file[offset as usize + 100..offset as usize + SLOT_SIZE] {
            *byte = 0;
        }
        assert_eq!(decode(&file).unwrap(), old);
    }

    #[test]
    fn any_flipped_bit_invalidates_a_slot() {
        let state = sample();
        let clean = file_with(&[&state]);
        let (offset, _) = state.encode_slot();
        for bit in 0..SLOT_SIZE * 8 {
            let mut file = clean.clone();
            file[offset as usize + bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&file), Err(StateError::NoValidSlot), "bit {bit}");
        }
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert_eq!(decode(&[0; 10]), Err(StateError::BadSize(10)));
        assert_eq!(decode(&[0; FILE_SIZE]), Err(StateError::NoValidSlot));
    }

    #[test]
    fn only_the_newest_failures_are_kept() {
        let mut state = sample();
        state.state.failures = (0..30).map(|at| failure(at, at % 3)).collect();
        let decoded = decode(&file_with(&[&state])).unwrap();
        assert_eq!(decoded.state.failures, state.state.failures[10..]);
    }

    /// An old layout's slot: magic, then `words`, zeros, and the checksum of what was written.
    fn legacy_slot(magic: &[u8; 8], words: &[u64]) -> [u8; LEGACY_SLOT_SIZE] {
        let mut slot = [0u8; LEGACY_SLOT_SIZE];
        slot[..8].copy_from_slice(magic);
        for (i, w) in words.iter().enumerate() {
            slot[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        let end = 8 + 8 * words.len();
        let digest = Sha256::digest(&slot[..end]);
        slot[LEGACY_SLOT_SIZE - 32..].copy_from_slice(&digest);
        slot
    }

    #[test]
    fn a_first_layout_file_is_read_with_its_failures_as_local() {
        // twofold1: magic, generation, last step, lock, spent, binding, count, then bare times.
        let slot = legacy_slot(FIRST_MAGIC, &[3, 59_093_131, 99, 0b101, 42, 2, 10, 11]);
        let mut file = vec![0u8; LEGACY_FILE_SIZE];
        file[LEGACY_SLOT_SIZE..].copy_from_slice(&slot);
        let decoded = decode(&file).unwrap();
        assert_eq!(decoded.generation, 3);
        assert_eq!(decoded.state.locked_until, 99);
        assert_eq!(decoded.state.failures, [failure(10, 0), failure(11, 0)]);
        assert!(decoded.state.origin_locks.is_empty());
    }

    #[test]
    fn an_origins_layout_file_is_read_and_upgraded_without_risking_it() {
        // twofold2: ... count, (time, origin) pairs, lock count, (origin, until) pairs.
        let slot = legacy_slot(
            ORIGINS_MAGIC,
            &[4, 59_093_131, 0, 0b1, 42, 1, 10, 7, 1, 7, 500],
        );
        let mut file = vec![0u8; LEGACY_FILE_SIZE];
        file[..LEGACY_SLOT_SIZE].copy_from_slice(&slot);
        let decoded = decode(&file).unwrap();
        assert_eq!(decoded.generation, 4);
        assert_eq!(decoded.state.failures, [failure(10, 7)]);
        assert_eq!(decoded.state.origin_locks.len(), 1);
        assert!(decoded.old_layout);
        // The upgrade writes the new slot past the old ones (an odd generation).
        let next = decoded.next(decoded.state.clone()).for_upgrade();
        let (offset, new_slot) = next.encode_slot();
        assert_eq!(offset, SLOT_SIZE as u64);
        // Torn at any point (the file grown part way, or all the way with a partial slot), the
        // old state is what is read.
        for written in [1, 100, SLOT_SIZE - 1] {
            let mut torn = file.clone();
            torn.resize(SLOT_SIZE, 0);
            torn.extend_from_slice(&new_slot[..written]);
            assert_eq!(decode(&torn).unwrap(), decoded, "{written} bytes written");
            torn.resize(FILE_SIZE, 0);
            assert_eq!(decode(&torn).unwrap(), decoded, "{written} bytes, grown");
        }
        let mut upgraded = file.clone();
        upgraded.resize(SLOT_SIZE, 0);
        upgraded.extend_from_slice(&new_slot);
        assert_eq!(decode(&upgraded).unwrap(), next);
        assert!(!decode(&upgraded).unwrap().old_layout);
        // Torn with the file grown all the way, the old state reads back as old: the write after
        // it goes past the old slots again, never over the only valid copy.
        let mut torn = upgraded.clone();
        torn[SLOT_SIZE + 100..].fill(0);
        let reread = decode(&torn).unwrap();
        assert_eq!((reread.old_layout, &reread.state), (true, &decoded.state));
        let retried = reread.next(reread.state.clone()).for_upgrade();
        assert_eq!(retried.encode_slot().0, SLOT_SIZE as u64);
        // The write after it overwrites the old slots with a new one.
        let after = next.next(next.state.clone());
        assert_eq!(after.encode_slot().0, 0);
    }

    #[test]
    fn key_counters_round_trip_and_the_most_are_kept() {
        let mut state = sample();
        state.state.key_uses = (0..MAX_KEYS as u64)
            .map(|i| KeyUse {
                credential: CredentialTag(i),
                sign_count: u32::MAX - i as u32,
                last_used: i,
            })
            .collect();
        assert_eq!(decode(&file_with(&[&state])).unwrap(), state);
    }
}
