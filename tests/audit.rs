//! The audit log (`[audit]`) end to end: a real gateway, a real stdio upstream, real
//! PostgreSQL (a database of the test's own) and the real `sekisho audit` binary. 10,000 calls
//! make exactly 10,000 call records whose chain verifies, and `audit verify` names the exact
//! record after one is edited, deleted or two are swapped (in the table and in the file);
//! secrets in arguments and the key itself never reach the log; an admin's switch is recorded
//! with who flipped it; with PostgreSQL unreachable, `serve` keeps serving (records written
//! after recovery or counted as dropped) and `refuse` refuses with -32018 once the buffer is full.

mod common;
#[path = "support/postgres.rs"]
mod postgres;

use std::time::Duration;

use common::{Gateway, client, eventually, modern_as, sekisho_cli, stdio_upstream};
use futures::StreamExt;
use postgres::{Proxy, TestDb};
use serde_json::{Value, json};

const ADMIN: &str = "audit-admin-0123456789abcdef";
const CLIENT: &str = "audit-client-0123456789abcdef";
const PEPPER: &str = "test-pepper-0123456789abcdef0123456789";
const SECRET_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
const SECRET_ARG: &str = "hunter2-never-in-the-log";

fn keys() -> String {
    format!(
        "[server]\napi_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}, {{ key = {CLIENT:?}, name = \"ci\" }}]\n"
    )
}

fn store(url: &str) -> String {
    format!("[store]\npostgres_url = {url:?}\nkey_pepper = {PEPPER:?}\nsecret_key = {SECRET_KEY:?}\n")
}

async fn migrated() -> TestDb {
    let db = TestDb::create().await;
    let pool = sekisho::store::pool(&db.url, 1, Duration::from_secs(5)).unwrap();
    sekisho::store::migrate(&pool).await.unwrap();
    pool.close().await;
    db
}

/// `n` concurrent `tools/call`s of `echo` carrying a secret argument, as the client key;
/// (HTTP status, JSON-RPC error code) of each.
async fn calls(gw: &Gateway, n: usize, concurrency: usize) -> Vec<(u16, Option<i64>)> {
    let endpoint = gw.url("/mcp");
    futures::stream::iter(0..n)
        .map(|i| {
            let endpoint = endpoint.clone();
            async move {
                let args =
                    json!({"message": format!("m{i}"), "password": SECRET_ARG, "nested": {"api_key": SECRET_ARG}});
                let a = modern_as(
                    &endpoint,
                    Some(CLIENT),
                    i as i64,
                    "tools/call",
                    json!({"name": "echo__echo", "arguments": args}),
                )
                .await;
                (a.status, a.error_code())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn query_i64(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn verify_db(url: &str) -> common::CliRun {
    sekisho_cli(&["audit", "verify", "--database-url", url], &[]).await
}

async fn verify_file(path: &std::path::Path) -> common::CliRun {
    sekisho_cli(&["audit", "verify", "--file", path.to_str().unwrap()], &[]).await
}

fn assert_broken(run: &common::CliRun, fault: &str, at: &str) {
    assert_eq!(run.code, Some(1), "verify should fail: {}{}", run.out, run.err);
    let line = run.out.lines().find(|l| l.contains("BROKEN")).unwrap_or_else(|| panic!("no verdict: {}", run.out));
    assert!(line.contains(at) && line.contains(fault), "expected {fault} at {at:?}, got: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_calls_make_ten_thousand_verifiable_records_in_postgres() {
    let db = migrated().await;
    let toml = format!(
        "{}{}[audit]\nenabled = true\nanchor_every = 1000\n{}",
        keys(),
        store(&db.url),
        stdio_upstream("echo", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let outcomes = calls(&gw, 10_000, 64).await;
    assert!(outcomes.iter().all(|(s, c)| *s == 200 && c.is_none()), "every call succeeds");
    // An admin action, recorded with who did it.
    let r = client().post(gw.url("/admin/switches/cache/off")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await.unwrap();

    let pool = sekisho::store::pool(&db.url, 1, Duration::from_secs(5)).unwrap();
    assert_eq!(query_i64(&pool, "SELECT count(*) FROM audit_log WHERE kind = 'call'").await, 10_000);
    assert_eq!(
        query_i64(&pool, "SELECT count(*) FROM audit_log WHERE kind = 'call' AND caller = 'ci' AND name = 'echo__echo' AND outcome = 'ok' AND upstream = 'echo'").await,
        10_000
    );
    let leaks = format!(
        "SELECT count(*) FROM audit_log WHERE record LIKE '%{SECRET_ARG}%' OR record LIKE '%{CLIENT}%' OR record LIKE '%{ADMIN}%'"
    );
    assert_eq!(query_i64(&pool, &leaks).await, 0, "no secret argument and no key in the log");
    assert_eq!(
        query_i64(&pool, "SELECT count(*) FROM audit_log WHERE record LIKE '%\"password\":\"<redacted>\"%'").await,
        10_000
    );
    let switch: (String, String, String) =
        sqlx::query_as("SELECT caller, method, name FROM audit_log WHERE kind = 'admin'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(switch, ("ops".into(), "switch".into(), "cache".into()));
    assert!(query_i64(&pool, "SELECT count(*) FROM audit_log WHERE kind = 'anchor'").await >= 10);
    let last: String =
        sqlx::query_scalar("SELECT record FROM audit_log ORDER BY id DESC LIMIT 1").fetch_one(&pool).await.unwrap();
    assert!(last.contains("\"closed\":true"), "a clean stop closes the chain: {last}");

    let ok = verify_db(&db.url).await;
    assert_eq!(ok.code, Some(0), "{}{}", ok.out, ok.err);
    assert!(ok.out.contains("intact") && ok.out.contains("closed cleanly"), "{}", ok.out);

    // The table refuses changes until its owner disables the trigger.
    assert!(sqlx::query("UPDATE audit_log SET caller = 'x' WHERE seq = 1").execute(&pool).await.is_err());
    sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only").execute(&pool).await.unwrap();
    let id_of = async |seq: i64| -> i64 {
        sqlx::query_scalar("SELECT id FROM audit_log WHERE seq = $1").bind(seq).fetch_one(&pool).await.unwrap()
    };

    // Edited: one record's caller in its sealed text.
    let edit =
        "UPDATE audit_log SET record = replace(record, '\"caller\":\"ci\"', '\"caller\":\"mallory\"') WHERE seq = 4321";
    sqlx::query(edit).execute(&pool).await.unwrap();
    assert_broken(&verify_db(&db.url).await, "altered", &format!("record {} (seq 4321", id_of(4321).await));
    let undo =
        "UPDATE audit_log SET record = replace(record, '\"caller\":\"mallory\"', '\"caller\":\"ci\"') WHERE seq = 4321";
    sqlx::query(undo).execute(&pool).await.unwrap();
    // A column alone is an alteration too.
    sqlx::query("UPDATE audit_log SET outcome = 'tool_error' WHERE seq = 4400").execute(&pool).await.unwrap();
    assert_broken(&verify_db(&db.url).await, "altered", &format!("record {} (seq 4400", id_of(4400).await));
    sqlx::query("UPDATE audit_log SET outcome = 'ok' WHERE seq = 4400").execute(&pool).await.unwrap();
    assert_eq!(verify_db(&db.url).await.code, Some(0));

    // Deleted: the next record is where the gap shows.
    sqlx::query("CREATE TABLE saved AS SELECT * FROM audit_log WHERE seq = 5000").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 5000").execute(&pool).await.unwrap();
    let run = verify_db(&db.url).await;
    assert_broken(&run, "removed", &format!("record {} (seq 5001", id_of(5001).await));
    assert!(run.out.contains("seq 5000 is missing"), "{}", run.out);
    sqlx::query("INSERT INTO audit_log SELECT * FROM saved").execute(&pool).await.unwrap();
    assert_eq!(verify_db(&db.url).await.code, Some(0));

    // Swapped: two records trade places.
    let (a, b) = (id_of(6000).await, id_of(6001).await);
    for (from, to) in [(a, -1), (b, a), (-1, b)] {
        sqlx::query("UPDATE audit_log SET id = $2 WHERE id = $1").bind(from).bind(to).execute(&pool).await.unwrap();
    }
    let run = verify_db(&db.url).await;
    assert_broken(&run, "reordered", &format!("record {a} (seq 6001"));
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_file_sink_is_verified_and_searched_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let toml = format!(
        "{}[audit]\nenabled = true\npath = {:?}\nanchor_every = 100\n{}",
        keys(),
        path.display().to_string(),
        stdio_upstream("echo", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    assert!(calls(&gw, 1000, 32).await.iter().all(|(s, c)| *s == 200 && c.is_none()));
    gw.shutdown().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(SECRET_ARG) && !text.contains(CLIENT), "no secret and no key in the file");
    let lines: Vec<&str> = text.lines().collect();
    let records: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.iter().filter(|r| r["kind"] == "call").count(), 1000);
    assert_eq!(verify_file(&path).await.code, Some(0));

    let search = sekisho_cli(
        &[
            "audit",
            "search",
            "--file",
            path.to_str().unwrap(),
            "--caller",
            "ci",
            "--tool",
            "echo__echo",
            "--since",
            "1h",
            "-n",
            "5000",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(search.out.lines().count(), 1000, "{}", search.err);
    let tail = sekisho_cli(&["audit", "tail", "--file", path.to_str().unwrap(), "-n", "3"], &[]).await;
    assert_eq!(tail.out.lines().count(), 3);
    assert!(tail.out.lines().last().unwrap().contains("anchor"), "{}", tail.out);

    let write = |lines: &[String]| std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut edited = owned.clone();
    edited[499] = edited[499].replace("\"outcome\":\"ok\"", "\"outcome\":\"tool_error\"");
    write(&edited);
    assert_broken(&verify_file(&path).await, "altered", "record 500 (seq 500");
    let mut removed = owned.clone();
    removed.remove(599);
    write(&removed);
    assert_broken(&verify_file(&path).await, "removed", "record 600 (seq 601");
    let mut swapped = owned.clone();
    swapped.swap(699, 700);
    write(&swapped);
    assert_broken(&verify_file(&path).await, "reordered", "record 700 (seq 701");
    let unreadable = sekisho_cli(&["audit", "verify", "--file", "/nonexistent/audit.jsonl"], &[]).await;
    assert_eq!(unreadable.code, Some(2));
}

async fn metric(gw: &Gateway, name: &str) -> f64 {
    let text = client().get(gw.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_postgres_down_serve_keeps_serving_and_writes_after_recovery() {
    let db = migrated().await;
    let proxy = Proxy::start().await;
    let toml = format!(
        "{}{}[audit]\nenabled = true\nbuffer = 50\nbatch = 10\nflush_interval = \"20ms\"\n{}",
        keys(),
        store(&db.via(&proxy)),
        stdio_upstream("echo", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    assert!(calls(&gw, 20, 4).await.iter().all(|(s, _)| *s == 200));
    let pool = sekisho::store::pool(&db.url, 1, Duration::from_secs(5)).unwrap();
    eventually("the first records written", Duration::from_secs(10), async || {
        let n = query_i64(&pool, "SELECT count(*) FROM audit_log WHERE kind = 'call'").await;
        if n == 20 { Ok(()) } else { Err(n) }
    })
    .await;
    proxy.set_up(false);
    let outcomes = calls(&gw, 200, 4).await;
    assert!(
        outcomes.iter().all(|(s, c)| *s == 200 && c.is_none()),
        "serve: every call succeeds while the sink is down"
    );
    let dropped = metric(&gw, "sekisho_audit_records_dropped_total").await;
    assert!(dropped >= 100.0, "a 50-record buffer cannot hold 200 records: {dropped} dropped");
    assert!(metric(&gw, "sekisho_audit_sink_errors_total").await >= 1.0);
    // /readyz says so (still ready): to anyone as `degraded`, to an admin with the numbers.
    let readyz = |key: Option<&'static str>| {
        let mut req = client().get(gw.url("/readyz"));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let public = readyz(None).await;
    // (The store is degraded too: it shares the PostgreSQL that went away.)
    assert_eq!(public["ready"], true, "{public}");
    assert!(public["degraded"].as_array().unwrap().contains(&json!("audit")), "{public}");
    let detail = readyz(Some(ADMIN)).await;
    assert_eq!(detail["audit"]["status"], "failing", "{detail}");
    assert_eq!(detail["audit"]["on_audit_failure"], "serve", "{detail}");
    assert!(detail["audit"]["dropped_total"].as_f64().unwrap() >= 100.0, "{detail}");
    proxy.set_up(true);
    eventually("the buffered records written after recovery", Duration::from_secs(20), async || {
        let n = query_i64(&pool, "SELECT count(*) FROM audit_log WHERE kind = 'call'").await;
        if n as f64 + dropped == 220.0 { Ok(()) } else { Err(format!("{n} written, {dropped} dropped")) }
    })
    .await;
    let detail = readyz(Some(ADMIN)).await;
    assert_eq!(detail["audit"]["status"], "up", "{detail}");
    assert!(!detail["degraded"].as_array().is_some_and(|d| d.contains(&json!("audit"))), "{detail}");
    gw.shutdown().await.unwrap();
    let noted = query_i64(&pool, "SELECT coalesce(sum((record::json->'detail'->>'count')::bigint), 0)::bigint FROM audit_log WHERE kind = 'dropped'").await;
    assert_eq!(noted as f64, dropped, "the chain says how many records were dropped");
    let ok = verify_db(&db.url).await;
    assert_eq!(ok.code, Some(0), "{}{}", ok.out, ok.err);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_postgres_down_refuse_refuses_once_the_buffer_is_full() {
    let db = migrated().await;
    let proxy = Proxy::start().await;
    let toml = format!(
        "{}{}[audit]\nenabled = true\nbuffer = 20\nbatch = 5\nflush_interval = \"20ms\"\non_audit_failure = \"refuse\"\n{}",
        keys(),
        store(&db.via(&proxy)),
        stdio_upstream("echo", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    proxy.set_up(false);
    let outcomes = calls(&gw, 100, 1).await;
    let served = outcomes.iter().take_while(|(s, _)| *s == 200).count();
    assert!((20..=30).contains(&served), "the buffer (20) and the writer's batch (5) hold the first calls: {served}");
    let refused = &outcomes[served..];
    assert!(
        refused.iter().all(|o| *o == (503, Some(-32018))),
        "after that every call is refused with -32018 and HTTP 503: {refused:?}"
    );
    proxy.set_up(true);
    eventually("calls served again once the sink is back", Duration::from_secs(20), async || {
        match calls(&gw, 1, 1).await[0] {
            (200, None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    gw.shutdown().await.unwrap();
    let pool = sekisho::store::pool(&db.url, 1, Duration::from_secs(5)).unwrap();
    let written = query_i64(&pool, "SELECT count(*) FROM audit_log WHERE kind = 'call'").await;
    let refused_retries = query_i64(&pool, "SELECT count(*) FROM audit_log WHERE kind = 'dropped'").await;
    assert_eq!(refused_retries, 0, "refuse drops nothing");
    // Every call that ran has its record: the served ones and the one successful probe.
    assert_eq!(written as usize, served + 1, "one record per call that ran");
    let ok = verify_db(&db.url).await;
    assert_eq!(ok.code, Some(0), "{}{}", ok.out, ok.err);
    pool.close().await;
}
