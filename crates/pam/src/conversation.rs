//! The conversation with the application (sshd, sudo...), as the core's `Prompter`. Here the
//! enrollment offer is drawn for a text terminal: the QR code in half blocks, then the key.

use zeroize::Zeroizing;

use twofold_core::enroll::KEY_LINE;
use twofold_core::prompt::{EnrollmentOffer, PromptError, Prompter};
use twofold_core::qr::{self, QrStyle};

use crate::handle::{ConvError, Handle};
use crate::sys;

pub struct Conversation<'a> {
    handle: &'a Handle,
    /// `PAM_SILENT`: the application asked for no informational messages.
    silent: bool,
}

impl<'a> Conversation<'a> {
    pub fn new(handle: &'a Handle, silent: bool) -> Conversation<'a> {
        Conversation { handle, silent }
    }

    fn show(&mut self, style: i32, text: &str) {
        if !self.silent {
            let _ = self.handle.converse(style, text);
        }
    }

    fn ask(&mut self, style: i32, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.handle.converse(style, prompt).map_err(|e| {
            PromptError(match e {
                ConvError::NoConversation => "the application has no conversation function".into(),
                ConvError::Failed(rc) => format!("the conversation failed (PAM code {rc})"),
                ConvError::NoAnswer => "no answer".into(),
            })
        })
    }
}

impl Prompter for Conversation<'_> {
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.ask(sys::PAM_PROMPT_ECHO_OFF, prompt)
    }

    fn ask_visible(&mut self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.ask(sys::PAM_PROMPT_ECHO_ON, prompt)
    }

    fn info(&mut self, text: &str) {
        self.show(sys::PAM_TEXT_INFO, text);
    }

    fn error(&mut self, text: &str) {
        self.show(sys::PAM_ERROR_MSG, text);
    }

    fn offer(&mut self, offer: &EnrollmentOffer) {
        // Half blocks: OpenSSH escapes the control characters ANSI colours would need.
        match qr::render(&offer.uri, QrStyle::Utf8) {
            Ok(code) => self.info(code.trim_end_matches('\n')),
            Err(_) => self.info("(The QR code does not fit a terminal; type the key instead.)"),
        }
        // Sized up front, so that no reallocation leaves an unwiped copy of the key behind.
        let mut key_line =
            Zeroizing::new(String::with_capacity(KEY_LINE.len() + offer.key_text.len()));
        key_line.push_str(KEY_LINE);
        key_line.push_str(&offer.key_text);
        self.info(&key_line);
    }

    fn repeats_password(&self, answer: &str) -> bool {
        self.handle.is_authtok(answer)
    }
}
