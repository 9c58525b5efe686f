//! The monitor: every `[monitor] interval` it reads the gateway's cumulative sources (metrics,
//! upstreams, sessions, `/proc`) and keeps the difference from the previous reading as a
//! [`Sample`] in a ring of fixed capacity (`retention / interval` samples, oldest dropped), so
//! its memory does not grow with uptime. `GET /admin/monitor` (`crate::front::monitor`) serves
//! it; [`alerts`] evaluates its rules on each new sample; [`recommend`] reads the samples of a
//! period (and when each upstream was last called, [`Monitor::last_call_ms`]); the dashboard is
//! to read from it.
//!
//! It never runs on the call path: the sampler task reads counters the calls already keep.

pub mod alerts;
pub mod config;
pub mod exposition;
pub mod fleet;
pub mod reading;
pub mod recommend;
pub mod sample;
pub mod usage;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use config::MonitorConfig;
use reading::Reading;
pub use sample::Sample;

/// The samples kept, oldest first, and the last reading.
struct Ring {
    samples: VecDeque<Sample>,
    last: Option<(Instant, Reading)>,
    /// When each upstream (metric label) was last seen with new calls, in ms since the Unix
    /// epoch on the monitor's clock; at most [`reading::MAX_UPSTREAMS`] entries.
    last_calls: std::collections::HashMap<std::sync::Arc<str>, u64>,
    /// When the first reading was taken.
    baseline_ms: Option<u64>,
}

/// The monitor: its settings, clock and ring.
pub struct Monitor {
    config: MonitorConfig,
    capacity: usize,
    ring: Mutex<Ring>,
    /// Wall time at `started`: sample timestamps are `epoch + (now - started)` on tokio's
    /// clock, so they follow paused time in tests.
    epoch_ms: u64,
    started: Instant,
    /// The copy of the samples in Redis, with `[redis]`.
    fleet: Option<fleet::Fleet>,
}

impl Monitor {
    /// A monitor with an empty ring of `config.capacity()` samples, allocated now.
    pub fn new(config: &MonitorConfig) -> Monitor {
        let capacity = config.capacity();
        let epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Monitor {
            config: config.clone(),
            capacity,
            ring: Mutex::new(Ring {
                samples: VecDeque::with_capacity(capacity),
                last: None,
                last_calls: Default::default(),
                baseline_ms: None,
            }),
            epoch_ms,
            started: Instant::now(),
            fleet: None,
        }
    }

    /// Also write each sample to Redis through `l2` (the fleet view, [`fleet`]), when given.
    pub fn with_fleet(mut self, l2: Option<std::sync::Arc<crate::cache::l2::L2>>) -> Monitor {
        self.fleet =
            l2.map(|l2| fleet::Fleet::new(l2, &self.config.replica_name(), self.capacity, self.config.retention));
        self
    }

    /// The fleet view, with `[redis]`.
    pub fn fleet(&self) -> Option<&fleet::Fleet> {
        self.fleet.as_ref()
    }

    /// Its settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Samples the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Milliseconds since the Unix epoch now, on the monitor's clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch_ms + self.started.elapsed().as_millis() as u64
    }

    /// Take in `reading`, made now: the first one is the baseline; each later one adds the
    /// sample of the time since the previous one (dropping the oldest when the ring is full),
    /// and returns it.
    pub fn record(&self, reading: Reading) -> Option<Sample> {
        let now = Instant::now();
        let timestamp = self.now_ms();
        let mut ring = self.ring.lock().expect("monitor lock");
        ring.baseline_ms.get_or_insert(timestamp);
        let called: Vec<std::sync::Arc<str>> = reading
            .totals
            .upstreams
            .iter()
            .filter(|(name, c)| {
                let before = ring.last.as_ref().and_then(|(_, b)| b.totals.upstreams.get(*name)).map_or(0, |b| b.calls);
                c.calls > before
            })
            .map(|(name, _)| std::sync::Arc::clone(name))
            .collect();
        for name in called {
            if ring.last_calls.len() < reading::MAX_UPSTREAMS || ring.last_calls.contains_key(&name) {
                ring.last_calls.insert(name, timestamp);
            }
        }
        let sample = ring.last.as_ref().map(|(at, before)| {
            let interval_ms = now.duration_since(*at).as_millis() as u64;
            sample::between(before, &reading, timestamp, interval_ms, self.config.top_n)
        });
        if let Some(s) = &sample {
            if ring.samples.len() == self.capacity {
                ring.samples.pop_front();
            }
            ring.samples.push_back(s.clone());
        }
        ring.last = Some((now, reading));
        sample
    }

    /// The samples whose interval ended in the last `period`, oldest first.
    pub fn samples(&self, period: Duration) -> Vec<Sample> {
        let since = self.now_ms().saturating_sub(period.as_millis() as u64);
        let ring = self.ring.lock().expect("monitor lock");
        let start = ring.samples.partition_point(|s| s.timestamp_ms <= since);
        ring.samples.range(start..).cloned().collect()
    }

    /// When the monitor took its first reading, in ms since the Unix epoch (`None` before).
    pub fn baseline_ms(&self) -> Option<u64> {
        self.ring.lock().expect("monitor lock").baseline_ms
    }

    /// When `upstream` (its metric label) last had new calls, as seen by the readings, in ms
    /// since the Unix epoch; `None` when no reading saw a call to it.
    pub fn last_call_ms(&self, upstream: &str) -> Option<u64> {
        self.ring.lock().expect("monitor lock").last_calls.get(upstream).copied()
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<Sample> {
        self.ring.lock().expect("monitor lock").samples.back().cloned()
    }

    /// Samples held now.
    pub fn len(&self) -> usize {
        self.ring.lock().expect("monitor lock").samples.len()
    }

    /// Whether no sample is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Put `history` (oldest first; samples this replica wrote to Redis before a restart)
    /// into the ring ahead of anything sampled since, keeping the newest `capacity`. The
    /// alerts do not see them again; [`Monitor::baseline_ms`] stays this process's first
    /// reading, so what needs a watched period judges only what this process watched.
    pub fn restore(&self, history: Vec<Sample>) {
        let mut ring = self.ring.lock().expect("monitor lock");
        let first_own = ring.samples.front().map_or(u64::MAX, |s| s.timestamp_ms);
        let older: Vec<Sample> = history.into_iter().filter(|s| s.timestamp_ms < first_own).collect();
        let room = self.capacity.saturating_sub(ring.samples.len());
        for sample in older.into_iter().rev().take(room) {
            ring.samples.push_front(sample);
        }
    }

    /// Sample every interval until `stop`: a reading at once (the baseline), then one per
    /// `interval` (a late tick is taken late, not twice), each sample also written to Redis
    /// with [`Monitor::with_fleet`]. `read` takes the reading; it returns `None` when its
    /// sources are gone, which ends the task.
    pub async fn run(&self, read: impl Fn() -> Option<Reading>, stop: CancellationToken) {
        self.run_then(read, |_| {}, stop).await;
    }

    /// [`Monitor::run`], handing each new sample to `then` (the alerts) once it is recorded.
    pub async fn run_then(&self, read: impl Fn() -> Option<Reading>, then: impl Fn(&Sample), stop: CancellationToken) {
        if let Some(fleet) = &self.fleet {
            let since = self.now_ms().saturating_sub(self.config.retention.as_millis() as u64);
            self.restore(fleet.own_history(since).await);
        }
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let Some(reading) = read() else { return };
            let Some(sample) = self.record(reading) else { continue };
            then(&sample);
            if let Some(fleet) = &self.fleet {
                fleet.write(&sample).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
