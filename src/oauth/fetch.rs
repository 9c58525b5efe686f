//! Bounded HTTP exchanges with the configured issuers: metadata discovery (RFC 8414, OpenID
//! Connect Discovery), JWKS documents and RFC 7662 introspection, over the exchanges upstream
//! authorization uses (`crate::upstream::auth::fetch`). Every answer is read up to
//! [`MAX_DOCUMENT_BYTES`] within [`TIMEOUT`] and must be a 200 with a JSON object; redirects are
//! not followed.

use std::time::Duration;

use crate::upstream::auth::fetch::{self, Bounds};

/// The largest document read from an authorization server (metadata, JWKS, introspection).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The longest one exchange may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why an authorization server could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting, sending or reading failed, timed out, or the answer was larger than
    /// [`MAX_DOCUMENT_BYTES`].
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
    /// The answer was not a JSON object.
    #[error("{url}: {reason}")]
    Document {
        /// Where.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The client for authorization servers: the upstreams' HTTP client with the system roots
/// (no redirects).
pub type Client = crate::upstream::auth::fetch::HttpClient;

/// A new [`Client`].
pub fn client() -> Client {
    crate::upstream::http::client()
}

/// This module's bounds of one exchange.
const BOUNDS: Bounds = Bounds { deadline: TIMEOUT, max_bytes: MAX_DOCUMENT_BYTES };

/// GET `url` and read its JSON object answer (status 200, at most [`MAX_DOCUMENT_BYTES`]).
///
/// Errors: [`FetchError`].
pub async fn get(client: &Client, url: &str) -> Result<serde_json::Value, FetchError> {
    object(url, fetch::get(client, url, BOUNDS).await)
}

/// POST the form `fields` to `url` with HTTP Basic client authentication (`client_id`,
/// `secret`, each part form-encoded first, RFC 6749 §2.3.1) and read its JSON object answer.
///
/// Errors: [`FetchError`].
pub async fn post_form(
    client: &Client,
    url: &str,
    (client_id, secret): (&str, &str),
    fields: &[(&str, &str)],
) -> Result<serde_json::Value, FetchError> {
    let document = |reason: String| FetchError::Document { url: url.to_string(), reason };
    let body = serde_urlencoded::to_string(fields).map_err(|e| document(e.to_string()))?;
    object(url, fetch::post_form(client, url, body, Some(fetch::basic_auth(client_id, secret)), BOUNDS).await)
}

/// An exchange's answer as a JSON object, when it is a 200 with one.
fn object(url: &str, answer: Result<fetch::Answer, String>) -> Result<serde_json::Value, FetchError> {
    let answer = answer.map_err(|reason| FetchError::Transport { url: url.to_string(), reason })?;
    if answer.status != http::StatusCode::OK {
        return Err(FetchError::Status { url: url.to_string(), status: answer.status.as_u16() });
    }
    match answer.body {
        v @ serde_json::Value::Object(_) => Ok(v),
        _ => Err(FetchError::Document { url: url.to_string(), reason: "not a JSON object".into() }),
    }
}
