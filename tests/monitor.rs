//! The monitor end to end: a real gateway sampling every second with a stdio echo upstream;
//! `GET /admin/monitor` shows the calls made, the gateway's memory and the child's, and
//! refuses a client key.

mod common;

use std::time::Duration;

use common::{Gateway, client, eventually, modern_as, stdio_upstream};
use serde_json::{Value, json};

const ADMIN: &str = "monitor-admin-key-0123456789abcdef";
const APP: &str = "monitor-app-key-0123456789abcdefgh";

async fn get(gw: &Gateway, path: &str, key: &str) -> (u16, Value) {
    let resp = client().get(gw.url(path)).bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_monitor_shows_calls_memory_and_children_to_admins_only() {
    let toml = format!(
        "[server]\napi_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}, {{ key = {APP:?}, name = \"app\" }}]\n\
         [monitor]\ninterval = \"1s\"\n{}",
        stdio_upstream("e", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    for i in 0..5 {
        let params = json!({"name": "e__echo", "arguments": {"message": format!("m{i}")}});
        let a = modern_as(&gw.url("/mcp"), Some(ADMIN), i, "tools/call", params).await;
        assert!(a.body.get("result").is_some(), "{:?}", a.body);
    }
    let pid = gw.readyz().await["upstreams"]["e"]["replicas"][0]["pid"].as_u64().expect("the child's pid");

    let body = eventually("a sample with the five calls and the child", Duration::from_secs(15), async || {
        let (status, body) = get(&gw, "/admin/monitor?period=1h", ADMIN).await;
        if status != 200 {
            return Err(format!("{status}: {body}"));
        }
        let calls: u64 = body["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["by_upstream"].as_array().cloned().unwrap_or_default())
            .filter(|b| b["name"] == "e")
            .map(|b| b["calls"].as_u64().unwrap_or(0))
            .sum();
        let child = body["latest"]["children"].as_array().is_some_and(|c| c.iter().any(|p| p["pid"] == pid));
        if calls >= 5 && child { Ok(body) } else { Err(format!("calls to e: {calls}, child seen: {child}: {body}")) }
    })
    .await;

    let echo: u64 = body["samples"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["by_tool"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["upstream"] == "e" && t["tool"] == "echo")
        .map(|t| t["calls"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(echo, 5, "the five echo calls, by tool: {body}");
    assert_eq!(body["interval_ms"], 1000);
    assert_eq!(body["capacity"], 86_400, "a day of one-second samples");
    let latest = &body["latest"];
    assert!(latest["gateway"]["rss_bytes"].as_u64().unwrap() > 1 << 20, "{latest}");
    let child = latest["children"].as_array().unwrap().iter().find(|p| p["pid"] == pid).unwrap();
    assert_eq!(child["name"], "e");
    assert!(child["rss_bytes"].as_u64().unwrap() > 0, "{child}");
    assert_eq!((latest["upstreams_up"].as_u64(), latest["upstreams_down"].as_u64()), (Some(1), Some(0)));
    assert_eq!(latest["health"][0]["name"], "e");
    assert!(body["summary"]["calls"].as_u64().unwrap() >= 5, "{}", body["summary"]);
    let with_calls = body["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["by_upstream"].as_array().unwrap().iter().any(|b| b["name"] == "e"))
        .unwrap();
    assert!(with_calls["latency"]["p95_ms"].as_f64().unwrap() > 0.0, "{with_calls}");
    assert!(with_calls["requests_per_sec"].as_f64().unwrap() > 0.0);
    let methods = with_calls["by_method"].as_array().unwrap();
    assert!(methods.iter().any(|m| m["name"] == "tools/call"), "{methods:?}");

    let (status, day) = get(&gw, "/admin/monitor?period=24h", ADMIN).await;
    assert_eq!((status, day["period_ms"].as_u64()), (200, Some(86_400_000)));
    let (status, _) = get(&gw, "/admin/monitor?period=forever", ADMIN).await;
    assert_eq!(status, 400);
    let (status, _) = get(&gw, "/admin/monitor", APP).await;
    assert_eq!(status, 403, "a client key is not an admin");
    let status = client().get(gw.url("/admin/monitor")).send().await.unwrap().status().as_u16();
    assert_eq!(status, 401);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_switched_off_monitor_answers_404() {
    let toml = format!("[server]\napi_keys = [{{ key = {ADMIN:?}, role = \"admin\" }}]\n[monitor]\nenabled = false\n");
    let gw = Gateway::start(&toml).await;
    let (status, _) = get(&gw, "/admin/monitor", ADMIN).await;
    assert_eq!(status, 404);
    gw.shutdown().await.unwrap();
}

/// A `[monitor]` and `[redis]` configuration of replica `name`: a sample a second, 3 kept.
fn fleet_toml(port: u16, name: &str) -> String {
    format!(
        "[server]\napi_keys = [{{ key = {ADMIN:?}, role = \"admin\" }}]\n\
         [redis]\nurl = \"redis://127.0.0.1:{port}\"\nprefix = \"mon:\"\nentry_secret = \"monitor-entry-secret-0123456789abcdef\"\n\
         [monitor]\ninterval = \"1s\"\nretention = \"3s\"\nreplica = {name:?}\n"
    )
}

async fn redis_query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

#[tokio::test]
async fn with_redis_any_replica_shows_the_fleet_in_bounded_expiring_streams() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _redis = common::OwnRedis::start(port).await;
    let a = Gateway::start(&fleet_toml(port, "ra")).await;
    let b = Gateway::start(&fleet_toml(port, "rb")).await;

    let body = eventually("both replicas in a's fleet view", Duration::from_secs(15), async || {
        let (status, body) = get(&a, "/admin/monitor?fleet=1&period=1h", ADMIN).await;
        let names: Vec<&str> = body["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["samples"].as_array().is_some_and(|s| !s.is_empty()))
            .filter_map(|r| r["replica"].as_str())
            .collect();
        if status == 200 && names.contains(&"ra") && names.contains(&"rb") {
            Ok(body.clone())
        } else {
            Err(body.to_string())
        }
    })
    .await;
    assert_eq!(body["replica"], "ra");
    let rb = body["replicas"].as_array().unwrap().iter().find(|r| r["replica"] == "rb").unwrap();
    assert!(rb["samples"][0]["gateway"]["rss_bytes"].as_u64().unwrap() > 0, "{rb}");

    // A forged entry (no MAC) in b's stream is ignored.
    let forged = r#"{"timestamp_ms": 99999999999999, "calls": 1}"#;
    let _: String = redis_query(port, redis::cmd("XADD").arg("mon:monitor:s:rb").arg("*").arg("s").arg(forged)).await;
    let (_, body) = get(&a, "/admin/monitor?fleet=1", ADMIN).await;
    let rb = body["replicas"].as_array().unwrap().iter().find(|r| r["replica"] == "rb").unwrap();
    assert!(rb["samples"].as_array().unwrap().iter().all(|s| s["timestamp_ms"] != 99999999999999u64), "{rb}");

    // Bounded to retention / interval and expiring: after 5 more samples, still 3.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for stream in ["mon:monitor:s:ra", "mon:monitor:s:rb"] {
        let len: u64 = redis_query(port, redis::cmd("XLEN").arg(stream)).await;
        assert_eq!(len, 3, "{stream}");
        let ttl: i64 = redis_query(port, redis::cmd("PTTL").arg(stream)).await;
        assert!((1..=3000).contains(&ttl), "{stream}: {ttl}");
    }
    let ttl: i64 = redis_query(port, redis::cmd("PTTL").arg("mon:monitor:replicas")).await;
    assert!((1..=3000).contains(&ttl), "{ttl}");

    // Without [redis] there is no fleet view.
    let lone = Gateway::start(&format!("[server]\napi_keys = [{{ key = {ADMIN:?}, role = \"admin\" }}]\n")).await;
    assert_eq!(get(&lone, "/admin/monitor?fleet=1", ADMIN).await.0, 404);
    for gw in [a, b, lone] {
        gw.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn with_redis_a_restarted_replica_keeps_its_history() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _redis = common::OwnRedis::start(port).await;
    let toml = fleet_toml(port, "again").replace("retention = \"3s\"", "retention = \"1h\"");
    let first = Gateway::start(&toml).await;
    let before = eventually("three samples", Duration::from_secs(15), async || {
        let (_, body) = get(&first, "/admin/monitor?period=1h", ADMIN).await;
        let stamps: Vec<u64> =
            body["samples"].as_array().into_iter().flatten().filter_map(|s| s["timestamp_ms"].as_u64()).collect();
        if stamps.len() >= 3 { Ok(stamps) } else { Err(body.to_string()) }
    })
    .await;
    first.shutdown().await.unwrap();
    // Something else writes a sample into its stream, without the MAC: never taken back.
    let forged_at = before.last().unwrap() + 1;
    let forged = format!(r#"{{"timestamp_ms": {forged_at}, "calls": 999}}"#);
    let _: String =
        redis_query(port, redis::cmd("XADD").arg("mon:monitor:s:again").arg("*").arg("s").arg(forged)).await;

    // The same replica again: its ring starts with what it wrote to Redis before.
    let second = Gateway::start(&toml).await;
    let (again, body) = eventually("the first run's samples back", Duration::from_secs(10), async || {
        let (_, body) = get(&second, "/admin/monitor?period=1h", ADMIN).await;
        let again: Vec<u64> =
            body["samples"].as_array().into_iter().flatten().filter_map(|s| s["timestamp_ms"].as_u64()).collect();
        if before.iter().all(|stamp| again.contains(stamp)) { Ok((again, body)) } else { Err(format!("{again:?}")) }
    })
    .await;
    assert!(again.windows(2).all(|w| w[0] < w[1]), "oldest first: {again:?}");
    assert!(!again.contains(&forged_at), "the forged sample stays out: {again:?}");
    assert!(body["latest"]["gateway"]["rss_bytes"].as_u64().is_some(), "{body}");

    // Another replica name starts empty: history is each replica's own.
    let other =
        Gateway::start(&fleet_toml(port, "someone-else").replace("retention = \"3s\"", "retention = \"1h\"")).await;
    let (_, body) = get(&other, "/admin/monitor?period=1h", ADMIN).await;
    assert!(body["samples"].as_array().unwrap().iter().all(|s| !before.contains(&s["timestamp_ms"].as_u64().unwrap())));
    second.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}
