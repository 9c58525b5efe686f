//! Multi-tenant serving end to end (issue 13; docs/multi-tenant.md): real gateways with
//! `[store]` on a real PostgreSQL, tenants' own stdio upstreams (the echo upstream, whose `env`
//! tool reads its environment), store keys created with the real CLI. A key sees only its
//! instance's tools; a tenant's environment reaches only its own processes; a change made on
//! one replica applies on another within a second; PostgreSQL going away leaves known keys
//! working and recovers by itself; `last_used_at` costs a handful of statements.

mod common;
#[path = "support/own_postgres.rs"]
mod own_postgres;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/tenants.rs"]
mod tenants;

use std::time::{Duration, Instant};

use common::{
    Answer, Gateway, Served, client, echo_upstream, eventually, modern_as, next_event, read, sekisho_cli, text,
    tool_names,
};
use own_postgres::OwnPostgres;
use postgres::Proxy;
use serde_json::{Value, json};
use tenants::{PEPPER, SECRET_KEY, cli, created_key, migrated, tenant};

const ADMIN: &str = "admin-key-0123456789abcdef";

/// Run the CLI through gateway `gw`'s admin API (`--url`, the static admin key); stdout.
async fn cli_via(gw: &impl At, args: &[&str]) -> String {
    let args = [args, &["--url", gw.base(), "--admin-key", ADMIN]].concat();
    let run = sekisho_cli(&args, &[]).await;
    assert!(run.ok, "sekisho {args:?} failed: {}", run.err);
    run.out
}

/// A gateway on the store at `url`, with a static admin key and the shared upstream `shared`.
async fn gateway(url: &str, extra: &str) -> Gateway {
    Gateway::start(&format!("[server]\n{}\n{}", admin_key(), store_and_shared(url, extra))).await
}

/// The same gateway as a `sekisho serve` process of its own.
async fn served(url: &str, extra: &str) -> Served {
    Served::start(&admin_key(), &store_and_shared(url, extra)).await
}

/// `[server] api_keys` with the static admin key.
fn admin_key() -> String {
    format!("api_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}]")
}

/// `[store]` at `url` (with `extra` lines, which may open further tables) and the static
/// upstream `shared`.
fn store_and_shared(url: &str, extra: &str) -> String {
    let echo = echo_upstream().display().to_string();
    format!(
        "[store]\npostgres_url = {url:?}\nkey_pepper = {PEPPER:?}\nsecret_key = {SECRET_KEY:?}\n{extra}\n\
         [upstreams.shared]\ncommand = {echo:?}\nargs = [\"stdio\", \"--era\", \"legacy\"]\n"
    )
}

/// A gateway in this process or a process of its own.
trait At {
    /// Its base URL.
    fn base(&self) -> &str;
}

impl At for Gateway {
    fn base(&self) -> &str {
        &self.base
    }
}

impl At for Served {
    fn base(&self) -> &str {
        &self.base
    }
}

/// Whether the key named `ci` has a `last_used_at`.
async fn last_used_written(url: &str) -> bool {
    let pool = sekisho::store::pool(url, 1, Duration::from_secs(5)).unwrap();
    let used = sqlx::query_scalar("SELECT last_used_at IS NOT NULL FROM api_keys WHERE name = 'ci'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    used
}

async fn list(gw: &impl At, key: &str) -> Answer {
    modern_as(&format!("{}/mcp", gw.base()), Some(key), 1, "tools/list", json!({})).await
}

async fn call(gw: &impl At, key: &str, tool: &str, arguments: Value) -> Answer {
    modern_as(&format!("{}/mcp", gw.base()), Some(key), 2, "tools/call", json!({"name": tool, "arguments": arguments}))
        .await
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn a_key_sees_only_its_instance_and_each_tenant_runs_its_own_upstream_with_its_own_environment() {
    let db = migrated().await;
    let key_a = tenant(&db.url, "alpha", &["tools:echo", "tools:env", "shared:add"]).await;
    let key_b = tenant(&db.url, "beta", &["tools:*"]).await;
    let gw = gateway(&db.url, "").await;

    // A sees exactly its grants, under its instance's namespaces.
    let a = list(&gw, &key_a).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(sorted(tool_names(&a)), ["shared__add", "tools__echo", "tools__env"]);
    // B sees all of its own server's tools and nothing shared.
    let b = tool_names(&list(&gw, &key_b).await);
    assert!(b.contains(&"tools__add".to_string()) && b.contains(&"tools__env".to_string()), "{b:?}");
    assert!(b.iter().all(|n| n.starts_with("tools__")), "{b:?}");

    // Each tenant's process has its own environment, and only its own.
    let env = |key: &str| {
        let key = key.to_string();
        let gw = &gw;
        async move { text(&call(gw, &key, "tools__env", json!({"name": "SECRET_TOKEN"})).await) }
    };
    assert_eq!(env(&key_a).await, "secret-of-alpha");
    assert_eq!(env(&key_b).await, "secret-of-beta");
    // The static upstream never gets a tenant's variables (nor does A's get B's).
    let shared = call(&gw, ADMIN, "shared__env", json!({"name": "SECRET_TOKEN"})).await;
    assert!(!shared.raw.contains("secret-of"), "{}", shared.raw);

    // Calls outside the grants are unknown tools, before anything reaches an upstream.
    for (key, tool) in [(&key_a, "tools__add"), (&key_a, "shared__echo"), (&key_b, "shared__add")] {
        let refused = call(&gw, key, tool, json!({"a": 1, "b": 2, "message": "x"})).await;
        assert_eq!(refused.error_code(), Some(-32602), "{tool}: {}", refused.raw);
        assert!(refused.raw.contains("nknown tool"), "{}", refused.raw);
    }
    let sum = call(&gw, &key_a, "shared__add", json!({"a": 2, "b": 3})).await;
    assert_eq!(text(&sum), "5", "{}", sum.raw);
    // Prompts and resources come from the sources the group names.
    let prompts = modern_as(&gw.url("/mcp"), Some(&key_a), 3, "prompts/list", json!({})).await;
    let names: Vec<&str> =
        prompts.body["result"]["prompts"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["shared__greet", "tools__greet"]);
    let read = modern_as(
        &gw.url("/mcp"),
        Some(&key_b),
        4,
        "resources/read",
        json!({"uri": "sekisho://tools/echo://static/hello"}),
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.raw);
    assert!(read.raw.contains("echo://static/hello"), "{}", read.raw);
    let foreign = modern_as(
        &gw.url("/mcp"),
        Some(&key_b),
        5,
        "resources/read",
        json!({"uri": "sekisho://shared/echo://static/hello"}),
    )
    .await;
    assert!(
        foreign.body.get("error").is_some(),
        "B cannot read the shared upstream it was not granted: {}",
        foreign.raw
    );

    // The per-upstream routes are not a way around the view.
    let around = modern_as(&gw.url("/servers/shared/mcp"), Some(&key_a), 6, "tools/list", json!({})).await;
    assert_eq!(around.status, 404, "{}", around.raw);
    // Unknown and missing keys: 401.
    for key in [Some("sks_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Some("nonsense"), None] {
        assert_eq!(modern_as(&gw.url("/mcp"), key, 7, "tools/list", json!({})).await.status, 401, "{key:?}");
    }

    // No tenant secret in any answer, metric or admin view.
    let metrics = client().get(gw.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
    let readyz = gw.readyz().await.to_string();
    for shown in [&metrics, &readyz, &a.raw] {
        assert!(!shown.contains("secret-of-"), "a secret leaked: {shown}");
    }
    // The admin sees the tenants' upstreams running, under their internal names.
    let running =
        gw.readyz().await["store"]["tenant_upstreams"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(running.iter().all(|n| n.starts_with('t') && n.ends_with(".tools")), "{running:?}");
}

/// Open a legacy (2025-06-18) session with `key` on `gw`; its id.
async fn legacy_session(gw: &impl At, key: &str) -> String {
    let init = read(
        client()
            .post(format!("{}/mcp", gw.base()))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name":"t","version":"0"}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(init.status, 200, "{}", init.raw);
    init.headers.get("mcp-session-id").unwrap().to_str().unwrap().to_string()
}

/// Open a legacy session with `key` on `gw` and its GET stream.
async fn legacy_stream<G: At>(
    gw: &G,
    key: &str,
) -> impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin + use<G> {
    let session = legacy_session(gw, key).await;
    let get = client()
        .get(format!("{}/mcp", gw.base()))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    get.bytes_stream()
}

#[tokio::test]
async fn a_change_made_with_the_cli_applies_on_two_gateway_processes_within_a_second() {
    let db = migrated().await;
    let key_a = tenant(&db.url, "alpha", &["tools:echo"]).await;
    // Two replicas sharing PostgreSQL and Redis (rate limits are fleet-wide).
    let redis = format!(
        "[redis]\nurl = \"redis://127.0.0.1:6379\"\nprefix = \"mt{:08x}:\"\n\
         entry_secret = \"fleet-entry-secret-0123456789abcdef\"\n[rate_limits]\nredis_timeout = \"1s\"\n",
        rand::random::<u32>()
    );
    let (one, two) = (served(&db.url, &redis).await, served(&db.url, &redis).await);
    for gw in [&one, &two] {
        assert_eq!(tool_names(&list(gw, &key_a).await), ["tools__echo"]);
    }
    // Both gateways now hold the key; each has a session with a notification stream open.
    let (mut s1, mut s2) = (legacy_stream(&one, &key_a).await, legacy_stream(&two, &key_a).await);

    // A tool group edit through gateway one's admin API: both send list_changed and list the
    // new tool within a second.
    cli_via(&one, &["instance", "grant", "main", "--tenant", "alpha", "--tool", "tools:add"]).await;
    let edited = Instant::now();
    for stream in [&mut s1, &mut s2] {
        let changed = next_event(stream, &mut String::new(), Duration::from_secs(1), |e| {
            e["method"] == "notifications/tools/list_changed"
        })
        .await;
        assert!(changed.is_some(), "no tools/list_changed within 1 s of the edit");
    }
    for gw in [&one, &two] {
        eventually(
            "the edited tool group is listed",
            Duration::from_secs(1).saturating_sub(edited.elapsed()),
            async || {
                let names = sorted(tool_names(&list(gw, &key_a).await));
                if names == ["tools__add", "tools__echo"] { Ok(()) } else { Err(format!("{names:?}")) }
            },
        )
        .await;
    }

    // A key created through gateway one works on both within a second (it was never cached).
    let new_key =
        created_key(&cli_via(&one, &["key", "create", "--tenant", "alpha", "--instance", "main", "--name", "n"]).await);
    let created = Instant::now();
    for gw in [&one, &two] {
        eventually("the new key is accepted", Duration::from_secs(1), async || match list(gw, &new_key).await.status {
            200 => Ok(()),
            s => Err(s),
        })
        .await;
    }
    assert!(created.elapsed() < Duration::from_secs(2));

    // A key revoked through gateway two (cached as valid on both) is refused on both within a
    // second.
    let prefix = &key_a[..12];
    cli_via(&two, &["key", "revoke", prefix, "--tenant", "alpha"]).await;
    let revoked = Instant::now();
    for gw in [&one, &two] {
        eventually(
            "the revoked key is refused",
            Duration::from_secs(1).saturating_sub(revoked.elapsed()) + Duration::from_millis(50),
            async || match list(gw, &key_a).await.status {
                401 => Ok(()),
                s => Err(s),
            },
        )
        .await;
    }
    assert_eq!(list(&one, &new_key).await.status, 200, "the other key of the instance still works");
    // The revoked key's streams were unregistered: a later edit of its instance reaches neither.
    cli_via(&one, &["instance", "grant", "main", "--tenant", "alpha", "--tool", "tools:env"]).await;
    for stream in [&mut s1, &mut s2] {
        let heard = next_event(stream, &mut String::new(), Duration::from_secs(1), |e| {
            e["method"] == "notifications/tools/list_changed"
        })
        .await;
        assert!(heard.is_none(), "a revoked key's stream still hears of changes: {heard:?}");
    }

    // A store key's own limit is one bucket for the fleet: a burst of 2, whichever replica.
    let limited = created_key(
        &cli_via(&one, &["key", "create", "--tenant", "alpha", "--instance", "main", "--rps", "0.1", "--burst", "2"])
            .await,
    );
    let mut admitted = 0;
    for gw in [&one, &two, &one, &two] {
        admitted += u32::from(list(gw, &limited).await.status == 200);
    }
    assert_eq!(admitted, 2, "two replicas share the key's bucket");
}

#[tokio::test]
async fn with_postgres_stopped_known_keys_keep_working_unknown_ones_get_a_retryable_error_and_all_recovers() {
    // A server of this test's own, really stopped and started (the shared one stays up).
    let pg = OwnPostgres::start();
    pg.create_db("tenancy").await;
    let url = pg.url("tenancy");
    let pool = sekisho::store::pool(&url, 1, Duration::from_secs(5)).unwrap();
    sekisho::store::migrate(&pool).await.unwrap();
    pool.close().await;
    let known = tenant(&url, "alpha", &["tools:echo"]).await;
    let gw = gateway(&url, "").await;
    // Not degraded once the change listener is connected (its connection drops the cache).
    eventually("/readyz is not degraded", Duration::from_secs(5), async || {
        let r: Value = client().get(gw.url("/readyz")).send().await.unwrap().json().await.unwrap();
        if r == json!({"ready": true}) { Ok(()) } else { Err(r.to_string()) }
    })
    .await;
    assert_eq!(list(&gw, &known).await.status, 200);
    // Created before the stop, never presented: unknown to the gateway.
    let later = created_key(&cli(&url, &["key", "create", "--tenant", "alpha", "--instance", "main"], &[]).await);

    pg.down();
    // Known: served from memory, calls go through.
    let echoed = call(&gw, &known, "tools__echo", json!({"message": "still here"})).await;
    assert_eq!(text(&echoed), "still here", "{}", echoed.raw);
    // Unknown: retryable 503.
    let refused = list(&gw, &later).await;
    assert_eq!(refused.status, 503, "{}", refused.raw);
    assert_eq!(refused.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    assert_eq!(refused.body.pointer("/error/data/retryable"), Some(&json!(true)), "{}", refused.raw);
    eventually("/readyz says degraded", Duration::from_secs(5), async || {
        let r: Value = client().get(gw.url("/readyz")).send().await.unwrap().json().await.unwrap();
        if r["degraded"] == json!(["store"]) && r["ready"] == true { Ok(()) } else { Err(r.to_string()) }
    })
    .await;
    assert_eq!(list(&gw, &known).await.status, 200, "still served while degraded");

    pg.up();
    eventually("the new key works once PostgreSQL is back", Duration::from_secs(15), async || {
        match list(&gw, &later).await.status {
            200 => Ok(()),
            s => Err(s),
        }
    })
    .await;
    eventually("/readyz recovers", Duration::from_secs(15), async || {
        let r: Value = client().get(gw.url("/readyz")).send().await.unwrap().json().await.unwrap();
        if r == json!({"ready": true}) { Ok(()) } else { Err(r.to_string()) }
    })
    .await;
    assert_eq!(list(&gw, &known).await.status, 200);
}

#[tokio::test]
async fn ten_thousand_calls_cost_a_handful_of_statements_and_drain_writes_last_used() {
    let db = migrated().await;
    let key = tenant(&db.url, "alpha", &["tools:echo"]).await;
    let proxy = Proxy::start().await;
    let gw = gateway(&db.via(&proxy), "last_used_flush = \"1s\"").await;
    assert_eq!(list(&gw, &key).await.status, 200, "warm the config cache");
    let session = legacy_session(&gw, &key).await;
    let before = proxy.counts().0;
    let mcp = gw.url("/mcp");
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let started = Instant::now();
    for _ in 0..10_000 {
        let r = client()
            .post(&mcp)
            .bearer_auth(&key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&ping)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let statements = proxy.counts().0 - before;
    eprintln!("10,000 calls in {:?}: {statements} statements reached PostgreSQL", started.elapsed());
    // One flush a second at most while the calls ran, plus the listener's reconnection slack.
    let bound = started.elapsed().as_secs() + 3;
    assert!(statements <= bound, "{statements} statements for 10,000 calls (bound {bound})");

    gw.shutdown().await.unwrap();
    assert!(last_used_written(&db.url).await, "the drain wrote last_used_at");
}

#[tokio::test]
async fn a_store_key_has_its_own_rate_limit() {
    let db = migrated().await;
    tenant(&db.url, "alpha", &["tools:echo"]).await;
    let limited = created_key(
        &cli(
            &db.url,
            &["key", "create", "--tenant", "alpha", "--instance", "main", "--rps", "0.5", "--burst", "2"],
            &[],
        )
        .await,
    );
    let gw = gateway(&db.url, "").await;
    let statuses: Vec<u16> = {
        let mut s = Vec::new();
        for _ in 0..3 {
            s.push(list(&gw, &limited).await.status);
        }
        s
    };
    assert_eq!(statuses[..2], [200, 200]);
    assert_eq!(statuses[2], 429);
    let over = list(&gw, &limited).await;
    assert!(over.headers.get("retry-after").is_some(), "{}", over.raw);
}

#[tokio::test]
async fn a_tenant_upstreams_list_change_reaches_only_the_sessions_that_see_it() {
    let db = migrated().await;
    let key_a = tenant(&db.url, "alpha", &["tools:*"]).await;
    let key_b = tenant(&db.url, "beta", &["tools:*"]).await;
    let gw = gateway(&db.url, "").await;
    for key in [&key_a, &key_b] {
        assert_eq!(list(&gw, key).await.status, 200, "both tenants' upstreams are running");
    }
    let (mut a, mut b, mut ops) =
        (legacy_stream(&gw, &key_a).await, legacy_stream(&gw, &key_b).await, legacy_stream(&gw, ADMIN).await);
    let changed = |e: &Value| e["method"] == "notifications/tools/list_changed";
    // A's own upstream adds a tool and announces it.
    let answer = call(&gw, &key_a, "tools__change_tools", json!({})).await;
    assert!(answer.body.get("result").is_some(), "{}", answer.raw);
    assert!(next_event(&mut a, &mut String::new(), Duration::from_secs(5), changed).await.is_some(), "A hears of it");
    for (who, stream) in [("tenant B", &mut b), ("the static key", &mut ops)] {
        let heard = next_event(stream, &mut String::new(), Duration::from_secs(1), changed).await;
        assert!(heard.is_none(), "{who} heard of tenant A's list change: {heard:?}");
    }
    // And the new tool is in A's list only.
    eventually("A lists the added tool", Duration::from_secs(5), async || {
        let n = tool_names(&list(&gw, &key_a).await).len();
        let m = tool_names(&list(&gw, &key_b).await).len();
        if n == m + 1 { Ok(()) } else { Err(format!("A {n} tools, B {m}")) }
    })
    .await;
}

#[tokio::test]
async fn a_tool_group_edit_notifies_only_the_keys_whose_view_it_changes() {
    let db = migrated().await;
    let main = tenant(&db.url, "alpha", &["tools:echo"]).await;
    cli(&db.url, &["instance", "create", "other", "--tenant", "alpha", "--tool", "tools:echo"], &[]).await;
    let other = created_key(&cli(&db.url, &["key", "create", "--tenant", "alpha", "--instance", "other"], &[]).await);
    let gw = gateway(&db.url, "").await;
    // Listed first: the tenant upstream's first listing is itself a list change.
    assert_eq!(tool_names(&list(&gw, &other).await), ["tools__echo"]);
    let (mut on_main, mut on_other) = (legacy_stream(&gw, &main).await, legacy_stream(&gw, &other).await);
    let changed = |e: &Value| e["method"] == "notifications/tools/list_changed";

    cli(&db.url, &["instance", "grant", "main", "--tenant", "alpha", "--tool", "tools:add"], &[]).await;
    let heard = next_event(&mut on_main, &mut String::new(), Duration::from_secs(2), changed).await;
    assert!(heard.is_some(), "the edited instance's key hears of it");
    let heard = next_event(&mut on_other, &mut String::new(), Duration::from_secs(1), changed).await;
    assert!(heard.is_none(), "the other instance's key does not: {heard:?}");
    assert_eq!(tool_names(&list(&gw, &other).await), ["tools__echo"]);
    assert_eq!(sorted(tool_names(&list(&gw, &main).await)), ["tools__add", "tools__echo"]);
}

#[tokio::test]
async fn serving_store_keys_logs_no_secret_and_sigterm_writes_last_used() {
    let db = migrated().await;
    let key = tenant(&db.url, "alpha", &["tools:*"]).await;
    let mut served = Served::start(
        &format!("api_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}]"),
        &format!(
            "[log]\nlevel = \"debug\"\n[store]\npostgres_url = {:?}\nkey_pepper = {PEPPER:?}\nsecret_key = {SECRET_KEY:?}\n",
            db.url
        ),
    )
    .await;
    let mcp = format!("{}/mcp", served.base);
    // Calls that start the tenant's upstream, read its secret, fail in the upstream, and are
    // refused at the edge.
    let env = modern_as(
        &mcp,
        Some(&key),
        1,
        "tools/call",
        json!({"name": "tools__env", "arguments": {"name": "SECRET_TOKEN"}}),
    )
    .await;
    assert_eq!(text(&env), "secret-of-alpha");
    let failed =
        modern_as(&mcp, Some(&key), 2, "tools/call", json!({"name": "tools__rpc_error", "arguments": {}})).await;
    assert!(failed.body.get("error").is_some(), "{}", failed.raw);
    let wrong = format!("{}x", &key[..key.len() - 1]);
    assert_eq!(modern_as(&mcp, Some(&wrong), 3, "tools/list", json!({})).await.status, 401);

    let status = served.terminate().await;
    assert!(status.success(), "drained cleanly: {status:?}");
    let logged = served.logs();
    assert!(logged.contains("started a tenant upstream"), "debug logs were written: {logged}");
    for secret in ["secret-of-alpha", &key[12..], &wrong[12..], SECRET_KEY, PEPPER] {
        assert!(!logged.contains(secret), "{secret} logged: {logged}");
    }
    // SIGTERM flushed last_used_at (the periodic flush is 15 s away).
    assert!(last_used_written(&db.url).await, "SIGTERM wrote last_used_at");
}

#[tokio::test]
async fn tenant_upstreams_are_capped_and_reaped_when_idle_and_start_again_on_use() {
    let db = migrated().await;
    let key_a = tenant(&db.url, "alpha", &["tools:echo"]).await;
    let key_b = tenant(&db.url, "beta", &["tools:echo"]).await;
    let running = async |gw: &Gateway| gw.readyz().await["store"]["tenant_upstreams"].as_object().unwrap().len();

    // At most one running: while A's is in use, B's cannot start (429, the limit named).
    let capped = gateway(&db.url, "max_tenant_upstreams = 1").await;
    assert_eq!(list(&capped, &key_a).await.status, 200);
    let refused = list(&capped, &key_b).await;
    assert_eq!(refused.status, 429, "{}", refused.raw);
    assert!(refused.raw.contains("store.max_tenant_upstreams"), "{}", refused.raw);
    assert_eq!(running(&capped).await, 1);
    drop(capped);

    // Idle for a second: stopped; the next call starts it again.
    let gw = gateway(&db.url, "tenant_idle_timeout = \"1s\"").await;
    let hi = json!({"message": "hi"});
    assert_eq!(text(&call(&gw, &key_a, "tools__echo", hi.clone()).await), "hi");
    assert_eq!(running(&gw).await, 1);
    eventually("the idle tenant upstream is stopped", Duration::from_secs(10), async || match running(&gw).await {
        0 => Ok(()),
        n => Err(n),
    })
    .await;
    assert_eq!(text(&call(&gw, &key_a, "tools__echo", hi).await), "hi", "started again on use");
    assert_eq!(running(&gw).await, 1);
}

#[tokio::test]
async fn a_gateway_started_while_postgres_is_down_serves_degraded_and_recovers_by_itself() {
    let pg = OwnPostgres::start();
    pg.create_db("tenancy").await;
    let url = pg.url("tenancy");
    let pool = sekisho::store::pool(&url, 1, Duration::from_secs(5)).unwrap();
    sekisho::store::migrate(&pool).await.unwrap();
    pool.close().await;
    let key = tenant(&url, "alpha", &["tools:echo"]).await;
    pg.down();
    // The real binary: `serve` checks the store at start and must not refuse a database that
    // does not answer (only one that is not migrated).
    let served = served(&url, "").await;
    let refused = list(&served, &key).await;
    assert_eq!(refused.status, 503, "{}", refused.raw);
    let ready: Value = client().get(format!("{}/readyz", served.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready, json!({"ready": true, "degraded": ["store"]}));
    pg.up();
    eventually("the key works once PostgreSQL is up", Duration::from_secs(15), async || {
        match list(&served, &key).await.status {
            200 => Ok(()),
            s => Err(s),
        }
    })
    .await;
    eventually("/readyz recovers", Duration::from_secs(15), async || {
        let r: Value = client().get(format!("{}/readyz", served.base)).send().await.unwrap().json().await.unwrap();
        if r == json!({"ready": true}) { Ok(()) } else { Err(r.to_string()) }
    })
    .await;
}
