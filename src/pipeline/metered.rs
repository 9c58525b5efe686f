//! Middleware that counts and times every call by method, upstream and outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::Service;

use super::ctx::Call;
use super::parts::{Origin, Reply};
use super::steps::{Named, Stepped};
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::upstream::translate::has_top_level_key;
use crate::wire::mcp::Era;

/// Records `sekisho_requests_total` and `sekisho_request_duration_seconds` for each call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Meter;

impl Named for Meter {
    fn name(&self) -> &'static str {
        "meter"
    }
}

impl<S> Service<Call> for Stepped<Meter, S>
where
    S: Service<Call, Response = Reply, Error = GatewayError>,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let method = call.method.metric_label();
        let started = call.ctx.received;
        MeteredFuture { inner: self.inner.call(call), method, started }
    }
}

pin_project_lite::pin_project! {
    /// The future of the meter step.
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        method: &'static str,
        started: Instant,
    }
}

impl<F> Future for MeteredFuture<F>
where
    F: Future<Output = Result<Reply, GatewayError>>,
{
    type Output = Result<Reply, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        let (upstream, outcome) = classify(&out);
        METRICS.call(this.method, upstream, outcome, this.started.elapsed());
        Poll::Ready(out)
    }
}

fn classify(out: &Result<Reply, GatewayError>) -> (Name, &'static str) {
    let upstream = match out {
        Ok(Reply::Result { origin, .. } | Reply::Error { origin, .. }) => match origin {
            Origin::Gateway => Name::Static("gateway"),
            Origin::Upstream(_, name) => METRICS.upstream_name(name),
        },
        Err(e) => e.upstream().map_or(Name::Static("gateway"), |u| METRICS.upstream_name(&Arc::from(u))),
    };
    (upstream, outcome(out))
}

/// The `outcome` label of a finished call: `ok`, `tool_error` (a result with `isError:
/// true`), `rpc_error` (a JSON-RPC error answer), or the error table's label of a failure
/// (`crate::error::GatewayError::class`; it does not depend on the client's era).
pub fn outcome(out: &Result<Reply, GatewayError>) -> &'static str {
    match out {
        Ok(Reply::Result { body, .. }) => {
            if is_tool_error(body) {
                "tool_error"
            } else {
                "ok"
            }
        }
        Ok(Reply::Error { .. }) => "rpc_error",
        Err(e) => e.class(Era::Legacy).outcome,
    }
}

/// Whether a `result` is a tool result marked `"isError": true` (MCP `server/tools`, "Error
/// Handling"); a cheap byte search first, so most results are not parsed.
pub fn is_tool_error(result: &[u8]) -> bool {
    has_top_level_key(result, "isError")
        && crate::wire::object::ObjectView::parse(result)
            .ok()
            .and_then(|v| v.get(result, "isError").map(|s| &result[s] == b"true"))
            == Some(true)
}
