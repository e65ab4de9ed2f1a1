//! One-time backup codes: generation, argon2id hashing, and checking a typed code.
//!
//! A user's codes share one random salt, so checking a typed code costs exactly one argon2
//! evaluation however many codes are left; the salt is still unique per user (and per
//! regeneration), so nothing can be precomputed across users. Which codes are spent lives in the
//! mutable state, not here. Codes themselves are never stored.

use std::fmt;

use argon2::{Argon2, Params};
use base64ct::{Base64Unpadded, Encoding};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The most codes one record may hold (the state tracks spent codes in a 64-bit mask).
pub const MAX_CODES: usize = 64;

/// A user's backup codes, as hashes that all share one salt and one set of argon2 parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupCodes {
    cost: Cost,
    salt: Vec<u8>,
    hashes: Vec<[u8; HASH_LEN]>,
}

/// Freshly generated codes, to show the user once, and their hashes to store.
pub struct NewCodes {
    pub plain: Vec<Zeroizing<String>>,
    pub hashed: BackupCodes,
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

/// A typed code normalized to the form that was hashed; it has the shape of a backup code.
pub struct Candidate(Zeroizing<String>);

/// The argon2 output of a candidate under one set's salt and cost.
pub struct CandidateHash {
    binding: u64,
    hash: Zeroizing<[u8; HASH_LEN]>,
}

/// Why stored backup codes were refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BackupCodeError {
    /// An entry is not a `$argon2id$v=19$m=..,t=..,p=..$salt$hash` string.
    Malformed(usize),
    /// Entries use different salts or costs; they must share them (one hash per check).
    Mixed(usize),
    /// Costs outside what this module will compute at login.
    CostOutOfRange(usize),
    /// More than `MAX_CODES` entries.
    TooMany(usize),
    /// The system random generator failed.
    Random,
}

impl Cost {
    /// OWASP's recommended argon2id minimum: 19 MiB, 2 passes; about 50 ms here.
    pub const DEFAULT: Cost = Cost {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };

    fn argon2(self) -> Option<Argon2<'static>> {
        let params = Params::new(self.m_kib, self.t, self.p, Some(HASH_LEN)).ok()?;
        Some(Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }

    fn in_range(self) -> bool {
        (MIN_M_KIB..=MAX_M_KIB).contains(&self.m_kib)
            && (1..=MAX_T).contains(&self.t)
            && (1..=MAX_P).contains(&self.p)
            && u64::from(self.m_kib) * u64::from(self.t)
                <= 4 * u64::from(Cost::DEFAULT.m_kib) * u64::from(Cost::DEFAULT.t)
    }
}

impl BackupCodes {
    /// An empty set (no backup codes).
    pub fn empty() -> BackupCodes {
        BackupCodes {
            cost: Cost::DEFAULT,
            salt: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// Generates `count` new random codes.
    pub fn generate(count: usize, cost: Cost) -> Result<NewCodes, BackupCodeError> {
        let mut plain = Vec::with_capacity(count);
        for _ in 0..count {
            plain.push(random_code()?);
        }
        let hashed = BackupCodes::hash(&plain, cost)?;
        Ok(NewCodes { plain, hashed })
    }

    /// Hashes existing plain codes (for imports), normalizing them as typed input would be.
    pub fn hash(codes: &[Zeroizing<String>], cost: Cost) -> Result<BackupCodes, BackupCodeError> {
        if codes.len() > MAX_CODES {
            return Err(BackupCodeError::TooMany(codes.len()));
        }
        if codes.is_empty() {
            return Ok(BackupCodes::empty());
        }
        let mut salt = vec![0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|_| BackupCodeError::Random)?;
        let argon2 = cost.argon2().ok_or(BackupCodeError::CostOutOfRange(0))?;
        let mut hashes = Vec::with_capacity(codes.len());
        for (index, code) in codes.iter().enumerate() {
            let normalized = Candidate::parse(code).ok_or(BackupCodeError::Malformed(index))?;
            let mut out = [0u8; HASH_LEN];
            argon2
                .hash_password_into(normalized.0.as_bytes(), &salt, &mut out)
                .map_err(|_| BackupCodeError::CostOutOfRange(index))?;
            hashes.push(out);
        }
        Ok(BackupCodes { cost, salt, hashes })
    }

    /// Parses stored PHC strings, refusing mixed salts and costs out of range.
    pub fn from_phc<S: AsRef<str>>(entries: &[S]) -> Result<BackupCodes, BackupCodeError> {
        if entries.len() > MAX_CODES {
            return Err(BackupCodeError::TooMany(entries.len()));
        }
        let mut set: Option<BackupCodes> = None;
        for (index, entry) in entries.iter().enumerate() {
            let (cost, salt, hash) =
                parse_phc(entry.as_ref()).ok_or(BackupCodeError::Malformed(index))?;
            if !cost.in_range() {
                return Err(BackupCodeError::CostOutOfRange(index));
            }
            match &mut set {
                None => {
                    set = Some(BackupCodes {
                        cost,
                        salt,
                        hashes: vec![hash],
                    })
                }
                Some(set) if set.cost == cost && set.salt == salt => set.hashes.push(hash),
                Some(_) => return Err(BackupCodeError::Mixed(index)),
            }
        }
        Ok(set.unwrap_or_else(BackupCodes::empty))
    }

    /// The stored form: one PHC string per code.
    pub fn to_phc(&self) -> Vec<String> {
        let salt = Base64Unpadded::encode_string(&self.salt);
        self.hashes
            .iter()
            .map(|hash| {
                format!(
                    "$argon2id$v=19$m={},t={},p={}${salt}${}",
                    self.cost.m_kib,
                    self.cost.t,
                    self.cost.p,
                    Base64Unpadded::encode_string(hash)
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Identifies this set of codes, so that spent marks recorded against an older set (before a
    /// regeneration) are never applied to this one.
    pub fn binding(&self) -> u64 {
        if self.hashes.is_empty() {
            return 0;
        }
        let mut digest = Sha256::new();
        digest.update(&self.salt);
        for hash in &self.hashes {
            digest.update(hash);
        }
        let out = digest.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_le_bytes(first)
    }

    /// Hashes a candidate under this set's salt: the one argon2 evaluation a check costs.
    pub fn hash_candidate(&self, candidate: &Candidate) -> Option<CandidateHash> {
        if self.hashes.is_empty() {
            return None;
        }
        let argon2 = self.cost.argon2()?;
        let mut hash = Zeroizing::new([0u8; HASH_LEN]);
        argon2
            .hash_password_into(candidate.0.as_bytes(), &self.salt, hash.as_mut())
            .ok()?;
        Some(CandidateHash {
            binding: self.binding(),
            hash,
        })
    }

    /// The index of the code matching `hashed`, compared in constant time against every entry.
    /// `None` if no code matches or `hashed` was computed for another set.
    pub fn find(&self, hashed: &CandidateHash) -> Option<usize> {
        if hashed.binding != self.binding() {
            return None;
        }
        let mut found = None;
        for (index, stored) in self.hashes.iter().enumerate() {
            if bool::from(stored.ct_eq(hashed.hash.as_ref())) {
                found = Some(index);
            }
        }
        found
    }
}

impl CandidateHash {
    /// Whether this hash was computed with `codes`' salt and cost.
    pub fn is_for(&self, codes: &BackupCodes) -> bool {
        self.binding == codes.binding()
    }
}

impl Candidate {
    /// Normalizes typed input (spaces and dashes dropped, letters lowercased) and accepts it if it
    /// has the shape of a backup code: ten characters of our alphabet, or eight digits (the
    /// scratch codes that google-authenticator issued, kept on import).
    pub fn parse(typed: &str) -> Option<Candidate> {
        let mut normalized = Zeroizing::new(String::with_capacity(typed.len()));
        for c in typed.chars() {
            match c {
                ' ' | '-' => {}
                c if c.is_ascii_alphanumeric() => normalized.push(c.to_ascii_lowercase()),
                _ => return None,
            }
        }
        let ours =
            normalized.len() == CODE_LEN && normalized.bytes().all(|b| ALPHABET.contains(&b));
        let scratch = normalized.len() == 8 && normalized.bytes().all(|b| b.is_ascii_digit());
        (ours || scratch).then_some(Candidate(normalized))
    }
}

impl fmt::Display for BackupCodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupCodeError::Malformed(i) => {
                write!(f, "backup code {} is not an argon2id PHC string", i + 1)
            }
            BackupCodeError::Mixed(i) => write!(
                f,
                "backup code {} uses another salt or cost than the first; regenerate the codes",
                i + 1
            ),
            BackupCodeError::CostOutOfRange(i) => {
                write!(f, "backup code {} has argon2 costs out of range", i + 1)
            }
            BackupCodeError::TooMany(n) => write!(f, "{n} backup codes; at most {MAX_CODES}"),
            BackupCodeError::Random => f.write_str("the system random generator failed"),
        }
    }
}

impl std::error::Error for BackupCodeError {}

/// Computes one hash at the default cost and throws it away: what checking a backup code costs,
/// spent where there is nothing to check, so that timing does not tell who is enrolled.
pub fn spend_one_hash(candidate: &Candidate) {
    if let Some(argon2) = Cost::DEFAULT.argon2() {
        let mut out = Zeroizing::new([0u8; HASH_LEN]);
        let _ = argon2.hash_password_into(candidate.0.as_bytes(), &[0u8; SALT_LEN], out.as_mut());
    }
}

/// Formats a code for display: `abcde-fghjk`.
pub fn display(code: &str) -> String {
    let mut out = String::with_capacity(CODE_LEN + 1);
    push_display(&mut out, code);
    out
}

/// Appends a code formatted for display, with no copy of it left behind outside `out`.
pub fn push_display(out: &mut String, code: &str) {
    match (code.len() == CODE_LEN).then(|| code.split_at(5)) {
        Some((head, tail)) => {
            out.push_str(head);
            out.push('-');
            out.push_str(tail);
        }
        None => out.push_str(code),
    }
}

fn random_code() -> Result<Zeroizing<String>, BackupCodeError> {
    let mut code = Zeroizing::new(String::with_capacity(CODE_LEN));
    let mut buf = Zeroizing::new([0u8; 32]);
    while code.len() < CODE_LEN {
        getrandom::fill(buf.as_mut()).map_err(|_| BackupCodeError::Random)?;
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        for &b in buf.iter() {
            if usize::from(b) < limit && code.len() < CODE_LEN {
                code.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(code)
}

fn parse_phc(entry: &str) -> Option<(Cost, Vec<u8>, [u8; HASH_LEN])> {
    let rest = entry.strip_prefix("$argon2id$v=19$m=")?;
    let mut parts = rest.split('$');
    let params = parts.next()?;
    let salt = Base64Unpadded::decode_vec(parts.next()?).ok()?;
    let hash = Base64Unpadded::decode_vec(parts.next()?).ok()?;
    if parts.next().is_some() || !(8..=64).contains(&salt.len()) {
        return None;
    }
    let (m, rest) = params.split_once(",t=")?;
    let (t, p) = rest.split_once(",p=")?;
    let cost = Cost {
        m_kib: m.parse().ok()?,
        t: t.parse().ok()?,
        p: p.parse().ok()?,
    };
    Some((cost, salt, hash.try_into().ok()?))
}

/// Lowercase letters and digits without the look-alikes 0/o, 1/l/i.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const CODE_LEN: usize = 10;
const HASH_LEN: usize = 32;
const SALT_LEN: usize = 16;
const MIN_M_KIB: u32 = 8;
// Bounds what a record can make the module compute at login: a hostile record (a user's own, with
// home records) must not make one attempt cost much more than four default hashes.
const MAX_M_KIB: u32 = 64 * 1024;
const MAX_T: u32 = 8;
const MAX_P: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters keep unit tests fast; the format is the same.
    const TEST_COST: Cost = Cost {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    #[test]
    fn generated_codes_are_distinct_and_well_formed() {
        let new = BackupCodes::generate(10, TEST_COST).unwrap();
        assert_eq!(new.plain.len(), 10);
        assert_eq!(new.hashed.len(), 10);
        for code in &new.plain {
            assert_eq!(code.len(), 10);
            assert!(Candidate::parse(code).is_some());
        }
        let mut unique: Vec<_> = new.plain.iter().map(|c| c.to_string()).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
    }

    #[test]
    fn typed_code_is_found_with_spaces_dashes_and_capitals() {
        let new = BackupCodes::generate(3, TEST_COST).unwrap();
        let typed = display(&new.plain[1]).to_uppercase().replace('-', " - ");
        let hashed = new
            .hashed
            .hash_candidate(&Candidate::parse(&typed).unwrap())
            .unwrap();
        assert_eq!(new.hashed.find(&hashed), Some(1));
    }

    #[test]
    fn wrong_code_is_not_found() {
        let new = BackupCodes::generate(3, TEST_COST).unwrap();
        let hashed = new
            .hashed
            .hash_candidate(&Candidate::parse("abcdefghjk").unwrap())
            .unwrap();
        assert_eq!(new.hashed.find(&hashed), None);
    }

    #[test]
    fn phc_round_trip_keeps_codes_valid() {
        let new = BackupCodes::generate(2, TEST_COST).unwrap();
        let stored = new.hashed.to_phc();
        assert!(stored[0].starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let parsed = BackupCodes::from_phc(&stored).unwrap();
        assert_eq!(parsed, new.hashed);
        let hashed = parsed
            .hash_candidate(&Candidate::parse(&new.plain[0]).unwrap())
            .unwrap();
        assert_eq!(parsed.find(&hashed), Some(0));
    }

    #[test]
    fn hash_for_another_set_never_matches() {
        let a = BackupCodes::generate(2, TEST_COST).unwrap();
        let b = BackupCodes::hash(&a.plain, TEST_COST).unwrap();
        let hashed = a
            .hashed
            .hash_candidate(&Candidate::parse(&a.plain[0]).unwrap())
            .unwrap();
        assert_eq!(b.find(&hashed), None);
        assert_ne!(a.hashed.binding(), b.binding());
    }

    #[test]
    fn imported_scratch_codes_work() {
        let scratch = vec![Zeroizing::new("12345678".to_string())];
        let set = BackupCodes::hash(&scratch, TEST_COST).unwrap();
        let hashed = set
            .hash_candidate(&Candidate::parse("1234 5678").unwrap())
            .unwrap();
        assert_eq!(set.find(&hashed), Some(0));
    }

    #[test]
    fn shapes_that_are_not_backup_codes_are_refused() {
        for typed in [
            "123456",
            "1234567",
            "abcdefghj",
            "abcdefghjkm",
            "abcdefghj0",
            "12345678\0",
            "äbcdefghjk",
        ] {
            assert!(Candidate::parse(typed).is_none(), "{typed:?}");
        }
    }

    #[test]
    fn malformed_and_mixed_entries_are_refused() {
        assert_eq!(
            BackupCodes::from_phc(&["$argon2i$x"]),
            Err(BackupCodeError::Malformed(0))
        );
        let a = BackupCodes::generate(1, TEST_COST).unwrap().hashed.to_phc();
        let b = BackupCodes::generate(1, TEST_COST).unwrap().hashed.to_phc();
        assert_eq!(
            BackupCodes::from_phc(&[a[0].clone(), b[0].clone()]),
            Err(BackupCodeError::Mixed(1))
        );
        let huge = a[0].replace("m=64,", "m=99999999,");
        assert_eq!(
            BackupCodes::from_phc(&[huge]),
            Err(BackupCodeError::CostOutOfRange(0))
        );
    }
}
