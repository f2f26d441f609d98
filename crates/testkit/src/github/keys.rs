//! The fake GitHub App's RSA keys, generated once per process at first use: no private key
//! is stored in the repository or embedded in a binary (secret scanners flag embedded keys,
//! and a key that exists only in memory cannot leak from an image).

use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;

/// A generated key pair as PEM text.
pub(crate) struct PemKeyPair {
    /// PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub(crate) private: String,
    /// SubjectPublicKeyInfo public key (`-----BEGIN PUBLIC KEY-----`).
    pub(crate) public: String,
}

/// PEM armour for `der` under `label`, 64 base64 characters a line.
fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

fn generate() -> PemKeyPair {
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
    let private = pair.as_der().expect("PKCS#8 encoding");
    let public = pair.public_key().as_der().expect("SubjectPublicKeyInfo encoding");
    PemKeyPair { private: pem("PRIVATE KEY", private.as_ref()), public: pem("PUBLIC KEY", public.as_ref()) }
}

/// The key pair of [`crate::github::FakeApp::test`].
pub(crate) fn app() -> &'static PemKeyPair {
    static KEY: OnceLock<PemKeyPair> = OnceLock::new();
    KEY.get_or_init(generate)
}

/// A second key pair the fake never trusts.
pub(crate) fn untrusted() -> &'static PemKeyPair {
    static KEY: OnceLock<PemKeyPair> = OnceLock::new();
    KEY.get_or_init(generate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_pem_and_distinct() {
        let (a, b) = (app(), untrusted());
        assert!(
            a.private.starts_with("-----BEGIN PRIVATE KEY-----\n")
                && a.private.ends_with("-----END PRIVATE KEY-----\n")
        );
        assert!(a.public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(a.private.lines().all(|l| l.len() <= 64));
        assert_ne!(a.private, b.private);
        assert_eq!(app().private, a.private, "generated once per process");
    }
}
