//! Recommendations end to end: real `sekisho serve` processes sampling every second with stdio
//! echo upstreams, crafted workloads over loopback HTTP, `GET /admin/recommendations`, and
//! `sekisho recommendations` / `sekisho optimize --write`, whose copy `sekisho check` accepts
//! and which, served again under the same workload, no longer yields what it fixed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Served, client, eventually, modern_as, sekisho_cli, stdio_upstream};
use serde_json::{Value, json};

const ADMIN: &str = "recommend-admin-key-0123456789abcdef";
const APP: &str = "recommend-app-key-0123456789abcdefgh";

fn keys() -> String {
    format!(
        "api_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}, {{ key = {APP:?}, name = \"app\" }}]\n"
    )
}

async fn recommendations(base: &str, period: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(format!("{base}/admin/recommendations?period={period}"));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn find<'a>(answer: &'a Value, id: &str) -> Option<&'a Value> {
    answer["recommendations"].as_array()?.iter().find(|r| r["id"] == id)
}

fn evidence(r: &Value, name: &str) -> f64 {
    r["evidence"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{name} in {r}"))["value"]
        .as_f64()
        .unwrap()
}

/// Identical `echo` calls to `tool` of `base`'s upstream, one every 40 ms, until `stop`.
fn keep_calling(base: String, tool: &'static str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let params = json!({"name": tool, "arguments": {"message": "the same question"}});
            let a = modern_as(&format!("{base}/mcp"), Some(ADMIN), n as i64, "tools/call", params).await;
            assert!(a.body.get("result").is_some(), "{:?}", a.body);
            n += 1;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        n
    })
}

/// `text` (a file `Served` wrote, maybe patched) without its `[server]` table's `listen`, so
/// `Served` can serve it on a new port.
fn without_listen(text: &str) -> String {
    let rest = text.strip_prefix("[server]\n").expect("Served writes [server] first");
    let (_, rest) = rest.split_once('\n').expect("the listen line");
    rest.to_string()
}

#[tokio::test]
async fn crafted_workloads_yield_their_recommendations_and_optimize_removes_the_causes() {
    let toml = format!(
        "[monitor]\ninterval = \"1s\"\n{}{}env = {{ API_TOKEN = \"written-inline\" }}\n",
        stdio_upstream("e", "legacy"),
        stdio_upstream("quiet", "legacy"),
    );
    let server = format!("{}allowed_origins = [\"*\"]\n", keys());
    let served = Served::start(&server, &toml).await;
    let stop = Arc::new(AtomicBool::new(false));
    let caller = keep_calling(served.base.clone(), "e__echo", Arc::clone(&stop));

    let answer = eventually("the four recommendations", Duration::from_secs(40), async || {
        let (status, body) = recommendations(&served.base, "8s", Some(ADMIN)).await;
        let ids = ["uncached-repeats:e/echo", "timeout-far:e", "unused-upstream:quiet", "wildcard-origins"];
        let missing: Vec<&str> = ids.iter().copied().filter(|id| find(&body, id).is_none()).collect();
        if status == 200 && missing.is_empty() {
            Ok(body)
        } else {
            Err(format!("{status}, missing {missing:?}: {body}"))
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let made = caller.await.unwrap();

    let repeats = find(&answer, "uncached-repeats:e/echo").unwrap();
    let (uncached, repeated) = (evidence(repeats, "uncached_calls"), evidence(repeats, "repeats"));
    assert!(repeated >= 20.0 && repeated <= uncached && uncached <= made as f64, "{repeats}");
    assert!(evidence(repeats, "repeat_share") > 0.9, "identical calls: nearly all repeats: {repeats}");
    assert_eq!(repeats["category"], "performance");
    assert_eq!(repeats["config_patch"][0]["key"], "upstreams.e.tools.echo.cache");
    let far = find(&answer, "timeout-far:e").unwrap();
    assert_eq!(evidence(far, "timeout_ms"), 120_000.0);
    assert!(evidence(far, "calls") >= 100.0 && evidence(far, "p99_ms_max") < 1000.0, "{far}");
    assert_eq!(far["config_patch"][0]["value"], "1s");
    let unused = find(&answer, "unused-upstream:quiet").unwrap();
    assert_eq!((evidence(unused, "calls"), evidence(unused, "processes")), (0.0, 1.0));
    assert!(find(&answer, "unused-upstream:e").is_none());
    let origins = find(&answer, "wildcard-origins").unwrap();
    assert_eq!((origins["priority"].as_str(), origins["category"].as_str()), (Some("high"), Some("security")));
    let secrets = find(&answer, "inline-secrets").expect("inline secrets");
    assert!(secrets["description"].as_str().unwrap().contains("upstreams.quiet.env.API_TOKEN"), "{secrets}");
    assert!(!answer.to_string().contains("written-inline"), "never the secret's value");

    // Admins only.
    assert_eq!(recommendations(&served.base, "1h", None).await.0, 401);
    assert_eq!(recommendations(&served.base, "1h", Some(APP)).await.0, 403);
    assert_eq!(recommendations(&served.base, "forever", Some(ADMIN)).await.0, 400);

    // The CLI: a table, exit 1 for the high finding; JSON with the same ids.
    let url = served.base.as_str();
    let run = sekisho_cli(&["recommendations", "--url", url, "--period", "1h"], &[("SEKISHO_ADMIN_KEY", ADMIN)]).await;
    assert_eq!(run.code, Some(1), "{}{}", run.out, run.err);
    assert!(run.out.contains("uncached-repeats:e/echo") && run.out.contains("PRIORITY"), "{}", run.out);
    let run = sekisho_cli(&["recommendations", "--url", url, "--json", "--admin-key", APP], &[]).await;
    assert_eq!(run.code, Some(2), "a client key is refused: {}", run.err);
    assert!(run.err.contains("403"), "{}", run.err);

    // optimize: the patch, a copy written, the original untouched and never overwritten.
    let config = served.config_path();
    let original = std::fs::read_to_string(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("optimized.toml");
    let (c, o) = (config.to_str().unwrap(), out.to_str().unwrap());
    let run = sekisho_cli(&["optimize", "--config", c, "--period", "8s", "--write", c], &[]).await;
    assert_eq!(run.code, Some(2), "--write over --config is refused: {}", run.out);
    let run = sekisho_cli(&["optimize", "--config", c, "--period", "8s", "--write", o], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.out, run.err);
    assert!(run.out.contains("[upstreams.e.tools.echo]\ncache = true"), "{}", run.out);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original, "the configuration itself is untouched");
    let patched = std::fs::read_to_string(&out).unwrap();
    for line in ["timeout = \"1s\"", "enabled = false", "allowed_origins = []", "cache_ttl = \"5m\""] {
        assert!(patched.contains(line), "{line} in:\n{patched}");
    }
    let check = sekisho_cli(&["check", "--config", o], &[]).await;
    assert!(check.ok, "{}{}", check.out, check.err);
    drop(served);

    // Served again with the same workload: what the patch fixed is gone.
    let again = Served::start("", &without_listen(&patched)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let caller = keep_calling(again.base.clone(), "e__echo", Arc::clone(&stop));
    let answer = eventually("a period with the workload", Duration::from_secs(40), async || {
        let (_, body) = recommendations(&again.base, "8s", Some(ADMIN)).await;
        let history = body["history_ms"].as_u64().unwrap_or(0);
        if body["samples"].as_u64().unwrap_or(0) >= 6 && history >= 8000 { Ok(body) } else { Err(body.to_string()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    assert!(caller.await.unwrap() >= 100);
    for id in ["uncached-repeats:e/echo", "timeout-far:e", "unused-upstream:quiet", "wildcard-origins"] {
        assert!(find(&answer, id).is_none(), "{id} still in {answer}");
    }
}

#[tokio::test]
async fn calls_queuing_at_a_tight_cap_and_timing_out_yield_a_higher_cap_and_a_longer_timeout() {
    let toml = format!(
        // The breaker off: every call waits its turn and times out, none fails fast.
        "[monitor]\ninterval = \"1s\"\n{}timeout = \"200ms\"\nmax_concurrent = 1\nbreaker = {{ enabled = false }}\n",
        stdio_upstream("s", "legacy")
    );
    let served = Served::start(&keys(), &toml).await;
    let burst = |base: String| async move {
        for round in 0..3 {
            let calls = (0..8).map(|i| {
                let params = json!({"name": "s__sleep_ms", "arguments": {"ms": 300}});
                let base = base.clone();
                async move { modern_as(&format!("{base}/mcp"), Some(ADMIN), round * 10 + i, "tools/call", params).await }
            });
            futures::future::join_all(calls).await;
        }
    };
    burst(served.base.clone()).await;
    let answer = eventually("queuing and a tight timeout", Duration::from_secs(30), async || {
        let (_, body) = recommendations(&served.base, "1h", Some(ADMIN)).await;
        match (find(&body, "queuing:s"), find(&body, "timeout-tight:s")) {
            (Some(_), Some(_)) => Ok(body),
            _ => Err(body.to_string()),
        }
    })
    .await;
    let queued = find(&answer, "queuing:s").unwrap();
    assert!(evidence(queued, "waited") >= 10.0 && evidence(queued, "waited") <= 24.0, "{queued}");
    assert_eq!(evidence(queued, "max_concurrent"), 1.0);
    assert!((1.0..=7.0).contains(&evidence(queued, "peak_queued")), "{queued}");
    let tight = find(&answer, "timeout-tight:s").unwrap();
    assert_eq!(tight["priority"], "high");
    assert!(evidence(tight, "timeouts") >= 3.0 && evidence(tight, "timeout_ms") == 200.0, "{tight}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("optimized.toml");
    let (c, o) = (served.config_path(), out.to_str().unwrap().to_string());
    let run = sekisho_cli(&["optimize", "--config", c.to_str().unwrap(), "--write", &o, "--json"], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.out, run.err);
    let report: Value = serde_json::from_str(&run.out).unwrap();
    assert_eq!(report["written"], o.as_str());
    let patched = std::fs::read_to_string(&out).unwrap();
    assert!(sekisho_cli(&["check", "--config", &o], &[]).await.ok);
    drop(served);

    let again = Served::start("", &without_listen(&patched)).await;
    burst(again.base.clone()).await;
    let answer = eventually("the burst sampled", Duration::from_secs(30), async || {
        let (_, body) = recommendations(&again.base, "1h", Some(ADMIN)).await;
        let monitor = client()
            .get(format!("{}/admin/monitor?period=1h", again.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let calls: u64 = monitor["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["by_upstream"].as_array().cloned().unwrap_or_default())
            .filter(|b| b["name"] == "s")
            .map(|b| b["calls"].as_u64().unwrap_or(0))
            .sum();
        if calls >= 24 { Ok(body) } else { Err(format!("{calls} calls sampled")) }
    })
    .await;
    assert!(find(&answer, "queuing:s").is_none() && find(&answer, "timeout-tight:s").is_none(), "{answer}");
}
