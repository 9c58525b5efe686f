//! Exponential backoff with jitter: the one backoff of the gateway, used by retries, replica
//! reconnects and upstream notification streams, so no two replicas (or gateways) fall into
//! step after a shared failure.
//!
//! The cap of try `n` (1-based) is `min(max, base · 2^(n-1))`; the delay is drawn uniformly from
//! `[floor · cap, cap]`: `floor = 0` is "full jitter" (retries: spread as widely as possible),
//! `floor = 0.5` is "equal jitter" (reconnects: never immediately, never in step). Source: AWS
//! Architecture Blog, "Exponential Backoff And Jitter" (2015).

use std::time::Duration;

/// A backoff schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    floor: f64,
}

impl Backoff {
    /// Delays uniform in `[0, cap]`.
    pub fn full_jitter(base: Duration, max: Duration) -> Self {
        Backoff { base, max, floor: 0.0 }
    }

    /// Delays uniform in `[cap / 2, cap]`.
    pub fn equal_jitter(base: Duration, max: Duration) -> Self {
        Self::equal_jitter_const(base, max)
    }

    /// [`Backoff::equal_jitter`] in a `const` context.
    pub const fn equal_jitter_const(base: Duration, max: Duration) -> Self {
        Backoff { base, max, floor: 0.5 }
    }

    /// The longest delay before try `n` (1-based): `min(max, base · 2^(n-1))`.
    pub fn cap(&self, n: u32) -> Duration {
        self.base.saturating_mul(1u32 << n.saturating_sub(1).min(16)).min(self.max)
    }

    /// The delay before try `n` (1-based), jittered.
    pub fn delay(&self, n: u32) -> Duration {
        self.cap(n).mul_f64(self.floor + (1.0 - self.floor) * rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_the_cap_and_reaches_down_to_zero() {
        let b = Backoff::full_jitter(Duration::from_millis(100), Duration::from_millis(250));
        assert_eq!([b.cap(1), b.cap(2), b.cap(3), b.cap(40)].map(|d| d.as_millis()), [100, 200, 250, 250]);
        for n in 1..10 {
            assert!(b.delay(n) <= Duration::from_millis(250));
        }
        assert!((0..50).map(|_| b.delay(1)).any(|d| d < Duration::from_millis(50)), "jitter reaches down to 0");
    }

    #[test]
    fn equal_jitter_waits_at_least_half_the_cap() {
        let b = Backoff::equal_jitter(Duration::from_millis(250), Duration::from_secs(30));
        for _ in 0..50 {
            let d = b.delay(3);
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1), "{d:?}");
        }
        assert_eq!(b.cap(20), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_backoff_sleep_passes_in_virtual_time() {
        let b = Backoff::full_jitter(Duration::from_secs(60), Duration::from_secs(600));
        let before = tokio::time::Instant::now();
        tokio::time::sleep(b.delay(4)).await;
        assert!(before.elapsed() <= Duration::from_secs(480), "slept within the cap");
    }
}
