//! Middleware that bounds each attempt by its deadline (the tool's `timeout`, else the
//! upstream's); an attempt past it is dropped, which cancels the call upstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

use super::dispatch::Picked;
use crate::error::GatewayError;
use crate::pipeline::parts::Reply;
use crate::pipeline::steps::{Named, Stepped};

/// Fails an attempt with [`GatewayError::UpstreamTimeout`] once its deadline passes.
#[derive(Clone, Debug)]
pub struct Timeout {
    upstream: Arc<str>,
    default: Duration,
}

impl Timeout {
    /// Attempts of `upstream` last at most `default` unless the call names its own deadline.
    pub fn new(upstream: &Arc<str>, default: Duration) -> Self {
        Timeout { upstream: Arc::clone(upstream), default }
    }
}

impl Named for Timeout {
    fn name(&self) -> &'static str {
        "timeout"
    }
}

impl<S> Service<Picked> for Stepped<Timeout, S>
where
    S: Service<Picked, Response = Reply, Error = GatewayError>,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, picked: Picked) -> Self::Future {
        let after = picked.dispatch.policy.timeout.unwrap_or(self.step.default);
        TimeoutFuture {
            inner: tokio::time::timeout(after, self.inner.call(picked)),
            upstream: Arc::clone(&self.step.upstream),
            after,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of the timeout step.
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
        upstream: Arc<str>,
        after: Duration,
    }
}

impl<F> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Reply, GatewayError>>,
{
    type Output = Result<Reply, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match std::task::ready!(this.inner.poll(cx)) {
            Ok(out) => Poll::Ready(out),
            Err(_) => Poll::Ready(Err(GatewayError::UpstreamTimeout {
                upstream: this.upstream.to_string(),
                after: *this.after,
            })),
        }
    }
}
