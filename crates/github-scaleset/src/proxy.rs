//! HTTP(S) proxy support: a connector that opens a `CONNECT` tunnel through the proxy
//! chosen for the destination (`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` semantics), or
//! connects directly.
//!
//! Owns: choosing direct vs tunnel per destination. Does not own: TLS (layered on top by
//! hyper-rustls, so TLS to GitHub is end to end through the tunnel).

use std::{future::Future, pin::Pin, sync::Arc, task::Poll};

use http::Uri;
use hyper_util::client::{
    legacy::connect::{HttpConnector, proxy::Tunnel},
    proxy::matcher::Matcher,
};
use tower_service::Service;

use crate::config::ProxyConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which proxy applies to which destination.
#[derive(Clone)]
pub(crate) struct ProxySettings {
    matcher: Option<Arc<Matcher>>,
}

impl ProxySettings {
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        let matcher = match config {
            ProxyConfig::None => None,
            ProxyConfig::Env => Some(Matcher::from_env()),
            ProxyConfig::Explicit { https, http, no_proxy } => {
                let mut b = Matcher::builder().no(no_proxy.clone());
                if let Some(h) = https {
                    b = b.https(h.clone());
                }
                if let Some(h) = http {
                    b = b.http(h.clone());
                }
                Some(b.build())
            }
        };
        Self { matcher: matcher.map(Arc::new) }
    }
}

/// A TCP connector that tunnels through a proxy when one applies.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    direct: HttpConnector,
    settings: ProxySettings,
}

impl ProxyConnector {
    pub(crate) fn new(direct: HttpConnector, settings: ProxySettings) -> Self {
        Self { direct, settings }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = <HttpConnector as Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let direct = self.direct.clone();
        let intercept = self.settings.matcher.as_ref().and_then(|m| m.intercept(&dst));
        Box::pin(async move {
            match intercept {
                Some(proxy) => {
                    tracing::debug!(host = dst.host().unwrap_or_default(), "connecting through proxy");
                    let mut tunnel = Tunnel::new(proxy.uri().clone(), direct);
                    if let Some(auth) = proxy.basic_auth() {
                        tunnel = tunnel.with_auth(auth.clone());
                    }
                    std::future::poll_fn(|cx| tunnel.poll_ready(cx)).await?;
                    Ok(tunnel.call(dst).await?)
                }
                None => {
                    let mut direct = direct;
                    Ok(direct.call(dst).await?)
                }
            }
        })
    }
}
