//! twofoldd's wire format, spoken over its unix socket by the module, the CLI and the web server.
//!
//! One request per connection, one response. Each is a frame: the magic byte `T`, the format
//! version, a big-endian u32 length and that many bytes of CBOR (the core's CTAP2 subset), a map
//! with small integer keys. Every local user can send frames to the daemon, so reading refuses
//! other versions, frames over `MAX_FRAME`, malformed CBOR and missing or mistyped fields, with
//! an error and never a panic.
//!
//! Records travel as their TOML text (parsed by the receiver with `Record::parse`, as a file would
//! be); states as a CBOR map of their fields. Secrets in flight (a record's key, a typed code, a
//! password) are wiped when dropped.

#![forbid(unsafe_code)]

use std::fmt;
use std::io::{self, Read, Write};

use zeroize::Zeroizing;

use twofold_core::cbor::{self, Value};
use twofold_core::security_key::CredentialTag;
use twofold_core::state::{Failure, KeyUse, Origin, OriginLock, State};

/// The format version every frame carries; a frame of another version is refused.
pub const VERSION: u8 = 1;
/// Records are at most 64 KiB; a frame holds one and a state, with room to spare.
pub const MAX_FRAME: usize = 160 * 1024;
const MAGIC: u8 = b'T';
const HEADER: usize = 6;

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A user's record (if enrolled), state and generation. Root and the web server's user.
    Load { user: String },
    /// Replace the state, if it is still at `generation` (compare-and-swap).
    Update {
        user: String,
        generation: u64,
        state: State,
    },
    /// Replace the record (`None`: remove the enrollment) and the state, if still at
    /// `generation`.
    Replace {
        user: String,
        generation: u64,
        record: Option<Secret>,
        state: State,
    },
    /// Whether the daemon and its store are up. Anyone.
    Status,
    /// Check a typed answer for `user`, who must be the caller (a screen locker, any PAM program
    /// running as the user): the daemon decides, with the throttle, and answers yes or no.
    CheckCode { user: String, answer: Secret },
    /// Check a password through PAM (service `twofold-web`), for the web server.
    CheckPassword {
        user: String,
        password: Secret,
        rhost: Option<String>,
    },
    /// The names of every enrolled user, for `twofold status --all`. Root and the web server's
    /// user.
    List,
}

/// A string that is wiped when dropped, and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Zeroizing<String>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn new(text: &str) -> Secret {
        Secret(Zeroizing::new(text.to_string()))
    }
}

/// A user's stored copy: the record's text (if enrolled), the state, and the generation a
/// compare-and-swap must name (0: nothing stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub record: Option<Secret>,
    pub state: State,
    pub generation: u64,
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Loaded(Snapshot),
    /// The write is durable, at this generation.
    Written {
        generation: u64,
    },
    /// The generation moved on: here is the current copy, decide again.
    Conflict(Snapshot),
    Status {
        store: String,
        detail: String,
    },
    Checked(Checked),
    Password {
        accepted: bool,
    },
    /// Not for this caller (another user's code, a root-only request).
    Refused(String),
    /// The daemon or its store failed; the text names the cause.
    Unavailable(String),
    /// The request was malformed, or a write would lower the replay guard or revive a code.
    Invalid(String),
    /// The enrolled users, answering `List`.
    Users(Vec<String>),
}

/// The outcome of a code check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    Accepted { codes_left: Option<u32> },
    Denied,
    Locked { retry_after: u64 },
    NotEnrolled,
}

/// Why a frame or message was refused.
#[derive(Debug)]
pub enum ProtoError {
    Io(io::Error),
    /// Not a twofoldd frame (wrong magic).
    NotAFrame,
    /// A frame of another version.
    Version(u8),
    /// Longer than `MAX_FRAME`.
    TooLarge(usize),
    /// The payload is not CBOR.
    Cbor(cbor::CborError),
    /// A field is missing or has the wrong type, or the operation is unknown.
    Malformed(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Io(e) => write!(f, "socket: {e}"),
            ProtoError::NotAFrame => f.write_str("not a twofoldd frame"),
            ProtoError::Version(v) => {
                write!(
                    f,
                    "frame version {v}; this twofold speaks version {VERSION}"
                )
            }
            ProtoError::TooLarge(n) => {
                write!(f, "frame of {n} bytes, over the {MAX_FRAME}-byte limit")
            }
            ProtoError::Cbor(e) => write!(f, "frame payload: {e}"),
            ProtoError::Malformed(what) => write!(f, "malformed message: {what}"),
        }
    }
}

impl std::error::Error for ProtoError {}

impl From<io::Error> for ProtoError {
    fn from(e: io::Error) -> ProtoError {
        ProtoError::Io(e)
    }
}

// ---- Frames.

/// Writes one frame holding `payload`.
pub fn write_frame(out: &mut impl Write, payload: &[u8]) -> Result<(), ProtoError> {
    if payload.len() > MAX_FRAME {
        return Err(ProtoError::TooLarge(payload.len()));
    }
    let mut frame = Zeroizing::new(Vec::with_capacity(HEADER + payload.len()));
    frame.push(MAGIC);
    frame.push(VERSION);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    out.write_all(&frame)?;
    out.flush()?;
    Ok(())
}

/// Reads one frame's payload; never allocates more than `MAX_FRAME`.
pub fn read_frame(input: &mut impl Read) -> Result<Zeroizing<Vec<u8>>, ProtoError> {
    let mut header = [0u8; HEADER];
    input.read_exact(&mut header)?;
    let length = frame_length(&header)?;
    let mut payload = Zeroizing::new(vec![0u8; length]);
    input.read_exact(&mut payload)?;
    Ok(payload)
}

/// The payload of a whole frame in `bytes` (for the fuzzer and for datagram-style callers).
pub fn parse_frame(bytes: &[u8]) -> Result<&[u8], ProtoError> {
    let header = bytes.get(..HEADER).ok_or(ProtoError::NotAFrame)?;
    let length = frame_length(header)?;
    let payload = &bytes[HEADER..];
    if payload.len() != length {
        return Err(ProtoError::Malformed(
            "frame length does not match its payload",
        ));
    }
    Ok(payload)
}

fn frame_length(header: &[u8]) -> Result<usize, ProtoError> {
    if header[0] != MAGIC {
        return Err(ProtoError::NotAFrame);
    }
    if header[1] != VERSION {
        return Err(ProtoError::Version(header[1]));
    }
    let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if length > MAX_FRAME {
        return Err(ProtoError::TooLarge(length));
    }
    Ok(length)
}

/// Sends `request` and reads the response on one connection.
pub fn exchange(
    stream: &mut (impl Read + Write),
    request: &Request,
) -> Result<Response, ProtoError> {
    match write_frame(stream, &request.encode()) {
        // A daemon over its connection limit answers "busy" and hangs up before reading: its
        // answer is still there to read.
        Err(ProtoError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => {}
        written => written?,
    }
    Response::decode(&read_frame(stream)?)
}

// ---- Messages. Keys of the CBOR maps: 0 is the operation; the rest are named below.

const OP: i64 = 0;
const USER: i64 = 1;
const GENERATION: i64 = 2;
const STATE: i64 = 3;
const RECORD: i64 = 4;
const SECRET: i64 = 5;
const TEXT: i64 = 6;
const DETAIL: i64 = 7;
const NUMBER: i64 = 8;
const NAMES: i64 = 9;

impl Request {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let (op, mut fields): (i64, Vec<(i64, Value)>) = match self {
            Request::Load { user } => (1, vec![(USER, text(user))]),
            Request::Update {
                user,
                generation,
                state,
            } => (
                2,
                vec![
                    (USER, text(user)),
                    (GENERATION, word(*generation)),
                    (STATE, encode_state(state)),
                ],
            ),
            Request::Replace {
                user,
                generation,
                record,
                state,
            } => (
                3,
                vec![
                    (USER, text(user)),
                    (GENERATION, word(*generation)),
                    (RECORD, optional_secret(record)),
                    (STATE, encode_state(state)),
                ],
            ),
            Request::Status => (4, vec![]),
            Request::CheckCode { user, answer } => {
                (5, vec![(USER, text(user)), (SECRET, text(&answer.0))])
            }
            Request::CheckPassword {
                user,
                password,
                rhost,
            } => (
                6,
                vec![
                    (USER, text(user)),
                    (SECRET, text(&password.0)),
                    (TEXT, rhost.as_deref().map_or(Value::Null, text)),
                ],
            ),
            Request::List => (7, vec![]),
        };
        fields.push((OP, Value::Int(op)));
        Zeroizing::new(cbor::encode(&Value::int_map(fields)))
    }

    pub fn decode(bytes: &[u8]) -> Result<Request, ProtoError> {
        let map = cbor::decode(bytes).map_err(ProtoError::Cbor)?;
        let user = || get_text(&map, USER, "user");
        Ok(match get_int(&map, OP, "operation")? {
            1 => Request::Load { user: user()? },
            2 => Request::Update {
                user: user()?,
                generation: get_word(&map, GENERATION, "generation")?,
                state: decode_state(map.get(STATE).ok_or(ProtoError::Malformed("state"))?)?,
            },
            3 => Request::Replace {
                user: user()?,
                generation: get_word(&map, GENERATION, "generation")?,
                record: get_optional_secret(&map, RECORD, "record")?,
                state: decode_state(map.get(STATE).ok_or(ProtoError::Malformed("state"))?)?,
            },
            4 => Request::Status,
            5 => Request::CheckCode {
                user: user()?,
                answer: Secret::new(&get_text(&map, SECRET, "answer")?),
            },
            6 => Request::CheckPassword {
                user: user()?,
                password: Secret::new(&get_text(&map, SECRET, "password")?),
                rhost: match map.get(TEXT) {
                    None | Some(Value::Null) => None,
                    Some(Value::Text(host)) => Some(host.clone()),
                    Some(_) => return Err(ProtoError::Malformed("rhost")),
                },
            },
            7 => Request::List,
            _ => return Err(ProtoError::Malformed("unknown operation")),
        })
    }
}

impl Response {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let (op, fields): (i64, Vec<(i64, Value)>) = match self {
            Response::Loaded(snapshot) => (1, snapshot_fields(snapshot)),
            Response::Written { generation } => (2, vec![(GENERATION, word(*generation))]),
            Response::Conflict(snapshot) => (3, snapshot_fields(snapshot)),
            Response::Status { store, detail } => {
                (4, vec![(TEXT, text(store)), (DETAIL, text(detail))])
            }
            Response::Checked(checked) => {
                let (kind, number) = match checked {
                    Checked::Accepted { codes_left } => {
                        (0, codes_left.map_or(Value::Null, |n| Value::Int(n.into())))
                    }
                    Checked::Denied => (1, Value::Null),
                    Checked::Locked { retry_after } => (2, word(*retry_after)),
                    Checked::NotEnrolled => (3, Value::Null),
                };
                (5, vec![(DETAIL, Value::Int(kind)), (NUMBER, number)])
            }
            Response::Password { accepted } => (6, vec![(DETAIL, Value::Bool(*accepted))]),
            Response::Refused(why) => (7, vec![(TEXT, text(why))]),
            Response::Unavailable(why) => (8, vec![(TEXT, text(why))]),
            Response::Invalid(why) => (9, vec![(TEXT, text(why))]),
            Response::Users(names) => (
                10,
                vec![(NAMES, Value::Array(names.iter().map(|n| text(n)).collect()))],
            ),
        };
        let mut fields = fields;
        fields.push((OP, Value::Int(op)));
        Zeroizing::new(cbor::encode(&Value::int_map(fields)))
    }

    pub fn decode(bytes: &[u8]) -> Result<Response, ProtoError> {
        let map = cbor::decode(bytes).map_err(ProtoError::Cbor)?;
        let why = || get_text(&map, TEXT, "reason");
        Ok(match get_int(&map, OP, "operation")? {
            1 => Response::Loaded(decode_snapshot(&map)?),
            2 => Response::Written {
                generation: get_word(&map, GENERATION, "generation")?,
            },
            3 => Response::Conflict(decode_snapshot(&map)?),
            4 => Response::Status {
                store: get_text(&map, TEXT, "store")?,
                detail: get_text(&map, DETAIL, "detail")?,
            },
            5 => Response::Checked(match get_int(&map, DETAIL, "outcome")? {
                0 => Checked::Accepted {
                    codes_left: match map.get(NUMBER) {
                        None | Some(Value::Null) => None,
                        Some(Value::Int(n)) => Some(
                            u32::try_from(*n).map_err(|_| ProtoError::Malformed("codes left"))?,
                        ),
                        Some(_) => return Err(ProtoError::Malformed("codes left")),
                    },
                },
                1 => Checked::Denied,
                2 => Checked::Locked {
                    retry_after: get_word(&map, NUMBER, "retry after")?,
                },
                3 => Checked::NotEnrolled,
                _ => return Err(ProtoError::Malformed("unknown outcome")),
            }),
            6 => Response::Password {
                accepted: map
                    .get(DETAIL)
                    .and_then(Value::as_bool)
                    .ok_or(ProtoError::Malformed("password outcome"))?,
            },
            7 => Response::Refused(why()?),
            8 => Response::Unavailable(why()?),
            9 => Response::Invalid(why()?),
            10 => Response::Users(
                map.get(NAMES)
                    .and_then(Value::as_array)
                    .ok_or(ProtoError::Malformed("users"))?
                    .iter()
                    .map(|name| name.as_text().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(ProtoError::Malformed("users"))?,
            ),
            _ => return Err(ProtoError::Malformed("unknown response")),
        })
    }
}

fn snapshot_fields(snapshot: &Snapshot) -> Vec<(i64, Value)> {
    vec![
        (RECORD, optional_secret(&snapshot.record)),
        (STATE, encode_state(&snapshot.state)),
        (GENERATION, word(snapshot.generation)),
    ]
}

fn decode_snapshot(map: &Value) -> Result<Snapshot, ProtoError> {
    Ok(Snapshot {
        record: get_optional_secret(map, RECORD, "record")?,
        state: decode_state(map.get(STATE).ok_or(ProtoError::Malformed("state"))?)?,
        generation: get_word(map, GENERATION, "generation")?,
    })
}

// ---- Field helpers. u64 values (tags, bitmaps, times) travel as 8 big-endian bytes: CBOR
// ---- integers here are i64.

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn word(n: u64) -> Value {
    Value::Bytes(n.to_be_bytes().to_vec())
}

fn optional_secret(secret: &Option<Secret>) -> Value {
    secret.as_ref().map_or(Value::Null, |s| text(&s.0))
}

fn get_int(map: &Value, key: i64, what: &'static str) -> Result<i64, ProtoError> {
    map.get(key)
        .and_then(Value::as_int)
        .ok_or(ProtoError::Malformed(what))
}

fn get_text(map: &Value, key: i64, what: &'static str) -> Result<String, ProtoError> {
    map.get(key)
        .and_then(Value::as_text)
        .map(str::to_string)
        .ok_or(ProtoError::Malformed(what))
}

fn get_word(map: &Value, key: i64, what: &'static str) -> Result<u64, ProtoError> {
    map.get(key)
        .and_then(as_word)
        .ok_or(ProtoError::Malformed(what))
}

fn as_word(value: &Value) -> Option<u64> {
    let bytes: [u8; 8] = value.as_bytes()?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn get_optional_secret(
    map: &Value,
    key: i64,
    what: &'static str,
) -> Result<Option<Secret>, ProtoError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Text(t)) => Ok(Some(Secret::new(t))),
        Some(_) => Err(ProtoError::Malformed(what)),
    }
}

// State fields, by position in one array.
fn encode_state(state: &State) -> Value {
    let failures = state
        .failures
        .iter()
        .map(|f| Value::Array(vec![word(f.at), word(f.origin.0)]))
        .collect();
    let locks = state
        .origin_locks
        .iter()
        .map(|l| Value::Array(vec![word(l.origin.0), word(l.until)]))
        .collect();
    let uses = state
        .key_uses
        .iter()
        .map(|u| {
            Value::Array(vec![
                word(u.credential.0),
                Value::Int(u.sign_count.into()),
                word(u.last_used),
            ])
        })
        .collect();
    Value::Array(vec![
        word(state.last_step),
        word(state.locked_until),
        word(state.spent_codes),
        word(state.codes_binding),
        Value::Array(failures),
        Value::Array(locks),
        Value::Array(uses),
    ])
}

fn decode_state(value: &Value) -> Result<State, ProtoError> {
    let bad = || ProtoError::Malformed("state");
    let fields = value.as_array().ok_or_else(bad)?;
    let [last_step, locked_until, spent_codes, codes_binding, failures, locks, uses] = fields
    else {
        return Err(bad());
    };
    let pairs = |list: &Value| -> Result<Vec<(u64, u64)>, ProtoError> {
        list.as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|pair| match pair.as_array() {
                Some([a, b]) => Some((as_word(a)?, as_word(b)?)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)
    };
    let key_uses = uses
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|entry| match entry.as_array() {
            Some([tag, count, last]) => Some(KeyUse {
                credential: CredentialTag(as_word(tag)?),
                sign_count: u32::try_from(count.as_int()?).ok()?,
                last_used: as_word(last)?,
            }),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    Ok(State {
        last_step: as_word(last_step).ok_or_else(bad)?,
        locked_until: as_word(locked_until).ok_or_else(bad)?,
        spent_codes: as_word(spent_codes).ok_or_else(bad)?,
        codes_binding: as_word(codes_binding).ok_or_else(bad)?,
        failures: pairs(failures)?
            .into_iter()
            .map(|(at, origin)| Failure {
                at,
                origin: Origin(origin),
            })
            .collect(),
        origin_locks: pairs(locks)?
            .into_iter()
            .map(|(origin, until)| OriginLock {
                origin: Origin(origin),
                until,
            })
            .collect(),
        key_uses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            last_step: 59_093_131,
            failures: vec![Failure {
                at: 1_800_000_000,
                origin: Origin(u64::MAX),
            }],
            locked_until: 0,
            origin_locks: vec![OriginLock {
                origin: Origin(7),
                until: 99,
            }],
            spent_codes: 0x8000_0000_0000_0001,
            codes_binding: 42,
            key_uses: vec![KeyUse {
                credential: CredentialTag(u64::MAX - 1),
                sign_count: u32::MAX,
                last_used: 5,
            }],
        }
    }

    #[test]
    fn every_request_and_response_round_trips_through_a_frame() {
        let requests = [
            Request::Load {
                user: "alice".into(),
            },
            Request::Update {
                user: "alice".into(),
                generation: u64::MAX,
                state: state(),
            },
            Request::Replace {
                user: "alice".into(),
                generation: 3,
                record: Some(Secret::new("version = 1\n")),
                state: State::default(),
            },
            Request::Replace {
                user: "alice".into(),
                generation: 3,
                record: None,
                state: state(),
            },
            Request::Status,
            Request::CheckCode {
                user: "alice".into(),
                answer: Secret::new("123456"),
            },
            Request::CheckPassword {
                user: "alice".into(),
                password: Secret::new("pw"),
                rhost: Some("203.0.113.9".into()),
            },
            Request::List,
        ];
        for request in requests {
            let mut wire = Vec::new();
            write_frame(&mut wire, &request.encode()).unwrap();
            let payload = read_frame(&mut wire.as_slice()).unwrap();
            assert_eq!(Request::decode(&payload).unwrap(), request);
            assert_eq!(
                Request::decode(parse_frame(&wire).unwrap()).unwrap(),
                request
            );
        }
        let snapshot = Snapshot {
            record: Some(Secret::new("version = 1\n")),
            state: state(),
            generation: 9,
        };
        let responses = [
            Response::Loaded(snapshot.clone()),
            Response::Written { generation: 10 },
            Response::Conflict(Snapshot {
                record: None,
                ..snapshot
            }),
            Response::Status {
                store: "files".into(),
                detail: "ok".into(),
            },
            Response::Checked(Checked::Accepted {
                codes_left: Some(3),
            }),
            Response::Checked(Checked::Accepted { codes_left: None }),
            Response::Checked(Checked::Denied),
            Response::Checked(Checked::Locked { retry_after: 60 }),
            Response::Checked(Checked::NotEnrolled),
            Response::Password { accepted: true },
            Response::Refused("not yours".into()),
            Response::Unavailable("slapd down".into()),
            Response::Invalid("lowers the replay guard".into()),
            Response::Users(vec![]),
            Response::Users(vec!["alice".into(), "bob".into()]),
        ];
        for response in responses {
            assert_eq!(Response::decode(&response.encode()).unwrap(), response);
        }
    }

    #[test]
    fn hostile_frames_are_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &Request::Status.encode()).unwrap();
        let mut other_version = wire.clone();
        other_version[1] = 2;
        assert!(matches!(
            read_frame(&mut other_version.as_slice()),
            Err(ProtoError::Version(2))
        ));
        let mut not_ours = wire.clone();
        not_ours[0] = b'X';
        assert!(matches!(
            read_frame(&mut not_ours.as_slice()),
            Err(ProtoError::NotAFrame)
        ));
        // A length over the cap is refused before anything is allocated or read.
        let huge = [MAGIC, VERSION, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge.as_slice()),
            Err(ProtoError::TooLarge(_))
        ));
        // Cut short anywhere: an I/O error (end of input), never a panic.
        for cut in 0..wire.len() {
            assert!(read_frame(&mut &wire[..cut]).is_err(), "cut at {cut}");
            assert!(parse_frame(&wire[..cut]).is_err(), "cut at {cut}");
        }
        // Well-formed CBOR, wrong messages.
        for payload in [
            cbor::encode(&Value::Int(1)),
            cbor::encode(&Value::int_map([(OP, Value::Int(99))])),
            cbor::encode(&Value::int_map([(OP, Value::Int(2)), (USER, text("a"))])),
            cbor::encode(&Value::int_map([
                (OP, Value::Int(2)),
                (USER, text("a")),
                (GENERATION, Value::Int(1)),
                (STATE, Value::Array(vec![])),
            ])),
        ] {
            assert!(Request::decode(&payload).is_err());
            assert!(Response::decode(&payload).is_err());
        }
    }

    #[test]
    fn an_answer_sent_before_the_request_was_read_is_still_read() {
        use std::os::unix::net::UnixStream;
        let (mut client, mut daemon) = UnixStream::pair().unwrap();
        // The daemon answers at once and hangs up without reading (over its limit).
        write_frame(&mut daemon, &Response::Unavailable("busy".into()).encode()).unwrap();
        drop(daemon);
        assert_eq!(
            exchange(&mut client, &Request::Status).unwrap(),
            Response::Unavailable("busy".into())
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let request = Request::CheckCode {
            user: "alice".into(),
            answer: Secret::new("123456"),
        };
        assert!(!format!("{request:?}").contains("123456"));
    }
}
