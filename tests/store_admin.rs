//! The store's operator commands through a running gateway (`--url`, the admin API at
//! `POST /admin/store/…`) against a real PostgreSQL: the real CLI binary prints what it prints
//! with `--database-url`, only admin keys get in (401 without a key, 403 for a client key and
//! a store key), secret values given over `--url` are stored sealed and never come back, and
//! the API's errors map to their statuses (bad body 400 without its strings, unknown command
//! 404, no `[store]` 404, a body over the limit 413, PostgreSQL down 503 with `Retry-After`).

mod common;
#[path = "support/postgres.rs"]
mod postgres;

use std::time::Duration;

use common::{CliRun as Run, Gateway, Served, client, eventually, sekisho_cli};
use postgres::{Proxy, TestDb};

const PEPPER: &str = "test-pepper-0123456789abcdef0123456789";
/// base64 of 32 bytes of 0x2a.
const SECRET_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
const OPS: &str = "ops-admin-key-0123456789abcdef";
const APP: &str = "app-client-key-0123456789abcdef";
/// Secret values the commands give; none may appear in any answer.
const SECRETS: [&str; 4] =
    ["plain-env-secret-value", "env-secret-from-the-cli-environment", "plain-header-secret", "token=q1"];

async fn migrated() -> TestDb {
    let db = TestDb::create().await;
    let pool = sekisho::store::pool(&db.url, 1, Duration::from_secs(5)).unwrap();
    sekisho::store::migrate(&pool).await.unwrap();
    pool.close().await;
    db
}

/// A gateway with `[store]` at `postgres_url`, an admin key and a client key, and `extra`
/// `[server]` lines.
async fn gateway(postgres_url: &str, extra: &str) -> Gateway {
    Gateway::start(&format!(
        "[server]\napi_keys = [{{ key = {OPS:?}, name = \"ops\", role = \"admin\" }}, {{ key = {APP:?}, name = \"app\" }}]\n\
         {extra}\n[store]\npostgres_url = {postgres_url:?}\nkey_pepper = {PEPPER:?}\nsecret_key = {SECRET_KEY:?}\ntimeout = \"1s\"\n"
    ))
    .await
}

/// Run the binary with `args` and `env` (and `WEATHER_TOKEN` set), with no store settings
/// of the test's environment.
async fn sekisho(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut env = env.to_vec();
    env.insert(0, ("WEATHER_TOKEN", "env-secret-from-the-cli-environment"));
    sekisho_cli(args, &env).await
}

/// Where the commands of [`script`] run.
enum Mode<'a> {
    /// `--database-url` with the pepper and secret key.
    Database(&'a TestDb),
    /// `--url` with the admin key from `SEKISHO_ADMIN_KEY` (the secrets are not given).
    Gateway(&'a Gateway),
}

impl Mode<'_> {
    async fn run(&self, args: &[&str]) -> Run {
        match self {
            Mode::Database(db) => {
                let env = [("SEKISHO_STORE__KEY_PEPPER", PEPPER), ("SEKISHO_STORE__SECRET_KEY", SECRET_KEY)];
                sekisho(&[args, &["--database-url", &db.url]].concat(), &env).await
            }
            Mode::Gateway(gw) => sekisho(&[args, &["--url", &gw.base]].concat(), &[("SEKISHO_ADMIN_KEY", OPS)]).await,
        }
    }
}

/// Every command once, for tenant `tenant`: each run's stdout (or, for the refusals, stderr),
/// with the tenant's name, the new key, times and ids made the same for any run.
async fn script(mode: &Mode<'_>, tenant: &str) -> Vec<String> {
    let t = tenant;
    let commands: Vec<Vec<&str>> = vec![
        vec!["tenant", "create", t],
        vec!["tenant", "show", t],
        vec![
            "server",
            "create",
            "weather",
            "--tenant",
            t,
            "--command",
            "weather-mcp",
            "--arg",
            "--verbose",
            "--env",
            "API_TOKEN=plain-env-secret-value",
            "--env",
            "WEATHER_TOKEN",
        ],
        vec![
            "server",
            "create",
            "search",
            "--tenant",
            t,
            "--endpoint",
            "https://u:pw@search.example/mcp?token=q1",
            "--header",
            "X-Api-Key=plain-header-secret",
        ],
        vec!["server", "list", "--tenant", t],
        vec!["server", "show", "weather", "--tenant", t],
        vec!["instance", "create", "prod", "--tenant", t, "--tool", "weather:get_*", "--shared", "time:*"],
        vec!["instance", "grant", "prod", "--tenant", t, "--tool", "search:*"],
        vec!["instance", "show", "prod", "--tenant", t],
        vec!["instance", "revoke", "prod", "--tenant", t, "--tool", "search:*"],
        vec!["instance", "list", "--tenant", t],
        vec!["key", "create", "--tenant", t, "--instance", "prod", "--name", "ci", "--rps", "5"],
    ];
    let mut outputs = Vec::new();
    for args in &commands {
        let r = mode.run(args).await;
        assert!(r.ok, "sekisho {args:?}: {}", r.err);
        outputs.push(r.out);
    }
    let key = outputs.last().unwrap().lines().last().unwrap().to_string();
    assert!(key.starts_with("sks_") && key.len() == 47, "{outputs:?}");
    let prefix = key[..12].to_string();
    let more: Vec<Vec<&str>> = vec![
        vec!["key", "list", "--tenant", t],
        vec!["key", "show", &prefix, "--tenant", t],
        vec!["key", "revoke", &prefix, "--tenant", t],
        vec!["key", "show", &prefix, "--tenant", t],
    ];
    for args in &more {
        let r = mode.run(args).await;
        assert!(r.ok, "sekisho {args:?}: {}", r.err);
        outputs.push(r.out);
    }
    // Refusals: the same text on stderr, exit status 1.
    let refused: Vec<Vec<&str>> = vec![
        vec!["tenant", "create", t],
        vec!["tenant", "create", "Bad Name"],
        vec!["instance", "create", "x", "--tenant", t, "--tool", "nosuch:*"],
        vec![
            "server",
            "create",
            "inject",
            "--tenant",
            t,
            "--endpoint",
            "https://x.example/",
            "--header",
            "X-A=1\r\nX-B: 2",
        ],
        vec!["key", "show", "sks_nosuchkey", "--tenant", t],
    ];
    for args in &refused {
        let r = mode.run(args).await;
        assert!(!r.ok && r.out.is_empty(), "sekisho {args:?} succeeded: {}", r.out);
        outputs.push(r.err);
    }
    let mut tail = Vec::new();
    for args in [
        vec!["key", "delete", &prefix, "--tenant", t],
        vec!["instance", "delete", "prod", "--tenant", t],
        vec!["server", "delete", "search", "--tenant", t],
        vec!["tenant", "delete", t],
    ] {
        let r = mode.run(&args).await;
        assert!(r.ok, "sekisho {args:?}: {}", r.err);
        tail.push(r.out);
    }
    outputs.extend(tail);
    for text in &outputs {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} printed: {text}");
        }
    }
    outputs.iter().map(|o| same_for_any_run(o, t, &key)).collect()
}

/// `text` with `tenant`, `key` and its prefix, times and numbers replaced by placeholders.
fn same_for_any_run(text: &str, tenant: &str, key: &str) -> String {
    let text = text.replace(key, "<key>").replace(&key[..12], "<prefix>").replace(tenant, "<tenant>");
    let lines = text.lines().map(|line| match line.split_once("_at: ") {
        Some((field, value)) if value != "-" => format!("{field}_at: <time>"),
        _ => line.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect(),
    });
    lines.collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn through_a_gateway_the_commands_print_what_they_print_against_the_database() {
    let db = migrated().await;
    let gw = gateway(&db.url, "").await;
    let direct = script(&Mode::Database(&db), "alpha").await;
    let through = script(&Mode::Gateway(&gw), "beta").await;
    assert_eq!(direct.len(), through.len());
    for (d, t) in direct.iter().zip(&through) {
        assert_eq!(d, t);
    }
    assert!(through.iter().any(|o| o.contains("name: weather") && o.contains("WEATHER_TOKEN")), "{through:?}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn secrets_given_over_the_url_are_sealed_and_a_new_store_key_is_no_admin() {
    let db = migrated().await;
    let gw = gateway(&db.url, "").await;
    let at = Mode::Gateway(&gw);
    assert!(at.run(&["tenant", "create", "acme"]).await.ok);
    let created = at
        .run(&[
            "server",
            "create",
            "weather",
            "--tenant",
            "acme",
            "--command",
            "weather-mcp",
            "--env",
            "WEATHER_TOKEN",
            "--header",
            "X-Api-Key=plain-header-secret",
        ])
        .await;
    assert!(created.ok, "{}", created.err);
    let shown = at.run(&["server", "show", "weather", "--tenant", "acme"]).await.out;
    assert!(shown.contains("env: [\"WEATHER_TOKEN\"]") && shown.contains("X-Api-Key"), "{shown}");
    assert!(!shown.contains("env-secret-from-the-cli-environment") && !shown.contains("plain-header-secret"));

    // At rest: sealed, and it opens to the values the CLI's environment gave.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let (tenant, sealed): (i64, Vec<u8>) =
        sqlx::query_as("SELECT tenant_id, secrets FROM server_configs WHERE name = 'weather'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let raw: String =
        sqlx::query_scalar("SELECT string_agg(s::text, ' ') FROM server_configs s").fetch_one(&pool).await.unwrap();
    for secret in ["env-secret-from-the-cli-environment", "plain-header-secret"] {
        assert!(!raw.contains(secret) && !sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    let keys = sekisho::store::secrets::Keys::new(PEPPER, SECRET_KEY).unwrap();
    let opened = keys.open(tenant, "weather", &sealed).unwrap();
    assert_eq!(opened.env["WEATHER_TOKEN"].expose(), "env-secret-from-the-cli-environment");
    assert_eq!(opened.headers["X-Api-Key"].expose(), "plain-header-secret");

    // A key made over the URL is a store key: it authenticates, but is no admin (403); once
    // revoked over the URL, it is refused (401) within a second.
    assert!(at.run(&["instance", "create", "bot", "--tenant", "acme", "--tool", "weather:*"]).await.ok);
    let created = at.run(&["key", "create", "--tenant", "acme", "--instance", "bot"]).await;
    let key = created.out.lines().last().unwrap().to_string();
    let store_key = sekisho(&["tenant", "list", "--url", &gw.base, "--admin-key", &key], &[]).await;
    assert!(!store_key.ok && store_key.err.contains("403"), "{}", store_key.err);
    assert!(at.run(&["key", "revoke", &key[..12], "--tenant", "acme"]).await.ok);
    eventually("the revoked key refused", Duration::from_secs(1), async || {
        let r = client().post(gw.url("/admin/store/tenant/list")).bearer_auth(&key).send().await.unwrap();
        if r.status() == 401 { Ok(()) } else { Err(r.status().to_string()) }
    })
    .await;
    pool.close().await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_admin_api_takes_admins_only_and_maps_errors_to_statuses() {
    let db = migrated().await;
    let proxy = Proxy::start().await;
    let gw = gateway(&db.via(&proxy), "max_body_bytes = 2048").await;
    let post = |path: &str, key: Option<&str>, body: &str| {
        let mut req = client().post(gw.url(path)).header("content-type", "application/json").body(body.to_string());
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (status, retry, r.text().await.unwrap())
        }
    };
    let create = r#"{"name":"acme"}"#;
    assert_eq!(post("/admin/store/tenant/create", None, create).await.0, 401);
    assert_eq!(post("/admin/store/tenant/create", Some(APP), create).await.0, 403);
    assert_eq!(post("/admin/store/tenant/create", Some("wrong-key-0123456789abcdef"), create).await.0, 401);
    let (status, _, body) = post("/admin/store/tenant/create", Some(OPS), create).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(answer["output"].as_str().unwrap().starts_with("created tenant acme (id "), "{body}");
    assert_eq!(post("/admin/store/tenant/create", Some(OPS), create).await.0, 409);
    let (status, _, body) = post("/admin/store/tenant/show", Some(OPS), r#"{"name":"nope"}"#).await;
    assert_eq!((status, body.contains("\"kind\":\"not_found\"")), (404, true), "{body}");
    assert_eq!(post("/admin/store/tenant/frobnicate", Some(OPS), "{}").await.0, 404);
    assert_eq!(client().get(gw.url("/admin/store/tenant/list")).bearer_auth(OPS).send().await.unwrap().status(), 405);
    // A malformed body: 400, without its strings (they may be secret values).
    let bad = r#"{"tenant":"acme","name":"w","command":"x","env":"TOKEN=hunter2-secret"}"#;
    let (status, _, body) = post("/admin/store/server/create", Some(OPS), bad).await;
    assert!(status == 400 && !body.contains("hunter2"), "{status} {body}");
    let (status, _, body) =
        post("/admin/store/server/create", Some(OPS), r#"{"tenant":"acme","name":"w","nope":1}"#).await;
    assert!(status == 400 && body.contains("unknown field `nope`"), "{status} {body}");
    // Over [server] max_body_bytes: 413.
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(4096));
    assert_eq!(post("/admin/store/tenant/create", Some(OPS), &big).await.0, 413);
    // The CLI without a key, and with a client key, says why.
    let none = sekisho(&["tenant", "list", "--url", &gw.base], &[]).await;
    assert!(!none.ok && none.err.contains("401") && none.err.contains("SEKISHO_ADMIN_KEY"), "{}", none.err);
    let client_key = sekisho(&["tenant", "list", "--url", &gw.base, "--admin-key", APP], &[]).await;
    assert!(!client_key.ok && client_key.err.contains("403"), "{}", client_key.err);
    // PostgreSQL down: 503 with Retry-After, and the CLI says the store is unavailable.
    proxy.set_up(false);
    let (status, retry, body) = post("/admin/store/tenant/list", Some(OPS), "").await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
    let down = sekisho(&["tenant", "list", "--url", &gw.base, "--admin-key", OPS], &[]).await;
    assert!(!down.ok && down.err.contains("the configuration store is unavailable"), "{}", down.err);
    proxy.set_up(true);
    gw.shutdown().await.unwrap();

    // A gateway without [store]: 404 saying so.
    let plain = Gateway::start(&format!("[server]\napi_keys = [{{ key = {OPS:?}, role = \"admin\" }}]\n")).await;
    let r = client().post(plain.url("/admin/store/tenant/list")).bearer_auth(OPS).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no [store]"));
    let cli = sekisho(&["tenant", "list", "--url", &plain.base, "--admin-key", OPS], &[]).await;
    assert!(!cli.ok && cli.err.contains("no [store]"), "{}", cli.err);
    plain.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_gateway_logs_the_command_and_never_the_secret_values() {
    let db = migrated().await;
    let mut served = Served::start(
        &format!("api_keys = [{{ key = {OPS:?}, name = \"ops\", role = \"admin\" }}]"),
        &format!(
            "[log]\nlevel = \"debug\"\n[store]\npostgres_url = {:?}\nkey_pepper = {PEPPER:?}\nsecret_key = {SECRET_KEY:?}\n",
            db.url
        ),
    )
    .await;
    let base = served.base.clone();
    let env = [("SEKISHO_ADMIN_KEY", OPS)];
    assert!(sekisho(&["tenant", "create", "acme", "--url", &base], &env).await.ok);
    let args = [
        "server",
        "create",
        "weather",
        "--tenant",
        "acme",
        "--command",
        "weather-mcp",
        "--env",
        "API_TOKEN=plain-env-secret-value",
        "--env",
        "WEATHER_TOKEN",
        "--header",
        "X-Api-Key=plain-header-secret",
        "--url",
        &base,
    ];
    let created = sekisho(&args, &env).await;
    assert!(created.ok, "{}", created.err);
    // A refused one too: its error is logged.
    let refused = sekisho(&args, &env).await;
    assert!(!refused.ok && refused.err.contains("exists"), "{}", refused.err);
    served.terminate().await;
    let logged = served.logs();
    assert!(logged.contains("store command run through the admin API") && logged.contains("server/create"), "{logged}");
    assert!(logged.contains("store command refused"), "{logged}");
    for secret in SECRETS.iter().chain(&[OPS]) {
        assert!(!logged.contains(secret), "{secret} logged: {logged}");
    }
}
