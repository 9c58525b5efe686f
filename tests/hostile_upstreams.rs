//! Upstreams that misbehave, as careless or hostile servers do, against the real gateway: a
//! child that reads secrets from its environment, floods or breaks its stderr, answers with
//! more than `max_response_bytes` (stdio and HTTP), floods notifications, sends an SSE event
//! larger than any buffer on its notification stream, or an event id that cannot be sent back.
//! None of it may cost the gateway its memory, its log, another call, or the child its life.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");

/// `sekisho stdio` as a desktop client runs it: requests on stdin, answers on stdout, logs
/// (JSON lines) collected from stderr.
struct StdioGateway {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    logs: Arc<Mutex<Vec<String>>>,
    next_id: i64,
}

impl StdioGateway {
    fn start(config: &str, env: &[(&str, &str)]) -> (StdioGateway, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("s.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new(BIN)
            .args(["stdio", "--config"])
            .arg(&cfg)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (sink, stderr) = (Arc::clone(&logs), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut gw = StdioGateway { child, stdin, lines, logs, next_id: 1 };
        let init = gw.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
        );
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
        gw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        (gw, dir)
    }

    fn send(&mut self, v: Value) {
        writeln!(self.stdin.as_mut().unwrap(), "{v}").unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let v: Value = serde_json::from_str(&self.lines.next().unwrap().unwrap()).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    }

    /// Call `tool` once the catalog lists it, and return the text of its answer.
    async fn call_text(&mut self, tool: &str, arguments: Value) -> String {
        let a = self.call(tool, arguments).await;
        a.pointer("/result/content/0/text").and_then(Value::as_str).unwrap_or_else(|| panic!("{a}")).to_string()
    }

    async fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let this = std::cell::RefCell::new(self);
        eventually("the tool listed", Duration::from_secs(20), async || {
            let a = this.borrow_mut().request("tools/call", json!({"name": tool, "arguments": arguments}));
            if a.pointer("/error/message").and_then(Value::as_str).is_some_and(|m| m.contains("Unknown tool")) {
                Err(a)
            } else {
                Ok(a)
            }
        })
        .await
    }

    /// The gateway's log lines so far.
    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// End the conversation (stdin EOF) and return the gateway's log lines.
    fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
        assert!(self.child.wait().unwrap().success());
        // The log reader ends with the gateway's stderr.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.logs) > 1 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        self.logs.lock().unwrap().clone()
    }
}

/// The peak memory of this process so far (VmHWM, bytes). The gateway runs in it, so what it
/// buffers shows here; each test runs in its own process under nextest.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB");
    kib.trim().parse::<u64>().unwrap() * 1024
}

const MIB: u64 = 1024 * 1024;

fn echo_table(name: &str, extra: &str) -> String {
    format!(
        "[upstreams.{name}]\ncommand = {:?}\nargs = [\"stdio\", \"--era\", \"legacy\"]\nstartup_timeout = \"20s\"\n{extra}",
        echo_upstream().display().to_string()
    )
}

#[tokio::test]
async fn children_get_a_clean_environment_unless_they_opt_in() {
    let config = format!(
        "{}{}",
        echo_table("plain", "env = { CONFIGURED = \"yes\" }\n"),
        echo_table("inherits", "inherit_env = true\n")
    );
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // base64 of 32 bytes
    let env = [
        ("MY_SECRET_TOKEN", "hunter2"),
        ("SEKISHO_SERVER__SESSION_KEY", key),
        ("REDIS_URL", "redis://user:secret@127.0.0.1:1/0"),
        ("SEKISHO_REDIS__ENTRY_SECRET", "entry-secret-0123456789abcdef0123"),
        ("LC_TIME", "C"),
    ];
    let (mut gw, _dir) = StdioGateway::start(&config, &env);
    for (name, want) in [
        ("MY_SECRET_TOKEN", "<unset>"),
        ("SEKISHO_SERVER__SESSION_KEY", "<unset>"),
        ("REDIS_URL", "<unset>"),
        ("SEKISHO_REDIS__ENTRY_SECRET", "<unset>"),
        ("CONFIGURED", "yes"),
        ("LC_TIME", "C"),
    ] {
        assert_eq!(gw.call_text("plain__env", json!({"name": name})).await, want, "plain: {name}");
    }
    assert!(gw.call_text("plain__env", json!({"name": "PATH"})).await.contains('/'), "PATH is passed");
    // inherit_env passes the rest of the environment, but never sekisho's own variables.
    for (name, want) in
        [("MY_SECRET_TOKEN", "hunter2"), ("SEKISHO_SERVER__SESSION_KEY", "<unset>"), ("REDIS_URL", "<unset>")]
    {
        assert_eq!(gw.call_text("inherits__env", json!({"name": name})).await, want, "inherits: {name}");
    }
    gw.finish();
}

/// Log lines that carry the child's stderr text (a run of `e`s).
fn stderr_lines(logs: &[String]) -> Vec<&String> {
    logs.iter().filter(|l| l.contains("eeeeeeeeee")).collect()
}

#[tokio::test]
async fn a_long_stderr_line_is_cut_in_the_log_and_the_child_lives_on() {
    let (mut gw, _dir) = StdioGateway::start(&echo_table("noisy", ""), &[]);
    // One line of 100 kB: longer than any buffer; the child must not see its stderr break.
    assert_eq!(gw.call_text("noisy__stderr", json!({"bytes": 100_000, "lines": 1})).await, "wrote 1 lines");
    assert_eq!(gw.call_text("noisy__stderr", json!({"bytes": 20, "lines": 3})).await, "wrote 3 lines");
    // Still the same process: it counted every call.
    assert_eq!(gw.call_text("noisy__count", json!({})).await, "3");
    let logs = gw.finish();
    let lines = stderr_lines(&logs);
    let long: Vec<&&String> = lines.iter().filter(|l| l.contains(&"e".repeat(2000))).collect();
    assert_eq!(long.len(), 1, "the long line is logged once: {long:?}");
    assert!(long[0].len() < 4096 && long[0].contains("truncated_bytes"), "and cut: {} bytes", long[0].len());
    assert_eq!(lines.len(), 4, "the short lines are logged as they are");
}

#[tokio::test]
async fn stderr_logging_is_rate_limited_per_upstream() {
    let (mut gw, _dir) = StdioGateway::start(&echo_table("chatty", ""), &[]);
    let started = Instant::now();
    assert_eq!(gw.call_text("chatty__stderr", json!({"bytes": 20, "lines": 2000})).await, "wrote 2000 lines");
    // The child's pipe is drained whatever is logged: it answers again at once.
    assert_eq!(gw.call_text("chatty__count", json!({})).await, "2");
    // The gap is announced (after a second of quiet at the latest).
    eventually("the dropped lines announced", Duration::from_secs(10), async || {
        let logs = gw.logs();
        if logs.iter().any(|l| l.contains("stderr lines over the rate limit were not logged")) {
            Ok(())
        } else {
            Err("not yet")
        }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let logs = gw.finish();
    let logged = stderr_lines(&logs).len() as f64;
    // The default budget: 20 lines a second, in bursts of up to 5 s' worth.
    assert!(logged <= 100.0 + 20.0 * elapsed, "{logged} of 2000 lines logged in {elapsed:.1} s");
}

#[tokio::test]
async fn an_answer_over_max_response_bytes_fails_its_call_and_the_child_lives_on() {
    let gw = Gateway::start(&stdio_upstream("big", "legacy")).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let pid = |ready: &Value| ready["upstreams"]["big"]["replicas"][0]["pid"].as_u64();
    let before = pid(&gw.readyz().await);
    // 20 MiB: over the 16 MiB default (a line the gateway skips without keeping it).
    let started = Instant::now();
    let a = s.request(1, "tools/call", json!({"name": "big__big", "arguments": {"kib": 20 * 1024}})).await;
    assert_eq!(a.error_code(), Some(-32603), "{}", &a.raw[..a.raw.len().min(300)]);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("max_response_bytes"), "{}", a.raw);
    assert_eq!(a.body["error"]["data"]["limitBytes"], 16 * 1024 * 1024);
    assert!(started.elapsed() < Duration::from_secs(60), "failed when the answer was read, not at the deadline");
    // The connection goes on: same process, no restart.
    let a = s.request(2, "tools/call", json!({"name": "big__echo", "arguments": {"message": "after"}})).await;
    assert_eq!(text(&a), "after");
    let ready = gw.readyz().await;
    assert_eq!((pid(&ready), ready["upstreams"]["big"]["restarts"].as_u64()), (before, Some(0)), "{ready}");
    // A limit of its own applies per upstream.
    drop(s);
    let gw = Gateway::start(&format!("{}max_response_bytes = 65536\n", stdio_upstream("small", "legacy"))).await;
    let a = modern(&gw.url("/mcp"), 1, "tools/call", json!({"name": "small__big", "arguments": {"kib": 100}})).await;
    assert_eq!(a.body["error"]["data"]["limitBytes"], 65536, "{}", &a.raw[..a.raw.len().min(300)]);
    let a = modern(&gw.url("/mcp"), 2, "tools/call", json!({"name": "small__big", "arguments": {"kib": 32}})).await;
    assert_eq!(text(&a).len(), 32 * 1024);
}

#[tokio::test]
async fn an_http_answer_over_max_response_bytes_is_cut_off() {
    let http = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&http.table("web")).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let a = s.request(1, "tools/call", json!({"name": "web__big", "arguments": {"kib": 20 * 1024}})).await;
    assert_eq!(a.error_code(), Some(-32603), "{}", &a.raw[..a.raw.len().min(300)]);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("max_response_bytes"), "{}", a.raw);
    // Not a failure of the upstream: the breaker stays closed and the next call is served.
    let a = s.request(2, "tools/call", json!({"name": "web__echo", "arguments": {"message": "fine"}})).await;
    assert_eq!(text(&a), "fine");
    assert_eq!(gw.readyz().await["upstreams"]["web"]["replicas"][0]["breaker"], "closed");
}

#[tokio::test]
async fn the_notification_stream_recovers_after_an_oversized_event() {
    let http = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&http.table("web")).await;
    let s = Legacy::open(&gw.url("/servers/web/mcp"), "2025-11-25").await;
    let before = peak_memory();
    // 256 MiB in one event on the upstream's GET stream: far over what the gateway may hold.
    let a = s.request(1, "tools/call", json!({"name": "oversized_event", "arguments": {"mib": 256}})).await;
    assert_eq!(text(&a), "sent");
    // A list change announced on that stream afterwards still reaches the catalog.
    let a = s.request(2, "tools/call", json!({"name": "change_tools_quietly", "arguments": {}})).await;
    assert_eq!(text(&a), "added dynamic_1");
    eventually("the change after the oversized event seen", Duration::from_secs(60), async || {
        let names = tool_names(&s.request(3, "tools/list", json!({})).await);
        if names.contains(&"dynamic_1".to_string()) { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await;
    let grew = peak_memory().saturating_sub(before);
    assert!(grew < 128 * MIB, "the event was skipped, not buffered: peak memory grew {} MiB", grew / MIB);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"sekisho_upstream_discarded_total{upstream="web",kind="oversized_message"} 1"#));
}

#[tokio::test]
async fn an_event_id_that_cannot_be_sent_back_fails_the_call_not_the_gateway() {
    let http = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&http.table("web")).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    // The upstream ends the stream early with an event id holding a control character: the
    // gateway cannot resume it with Last-Event-ID.
    let a = s.request(1, "tools/call", json!({"name": "web__park_bad_id", "arguments": {"ms": 50}})).await;
    assert_eq!(a.error_code(), Some(-32603), "{}", a.raw);
    // The client reads the kind of failure in the gateway's words (the detail goes to the log).
    assert!(a.raw.contains("sent an invalid response"), "{}", a.raw);
    let a = s.request(2, "tools/call", json!({"name": "web__park", "arguments": {"ms": 50}})).await;
    assert_eq!(text(&a), "slept 50 ms", "resuming works for valid ids: {}", a.raw);
}

#[tokio::test]
async fn a_notification_flood_is_bounded_and_the_catalog_catches_up() {
    let gw = Gateway::start(&stdio_upstream("loud", "legacy")).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let before = peak_memory();
    // While the catalog follower waits 3 s for the upstream's tools/list, the upstream sends
    // 200,000 notifications of 1 KiB each (about 200 MiB if the gateway queued them all).
    let flood = json!({"n": 200_000, "pad": 1024, "stall_ms": 3000});
    let a = s.request(1, "tools/call", json!({"name": "loud__flood", "arguments": flood})).await;
    assert_eq!(text(&a), "flooded");
    // Whatever was dropped, a later change is seen: the follower re-lists after a flood.
    let a = s.request(2, "tools/call", json!({"name": "loud__change_tools_quietly", "arguments": {}})).await;
    assert_eq!(text(&a), "added dynamic_1");
    eventually("the change after the flood seen", Duration::from_secs(60), async || {
        let names = tool_names(&s.request(3, "tools/list", json!({})).await);
        if names.contains(&"loud__dynamic_1".to_string()) { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await;
    let grew = peak_memory().saturating_sub(before);
    assert!(grew < 128 * MIB, "the queue is bounded: peak memory grew {} MiB", grew / MIB);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let dropped = metrics
        .lines()
        .find(|l| l.starts_with(r#"sekisho_upstream_discarded_total{upstream="loud",kind="signal"}"#))
        .unwrap_or_else(|| panic!("no signal dropped: {metrics}"));
    assert!(!dropped.ends_with(" 0"), "{dropped}");
}
