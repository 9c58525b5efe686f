//! `[monitor]`: how often the monitor samples the gateway's indicators, how long it keeps them,
//! and how many upstreams and methods its breakdowns name.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most samples the ring holds, whatever `retention / interval` asks for.
pub const MAX_SAMPLES: usize = 100_000;

/// The largest `top_n`.
pub const MAX_TOP_N: usize = 100;

/// `[monitor]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Whether the monitor samples at all (`GET /admin/monitor` answers 404 when off).
    pub enabled: bool,
    /// Time between samples, at least 1 s and at most 1 h.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long samples are kept: the ring holds `retention / interval` samples, at most
    /// [`MAX_SAMPLES`]; at least one interval.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Upstreams, methods and child processes each breakdown names (by calls, or by memory for
    /// processes), `1..=100`; the rest are summed under `other`.
    pub top_n: usize,
    /// This replica's name in the fleet view (with `[redis]`): its samples go to the stream
    /// `<prefix>monitor:s:<replica>`. Empty: the host name. 1 to 64 ASCII letters, digits,
    /// `.`, `_`, `-`; give each replica of a fleet its own (a restarted replica with the same
    /// name finds its history).
    pub replica: String,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            enabled: true,
            interval: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 3600),
            top_n: 10,
            replica: String::new(),
        }
    }
}

impl MonitorConfig {
    /// Problems with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.interval) {
            p.push(format!("monitor.interval = {:?} is outside 1s..=1h", self.interval));
        }
        if self.retention < self.interval {
            p.push(format!("monitor.retention = {:?} is shorter than monitor.interval", self.retention));
        }
        if !(1..=MAX_TOP_N).contains(&self.top_n) {
            p.push(format!("monitor.top_n = {} is outside 1..={MAX_TOP_N}", self.top_n));
        }
        if !self.replica.is_empty() && !super::fleet::valid_name(&self.replica) {
            p.push(format!(
                "monitor.replica = {:?} must be 1 to 64 ASCII letters, digits, '.', '_' or '-'",
                self.replica
            ));
        }
        p
    }

    /// This replica's name: `replica`, else the host name.
    pub fn replica_name(&self) -> String {
        if self.replica.is_empty() { super::fleet::host_name() } else { self.replica.clone() }
    }

    /// Samples the ring holds: `retention / interval`, at least 1, at most [`MAX_SAMPLES`].
    pub fn capacity(&self) -> usize {
        let interval = self.interval.as_millis().max(1);
        ((self.retention.as_millis() / interval) as usize).clamp(1, MAX_SAMPLES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_a_day_of_half_minutes_and_bad_values_are_named() {
        let c = crate::config::Config::from_toml("").unwrap().monitor;
        assert_eq!((c.enabled, c.interval, c.top_n, c.capacity()), (true, Duration::from_secs(30), 10, 2880));
        let c = crate::config::Config::from_toml("[monitor]\ninterval = \"1s\"\nretention = \"7d\"\n").unwrap();
        assert_eq!(c.monitor.capacity(), MAX_SAMPLES, "capped");
        let e = crate::config::Config::from_toml(
            "[monitor]\ninterval = \"500ms\"\nretention = \"100ms\"\ntop_n = 0\nreplica = \"a b\"\n",
        )
        .unwrap_err()
        .problems;
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(!c.monitor.replica_name().is_empty());
        assert!(crate::config::Config::from_toml("[monitor]\nsamples = 3\n").is_err(), "unknown keys");
    }
}
