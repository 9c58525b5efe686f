//! Approval of risky calls (issue 15 item 3), end to end: the real gateway on loopback in front
//! of the echo upstream as a real child process, whose `side_effect` tool is annotated
//! `destructiveHint: true` and writes a line to a file each time it runs (so "never sent" is
//! checked on the upstream's side). The client approves or declines through elicitation (a
//! legacy client on its call's stream; a modern client through `input_required`), or an
//! operator decides through `sekisho approvals` (the real binary); no answer refuses the call;
//! dry runs are answered without being sent; a second caller can neither see nor decide the
//! first's held call; every decision lands in the audit log.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::open_legacy_session as open;
use common::{Answer, Gateway, client, eventually, modern_as, next_event, read, sekisho_cli, stdio_upstream};
use serde_json::{Value, json};

const ALICE: &str = "alice-key-0123456789abcdef";
const BOB: &str = "bob-key-0123456789abcdef";
const OPS: &str = "ops-admin-key-0123456789abcdef";
const SECRET: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";

struct Setup {
    gw: Gateway,
    dir: tempfile::TempDir,
}

impl Setup {
    /// A gateway whose destructive tools need approval within `timeout`, and a deny rule for
    /// `e__crash`; audit to a JSON-lines file.
    async fn start(timeout: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let effects = dir.path().join("effects");
        let audit = dir.path().join("audit.jsonl");
        let toml = format!(
            "[server]\napi_keys = [{{ key = {ALICE:?}, name = \"alice\" }}, {{ key = {BOB:?}, name = \"bob\" }}, \
             {{ key = {OPS:?}, name = \"ops\", role = \"admin\" }}]\ninput_timeout = \"30s\"\n\
             [approvals]\ndestructive = \"approve\"\ntimeout = {timeout:?}\n\
             rules = [{{ upstream = \"e\", tool = \"crash\", action = \"deny\" }}]\n\
             [audit]\nenabled = true\npath = {:?}\nflush_interval = \"50ms\"\n\
             {}env = {{ ECHO_EFFECTS_FILE = {:?} }}\n",
            audit.display().to_string(),
            stdio_upstream("e", "legacy"),
            effects.display().to_string(),
        );
        Setup { gw: Gateway::start(&toml).await, dir }
    }

    fn url(&self) -> String {
        self.gw.url("/mcp")
    }

    /// Times `side_effect` ran upstream.
    fn effects(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("effects")).map(|s| s.lines().count()).unwrap_or(0)
    }

    fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }
}

/// The approval records of the audit log: (decider, outcome, via).
fn approvals_in(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "approval")
        .map(|r| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&r["caller"]), s(&r["outcome"]), s(&r["detail"]["via"]))
        })
        .collect()
}

fn legacy(url: &str, bearer: &str, session: &str) -> reqwest::RequestBuilder {
    client()
        .post(url)
        .bearer_auth(bearer)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", session)
}

fn side_effect(id: i64, meta: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "e__side_effect", "arguments": {"crash": false, "token": SECRET}, "_meta": meta}})
}

/// Call `side_effect` on a legacy session declaring elicitation, answer the gateway's
/// `elicitation/create` with `answer` (none: stay silent), and return the request the client
/// was asked and the call's final answer.
async fn elicited(s: &Setup, id: i64, meta: Value, answer: Option<Value>) -> (Value, Value) {
    elicited_with(s, id, meta, answer, false).await
}

/// [`elicited`]; with `intruder`, Bob first answers Alice's elicitation (its id) with an
/// accept on a session of his own.
async fn elicited_with(s: &Setup, id: i64, meta: Value, answer: Option<Value>, intruder: bool) -> (Value, Value) {
    let url = s.url();
    let session = open(&url, ALICE, json!({"elicitation": {}})).await;
    let resp = legacy(&url, ALICE, &session).json(&side_effect(id, meta)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let asked = next_event(&mut stream, &mut buf, Duration::from_secs(20), |e| e["method"] == "elicitation/create")
        .await
        .expect("the gateway asked the client on the call's stream");
    if intruder {
        let bobs = open(&url, BOB, json!({"elicitation": {}})).await;
        let accept =
            json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"approve": true}}});
        let _ = legacy(&url, BOB, &bobs).json(&accept).send().await.unwrap();
    }
    if let Some(result) = answer {
        let reply = json!({"jsonrpc": "2.0", "id": asked["id"], "result": result});
        let posted = legacy(&url, ALICE, &session).json(&reply).send().await.unwrap();
        assert_eq!(posted.status(), 202);
    }
    let done = next_event(&mut stream, &mut buf, Duration::from_secs(30), |e| e["id"] == id).await.expect("the answer");
    (asked, done)
}

#[tokio::test]
async fn a_legacy_client_approves_or_declines_through_elicitation() {
    let s = Setup::start("30s").await;
    let accept = json!({"action": "accept", "content": {"approve": true}});
    let (asked, done) = elicited(&s, 1, json!({}), Some(accept)).await;
    // What the client was shown: the tool, its upstream, its arguments with the secret redacted.
    let message = asked["params"]["message"].as_str().unwrap();
    assert!(message.contains("e__side_effect") && message.contains("crash"), "{message}");
    assert!(!asked.to_string().contains(SECRET), "the secret was shown: {asked}");
    assert_eq!(asked["params"]["mode"], "form");
    assert_eq!(asked["params"]["requestedSchema"]["properties"]["approve"]["type"], "boolean");
    assert_eq!(done.pointer("/result/content/0/text"), Some(&json!("effect recorded")), "{done}");
    assert_eq!(s.effects(), 1);

    // Declined (or accepted with approve = false): -32023, and the upstream never saw it.
    // Bob's accept of Alice's elicitation, sent on his own session, approves nothing.
    for answer in [json!({"action": "decline"}), json!({"action": "accept", "content": {"approve": false}})] {
        let (_, done) = elicited_with(&s, 2, json!({}), Some(answer), true).await;
        assert_eq!(done.pointer("/error/code"), Some(&json!(-32023)), "{done}");
        assert_eq!(done.pointer("/error/data/reason"), Some(&json!("declined")), "{done}");
    }
    assert_eq!(s.effects(), 1, "a declined call never reaches the upstream");

    // A dry run: approved, answered by the gateway, not sent.
    let accept = json!({"action": "accept", "content": {"approve": true}});
    let (_, done) = elicited(&s, 3, json!({"io.sekisho/dryRun": true}), Some(accept)).await;
    assert_eq!(done.pointer("/result/_meta/io.sekisho~1dryRun"), Some(&json!(true)), "{done}");
    assert!(done.pointer("/result/content/0/text").unwrap().as_str().unwrap().starts_with("dry run"), "{done}");
    assert_eq!(s.effects(), 1, "a dry run is not sent");

    // A plain deny rule: FORBIDDEN, without asking anyone.
    let session = open(&s.url(), ALICE, json!({"elicitation": {}})).await;
    let denied = read(
        legacy(&s.url(), ALICE, &session)
            .json(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "e__crash", "arguments": {}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(denied.error_code(), Some(-32012), "{}", denied.raw);

    let audit = s.audit_path();
    let records = eventually("the decisions in the audit log", Duration::from_secs(10), async || {
        let r = approvals_in(&audit);
        if r.len() >= 4 { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await;
    let outcomes: Vec<&str> = records.iter().map(|(_, o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["approved", "declined", "declined", "approved"], "{records:?}");
    assert!(records.iter().all(|(who, _, via)| who == "alice" && via == "elicitation"), "{records:?}");
}

#[tokio::test]
async fn an_ignored_elicitation_times_out_and_the_call_is_refused() {
    let s = Setup::start("1s").await;
    let (_, done) = elicited(&s, 1, json!({}), None).await;
    assert_eq!(done.pointer("/error/code"), Some(&json!(-32024)), "{done}");
    assert_eq!(s.effects(), 0);

    // A modern client that comes back after the deadline with its approval is refused too.
    let first = modern_side_effect(&s.url(), ALICE, 2, json!({})).await;
    let result = &first.body["result"];
    assert_eq!(result["resultType"], "input_required", "{}", first.raw);
    let key = result["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let state = result["requestState"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let accept = json!({ key: {"action": "accept", "content": {"approve": true}} });
    let late = modern_side_effect(&s.url(), ALICE, 3, json!({"inputResponses": accept, "requestState": state})).await;
    assert_eq!(late.error_code(), Some(-32024), "{}", late.raw);
    assert_eq!(s.effects(), 0, "an approval after the deadline runs nothing");
    let audit = s.audit_path();
    eventually("the expiry in the audit log", Duration::from_secs(10), async || {
        let r = approvals_in(&audit);
        if r.iter().any(|(_, o, _)| o == "expired") { Ok(()) } else { Err(format!("{r:?}")) }
    })
    .await;
}

/// A modern `tools/call` of `side_effect` as `bearer` declaring elicitation, with extra params.
async fn modern_side_effect(url: &str, bearer: &str, id: i64, extra: Value) -> Answer {
    let mut params = json!({"name": "e__side_effect", "arguments": {"crash": false},
                            "_meta": {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    modern_as(url, Some(bearer), id, "tools/call", params).await
}

#[tokio::test]
async fn a_modern_client_approves_through_input_required_and_no_one_else_can() {
    let s = Setup::start("30s").await;
    let url = s.url();
    let first = modern_side_effect(&url, ALICE, 1, json!({})).await;
    let result = &first.body["result"];
    assert_eq!(result["resultType"], "input_required", "{}", first.raw);
    let (key, request) = result["inputRequests"].as_object().unwrap().iter().next().unwrap();
    assert_eq!(request["method"], "elicitation/create", "{}", first.raw);
    let state = result["requestState"].as_str().unwrap().to_string();
    let accept = json!({ key.clone(): {"action": "accept", "content": {"approve": true}} });

    // Bob, holding Alice's state, cannot approve her call.
    let stolen = modern_side_effect(&url, BOB, 2, json!({"inputResponses": accept, "requestState": state})).await;
    assert_eq!(stolen.error_code(), Some(-32602), "{}", stolen.raw);
    assert_eq!(s.effects(), 0);

    let done = modern_side_effect(&url, ALICE, 3, json!({"inputResponses": accept, "requestState": state})).await;
    assert_eq!(done.body.pointer("/result/content/0/text"), Some(&json!("effect recorded")), "{}", done.raw);
    assert_eq!(s.effects(), 1);

    // Declined the same way: -32023, never sent.
    let first = modern_side_effect(&url, ALICE, 4, json!({})).await;
    let result = &first.body["result"];
    let key = result["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let state = result["requestState"].as_str().unwrap().to_string();
    let decline = json!({ key: {"action": "decline"} });
    let done = modern_side_effect(&url, ALICE, 5, json!({"inputResponses": decline, "requestState": state})).await;
    assert_eq!(done.error_code(), Some(-32023), "{}", done.raw);
    assert_eq!(s.effects(), 1);
}

/// `sekisho approvals ARGS --url` with `key` as the admin key.
async fn approvals_cli(gw: &Gateway, key: &str, args: &[&str]) -> common::CliRun {
    let mut all = vec!["approvals"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", &gw.base]);
    sekisho_cli(&all, &[("SEKISHO_ADMIN_KEY", key)]).await
}

/// Start a call of Alice's that cannot be asked (no elicitation capability) and wait until it
/// is held; the call's task and the held call as listed.
async fn held(s: &Setup, id: i64) -> (tokio::task::JoinHandle<Answer>, Value) {
    let url = s.url();
    let session = open(&url, ALICE, json!({})).await;
    let call = tokio::spawn(async move {
        read(legacy(&url, ALICE, &session).json(&side_effect(id, json!({}))).send().await.unwrap()).await
    });
    let listed = eventually("the call held for an operator", Duration::from_secs(20), async || {
        let run = approvals_cli(&s.gw, OPS, &["list", "--json"]).await;
        let v: Value = serde_json::from_str(&run.out).map_err(|e| format!("{e}: {} {}", run.out, run.err))?;
        match v["pending"].as_array().and_then(|p| p.first()) {
            Some(p) => Ok(p.clone()),
            None => Err(v.to_string()),
        }
    })
    .await;
    (call, listed)
}

#[tokio::test]
async fn an_operator_approves_or_denies_a_held_call_and_other_callers_cannot() {
    let s = Setup::start("60s").await;
    let (call, listed) = held(&s, 1).await;
    assert_eq!(listed["caller"], "alice");
    assert_eq!(listed["tool"], "e__side_effect");
    assert_eq!(listed["reason"], "destructive");
    assert_eq!(listed["id"].as_str().unwrap().len(), 32);
    assert!(!listed.to_string().contains(SECRET), "the secret was listed: {listed}");
    let id = listed["id"].as_str().unwrap().to_string();

    // The table names it too.
    let table = approvals_cli(&s.gw, OPS, &["list"]).await;
    assert!(table.ok && table.out.contains(&id), "{} {}", table.out, table.err);
    // Bob is no admin: he can neither see nor decide it (the operator path), nor can Alice.
    for key in [BOB, ALICE] {
        let run = approvals_cli(&s.gw, key, &["approve", &id]).await;
        assert!(!run.ok && run.err.contains("403"), "{} {}", run.out, run.err);
        let seen = client().get(s.gw.url("/admin/approvals")).bearer_auth(key).send().await.unwrap();
        assert_eq!(seen.status(), 403);
    }
    assert_eq!(s.effects(), 0, "still held");

    let approved = approvals_cli(&s.gw, OPS, &["approve", &id]).await;
    assert!(approved.ok && approved.out.contains("approved"), "{} {}", approved.out, approved.err);
    let done = call.await.unwrap();
    assert_eq!(done.body.pointer("/result/content/0/text"), Some(&json!("effect recorded")), "{}", done.raw);
    assert_eq!(s.effects(), 1);
    // Decided once: the id is spent.
    let again = approvals_cli(&s.gw, OPS, &["approve", &id]).await;
    assert!(!again.ok && again.err.contains("404"), "{} {}", again.out, again.err);

    let (call, listed) = held(&s, 2).await;
    let id = listed["id"].as_str().unwrap();
    let denied = approvals_cli(&s.gw, OPS, &["deny", id, "--note", "not on a Friday"]).await;
    assert!(denied.ok, "{} {}", denied.out, denied.err);
    let done = call.await.unwrap();
    assert_eq!(done.error_code(), Some(-32023), "{}", done.raw);
    assert_eq!(done.body.pointer("/error/data/reason"), Some(&json!("denied")), "{}", done.raw);
    assert!(done.raw.contains("not on a Friday"), "{}", done.raw);
    assert_eq!(s.effects(), 1, "a denied call never reaches the upstream");

    // A held call whose client goes away is forgotten at once (its slot is free again).
    let (call, listed) = held(&s, 3).await;
    call.abort();
    eventually("the abandoned call forgotten", Duration::from_secs(20), async || {
        let run = approvals_cli(&s.gw, OPS, &["list", "--json"]).await;
        let v: Value = serde_json::from_str(&run.out).map_err(|e| format!("{e}: {}", run.err))?;
        if v["pending"] == json!([]) { Ok(()) } else { Err(v.to_string()) }
    })
    .await;
    let gone = approvals_cli(&s.gw, OPS, &["approve", listed["id"].as_str().unwrap()]).await;
    assert!(!gone.ok && gone.err.contains("404"), "{} {}", gone.out, gone.err);
    assert_eq!(s.effects(), 1);

    let audit = s.audit_path();
    let records = eventually("the operator's decisions in the audit log", Duration::from_secs(10), async || {
        let r = approvals_in(&audit);
        if r.len() >= 2 { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await;
    assert_eq!(
        records,
        [("ops".into(), "approved".into(), "operator".into()), ("ops".into(), "denied".into(), "operator".into())]
    );
}

#[tokio::test]
async fn a_held_call_without_a_decision_is_refused_at_its_deadline() {
    let s = Setup::start("1s").await;
    let url = s.url();
    let session = open(&url, ALICE, json!({})).await;
    let done = read(legacy(&url, ALICE, &session).json(&side_effect(1, json!({}))).send().await.unwrap()).await;
    assert_eq!(done.error_code(), Some(-32024), "{}", done.raw);
    assert_eq!(done.body.pointer("/error/data/timeoutMs"), Some(&json!(1000)), "{}", done.raw);
    assert_eq!(s.effects(), 0);
    let list = approvals_cli(&s.gw, OPS, &["list", "--json"]).await;
    let v: Value = serde_json::from_str(&list.out).unwrap();
    assert_eq!(v["pending"], json!([]), "an expired call is forgotten");
    let audit = s.audit_path();
    eventually("the expiry in the audit log", Duration::from_secs(10), async || {
        let r = approvals_in(&audit);
        if r.contains(&("alice".into(), "expired".into(), "operator".into())) { Ok(()) } else { Err(format!("{r:?}")) }
    })
    .await;
}

#[tokio::test]
async fn a_dry_run_of_an_allowed_tool_is_answered_without_the_upstream() {
    let s = Setup::start("30s").await;
    let url = s.url();
    let count = |a: &Answer| a.body.pointer("/result/content/0/text").and_then(Value::as_str).unwrap().to_string();
    let before = modern_as(&url, Some(ALICE), 1, "tools/call", json!({"name": "e__count", "arguments": {}})).await;
    let dry = modern_as(
        &url,
        Some(ALICE),
        2,
        "tools/call",
        json!({"name": "e__count", "arguments": {}, "_meta": {"io.sekisho/dryRun": true}}),
    )
    .await;
    assert_eq!(dry.body.pointer("/result/_meta/io.sekisho~1dryRun"), Some(&json!(true)), "{}", dry.raw);
    assert_eq!(dry.body.pointer("/result/resultType"), Some(&json!("complete")), "{}", dry.raw);
    let after = modern_as(&url, Some(ALICE), 3, "tools/call", json!({"name": "e__count", "arguments": {}})).await;
    let (before, after): (u64, u64) = (count(&before).parse().unwrap(), count(&after).parse().unwrap());
    assert_eq!(after, before + 1, "only the two real calls reached the upstream");
    // A dry run still needs valid arguments (validated before anything is approved).
    let invalid = modern_as(
        &url,
        Some(ALICE),
        4,
        "tools/call",
        json!({"name": "e__echo", "arguments": {}, "_meta": {"io.sekisho/dryRun": true}}),
    )
    .await;
    assert_eq!(invalid.body.pointer("/result/isError"), Some(&json!(true)), "{}", invalid.raw);
}
