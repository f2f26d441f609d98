//! The REST bootstrap chain (docs/protocol/github-scaleset.md#bootstrap,
//! docs/protocol/github-scaleset.md#admin-token) and the admin-token cache.
//!
//! Owns: the App JWT, the installation token, the registration token, runner-registration
//! (RemoteAuth → tenant URL + admin token), and refreshing the admin token from its JWT
//! `exp` before it expires, one refresh at a time. Does not own: Actions-service calls.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::{
    ScaleSetError,
    config::{Auth, ConfigUrl, GitHubConfig, RetryPolicy},
    transport::{HttpRequest, HttpResponse, Idempotency, Transport, body_cap},
    wire::{
        RunnerRegistrationRequest, RunnerRegistrationResponse, TokenWire, error_from_response, parse_json,
    },
};

/// How long an admin token whose `exp` cannot be read is trusted.
const UNKNOWN_EXPIRY_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The Actions tenant: base URL and admin token.
pub(crate) struct Tenant {
    /// Actions-service base URL (ends with `/`).
    pub(crate) base: Url,
    /// Admin token (`Authorization: Bearer`).
    pub(crate) token: SecretString,
    /// When the token expires (from its JWT `exp`, or a conservative guess).
    expires_at: SystemTime,
}

impl Tenant {
    fn needs_refresh(&self, margin: Duration) -> bool {
        SystemTime::now() + margin >= self.expires_at
    }
}

/// Reads a JWT's `exp` claim without verifying the signature.
pub(crate) fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    (exp > 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(exp))
}

#[derive(serde::Serialize)]
struct AppClaims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
}

enum Credential {
    Pat(SecretString),
    App { app_id: String, installation_id: i64, key: EncodingKey },
}

/// Runs the bootstrap chain and caches its result.
pub(crate) struct Bootstrap {
    config_url: ConfigUrl,
    credential: Credential,
    request_timeout: Duration,
    retry: RetryPolicy,
    registration_retry: RetryPolicy,
    margin: Duration,
    current: Mutex<Option<Arc<Tenant>>>,
    refresh: tokio::sync::Mutex<()>,
}

impl Bootstrap {
    pub(crate) fn new(config: &GitHubConfig) -> Result<Self, ScaleSetError> {
        let config_url = ConfigUrl::parse(&config.config_url, config.force_ghes)?;
        let credential = match &config.auth {
            Auth::Pat(pat) => {
                if pat.expose_secret().trim().is_empty() {
                    return Err(ScaleSetError::Config("the PAT is empty".into()));
                }
                Credential::Pat(pat.clone())
            }
            Auth::App { app_id, installation_id, private_key_pem } => {
                let key =
                    EncodingKey::from_rsa_pem(private_key_pem.expose_secret().as_bytes()).map_err(|_| {
                        ScaleSetError::Config("the GitHub App private key is not an RSA PEM key".into())
                    })?;
                Credential::App { app_id: app_id.clone(), installation_id: *installation_id, key }
            }
        };
        Ok(Self {
            config_url,
            credential,
            request_timeout: config.timeouts.request,
            retry: config.retry,
            registration_retry: config.registration_retry,
            margin: config.admin_token_refresh_margin,
            current: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    /// The current tenant, refreshed first when its admin token is about to expire.
    pub(crate) async fn tenant(&self, transport: &Transport) -> Result<Arc<Tenant>, ScaleSetError> {
        if let Some(t) = self.cached().filter(|t| !t.needs_refresh(self.margin)) {
            return Ok(t);
        }
        let _one_at_a_time = self.refresh.lock().await;
        let old = self.cached();
        if let Some(t) = old.as_ref().filter(|t| !t.needs_refresh(self.margin)) {
            return Ok(t.clone());
        }
        match self.run_chain(transport).await {
            Ok(t) => {
                let t = Arc::new(t);
                tracing::info!(tenant = %t.base, "GitHub admin token refreshed");
                *self.current.lock().expect("tenant lock") = Some(t.clone());
                Ok(t)
            }
            Err(e) => match old.filter(|t| SystemTime::now() < t.expires_at) {
                Some(t) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "admin token refresh failed; using the current token until it expires"
                    );
                    Ok(t)
                }
                None => Err(e),
            },
        }
    }

    /// Marks `seen` as unusable (the service rejected its token) so the next call
    /// re-runs the chain; a no-op if a newer tenant is already cached.
    pub(crate) fn invalidate(&self, seen: &Arc<Tenant>) {
        let mut current = self.current.lock().expect("tenant lock");
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, seen)) {
            *current = Some(Arc::new(Tenant {
                base: seen.base.clone(),
                token: seen.token.clone(),
                expires_at: UNIX_EPOCH,
            }));
        }
    }

    fn cached(&self) -> Option<Arc<Tenant>> {
        self.current.lock().expect("tenant lock").clone()
    }

    async fn run_chain(&self, transport: &Transport) -> Result<Tenant, ScaleSetError> {
        let rest_token = match &self.credential {
            Credential::Pat(pat) => pat.clone(),
            Credential::App { app_id, installation_id, key } => {
                self.installation_token(transport, app_id, *installation_id, key).await?
            }
        };
        let registration_token = self.registration_token(transport, &rest_token).await?;
        self.runner_registration(transport, &registration_token).await
    }

    fn rest_request(
        &self,
        path: &str,
        auth: HeaderValue,
        content_type: &'static str,
        context: &'static str,
    ) -> Result<HttpRequest, ScaleSetError> {
        let url = self
            .config_url
            .api_base
            .join(path)
            .map_err(|e| ScaleSetError::Config(format!("REST URL for {context}: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, auth);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(HttpRequest {
            method: Method::POST,
            url,
            headers,
            body: None,
            timeout: self.request_timeout,
            idempotency: Idempotency::Idempotent,
            context,
            max_body: body_cap::TOKEN,
        })
    }

    async fn installation_token(
        &self,
        transport: &Transport,
        app_id: &str,
        installation_id: i64,
        key: &EncodingKey,
    ) -> Result<SecretString, ScaleSetError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let iat = now.saturating_sub(60);
        let claims = AppClaims { iat, exp: iat + 9 * 60, iss: app_id };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
            .map_err(|e| ScaleSetError::Config(format!("cannot sign the GitHub App JWT: {e}")))?;
        transport.secrets.remember(&SecretString::from(jwt.clone()));
        let req = self.rest_request(
            &format!("app/installations/{installation_id}/access_tokens"),
            bearer(&jwt)?,
            "application/vnd.github+json",
            "GitHub App installation token",
        )?;
        let resp = transport.send(&req, &self.retry).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Err(ScaleSetError::Unauthorized {
                status: 404,
                message: format!(
                    "GitHub App {app_id} has no installation {installation_id}; check GITHUB_APP_INSTALLATION_ID \
                     (and GITHUB_APP_ID)"
                ),
            });
        }
        let token: TokenWire = success_json(&resp, "GitHub App installation token")?;
        Ok(remembered(transport, token.token))
    }

    async fn registration_token(
        &self,
        transport: &Transport,
        rest_token: &SecretString,
    ) -> Result<SecretString, ScaleSetError> {
        let req = self.rest_request(
            &self.config_url.scope.registration_token_path(),
            bearer(rest_token.expose_secret())?,
            "application/vnd.github.v3+json",
            "registration token",
        )?;
        let resp = transport.send(&req, &self.retry).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Err(ScaleSetError::ScopeNotFound { url: self.config_url.url.clone() });
        }
        let token: TokenWire = success_json(&resp, "registration token")?;
        Ok(remembered(transport, token.token))
    }

    async fn runner_registration(
        &self,
        transport: &Transport,
        registration_token: &SecretString,
    ) -> Result<Tenant, ScaleSetError> {
        let mut auth =
            HeaderValue::from_str(&format!("RemoteAuth {}", registration_token.expose_secret()))
                .map_err(|_| ScaleSetError::protocol("registration token", "not a valid header value"))?;
        auth.set_sensitive(true);
        let mut req = self.rest_request(
            "actions/runner-registration",
            auth,
            "application/json",
            "runner registration",
        )?;
        let body = serde_json::to_vec(&RunnerRegistrationRequest {
            url: &self.config_url.url,
            runner_event: "register",
        })
        .expect("serialisable");
        req.body = Some(body.into());
        let policy = self.registration_retry;
        let mut attempt = 0;
        let resp = loop {
            let resp = transport.send(&req, &self.retry).await?;
            let denied = matches!(resp.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
            if !denied || attempt >= policy.max_retries {
                break resp;
            }
            // A fresh registration token may not have propagated yet
            // (docs/protocol/github-scaleset.md#runner-registration).
            let delay = policy.min_delay.saturating_mul(1 << attempt.min(16)).min(policy.max_delay);
            tracing::debug!(status = resp.status.as_u16(), ?delay, "runner registration denied; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        };
        if !resp.status.is_success() {
            return Err(error_from_response(&resp));
        }
        let reg: RunnerRegistrationResponse = parse_json("runner registration", &resp.body)?;
        if reg.url.is_empty() || reg.token.is_empty() {
            return Err(ScaleSetError::protocol("runner registration", "url or token missing"));
        }
        let mut base = Url::parse(&reg.url)
            .map_err(|e| ScaleSetError::protocol("runner registration", format!("tenant URL: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let expires_at = jwt_expiry(&reg.token).unwrap_or_else(|| {
            tracing::warn!("admin token carries no readable exp; refreshing it periodically");
            SystemTime::now() + UNKNOWN_EXPIRY_LIFETIME
        });
        Ok(Tenant { base, token: remembered(transport, reg.token), expires_at })
    }
}

/// `token` as a secret that is scrubbed from every later error body.
fn remembered(transport: &Transport, token: String) -> SecretString {
    let secret = SecretString::from(token);
    transport.secrets.remember(&secret);
    secret
}

/// `Authorization: Bearer <token>`, marked sensitive.
pub(crate) fn bearer(token: &str) -> Result<HeaderValue, ScaleSetError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| ScaleSetError::protocol("token", "not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

fn success_json<T: serde::de::DeserializeOwned>(
    resp: &HttpResponse,
    context: &str,
) -> Result<T, ScaleSetError> {
    if !resp.status.is_success() {
        return Err(error_from_response(resp));
    }
    parse_json(context, &resp.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_with(claims: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(r#"{"alg":"HS256"}"#), enc(claims))
    }

    #[test]
    fn expiry_is_read_from_the_jwt_without_verification() {
        assert_eq!(
            jwt_expiry(&jwt_with(r#"{"exp":1700000000}"#)),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(jwt_expiry(&jwt_with(r#"{"sub":"x"}"#)), None);
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }

    #[test]
    fn refresh_margin() {
        let t = Tenant {
            base: Url::parse("http://t/").unwrap(),
            token: SecretString::from("x"),
            expires_at: SystemTime::now() + Duration::from_secs(90),
        };
        assert!(!t.needs_refresh(Duration::from_secs(60)));
        assert!(t.needs_refresh(Duration::from_secs(120)));
    }
}
