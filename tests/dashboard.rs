//! The dashboard: the page and its embedded assets over HTTP, then the page in a real browser
//! (Debian's `chromium` driven by `playwright-core`, `tests/browser/dashboard.mjs`) against a
//! gateway with two stdio upstreams under steady traffic: charts with data points, a firing
//! alert, the cache switch flipped off and on with `/readyz` following, a client key refused.
//! Screenshots at 1280 px and 390 px are kept in `$SEKISHO_ARTIFACTS` (default
//! `target/artifacts`). Then the approvals panel (`tests/browser/approvals.mjs`) against the real
//! `sekisho serve` binary: calls to a destructive tool of a real stdio upstream, from a client
//! without elicitation, are held for an operator; the panel shows each without a reload, its
//! Approve lets the call complete, its Deny refuses it with -32023, and an argument holding
//! markup is shown as text (no element made, no console error, no CSP violation).
//!
//! The browser test needs `node`, `tests/browser/node_modules` (`npm ci` there) and chromium
//! (`$CHROMIUM`, default `/usr/bin/chromium`); `.ci/run` installs all three and sets
//! `SEKISHO_BROWSER_TESTS=1`, which makes their absence a failure rather than a skip.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Answer, Gateway, Served, client, eventually, modern_as, settled, stdio_upstream};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

const ADMIN: &str = "dashboard-admin-key-0123456789abcdef";
const APP: &str = "dashboard-app-key-0123456789abcdefgh";

fn config() -> String {
    format!(
        "[server]\napi_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}, {{ key = {APP:?}, name = \"app\" }}]\n\
         [monitor]\ninterval = \"1s\"\n\
         [alerts]\nrules = [\n  {{ name = \"search-p95\", metric = \"latency_p95_ms\", op = \">\", threshold = 20, severity = \"high\", scope = \"search\", min_calls = 1, title = \"search is slow\" }},\n  \
         {{ name = \"tool-errors\", metric = \"tool_error_rate\", op = \">\", threshold = 0.5, severity = \"critical\", min_calls = 1 }},\n]\n\
         [budgets.gateway]\nper_hour = 5.0\n\
         {}{}trusted = true\nprice = {{ per_call = 0.0001 }}\n",
        stdio_upstream("search", "legacy"),
        stdio_upstream("files", "modern"),
    )
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy_and_hold_no_data() {
    let gw = Gateway::start(&config()).await;
    let page = client().get(gw.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("/dashboard/assets/uPlot.iife.min.js") && !html.contains("search"), "no data in the page");
    for (asset, media) in
        [("app.js", "text/javascript"), ("uPlot.iife.min.js", "text/javascript"), ("app.css", "text/css")]
    {
        let resp = client().get(gw.url(&format!("/dashboard/assets/{asset}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(media), "{asset}");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    }
    for missing in ["/dashboard/assets/nope.js", "/dashboard/assets/..%2FCargo.toml", "/dashboard/assets/"] {
        assert_eq!(client().get(gw.url(missing)).send().await.unwrap().status(), 404, "{missing}");
    }
    // What the page reads stays behind the admin check.
    for (key, status) in [(None, 401), (Some(APP), 403), (Some(ADMIN), 200)] {
        let mut req = client().get(gw.url("/admin/monitor"));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        assert_eq!(req.send().await.unwrap().status(), status, "{key:?}");
    }
}

/// Where the browser test keeps its screenshots.
fn artifacts() -> PathBuf {
    let dir = std::env::var_os("SEKISHO_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        target.join("artifacts")
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the browser test can run here; with `SEKISHO_BROWSER_TESTS=1` it must.
fn browser_ready(script_dir: &std::path::Path) -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing: Vec<&str> = [
        (!std::path::Path::new(&chromium).exists()).then_some("chromium"),
        (!script_dir.join("node_modules/playwright-core").exists()).then_some("tests/browser/node_modules (npm ci)"),
        std::process::Command::new("node").arg("--version").output().is_err().then_some("node"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("SEKISHO_BROWSER_TESTS").is_none(),
        "SEKISHO_BROWSER_TESTS is set but {missing:?} is missing"
    );
    eprintln!("SKIPPED: the browser test needs {missing:?} (.ci/run installs them)");
    false
}

#[tokio::test]
async fn the_dashboard_in_a_browser_draws_live_charts_and_flips_a_switch() {
    let script_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_ready(&script_dir) {
        return;
    }
    let gw = Gateway::start(&config()).await;
    // Steady traffic: cached reads (`files` is trusted, its `add` and `echo` are read-only),
    // a slow upstream, some tool errors.
    let endpoint = gw.url("/mcp");
    let traffic = tokio::spawn(async move {
        for i in 0i64.. {
            let calls = [
                ("search__sleep_ms", json!({"ms": 20 + (i % 7) * 6})),
                ("files__add", json!({"a": i % 3, "b": 1})),
                ("files__echo", json!({"message": format!("m{}", i % 5)})),
                ("files__fail", json!({"message": "no"})),
            ];
            let (name, arguments) = &calls[(i % 4) as usize];
            let params = json!({"name": name, "arguments": arguments});
            let _ = modern_as(&endpoint, Some(APP), i, "tools/call", params).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;

    let out = artifacts();
    let run = tokio::process::Command::new("node")
        .arg(script_dir.join("dashboard.mjs"))
        .args([&gw.base, ADMIN, APP, &out.display().to_string()])
        .current_dir(&script_dir)
        .kill_on_drop(true)
        .output();
    let run =
        tokio::time::timeout(Duration::from_secs(150), run).await.expect("the browser test ends in 150 s").unwrap();
    traffic.abort();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the browser test failed:\n{stderr}\n{stdout}");
    let found: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert!(found["readyz_off"]["switched_off"].as_array().unwrap().iter().any(|l| l == "cache"), "{found}");
    assert!(
        found["alerts"].as_array().unwrap().iter().any(|a| a.as_str().unwrap().contains("search is slow")),
        "{found}"
    );
    assert!(found["upstreams"].as_array().unwrap().iter().any(|u| u == "search"), "{found}");
    for width in [1280, 390] {
        let png = std::fs::read(out.join(format!("dashboard-{width}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot at {width} px");
    }
    // The page flipped the cache switch back on, as /readyz shows to the test too.
    assert!(gw.readyz().await.get("switched_off").is_none());
    eprintln!("screenshots: {}", out.display());
}

/// What `tests/browser/approvals.mjs` printed on stderr, for a failure's message.
fn browser_stderr(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Read the browser script's stdout until it prints `step NAME` (at most 120 s); a failure
/// names what the script printed on stderr.
async fn step(lines: &mut Lines<BufReader<ChildStdout>>, name: &str, stderr: &std::path::Path) {
    let want = format!("step {name}");
    let wait = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == want {
                return true;
            }
        }
        false
    });
    let reached = wait.await.unwrap_or(false);
    assert!(reached, "the browser script did not reach `{name}`:\n{}", browser_stderr(stderr));
}

/// Start a `tools/call` of the destructive `e__side_effect` as the client key, from a modern
/// client that declares no elicitation (so it is held for an operator).
fn held_call(endpoint: &str, id: i64, arguments: Value) -> tokio::task::JoinHandle<Answer> {
    let endpoint = endpoint.to_string();
    tokio::spawn(async move {
        modern_as(&endpoint, Some(APP), id, "tools/call", json!({"name": "e__side_effect", "arguments": arguments}))
            .await
    })
}

/// Wait until `/admin/approvals` lists a held call whose arguments contain `marker`; it, as listed.
async fn listed(base: &str, marker: &str) -> Value {
    eventually("the call held for an operator", Duration::from_secs(60), async || {
        let resp = client().get(format!("{base}/admin/approvals")).bearer_auth(ADMIN).send().await;
        let body: Value = resp.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        let pending = body["pending"].as_array().cloned().unwrap_or_default();
        pending.into_iter().find(|p| p["arguments"].to_string().contains(marker)).ok_or_else(|| body.to_string())
    })
    .await
}

#[tokio::test]
async fn the_approvals_panel_in_a_browser_approves_and_denies_held_calls() {
    let script_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_ready(&script_dir) {
        return;
    }
    const SECRET: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    const MARKUP: &str = "<img src=x onerror=window.__xss=1>";
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    let ran = || std::fs::read_to_string(&effects).map(|s| s.lines().count()).unwrap_or(0);
    let keys = format!(
        "api_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}, {{ key = {APP:?}, name = \"app\" }}]"
    );
    // `e__side_effect` is annotated destructive and writes a line to `effects` each time it runs.
    let gw = Served::start(
        &keys,
        &format!(
            "[approvals]\ndestructive = \"approve\"\ntimeout = \"300s\"\n{}env = {{ ECHO_EFFECTS_FILE = {:?} }}\n",
            stdio_upstream("e", "legacy"),
            effects.display().to_string(),
        ),
    )
    .await;
    eventually("the upstream listed", Duration::from_secs(60), async || settled(&gw.base, Some(ADMIN)).await).await;
    let endpoint = format!("{}/mcp", gw.base);

    let stderr = dir.path().join("browser.stderr");
    let mut browser = tokio::process::Command::new("node")
        .arg(script_dir.join("approvals.mjs"))
        .args([&gw.base, ADMIN])
        .current_dir(&script_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    step(&mut lines, "signed-in", &stderr).await;

    // 1. Held, shown, approved in the browser: the client's call returns the tool's result.
    let call = held_call(&endpoint, 1, json!({"crash": false, "token": SECRET, "note": "approve me"}));
    let first = listed(&gw.base, "approve me").await;
    assert_eq!(ran(), 0, "held, not run");
    step(&mut lines, "approved", &stderr).await;
    let done = call.await.unwrap();
    assert_eq!(done.body.pointer("/result/content/0/text"), Some(&json!("effect recorded")), "{}", done.raw);
    assert_eq!(ran(), 1);

    // 2. Denied in the browser: the documented refusal, and the upstream never ran it.
    let call = held_call(&endpoint, 2, json!({"crash": false, "note": "deny me"}));
    let second = listed(&gw.base, "deny me").await;
    step(&mut lines, "denied", &stderr).await;
    let done = call.await.unwrap();
    assert_eq!(done.error_code(), Some(-32023), "{}", done.raw);
    assert_eq!(done.body.pointer("/error/data/reason"), Some(&json!("denied")), "{}", done.raw);

    // 3. An argument holding markup: shown as text (the script checks the DOM), then denied.
    let call = held_call(&endpoint, 3, json!({"crash": false, "note": "markup row", "html": MARKUP}));
    let third = listed(&gw.base, "markup row").await;
    step(&mut lines, "markup-denied", &stderr).await;
    assert_eq!(call.await.unwrap().error_code(), Some(-32023));
    assert_eq!(ran(), 1, "denied calls never reach the upstream");

    let mut rest = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap() {
        rest.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(60), browser.wait()).await.expect("the script ends").unwrap();
    assert!(status.success(), "the browser script failed:\n{}\n{rest:?}", browser_stderr(&stderr));
    let found: Value = serde_json::from_str(rest.last().map(String::as_str).unwrap_or("")).unwrap();

    // Each row showed the held call as the gateway lists it: id, tool, caller and arguments
    // (redacted by the gateway: the secret never reached the page).
    for (row, held) in [(&found["approved"], &first), (&found["denied"], &second), (&found["markup"], &third)] {
        assert_eq!(row["id"], held["id"], "{found}");
        assert_eq!(row["tool"], "e__side_effect", "{found}");
        assert!(row["by"].as_str().unwrap().starts_with("by app · destructive"), "{found}");
        assert_eq!(row["arguments"].as_str().unwrap(), held["arguments"].to_string(), "{found}");
    }
    assert!(!found.to_string().contains(SECRET), "the secret reached the page: {found}");
    assert!(found["approved"]["arguments"].as_str().unwrap().to_lowercase().contains("redacted"), "{found}");
    assert!(found["markup"]["arguments"].as_str().unwrap().contains(MARKUP), "shown as text: {found}");
    assert_eq!(found["markup_dom"], json!({"images": 0, "with_onerror": 0, "elements_in_detail": 0, "xss": null}));
    assert_eq!(found["list_after"], json!(["No call awaits approval."]), "{found}");
    assert_eq!((found["violations"].clone(), found["problems"].clone()), (json!([]), json!([])), "{found}");
}

#[tokio::test]
async fn health_probes_log_their_callers_at_debug_level_bounded() {
    let gw = Served::start("", "[log]\nlevel = \"sekisho=debug\"\nformat = \"json\"\n").await;
    let long_agent = format!("probe/{}", "x".repeat(300));
    for (path, agent, forwarded) in [("/healthz", "kube-probe/1.31", "10.0.0.9"), ("/readyz", long_agent.as_str(), "")]
    {
        let mut req = client().get(format!("{}{path}", gw.base)).header("user-agent", agent);
        if !forwarded.is_empty() {
            req = req.header("x-forwarded-for", forwarded);
        }
        assert!(req.send().await.unwrap().status().is_success(), "{path}");
    }
    let lines = eventually("both probes logged", Duration::from_secs(5), async || {
        let probes: Vec<serde_json::Value> = gw
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["message"] == "health probe")
            .collect();
        let ours = probes.iter().filter(|l| l["user_agent"] != "-").count();
        if ours >= 2 { Ok(probes) } else { Err(gw.logs()) }
    })
    .await;
    // The harness's own readiness probe (no User-Agent) is logged too, as `-`.
    assert!(lines.iter().any(|l| l["path"] == "/healthz" && l["user_agent"] == "-"));
    let healthz = lines.iter().find(|l| l["path"] == "/healthz" && l["user_agent"] != "-").unwrap();
    assert_eq!((healthz["level"].as_str(), healthz["user_agent"].as_str()), (Some("DEBUG"), Some("kube-probe/1.31")));
    assert_eq!(healthz["forwarded_for"], "10.0.0.9");
    let readyz = lines.iter().find(|l| l["path"] == "/readyz").unwrap();
    assert_eq!(readyz["user_agent"].as_str().unwrap(), &long_agent[..200], "cut to 200 bytes");
    assert_eq!(readyz["forwarded_for"], "-");
}
