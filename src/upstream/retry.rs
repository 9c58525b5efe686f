//! Middleware that retries an upstream call with exponential backoff and full jitter, bounded
//! by a retry budget so that retries can never amplify an outage (retries ≤ `budget_percent` of
//! the calls of the last 10 s, plus a small floor per second; `tower::retry::budget::TpsBudget`).
//!
//! A call is retried only when it is safe to repeat (`CallPolicy::retry_safe`, decided once by
//! the resolve step) and only after transport failures and timeouts (`classify`), never after
//! an answer.
//!
//! ```toml
//! [resilience.retry]            # defaults; [upstreams.<name>.retry] replaces them
//! enabled = true
//! max_attempts = 3              # first try included
//! base_delay = "50ms"
//! max_delay = "2s"
//! budget_percent = 20
//! budget_floor_per_second = 5
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;
use serde::{Deserialize, Serialize};
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, ServiceExt};

use super::backoff::Backoff;
use super::classify;
use super::dispatch::Dispatch;
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::pipeline::parts::Reply;
use crate::pipeline::steps::Steps;

/// Retry settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Whether failed safe calls are retried at all.
    pub enabled: bool,
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// The backoff before the first retry is drawn from `[0, base_delay]`, doubling each time.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// The backoff never exceeds this.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Retries allowed as a share of the calls of the last 10 seconds (percent).
    pub budget_percent: u32,
    /// Retries per second always allowed, however few calls there were.
    pub budget_floor_per_second: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            budget_percent: 20,
            budget_floor_per_second: 5,
        }
    }
}

impl RetryConfig {
    /// Problems with these settings, prefixed with `at`.
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_attempts == 0 || self.max_attempts > 10 {
            p.push(format!("{at}.max_attempts must be between 1 and 10"));
        }
        if self.max_delay < self.base_delay {
            p.push(format!("{at}.max_delay must be at least base_delay"));
        }
        if self.budget_percent > 100 {
            p.push(format!("{at}.budget_percent must be at most 100"));
        }
        p
    }

    /// The backoff between attempts: full jitter, `base_delay` doubling up to `max_delay`.
    pub fn backoff(&self) -> Backoff {
        Backoff::full_jitter(self.base_delay, self.max_delay)
    }

    /// A retry budget for these settings over a 10 s window (`budget_percent` of the calls,
    /// plus `budget_floor_per_second` retries a second). The percentage is applied as "one
    /// retry per ⌊100 / percent⌋ calls" (tower's token bucket): 30 % allows one in three.
    pub fn budget(&self) -> TpsBudget {
        TpsBudget::new(BUDGET_WINDOW, self.budget_floor_per_second, self.budget_percent as f32 / 100.0)
    }
}

/// The window over which the retry budget counts calls.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_limits_retries_to_a_share_of_recent_calls() {
        let config = RetryConfig { budget_percent: 10, budget_floor_per_second: 0, ..Default::default() };
        let b = config.budget();
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!((0..50).filter(|_| b.withdraw()).count(), 10);
        // The calls leave the window after 10 s; so does the allowance they earned.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!b.withdraw(), "nothing left once the window passed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_retries_without_calls_and_refills_over_time() {
        let floor = RetryConfig { budget_percent: 0, budget_floor_per_second: 1, ..Default::default() }.budget();
        assert_eq!((0..50).filter(|_| floor.withdraw()).count(), 10, "floor: 1/s over a 10 s window");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(floor.withdraw(), "spent retries leave the window too");
    }
}
