//! Cost and budgets end to end: a real gateway on loopback with stdio echo upstreams (real
//! child processes). Prices add up per call, per KiB and per second, an upstream's own cost
//! in `_meta` is added and hostile ones are ignored, cached answers cost nothing; a budget
//! above its `alert_at` fires its alert (`/admin/alerts`, a webhook receiver), and at 100 %
//! each action applies: `deny`, `shed-low`, `fallback`; callers' budgets are their own.
//! Each test names its upstreams apart, so the process-wide counters of one test never mix
//! with another's when tests share a process.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Gateway, client, echo_upstream, eventually, modern_as, sekisho_cli, text};
use serde_json::{Value, json};

const ADMIN: &str = "cost-admin-key-0123456789abcdef";
const ALICE: &str = "cost-alice-key-0123456789abcdef";
const BOB: &str = "cost-bob-key-0123456789abcdefgh";

/// Keys: `ops` (admin), `alice` and `bob` (low by default, may ask for high).
const KEYS: &str = "[server]\napi_keys = [{ key = \"cost-admin-key-0123456789abcdef\", name = \"ops\", role = \"admin\" },\n\
    { key = \"cost-alice-key-0123456789abcdef\", name = \"alice\", priority = \"low\", max_priority = \"high\" },\n\
    { key = \"cost-bob-key-0123456789abcdefgh\", name = \"bob\", priority = \"low\", max_priority = \"high\" }]\n\
    [monitor]\ninterval = \"1s\"\n";

/// A stdio echo upstream `name` whose `WHO` variable is its name, with more `extra` keys.
fn upstream(name: &str, extra: &str) -> String {
    format!(
        "[upstreams.{name}]\ncommand = {:?}\nargs = [\"stdio\", \"--era\", \"legacy\"]\nstartup_timeout = \"20s\"\n\
         env = {{ WHO = \"{name}\" }}\n{extra}",
        echo_upstream().display().to_string()
    )
}

async fn call(gw: &Gateway, key: &str, tool: &str, arguments: Value) -> common::Answer {
    modern_as(&gw.url("/mcp"), Some(key), 1, "tools/call", json!({"name": tool, "arguments": arguments})).await
}

async fn call_as(gw: &Gateway, key: &str, priority: &str, tool: &str, arguments: Value) -> common::Answer {
    let params = json!({"name": tool, "arguments": arguments, "_meta": {"io.sekisho/priority": priority}});
    modern_as(&gw.url("/mcp"), Some(key), 1, "tools/call", params).await
}

/// The value of the metric line that starts with `series` (name and labels), or 0.
async fn metric(gw: &Gateway, series: &str) -> f64 {
    let text = client().get(gw.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

fn dollars(upstream: &str, tool: &str, caller: &str) -> String {
    format!("sekisho_cost_dollars_total{{upstream=\"{upstream}\",tool=\"{tool}\",caller=\"{caller}\"}} ")
}

fn near(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance
}

#[tokio::test]
async fn prices_add_up_per_call_per_kib_per_second_and_as_the_upstream_reports() {
    let prices = "price = { per_call = 0.01 }\n\
        [upstreams.p.tools.big]\nprice = { per_call = 0.0, per_kib = 0.001 }\n\
        [upstreams.p.tools.sleep_ms]\nprice = { per_call = 0.0, per_second = 1.0 }\n\
        [upstreams.p.tools.priced]\nprice = { meta_key = \"com.example/costUsd\" }\n\
        [upstreams.p.tools.add]\ncache = true\n";
    let gw = Gateway::start(&format!("{KEYS}{}", upstream("p", prices))).await;

    for _ in 0..3 {
        assert_eq!(text(&call(&gw, ALICE, "p__echo", json!({"message": "hi"})).await), "hi");
    }
    assert!(near(metric(&gw, &dollars("p", "echo", "alice")).await, 0.03, 1e-9), "3 calls at $0.01");

    // 10 KiB of text and the JSON around it, at $0.001 per KiB.
    call(&gw, ALICE, "p__big", json!({"kib": 10})).await;
    let big = metric(&gw, &dollars("p", "big", "alice")).await;
    assert!(big > 0.010 && big < 0.0102, "10 KiB and its envelope: ${big}");

    // 300 ms of upstream time at $1 per second.
    call(&gw, ALICE, "p__sleep_ms", json!({"ms": 300})).await;
    let slept = metric(&gw, &dollars("p", "sleep_ms", "alice")).await;
    assert!((0.3..0.55).contains(&slept), "300 ms at $1/s: ${slept}");

    // The upstream's own cost in the result's _meta, on top of the upstream's per_call.
    let priced = async |meta: Value| call(&gw, BOB, "p__priced", json!({"meta": meta})).await;
    assert_eq!(text(&priced(json!({"com.example/costUsd": 0.5})).await), "priced");
    for hostile in [json!(-1), json!("0.5"), json!(1e300), json!({"usd": 1}), json!(null)] {
        let answer = priced(json!({"com.example/costUsd": hostile})).await;
        assert_eq!(text(&answer), "priced", "a hostile cost does not fail the call");
    }
    priced(json!({"unrelated": true})).await;
    let reported = metric(&gw, &dollars("p", "priced", "bob")).await;
    assert!(near(reported, 0.5 + 7.0 * 0.01, 1e-9), "$0.50 reported, hostile ones ignored, 7 × $0.01: ${reported}");
    let invalid = metric(&gw, "sekisho_cost_meta_invalid_total{upstream=\"p\"} ").await;
    assert_eq!(invalid, 5.0, "each ignored report is counted");

    // A cached answer never reached the upstream: it costs nothing.
    for _ in 0..3 {
        assert_eq!(text(&call(&gw, BOB, "p__add", json!({"a": 1, "b": 2})).await), "3");
    }
    assert!(near(metric(&gw, &dollars("p", "add", "bob")).await, 0.01, 1e-9), "one miss, two hits");

    // The monitor's samples show the spending per hour, overall and per upstream.
    let sample = eventually("a sample with cost", Duration::from_secs(10), async || {
        let m: Value = client()
            .get(gw.url("/admin/monitor?period=1m"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let costly = m["samples"].as_array().into_iter().flatten().find(|s| s["cost_per_hour"].as_f64() > Some(0.0));
        costly.cloned().ok_or_else(|| m.to_string())
    })
    .await;
    let row = sample["by_upstream"].as_array().unwrap().iter().find(|r| r["name"] == "p").unwrap();
    assert!(row["cost_per_hour"].as_f64().unwrap() > 0.0, "{sample}");
    gw.shutdown().await.unwrap();
}

/// What the receiver saw: each alert body.
type Seen = Arc<Mutex<Vec<Value>>>;

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let state = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: bytes::Bytes| {
            let state = Arc::clone(&state);
            async move {
                state.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn a_budget_above_80_percent_alerts_and_deny_refuses_at_100_percent() {
    let (hook, seen) = receiver().await;
    let toml = format!(
        "{KEYS}[alerts]\nrules = []\nwebhooks = [{{ url = {hook:?} }}]\n\
         [budgets.gateway]\nper_hour = 0.048\naction = \"deny\"\n{}",
        upstream("d", "price = { per_call = 0.01 }\n")
    );
    let gw = Gateway::start(&toml).await;
    for _ in 0..4 {
        assert_eq!(text(&call(&gw, ALICE, "d__echo", json!({"message": "x"})).await), "x");
    }
    // $0.04 of $0.048: 83 %, above alert_at 0.8; the next sample fires the budget's alert.
    let fired = eventually("the budget alert fires", Duration::from_secs(10), async || {
        let body: Value =
            client().get(gw.url("/admin/alerts")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        let found = body["active"].as_array().into_iter().flatten().find(|a| a["rule"] == "budget.gateway");
        found.filter(|a| a["state"] == "firing").cloned().ok_or_else(|| body.to_string())
    })
    .await;
    assert_eq!((fired["metric"].as_str(), fired["scope"].as_str()), (Some("budget_used"), Some("gateway")));
    assert_eq!((fired["severity"].as_str(), fired["threshold"].as_f64()), (Some("warning"), Some(0.8)));
    assert!(near(fired["current_value"].as_f64().unwrap(), 0.04 / 0.048, 1e-6), "{fired}");
    let delivered = eventually("the webhook hears it", Duration::from_secs(10), async || {
        let seen = seen.lock().unwrap().clone();
        let hit = seen.iter().find(|a| a["rule"] == "budget.gateway" && a["state"] == "firing").cloned();
        hit.ok_or_else(|| format!("{seen:?}"))
    })
    .await;
    assert_eq!(delivered["id"], fired["id"]);

    // Still under 100 %: served; then spent: refused, whoever asks.
    assert_eq!(text(&call(&gw, ALICE, "d__echo", json!({"message": "last"})).await), "last");
    let refused = call_as(&gw, BOB, "high", "d__echo", json!({"message": "no"})).await;
    assert_eq!((refused.status, refused.error_code()), (429, Some(-32017)), "{}", refused.raw);
    assert_eq!(refused.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("cost budget gateway") && message.contains("spent"), "{message}");
    assert_eq!(refused.body["error"]["data"]["budget"], "gateway");
    // Free calls are not refused: the gateway's own answers cost nothing.
    let list = modern_as(&gw.url("/mcp"), Some(BOB), 2, "tools/list", json!({})).await;
    assert_eq!(list.status, 200);
    assert_eq!(metric(&gw, "sekisho_budget_exceeded_total{budget=\"gateway\",action=\"denied\"} ").await, 1.0);
    assert!(near(metric(&gw, &dollars("d", "echo", "bob")).await, 0.0, 0.0), "a refused call costs nothing");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn shed_low_refuses_low_priority_calls_and_serves_higher_ones() {
    let toml = format!(
        "{KEYS}[budgets.gateway]\nper_hour = 0.01\naction = \"shed-low\"\n{}",
        upstream("s", "price = { per_call = 0.01 }\n")
    );
    let gw = Gateway::start(&toml).await;
    assert_eq!(text(&call(&gw, ALICE, "s__echo", json!({"message": "spends it"})).await), "spends it");
    let shed = call(&gw, ALICE, "s__echo", json!({"message": "low"})).await;
    assert_eq!((shed.status, shed.error_code()), (503, Some(-32013)), "{}", shed.raw);
    let message = shed.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("cost budget gateway") && message.contains("low-priority"), "{message}");
    let high = call_as(&gw, ALICE, "high", "s__echo", json!({"message": "high"})).await;
    assert_eq!(text(&high), "high", "a high-priority call is still served");
    assert_eq!(metric(&gw, "sekisho_budget_exceeded_total{budget=\"gateway\",action=\"shed\"} ").await, 1.0);
    assert_eq!(metric(&gw, "sekisho_budget_exceeded_total{budget=\"gateway\",action=\"served\"} ").await, 1.0);
    assert_eq!(metric(&gw, "sekisho_shed_total{limit=\"budget\",priority=\"low\",caller=\"alice\"} ").await, 1.0);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn fallback_sends_calls_to_the_fallback_upstream_once_the_budget_is_spent() {
    let toml = format!(
        "{KEYS}[budgets.gateway]\nper_hour = 0.01\naction = \"fallback\"\n{}{}",
        upstream("paid", "fallback = \"spare\"\nprice = { per_call = 0.01 }\n"),
        upstream("spare", "")
    );
    let gw = Gateway::start(&toml).await;
    let who = async || text(&call(&gw, ALICE, "paid__env", json!({"name": "WHO"})).await);
    assert_eq!(who().await, "paid", "under budget: the priced upstream serves");
    assert_eq!(who().await, "spare", "spent: its fallback serves");
    assert_eq!(who().await, "spare");
    assert_eq!(metric(&gw, "sekisho_budget_exceeded_total{budget=\"gateway\",action=\"fallback\"} ").await, 2.0);
    assert!(near(metric(&gw, &dollars("paid", "env", "alice")).await, 0.01, 1e-9), "the free fallback cost nothing");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_caller_spending_its_budget_does_not_touch_anothers() {
    let toml = format!(
        "{KEYS}[budgets.callers.alice]\nper_hour = 0.02\naction = \"deny\"\n\
         [budgets.callers.bob]\nper_hour = 0.02\naction = \"deny\"\n{}",
        upstream("c", "price = { per_call = 0.01 }\n")
    );
    let gw = Gateway::start(&toml).await;
    for _ in 0..2 {
        assert_eq!(text(&call(&gw, ALICE, "c__echo", json!({"message": "a"})).await), "a");
    }
    let refused = call(&gw, ALICE, "c__echo", json!({"message": "a"})).await;
    assert_eq!(refused.error_code(), Some(-32017), "{}", refused.raw);
    assert_eq!(refused.body["error"]["data"]["budget"], "caller:alice");
    for _ in 0..2 {
        assert_eq!(text(&call(&gw, BOB, "c__echo", json!({"message": "b"})).await), "b", "bob's budget is his own");
    }
    assert_eq!(call(&gw, BOB, "c__echo", json!({"message": "b"})).await.error_code(), Some(-32017));
    let monitor = eventually("budgets in a sample", Duration::from_secs(10), async || {
        let m: Value = client()
            .get(gw.url("/admin/monitor?period=1m"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let last = m["samples"].as_array().and_then(|s| s.last()).cloned().unwrap_or(Value::Null);
        let spent = last["budgets"].as_array().is_some_and(|b| b.iter().all(|b| b["used"].as_f64() >= Some(1.0)));
        if spent { Ok(last) } else { Err(m.to_string()) }
    })
    .await;
    let names: Vec<&str> = monitor["budgets"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["caller:alice", "caller:bob"]);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn spending_near_the_budget_recommends_the_cheaper_fallback_and_performance_shows_the_spend() {
    let toml = format!(
        "{KEYS}[budgets.gateway]\nper_hour = 0.025\naction = \"alert\"\n{}{}",
        upstream("pricey", "fallback = \"thrifty\"\nprice = { per_call = 0.01 }\n"),
        upstream("thrifty", "price = { per_call = 0.001 }\n")
    );
    let gw = Gateway::start(&toml).await;
    for _ in 0..3 {
        assert_eq!(
            text(&call(&gw, ALICE, "pricey__env", json!({"name": "WHO"})).await),
            "pricey",
            "action alert: served"
        );
    }
    let get = async |path: &str| -> Value {
        client().get(gw.url(path)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap()
    };
    let recs = eventually("the budget recommendation", Duration::from_secs(15), async || {
        let body = get("/admin/recommendations").await;
        let found =
            body["recommendations"].as_array().into_iter().flatten().find(|r| r["id"] == "budget-fallback:pricey");
        found.cloned().ok_or_else(|| body.to_string())
    })
    .await;
    assert_eq!((recs["category"].as_str(), recs["priority"].as_str()), (Some("cost"), Some("critical")), "{recs}");
    let evidence = |name: &str| {
        recs["evidence"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap()["value"].as_f64().unwrap()
    };
    assert!(near(evidence("spend"), 0.03, 1e-9) && near(evidence("budget"), 0.025, 1e-12), "{recs}");
    assert!(
        near(evidence("cost_per_call"), 0.01, 1e-9) && near(evidence("fallback_cost_per_call"), 0.001, 1e-12),
        "{recs}"
    );

    let perf = get("/admin/performance").await;
    let cost = &perf["cost"];
    assert!(near(cost["spent_usd"].as_f64().unwrap(), 0.03, 1e-9), "{perf}");
    assert!(cost["per_hour_usd"].as_f64().unwrap() > 0.03, "three calls in seconds: a high hourly rate: {perf}");
    let gateway = &cost["budgets"][0];
    assert_eq!((gateway["name"].as_str(), gateway["action"].as_str()), (Some("gateway"), Some("alert")), "{perf}");
    assert!(gateway["used"].as_f64().unwrap() >= 1.2 - 1e-9, "{perf}");

    // The operator's table says the same.
    let run = sekisho_cli(&["performance", "--url", &gw.base, "--admin-key", ADMIN], &[]).await;
    let line = run
        .out
        .lines()
        .find(|l| l.starts_with("cost ") && !l.starts_with("cost efficiency"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("$0.0300") && line.contains("budget gateway 120% of") && line.ends_with("(alert)"),
        "{line:?} in {}",
        run.out
    );
    gw.shutdown().await.unwrap();
}
