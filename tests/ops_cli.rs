//! The operator commands against a real `sekisho serve` over loopback (echo upstreams as real
//! stdio children): `performance`, `metrics`, `alerts`, `health` print a table, valid JSON with
//! `--json`, and their documented exit code — 0 healthy, 1 degraded, 2 unhealthy or a critical
//! alert firing (a dead upstream), 3 unreachable or unauthorized, 64 a wrong command line;
//! `cache clear --url`; and `drain`, after which the gateway accepts no new work, lets the
//! call in flight finish, and exits 0.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-0123456789abcdef";
const APP: &str = "app-key-0123456789abcdef";

fn keys() -> String {
    format!(
        "api_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}, {{ key = {APP:?}, name = \"app\" }}]\n"
    )
}

/// Monitor every second; one critical rule: an upstream is down.
const WATCH: &str = "[monitor]\ninterval = \"1s\"\n[catalog]\ninitial_wait = \"2s\"\n[alerts]\nrules = [\
    { name = \"down\", metric = \"upstreams_down\", op = \">\", threshold = 0, severity = \"critical\", title = \"an upstream is down\" }]\n";

/// `sekisho <args> --url <base>` with the admin key in the environment.
async fn ops(base: &str, args: &[&str]) -> CliRun {
    let mut all = args.to_vec();
    all.extend(["--url", base]);
    sekisho_cli(&all, &[("SEKISHO_ADMIN_KEY", ADMIN)]).await
}

fn json_of(run: &CliRun) -> Value {
    serde_json::from_str(&run.out).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.out, run.err))
}

#[tokio::test]
async fn a_healthy_gateway_reads_zero_in_tables_and_json() {
    let gw = Served::start(&keys(), &format!("{WATCH}{}trusted = true\n", stdio_upstream("e", "legacy"))).await;
    eventually("the upstream listed", Duration::from_secs(30), async || settled(&gw.base, Some(ADMIN)).await).await;
    let mcp = format!("{}/mcp", gw.base);
    for i in 0..4 {
        modern_as(&mcp, Some(APP), i, "tools/call", json!({"name": "e__add", "arguments": {"a": 2, "b": 2}})).await;
    }
    // The calls are in a sample.
    eventually("a sample with the calls", Duration::from_secs(15), async || {
        let run = ops(&gw.base, &["metrics", "--json"]).await;
        let v = json_of(&run);
        if v["summary"]["upstream_calls"].as_u64() >= Some(4) { Ok(v) } else { Err(v.to_string()) }
    })
    .await;

    let run = ops(&gw.base, &["performance"]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.out, run.err);
    assert!(run.out.starts_with("overall health    healthy\n"), "{}", run.out);
    for row in ["cache hit rate    75.0%", "error rate        0.0%", "cost efficiency   75.0%", "avg response"] {
        assert!(run.out.contains(row), "{row:?} in\n{}", run.out);
    }
    let run = ops(&gw.base, &["performance", "--json", "--period", "24h"]).await;
    assert_eq!(run.code, Some(0));
    let v = json_of(&run);
    assert_eq!((v["overall_health"].as_str(), v["period_ms"].as_u64()), (Some("healthy"), Some(86_400_000)));

    let run = ops(&gw.base, &["metrics"]).await;
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert!(run.out.contains("LATEST") && run.out.contains("latency p95"), "{}", run.out);
    assert!(!run.out.contains("BY UPSTREAM"));
    let run = ops(&gw.base, &["metrics", "--detailed", "--period", "1h"]).await;
    assert!(run.out.contains("BY UPSTREAM") && run.out.contains("\ne ") && run.out.contains("PROCESS"), "{}", run.out);
    let v = json_of(&ops(&gw.base, &["metrics", "--json"]).await);
    assert!(v.get("samples").is_none() && v["latest"].is_object() && v["summary"].is_object(), "{v}");
    let v = json_of(&ops(&gw.base, &["metrics", "--json", "--detailed"]).await);
    assert!(!v["samples"].as_array().unwrap().is_empty());

    let run = ops(&gw.base, &["alerts", "--history"]).await;
    assert_eq!(run.code, Some(0));
    assert!(run.out.starts_with("0 firing, 0 pending\n") && run.out.contains("resolved (0)"), "{}", run.out);
    assert_eq!(json_of(&ops(&gw.base, &["alerts", "--json"]).await)["firing"], 0);

    let run = ops(&gw.base, &["health"]).await;
    assert_eq!(run.code, Some(0), "{}", run.out);
    assert!(run.out.starts_with("status: healthy (ready)\n") && run.out.contains("\ne "), "{}", run.out);
    assert_eq!(json_of(&ops(&gw.base, &["health", "--json"]).await)["upstreams_up"], 1);

    // A switch turned off is a degradation the operator made: exit 1, named.
    let switched = sekisho_cli(&["switch", "cache", "off", "--url", &gw.base, "--key", ADMIN], &[]).await;
    assert!(switched.ok, "{}", switched.err);
    let run = ops(&gw.base, &["health"]).await;
    assert_eq!(run.code, Some(1), "{}", run.out);
    assert!(run.out.contains("switched off at runtime: cache"), "{}", run.out);
    assert_eq!(ops(&gw.base, &["performance", "--json"]).await.code, Some(1));

    // cache clear against the running gateway.
    let run = ops(&gw.base, &["cache", "clear", "--upstream", "e"]).await;
    assert_eq!(
        (run.code, run.out.as_str()),
        (Some(0), "cleared the cached results of upstream \"e\"\n"),
        "{}",
        run.err
    );
    let run = ops(&gw.base, &["cache", "clear", "--json"]).await;
    assert_eq!(json_of(&run)["cleared"], json!({"upstream": null, "tool": null}));
    let run = ops(&gw.base, &["cache", "clear", "--upstream", "nope"]).await;
    assert_eq!(run.code, Some(3));
    assert!(run.err.contains("404"), "{}", run.err);
}

#[tokio::test]
async fn a_dead_upstream_degrades_then_its_critical_alert_makes_it_unhealthy() {
    let dead = "[upstreams.dead]\ncommand = \"/nonexistent/mcp-server\"\nstartup_timeout = \"2s\"\n";
    let gw = Served::start(&keys(), &format!("{WATCH}{}{dead}", stdio_upstream("e", "legacy"))).await;
    // Degraded while only the dead upstream is down; unhealthy once its alert fires.
    let unhealthy = eventually("the alert firing with e up", Duration::from_secs(30), async || {
        let run = ops(&gw.base, &["health", "--json"]).await;
        let v: Value = serde_json::from_str(&run.out).unwrap_or_default();
        if run.code == Some(2) && v["upstreams_up"] == 1 { Ok(v) } else { Err(format!("{:?} {}", run.code, run.out)) }
    })
    .await;
    assert_eq!(unhealthy["status"], "unhealthy");
    assert_eq!(
        unhealthy["reasons"],
        json!(["critical alert firing: an upstream is down", "1 of 2 upstreams down: dead"])
    );
    assert_eq!(unhealthy["upstreams"][0]["name"], "dead", "down ones first");

    let run = ops(&gw.base, &["health"]).await;
    assert_eq!(run.code, Some(2));
    assert!(run.out.starts_with("status: unhealthy (ready)\n  - critical alert firing"), "{}", run.out);
    assert!(run.out.contains("\ndead ") && run.out.contains(" down "), "{}", run.out);
    let run = ops(&gw.base, &["alerts"]).await;
    assert_eq!(run.code, Some(2));
    assert!(
        run.out.starts_with("1 firing, 0 pending\nSEVERITY") && run.out.contains("critical  firing"),
        "{}",
        run.out
    );
    assert_eq!(json_of(&ops(&gw.base, &["alerts", "--json"]).await)["active"][0]["severity"], "critical");
    let run = ops(&gw.base, &["performance", "--json"]).await;
    assert_eq!((run.code, json_of(&run)["overall_health"].as_str()), (Some(2), Some("unhealthy")));
}

#[tokio::test]
async fn the_gateway_cannot_be_asked_exits_3_and_a_wrong_command_line_64() {
    let gw = Served::start(&keys(), &stdio_upstream("e", "legacy")).await;
    for command in [&["performance"][..], &["metrics"], &["alerts"], &["health"], &["drain"], &["cache", "clear"]] {
        let mut args = command.to_vec();
        args.extend(["--url", &gw.base]);
        let none = sekisho_cli(&args, &[]).await;
        assert_eq!(none.code, Some(3), "{command:?} without a key: {}", none.err);
        assert!(none.err.contains("401") && none.err.contains("SEKISHO_ADMIN_KEY"), "{}", none.err);
        let client = sekisho_cli(&args, &[("SEKISHO_ADMIN_KEY", APP)]).await;
        assert_eq!(client.code, Some(3), "{command:?} with a client key");
        assert!(client.err.contains("403") && client.err.contains("role = \"admin\""), "{}", client.err);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nobody = ops(&format!("http://127.0.0.1:{port}"), &["health"]).await;
    assert_eq!(nobody.code, Some(3));
    assert!(nobody.err.contains("cannot reach"), "{}", nobody.err);
    assert_eq!(sekisho_cli(&["health"], &[]).await.code, Some(64), "--url is required");
    assert_eq!(ops(&gw.base, &["metrics", "--period", "forever"]).await.code, Some(64));
    assert_eq!(ops(&gw.base, &["performance", "--period", "30d"]).await.code, Some(64));
    assert_eq!(readyz_status(&gw.base).await, 200, "nothing refused drained it");
}

async fn readyz_status(base: &str) -> u16 {
    client().get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test]
async fn drain_refuses_new_work_finishes_the_call_in_flight_and_exits_0() {
    let mut gw =
        Served::start(&format!("{keys}shutdown_grace = \"20s\"\n", keys = keys()), &stdio_upstream("e", "legacy"))
            .await;
    eventually("the upstream listed", Duration::from_secs(30), async || settled(&gw.base, Some(ADMIN)).await).await;
    let mcp = format!("{}/mcp", gw.base);
    let slow = tokio::spawn({
        let mcp = mcp.clone();
        async move {
            modern_as(&mcp, Some(APP), 1, "tools/call", json!({"name": "e__sleep_ms", "arguments": {"ms": 1500}})).await
        }
    });
    eventually("the call in flight", Duration::from_secs(10), async || {
        let h = json_of(&ops(&gw.base, &["health", "--json"]).await);
        if h["upstreams"][0]["in_flight"].as_u64() >= Some(1) { Ok(()) } else { Err(h.to_string()) }
    })
    .await;

    let run = ops(&gw.base, &["drain"]).await;
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert!(run.out.starts_with("draining: new work is refused; calls in flight have up to 20s"), "{}", run.out);

    // No new work: the listener is closed, or a request that still gets in is refused.
    let late = client()
        .post(&mcp)
        .bearer_auth(APP)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    if let Ok(resp) = late {
        assert_eq!(resp.status(), 503, "new work after the drain began");
    }
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, 200, "the call in flight finished: {}", answer.raw);
    assert!(answer.body["result"]["content"].is_array(), "{}", answer.raw);
    let status = gw.exited(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{}", gw.logs());
    assert!(gw.logs().contains("drain requested through the admin API"), "{}", gw.logs());
}
