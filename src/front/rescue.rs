//! The one place where outcomes become wire answers: typed errors and upstream replies turn
//! into JSON-RPC response messages, and JSON-RPC error codes into HTTP statuses.

use bytes::Bytes;
use http::StatusCode;

use crate::error::GatewayError;
use crate::pipeline::ctx::{Origin, Reply};
use crate::upstream::translate::{Adapted, adapt_result};
use crate::wire::jsonrpc::{error_fields, write_error, write_raw_error, write_result};
use crate::wire::mcp::{Era, code};

/// A complete JSON-RPC response message, and its error code if it is an error.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The response message.
    pub message: Bytes,
    /// The `error.code`, for error responses.
    pub error_code: Option<i64>,
}

/// Code of the answer to a request the client cancelled (the Python and TypeScript SDKs use it).
pub const REQUEST_CANCELLED: i64 = -32800;

/// Build the response to request `id` (raw JSON) of `method` from the pipeline's outcome, in
/// the client's era.
pub fn answer(id: &[u8], method: &str, outcome: Result<Reply, GatewayError>, client: Era) -> Answer {
    let modern = client == Era::Modern;
    match outcome {
        Ok(Reply::Result { body, origin }) => {
            let body = match origin {
                Origin::Gateway => body,
                Origin::Upstream(era, _) => match adapt_result(body, method, client, era) {
                    Adapted::Result(b) => b,
                    Adapted::InputRequiredForLegacy => {
                        return error(id, &GatewayError::InputRequiredUnsupported, modern);
                    }
                },
            };
            let mut out = Vec::with_capacity(body.len() + id.len() + 40);
            write_result(&mut out, id, &body);
            Answer { message: Bytes::from(out), error_code: None }
        }
        Ok(Reply::Error { body, .. }) => {
            let code = error_fields(&body).map_or(code::INTERNAL_ERROR, |e| e.code);
            let mut out = Vec::with_capacity(body.len() + id.len() + 40);
            write_raw_error(&mut out, Some(id), &body);
            Answer { message: Bytes::from(out), error_code: Some(code) }
        }
        Err(e) => error(id, &e, modern),
    }
}

/// The error response for a typed gateway error.
pub fn error(id: &[u8], err: &GatewayError, modern: bool) -> Answer {
    let code = err.code(modern);
    plain_error(Some(id), code, &err.to_string(), err.data().as_ref())
}

/// An error response from parts; `id` is `None` when the request id is unknown (`null`).
pub fn plain_error(id: Option<&[u8]>, code: i64, message: &str, data: Option<&serde_json::Value>) -> Answer {
    let mut out = Vec::with_capacity(128);
    write_error(&mut out, id, code, message, data);
    Answer { message: Bytes::from(out), error_code: Some(code) }
}

/// The answer to a request the client cancelled.
pub fn cancelled(id: &[u8]) -> Answer {
    plain_error(Some(id), REQUEST_CANCELLED, "Request cancelled", None)
}

/// The HTTP status of a response carrying `error_code`.
///
/// Modern era (2026-07-28 `basic/transports`): 400 for parse, request, params, header
/// mismatch, missing capability and unsupported version; 404 for method not found; 200 for
/// the rest. Legacy era: 400 for unreadable or invalid messages, else 200 (the error travels
/// in the JSON-RPC body).
pub fn http_status(error_code: Option<i64>, client: Era) -> StatusCode {
    let Some(c) = error_code else {
        return StatusCode::OK;
    };
    match (client, c) {
        (_, code::PARSE_ERROR | code::INVALID_REQUEST) => StatusCode::BAD_REQUEST,
        (
            Era::Modern,
            code::INVALID_PARAMS
            | code::HEADER_MISMATCH
            | code::MISSING_CLIENT_CAPABILITY
            | code::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        (Era::Modern, code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        // Shed or draining: "retry later", in either era (with Retry-After).
        (_, code::OVERLOADED) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    }
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
        assert_eq!(http_status(a.error_code, Era::Modern), StatusCode::NOT_FOUND);
        assert_eq!(http_status(a.error_code, Era::Legacy), StatusCode::OK);
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
}
