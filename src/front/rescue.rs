//! The one place where outcomes become wire answers: upstream replies (adapted to the client's
//! era) and typed errors become JSON-RPC response messages, and those become HTTP responses
//! with the status and headers of the error table (`crate::error::GatewayError::class`).

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use crate::error::{GatewayError, status_for_code};
use crate::observe::metrics::METRICS;
use crate::pipeline::parts::{Origin, Reply};
use crate::upstream::translate::{Adapted, adapt_result};
use crate::wire::jsonrpc::{error_fields, write_error, write_raw_error, write_result};
use crate::wire::mcp::{Era, code};

/// A complete JSON-RPC response message and how to carry it over HTTP.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The response message.
    pub message: Bytes,
    /// The `error.code`, for error responses.
    pub error_code: Option<i64>,
    /// The HTTP status of a response that carries only this answer.
    pub status: StatusCode,
    /// The `Retry-After` to send with it, if any.
    pub retry_after: Option<Duration>,
}

/// Build the response to request `id` (raw JSON) of `method` from the stack's outcome, in the
/// client's era.
pub fn answer(id: &[u8], method: &str, outcome: Result<Reply, GatewayError>, client: Era) -> Answer {
    match outcome {
        Ok(Reply::Result { body, origin }) => {
            let body = match origin {
                Origin::Gateway => body,
                Origin::Upstream(era, _) => match adapt_result(body, method, client, era) {
                    Adapted::Result(b) => b,
                    Adapted::InputRequiredForLegacy => {
                        return error(
                            Some(id),
                            &GatewayError::InputRequiredUnsupported(
                                "the client's protocol revision cannot carry it".into(),
                            ),
                            client,
                        );
                    }
                },
            };
            let mut out = Vec::with_capacity(body.len() + id.len() + 40);
            write_result(&mut out, id, &body);
            Answer { message: Bytes::from(out), error_code: None, status: StatusCode::OK, retry_after: None }
        }
        Ok(Reply::Error { body, .. }) => {
            // An upstream's own error: its code decides the status, as the spec maps codes.
            let code = error_fields(&body).map_or(code::INTERNAL_ERROR, |e| e.code);
            let mut out = Vec::with_capacity(body.len() + id.len() + 40);
            write_raw_error(&mut out, Some(id), &body);
            Answer {
                message: Bytes::from(out),
                error_code: Some(code),
                status: status_for_code(code, client),
                retry_after: (code == code::OVERLOADED).then_some(Duration::from_secs(1)),
            }
        }
        Err(e) => error(Some(id), &e, client),
    }
}

/// The error response for a typed error; `id` is `None` when the request id is unknown (`null`).
pub fn error(id: Option<&[u8]>, err: &GatewayError, client: Era) -> Answer {
    let class = err.class(client);
    if err.has_hidden_detail() {
        // The client gets a short reason (`GatewayError::client_message`); the detail stays here.
        tracing::debug!(error = %err, "a call failed upstream");
    }
    let mut out = Vec::with_capacity(128);
    write_error(&mut out, id, class.code, &err.client_message(), err.data().as_ref());
    Answer {
        message: Bytes::from(out),
        error_code: Some(class.code),
        status: class.status,
        retry_after: class.retry_after,
    }
}

/// The answer to a request the client cancelled.
pub fn cancelled(id: &[u8], client: Era) -> Answer {
    error(Some(id), &GatewayError::Cancelled, client)
}

/// A JSON response.
pub fn json(status: StatusCode, body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON-RPC answer as an HTTP response, with its status and `Retry-After`.
pub fn respond(answer: Answer) -> Response {
    let mut resp = json(answer.status, answer.message);
    if let Some(after) = answer.retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// An HTTP-level refusal (before or instead of a JSON-RPC exchange) with a JSON-RPC error body,
/// the table's status, and the headers the status calls for (`WWW-Authenticate` on 401,
/// `Allow` on 405, `Retry-After` on 503). Counted in `sekisho_rejected_total`.
pub fn refuse(err: &GatewayError, id: Option<&[u8]>, client: Era) -> Response {
    let mut resp = respond(error(id, err, client));
    METRICS.rejected(resp.status().as_u16());
    match err {
        GatewayError::Unauthorized => {
            resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        GatewayError::MethodNotAllowed => {
            resp.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        }
        _ => {}
    }
    resp
}

/// `resp` marked as the last answer on its connection (`Connection: close`, RFC 9112 §9.6), for
/// a refusal sent before the request's body was read (the edge answers from the head alone, so
/// an unauthenticated body is never read). hyper cannot reuse a connection whose request body
/// is left unread: it closes it after the response unless the whole body happened to have
/// arrived already. Without this header the client cannot tell, and sends its next request
/// (typically the retry with a token, right after a 401) down a connection that is closing,
/// where it fails with no response. HTTP/2 has no such header; hyper drops it there.
pub fn before_body(mut resp: Response) -> Response {
    resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn modern_clients_get_result_type_and_mapped_statuses() {
        let reply = Reply::Result {
            body: Bytes::from_static(b"{\"content\":[]}"),
            origin: Origin::Upstream(Era::Legacy, Arc::from("u")),
        };
        let a = answer(b"1", "tools/call", Ok(reply), Era::Modern);
        let v: serde_json::Value = serde_json::from_slice(&a.message).unwrap();
        assert_eq!(v["result"]["resultType"], "complete");
        let a = answer(b"2", "tools/call", Err(GatewayError::MethodNotFound("x".into())), Era::Modern);
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        let a = answer(b"2", "tools/call", Err(GatewayError::MethodNotFound("x".into())), Era::Legacy);
        assert_eq!(a.status, StatusCode::OK);
        let a = answer(b"3", "resources/read", Err(GatewayError::ResourceNotFound("u://x".into())), Era::Modern);
        let v: serde_json::Value = serde_json::from_slice(&a.message).unwrap();
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["data"]["uri"], "u://x");
        let a = answer(b"3", "resources/read", Err(GatewayError::ResourceNotFound("u://x".into())), Era::Legacy);
        assert_eq!(a.error_code, Some(-32002));
    }

    #[test]
    fn input_required_cannot_reach_legacy_clients() {
        let reply = Reply::Result {
            body: Bytes::from_static(br#"{"resultType":"input_required","inputRequests":{}}"#),
            origin: Origin::Upstream(Era::Modern, Arc::from("u")),
        };
        let a = answer(b"1", "tools/call", Ok(reply), Era::Legacy);
        assert_eq!(a.error_code, Some(code::INTERNAL_ERROR));
    }

    #[test]
    fn refusals_carry_the_headers_their_status_needs() {
        let r = refuse(&GatewayError::Unauthorized, None, Era::Legacy);
        assert_eq!((r.status(), r.headers()[WWW_AUTHENTICATE].to_str().unwrap()), (StatusCode::UNAUTHORIZED, "Bearer"));
        let r = refuse(&GatewayError::MethodNotAllowed, None, Era::Modern);
        assert_eq!((r.status(), r.headers()[ALLOW].to_str().unwrap()), (StatusCode::METHOD_NOT_ALLOWED, "POST"));
        let limited = GatewayError::RateLimited { scope: "key", retry_after: Duration::from_millis(1200) };
        for era in [Era::Legacy, Era::Modern] {
            let r = respond(error(Some(b"7"), &limited, era));
            let retry_after = r.headers()[RETRY_AFTER].to_str().unwrap();
            assert_eq!((r.status(), retry_after), (StatusCode::TOO_MANY_REQUESTS, "2"), "seconds, rounded up");
        }
        let r = refuse(&GatewayError::ShuttingDown, None, Era::Legacy);
        assert_eq!((r.status(), r.headers()[RETRY_AFTER].to_str().unwrap()), (StatusCode::SERVICE_UNAVAILABLE, "1"));
    }
}
