//! A fast MCP upstream for sekisho's benchmarks and tests: stdio or Streamable HTTP, legacy
//! (`initialize`, sessions) and modern (2026-07-28 per-request `_meta`) eras, with tools that
//! echo, add, sleep, fail, stream progress, return big payloads, count calls and cancellations, crash, and change
//! the tool list on demand; and tools that misbehave the way hostile or careless servers do
//! (print their environment, flood stderr and notifications, send oversized SSE events and
//! unusable event ids, ask the client for sampling/elicitation/roots), and a tool that checks its
//! `Mcp-Param-*` headers as a strict 2026-07-28 server does (`routed`). It honours
//! `logging/setLevel` and `resources/subscribe` as real servers do, for everyone at once.
//!
//! With `--tasks` (HTTP), a modern client that declares the tasks extension gets tasks from
//! `task_echo` (see `sekisho_bench::tasks`).
//!
//! With `--schema-tools`, tools whose `inputSchema`s test argument validation are listed too
//! (`strict_add`, and schemas a gateway must not use: a remote `$ref`, a reference loop, a
//! reference bomb, a huge schema, one that does not compile).
//!
//! Usage: `echo-upstream stdio [--era dual|legacy|modern] [--schema-tools [--remote-ref URL]]`
//!        `echo-upstream http --listen 127.0.0.1:0 [--era ...] [--bearer TOKEN] [--invalid-tool] [--tasks] [--schema-tools [--remote-ref URL]]` (prints `listening on ADDR` to stderr)

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sekisho_bench::mcp::{LEGACY, MODERN, error, notification, result};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve newline-delimited JSON-RPC on stdin/stdout.
    Stdio {
        #[arg(long, value_enum, default_value = "dual")]
        era: Era,
        #[command(flatten)]
        schemas: SchemaTools,
    },
    /// Serve Streamable HTTP at /mcp.
    Http {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        #[arg(long, value_enum, default_value = "dual")]
        era: Era,
        /// `echo` waits this long before answering (a stand-in for an upstream with real work).
        #[arg(long, default_value_t = 0)]
        echo_delay_ms: u64,
        /// Answer 401 to requests without `Authorization: Bearer <this>`.
        #[arg(long)]
        bearer: Option<String>,
        /// Also list `bad_header`, whose `x-mcp-header` declaration is invalid.
        #[arg(long)]
        invalid_tool: bool,
        /// Declare the tasks extension (modern era) and offer `task_echo`.
        #[arg(long)]
        tasks: bool,
        #[command(flatten)]
        schemas: SchemaTools,
    },
}

/// Tools whose `inputSchema` tests argument validation.
#[derive(clap::Args)]
struct SchemaTools {
    /// Also list `strict_add` (`add` with `additionalProperties: false`) and tools whose
    /// schemas a gateway must not use: `remote_ref`, `ref_loop`, `ref_bomb`, `huge_schema`,
    /// `bad_schema` (each answers with the arguments it got).
    #[arg(long)]
    schema_tools: bool,
    /// The URL `remote_ref`'s schema refers to.
    #[arg(long, default_value = "http://127.0.0.1:9/schema.json")]
    remote_ref: String,
}

impl SchemaTools {
    fn apply(self) {
        SCHEMA_TOOLS.store(self.schema_tools, Ordering::Relaxed);
        let _ = REMOTE_REF.set(self.remote_ref);
    }
}

/// Whether `tools/list` includes the schema tools (`--schema-tools`).
static SCHEMA_TOOLS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// `remote_ref`'s `$ref` (`--remote-ref`).
static REMOTE_REF: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The schema tools (`--schema-tools`).
fn schema_tools() -> Vec<Value> {
    let numbers = json!({"a": {"type": "number"}, "b": {"type": "number"}});
    let remote = REMOTE_REF.get().map_or("http://127.0.0.1:9/schema.json", String::as_str);
    // Each level refers twice to the next: 2^40 paths through 41 small definitions.
    let mut levels = serde_json::Map::new();
    for i in 0..40 {
        let next = json!({"$ref": format!("#/$defs/l{}", i + 1)});
        levels.insert(format!("l{i}"), json!({"anyOf": [next.clone(), next]}));
    }
    levels.insert("l40".into(), json!({"type": "string"}));
    let described =
        |name: &str, what: &str, schema: Value| json!({"name": name, "description": what, "inputSchema": schema});
    vec![
        described(
            "strict_add",
            "Add two numbers; nothing else may be sent.",
            json!({"type": "object", "properties": numbers, "required": ["a", "b"], "additionalProperties": false}),
        ),
        described(
            "remote_ref",
            "A schema that refers to a remote document.",
            json!({"type": "object", "properties": {"x": {"$ref": remote}}}),
        ),
        described(
            "ref_loop",
            "A schema whose references loop.",
            json!({"type": "object", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                         "properties": {"x": {"$ref": "#/$defs/a"}}}),
        ),
        described(
            "ref_bomb",
            "A small schema that expands to 2^40 nodes.",
            json!({"type": "object", "$defs": levels, "properties": {"x": {"$ref": "#/$defs/l0"}}}),
        ),
        described(
            "huge_schema",
            "A schema of 300 KiB.",
            json!({"type": "object", "properties": {"x": {"enum": ["z".repeat(300 * 1024)]}}}),
        ),
        described("bad_schema", "A schema that does not compile.", json!({"type": 5})),
    ]
}

/// Milliseconds `echo` waits before answering (`--echo-delay-ms`).
static ECHO_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// Whether `tools/list` includes `bad_header` (`--invalid-tool`).
static INVALID_TOOL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The tasks extension is on (`--tasks`).
static TASKS_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The bearer token HTTP requests must carry (`--bearer`), if any.
static BEARER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Era {
    Dual,
    Legacy,
    Modern,
}

struct Upstream {
    era: Era,
    calls: AtomicU64,
    /// `notifications/cancelled` received (stdio).
    cancelled: AtomicU64,
    dynamic_tools: Mutex<Vec<String>>,
    changes: broadcast::Sender<Value>,
    sessions: Mutex<HashSet<String>>,
    next_session: AtomicU64,
    parked: Mutex<std::collections::HashMap<String, tokio::sync::oneshot::Receiver<String>>>,
    /// Resources subscribed with `resources/subscribe` (by anyone).
    subscribed: Mutex<std::collections::BTreeSet<String>>,
    /// Modern era: the `resourceSubscriptions` of each open `subscriptions/listen` stream.
    listen_filters: Mutex<std::collections::HashMap<u64, Vec<String>>>,
    /// The level set with `logging/setLevel` (by anyone), as its rank (0 = debug).
    log_level: AtomicU64,
    /// The next tools/list takes this long (`flood`), once.
    stall_lists_ms: AtomicU64,
    /// Requests this server sent to its client (`ask`), waiting for their answers.
    asks: Mutex<std::collections::HashMap<String, tokio::sync::oneshot::Sender<Value>>>,
    /// Tasks of `task_echo` (`--tasks`).
    tasks: sekisho_bench::tasks::Tasks,
    /// Legacy HTTP: the open standalone GET stream of each session (what `ask` with
    /// `untied` sends on), and how many are open (`GET /stats`).
    standalone: Mutex<std::collections::HashMap<String, Out>>,
    get_streams: AtomicU64,
}

/// RFC 5424 levels as MCP names them, least severe first.
const LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

type Out = mpsc::UnboundedSender<Value>;

fn tools(dynamic: &[String]) -> Value {
    let obj = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    let mut list = vec![
        json!({"name": "echo", "description": "Echo the message back.", "annotations": {"readOnlyHint": true},
               "inputSchema": obj(json!({"message": {"type": "string"}}), &["message"])}),
        json!({"name": "add", "description": "Add two numbers.", "annotations": {"readOnlyHint": true, "idempotentHint": true},
               "inputSchema": obj(json!({"a": {"type": "number"}, "b": {"type": "number"}}), &["a", "b"]),
               "outputSchema": obj(json!({"sum": {"type": "number"}}), &["sum"])}),
        json!({"name": "sleep_ms", "description": "Sleep, then answer.", "annotations": {"readOnlyHint": true},
               "inputSchema": obj(json!({"ms": {"type": "integer"}}), &["ms"])}),
        json!({"name": "fail", "description": "Return a tool error result.", "inputSchema": obj(json!({"message": {"type": "string"}}), &[])}),
        json!({"name": "big", "description": "Return `kib` KiB of text.", "annotations": {"readOnlyHint": true},
               "inputSchema": obj(json!({"kib": {"type": "integer"}}), &["kib"])}),
        json!({"name": "progress", "description": "Report progress `steps` times, `ms` apart; each message is `message` (default `step`) and the step's number.",
               "inputSchema": obj(json!({"steps": {"type": "integer"}, "ms": {"type": "integer"}, "message": {"type": "string"}}), &[])}),
        json!({"name": "count", "description": "How many tools/call requests this process has received.",
               "inputSchema": obj(json!({}), &[])}),
        json!({"name": "cancelled", "description": "How many notifications/cancelled this process has received (stdio).",
               "inputSchema": obj(json!({}), &[])}),
        json!({"name": "log", "description": "Send a log message (`data`, else a greeting), then answer.", "inputSchema": obj(json!({"data": {"type": "string"}}), &[])}),
        json!({"name": "rpc_error", "description": "Answer with a JSON-RPC error (its message: `message`, if given).", "inputSchema": obj(json!({"message": {"type": "string"}}), &[])}),
        json!({"name": "crash", "description": "Exit the process immediately.", "annotations": {"destructiveHint": true},
               "inputSchema": obj(json!({}), &[])}),
        json!({"name": "change_tools", "description": "Add a tool and announce the list change.", "inputSchema": obj(json!({}), &[])}),
        json!({"name": "side_effect", "description": "Record one effect in $ECHO_EFFECTS_FILE, then exit before answering (answer instead with crash: false).",
               "annotations": {"destructiveHint": true}, "inputSchema": obj(json!({"crash": {"type": "boolean"}, "ms": {"type": "integer"}}), &[])}),
        json!({"name": "park", "description": "Like sleep_ms, but over HTTP the answer comes on a resumed stream.",
               "inputSchema": obj(json!({"ms": {"type": "integer"}}), &["ms"])}),
        json!({"name": "touch", "description": "Announce that a resource was updated.",
               "inputSchema": obj(json!({"uri": {"type": "string"}}), &["uri"])}),
        json!({"name": "touch_subscribed", "description": "Announce that a resource was updated, if anyone subscribed to it.",
               "inputSchema": obj(json!({"uri": {"type": "string"}}), &["uri"])}),
        json!({"name": "subscriptions", "description": "The resources subscribed now, as a JSON array.",
               "inputSchema": obj(json!({}), &[])}),
        json!({"name": "env", "description": "The value of one of this process's environment variables.",
               "inputSchema": obj(json!({"name": {"type": "string"}}), &["name"])}),
        json!({"name": "stderr", "description": "Write `lines` lines of `bytes` bytes (or of `text`) to stderr; exit if stderr is broken.",
               "inputSchema": obj(json!({"bytes": {"type": "integer"}, "lines": {"type": "integer"}, "text": {"type": "string"}}), &[])}),
        json!({"name": "meta", "description": "The request's _meta, as JSON text.", "inputSchema": obj(json!({}), &[])}),
        json!({"name": "priced", "description": "Answer with `meta` as the result's _meta (an upstream reporting its own cost there).",
               "inputSchema": obj(json!({"meta": {}}), &[])}),
        json!({"name": "ask", "description": "Send `method` (sampling/createMessage, the default; elicitation/create; roots/list) to the client, asking `question`; answer with what came back (`the client said: …` for a text answer). Legacy HTTP with `untied`: sent on the session's standalone GET stream, or lost when none is open; `wait_ms` (20000) for the answer.",
               "inputSchema": obj(json!({"method": {"type": "string"}, "question": {"type": "string"},
                                         "untied": {"type": "boolean"}, "wait_ms": {"type": "integer"}}), &[])}),
        json!({"name": "http_error", "description": "Over HTTP: answer with status 500 and an error page naming internal hosts (or saying `message`).",
               "inputSchema": obj(json!({"message": {"type": "string"}}), &[])}),
        json!({"name": "garbage", "description": "Over HTTP: answer 200 with an HTML page instead of JSON-RPC.",
               "inputSchema": obj(json!({}), &[])}),
        json!({"name": "flood", "description": "Send `n` resources/updated notifications (each with `pad` bytes of URI) as fast as possible, after making the next tools/list take `stall_ms` and announcing a list change (so the client's list refresh is stuck meanwhile).",
               "inputSchema": obj(json!({"n": {"type": "integer"}, "pad": {"type": "integer"}, "stall_ms": {"type": "integer"}}), &["n"])}),
        json!({"name": "change_tools_quietly", "description": "Add a tool and announce it only on notification streams.",
               "inputSchema": obj(json!({}), &[])}),
        json!({"name": "oversized_event", "description": "Send an SSE event of `mib` MiB on every notification stream.",
               "inputSchema": obj(json!({"mib": {"type": "integer"}}), &["mib"])}),
        json!({"name": "park_bad_id", "description": "Like park, but the stream's event id cannot be sent back in a header.",
               "inputSchema": obj(json!({"ms": {"type": "integer"}}), &["ms"])}),
        json!({"name": "routed", "description": "Over modern HTTP: check the Mcp-Param-* headers of the x-mcp-header arguments as a strict server does (400, -32020) and answer with the raw headers received.",
               "inputSchema": obj(json!({"region": {"type": "string", "x-mcp-header": "Region"},
                                         "tenant": {"type": "integer", "x-mcp-header": "Tenant"},
                                         "dry": {"type": "boolean", "x-mcp-header": "Dry"},
                                         "note": {"type": "string"}}), &["region"])}),
    ];
    if INVALID_TOOL.load(Ordering::Relaxed) {
        list.push(json!({"name": "bad_header", "description": "Declares x-mcp-header on a number (not permitted): clients must leave it out.",
                         "inputSchema": obj(json!({"score": {"type": "number", "x-mcp-header": "Score"}}), &[])}));
    }
    if TASKS_ON.load(Ordering::Relaxed) {
        list.push(json!({"name": "task_echo", "description": "Echo `text` from a task that completes after `ms` (tasks extension).",
               "inputSchema": obj(json!({"text": {"type": "string"}, "ms": {"type": "integer"}}), &["text"])}));
    }
    if SCHEMA_TOOLS.load(Ordering::Relaxed) {
        list.extend(schema_tools());
    }
    for name in dynamic {
        list.push(
            json!({"name": name, "description": "A tool added at run time.", "inputSchema": obj(json!({}), &[])}),
        );
    }
    Value::Array(list)
}

fn text(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}]})
}

fn is_modern(msg: &Value) -> bool {
    msg.pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion").is_some()
}

impl Upstream {
    fn new(era: Era) -> Arc<Self> {
        Arc::new(Upstream {
            era,
            calls: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            dynamic_tools: Mutex::new(Vec::new()),
            changes: broadcast::channel(64).0,
            sessions: Mutex::new(HashSet::new()),
            next_session: AtomicU64::new(1),
            parked: Mutex::new(std::collections::HashMap::new()),
            subscribed: Mutex::new(std::collections::BTreeSet::new()),
            listen_filters: Mutex::new(std::collections::HashMap::new()),
            log_level: AtomicU64::new(0),
            stall_lists_ms: AtomicU64::new(0),
            asks: Mutex::new(std::collections::HashMap::new()),
            tasks: Default::default(),
            standalone: Mutex::default(),
            get_streams: AtomicU64::new(0),
        })
    }

    /// A response from the client to a request this server sent (`ask`).
    fn answered(&self, msg: &Value) {
        let id = msg["id"].as_str().unwrap_or_default().to_string();
        if let Some(tx) = self.asks.lock().unwrap().remove(&id) {
            let _ = tx.send(msg.clone());
        }
    }

    /// Answer one request; notifications for the caller go to `out`.
    async fn request(self: &Arc<Self>, msg: &Value, out: &Out) -> Value {
        let id = &msg["id"];
        let method = msg["method"].as_str().unwrap_or("");
        let params = &msg["params"];
        let modern = is_modern(msg);
        if (modern && self.era == Era::Legacy) || (!modern && self.era == Era::Modern && method != "initialize") {
            return error(id, -32601, &format!("Method not found: {method}"));
        }
        let complete = |mut r: Value, cacheable: bool| {
            if modern && r.get("resultType").is_none() {
                r["resultType"] = "complete".into();
                if cacheable {
                    r["ttlMs"] = 0.into();
                    r["cacheScope"] = "public".into();
                }
            }
            result(id, r)
        };
        match method {
            "initialize" if self.era == Era::Modern => error(id, -32022, "Unsupported protocol version"),
            "initialize" => {
                let v = params["protocolVersion"].as_str().unwrap_or(LEGACY);
                let v = if ["2024-11-05", "2025-03-26", "2025-06-18", LEGACY].contains(&v) { v } else { LEGACY };
                result(
                    id,
                    json!({"protocolVersion": v, "serverInfo": {"name": "echo-upstream", "version": "0"},
                    "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true}, "prompts": {}, "logging": {}}}),
                )
            }
            "server/discover" => {
                let mut caps = json!({"tools": {"listChanged": true}, "resources": {}, "prompts": {}});
                if TASKS_ON.load(Ordering::Relaxed) {
                    caps["extensions"] = json!({ (sekisho_bench::tasks::EXT): {} });
                }
                complete(
                    json!({"supportedVersions": [MODERN], "capabilities": caps,
                           "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "echo-upstream", "version": "0"}}}),
                    true,
                )
            }
            "tasks/get" | "tasks/update" | "tasks/cancel" if modern && TASKS_ON.load(Ordering::Relaxed) => {
                match self.tasks.method(method, params) {
                    Ok(r) => result(id, r),
                    Err((code, message)) => error(id, code, &message),
                }
            }
            "ping" => result(id, json!({})),
            "tools/list" => {
                let stall = self.stall_lists_ms.swap(0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(stall)).await;
                let dynamic = self.dynamic_tools.lock().unwrap().clone();
                complete(json!({"tools": tools(&dynamic)}), true)
            }
            "tools/call" => complete(self.call(params, out).await, false),
            "resources/list" => complete(
                json!({"resources": [{"uri": "echo://static/hello", "name": "hello", "mimeType": "text/plain"}]}),
                true,
            ),
            "resources/templates/list" => complete(
                json!({"resourceTemplates": [{"uriTemplate": "echo://items/{id}", "name": "item", "mimeType": "text/plain"}]}),
                true,
            ),
            "resources/read" => {
                let uri = params["uri"].as_str().unwrap_or("");
                if uri == "echo://static/hello" || uri.starts_with("echo://items/") || uri.starts_with("echo://cached/")
                {
                    let mut r = complete(
                        json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": format!("content of {uri}")}]}),
                        true,
                    );
                    // echo://cached/… carries a real caching hint (modern era): a minute, public.
                    if modern && uri.starts_with("echo://cached/") {
                        r["result"]["ttlMs"] = 60_000.into();
                    }
                    r
                } else if modern {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "Resource not found", "data": {"uri": uri}}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32002, "message": "Resource not found", "data": {"uri": uri}}})
                }
            }
            "prompts/list" => complete(
                json!({"prompts": [{"name": "greet", "description": "Greet someone.", "arguments": [{"name": "name", "required": true}]}]}),
                true,
            ),
            "prompts/get" => {
                let name = params.pointer("/arguments/name").and_then(Value::as_str).unwrap_or("you");
                complete(
                    json!({"messages": [{"role": "user", "content": {"type": "text", "text": format!("Hello, {name}!")}}]}),
                    false,
                )
            }
            "logging/setLevel" => {
                let level = params["level"].as_str().unwrap_or("debug");
                let rank = LEVELS.iter().position(|l| *l == level).unwrap_or(0);
                self.log_level.store(rank as u64, Ordering::Relaxed);
                result(id, json!({}))
            }
            // 2026-07-28 removed these: resources are watched through subscriptions/listen.
            "resources/subscribe" | "resources/unsubscribe" if modern => {
                error(id, -32601, "Method not found: removed stateful RPC")
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let uri = params["uri"].as_str().unwrap_or_default().to_string();
                let mut subscribed = self.subscribed.lock().unwrap();
                if method == "resources/subscribe" {
                    subscribed.insert(uri);
                } else {
                    subscribed.remove(&uri);
                }
                result(id, json!({}))
            }
            _ => error(id, -32601, &format!("Method not found: {method}")),
        }
    }

    async fn call(self: &Arc<Self>, params: &Value, out: &Out) -> Value {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let args = &params["arguments"];
        let name = params["name"].as_str().unwrap_or("");
        match name {
            "task_echo" if TASKS_ON.load(Ordering::Relaxed) => {
                let text = format!("echo: {}", args["text"].as_str().unwrap_or_default());
                if sekisho_bench::tasks::declared(params) {
                    self.tasks.create(text, args["ms"].as_u64().unwrap_or(0))
                } else {
                    json!({"content": [{"type": "text", "text": text}]})
                }
            }
            "echo" => {
                let delay = ECHO_DELAY_MS.load(Ordering::Relaxed);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                text(args["message"].as_str().unwrap_or(""))
            }
            "remote_ref" | "ref_loop" | "ref_bomb" | "huge_schema" | "bad_schema"
                if SCHEMA_TOOLS.load(Ordering::Relaxed) =>
            {
                text(format!("{name} got {args}"))
            }
            "add" | "strict_add" => {
                let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
                json!({"content": [{"type": "text", "text": sum.to_string()}], "structuredContent": {"sum": sum}})
            }
            "sleep_ms" | "park" => {
                let ms = args["ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(format!("slept {ms} ms"))
            }
            "fail" => {
                json!({"isError": true, "content": [{"type": "text", "text": args["message"].as_str().unwrap_or("failed on purpose")}]})
            }
            "big" => {
                let kib = args["kib"].as_u64().unwrap_or(16).min(64 * 1024) as usize;
                text("abcdefghijklmnopqrstuvwxyz012345".repeat(kib * 32))
            }
            "progress" => {
                let steps = args["steps"].as_u64().unwrap_or(3);
                let ms = args["ms"].as_u64().unwrap_or(10);
                let token = params.pointer("/_meta/progressToken").cloned();
                for i in 1..=steps {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if let Some(token) = &token {
                        let _ = out.send(notification(
                            "notifications/progress",
                            json!({"progressToken": token, "progress": i, "total": steps,
                                   "message": format!("{} {i}", args["message"].as_str().unwrap_or("step"))}),
                        ));
                    }
                }
                text(format!("done after {steps} steps"))
            }
            "count" => text(self.calls.load(Ordering::Relaxed).to_string()),
            "cancelled" => text(self.cancelled.load(Ordering::Relaxed).to_string()),
            "log" => {
                // At info; like real servers, only when the level set with setLevel allows it.
                if self.log_level.load(Ordering::Relaxed) <= 1 {
                    let _ = out.send(notification(
                        "notifications/message",
                        json!({"level": "info", "data": args["data"].as_str().unwrap_or("hello from echo-upstream")}),
                    ));
                }
                text("logged")
            }
            "rpc_error" => json!({"__rpc_error": args["message"].as_str().unwrap_or("internal error on purpose")}),
            "priced" => json!({"content": [{"type": "text", "text": "priced"}], "_meta": args["meta"].clone()}),
            "crash" => std::process::exit(3),
            "side_effect" => {
                if let Ok(path) = std::env::var("ECHO_EFFECTS_FILE") {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("effects file");
                    let _ = writeln!(f, "effect");
                }
                // Take `ms` after the effect, before answering (a call that times out after it ran).
                tokio::time::sleep(Duration::from_millis(args["ms"].as_u64().unwrap_or(0))).await;
                if args["crash"] == false {
                    return text("effect recorded");
                }
                std::process::exit(3)
            }
            "change_tools" => {
                let name = {
                    let mut d = self.dynamic_tools.lock().unwrap();
                    let name = format!("dynamic_{}", d.len() + 1);
                    d.push(name.clone());
                    name
                };
                // Announced on the call's own stream (before the answer, as SDK servers do) and
                // to every listener.
                let change = notification("notifications/tools/list_changed", json!({}));
                let _ = out.send(change.clone());
                let _ = self.changes.send(change);
                text(format!("added {name}"))
            }
            "touch" => {
                let uri = args["uri"].as_str().unwrap_or("echo://static/hello");
                let _ = self.changes.send(notification("notifications/resources/updated", json!({"uri": uri})));
                text(format!("touched {uri}"))
            }
            "touch_subscribed" => {
                let uri = args["uri"].as_str().unwrap_or("echo://static/hello");
                if !self.subscribed.lock().unwrap().contains(uri) {
                    return text(format!("nobody subscribed to {uri}"));
                }
                let _ = self.changes.send(notification("notifications/resources/updated", json!({"uri": uri})));
                text(format!("touched {uri}"))
            }
            "subscriptions" if params.pointer("/_meta/io.modelcontextprotocol~1protocolVersion").is_some() => {
                let filters = self.listen_filters.lock().unwrap();
                let watched: std::collections::BTreeSet<&String> = filters.values().flatten().collect();
                text(json!(watched).to_string())
            }
            "subscriptions" => text(json!(*self.subscribed.lock().unwrap()).to_string()),
            "env" => {
                let name = args["name"].as_str().unwrap_or_default();
                text(std::env::var(name).unwrap_or_else(|_| "<unset>".into()))
            }
            "stderr" => {
                use std::io::Write;
                let bytes = args["bytes"].as_u64().unwrap_or(10) as usize;
                let lines = args["lines"].as_u64().unwrap_or(1);
                let mut line = args["text"].as_str().map_or_else(|| "e".repeat(bytes), str::to_string);
                line.push('\n');
                for _ in 0..lines {
                    // Like most servers, die when stderr is broken (EPIPE).
                    let mut err = std::io::stderr().lock();
                    if err.write_all(line.as_bytes()).and_then(|()| err.flush()).is_err() {
                        std::process::exit(9);
                    }
                }
                text(format!("wrote {lines} lines"))
            }
            "meta" => text(params["_meta"].to_string()),
            // Modern era: no stream to ask on; answer input_required (2026-07-28 MRTR) and
            // read the answer from the same call sent again with inputResponses.
            "ask" if params.pointer("/_meta/io.modelcontextprotocol~1protocolVersion").is_some() => {
                let method = args["method"].as_str().unwrap_or("sampling/createMessage");
                let rounds = args["rounds"].as_u64().unwrap_or(1);
                let round = params["requestState"]
                    .as_str()
                    .and_then(|s| s.strip_prefix("echo-round-"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                let key = format!("q{round}");
                let answered = params["inputResponses"].get(&key).filter(|a| a.is_object());
                match answered {
                    Some(a) if round + 1 >= rounds => match a.pointer("/content/text").and_then(Value::as_str) {
                        Some(said) => text(format!("the client said: {said}")),
                        None => text(a.to_string()),
                    },
                    _ => {
                        let next = if answered.is_some() { round + 1 } else { round };
                        let ask_params = match (method, args["question"].as_str()) {
                            ("sampling/createMessage", Some(q)) => json!({
                                "messages": [{"role": "user", "content": {"type": "text", "text": q}}], "maxTokens": 16}),
                            _ => json!({}),
                        };
                        json!({"resultType": "input_required",
                               "inputRequests": {format!("q{next}"): {"method": method, "params": ask_params}},
                               "requestState": format!("echo-round-{next}")})
                    }
                }
            }
            "ask" => {
                let method = args["method"].as_str().unwrap_or("sampling/createMessage");
                let id = format!("ask-{}", self.next_session.fetch_add(1, Ordering::Relaxed));
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.asks.lock().unwrap().insert(id.clone(), tx);
                let params = match (method, args["question"].as_str()) {
                    ("sampling/createMessage", Some(q)) => json!({
                        "messages": [{"role": "user", "content": {"type": "text", "text": q}}], "maxTokens": 16}),
                    _ => json!({}),
                };
                let _ = out.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
                let wait = Duration::from_millis(args["wait_ms"].as_u64().unwrap_or(20_000));
                match tokio::time::timeout(wait, rx).await {
                    Ok(Ok(answer)) => match answer.pointer("/result/content/text").and_then(Value::as_str) {
                        Some(said) => text(format!("the client said: {said}")),
                        None => text(answer.to_string()),
                    },
                    _ => json!({"isError": true, "content": [{"type": "text", "text": "no answer from the client"}]}),
                }
            }
            "flood" => {
                let stall = args["stall_ms"].as_u64().unwrap_or(0);
                if stall > 0 {
                    self.stall_lists_ms.store(stall, Ordering::Relaxed);
                    let _ = out.send(notification("notifications/tools/list_changed", json!({})));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let uri = format!("echo://items/{}", "p".repeat(args["pad"].as_u64().unwrap_or(0) as usize));
                for _ in 0..args["n"].as_u64().unwrap_or(1000) {
                    let _ = out.send(notification("notifications/resources/updated", json!({"uri": uri})));
                }
                text("flooded")
            }
            "change_tools_quietly" => {
                let name = {
                    let mut d = self.dynamic_tools.lock().unwrap();
                    let name = format!("dynamic_{}", d.len() + 1);
                    d.push(name.clone());
                    name
                };
                let _ = self.changes.send(notification("notifications/tools/list_changed", json!({})));
                text(format!("added {name}"))
            }
            "oversized_event" => {
                let _ = self.changes.send(json!({"__oversized_mib": args["mib"].as_u64().unwrap_or(1)}));
                text("sent")
            }
            "routed" | "bad_header" => text(format!("{name} without headers: {args}")),
            other => json!({"isError": true, "content": [{"type": "text", "text": format!("Unknown tool: {other}")}]}),
        }
    }
}

/// Turn the `rpc_error` marker into a JSON-RPC error.
fn finish(mut answer: Value) -> Value {
    if let Some(marker) = answer.pointer("/result/__rpc_error") {
        let message = marker.as_str().unwrap_or("internal error on purpose").to_string();
        return error(&answer["id"].take(), -32603, &message);
    }
    answer
}

async fn serve_stdio(up: Arc<Upstream>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(msg) = rx.recv().await {
            let mut line = serde_json::to_vec(&msg).expect("JSON");
            line.push(b'\n');
            while let Ok(more) = rx.try_recv() {
                line.extend(serde_json::to_vec(&more).expect("JSON"));
                line.push(b'\n');
            }
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                std::process::exit(0);
            }
        }
    });
    let mut changes = up.changes.subscribe();
    let change_tx = tx.clone();
    tokio::spawn(async move {
        while let Ok(n) = changes.recv().await {
            let _ = change_tx.send(n);
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut calls = tokio::task::JoinSet::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        if msg["method"] == "notifications/cancelled" {
            up.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        if msg.get("method").is_none() && msg.get("id").is_some() {
            up.answered(&msg);
            continue;
        }
        if msg.get("method").is_none() || msg.get("id").is_none() {
            continue;
        }
        let up = Arc::clone(&up);
        let tx = tx.clone();
        calls.spawn(async move {
            let answer = finish(up.request(&msg, &tx).await);
            let _ = tx.send(answer);
        });
    }
    // stdin closed: answer what is in flight, then exit.
    while calls.join_next().await.is_some() {}
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, body: Vec<u8>, session: Option<&str>) -> Response<Body> {
    let mut b = Response::builder().status(status).header("content-type", "application/json");
    if let Some(s) = session {
        b = b.header("mcp-session-id", s);
    }
    b.body(Full::new(Bytes::from(body)).boxed()).expect("response")
}

fn sse_frame(v: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {}\n\n", serde_json::to_string(v).expect("JSON")))
}

async fn http(up: Arc<Upstream>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if let Some(token) = BEARER.get() {
        let given = req.headers().get("authorization").and_then(|v| v.to_str().ok());
        if given != Some(&format!("Bearer {token}")) {
            return Ok(full(StatusCode::UNAUTHORIZED, b"{}".to_vec(), None));
        }
    }
    let modern_header = req.headers().get("mcp-protocol-version").and_then(|v| v.to_str().ok()) == Some(MODERN);
    let session = req.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    if req.method() == Method::GET && req.uri().path() == "/stats" {
        let stats = json!({"get_streams": up.get_streams.load(Ordering::SeqCst),
                           "listen_streams": up.listen_filters.lock().unwrap().len()});
        return Ok(full(StatusCode::OK, serde_json::to_vec(&stats).unwrap(), None));
    }
    if req.method() == Method::GET {
        if modern_header || session.as_ref().is_none_or(|s| !up.sessions.lock().unwrap().contains(s)) {
            return Ok(full(StatusCode::METHOD_NOT_ALLOWED, Vec::new(), None));
        }
        let resume = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Some(stream_id) = resume.and_then(|last| last.rsplit_once('-').map(|(s, _)| s.to_string())) {
            // Resumption of a call stream that was closed early: replay its answer once ready.
            let pending = up.parked.lock().unwrap().remove(&stream_id);
            let Some(answer) = pending else { return Ok(full(StatusCode::NOT_FOUND, Vec::new(), None)) };
            let stream = async_stream(move |tx| async move {
                if let Ok(answer) = answer.await {
                    let frame = format!("id: {stream_id}-1\nevent: message\ndata: {answer}\n\n");
                    let _ = tx.send(Ok(Frame::data(Bytes::from(frame)))).await;
                }
            });
            return Ok(Response::builder().header("content-type", "text/event-stream").body(stream).expect("response"));
        }
        let mut changes = up.changes.subscribe();
        // This session's own messages (`ask` with `untied`), as an SDK sends what is tied to
        // no request: on the session's standalone stream, or nowhere when none is open.
        let session = session.expect("checked above");
        let (own_tx, mut own) = mpsc::unbounded_channel();
        up.standalone.lock().unwrap().insert(session.clone(), own_tx);
        up.get_streams.fetch_add(1, Ordering::SeqCst);
        let up2 = Arc::clone(&up);
        let stream = async_stream(move |tx| async move {
            struct Open(Arc<Upstream>, String);
            impl Drop for Open {
                fn drop(&mut self) {
                    self.0.get_streams.fetch_sub(1, Ordering::SeqCst);
                    let mut standalone = self.0.standalone.lock().unwrap();
                    if standalone.get(&self.1).is_some_and(|s| s.is_closed()) {
                        standalone.remove(&self.1);
                    }
                }
            }
            let _open = Open(up2, session);
            loop {
                // A stream its client dropped ends here, not only at the next write.
                let n = tokio::select! {
                    n = changes.recv() => match n { Ok(n) => n, Err(_) => return },
                    Some(n) = own.recv() => n,
                    () = tx.closed() => return,
                };
                if send_change(&tx, &n).await.is_err() {
                    return;
                }
            }
        });
        return Ok(Response::builder().header("content-type", "text/event-stream").body(stream).expect("response"));
    }
    let headers = req.headers().clone();
    if req.method() == Method::DELETE {
        let removed = session.as_ref().is_some_and(|s| up.sessions.lock().unwrap().remove(s));
        return Ok(full(if removed { StatusCode::OK } else { StatusCode::NOT_FOUND }, Vec::new(), None));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(full(StatusCode::BAD_REQUEST, Vec::new(), None)),
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return Ok(full(
            StatusCode::BAD_REQUEST,
            serde_json::to_vec(&error(&Value::Null, -32700, "Parse error")).unwrap(),
            None,
        ));
    };
    let method = msg["method"].as_str().unwrap_or("").to_string();
    let mut new_session = None;
    if !modern_header {
        if method == "initialize" {
            let id = format!("s-{}", up.next_session.fetch_add(1, Ordering::Relaxed));
            up.sessions.lock().unwrap().insert(id.clone());
            new_session = Some(id);
        } else {
            match &session {
                None => {
                    return Ok(full(
                        StatusCode::BAD_REQUEST,
                        serde_json::to_vec(&error(&Value::Null, -32000, "Bad Request: no session")).unwrap(),
                        None,
                    ));
                }
                Some(s) if !up.sessions.lock().unwrap().contains(s) => {
                    return Ok(full(StatusCode::NOT_FOUND, Vec::new(), None));
                }
                Some(_) => {}
            }
        }
    }
    if msg.get("method").is_none() && msg.get("id").is_some() {
        up.answered(&msg);
        return Ok(full(StatusCode::ACCEPTED, Vec::new(), None));
    }
    if msg.get("id").is_none() {
        return Ok(full(StatusCode::ACCEPTED, Vec::new(), None));
    }
    if modern_header && method == "subscriptions/listen" {
        let id = msg["id"].clone();
        let mut changes = up.changes.subscribe();
        // resourceSubscriptions: the updates this stream wants (the modern resources/subscribe).
        let watched: Vec<String> = msg
            .pointer("/params/notifications/resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let key = up.next_session.fetch_add(1, Ordering::Relaxed);
        up.listen_filters.lock().unwrap().insert(key, watched.clone());
        let up2 = Arc::clone(&up);
        // Task status notifications (`--tasks`): a completed notification for each named task.
        let asked: Vec<String> = msg
            .pointer("/params/notifications/taskIds")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let watches = if TASKS_ON.load(Ordering::Relaxed) { up.tasks.watch(&asked) } else { Vec::new() };
        let params = msg["params"].clone();
        let worker = Arc::clone(&up);
        let stream = async_stream(move |tx| async move {
            struct Forget(Arc<Upstream>, u64);
            impl Drop for Forget {
                fn drop(&mut self) {
                    self.0.listen_filters.lock().unwrap().remove(&self.1);
                }
            }
            let _forget = Forget(up2, key);
            let mut agreed = json!({"toolsListChanged": true});
            if !watched.is_empty() {
                agreed["resourceSubscriptions"] = json!(watched);
            }
            if !watches.is_empty() {
                agreed["taskIds"] = watches.iter().map(|(t, _)| Value::from(t.as_str())).collect();
            }
            let ack = notification(
                "notifications/subscriptions/acknowledged",
                json!({"notifications": agreed, "_meta": {"io.modelcontextprotocol/subscriptionId": id}}),
            );
            if tx.send(Ok(Frame::data(sse_frame(&ack)))).await.is_err() {
                return;
            }
            let (task_tx, sub) = (tx.clone(), id.clone());
            tokio::spawn(async move {
                for (task, at) in watches {
                    tokio::time::sleep_until(at.into()).await;
                    let mut get = params.clone();
                    get["taskId"] = task.as_str().into();
                    let Ok(mut detail) = worker.tasks.method("tasks/get", &get) else { continue };
                    detail.as_object_mut().expect("an object").remove("resultType");
                    detail["_meta"] = json!({"io.modelcontextprotocol/subscriptionId": sub});
                    let n = notification("notifications/tasks", detail);
                    if task_tx.send(Ok(Frame::data(sse_frame(&n)))).await.is_err() {
                        return;
                    }
                }
            });
            loop {
                // A stream its client dropped ends here (and its filter with it), not only at
                // the next write.
                let mut n = tokio::select! {
                    n = changes.recv() => match n { Ok(n) => n, Err(_) => return },
                    () = tx.closed() => return,
                };
                if n["method"] == "notifications/resources/updated"
                    && !n.pointer("/params/uri").and_then(Value::as_str).is_some_and(|u| watched.iter().any(|w| w == u))
                {
                    continue;
                }
                if n.get("method").is_some() {
                    n["params"]["_meta"] = json!({"io.modelcontextprotocol/subscriptionId": id});
                }
                if send_change(&tx, &n).await.is_err() {
                    return;
                }
            }
        });
        return Ok(Response::builder().header("content-type", "text/event-stream").body(stream).expect("response"));
    }
    let park = msg.pointer("/params/name").and_then(Value::as_str).filter(|n| *n == "park" || *n == "park_bad_id");
    if let Some(park) = park.filter(|_| !modern_header) {
        let bad_id = park == "park_bad_id";
        // Answer later: prime the stream with an event id and a retry hint, close it, and let
        // the client resume it with GET + Last-Event-ID (2025-11-25 resumability).
        let stream_id = format!("park-{}", up.next_session.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = tokio::sync::oneshot::channel();
        up.parked.lock().unwrap().insert(stream_id.clone(), rx);
        let worker = Arc::clone(&up);
        tokio::spawn(async move {
            let (ntx, _nrx) = mpsc::unbounded_channel();
            let mut call = msg.clone();
            call["params"]["name"] = json!("sleep_ms");
            let answer = finish(worker.request(&call, &ntx).await);
            let _ = tx.send(serde_json::to_string(&answer).expect("JSON"));
        });
        // A control character is fine in an SSE line but not in the Last-Event-ID header.
        let priming = if bad_id {
            format!("id: {stream_id}\u{1}-0\nretry: 50\ndata: \n\n")
        } else {
            format!("id: {stream_id}-0\nretry: 50\ndata: \n\n")
        };
        return Ok(Response::builder()
            .header("content-type", "text/event-stream")
            .body(Full::new(Bytes::from(priming)).boxed())
            .expect("response"));
    }
    if modern_header && method == "tools/call" && msg.pointer("/params/name") == Some(&json!("routed")) {
        up.calls.fetch_add(1, Ordering::Relaxed);
        let (status, answer) = match check_routed(&headers, &msg["params"]["arguments"]) {
            Ok(seen) => (
                StatusCode::OK,
                result(
                    &msg["id"],
                    json!({"resultType": "complete", "content": [{"type": "text", "text": format!("headers: {seen}")}]}),
                ),
            ),
            Err(why) => (StatusCode::BAD_REQUEST, error(&msg["id"], -32020, &why)),
        };
        return Ok(full(status, serde_json::to_vec(&answer).unwrap(), None));
    }
    // Misbehaviour on purpose: what a broken server or proxy in front of it sends.
    match msg.pointer("/params/name").and_then(Value::as_str) {
        Some("http_error") => {
            let page = match msg.pointer("/params/arguments/message").and_then(Value::as_str) {
                Some(m) => format!("internal error: {m}").into_bytes(),
                None => b"internal error: cannot reach db.internal.corp:5432 (user=svc password=hunter2)".to_vec(),
            };
            let mut resp = full(StatusCode::INTERNAL_SERVER_ERROR, page, None);
            resp.headers_mut().insert("content-type", http::HeaderValue::from_static("text/plain"));
            return Ok(resp);
        }
        Some("garbage") => {
            let page = b"<html>stack trace at 10.1.2.3 in /srv/app/secret.py</html>".to_vec();
            let mut resp = full(StatusCode::OK, page, None);
            resp.headers_mut().insert("content-type", http::HeaderValue::from_static("text/html"));
            return Ok(resp);
        }
        _ => {}
    }
    let streams = msg.pointer("/params/_meta/progressToken").is_some()
        || matches!(msg.pointer("/params/name").and_then(Value::as_str), Some("log" | "change_tools" | "ask"));
    if !streams {
        let (tx, _rx) = mpsc::unbounded_channel();
        let answer = finish(up.request(&msg, &tx).await);
        return Ok(full(StatusCode::OK, serde_json::to_vec(&answer).unwrap(), new_session.as_deref()));
    }
    // `ask` with `untied`: the request goes on the session's standalone stream (if open).
    let untied = (!modern_header && msg.pointer("/params/arguments/untied") == Some(&json!(true)))
        .then(|| session.as_ref().and_then(|s| up.standalone.lock().unwrap().get(s).cloned()));
    let stream = async_stream(move |out| async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let nowhere = mpsc::unbounded_channel().0;
        let call = match &untied {
            Some(Some(standalone)) => up.request(&msg, standalone),
            Some(None) => up.request(&msg, &nowhere),
            None => up.request(&msg, &tx),
        };
        tokio::pin!(call);
        let answer = loop {
            tokio::select! {
                Some(n) = rx.recv() => { let _ = out.send(Ok(Frame::data(sse_frame(&n)))).await; }
                a = &mut call => break a,
            }
        };
        while let Ok(n) = rx.try_recv() {
            let _ = out.send(Ok(Frame::data(sse_frame(&n)))).await;
        }
        let _ = out.send(Ok(Frame::data(sse_frame(&finish(answer))))).await;
    });
    Ok(Response::builder().header("content-type", "text/event-stream").body(stream).expect("response"))
}

/// `routed`'s `x-mcp-header` arguments: (property, header).
const ROUTED_HEADERS: [(&str, &str); 3] =
    [("region", "mcp-param-region"), ("tenant", "mcp-param-tenant"), ("dry", "mcp-param-dry")];

/// Check `routed`'s `Mcp-Param-*` headers against its arguments as a strict 2026-07-28 server
/// does: a present argument needs its header carrying the same value (`=?base64?…?=` decoded),
/// an absent one must have none. `Ok`: the raw headers received (`name=value`, space-separated).
fn check_routed(headers: &http::HeaderMap, args: &Value) -> Result<String, String> {
    use base64::Engine;
    let decode = |raw: &str| -> Option<String> {
        let raw = raw.trim();
        match raw.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
            Some(b64) => String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok(),
            None => Some(raw.to_string()),
        }
    };
    let mut seen = Vec::new();
    for (prop, header) in ROUTED_HEADERS {
        let mut values = headers.get_all(header).iter();
        let (raw, again) = (values.next(), values.next());
        if again.is_some() {
            return Err(format!("{header} appears twice"));
        }
        let raw = raw.map(|v| v.to_str().map_err(|_| format!("{header} is not visible ASCII"))).transpose()?;
        match (args.get(prop).filter(|v| !v.is_null()), raw) {
            (None, None) => {}
            (None, Some(_)) => return Err(format!("{header} is sent without its argument")),
            (Some(_), None) => return Err(format!("{header} is missing")),
            (Some(v), Some(raw)) => {
                let decoded = decode(raw).ok_or_else(|| format!("{header} is not valid base64"))?;
                let expected = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                if decoded != expected {
                    return Err(format!("{header} carries {decoded:?}, the body {expected:?}"));
                }
                seen.push(format!("{header}={raw}"));
            }
        }
    }
    Ok(seen.join(" "))
}

/// Write one notification-stream item: a notification, or (the `oversized_event` marker) one
/// SSE event of that many MiB, sent a MiB at a time.
async fn send_change(tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>, n: &Value) -> Result<(), ()> {
    let Some(mib) = n.get("__oversized_mib").and_then(Value::as_u64) else {
        return tx.send(Ok(Frame::data(sse_frame(n)))).await.map_err(|_| ());
    };
    let chunk = Bytes::from(vec![b'x'; 1 << 20]);
    tx.send(Ok(Frame::data(Bytes::from_static(b"event: message\ndata: ")))).await.map_err(|_| ())?;
    for _ in 0..mib {
        tx.send(Ok(Frame::data(chunk.clone()))).await.map_err(|_| ())?;
    }
    tx.send(Ok(Frame::data(Bytes::from_static(b"\n\n")))).await.map_err(|_| ())
}

/// A streaming body fed by an async producer.
fn async_stream<F, Fut>(producer: F) -> Body
where
    F: FnOnce(mpsc::Sender<Result<Frame<Bytes>, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(producer(tx));
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    BodyExt::boxed(StreamBody::new(stream))
}

async fn serve_http(up: Arc<Upstream>, listen: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let up = Arc::clone(&up);
        tokio::spawn(async move {
            let service = service_fn(move |req| http(Arc::clone(&up), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        match args.mode {
            Mode::Stdio { era, schemas } => {
                schemas.apply();
                serve_stdio(Upstream::new(era)).await
            }
            Mode::Http { listen, era, echo_delay_ms, bearer, invalid_tool, tasks, schemas } => {
                schemas.apply();
                ECHO_DELAY_MS.store(echo_delay_ms, Ordering::Relaxed);
                INVALID_TOOL.store(invalid_tool, Ordering::Relaxed);
                TASKS_ON.store(tasks, Ordering::Relaxed);
                if let Some(token) = bearer {
                    let _ = BEARER.set(token);
                }
                if let Err(e) = serve_http(Upstream::new(era), &listen).await {
                    eprintln!("echo-upstream: {e}");
                    std::process::exit(1);
                }
            }
        }
    });
}
