//! What every upstream connection shares: the outbound request shape, how its bytes are
//! written, and the connection-level error type.

use bytes::Bytes;

use super::handshake::Handshake;
use super::mux::Route;
use super::translate::{Outbound, write_params};
use crate::pipeline::ctx::{ClientSide, Params};
use crate::wire::jsonrpc::write_json_str;
use crate::wire::mcp::Era;

/// Where an outbound request's params come from.
pub enum Body<'a> {
    /// The gateway's own request (handshake, listing): raw params, sent as they are.
    Raw(Option<&'a [u8]>),
    /// A client's request, rewritten for the upstream (see [`super::translate`]).
    Client {
        /// The client's params.
        params: &'a Params,
        /// Members to replace, e.g. the original tool name.
        replace: &'a [(&'a str, &'a [u8])],
        /// The calling client.
        client: &'a ClientSide,
    },
}

/// One request to send to an upstream.
pub struct Request<'a> {
    /// JSON-RPC method.
    pub method: &'a str,
    /// Params.
    pub body: Body<'a>,
    /// The original name or URI, mirrored in the modern `Mcp-Name` header.
    pub name_header: Option<&'a str>,
    /// Where the call's notifications go.
    pub route: Option<Route>,
}

impl Request<'_> {
    /// Roughly how many bytes the params will take (to size the output buffer once).
    pub fn body_len_hint(&self) -> usize {
        match &self.body {
            Body::Raw(p) => p.map_or(0, <[u8]>::len),
            Body::Client { params, .. } => params.bytes.len(),
        }
    }

    /// A gateway-originated request with raw params.
    pub fn raw<'a>(method: &'a str, params: Option<&'a [u8]>) -> Request<'a> {
        Request { method, body: Body::Raw(params), name_header: None, route: None }
    }

    /// Write the complete JSON-RPC request message with gateway id `id` for an upstream that
    /// completed `handshake` (or `None` during the handshake itself).
    pub fn write(&self, out: &mut Vec<u8>, id: u64, handshake: Option<&Handshake>) {
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        out.extend_from_slice(id.to_string().as_bytes());
        out.extend_from_slice(b",\"method\":");
        write_json_str(out, self.method);
        match &self.body {
            Body::Raw(None) => {}
            Body::Raw(Some(params)) => {
                out.extend_from_slice(b",\"params\":");
                out.extend_from_slice(params);
            }
            Body::Client { params, replace, client } => {
                let upstream = handshake.map_or((Era::Legacy, crate::wire::mcp::LATEST_LEGACY), |h| (h.era, h.version));
                let wants_progress = self.route.as_ref().is_some_and(|r| r.client_token.is_some());
                out.extend_from_slice(b",\"params\":");
                write_params(
                    out,
                    &Outbound { params, replace, progress_token: wants_progress.then_some(id), client, upstream },
                );
            }
        }
        out.push(b'}');
    }
}

/// Why a call on a connection failed without an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    /// The connection is closed (process exited, stream ended) or was never open.
    #[error("connection closed")]
    Closed,
    /// An I/O or HTTP transport error.
    #[error("{0}")]
    Transport(String),
    /// An HTTP upstream answered with an unexpected status.
    #[error("HTTP {status}: {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body, for the log.
        detail: String,
    },
    /// The upstream no longer knows our session (HTTP 404 with a session id).
    #[error("upstream session expired")]
    SessionExpired,
    /// The upstream sent something that is not a valid answer.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// The raw `result` of a gateway-originated request, or a readable error.
pub fn expect_result(msg: &crate::wire::jsonrpc::Message) -> Result<Bytes, ConnError> {
    use crate::wire::jsonrpc::{Kind, Outcome, error_fields};
    match &msg.kind {
        Kind::Response { outcome: Outcome::Result(span), .. } => Ok(msg.src.slice(span.clone())),
        Kind::Response { outcome: Outcome::Error(span), .. } => {
            let raw = msg.slice(span);
            let text = error_fields(raw).map_or_else(
                || String::from_utf8_lossy(raw).into_owned(),
                |e| format!("error {}: {}", e.code, e.message),
            );
            Err(ConnError::Protocol(text))
        }
        _ => Err(ConnError::Protocol("expected a response".into())),
    }
}
