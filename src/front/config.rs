//! Configuration of the client-facing listener: address, auth keys, DNS-rebinding guards,
//! limits, sessions and drain.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[server]`: how the gateway faces its clients.
///
/// ```toml
/// [server]
/// listen = "127.0.0.1:8080"
/// api_keys = []                 # bearer keys; empty = no auth (loopback only); an entry may
///                               # also be { key = "...", name = "ci", priority = "low" }
/// allowed_origins = []          # extra Origin values accepted besides localhost
/// allowed_hosts = []            # extra Host values accepted besides localhost
/// max_body_bytes = 4194304      # 4 MiB; larger request bodies get HTTP 413
/// shutdown_grace = "9s"         # in-flight calls get this long on SIGTERM/SIGINT
/// session_ttl = "24h"           # legacy Mcp-Session-Id lifetime
/// session_key = ""              # base64 of 32 bytes; share it across replicas
/// worker_threads = 0            # runtime threads; 0 = one per CPU
/// ```
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Socket address to bind, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Static bearer API keys (`Authorization: Bearer <key>`); empty means no auth, which is
    /// only allowed on a loopback address.
    pub api_keys: Vec<ApiKey>,
    /// Origins accepted besides `http(s)://localhost`, `127.0.0.1` and `[::1]` (any port).
    pub allowed_origins: Vec<String>,
    /// Host header values accepted besides localhost names; `*` accepts any host.
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// How long in-flight calls may run after SIGTERM/SIGINT before the gateway exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Lifetime of a legacy session id.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Key that seals session ids (base64 of 32 bytes). Empty: a random key per process,
    /// so sessions do not survive a restart or move between replicas.
    pub session_key: String,
    /// Async runtime worker threads; 0 means one per CPU. On a machine the gateway shares with
    /// its upstreams, fewer threads cost less CPU per request (see BENCHMARKS.md).
    pub worker_threads: usize,
}

/// One static API key: a plain string, or a table with a name and a default priority.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ApiKey {
    /// Just the key.
    Plain(String),
    /// The key with its details.
    Detailed {
        /// The secret.
        key: String,
        /// A name for logs and metrics.
        #[serde(default)]
        name: Option<String>,
        /// Admission priority of this key's calls when they name none.
        #[serde(default)]
        priority: Option<crate::pipeline::parts::Priority>,
    },
}

impl ApiKey {
    /// The secret.
    pub fn secret(&self) -> &str {
        match self {
            ApiKey::Plain(k) | ApiKey::Detailed { key: k, .. } => k,
        }
    }

    /// The key's default priority.
    pub fn priority(&self) -> Option<crate::pipeline::parts::Priority> {
        match self {
            ApiKey::Plain(_) => None,
            ApiKey::Detailed { priority, .. } => *priority,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(9),
            session_ttl: Duration::from_secs(24 * 3600),
            session_key: String::new(),
            worker_threads: 0,
        }
    }
}

impl ServerConfig {
    /// Check this section; returns every problem found, each as one readable sentence.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.listen.parse::<SocketAddr>() {
            Ok(addr) if !addr.ip().is_loopback() && self.api_keys.is_empty() => problems.push(format!(
                "server.listen = {:?} is not a loopback address; set server.api_keys to expose the gateway beyond this machine",
                self.listen
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("server.listen = {:?} is not a socket address ({e})", self.listen)),
        }
        for (i, key) in self.api_keys.iter().enumerate() {
            if key.secret().len() < 16 {
                problems.push(format!("server.api_keys[{i}] is shorter than 16 characters; use a long random key"));
            }
        }
        if self.max_body_bytes < 1024 {
            problems.push(format!("server.max_body_bytes = {} is below 1024", self.max_body_bytes));
        }
        if self.session_ttl < Duration::from_secs(1) {
            problems.push("server.session_ttl must be at least 1s".into());
        }
        if !self.session_key.is_empty() && crate::session::token::decode_key(&self.session_key).is_none() {
            problems.push("server.session_key must be the base64 encoding of exactly 32 bytes".into());
        }
        problems
    }

    /// The parsed listen address (valid after [`ServerConfig::validate`]).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}
