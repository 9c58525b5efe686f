//! The one definition of "failure" shared by the retry layer, the circuit breaker and metrics.
//!
//! Failures: transport errors, timeouts, connections that died mid-call, and JSON-RPC internal
//! errors (-32603) from the upstream. Not failures: any result (including tool results with
//! `isError`), other JSON-RPC errors (the caller's fault), and throttling (HTTP 429), which says
//! the upstream is alive and protecting itself.

use super::conn::ConnError;
use crate::wire::jsonrpc::{Kind, Message, Outcome, error_fields};
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
pub fn answered(msg: &Message) -> Verdict {
    match &msg.kind {
        Kind::Response { outcome: Outcome::Error(span), .. } => match error_fields(msg.slice(span)) {
            Some(e) if e.code == code::INTERNAL_ERROR => Verdict::Failed { retryable: false },
            _ => Verdict::Healthy,
        },
        _ => Verdict::Healthy,
    }
}

/// Classify an attempt that ended without an answer.
pub fn unanswered(e: &ConnError) -> Verdict {
    match e {
        ConnError::Closed | ConnError::SessionExpired | ConnError::Transport(_) => Verdict::Failed { retryable: true },
        ConnError::Status { status: 429, .. } => Verdict::Throttled,
        ConnError::Status { status, .. } if *status >= 500 => Verdict::Failed { retryable: true },
        ConnError::Status { .. } | ConnError::Protocol(_) => Verdict::Failed { retryable: false },
    }
}

/// A deadline that passed.
pub const TIMED_OUT: Verdict = Verdict::Failed { retryable: true };

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(bytes::Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    #[test]
    fn tool_errors_and_client_errors_are_healthy() {
        assert_eq!(
            answered(&msg(r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[]}}"#)),
            Verdict::Healthy
        );
        assert_eq!(
            answered(&msg(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#)),
            Verdict::Healthy
        );
        assert_eq!(
            answered(&msg(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}}"#)),
            Verdict::Failed { retryable: false }
        );
    }

    #[test]
    fn transport_failures_retry_and_throttling_does_not_count() {
        assert_eq!(unanswered(&ConnError::Closed), Verdict::Failed { retryable: true });
        assert_eq!(
            unanswered(&ConnError::Status { status: 503, detail: String::new() }),
            Verdict::Failed { retryable: true }
        );
        assert_eq!(unanswered(&ConnError::Status { status: 429, detail: String::new() }), Verdict::Throttled);
        assert_eq!(unanswered(&ConnError::Protocol("x".into())), Verdict::Failed { retryable: false });
    }
}
