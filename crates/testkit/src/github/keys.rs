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
    /// The same private key as PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`), the encoding
    /// GitHub hands out for App keys.
    pub(crate) private_pkcs1: String,
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
    PemKeyPair {
        private: pem("PRIVATE KEY", private.as_ref()),
        private_pkcs1: pem("RSA PRIVATE KEY", pkcs1_of_pkcs8(private.as_ref())),
        public: pem("PUBLIC KEY", public.as_ref()),
    }
}

/// Header and length of the DER element at the start of `der`: (header bytes, content bytes).
fn der_element(der: &[u8]) -> (usize, usize) {
    let first = der[1];
    if first < 0x80 {
        return (2, usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    let len = der[2..2 + count].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    (2 + count, len)
}

/// The RSAPrivateKey inside a PKCS#8 PrivateKeyInfo: SEQUENCE { version, algorithm,
/// OCTET STRING { RSAPrivateKey } } — the octet string's content is the PKCS#1 key.
fn pkcs1_of_pkcs8(der: &[u8]) -> &[u8] {
    let (header, _) = der_element(der);
    let mut rest = &der[header..];
    for _ in 0..2 {
        let (h, len) = der_element(rest);
        rest = &rest[h + len..];
    }
    assert_eq!(rest[0], 0x04, "PKCS#8 private key octet string");
    let (h, len) = der_element(rest);
    &rest[h..h + len]
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
        assert!(a.private_pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        let pkcs1 = base64::engine::general_purpose::STANDARD
            .decode(a.private_pkcs1.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
            .unwrap();
        assert!(aws_lc_rs::rsa::KeyPair::from_der(&pkcs1).is_ok(), "the PKCS#1 form is a usable RSA key");
    }
}
