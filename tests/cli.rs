//! The `sekisho` binary as users run it: `check` validates and redacts (URLs' user info and
//! query strings, API keys), `SEKISHO_<SECTION>__<KEY>` overrides every section and unknown
//! keys are errors everywhere, every example config loads, `stdio` serves a desktop client on
//! stdin/stdout (logs only on stderr), and `serve` exits 0 on SIGTERM without leaving a child
//! behind.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::eventually;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");

#[test]
fn every_example_config_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            sekisho::config::Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

#[test]
fn check_prints_upstreams_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        "[upstreams.a]\ncommand = \"npx\"\nargs = [\"x\"]\nenv = { TOKEN = \"hunter2\" }\n[upstreams.b]\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = { Authorization = \"Bearer s3cret\" }\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("a: stdio `npx x`") && text.contains("b: http http://127.0.0.1:9/mcp"), "{text}");
    assert!(!text.contains("hunter2") && !text.contains("s3cret"), "{text}");
    // The values in force are printed, defaults and [resilience] values included.
    assert!(text.contains("max_concurrent = 256") && text.contains("timeout = \"2m\""), "{text}");
    assert!(text.contains("[admission]") && text.contains("url = \"<none>\""), "{text}");
    std::fs::write(&cfg, "[server]\nlisten = \"0.0.0.0:1\"\n[upstreams.x]\n").unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("api_keys") && err.contains("upstreams.x"), "{err}");
}

/// `sekisho check --config <toml>` with environment `vars`: (exit code, stdout, stderr).
fn check(toml: &str, vars: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&cfg).envs(vars.iter().copied()).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// The lines `check` prints under a heading (`  [cache]` in "settings in force", or an
/// upstream's `  a: …` line), up to the next heading of the same indentation.
fn block<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(heading)).skip(1);
    let mut out = Vec::new();
    for line in lines.by_ref() {
        if !line.starts_with("    ") {
            break;
        }
        out.push(line.trim());
    }
    out
}

#[test]
fn every_section_takes_environment_overrides() {
    let vars = [
        ("SEKISHO_SERVER__SHUTDOWN_GRACE", "7s"),
        ("SEKISHO_SERVER__SEND_TIMEOUT", "11s"),
        ("SEKISHO_CATALOG__PAGE_SIZE", "33"),
        ("SEKISHO_LOG__FORMAT", "text"),
        ("SEKISHO_ADMISSION__QUEUE_SIZE", "77"),
        ("SEKISHO_RESILIENCE__BULKHEAD", "false"),
        ("SEKISHO_CACHE__TTL", "7m"),
        ("SEKISHO_IDEMPOTENCY__WINDOW", "9m"),
        ("SEKISHO_REDIS__PREFIX", "fleet9:"),
        ("SEKISHO_RATE_LIMITS__PER_KEY", "{ rps = 7 }"),
        ("SEKISHO_MONITOR__INTERVAL", "5s"),
        ("SEKISHO_UPSTREAMS__A__TIMEOUT", "13s"),
        // Not configuration (no `__`): scripts' own variables are left alone.
        ("SEKISHO_CACHE", "/tmp/somewhere"),
    ];
    let (code, text, err) = check("[upstreams.a]\ncommand = \"npx\"\n", &vars);
    assert_eq!(code, Some(0), "{err}");
    for (section, line) in [
        ("  [server]", "shutdown_grace = \"7s\""),
        ("  [server]", "send_timeout = \"11s\""),
        ("  [catalog]", "page_size = 33"),
        ("  [log]", "format = \"text\""),
        ("  [admission]", "queue_size = 77"),
        ("  [resilience]", "bulkhead = false"),
        ("  [cache]", "ttl = \"7m\""),
        ("  [idempotency]", "window = \"9m\""),
        ("  [redis]", "prefix = \"fleet9:\""),
        ("  [rate_limits]", "rps = 7.0"),
        ("  [monitor]", "interval = \"5s\""),
        ("  [monitor]", "samples_kept = 17280"),
        ("  a: stdio", "timeout = \"13s\""),
    ] {
        assert!(block(&text, section).contains(&line), "{section} should show {line}:\n{text}");
    }
}

#[test]
fn unknown_keys_are_errors_everywhere() {
    // In an API key's table (a misspelt role must not silently make an ordinary key).
    let keys = "[server]\napi_keys = [{ key = \"k-0123456789abcdef\", name = \"ops\", rol = \"admin\" }]\n";
    let (code, _, err) = check(keys, &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("rol"), "{err}");
    // In every section and nested table.
    for toml in [
        "[server]\nlisten_port = 1\n",
        "[catalog]\nseperator = \"__\"\n",
        "[log]\nlevle = \"info\"\n",
        "[admission]\nqueue = 1\n",
        "[resilience]\ntimeot = \"1s\"\n",
        "[resilience.retry]\nattempts = 2\n",
        "[resilience.breaker]\nfailures = 2\n",
        "[monitor]\nintervl = \"1s\"\n",
        "[cache]\nttl_ms = 1\n",
        "[idempotency]\nwindows = \"1m\"\n",
        "[redis]\nurls = \"x\"\n",
        "[upstreams.a]\ncommand = \"x\"\ncomand = \"y\"\n",
        "[upstreams.a]\ncommand = \"x\"\n[upstreams.a.tools.t]\ntimeot = \"1s\"\n",
        "[sevrer]\n",
    ] {
        let (code, _, err) = check(toml, &[]);
        assert_eq!(code, Some(2), "{toml} was accepted");
        assert!(err.contains("unknown"), "{toml}: {err}");
    }
    // And in the environment: a misspelt section or key is an error, not a silent no-op.
    let (code, _, err) = check("", &[("SEKISHO_CAHCE__TTL", "1m")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("SEKISHO_CAHCE__TTL"), "{err}");
    let (code, _, err) = check("", &[("SEKISHO_CACHE__TLL", "1m")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tll"), "{err}");
}

#[test]
fn check_redacts_url_credentials_query_strings_and_keys() {
    let toml = "[server]\napi_keys = [\"k-plain-0123456789abcdef\", { key = \"k-ops-0123456789abcdef\", name = \"ops\", role = \"admin\" },\
                { key = \"k-bot-0123456789abcdef\", name = \"bot\", rps = 2.5, burst = 4 }]\n\
                [upstreams.h]\nurl = \"https://svc:hunter2@mcp.internal.example:8443/mcp?token=t0k3n\"\n";
    let (code, text, err) = check(toml, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("h: http https://<redacted>@mcp.internal.example:8443/mcp?<redacted>"), "{text}");
    assert!(text.contains("ops: role=admin priority=medium max_priority=medium\n"), "{text}");
    assert!(text.contains("bot: role=client priority=medium max_priority=medium rate_limit=2.5/s burst=4"), "{text}");
    for secret in ["hunter2", "t0k3n", "svc:", "k-plain-0123456789abcdef", "k-ops-0123456789abcdef"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    // A URL in an error message is redacted too.
    let (code, _, err) = check("[upstreams.h]\nurl = \"ftp://svc:hunter2@files.internal/?token=t0k3n\"\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("ftp://<redacted>@files.internal/?<redacted>") && !err.contains("hunter2"), "{err}");
}

fn config_with_marked_upstream(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    // A uniquely named link to the echo upstream, so its processes can be found by name.
    let marker = format!("echo-marked-{}", std::process::id());
    let link = dir.join(&marker);
    std::os::unix::fs::symlink(common::echo_upstream(), &link).unwrap();
    let cfg = dir.join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "[log]\nlevel = \"info\"\n[upstreams.echo]\ncommand = {:?}\nargs = [\"stdio\"]\n",
            link.display().to_string()
        ),
    )
    .unwrap();
    (cfg, marker)
}

fn running(marker: &str) -> usize {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

// Async only to wait with `eventually`; the blocking pipe reads are fine, as nothing else runs
// on the test's runtime.
#[tokio::test]
async fn stdio_front_serves_a_desktop_client() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = config_with_marked_upstream(dir.path());
    let mut child = Command::new(BIN)
        .args(["stdio", "--config"])
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"desk","version":"1"}}}),
    );
    let init: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    // Wait for the upstream to be listed.
    let mut id = 10;
    eventually("the upstream's tools listed", Duration::from_secs(20), async || {
        id += 1;
        send(json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}));
        let list: Value = loop {
            let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).expect("stdout carries only JSON-RPC");
            if v["id"] == id {
                break v;
            }
        };
        if list["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()) { Ok(()) } else { Err(list) }
    })
    .await;
    send(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo__progress","arguments":{"steps":2,"ms":5},"_meta":{"progressToken":"p"}}}),
    );
    let mut progress = 0;
    let answer: Value = loop {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if v["method"] == "notifications/progress" {
            assert_eq!(v["params"]["progressToken"], "p");
            progress += 1;
        } else if v["id"] == 2 {
            break v;
        }
    };
    assert_eq!(progress, 2);
    assert_eq!(answer["result"]["content"][0]["text"], "done after 2 steps");
    send(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo__add","arguments":{"a":1,"b":1},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}));
    let modern: Value = loop {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if v["id"] == 3 {
            break v;
        }
    };
    assert_eq!(modern["result"]["resultType"], "complete");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "stdin EOF ends the gateway cleanly");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("upstream connected"), "logs go to stderr: {stderr}");
}

/// Whether process `pid` has installed a handler for SIGTERM (its bit in SigCgt of /proc).
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let caught =
        status.lines().find_map(|l| l.strip_prefix("SigCgt:")).and_then(|m| u64::from_str_radix(m.trim(), 16).ok());
    caught.is_some_and(|m| m & (1 << (nix::sys::signal::Signal::SIGTERM as u64 - 1)) != 0)
}

// Async only to wait with `eventually` (see above).
#[tokio::test]
async fn serve_exits_cleanly_on_sigterm_and_leaves_no_child() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, marker) = config_with_marked_upstream(dir.path());
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Signal a gateway that has started: its upstream is connected (its log says so) and it
    // handles SIGTERM (until then, SIGTERM would just kill it).
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (sink, stderr) = (std::sync::Arc::clone(&logs), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&line);
        }
    });
    eventually("the upstream connected and SIGTERM handled", Duration::from_secs(20), async || {
        let connected = logs.lock().unwrap().contains("upstream connected");
        match (running(&marker), connected, catches_sigterm(child.id())) {
            (n, true, true) if n > 0 => Ok(()),
            state => Err(format!("{state:?} (upstream processes, connected, SIGTERM handled)")),
        }
    })
    .await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(running(&marker), 0, "no upstream process outlives the gateway");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(stdout.is_empty(), "serve writes nothing to stdout: {stdout}");
}

#[test]
fn check_shows_oauth_and_approvals_without_the_issuers_secret() {
    let toml = "[auth.oauth]\nresource = \"http://gw.test/mcp\"\n[[auth.oauth.issuers]]\n\
                issuer = \"http://127.0.0.1:1\"\nclient_id = \"gw\"\nclient_secret = \"topsecret-value\"\n\
                [approvals]\ndestructive = \"approve\"\n[upstreams.t]\ncommand = \"true\"\n";
    let (code, out, err) = check(toml, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("auth: OAuth access tokens for http://gw.test/mcp from http://127.0.0.1:1"), "{out}");
    assert!(block(&out, "  [approvals]").contains(&"destructive = \"approve\""), "{out}");
    let oauth = block(&out, "  [auth.oauth]");
    assert!(oauth.contains(&"client_id = \"gw\"") && oauth.contains(&"instance_claim = \"\""), "{out}");
    assert!(!out.contains("topsecret") && !err.contains("topsecret"), "{out}{err}");
}
