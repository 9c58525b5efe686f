//! Circuit breaker per upstream replica (the state machine; [`layer`] is its step in the
//! per-upstream stack): closed → open after N consecutive failures or an error
//! rate over a window (with a minimum number of calls) → half-open after `open_for`, letting a
//! limited number of probe calls through → closed when a probe succeeds, open again when one fails.
//!
//! ```toml
//! [resilience.breaker]          # defaults; [upstreams.<name>.breaker] replaces them
//! enabled = true
//! consecutive_failures = 5
//! error_rate = 0.5              # open when ≥ 50% of the calls in `window` failed …
//! window = "30s"
//! min_calls = 20                # … and there were at least this many
//! open_for = "30s"
//! half_open_probes = 1          # calls let through at once while half-open
//! ```

pub mod layer;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::classify::Verdict;

/// Breaker settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Whether the breaker is used at all.
    pub enabled: bool,
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// Failure share over `window` that opens the breaker (0.0–1.0).
    pub error_rate: f64,
    /// The window of the error rate.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Calls needed in the window before the error rate counts.
    pub min_calls: u32,
    /// How long the breaker stays open before probing.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Probe calls allowed at once while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            consecutive_failures: 5,
            error_rate: 0.5,
            window: Duration::from_secs(30),
            min_calls: 20,
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Problems with these settings, prefixed with `at`.
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.consecutive_failures == 0 {
            p.push(format!("{at}.consecutive_failures must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.error_rate) || self.error_rate == 0.0 {
            p.push(format!("{at}.error_rate must be in (0, 1]"));
        }
        if self.window < Duration::from_millis(100) || self.open_for < Duration::from_millis(10) {
            p.push(format!("{at}: window must be ≥ 100ms and open_for ≥ 10ms"));
        }
        if self.half_open_probes == 0 {
            p.push(format!("{at}.half_open_probes must be at least 1"));
        }
        p
    }
}

/// The state, as exported in metrics (0 closed, 1 open, 2 half-open) and `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Calls flow.
    Closed,
    /// Calls fail fast.
    Open,
    /// A few probe calls flow.
    HalfOpen,
}

impl State {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// Value of the `sekisho_breaker_state` gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { consecutive: u32, window_start: Instant, calls: u32, failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: u32 },
}

/// One replica's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    /// Transitions to open since it was made (the monitor counts flapping with it).
    opened: AtomicU64,
}

/// Permission to make one call; report its verdict with [`Breaker::record`]. A ticket dropped
/// unreported (the call was cancelled) releases its probe slot without counting.
#[derive(Debug)]
pub struct Ticket {
    probe: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            inner: Mutex::new(Inner::Closed { consecutive: 0, window_start: Instant::now(), calls: 0, failures: 0 }),
            config,
            opened: AtomicU64::new(0),
        }
    }

    /// How many times it opened since it was made (from closed, or again from half-open).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The current state (an open breaker past `open_for` reads as half-open).
    pub fn state(&self) -> State {
        match &*self.inner.lock().expect("breaker lock") {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { until } if Instant::now() < *until => State::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Ask to make a call. `Err(wait)`: the breaker is open (or half-open with every probe slot
    /// taken) for about `wait` more.
    pub fn admit(&self) -> Result<Ticket, Duration> {
        if !self.config.enabled {
            return Ok(Ticket { probe: false });
        }
        let mut inner = self.inner.lock().expect("breaker lock");
        let now = Instant::now();
        match &mut *inner {
            Inner::Closed { .. } => Ok(Ticket { probe: false }),
            Inner::Open { until } if now < *until => Err(*until - now),
            Inner::Open { .. } => {
                *inner = Inner::HalfOpen { probing: 1 };
                Ok(Ticket { probe: true })
            }
            Inner::HalfOpen { probing } if *probing < self.config.half_open_probes => {
                *probing += 1;
                Ok(Ticket { probe: true })
            }
            Inner::HalfOpen { .. } => Err(Duration::from_millis(100)),
        }
    }

    /// Report how an admitted call went.
    pub fn record(&self, ticket: Ticket, verdict: Verdict) {
        if !self.config.enabled {
            return;
        }
        let failed = matches!(verdict, Verdict::Failed { .. });
        let mut inner = self.inner.lock().expect("breaker lock");
        let now = Instant::now();
        match &mut *inner {
            Inner::HalfOpen { probing } if ticket.probe => {
                *probing = probing.saturating_sub(1);
                if failed {
                    *inner = Inner::Open { until: now + self.config.open_for };
                    self.opened.fetch_add(1, Ordering::Relaxed);
                } else if verdict == Verdict::Healthy {
                    *inner = Inner::Closed { consecutive: 0, window_start: now, calls: 0, failures: 0 };
                }
            }
            Inner::Closed { consecutive, window_start, calls, failures } => {
                if now.duration_since(*window_start) > self.config.window {
                    *window_start = now;
                    *calls = 0;
                    *failures = 0;
                }
                if verdict == Verdict::Throttled {
                    return;
                }
                *calls += 1;
                if failed {
                    *consecutive += 1;
                    *failures += 1;
                } else {
                    *consecutive = 0;
                }
                let rate_tripped = *calls >= self.config.min_calls
                    && f64::from(*failures) / f64::from(*calls) >= self.config.error_rate;
                if *consecutive >= self.config.consecutive_failures || rate_tripped {
                    *inner = Inner::Open { until: now + self.config.open_for };
                    self.opened.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A non-probe call that started before the breaker opened: its outcome is stale.
            _ => {}
        }
    }

    /// Release a ticket whose call was abandoned (cancelled) without a verdict.
    pub fn abandon(&self, ticket: Ticket) {
        if ticket.probe
            && let Inner::HalfOpen { probing } = &mut *self.inner.lock().expect("breaker lock")
        {
            *probing = probing.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIL: Verdict = Verdict::Failed { retryable: true };

    fn quick(consecutive: u32) -> BreakerConfig {
        BreakerConfig { consecutive_failures: consecutive, open_for: Duration::from_millis(30), ..Default::default() }
    }

    #[test]
    fn a_disabled_breaker_never_opens() {
        let b = Breaker::new(BreakerConfig { enabled: false, ..quick(1) });
        for _ in 0..10 {
            let t = b.admit().expect("always admits");
            b.record(t, FAIL);
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_recovers_through_half_open() {
        let b = Breaker::new(quick(3));
        for _ in 0..2 {
            let t = b.admit().unwrap();
            b.record(t, FAIL);
        }
        let t = b.admit().unwrap();
        b.record(t, Verdict::Healthy);
        for _ in 0..3 {
            let t = b.admit().unwrap();
            b.record(t, FAIL);
        }
        assert_eq!(b.state(), State::Open);
        assert!(b.admit().is_err(), "fails fast while open");
        tokio::time::advance(Duration::from_millis(29)).await;
        assert_eq!(b.state(), State::Open, "still open 1 ms before open_for ends");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::HalfOpen);
        let probe = b.admit().unwrap();
        assert!(b.admit().is_err(), "one probe at a time");
        b.record(probe, FAIL);
        assert_eq!(b.state(), State::Open, "a failed probe reopens");
        tokio::time::advance(Duration::from_millis(30)).await;
        let probe = b.admit().unwrap();
        b.record(probe, Verdict::Healthy);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.opened(), 2, "opened, then reopened by the failed probe");
    }

    #[tokio::test(start_paused = true)]
    async fn the_error_rate_window_restarts_after_it_passes() {
        let b = Breaker::new(BreakerConfig {
            consecutive_failures: 100,
            min_calls: 4,
            error_rate: 0.5,
            window: Duration::from_secs(30),
            ..Default::default()
        });
        for _ in 0..3 {
            let t = b.admit().unwrap();
            b.record(t, FAIL);
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        // The three old failures left the window: one more failure in a fresh window is 1 of 1,
        // below min_calls.
        let t = b.admit().unwrap();
        b.record(t, FAIL);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn error_rate_with_minimum_calls() {
        let b = Breaker::new(BreakerConfig {
            consecutive_failures: 100,
            min_calls: 10,
            error_rate: 0.5,
            ..Default::default()
        });
        for i in 0..9 {
            let t = b.admit().unwrap();
            b.record(t, if i % 2 == 0 { FAIL } else { Verdict::Healthy });
        }
        assert_eq!(b.state(), State::Closed, "below min_calls");
        let t = b.admit().unwrap();
        b.record(t, FAIL);
        assert_eq!(b.state(), State::Open, "6 of 10 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_and_abandoned_probes_do_not_count() {
        let b = Breaker::new(quick(1));
        let t = b.admit().unwrap();
        b.record(t, Verdict::Throttled);
        assert_eq!(b.state(), State::Closed);
        let t = b.admit().unwrap();
        b.record(t, FAIL);
        tokio::time::advance(Duration::from_millis(40)).await;
        let probe = b.admit().unwrap();
        b.abandon(probe);
        assert!(b.admit().is_ok(), "the abandoned probe freed its slot");
    }
}
