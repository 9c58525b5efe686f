//! Configuration of the client-facing listener: address, auth keys, DNS-rebinding guards,
//! limits, sessions and drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pipeline::parts::{ANONYMOUS, Identity, Priority};

/// `[server]`: how the gateway faces its clients.
///
/// ```toml
/// [server]
/// listen = "127.0.0.1:8080"
/// api_keys = []                 # bearer keys; empty = no auth (loopback only); an entry may
///                               # also be { key = "...", name = "ci", role = "admin",
///                               #           priority = "low", max_priority = "medium" }
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

/// One static API key: a plain string, or a table with its name, role and priorities.
///
/// ```toml
/// api_keys = [
///   "k-…",                                                     # a caller, id from a keyed hash
///   { key = "k-…", name = "ops", role = "admin" },             # may use /admin/* and see /readyz
///   { key = "k-…", name = "batch", priority = "low" },         # asks above `low` are lowered
///   { key = "k-…", name = "ci", priority = "medium", max_priority = "high" },
/// ]
/// ```
///
/// Unknown keys in a table are errors, as everywhere in the configuration.
#[derive(Clone, PartialEq, Serialize)]
pub struct ApiKey {
    /// The secret (`Authorization: Bearer <key>`), at least 16 characters.
    #[serde(skip_serializing)]
    pub key: String,
    /// The key's stable id for cache scopes, idempotency records, sessions, metrics and logs:
    /// 1–64 of `A-Za-z0-9_.-`, unique, not `anon`. Without it the id is a keyed hash of the
    /// secret (`key:` and 16 hex digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `client` (the default) or `admin`.
    pub role: Role,
    /// Admission priority of this key's calls when they name none (default
    /// `[admission] default_priority`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The most important priority this key's calls may ask for (`_meta` or the
    /// `Sekisho-Priority` header); higher asks are lowered to it. Default: the key's own priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_priority: Option<Priority>,
    /// What the gateway makes of this key, filled once by [`ApiKey::resolve`] when the
    /// configuration is loaded (not read from the file).
    #[serde(skip)]
    pub identity: Arc<Identity>,
}

/// Everything but the secret.
impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &"<redacted>")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("priority", &self.priority)
            .field("max_priority", &self.max_priority)
            .field("identity", &self.identity)
            .finish()
    }
}

/// What an API key may do besides calling MCP methods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// MCP calls only.
    #[default]
    Client,
    /// Also `/admin/*`, and `/readyz` in detail (per-upstream state, PIDs, breakers, errors).
    Admin,
}

/// The table form of an API key, as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyTable {
    key: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Role,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    max_priority: Option<Priority>,
}

/// A string, or a table whose unknown keys are errors (an untagged enum would only say that
/// nothing matched, and accepted unknown keys).
impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ApiKey;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key string or a table { key, name, role, priority, max_priority }")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ApiKey, E> {
                Ok(ApiKey::plain(v))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ApiKey, A::Error> {
                let t = ApiKeyTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ApiKey {
                    key: t.key,
                    name: t.name,
                    role: t.role,
                    priority: t.priority,
                    max_priority: t.max_priority,
                    identity: Arc::default(),
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Domain of the keyed hash that names unnamed keys; the HMAC key is `server.session_key`
/// when set (so ids cannot be checked against guessed keys without it), else this text.
const ID_DOMAIN: &[u8] = b"sekisho caller id v1";

impl ApiKey {
    /// A client key with nothing but its secret.
    pub fn plain(key: &str) -> ApiKey {
        ApiKey {
            key: key.to_string(),
            name: None,
            role: Role::Client,
            priority: None,
            max_priority: None,
            identity: Arc::default(),
        }
    }

    /// The secret.
    pub fn secret(&self) -> &str {
        &self.key
    }

    /// Whether the key has the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Resolve what the gateway makes of this key (its [`Identity`]): the id (the `name`, else
    /// `key:` + 16 hex digits of HMAC-SHA256 over the secret, keyed with `session_key`, the
    /// 32-byte `server.session_key`, when set), and its priorities with their defaults.
    pub fn resolve(&mut self, default_priority: Priority, session_key: Option<&[u8; 32]>) {
        use hmac::{Hmac, Mac};
        let id: Arc<str> = match &self.name {
            Some(name) => Arc::from(name.as_str()),
            None => {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(session_key.map_or(ID_DOMAIN, |k| k))
                    .expect("HMAC takes keys of any length");
                mac.update(ID_DOMAIN);
                mac.update(&[0]);
                mac.update(self.key.as_bytes());
                let digest = mac.finalize().into_bytes();
                Arc::from(format!("key:{}", hex::encode(&digest[..8])))
            }
        };
        let priority = self.priority.unwrap_or(default_priority);
        let max_priority = self.max_priority.unwrap_or(priority);
        let tag = Identity::tag_of(&id);
        self.identity = Arc::new(Identity { id, priority, max_priority, admin: self.is_admin(), tag });
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
        let mut names = std::collections::HashSet::new();
        let mut secrets = std::collections::HashSet::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            if key.secret().len() < 16 {
                problems.push(format!("server.api_keys[{i}] is shorter than 16 characters; use a long random key"));
            }
            if !secrets.insert(key.secret()) {
                problems.push(format!("server.api_keys[{i}] repeats an earlier key"));
            }
            if let Some(name) = &key.name {
                let valid = (1..=64).contains(&name.len())
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !valid || name == ANONYMOUS {
                    problems.push(format!(
                        "server.api_keys[{i}].name = {name:?} must be 1-64 of A-Za-z0-9_.- and not {ANONYMOUS:?}"
                    ));
                } else if !names.insert(name.as_str()) {
                    problems.push(format!("server.api_keys[{i}].name = {name:?} is used by another key"));
                }
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

    /// Problems of the API keys' priorities given `[admission] default_priority`: a
    /// `max_priority` below the key's own priority would lower even the calls that ask nothing.
    pub fn validate_priorities(&self, default_priority: Priority) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            let own = key.priority.unwrap_or(default_priority);
            if let Some(max) = key.max_priority
                && max.rank() > own.rank()
            {
                problems.push(format!(
                    "server.api_keys[{i}].max_priority = {:?} is below the key's priority {:?}",
                    max.label(),
                    own.label()
                ));
            }
        }
        problems
    }

    /// Resolve every API key's [`Identity`] ([`ApiKey::resolve`]); called once when the
    /// configuration is loaded, after validation.
    pub fn resolve_keys(&mut self, default_priority: Priority) {
        let session_key = crate::session::token::decode_key(&self.session_key);
        for key in &mut self.api_keys {
            key.resolve(default_priority, session_key.as_ref());
        }
    }

    /// The parsed listen address (valid after [`ServerConfig::validate`]).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}
