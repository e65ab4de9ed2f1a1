//! The module's device path: asks a plugged-in security key for an assertion through
//! `twofold-fido`, within `fido2.touch_timeout_secs`, and shows the cue when the key asks for the
//! touch. The core picked the challenge and verifies the answer; this only moves bytes.

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

impl KeyToucher for Toucher<'_> {
    fn touch(
        &mut self,
        keys: &[SecurityKey],
        client_data_hash: &[u8; 32],
        user_verification: bool,
        prompter: &mut dyn Prompter,
    ) -> Result<Assertion, TouchFailure> {
        let deadline = Instant::now() + Duration::from_secs(self.policy.touch_timeout_secs.into());
        // One probe per relying party: keys made on another host, or for a fleet, keep theirs.
        let mut groups: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
        for key in keys {
            match groups.iter_mut().find(|(rp_id, _)| *rp_id == key.rp_id) {
                Some((_, ids)) => ids.push(key.credential_id.clone()),
                None => groups.push((&key.rp_id, vec![key.credential_id.clone()])),
            }
        }
        let devices = twofold_fido::devices(deadline);
        let cue = &self.policy.cue;
        let touched = twofold_fido::get_assertion(
            devices,
            &groups,
            client_data_hash,
            deadline,
            user_verification,
            &mut || prompter.info(cue),
        );
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
                Err(match error {
                    TouchError::NoDevice => TouchFailure::NoDevice,
                    TouchError::NotRegistered => TouchFailure::NotRegistered,
                    TouchError::Timeout => TouchFailure::Timeout,
                    TouchError::Denied | TouchError::PinRequired => {
                        TouchFailure::Refused(error.to_string())
                    }
                    other => TouchFailure::Failed(other.to_string()),
                })
            }
        }
    }
}
