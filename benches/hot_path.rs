//! Micro-benchmarks of the pieces on the hot path: envelope parse + forward, catalog lookup and
//! name mapping, SSE framing, argument validation. Run with `cargo bench --bench hot_path`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sekisho::catalog::listing::{Entry, Hint};
use sekisho::catalog::{Catalog, UpstreamLists, naming};
use sekisho::front::rescue;
use sekisho::pipeline::parts::{ClientSide, Origin, Params, Reply};
use sekisho::upstream::translate::{Outbound, write_params};
use sekisho::wire::jsonrpc::{Kind, Message, Outcome, write_request};
use sekisho::wire::mcp::Era;
use sekisho::wire::sse;

const CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"h__echo","arguments":{"message":"hello world"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"0"}}}}"#;

fn big_result(kib: usize) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"{}"}}],"resultType":"complete"}}}}"#,
        "abcdefghijklmnopqrstuvwxyz012345".repeat(kib * 32)
    )
}

/// Client request in, upstream request out: frame, view params, rename, rewrite `_meta`.
fn envelope(c: &mut Criterion) {
    let client = ClientSide {
        era: Era::Modern,
        version: "2026-07-28",
        capabilities: Bytes::from_static(b"{}"),
        log_level: None,
    };
    let body = Bytes::from_static(CALL.as_bytes());
    let mut g = c.benchmark_group("envelope");
    for (label, upstream) in [("forward_same_era", Era::Modern), ("forward_to_legacy", Era::Legacy)] {
        g.bench_function(label, |b| {
            let mut out = Vec::with_capacity(512);
            b.iter(|| {
                let msg = Message::parse(black_box(body.clone())).unwrap();
                let Kind::Request { params, .. } = &msg.kind else { unreachable!() };
                let params = Params::parse(msg.src.slice(params.clone().unwrap())).unwrap();
                let name = params.str("name").unwrap();
                assert_eq!(name, "h__echo");
                out.clear();
                let mut p = Vec::with_capacity(256);
                write_params(
                    &mut p,
                    &Outbound {
                        params: &params,
                        replace: &[("name", br#""echo""#)],
                        drop: &[],
                        progress_token: None,
                        idempotency_key: None,
                        client: &client,
                        upstream: (upstream, if upstream == Era::Modern { "2026-07-28" } else { "2025-11-25" }),
                    },
                );
                write_request(&mut out, b"17", "tools/call", Some(&p));
                black_box(&out);
            })
        });
    }
    for kib in [0usize, 16] {
        let response = Bytes::from(if kib == 0 {
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hello world"}]}}"#.to_string()
        } else {
            big_result(kib)
        });
        g.throughput(Throughput::Bytes(response.len() as u64));
        g.bench_function(format!("answer_back_{kib}kib_legacy_upstream_to_modern_client"), |b| {
            let upstream: Arc<str> = Arc::from("h");
            b.iter(|| {
                let msg = Message::parse(black_box(response.clone())).unwrap();
                let Kind::Response { outcome: Outcome::Result(span), .. } = &msg.kind else { unreachable!() };
                let reply = Reply::Result {
                    body: msg.src.slice(span.clone()),
                    origin: Origin::Upstream(Era::Legacy, Arc::clone(&upstream)),
                };
                black_box(rescue::answer(b"42", "tools/call", Ok(reply), Era::Modern));
            })
        });
    }
    g.finish();
}

/// Name lookups in a 300-tool catalog, and the naming rule itself.
fn catalog(c: &mut Criterion) {
    let mut lists = BTreeMap::new();
    for ns in ["alpha", "beta", "gamma"] {
        let mut ul = UpstreamLists { up: true, listed: true, ..Default::default() };
        ul.items[0] = (0..100)
            .map(|i| {
                let id = format!("tool_{i}");
                Entry {
                    raw: Bytes::from(format!(
                        r#"{{"name":"{id}","description":"d","inputSchema":{{"type":"object"}}}}"#
                    )),
                    id,
                }
            })
            .collect();
        ul.hints[0] = Hint::default();
        lists.insert(Arc::<str>::from(ns), Arc::new(ul));
    }
    let catalog = Catalog::build(1, &lists, "__");
    let mut g = c.benchmark_group("catalog");
    g.bench_function("tool_lookup", |b| b.iter(|| black_box(catalog.tool(black_box("gamma__tool_57")).unwrap())));
    g.bench_function("resource_lookup_prefixed", |b| {
        b.iter(|| black_box(catalog.resource(black_box("sekisho://beta/file:///tmp/x"))))
    });
    g.bench_function("exposed_name_portable", |b| {
        b.iter(|| black_box(naming::exposed_name("alpha", "__", black_box("get_weather"))))
    });
    g.bench_function("exposed_name_hashed", |b| {
        b.iter(|| black_box(naming::exposed_name("alpha", "__", black_box("weather.forecast/daily"))))
    });
    g.bench_function("build_300_tools", |b| b.iter(|| black_box(Catalog::build(2, &lists, "__"))));
    g.finish();
}

/// SSE encoding of answers and decoding of upstream streams.
fn sse_framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse");
    for kib in [0usize, 16] {
        let msg = if kib == 0 { CALL.to_string() } else { big_result(kib) };
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(format!("encode_{kib}kib"), |b| {
            let mut out = Vec::with_capacity(msg.len() + 64);
            b.iter(|| {
                out.clear();
                sse::write_event(&mut out, black_box(msg.as_bytes()), None);
                black_box(&out);
            })
        });
        let mut stream = Vec::new();
        for _ in 0..4 {
            sse::write_event(&mut stream, msg.as_bytes(), Some("1"));
        }
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(format!("decode_4x{kib}kib_in_4k_chunks"), |b| {
            b.iter(|| {
                let mut d = sse::Decoder::new(1 << 24);
                let mut n = 0;
                for chunk in stream.chunks(4096) {
                    d.push(chunk);
                    while let Some(e) = d.next_event().unwrap() {
                        n += e.data.len();
                    }
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

/// The resilience layers on the success path of one call, without I/O: global admission,
/// the upstream's bulkhead, the retry budget's call count, the breaker's admit and verdict,
/// and the timeout's timer (measured against the same future without one).
fn resilience_layers(c: &mut Criterion) {
    use std::time::Duration;

    use sekisho::observe::metrics::Name;
    use sekisho::pipeline::admit::Admission;
    use sekisho::pipeline::parts::{Identity, Principal};
    use sekisho::upstream::breaker::{Breaker, BreakerConfig};
    use sekisho::upstream::classify::Verdict;
    use sekisho::upstream::retry::RetryConfig;
    use tower::retry::budget::Budget;

    let global = Admission::new(Name::Static("gateway"), 1024, 1024, Duration::from_secs(5), Duration::from_secs(1));
    let bulkhead = Admission::new(Name::Static("up"), 256, 256, Duration::from_secs(5), Duration::from_secs(1));
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let _clock = rt.enter();
    let budget = RetryConfig::default().budget();
    let breaker = Breaker::new(BreakerConfig::default());
    let identity = Identity { id: "key:0123456789abcdef".into(), ..Default::default() };
    let caller = Principal::ApiKey(std::sync::Arc::new(identity));
    let mut g = c.benchmark_group("layers");
    g.bench_function("admission+bulkhead+budget+breaker", |b| {
        b.iter(|| {
            let outer = global.try_acquire(&caller).expect("free");
            let slot = bulkhead.try_acquire(&caller).expect("free");
            budget.deposit();
            let ticket = breaker.admit().expect("closed");
            breaker.record(ticket, Verdict::Healthy);
            drop(slot);
            drop(outer);
        })
    });
    g.bench_function("future_without_timeout", |b| b.iter(|| rt.block_on(async { black_box(1) })));
    g.bench_function("future_with_timeout", |b| {
        b.iter(|| rt.block_on(async { tokio::time::timeout(Duration::from_secs(120), async { black_box(1) }).await }))
    });
    g.finish();
}

/// The cache's work on one call without I/O (no Redis): the key (canonical arguments, SHA-256),
/// an L1 hit, and a miss that leads the coalescing flight and stores into a full L1.
fn cache_path(c: &mut Criterion) {
    use std::time::Duration;

    use sekisho::cache::coalesce::{Coalescer, Flight};
    use sekisho::cache::config::{CacheConfig, CacheScope, RedisConfig};
    use sekisho::cache::entry::Entry;
    use sekisho::cache::key::canonical_arguments;
    use sekisho::cache::store::Store;
    use sekisho::pipeline::parts::Principal;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let store = rt.block_on(async {
        Store::new(&CacheConfig::default(), &RedisConfig::default(), tokio_util::sync::CancellationToken::new())
    });
    let coalescer = Coalescer::new(CacheConfig::default().lease);
    let body = br#"{"content":[{"type":"text","text":"m12345"}]}"#;
    let up: Arc<str> = Arc::from("c");
    let ttl = Duration::from_secs(300);
    let entry = || Arc::new(Entry::new(body, false, Era::Legacy, &up, "echo", ttl, false));
    let args = br#"{"message":"m12345"}"#;
    let key = |i: u64| {
        let store = Arc::clone(&store);
        async move {
            let args = format!(r#"{{"message":"m{i}"}}"#);
            let canonical = canonical_arguments(Some(args.as_bytes())).expect("readable arguments");
            store.key(&Principal::Anonymous, CacheScope::Private, "c", "echo", &canonical).await
        }
    };
    let mut g = c.benchmark_group("cache");
    g.bench_function("key: canonical arguments + SHA-256", |b| {
        b.iter(|| {
            let canonical = canonical_arguments(Some(black_box(args))).expect("readable arguments");
            rt.block_on(store.key(&Principal::Anonymous, CacheScope::Private, "c", "echo", &canonical))
        })
    });
    let hit = rt.block_on(key(0));
    rt.block_on(store.put(&hit, entry()));
    g.bench_function("hit: L1 lookup", |b| b.iter(|| rt.block_on(store.lookup(black_box(&hit))).expect("hit")));
    // Fill L1 to its cap so every further miss also evicts.
    rt.block_on(async {
        for i in 1..=12_000 {
            store.put(&key(i).await, entry()).await;
        }
    });
    let mut i = 1_000_000u64;
    g.bench_function("miss: lookup + lead the flight + store into a full L1", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(async {
                let key = key(i).await;
                assert!(store.lookup(&key).await.is_none());
                let Flight::Leader(leader) = coalescer.coalesce(&store, &key).await else { panic!("leader") };
                let e = entry();
                store.put(&key, Arc::clone(&e)).await;
                leader.finish(Some(e));
            })
        })
    });
    g.finish();
}

/// Argument validation (`pipeline::validate`): the same `tools/call` framed and forwarded with
/// and without checking its arguments against the tool's `inputSchema`, side by side; a small
/// schema (`add`) and a larger one (8 members, a nested object, an enum, a pattern, an array).
fn validation(c: &mut Criterion) {
    use sekisho::pipeline::validate::Validators;
    use serde_json::json;

    let client = ClientSide {
        era: Era::Modern,
        version: "2026-07-28",
        capabilities: Bytes::from_static(b"{}"),
        log_level: None,
    };
    let add = json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]});
    let form = json!({"type": "object", "additionalProperties": false, "required": ["city", "days", "units"],
        "properties": {
            "city": {"type": "string", "minLength": 1, "maxLength": 100},
            "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
            "days": {"type": "integer", "minimum": 1, "maximum": 16},
            "units": {"enum": ["metric", "imperial"]},
            "hourly": {"type": "boolean"},
            "fields": {"type": "array", "items": {"type": "string"}, "maxItems": 20, "uniqueItems": true},
            "location": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                         "required": ["lat", "lon"]},
            "note": {"type": "string"}}});
    let mut ul = UpstreamLists { up: true, listed: true, ..Default::default() };
    ul.items[0] = [("add", add), ("forecast", form)]
        .into_iter()
        .map(|(name, schema)| Entry {
            id: name.into(),
            raw: Bytes::from(json!({"name": name, "description": "d", "inputSchema": schema}).to_string()),
        })
        .collect();
    let lists = Arc::new(ul);
    let ns: Arc<str> = Arc::from("h");
    let validators = Validators::default();
    let envelope = |tool: &str, arguments: &str| {
        Bytes::from(CALL.replace("h__echo", &format!("h__{tool}")).replace(r#"{"message":"hello world"}"#, arguments))
    };
    let small = envelope("add", r#"{"a":1,"b":2}"#);
    let larger = envelope(
        "forecast",
        r#"{"city":"Kyoto","country":"JP","days":7,"units":"metric","hourly":true,"fields":["temp","rain","wind","uv"],"location":{"lat":35.01,"lon":135.77},"note":"hello"}"#,
    );
    // Frame, view params, (validate), rename, rewrite `_meta`, write the upstream request.
    let forward = |body: &Bytes, tool: &str, validate: bool, out: &mut Vec<u8>| {
        let msg = Message::parse(body.clone()).unwrap();
        let Kind::Request { params, .. } = &msg.kind else { unreachable!() };
        let params = Params::parse(msg.src.slice(params.clone().unwrap())).unwrap();
        if validate {
            validators.check(&ns, &lists, tool, params.get("arguments")).expect("valid arguments");
        }
        let mut p = Vec::with_capacity(256);
        let rename = format!(r#""{tool}""#);
        write_params(
            &mut p,
            &Outbound {
                params: &params,
                replace: &[("name", rename.as_bytes())],
                drop: &[],
                progress_token: None,
                idempotency_key: None,
                client: &client,
                upstream: (Era::Modern, "2026-07-28"),
            },
        );
        out.clear();
        write_request(out, b"17", "tools/call", Some(&p));
    };
    let mut g = c.benchmark_group("validation");
    for (label, body, tool) in [("add", &small, "add"), ("8_members", &larger, "forecast")] {
        for validate in [false, true] {
            let name = format!("forward_{label}_{}", if validate { "validated" } else { "unvalidated" });
            g.bench_function(name, |b| {
                let mut out = Vec::with_capacity(512);
                b.iter(|| {
                    forward(black_box(body), tool, validate, &mut out);
                    black_box(&out);
                })
            });
        }
    }
    g.bench_function("refusal_add_two_errors", |b| {
        let bad = br#"{"a":"one"}"#;
        b.iter(|| black_box(validators.check(&ns, &lists, "add", Some(black_box(bad))).unwrap_err()))
    });
    g.finish();
}

criterion_group!(benches, envelope, catalog, sse_framing, resilience_layers, cache_path, validation);
criterion_main!(benches);
