//! MCP protocol constants: revisions, eras, reserved `_meta` keys, headers and error codes.
//!
//! Source: the MCP specification revisions 2024-11-05 through 2026-07-28
//! (`basic/index`, `basic/transports`, `basic/lifecycle`, `schema.ts`).

/// Revisions negotiated with the `initialize` handshake (the legacy era), oldest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Newest legacy revision; what the gateway offers upstream and counter-offers downstream.
pub const LATEST_LEGACY: &str = "2025-11-25";

/// Revisions that use the stateless per-request envelope (the modern era).
pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];

/// Newest modern revision; what the gateway sends in `server/discover` probes.
pub const LATEST_MODERN: &str = "2026-07-28";

/// The revision a Streamable HTTP server assumes when a legacy request carries no
/// `MCP-Protocol-Version` header (transports, "Protocol Version Header", 2025-06-18).
pub const DEFAULT_HEADERLESS_VERSION: &str = "2025-03-26";

/// The only legacy revision whose Streamable HTTP transport accepts JSON-RPC batches.
pub const BATCH_VERSION: &str = "2025-03-26";

/// `_meta` key carrying the modern per-request protocol version (2026-07-28 `basic/index`).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the modern per-request client capabilities.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key carrying the modern per-request client info (optional).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key carrying the modern per-request log level (optional).
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key carrying server info on modern results.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key of the progress token a caller attaches to a request.
pub const META_PROGRESS_TOKEN: &str = "progressToken";
/// sekisho's own `_meta` key for idempotency keys (the MCP-Tx pattern).
pub const META_IDEMPOTENCY_KEY: &str = "io.sekisho/idempotencyKey";
/// sekisho's own request `_meta` key asking for a dry run of a `tools/call` (`true`): validated,
/// authorised and approved, then answered by the gateway without being sent upstream; the
/// answer's `_meta` carries the same key, `true` (`pipeline::approval`).
pub const META_DRY_RUN: &str = "io.sekisho/dryRun";
/// sekisho's own request `_meta` key for the admission priority class.
pub const META_PRIORITY: &str = "io.sekisho/priority";
/// sekisho's own result `_meta` key naming upstreams missing from a merged list.
pub const META_UNAVAILABLE: &str = "io.sekisho/unavailableUpstreams";
/// `_meta` key on results the gateway served from its cache or coalesced:
/// `{"status": "hit"|"miss"|"coalesced", "level": "l1"|"l2", "ageMs": N}`.
pub const META_CACHE: &str = "io.sekisho/cache";
/// `_meta` key on a result replayed for a repeated idempotency key: `{"status": "replayed", "ageMs": N}`.
pub const META_IDEMPOTENCY: &str = "io.sekisho/idempotency";

/// The tasks extension's identifier (ext-tasks 2026-07-28, SEP-2663): a key of
/// `capabilities.extensions` on both sides.
pub const EXT_TASKS: &str = "io.modelcontextprotocol/tasks";
/// The result member that tells a task handle (`"task"`) from a standard result (SEP-2322,
/// extended by the tasks extension).
pub const RESULT_TYPE_TASK: &str = "task";

/// HTTP header naming the protocol revision of a request (transports, 2025-06-18+).
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// HTTP header carrying the legacy session id (transports, "Session Management").
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
/// HTTP header mirroring the JSON-RPC method (2026-07-28 transports).
pub const HEADER_METHOD: &str = "mcp-method";
/// HTTP header mirroring the tool/prompt name or resource URI (2026-07-28 transports).
pub const HEADER_NAME: &str = "mcp-name";
/// Prefix of the HTTP headers mirroring tool arguments that carry an `x-mcp-header`
/// annotation: `Mcp-Param-{name}` (2026-07-28 transports "Custom Headers", SEP-2243).
pub const HEADER_PARAM_PREFIX: &str = "mcp-param-";

/// JSON-RPC 2.0 and MCP error codes.
pub mod code {
    /// Invalid JSON was received (JSON-RPC 2.0 §5.1).
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object (JSON-RPC 2.0 §5.1).
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available (JSON-RPC 2.0 §5.1).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters (JSON-RPC 2.0 §5.1); also "resource not found" from 2026-07-28.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error (JSON-RPC 2.0 §5.1).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Legacy-era "resource not found" (2024-11-05 .. 2025-11-25 `server/resources`).
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// HTTP headers disagree with the body, or are missing (2026-07-28).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// A required client capability was not declared (2026-07-28).
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// The request's protocol version is not supported (2026-07-28).
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// sekisho: the upstream is unavailable (down, restarting, or circuit open); retryable.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32010;
    /// sekisho: the upstream did not answer within its timeout; retryable.
    pub const UPSTREAM_TIMEOUT: i64 = -32011;
    /// sekisho: the caller is not allowed to do this.
    pub const FORBIDDEN: i64 = -32012;
    /// sekisho: the gateway is overloaded or shutting down; retry later.
    pub const OVERLOADED: i64 = -32013;
    /// sekisho: a call with the same idempotency key is still running (retryable).
    pub const IDEMPOTENCY_IN_PROGRESS: i64 = -32014;
    /// sekisho: the caller has reached one of its own limits (sessions, streams,
    /// subscriptions; HTTP 429); it must end something before it may start another.
    pub const LIMIT_REACHED: i64 = -32015;
    /// sekisho: the caller (its API key, or its tenant) is over its rate limit (HTTP 429 with
    /// `Retry-After`; `data.retryAfterMs`); retry after the wait.
    pub const RATE_LIMITED: i64 = -32016;
    /// sekisho: a cost budget the call counts against is spent (`[budgets]`, action `deny`;
    /// HTTP 429 with `Retry-After: 60`; `data.budget`, `data.perHour`); retry once spending
    /// over the trailing hour has dropped.
    pub const BUDGET_EXCEEDED: i64 = -32017;
    /// sekisho: the audit log cannot take the call's record (`[audit] on_audit_failure =
    /// "refuse"` and its buffer is full); HTTP 503 with `Retry-After`; retry later.
    pub const AUDIT_UNAVAILABLE: i64 = -32018;
    /// sekisho: a call that needs approval (`[approvals]`, docs/security.md "Approval of risky
    /// calls") was refused and not run: the client declined the elicitation, an operator
    /// denied it, the client could not be asked, or too many calls await approval;
    /// `data.reason` is `declined`, `denied`, `unreachable` or `full`.
    pub const APPROVAL_REFUSED: i64 = -32023;
    /// sekisho: a call that needs approval got no decision within `approvals.timeout` and was
    /// not run (`data.timeoutMs`); send it again to ask again.
    pub const APPROVAL_TIMEOUT: i64 = -32024;
    /// sekisho: the upstream's answer holds sensitive data of a kind its `detect` policy blocks
    /// (`results = "block"`; `crate::detect`), so it was withheld; the message and
    /// `data.kinds` name the kinds found, never the data. Not retryable: the same call
    /// answers the same way.
    pub const SENSITIVE_DATA_BLOCKED: i64 = -32019;
    /// Legacy Streamable HTTP: the session id is unknown or expired (the code the official
    /// TypeScript SDK answers with, HTTP 404).
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// The request was cancelled by its client (the code the Python and TypeScript SDKs use).
    pub const REQUEST_CANCELLED: i64 = -32800;
}

/// The protocol era of one side of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Era {
    /// `initialize` handshake, sessions, server-to-client requests (2024-11-05 .. 2025-11-25).
    Legacy,
    /// Stateless per-request `_meta` envelope, `server/discover` (2026-07-28).
    Modern,
}

/// Which era a protocol revision string belongs to, or `None` for an unknown revision.
pub fn era_of(version: &str) -> Option<Era> {
    if LEGACY_VERSIONS.contains(&version) {
        Some(Era::Legacy)
    } else if MODERN_VERSIONS.contains(&version) {
        Some(Era::Modern)
    } else {
        None
    }
}

/// A protocol revision the gateway knows, as a `'static` string (so contexts stay `Copy`).
pub fn known_version(version: &str) -> Option<&'static str> {
    LEGACY_VERSIONS.iter().chain(MODERN_VERSIONS.iter()).find(|v| **v == version).copied()
}

/// Legacy version negotiation (lifecycle, "Version Negotiation"): echo a supported
/// requested revision, otherwise counter-offer the latest one.
pub fn negotiate_legacy(requested: &str) -> &'static str {
    LEGACY_VERSIONS.iter().find(|v| **v == requested).copied().unwrap_or(LATEST_LEGACY)
}

/// Whether a revision orders at or after `minimum` (both must be known revisions).
pub fn at_least(version: &str, minimum: &str) -> bool {
    let order = |v: &str| LEGACY_VERSIONS.iter().chain(MODERN_VERSIONS.iter()).position(|k| *k == v);
    matches!((order(version), order(minimum)), (Some(a), Some(b)) if a >= b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_known_and_counters_unknown() {
        assert_eq!(negotiate_legacy("2025-03-26"), "2025-03-26");
        assert_eq!(negotiate_legacy("1999-01-01"), LATEST_LEGACY);
        assert_eq!(negotiate_legacy("2026-07-28"), LATEST_LEGACY);
    }

    #[test]
    fn eras_and_order() {
        assert_eq!(era_of("2024-11-05"), Some(Era::Legacy));
        assert_eq!(era_of("2026-07-28"), Some(Era::Modern));
        assert_eq!(era_of("zzz"), None);
        assert!(at_least("2025-11-25", "2025-06-18"));
        assert!(!at_least("2025-03-26", "2025-06-18"));
        assert!(!at_least("zzz", "2024-11-05"));
    }
}
