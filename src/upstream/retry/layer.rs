//! Middleware that repeats an upstream call that is safe to repeat after a retryable failure
//! (`classify`), with full-jitter backoff between tries, within the upstream's retry budget. A
//! call that is not safe to repeat but carries an idempotency key is sent again only after an
//! attempt that provably never reached the upstream (`classify::never_sent`): a timeout or a
//! connection lost while waiting for the answer may come after the upstream ran it.

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
                label: METRICS.upstream_name(upstream),
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
        let safe = dispatch.policy.retry_safe;
        if !(safe || dispatch.policy.keyed) || self.step.policy.max_attempts == 1 || !dispatch.policy.retry {
            // A call that may not be repeated (or while the `retry` switch is off) goes
            // through as it is, without a boxed future.
            return Either::Left(self.inner.call(dispatch));
        }
        let (policy, inner) = (Arc::clone(&self.step.policy), self.inner.clone());
        Either::Right(Box::pin(async move {
            let mut attempt = 1;
            loop {
                let outcome = inner.clone().oneshot(Arc::clone(&dispatch)).await;
                let again = classify::retryable(&outcome) && (safe || classify::never_sent(&outcome));
                if attempt >= policy.max_attempts || !again {
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::error::{TransportError, TransportKind};
    use crate::pipeline::parts::{Origin, Principal, Priority};
    use crate::pipeline::steps::StepLayer;
    use crate::upstream::dispatch::CallPolicy;
    use crate::upstream::request::Outbound;

    /// An inner service that answers each attempt with the next scripted outcome.
    #[derive(Clone, Default)]
    struct Script {
        outcomes: Arc<Mutex<VecDeque<Result<Reply, GatewayError>>>>,
        attempts: Arc<AtomicUsize>,
    }

    impl Service<Arc<Dispatch>> for Script {
        type Response = Reply;
        type Error = GatewayError;
        type Future = std::future::Ready<Result<Reply, GatewayError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Arc<Dispatch>) -> Self::Future {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            std::future::ready(self.outcomes.lock().unwrap().pop_front().expect("a scripted outcome"))
        }
    }

    fn ok() -> Result<Reply, GatewayError> {
        Ok(Reply::Result { body: Bytes::from_static(b"{}"), origin: Origin::Gateway })
    }

    fn transport(kind: TransportKind, unsent: bool) -> Result<Reply, GatewayError> {
        let cause = TransportError::new(kind, "");
        let cause = if unsent { cause.not_sent() } else { cause };
        Err(GatewayError::UpstreamTransport { upstream: "u".into(), cause })
    }

    /// Run one call (safe to repeat or not, keyed or not) against `outcomes`; returns whether
    /// it ended with an answer and how many attempts it took.
    async fn run(retry_safe: bool, keyed: bool, outcomes: Vec<Result<Reply, GatewayError>>) -> (bool, usize) {
        let script = Script { outcomes: Arc::new(Mutex::new(outcomes.into())), ..Default::default() };
        let config = RetryConfig { base_delay: Duration::from_millis(1), ..Default::default() };
        let mut svc = tower::Layer::layer(&StepLayer(Retry::new(&Arc::from("u"), &config)), script.clone());
        let policy = CallPolicy {
            priority: Priority::Medium,
            caller: Principal::Anonymous,
            retry_safe,
            keyed,
            timeout: None,
            session: None,
            retry: true,
            breaker: true,
        };
        let dispatch = Dispatch::new(Arc::new(Outbound::raw("tools/call", None)), policy);
        let outcome = svc.call(dispatch).await;
        (outcome.is_ok(), script.attempts.load(Ordering::Relaxed))
    }

    #[tokio::test(start_paused = true)]
    async fn a_keyed_call_is_sent_again_only_when_it_never_reached_the_upstream() {
        let refused = transport(TransportKind::Refused, true);
        assert_eq!(run(false, true, vec![refused, ok()]).await, (true, 2), "refused at connect: sent elsewhere");
        let timeout = Err(GatewayError::UpstreamTimeout { upstream: "u".into(), after: Duration::from_secs(1) });
        assert_eq!(run(false, true, vec![timeout, ok()]).await, (false, 1), "a timed-out call may have run");
        let lost = transport(TransportKind::Closed, false);
        assert_eq!(run(false, true, vec![lost, ok()]).await, (false, 1), "the answer was lost, not the request");
        let reset = transport(TransportKind::Reset, false);
        assert_eq!(run(false, false, vec![reset]).await, (false, 1), "no key, not safe: one attempt");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_safe_to_repeat_is_retried_after_any_retryable_failure() {
        let timeout = Err(GatewayError::UpstreamTimeout { upstream: "u".into(), after: Duration::from_secs(1) });
        assert_eq!(run(true, false, vec![timeout, ok()]).await, (true, 2));
        assert_eq!(run(true, true, vec![transport(TransportKind::Closed, false), ok()]).await, (true, 2));
    }
}
