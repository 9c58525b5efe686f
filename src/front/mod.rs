//! Everything that faces clients: Streamable HTTP at `/mcp` and `/servers/{name}/mcp` (both
//! protocol eras: [`routes`], [`legacy`], [`modern`]), the 2024-11-05 HTTP+SSE transport at
//! `/sse` ([`legacy_sse`]), stdio (`sekisho stdio`), the
//! operational endpoints ([`ops`]), and the one place where outcomes become wire answers
//! ([`rescue`]).

pub mod admin_store;
pub mod alerts;
pub mod approvals;
pub mod config;
pub mod conn;
pub mod dashboard;
pub mod input;
pub mod legacy;
pub mod legacy_sse;
pub mod messages;
pub mod modern;
pub mod monitor;
pub mod oauth;
pub mod ops;
pub mod recommend;
pub mod report;
pub mod rescue;
pub mod respond;
pub mod routes;
pub mod serve;
pub mod stdio;
pub mod stream;
pub mod switches;
pub mod tasks;
pub mod tls;

use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::cache::store::Store;
use crate::catalog::CatalogState;
use crate::error::GatewayError;
use crate::pipeline::Stack;
use crate::pipeline::ctx::{Call, CallCtx};
use crate::pipeline::parts::{Params, Principal, Priority, Reply};
use crate::session::hub::Hub;
use crate::session::registry::Sessions;
use crate::upstream::UpstreamSet;
use crate::wire::jsonrpc::Method;
use crate::wire::mcp::{self, META_PRIORITY};

/// The priority and idempotency key a request carries outside its body: the
/// `Sekisho-Priority` header (lowered to the caller's ceiling), else the caller's own priority
/// (its API key's, else `[admission] default_priority`), and the `Idempotency-Key` header.
/// `_meta` values override these in [`Shared::call_parsed`].
pub fn header_options(
    shared: &Shared,
    principal: &Principal,
    headers: Option<&::http::HeaderMap>,
) -> (Priority, Option<Arc<str>>) {
    let header = |name: &str| headers.and_then(|h| h.get(name)).and_then(|v| v.to_str().ok());
    let (own, ceiling) = shared.priorities(principal);
    let priority = header("sekisho-priority").and_then(Priority::parse).map_or(own, |asked| asked.at_most(ceiling));
    let key = header("idempotency-key").filter(|k| !k.is_empty() && k.len() <= 256).map(Arc::from);
    (priority, key)
}

/// The edge step as an HTTP extractor: the caller of a request whose `Host`, `Origin` and
/// credentials passed [`crate::pipeline::edge::Edge::check`], or whose bearer key the store
/// knows ([`crate::tenancy::Tenancy::authenticate`], with `[store]`). Taking it as a handler's
/// first argument runs the edge before the handler reads the body; a refusal answers 403 or
/// 401, and a store that cannot answer 503 with `Retry-After`. Refusals carry
/// `Connection: close` ([`rescue::before_body`]).
pub struct Caller(pub Principal);

impl axum::extract::FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut ::http::request::Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        edge(parts, shared).await.map(Caller).map_err(rescue::before_body)
    }
}

/// The caller of a request from its head alone (see [`Caller`]), or the refusal to send.
async fn edge(parts: &::http::request::Parts, shared: &Shared) -> Result<Principal, axum::response::Response> {
    use ::http::header::{AUTHORIZATION, HOST, ORIGIN};
    let header = |name| parts.headers.get(name).and_then(|v: &::http::HeaderValue| v.to_str().ok());
    let refuse = |e: &GatewayError| rescue::refuse(e, None, crate::wire::mcp::Era::Legacy);
    match shared.stack.edge.check(header(HOST), header(ORIGIN), header(AUTHORIZATION)) {
        Ok(principal) => Ok(principal),
        Err(GatewayError::Unauthorized) => {
            if let Some(oauth) = &shared.oauth {
                let token = crate::pipeline::edge::bearer(header(AUTHORIZATION));
                return oauth::authenticate(shared, oauth, token, parts.uri.path()).await;
            }
            let (Some(tenancy), Some(key)) = (&shared.tenancy, crate::pipeline::edge::bearer(header(AUTHORIZATION)))
            else {
                return Err(refuse(&GatewayError::Unauthorized));
            };
            match tenancy.authenticate(key).await {
                Ok(Some(principal)) => Ok(principal),
                Ok(None) => Err(refuse(&GatewayError::Unauthorized)),
                Err(e) => Err(refuse(&e)),
            }
        }
        Err(e) => Err(refuse(&e)),
    }
}

/// The edge step for the admin endpoints: like [`Caller`], and the caller must be an admin
/// (an API key with `role = "admin"`, or anyone where authentication is off). A caller that
/// is not gets 403 ([`GatewayError::AdminRequired`]).
pub struct Admin(pub Principal);

impl axum::extract::FromRequestParts<Arc<Shared>> for Admin {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut ::http::request::Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let Caller(principal) = Caller::from_request_parts(parts, shared).await?;
        if !principal.is_admin() {
            tracing::warn!(
                caller = principal.label(),
                path = parts.uri.path(),
                "an admin endpoint refused a client key"
            );
            let refusal = rescue::refuse(&GatewayError::AdminRequired, None, crate::wire::mcp::Era::Legacy);
            return Err(rescue::before_body(refusal));
        }
        Ok(Admin(principal))
    }
}

/// State shared by every client-facing transport.
pub struct Shared {
    /// The call stack (the edge, then the call pipeline).
    pub stack: Stack,
    /// The live catalog (`initialize`, `server/discover`).
    pub catalog: Arc<CatalogState>,
    /// The upstreams (capabilities, `/readyz`, `/metrics`).
    pub upstreams: Arc<UpstreamSet>,
    /// The response cache (`/readyz`, `/metrics`, `/admin/cache/clear`).
    pub store: Arc<Store>,
    /// Legacy sessions.
    pub sessions: Sessions,
    /// The legacy sessions with an open HTTP+SSE stream (`GET /sse`).
    pub sse: legacy_sse::SseSessions,
    /// Notification streams.
    pub hub: Arc<Hub>,
    /// Calls parked for a modern client's `inputResponses` (`input`).
    pub parked: input::Parked,
    /// The sealer of task ids (the tasks extension), shared with the resolve step.
    pub tasks: Arc<crate::session::task_id::TaskSealer>,
    /// `[server]`.
    pub config: config::ServerConfig,
    /// Cancelled when the gateway starts draining: new work is refused, streams end.
    pub draining: CancellationToken,
    /// Priority of calls that name none (`[admission] default_priority`).
    pub default_priority: Priority,
    /// The store's keys and the tenants' upstreams, with `[store]`.
    pub tenancy: Option<Arc<crate::tenancy::Tenancy>>,
    /// The OAuth 2.1 resource server, with `[auth.oauth]`.
    pub oauth: Option<Arc<crate::oauth::OAuth>>,
    /// The most important priority an anonymous caller may ask for
    /// (`AdmissionConfig::anonymous_ceiling`).
    pub anonymous_ceiling: Priority,
    /// The monitor's samples (`GET /admin/monitor`), unless `[monitor] enabled = false`.
    pub monitor: Option<Arc<crate::monitor::Monitor>>,
    /// The alerts (`GET /admin/alerts`), with the monitor on and `[alerts] enabled`.
    pub alerts: Option<Arc<crate::monitor::alerts::Alerts>>,
    /// The runtime switches (`/admin/switches`, `/readyz`, batches), fleet-wide with `[redis]`.
    pub switches: Arc<crate::switches::fleet::Control>,
    /// The gateway's reports of itself (`/admin/performance`, `/admin/health`).
    pub report: Arc<crate::report::Reporter>,
    /// The audit log (`[audit] enabled`): the call step writes calls, admin handlers their actions.
    pub audit: Option<Arc<crate::audit::Audit>>,
    /// The approval policy and the calls held here for an operator (`/admin/approvals`).
    pub approvals: Arc<crate::approvals::Approvals>,
}

impl Shared {
    /// Record an admin action in the audit log, when it is on (see `crate::audit::Audit::admin`).
    pub fn audit_admin(
        &self,
        caller: &Principal,
        action: &str,
        name: Option<&str>,
        outcome: &str,
        detail: serde_json::Value,
    ) {
        if let Some(audit) = &self.audit {
            audit.admin(caller, action, name, outcome, detail);
        }
    }
}

impl Shared {
    /// The priority `principal`'s calls get when they ask for none, and the most important one
    /// they may ask for (API key `priority` / `max_priority`; anonymous: the admission
    /// defaults). One match, no lookup: it runs for every call.
    pub fn priorities(&self, principal: &Principal) -> (Priority, Priority) {
        match principal {
            Principal::ApiKey(identity) => (identity.priority, identity.max_priority),
            Principal::Anonymous => (self.default_priority, self.anonymous_ceiling),
        }
    }

    /// The scope of `/servers/{name}/…` for `caller`. A store key sees its instance's catalog
    /// at `/mcp` only: the per-upstream routes serve static upstreams unfiltered.
    ///
    /// Errors: [`GatewayError::NotFound`] for an upstream that is not configured, and for any
    /// upstream when `caller` is a store key.
    pub fn upstream_scope(
        &self,
        name: &str,
        caller: &Principal,
    ) -> Result<crate::pipeline::parts::Scope, GatewayError> {
        if crate::tenancy::view_of(caller).is_some() {
            return Err(GatewayError::NotFound("a store key's catalog is served at /mcp only".into()));
        }
        match self.upstreams.get(name) {
            Some(up) => Ok(crate::pipeline::parts::Scope::Upstream(Arc::clone(&up.name))),
            None => Err(GatewayError::NotFound(format!("no upstream named {name:?}"))),
        }
    }

    /// Run one call through the pipeline.
    ///
    /// Errors: [`GatewayError::InvalidParams`] for unreadable params, [`GatewayError::ShuttingDown`]
    /// while draining, and whatever the pipeline returns.
    pub async fn call(&self, method: Method, params: Bytes, ctx: CallCtx) -> Result<Reply, GatewayError> {
        let params = Params::parse(params)?;
        self.call_parsed(method, params, ctx).await
    }

    /// Run one call whose params are already parsed.
    ///
    /// Errors: [`GatewayError::ShuttingDown`] while draining, and whatever the pipeline returns.
    pub async fn call_parsed(&self, method: Method, params: Params, mut ctx: CallCtx) -> Result<Reply, GatewayError> {
        if self.draining.is_cancelled() {
            return Err(GatewayError::ShuttingDown);
        }
        if let Some(meta) = &params.meta {
            if let Some(p) = meta.str(META_PRIORITY).and_then(|p| Priority::parse(&p)) {
                // An ask above the caller's ceiling is lowered, not refused.
                ctx.priority = p.at_most(self.priorities(&ctx.principal).1);
            }
            if let Some(k) = meta.str(mcp::META_IDEMPOTENCY_KEY).filter(|k| !k.is_empty() && k.len() <= 256) {
                ctx.idempotency_key = Some(Arc::from(k.as_ref()));
            }
        }
        self.stack.call.call(Call { method, params, ctx }).await
    }
}
