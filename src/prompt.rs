//! How the core talks to the person logging in, whatever the front door: PAM's conversation, a
//! terminal, a web page. The core decides what to say; the door decides how it looks (it draws the
//! QR code of an enrollment offer as half blocks, ANSI or SVG).

use std::fmt;

use zeroize::Zeroizing;

/// Asks the person logging in, through whatever front door they use.
pub trait Prompter {
    /// Asks with echo off.
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError>;
    /// Asks with echo on.
    fn ask_visible(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError>;
    /// Shows a line of information.
    fn info(&mut self, text: &str);
    /// Shows a line about something that went wrong.
    fn error(&mut self, text: &str);
    /// Shows a new key to put into an authenticator app: its QR code and the key as text.
    fn offer(&mut self, offer: &EnrollmentOffer);
    /// Whether `answer` is the password this login already gave: some applications (sshd's
    /// password authentication, screen lockers) answer every hidden prompt with it, so they
    /// cannot take part in an enrollment.
    fn repeats_password(&self, answer: &str) -> bool {
        let _ = answer;
        false
    }
}

/// A prompter with one answer, typed elsewhere (a web form, a caller of twofoldd): it answers
/// the first hidden prompt and fails any other, since there is no person to ask.
pub struct OneAnswer(Option<Zeroizing<String>>);

impl OneAnswer {
    pub fn new(answer: &str) -> OneAnswer {
        OneAnswer(Some(Zeroizing::new(answer.to_string())))
    }
}

impl Prompter for OneAnswer {
    fn ask_hidden(&mut self, _: &str) -> Result<Zeroizing<String>, PromptError> {
        self.0
            .take()
            .ok_or_else(|| PromptError("one answer per check".into()))
    }

    fn ask_visible(&mut self, _: &str) -> Result<Zeroizing<String>, PromptError> {
        Err(PromptError("nothing visible can be asked here".into()))
    }

    fn info(&mut self, _: &str) {}

    fn error(&mut self, _: &str) {}

    fn offer(&mut self, _: &EnrollmentOffer) {}
}

/// A key offered to the user's app, not saved yet. Both fields carry the secret, and are wiped
/// when dropped.
pub struct EnrollmentOffer {
    /// The `otpauth://` URI, for the QR code.
    pub uri: Zeroizing<String>,
    /// The key as text for typing into an app (`ABCD EFGH ...`, with any unusual parameters).
    pub key_text: Zeroizing<String>,
}

/// The conversation failed or was abandoned (the client hung up, sent nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptError(pub String);

impl fmt::Display for PromptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PromptError {}
