//! The label sets of the gateway's metrics (`super::Metrics`).

use prometheus_client::encoding::EncodeLabelSet;

use super::Name;

/// Labels of a finished call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// JSON-RPC method (unknown methods are `other`).
    pub method: &'static str,
    /// Upstream namespace, or `gateway` when the gateway answered itself.
    pub upstream: Name,
    /// `ok`, `tool_error`, `rpc_error` (answers), or the error table's label of the failure
    /// (`crate::error::GatewayError::class`): `client_error`, `unauthorized`, `forbidden`, `limited`, `rate_limited`, `budget_exceeded`, `shed`,
    /// `shutting_down`, `in_progress`, `cancelled`, `unavailable`, `upstream_error`, `timeout`,
    /// `internal`.
    pub outcome: &'static str,
}

/// Labels of per-method latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// JSON-RPC method.
    pub method: &'static str,
    /// Upstream namespace or `gateway`.
    pub upstream: Name,
}

/// Labels naming one upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Upstream namespace.
    pub upstream: String,
}

/// Labels of HTTP-level rejections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// HTTP status sent.
    pub status: u16,
}

/// Labels of shed calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    /// `gateway` or the upstream's bulkhead.
    pub limit: Name,
    /// Priority class of the shed call.
    pub priority: &'static str,
    /// The shed call's caller: its API key's stable id (a configured `name`, or `key:` and a
    /// keyed hash), or `anon`. Bounded by the configured keys.
    pub caller: Name,
}

/// Labels of calls refused by a rate limit (`pipeline::quota`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitedLabels {
    /// The caller's stable id (`Identity::id`, or `anon`); past [`MAX_LABELED`] distinct
    /// callers, `other`.
    pub caller: Name,
    /// The caller's tenant, `none` for static keys; past [`MAX_LABELED`] distinct tenants,
    /// `other`.
    pub tenant: Name,
    /// The bucket that refused: `key` or `tenant`.
    pub limit: &'static str,
}

/// Labels naming one upstream, allocation-free.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamName {
    /// Upstream namespace.
    pub upstream: Name,
}

/// Labels of what the gateway discarded from an upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscardLabels {
    /// Upstream namespace.
    pub upstream: Name,
    /// `stderr_line` (over the log rate), `signal` (notification queue full), or
    /// `oversized_message` (over `max_response_bytes`).
    pub kind: &'static str,
}

/// Labels naming one replica of an upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// Upstream namespace.
    pub upstream: String,
    /// Replica index.
    pub replica: u64,
}

/// Labels of a cache lookup: upstream, tool, level (`l1`, `l2`, `none`), result (`hit`, `miss`,
/// `coalesced`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub upstream: Name,
    pub tool: String,
    pub level: &'static str,
    pub result: &'static str,
}

/// Labels naming a Redis operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

/// Labels naming why an L2 (Redis) entry was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct L2RejectLabels {
    pub reason: &'static str,
}

/// Labels naming an admission limit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `gateway` or an upstream namespace.
    pub limit: String,
}
