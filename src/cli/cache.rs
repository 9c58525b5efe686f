//! `sekisho cache clear`: its arguments, and the client of the `--config` form, which finds
//! the running gateway at the configuration's `server.listen` with its first admin key (the
//! `--url` form is an operator command, `ops.rs`).

use std::path::PathBuf;

use clap::Subcommand;

use super::remote;

/// `sekisho cache …`.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Drop cached results (all, one upstream's, or one tool's) in a running gateway — at
    /// `--url` with an admin key, or listening at the configuration's `server.listen` — and
    /// through Redis in every replica.
    ///
    /// Exit codes: 0 cleared, 2 an invalid --config, 3 the gateway could not be asked or
    /// refused (an unknown upstream: 404), 64 a wrong command line.
    Clear {
        /// The configuration file (TOML) of the running gateway (its listener and first admin
        /// key are used); not needed with --url.
        #[arg(long, short, env = "SEKISHO_CONFIG", required_unless_present = "url")]
        config: Option<PathBuf>,
        /// The running gateway's base URL; takes precedence over --config.
        #[arg(long)]
        url: Option<String>,
        /// An API key of the gateway with `role = "admin"` (with --url).
        #[arg(long, visible_alias = "key", env = remote::ADMIN_KEY_ENV, hide_env_values = true)]
        admin_key: Option<String>,
        /// Print the gateway's JSON answer instead of a sentence.
        #[arg(long)]
        json: bool,
        /// Only this upstream's results.
        #[arg(long)]
        upstream: Option<String>,
        /// Only this tool's results (the upstream's own tool name; needs --upstream).
        #[arg(long, requires = "upstream")]
        tool: Option<String>,
    },
}

/// Ask the gateway configured by `config` to clear its cache (`POST /admin/cache/clear`);
/// returns its answer.
///
/// Errors: a message when the gateway cannot be reached or refuses (HTTP status and body).
pub async fn clear_cache(
    config: &crate::config::Config,
    upstream: Option<&str>,
    tool: Option<&str>,
) -> Result<String, String> {
    use http_body_util::{BodyExt, Full};
    let mut addr = config.server.listen_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scope =
        crate::cache::key::ClearScope { upstream: upstream.map(str::to_string), tool: tool.map(str::to_string) };
    let query = serde_urlencoded::to_string(&scope).map_err(|e| e.to_string())?;
    let uri = format!("http://{addr}/admin/cache/clear?{query}");
    let mut req = http::Request::post(&uri).header(http::header::HOST, "localhost");
    if !config.server.api_keys.is_empty() {
        // `/admin/*` takes only an admin key.
        let Some(key) = config.server.api_keys.iter().find(|k| k.is_admin()) else {
            return Err("no key in server.api_keys has role = \"admin\", which /admin/cache/clear needs".into());
        };
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {}", key.secret()));
    }
    let req = req.body(Full::new(bytes::Bytes::new())).map_err(|e| e.to_string())?;
    let resp = crate::upstream::http::client().request(req).await.map_err(|e| format!("cannot reach {uri}: {e}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() { Ok(body) } else { Err(format!("{status}: {body}")) }
}
