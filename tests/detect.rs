//! Sensitive-data detection end to end: the real `sekisho` binary in front of real echo
//! upstreams (a stdio child and an HTTP server). Every item of the corpus, sent as arguments,
//! echoed in results, printed on an upstream's stderr, sent as its log message, error message
//! and HTTP error page, never reaches the audit file or the gateway's logs; `detect` redacts
//! or blocks results per upstream and per tool (a tool's policy replaces its upstream's),
//! cached answers included.

mod common;
#[path = "common/corpus.rs"]
mod corpus;

use std::time::Duration;

use common::{HttpUpstream, Served, client, eventually, modern, stdio_upstream};
use serde_json::{Value, json};

const KEY: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEFAKEFAKEFAKEFAKEFAKE\nFAKEFAKE==\n-----END RSA PRIVATE KEY-----";

/// `plain` and `web` have no policy; `guarded` redacts by default, its `fail` tool blocks
/// private keys only, its `echo` results are cached.
fn upstreams(web: &HttpUpstream) -> String {
    format!(
        "{}stderr_lines_per_second = 1000\n{}breaker = {{ enabled = false }}\n{}detect = {{ results = \"redact\" }}\n\
         [upstreams.guarded.tools.fail]\ndetect = {{ results = \"block\", kinds = [\"private_key\"] }}\n\
         [upstreams.guarded.tools.echo]\ncache = true\n",
        stdio_upstream("plain", "legacy"),
        web.table("web"),
        stdio_upstream("guarded", "legacy"),
    )
}

async fn call(gw: &Served, id: i64, tool: &str, args: Value) -> common::Answer {
    modern(&format!("{}/mcp", gw.base), id, "tools/call", json!({"name": tool, "arguments": args})).await
}

/// The gateway's metrics text.
async fn metrics(gw: &Served) -> String {
    client().get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_corpus_item_reaches_the_audit_log_or_the_logs() {
    let web = HttpUpstream::start("legacy").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let toml = format!(
        "[log]\nlevel = \"sekisho=debug,info\"\n[audit]\nenabled = true\npath = {:?}\nflush_interval = \"20ms\"\n{}",
        audit.display().to_string(),
        upstreams(&web)
    );
    let gw = Served::start("", &toml).await;
    let hits = corpus::hits();
    let mut id = 0;
    for (kind, text) in &hits {
        id += 10;
        // Unprotected: the item really travels through the gateway, both ways.
        let echoed = call(&gw, id, "plain__echo", json!({"message": text, "token": text})).await;
        assert_eq!(common::text(&echoed), *text, "{kind}");
        for (n, (tool, args)) in [
            ("plain__stderr", json!({"text": text})),
            ("plain__log", json!({"data": text})),
            ("plain__rpc_error", json!({"message": text})),
            ("web__http_error", json!({"message": text})),
            ("guarded__echo", json!({"message": text})),
            ("guarded__fail", json!({"message": text})),
        ]
        .into_iter()
        .enumerate()
        {
            let a = call(&gw, id + 1 + n as i64, tool, args).await;
            assert!(a.status == 200 || a.error_code().is_some(), "{tool}: {}", a.raw);
        }
        let p = modern(
            &format!("{}/mcp", gw.base),
            id + 9,
            "prompts/get",
            json!({"name": "plain__greet", "arguments": {"name": text}}),
        )
        .await;
        assert_eq!(p.status, 200, "{}", p.raw);
        // A URI travels in the Mcp-Name header too: only single-line items fit.
        if !text.contains('\n') {
            let uri = format!("echo://items/{text}");
            let _ = modern(&format!("{}/mcp", gw.base), id + 8, "resources/read", json!({"uri": uri})).await;
        }
    }
    let calls = hits.len() * 8 + hits.iter().filter(|(_, t)| !t.contains('\n')).count();
    let _ = call(&gw, 1, "plain__stderr", json!({"text": "the-last-line"})).await;
    let (records, logs) =
        eventually("every call audited and the last stderr line logged", Duration::from_secs(30), async || {
            let records = std::fs::read_to_string(&audit).unwrap_or_default();
            let logs = gw.logs();
            let n = records
                .lines()
                .filter(|l| ["\"tools/call\"", "\"prompts/get\"", "\"resources/read\""].iter().any(|m| l.contains(m)))
                .count();
            match (n > calls, logs.contains("the-last-line")) {
                (true, true) => Ok((records, logs)),
                seen => Err(format!("{n} records, last line logged: {}", seen.1)),
            }
        })
        .await;
    let line = |text: &str, needle: &str| text.lines().find(|l| l.contains(needle)).map(str::to_string);
    for needle in corpus::needles() {
        assert_eq!(line(&records, &needle), None, "{needle:?} is in the audit log");
        assert_eq!(line(&logs, &needle), None, "{needle:?} is in the logs");
    }
    // What the test relies on happened: the items reached both and were redacted there.
    for marker in ["[REDACTED:private_key]", "[REDACTED:email]", "[REDACTED:card_number]", "[REDACTED:jwt]"] {
        assert!(records.contains(marker), "{marker} not in the audit log");
        assert!(logs.contains(marker), "{marker} not in the logs");
    }
    assert!(logs.contains("a call failed upstream"), "the HTTP error pages were logged");
    let m = metrics(&gw).await;
    for place in ["audit", "log", "result"] {
        assert!(m.contains(&format!("kind=\"email\",where=\"{place}\"")), "no email counted at {place}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_redacted_or_blocked_per_tool() {
    let web = HttpUpstream::start("legacy").await;
    let gw = Served::start("", &upstreams(&web)).await;
    let email = "jane.doe+test@example.com";
    // redact (the upstream's policy): every finding replaced, the rest intact; a cached
    // answer is redacted as well.
    let message = format!("mail {email}, key {KEY}, card 4111 1111 1111 1111 and the rest");
    let want = "mail [REDACTED:email], key [REDACTED:private_key], card [REDACTED:card_number] and the rest";
    let first = call(&gw, 1, "guarded__echo", json!({"message": message})).await;
    assert_eq!(common::text(&first), want, "{}", first.raw);
    let again = call(&gw, 2, "guarded__echo", json!({"message": message})).await;
    assert_eq!(common::text(&again), want);
    assert_eq!(again.body.pointer("/result/_meta/io.sekisho~1cache/status"), Some(&json!("hit")), "{}", again.raw);
    for a in [&first, &again] {
        assert!(!a.raw.contains("MIIEFAKE") && !a.raw.contains(email), "{}", a.raw);
    }
    // An upstream's error message and a prompt are redacted the same way.
    let e =
        call(&gw, 3, "guarded__rpc_error", json!({"message": "db postgres://app:FakePassw0rd@db.internal:5432/app"}))
            .await;
    assert_eq!(e.body["error"]["message"], "db postgres://app:[REDACTED:connection_password]@db.internal:5432/app");
    let p = modern(
        &format!("{}/mcp", gw.base),
        4,
        "prompts/get",
        json!({"name": "guarded__greet", "arguments": {"name": email}}),
    )
    .await;
    assert_eq!(
        p.body.pointer("/result/messages/0/content/text"),
        Some(&json!("Hello, [REDACTED:email]!")),
        "{}",
        p.raw
    );

    // block (the tool's own policy, private keys only): -32019 naming the kind, never the key.
    let b = call(&gw, 5, "guarded__fail", json!({"message": format!("here: {KEY}")})).await;
    assert_eq!(b.error_code(), Some(-32019), "{}", b.raw);
    assert_eq!(b.body["error"]["data"]["kinds"], json!(["private_key"]));
    assert!(b.body["error"]["message"].as_str().unwrap().contains("private_key"), "{}", b.raw);
    assert!(!b.raw.contains("MIIEFAKE") && !b.raw.contains("BEGIN RSA"), "{}", b.raw);
    // The tool's policy replaces the upstream's: an e-mail passes `fail` untouched, while
    // `echo` on the same upstream redacts it; `plain` has no policy at all.
    let f = call(&gw, 6, "guarded__fail", json!({"message": format!("ask {email}")})).await;
    assert_eq!(common::text(&f), format!("ask {email}"), "{}", f.raw);
    let r = call(&gw, 7, "guarded__echo", json!({"message": format!("ask {email}")})).await;
    assert_eq!(common::text(&r), "ask [REDACTED:email]");
    let k = call(&gw, 8, "plain__echo", json!({"message": KEY})).await;
    assert_eq!(common::text(&k), KEY);
    let m = metrics(&gw).await;
    assert!(m.contains("kind=\"private_key\",where=\"result\",action=\"block\"} 1"), "{m}");
    assert!(m.contains("kind=\"private_key\",where=\"result\",action=\"redact\"} 2"), "{m}");
}

/// What an upstream relays to the client during a call — its log messages, which an HTTP
/// upstream sends on the call's own stream — is screened under the call's policy like the
/// result: `red` redacts (the e-mail becomes a marker in the message the client receives),
/// `strict` blocks private keys (a log message holding one is withheld, the call goes on,
/// other kinds pass), and `web` has no policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_messages_relayed_during_a_call_follow_its_policy() {
    let web = HttpUpstream::start("legacy").await;
    let red = HttpUpstream::start("legacy").await;
    let strict = HttpUpstream::start("legacy").await;
    let toml = format!(
        "{}{}detect = {{ results = \"redact\" }}\n{}detect = {{ results = \"block\", kinds = [\"private_key\"] }}\n",
        web.table("web"),
        red.table("red"),
        strict.table("strict")
    );
    let gw = Served::start("", &toml).await;
    let s = common::Legacy::open(&format!("{}/mcp", gw.base), "2025-11-25").await;
    let logged = |a: &common::Answer| -> Vec<String> {
        a.events
            .iter()
            .filter(|e| e["method"] == "notifications/message")
            .map(|e| e["params"]["data"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let log = |id: i64, tool: &str, data: &str| {
        s.request(id, "tools/call", json!({"name": format!("{tool}__log"), "arguments": {"data": data}}))
    };
    let mail = "write to jane.doe@example.com today";
    let plain = log(1, "web", mail).await;
    assert_eq!(logged(&plain), [mail], "no policy: relayed as it is: {}", plain.raw);
    let redacted = log(2, "red", mail).await;
    assert_eq!(logged(&redacted), ["write to [REDACTED:email] today"], "{}", redacted.raw);
    assert_eq!(common::text(&redacted), "logged");
    let key = log(3, "red", KEY).await;
    assert_eq!(logged(&key), ["[REDACTED:private_key]"], "{}", key.raw);
    let held = log(4, "strict", KEY).await;
    assert!(logged(&held).is_empty() && !held.raw.contains("MIIEFAKE"), "{}", held.raw);
    assert_eq!(common::text(&held), "logged", "the call goes on");
    let passed = log(5, "strict", mail).await;
    assert_eq!(logged(&passed), [mail], "{}", passed.raw);
    // Progress too: its message is redacted after the client's own token is put back.
    let progress = json!({"name": "red__progress", "arguments": {"steps": 2, "ms": 5, "message": mail},
                          "_meta": {"progressToken": "mine"}});
    let p = s.request(7, "tools/call", progress).await;
    let steps: Vec<&Value> = p.events.iter().filter(|e| e["method"] == "notifications/progress").collect();
    assert_eq!(steps.len(), 2, "{}", p.raw);
    assert!(steps.iter().all(|e| e["params"]["progressToken"] == "mine"), "{}", p.raw);
    assert_eq!(steps[0]["params"]["message"], "write to [REDACTED:email] today 1", "{}", p.raw);
    // A request the upstream sends the client during the call (sampling) is screened too: a
    // blocked one never reaches the client, and the upstream gets -32019 at once.
    let asking =
        common::Legacy::open_declaring(&format!("{}/mcp", gw.base), "2025-11-25", json!({"sampling": {}})).await;
    let ask = json!({"name": "strict__ask", "arguments": {"question": KEY, "wait_ms": 60000}});
    let asked = asking.request(6, "tools/call", ask).await;
    assert!(asked.events.iter().all(|e| e["method"] != "sampling/createMessage"), "{}", asked.raw);
    assert!(common::text(&asked).contains("-32019") && !asked.raw.contains("MIIEFAKE"), "{}", asked.raw);
    let m = metrics(&gw).await;
    assert!(m.contains("where=\"relayed\""), "relayed findings are counted: {m}");
}
