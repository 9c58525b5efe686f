//! The PostgreSQL store (`[store]`) against a real PostgreSQL: `sekisho db migrate` and the
//! operator commands through the real binary, keys stored as keyed hashes and secrets sealed,
//! the resolution of a key in one round trip, tenants isolated, NOTIFY reaching another
//! replica's cache within 1 s, cached keys served while PostgreSQL is down (unknown keys:
//! retryable error), and `last_used_at` written in one statement.

mod common;
#[path = "support/postgres.rs"]
mod postgres;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use postgres::{Proxy, TestDb};
use sekisho::store::admin::{self, GrantSpec};
use sekisho::store::resolve::{Endpoint, ToolSource};
use sekisho::store::secrets::{Keys, Secret, SecretValues};
use sekisho::store::{Store, StoreConfig, StoreError};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");
const PEPPER: &str = "test-pepper-0123456789abcdef0123456789";
/// base64 of 32 bytes of 0x2a.
const SECRET_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

fn config(url: &str) -> StoreConfig {
    StoreConfig {
        postgres_url: url.into(),
        key_pepper: PEPPER.into(),
        secret_key: SECRET_KEY.into(),
        max_connections: 1,
        ..StoreConfig::default()
    }
}

fn keys() -> Keys {
    Keys::new(PEPPER, SECRET_KEY).unwrap()
}

/// Run the binary with the database and secrets in its environment; (success, stdout, stderr).
fn cli(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("SEKISHO_STORE__POSTGRES_URL", &db.url)
        .env("SEKISHO_STORE__KEY_PEPPER", PEPPER)
        .env("SEKISHO_STORE__SECRET_KEY", SECRET_KEY)
        .env("WEATHER_TOKEN", "env-secret-from-the-cli-environment")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(db: &TestDb, args: &[&str]) -> String {
    let (success, out, err) = cli(db, args);
    assert!(success, "sekisho {args:?} failed: {err}");
    out
}

async fn migrated() -> TestDb {
    let db = TestDb::create().await;
    let pool = sekisho::store::pool(&db.url, 1, Duration::from_secs(5)).unwrap();
    sekisho::store::migrate(&pool).await.unwrap();
    pool.close().await;
    db
}

/// A tenant `name` with a stdio server config `<name>-srv` (env TOKEN = `secret-of-<name>`),
/// an instance `main` granting `get_*` of it and `*` of the shared `time`, and a key.
async fn tenant_with_key(pool: &sqlx::PgPool, name: &str) -> String {
    admin::tenant_create(pool, name).await.unwrap();
    let mut values = SecretValues::default();
    values.env.insert("TOKEN".into(), Secret::new(format!("secret-of-{name}")));
    values.headers.insert("Authorization".into(), Secret::new(format!("Bearer header-of-{name}")));
    let endpoint = Endpoint::Command { command: "echo-upstream".into(), args: vec!["--stdio".into()] };
    admin::server_create(pool, &keys(), name, &format!("{name}-srv"), &endpoint, &values).await.unwrap();
    let grants = [
        GrantSpec::Server { server: format!("{name}-srv"), pattern: "get_*".into() },
        GrantSpec::Shared { namespace: "time".into(), pattern: "*".into() },
    ];
    admin::instance_create(pool, name, "main", &grants).await.unwrap();
    admin::key_create(pool, &keys(), name, "main", "ci", Some(5.0), Some(10)).await.unwrap().key.expose().to_string()
}

#[tokio::test]
async fn migrate_runs_once_and_serve_refuses_an_unmigrated_database() {
    let db = TestDb::create().await;
    let cfg = config(&db.url);
    let err = sekisho::store::verify(&cfg).await.unwrap_err();
    assert!(matches!(err, StoreError::NotMigrated(_)), "{err}");
    // The real binary: `serve` on the unmigrated database exits at once, saying what to do.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sekisho.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npostgres_url = {:?}\nkey_pepper = {PEPPER:?}\nsecret_key = {SECRET_KEY:?}\n",
            db.url
        ),
    )
    .unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("sekisho db migrate"), "{stderr}");
    assert!(!stderr.contains(PEPPER), "{stderr}");
    // `check` shows the store as set, never its secrets or URL.
    let check = Command::new(BIN).args(["check", "--config"]).arg(&file).output().unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && shown.contains("[store]") && shown.contains("<set>"), "{shown}");
    assert!(!shown.contains(PEPPER) && !shown.contains(SECRET_KEY) && !shown.contains(&db.name), "{shown}");

    let first = ok(&db, &["db", "migrate"]);
    assert!(first.contains("applied migrations [1, 2]"), "{first}");
    assert_eq!(ok(&db, &["db", "migrate"]), "database schema up to date\n");
    sekisho::store::verify(&cfg).await.unwrap();
}

#[tokio::test]
async fn operator_commands_manage_the_store_and_never_print_or_store_secrets() {
    let db = migrated().await;
    assert!(ok(&db, &["tenant", "create", "acme"]).contains("created tenant acme"));
    let (success, _, err) = cli(&db, &["tenant", "create", "acme"]);
    assert!(!success && err.contains("exists"), "{err}");
    let (success, _, err) = cli(&db, &["tenant", "create", "Bad Name"]);
    assert!(!success && err.contains("tenant name"), "{err}");
    ok(
        &db,
        &[
            "server",
            "create",
            "weather",
            "--tenant",
            "acme",
            "--command",
            "weather-mcp",
            "--arg",
            "--verbose",
            "--env",
            "API_TOKEN=plain-env-secret-value",
            "--env",
            "WEATHER_TOKEN",
        ],
    );
    ok(
        &db,
        &[
            "server",
            "create",
            "search",
            "--tenant",
            "acme",
            "--endpoint",
            "https://u:pw@search.example/mcp?token=q1",
            "--header",
            "X-Api-Key=plain-header-secret",
        ],
    );
    let (success, _, err) = cli(
        &db,
        &[
            "server",
            "create",
            "inject",
            "--tenant",
            "acme",
            "--endpoint",
            "https://x.example/",
            "--header",
            "X-A=1\r\nX-B: 2",
        ],
    );
    assert!(!success && err.contains("CR or LF"), "{err}");
    let servers = ok(&db, &["server", "list", "--tenant", "acme"]);
    assert!(
        servers.contains("name: weather") && servers.contains("API_TOKEN") && servers.contains("WEATHER_TOKEN"),
        "{servers}"
    );
    assert!(servers.contains("X-Api-Key"), "{servers}");
    for secret in ["plain-env-secret-value", "env-secret-from-the-cli-environment", "plain-header-secret", ":pw@", "q1"]
    {
        assert!(!servers.contains(secret), "{secret} printed: {servers}");
    }
    assert!(ok(&db, &["server", "show", "weather", "--tenant", "acme"]).contains("weather-mcp"));

    ok(&db, &["instance", "create", "prod", "--tenant", "acme", "--tool", "weather:get_*", "--shared", "time:*"]);
    let (success, _, err) = cli(&db, &["instance", "create", "x", "--tenant", "acme", "--tool", "nosuch:*"]);
    assert!(!success && err.contains("server config \"nosuch\" not found"), "{err}");
    ok(&db, &["instance", "grant", "prod", "--tenant", "acme", "--tool", "search:*"]);
    let shown = ok(&db, &["instance", "show", "prod", "--tenant", "acme"]);
    assert!(
        shown.contains("weather:get_*") && shown.contains("shared:time:*") && shown.contains("search:*"),
        "{shown}"
    );
    assert!(ok(&db, &["instance", "revoke", "prod", "--tenant", "acme", "--tool", "search:*"]).contains("removed 1"));

    let created = ok(&db, &["key", "create", "--tenant", "acme", "--instance", "prod", "--name", "ci", "--rps", "5"]);
    let key = created.lines().last().unwrap().to_string();
    assert!(key.starts_with("sks_") && key.len() == 47, "{created}");
    let prefix = &key[..12];
    let listed = ok(&db, &["key", "list", "--tenant", "acme"]);
    assert!(listed.contains(prefix) && !listed.contains(&key), "{listed}");
    assert!(ok(&db, &["key", "show", prefix, "--tenant", "acme"]).contains("revoked_at: -"));

    // At rest: the key only as its HMAC and prefix; the secrets sealed.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(k::text, ' ') FROM api_keys k").fetch_one(&pool).await.unwrap();
    assert!(!dump.contains(&key) && dump.contains(prefix), "{dump}");
    let hash: Vec<u8> = sqlx::query_scalar("SELECT key_hash FROM api_keys").fetch_one(&pool).await.unwrap();
    assert_eq!(hash, keys().hash_key(&key).to_vec());
    let sealed: Vec<Vec<u8>> = sqlx::query_scalar("SELECT secrets FROM server_configs").fetch_all(&pool).await.unwrap();
    let raw: String =
        sqlx::query_scalar("SELECT string_agg(s::text, ' ') FROM server_configs s").fetch_one(&pool).await.unwrap();
    for secret in ["plain-env-secret-value", "env-secret-from-the-cli-environment", "plain-header-secret"] {
        assert!(!raw.contains(secret) && !raw.contains(&hex_of(secret)), "{secret} stored in clear");
        assert!(!sealed.iter().any(|s| s.windows(secret.len()).any(|w| w == secret.as_bytes())));
    }

    // Another tenant cannot reach acme's key, instance or server by name.
    ok(&db, &["tenant", "create", "other"]);
    let (success, _, err) = cli(&db, &["key", "revoke", prefix, "--tenant", "other"]);
    assert!(!success && err.contains("not found"), "{err}");
    let (success, _, _) = cli(&db, &["instance", "create", "steal", "--tenant", "other", "--tool", "weather:*"]);
    assert!(!success);

    ok(&db, &["key", "revoke", prefix, "--tenant", "acme"]);
    assert!(!ok(&db, &["key", "show", prefix, "--tenant", "acme"]).contains("revoked_at: -"));
    ok(&db, &["key", "delete", prefix, "--tenant", "acme"]);
    assert_eq!(ok(&db, &["key", "list", "--tenant", "acme"]), "");
    ok(&db, &["server", "delete", "search", "--tenant", "acme"]);
    ok(&db, &["instance", "delete", "prod", "--tenant", "acme"]);
    ok(&db, &["tenant", "delete", "acme"]);
    let tenants = ok(&db, &["tenant", "list"]);
    assert!(!tenants.contains("acme") && tenants.contains("other"), "{tenants}");
    pool.close().await;
}

/// The proxy's counts once nothing has been sent for 100 ms.
async fn quiet(proxy: &Proxy) -> (u64, u64) {
    let mut last = proxy.counts();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = proxy.counts();
        if now == last {
            return now;
        }
        last = now;
    }
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_key_resolves_in_one_round_trip_to_its_own_tenant_only() {
    let db = migrated().await;
    let proxy = Proxy::start().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let key_a = tenant_with_key(&pool, "alpha").await;
    let key_b = tenant_with_key(&pool, "beta").await;
    // beta cannot put alpha's server in its tool group: only its own server configs are found.
    let steal = [GrantSpec::Server { server: "alpha-srv".into(), pattern: "*".into() }];
    assert!(matches!(admin::instance_create(&pool, "beta", "steal", &steal).await, Err(StoreError::NotFound(_))));

    let store = Store::open(&config(&db.via(&proxy))).await.unwrap();
    assert!(store.wait_listening(Duration::from_secs(5)).await);
    // Warm the connection and the prepared statement with a key that is not ours.
    assert!(store.resolve("sks_unknownunknownunknown").await.unwrap().is_none());
    let before = quiet(&proxy).await;
    let a = store.resolve(&key_a).await.unwrap().expect("alpha's key resolves");
    let after = quiet(&proxy).await;
    // One statement (Bind, Execute, Sync: one round trip); sqlx's pool adds one Sync when the
    // connection goes back to the pool (its release check, in a task of its own, after the
    // answer).
    assert_eq!(after.0 - before.0, 1, "one statement");
    assert!(after.1 - before.1 <= 2, "one round trip and the pool's release check: {before:?} {after:?}");
    assert_eq!(a.tenant.name, "alpha");
    assert_eq!(a.instance.name, "main");
    assert_eq!((a.key.rps, a.key.burst, a.key.name.as_str()), (Some(5.0), Some(10), "ci"));
    assert_eq!(a.servers.len(), 1);
    assert_eq!(a.servers[0].name, "alpha-srv");
    assert_eq!(a.servers[0].secrets.env["TOKEN"].expose(), "secret-of-alpha");
    assert_eq!(a.servers[0].secrets.headers["Authorization"].expose(), "Bearer header-of-alpha");
    assert!(!format!("{a:?}").contains("secret-of-alpha"), "Debug shows names only");
    let alpha_srv = ToolSource::Server(a.servers[0].id);
    assert!(a.allows(&alpha_srv, "get_forecast") && !a.allows(&alpha_srv, "delete_all"));
    assert!(a.allows(&ToolSource::Shared("time".into()), "now"));
    // A hit costs no statement.
    let before = proxy.counts();
    store.resolve(&key_a).await.unwrap().unwrap();
    assert_eq!(proxy.counts(), before);

    let b = store.resolve(&key_b).await.unwrap().expect("beta's key resolves");
    assert_eq!(b.tenant.name, "beta");
    assert!(b.servers.iter().all(|s| s.name == "beta-srv"));
    assert!(!b.allows(&alpha_srv, "get_forecast"), "beta's key never reaches alpha's server");
    assert!(
        !format!("{:?}", b.servers.iter().map(|s| s.secrets.env["TOKEN"].expose()).collect::<Vec<_>>())
            .contains("alpha")
    );
    // A near miss of a key is nobody's.
    let mut forged = key_a.clone();
    forged.pop();
    forged.push('x');
    assert!(store.resolve(&forged).await.unwrap().is_none());
    assert!(store.resolve(&"sks_".repeat(100)).await.unwrap().is_none());
    store.shutdown().await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn a_change_on_one_replica_reaches_another_replicas_cache_within_a_second() {
    let db = migrated().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let key = tenant_with_key(&pool, "acme").await;
    let one = Store::open(&config(&db.url)).await.unwrap();
    let two = Store::open(&config(&db.url)).await.unwrap();
    for s in [&one, &two] {
        assert!(s.wait_listening(Duration::from_secs(5)).await);
        s.resolve(&key).await.unwrap().unwrap();
    }
    assert!(sekisho::observe::metrics::METRICS.store.lookups("miss") >= 2);

    let mut changes = two.changes();
    // An edited tool group (cache_ttl is 60 s: only NOTIFY can make this visible).
    admin::instance_grant(
        &pool,
        "acme",
        "main",
        &[GrantSpec::Shared { namespace: "maps".into(), pattern: "*".into() }],
    )
    .await
    .unwrap();
    for s in [&one, &two] {
        eventually("the new tool group entry", Duration::from_secs(1), async || {
            let r = s.resolve(&key).await.unwrap().unwrap();
            if r.allows(&ToolSource::Shared("maps".into()), "route") { Ok(()) } else { Err(format!("{:?}", r.tools)) }
        })
        .await;
    }

    let acme = two.resolve(&key).await.unwrap().unwrap().tenant.id;
    let change = tokio::time::timeout(Duration::from_secs(1), changes.recv()).await.unwrap().unwrap();
    assert_eq!(change, sekisho::store::notify::Change::Tenant(acme), "the change reaches the replica's subscribers");

    // A new key, first unknown (and cached as unknown) everywhere, then known.
    let (new_key, prefix) = {
        let created = admin::key_create(&pool, &keys(), "acme", "main", "", None, None).await.unwrap();
        (created.key.expose().to_string(), created.prefix)
    };
    for s in [&one, &two] {
        eventually("the new key", Duration::from_secs(1), async || match s.resolve(&new_key).await {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await;
    }

    // A key revoked through one replica's pool is refused by both within 1 s.
    admin::key_end(one.pool(), "acme", &prefix, false).await.unwrap();
    for s in [&one, &two] {
        eventually("the revoked key refused", Duration::from_secs(1), async || match s.resolve(&new_key).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await;
    }
    assert!(two.resolve(&key).await.unwrap().is_some(), "the other key is untouched");
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn with_postgres_down_cached_keys_serve_until_max_stale_and_unknown_keys_get_a_retryable_error() {
    let db = migrated().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let key = tenant_with_key(&pool, "acme").await;
    let proxy = Proxy::start().await;
    let cfg = StoreConfig {
        cache_ttl: Duration::from_millis(300),
        max_stale: Duration::from_secs(3),
        timeout: Duration::from_secs(1),
        ..config(&db.via(&proxy))
    };
    let store = Store::open(&cfg).await.unwrap();
    assert!(store.wait_listening(Duration::from_secs(5)).await);
    store.resolve(&key).await.unwrap().unwrap();
    assert!(!store.health().degraded);

    proxy.set_up(false);
    // Past the TTL, the stale copy serves; an unknown key is refused, retryably.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = store.resolve(&key).await.unwrap().expect("served from the stale copy");
    assert_eq!(r.tenant.name, "acme");
    let err = store.resolve("sks_neverseenneverseenneverseen").await.unwrap_err();
    assert!(err.is_retryable() && matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(!err.to_string().contains("sks_"), "{err}");
    assert!(store.health().degraded);
    assert!(sekisho::observe::metrics::METRICS.store.lookups("stale") >= 1);
    // Past max_stale, the known key fails too (retryable).
    eventually("the stale copy expired", Duration::from_secs(6), async || match store.resolve(&key).await {
        Err(e) if e.is_retryable() => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;

    // Back up: everything recovers without a restart.
    proxy.set_up(true);
    eventually("the key resolves again", Duration::from_secs(5), async || match store.resolve(&key).await {
        Ok(Some(_)) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    eventually("the store healthy", Duration::from_secs(10), async || {
        let h = store.health();
        if h.degraded { Err(format!("{h:?}")) } else { Ok(()) }
    })
    .await;
    store.shutdown().await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn ten_thousand_uses_are_written_in_one_statement_at_shutdown() {
    let db = migrated().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // Count UPDATE statements on api_keys (a statement-level trigger fires once per statement).
    for sql in [
        "CREATE TABLE update_statements (n int NOT NULL)",
        "INSERT INTO update_statements VALUES (0)",
        "CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE update_statements SET n = n + 1; RETURN NULL; END $$",
        "CREATE TRIGGER count_update AFTER UPDATE ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION count_update()",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let keys = [
        tenant_with_key(&pool, "alpha").await,
        tenant_with_key(&pool, "beta").await,
        admin::key_create(&pool, &self::keys(), "alpha", "main", "", None, None)
            .await
            .unwrap()
            .key
            .expose()
            .to_string(),
    ];
    let store = Arc::new(
        Store::open(&StoreConfig { last_used_flush: Duration::from_secs(3600), ..config(&db.url) }).await.unwrap(),
    );
    for i in 0..10_000 {
        store.resolve(&keys[i % 3]).await.unwrap().unwrap();
    }
    let statements =
        async || -> i32 { sqlx::query_scalar("SELECT n FROM update_statements").fetch_one(&pool).await.unwrap() };
    let used = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!((statements().await, used().await), (0, 0), "nothing written before the flush");
    assert_eq!(store.health().pending_last_used, 3);
    assert_eq!(store.shutdown().await.unwrap(), 3);
    assert_eq!((statements().await, used().await), (1, 3), "one UPDATE for 10,000 uses of 3 keys");

    // The periodic flush writes on its own.
    let periodic =
        Store::open(&StoreConfig { last_used_flush: Duration::from_millis(100), ..config(&db.url) }).await.unwrap();
    sqlx::query("UPDATE api_keys SET last_used_at = NULL").execute(&pool).await.unwrap();
    let base = statements().await;
    for _ in 0..1000 {
        periodic.resolve(&keys[0]).await.unwrap().unwrap();
    }
    eventually("last_used_at written by the flusher", Duration::from_secs(5), async || {
        if used().await == 1 { Ok(()) } else { Err("not yet") }
    })
    .await;
    assert!(statements().await - base <= 3, "a handful of statements at most");
    periodic.shutdown().await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn a_flood_of_made_up_keys_costs_the_database_its_lookup_budget_and_no_more() {
    let db = migrated().await;
    let proxy = Proxy::start().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let known = tenant_with_key(&pool, "alpha").await;
    let store = Store::open(&StoreConfig { lookups_per_second: 5, ..config(&db.via(&proxy)) }).await.unwrap();
    assert!(store.wait_listening(Duration::from_secs(5)).await);
    assert!(store.resolve(&known).await.unwrap().is_some(), "the known key, loaded once");
    let before = quiet(&proxy).await;
    let started = std::time::Instant::now();
    let (mut refused, mut unknown) = (0, 0);
    for i in 0..300 {
        match store.resolve(&format!("sks_madeup{i:032}")).await {
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                refused += 1;
            }
            Ok(None) => unknown += 1,
            Ok(Some(_)) => panic!("a made-up key resolved"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = quiet(&proxy).await;
    // At most the burst (5) plus 5 per second elapsed were loaded, each one statement.
    let allowed = 5 + (5.0 * elapsed).ceil() as u64;
    assert_eq!(unknown as u64, after.0 - before.0, "every load is one statement");
    assert!(unknown as u64 <= allowed, "{unknown} loads in {elapsed:.2}s, budget {allowed}");
    assert!(refused >= 300 - allowed as usize, "{refused} refused");
    // The known key is in memory: still served, at no cost.
    let now = proxy.counts();
    assert!(store.resolve(&known).await.unwrap().is_some());
    assert_eq!(proxy.counts(), now);
    pool.close().await;
}
