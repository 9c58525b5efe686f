//! Retries of upstream calls (the settings and the budget; [`layer`] is the step): an upstream
//! call is retried with exponential backoff and full jitter, bounded
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

pub mod layer;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower::retry::budget::TpsBudget;

use super::backoff::Backoff;

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

#[cfg(test)]
mod tests {
    use tower::retry::budget::Budget;

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
