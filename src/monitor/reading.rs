//! One reading of the gateway's cumulative sources: the metrics text ([`super::exposition`]),
//! the upstreams (status, breakers, process ids), admission queues, sessions, streams, and the
//! processes' memory and CPU time ([`crate::observe::proc`]). Two readings make a sample.

use std::sync::Arc;

use super::exposition::{self, Totals};
use crate::observe::metrics::METRICS;
use crate::observe::proc::{self, ProcStat};
use crate::pipeline::admit::Admission;
use crate::upstream::UpstreamSet;
use crate::upstream::breaker::State;

/// Child processes read per reading at most (the rest are not read).
pub const MAX_PROCESSES: usize = 1024;

/// Upstreams read per reading at most.
pub const MAX_UPSTREAMS: usize = 10_000;

/// What a reading is taken from.
pub struct Sources<'a> {
    /// The upstreams.
    pub upstreams: &'a UpstreamSet,
    /// The gateway-wide admission limit, when on.
    pub admission: Option<&'a Admission>,
    /// Live legacy sessions.
    pub sessions: usize,
    /// Open notification streams.
    pub streams: usize,
    /// Prices and budgets, when any are configured.
    pub cost: Option<&'a crate::cost::Cost>,
}

/// One upstream's state at a reading.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamState {
    /// Namespace.
    pub name: Arc<str>,
    /// Connected (any replica up).
    pub up: bool,
    /// Replicas whose breaker is open.
    pub breakers_open: u32,
    /// Replicas whose breaker is half-open.
    pub breakers_half_open: u32,
    /// Times its replicas' breakers opened, summed over the replicas it has now (cumulative).
    pub breaker_opens: u64,
    /// Calls that waited at its bulkhead since start (cumulative; 0 without a bulkhead).
    pub waited: u64,
    /// The longest its bulkhead queue was since the previous reading.
    pub peak_queued: u64,
    /// Its bulkhead's `max_concurrent` (0 without a bulkhead).
    pub max_concurrent: u64,
}

/// The gateway-wide admission limit at a reading.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limit {
    /// Calls that waited since start (cumulative).
    pub waited: u64,
    /// The longest the queue was since the previous reading.
    pub peak_queued: u64,
    /// Calls it lets run at once.
    pub max_concurrent: u64,
}

/// One child process at a reading.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildStat {
    /// The upstream it serves.
    pub upstream: Arc<str>,
    /// Its process id.
    pub pid: u32,
    /// Its memory and CPU time.
    pub stat: ProcStat,
}

/// The cumulative sources at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// Counters from the metrics.
    pub totals: Totals,
    /// Upstreams, in namespace order.
    pub upstreams: Vec<UpstreamState>,
    /// Calls waiting on an upstream (every replica's outstanding calls).
    pub in_flight: u64,
    /// Calls waiting in an admission queue (the gateway's and the upstreams' bulkheads).
    pub queued: u64,
    /// The gateway-wide admission limit, when on.
    pub admission: Option<Limit>,
    /// Live legacy sessions.
    pub sessions: u64,
    /// Open notification streams.
    pub streams: u64,
    /// This process, when `/proc` can be read.
    pub gateway: Option<ProcStat>,
    /// Child processes of stdio upstreams (replicas and per-client sessions), at most
    /// [`MAX_PROCESSES`].
    pub children: Vec<ChildStat>,
    /// Every configured budget's trailing hour (bounded by the configuration).
    pub budgets: Vec<crate::cost::BudgetUse>,
}

impl Reading {
    /// Read every source now (metrics text, upstream states, `/proc`): tens of microseconds
    /// plus one `/proc` read per child; meant for the monitor's timer, never per call.
    pub fn take(src: &Sources<'_>) -> Reading {
        let totals = exposition::parse(&METRICS.encode());
        let mut r = Reading {
            totals,
            sessions: src.sessions as u64,
            streams: src.streams as u64,
            gateway: proc::read(None),
            budgets: src.cost.map(crate::cost::Cost::usage).unwrap_or_default(),
            ..Reading::default()
        };
        if let Some(a) = src.admission {
            r.queued += a.queued() as u64;
            r.admission = Some(Limit {
                waited: a.waited(),
                peak_queued: a.take_peak() as u64,
                max_concurrent: a.capacity() as u64,
            });
        }
        for up in src.upstreams.iter().take(MAX_UPSTREAMS) {
            r.in_flight += up.in_flight() as u64;
            let mut state =
                UpstreamState { name: Arc::clone(&up.name), up: up.status().is_up(), ..UpstreamState::default() };
            if let Some(b) = up.bulkhead() {
                r.queued += b.queued() as u64;
                state.waited = b.waited();
                state.peak_queued = b.take_peak() as u64;
                state.max_concurrent = b.capacity() as u64;
            }
            let mut pids: Vec<u32> = Vec::new();
            for replica in up.replicas() {
                state.breaker_opens += replica.breaker.opened();
                match replica.breaker.state() {
                    State::Open => state.breakers_open += 1,
                    State::HalfOpen => state.breakers_half_open += 1,
                    State::Closed => {}
                }
                pids.extend(replica.connection().and_then(|c| c.pid()));
            }
            pids.extend(up.client_pids());
            for pid in pids {
                if r.children.len() >= MAX_PROCESSES {
                    break;
                }
                if let Some(stat) = proc::read(Some(pid)) {
                    r.children.push(ChildStat { upstream: Arc::clone(&up.name), pid, stat });
                }
            }
            r.upstreams.push(state);
        }
        r
    }
}

impl Default for UpstreamState {
    fn default() -> Self {
        UpstreamState {
            name: Arc::from(""),
            up: false,
            breakers_open: 0,
            breakers_half_open: 0,
            breaker_opens: 0,
            waited: 0,
            peak_queued: 0,
            max_concurrent: 0,
        }
    }
}
