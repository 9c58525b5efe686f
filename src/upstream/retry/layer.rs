//! Middleware that repeats an upstream call that is safe to repeat after a retryable failure
//! (`classify`), with full-jitter backoff between tries, within the upstream's retry budget.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, ServiceExt};

use super::RetryConfig;
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::pipeline::parts::Reply;
use crate::pipeline::steps::Steps;
use crate::upstream::backoff::Backoff;
use crate::upstream::classify;
use crate::upstream::dispatch::Dispatch;

struct Policy {
    max_attempts: u32,
    backoff: Backoff,
    budget: TpsBudget,
    label: Name,
}

/// Adds [`Retry`] for one upstream.
#[derive(Clone)]
pub struct RetryLayer {
    policy: Arc<Policy>,
}

impl RetryLayer {
    /// Retries of `upstream`'s calls under `config` (one budget for the upstream).
    pub fn new(upstream: &Arc<str>, config: &RetryConfig) -> Self {
        RetryLayer {
            policy: Arc::new(Policy {
                max_attempts: config.max_attempts.max(1),
                backoff: config.backoff(),
                budget: config.budget(),
                label: Name::Shared(Arc::clone(upstream)),
            }),
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry { inner, policy: Arc::clone(&self.policy) }
    }
}

/// Repeats safe calls after retryable failures.
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S: Steps> Steps for Retry<S> {
    fn steps(&self, out: &mut Vec<&'static str>) {
        out.push("retry");
        self.inner.steps(out);
    }
}

type Retrying = Pin<Box<dyn Future<Output = Result<Reply, GatewayError>> + Send>>;

impl<S> Service<Arc<Dispatch>> for Retry<S>
where
    S: Service<Arc<Dispatch>, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = Either<S::Future, Retrying>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dispatch: Arc<Dispatch>) -> Self::Future {
        self.policy.budget.deposit();
        if !dispatch.policy.retry_safe || self.policy.max_attempts == 1 {
            // A call that may not be repeated goes through as it is, without a boxed future.
            return Either::Left(self.inner.call(dispatch));
        }
        let (policy, inner) = (Arc::clone(&self.policy), self.inner.clone());
        Either::Right(Box::pin(async move {
            let mut attempt = 1;
            loop {
                let outcome = inner.clone().oneshot(Arc::clone(&dispatch)).await;
                if attempt >= policy.max_attempts || !classify::retryable(&outcome) {
                    return outcome;
                }
                if !policy.budget.withdraw() {
                    METRICS.retry_budget_exhausted(policy.label.clone());
                    return outcome;
                }
                METRICS.retry(policy.label.clone());
                tokio::time::sleep(policy.backoff.delay(attempt)).await;
                attempt += 1;
            }
        }))
    }
}
