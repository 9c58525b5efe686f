//! `deploy/prometheus/sekisho-alerts.yml` against the gateway it watches: every metric the
//! rules read is one a real gateway exposes on `/metrics`, and every default rule of
//! `[alerts]` has its threshold and severity in the file. (`promtool check rules` and
//! `promtool test rules` run in `.ci/run`: they check the rules' syntax and that they fire.)

mod common;

use std::collections::BTreeSet;

use common::{Gateway, client, modern_as, stdio_upstream};
use sekisho::monitor::alerts::config::default_rules;
use sekisho::monitor::alerts::{Metric, Op};
use serde_json::json;

const RULES: &str = include_str!("../deploy/prometheus/sekisho-alerts.yml");

/// The `sekisho_…` series names the rules read (recording rules are named `sekisho:…`).
fn series_read() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in RULES.match_indices("sekisho_") {
        let name: String =
            RULES[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
        names.insert(name);
    }
    names
}

#[tokio::test]
async fn every_series_the_rules_read_is_exposed_by_a_real_gateway() {
    let toml = format!(
        "[server]\napi_keys = [{{ key = \"rules-admin-0123456789abcdef\", role = \"admin\" }}]\n{}trusted = true\n",
        stdio_upstream("e", "modern")
    );
    let gw = Gateway::start(&toml).await;
    let key = gw.bearer.clone().unwrap();
    for i in 0..3 {
        let params = json!({"name": "e__add", "arguments": {"a": 1, "b": 2}});
        let a = modern_as(&gw.url("/mcp"), Some(&key), i, "tools/call", params).await;
        assert!(a.body.get("result").is_some(), "{:?}", a.body);
    }
    let text = client().get(gw.url("/metrics")).bearer_auth(&key).send().await.unwrap().text().await.unwrap();
    let exposed: BTreeSet<&str> =
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    let read = series_read();
    assert!(read.len() >= 6, "{read:?}");
    for name in &read {
        assert!(exposed.contains(name.as_str()), "the rules read {name}, which /metrics does not expose:\n{text}");
    }
    let rss = text.lines().find(|l| l.starts_with("sekisho_process_resident_memory_bytes ")).unwrap();
    let bytes: f64 = rss.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(bytes > 1_048_576.0, "{rss}");
}

#[test]
fn every_default_rule_is_in_the_file_with_its_threshold_and_severity() {
    for rule in default_rules() {
        let (alert, threshold) = match rule.metric {
            Metric::LatencyP95Ms => ("SekishoLatencyP95", format!("> {}", rule.threshold / 1000.0)),
            Metric::ErrorRate => ("SekishoErrorRate", format!("> {}", rule.threshold)),
            Metric::CacheHitRate => ("SekishoCacheHitRateLow", format!("< {}", rule.threshold)),
            Metric::Queued => ("SekishoQueueHigh", format!("> {}", rule.threshold)),
            Metric::RssBytes => ("SekishoMemory", format!("> {} * 1024 * 1024", rule.threshold / 1048576.0)),
            other => panic!("a default rule on {other:?} has no Prometheus twin: add one to deploy/prometheus"),
        };
        let severity = format!("severity: {}", serde_json::to_value(rule.severity).unwrap().as_str().unwrap());
        let found = RULES
            .split("- alert: ")
            .skip(1)
            .any(|block| block.starts_with(alert) && block.contains(&threshold) && block.contains(&severity));
        assert!(found, "{}: no alert {alert}* with `{threshold}` and `{severity}`", rule.name);
        assert_eq!(rule.op, if matches!(rule.metric, Metric::CacheHitRate) { Op::Below } else { Op::Above });
    }
}
