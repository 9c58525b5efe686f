//! The client side of a running gateway's admin API (`--url` with an admin key), shared by the
//! commands that work through it (`tenant|server|instance|key … --url`, `switch`): one request
//! through the gateway's own HTTP client (`upstream::http::client`, TLS included), bounded in
//! time and size, and the text of a refusal with a hint for the usual mistakes.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};

/// The environment variable the admin key of `--url` may come from (a `SEKISHO_` name without
/// `__`, so configuration overrides never read it).
pub const ADMIN_KEY_ENV: &str = "SEKISHO_ADMIN_KEY";
/// How long a request may take, answer included.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from the gateway, in bytes (a listing of very many keys fits).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why a request could not be made or answered.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL or the key cannot make a request (nothing was sent).
    #[error("{0}")]
    Invalid(String),
    /// The gateway could not be reached, or did not answer in time.
    #[error("{0}")]
    Gateway(String),
}

/// The gateway's answer.
#[derive(Debug)]
pub struct Answer {
    /// Its HTTP status.
    pub status: StatusCode,
    /// Its body.
    pub bytes: Bytes,
    /// Its body as JSON (`Null` when it is not).
    pub json: serde_json::Value,
    /// The gateway's URL as it may be shown (`observe::redact::url`).
    pub shown: String,
}

impl Answer {
    /// The text of a refusal: `<url> answered <status>: <message>` and a hint for 401 and 403.
    pub fn refusal(&self) -> String {
        // The admin API's refusals are `{"error": "…"}`; the edge's are JSON-RPC errors,
        // `{"error": {"message": …}}`.
        let said = self.json["error"]
            .as_str()
            .or_else(|| self.json["error"]["message"].as_str())
            .map_or_else(|| String::from_utf8_lossy(&self.bytes).chars().take(200).collect(), str::to_string);
        let hint = match self.status {
            StatusCode::UNAUTHORIZED => format!(" (pass --admin-key or set {ADMIN_KEY_ENV})"),
            StatusCode::FORBIDDEN => " (the key must have role = \"admin\")".to_string(),
            _ => String::new(),
        };
        format!("{} answered {}: {said}{hint}", self.shown, self.status)
    }
}

/// `method {base}{path}` with `Authorization: Bearer <admin_key>` and a JSON `body`, when given.
///
/// Errors: [`RemoteError::Invalid`] for a URL that is not `http(s)://host…` or a key that is not
/// a header value; [`RemoteError::Gateway`] when the gateway cannot be reached, does not answer
/// within [`TIMEOUT`], or its answer is over 64 MiB.
pub async fn request(
    base: &str,
    admin_key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer, RemoteError> {
    use http_body_util::{BodyExt, Full, Limited};
    let shown = crate::observe::redact::url(base);
    let uri = format!("{}{path}", base.trim_end_matches('/'));
    let uri: http::Uri = uri.parse().map_err(|_| RemoteError::Invalid(format!("--url {shown}: not a URL")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(RemoteError::Invalid(format!("--url {shown}: give an http:// or https:// URL")));
    }
    let mut req = http::Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    if let Some(key) = admin_key {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|_| RemoteError::Invalid(format!("--admin-key (or {ADMIN_KEY_ENV}) is not a valid header value")))?;
    let exchange = async {
        let resp = crate::upstream::http::client()
            .request(req)
            .await
            .map_err(|e| format!("cannot reach {shown}: {}", with_causes(&e)))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer of {shown}: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| RemoteError::Gateway(format!("{shown} did not answer within {TIMEOUT:?}")))?
        .map_err(RemoteError::Gateway)?;
    let json = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(Answer { status, bytes, json, shown })
}

/// `e` and its causes, `: `-separated (a client error alone says only "client error (Connect)").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
