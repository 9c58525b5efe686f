//! The few HTTP exchanges of upstream authorization (metadata GETs, token POSTs): over the
//! upstream's own client (so a private CA it trusts is trusted here too), each bounded in time
//! ([`DEADLINE`]) and size ([`MAX_BODY_BYTES`]), JSON answers only.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

/// The HTTP client these exchanges go over: the type of `upstream::http::HttpClient` (an
/// upstream's own pooled client), named here so this module needs nothing of `http`'s.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Deadline of one exchange, connect to last byte.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Largest metadata document or token response read, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON answer: its status and body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The parsed body.
    pub body: Value,
}

/// GET `url` (`Accept: application/json`).
///
/// Errors: a readable reason (unreachable, too slow, too large); any status is an answer.
pub async fn get(client: &HttpClient, url: &str) -> Result<Answer, String> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|_| "not a usable URL".to_string())?;
    exchange(client, req).await
}

/// POST the form `body` (`application/x-www-form-urlencoded`) to `url`, with `authorization`.
///
/// Errors: as [`get`].
pub async fn post_form(
    client: &HttpClient,
    url: &str,
    body: String,
    authorization: Option<String>,
) -> Result<Answer, String> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(a) = authorization {
        b = b.header(http::header::AUTHORIZATION, a);
    }
    let req = b.body(Full::new(Bytes::from(body))).map_err(|_| "not a usable URL".to_string())?;
    exchange(client, req).await
}

async fn exchange(client: &HttpClient, req: Request<Full<Bytes>>) -> Result<Answer, String> {
    let work = async {
        let resp = client.request(req).await.map_err(|e| crate::error::TransportError::classify(&e).to_string())?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|_| format!("the answer is not readable or larger than {MAX_BODY_BYTES} bytes"))?
            .to_bytes();
        Ok(Answer { status, body: serde_json::from_slice(&body).unwrap_or(Value::Null) })
    };
    tokio::time::timeout(DEADLINE, work).await.map_err(|_| format!("no answer within {DEADLINE:?}"))?
}
