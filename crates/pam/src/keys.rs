//! The module's device path: asks a plugged-in security key for an assertion through
//! `twofold-fido`, within `fido2.touch_timeout_secs`, and shows the cue when the key asks for the
//! touch. The core picked the challenge and verifies the answer; this only moves bytes.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use twofold_core::config::Fido2Policy;
use twofold_core::key_assertion::Assertion;
use twofold_core::prompt::Prompter;
use twofold_core::security_key::{KeyToucher, SecurityKey, TouchFailure};
use twofold_core::text::LogLine;
use twofold_fido::TouchError;
use twofold_host::syslog::{self, Level};

use crate::IDENT;

pub struct Toucher<'a> {
    policy: &'a Fido2Policy,
    who: &'a LogLine,
}

impl<'a> Toucher<'a> {
    pub fn new(policy: &'a Fido2Policy, who: &'a LogLine) -> Toucher<'a> {
        Toucher { policy, who }
    }
}

/// Asks for the key's PIN through the conversation, hidden; an empty answer or a failed
/// conversation gives none (the login then falls back to a code).
fn ask_pin(
    prompter: &mut dyn Prompter,
    retries: Option<u32>,
) -> Option<zeroize::Zeroizing<String>> {
    // The count is worth saying only when it runs low.
    let prompt = match retries {
        Some(left @ 1..=3) => format!("Security key PIN ({left} tries left): "),
        _ => "Security key PIN: ".to_string(),
    };
    prompter
        .ask_hidden(&prompt)
        .ok()
        .filter(|pin| !pin.is_empty())
}

/// The keys' credential ids by relying party: one probe per relying party, as keys made on
/// another host, or for a fleet, keep theirs.
fn groups<'k>(keys: &[&'k SecurityKey]) -> Vec<(&'k str, Vec<Vec<u8>>)> {
    let mut groups: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    for key in keys {
        match groups.iter_mut().find(|(rp_id, _)| *rp_id == key.rp_id) {
            Some((_, ids)) => ids.push(key.credential_id.clone()),
            None => groups.push((&key.rp_id, vec![key.credential_id.clone()])),
        }
    }
    groups
}

impl KeyToucher for Toucher<'_> {
    fn touch(
        &mut self,
        keys: &[SecurityKey],
        client_data_hash: &[u8; 32],
        all_verify: bool,
        prompter: &mut dyn Prompter,
    ) -> Result<Assertion, TouchFailure> {
        let deadline = Instant::now() + Duration::from_secs(self.policy.touch_timeout_secs.into());
        let cue = &self.policy.cue;
        // The PIN is asked and the cue shown through the same conversation, one at a time.
        let prompter = RefCell::new(prompter);
        // Keys that must verify the user are asked for that, the others only for a touch: two
        // requests when a user has both kinds, the second only if the first finds no key.
        let (verifying, plain): (Vec<&SecurityKey>, Vec<&SecurityKey>) =
            keys.iter().partition(|k| all_verify || k.user_verification);
        let mut touched = Err(TouchError::NotRegistered);
        for (set, user_verification) in [(plain, false), (verifying, true)] {
            if set.is_empty() {
                continue;
            }
            touched = twofold_fido::get_assertion(
                twofold_fido::devices(deadline),
                &groups(&set),
                client_data_hash,
                deadline,
                user_verification,
                &mut |retries| ask_pin(*prompter.borrow_mut(), retries),
                &mut || prompter.borrow_mut().info(cue),
            );
            if !matches!(touched, Err(TouchError::NotRegistered)) {
                break;
            }
        }
        match touched {
            Ok((_, assertion)) => Ok(Assertion {
                credential_id: assertion.credential_id,
                authenticator_data: assertion.auth_data,
                signature: assertion.signature,
            }),
            Err(error) => {
                // No device is the usual case at a console without a key: not worth a line.
                if !matches!(error, TouchError::NoDevice) {
                    let line = self
                        .who
                        .clone()
                        .token("factor", "security-key")
                        .text("touch", &error.to_string());
                    syslog::line(IDENT, Level::Info, line.as_str());
                }
                let refused = |error: &TouchError| TouchFailure::Refused(error.to_string());
                Err(match error {
                    TouchError::NoDevice => TouchFailure::NoDevice,
                    TouchError::NotRegistered => TouchFailure::NotRegistered,
                    TouchError::Timeout => TouchFailure::Timeout,
                    // What the user can act on (a wrong PIN, a blocked key) is said to them.
                    TouchError::WrongPin { .. }
                    | TouchError::PinBlocked
                    | TouchError::PinAuthBlocked
                    | TouchError::PinNotSet
                    | TouchError::VerificationUnsupported => {
                        prompter
                            .borrow_mut()
                            .error(&capitalized(&error.to_string()));
                        refused(&error)
                    }
                    TouchError::Denied | TouchError::PinRequired => refused(&error),
                    other => TouchFailure::Failed(other.to_string()),
                })
            }
        }
    }
}

/// A message as a sentence.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}
