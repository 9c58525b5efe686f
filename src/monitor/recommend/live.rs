//! What the rules read from the running gateway besides the samples: each upstream's
//! replicas with how long each has gone without a call (`Replica::idle_for`: set when a call
//! starts on it; liveness probes do not count), and when the monitor last saw it called.

use std::sync::Arc;
use std::time::Duration;

use super::super::Monitor;
use super::super::reading::MAX_UPSTREAMS;
use crate::upstream::UpstreamSet;
use crate::upstream::config::SessionMode;

/// One replica (a process of a stdio upstream, or one URL of an HTTP upstream) now.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaLive {
    /// Its index in the pool.
    pub index: usize,
    /// Time since a call last started on it (since it was made, without any).
    pub idle_for: Duration,
    /// Its process id (stdio, when running).
    pub pid: Option<u32>,
}

/// One upstream now.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamLive {
    /// Namespace.
    pub name: Arc<str>,
    /// A child process per replica (`command`).
    pub stdio: bool,
    /// `session = "per-client"`: its calls run on per-client sessions, not on these replicas.
    pub per_client: bool,
    /// Its pool's replicas.
    pub replicas: Vec<ReplicaLive>,
    /// When the monitor last saw calls to it (cache hits included), in ms since the Unix
    /// epoch; `None` when it never did.
    pub last_call_ms: Option<u64>,
}

/// The upstreams of `set` now (at most [`MAX_UPSTREAMS`]), with the monitor's last calls.
pub fn gather(set: &UpstreamSet, monitor: Option<&Monitor>) -> Vec<UpstreamLive> {
    set.iter()
        .take(MAX_UPSTREAMS)
        .map(|up| UpstreamLive {
            name: Arc::clone(&up.name),
            stdio: up.config.command.is_some(),
            per_client: up.config.settings.session == SessionMode::PerClient,
            replicas: up
                .replicas()
                .iter()
                .map(|r| ReplicaLive {
                    index: r.index,
                    idle_for: r.idle_for(),
                    pid: r.connection().and_then(|c| c.pid()),
                })
                .collect(),
            last_call_ms: monitor.and_then(|m| m.last_call_ms(&up.name)),
        })
        .collect()
}
