//! The OAuth 2.1 resource server against a real OpenID provider (npm `oidc-provider`, pinned in
//! tests/fixtures/oidc, started on loopback with client-credentials clients and resource
//! indicators) in front of the real `sekisho serve` binary: tokens for the gateway's resource
//! work; wrong audience, expired, wrong issuer, `alg: none`, HS256 signed with the public key,
//! a missing scope and another tenant's token are refused with the status and
//! `WWW-Authenticate` challenge of RFC 6750 §3 / RFC 9728 §5.1; the metadata documents follow
//! RFC 9728; an opaque token is accepted through RFC 7662 introspection; a key rotation at the
//! provider is picked up without a restart; the client's token never reaches an upstream.

mod common;
#[path = "support/oidc.rs"]
mod oidc;

use std::time::Duration;

use base64::Engine;
use common::*;
use oidc::{Provider, now};
use serde_json::{Value, json};

const RESOURCE: &str = "http://gateway.test/mcp";
const ADMIN: &str = "ops-admin-key-0123456789abcdef";

fn config(issuer: &str, extra: &str) -> String {
    format!(
        r#"
[auth.oauth]
resource = "{RESOURCE}"
required_scopes = ["tools:call"]
tenant_claim = "tenant"
jwks_refresh_interval = "1s"
{extra}
[auth.oauth.groups]
up = ["up:*"]
other = ["other:*"]
[auth.oauth.tenant_groups]
acme = ["up"]
globex = ["other"]
[[auth.oauth.issuers]]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "secret-g"
{}{}"#,
        stdio_upstream("up", "legacy"),
        stdio_upstream("other", "dual")
    )
}

async fn serve(issuer: &str, extra: &str, more: &str) -> Served {
    let server = format!("api_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}]");
    let gw = Served::start(&server, &format!("{}{more}", config(issuer, extra))).await;
    eventually("upstreams up and listed", Duration::from_secs(30), async || settled(&gw.base, Some(ADMIN)).await).await;
    gw
}

fn echo(name: &str, message: &str) -> Value {
    json!({"name": name, "arguments": {"message": message}})
}

/// The `WWW-Authenticate` value of an answer.
fn challenge(a: &Answer) -> String {
    a.headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

const METADATA_MCP: &str = "http://gateway.test/.well-known/oauth-protected-resource/mcp";

/// Refused with 401, a challenge naming the metadata and the scope, and `invalid_token`.
async fn assert_invalid(mcp: &str, token: &str, what: &str) {
    let a = modern_as(mcp, Some(token), 1, "tools/list", json!({})).await;
    assert_eq!(a.status, 401, "{what}: {}", a.raw);
    let c = challenge(&a);
    assert!(c.starts_with("Bearer "), "{what}: {c}");
    assert!(c.contains(&format!("resource_metadata=\"{METADATA_MCP}\"")), "{what}: {c}");
    assert!(c.contains("error=\"invalid_token\""), "{what}: {c}");
    assert!(c.contains("scope=\"tools:call\""), "{what}: {c}");
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn tokens_are_verified_mapped_and_refused_as_the_spec_says() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let idp = Provider::start(port, &dir.path().join("keys.json"), RESOURCE).await;
    let gw = serve(&idp.issuer, "", "").await;
    let mcp = format!("{}/mcp", gw.base);

    // Metadata (RFC 9728 §3.2), root and per route; nothing at other paths.
    let doc = get_json(&format!("{}/.well-known/oauth-protected-resource", gw.base)).await;
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["authorization_servers"], json!([idp.issuer]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(doc["scopes_supported"], json!(["tools:call"]));
    let route = format!("{}/.well-known/oauth-protected-resource/servers/up/mcp", gw.base);
    let doc = get_json(&route).await;
    assert_eq!(doc["resource"], "http://gateway.test/servers/up/mcp");
    let doc = get_json(&format!("{}/.well-known/oauth-protected-resource/mcp", gw.base)).await;
    assert_eq!(doc["resource"], RESOURCE);
    // Browser clients read it cross-origin, after a preflight for their MCP-Protocol-Version.
    let from_page = client().get(&route).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(from_page.headers()["access-control-allow-origin"], "*");
    let preflight = client()
        .request(reqwest::Method::OPTIONS, &route)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "mcp-protocol-version")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(preflight.headers()["access-control-allow-methods"].to_str().unwrap().contains("GET"));
    let none =
        client().get(format!("{}/.well-known/oauth-protected-resource/admin/drain", gw.base)).send().await.unwrap();
    assert_eq!(none.status(), 404);

    // No token: 401 with the challenge, no error code (RFC 6750 §3.1).
    let a = modern_as(&mcp, None, 1, "tools/list", json!({})).await;
    assert_eq!(a.status, 401);
    assert_eq!(challenge(&a), format!("Bearer resource_metadata=\"{METADATA_MCP}\", scope=\"tools:call\""));
    assert_eq!(a.headers["connection"], "close", "the retry with a token goes on a fresh connection");

    // The right audience: tools/list shows the tenant's group, tools/call works.
    let a_token = idp.token("tenant-a", "secret-a", "tools:read tools:call", RESOURCE).await;
    let list = modern_as(&mcp, Some(&a_token), 2, "tools/list", json!({})).await;
    assert_eq!(list.status, 200, "{}", list.raw);
    let names = tool_names(&list);
    assert!(names.contains(&"up__echo".to_string()) && names.iter().all(|n| n.starts_with("up__")), "{names:?}");
    let call = modern_as(&mcp, Some(&a_token), 3, "tools/call", echo("up__echo", "hello")).await;
    assert_eq!(text(&call), "hello");

    // Refused tokens, each with 401 and `invalid_token`.
    let other_aud = idp.token("tenant-a", "secret-a", "tools:call", "https://other.example/mcp").await;
    assert_invalid(&mcp, &other_aud, "a token for another resource").await;
    let base = json!({"iss": idp.issuer, "aud": RESOURCE, "sub": "tenant-a", "tenant": "acme",
                      "scope": "tools:call", "iat": now() - 10, "exp": now() + 600});
    let signed = idp.sign(base.clone(), false).await;
    assert_eq!(modern_as(&mcp, Some(&signed), 4, "tools/list", json!({})).await.status, 200, "the crafted control");
    let mut expired = base.clone();
    expired["exp"] = json!(now() - 600);
    assert_invalid(&mcp, &idp.sign(expired, false).await, "an expired token").await;
    let mut foreign = base.clone();
    foreign["iss"] = json!("http://evil.example");
    assert_invalid(&mcp, &idp.sign(foreign, false).await, "another issuer").await;
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "at+jwt"})), b64(&base));
    assert_invalid(&mcp, &unsigned, "alg none").await;
    assert_invalid(&mcp, &idp.sign(base.clone(), true).await, "HS256 with the public key").await;
    let parts: Vec<&str> = signed.split('.').collect();
    let other_body =
        b64(&json!({"iss": idp.issuer, "aud": RESOURCE, "sub": "root", "scope": "tools:call", "exp": now() + 600}));
    let tampered = format!("{}.{other_body}.{}", parts[0], parts[2]);
    assert_invalid(&mcp, &tampered, "claims swapped under a valid signature").await;
    assert_invalid(&mcp, "not-a-jwt-and-not-known", "an unknown opaque token").await;

    // A missing scope: 403 `insufficient_scope` naming the scope.
    let read_only = idp.token("tenant-a", "secret-a", "tools:read", RESOURCE).await;
    let a = modern_as(&mcp, Some(&read_only), 5, "tools/list", json!({})).await;
    assert_eq!(a.status, 403, "{}", a.raw);
    let c = challenge(&a);
    assert!(c.contains("error=\"insufficient_scope\"") && c.contains("scope=\"tools:call\""), "{c}");

    // Another tenant: its own group only; A's tools and A's session are out of its reach.
    let b_token = idp.token("tenant-b", "secret-b", "tools:call", RESOURCE).await;
    let names = tool_names(&modern_as(&mcp, Some(&b_token), 6, "tools/list", json!({})).await);
    assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("other__")), "{names:?}");
    let stolen = modern_as(&mcp, Some(&b_token), 7, "tools/call", echo("up__echo", "x")).await;
    assert!(stolen.body.get("error").is_some() || stolen.body["result"]["isError"] == true, "{}", stolen.raw);
    let session = open_session(&mcp, &a_token, json!({})).await;
    let mine =
        legacy_post(&mcp, Some(&a_token), Some(&session), &json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"}))
            .await;
    assert_eq!(mine.status, 200, "{}", mine.raw);
    let theirs =
        legacy_post(&mcp, Some(&b_token), Some(&session), &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
            .await;
    assert_eq!(theirs.status, 404, "another tenant's token cannot use the session: {}", theirs.raw);

    // Opaque token of the `opaque` client (tenant acme): accepted through introspection.
    let opaque = idp.token("opaque", "secret-o", "tools:call", RESOURCE).await;
    assert!(!opaque.starts_with("eyJ"), "{opaque}");
    let call = modern_as(&mcp, Some(&opaque), 10, "tools/call", echo("up__echo", "opaque")).await;
    assert_eq!(text(&call), "opaque");

    // API keys keep working beside OAuth.
    let names = tool_names(&modern_as(&mcp, Some(ADMIN), 11, "tools/list", json!({})).await);
    assert!(names.contains(&"up__echo".to_string()) && names.contains(&"other__echo".to_string()), "{names:?}");
    drop(gw);
    idp.stop().await;
}

#[tokio::test]
async fn a_key_rotation_is_picked_up_and_the_clients_token_never_reaches_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let idp = Provider::start(port, &dir.path().join("keys-1.json"), RESOURCE).await;
    let first = idp.token("tenant-a", "secret-a", "tools:call", RESOURCE).await;
    // `guarded` wants the gateway's own header; `leak` would open only to the client's token.
    let guarded = HttpUpstream::start_with(&["--bearer", "upstream-secret-0123"]).await;
    let leak = HttpUpstream::start_with(&["--bearer", &first]).await;
    let more = format!(
        "{}headers = {{ Authorization = \"Bearer upstream-secret-0123\" }}\n{}",
        guarded.table("guarded"),
        leak.table("leak")
    );
    let extra = "[auth.oauth.scopes_to_groups]\n\"tools:call\" = [\"up\", \"guarded\", \"leak\"]\n";
    let gw = serve_with_groups(&idp.issuer, extra, &more).await;
    let mcp = format!("{}/mcp", gw.base);
    assert_eq!(text(&modern_as(&mcp, Some(&first), 1, "tools/call", echo("up__echo", "one")).await), "one");
    let through = modern_as(&mcp, Some(&first), 2, "tools/call", echo("guarded__echo", "g")).await;
    assert_eq!(text(&through), "g", "the gateway sends the upstream its own credential");
    let leaked = modern_as(&mcp, Some(&first), 3, "tools/call", echo("leak__echo", "l")).await;
    assert!(leaked.body.get("error").is_some(), "the client's token opened an upstream: {}", leaked.raw);

    // Rotation: the provider restarts with new keys; a token signed by the new key is accepted
    // once the gateway refetches the JWKS for the unknown kid (rate-limited to once per second).
    idp.stop().await;
    let idp = Provider::start(port, &dir.path().join("keys-2.json"), RESOURCE).await;
    let second = idp.token("tenant-a", "secret-a", "tools:call", RESOURCE).await;
    assert_ne!(kid(&first), kid(&second), "the provider rotated its key");
    eventually("the new key accepted", Duration::from_secs(30), async || {
        let a = modern_as(&mcp, Some(&second), 4, "tools/call", echo("up__echo", "two")).await;
        if a.status == 200 { Ok(text(&a)) } else { Err(format!("{} {}", a.status, challenge(&a))) }
    })
    .await;
    drop(gw);
    idp.stop().await;
}

/// The gateway with `scopes_to_groups` added (`extra`) and two more groups for `more`'s upstreams.
async fn serve_with_groups(issuer: &str, extra: &str, more: &str) -> Served {
    let groups = "[auth.oauth.groups]\nguarded = [\"guarded:*\"]\nleak = [\"leak:*\"]\n";
    let toml = config(issuer, "")
        .replace("[auth.oauth.groups]\n", groups)
        .replace("acme = [\"up\"]", "acme = [\"up\", \"guarded\", \"leak\"]");
    let server = format!("api_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}]");
    let toml = toml.replace("[auth.oauth.tenant_groups]", &format!("{extra}[auth.oauth.tenant_groups]"));
    let gw = Served::start(&server, &format!("{toml}{more}")).await;
    eventually("upstreams settled", Duration::from_secs(30), async || {
        let ready = settled(&gw.base, Some(ADMIN)).await?;
        Ok::<_, String>(ready)
    })
    .await;
    gw
}

fn kid(token: &str) -> String {
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<Value>(&header).unwrap()["kid"].as_str().unwrap().to_string()
}

/// GET `url` and read its JSON body.
async fn get_json(url: &str) -> Value {
    client().get(url).send().await.unwrap().json().await.unwrap()
}
