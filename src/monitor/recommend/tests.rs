//! Each rule on constructed samples and configurations.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::monitor::Sample;
use crate::monitor::sample::{Breakdown, Health, Process};
use crate::monitor::usage::{Queueing, ToolUse};

fn sample() -> Sample {
    Sample { interval_ms: 30_000, ..Sample::default() }
}

fn calls(name: &str, calls: u64, errors: u64, timeouts: u64, p99_ms: f64) -> Breakdown {
    Breakdown {
        name: name.into(),
        calls,
        errors,
        tool_errors: 0,
        timeouts,
        retry_budget_exhausted: 0,
        p95_ms: Some(p99_ms * 0.8),
        p99_ms: Some(p99_ms),
        cost_per_hour: None,
    }
}

fn health(name: &str) -> Health {
    Health {
        name: name.into(),
        up: 1,
        down: 0,
        breakers_open: 0,
        breaker_opens: 0,
        waited: 0,
        peak_queued: 0,
        max_concurrent: 256,
    }
}

fn tool(upstream: &str, tool: &str) -> ToolUse {
    ToolUse {
        upstream: upstream.into(),
        tool: tool.into(),
        hits: 0,
        misses: 0,
        expired_misses: 0,
        coalesced: 0,
        uncached: 0,
        repeats: 0,
    }
}

/// Upstreams `e` (stdio) and `w` (HTTP) with lines of their own, then `rest`.
fn config3(e: &str, w: &str, rest: &str) -> Config {
    Config::from_toml(&format!(
        "{rest}\n[upstreams.e]\ncommand = \"x\"\n{e}\n[upstreams.w]\nurl = \"http://127.0.0.1:1/mcp\"\n{w}\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn config(rest: &str) -> Config {
    config3("", "", rest)
}

/// An hour judged, the monitor watching for two.
fn run(samples: &[Sample], config: &Config, upstreams: &[UpstreamLive]) -> Vec<Recommendation> {
    let hour = 3_600_000;
    let input = Input {
        period: Duration::from_secs(3600),
        now_ms: 2 * hour,
        samples,
        history_since_ms: Some(0),
        config,
        upstreams,
        inline_secrets: &[],
        cost: None,
    };
    recommend(&input, &Thresholds::default())
}

fn by_rule<'a>(recs: &'a [Recommendation], rule: &str) -> Vec<&'a Recommendation> {
    recs.iter().filter(|r| r.rule == rule).collect()
}

fn evidence(r: &Recommendation, name: &str) -> f64 {
    r.evidence.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name} in {:?}", r.evidence)).value
}

fn patch(r: &Recommendation) -> Vec<(String, serde_json::Value)> {
    r.config_patch.iter().map(|c| (c.key.clone(), c.value.clone())).collect()
}

#[test]
fn repeated_calls_to_an_uncached_read_only_tool_ask_for_caching() {
    let mut s = sample();
    s.tools = vec![
        ToolUse { uncached: 40, repeats: 30, ..tool("e", "echo") },
        ToolUse { uncached: 40, repeats: 5, ..tool("e", "add") },
    ];
    let recs = run(&[s.clone(), s], &config(""), &[]);
    let found = by_rule(&recs, "uncached-repeats");
    assert_eq!(found.len(), 1, "add repeats 10 of 80: under the thresholds: {recs:?}");
    let r = found[0];
    assert_eq!(
        (r.id.as_str(), r.priority, r.category),
        ("uncached-repeats:e/echo", Priority::Medium, Category::Performance)
    );
    assert_eq!(
        (evidence(r, "uncached_calls"), evidence(r, "repeats"), evidence(r, "repeat_share")),
        (80.0, 60.0, 0.75)
    );
    assert_eq!(
        patch(r),
        vec![
            ("upstreams.e.tools.echo.cache".into(), true.into()),
            ("upstreams.e.tools.echo.cache_ttl".into(), "5m".into())
        ]
    );
    assert!(r.description.contains("not `trusted`"), "{}", r.description);
    let off = run(
        &[sample_with_tools(vec![ToolUse { uncached: 40, repeats: 30, ..tool("e", "echo") }])],
        &config("[cache]\nenabled = false\n"),
        &[],
    );
    assert_eq!(by_rule(&off, "uncached-repeats")[0].config_patch[0].key, "cache.enabled");
}

fn sample_with_tools(tools: Vec<ToolUse>) -> Sample {
    Sample { tools, ..sample() }
}

#[test]
fn misses_of_expired_entries_ask_for_a_longer_ttl() {
    let s = sample_with_tools(vec![ToolUse { hits: 10, misses: 40, expired_misses: 30, ..tool("e", "echo") }]);
    let recs = run(&[s], &config3("[upstreams.e.tools.echo]\ncache = true\ncache_ttl = \"1m\"\n", "", ""), &[]);
    let r = by_rule(&recs, "ttl-expiry")[0];
    assert_eq!((evidence(r, "expired_misses"), evidence(r, "hit_rate"), evidence(r, "ttl")), (30.0, 0.2, 60.0));
    assert_eq!(patch(r), vec![("upstreams.e.tools.echo.cache_ttl".into(), "5m".into())]);
    assert!(r.estimated_improvement.contains("up to 80 %"), "{}", r.estimated_improvement);
    let fine = sample_with_tools(vec![ToolUse { hits: 200, misses: 40, expired_misses: 30, ..tool("e", "echo") }]);
    assert!(by_rule(&run(&[fine], &config(""), &[]), "ttl-expiry").is_empty(), "hit rate over 80 %: none");
}

#[test]
fn calls_waiting_at_a_bulkhead_ask_for_a_higher_cap() {
    let mut s = sample();
    s.by_upstream = vec![calls("e", 60, 0, 0, 120.0)];
    s.health = vec![Health { waited: 50, peak_queued: 7, max_concurrent: 1, ..health("e") }];
    s.admission = Some(Queueing { waited: 3, peak_queued: 1, max_concurrent: 1024 });
    let recs = run(&[s], &config(""), &[]);
    let found = by_rule(&recs, "queuing");
    assert_eq!(found.len(), 1, "the gateway's 3 waits are under the threshold");
    let r = found[0];
    assert_eq!((r.priority, evidence(r, "waited"), evidence(r, "peak_queued")), (Priority::High, 50.0, 7.0));
    assert_eq!(patch(r), vec![("upstreams.e.max_concurrent".into(), 10.into())]);
}

fn live(name: &str, idle: &[u64]) -> UpstreamLive {
    UpstreamLive {
        name: name.into(),
        stdio: true,
        per_client: false,
        replicas: idle
            .iter()
            .enumerate()
            .map(|(i, s)| ReplicaLive { index: i, idle_for: Duration::from_secs(*s), pid: Some(100 + i as u32) })
            .collect(),
        last_call_ms: Some(2 * 3_600_000 - 1000),
    }
}

#[test]
fn warm_processes_without_calls_ask_for_a_smaller_minimum() {
    let mut config = config("");
    let e = config.upstreams.get_mut("e").unwrap();
    (e.settings.min_processes, e.settings.max_processes) = (3, 4);
    let mut s = sample();
    s.children = vec![Process { name: "e".into(), pid: Some(101), count: 1, rss_bytes: 30 << 20, cpu_percent: 0.0 }];
    let recs = run(&[s], &config, &[live("e", &[5, 7200, 7200])]);
    let r = by_rule(&recs, "idle-warm")[0];
    assert_eq!((evidence(r, "idle_processes"), evidence(r, "idle_rss")), (2.0, f64::from(30 << 20)));
    assert_eq!(
        patch(r),
        vec![("upstreams.e.min_processes".into(), 1.into()), ("upstreams.e.max_processes".into(), 4.into())]
    );
    assert!(by_rule(&run(&[], &config, &[live("e", &[5, 5, 5])]), "idle-warm").is_empty(), "all busy");
}

#[test]
fn timeouts_far_above_p99_or_firing_get_a_new_timeout_near_three_p99() {
    let mut s = sample();
    s.by_upstream = vec![calls("e", 300, 0, 0, 3.2), calls("w", 50, 6, 6, 240.0)];
    let recs = run(&[s], &config3("", "timeout = \"250ms\"", ""), &[]);
    let far = by_rule(&recs, "timeout-far")[0];
    assert_eq!(
        (far.id.as_str(), evidence(far, "p99_ms_max"), evidence(far, "timeout_ms")),
        ("timeout-far:e", 3.2, 120_000.0)
    );
    assert_eq!(patch(far), vec![("upstreams.e.timeout".into(), "1s".into())], "3 × 3.2 ms, at least 1 s");
    let tight = by_rule(&recs, "timeout-tight")[0];
    assert_eq!(
        (tight.id.as_str(), tight.priority, evidence(tight, "timeouts")),
        ("timeout-tight:w", Priority::High, 6.0)
    );
    assert_eq!(patch(tight), vec![("upstreams.w.timeout".into(), "1s".into())]);
    // Applied: far from neither.
    let mut s = sample();
    s.by_upstream = vec![calls("e", 300, 0, 0, 3.2), calls("w", 50, 0, 0, 240.0)];
    let recs = run(&[s], &config3("timeout = \"1s\"", "timeout = \"1s\"", ""), &[]);
    assert!(by_rule(&recs, "timeout-far").is_empty() && by_rule(&recs, "timeout-tight").is_empty(), "{recs:?}");
    let mut few = sample();
    few.by_upstream = vec![calls("e", 99, 0, 0, 3.2)];
    assert!(by_rule(&run(&[few], &config(""), &[]), "timeout-far").is_empty(), "too few calls");
}

#[test]
fn a_flapping_breaker_and_an_exhausted_budget_are_named() {
    let mut s = sample();
    s.by_upstream = vec![Breakdown { retry_budget_exhausted: 12, ..calls("e", 1000, 50, 0, 5.0) }];
    s.health = vec![Health { breaker_opens: 4, ..health("e") }];
    let recs = run(&[s], &config(""), &[]);
    let flap = by_rule(&recs, "breaker-flapping")[0];
    assert_eq!(evidence(flap, "breaker_opens"), 4.0);
    // 5 % failed, under half the 50 % error rate: bursts; the patch asks for more failures in a row.
    assert!(patch(flap).contains(&("upstreams.e.breaker.consecutive_failures".into(), 10.into())), "{:?}", patch(flap));
    assert_eq!(flap.config_patch.len(), 7, "the whole table");
    let budget = by_rule(&recs, "retry-budget")[0];
    assert_eq!(evidence(budget, "retries_refused"), 12.0);
    assert!(patch(budget).contains(&("upstreams.e.retry.budget_percent".into(), 40.into())));
}

#[test]
fn an_upstream_nobody_called_is_named_once_the_period_is_watched() {
    let config = config3("fallback = \"w\"", "", "[upstreams.z]\ncommand = \"x\"\n");
    let mut quiet = live("z", &[7200]);
    quiet.last_call_ms = None;
    let mut w = live("w", &[7200]);
    w.last_call_ms = None;
    let recs = run(&[], &config, &[live("e", &[1]), quiet.clone(), w]);
    let found = by_rule(&recs, "unused-upstream");
    assert_eq!(found.len(), 1, "e is called, w is e's fallback: {found:?}");
    assert_eq!(patch(found[0]), vec![("upstreams.z.enabled".into(), false.into())]);
    let input = Input {
        period: Duration::from_secs(3600),
        now_ms: 3_000_000,
        samples: &[],
        history_since_ms: Some(0),
        config: &config,
        upstreams: &[quiet],
        inline_secrets: &[],
        cost: None,
    };
    assert!(unused::rules(&input).is_empty(), "the monitor has not watched a whole hour yet");
}

#[test]
fn spending_near_the_budget_names_the_cheaper_fallback() {
    let config = config3("fallback = \"w\"", "", "");
    let cost = CostView {
        spend_per_hour: 9.0,
        budget_per_hour: 10.0,
        upstreams: vec![
            UpstreamCost { name: "e".into(), spend_per_hour: 8.0, cost_per_call: 0.01 },
            UpstreamCost { name: "w".into(), spend_per_hour: 1.0, cost_per_call: 0.002 },
        ],
    };
    let mut input = Input {
        period: Duration::from_secs(3600),
        now_ms: 7_200_000,
        samples: &[],
        history_since_ms: Some(0),
        config: &config,
        upstreams: &[],
        inline_secrets: &[],
        cost: Some(&cost),
    };
    let recs = cost::rules(&input, &Thresholds::default());
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].priority, evidence(&recs[0], "spend_share")), (Priority::High, 0.9));
    assert!(recs[0].estimated_improvement.contains("$6.40/h"), "{}", recs[0].estimated_improvement);
    let low = CostView { spend_per_hour: 5.0, ..cost.clone() };
    input.cost = Some(&low);
    assert!(cost::rules(&input, &Thresholds::default()).is_empty(), "half the budget");
    input.cost = None;
    assert!(cost::rules(&input, &Thresholds::default()).is_empty(), "no cost accounting yet");
}

#[test]
fn security_findings_come_from_the_configuration() {
    let config = config(
        "[server]\nlisten = \"0.0.0.0:8080\"\napi_keys = [\"k-0123456789abcdef\"]\nallowed_origins = [\"*\", \"https://app.example\"]\n\
         metrics_listen = \"0.0.0.0:9464\"\n",
    );
    let secrets = vec!["upstreams.e.env.TOKEN".to_string(), "server.api_keys[0]".to_string()];
    let input = Input {
        period: Duration::from_secs(3600),
        now_ms: 0,
        samples: &[],
        history_since_ms: None,
        config: &config,
        upstreams: &[],
        inline_secrets: &secrets,
        cost: None,
    };
    let recs = recommend(&input, &Thresholds::default());
    let rules: Vec<&str> = recs.iter().map(|r| r.rule).collect();
    assert_eq!(
        rules,
        vec!["cleartext-keys", "wildcard-origins", "inline-secrets", "metrics-exposed"],
        "most urgent first"
    );
    assert_eq!(patch(&recs[1]), vec![("server.allowed_origins".into(), serde_json::json!(["https://app.example"]))]);
    assert_eq!(patch(&recs[3]), vec![("server.metrics_listen".into(), "127.0.0.1:9464".into())]);
    assert!(recs[2].action_items[0].contains("${VAR}") && recs[2].action_items[1].contains("SEKISHO_SERVER__API_KEYS"));
    let clean = crate::config::Config::from_toml("").unwrap();
    assert!(security::rules(&Input { config: &clean, inline_secrets: &[], ..input }).is_empty());
}

#[test]
fn round_values() {
    assert_eq!(round_up_nicely(7.0), 10.0);
    assert_eq!(round_up_nicely(11.0), 20.0);
    assert_eq!(round_up_nicely(0.3), 0.5);
    assert_eq!(nice_duration(Duration::from_millis(750)), Duration::from_secs(1));
    assert_eq!(nice_duration(Duration::from_secs(240)), Duration::from_secs(300));
    assert_eq!(nice_duration(Duration::from_secs(100_000)), Duration::from_secs(2 * 86_400));
    let _ = Arc::<str>::from("x");
}
