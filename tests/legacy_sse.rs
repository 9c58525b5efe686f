//! The legacy HTTP+SSE transport (2024-11-05 "HTTP with SSE") on both sides of the gateway:
//! clients on `GET /sse` + `POST /messages` (answers on the stream; hostile session ids, sizes
//! and credentials refused as on `/mcp`; the session ends with its stream; a client that does
//! not read loses its session within `send_timeout`), and upstreams with `transport = "sse"`
//! (here another gateway's `/sse`, in front of the echo upstream: endpoint on another origin
//! refused, reconnection after the stream ends, per-client sessions).

#[path = "support/binary.rs"]
mod binary;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

/// A client of the HTTP+SSE transport: the open stream and the POST address it named.
struct SseClient {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
    /// The absolute URL of the `endpoint` event.
    post_url: String,
    /// The raw data of the `endpoint` event.
    endpoint: String,
    bearer: Option<String>,
}

/// One SSE event: its type and data.
fn parse_block(block: &str) -> (String, String) {
    let event = block.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("message").to_string();
    let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    (event, data.join("\n"))
}

impl SseClient {
    async fn open(base: &str, path: &str, bearer: Option<&str>) -> SseClient {
        let mut req = client().get(format!("{base}{path}")).header("accept", "text/event-stream");
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let mut c = SseClient {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
            post_url: String::new(),
            endpoint: String::new(),
            bearer: bearer.map(str::to_string),
        };
        let (event, data) = c.next(Duration::from_secs(5)).await.expect("an endpoint event");
        assert_eq!(event, "endpoint", "the first event names the POST address");
        c.post_url = format!("{base}{data}");
        c.endpoint = data;
        c
    }

    fn session_id(&self) -> String {
        self.endpoint.split("sessionId=").nth(1).expect("a sessionId").to_string()
    }

    /// The next event (keep-alive comments skipped), within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<(String, String)> {
        tokio::time::timeout(limit, async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    if block.lines().any(|l| l.starts_with("data:")) {
                        return Some(parse_block(&block));
                    }
                }
                let chunk = self.stream.next().await?.ok()?;
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// The next `message` event `want` accepts.
    async fn message(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        loop {
            let (event, data) = self.next(Duration::from_secs(20)).await.expect("a message on the stream");
            let msg: Value = serde_json::from_str(&data).unwrap();
            if event == "message" && want(&msg) {
                return msg;
            }
        }
    }

    async fn post(&self, body: Value) -> (u16, String) {
        post_to(&self.post_url, self.bearer.as_deref(), body).await
    }

    /// POST a request (asserting 202) and read its answer from the stream.
    async fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        let (status, text) = self.post(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})).await;
        assert_eq!(status, 202, "{text}");
        self.message(|m| m["id"] == id).await
    }

    async fn initialize(&mut self, capabilities: Value) {
        let init = self
            .request(0, "initialize", json!({"protocolVersion":"2024-11-05","capabilities":capabilities,"clientInfo":{"name":"t","version":"0"}}))
            .await;
        assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
        assert_eq!(self.post(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await.0, 202);
    }
}

async fn post_to(url: &str, bearer: Option<&str>, body: Value) -> (u16, String) {
    let mut req = client().post(url).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn an_sse_client_lists_calls_and_sees_progress_on_its_stream() {
    let gw = Gateway::start(&stdio_upstream("e", "legacy")).await;
    let mut c = SseClient::open(&gw.base, "/sse", None).await;
    assert!(c.endpoint.starts_with("/messages?sessionId="), "{}", c.endpoint);
    c.initialize(json!({})).await;
    assert!(names(&c.request(1, "tools/list", json!({})).await).contains(&"e__echo".to_string()));
    let echo = c.request(2, "tools/call", json!({"name":"e__echo","arguments":{"message":"over sse"}})).await;
    assert_eq!(echo["result"]["content"][0]["text"], "over sse", "{echo}");
    let (status, _) = c
        .post(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{
            "name":"e__progress","arguments":{"steps":3,"ms":10},"_meta":{"progressToken":"p"}}}))
        .await;
    assert_eq!(status, 202);
    let progress = c.message(|m| m["method"] == "notifications/progress").await;
    assert_eq!(progress["params"]["progressToken"], "p", "the client's own token: {progress}");
    let done = c.message(|m| m["id"] == 3).await;
    assert_eq!(done["result"]["content"][0]["text"], "done after 3 steps", "{done}");
    // One upstream unprefixed, like /servers/e/mcp.
    let mut one = SseClient::open(&gw.base, "/servers/e/sse", None).await;
    assert!(one.endpoint.starts_with("/servers/e/messages?sessionId="), "{}", one.endpoint);
    one.initialize(json!({})).await;
    assert!(names(&one.request(1, "tools/list", json!({})).await).contains(&"echo".to_string()));
    // A session of one route is not served on another.
    let crossed = format!("{}/messages?sessionId={}", gw.base, one.session_id());
    assert_eq!(post_to(&crossed, None, json!({"jsonrpc":"2.0","id":9,"method":"ping"})).await.0, 404);
}

#[tokio::test]
async fn a_server_request_travels_on_the_stream_and_its_answer_comes_back_by_post() {
    let gw = Gateway::start(&stdio_upstream("e", "legacy")).await;
    let mut c = SseClient::open(&gw.base, "/sse", None).await;
    c.initialize(json!({"sampling": {}})).await;
    let call =
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"e__ask","arguments":{"question":"hi?"}}});
    assert_eq!(c.post(call).await.0, 202);
    let asked = c.message(|m| m["method"] == "sampling/createMessage").await;
    let id = asked["id"].as_str().expect("the gateway's own string id").to_string();
    assert!(id.starts_with("sekisho-"), "{asked}");
    let said = json!({"jsonrpc":"2.0","id":id,"result":{"role":"assistant","model":"m","content":{"type":"text","text":"hello"}}});
    assert_eq!(c.post(said).await.0, 202);
    let done = c.message(|m| m["id"] == 7).await;
    assert_eq!(done["result"]["content"][0]["text"], "the client said: hello", "{done}");
}

#[tokio::test]
async fn hostile_session_ids_sizes_and_credentials_are_refused() {
    let toml = format!(
        "[server]\napi_keys = [{{ key = \"alice-key-0123456789\", name = \"alice\" }}, {{ key = \"mallory-key-012345678\", name = \"mallory\" }}]\nmax_body_bytes = 4096\n{}",
        stdio_upstream("e", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let (alice, mallory) = (Some("alice-key-0123456789"), Some("mallory-key-012345678"));
    // No key: 401 on both routes, before anything else.
    let get = client().get(gw.url("/sse")).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(get.status(), 401);
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    let mut c = SseClient::open(&gw.base, "/sse", alice).await;
    c.initialize(json!({})).await;
    assert_eq!(post_to(&c.post_url, None, ping.clone()).await.0, 401);
    // Unknown and forged ids: 404.
    let unknown = post_to(&gw.url("/messages?sessionId=nope"), alice, ping.clone()).await;
    assert_eq!(unknown.0, 404, "{}", unknown.1);
    let id = c.session_id();
    let flipped = if id.ends_with('A') { "B" } else { "A" };
    let forged = format!("{}/messages?sessionId={}{flipped}", gw.base, &id[..id.len() - 1]);
    assert_eq!(post_to(&forged, alice, ping.clone()).await, unknown);
    // Another caller's id: exactly the unknown answer.
    assert_eq!(post_to(&c.post_url, mallory, ping.clone()).await, unknown, "another caller's session is unknown to it");
    // A Streamable HTTP session id is no HTTP+SSE session.
    let init = client()
        .post(gw.url("/mcp"))
        .bearer_auth(alice.unwrap())
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}))
        .send()
        .await
        .unwrap();
    let streamable = init.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let other = format!("{}/messages?sessionId={streamable}", gw.base);
    assert_eq!(post_to(&other, alice, ping.clone()).await, unknown);
    // No sessionId: 400.
    let missing = post_to(&gw.url("/messages"), alice, ping.clone()).await;
    assert_eq!(missing.0, 400, "{}", missing.1);
    assert_eq!(serde_json::from_str::<Value>(&missing.1).unwrap()["error"]["code"], -32600);
    // Over max_body_bytes: 413.
    let big = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"e__echo","arguments":{"message":"x".repeat(8192)}}});
    assert_eq!(c.post(big).await.0, 413);
    // Malformed JSON-RPC: 400 with the parse error; the session goes on.
    let garbage = client().post(&c.post_url).bearer_auth(alice.unwrap()).body("{nope").send().await.unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(c.request(6, "ping", json!({})).await["result"], json!({}));
}

#[tokio::test]
async fn batches_follow_the_negotiated_revision_and_the_batch_caps() {
    let gw = Gateway::start(&format!("[server]\nmax_batch_size = 2\n{}", stdio_upstream("e", "legacy"))).await;
    let ping = |id: i64| json!({"jsonrpc":"2.0","id":id,"method":"ping"});
    let mut c = SseClient::open(&gw.base, "/sse", None).await;
    let init = c
        .request(
            0,
            "initialize",
            json!({"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"0"}}),
        )
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
    assert_eq!(c.post(json!([ping(1), ping(2), ping(3)])).await.0, 400, "over max_batch_size: refused whole");
    assert_eq!(c.post(json!([ping(4), ping(5)])).await.0, 202);
    let answers = c.message(Value::is_array).await;
    let ids: Vec<&Value> = answers.as_array().unwrap().iter().map(|a| &a["id"]).collect();
    assert_eq!(ids, [&json!(4), &json!(5)], "{answers}");
    // A session of a revision without batches refuses them.
    let mut old = SseClient::open(&gw.base, "/sse", None).await;
    old.initialize(json!({})).await;
    let (status, text) = old.post(json!([ping(1)])).await;
    assert_eq!((status, serde_json::from_str::<Value>(&text).unwrap()["error"]["code"].as_i64()), (400, Some(-32600)));
}

#[tokio::test]
async fn sse_sessions_count_against_the_callers_session_cap() {
    let gw = Gateway::start(&format!("[server]\nmax_sessions_per_caller = 1\n{}", stdio_upstream("e", "legacy"))).await;
    let first = SseClient::open(&gw.base, "/sse", None).await;
    let refused = client().get(gw.url("/sse")).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32015, "{body}");
    drop(first);
    eventually("closing the stream frees the caller's place", Duration::from_secs(10), async || {
        let again = client().get(gw.url("/sse")).header("accept", "text/event-stream").send().await.unwrap();
        if again.status() == 200 { Ok(()) } else { Err(again.status().to_string()) }
    })
    .await;
}

/// `/readyz`'s `client_sessions` of upstream `name`.
async fn client_sessions(gw: &Gateway, name: &str) -> Value {
    gw.readyz().await["upstreams"][name]["client_sessions"].clone()
}

fn alive(pid: u64) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test]
async fn closing_the_stream_ends_the_session_and_its_per_client_upstream_session() {
    let gw = Gateway::start(&format!("{}session = \"per-client\"\n", stdio_upstream("pc", "legacy"))).await;
    let mut c = SseClient::open(&gw.base, "/sse", None).await;
    c.initialize(json!({})).await;
    let count = c.request(1, "tools/call", json!({"name":"pc__count","arguments":{}})).await;
    assert_eq!(count["result"]["content"][0]["text"], "1", "its own process: {count}");
    let live = client_sessions(&gw, "pc").await;
    assert_eq!(live["live"], 1, "{live}");
    let pid = live["pids"][0].as_u64().unwrap();
    let post_url = c.post_url.clone();
    drop(c);
    eventually("the per-client process stopped with the stream", Duration::from_secs(20), async || {
        let live = client_sessions(&gw, "pc").await;
        if live["live"] == 0 && !alive(pid) { Ok(()) } else { Err(live.to_string()) }
    })
    .await;
    let (status, _) = post_to(&post_url, None, json!({"jsonrpc":"2.0","id":2,"method":"ping"})).await;
    assert_eq!(status, 404, "an ended session is unknown");
}

#[tokio::test]
async fn a_client_that_does_not_read_its_stream_loses_its_session_and_costs_bounded_memory() {
    let server = "send_timeout = \"1s\"\nmax_calls_per_sse_session = 8";
    let gw = binary::Binary::start(server, &stdio_upstream("e", "legacy"), None).await;
    // A raw connection that reads the head and the endpoint event, then never reads again.
    let mut raw = TcpStream::connect(gw.addr).unwrap();
    raw.write_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&head).contains("sessionId=") || !head.ends_with(b"\n\n") {
        raw.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let endpoint = head.lines().find_map(|l| l.strip_prefix("data: ")).unwrap().to_string();
    let url = gw.url(&endpoint);
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"0"}}});
    assert_eq!(post_to(&url, None, init).await.0, 202);
    let before = gw.peak_memory();
    // 1 MiB answers, far more than the socket buffers hold; each POST is 202 until the
    // session's calls are all stuck (429), and the session ends within send_timeout (404).
    let mut seen = std::collections::BTreeMap::new();
    eventually("the non-reading client's session ended", Duration::from_secs(30), async || {
        let big =
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e__big","arguments":{"kib":1024}}});
        let (status, text) = post_to(&url, None, big).await;
        *seen.entry(status).or_insert(0) += 1;
        match status {
            404 => Ok(()),
            202 | 429 => Err(format!("{seen:?}")),
            other => panic!("unexpected {other}: {text}"),
        }
    })
    .await;
    assert!(seen.contains_key(&429), "calls in flight are capped: {seen:?}");
    let grown = gw.peak_memory().saturating_sub(before);
    assert!(grown < 150 << 20, "memory grew by {} MiB", grown >> 20);
    drop(raw);
}

/// A gateway serving `/sse` in front of the echo upstream (the SSE upstream of the tests
/// below), and a gateway whose upstream `s` is that `/sse`.
async fn gateway_behind_sse(extra: &str) -> (Gateway, Gateway) {
    let inner = Gateway::start(&stdio_upstream("e", "legacy")).await;
    let toml =
        format!("[upstreams.s]\nurl = \"{}/sse\"\ntransport = \"sse\"\nstartup_timeout = \"20s\"\n{extra}", inner.base);
    let outer = Gateway::start(&toml).await;
    (inner, outer)
}

#[tokio::test]
async fn an_sse_upstream_serves_calls_lists_and_progress() {
    let (_inner, gw) = gateway_behind_sse("").await;
    let ready = gw.readyz().await;
    assert_eq!(ready["upstreams"]["s"]["status"], "up", "{ready}");
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let list = s.request(1, "tools/list", json!({})).await;
    assert!(tool_names(&list).contains(&"s__e__echo".to_string()), "{}", list.raw);
    let echo = s.request(2, "tools/call", json!({"name":"s__e__echo","arguments":{"message":"via sse"}})).await;
    assert_eq!(text(&echo), "via sse");
    let sum = modern(&gw.url("/mcp"), 3, "tools/call", json!({"name":"s__e__add","arguments":{"a":2,"b":40}})).await;
    assert_eq!(sum.body["result"]["structuredContent"]["sum"], 42.0, "{}", sum.raw);
    let progress = s
        .request(
            4,
            "tools/call",
            json!({"name":"s__e__progress","arguments":{"steps":3,"ms":10},"_meta":{"progressToken":"t"}}),
        )
        .await;
    let steps = progress.events.iter().filter(|e| e["method"] == "notifications/progress").count();
    assert_eq!(steps, 3, "{}", progress.raw);
    assert!(
        progress.events.iter().all(|e| e["method"] != "notifications/progress" || e["params"]["progressToken"] == "t")
    );
}

#[tokio::test]
async fn an_sse_upstream_is_reconnected_when_its_stream_ends() {
    let (inner, gw) = gateway_behind_sse("health_interval = \"0s\"").await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    assert_eq!(text(&s.request(1, "tools/call", json!({"name":"s__e__echo","arguments":{"message":"a"}})).await), "a");
    // The inner gateway drains: its streams end, and it stops listening.
    let addr = inner.addr;
    let draining = std::time::Instant::now();
    inner.shutdown().await.unwrap();
    // Its SSE stream closed at once (no call was running), not after the 9 s grace.
    assert!(draining.elapsed() < Duration::from_secs(5), "drain took {:?}", draining.elapsed());
    eventually("the upstream is down", Duration::from_secs(20), async || {
        let r = gw.readyz().await;
        if r["upstreams"]["s"]["status"] == "down" { Ok(()) } else { Err(r.to_string()) }
    })
    .await;
    // A new upstream on the same address: a new stream, endpoint and handshake.
    let cfg = sekisho::config::Config::from_toml(&stdio_upstream("e", "legacy")).unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let back = tokio::spawn(async move {
        sekisho::app::run(&cfg, listener, async move {
            let _ = rx.await;
        })
        .await
    });
    eventually("the upstream is back", Duration::from_secs(40), async || {
        let r = gw.readyz().await;
        if r["upstreams"]["s"]["status"] == "up" { Ok(()) } else { Err(r.to_string()) }
    })
    .await;
    let again = eventually("a call goes through the new session", Duration::from_secs(20), async || {
        let a = s.request(2, "tools/call", json!({"name":"s__e__echo","arguments":{"message":"b"}})).await;
        if a.body["result"]["content"][0]["text"] == "b" { Ok(a) } else { Err(a.raw) }
    })
    .await;
    assert_eq!(text(&again), "b");
    let _ = stop.send(());
    let _ = back.await;
}

#[tokio::test]
async fn an_sse_upstream_gives_each_client_session_its_own_session_when_per_client() {
    // The inner gateway gives each of its SSE sessions its own echo process, so a process's
    // call count tells which SSE session a call came through.
    let inner = Gateway::start(&format!("{}session = \"per-client\"\n", stdio_upstream("e", "legacy"))).await;
    let toml = format!("[upstreams.s]\nurl = \"{}/sse\"\ntransport = \"sse\"\nsession = \"per-client\"\n", inner.base);
    let gw = Gateway::start(&toml).await;
    let mcp = gw.url("/mcp");
    let (a, b) = (Legacy::open(&mcp, "2025-11-25").await, Legacy::open(&mcp, "2025-11-25").await);
    let count = async |s: &Legacy, id: i64| {
        text(&s.request(id, "tools/call", json!({"name":"s__e__count","arguments":{}})).await)
    };
    assert_eq!(count(&a, 1).await, "1");
    assert_eq!(count(&a, 2).await, "2");
    assert_eq!(count(&b, 3).await, "1", "b has its own upstream session");
    let live = gw.readyz().await["upstreams"]["s"]["client_sessions"].clone();
    assert_eq!(live["live"], 2, "{live}");
    let inner_live =
        || async { inner.readyz().await["upstreams"]["e"]["client_sessions"]["live"].as_u64().unwrap_or(0) };
    let with_both = inner_live().await;
    for s in [&a, &b] {
        let gone = client().delete(&s.endpoint).header("mcp-session-id", &s.session).send().await.unwrap();
        assert_eq!(gone.status(), 200);
    }
    // Ending the client sessions closes their SSE streams: the inner gateway ends those
    // sessions and stops their processes.
    eventually("the per-client SSE sessions ended upstream", Duration::from_secs(20), async || {
        let live = gw.readyz().await["upstreams"]["s"]["client_sessions"].clone();
        let upstream = inner_live().await;
        if live["live"] == 0 && upstream + 2 == with_both {
            Ok(())
        } else {
            Err(format!("{live}; upstream live: {upstream} of {with_both}"))
        }
    })
    .await;
}

#[tokio::test]
async fn an_endpoint_on_another_origin_is_refused() {
    // A one-shot SSE server whose endpoint points elsewhere; the upstream never comes up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&posts);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let seen = std::sync::Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                if buf[..n].starts_with(b"POST") {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nevent: endpoint\ndata: http://evil.example:9/messages?sessionId=x\n\n")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let toml = format!("[upstreams.s]\nurl = \"http://{addr}/sse\"\ntransport = \"sse\"\nstartup_timeout = \"5s\"\n");
    let gw = Gateway::start(&toml).await;
    let ready = eventually("the upstream is down", Duration::from_secs(20), async || {
        let r = gw.readyz().await;
        if r["upstreams"]["s"]["status"] == "down" { Ok(r) } else { Err(r.to_string()) }
    })
    .await;
    assert!(ready.to_string().contains("another origin"), "{ready}");
    assert_eq!(posts.load(std::sync::atomic::Ordering::Relaxed), 0, "nothing was posted anywhere");
}
