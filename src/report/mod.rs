//! The gateway's reports of itself, computed once here for every surface that shows them: the
//! admin API (`front/report.rs`: `GET /admin/performance`, `GET /admin/health`; and the
//! summary of `GET /admin/monitor`), the gateway's own MCP tools ([`tools`], the `sekisho`
//! namespace, answered by `pipeline/resolve.rs`), and through the admin API the operator CLI
//! (`cli/ops.rs`). Everything here reads state the gateway keeps anyway (the monitor's ring,
//! the alerts, the upstreams, the switches); nothing runs on the call path of other calls.

pub mod config;
pub mod health;
pub mod performance;
pub mod recommendations;
pub mod schemas;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::health::{Facts, Verdict};
use self::performance::{Performance, Summary};
use crate::monitor::Monitor;
use crate::monitor::alerts::Alerts;
use crate::switches::Switches;
use crate::upstream::UpstreamSet;

/// The longest period a report covers (the monitor keeps `retention`, 24 h by default).
pub const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// The period of a report when none is asked for.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(3600);

/// `period` as a report's period: a duration (`1h`, `24h`, `15m`) from 1 s to 7 days;
/// [`DEFAULT_PERIOD`] when absent.
///
/// Errors: the message to show for anything else.
pub fn parse_period(period: Option<&str>) -> Result<Duration, String> {
    match period.map(humantime::parse_duration) {
        None => Ok(DEFAULT_PERIOD),
        Some(Ok(p)) if !p.is_zero() && p <= MAX_PERIOD => Ok(p),
        Some(_) => Err("period must be a duration from 1s to 7d, such as 1h or 24h".into()),
    }
}

/// What the reports read, made once by `app`.
pub struct Sources {
    /// The static upstreams.
    pub upstreams: Arc<UpstreamSet>,
    /// The monitor, unless `[monitor] enabled = false`.
    pub monitor: Option<Arc<Monitor>>,
    /// The alerts, with the monitor and `[alerts] enabled`.
    pub alerts: Option<Arc<Alerts>>,
    /// The runtime switches.
    pub switches: Arc<Switches>,
    /// The response cache (whether Redis answers).
    pub cache: Arc<crate::cache::store::Store>,
    /// The `[store]` PostgreSQL, when configured.
    pub store: Option<Arc<crate::store::Store>>,
    /// Cancelled when the gateway drains.
    pub draining: CancellationToken,
    /// The configuration in force, as the recommendations read it.
    pub running: Arc<crate::monitor::recommend::Running>,
}

/// The gateway's health report (`GET /admin/health`, `sekisho__health`): see [`health`].
#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    /// The verdict.
    pub status: Verdict,
    /// Why it is not healthy, worst first (empty when it is).
    pub reasons: Vec<String>,
    /// Whether `/readyz` answers 200.
    pub ready: bool,
    /// Whether the gateway drains (refuses new work, then exits).
    pub draining: bool,
    /// Upstreams configured (static ones; tenants' are in `/readyz`).
    pub upstreams_total: usize,
    /// Upstreams connected.
    pub upstreams_up: usize,
    /// Replicas whose breaker is open, over all upstreams.
    pub breakers_open: usize,
    /// Each upstream's state (`health::upstream_detail` plus its `name`), down ones first, at
    /// most [`health::MAX_UPSTREAMS_SHOWN`].
    pub upstreams: Vec<serde_json::Value>,
    /// The store: `{"status": "up"|"degraded", "listening", "cached_keys"}`; `null` without
    /// `[store]`.
    pub store: Option<serde_json::Value>,
    /// `up` or `degraded`; `null` without `[redis]`.
    pub redis: Option<&'static str>,
    /// Runtime switches that are off.
    pub switched_off: Vec<&'static str>,
    /// Alerts firing now; `null` when the alerts are off.
    pub alerts_firing: Option<usize>,
}

/// The metrics report (`sekisho__metrics`): the newest sample and the period's totals.
#[derive(Clone, Debug, Serialize)]
pub struct MetricsReport {
    /// Whether the monitor runs (off: no sample, zero totals).
    pub monitor: bool,
    /// The period, in milliseconds.
    pub period_ms: u64,
    /// Time between samples, in milliseconds (`null` with the monitor off).
    pub interval_ms: Option<u64>,
    /// The newest sample (`crate::monitor::Sample`), `null` before the first one.
    pub latest: Option<crate::monitor::Sample>,
    /// The period's samples totalled.
    pub summary: Summary,
}

/// The alerts report (`sekisho__alerts`): what `GET /admin/alerts` shows.
#[derive(Clone, Debug, Serialize)]
pub struct AlertsReport {
    /// Whether alerts are evaluated (`[monitor]` and `[alerts]` enabled).
    pub enabled: bool,
    /// Alerts firing now.
    pub firing: usize,
    /// Firing alerts (worst first), then pending ones.
    pub active: Vec<crate::monitor::alerts::Alert>,
    /// Resolved alerts kept, newest first; only when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<crate::monitor::alerts::Alert>>,
}

/// Computes the reports from its [`Sources`].
pub struct Reporter {
    src: Sources,
}

impl Reporter {
    /// A reporter over `src`.
    pub fn new(src: Sources) -> Reporter {
        Reporter { src }
    }

    /// The health report now.
    pub fn health(&self) -> HealthReport {
        let src = &self.src;
        let draining = src.draining.is_cancelled();
        let mut ups: Vec<(&Arc<crate::upstream::Upstream>, bool)> =
            src.upstreams.iter().map(|u| (u, u.status().is_up())).collect();
        ups.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.name.cmp(&b.0.name)));
        let breakers_open = ups
            .iter()
            .flat_map(|(u, _)| u.replicas())
            .filter(|r| r.breaker.state() == crate::upstream::breaker::State::Open)
            .count();
        let store = src.store.as_ref().map(|s| s.health());
        let redis_degraded = src.cache.redis_degraded();
        let active = src.alerts.as_ref().map(|a| a.active()).unwrap_or_default();
        let facts = Facts {
            draining,
            total: ups.len(),
            down: ups.iter().filter(|(_, up)| !up).map(|(u, _)| u.name.as_ref()).collect(),
            breakers_open,
            store_degraded: store.as_ref().is_some_and(|h| h.degraded),
            redis_degraded: redis_degraded == Some(true),
            firing: health::firing(&active),
            switched_off: src.switches.off(),
        };
        let (status, reasons) = health::judge(&facts);
        let up_count = ups.iter().filter(|(_, up)| *up).count();
        HealthReport {
            status,
            reasons,
            ready: health::ready(draining, ups.len(), up_count, false),
            draining,
            upstreams_total: ups.len(),
            upstreams_up: up_count,
            breakers_open,
            upstreams: ups
                .iter()
                .take(health::MAX_UPSTREAMS_SHOWN)
                .map(|(u, _)| {
                    let mut detail = health::upstream_detail(u);
                    detail["name"] = u.name.as_ref().into();
                    detail
                })
                .collect(),
            store: store.map(|h| {
                serde_json::json!({
                    "status": if h.degraded { "degraded" } else { "up" },
                    "listening": h.listening, "cached_keys": h.cached,
                })
            }),
            redis: redis_degraded.map(|d| if d { "degraded" } else { "up" }),
            switched_off: facts.switched_off,
            alerts_firing: src.alerts.as_ref().map(|a| a.firing()),
        }
    }

    /// The samples of the last `period` (none with the monitor off).
    fn samples(&self, period: Duration) -> Vec<crate::monitor::Sample> {
        self.src.monitor.as_ref().map(|m| m.samples(period)).unwrap_or_default()
    }

    /// The performance summary over the last `period`, with the health verdict.
    pub fn performance(&self, period: Duration) -> Performance {
        let health = self.health();
        let samples = self.samples(period);
        let summary = performance::summarize(&samples);
        let monitor = self.src.monitor.is_some();
        let cost = performance::Spend::of(&samples, &summary);
        Performance::with_cost(health.status, health.reasons, period.as_millis() as u64, monitor, &summary, cost)
    }

    /// The metrics report over the last `period`.
    pub fn metrics(&self, period: Duration) -> MetricsReport {
        let monitor = self.src.monitor.as_ref();
        MetricsReport {
            monitor: monitor.is_some(),
            period_ms: period.as_millis() as u64,
            interval_ms: monitor.map(|m| m.config().interval.as_millis() as u64),
            latest: monitor.and_then(|m| m.latest()),
            summary: performance::summarize(&self.samples(period)),
        }
    }

    /// The alerts report; with `history`, the resolved alerts kept too.
    pub fn alerts(&self, history: bool) -> AlertsReport {
        match &self.src.alerts {
            None => AlertsReport { enabled: false, firing: 0, active: Vec::new(), history: history.then(Vec::new) },
            Some(a) => AlertsReport {
                enabled: true,
                firing: a.firing(),
                active: a.active(),
                history: history.then(|| a.history()),
            },
        }
    }
}
