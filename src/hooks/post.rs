//! One HTTP client for the hooks: hyper's pooled client over rustls (http
//! and https URLs), every POST signed and bounded by a timeout that covers
//! connecting, sending and reading the answer.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Largest answer read back (the allocator's JSON; webhook answers are
/// read and dropped so the connection can be reused).
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Clone)]
pub struct Poster {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    secret: Bytes,
}

/// How one POST ended, when it did not end with a 2xx.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("answered {0}")]
    Status(u16),
    #[error("{0}")]
    Transport(String),
}

impl Poster {
    pub fn new(secret: &str) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build(https);
        Poster {
            client,
            secret: Bytes::copy_from_slice(secret.as_bytes()),
        }
    }

    /// POSTs `body` signed now; the answer's body when it is a 2xx.
    pub async fn post(
        &self,
        url: &Uri,
        kind: &str,
        id: &str,
        body: &Bytes,
        timeout_ms: u64,
    ) -> Result<Bytes, PostError> {
        let t = chrono::Utc::now().timestamp();
        let sig = super::sign::signature(&self.secret, t, body);
        let req = Request::builder()
            .method(Method::POST)
            .uri(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static("rendezvous-hooks"))
            .header("rendezvous-event", kind)
            .header("rendezvous-delivery", id)
            .header("rendezvous-signature", sig)
            .body(Full::new(body.clone()))
            .map_err(|e| PostError::Transport(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| PostError::Transport(transport_text(&e)))?;
            let status = resp.status();
            let answer = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| PostError::Transport(format!("reading the answer: {e}")));
            if !status.is_success() {
                return Err(PostError::Status(status.as_u16()));
            }
            answer
        };
        match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
            Ok(r) => r,
            Err(_) => Err(PostError::Timeout(timeout_ms)),
        }
    }
}

/// hyper's client error says "client error (Connect)"; its source says why.
fn transport_text(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Checks a hook URL at start-up: absolute http or https with a host.
pub fn parse_url(flag: &str, text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("{flag}: {text:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(format!(
            "{flag}: {text:?} must be an http:// or https:// URL"
        )),
    }
}
