//! The lifecycle on synthetic samples (a sample every 30 s on tokio's paused clock), the
//! history's bounds and the backoff.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::monitor::sample::{Breakdown, Latency};

const INTERVAL: u64 = 30_000;

/// A sample at `t` ms with `calls` calls, `errors` of them failed, and a p95 of `p95` ms (for
/// the whole gateway and the upstream `e`).
fn sample(t: u64, calls: u64, errors: u64, p95: Option<f64>) -> Sample {
    Sample {
        timestamp_ms: t,
        interval_ms: INTERVAL,
        requests_per_sec: calls as f64 / 30.0,
        calls,
        errors,
        tool_errors: 0,
        error_rate: if calls == 0 { 0.0 } else { errors as f64 / calls as f64 },
        latency: Latency { mean_ms: p95, p50_ms: p95, p95_ms: p95, p99_ms: p95 },
        upstreams_up: 1,
        by_upstream: vec![Breakdown {
            name: "e".into(),
            calls,
            errors,
            tool_errors: 0,
            timeouts: 0,
            retry_budget_exhausted: 0,
            p95_ms: p95,
            p99_ms: p95,
            cost_per_hour: None,
        }],
        ..Sample::default()
    }
}

fn engine(rules: &str, extra: &str) -> Alerts {
    let toml = format!("[alerts]\n{extra}rules = [{rules}]\n");
    let config = crate::config::Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}"));
    Alerts::new(&config.alerts, "r1", Duration::from_secs(3600), &CancellationToken::new())
}

/// A clock of samples on tokio's (paused) time: each call waits one interval and reads it.
async fn tick(start: tokio::time::Instant) -> u64 {
    tokio::time::sleep(Duration::from_millis(INTERVAL)).await;
    start.elapsed().as_millis() as u64
}

#[tokio::test(start_paused = true)]
async fn pending_fires_after_for_and_resolves_past_the_margin() {
    let a = engine(
        "{ name = \"slow\", metric = \"latency_p95_ms\", op = \">\", threshold = 1000, for = \"1m\", severity = \"high\", scope = \"e\" }",
        "",
    );
    let start = tokio::time::Instant::now();
    let t0 = tick(start).await;
    assert!(a.observe(&sample(t0, 10, 0, Some(1500.0))).is_empty(), "pending, not yet for 1m");
    let pending = a.active();
    assert_eq!((pending.len(), pending[0].state), (1, State::Pending));
    let t1 = tick(start).await;
    assert!(a.observe(&sample(t1, 10, 0, Some(1600.0))).is_empty(), "held 30 s of 60");
    let t2 = tick(start).await;
    let fired = a.observe(&sample(t2, 10, 0, Some(1700.0)));
    assert_eq!(fired.len(), 1, "held 60 s: fires");
    let f = &fired[0];
    assert_eq!((f.state, f.fired_at, f.timestamp, f.current_value), (State::Firing, Some(t2), t0, 1700.0));
    assert_eq!(f.id, format!("r1:slow:{t0}"));
    assert_eq!((f.severity, f.scope.as_deref(), f.resolved), (Severity::High, Some("e"), false));
    assert!(f.description.contains("1700 ms") && f.title.contains("of e"), "{f:?}");
    assert_eq!(a.firing(), 1);

    // Below the threshold but inside the 10 % margin: still firing; no value: still firing.
    let t3 = tick(start).await;
    assert!(a.observe(&sample(t3, 10, 0, Some(950.0))).is_empty());
    let t4 = tick(start).await;
    assert!(a.observe(&sample(t4, 0, 0, None)).is_empty(), "no calls is no evidence of recovery");
    assert_eq!(a.active()[0].current_value, 950.0);
    let t5 = tick(start).await;
    let resolved = a.observe(&sample(t5, 10, 0, Some(900.0)));
    assert_eq!(resolved.len(), 1);
    let r = &resolved[0];
    assert_eq!((r.state, r.resolved, r.resolved_at, r.id.as_str()), (State::Resolved, true, Some(t5), f.id.as_str()));
    assert!(a.active().is_empty() && a.firing() == 0);
    assert_eq!(a.history(), resolved);

    // A pending alert that stops breaching is dropped without a word; a new episode gets a
    // new id.
    let t6 = tick(start).await;
    assert!(a.observe(&sample(t6, 10, 0, Some(2000.0))).is_empty());
    let t7 = tick(start).await;
    assert!(a.observe(&sample(t7, 10, 0, Some(10.0))).is_empty());
    assert!(a.active().is_empty());
    let t8 = tick(start).await;
    a.observe(&sample(t8, 10, 0, Some(2000.0)));
    assert_eq!(a.active()[0].id, format!("r1:slow:{t8}"));
}

#[tokio::test(start_paused = true)]
async fn for_zero_fires_at_once_min_calls_and_history_bounds_hold() {
    let a = engine(
        "{ name = \"errors\", metric = \"error_rate\", op = \">\", threshold = 0.05, severity = \"critical\", min_calls = 10 }",
        "history = 3\n",
    );
    let start = tokio::time::Instant::now();
    let t = tick(start).await;
    assert!(a.observe(&sample(t, 5, 5, Some(1.0))).is_empty(), "5 calls: under min_calls");
    for _ in 0..5 {
        let t = tick(start).await;
        let fired = a.observe(&sample(t, 100, 50, Some(1.0)));
        assert_eq!(fired.len(), 1, "for = 0: fires at the first breaching sample");
        assert_eq!((fired[0].state, fired[0].current_value), (State::Firing, 0.5));
        assert!(a.observe(&sample(t + 1, 100, 50, Some(1.0))).is_empty(), "re-evaluating sends nothing new");
        let t = tick(start).await;
        assert_eq!(a.observe(&sample(t, 100, 0, Some(1.0)))[0].state, State::Resolved);
    }
    let history = a.history();
    assert_eq!(history.len(), 3, "bounded by history");
    assert!(history[0].resolved_at > history[1].resolved_at, "newest first");
}

#[tokio::test(start_paused = true)]
async fn history_expires_after_the_retention_and_defaults_watch_the_issue_levels() {
    let config = crate::config::Config::from_toml("").unwrap();
    let a = Alerts::new(&config.alerts, "r1", Duration::from_secs(120), &CancellationToken::new());
    let start = tokio::time::Instant::now();
    let t = tick(start).await;
    let fired = a.observe(&sample(t, 100, 10, Some(4000.0)));
    let mut names: Vec<&str> = fired.iter().map(|f| f.rule.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["error-rate-critical", "error-rate-warning", "latency-p95-warning"]);
    assert_eq!(a.active()[0].severity, Severity::Critical, "worst first");
    let t = tick(start).await;
    assert_eq!(a.observe(&sample(t, 100, 0, Some(10.0))).len(), 3);
    assert_eq!(a.history().len(), 3);
    for _ in 0..5 {
        let t = tick(start).await;
        a.observe(&sample(t, 100, 0, Some(10.0)));
    }
    assert!(a.history().is_empty(), "older than the retention");
}

#[test]
fn backoff_doubles_within_its_upper_half_and_is_capped() {
    let base = Duration::from_millis(500);
    for n in 1..=10 {
        let full = (base * 2u32.pow(n - 1)).min(Duration::from_secs(60));
        let w = webhook::backoff(base, n);
        assert!(w >= full / 2 && w <= full, "retry {n}: {w:?} of {full:?}");
    }
    assert!(webhook::backoff(base, 40) <= Duration::from_secs(60));
}
