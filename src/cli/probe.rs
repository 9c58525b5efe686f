//! `sekisho probe <url>`: connect to one Streamable HTTP MCP server exactly as the gateway
//! connects to an upstream (its handshake, its credentials: a static bearer or OAuth client
//! credentials with discovery from the server's 401), list its tools and call one. The check
//! of an upstream's authorization before it goes in a configuration, and the adapter through
//! which the MCP conformance suite's client-mode authorization scenarios drive sekisho's
//! upstream client (`tests/conformance/run.sh`).
//!
//! Credentials come from the flags or, when the suite runs it, from `MCP_CONFORMANCE_CONTEXT`
//! (a JSON object: `client_id`, `client_secret`, `private_key_pem`, `signing_algorithm`,
//! `issuer`). Exit codes: 0 the tool answered, 1 connecting, authorizing, listing or calling
//! failed, 2 wrong arguments.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::catalog::listing::{self, ListKind};
use crate::upstream::auth::config::{AuthConfig, BearerConfig, ClientCredentialsConfig};
use crate::upstream::auth::discovery;
use crate::upstream::config::{ResilienceConfig, UpstreamConfig};
use crate::upstream::translate::gateway_envelope;
use crate::upstream::{Upstream, UpstreamSet};
use crate::wire::mcp::Era;

/// `sekisho probe`: connect to one MCP server as an upstream, list its tools, call one.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The server's Streamable HTTP endpoint.
    pub url: String,
    /// A static bearer token (instead of client credentials).
    #[arg(long, env = "SEKISHO_PROBE_BEARER", hide_env_values = true)]
    pub bearer: Option<String>,
    /// OAuth client id (client credentials grant).
    #[arg(long)]
    pub client_id: Option<String>,
    /// OAuth client secret.
    #[arg(long, env = "SEKISHO_PROBE_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// PEM private key for `private_key_jwt`.
    #[arg(long)]
    pub private_key_file: Option<std::path::PathBuf>,
    /// Its algorithm (default ES256).
    #[arg(long)]
    pub signing_algorithm: Option<String>,
    /// The token endpoint (skips discovery).
    #[arg(long)]
    pub token_url: Option<String>,
    /// The authorization server's issuer (skips the protected-resource metadata).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Scopes to ask for.
    #[arg(long)]
    pub scope: Option<String>,
    /// The tool to call (default: the first one listed).
    #[arg(long)]
    pub tool: Option<String>,
    /// Its arguments, a JSON object (default `{}`).
    #[arg(long, default_value = "{}")]
    pub arguments: String,
    /// Seconds to wait for the handshake (authorization included).
    #[arg(long, default_value_t = 20)]
    pub timeout: u64,
}

/// The suite's scenario context, when `MCP_CONFORMANCE_CONTEXT` holds one.
fn context() -> Value {
    std::env::var("MCP_CONFORMANCE_CONTEXT").ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
}

/// A private key the suite handed over as text, in a file readable only by this user for as
/// long as the probe runs (the credentials read keys from files).
struct KeyFile(std::path::PathBuf);

impl KeyFile {
    fn write(pem: &str) -> Result<Self, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir().join(format!("sekisho-probe-{}.pem", hex::encode(rand::random::<[u8; 8]>())));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot write the key file: {e}"))?;
        f.write_all(pem.as_bytes()).map_err(|e| format!("cannot write the key file: {e}"))?;
        Ok(KeyFile(path))
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The upstream configuration `args` describe (`key`: the file of a key the suite's context
/// gave as text).
///
/// Errors: a readable reason for arguments that do not make a valid upstream.
fn upstream_config(args: &ProbeArgs, key: Option<&KeyFile>) -> Result<UpstreamConfig, String> {
    let ctx = context();
    let text = |k: &str| ctx.get(k).and_then(Value::as_str).map(String::from);
    let client_id = args.client_id.clone().or_else(|| text("client_id"));
    let auth = match (&args.bearer, client_id) {
        (Some(token), _) => Some(AuthConfig::Bearer(BearerConfig { token: token.clone() })),
        (None, Some(client_id)) => Some(AuthConfig::ClientCredentials(ClientCredentialsConfig {
            token_url: args.token_url.clone(),
            issuer: args.issuer.clone().or_else(|| text("issuer")),
            client_id,
            client_secret: args.client_secret.clone().or_else(|| text("client_secret")),
            private_key_file: args.private_key_file.clone().or_else(|| key.map(|k| k.0.clone())),
            signing_algorithm: args.signing_algorithm.clone().or_else(|| text("signing_algorithm")),
            scope: args.scope.clone(),
            ..Default::default()
        })),
        (None, None) => None,
    };
    let mut up = UpstreamConfig {
        url: Some(args.url.clone()),
        auth,
        startup_timeout: Some(Duration::from_secs(args.timeout.max(1))),
        ..Default::default()
    };
    let problems = up.validate("probe");
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    up.resolve(&ResilienceConfig::default());
    Ok(up)
}

/// Run the probe; prints what happened (stdout: the tool's result; stderr: the steps) and
/// returns the exit code.
pub async fn run(args: ProbeArgs) -> u8 {
    crate::upstream::http::tls::install_provider();
    let arguments: Value = match serde_json::from_str(&args.arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            eprintln!("sekisho probe: --arguments must be a JSON object");
            return 2;
        }
    };
    let key = match context().get("private_key_pem").and_then(Value::as_str).map(KeyFile::write).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("sekisho probe: {e}");
            return 1;
        }
    };
    let config = match upstream_config(&args, key.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sekisho probe: {e}");
            return 2;
        }
    };
    let anonymous = config.auth.is_none();
    let configs = BTreeMap::from([("probe".to_string(), config)]);
    let set = UpstreamSet::new(configs.iter());
    drop(set.start());
    let up = Arc::clone(set.get("probe").expect("configured above"));
    let code = match exercise(&up, args.tool.as_deref(), arguments, Duration::from_secs(args.timeout.max(1))).await {
        Ok(result) => {
            println!("{result}");
            0
        }
        Err(e) => {
            eprintln!("sekisho probe: {e}");
            if anonymous && let Some(why) = explain(&args.url).await {
                eprintln!("sekisho probe: {why}");
            }
            1
        }
    };
    set.shutdown().await;
    code
}

async fn exercise(up: &Arc<Upstream>, tool: Option<&str>, arguments: Value, limit: Duration) -> Result<Value, String> {
    let replica = up.replicas().into_iter().next().ok_or("no replica")?;
    if replica.connected(limit).await.is_err() {
        return Err(format!("not connected: {:?}", up.status()));
    }
    let h = up.handshake().ok_or("no handshake")?;
    eprintln!("sekisho probe: connected ({} {})", if h.era == Era::Modern { "modern" } else { "legacy" }, h.version);
    let (tools, _) = listing::fetch(up, ListKind::Tools).await.map_err(|e| format!("tools/list: {e}"))?;
    eprintln!("sekisho probe: {} tools", tools.len());
    let name = match tool {
        Some(t) => t.to_string(),
        None => tools.first().map(|t| t.id.clone()).ok_or("the server lists no tools")?,
    };
    let mut params = json!({"name": name, "arguments": arguments});
    if h.era == Era::Modern {
        params["_meta"] = serde_json::from_str(&gateway_envelope(h.version)).expect("envelope is JSON");
    }
    let body = up
        .request("tools/call", Some(params.to_string().as_bytes()))
        .await
        .map_err(|e| format!("tools/call {name}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("tools/call {name}: {e}"))
}

/// Without credentials, a server that answers 401: what its metadata says is needed, found
/// and checked as the gateway would (the protected resource must name this URL, the
/// authorization server's metadata its own issuer), so the operator learns which credentials
/// to get — or that the metadata is not to be trusted.
async fn explain(url: &str) -> Option<String> {
    use http_body_util::Full;
    let client = crate::upstream::http::client();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}}"#,
        String::from_utf8_lossy(&crate::upstream::handshake::initialize_params("{}"))
    );
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .body(Full::new(bytes::Bytes::from(body)))
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await.ok()?.ok()?;
    if resp.status() != http::StatusCode::UNAUTHORIZED {
        return None;
    }
    let challenge = resp
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(discovery::parse_challenge);
    drop(resp);
    Some(match discovery::discover(&client, url, url, challenge.as_ref(), None).await {
        Ok(d) => format!(
            "the server needs an access token from {:?} (token endpoint {:?}, client authentication {:?}): \
             give --client-id with --client-secret or --private-key-file",
            d.issuer, d.token_endpoint, d.auth_methods
        ),
        Err(e) => format!("the server needs authorization, and its metadata was refused: {e}"),
    })
}
