//! Middleware that puts each attempt through its replica's circuit breaker: refused at once
//! (before anything is sent) while the breaker is open, and the attempt's verdict recorded
//! when it ends; an attempt dropped before its end (cancelled) frees its probe slot. While the
//! `breaker` runtime switch is off (`CallPolicy::breaker`) an attempt passes untouched: not
//! refused, not recorded, so the breakers keep the state they had when it was switched off.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::Ticket;
use crate::error::GatewayError;
use crate::pipeline::parts::Reply;
use crate::pipeline::steps::{Named, Stepped};
use crate::upstream::classify;
use crate::upstream::dispatch::Picked;
use crate::upstream::replica::Replica;

/// Admits attempts through the chosen replica's breaker and records their verdicts.
#[derive(Clone, Debug)]
pub struct BreakerStep {
    upstream: Arc<str>,
}

impl BreakerStep {
    /// The breaker step of `upstream`.
    pub fn new(upstream: &Arc<str>) -> Self {
        BreakerStep { upstream: Arc::clone(upstream) }
    }
}

impl Named for BreakerStep {
    fn name(&self) -> &'static str {
        "breaker"
    }
}

impl<S> Service<Picked> for Stepped<BreakerStep, S>
where
    S: Service<Picked, Response = Reply, Error = GatewayError>,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = BreakerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, picked: Picked) -> Self::Future {
        if !picked.dispatch.policy.breaker {
            return BreakerFuture::Passed { inner: self.inner.call(picked) };
        }
        match picked.replica.breaker.admit() {
            Err(retry_after) => BreakerFuture::Refused {
                error: Some(GatewayError::CircuitOpen { upstream: self.step.upstream.to_string(), retry_after }),
            },
            Ok(ticket) => {
                let guard = TicketGuard { replica: Arc::clone(&picked.replica), ticket: Some(ticket) };
                BreakerFuture::Admitted { inner: self.inner.call(picked), guard }
            }
        }
    }
}

/// Records a breaker verdict, or releases the probe slot if the attempt was abandoned.
pub struct TicketGuard {
    replica: Arc<Replica>,
    ticket: Option<Ticket>,
}

impl Drop for TicketGuard {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.replica.breaker.abandon(t);
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of the breaker step.
    #[project = BreakerProj]
    pub enum BreakerFuture<F> {
        /// Refused before anything was sent.
        Refused { error: Option<GatewayError> },
        /// Admitted: the attempt runs.
        Admitted { #[pin] inner: F, guard: TicketGuard },
        /// Passed without the breaker (the `breaker` switch is off).
        Passed { #[pin] inner: F },
    }
}

impl<F> Future for BreakerFuture<F>
where
    F: Future<Output = Result<Reply, GatewayError>>,
{
    type Output = Result<Reply, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BreakerProj::Refused { error } => Poll::Ready(Err(error.take().expect("polled after completion"))),
            BreakerProj::Passed { inner } => inner.poll(cx),
            BreakerProj::Admitted { inner, guard } => {
                let out = std::task::ready!(inner.poll(cx));
                if let Some(t) = guard.ticket.take() {
                    guard.replica.breaker.record(t, classify::verdict(&out));
                }
                Poll::Ready(out)
            }
        }
    }
}
