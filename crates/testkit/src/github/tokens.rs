//! Tokens of the fake: admin and queue JWTs it issues (HS256, with `exp`, readable by any
//! client without verification) and verification of GitHub App JWTs (RS256 against the
//! configured public key).
//!
//! Owns: token formats and signatures. Does not own: which tokens are currently valid
//! (generation counters live in the state).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Claims of the tokens the fake issues.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// `admin` or `queue`.
    pub(crate) typ: String,
    /// Expiry (seconds since the epoch, fake clock).
    pub(crate) exp: u64,
    /// Issued at.
    pub(crate) iat: u64,
    /// Generation: tokens below the current minimum are rejected.
    pub(crate) generation: u64,
    /// Tenant generation (admin) or session id (queue).
    pub(crate) subject: String,
    /// A random token id (UUID), so two tokens issued in the same second differ.
    pub(crate) jti: String,
}

/// Signs and checks the fake's own tokens.
pub(crate) struct TokenMint {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl TokenMint {
    pub(crate) fn new() -> Self {
        let secret: [u8; 32] = rand::random();
        Self { encoding: EncodingKey::from_secret(&secret), decoding: DecodingKey::from_secret(&secret) }
    }

    pub(crate) fn issue(
        &self,
        typ: &str,
        subject: &str,
        generation: u64,
        now: SystemTime,
        lifetime: Duration,
    ) -> String {
        let claims = Claims {
            typ: typ.to_owned(),
            iat: unix(now),
            exp: unix(now + lifetime),
            generation,
            subject: subject.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing")
    }

    /// Verifies the signature and type; expiry is checked against `now` (the fake clock)
    /// unless `now` is `None`.
    pub(crate) fn verify(&self, token: &str, typ: &str, now: Option<SystemTime>) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).ok()?.claims;
        (claims.typ == typ && now.is_none_or(|now| claims.exp > unix(now))).then_some(claims)
    }
}

#[derive(Debug, Deserialize)]
struct AppClaims {
    iss: serde_json::Value,
    iat: u64,
    exp: u64,
}

/// Why an App JWT was refused (returned to the client as the 401 message).
pub(crate) fn verify_app_jwt(
    token: &str,
    public_key_pem: &str,
    accepted_issuers: &[String],
    now: SystemTime,
) -> Result<(), String> {
    let key = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
        .map_err(|e| format!("fake misconfigured: {e}"))?;
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<AppClaims>(token, &key, &v)
        .map_err(|e| format!("'Issued at' claim or signature invalid: {e}"))?
        .claims;
    let iss = match &claims.iss {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err("iss must be a string or number".into()),
    };
    if !accepted_issuers.contains(&iss) {
        return Err(format!("unknown App issuer {iss}"));
    }
    let now = unix(now);
    if claims.iat > now + 60 {
        return Err("'Issued at' claim (iat) must be an Integer representing a time in the past".into());
    }
    if claims.exp <= now {
        return Err("'Expiration time' claim (exp) is in the past".into());
    }
    if claims.exp.saturating_sub(claims.iat) > 600 {
        return Err("'Expiration time' claim (exp) is too far in the future".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let mint = TokenMint::new();
        let now = SystemTime::now();
        let t = mint.issue("queue", "sid", 3, now, Duration::from_secs(30));
        let c = mint.verify(&t, "queue", Some(now)).unwrap();
        assert_eq!((c.generation, c.subject.as_str()), (3, "sid"));
        assert!(mint.verify(&t, "admin", Some(now)).is_none(), "type is checked");
        assert!(mint.verify(&t, "queue", Some(now + Duration::from_secs(31))).is_none(), "expiry is checked");
        assert!(mint.verify(&t, "queue", None).is_some(), "expiry check skipped on request");
        assert!(TokenMint::new().verify(&t, "queue", Some(now)).is_none(), "signature is checked");
    }

    #[test]
    fn app_jwts_are_checked_against_the_public_key() {
        let public = &crate::github::keys::app().public;
        let now = SystemTime::now();
        let sign = |pem: &str, iss: &str, iat: u64, exp: u64| {
            let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
            let claims = serde_json::json!({"iss": iss, "iat": iat, "exp": exp});
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
        };
        let issuers = vec!["123".to_owned()];
        let n = unix(now);
        let good = sign(&crate::github::keys::app().private, "123", n - 60, n + 480);
        assert_eq!(verify_app_jwt(&good, public, &issuers, now), Ok(()));
        let wrong_key = sign(&crate::github::keys::untrusted().private, "123", n - 60, n + 480);
        assert!(verify_app_jwt(&wrong_key, public, &issuers, now).is_err());
        let wrong_iss = sign(&crate::github::keys::app().private, "999", n - 60, n + 480);
        assert!(verify_app_jwt(&wrong_iss, public, &issuers, now).is_err());
        let too_long = sign(&crate::github::keys::app().private, "123", n - 60, n + 3600);
        assert!(verify_app_jwt(&too_long, public, &issuers, now).is_err());
        let expired = sign(&crate::github::keys::app().private, "123", n - 700, n - 100);
        assert!(verify_app_jwt(&expired, public, &issuers, now).is_err());
    }
}
