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

/// Multi-tenant mode against static mode (issue 13): what a call with a warm config cache pays
/// to be authenticated and routed. Static: the edge finds the key among `[server] api_keys`, and
/// the call is routed in the whole catalog. Multi-tenant: the edge finds no static key, the
/// store resolves the bearer key from its config cache (HMAC, cache hit, `last_used_at` noted,
/// the identity with its view reused), and the call is routed in the instance's view.
/// Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust); skipped without it. Afterwards a
/// steady load of 100 keys reads the config cache's hit rate from its metric.
fn tenancy(c: &mut Criterion) {
    use sekisho::catalog::CatalogState;
    use sekisho::pipeline::edge::Edge;
    use sekisho::pipeline::parts::Priority;
    use sekisho::store::admin::{self, GrantSpec};
    use sekisho::store::secrets::Keys;
    use sekisho::store::{Store, StoreConfig};
    use sekisho::tenancy::{Tenancy, TenantUpstreams};
    use sekisho::upstream::UpstreamSet;
    use sekisho::upstream::config::{ResilienceConfig, UpstreamConfig};
    use std::time::Duration;

    const PEPPER: &str = "bench-pepper-0123456789abcdef0123456789";
    const SECRET: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
    const STATIC: &str = "static-key-0123456789abcdef";
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let name = format!("sekisho_bench_{:016x}", rand::random::<u64>());
    let server = "postgres://postgres@127.0.0.1:5432";
    let setup = rt.block_on(async {
        let admin_pool = sqlx::PgPool::connect(&format!("{server}/postgres?sslmode=disable")).await.ok()?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin_pool).await.ok()?;
        let url = format!("{server}/{name}?sslmode=disable");
        let pool = sekisho::store::pool(&url, 2, Duration::from_secs(5)).ok()?;
        sekisho::store::migrate(&pool).await.ok()?;
        let keys = Keys::new(PEPPER, SECRET).unwrap();
        admin::tenant_create(&pool, "acme").await.unwrap();
        let grant = [GrantSpec::Shared { namespace: "alpha".into(), pattern: "*".into() }];
        admin::instance_create(&pool, "acme", "bot", &grant).await.unwrap();
        let mut bearers = Vec::new();
        for i in 0..100 {
            let key = admin::key_create(&pool, &keys, "acme", "bot", &format!("k{i}"), None, None).await.unwrap();
            bearers.push(key.key.expose().to_string());
        }
        pool.close().await;
        Some((admin_pool, url, bearers))
    });
    let Some((admin_pool, url, bearers)) = setup else {
        eprintln!("tenancy: PostgreSQL is not answering on 127.0.0.1:5432; skipped");
        return;
    };
    let config = StoreConfig {
        postgres_url: url,
        key_pepper: PEPPER.into(),
        secret_key: SECRET.into(),
        last_used_flush: Duration::from_secs(3600),
        ..StoreConfig::default()
    };
    let mut server_config = sekisho::front::config::ServerConfig {
        api_keys: vec![sekisho::front::config::ApiKey::plain(STATIC)],
        ..Default::default()
    };
    server_config.resolve_keys(Priority::Medium);
    let edge = Edge::new(&server_config).requiring_keys();
    let mut alpha = UpstreamConfig { url: Some("http://127.0.0.1:9/mcp".into()), ..Default::default() };
    alpha.resolve(&ResilienceConfig::default());
    let statics = Arc::new(UpstreamSet::new([(&"alpha".to_string(), &alpha)]));
    let catalog = CatalogState::new(Default::default(), statics.iter().map(|u| Arc::clone(&u.name)));
    let tenancy = rt.block_on(async {
        let store = Store::open(&config).await.expect("the store opens");
        store.wait_listening(Duration::from_secs(5)).await;
        let registry = Arc::new(TenantUpstreams::new(
            8,
            Duration::from_secs(600),
            ResilienceConfig::default(),
            Default::default(),
            Arc::new(|_| {}),
        ));
        Tenancy::new(store, registry, Arc::clone(&statics), Priority::Medium, 1000, Duration::from_secs(60))
    });
    let static_header = format!("Bearer {STATIC}");
    let store_header = format!("Bearer {}", bearers[0]);
    // Warm: the key resolved, its identity and view built.
    rt.block_on(tenancy.authenticate(&bearers[0])).unwrap().expect("the key resolves");

    let mut g = c.benchmark_group("tenancy");
    g.bench_function("static_key_edge_and_route", |b| {
        b.iter(|| {
            rt.block_on(async {
                let caller = edge.check(Some("localhost"), None, Some(black_box(&static_header))).unwrap();
                let snap = catalog.snapshot();
                black_box((caller, snap.generation, statics.get("alpha").unwrap()));
            })
        })
    });
    g.bench_function("store_key_warm_edge_and_route_in_view", |b| {
        b.iter(|| {
            rt.block_on(async {
                let header = black_box(&store_header);
                let Err(_) = edge.check(Some("localhost"), None, Some(header)) else { unreachable!() };
                let key = sekisho::pipeline::edge::bearer(Some(header)).unwrap();
                let caller = tenancy.authenticate(key).await.unwrap().unwrap();
                let view = sekisho::tenancy::view_of(&caller).unwrap();
                let snap = view.catalog(&catalog);
                black_box((snap.generation, view.upstream("alpha").unwrap()));
            })
        })
    });
    g.finish();

    // Steady load: 100 keys, 200 calls each, round robin; the hit rate from the metric.
    let counter = |result: &str| -> f64 {
        let text = sekisho::observe::metrics::METRICS.encode();
        let prefix = format!("sekisho_store_cache_lookups_total{{result=\"{result}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    let (hits0, misses0) = (counter("hit"), counter("miss"));
    rt.block_on(async {
        for _ in 0..200 {
            for key in &bearers {
                tenancy.authenticate(key).await.unwrap().expect("known key");
            }
        }
    });
    let (hits, misses) = (counter("hit") - hits0, counter("miss") - misses0);
    eprintln!(
        "tenancy: steady load of 20,000 calls over 100 keys: {hits} hits, {misses} misses, hit rate {:.2} %",
        100.0 * hits / (hits + misses).max(1.0)
    );
    rt.block_on(async {
        let _ = tenancy.store.shutdown().await;
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin_pool).await;
    });
}

/// The `cost` step (`pipeline::budget`) on one priced call, A/B in one run: the same routed
/// call through an inner service that answers at once, without the step and with it (rate
/// lookup, three budgets checked, the boxed future, the charge: metrics and three windows).
fn cost(c: &mut Criterion) {
    use sekisho::config::Config;
    use sekisho::pipeline::budget::Charge;
    use sekisho::pipeline::ctx::Routed;
    use sekisho::pipeline::parts::{Identity, Principal, Priority};
    use sekisho::pipeline::steps::StepLayer;
    use sekisho::upstream::UpstreamSet;
    use tower::{ServiceBuilder, ServiceExt};

    let config = Config::from_toml(
        "[upstreams.up]\ncommand = \"x\"\nprice = { per_call = 0.0001, per_kib = 0.00001 }\n\
         [budgets.gateway]\nper_hour = 1000000\n[budgets.callers.\"key:0123456789abcdef\"]\nper_hour = 1000000\n\
         [budgets.tenants.acme]\nper_hour = 1000000\n",
    )
    .expect("valid");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _clock = rt.enter();
    let cost = Arc::new(sekisho::cost::Cost::new(config.enabled_upstreams(), &config.budgets).expect("priced"));
    let upstreams = UpstreamSet::new(config.enabled_upstreams());
    let mut request = sekisho::upstream::request::Outbound::raw("tools/call", Some(br#"{"name":"echo"}"#));
    request.name = Some(Arc::from("echo"));
    let identity = Identity { id: "key:0123456789abcdef".into(), tenant: Some("acme".into()), ..Default::default() };
    let target = plain_target(&upstreams, "up");
    let routed = Routed {
        request: Arc::new(request),
        target,
        caller: Principal::ApiKey(Arc::new(identity)),
        priority: Priority::Medium,
        idempotency_key: None,
        client_era: Era::Modern,
        input_errors_as_results: true,
        session: None,
    };
    let inner = answering(Bytes::from_static(br#"{"content":[{"type":"text","text":"hello world"}]}"#));
    let without = ServiceBuilder::new().service(inner.clone());
    let with = ServiceBuilder::new().layer(StepLayer(Charge::new(&cost))).service(inner.clone());
    let metered =
        ServiceBuilder::new().layer(StepLayer(sekisho::pipeline::tool_meter::ToolMeter)).service(inner.clone());
    let both = ServiceBuilder::new()
        .layer(StepLayer(sekisho::pipeline::tool_meter::ToolMeter))
        .layer(StepLayer(Charge::new(&cost)))
        .service(inner);
    // The step charges the call (checked once here, whichever benchmarks the filter runs).
    rt.block_on(with.clone().oneshot(routed.clone())).expect("answer");
    assert!(cost.usage().iter().any(|u| u.spent > 0.0), "the step charged the call");
    let mut g = c.benchmark_group("cost");
    bench_call(&mut g, &rt, "call_without_cost_step", &without, &routed);
    bench_call(&mut g, &rt, "call_with_cost_step_priced_three_budgets", &with, &routed);
    // The monitor's share of the call path: the per-tool counters (the rest of the monitor
    // reads counters the calls keep anyway, off the call path).
    bench_call(&mut g, &rt, "call_with_tool_meter", &metered, &routed);
    bench_call(&mut g, &rt, "call_with_tool_meter_and_cost_step", &both, &routed);
    g.finish();
}

/// A routing target to upstream `name` of `upstreams`, with no fallback, cache, retry or
/// timeout of its own: what the A/B groups below send calls to.
fn plain_target(upstreams: &sekisho::upstream::UpstreamSet, name: &str) -> sekisho::pipeline::ctx::Target {
    sekisho::pipeline::ctx::Target {
        upstream: Arc::clone(upstreams.get(name).expect("configured")),
        fallback: None,
        cache: None,
        retry_safe: false,
        timeout: None,
        lists: None,
        destructive: false,
    }
}

/// The innermost service of the A/B groups: answers every call at once with the result `body`
/// from upstream `up`, so only the steps in front of it are measured.
fn answering(
    body: Bytes,
) -> impl tower::Service<
    sekisho::pipeline::ctx::Routed,
    Response = Reply,
    Error = sekisho::error::GatewayError,
    Future = std::future::Ready<Result<Reply, sekisho::error::GatewayError>>,
> + Clone {
    let origin: Arc<str> = Arc::from("up");
    tower::service_fn(move |_: sekisho::pipeline::ctx::Routed| {
        std::future::ready(Ok(Reply::Result {
            body: body.clone(),
            origin: Origin::Upstream(Era::Legacy, Arc::clone(&origin)),
        }))
    })
}

/// Benchmark `name`: `routed` through `service`, one call at a time on `rt`.
fn bench_call<S>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    service: &S,
    routed: &sekisho::pipeline::ctx::Routed,
) where
    S: tower::Service<sekisho::pipeline::ctx::Routed, Response = Reply, Error = sekisho::error::GatewayError> + Clone,
{
    use tower::ServiceExt;
    g.bench_function(name, |b| {
        b.iter(|| rt.block_on(service.clone().oneshot(black_box(routed.clone()))).expect("answer"))
    });
}

criterion_group!(
    benches,
    envelope,
    catalog,
    sse_framing,
    resilience_layers,
    cache_path,
    validation,
    tenancy,
    cost,
    audit,
    detect,
    jwt,
    approval
);
criterion_main!(benches);

/// The audit log on the call path (issue 15), A/B: the same `tools/call` through a service that
/// answers at once, without and with the audit step in front (`on_audit_failure` = serve and
/// = refuse). The writer runs on a runtime of its own (its parsing, digest, redaction, hashing
/// and file appends are off the call path) and only the calls are timed: after each 1,000
/// calls the bench waits, untimed, until the writer has emptied the buffer, so every call
/// takes the `try_send` path that succeeds (and wakes the writer), never the cheaper full one.
fn audit(c: &mut Criterion) {
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    use sekisho::audit::{Audit, AuditConfig, OnFailure, sink::Sink};
    use sekisho::error::GatewayError;
    use sekisho::pipeline::audited::Audited;
    use sekisho::pipeline::ctx::{Call, CallCtx};
    use sekisho::pipeline::parts::{Identity, Principal, Priority, Scope};
    use sekisho::pipeline::steps::Stepped;
    use sekisho::wire::jsonrpc::Method;
    use tower::Service;

    let writer_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = |policy: OnFailure, file: &str| {
        let config = AuditConfig {
            enabled: true,
            buffer: 100_000,
            batch: 1000,
            on_audit_failure: policy,
            ..AuditConfig::default()
        };
        let _guard = writer_rt.enter();
        Audit::start(&config, Sink::file(dir.path().join(file)), "bench")
    };
    let msg = Message::parse(Bytes::from_static(CALL.as_bytes())).unwrap();
    let Kind::Request { params, .. } = &msg.kind else { unreachable!() };
    let params = Params::parse(msg.src.slice(params.clone().unwrap())).unwrap();
    let client = ClientSide {
        era: Era::Modern,
        version: "2026-07-28",
        capabilities: Bytes::from_static(b"{}"),
        log_level: None,
    };
    let caller =
        Principal::ApiKey(Arc::new(Identity { id: "ci".into(), tenant: Some("acme".into()), ..Default::default() }));
    let call = || Call {
        method: Method::ToolsCall,
        params: params.clone(),
        ctx: CallCtx {
            client: client.clone(),
            scope: Scope::Gateway,
            principal: caller.clone(),
            events: None,
            received: Instant::now(),
            priority: Priority::Medium,
            idempotency_key: None,
            session: None,
            param_headers: None,
        },
    };
    let body = Bytes::from_static(br#"{"content":[{"type":"text","text":"hello world"}]}"#);
    let answer = move |_: Call| {
        futures::future::ready(Ok::<_, GatewayError>(Reply::Result {
            body: body.clone(),
            origin: Origin::Upstream(Era::Legacy, Arc::from("h")),
        }))
    };
    fn run<S: Service<Call, Response = Reply, Error = GatewayError>>(svc: &mut S, call: Call) {
        let mut fut = std::pin::pin!(svc.call(call));
        let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) else { unreachable!() };
        black_box(out.unwrap());
    }
    let timed = |svc: &mut dyn FnMut(Call), audit: Option<&Audit>, iters: u64| {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(1000);
            let started = Instant::now();
            for _ in 0..n {
                svc(call());
            }
            total += started.elapsed();
            left -= n;
            while audit.is_some_and(|a| a.depth() > 0) {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        total
    };
    let mut g = c.benchmark_group("audit");
    g.bench_function("call_without_audit", |b| {
        let mut svc = tower::service_fn(answer.clone());
        b.iter_custom(|iters| timed(&mut |c| run(&mut svc, c), None, iters))
    });
    for (label, policy) in [("call_with_audit_serve", OnFailure::Serve), ("call_with_audit_refuse", OnFailure::Refuse)]
    {
        let audit = start(policy, &format!("{label}.jsonl"));
        g.bench_function(label, |b| {
            let mut svc = Stepped { step: Audited(Arc::clone(&audit)), inner: tower::service_fn(answer.clone()) };
            b.iter_custom(|iters| timed(&mut |c| run(&mut svc, c), Some(&audit), iters))
        });
        writer_rt.block_on(audit.shutdown());
    }
    g.finish();
}

/// Sensitive-data detection (issue 15 item 5) on a realistic 16 KiB `tools/call` result: JSON
/// text of records with ids, URLs, timestamps and prose, without findings and with four
/// (an e-mail, a card number, an `sk-` key, a connection password). Target ≤ 20 µs.
///
/// `scan_*`: the detectors over the text. `result_*`: the `detect` step's work on a whole
/// result (`detect::json::scan` over the raw JSON: half the records as `structuredContent`,
/// half as the escaped JSON text of a `content` item), checking only (`block`) and redacting
/// (`redact`: the rewritten result built). `call_*`: a routed call through an inner service
/// answering that result, without the step, through the step for an upstream without a policy
/// (the step is in the stack for another upstream), and through it with `redact`.
fn detect(c: &mut Criterion) {
    use sekisho::config::Config;
    use sekisho::detect::json;
    use sekisho::detect::redact::Place;
    use sekisho::detect::{KindSet, scan};
    use sekisho::pipeline::ctx::Routed;
    use sekisho::pipeline::detected::{Detect, Policies};
    use sekisho::pipeline::parts::{Principal, Priority};
    use sekisho::pipeline::steps::StepLayer;
    use sekisho::upstream::UpstreamSet;
    use tower::{ServiceBuilder, ServiceExt};

    let record = r#"{"id":"550e8400-e29b-41d4-a716-446655440000","url":"https://api.example.com/v1/items/1234?page=2","updated":1764664200000,"title":"Quarterly report - revenue up 12.5% on 3+4 regions","body":"The team shipped the migration; see commit 4d72a10b6f8e2c1d9a3b5e7f0c2a4b6d8e0f1a3b."},"#;
    let clean: String = record.repeat(16 * 1024 / record.len() + 1)[..16 * 1024].to_string();
    let findings = [
        " jane.doe@example.com ",
        " card 4111 1111 1111 1111 ",
        " sk-FAKEfake0123456789abcdefFAKE ",
        " postgres://app:FakePw@db:5432/x ",
    ];
    let mut dirty = clean.clone();
    for (i, s) in findings.iter().enumerate() {
        let at = (i + 1) * 3000;
        dirty.replace_range(at..at + s.len(), s);
    }
    assert!(scan(&clean, KindSet::ALL).is_empty(), "{:?}", scan(&clean, KindSet::ALL));
    assert_eq!(scan(&dirty, KindSet::ALL).len(), 4, "{:?}", scan(&dirty, KindSet::ALL));
    // A result of about 16 KiB: records as structured content and, escaped, as text.
    let result = |with: bool| {
        let n = 8 * 1024 / record.len();
        let mut items: Vec<serde_json::Value> =
            (0..2 * n).map(|_| serde_json::from_str(record.trim_end_matches(',')).unwrap()).collect();
        if with {
            items[3]["body"] = findings[0].into();
            items[n + 3]["title"] = findings[2].into();
            items[n / 2]["body"] = findings[1].into();
            items[n + n / 2]["url"] = findings[3].into();
        }
        let text = serde_json::to_string(&items[n..]).unwrap();
        let v = serde_json::json!({"content": [{"type": "text", "text": text}], "structuredContent": {"items": &items[..n]}});
        Bytes::from(serde_json::to_vec(&v).unwrap())
    };
    let (clean_result, dirty_result) = (result(false), result(true));
    let redacted = json::scan(&dirty_result, KindSet::ALL, true, Place::Result, "redact").unwrap();
    assert_eq!(redacted.count, 4, "{redacted:?}");
    assert!(serde_json::from_slice::<serde_json::Value>(&redacted.redacted.unwrap()).is_ok());

    let config = Config::from_toml(
        "[upstreams.up]\ncommand = \"x\"\ndetect = { results = \"redact\" }\n[upstreams.other]\ncommand = \"y\"\n",
    )
    .expect("valid");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _clock = rt.enter();
    let policies = Arc::new(Policies::new(config.enabled_upstreams()).expect("a policy is on"));
    let upstreams = UpstreamSet::new(config.enabled_upstreams());
    let routed_to = |name: &str| {
        let mut request = sekisho::upstream::request::Outbound::raw("tools/call", Some(br#"{"name":"echo"}"#));
        request.name = Some(Arc::from("echo"));
        let target = plain_target(&upstreams, name);
        Routed {
            request: Arc::new(request),
            target,
            caller: Principal::Anonymous,
            priority: Priority::Medium,
            idempotency_key: None,
            client_era: Era::Modern,
            input_errors_as_results: true,
            session: None,
        }
    };
    let (up, other) = (routed_to("up"), routed_to("other"));
    let inner = answering(dirty_result.clone());
    let without = ServiceBuilder::new().service(inner.clone());
    let with = ServiceBuilder::new().layer(StepLayer(Detect(policies))).service(inner);
    let Ok(Reply::Result { body, .. }) = rt.block_on(with.clone().oneshot(up.clone())) else { panic!("a result") };
    assert!(std::str::from_utf8(&body).unwrap().contains("[REDACTED:api_key]"), "the step redacted the call");

    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Bytes(clean.len() as u64));
    g.bench_function("scan_16k_clean", |b| b.iter(|| scan(black_box(&clean), KindSet::ALL)));
    g.bench_function("scan_16k_4_findings", |b| b.iter(|| scan(black_box(&dirty), KindSet::ALL)));
    g.throughput(Throughput::Bytes(dirty_result.len() as u64));
    g.bench_function("result_16k_clean_check", |b| {
        b.iter(|| json::scan(black_box(&clean_result), KindSet::ALL, false, Place::Result, "block"))
    });
    g.bench_function("result_16k_4_findings_check", |b| {
        b.iter(|| json::scan(black_box(&dirty_result), KindSet::ALL, false, Place::Result, "block"))
    });
    g.bench_function("result_16k_4_findings_redact", |b| {
        b.iter(|| json::scan(black_box(&dirty_result), KindSet::ALL, true, Place::Result, "redact"))
    });
    g.throughput(Throughput::Elements(1));
    bench_call(&mut g, &rt, "call_without_detect_step", &without, &up);
    bench_call(&mut g, &rt, "call_through_detect_step_policy_off", &with, &other);
    bench_call(&mut g, &rt, "call_through_detect_step_redact_16k", &with, &up);
    g.finish();
}

/// OAuth access tokens (issue 15): an RS256 and an ES256 JWT verified with a warm JWKS (keys
/// fetched once from a loopback server, then held), each call checking the signature and the
/// claims (`verify_uncached`); and the same tokens through `authenticate`, whose cache of
/// verified tokens answers by SHA-256 digest.
fn jwt(c: &mut Criterion) {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use sekisho::oauth::OAuth;
    use sekisho::oauth::config::{IssuerConfig, OAuthConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");
    let rsa = EncodingKey::from_rsa_der(&std::fs::read(format!("{fixtures}rs256.der")).unwrap());
    let ec = EncodingKey::from_ec_der(&std::fs::read(format!("{fixtures}es256.der")).unwrap());
    let mut keys = Vec::new();
    for (key, alg, kid) in [(&rsa, Algorithm::RS256, "r1"), (&ec, Algorithm::ES256, "e1")] {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        keys.push(jwk);
    }
    let body = serde_json::to_string(&JwkSet { keys }).unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(format!("{head}{body}").as_bytes()).await;
        }
    });
    let issuer = format!("http://{addr}");
    let config = OAuthConfig {
        resource: "https://gw.example/mcp".into(),
        issuers: vec![IssuerConfig {
            issuer: issuer.clone(),
            jwks_uri: format!("{issuer}/jwks"),
            ..Default::default()
        }],
        required_scopes: vec!["mcp".into()],
        ..Default::default()
    };
    let statics = std::sync::Arc::new(sekisho::upstream::UpstreamSet::new(std::iter::empty()));
    let oauth = rt.block_on(async { OAuth::new(&config, statics, None, sekisho::pipeline::parts::Priority::Medium) });
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let claims =
        serde_json::json!({"iss": issuer, "aud": config.resource, "sub": "client-1", "scope": "mcp", "exp": exp});
    let sign = |key: &EncodingKey, alg, kid: &str| {
        let header = Header { kid: Some(kid.into()), ..Header::new(alg) };
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let rs = sign(&rsa, Algorithm::RS256, "r1");
    let es = sign(&ec, Algorithm::ES256, "e1");
    // Warm: the JWKS is fetched once here.
    rt.block_on(oauth.verify_uncached(&rs)).expect("RS256 verifies");
    rt.block_on(oauth.verify_uncached(&es)).expect("ES256 verifies");
    let mut g = c.benchmark_group("jwt");
    g.bench_function("rs256_verify_warm_jwks", |b| {
        b.iter(|| rt.block_on(oauth.verify_uncached(black_box(&rs))).unwrap())
    });
    g.bench_function("es256_verify_warm_jwks", |b| {
        b.iter(|| rt.block_on(oauth.verify_uncached(black_box(&es))).unwrap())
    });
    let resource = config.resource.clone();
    g.bench_function("rs256_authenticate_cached", |b| {
        b.iter(|| rt.block_on(oauth.authenticate(black_box(&rs), &resource)).unwrap())
    });
    g.bench_function("es256_authenticate_cached", |b| {
        b.iter(|| rt.block_on(oauth.authenticate(black_box(&es), &resource)).unwrap())
    });
    g.finish();
}

/// The approval step on the call path (issue 15 item 3), A/B: an allowed `tools/call` straight
/// to a service that answers at once, and through the step with 16 rules none of which match
/// (the whole list is scanned: the worst allowed call); and a dry run, answered by the step.
fn approval(c: &mut Criterion) {
    use sekisho::approvals::Approvals;
    use sekisho::config::Config;
    use sekisho::pipeline::approval::Approval;
    use sekisho::pipeline::ctx::Routed;
    use sekisho::pipeline::parts::{ClientSide, Identity, Params, Principal, Priority};
    use sekisho::pipeline::steps::StepLayer;
    use sekisho::upstream::UpstreamSet;
    use sekisho::upstream::request::{Body, Outbound};
    use tower::{ServiceBuilder, ServiceExt};

    let rules: Vec<String> =
        (0..16).map(|i| format!("{{ upstream = \"up\", tool = \"t{i}\", action = \"approve\" }}")).collect();
    let config = Config::from_toml(&format!(
        "[approvals]\ndestructive = \"approve\"\nrules = [{}]\n[upstreams.up]\ncommand = \"x\"\n",
        rules.join(", ")
    ))
    .expect("valid");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let upstreams = UpstreamSet::new(config.enabled_upstreams());
    let routed_with = |params: &'static [u8]| {
        let mut request = Outbound::raw("tools/call", None);
        request.name = Some(Arc::from("echo"));
        request.body = Body::Client {
            params: Params::parse(Bytes::from_static(params)).expect("params"),
            rewrite: None,
            client: ClientSide::legacy("2025-11-25", Bytes::from_static(b"{}")),
            idempotency_key: None,
        };
        let target = plain_target(&upstreams, "up");
        let identity =
            Identity { id: "key:0123456789abcdef".into(), tenant: Some("acme".into()), ..Default::default() };
        Routed {
            request: Arc::new(request),
            target,
            caller: Principal::ApiKey(Arc::new(identity)),
            priority: Priority::Medium,
            idempotency_key: None,
            client_era: Era::Legacy,
            input_errors_as_results: true,
            session: None,
        }
    };
    let routed = routed_with(br#"{"name":"up__echo","arguments":{"message":"hello"}}"#);
    let dry = routed_with(br#"{"name":"up__echo","arguments":{"message":"hello"},"_meta":{"io.sekisho/dryRun":true}}"#);
    let inner = answering(Bytes::from_static(br#"{"content":[{"type":"text","text":"hello world"}]}"#));
    let approvals = Approvals::new(&config.approvals, None);
    let without = ServiceBuilder::new().service(inner.clone());
    let with = ServiceBuilder::new().layer(StepLayer(Approval::new(&approvals))).service(inner);
    let answered = rt.block_on(with.clone().oneshot(dry.clone())).expect("answer");
    assert!(matches!(answered, Reply::Result { origin: Origin::Gateway, .. }), "the dry run was answered by the step");
    let mut g = c.benchmark_group("approval");
    bench_call(&mut g, &rt, "call_without_approval_step", &without, &routed);
    bench_call(&mut g, &rt, "call_with_approval_step_16_rules_allowed", &with, &routed);
    bench_call(&mut g, &rt, "dry_run_answered_by_the_step", &with, &dry);
    g.finish();
}
