//! The subset of CBOR (RFC 8949) that CTAP2 and COSE keys use: integers, byte and text strings,
//! arrays, maps, booleans and null, all of definite length.
//!
//! Security keys and browsers are hostile input: decoding refuses indefinite lengths, tags, floats,
//! nesting deeper than `MAX_DEPTH`, lengths beyond the input, map keys that are arrays or maps,
//! duplicate keys, and trailing bytes; it never panics and
//! never allocates more than the input could hold. Encoding writes CTAP2's canonical form
//! (shortest lengths, map keys sorted), which authenticators require of requests.

use std::fmt;

/// Deeper nesting than any CTAP2 message or COSE key has.
pub const MAX_DEPTH: usize = 8;

/// One decoded item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Major types 0 and 1; CTAP2 integers fit in an i64, and larger ones are refused.
    Int(i64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Value>),
    /// In the order found (duplicate keys are refused).
    Map(Vec<(Value, Value)>),
    Bool(bool),
    Null,
}

/// Why bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CborError {
    /// The input ended inside an item.
    Truncated,
    /// Bytes left after the one top-level item.
    TrailingBytes,
    /// Nested deeper than `MAX_DEPTH`.
    TooDeep,
    /// An indefinite length, a tag, a float or another item outside the subset.
    Unsupported,
    /// A text string that is not UTF-8.
    BadText,
    /// An integer outside i64.
    IntegerRange,
    /// A map with the same key twice.
    DuplicateKey,
}

impl fmt::Display for CborError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CborError::Truncated => "CBOR ends inside an item",
            CborError::TrailingBytes => "bytes after the CBOR item",
            CborError::TooDeep => "CBOR nested too deeply",
            CborError::Unsupported => "CBOR item outside the CTAP2 subset",
            CborError::BadText => "CBOR text is not UTF-8",
            CborError::IntegerRange => "CBOR integer out of range",
            CborError::DuplicateKey => "CBOR map has a duplicate key",
        })
    }
}

impl std::error::Error for CborError {}

/// Decodes exactly one item that fills `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let (value, rest) = decode_prefix(bytes)?;
    if !rest.is_empty() {
        return Err(CborError::TrailingBytes);
    }
    Ok(value)
}

/// Decodes the first item of `bytes` and returns the bytes after it (authenticator data carries
/// a COSE key followed by extensions, with no length in between).
pub fn decode_prefix(bytes: &[u8]) -> Result<(Value, &[u8]), CborError> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.item(0)?;
    Ok((value, &bytes[reader.at..]))
}

/// Encodes `value` in CTAP2 canonical form.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

impl Value {
    /// The value under integer key `key`, if this is a map that has it.
    pub fn get(&self, key: i64) -> Option<&Value> {
        self.get_key(&Value::Int(key))
    }

    /// The value under text key `key`, if this is a map that has it.
    pub fn get_text(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_key(&self, key: &Value) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// A map with integer keys, as CTAP2 requests are built.
    pub fn int_map(entries: impl IntoIterator<Item = (i64, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Int(k), v))
                .collect(),
        )
    }

    /// A map with text keys.
    pub fn text_map<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Text(k.to_string()), v))
                .collect(),
        )
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let end = self.at.checked_add(n).ok_or(CborError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(CborError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The argument of an initial byte: the value itself, or the length or count that follows.
    fn argument(&mut self, info: u8) -> Result<u64, CborError> {
        let width = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            // 28..=30 are reserved; 31 is an indefinite length.
            _ => return Err(CborError::Unsupported),
        };
        let mut word = [0u8; 8];
        word[8 - width..].copy_from_slice(self.take(width)?);
        Ok(u64::from_be_bytes(word))
    }

    /// A length or count no larger than what is left of the input (every item takes a byte).
    fn length(&mut self, info: u8) -> Result<usize, CborError> {
        let n = self.argument(info)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.remaining())
            .ok_or(CborError::Truncated)
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        Ok(match major {
            0 => {
                let n = self.argument(info)?;
                Value::Int(i64::try_from(n).map_err(|_| CborError::IntegerRange)?)
            }
            1 => {
                let n = self.argument(info)?;
                let n = i64::try_from(n).map_err(|_| CborError::IntegerRange)?;
                Value::Int(-1 - n)
            }
            2 => {
                let n = self.length(info)?;
                Value::Bytes(self.take(n)?.to_vec())
            }
            3 => {
                let n = self.length(info)?;
                let text = std::str::from_utf8(self.take(n)?).map_err(|_| CborError::BadText)?;
                Value::Text(text.to_string())
            }
            4 => {
                let n = self.length(info)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let n = self.length(info)?;
                let mut entries: Vec<(Value, Value)> = Vec::with_capacity(n);
                for _ in 0..n {
                    let key = self.item(depth + 1)?;
                    // CTAP2 and COSE keys are integers and strings. An array or map key would
                    // compare by arrival order while encoding sorts it, so two keys equal in
                    // CBOR could both pass the duplicate check (found by fuzzing).
                    if matches!(key, Value::Array(_) | Value::Map(_)) {
                        return Err(CborError::Unsupported);
                    }
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(CborError::DuplicateKey);
                    }
                    let value = self.item(depth + 1)?;
                    entries.push((key, value));
                }
                Value::Map(entries)
            }
            7 => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                _ => return Err(CborError::Unsupported),
            },
            // 6: tags.
            _ => return Err(CborError::Unsupported),
        })
    }
}

fn write_head(major: u8, n: u64, out: &mut Vec<u8>) {
    let major = major << 5;
    match n {
        0..=23 => out.push(major | n as u8),
        24..=0xff => out.extend([major | 24, n as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Int(n) if *n >= 0 => write_head(0, n.unsigned_abs(), out),
        // -1 - n for n >= 0 is the encoded argument.
        Value::Int(n) => write_head(1, (-1 - *n) as u64, out),
        Value::Bytes(b) => {
            write_head(2, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            write_head(3, t.len() as u64, out);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            write_head(4, items.len() as u64, out);
            for item in items {
                write(item, out);
            }
        }
        Value::Map(entries) => {
            // Canonical order: shorter encoded keys first, then bytewise.
            let mut encoded: Vec<(Vec<u8>, &Value)> =
                entries.iter().map(|(k, v)| (encode(k), v)).collect();
            encoded.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            write_head(5, encoded.len() as u64, out);
            for (key, value) in encoded {
                out.extend(key);
                write(value, out);
            }
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc_8949_appendix_a_examples_round_trip() {
        let cases = [
            ("00", Value::Int(0)),
            ("17", Value::Int(23)),
            ("1818", Value::Int(24)),
            ("1903e8", Value::Int(1000)),
            ("1a000f4240", Value::Int(1_000_000)),
            ("1b000000e8d4a51000", Value::Int(1_000_000_000_000)),
            ("20", Value::Int(-1)),
            ("3863", Value::Int(-100)),
            ("3903e7", Value::Int(-1000)),
            ("40", Value::Bytes(vec![])),
            ("4401020304", Value::Bytes(vec![1, 2, 3, 4])),
            ("6449455446", Value::Text("IETF".into())),
            ("f4", Value::Bool(false)),
            ("f5", Value::Bool(true)),
            ("f6", Value::Null),
            (
                "83010203",
                Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
            ),
            (
                "a201020304",
                Value::int_map([(1, Value::Int(2)), (3, Value::Int(4))]),
            ),
        ];
        for (encoded, value) in cases {
            assert_eq!(decode(&hex(encoded)), Ok(value.clone()), "{encoded}");
            assert_eq!(encode(&value), hex(encoded), "{encoded}");
        }
    }

    #[test]
    fn map_keys_are_written_in_canonical_order() {
        let map = Value::Map(vec![
            (Value::Text("up".into()), Value::Bool(true)),
            (Value::Int(-1), Value::Int(1)),
            (Value::Int(3), Value::Int(-7)),
            (Value::Int(1), Value::Int(2)),
        ]);
        // 1, 3, -1 (0x20), then the text key.
        assert_eq!(encode(&map), hex("a4010203262001627570f5"));
    }

    #[test]
    fn what_is_outside_the_subset_or_malformed_is_refused() {
        let refused = [
            ("", CborError::Truncated),
            ("18", CborError::Truncated),
            ("5f", CborError::Unsupported),     // indefinite bytes
            ("9f01ff", CborError::Unsupported), // indefinite array
            ("c11a514b67b0", CborError::Unsupported), // a tag
            ("f93c00", CborError::Unsupported), // a half float
            ("1bffffffffffffffff", CborError::IntegerRange),
            ("62c328", CborError::BadText),
            ("0000", CborError::TrailingBytes),
            ("a201020103", CborError::DuplicateKey),
            // Map keys that are maps (equal in CBOR, in another order) or arrays.
            ("a2a20102030400a20304010200", CborError::Unsupported),
            ("a1810100", CborError::Unsupported),
            ("5a7fffffff", CborError::Truncated), // a length beyond the input
            ("9bffffffffffffffff", CborError::Truncated),
        ];
        for (bytes, error) in refused {
            assert_eq!(decode(&hex(bytes)), Err(error), "{bytes}");
        }
        let deep = [vec![0x81u8; MAX_DEPTH + 1], vec![0x00]].concat();
        assert_eq!(decode(&deep), Err(CborError::TooDeep));
        let deepest = [vec![0x81u8; MAX_DEPTH], vec![0x00]].concat();
        assert!(decode(&deepest).is_ok());
    }

    #[test]
    fn a_prefix_leaves_the_rest() {
        let bytes = hex("0102");
        let (value, rest) = decode_prefix(&bytes).unwrap();
        assert_eq!((value, rest), (Value::Int(1), &[2u8][..]));
    }
}
