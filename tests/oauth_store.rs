//! OAuth callers bound to store tenants and their virtual servers (issue 15 item 1;
//! docs/security.md): a real OpenID provider (npm `oidc-provider`), a real PostgreSQL store
//! with two tenants made by the real CLI, and the real `sekisho serve` binary with
//! `[auth.oauth] tenant_claim` and `instance_claim`. A token naming tenant A's instance gets
//! exactly what A's API key gets (the same tools, A's own upstream with A's environment); B's
//! token reaches neither A's tools nor A's session; a token naming an instance that does not
//! exist, or a tenant its issuer may not speak for, is refused with 401; a change to the
//! instance in the store applies to the token's caller without a restart, and deleting the
//! instance refuses it.

mod common;
#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/tenants.rs"]
mod tenants;

use std::time::Duration;

use common::{Answer, Served, eventually, legacy_post, modern_as, open_session, text, tool_names};
use oidc::{Provider, now};
use serde_json::{Value, json};
use tenants::{PEPPER, SECRET_KEY, cli, migrated, tenant};

const RESOURCE: &str = "http://gateway.test/mcp";

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn call(mcp: &str, bearer: &str, tool: &str, arguments: Value) -> Answer {
    modern_as(mcp, Some(bearer), 1, "tools/call", json!({"name": tool, "arguments": arguments})).await
}

async fn list(mcp: &str, bearer: &str) -> Vec<String> {
    let a = modern_as(mcp, Some(bearer), 2, "tools/list", json!({})).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    sorted(tool_names(&a))
}

#[tokio::test]
async fn tokens_are_served_their_tenants_virtual_server_and_nothing_else() {
    let db = migrated().await;
    let key_a = tenant(&db.url, "acme", &["tools:echo", "tools:env"]).await;
    let key_b = tenant(&db.url, "globex", &["tools:echo", "tools:env", "tools:add"]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let idp = Provider::start(port, &dir.path().join("keys.json"), RESOURCE).await;
    let config = format!(
        "[store]\npostgres_url = {:?}\nkey_pepper = {PEPPER:?}\nsecret_key = {SECRET_KEY:?}\n\
         [auth.oauth]\nresource = {RESOURCE:?}\ntenant_claim = \"tenant\"\ninstance_claim = \"instance\"\n\
         [[auth.oauth.issuers]]\nissuer = {:?}\ntenants = [\"acme\", \"globex\"]\n\
         [upstreams.shared]\ncommand = {:?}\nargs = [\"stdio\", \"--era\", \"legacy\"]\n",
        db.url,
        idp.issuer,
        common::echo_upstream().display().to_string()
    );
    let gw = Served::start("", &config).await;
    let mcp = format!("{}/mcp", gw.base);

    // A's token and A's key see the same catalog: the instance's tool group.
    let token_a = idp.token("tenant-a", "secret-a", "tools:call", RESOURCE).await;
    let token_b = idp.token("tenant-b", "secret-b", "tools:call", RESOURCE).await;
    assert_eq!(list(&mcp, &token_a).await, ["tools__echo", "tools__env"]);
    assert_eq!(list(&mcp, &token_a).await, list(&mcp, &key_a).await);
    assert_eq!(list(&mcp, &token_b).await, ["tools__add", "tools__echo", "tools__env"]);
    assert_eq!(list(&mcp, &token_b).await, list(&mcp, &key_b).await);

    // Each token reaches its own tenant's process, with its own environment.
    let secret = |a: Answer| text(&a);
    assert_eq!(secret(call(&mcp, &token_a, "tools__env", json!({"name": "SECRET_TOKEN"})).await), "secret-of-acme");
    assert_eq!(secret(call(&mcp, &token_b, "tools__env", json!({"name": "SECRET_TOKEN"})).await), "secret-of-globex");
    // Outside A's group: an unknown tool, before anything reaches an upstream.
    let refused = call(&mcp, &token_a, "tools__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(refused.error_code(), Some(-32602), "{}", refused.raw);

    // B's token cannot use A's session.
    let session = open_session(&mcp, &token_a, json!({})).await;
    let ping = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    assert_eq!(legacy_post(&mcp, Some(&token_a), Some(&session), &ping).await.status, 200);
    let theirs = legacy_post(&mcp, Some(&token_b), Some(&session), &ping).await;
    assert_eq!(theirs.status, 404, "another tenant's token cannot use the session: {}", theirs.raw);

    // Claims the store does not back, or the issuer may not make: 401 `invalid_token`.
    let base = json!({"iss": idp.issuer, "aud": RESOURCE, "sub": "mallory", "scope": "tools:call",
                      "iat": now() - 10, "exp": now() + 600});
    for (tenant, instance, what) in
        [("acme", "nope", "an instance that does not exist"), ("initech", "main", "a tenant not the issuer's")]
    {
        let mut claims = base.clone();
        claims["tenant"] = json!(tenant);
        claims["instance"] = json!(instance);
        let token = idp.sign(claims, false).await;
        let a = modern_as(&mcp, Some(&token), 4, "tools/list", json!({})).await;
        assert_eq!(a.status, 401, "{what}: {}", a.raw);
        let c = a.headers["www-authenticate"].to_str().unwrap().to_string();
        assert!(c.contains("error=\"invalid_token\""), "{what}: {c}");
    }
    let mut no_tenant = base.clone();
    no_tenant["instance"] = json!("main");
    let a = modern_as(&mcp, Some(&idp.sign(no_tenant, false).await), 5, "tools/list", json!({})).await;
    assert_eq!(a.status, 401, "an instance without a tenant: {}", a.raw);
    // No instance, and no groups configured: refused, not the whole static catalog.
    let mut no_instance = base.clone();
    no_instance["tenant"] = json!("acme");
    let a = modern_as(&mcp, Some(&idp.sign(no_instance, false).await), 5, "tools/list", json!({})).await;
    assert_eq!(a.status, 401, "a token naming no virtual server: {}", a.raw);

    // A change to A's instance applies to A's token (same token, no restart) …
    cli(&db.url, &["instance", "grant", "main", "--tenant", "acme", "--tool", "tools:add"], &[]).await;
    eventually("the grant seen by the token", Duration::from_secs(10), async || {
        let names = list(&mcp, &token_a).await;
        if names.len() == 3 { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await;
    assert_eq!(text(&call(&mcp, &token_a, "tools__add", json!({"a": 2, "b": 3})).await), "5");
    // … and deleting it refuses the token, while B is untouched.
    cli(&db.url, &["instance", "delete", "main", "--tenant", "acme"], &[]).await;
    eventually("the deleted instance refused", Duration::from_secs(10), async || {
        let a = modern_as(&mcp, Some(&token_a), 6, "tools/list", json!({})).await;
        if a.status == 401 { Ok(()) } else { Err(format!("{} {}", a.status, a.raw)) }
    })
    .await;
    assert_eq!(list(&mcp, &token_b).await, ["tools__add", "tools__echo", "tools__env"]);
    drop(gw);
    idp.stop().await;
}
