//! The per-request context: a [`Call`] as the front hands it to the stack (who is calling, in
//! which era, with what priority and idempotency key, where its events go), and a [`Routed`]
//! call once the resolve step has decided its [`Target`] (which upstream, under which name,
//! how it may be cached, retried and timed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::admit::Admissible;
use super::parts::{ClientSide, EventSink, Params, Principal, Priority, Scope};
use crate::cache::config::CacheScope;
use crate::catalog::UpstreamLists;
use crate::session::registry::SessionState;
use crate::upstream::Upstream;
use crate::upstream::request::Outbound;
use crate::wire::jsonrpc::Method;
use crate::wire::mcp::Era;

/// Per-request context that travels with a [`Call`].
#[derive(Clone, Debug)]
pub struct CallCtx {
    /// The calling client.
    pub client: ClientSide,
    /// The addressed catalog.
    pub scope: Scope,
    /// The authenticated caller.
    pub principal: Principal,
    /// Where progress, log messages and server-to-client requests go; `None` when the client
    /// cannot receive anything but the response (e.g. a JSON-only response).
    pub events: Option<EventSink>,
    /// When the front received the request.
    pub received: Instant,
    /// Admission priority.
    pub priority: Priority,
    /// The caller's idempotency key (`_meta["io.sekisho/idempotencyKey"]` or `Idempotency-Key`);
    /// forwarded to the upstream in `_meta` on `tools/call`.
    pub idempotency_key: Option<Arc<str>>,
    /// The legacy session (or stdio conversation) the call belongs to, which holds its
    /// resource subscriptions; `None` for modern requests.
    pub session: Option<Arc<SessionState>>,
    /// A modern Streamable HTTP `tools/call`'s `Mcp-Param-*` headers, checked by resolve
    /// against the tool's `x-mcp-header` arguments; `None` where the transport has none to
    /// check (legacy, stdio, other methods).
    pub param_headers: Option<http::HeaderMap>,
}

/// One request on its way through the stack, before resolve.
#[derive(Debug)]
pub struct Call {
    /// The JSON-RPC method.
    pub method: Method,
    /// The params object.
    pub params: Params,
    /// Context.
    pub ctx: CallCtx,
}

impl Admissible for Call {
    fn priority(&self) -> Priority {
        self.ctx.priority
    }

    fn caller(&self) -> &Principal {
        &self.ctx.principal
    }
}

/// How the results of a call may be cached; decided by resolve, applied by the cache step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CachePolicy {
    /// A tool's results: stored for `ttl` and shared within `scope` (configuration, or a
    /// trusted upstream's `readOnlyHint`).
    Fixed {
        /// Time to live.
        ttl: Duration,
        /// Who may receive them.
        scope: CacheScope,
    },
    /// A resource read: stored for the upstream's `ttlMs` with its `cacheScope` (2026-07-28
    /// caching hints), else for `ttl` (the upstream's `resource_ttl`) with `[cache]
    /// default_scope`; not stored without either.
    Hinted {
        /// The upstream's `resource_ttl`.
        ttl: Option<Duration>,
    },
}

/// Where a call goes and how it may be treated, decided once by the resolve step; no later
/// step looks the catalog up again.
#[derive(Clone)]
pub struct Target {
    /// The upstream that owns the tool, prompt or resource.
    pub upstream: Arc<Upstream>,
    /// The upstream that serves its calls while it is down (`fallback`), if any.
    pub fallback: Option<Arc<Upstream>>,
    /// Whether and how results are cached.
    pub cache: Option<CachePolicy>,
    /// Whether repeating the call after it may have run is safe: `retry = true` for the tool,
    /// or a trusted `readOnlyHint`/`idempotentHint`; reads (prompts, resources, completions)
    /// always; unknown methods never. An idempotency key does not count: a keyed call is sent
    /// again only when it provably never reached the upstream.
    pub retry_safe: bool,
    /// The tool's own per-attempt deadline (`tools.<t>.timeout`), overriding the upstream's.
    pub timeout: Option<Duration>,
    /// For a `tools/call` to an upstream with `validate = true`: the upstream's lists in the
    /// catalog snapshot the call was routed by, where the validate step finds the tool's
    /// `inputSchema`; `None` otherwise.
    pub lists: Option<Arc<UpstreamLists>>,
    /// For a `tools/call`: the tool's annotations say `destructiveHint: true` (read from any
    /// upstream, trusted or not: the hint only asks for more caution; the approval step).
    pub destructive: bool,
}

/// A call after resolve: the request as the upstream will receive it and its target, with the
/// caller's context; cheap to clone (the fallback step may send it twice).
#[derive(Clone)]
pub struct Routed {
    /// The request for the upstream (params rewritten at write time, name, event route).
    pub request: Arc<Outbound>,
    /// Where it goes.
    pub target: Target,
    /// Who asked.
    pub caller: Principal,
    /// With what priority.
    pub priority: Priority,
    /// The caller's idempotency key.
    pub idempotency_key: Option<Arc<str>>,
    /// The calling client's era (the era of answers the gateway stores on its behalf).
    pub client_era: Era,
    /// Whether the client's revision answers a tool's input validation errors as a tool
    /// result with `isError: true` rather than -32602 (SEP-1303: 2025-11-25 and later, both eras).
    pub input_errors_as_results: bool,
    /// The caller's session, if any (see [`CallCtx::session`]).
    pub session: Option<Arc<SessionState>>,
}

impl Routed {
    /// The upstream's own name of the tool, prompt or resource, if the method has one.
    pub fn name(&self) -> Option<&str> {
        self.request.name.as_deref()
    }

    /// The same call sent to `upstream` instead (the fallback hand-over).
    pub fn to(&self, upstream: &Arc<Upstream>) -> Routed {
        let target = Target { upstream: Arc::clone(upstream), fallback: None, ..self.target.clone() };
        Routed { target, ..self.clone() }
    }
}
