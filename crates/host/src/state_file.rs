//! The file store's state file: two fixed-size slots.
//!
//! Each write goes to the slot not holding the newest state, stamped with the next generation and
//! a SHA-256 checksum, and is made durable with `fdatasync`. A torn or lost write therefore leaves
//! the older slot intact and valid: a reader sees the old state or the new one, never a mix, and a
//! login is reported successful only once its new state is durable. This costs one small in-place
//! write per login instead of a temp file, two fsyncs and a rename (see the README's design
//! section). The generation is this file's own business: the core never sees it.

use sha2::{Digest, Sha256};

use twofold_core::state::{
    Failure, Origin, OriginLock, State, MAX_FAILURES, ORIGINS_BEFORE_GLOBAL_LOCK,
};

/// Bytes per slot; the file is two slots.
pub const SLOT_SIZE: usize = 512;
/// Bytes in a state file.
pub const FILE_SIZE: usize = 2 * SLOT_SIZE;

/// A state as read from its slot: the values and the slot's generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slotted {
    /// Bumped at every write; the valid slot with the highest generation is current.
    pub generation: u64,
    pub state: State,
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
    if bytes.is_empty() {
        return Ok(Slotted::default());
    }
    if bytes.len() != FILE_SIZE {
        return Err(StateError::BadSize(bytes.len() as u64));
    }
    let (a, b) = bytes.split_at(SLOT_SIZE);
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
        let digest = Sha256::digest(&slot[..at]);
        slot[CHECKSUM_AT..].copy_from_slice(&digest);
        let offset = (self.generation % 2) * SLOT_SIZE as u64;
        (offset, slot)
    }

    /// `state` written as the next generation (so into the other slot).
    pub fn next(&self, state: State) -> Slotted {
        Slotted {
            generation: self.generation.wrapping_add(1),
            state,
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

/// A slot is valid when its magic is right, the checksum covers its payload (which says its own
/// length), and everything between payload and checksum is zero, as written.
fn decode_slot(slot: &[u8]) -> Option<Slotted> {
    if slot.len() != SLOT_SIZE {
        return None;
    }
    let legacy = match &slot[..MAGIC.len()] {
        m if m == MAGIC => false,
        m if m == LEGACY_MAGIC => true,
        _ => return None,
    };
    let word = |i: usize| {
        let at = MAGIC.len() + 8 * i;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&slot[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let count = usize::try_from(word(5))
        .ok()
        .filter(|&n| n <= MAX_FAILURES)?;
    // twofold1 kept one word per failure (its time, all local) and no origin locks.
    let per_failure = if legacy { 1 } else { 2 };
    let locks_at = 6 + per_failure * count;
    let lock_count = if legacy {
        0
    } else {
        usize::try_from(word(locks_at))
            .ok()
            .filter(|&n| n <= MAX_ORIGIN_LOCKS)?
    };
    let words = if legacy {
        locks_at
    } else {
        locks_at + 1 + 2 * lock_count
    };
    let end = MAGIC.len() + 8 * words;
    if slot[end..CHECKSUM_AT].iter().any(|&b| b != 0) {
        return None;
    }
    let digest = Sha256::digest(&slot[..end]);
    if digest.as_slice() != &slot[CHECKSUM_AT..] {
        return None;
    }
    let failures = (0..count)
        .map(|i| match legacy {
            true => Failure {
                at: word(6 + i),
                origin: Origin::LOCAL,
            },
            false => Failure {
                at: word(6 + 2 * i),
                origin: Origin(word(7 + 2 * i)),
            },
        })
        .collect();
    let origin_locks = (0..lock_count)
        .map(|i| OriginLock {
            origin: Origin(word(locks_at + 1 + 2 * i)),
            until: word(locks_at + 2 + 2 * i),
        })
        .collect();
    Some(Slotted {
        generation: word(0),
        state: State {
            last_step: word(1),
            locked_until: word(2),
            spent_codes: word(3),
            codes_binding: word(4),
            failures,
            origin_locks,
        },
    })
}

/// Since origins were counted: failures are (time, origin) pairs, then the origin locks.
const MAGIC: &[u8; 8] = b"twofold2";
/// The first layout, still read: failures as bare times, no origin locks.
const LEGACY_MAGIC: &[u8; 8] = b"twofold1";
const MAX_ORIGIN_LOCKS: usize = ORIGINS_BEFORE_GLOBAL_LOCK - 1;
const CHECKSUM_AT: usize = SLOT_SIZE - 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Slotted {
        Slotted {
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

    #[test]
    fn a_first_layout_file_is_read_with_its_failures_as_local() {
        // twofold1: magic, generation, last step, lock, spent, binding, count, then bare times.
        let mut slot = [0u8; SLOT_SIZE];
        let words: [u64; 8] = [3, 59_093_131, 99, 0b101, 42, 2, 10, 11];
        slot[..8].copy_from_slice(LEGACY_MAGIC);
        for (i, w) in words.iter().enumerate() {
            slot[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        let end = 8 + 8 * words.len();
        let digest = Sha256::digest(&slot[..end]);
        slot[CHECKSUM_AT..].copy_from_slice(&digest);
        let mut file = vec![0u8; FILE_SIZE];
        file[SLOT_SIZE..].copy_from_slice(&slot);
        let decoded = decode(&file).unwrap();
        assert_eq!(decoded.generation, 3);
        assert_eq!(decoded.state.locked_until, 99);
        assert_eq!(decoded.state.failures, [failure(10, 0), failure(11, 0)]);
        assert!(decoded.state.origin_locks.is_empty());
        // The next write uses the new layout, which reads back the same.
        let next = decoded.next(decoded.state.clone());
        assert_eq!(decode(&file_with(&[&decoded, &next])).unwrap(), next);
    }
}
