//! The last step of the gateway's stack: hand the routed call to its upstream's own stack
//! (bulkhead → retry → balance → breaker → timeout → attempt, `upstream::stack`).

use std::task::{Context, Poll};

use tower::Service;

use super::ctx::Routed;
use super::parts::{Reply, ReplyFuture};
use super::steps::Steps;
use crate::error::GatewayError;
use crate::upstream::dispatch::{CallPolicy, Dispatch};

/// Sends routed calls to their upstream.
#[derive(Clone, Copy, Debug, Default)]
pub struct Forward;

impl Steps for Forward {
    fn steps(&self, out: &mut Vec<&'static str>) {
        out.push("upstream");
    }
}

impl Service<Routed> for Forward {
    type Response = Reply;
    type Error = GatewayError;
    type Future = ReplyFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, routed: Routed) -> Self::Future {
        let policy = CallPolicy {
            priority: routed.priority,
            caller: routed.caller,
            retry_safe: routed.target.retry_safe,
            keyed: routed.idempotency_key.is_some(),
            timeout: routed.target.timeout,
            session: routed.session.as_ref().map(|s| std::sync::Arc::clone(&s.link)),
        };
        routed.target.upstream.call(Dispatch::new(routed.request, policy))
    }
}
