//! Retries with exponential backoff and full jitter, bounded by a retry budget so that retries
//! can never amplify an outage (retries ≤ `budget_percent` of the calls of the last 10 s, plus a
//! small floor per second).
//!
//! A call is retried only when it is safe to repeat (see `upstream::Upstream::call`) and only for
//! transport failures and timeouts, never for answers.
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

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

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

    /// Full-jitter backoff before retry number `retry` (1-based): uniform in
    /// `[0, min(max_delay, base_delay · 2^(retry-1))]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.base_delay.saturating_mul(1u32 << (retry - 1).min(16)).min(self.max_delay);
        cap.mul_f64(rand::random::<f64>())
    }
}

const WINDOW: Duration = Duration::from_secs(10);
const SLOTS: usize = 10;

/// Counts calls and retries over the last 10 s in one-second slots.
#[derive(Debug)]
pub struct RetryBudget {
    percent: u32,
    floor_per_second: u32,
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    epoch: Instant,
    current: u64,
    calls: [u32; SLOTS],
    retries: [u32; SLOTS],
}

impl RetryBudget {
    /// A budget with the given share and floor.
    pub fn new(config: &RetryConfig) -> Self {
        RetryBudget {
            percent: config.budget_percent,
            floor_per_second: config.budget_floor_per_second,
            slots: Mutex::new(Slots { epoch: Instant::now(), current: 0, calls: [0; SLOTS], retries: [0; SLOTS] }),
        }
    }

    fn advance(s: &mut Slots) -> usize {
        let second = s.epoch.elapsed().as_secs();
        while s.current < second {
            s.current += 1;
            let i = (s.current % SLOTS as u64) as usize;
            s.calls[i] = 0;
            s.retries[i] = 0;
        }
        (s.current % SLOTS as u64) as usize
    }

    /// Count a first attempt.
    pub fn record_call(&self) {
        let mut s = self.slots.lock().expect("budget lock");
        let i = Self::advance(&mut s);
        s.calls[i] += 1;
    }

    /// Take a retry from the budget; false when retries would exceed it.
    pub fn try_retry(&self) -> bool {
        let mut s = self.slots.lock().expect("budget lock");
        let i = Self::advance(&mut s);
        let calls: u64 = s.calls.iter().map(|c| u64::from(*c)).sum();
        let retries: u64 = s.retries.iter().map(|c| u64::from(*c)).sum();
        let allowed = calls * u64::from(self.percent) / 100 + u64::from(self.floor_per_second) * WINDOW.as_secs();
        if retries < allowed {
            s.retries[i] += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_full_jitter() {
        let c = RetryConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
            ..Default::default()
        };
        for retry in 1..10 {
            let d = c.backoff(retry);
            assert!(d <= Duration::from_millis(250), "{d:?}");
        }
        assert!((0..50).map(|_| c.backoff(1)).any(|d| d < Duration::from_millis(50)), "jitter reaches down to 0");
    }

    #[test]
    fn budget_limits_retries_to_a_share_of_calls() {
        let b = RetryBudget::new(&RetryConfig { budget_percent: 10, budget_floor_per_second: 0, ..Default::default() });
        for _ in 0..100 {
            b.record_call();
        }
        let granted = (0..50).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 10);
        let floor =
            RetryBudget::new(&RetryConfig { budget_percent: 0, budget_floor_per_second: 1, ..Default::default() });
        assert_eq!((0..50).filter(|_| floor.try_retry()).count(), 10, "floor: 1/s over a 10 s window");
    }
}
