//! The few HTTP exchanges with authorization servers (metadata GETs, token and introspection
//! POSTs), each bounded in time and size ([`Bounds`]), JSON answers only, redirects not
//! followed. Upstream authorization sends them over the upstream's own client (so a private CA
//! it trusts is trusted here too) within [`UPSTREAM`]; the resource server (`crate::oauth`)
//! over its own, within its bounds.

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

/// How long one exchange may take, connect to last byte, and how much of its answer is read.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The deadline of the whole exchange.
    pub deadline: Duration,
    /// The largest answer read, in bytes.
    pub max_bytes: usize,
}

/// The bounds of upstream authorization: 10 s, 64 KiB (a metadata document or a token answer).
pub const UPSTREAM: Bounds = Bounds { deadline: Duration::from_secs(10), max_bytes: 64 * 1024 };

/// A JSON answer: its status and body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The parsed body.
    pub body: Value,
}

/// GET `url` (`Accept: application/json`) within `bounds`.
///
/// Errors: a readable reason (unreachable, too slow, too large); any status is an answer.
pub async fn get(client: &HttpClient, url: &str, bounds: Bounds) -> Result<Answer, String> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|_| "not a usable URL".to_string())?;
    exchange(client, req, bounds).await
}

/// POST the form `body` (`application/x-www-form-urlencoded`) to `url`, with `authorization`,
/// within `bounds`.
///
/// Errors: as [`get`].
pub async fn post_form(
    client: &HttpClient,
    url: &str,
    body: String,
    authorization: Option<String>,
    bounds: Bounds,
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
    exchange(client, req, bounds).await
}

async fn exchange(client: &HttpClient, req: Request<Full<Bytes>>, bounds: Bounds) -> Result<Answer, String> {
    let work = async {
        let resp = client.request(req).await.map_err(|e| crate::error::TransportError::classify(&e).to_string())?;
        let status = resp.status();
        let max = bounds.max_bytes;
        let body = Limited::new(resp.into_body(), max)
            .collect()
            .await
            .map_err(|_| format!("the answer is not readable or larger than {max} bytes"))?
            .to_bytes();
        Ok(Answer { status, body: serde_json::from_slice(&body).unwrap_or(Value::Null) })
    };
    let deadline = bounds.deadline;
    tokio::time::timeout(deadline, work).await.map_err(|_| format!("no answer within {deadline:?}"))?
}

/// The `Authorization` value of HTTP Basic client authentication at an authorization server:
/// `client_id` and `secret` each `application/x-www-form-urlencoded` first (RFC 6749 §2.3.1).
pub fn basic_auth(client_id: &str, secret: &str) -> String {
    use base64::Engine;
    let pair = format!("{}:{}", form_urlencoded(client_id), form_urlencoded(secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_urlencoded(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|v| v[1..].to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_encodes_each_part_first() {
        assert_eq!(super::form_urlencoded("a b:c&"), "a+b%3Ac%26");
        // "a+b%3Ac%26:s" in base64.
        assert_eq!(super::basic_auth("a b:c&", "s"), "Basic YStiJTNBYyUyNjpz");
    }
}
