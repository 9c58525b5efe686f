//! The gateway's health: readiness, every upstream's and replica's state, the store and Redis,
//! the runtime switches and the firing alerts, judged into one [`Verdict`] with its reasons
//! (`GET /admin/health`, `sekisho__health`, `sekisho health`; the verdict is also the
//! performance summary's `overall_health`).
//!
//! The verdict, worst first:
//! - **unhealthy**: the gateway is draining; upstreams are configured and none is connected
//!   (it is not ready); an alert of severity `critical` is firing.
//! - **degraded**: some upstream is down; a replica's breaker is open; the store or Redis does
//!   not answer; an alert of any other severity is firing; a runtime switch is off.
//! - **healthy**: none of these.
//!
//! The thresholds on latency, errors, cache hits and memory are the alert rules' (`[alerts]`),
//! so one set of numbers decides both; with the alerts off only the states above count.

use serde::Serialize;

use crate::monitor::alerts::{Alert, Severity, State};
use crate::upstream::Upstream;
use crate::upstream::status::Status;

/// Upstreams a health report details at most (down ones first); the counts cover all.
pub const MAX_UPSTREAMS_SHOWN: usize = 256;

/// Reasons a verdict names at most; the last says how many more there were.
pub const MAX_REASONS: usize = 20;

/// Upstream names one reason lists at most.
const NAMES_IN_A_REASON: usize = 5;

/// How the gateway is doing, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing below is wrong.
    Healthy,
    /// It serves, with something wrong: see the reasons.
    Degraded,
    /// It does not serve (draining, no upstream) or a critical alert fires.
    Unhealthy,
}

impl Verdict {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Unhealthy => "unhealthy",
        }
    }
}

/// What the verdict is judged from.
#[derive(Debug, Default)]
pub struct Facts<'a> {
    /// The gateway is draining.
    pub draining: bool,
    /// Upstreams configured.
    pub total: usize,
    /// Names of the upstreams not connected.
    pub down: Vec<&'a str>,
    /// Replicas whose breaker is open.
    pub breakers_open: usize,
    /// The `[store]` PostgreSQL does not answer.
    pub store_degraded: bool,
    /// Redis does not answer.
    pub redis_degraded: bool,
    /// The firing alerts.
    pub firing: Vec<&'a Alert>,
    /// Runtime switches that are off.
    pub switched_off: Vec<&'static str>,
}

/// Whether the gateway is ready: not draining, and with upstreams configured at least one
/// connected (`strict`: all). The rule of `/readyz`.
pub fn ready(draining: bool, total: usize, up: usize, strict: bool) -> bool {
    !draining && (total == 0 || if strict { up == total } else { up > 0 })
}

/// The verdict of `facts` and its reasons, worst first (see the module doc).
pub fn judge(facts: &Facts<'_>) -> (Verdict, Vec<String>) {
    let mut bad: Vec<(Verdict, String)> = Vec::new();
    if facts.draining {
        bad.push((Verdict::Unhealthy, "draining: new work is refused".into()));
    }
    let up = facts.total - facts.down.len().min(facts.total);
    let names = |list: &[&str]| {
        let mut text = list.iter().take(NAMES_IN_A_REASON).copied().collect::<Vec<_>>().join(", ");
        if list.len() > NAMES_IN_A_REASON {
            text.push_str(&format!(" and {} more", list.len() - NAMES_IN_A_REASON));
        }
        text
    };
    if facts.total > 0 && up == 0 {
        bad.push((Verdict::Unhealthy, format!("no upstream is connected ({})", names(&facts.down))));
    } else if !facts.down.is_empty() {
        let n = facts.down.len();
        bad.push((Verdict::Degraded, format!("{n} of {} upstreams down: {}", facts.total, names(&facts.down))));
    }
    if facts.breakers_open > 0 {
        bad.push((Verdict::Degraded, format!("{} replica breaker(s) open", facts.breakers_open)));
    }
    if facts.store_degraded {
        bad.push((Verdict::Degraded, "the store (PostgreSQL) does not answer: known keys only".into()));
    }
    if facts.redis_degraded {
        bad.push((Verdict::Degraded, "Redis does not answer: caching and limits are local".into()));
    }
    for alert in &facts.firing {
        let verdict = if alert.severity == Severity::Critical { Verdict::Unhealthy } else { Verdict::Degraded };
        bad.push((verdict, format!("{} alert firing: {}", alert.severity.as_str(), alert.title)));
    }
    if !facts.switched_off.is_empty() {
        bad.push((Verdict::Degraded, format!("switched off at runtime: {}", facts.switched_off.join(", "))));
    }
    // Worst first; the order within a verdict is the order above.
    bad.sort_by_key(|b| std::cmp::Reverse(b.0));
    let verdict = bad.first().map_or(Verdict::Healthy, |(v, _)| *v);
    let more = bad.len().saturating_sub(MAX_REASONS);
    let mut reasons: Vec<String> = bad.into_iter().take(MAX_REASONS).map(|(_, r)| r).collect();
    if more > 0 {
        reasons.push(format!("and {more} more"));
    }
    (verdict, reasons)
}

/// The firing alerts among `active` (which also holds pending ones).
pub fn firing(active: &[Alert]) -> Vec<&Alert> {
    active.iter().filter(|a| a.state == State::Firing).collect()
}

/// One upstream's state, as `/readyz` shows admins and the health report lists: status, era,
/// reason, restarts, calls in flight, and each replica's status, breaker, PID and restarts.
pub fn upstream_detail(up: &Upstream) -> serde_json::Value {
    let status = up.status();
    let mut entry = serde_json::json!({
        "status": status.name(), "restarts": up.restarts(), "in_flight": up.in_flight()
    });
    match &status {
        Status::Up { era, version } => {
            entry["era"] = format!("{era:?}").to_lowercase().into();
            entry["version"] = (*version).into();
        }
        Status::Down { reason, .. } => entry["reason"] = reason.clone().into(),
        Status::Starting | Status::Stopped => {}
    }
    let replicas: Vec<serde_json::Value> = up
        .replicas()
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "replica": r.index, "status": r.status().name(), "breaker": r.breaker.state().name(),
                "in_flight": r.outstanding(), "restarts": r.restarts(),
            });
            if let Some(pid) = r.connection().and_then(|c| c.pid()) {
                v["pid"] = pid.into();
            }
            v
        })
        .collect();
    entry["replicas"] = replicas.into();
    if let Some((live, max)) = up.client_sessions() {
        entry["client_sessions"] = serde_json::json!({ "live": live, "max": max, "pids": up.client_pids() });
    }
    if up.config.fallback.is_some() {
        // The percentage of its calls its fallback takes now: 100 while it is down, falling
        // to 0 over fallback_return after it recovers.
        entry["fallback_percent"] = ((up.fallback_share() * 100.0).round() as u64).into();
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::alerts::{Metric, Op};

    fn alert(severity: Severity, title: &str) -> Alert {
        Alert {
            id: "r:x:1".into(),
            rule: "x".into(),
            state: State::Firing,
            severity,
            title: title.into(),
            description: String::new(),
            metric: Metric::ErrorRate,
            scope: None,
            op: Op::Above,
            current_value: 1.0,
            threshold: 0.5,
            timestamp: 1,
            fired_at: Some(1),
            resolved: false,
            resolved_at: None,
            replica: "r".into(),
        }
    }

    #[test]
    fn the_worst_fact_decides() {
        assert_eq!(judge(&Facts { total: 2, ..Facts::default() }), (Verdict::Healthy, vec![]));
        let facts = Facts { total: 3, down: vec!["b"], switched_off: vec!["cache"], ..Facts::default() };
        let (v, reasons) = judge(&facts);
        assert_eq!(v, Verdict::Degraded);
        assert_eq!(reasons, ["1 of 3 upstreams down: b", "switched off at runtime: cache"]);
        let warn = alert(Severity::Warning, "slow");
        let crit = alert(Severity::Critical, "errors");
        let facts = Facts { total: 1, firing: vec![&warn, &crit], ..Facts::default() };
        let (v, reasons) = judge(&facts);
        assert_eq!(v, Verdict::Unhealthy);
        assert_eq!(reasons, ["critical alert firing: errors", "warning alert firing: slow"], "worst first");
    }

    #[test]
    fn no_upstream_connected_or_draining_is_unhealthy() {
        let (v, reasons) = judge(&Facts { total: 2, down: vec!["a", "b"], ..Facts::default() });
        assert_eq!((v, reasons[0].as_str()), (Verdict::Unhealthy, "no upstream is connected (a, b)"));
        let (v, _) = judge(&Facts { draining: true, ..Facts::default() });
        assert_eq!(v, Verdict::Unhealthy);
        assert!(!ready(true, 0, 0, false));
        assert!(ready(false, 0, 0, true));
        assert!(ready(false, 3, 1, false) && !ready(false, 3, 1, true));
    }

    #[test]
    fn reasons_and_names_are_bounded() {
        let down: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
        let alerts: Vec<Alert> = (0..40).map(|i| alert(Severity::Medium, &format!("a{i}"))).collect();
        let facts = Facts {
            total: 50,
            down: down.iter().map(String::as_str).collect(),
            firing: alerts.iter().collect(),
            ..Facts::default()
        };
        let (_, reasons) = judge(&facts);
        assert_eq!(reasons.len(), MAX_REASONS + 1);
        assert_eq!(reasons[0], "40 of 50 upstreams down: u0, u1, u2, u3, u4 and 35 more");
        assert_eq!(reasons[MAX_REASONS], "and 21 more");
    }
}
