//! Middleware that hands calls to an upstream's `fallback` upstream: always while the primary
//! has no healthy replica (and, after it recovers, a share of calls that falls to zero over
//! `fallback_return`), and after a failure when the call was never sent (open breakers, no
//! live replica) or is safe to repeat. A call that may have run upstream is never run twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service, ServiceExt};

use super::ctx::Routed;
use super::parts::Reply;
use super::steps::Steps;
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};

/// Adds [`Fallback`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FallbackLayer;

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;

    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback { inner }
    }
}

/// Sends calls of unhealthy upstreams to their fallback.
#[derive(Clone, Debug)]
pub struct Fallback<S> {
    inner: S,
}

impl<S: Steps> Steps for Fallback<S> {
    fn steps(&self, out: &mut Vec<&'static str>) {
        out.push("fallback");
        self.inner.steps(out);
    }
}

type HandOver = Pin<Box<dyn Future<Output = Result<Reply, GatewayError>> + Send>>;

impl<S> Service<Routed> for Fallback<S>
where
    S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = futures::future::Either<S::Future, HandOver>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, routed: Routed) -> Self::Future {
        let Some(fallback) = routed.target.fallback.clone() else {
            return futures::future::Either::Left(self.inner.call(routed));
        };
        let inner = self.inner.clone();
        futures::future::Either::Right(Box::pin(async move {
            let primary = Arc::clone(&routed.target.upstream);
            let label = || Name::Shared(Arc::clone(&primary.name));
            if primary.route_to_fallback() {
                METRICS.fallback(label());
                return inner.oneshot(routed.to(&fallback)).await;
            }
            let outcome = inner.clone().oneshot(routed.clone()).await;
            let hand_over = match &outcome {
                // Refused before it was sent: it may go anywhere.
                Err(GatewayError::CircuitOpen { .. } | GatewayError::UpstreamUnavailable { .. }) => true,
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
