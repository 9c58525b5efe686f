//! Middleware that repeats an upstream call that is safe to repeat after a retryable failure
//! (`classify`), with full-jitter backoff between tries, within the upstream's retry budget.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Service, ServiceExt};

use super::RetryConfig;
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::pipeline::parts::{Reply, ReplyFuture};
use crate::pipeline::steps::{Named, Stepped};
use crate::upstream::backoff::Backoff;
use crate::upstream::classify;
use crate::upstream::dispatch::Dispatch;

struct Policy {
    max_attempts: u32,
    backoff: Backoff,
    budget: TpsBudget,
    label: Name,
}

/// Repeats safe calls after retryable failures.
#[derive(Clone)]
pub struct Retry {
    policy: Arc<Policy>,
}

impl Retry {
    /// Retries of `upstream`'s calls under `config` (one budget for the upstream).
    pub fn new(upstream: &Arc<str>, config: &RetryConfig) -> Self {
        Retry {
            policy: Arc::new(Policy {
                max_attempts: config.max_attempts.max(1),
                backoff: config.backoff(),
                budget: config.budget(),
                label: Name::Shared(Arc::clone(upstream)),
            }),
        }
    }
}

impl Named for Retry {
    fn name(&self) -> &'static str {
        "retry"
    }
}

impl<S> Service<Arc<Dispatch>> for Stepped<Retry, S>
where
    S: Service<Arc<Dispatch>, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = Either<S::Future, ReplyFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dispatch: Arc<Dispatch>) -> Self::Future {
        self.step.policy.budget.deposit();
        if !dispatch.policy.retry_safe || self.step.policy.max_attempts == 1 {
            // A call that may not be repeated goes through as it is, without a boxed future.
            return Either::Left(self.inner.call(dispatch));
        }
        let (policy, inner) = (Arc::clone(&self.step.policy), self.inner.clone());
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
