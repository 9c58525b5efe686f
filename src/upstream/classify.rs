//! The one definition of "failure" shared by the retry layer, the circuit breaker and metrics.
//!
//! Failures: transport errors, timeouts, connections that died mid-call, and JSON-RPC internal
//! errors (-32603) from the upstream. Not failures: any result (including tool results with
//! `isError`), other JSON-RPC errors (the caller's fault), throttling (HTTP 429), which says
//! the upstream is alive and protecting itself, and an answer over `max_response_bytes` (the
//! upstream answered; one caller asking for too much must not open the breaker for all).
//!
//! Apart from health, [`never_sent`] tells whether a failed call provably never reached the
//! upstream, the one case where a call that is not safe to repeat may still be sent again.

use crate::error::{GatewayError, TransportKind};
use crate::pipeline::parts::Reply;
use crate::wire::jsonrpc::error_fields;
use crate::wire::mcp::code;

/// What an attempt at a call says about the upstream's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream answered (a result, or an error that is not its fault).
    Healthy,
    /// The upstream failed; `retryable` when repeating the same call elsewhere may succeed
    /// (transport failures and timeouts; not internal errors it reported itself).
    Failed {
        /// Repeating may help.
        retryable: bool,
    },
    /// The upstream is throttling: neither healthy nor failed, and not to be retried now.
    Throttled,
}

/// Classify an answered attempt.
pub fn answered(reply: &Reply) -> Verdict {
    match reply {
        Reply::Error { body, .. } if error_fields(body).is_some_and(|e| e.code == code::INTERNAL_ERROR) => {
            Verdict::Failed { retryable: false }
        }
        _ => Verdict::Healthy,
    }
}

/// Classify an attempt that ended without an answer.
pub fn failed(e: &GatewayError) -> Verdict {
    match e {
        GatewayError::UpstreamResponseTooLarge { .. } => Verdict::Healthy,
        GatewayError::UpstreamTimeout { .. } => Verdict::Failed { retryable: true },
        GatewayError::UpstreamTransport { cause, .. } => match cause.kind {
            TransportKind::Status(429) => Verdict::Throttled,
            TransportKind::Status(s) if s >= 500 => Verdict::Failed { retryable: true },
            TransportKind::Status(_) => Verdict::Failed { retryable: false },
            _ => Verdict::Failed { retryable: true },
        },
        _ => Verdict::Failed { retryable: false },
    }
}

/// Whether an attempt's outcome may be retried (if the call is safe to repeat).
pub fn retryable(outcome: &Result<Reply, GatewayError>) -> bool {
    matches!(outcome, Err(e) if failed(e) == Verdict::Failed { retryable: true })
}

/// Whether a failed attempt provably never reached the upstream: refused before it was sent
/// (no live replica, every breaker open), or its connection could not be opened or was gone
/// before the request was queued (`TransportError::unsent`). A timeout or a failure while
/// reading the answer may come after the upstream ran the call, so it is never "unsent".
pub fn never_sent(outcome: &Result<Reply, GatewayError>) -> bool {
    match outcome {
        Err(GatewayError::CircuitOpen { .. } | GatewayError::UpstreamUnavailable { .. }) => true,
        Err(GatewayError::UpstreamTransport { cause, .. }) => cause.unsent,
        _ => false,
    }
}

/// The verdict of an attempt's outcome.
pub fn verdict(outcome: &Result<Reply, GatewayError>) -> Verdict {
    match outcome {
        Ok(reply) => answered(reply),
        Err(e) => failed(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::error::TransportError;
    use crate::pipeline::parts::Origin;
    use crate::wire::mcp::Era;

    fn reply(body: &'static str, error: bool) -> Reply {
        let origin = Origin::Upstream(Era::Legacy, Arc::from("u"));
        let body = Bytes::from_static(body.as_bytes());
        if error { Reply::Error { body, origin } } else { Reply::Result { body, origin } }
    }

    fn transport(kind: TransportKind) -> GatewayError {
        GatewayError::UpstreamTransport { upstream: "u".into(), cause: TransportError::new(kind, "") }
    }

    #[test]
    fn tool_errors_and_client_errors_are_healthy() {
        assert_eq!(answered(&reply(r#"{"isError":true,"content":[]}"#, false)), Verdict::Healthy);
        assert_eq!(answered(&reply(r#"{"code":-32602,"message":"x"}"#, true)), Verdict::Healthy);
        assert_eq!(answered(&reply(r#"{"code":-32603,"message":"x"}"#, true)), Verdict::Failed { retryable: false });
    }

    #[test]
    fn transport_failures_retry_and_throttling_does_not_count() {
        assert_eq!(failed(&transport(TransportKind::Closed)), Verdict::Failed { retryable: true });
        assert_eq!(failed(&transport(TransportKind::Status(503))), Verdict::Failed { retryable: true });
        assert_eq!(failed(&transport(TransportKind::Status(429))), Verdict::Throttled);
        let timeout = GatewayError::UpstreamTimeout { upstream: "u".into(), after: Duration::from_secs(1) };
        assert!(retryable(&Err(timeout)));
        let protocol = GatewayError::UpstreamProtocol { upstream: "u".into(), reason: "x".into() };
        assert_eq!(failed(&protocol), Verdict::Failed { retryable: false });
        let big = GatewayError::UpstreamResponseTooLarge { upstream: "u".into(), limit: 1 };
        assert_eq!(failed(&big), Verdict::Healthy, "the upstream answered; the gateway refused the size");
    }

    #[test]
    fn only_failures_before_sending_count_as_never_sent() {
        let refused = TransportError::new(TransportKind::Refused, "").not_sent();
        let refused = GatewayError::UpstreamTransport { upstream: "u".into(), cause: refused };
        assert!(never_sent(&Err(refused)));
        assert!(!never_sent(&Err(transport(TransportKind::Reset))), "a reset may come after the request was read");
        assert!(!never_sent(&Err(transport(TransportKind::Closed))));
        let timeout = GatewayError::UpstreamTimeout { upstream: "u".into(), after: Duration::from_secs(1) };
        assert!(!never_sent(&Err(timeout)), "a timed-out call may have run");
        let open = GatewayError::CircuitOpen { upstream: "u".into(), retry_after: Duration::ZERO };
        assert!(never_sent(&Err(open)));
        assert!(!never_sent(&Ok(reply("{}", false))));
    }
}
