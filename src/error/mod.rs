//! The gateway's error taxonomy and its one table: every failure, its side, and how it reaches
//! the wire (JSON-RPC code, HTTP status, `Retry-After`, metric outcome). Typed until `front::rescue`.

use std::time::Duration;

use http::StatusCode;

use crate::wire::mcp::{self, Era, code};

mod transport;
pub use transport::{TransportError, TransportKind};

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

/// Everything a request can fail with before, or instead of, an upstream's answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// The body is not JSON (-32700).
    #[error("Parse error: {0}")]
    Parse(String),
    /// JSON, but not a valid JSON-RPC request for this transport (-32600).
    #[error("Invalid request: {0}")]
    InvalidRequest(String),
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
    /// The idempotency key was used within its window for a different request (-32602).
    #[error("Invalid params: idempotency key {key:?} was already used for a different request")]
    IdempotencyConflict {
        /// The caller's key.
        key: String,
    },
    /// A routing header disagrees with the body, is repeated, or is missing (2026-07-28
    /// `basic/transports` "Standard Headers": -32020, HTTP 400).
    #[error("{0}")]
    HeaderMismatch(String),
    /// The request's protocol revision is not one the gateway speaks (-32022 with the supported
    /// revisions for modern clients; -32600 for a legacy `MCP-Protocol-Version` header; HTTP 400).
    #[error("Unsupported protocol version {requested:?}")]
    UnsupportedVersion {
        /// The revision the client asked for.
        requested: String,
    },
    /// A legacy request without `Mcp-Session-Id` (or `sessionId` on `/messages`): 400, -32600.
    #[error("Bad Request: a session id is required (the Mcp-Session-Id header; sessionId on /messages)")]
    SessionRequired,
    /// A session id that is not ours, expired, or was ended (HTTP 404, -32001).
    #[error("Session not found: it expired or was ended; initialize again")]
    SessionNotFound,
    /// The `Accept` header allows nothing the gateway can answer with (HTTP 406, -32600).
    #[error("Not Acceptable: {0}")]
    NotAcceptable(&'static str),
    /// The body is not `application/json` (HTTP 415, -32600).
    #[error("Unsupported Media Type: send application/json")]
    UnsupportedMediaType,
    /// The body exceeds `server.max_body_bytes` (HTTP 413, -32600).
    #[error("Request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body did not arrive within `server.body_read_timeout` (HTTP 408, -32600; the
    /// connection is closed).
    #[error("Request Timeout: the body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// The caller reached one of its own limits (HTTP 429, -32015, `data.limit` names the
    /// `[server]` key): sessions, ended sessions, streams or subscriptions. Other callers are
    /// not affected, so this is the caller's 429, not the gateway's 503.
    #[error("Limit reached: {what} (server.{key} = {limit})")]
    LimitReached {
        /// What the caller has too many of, in words.
        what: &'static str,
        /// The `[server]` key that sets the limit.
        key: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The caller is over its rate limit (`pipeline::quota`): HTTP 429 with `Retry-After`
    /// (seconds, rounded up), -32016 with `data.retryAfterMs` and `data.limit` (`key` or
    /// `tenant`).
    #[error("Rate limit exceeded for this {scope}; retry in {} ms", .retry_after.as_millis())]
    RateLimited {
        /// Whose bucket is empty: `key` or `tenant`.
        scope: &'static str,
        /// Time until the bucket has room for one call.
        retry_after: Duration,
    },
    /// A cost budget the call counts against is spent and its action is `deny`
    /// (`crate::cost`): -32017, HTTP 429 with `Retry-After: 60`.
    #[error(
        "cost budget {budget} (${per_hour}/h) is spent; calls to priced tools are refused until spending over the trailing hour drops below it"
    )]
    BudgetExceeded {
        /// The budget: `gateway`, `caller:<id>`, `tenant:<name>`.
        budget: String,
        /// Its dollars per hour.
        per_hour: f64,
    },
    /// The body could not be read (HTTP 400, -32700).
    #[error("Unreadable request body: {0}")]
    BodyUnreadable(String),
    /// The HTTP method is not served at this path in this era (HTTP 405 with `Allow: POST`).
    #[error("Method not allowed: the 2026-07-28 transport uses POST only")]
    MethodNotAllowed,
    /// No such route or upstream (HTTP 404, -32601).
    #[error("Not found: {0}")]
    NotFound(String),
    /// Bearer credentials are missing or wrong (HTTP 401 with `WWW-Authenticate: Bearer`).
    #[error("Unauthorized: a valid bearer credential (API key or access token) is required")]
    Unauthorized,
    /// The store could not say whether a key is valid: PostgreSQL does not answer and the key
    /// is not cached, or its server configs do not open (HTTP 503 with `Retry-After: 1`,
    /// -32013, `data.retryable`). The message names no secret.
    #[error("the key store is unavailable; retry shortly ({0})")]
    KeyStoreUnavailable(String),
    /// `Host` or `Origin` is not allowed: a possible DNS-rebinding attack (HTTP 403).
    #[error("Forbidden: Host or Origin is not allowed")]
    SiteNotAllowed,
    /// The caller may not do this (-32012).
    #[error("Forbidden: {0}")]
    Forbidden(String),
    /// An admin endpoint was called with a key whose role is not `admin` (HTTP 403, -32012).
    #[error("Forbidden: this endpoint needs an API key with role \"admin\"")]
    AdminRequired,
    /// Admission shed the call: queues full or the wait ran out (-32013, 503, `Retry-After`).
    #[error("overloaded: {reason}; retry later")]
    Overloaded {
        /// What was full.
        reason: String,
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
    /// The gateway is draining for shutdown (-32013, HTTP 503 with `Retry-After`).
    #[error("the gateway is shutting down; retry on another replica")]
    ShuttingDown,
    /// The audit log cannot record the call (`[audit] on_audit_failure = "refuse"` and its
    /// buffer is full: the sink is down or behind): -32018, HTTP 503 with `Retry-After: 1`,
    /// `data.retryable`. The call was not run.
    #[error("the audit log cannot record this call (its sink is unavailable); retry shortly")]
    AuditUnavailable,
    /// An answer withheld by its `detect` policy (-32019, `data.kinds`; never the data).
    #[error("the answer was withheld: it holds sensitive data ({})", .kinds.join(", "))]
    SensitiveDataBlocked {
        /// The kinds found (`crate::detect::Kind::name`).
        kinds: Vec<&'static str>,
    },
    /// A call with this idempotency key is still running (-32014, retryable later).
    #[error("a call with idempotency key {key:?} is still in progress; retry later")]
    IdempotencyInProgress {
        /// The caller's key.
        key: String,
    },
    /// The client cancelled the request (-32800, as the official SDKs answer).
    #[error("Request cancelled")]
    Cancelled,
    /// The upstream is down, starting, or has no live replica; not sent (-32010, retryable).
    #[error("upstream {upstream:?} is unavailable: {reason}")]
    UpstreamUnavailable {
        /// Namespace of the upstream.
        upstream: String,
        /// What is known about why.
        reason: String,
    },
    /// Every live replica's circuit breaker is open: the call fails fast (-32010, retryable).
    #[error("upstream {upstream:?} is failing; its circuit breaker is open for another {} ms", .retry_after.as_millis())]
    CircuitOpen {
        /// Namespace of the upstream.
        upstream: String,
        /// Time until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The connection failed while the call was under way; it may have run (-32010, retryable).
    #[error("upstream {upstream:?} connection failed: {cause}")]
    UpstreamTransport {
        /// Namespace of the upstream.
        upstream: String,
        /// What failed.
        cause: TransportError,
    },
    /// The upstream did not answer in time; the call was cancelled upstream (-32011, retryable).
    #[error("upstream {upstream:?} did not answer within {} ms", .after.as_millis())]
    UpstreamTimeout {
        /// Namespace of the upstream.
        upstream: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The upstream answered with something that is not a valid MCP response (-32603).
    #[error("upstream {upstream:?} sent an invalid response: {reason}")]
    UpstreamProtocol {
        /// Namespace of the upstream.
        upstream: String,
        /// What was wrong.
        reason: String,
    },
    /// The upstream's answer (a JSON body, one SSE event or one stdio line) is larger than its
    /// `max_response_bytes`; it was cut off and discarded (-32603).
    #[error(
        "upstream {upstream:?} answered with more than {limit} bytes (its max_response_bytes); the answer was discarded"
    )]
    UpstreamResponseTooLarge {
        /// Namespace of the upstream.
        upstream: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The upstream answered `input_required` and the gateway could not carry it to this
    /// legacy client (-32603); the text says why (e.g. a capability the client did not declare).
    #[error("the upstream requires interactive input (input_required) that could not be carried to this client: {0}")]
    InputRequiredUnsupported(String),
    /// A call ended without an answer (a gateway bug; HTTP 500, -32603).
    #[error("the call ended without an answer")]
    NoAnswer,
    /// `tasks/get`, `tasks/update` or `tasks/cancel` named a task id this caller does not hold:
    /// unknown, altered, or another caller's (-32602; the tasks extension, "Protocol Errors").
    #[error("Failed to retrieve task: Task not found")]
    TaskNotFound,
    /// A tasks method from a client that did not declare the `io.modelcontextprotocol/tasks`
    /// extension in its request's capabilities (-32021, `data.requiredCapabilities`).
    #[error("Missing required client capability: the io.modelcontextprotocol/tasks extension")]
    TasksNotDeclared,
    /// A call awaiting approval was refused, not run (-32023, `data.reason`; `crate::approvals`).
    #[error("approval refused: {1}")]
    ApprovalRefused(&'static str, String),
    /// No approval came within `approvals.timeout` (-32024); the call was not run.
    #[error("approval timed out: no decision within {} s; the call was not run", .0.as_secs())]
    ApprovalTimedOut(Duration),
}

/// How one error reaches the wire, from [`GatewayError::class`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// The JSON-RPC `error.code`.
    pub code: i64,
    /// The HTTP status of a response that carries only this error.
    pub status: StatusCode,
    /// The `Retry-After` to send, if any.
    pub retry_after: Option<Duration>,
    /// The `outcome` label of `sekisho_requests_total`.
    pub outcome: &'static str,
}

/// The HTTP status of a response carrying a JSON-RPC error with `code`, when nothing more
/// specific is known (errors answered by upstreams, and every typed error without a status of
/// its own). Modern era (2026-07-28 `basic/transports`): 400 for parse, request, params, header
/// mismatch, missing capability and unsupported version; 404 for method not found. Legacy era:
/// 400 for unreadable or invalid messages, else 200 (the error travels in the body). Either
/// era: 503 for overload and drain.
pub fn status_for_code(code: i64, era: Era) -> StatusCode {
    match (era, code) {
        (_, code::PARSE_ERROR | code::INVALID_REQUEST) => StatusCode::BAD_REQUEST,
        (
            Era::Modern,
            code::INVALID_PARAMS
            | code::HEADER_MISMATCH
            | code::MISSING_CLIENT_CAPABILITY
            | code::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        (Era::Modern, code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        (_, code::OVERLOADED) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    }
}

impl GatewayError {
    /// The table: this error's JSON-RPC code, HTTP status, `Retry-After` and metric outcome
    /// for a client of `era`. Every code the gateway writes comes from here.
    pub fn class(&self, era: Era) -> Class {
        use GatewayError::*;
        let modern = era == Era::Modern;
        // (code, fixed HTTP status or None for the code's status, retry-after, outcome)
        let (code, status, retry_after, outcome): (i64, Option<StatusCode>, Option<Duration>, &'static str) = match self
        {
            Parse(_) | BodyUnreadable(_) => (code::PARSE_ERROR, None, None, "client_error"),
            InvalidRequest(_) | SessionRequired => (code::INVALID_REQUEST, None, None, "client_error"),
            InvalidParams(_) | UnknownTool(_) | UnknownPrompt(_) | InvalidCursor | IdempotencyConflict { .. } => {
                (code::INVALID_PARAMS, None, None, "client_error")
            }
            ResourceNotFound(_) if modern => (code::INVALID_PARAMS, None, None, "client_error"),
            ResourceNotFound(_) => (code::RESOURCE_NOT_FOUND, None, None, "client_error"),
            MethodNotFound(_) => (code::METHOD_NOT_FOUND, None, None, "client_error"),
            HeaderMismatch(_) => (code::HEADER_MISMATCH, Some(StatusCode::BAD_REQUEST), None, "client_error"),
            UnsupportedVersion { .. } if modern => {
                (code::UNSUPPORTED_PROTOCOL_VERSION, Some(StatusCode::BAD_REQUEST), None, "client_error")
            }
            UnsupportedVersion { .. } => (code::INVALID_REQUEST, Some(StatusCode::BAD_REQUEST), None, "client_error"),
            SessionNotFound => (code::SESSION_NOT_FOUND, Some(StatusCode::NOT_FOUND), None, "client_error"),
            NotAcceptable(_) => (code::INVALID_REQUEST, Some(StatusCode::NOT_ACCEPTABLE), None, "client_error"),
            UnsupportedMediaType => {
                (code::INVALID_REQUEST, Some(StatusCode::UNSUPPORTED_MEDIA_TYPE), None, "client_error")
            }
            BodyTooLarge { .. } => (code::INVALID_REQUEST, Some(StatusCode::PAYLOAD_TOO_LARGE), None, "client_error"),
            BodyTimeout(_) => (code::INVALID_REQUEST, Some(StatusCode::REQUEST_TIMEOUT), None, "client_error"),
            LimitReached { .. } => (code::LIMIT_REACHED, Some(StatusCode::TOO_MANY_REQUESTS), None, "limited"),
            RateLimited { retry_after, .. } => {
                (code::RATE_LIMITED, Some(StatusCode::TOO_MANY_REQUESTS), Some(*retry_after), "rate_limited")
            }
            BudgetExceeded { .. } => (
                code::BUDGET_EXCEEDED,
                Some(StatusCode::TOO_MANY_REQUESTS),
                Some(Duration::from_secs(60)),
                "budget_exceeded",
            ),
            MethodNotAllowed => (code::METHOD_NOT_FOUND, Some(StatusCode::METHOD_NOT_ALLOWED), None, "client_error"),
            NotFound(_) => (code::METHOD_NOT_FOUND, Some(StatusCode::NOT_FOUND), None, "client_error"),
            Unauthorized => (code::FORBIDDEN, Some(StatusCode::UNAUTHORIZED), None, "unauthorized"),
            KeyStoreUnavailable(_) => (
                code::OVERLOADED,
                Some(StatusCode::SERVICE_UNAVAILABLE),
                Some(Duration::from_secs(1)),
                "store_unavailable",
            ),
            SiteNotAllowed => (code::FORBIDDEN, Some(StatusCode::FORBIDDEN), None, "forbidden"),
            Forbidden(_) => (code::FORBIDDEN, None, None, "forbidden"),
            AdminRequired => (code::FORBIDDEN, Some(StatusCode::FORBIDDEN), None, "forbidden"),
            Overloaded { retry_after, .. } => {
                (code::OVERLOADED, Some(StatusCode::SERVICE_UNAVAILABLE), Some(*retry_after), "shed")
            }
            ShuttingDown => {
                (code::OVERLOADED, Some(StatusCode::SERVICE_UNAVAILABLE), Some(Duration::from_secs(1)), "shutting_down")
            }
            IdempotencyInProgress { .. } => (code::IDEMPOTENCY_IN_PROGRESS, None, None, "in_progress"),
            AuditUnavailable => (
                code::AUDIT_UNAVAILABLE,
                Some(StatusCode::SERVICE_UNAVAILABLE),
                Some(Duration::from_secs(1)),
                "audit_unavailable",
            ),
            SensitiveDataBlocked { .. } => (code::SENSITIVE_DATA_BLOCKED, None, None, "sensitive_data_blocked"),
            Cancelled => (code::REQUEST_CANCELLED, None, None, "cancelled"),
            UpstreamUnavailable { .. } | CircuitOpen { .. } => (code::UPSTREAM_UNAVAILABLE, None, None, "unavailable"),
            UpstreamTransport { .. } => (code::UPSTREAM_UNAVAILABLE, None, None, "upstream_error"),
            UpstreamTimeout { .. } => (code::UPSTREAM_TIMEOUT, None, None, "timeout"),
            UpstreamProtocol { .. } | UpstreamResponseTooLarge { .. } | InputRequiredUnsupported(_) => {
                (code::INTERNAL_ERROR, None, None, "upstream_error")
            }
            NoAnswer => (code::INTERNAL_ERROR, Some(StatusCode::INTERNAL_SERVER_ERROR), None, "internal"),
            TaskNotFound => (code::INVALID_PARAMS, None, None, "client_error"),
            TasksNotDeclared => (code::MISSING_CLIENT_CAPABILITY, None, None, "client_error"),
            ApprovalRefused(..) => (code::APPROVAL_REFUSED, None, None, "approval_refused"),
            ApprovalTimedOut(_) => (code::APPROVAL_TIMEOUT, None, None, "approval_timeout"),
        };
        Class { code, status: status.unwrap_or_else(|| status_for_code(code, era)), retry_after, outcome }
    }

    /// The `error.message` a client gets: the error's text, except that upstream failures keep
    /// their cause to a few words of the gateway's own (a transport failure's kind, "an invalid
    /// response") — the underlying error text can name internal hosts or carry the upstream's
    /// own words, which belong in logs, not in another party's hands.
    pub fn client_message(&self) -> std::borrow::Cow<'_, str> {
        use GatewayError::*;
        match self {
            UpstreamTransport { upstream, cause } => {
                format!("upstream {upstream:?} connection failed: {}", cause.kind).into()
            }
            UpstreamProtocol { upstream, .. } => format!("upstream {upstream:?} sent an invalid response").into(),
            other => other.to_string().into(),
        }
    }

    /// Whether [`GatewayError::client_message`] leaves out detail that logs should keep.
    pub fn has_hidden_detail(&self) -> bool {
        matches!(self, GatewayError::UpstreamTransport { .. } | GatewayError::UpstreamProtocol { .. })
    }

    /// Which side the failure belongs to.
    pub fn side(&self) -> Side {
        use GatewayError::*;
        match self {
            UpstreamUnavailable { .. }
            | UpstreamTimeout { .. }
            | UpstreamTransport { .. }
            | UpstreamProtocol { .. }
            | UpstreamResponseTooLarge { .. }
            | InputRequiredUnsupported(_)
            | CircuitOpen { .. } => Side::Upstream,
            ShuttingDown
            | Overloaded { .. }
            | IdempotencyInProgress { .. }
            | NoAnswer
            | AuditUnavailable
            | SensitiveDataBlocked { .. } => Side::Gateway,
            _ => Side::Client,
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
                | GatewayError::RateLimited { .. }
                | GatewayError::BudgetExceeded { .. }
                | GatewayError::ShuttingDown
                | GatewayError::IdempotencyInProgress { .. }
                | GatewayError::AuditUnavailable
        )
    }

    /// The upstream this error names, if any (metric labels).
    pub fn upstream(&self) -> Option<&str> {
        use GatewayError::*;
        match self {
            UpstreamUnavailable { upstream, .. }
            | CircuitOpen { upstream, .. }
            | UpstreamTransport { upstream, .. }
            | UpstreamTimeout { upstream, .. }
            | UpstreamProtocol { upstream, .. }
            | UpstreamResponseTooLarge { upstream, .. } => Some(upstream),
            _ => None,
        }
    }

    /// The `data` member of the JSON-RPC error, if the failure has structured detail.
    pub fn data(&self) -> Option<serde_json::Value> {
        use GatewayError::*;
        match self {
            ResourceNotFound(uri) => Some(serde_json::json!({ "uri": uri })),
            LimitReached { key, limit, .. } => {
                Some(serde_json::json!({ "limit": format!("server.{key}"), "max": limit }))
            }
            UnsupportedVersion { requested } => {
                Some(serde_json::json!({ "supported": mcp::MODERN_VERSIONS, "requested": requested }))
            }
            UpstreamUnavailable { upstream, .. } => {
                Some(serde_json::json!({ "upstream": upstream, "retryable": true }))
            }
            UpstreamTransport { upstream, cause } => Some(serde_json::json!({
                "upstream": upstream, "cause": cause.kind.to_string(), "retryable": true
            })),
            UpstreamTimeout { upstream, after } => Some(serde_json::json!({
                "upstream": upstream, "timeoutMs": after.as_millis() as u64, "retryable": true
            })),
            UpstreamResponseTooLarge { upstream, limit } => {
                Some(serde_json::json!({ "upstream": upstream, "limitBytes": limit }))
            }
            CircuitOpen { upstream, retry_after } => Some(serde_json::json!({
                "upstream": upstream, "breaker": "open", "retryAfterMs": retry_after.as_millis() as u64, "retryable": true
            })),
            Overloaded { retry_after, .. } => {
                Some(serde_json::json!({ "retryAfterMs": retry_after.as_millis() as u64, "retryable": true }))
            }
            ShuttingDown | KeyStoreUnavailable(_) | AuditUnavailable => Some(serde_json::json!({ "retryable": true })),
            RateLimited { scope, retry_after } => Some(serde_json::json!({
                // Rounded up: a client that waits this long finds room.
                "limit": scope, "retryAfterMs": retry_after.as_micros().div_ceil(1000) as u64, "retryable": true
            })),
            BudgetExceeded { budget, per_hour } => Some(serde_json::json!({
                "budget": budget, "perHour": per_hour, "retryAfterMs": 60_000, "retryable": true
            })),
            IdempotencyConflict { key } => Some(serde_json::json!({ "idempotencyKey": key })),
            SensitiveDataBlocked { kinds } => Some(serde_json::json!({ "kinds": kinds, "retryable": false })),
            IdempotencyInProgress { key } => Some(serde_json::json!({ "idempotencyKey": key, "retryable": true })),
            ApprovalRefused(reason, _) => Some(serde_json::json!({ "reason": reason })),
            ApprovalTimedOut(after) => Some(serde_json::json!({ "timeoutMs": after.as_millis() as u64 })),
            TasksNotDeclared => Some(serde_json::json!({
                "requiredCapabilities": { "extensions": { (mcp::EXT_TASKS): {} } }
            })),
            _ => None,
        }
    }
}

impl From<crate::wire::jsonrpc::FrameError> for GatewayError {
    fn from(e: crate::wire::jsonrpc::FrameError) -> Self {
        match e {
            crate::wire::jsonrpc::FrameError::Parse(r) => GatewayError::Parse(r),
            crate::wire::jsonrpc::FrameError::Invalid { reason, .. } => GatewayError::InvalidRequest(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_maps_codes_statuses_and_retry_after_by_era() {
        let c = GatewayError::MethodNotFound("x".into());
        assert_eq!((c.class(Era::Modern).code, c.class(Era::Modern).status), (-32601, StatusCode::NOT_FOUND));
        assert_eq!(c.class(Era::Legacy).status, StatusCode::OK);
        let r = GatewayError::ResourceNotFound("u://x".into());
        assert_eq!((r.class(Era::Legacy).code, r.class(Era::Modern).code), (-32002, -32602));
        let shed = GatewayError::Overloaded { reason: "q".into(), retry_after: Duration::from_secs(2) };
        let class = shed.class(Era::Legacy);
        assert_eq!(
            (class.status, class.retry_after, class.outcome),
            (StatusCode::SERVICE_UNAVAILABLE, Some(Duration::from_secs(2)), "shed")
        );
        assert_eq!(GatewayError::Unauthorized.class(Era::Legacy).status, StatusCode::UNAUTHORIZED);
        let limited = GatewayError::RateLimited { scope: "key", retry_after: Duration::from_micros(1_500_001) };
        for era in [Era::Legacy, Era::Modern] {
            let class = limited.class(era);
            assert_eq!(
                (class.code, class.status, class.outcome),
                (-32016, StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            );
        }
        assert_eq!(limited.data().unwrap()["retryAfterMs"], 1501, "rounded up");
        assert_eq!(GatewayError::SessionNotFound.class(Era::Legacy).code, -32001);
        let v = GatewayError::UnsupportedVersion { requested: "v9".into() };
        assert_eq!((v.class(Era::Modern).code, v.class(Era::Legacy).code), (-32022, -32600));
    }

    #[test]
    fn clients_get_no_upstream_detail() {
        let cause = TransportError::new(TransportKind::Refused, "tcp connect error: db.internal.corp:5432");
        let e = GatewayError::UpstreamTransport { upstream: "up".into(), cause };
        assert_eq!(e.client_message(), "upstream \"up\" connection failed: connection refused");
        assert!(e.to_string().contains("db.internal.corp"), "logs keep the detail");
        let e = GatewayError::UpstreamProtocol { upstream: "up".into(), reason: "stack trace at 10.0.0.7".into() };
        assert!(!e.client_message().contains("10.0.0.7"));
    }

    #[test]
    fn transport_causes_are_classified_from_io_errors() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(TransportError::classify(&refused).kind, TransportKind::Refused);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(TransportError::classify(&reset).kind, TransportKind::Reset);
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(TransportError::classify(&timeout).kind, TransportKind::TimedOut);
    }
}
