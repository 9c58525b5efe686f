//! Everything that faces clients: Streamable HTTP at `/mcp` and `/servers/{name}/mcp` (both
//! protocol eras), stdio (`sekisho stdio`), the operational endpoints, and the one place where
//! outcomes become wire answers ([`rescue`]).

pub mod config;
pub mod guard;
pub mod http;
pub mod legacy;
pub mod modern;
pub mod rescue;
pub mod stdio;
pub mod stream;

use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::catalog::router::Router;
use crate::error::GatewayError;
use crate::pipeline::Pipeline;
use crate::pipeline::ctx::{Call, CallCtx, Params, Principal, Priority, Reply};
use crate::session::hub::Hub;
use crate::session::registry::Sessions;
use crate::wire::jsonrpc::Method;
use crate::wire::mcp::{self, META_PRIORITY};

/// The priority and idempotency key a request carries outside its body: the
/// `Sekisho-Priority` and `Idempotency-Key` headers, else the API key's default priority, else
/// `[admission] default_priority`. `_meta` values override these in [`Shared::call_parsed`].
pub fn header_options(
    shared: &Shared,
    principal: &Principal,
    headers: Option<&::http::HeaderMap>,
) -> (Priority, Option<Arc<str>>) {
    let header = |name: &str| headers.and_then(|h| h.get(name)).and_then(|v| v.to_str().ok());
    let key_default = match principal {
        Principal::ApiKey(i) => shared.config.api_keys.get(*i).and_then(|k| k.priority()),
        Principal::Anonymous => None,
    };
    let priority =
        header("sekisho-priority").and_then(Priority::parse).or(key_default).unwrap_or(shared.default_priority);
    let key = header("idempotency-key").filter(|k| !k.is_empty() && k.len() <= 256).map(Arc::from);
    (priority, key)
}

/// State shared by every client-facing transport.
pub struct Shared {
    /// The router (catalog and upstreams).
    pub router: Arc<Router>,
    /// The policy pipeline ending in the router.
    pub pipeline: Pipeline,
    /// Legacy sessions.
    pub sessions: Sessions,
    /// Notification streams.
    pub hub: Arc<Hub>,
    /// Edge checks.
    pub guard: guard::Guard,
    /// `[server]`.
    pub config: config::ServerConfig,
    /// Cancelled when the gateway starts draining: new work is refused, streams end.
    pub draining: CancellationToken,
    /// Priority of calls that name none (`[admission] default_priority`).
    pub default_priority: Priority,
}

impl Shared {
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
                ctx.priority = p;
            }
            if let Some(k) = meta.str(mcp::META_IDEMPOTENCY_KEY).filter(|k| !k.is_empty() && k.len() <= 256) {
                ctx.idempotency_key = Some(Arc::from(k.as_ref()));
            }
        }
        self.pipeline.clone().oneshot(Call { method, params, ctx }).await
    }
}
