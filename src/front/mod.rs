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
use crate::pipeline::ctx::{Call, CallCtx, Params, Reply};
use crate::session::hub::Hub;
use crate::session::registry::Sessions;
use crate::wire::jsonrpc::Method;

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
    pub async fn call_parsed(&self, method: Method, params: Params, ctx: CallCtx) -> Result<Reply, GatewayError> {
        if self.draining.is_cancelled() {
            return Err(GatewayError::ShuttingDown);
        }
        self.pipeline.clone().oneshot(Call { method, params, ctx }).await
    }
}
