//! The fleet view of the monitor: with `[redis]`, every replica also appends its samples to a
//! Redis stream of its own, `<prefix>monitor:s:<replica>` (trimmed to the ring's capacity on
//! each write, expiring `retention` after the last one), and records itself in the sorted set
//! `<prefix>monitor:replicas` (score: the time of its last sample; replicas silent for
//! `retention` are dropped), so any replica can show every replica's samples, and a replica
//! restarted under the same name finds its history. Entries carry the `[redis] entry_secret`
//! MAC bound to the stream's key (`crate::cache::l2::L2::seal`); one that does not verify is
//! ignored. Redis failing costs a sample its copy there, never the local ring.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Sample;
use crate::cache::l2::L2;
use crate::observe::metrics::METRICS;

/// Replicas one fleet answer shows at most (the most recently sampled first).
pub const MAX_REPLICAS: usize = 32;

/// Samples per replica one fleet answer shows at most (the newest of the period).
pub const MAX_FLEET_POINTS: usize = 120;

/// The longest a write or a read waits for Redis (each command also has `[redis] timeout`).
const DEADLINE: Duration = Duration::from_secs(2);

/// Replicas the sorted set keeps at most (the least recently sampled are dropped).
const MAX_TRACKED: isize = 1024;

/// One replica's stream in Redis, and the fleet's index.
pub struct Fleet {
    l2: Arc<L2>,
    replica: Arc<str>,
    stream: String,
    index: String,
    capacity: usize,
    retention: Duration,
}

/// One replica's samples as read from Redis.
#[derive(Debug, serde::Serialize)]
pub struct ReplicaSamples {
    /// The replica's name (`[monitor] replica`).
    pub replica: String,
    /// Its samples of the period, oldest first, at most [`MAX_FLEET_POINTS`] (JSON as
    /// written, MAC verified).
    pub samples: Vec<Value>,
}

impl Fleet {
    /// The stream of `replica` in `l2`, holding `capacity` samples for `retention`.
    pub fn new(l2: Arc<L2>, replica: &str, capacity: usize, retention: Duration) -> Fleet {
        let prefix = l2.prefix.clone();
        Fleet {
            l2,
            replica: Arc::from(replica),
            stream: format!("{prefix}monitor:s:{replica}"),
            index: format!("{prefix}monitor:replicas"),
            capacity,
            retention,
        }
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Append `sample` (one round trip: XADD with exact trimming, PEXPIRE, and the index's
    /// ZADD, trims and PEXPIRE), under `[redis] timeout`. A failure is counted in
    /// `sekisho_redis_errors_total{op="monitor"}` and otherwise ignored.
    pub async fn write(&self, sample: &Sample) {
        let Some(mut conn) = self.l2.connection() else { return };
        let Ok(json) = serde_json::to_vec(sample) else { return };
        let ttl = self.retention.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(&self.stream)
            .arg("MAXLEN")
            .arg(self.capacity)
            .arg("*")
            .arg("s")
            .arg(self.l2.seal(&self.stream, &json))
            .ignore();
        pipe.cmd("PEXPIRE").arg(&self.stream).arg(ttl).ignore();
        pipe.cmd("ZADD").arg(&self.index).arg(sample.timestamp_ms).arg(&*self.replica).ignore();
        let stale = sample.timestamp_ms.saturating_sub(ttl);
        pipe.cmd("ZREMRANGEBYSCORE").arg(&self.index).arg("-inf").arg(format!("({stale}")).ignore();
        pipe.cmd("ZREMRANGEBYRANK").arg(&self.index).arg(0).arg(-(MAX_TRACKED + 1)).ignore();
        pipe.cmd("PEXPIRE").arg(&self.index).arg(ttl).ignore();
        match tokio::time::timeout(DEADLINE, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail(&e.to_string()),
            Err(_) => fail("timed out"),
        }
    }

    /// Every replica's samples whose interval ended after `since_ms` (this one's included):
    /// at most [`MAX_REPLICAS`] replicas, [`MAX_FLEET_POINTS`] samples each. `None` when Redis
    /// does not answer.
    pub async fn read(&self, since_ms: u64) -> Option<Vec<ReplicaSamples>> {
        let mut conn = self.l2.connection()?;
        let names: Vec<String> = {
            let mut cmd = redis::cmd("ZREVRANGEBYSCORE");
            cmd.arg(&self.index).arg("+inf").arg(since_ms).arg("LIMIT").arg(0).arg(MAX_REPLICAS);
            match tokio::time::timeout(DEADLINE, cmd.query_async(&mut conn)).await {
                Ok(Ok(n)) => n,
                _ => return fail_none("reading the replicas failed"),
            }
        };
        let prefix = &self.l2.prefix;
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("XREVRANGE")
                .arg(format!("{prefix}monitor:s:{name}"))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(MAX_FLEET_POINTS);
        }
        type Entries = Vec<(String, Vec<Vec<u8>>)>;
        let streams: Vec<Entries> = match tokio::time::timeout(DEADLINE, pipe.query_async(&mut conn)).await {
            Ok(Ok(s)) => s,
            _ => return fail_none("reading the samples failed"),
        };
        let out = names
            .into_iter()
            .zip(streams)
            .map(|(name, entries)| {
                let key = format!("{prefix}monitor:s:{name}");
                let mut samples: Vec<Value> = entries
                    .into_iter()
                    .filter_map(|(_, fields)| fields.into_iter().nth(1))
                    .filter_map(|sealed| self.l2.unseal(&key, sealed))
                    .filter_map(|json| serde_json::from_slice::<Value>(&json).ok())
                    .filter(|s| s["timestamp_ms"].as_u64().is_some_and(|t| t > since_ms))
                    .collect();
                samples.reverse();
                ReplicaSamples { replica: name, samples }
            })
            .collect();
        Some(out)
    }
}

impl Fleet {
    /// This replica's own samples in Redis whose interval ended after `since_ms`, oldest
    /// first, at most the ring's capacity: what a replica restarted under the same name takes
    /// back into its ring. Entries whose MAC does not verify or that do not parse as a
    /// [`Sample`] are skipped; empty when Redis does not answer.
    pub async fn own_history(&self, since_ms: u64) -> Vec<Sample> {
        // Called at start, while the connection to Redis may still be being made: wait for it
        // as long as one read may take.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut conn = loop {
            match self.l2.connection() {
                Some(conn) => break conn,
                None if tokio::time::Instant::now() >= deadline => return Vec::new(),
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&self.stream).arg("+").arg("-").arg("COUNT").arg(self.capacity);
        type Entries = Vec<(String, Vec<Vec<u8>>)>;
        let entries: Entries = match tokio::time::timeout(DEADLINE, cmd.query_async(&mut conn)).await {
            Ok(Ok(e)) => e,
            _ => return fail_none("reading this replica's samples failed").unwrap_or_default(),
        };
        let mut samples: Vec<Sample> = entries
            .into_iter()
            .filter_map(|(_, fields)| fields.into_iter().nth(1))
            .filter_map(|sealed| self.l2.unseal(&self.stream, sealed))
            .filter_map(|json| serde_json::from_slice::<Sample>(&json).ok())
            .filter(|s| s.timestamp_ms > since_ms)
            .collect();
        samples.reverse();
        // Oldest first and strictly increasing, whatever the stream held.
        samples.dedup_by(|later, earlier| later.timestamp_ms <= earlier.timestamp_ms);
        samples
    }
}

fn fail(error: &str) {
    METRICS.redis_error("monitor");
    tracing::debug!(error, "the monitor's sample was not written to Redis");
}

fn fail_none<T>(error: &str) -> Option<T> {
    fail(error);
    None
}

/// This host's name (`/proc/sys/kernel/hostname`), the default replica name; `sekisho` when it
/// cannot be read or is not a valid name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| valid_name(h))
        .unwrap_or_else(|| "sekisho".into())
}

/// Whether `name` can name a replica: 1 to 64 ASCII letters, digits, `.`, `_`, `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
