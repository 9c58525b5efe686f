//! An MCP load generator: C concurrent workers send `tools/call` over Streamable HTTP (legacy
//! era: one `initialize`d session shared by the workers; modern era: per-request `_meta` and
//! routing headers), read JSON or SSE answers, verify every result, and print one JSON line:
//! requests, errors, req/s and latency percentiles in µs.
//!
//! Usage: `loadgen --url http://127.0.0.1:8080/mcp --tool echo [--era modern|legacy]
//!         [--concurrency 32] [--duration 10 | --requests N] [--kib 16]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sekisho_bench::mcp::{LEGACY, MODERN, envelope};
use serde_json::{Value, json};

#[derive(Parser, Clone)]
struct Args {
    /// Streamable HTTP endpoint.
    #[arg(long)]
    url: String,
    /// Tool to call: `echo` (small) or `big` (`--kib` KiB of text); a namespaced name works too
    /// (e.g. `h__echo`), the part after the last `__` picks the verification.
    #[arg(long, default_value = "echo")]
    tool: String,
    /// Size of `big` results in KiB.
    #[arg(long, default_value_t = 16)]
    kib: u64,
    /// Protocol era of the client.
    #[arg(long, value_enum, default_value = "modern")]
    era: Era,
    /// Concurrent workers (each with its own keep-alive connection).
    #[arg(long, short, default_value_t = 32)]
    concurrency: usize,
    /// Run this many seconds (ignored when --requests is given).
    #[arg(long, short, default_value_t = 10.0)]
    duration: f64,
    /// Send exactly this many requests in total.
    #[arg(long, short)]
    requests: Option<u64>,
    /// Untimed warm-up seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Cycle `echo` messages over this many distinct values (so a caching gateway can hit);
    /// 0 makes every message unique.
    #[arg(long, default_value_t = 0)]
    distinct: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Era {
    Modern,
    Legacy,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Target {
    client: HttpClient,
    uri: Uri,
    era: Era,
    session: Option<String>,
    tool: String,
    kib: u64,
    distinct: u64,
}

impl Target {
    fn request(&self, id: u64, body: Value, method: &str, name: Option<&str>) -> Request<Full<Bytes>> {
        let mut b = Request::post(self.uri.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        match self.era {
            Era::Modern => {
                b = b.header("mcp-protocol-version", MODERN).header("mcp-method", method);
                if let Some(name) = name {
                    b = b.header("mcp-name", name);
                }
            }
            Era::Legacy => {
                if let Some(s) = &self.session {
                    b = b.header("mcp-session-id", s).header("mcp-protocol-version", LEGACY);
                }
            }
        }
        let _ = id;
        b.body(Full::new(Bytes::from(serde_json::to_vec(&body).expect("JSON")))).expect("request")
    }

    fn call_body(&self, id: u64) -> Value {
        let arguments =
            if self.verify_kind() == "big" { json!({"kib": self.kib}) } else { json!({"message": self.message(id)}) };
        let mut params = json!({"name": self.tool, "arguments": arguments});
        if self.era == Era::Modern {
            params["_meta"] = envelope();
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
    }

    fn message(&self, id: u64) -> String {
        if self.distinct == 0 { format!("m{id}") } else { format!("m{}", id % self.distinct) }
    }

    fn verify_kind(&self) -> &str {
        self.tool.rsplit("__").next().unwrap_or(&self.tool)
    }

    /// One call; `Ok(())` only when the answer carries the expected result.
    async fn call(&self, id: u64) -> Result<(), String> {
        let req = self.request(id, self.call_body(id), "tools/call", Some(&self.tool));
        let resp = self.client.request(req).await.map_err(|e| format!("transport: {e}"))?;
        let sse = resp.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let message = if sse { last_sse_data(&body).ok_or("no SSE event")? } else { body };
        let v: Value = serde_json::from_slice(&message).map_err(|e| format!("JSON: {e}"))?;
        if v["id"] != id {
            return Err(format!("wrong id: {}", v["id"]));
        }
        let text =
            v.pointer("/result/content/0/text").and_then(Value::as_str).ok_or_else(|| format!("no result: {v}"))?;
        let ok = match self.verify_kind() {
            "big" => text.len() as u64 == self.kib * 1024,
            _ => text == self.message(id),
        };
        if ok { Ok(()) } else { Err("wrong result".into()) }
    }
}

fn last_sse_data(body: &[u8]) -> Option<Bytes> {
    let text = std::str::from_utf8(body).ok()?;
    let mut last = None;
    for block in text.split("\n\n") {
        let data: Vec<&str> =
            block.lines().filter_map(|l| l.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d))).collect();
        if !data.is_empty() && !data.iter().all(|d| d.is_empty()) {
            last = Some(Bytes::from(data.join("\n")));
        }
    }
    last
}

async fn connect(args: &Args) -> Result<Target, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(args.concurrency * 2).build(http);
    let uri: Uri = args.url.parse().map_err(|e| format!("--url: {e}"))?;
    let mut target = Target {
        client,
        uri,
        era: args.era,
        session: None,
        tool: args.tool.clone(),
        kib: args.kib,
        distinct: args.distinct,
    };
    if args.era == Era::Legacy {
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "sekisho-loadgen", "version": "0"}}});
        let resp =
            target.client.request(target.request(0, init, "initialize", None)).await.map_err(|e| e.to_string())?;
        let session = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let _ = resp.into_body().collect().await;
        target.session = Some(session.ok_or("initialize returned no Mcp-Session-Id")?);
        let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        let resp = target
            .client
            .request(target.request(0, note, "notifications/initialized", None))
            .await
            .map_err(|e| e.to_string())?;
        let _ = resp.into_body().collect().await;
    }
    Ok(target)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let report = runtime.block_on(run(args));
    match report {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> Result<Value, String> {
    let target = Arc::new(connect(&args).await?);
    target.call(0).await.map_err(|e| format!("the first call failed: {e}"))?;
    if args.warmup > 0.0 {
        let stop = Instant::now() + Duration::from_secs_f64(args.warmup);
        let workers: Vec<_> = (0..args.concurrency)
            .map(|w| {
                let t = Arc::clone(&target);
                tokio::spawn(async move {
                    let mut i = 0;
                    while Instant::now() < stop {
                        let _ = t.call(1_000_000_000 + (w as u64) * 1_000_000 + i).await;
                        i += 1;
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
    }
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let budget = args.requests;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (t, issued, errors, done) =
                (Arc::clone(&target), Arc::clone(&issued), Arc::clone(&errors), Arc::clone(&done));
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(64 * 1024);
                loop {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    let over = match budget {
                        Some(b) => n >= b,
                        None => done.load(Ordering::Relaxed) || Instant::now() >= deadline,
                    };
                    if over {
                        issued.fetch_sub(1, Ordering::Relaxed);
                        return latencies;
                    }
                    let t0 = Instant::now();
                    let outcome = t.call(n + 1).await;
                    latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    if let Err(e) = outcome
                        && errors.fetch_add(1, Ordering::Relaxed) < 3
                    {
                        eprintln!("loadgen: call {} failed: {e}", n + 1);
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.map_err(|e| e.to_string())?);
    }
    done.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let requests = all.len() as u64;
    Ok(json!({
        "url": args.url, "tool": args.tool, "era": if args.era == Era::Modern { "modern" } else { "legacy" },
        "concurrency": args.concurrency, "requests": requests, "errors": errors.load(Ordering::Relaxed),
        "seconds": (elapsed * 1000.0).round() / 1000.0, "rps": ((requests as f64 / elapsed) * 10.0).round() / 10.0,
        "p50_us": percentile(&all, 50.0), "p90_us": percentile(&all, 90.0), "p99_us": percentile(&all, 99.0),
        "p999_us": percentile(&all, 99.9), "max_us": all.last().copied().unwrap_or(0),
    }))
}
