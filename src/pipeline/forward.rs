//! The last step of the gateway's stack: hand the routed call to its upstream's own stack
//! (bulkhead → retry → balance → breaker → timeout → attempt, `upstream::stack`), with the
//! `retry` and `breaker` runtime switches read once per call into its [`CallPolicy`] (the
//! upstream stacks are built per upstream, also by tenancy, and read them from there).

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::ctx::Routed;
use super::parts::{Reply, ReplyFuture};
use super::steps::Steps;
use crate::error::GatewayError;
use crate::switches::{Layer, Switches};
use crate::upstream::dispatch::{CallPolicy, Dispatch};

/// Sends routed calls to their upstream.
#[derive(Clone)]
pub struct Forward {
    switches: Arc<Switches>,
}

impl Forward {
    /// The last step, reading the `retry` and `breaker` switches of `switches`.
    pub fn new(switches: &Arc<Switches>) -> Self {
        Forward { switches: Arc::clone(switches) }
    }
}

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
            session: routed.session.as_ref().map(|s| Arc::clone(&s.link)),
            retry: self.switches.on(Layer::Retry),
            breaker: self.switches.on(Layer::Breaker),
        };
        routed.target.upstream.call(Dispatch::new(routed.request, policy))
    }
}
