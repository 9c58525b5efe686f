//! `sekisho test`, the dry run before a deploy, as operators run it: the real binary against
//! real echo upstreams (stdio in both eras, Streamable HTTP), a broken command and a URL
//! nothing listens on (exit 1, named, secrets never printed), an invalid configuration
//! (exit 2), the store and Redis checks, and no child left running after it exits.

mod common;
#[path = "support/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");

/// Longest a run may take: its upstreams' startup timeouts are at most 3 s here.
const RUN_LIMIT: Duration = Duration::from_secs(40);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// `sekisho test --config <toml> [extra…]`, bounded by [`RUN_LIMIT`].
async fn dry_run(toml: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, format!("[log]\nlevel = \"warn\"\n{toml}")).unwrap();
    let began = Instant::now();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["test", "--config"]).arg(&cfg).args(extra).env_remove("SEKISHO_CONFIG").kill_on_drop(true);
    let out = tokio::time::timeout(RUN_LIMIT, cmd.output()).await.expect("sekisho test finishes in time").unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        took: began.elapsed(),
    }
}

fn upstream<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["upstreams"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("{name}"))
}

/// Whether process `pid` still exists (a zombie counts: nobody reaped it).
fn alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn every_upstream_passes_with_timings_and_no_child_survives() {
    let legacy_http = common::HttpUpstream::start("legacy").await;
    let modern_http = common::HttpUpstream::start("modern").await;
    let toml = format!(
        "{}{}{}{}[upstreams.off]\ncommand = \"/nonexistent/never-started\"\nenabled = false\n",
        common::stdio_upstream("legacy_stdio", "legacy"),
        common::stdio_upstream("modern_stdio", "modern"),
        legacy_http.table("legacy_http"),
        modern_http.table("modern_http"),
    );
    let run = dry_run(&toml, &["--json"]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["version"], 1);
    assert_eq!(report["ok"], true);
    assert!(report["services"].as_array().unwrap().is_empty(), "no store, no Redis: {report}");
    let names: Vec<&str> =
        report["upstreams"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["legacy_http", "legacy_stdio", "modern_http", "modern_stdio"], "disabled ones are skipped");
    let tools = upstream(&report, "legacy_stdio")["lists"]["tools"]["count"].as_u64().unwrap();
    assert!(tools > 0);
    let mut pids = Vec::new();
    for (name, transport, era, version) in [
        ("legacy_stdio", "stdio", "legacy", "2025-11-25"),
        ("modern_stdio", "stdio", "modern", common::MODERN),
        ("legacy_http", "http", "legacy", "2025-11-25"),
        ("modern_http", "http", "modern", common::MODERN),
    ] {
        let u = upstream(&report, name);
        assert_eq!((u["ok"].as_bool(), u["transport"].as_str()), (Some(true), Some(transport)), "{u}");
        assert_eq!((u["era"].as_str(), u["protocol_version"].as_str()), (Some(era), Some(version)), "{u}");
        assert_eq!(u["server"]["name"], "echo-upstream", "{u}");
        assert!(u["error"].is_null(), "{u}");
        for key in ["handshake_ms", "ping_ms"] {
            let v = u[key].as_f64().unwrap_or_else(|| panic!("{name}.{key}: {u}"));
            assert!((0.0..20_000.0).contains(&v), "{name}.{key} = {v}");
        }
        let lists = &u["lists"];
        assert_eq!(lists["tools"]["count"].as_u64(), Some(tools), "the same tools in every era: {u}");
        for list in ["prompts", "resources", "resource_templates"] {
            assert_eq!(lists[list]["count"], 1, "{name}.{list}: {u}");
        }
        for list in ["tools", "prompts", "resources", "resource_templates"] {
            assert!(lists[list]["ms"].as_f64().is_some() && lists[list]["error"].is_null(), "{name}.{list}: {u}");
        }
        let replicas = u["replicas"].as_array().unwrap();
        assert_eq!(replicas.len(), 1, "{u}");
        assert_eq!(replicas[0]["ok"], true);
        match transport {
            "stdio" => pids.push(replicas[0]["pid"].as_u64().unwrap_or_else(|| panic!("a pid: {u}"))),
            _ => {
                assert!(replicas[0]["pid"].is_null());
                assert!(replicas[0]["target"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{u}");
            }
        }
    }
    // The children were stopped and reaped before sekisho exited: none is left, not even as a
    // zombie of a dead parent.
    for pid in pids {
        assert!(!alive(pid), "upstream child {pid} outlived sekisho test");
    }

    // The table for people says the same.
    let run = dry_run(&toml, &[]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let text = &run.stdout;
    assert!(text.starts_with("UPSTREAM") && text.contains("HANDSHAKE_MS") && text.contains("PING_MS"), "{text}");
    let row = text.lines().find(|l| l.starts_with("modern_stdio")).unwrap();
    assert!(row.contains(" ok ") && row.contains("modern 2026-07-28") && row.contains("echo-upstream"), "{row}");
    assert!(text.contains("all 4 upstreams OK"), "{text}");
}

#[tokio::test]
async fn broken_upstreams_fail_the_run_by_name_without_printing_secrets() {
    let port = closed_port();
    let toml = format!(
        "{}[upstreams.missing]\ncommand = \"/nonexistent/mcp-server\"\nenv = {{ API_TOKEN = \"env-secret-4f7a\" }}\n\
         startup_timeout = \"3s\"\n\
         [upstreams.nobody]\nurl = \"http://svc:url-secret-9c1e@127.0.0.1:{port}/mcp?token=query-secret-b2d8\"\n\
         headers = {{ Authorization = \"Bearer header-secret-77aa\" }}\nstartup_timeout = \"3s\"\n",
        common::stdio_upstream("good", "legacy"),
    );
    let run = dry_run(&toml, &["--json"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.took < Duration::from_secs(20), "bounded by the short startup timeouts: {:?}", run.took);
    let report = run.json();
    assert_eq!(report["ok"], false);
    let good = upstream(&report, "good");
    assert_eq!(good["ok"], true, "the good one is reported ok: {good}");
    assert!(good["lists"]["tools"]["count"].as_u64().unwrap() > 0);
    let pid = good["replicas"][0]["pid"].as_u64().unwrap();
    assert!(!alive(pid), "the good upstream's child {pid} outlived sekisho test");

    let missing = upstream(&report, "missing");
    assert_eq!(missing["ok"], false);
    let error = missing["error"].as_str().unwrap();
    assert!(error.contains("cannot start") && error.contains("No such file"), "{error}");
    assert!(missing["era"].is_null() && missing["handshake_ms"].is_null() && missing["lists"]["tools"].is_null());

    let nobody = upstream(&report, "nobody");
    assert_eq!((nobody["ok"].as_bool(), nobody["transport"].as_str()), (Some(false), Some("http")));
    let error = nobody["error"].as_str().unwrap();
    assert!(error.to_lowercase().contains("connection refused"), "{error}");
    let target = nobody["replicas"][0]["target"].as_str().unwrap();
    assert_eq!(target, format!("http://<redacted>@127.0.0.1:{port}/mcp?<redacted>"));

    let table = dry_run(&toml, &[]).await;
    assert_eq!(table.code, Some(1));
    assert!(table.stdout.contains("2 of 3 upstreams FAILED: missing, nobody"), "{}", table.stdout);
    let row = table.stdout.lines().find(|l| l.starts_with("missing")).unwrap();
    assert!(row.contains("FAILED") && row.contains("cannot start"), "{row}");
    for secret in ["env-secret-4f7a", "url-secret-9c1e", "query-secret-b2d8", "header-secret-77aa"] {
        for (what, text) in [("json", &run.stdout), ("table", &table.stdout), ("stderr", &table.stderr)] {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    }
}

#[tokio::test]
async fn an_invalid_configuration_exits_2_listing_the_problems() {
    let run = dry_run("[upstreams.x]\nstartup_timeout = \"soon\"\n", &["--json"]).await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);
    assert!(run.stderr.contains("invalid configuration") && run.stderr.contains("upstreams.x"), "{}", run.stderr);
    let out = std::process::Command::new(BIN).args(["test", "--config", "/nonexistent/sekisho.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn the_store_must_be_migrated_and_redis_is_only_reported() {
    const STORE: &str = "key_pepper = \"test-pepper-0123456789abcdef0123456789\"\n\
                         secret_key = \"KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=\"\n";
    let db = postgres::TestDb::create().await;
    let redis =
        |url: &str| format!("[redis]\nurl = {url:?}\nentry_secret = \"dry-run-entry-secret-0123456789abcdef\"\n");
    let stdio = common::stdio_upstream("good", "legacy");
    // An unmigrated store stops `serve` from starting, so it fails the run; Redis answers.
    let toml = format!("[store]\npostgres_url = {:?}\n{STORE}{}{stdio}", db.url, redis("redis://127.0.0.1:6379"));
    let run = dry_run(&toml, &["--json"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(upstream(&report, "good")["ok"], true);
    let services = report["services"].as_array().unwrap();
    let pg = services.iter().find(|s| s["name"] == "postgres").unwrap();
    assert_eq!((pg["ok"].as_bool(), pg["fatal"].as_bool()), (Some(false), Some(true)), "{pg}");
    assert!(pg["error"].as_str().unwrap().contains("sekisho db migrate"), "{pg}");
    let r = services.iter().find(|s| s["name"] == "redis").unwrap();
    assert_eq!(r["ok"], true, "{r}");

    // Migrated, the store passes; a Redis that does not answer only degrades `serve`.
    let pool = sekisho::store::pool(&db.url, 1, Duration::from_secs(5)).unwrap();
    sekisho::store::migrate(&pool).await.unwrap();
    pool.close().await;
    let port = closed_port();
    let toml =
        format!("[store]\npostgres_url = {:?}\n{STORE}{}{stdio}", db.url, redis(&format!("redis://127.0.0.1:{port}")));
    let run = dry_run(&toml, &[]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("postgres: ok"), "{}", run.stdout);
    assert!(run.stdout.contains("redis: warning"), "{}", run.stdout);
}
