//! Bounded HTTP exchanges with authorization servers: metadata discovery (RFC 8414, OpenID
//! Connect Discovery), JWKS documents and RFC 7662 introspection. Every answer is read up to
//! [`MAX_DOCUMENT_BYTES`] within [`TIMEOUT`]; redirects are not followed.

use std::time::Duration;

/// The largest document read from an authorization server (metadata, JWKS, introspection).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The longest one exchange may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why an authorization server could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting, sending or reading failed (or timed out).
    #[error("{url}: {reason}")]
    Transport {
        /// Where.
        url: String,
        /// What happened (never a credential).
        reason: String,
    },
    /// The server answered with a status other than 200.
    #[error("{url}: HTTP {status}")]
    Status {
        /// Where.
        url: String,
        /// Its status.
        status: u16,
    },
    /// The answer was larger than [`MAX_DOCUMENT_BYTES`] or not a JSON object.
    #[error("{url}: {reason}")]
    Document {
        /// Where.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The client for authorization servers: rustls with the system roots (as the upstreams'),
/// no redirects, [`TIMEOUT`].
///
/// Panics only if the TLS configuration cannot be built from the system roots (it always can).
pub fn client() -> reqwest::Client {
    let tls = crate::upstream::http::tls::client_config(&[]).expect("TLS client configuration from the system roots");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .build()
        .expect("an HTTP client")
}

/// Send `req` and read its JSON object answer (status 200, at most [`MAX_DOCUMENT_BYTES`]).
///
/// Errors: [`FetchError`].
pub async fn json(url: &str, req: reqwest::RequestBuilder) -> Result<serde_json::Value, FetchError> {
    let transport =
        |e: reqwest::Error| FetchError::Transport { url: url.to_string(), reason: e.without_url().to_string() };
    let mut resp = req.header("accept", "application/json").send().await.map_err(transport)?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status { url: url.to_string(), status: resp.status().as_u16() });
    }
    let too_big =
        || FetchError::Document { url: url.to_string(), reason: format!("larger than {MAX_DOCUMENT_BYTES} bytes") };
    if resp.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(FetchError::Document { url: url.to_string(), reason: "not a JSON object".into() }),
    }
}
