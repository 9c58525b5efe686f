//! Middleware that hands calls to an upstream's `fallback` upstream: always while the primary
//! has no healthy replica (and, after it recovers, a share of calls that falls to zero over
//! `fallback_return`), and after a failure when the call was never sent (open breakers, no
//! live replica, a connection that could not be opened) or is safe to repeat. A call that may
//! have run upstream is never run twice, idempotency key or not.

use std::sync::Arc;

use tower::{Service, ServiceExt};

use super::ctx::Routed;
use super::parts::{Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::error::GatewayError;
use crate::observe::metrics::METRICS;
use crate::upstream::classify;

/// Sends calls of unhealthy upstreams to their fallback.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fallback;

impl Named for Fallback {
    fn name(&self) -> &'static str {
        "fallback"
    }
}

impl RoutedStep for Fallback {
    fn serve<S>(&self, routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        let Some(fallback) = routed.target.fallback.clone() else { return Err(routed) };
        Ok(Box::pin(async move {
            let primary = Arc::clone(&routed.target.upstream);
            let label = || METRICS.upstream_name(&primary.name);
            if primary.route_to_fallback() {
                METRICS.fallback(label());
                return inner.oneshot(routed.to(&fallback)).await;
            }
            let outcome = inner.clone().oneshot(routed.clone()).await;
            let hand_over = match &outcome {
                // Refused before it was sent: it may go anywhere.
                _ if classify::never_sent(&outcome) => true,
                // It may have run: only a call that is safe to repeat runs again.
                Err(GatewayError::UpstreamTransport { .. }) => routed.target.retry_safe,
                _ => false,
            };
            if !hand_over {
                return outcome;
            }
            primary.mark_degraded();
            METRICS.fallback(label());
            inner.oneshot(routed.to(&fallback)).await
        }))
    }
}
