//! Upstream credentials (sekisho as the OAuth client of an upstream): a real authorization
//! server and protected resource on loopback — an axum app in the test that issues tokens by
//! the client credentials grant and guards a real `echo-upstream` behind a bearer check — and
//! the real gateway in between. The MCP conformance suite's client-mode scenarios run the same
//! client through `sekisho probe` (tests/conformance/run.sh).

mod common;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/tenants.rs"]
mod tenants;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use common::{Gateway, HttpUpstream, modern_as, text};
use serde_json::{Value, json};

const CLIENT_ID: &str = "sekisho-gw";
const SECRET: &str = "s3cret-client-credential-0123";
const CLIENT_KEY: &str = "sks_client_key_that_must_never_reach_upstreams_0001";

/// A token request's form fields and its `Authorization`.
type TokenRequest = (Vec<(String, String)>, Option<String>);

/// What the authorization server and the resource saw, and how they behave.
#[derive(Default)]
struct Seen {
    /// Every token request's form fields and `Authorization`.
    token_requests: Vec<TokenRequest>,
    /// Every `Authorization` the resource received.
    resource_auth: Vec<String>,
    /// Tokens the resource accepts.
    valid: HashSet<String>,
    /// The token endpoint answers 500.
    token_fails: bool,
    /// `resource` of the protected-resource metadata, when not the resource's own URL.
    prm_resource: Option<String>,
    /// `issuer` of the authorization server metadata, when not its own.
    issuer: Option<String>,
}

struct Server {
    base: String,
    upstream: String,
    http: reqwest::Client,
    seen: Mutex<Seen>,
}

/// The authorization server (RFC 8414 metadata, token endpoint) and the protected resource
/// (RFC 9728 metadata, `/mcp` behind a bearer check, forwarding to `echo-upstream`), on one
/// loopback port.
async fn start(upstream: &HttpUpstream) -> Arc<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = Arc::new(Server {
        base,
        upstream: upstream.url.clone(),
        http: reqwest::Client::new(),
        seen: Mutex::new(Seen::default()),
    });
    let app = axum::Router::new()
        .route("/.well-known/oauth-authorization-server", get(as_metadata))
        .route("/.well-known/oauth-protected-resource/mcp", get(prm))
        .route("/token", post(token))
        .route("/mcp", any(resource))
        .with_state(Arc::clone(&server));
    tokio::spawn(async move { axum::serve(listener, app).await });
    server
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn as_metadata(State(s): State<Arc<Server>>) -> Response {
    let issuer = s.seen.lock().unwrap().issuer.clone().unwrap_or_else(|| s.base.clone());
    json_answer(
        StatusCode::OK,
        json!({
            "issuer": issuer,
            "token_endpoint": format!("{}/token", s.base),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }),
    )
}

async fn prm(State(s): State<Arc<Server>>) -> Response {
    let resource = s.seen.lock().unwrap().prm_resource.clone().unwrap_or_else(|| format!("{}/mcp", s.base));
    json_answer(
        StatusCode::OK,
        json!({
            "resource": resource,
            "authorization_servers": [s.base],
            "scopes_supported": ["echo:call", "echo:admin"],
        }),
    )
}

async fn token(State(s): State<Arc<Server>>, headers: HeaderMap, body: String) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
    let mut seen = s.seen.lock().unwrap();
    seen.token_requests.push((form, auth.clone()));
    if seen.token_fails {
        return json_answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "server_error"}));
    }
    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}")));
    if auth.as_deref() != Some(expected.as_str()) {
        return json_answer(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    let token = format!("tok-{}-{}", seen.token_requests.len(), hex::encode(rand::random::<[u8; 8]>()));
    seen.valid.insert(token.clone());
    json_answer(StatusCode::OK, json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
}

async fn resource(State(s): State<Arc<Server>>, req: Request) -> Response {
    let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap_or("").to_string());
    let ok = {
        let mut seen = s.seen.lock().unwrap();
        seen.resource_auth.extend(auth.clone());
        auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")).is_some_and(|t| seen.valid.contains(t))
    };
    if !ok {
        let challenge = format!(
            r#"Bearer error="invalid_token", resource_metadata="{}/.well-known/oauth-protected-resource/mcp", scope="echo:call""#,
            s.base
        );
        return (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)], "").into_response();
    }
    // Forward to the echo upstream, the answer streamed back as it comes.
    let mut out = s.http.request(req.method().clone(), &s.upstream);
    for (k, v) in req.headers() {
        let k = k.as_str();
        if k == "content-type" || k == "accept" || k.starts_with("mcp-") || k == "last-event-id" {
            out = out.header(k, v);
        }
    }
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
    let answer = out.body(body).send().await.unwrap();
    let mut resp = Response::builder().status(answer.status().as_u16());
    for (k, v) in answer.headers() {
        if k == "content-type" || k.as_str().starts_with("mcp-") {
            resp = resp.header(k.as_str(), v.as_bytes());
        }
    }
    resp.body(Body::from_stream(answer.bytes_stream())).unwrap()
}

fn config(server: &Server, auth_extra: &str) -> String {
    format!(
        "[server]\napi_keys = [{{ key = {CLIENT_KEY:?}, name = \"client\" }}]\n\
         [upstreams.up]\nurl = \"{}/mcp\"\nstartup_timeout = \"5s\"\n\
         auth = {{ type = \"oauth-client-credentials\", client_id = {CLIENT_ID:?}, client_secret = {SECRET:?}{auth_extra} }}\n",
        server.base
    )
}

async fn echo(gw: &Gateway, id: i64, message: &str) -> common::Answer {
    modern_as(
        &gw.url("/mcp"),
        Some(CLIENT_KEY),
        id,
        "tools/call",
        json!({"name": "up__echo", "arguments": {"message": message}}),
    )
    .await
}

#[tokio::test]
async fn a_token_is_discovered_from_the_401_cached_and_fetched_again_once_when_refused() {
    let upstream = HttpUpstream::start("modern").await;
    let server = start(&upstream).await;
    let gw = Gateway::start(&config(&server, "")).await;
    for i in 0..5 {
        let a = echo(&gw, i, "hello").await;
        assert_eq!(text(&a), "hello", "{}", a.raw);
    }
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!(seen.token_requests.len(), 1, "one token for the handshake and every call");
        let (form, auth) = &seen.token_requests[0];
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(field("grant_type"), Some("client_credentials"));
        assert_eq!(field("resource"), Some(format!("{}/mcp", server.base).as_str()), "RFC 8707 resource");
        assert_eq!(field("scope"), Some("echo:call"), "the challenge's scope comes first");
        assert_eq!(field("client_secret"), None, "client_secret_basic: the secret is not in the body");
        assert!(auth.as_deref().is_some_and(|a| a.starts_with("Basic ")));
    }
    // The resource forgets every token: the next call meets a 401, gets one new token, and
    // goes through.
    server.seen.lock().unwrap().valid.clear();
    let a = echo(&gw, 10, "again").await;
    assert_eq!(text(&a), "again", "{}", a.raw);
    let a = echo(&gw, 11, "and again").await;
    assert_eq!(text(&a), "and again", "{}", a.raw);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.token_requests.len(), 2, "exactly one more token request after the 401");
    // The client's own key never reached the upstream; only the gateway's tokens did.
    assert!(!seen.resource_auth.is_empty());
    assert!(seen.resource_auth.iter().all(|a| !a.contains(CLIENT_KEY)), "{:?}", seen.resource_auth);
    assert!(seen.resource_auth.iter().all(|a| a.starts_with("Bearer tok-")), "{:?}", seen.resource_auth);
}

#[tokio::test]
async fn metadata_for_another_resource_or_from_another_issuer_is_refused() {
    let upstream = HttpUpstream::start("modern").await;
    for (prm_resource, issuer, why) in [
        (Some("https://evil.example.com/mcp"), None, "protected-resource metadata for another resource"),
        (None, Some("https://attacker.example.com"), "authorization server metadata of another issuer"),
    ] {
        let server = start(&upstream).await;
        {
            let mut seen = server.seen.lock().unwrap();
            seen.prm_resource = prm_resource.map(String::from);
            seen.issuer = issuer.map(String::from);
        }
        let gw = Gateway::start(&config(&server, "")).await;
        let ready = gw.readyz().await;
        assert_eq!(ready["upstreams"]["up"]["status"], "down", "{why}: {ready}");
        let a = echo(&gw, 1, "x").await;
        assert!(a.error_code().is_some(), "{why}: {}", a.raw);
        assert!(server.seen.lock().unwrap().token_requests.is_empty(), "{why}: no token was asked for");
    }
}

#[tokio::test]
async fn a_failing_token_endpoint_is_not_asked_more_than_once_a_second() {
    let upstream = HttpUpstream::start("modern").await;
    let server = start(&upstream).await;
    server.seen.lock().unwrap().token_fails = true;
    let started = std::time::Instant::now();
    let gw = Gateway::start(
        &config(&server, ", token_url = \"PLACEHOLDER\"").replace("PLACEHOLDER", &format!("{}/token", server.base)),
    )
    .await;
    let calls = futures::future::join_all((0..20).map(|i| echo(&gw, i, "x"))).await;
    assert!(calls.iter().all(|a| a.error_code().is_some()), "no call goes through without a token");
    let asked = server.seen.lock().unwrap().token_requests.len() as u64;
    let bound = started.elapsed().as_secs() + 2;
    assert!(asked >= 1 && asked <= bound, "{asked} token requests in {:?} (at most {bound})", started.elapsed());
}

#[tokio::test]
async fn sekisho_probe_authorizes_lists_and_calls_and_never_prints_the_secret() {
    let upstream = HttpUpstream::start("modern").await;
    let server = start(&upstream).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sekisho"))
        .args(["probe", &format!("{}/mcp", server.base), "--client-id", CLIENT_ID, "--tool", "echo"])
        .args(["--arguments", r#"{"message":"probed"}"#])
        .env("SEKISHO_PROBE_CLIENT_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["content"][0]["text"], "probed", "{stdout}");
    // A wrong secret: refused, exit 1, and neither secret is printed.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sekisho"))
        .args(["probe", &format!("{}/mcp", server.base), "--client-id", CLIENT_ID, "--timeout", "3"])
        .env("SEKISHO_PROBE_CLIENT_SECRET", "wrong-secret-value-42")
        .output()
        .await
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("invalid_client"), "the reason is told: {all}");
    for secret in [SECRET, "wrong-secret-value-42", "tok-"] {
        assert!(!all.contains(secret), "{secret} printed: {all}");
    }
}

/// A tenant's own HTTP server config carries credentials too (`server create --oauth-client-id
/// … --oauth-client-secret-from VAR`): sealed in the store with the config's other secrets,
/// never shown, and used by the tenant's upstream exactly as a static upstream's `auth`. A
/// config naming a private key file (a file of the gateway's) is refused.
#[tokio::test]
async fn a_tenants_server_config_gets_its_own_client_credentials() {
    use tenants::{PEPPER, SECRET_KEY, cli, created_key, migrated};
    let upstream = HttpUpstream::start("modern").await;
    let server = start(&upstream).await;
    let db = migrated().await;
    let url = format!("{}/mcp", server.base);
    cli(&db.url, &["tenant", "create", "acme"], &[]).await;
    let create = [
        "server",
        "create",
        "remote",
        "--tenant",
        "acme",
        "--endpoint",
        &url,
        "--oauth-client-id",
        CLIENT_ID,
        "--oauth-client-secret-from",
        "REMOTE_SECRET",
    ];
    cli(&db.url, &create, &[("REMOTE_SECRET", SECRET)]).await;
    cli(&db.url, &["instance", "create", "main", "--tenant", "acme", "--tool", "remote:*"], &[]).await;
    let key = created_key(&cli(&db.url, &["key", "create", "--tenant", "acme", "--instance", "main"], &[]).await);
    let shown = cli(&db.url, &["server", "show", "remote", "--tenant", "acme"], &[]).await;
    assert!(!shown.contains(SECRET), "{shown}");
    let sealed: Vec<u8> = {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let row = sqlx::query_scalar("SELECT secrets FROM server_configs").fetch_one(&pool).await.unwrap();
        pool.close().await;
        row
    };
    assert!(!sealed.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "the secret is sealed at rest");

    let admin = "upstream-auth-admin-0123456789";
    let toml = format!(
        "[server]\napi_keys = [{{ key = {admin:?}, name = \"ops\", role = \"admin\" }}]\n\
         [store]\npostgres_url = {:?}\nkey_pepper = {PEPPER:?}\nsecret_key = {SECRET_KEY:?}\n",
        db.url
    );
    let gw = Gateway::start(&toml).await;
    let call = modern_as(
        &gw.url("/mcp"),
        Some(&key),
        1,
        "tools/call",
        json!({"name": "remote__echo", "arguments": {"message": "through"}}),
    )
    .await;
    assert_eq!(text(&call), "through", "{}", call.raw);
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!(seen.token_requests.len(), 1, "{:?}", seen.token_requests);
        let (form, _) = &seen.token_requests[0];
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(field("resource"), Some(url.as_str()));
        assert!(seen.resource_auth.iter().all(|a| a.starts_with("Bearer tok-") && !a.contains(&key)));
    }

    // A private key file is a file of the gateway's machine: refused (400), and never read.
    let op = json!({"tenant": "acme", "name": "file", "url": url,
                    "auth": {"type": "oauth-client-credentials", "client_id": "x", "private_key_file": "/etc/hostname"}});
    let refused =
        common::client().post(gw.url("/admin/store/server/create")).bearer_auth(admin).json(&op).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(body.contains("private_key_file") && body.contains("invalid"), "{body}");
}
