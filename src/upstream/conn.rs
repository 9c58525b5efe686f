//! How a call on an upstream connection can fail without an answer, shared by both transports.

use bytes::Bytes;

use crate::error::{TransportError, TransportKind};
use crate::wire::jsonrpc::{Kind, Message, Outcome, error_fields};

/// Why a call on a connection failed without an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    /// The connection is closed (process exited, stream ended) or was never open.
    #[error("connection closed")]
    Closed,
    /// An I/O or HTTP transport error.
    #[error("{0}")]
    Transport(TransportError),
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
    /// The answer is larger than the upstream's `max_response_bytes` (the limit); it was cut
    /// off and discarded, and the connection goes on.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

impl ConnError {
    /// The transport cause of a failure that is not a protocol error.
    pub fn transport(&self) -> Option<TransportError> {
        match self {
            ConnError::Closed => {
                Some(TransportError::new(TransportKind::Closed, "the connection closed during the call"))
            }
            ConnError::SessionExpired => {
                Some(TransportError::new(TransportKind::Closed, "the upstream no longer knows the session"))
            }
            ConnError::Transport(t) => Some(t.clone()),
            ConnError::Status { status, detail } => Some(TransportError::new(TransportKind::Status(*status), detail)),
            ConnError::Protocol(_) | ConnError::TooLarge(_) => None,
        }
    }
}

/// The raw `result` of a gateway-originated request, or a readable error.
///
/// Errors: [`ConnError::Protocol`] for an error answer or a message that is not a response.
pub fn expect_result(msg: &Message) -> Result<Bytes, ConnError> {
    match &msg.kind {
        Kind::Response { outcome: Outcome::Result(span), .. } => Ok(msg.src.slice(span.clone())),
        Kind::Response { outcome: Outcome::Error(span), .. } => {
            let raw = msg.slice(span);
            // The upstream's words go to logs and `/readyz`: redacted first.
            let text = error_fields(raw).map_or_else(
                || crate::detect::redact::for_log(raw, 4096),
                |e| format!("error {}: {}", e.code, crate::detect::redact::for_log(e.message.as_bytes(), 4096)),
            );
            Err(ConnError::Protocol(text))
        }
        _ => Err(ConnError::Protocol("expected a response".into())),
    }
}
