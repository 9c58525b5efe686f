//! What the steps after resolve have in common: each either passes a routed call straight on
//! (no allocation, the next step's own future) or serves it itself with a boxed future that may
//! call the next step (a lookup, a claim, a hand-over around it).

use std::task::{Context, Poll};

use futures::future::Either;
use tower::Service;

use super::ctx::Routed;
use super::parts::{Reply, ReplyFuture};
use super::steps::{Named, Stepped};
use crate::error::GatewayError;

/// A step over routed calls.
pub trait RoutedStep: Named {
    /// Serve `routed`, calling `inner` as needed; or hand the call back (`Err`) to pass it
    /// straight on.
    fn serve<S>(&self, routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send;
}

impl<T, S> Service<Routed> for Stepped<T, S>
where
    T: RoutedStep,
    S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = Either<S::Future, ReplyFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, routed: Routed) -> Self::Future {
        match self.step.serve(routed, self.inner.clone()) {
            Ok(served) => Either::Right(served),
            Err(routed) => Either::Left(self.inner.call(routed)),
        }
    }
}
