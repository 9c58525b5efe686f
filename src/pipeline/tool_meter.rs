//! Middleware that counts and times every routed `tools/call` by the upstream that owns the
//! tool, the tool and the outcome (`sekisho_tool_calls_total`, `sekisho_tool_call_seconds_total`),
//! so the monitor can break its samples down by tool. Right below resolve (it needs the
//! resolved tool), above validation, idempotency and the cache, so refusals, replays and cache
//! hits count as calls of their tool too. Calls that never resolve (unknown tools) are counted
//! by the meter step only. Costs one boxed future and two counter lookups per `tools/call`
//! (`benches/hot_path.rs`, group `tool_meter`).

use std::time::Instant;

use tower::{Service, ServiceExt};

use super::ctx::Routed;
use super::metered::outcome;
use super::parts::{Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::wire::jsonrpc::Method;

/// The tool-meter step.
#[derive(Clone, Copy, Debug, Default)]
pub struct ToolMeter;

impl Named for ToolMeter {
    fn name(&self) -> &'static str {
        "tool-meter"
    }
}

impl RoutedStep for ToolMeter {
    fn serve<S>(&self, routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        if routed.request.method != Method::ToolsCall {
            return Err(routed);
        }
        let Some(tool) = routed.request.name.clone() else { return Err(routed) };
        let upstream = METRICS.upstream_name(&routed.target.upstream.name);
        let started = Instant::now();
        Ok(Box::pin(async move {
            let out = inner.oneshot(routed).await;
            METRICS.tools.call(upstream, Name::Shared(tool), outcome(&out), started.elapsed());
            out
        }))
    }
}
