//! The gateway's own MCP tools (`sekisho__performance`, `__metrics`, `__alerts`, `__health`;
//! `sekisho::report::tools`) against the real `sekisho serve` binary over loopback with the
//! echo upstream as a real stdio child: an admin key sees them in `tools/list` with their
//! `outputSchema`s and calls each, in both protocol eras, and every `structuredContent` (and
//! the admin API's `/admin/performance` and `/admin/health`, computed by the same functions)
//! validates against its schema; a client key neither sees them nor can call them (the
//! unknown-tool error, word for word); `[self_tools]` turns them off or shows them to all.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-0123456789abcdef";
const APP: &str = "app-key-0123456789abcdef";
const OWN: [&str; 5] =
    ["sekisho__performance", "sekisho__metrics", "sekisho__alerts", "sekisho__health", "sekisho__recommendations"];

/// An admin and a client key, the monitor every second, a rule that never fires, and `own`.
fn config(own: &str) -> String {
    format!(
        "api_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}, {{ key = {APP:?}, name = \"app\" }}]\n\
         [monitor]\ninterval = \"1s\"\n\
         [alerts]\nrules = [{{ name = \"slow\", metric = \"latency_p95_ms\", op = \">\", threshold = 60000, severity = \"high\" }}]\n\
         {own}\n{}trusted = true\n",
        stdio_upstream("e", "legacy")
    )
}

/// `structuredContent` of a `tools/call` answer, checked: not an error, its text block is the
/// same JSON, and it validates against `schema`.
fn structured(answer: &Answer, schema: &Value) -> Value {
    let result = &answer.body["result"];
    assert_eq!(result["isError"], false, "{}", answer.raw);
    let content = result["structuredContent"].clone();
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, content, "the text block carries the same JSON");
    conforms(&content, schema);
    content
}

fn conforms(value: &Value, schema: &Value) {
    let validator = jsonschema::validator_for(schema).expect("the outputSchema compiles");
    let errors: Vec<String> = validator.iter_errors(value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{value:#} breaks its schema: {errors:#?}");
}

/// The gateway's own tools in a `tools/list` answer, by name.
fn own_tools(list: &Answer) -> serde_json::Map<String, Value> {
    let tools = list.body["result"]["tools"].as_array().unwrap_or_else(|| panic!("{}", list.raw));
    tools
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with("sekisho__"))
        .map(|t| (t["name"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

/// A legacy (2025-06-18) session with a bearer key: `initialize`, then `request` posts.
struct Session {
    url: String,
    id: String,
}

impl Session {
    async fn open(url: &str, key: &str) -> Session {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
        let resp = client()
            .post(url)
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .unwrap();
        let id = resp.headers()["mcp-session-id"].to_str().unwrap().to_string();
        let s = Session { url: url.into(), id };
        s.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        s
    }

    async fn post(&self, body: Value) -> Answer {
        let req = client()
            .post(&self.url)
            .bearer_auth(ADMIN)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-06-18");
        read(req.json(&body).send().await.unwrap()).await
    }

    async fn request(&self, id: i64, method: &str, params: Value) -> Answer {
        self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await
    }
}

async fn admin_get(base: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(format!("{base}{path}"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn an_admin_sees_and_calls_every_gateway_tool_and_each_answer_conforms_to_its_schema() {
    let gw = Served::start(&config(""), "").await;
    let mcp = format!("{}/mcp", gw.base);
    eventually("the upstream listed", Duration::from_secs(30), async || settled(&gw.base, Some(ADMIN)).await).await;
    for i in 0..3 {
        let a =
            modern_as(&mcp, Some(APP), i, "tools/call", json!({"name": "e__add", "arguments": {"a": 1, "b": 2}})).await;
        assert_eq!(a.body["result"]["structuredContent"]["sum"], 3.0, "{}", a.raw);
    }
    let list = modern_as(&mcp, Some(ADMIN), 1, "tools/list", json!({})).await;
    let own = own_tools(&list);
    assert_eq!(own.keys().collect::<Vec<_>>(), OWN, "listed after the upstreams' tools, in registry order");
    assert!(tool_names(&list).contains(&"e__echo".to_string()));
    for tool in own.values() {
        assert_eq!(tool["annotations"]["readOnlyHint"], true);
        assert_eq!(tool["inputSchema"]["type"], "object");
        assert_eq!(tool["outputSchema"]["type"], "object");
    }
    let schema = |name: &str| own[name]["outputSchema"].clone();

    // The monitor's first sample comes one interval after start, with the calls above in it.
    let metrics = eventually("a sample with the calls", Duration::from_secs(15), async || {
        let a = modern_as(
            &mcp,
            Some(ADMIN),
            2,
            "tools/call",
            json!({"name": "sekisho__metrics", "arguments": {"period": "1h"}}),
        )
        .await;
        let m = structured(&a, &schema("sekisho__metrics"));
        if m["summary"]["upstream_calls"].as_u64() >= Some(3) { Ok(m) } else { Err(m.to_string()) }
    })
    .await;
    assert_eq!(metrics["monitor"], true);
    assert_eq!(metrics["interval_ms"], 1000);
    assert!(metrics["latest"]["timestamp_ms"].as_u64().unwrap() > 0);

    let a =
        modern_as(&mcp, Some(ADMIN), 3, "tools/call", json!({"name": "sekisho__performance", "arguments": {}})).await;
    assert_eq!(a.body["result"]["resultType"], "complete", "a modern client's result: {}", a.raw);
    let perf = structured(&a, &schema("sekisho__performance"));
    assert_eq!(perf["overall_health"], "healthy", "{perf}");
    assert_eq!(perf["period_ms"], 3_600_000);
    assert!(perf["average_response_time"].as_f64().unwrap() > 0.0, "{perf}");
    assert_eq!(perf["error_rate"], 0.0);
    assert!(perf["cost_efficiency"].as_f64().unwrap() > 0.0, "two of the three adds were cache hits: {perf}");
    assert!(perf["cost"].is_null());

    let a = modern_as(&mcp, Some(ADMIN), 4, "tools/call", json!({"name": "sekisho__health"})).await;
    let health = structured(&a, &schema("sekisho__health"));
    assert_eq!((health["status"].as_str(), health["ready"].as_bool()), (Some("healthy"), Some(true)), "{health}");
    assert_eq!(health["upstreams"][0]["name"], "e");
    assert_eq!(health["upstreams"][0]["replicas"][0]["breaker"], "closed");

    // The recommendations: the config's own findings at least (its admin key is written inline).
    let a = modern_as(&mcp, Some(ADMIN), 4, "tools/call", json!({"name": "sekisho__recommendations"})).await;
    let recs = structured(&a, &schema("sekisho__recommendations"));
    assert_eq!(recs["period_ms"], 3_600_000);
    let all = recs["recommendations"].as_array().unwrap();
    assert_eq!(recs["summary"]["total"].as_u64(), Some(all.len() as u64));
    assert!(all.iter().any(|r| r["category"] == "security" && r["rule"] == "inline-secrets"), "{recs}");
    let (status, body) = admin_get(&gw.base, "/admin/recommendations", Some(ADMIN)).await;
    assert_eq!(status, 200);
    conforms(&body, &schema("sekisho__recommendations"));

    // The same tools in the legacy era, through a session of an admin key.
    let s = Session::open(&mcp, ADMIN).await;
    let legacy = s.request(5, "tools/list", json!({})).await;
    assert_eq!(own_tools(&legacy).keys().collect::<Vec<_>>(), OWN);
    let a = s.request(6, "tools/call", json!({"name": "sekisho__alerts", "arguments": {"history": true}})).await;
    assert!(a.body["result"].get("resultType").is_none(), "no modern member for a legacy client: {}", a.raw);
    let alerts = structured(&a, &schema("sekisho__alerts"));
    assert_eq!((alerts["enabled"].as_bool(), alerts["firing"].as_u64()), (Some(true), Some(0)));
    assert!(alerts["history"].is_array());
    let a = s.request(7, "tools/call", json!({"name": "sekisho__health", "arguments": {}})).await;
    structured(&a, &schema("sekisho__health"));

    // A bad argument is a tool error, not a failure of the call.
    for args in [json!({"period": "forever"}), json!({"period": 5}), json!({"nope": 1})] {
        let a =
            modern_as(&mcp, Some(ADMIN), 8, "tools/call", json!({"name": "sekisho__performance", "arguments": args}))
                .await;
        assert_eq!(a.body["result"]["isError"], true, "{}", a.raw);
        assert!(a.body["result"].get("structuredContent").is_none());
    }

    // The admin API answers with the same computation and shape.
    let (status, perf) = admin_get(&gw.base, "/admin/performance?period=24h", Some(ADMIN)).await;
    assert_eq!(status, 200);
    conforms(&perf, &schema("sekisho__performance"));
    assert_eq!(perf["period_ms"], 86_400_000);
    let (status, health) = admin_get(&gw.base, "/admin/health", Some(ADMIN)).await;
    assert_eq!(status, 200);
    conforms(&health, &schema("sekisho__health"));
    let (status, body) = admin_get(&gw.base, "/admin/performance?period=forever", Some(ADMIN)).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_client_key_neither_sees_nor_calls_them_and_the_admin_api_refuses_it() {
    let gw = Served::start(&config(""), "").await;
    let mcp = format!("{}/mcp", gw.base);
    eventually("the upstream listed", Duration::from_secs(30), async || settled(&gw.base, Some(ADMIN)).await).await;
    let list = modern_as(&mcp, Some(APP), 1, "tools/list", json!({})).await;
    assert!(own_tools(&list).is_empty(), "{}", list.raw);
    assert!(tool_names(&list).contains(&"e__echo".to_string()));
    for name in OWN {
        let own = modern_as(&mcp, Some(APP), 2, "tools/call", json!({"name": name, "arguments": {}})).await;
        let unknown_name = name.replace("sekisho__", "nosuch__");
        let unknown = modern_as(&mcp, Some(APP), 2, "tools/call", json!({"name": unknown_name, "arguments": {}})).await;
        assert_eq!(own.status, unknown.status);
        assert_eq!(own.error_code(), unknown.error_code(), "{}", own.raw);
        assert!(own.error_code().is_some(), "{}", own.raw);
        let said = own.body["error"]["message"].as_str().unwrap().replace(name, "<name>");
        assert_eq!(said, unknown.body["error"]["message"].as_str().unwrap().replace(&unknown_name, "<name>"));
    }
    // Nor through the per-upstream route.
    let a = modern_as(&format!("{}/servers/e/mcp", gw.base), Some(ADMIN), 3, "tools/list", json!({})).await;
    assert!(own_tools(&a).is_empty(), "{}", a.raw);
    for path in ["/admin/performance", "/admin/health"] {
        assert_eq!(admin_get(&gw.base, path, Some(APP)).await.0, 403, "{path}");
        assert_eq!(admin_get(&gw.base, path, None).await.0, 401, "{path}");
    }
    let drain = client().post(format!("{}/admin/drain", gw.base)).bearer_auth(APP).send().await.unwrap();
    assert_eq!(drain.status(), 403);
    assert_eq!(admin_get(&gw.base, "/readyz", None).await.0, 200, "a refused drain drains nothing");
}

#[tokio::test]
async fn self_tools_can_be_shown_to_every_caller_or_turned_off() {
    let gw = Gateway::start(&format!("[server]\n{}", config("[self_tools]\nvisible_to = \"all\"\n"))).await;
    let list = modern_as(&gw.url("/mcp"), Some(APP), 1, "tools/list", json!({})).await;
    assert_eq!(own_tools(&list).len(), OWN.len(), "{}", list.raw);
    let a = modern_as(&gw.url("/mcp"), Some(APP), 2, "tools/call", json!({"name": "sekisho__health"})).await;
    assert_eq!(a.body["result"]["structuredContent"]["status"], "healthy", "{}", a.raw);
    gw.shutdown().await.unwrap();

    let gw = Gateway::start(&format!("[server]\n{}", config("[self_tools]\nenabled = false\n"))).await;
    let list = modern_as(&gw.url("/mcp"), Some(ADMIN), 1, "tools/list", json!({})).await;
    assert!(own_tools(&list).is_empty(), "{}", list.raw);
    let a = modern_as(&gw.url("/mcp"), Some(ADMIN), 2, "tools/call", json!({"name": "sekisho__health"})).await;
    assert!(a.error_code().is_some(), "an unknown tool now: {}", a.raw);
    gw.shutdown().await.unwrap();

    // Without keys nobody is an admin by key, so "admins" shows them to nobody.
    let gw = Gateway::start(&stdio_upstream("e", "legacy")).await;
    assert!(own_tools(&modern(&gw.url("/mcp"), 1, "tools/list", json!({})).await).is_empty());
    gw.shutdown().await.unwrap();
}
