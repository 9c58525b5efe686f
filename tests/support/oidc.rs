//! A real OpenID provider for tests: the npm `oidc-provider` of tests/fixtures/oidc (pinned;
//! `npm ci` there first, as .ci/run does), started on loopback with client-credentials
//! clients, resource indicators and a test-only signing route (see provider.mjs).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{client, eventually};

/// The provider (`node provider.mjs`), killed on drop.
pub struct Provider {
    /// Its issuer identifier (`http://127.0.0.1:<port>`).
    pub issuer: String,
    child: tokio::process::Child,
}

fn fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "run `npm ci` in tests/fixtures/oidc first (.ci/run does)"
    );
    dir
}

impl Provider {
    /// Start the provider on `port` with the private keys in `keys` (created when missing),
    /// issuing tokens for `resource` when a request names none.
    pub async fn start(port: u16, keys: &Path, resource: &str) -> Provider {
        let child = tokio::process::Command::new("node")
            .arg("provider.mjs")
            .current_dir(fixture())
            .env("PORT", port.to_string())
            .env("RESOURCE", resource)
            .env("KEYS", keys)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let issuer = format!("http://127.0.0.1:{port}");
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        eventually("the provider serving", Duration::from_secs(30), async || {
            match client().get(&discovery).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        Provider { issuer, child }
    }

    /// Kill it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// A client-credentials access token of `client` for `scope` and `resource`.
    pub async fn token(&self, client_id: &str, secret: &str, scope: &str, resource: &str) -> String {
        let resp = client()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", scope), ("resource", resource)])
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap_or_else(|| panic!("no token: {body}")).to_string()
    }

    /// Claims signed by the provider's current key (the fixture's test-only route), or HMACed
    /// with its RSA public key when `hs256_with_public_key`.
    pub async fn sign(&self, claims: Value, hs256_with_public_key: bool) -> String {
        let body = json!({"claims": claims, "hs256_with_public_key": hs256_with_public_key});
        let resp = client().post(format!("{}/test/sign", self.issuer)).json(&body).send().await.unwrap();
        resp.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
    }
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}
