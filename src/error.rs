//! The gateway's error taxonomy: where a failure came from (client, upstream, gateway) and
//! whether it is worth retrying. Errors stay typed until `front::rescue` turns them into
//! JSON-RPC error objects and HTTP statuses.

use std::time::Duration;

use crate::wire::mcp::code;

/// Which side of the gateway a failure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong.
    Client,
    /// An upstream failed or misbehaved.
    Upstream,
    /// The gateway itself (overload, shutdown).
    Gateway,
}

/// Everything a call can fail with before an upstream answers it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// Params are missing, of the wrong type, or refer to nothing (-32602).
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    /// The method is not one the gateway serves in this era (-32601).
    #[error("Method not found: {0}")]
    MethodNotFound(String),
    /// No tool of that name in the addressed catalog (-32602).
    #[error("Unknown tool: {0}")]
    UnknownTool(String),
    /// No prompt of that name in the addressed catalog (-32602).
    #[error("Unknown prompt: {0}")]
    UnknownPrompt(String),
    /// No resource behind that URI (-32002 for legacy clients, -32602 for modern ones).
    #[error("Resource not found: {0}")]
    ResourceNotFound(String),
    /// A pagination cursor the gateway did not mint, or one from a stale catalog (-32602).
    #[error("Invalid params: unknown or expired cursor")]
    InvalidCursor,
    /// The upstream answered `input_required`, which a legacy client cannot receive (-32603).
    #[error(
        "the upstream requires interactive input (input_required), which this client's protocol revision cannot carry"
    )]
    InputRequiredUnsupported,
    /// The caller may not do this (-32012 in JSON-RPC; 401/403 at the HTTP edge).
    #[error("Forbidden: {0}")]
    Forbidden(String),
    /// The upstream is down, starting, or restarting (-32010, retryable).
    #[error("upstream {upstream:?} is unavailable: {reason}")]
    UpstreamUnavailable {
        /// Namespace of the upstream.
        upstream: String,
        /// What is known about why.
        reason: String,
    },
    /// The upstream did not answer in time; the call was cancelled upstream (-32011, retryable).
    #[error("upstream {upstream:?} did not answer within {} ms", .after.as_millis())]
    UpstreamTimeout {
        /// Namespace of the upstream.
        upstream: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The connection to the upstream failed during the call (-32010, retryable).
    #[error("upstream {upstream:?} connection failed: {reason}")]
    UpstreamTransport {
        /// Namespace of the upstream.
        upstream: String,
        /// The transport error.
        reason: String,
    },
    /// The upstream answered with something that is not a valid MCP response (-32603).
    #[error("upstream {upstream:?} sent an invalid response: {reason}")]
    UpstreamProtocol {
        /// Namespace of the upstream.
        upstream: String,
        /// What was wrong.
        reason: String,
    },
    /// Admission control shed the call: queues are full or the queue wait ran out (-32013,
    /// retryable later; HTTP 503 with `Retry-After`).
    #[error("overloaded: {reason}; retry later")]
    Overloaded {
        /// What was full.
        reason: String,
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
    /// Every replica's circuit breaker is open: the call fails fast (-32010, retryable).
    #[error("upstream {upstream:?} is failing; its circuit breaker is open for another {} ms", .retry_after.as_millis())]
    CircuitOpen {
        /// Namespace of the upstream.
        upstream: String,
        /// Time until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The idempotency key was used within its window for a different request (-32602).
    #[error("Invalid params: idempotency key {key:?} was already used for a different request")]
    IdempotencyConflict {
        /// The caller's key.
        key: String,
    },
    /// A call with this idempotency key is still running (-32014, retryable later).
    #[error("a call with idempotency key {key:?} is still in progress; retry later")]
    IdempotencyInProgress {
        /// The caller's key.
        key: String,
    },
    /// The gateway is draining for shutdown (-32013, retryable on another replica).
    #[error("the gateway is shutting down; retry on another replica")]
    ShuttingDown,
}

impl GatewayError {
    /// Which side the failure belongs to.
    pub fn side(&self) -> Side {
        use GatewayError::*;
        match self {
            InvalidParams(_)
            | MethodNotFound(_)
            | UnknownTool(_)
            | UnknownPrompt(_)
            | ResourceNotFound(_)
            | InvalidCursor
            | Forbidden(_)
            | IdempotencyConflict { .. } => Side::Client,
            UpstreamUnavailable { .. }
            | UpstreamTimeout { .. }
            | UpstreamTransport { .. }
            | UpstreamProtocol { .. }
            | InputRequiredUnsupported
            | CircuitOpen { .. } => Side::Upstream,
            ShuttingDown | Overloaded { .. } | IdempotencyInProgress { .. } => Side::Gateway,
        }
    }

    /// Whether repeating the same call later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamUnavailable { .. }
                | GatewayError::UpstreamTimeout { .. }
                | GatewayError::UpstreamTransport { .. }
                | GatewayError::CircuitOpen { .. }
                | GatewayError::Overloaded { .. }
                | GatewayError::ShuttingDown
                | GatewayError::IdempotencyInProgress { .. }
        )
    }

    /// The JSON-RPC error code for a client of the given era.
    pub fn code(&self, modern_client: bool) -> i64 {
        use GatewayError::*;
        match self {
            InvalidParams(_) | UnknownTool(_) | UnknownPrompt(_) | InvalidCursor | IdempotencyConflict { .. } => {
                code::INVALID_PARAMS
            }
            IdempotencyInProgress { .. } => code::IDEMPOTENCY_IN_PROGRESS,
            ResourceNotFound(_) if modern_client => code::INVALID_PARAMS,
            ResourceNotFound(_) => code::RESOURCE_NOT_FOUND,
            MethodNotFound(_) => code::METHOD_NOT_FOUND,
            Forbidden(_) => code::FORBIDDEN,
            UpstreamUnavailable { .. } | UpstreamTransport { .. } | CircuitOpen { .. } => code::UPSTREAM_UNAVAILABLE,
            Overloaded { .. } => code::OVERLOADED,
            UpstreamTimeout { .. } => code::UPSTREAM_TIMEOUT,
            UpstreamProtocol { .. } | InputRequiredUnsupported => code::INTERNAL_ERROR,
            ShuttingDown => code::OVERLOADED,
        }
    }

    /// The `data` member of the JSON-RPC error, if the failure has structured detail.
    pub fn data(&self) -> Option<serde_json::Value> {
        use GatewayError::*;
        match self {
            ResourceNotFound(uri) => Some(serde_json::json!({ "uri": uri })),
            UpstreamUnavailable { upstream, .. } | UpstreamTransport { upstream, .. } => {
                Some(serde_json::json!({ "upstream": upstream, "retryable": true }))
            }
            UpstreamTimeout { upstream, after } => Some(serde_json::json!({
                "upstream": upstream, "timeoutMs": after.as_millis() as u64, "retryable": true
            })),
            CircuitOpen { upstream, retry_after } => Some(serde_json::json!({
                "upstream": upstream, "breaker": "open", "retryAfterMs": retry_after.as_millis() as u64, "retryable": true
            })),
            Overloaded { retry_after, .. } => {
                Some(serde_json::json!({ "retryAfterMs": retry_after.as_millis() as u64, "retryable": true }))
            }
            ShuttingDown => Some(serde_json::json!({ "retryable": true })),
            IdempotencyConflict { key } => Some(serde_json::json!({ "idempotencyKey": key })),
            IdempotencyInProgress { key } => Some(serde_json::json!({ "idempotencyKey": key, "retryable": true })),
            _ => None,
        }
    }
}
