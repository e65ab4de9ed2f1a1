//! U2F (CTAP1) authentication for keys that do not speak CTAP2: U2F_AUTHENTICATE APDUs over
//! CTAPHID_MSG (FIDO U2F raw message formats §5), turned into the same [`Assertion`] as CTAP2's
//! so that one verifier checks both.
//!
//! A U2F signature covers appParam ‖ user presence ‖ counter ‖ challengeParam, which is exactly
//! CTAP2's authData ‖ clientDataHash once authData is built as appParam ‖ flags ‖ counter.

use std::thread;
use std::time::{Duration, Instant};

use crate::ctap2::{Assertion, CtapError};
use crate::ctaphid::{Channel, HidError, CMD_MSG};

/// Whether the key holds `key_handle` for `app_param`, asked without a touch (P1 0x07).
pub fn holds(
    channel: &mut Channel<'_>,
    app_param: &[u8; 32],
    key_handle: &[u8],
    deadline: Instant,
) -> Result<bool, CtapError> {
    // U2F key handles are at most 255 bytes: a longer one was never made by a U2F key.
    let Some(apdu) = authenticate_apdu(CHECK_ONLY, &[0; 32], app_param, key_handle) else {
        return Ok(false);
    };
    let reply = channel.call(CMD_MSG, &apdu, deadline, &mut |_| {})?;
    match status_word(&reply)? {
        (SW_CONDITIONS_NOT_SATISFIED, _) => Ok(true),
        (SW_WRONG_DATA, _) => Ok(false),
        (word, _) => Err(CtapError::U2f(word)),
    }
}

/// Signs `challenge` with `key_handle` once the user touches the key (P1 0x03). The key answers
/// "touch needed" at once, so the request is repeated every 200 ms until `deadline`;
/// `on_touch_needed` is called at the first such answer.
pub fn authenticate(
    channel: &mut Channel<'_>,
    challenge: &[u8; 32],
    app_param: &[u8; 32],
    key_handle: &[u8],
    deadline: Instant,
    on_touch_needed: &mut dyn FnMut(),
) -> Result<Assertion, CtapError> {
    let apdu = authenticate_apdu(ENFORCE_PRESENCE, challenge, app_param, key_handle)
        .ok_or(CtapError::U2f(SW_WRONG_DATA))?;
    let mut cued = false;
    loop {
        let reply = channel.call(CMD_MSG, &apdu, deadline, &mut |_| {})?;
        match status_word(&reply)? {
            (SW_NO_ERROR, data) => return parse_authenticate(app_param, key_handle, data),
            (SW_CONDITIONS_NOT_SATISFIED, _) => {
                if !cued {
                    cued = true;
                    on_touch_needed();
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(CtapError::Hid(HidError::Timeout));
                }
                thread::sleep(TOUCH_POLL.min(deadline - now));
            }
            (word, _) => return Err(CtapError::U2f(word)),
        }
    }
}

/// Turns the data of a successful U2F_AUTHENTICATE reply (status word removed) into an
/// [`Assertion`].
#[doc(hidden)]
pub fn parse_authenticate(
    app_param: &[u8; 32],
    key_handle: &[u8],
    data: &[u8],
) -> Result<Assertion, CtapError> {
    let (&presence, rest) = data
        .split_first()
        .ok_or(CtapError::Malformed("the U2F reply is empty"))?;
    let (counter, signature) = rest
        .split_first_chunk::<4>()
        .ok_or(CtapError::Malformed("the U2F reply is truncated"))?;
    if signature.is_empty() {
        return Err(CtapError::Malformed("the U2F reply has no signature"));
    }
    let mut auth_data = Vec::with_capacity(37);
    auth_data.extend_from_slice(app_param);
    auth_data.push(presence);
    auth_data.extend_from_slice(counter);
    Ok(Assertion {
        credential_id: key_handle.to_vec(),
        auth_data,
        signature: signature.to_vec(),
        user_handle: None,
    })
}

/// U2F_AUTHENTICATE in extended length encoding; `None` for a key handle over 255 bytes.
fn authenticate_apdu(
    control: u8,
    challenge: &[u8; 32],
    app_param: &[u8; 32],
    key_handle: &[u8],
) -> Option<Vec<u8>> {
    let handle_length = u8::try_from(key_handle.len()).ok()?;
    // 65 + 255 bytes at most, well within two bytes.
    let data_length = u16::try_from(65 + key_handle.len()).ok()?;
    let mut apdu = vec![0x00, INS_AUTHENTICATE, control, 0x00, 0x00];
    apdu.extend(data_length.to_be_bytes());
    apdu.extend_from_slice(challenge);
    apdu.extend_from_slice(app_param);
    apdu.push(handle_length);
    apdu.extend_from_slice(key_handle);
    // Le 0x0000: up to 65536 bytes of reply.
    apdu.extend([0x00, 0x00]);
    Some(apdu)
}

/// Splits a reply APDU into its status word and data.
fn status_word(reply: &[u8]) -> Result<(u16, &[u8]), CtapError> {
    let (data, word) = reply
        .split_last_chunk::<2>()
        .ok_or(CtapError::Malformed("the U2F reply has no status word"))?;
    Ok((u16::from_be_bytes(*word), data))
}

const INS_AUTHENTICATE: u8 = 0x02;
const ENFORCE_PRESENCE: u8 = 0x03;
const CHECK_ONLY: u8 = 0x07;
const SW_NO_ERROR: u16 = 0x9000;
const SW_CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
const SW_WRONG_DATA: u16 = 0x6a80;
const TOUCH_POLL: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authenticate_apdu_uses_extended_length() {
        let apdu = authenticate_apdu(CHECK_ONLY, &[1; 32], &[2; 32], &[3; 10]).unwrap();
        assert_eq!(apdu[..7], [0x00, 0x02, 0x07, 0x00, 0x00, 0x00, 75]);
        assert_eq!(apdu[7..39], [1; 32]);
        assert_eq!(apdu[39..71], [2; 32]);
        assert_eq!(apdu[71], 10);
        assert_eq!(apdu[72..82], [3; 10]);
        assert_eq!(apdu[82..], [0, 0]);
        assert!(authenticate_apdu(CHECK_ONLY, &[1; 32], &[2; 32], &[3; 256]).is_none());
    }

    #[test]
    fn a_u2f_signature_becomes_authenticator_data() {
        let data = [&[0x01u8, 0, 0, 1, 2][..], &[0x30, 0x44, 0x02]].concat();
        let assertion = parse_authenticate(&[7; 32], &[9; 64], &data).unwrap();
        assert_eq!(assertion.auth_data[..32], [7; 32]);
        assert_eq!(assertion.auth_data[32..], [0x01, 0, 0, 1, 2]);
        assert_eq!(assertion.signature, [0x30, 0x44, 0x02]);
        assert_eq!(assertion.credential_id, vec![9; 64]);
    }

    #[test]
    fn a_truncated_u2f_reply_is_refused() {
        for length in 0..6 {
            let data = [0x01u8, 0, 0, 1, 2, 0x30];
            assert!(parse_authenticate(&[7; 32], &[9], &data[..length]).is_err());
        }
        assert!(status_word(&[0x90]).is_err());
    }
}
