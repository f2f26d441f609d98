//! Scrubbing the secrets the client holds out of text a server sends back.
//!
//! A proxy or a broken server may echo a request's `Authorization` header or body in its
//! error answer; that text becomes part of an error message and then of a log line. Every
//! secret the client holds or has been handed (PAT, App JWT, installation, registration,
//! admin and queue tokens, JIT configs) is registered here and replaced by `[REDACTED]`
//! in every error body before anything reads it.
//!
//! Owns: the registry (the fixed credential plus a bounded set of recent tokens) and the
//! replacement. Does not own: deciding what is a secret (the callers register them).

use std::{collections::VecDeque, sync::Mutex};

use secrecy::{ExposeSecret, SecretString};

/// Shorter values are not scrubbed (they would match ordinary words).
const MIN_SECRET_LEN: usize = 8;

/// Tokens and JIT configs remembered; older ones have long expired.
const MAX_REMEMBERED: usize = 1024;

/// The replacement text.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// The secrets to scrub.
#[derive(Default)]
pub(crate) struct Secrets {
    fixed: Vec<SecretString>,
    recent: Mutex<VecDeque<SecretString>>,
}

impl Secrets {
    /// A registry that always scrubs `fixed` (the configured credential).
    pub(crate) fn new(fixed: Vec<SecretString>) -> Self {
        Self { fixed, recent: Mutex::default() }
    }

    /// Scrubs `secret` from now on (the oldest remembered one is forgotten past the bound).
    pub(crate) fn remember(&self, secret: &SecretString) {
        if secret.expose_secret().trim().len() < MIN_SECRET_LEN {
            return;
        }
        let mut recent = self.recent.lock().expect("secrets");
        if recent.iter().any(|s| s.expose_secret() == secret.expose_secret()) {
            return;
        }
        if recent.len() >= MAX_REMEMBERED {
            recent.pop_front();
        }
        recent.push_back(secret.clone());
    }

    /// `text` with every known secret replaced by `[REDACTED]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let recent = self.recent.lock().expect("secrets");
        for secret in self.fixed.iter().chain(recent.iter()) {
            let value = secret.expose_secret().trim();
            if value.len() >= MIN_SECRET_LEN && out.contains(value) {
                out = out.replace(value, REDACTED);
            }
        }
        out
    }

    /// [`Secrets::scrub`] on a body; bytes that are not UTF-8 are replaced.
    pub(crate) fn scrub_bytes(&self, body: &[u8]) -> bytes::Bytes {
        bytes::Bytes::from(self.scrub(&String::from_utf8_lossy(body)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_remembered_secrets_are_replaced_and_short_ones_ignored() {
        let secrets = Secrets::new(vec![SecretString::from("ghp_fixed_pat_123")]);
        secrets.remember(&SecretString::from("eyJqueue.token.sig"));
        secrets.remember(&SecretString::from("short"));
        let text = "Bearer ghp_fixed_pat_123 and eyJqueue.token.sig but short stays";
        assert_eq!(secrets.scrub(text), "Bearer [REDACTED] and [REDACTED] but short stays");
    }

    #[test]
    fn the_registry_is_bounded() {
        let secrets = Secrets::new(Vec::new());
        for i in 0..MAX_REMEMBERED + 10 {
            secrets.remember(&SecretString::from(format!("token-{i:08}")));
        }
        assert_eq!(secrets.recent.lock().unwrap().len(), MAX_REMEMBERED);
        assert_eq!(secrets.scrub("token-00000000"), "token-00000000", "the oldest is forgotten");
        let newest = format!("token-{:08}", MAX_REMEMBERED + 9);
        assert_eq!(secrets.scrub(&newest), REDACTED);
    }
}
