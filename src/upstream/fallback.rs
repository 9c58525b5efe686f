//! When an upstream's calls go to its `fallback` upstream: always while no replica is healthy,
//! and, after recovery, for a share of calls that falls linearly to zero over
//! `fallback_return`, so a recovering upstream is not flooded at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::pool::Pool;

/// The fallback state of one upstream.
#[derive(Debug)]
pub struct FallbackState {
    /// Last time a call found the primary unhealthy; `None` while not degraded.
    unhealthy_seen: Mutex<Option<Instant>>,
    /// `fallback_return`.
    period: Duration,
}

impl FallbackState {
    /// Traffic returns over `period` after recovery.
    pub fn new(period: Duration) -> Self {
        FallbackState { unhealthy_seen: Mutex::new(None), period }
    }

    /// Whether this call should go to the fallback.
    ///
    /// Recovery dates from when a healthy replica connected, or, when it was connected all along
    /// (an open breaker), from the last call that found the upstream unhealthy.
    pub fn route_to_fallback(&self, pool: &Pool) -> bool {
        let healthy_since = pool.healthy_since();
        let mut seen = self.unhealthy_seen.lock().expect("fallback lock");
        let Some(up) = healthy_since else {
            *seen = Some(Instant::now());
            return true;
        };
        let Some(last) = *seen else { return false };
        let since = up.max(last).elapsed();
        if since >= self.period {
            *seen = None;
            return false;
        }
        rand::random::<f64>() >= since.as_secs_f64() / self.period.as_secs_f64()
    }

    /// The share of calls the fallback takes now (0.0 to 1.0), without deciding for a call:
    /// 1 while no replica is healthy, falling linearly to 0 over `fallback_return` after
    /// recovery, 0 when not degraded.
    pub fn share(&self, pool: &Pool) -> f64 {
        let Some(up) = pool.healthy_since() else { return 1.0 };
        let Some(last) = *self.unhealthy_seen.lock().expect("fallback lock") else { return 0.0 };
        (1.0 - up.max(last).elapsed().as_secs_f64() / self.period.as_secs_f64()).max(0.0)
    }

    /// Note that the primary failed a call the fallback then served.
    pub fn mark_degraded(&self) {
        *self.unhealthy_seen.lock().expect("fallback lock") = Some(Instant::now());
    }
}
