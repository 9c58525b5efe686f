//! Configuration of the client-facing listener: address, auth keys, DNS-rebinding guards,
//! limits, sessions and drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pipeline::parts::{ANONYMOUS, Identity, Priority};
use crate::pipeline::quota::LimitConfig;

/// `[server]`: how the gateway faces its clients.
///
/// ```toml
/// [server]
/// listen = "127.0.0.1:8080"
/// api_keys = []                 # bearer keys; empty = no auth (loopback only); an entry may
///                               # also be { key = "...", name = "ci", role = "admin",
///                               #           priority = "low", max_priority = "medium",
///                               #           rps = 5, burst = 10 }
/// allowed_origins = []          # extra Origin values accepted besides localhost
/// allowed_hosts = []            # extra Host values accepted besides localhost
/// max_body_bytes = 4194304      # 4 MiB; larger request bodies get HTTP 413
/// shutdown_grace = "9s"         # in-flight calls get this long on SIGTERM/SIGINT
/// session_ttl = "24h"           # legacy Mcp-Session-Id lifetime
/// session_key = ""              # base64 of 32 bytes; share it across replicas
/// worker_threads = 0            # runtime threads; 0 = one per CPU
///
/// # HTTP server limits: what one slow or hostile connection may hold
/// max_connections = 4096        # open client connections at once; more wait in the backlog
/// header_read_timeout = "10s"   # from a request's first byte to its last header byte
/// body_read_timeout = "30s"     # reading one request body; late: HTTP 408
/// idle_timeout = "60s"          # a connection with nothing in flight and nothing received
/// send_timeout = "30s"          # a write that makes no progress (a client that never reads)
/// input_timeout = "2m"          # a call parked for a modern client's input (input_required)
/// max_header_bytes = 16384      # request line + headers; larger: HTTP 431
/// metrics_listen = ""           # e.g. "127.0.0.1:9464": /metrics without a key, there only
/// tls_cert = ""                 # PEM certificate chain; with tls_key, the listener speaks TLS
/// tls_key = ""                  # PEM private key
///
/// # What one client may hold
/// max_batch_size = 100          # requests in one JSON-RPC batch (2025-03-26)
/// max_batch_response_bytes = 16777216   # the batch's answers together, in bytes
/// max_sessions_per_caller = 1000        # live sessions per API key on this replica
/// max_ended_sessions_per_caller = 10000 # ended sessions remembered per key until they expire
/// max_streams_per_session = 4   # GET notification streams of one session
/// max_calls_per_sse_session = 64 # requests of one legacy HTTP+SSE session running at once
/// max_listens_per_caller = 64   # modern subscriptions/listen streams of one API key
/// max_subscriptions_per_session = 256   # resources/subscribe held by one session
/// max_uri_bytes = 8192          # longest resource URI a request may name
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
    /// Key that seals session ids, and from which the keys of task ids are derived (base64 of
    /// 32 bytes). Empty: a random key per process, so sessions and task ids do not survive a
    /// restart or move between replicas.
    pub session_key: String,
    /// Async runtime worker threads; 0 means one per CPU. On a machine the gateway shares with
    /// its upstreams, fewer threads cost less CPU per request (see BENCHMARKS.md).
    pub worker_threads: usize,
    /// Client connections open at once. At the cap the gateway stops accepting: new
    /// connections wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// Longest time from the first byte of a request (or of a connection, for the TLS
    /// handshake and the first request) to the end of its headers; a slower client's
    /// connection is closed (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest time to read one request body; a slower client gets HTTP 408 and the
    /// connection is closed.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A connection with no request in flight that receives nothing this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection whose pending write makes no progress this long (a client that does not
    /// read its answer) is closed, which drops the answer it held.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// How long a call stays parked for a modern client's `inputResponses`, after a legacy
    /// upstream asked it something during the call (`front::input`); then it is cancelled
    /// upstream.
    #[serde(with = "humantime_serde")]
    pub input_timeout: Duration,
    /// Largest request line plus headers, in bytes (8 KiB–1 MiB); larger gets HTTP 431.
    pub max_header_bytes: usize,
    /// A second listen address that serves only `/metrics` (and `/healthz`), without API keys,
    /// for Prometheus; empty: none. `/metrics` on the main listener keeps requiring a key.
    pub metrics_listen: String,
    /// PEM file with the listener's certificate chain; with `tls_key`, clients connect with
    /// TLS (rustls: TLS 1.2 and 1.3). Both empty: plain HTTP.
    pub tls_cert: String,
    /// PEM file with the private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: String,
    /// Requests in one JSON-RPC batch at most; a larger batch is refused whole with one -32600
    /// error and none of it runs.
    pub max_batch_size: usize,
    /// The answers of one batch together at most, in bytes; past it the batch is answered with
    /// one -32600 error (calls still running are cancelled).
    pub max_batch_response_bytes: usize,
    /// Live legacy sessions per caller (API key) on this replica; past it `initialize` gets
    /// HTTP 429 with -32015 until the caller ends (`DELETE`) or abandons one.
    pub max_sessions_per_caller: usize,
    /// Ended (`DELETE`d) sessions remembered per caller, each until its own expiry; while a
    /// caller has this many, its new sessions are refused (HTTP 429, -32015) rather than an
    /// ended one forgotten and revived.
    pub max_ended_sessions_per_caller: usize,
    /// Open GET notification streams per legacy session; more get HTTP 429 with -32015.
    pub max_streams_per_session: usize,
    /// Requests of one legacy HTTP+SSE session (`GET /sse`) running at once. Each POST is
    /// answered at once (202) and its answer travels on the session's stream, so without this
    /// bound one client could start calls without end; a POST past it gets HTTP 429, -32015.
    pub max_calls_per_sse_session: usize,
    /// Open `subscriptions/listen` streams per caller (the modern era has no sessions); more
    /// get HTTP 429 with -32015.
    pub max_listens_per_caller: usize,
    /// Resource subscriptions one session may hold; more get -32015.
    pub max_subscriptions_per_session: usize,
    /// Longest resource URI (bytes) a request may name; longer gets -32602.
    pub max_uri_bytes: usize,
}

/// One static API key: a plain string, or a table with its name, role and priorities.
///
/// ```toml
/// api_keys = [
///   "k-…",                                                     # a caller, id from a keyed hash
///   { key = "k-…", name = "ops", role = "admin" },             # may use /admin/* and see /readyz
///   { key = "k-…", name = "batch", priority = "low" },         # asks above `low` are lowered
///   { key = "k-…", name = "ci", priority = "medium", max_priority = "high" },
///   { key = "k-…", name = "bot", rps = 2, burst = 10 },       # its own rate limit
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
    /// This key's own rate limit in requests per second (`pipeline::quota`), instead of
    /// `[rate_limits] per_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    /// The burst of this key's own rate limit (needs `rps`; default: `rps` rounded up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
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
            .field("rps", &self.rps)
            .field("burst", &self.burst)
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
    #[serde(default)]
    rps: Option<f64>,
    #[serde(default)]
    burst: Option<u32>,
}

/// A string, or a table whose unknown keys are errors (an untagged enum would only say that
/// nothing matched, and accepted unknown keys).
impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ApiKey;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key string or a table { key, name, role, priority, max_priority, rps, burst }")
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
                    rps: t.rps,
                    burst: t.burst,
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
            rps: None,
            burst: None,
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
        let rate_limit = self.rps.map(|rps| LimitConfig { rps, burst: self.burst }.resolve());
        let (admin, tenant) = (self.is_admin(), None);
        self.identity = Arc::new(Identity { id, priority, max_priority, admin, tag, rate_limit, tenant, view: None });
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
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            input_timeout: Duration::from_secs(120),
            max_header_bytes: 16 * 1024,
            metrics_listen: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            max_batch_size: 100,
            max_batch_response_bytes: 16 * 1024 * 1024,
            max_sessions_per_caller: 1000,
            max_ended_sessions_per_caller: 10_000,
            max_streams_per_session: 4,
            max_calls_per_sse_session: 64,
            max_listens_per_caller: 64,
            max_subscriptions_per_session: 256,
            max_uri_bytes: 8 * 1024,
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
            problems.extend(LimitConfig::validate_own(key.rps, key.burst, &format!("server.api_keys[{i}]")));
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
        problems.extend(self.validate_limits());
        problems
    }

    /// Problems of the connection and per-client limits: each in its range (a limit of 0 would
    /// refuse everything; a timeout under 100 ms would cut off healthy clients).
    fn validate_limits(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let counts = [
            ("max_connections", self.max_connections, 1, 1_000_000),
            ("max_header_bytes", self.max_header_bytes, 8 * 1024, 1024 * 1024),
            ("max_batch_size", self.max_batch_size, 1, 100_000),
            ("max_batch_response_bytes", self.max_batch_response_bytes, 1024, 1 << 30),
            ("max_sessions_per_caller", self.max_sessions_per_caller, 1, 10_000_000),
            ("max_ended_sessions_per_caller", self.max_ended_sessions_per_caller, 1, 10_000_000),
            ("max_streams_per_session", self.max_streams_per_session, 1, 10_000),
            ("max_calls_per_sse_session", self.max_calls_per_sse_session, 1, 10_000),
            ("max_listens_per_caller", self.max_listens_per_caller, 1, 1_000_000),
            ("max_subscriptions_per_session", self.max_subscriptions_per_session, 1, 1_000_000),
            ("max_uri_bytes", self.max_uri_bytes, 64, 1024 * 1024),
        ];
        for (key, value, min, max) in counts {
            if !(min..=max).contains(&value) {
                problems.push(format!("server.{key} = {value} is outside {min}..={max}"));
            }
        }
        let timeouts = [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("send_timeout", self.send_timeout),
            ("input_timeout", self.input_timeout),
        ];
        for (key, value) in timeouts {
            if value < Duration::from_millis(100) || value > Duration::from_secs(24 * 3600) {
                problems.push(format!("server.{key} = {value:?} is outside 100ms..=24h"));
            }
        }
        if !self.metrics_listen.is_empty() {
            match self.metrics_listen.parse::<SocketAddr>() {
                Ok(addr) if addr == self.listen_addr() => {
                    problems.push("server.metrics_listen must differ from server.listen".into())
                }
                Ok(_) => {}
                Err(e) => problems
                    .push(format!("server.metrics_listen = {:?} is not a socket address ({e})", self.metrics_listen)),
            }
        }
        match (self.tls_cert.is_empty(), self.tls_key.is_empty()) {
            (true, true) => {}
            (false, false) => {
                if let Err(e) = super::tls::load(&self.tls_cert, &self.tls_key) {
                    problems.push(e);
                }
            }
            _ => problems.push("server.tls_cert and server.tls_key must be set together".into()),
        }
        problems
    }

    /// The parsed `metrics_listen` address, if one is set (valid after
    /// [`ServerConfig::validate`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listen.parse().ok()
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
