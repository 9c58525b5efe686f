//! Argument validation end to end: `tools/call` arguments are checked against the tool's
//! `inputSchema` before the call leaves the gateway (wrong types, missing required members,
//! members a schema forbids: a tool result with `isError: true` for clients of 2025-11-25 and
//! later, SEP-1303, and -32602 for earlier ones; the upstream's call counter proves the call
//! never reached it); `validate = false` sends them unchecked; schemas a hostile upstream
//! lists (a remote `$ref`, a reference loop, a reference bomb, a huge or uncompilable schema)
//! neither hang the gateway nor make it fetch anything — their tools are simply not validated.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// How many `tools/call` requests the upstream behind `endpoint` has received, read with its
/// `count` tool (which counts itself).
async fn upstream_calls(endpoint: &str, tool: &str) -> u64 {
    text(&modern(endpoint, 900, "tools/call", json!({"name": tool, "arguments": {}})).await).parse().unwrap()
}

/// The message of a -32602 answer, after checking its code (clients before 2025-11-25).
fn refused_as_error(a: &Answer) -> String {
    assert_eq!(a.error_code(), Some(-32602), "{}", a.raw);
    a.body["error"]["message"].as_str().unwrap().to_string()
}

/// The text of a tool result with `isError: true` (SEP-1303: clients of 2025-11-25 and later,
/// both eras), after checking it is one.
fn refused(a: &Answer) -> String {
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.body["result"]["isError"], json!(true), "{}", a.raw);
    let message = text(a);
    assert!(message.starts_with("the arguments do not match the tool's inputSchema"), "{message}");
    message
}

#[tokio::test]
async fn arguments_that_break_the_schema_never_reach_the_upstream_in_either_era() {
    let http = HttpUpstream::start_with(&["--era", "dual", "--schema-tools"]).await;
    let gw = Gateway::start(&http.table("web")).await;
    let mcp = gw.url("/mcp");
    let before = upstream_calls(&mcp, "web__count").await;

    // Modern requests: each refused with a tool error result naming the path and the reason.
    let call = |name: &str, arguments: Value| json!({"name": name, "arguments": arguments});
    let wrong_type = modern(&mcp, 1, "tools/call", call("web__add", json!({"a": "one", "b": 2}))).await;
    assert_eq!(wrong_type.body["result"]["resultType"], "complete", "{}", wrong_type.raw);
    let m = refused(&wrong_type);
    assert!(m.contains(r#"arguments/a: "one" is not of type "number""#), "{m}");
    let missing = modern(&mcp, 2, "tools/call", call("web__add", json!({"a": 1}))).await;
    assert!(refused(&missing).contains(r#"arguments: "b" is a required property"#), "{}", missing.raw);
    let absent = modern(&mcp, 3, "tools/call", json!({"name": "web__add"})).await;
    assert!(refused(&absent).contains(r#""a" is a required property"#), "absent arguments are {{}}: {}", absent.raw);
    let extra = modern(&mcp, 4, "tools/call", call("web__strict_add", json!({"a": 1, "b": 2, "c": 3}))).await;
    assert!(refused(&extra).contains("'c' was unexpected"), "{}", extra.raw);
    // The per-upstream route validates too.
    let scoped = modern(&gw.url("/servers/web/mcp"), 5, "tools/call", call("add", json!({"a": true, "b": 2}))).await;
    assert!(refused(&scoped).contains("arguments/a"), "{}", scoped.raw);

    // A 2025-06-18 session (before SEP-1303): the same refusals, as -32602 errors in an HTTP 200.
    let s = Legacy::open(&mcp, "2025-06-18").await;
    let legacy = s.request(6, "tools/call", call("web__add", json!({"a": [1], "b": 2}))).await;
    assert_eq!(legacy.status, 200);
    assert!(refused_as_error(&legacy).contains(r#"arguments/a: [1] is not of type "number""#), "{}", legacy.raw);
    let legacy_extra = s.request(7, "tools/call", call("web__strict_add", json!({"a": 1, "b": 2, "z": 0}))).await;
    assert!(refused_as_error(&legacy_extra).contains("'z' was unexpected"), "{}", legacy_extra.raw);
    // A 2025-11-25 session: a tool error result, as the modern era.
    let current = Legacy::open(&mcp, "2025-11-25").await;
    let a = current.request(8, "tools/call", call("web__add", json!({"a": 1}))).await;
    assert!(refused(&a).contains(r#""b" is a required property"#), "{}", a.raw);
    assert!(a.body["result"].get("resultType").is_none(), "no modern envelope for a legacy client: {}", a.raw);

    // None of them reached the upstream: only the counter's own call counts.
    assert_eq!(upstream_calls(&mcp, "web__count").await, before + 1);

    // Valid calls pass, in both eras; extra members pass where the schema allows them.
    let ok = modern(&mcp, 8, "tools/call", call("web__add", json!({"a": 1, "b": 2}))).await;
    assert_eq!(text(&ok), "3", "{}", ok.raw);
    let ok_extra = modern(&mcp, 9, "tools/call", call("web__add", json!({"a": 1, "b": 2, "c": 3}))).await;
    assert_eq!(text(&ok_extra), "3", "{}", ok_extra.raw);
    let ok_legacy = s.request(10, "tools/call", call("web__strict_add", json!({"a": 2, "b": 2}))).await;
    assert_eq!(text(&ok_legacy), "4", "{}", ok_legacy.raw);
    assert_eq!(upstream_calls(&mcp, "web__count").await, before + 5);
}

#[tokio::test]
async fn validate_false_sends_arguments_unchecked() {
    let toml = format!("{}validate = false\n{}", stdio_upstream("raw", "legacy"), stdio_upstream("checked", "legacy"));
    let gw = Gateway::start(&toml).await;
    let mcp = gw.url("/mcp");
    let before = upstream_calls(&mcp, "raw__count").await;
    let bad = json!({"a": "one", "b": 2});
    let through = modern(&mcp, 1, "tools/call", json!({"name": "raw__add", "arguments": bad})).await;
    assert_eq!(text(&through), "2", "the upstream read \"one\" as nothing: {}", through.raw);
    assert_eq!(upstream_calls(&mcp, "raw__count").await, before + 2, "the bad call reached the upstream");
    // The other upstream still validates.
    let checked = modern(&mcp, 2, "tools/call", json!({"name": "checked__add", "arguments": bad})).await;
    refused(&checked);
    assert!(gw.readyz().await["upstreams"]["raw"]["status"] == "up");
}

/// A TCP listener on loopback that counts the connections made to it.
async fn listener() -> (String, Arc<AtomicUsize>) {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (format!("http://{addr}/schema.json"), connections)
}

#[tokio::test]
async fn hostile_schemas_neither_hang_nor_fetch_and_their_tools_pass_unvalidated() {
    let (remote, connections) = listener().await;
    let http = HttpUpstream::start_with(&["--era", "dual", "--schema-tools", "--remote-ref", &remote]).await;
    let stdio = format!(
        "[upstreams.local]\ncommand = {:?}\nargs = [\"stdio\", \"--era\", \"legacy\", \"--schema-tools\", \"--remote-ref\", {remote:?}]\n",
        echo_upstream().display().to_string()
    );
    let gw = Gateway::start(&format!("{}{stdio}", http.table("web"))).await;
    let mcp = gw.url("/mcp");
    let s = Legacy::open(&mcp, "2025-11-25").await;
    let args = json!({"x": "anything", "y": [1, 2, 3]});
    for ns in ["web", "local"] {
        for tool in ["remote_ref", "ref_loop", "ref_bomb", "huge_schema", "bad_schema"] {
            let name = format!("{ns}__{tool}");
            let params = json!({"name": name, "arguments": args});
            // Twice each (the second call finds the schema already judged), in both eras.
            for _ in 0..2 {
                let a = tokio::time::timeout(Duration::from_secs(20), modern(&mcp, 1, "tools/call", params.clone()))
                    .await
                    .unwrap_or_else(|_| panic!("{name} hung"));
                assert_eq!(text(&a), format!("{tool} got {args}"), "{name} is not validated: {}", a.raw);
                let a = s.request(2, "tools/call", params.clone()).await;
                assert_eq!(text(&a), format!("{tool} got {args}"), "{name}: {}", a.raw);
            }
        }
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the gateway fetched a schema");
    // The same upstreams' good schemas are still enforced.
    let a = modern(&mcp, 3, "tools/call", json!({"name": "local__strict_add", "arguments": {"a": 1}})).await;
    refused(&a);
}

/// The `sekisho` binary with its stderr in a file, `settled` at `base`.
struct Logged {
    child: std::process::Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Logged {
    async fn start(toml: &str) -> Logged {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = dir.path().join("sekisho.toml");
        std::fs::write(&cfg, format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[log]\nlevel = \"warn\"\n{toml}"))
            .unwrap();
        let log = dir.path().join("stderr.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sekisho"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        eventually("sekisho settled", Duration::from_secs(30), async || settled(&base, None).await).await;
        Logged { child, base, log, _dir: dir }
    }

    /// The warnings about `tool`'s schema so far.
    fn warnings(&self, tool: &str) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap();
        text.lines().filter(|l| l.contains("inputSchema is not used") && l.contains(tool)).count()
    }
}

#[tokio::test]
async fn an_unused_schema_is_warned_about_once_per_definition() {
    let toml = format!(
        "[upstreams.local]\ncommand = {:?}\nargs = [\"stdio\", \"--schema-tools\"]\n",
        echo_upstream().display().to_string()
    );
    let gw = Logged::start(&toml).await;
    let mcp = format!("{}/mcp", gw.base);
    let call = async |tool: &str| {
        let a = modern(&mcp, 1, "tools/call", json!({"name": tool, "arguments": {"x": 1}})).await;
        assert!(a.body["result"].is_object(), "{tool} passes unvalidated: {}", a.raw);
    };
    for _ in 0..3 {
        call("local__ref_loop").await;
        call("local__bad_schema").await;
    }
    // A catalog change that leaves these tools' definitions as they were.
    text(&modern(&mcp, 2, "tools/call", json!({"name": "local__change_tools", "arguments": {}})).await);
    eventually("the new tool listed", Duration::from_secs(10), async || {
        let names = tool_names(&modern(&mcp, 3, "tools/list", json!({})).await);
        if names.iter().any(|n| n.starts_with("local__dynamic")) { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await;
    call("local__ref_loop").await;
    call("local__bad_schema").await;
    // A refused call is refused after the change too.
    refused(&modern(&mcp, 4, "tools/call", json!({"name": "local__add", "arguments": {"a": 1}})).await);
    assert_eq!(gw.warnings("ref_loop"), 1, "{}", std::fs::read_to_string(&gw.log).unwrap());
    assert_eq!(gw.warnings("bad_schema"), 1);
    assert_eq!(gw.warnings("strict_add"), 0);
}
