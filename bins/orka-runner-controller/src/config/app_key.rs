//! Checks the GitHub App private key at configuration time, so a key that cannot sign
//! GitHub's RS256 app token fails here (exit 2, variable named) rather than at the first
//! GitHub call.
//!
//! Accepts PKCS#1 (`BEGIN RSA PRIVATE KEY`, what GitHub hands out) and PKCS#8 RSA keys,
//! also written on one line with literal `\n` escapes (as users of the Go integration
//! put them in environment variables). Rejects EC and Ed25519 keys by name. Reasons never
//! contain key material.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;

/// The key as the GitHub client should get it (escapes turned into newlines), or why it
/// cannot be used.
pub fn check(text: &str) -> Result<SecretString, String> {
    let pem = if !text.contains('\n') && text.contains("\\n") {
        text.replace("\\n", "\n")
    } else {
        text.to_owned()
    };
    let key = match EncodingKey::from_rsa_pem(pem.as_bytes()) {
        Ok(key) => key,
        Err(_) => return Err(not_rsa_reason(&pem).to_owned()),
    };
    // Parsing the PEM checks only its framing; signing proves the key itself is usable.
    let claims = serde_json::json!({ "iat": 0, "exp": 1, "iss": "config-check" });
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|_| "is not a usable RSA private key (the PEM body is damaged or truncated)".to_owned())?;
    Ok(SecretString::from(pem))
}

fn not_rsa_reason(pem: &str) -> String {
    const RSA_ONLY: &str = "GitHub App keys are RSA: generate a private key in the App's settings";
    let what = if EncodingKey::from_ec_pem(pem.as_bytes()).is_ok() || pem.contains("BEGIN EC PRIVATE KEY") {
        "is an EC key"
    } else if EncodingKey::from_ed_pem(pem.as_bytes()).is_ok() {
        "is an Ed25519 key"
    } else if pem.contains("BEGIN OPENSSH PRIVATE KEY") {
        "is an OpenSSH key"
    } else if pem.contains("-----BEGIN") && pem.contains("PRIVATE KEY-----") {
        "is not a readable RSA private key (damaged, or of another type)"
    } else {
        "is not a PEM private key (-----BEGIN RSA PRIVATE KEY-----)"
    };
    format!("{what}; {RSA_ONLY}")
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    /// A real RSA key in GitHub's PKCS#1 encoding, generated per test process.
    fn rsa() -> &'static str {
        testkit::github::test_app_private_key_pkcs1_pem()
    }

    #[test]
    fn rsa_keys_pass_unchanged_in_both_encodings() {
        assert_eq!(check(rsa()).unwrap().expose_secret(), rsa());
        let pkcs8 = testkit::github::untrusted_app_private_key_pem();
        assert!(check(pkcs8).is_ok());
    }

    #[test]
    fn literal_newline_escapes_are_accepted() {
        let escaped = rsa().trim_end().replace('\n', "\\n");
        assert!(!escaped.contains('\n'));
        assert_eq!(check(&escaped).unwrap().expose_secret(), rsa().trim_end());
    }

    #[test]
    fn other_key_types_are_named() {
        for (pem, kind) in [
            (include_str!("fixtures/ec_key.pem"), "EC"),
            (include_str!("fixtures/ec_key_pkcs8.pem"), "EC"),
            (include_str!("fixtures/ed25519_key.pem"), "Ed25519"),
        ] {
            let reason = check(pem).unwrap_err();
            assert!(reason.contains(kind) && reason.contains("RSA"), "{reason}");
        }
        let damaged = rsa().replace("MIIE", "AAAA");
        let reason = check(&damaged).unwrap_err();
        assert!(reason.contains("RSA"), "{reason}");
        assert!(check("not a key").unwrap_err().contains("not a PEM private key"));
    }
}
