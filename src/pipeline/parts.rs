//! The pieces of a request and its answer that the pipeline and the upstreams share: params and
//! `_meta` views, the calling client's side (era, capabilities, log level), the caller's
//! identity and priority, the channel that carries events back to the client, and the reply.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::error::GatewayError;
use crate::wire::mcp::{self, Era};
use crate::wire::object::ObjectView;

/// A request's `params` object: its bytes and a shallow view of its members.
#[derive(Clone, Debug, Default)]
pub struct Params {
    /// The raw params object (`{…}`), or empty when the request carried none.
    pub bytes: Bytes,
    /// Top-level members, spans relative to `bytes`.
    pub view: ObjectView,
    /// The `_meta` member, when present and an object.
    pub meta: Option<Meta>,
}

/// A `_meta` object: its bytes and a shallow view.
#[derive(Clone, Debug)]
pub struct Meta {
    /// The raw `_meta` object.
    pub bytes: Bytes,
    /// Its members, spans relative to `bytes`.
    pub view: ObjectView,
}

impl Meta {
    /// The raw JSON of member `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.view.get(&self.bytes, key).map(|s| &self.bytes[s])
    }

    /// Member `key` when it is a string.
    pub fn str(&self, key: &str) -> Option<Cow<'_, str>> {
        self.view.get_str(&self.bytes, key)
    }

    /// The raw progress token (`progressToken`), if the caller asked for progress.
    pub fn progress_token(&self) -> Option<Bytes> {
        let span = self.view.get(&self.bytes, mcp::META_PROGRESS_TOKEN)?;
        let raw = self.bytes.slice(span);
        matches!(raw.first(), Some(b'"' | b'-' | b'0'..=b'9')).then_some(raw)
    }
}

impl Params {
    /// View a raw params object.
    ///
    /// Errors: [`GatewayError::InvalidParams`] (-32602) when `bytes` is not a JSON object,
    /// `_meta` is present but not an object, or either names a member twice (so `name`,
    /// `arguments`, `uri` and `_meta` are read from exactly the member an upstream reads).
    pub fn parse(bytes: Bytes) -> Result<Params, GatewayError> {
        if bytes.is_empty() {
            return Ok(Params::default());
        }
        let view = ObjectView::parse(&bytes).map_err(|e| GatewayError::InvalidParams(format!("params: {e}")))?;
        let meta = match view.get(&bytes, "_meta") {
            Some(span) => {
                let raw = bytes.slice(span);
                if raw.as_ref() == b"null" {
                    None
                } else {
                    let view = ObjectView::parse(&raw).map_err(|e| {
                        GatewayError::InvalidParams(format!(
                            "params._meta must be an object without duplicate members: {e}"
                        ))
                    })?;
                    Some(Meta { bytes: raw, view })
                }
            }
            None => None,
        };
        Ok(Params { bytes, view, meta })
    }

    /// The raw JSON of member `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.view.get(&self.bytes, key).map(|s| &self.bytes[s])
    }

    /// Member `key` as owned bytes (zero-copy).
    pub fn get_bytes(&self, key: &str) -> Option<Bytes> {
        self.view.get(&self.bytes, key).map(|s| self.bytes.slice(s))
    }

    /// Member `key` when it is a string.
    pub fn str(&self, key: &str) -> Option<Cow<'_, str>> {
        self.view.get_str(&self.bytes, key)
    }

    /// Member `key` as a required string.
    ///
    /// Errors: [`GatewayError::InvalidParams`] naming the member when it is missing or not a string.
    pub fn required_str(&self, key: &str) -> Result<Cow<'_, str>, GatewayError> {
        self.str(key).ok_or_else(|| GatewayError::InvalidParams(format!("params.{key} must be a string")))
    }
}

/// Severity levels of `notifications/message` (RFC 5424, as profiled by MCP `server/utilities/logging`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    /// Parse a level name; `None` for an unknown name.
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "notice" => LogLevel::Notice,
            "warning" => LogLevel::Warning,
            "error" => LogLevel::Error,
            "critical" => LogLevel::Critical,
            "alert" => LogLevel::Alert,
            "emergency" => LogLevel::Emergency,
            _ => return None,
        })
    }

    /// The level of rank `rank` (0 = debug … 7 = emergency), if there is one.
    pub fn from_rank(rank: u8) -> Option<LogLevel> {
        const ALL: [LogLevel; 8] = [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Notice,
            LogLevel::Warning,
            LogLevel::Error,
            LogLevel::Critical,
            LogLevel::Alert,
            LogLevel::Emergency,
        ];
        ALL.get(usize::from(rank)).copied()
    }
}

/// The calling client as the gateway sees it.
#[derive(Clone, Debug)]
pub struct ClientSide {
    /// The client's protocol era.
    pub era: Era,
    /// The revision in use (negotiated for legacy sessions, from `_meta` for modern requests).
    pub version: &'static str,
    /// The client's capabilities as a raw JSON object.
    pub capabilities: Bytes,
    /// The minimum log level the client wants relayed; `None` relays no log messages for modern
    /// clients and everything for legacy ones that never called `logging/setLevel`.
    pub log_level: Option<LogLevel>,
}

impl ClientSide {
    /// A legacy client at `version` with the given capabilities object.
    pub fn legacy(version: &'static str, capabilities: Bytes) -> Self {
        ClientSide { era: Era::Legacy, version, capabilities, log_level: None }
    }
}

/// Which catalog a request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The merged, namespaced catalog (`/mcp`).
    Gateway,
    /// One upstream, unprefixed (`/servers/{name}/mcp`).
    Upstream(Arc<str>),
}

/// Priority class of a request (admission control): `critical` is served first and shed last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Served first, shed last.
    Critical,
    /// Above normal.
    High,
    /// The default.
    #[default]
    Medium,
    /// Shed first under overload.
    Low,
}

impl Priority {
    /// Parse a class name (`critical`, `high`, `medium`, `low`), case-insensitively.
    pub fn parse(s: &str) -> Option<Priority> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Priority::Critical,
            "high" => Priority::High,
            "medium" | "normal" => Priority::Medium,
            "low" => Priority::Low,
            _ => return None,
        })
    }

    /// Rank for ordering: 0 is the most important.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// This priority, lowered to `ceiling` when it is more important (a caller may ask for at
    /// most its ceiling; asking for more is not an error).
    pub fn at_most(self, ceiling: Priority) -> Priority {
        if self.rank() < ceiling.rank() { ceiling } else { self }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

/// A resolved GCRA rate limit (`pipeline::quota`): one request per `interval` sustained, up to
/// `burst` at once after a quiet period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// The emission interval (1 / rate).
    pub interval: std::time::Duration,
    /// The bucket's size: requests admitted at once after a quiet period (≥ 1).
    pub burst: u32,
}

/// What the gateway knows about one configured API key once the configuration is loaded
/// (`front::config::ApiKey::resolve`): its stable id and what it may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The stable caller id: the key's `name`, else `key:` and 16 hex digits of a keyed hash
    /// of the secret. Cache scopes, idempotency records, session binding, metrics and logs use
    /// it, so reordering or removing keys never hands one caller's data to another.
    pub id: Arc<str>,
    /// Priority of its calls that name none (`priority`, else `[admission] default_priority`).
    pub priority: Priority,
    /// The most important priority its calls may ask for (`max_priority`, else `priority`);
    /// higher asks are lowered to it.
    pub max_priority: Priority,
    /// Whether the key may use `/admin/*` and see `/readyz` in detail (`role = "admin"`).
    pub admin: bool,
    /// The first 16 bytes of SHA-256 over `id`: what a sealed session id carries to bind the
    /// session to its caller (fixed size, computed once).
    pub tag: [u8; 16],
    /// The key's own rate limit (`rps`/`burst` on its entry); `None`: `[rate_limits] per_key`
    /// applies (`pipeline::quota`).
    pub rate_limit: Option<RateLimit>,
    /// The tenant the key belongs to, whose `[rate_limits] per_tenant` limit its calls share
    /// with the tenant's other keys; `None` for static keys from `[server] api_keys`.
    pub tenant: Option<Arc<str>>,
    /// For a store key: its instance's view of the catalog (what its calls are routed
    /// through; a `tenancy::View`, read with `tenancy::view_of`); `None` for static keys,
    /// which see the whole catalog.
    pub view: Option<ViewSlot>,
}

/// An opaque attachment of an [`Identity`]: the `tenancy::View` of a store key. Opaque here
/// because the view belongs to a layer above this one (it knows catalogs and upstreams);
/// `tenancy::view_of` reads it back. Equal when it is the same object.
#[derive(Clone)]
pub struct ViewSlot(pub Arc<dyn std::any::Any + Send + Sync>);

impl PartialEq for ViewSlot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ViewSlot {}

impl std::fmt::Debug for ViewSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ViewSlot")
    }
}

impl Identity {
    /// The binding tag of caller id `id` (see [`Identity::tag`]).
    pub fn tag_of(id: &str) -> [u8; 16] {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(id.as_bytes());
        digest[..16].try_into().expect("SHA-256 is 32 bytes")
    }
}

/// Label of the anonymous caller in keys, metrics and logs; never a key's id (names may not
/// be `anon`, hashed ids start with `key:`).
pub const ANONYMOUS: &str = "anon";

/// Who is calling, after authentication.
#[derive(Clone, Debug)]
pub enum Principal {
    /// No credentials were required: authentication is off (loopback without API keys, or
    /// stdio), so every caller is the local operator.
    Anonymous,
    /// A configured static API key.
    ApiKey(Arc<Identity>),
}

impl Principal {
    /// The stable caller id ([`Identity::id`], or [`ANONYMOUS`]).
    pub fn label(&self) -> &str {
        match self {
            Principal::Anonymous => ANONYMOUS,
            Principal::ApiKey(identity) => &identity.id,
        }
    }

    /// The caller's binding tag ([`Identity::tag`]; for the anonymous caller, that of
    /// [`ANONYMOUS`]).
    pub fn tag(&self) -> [u8; 16] {
        static ANONYMOUS_TAG: std::sync::LazyLock<[u8; 16]> = std::sync::LazyLock::new(|| Identity::tag_of(ANONYMOUS));
        match self {
            Principal::Anonymous => *ANONYMOUS_TAG,
            Principal::ApiKey(identity) => identity.tag,
        }
    }

    /// The caller's tenant ([`Identity::tenant`]; none for the anonymous caller).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::ApiKey(identity) => identity.tenant.as_deref(),
        }
    }

    /// The caller's view attachment, for a store key ([`Identity::view`]).
    pub fn view_slot(&self) -> Option<&ViewSlot> {
        match self {
            Principal::Anonymous => None,
            Principal::ApiKey(identity) => identity.view.as_ref(),
        }
    }

    /// Whether the caller may use the admin endpoints and see `/readyz` in detail: an
    /// `admin` key, or anyone where authentication is off (only loopback or stdio allow that).
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Anonymous => true,
            Principal::ApiKey(identity) => identity.admin,
        }
    }
}

/// Callers are the same when their stable ids are.
impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.label() == other.label()
    }
}

impl Eq for Principal {}

impl std::hash::Hash for Principal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.label().hash(state);
    }
}

/// Something the gateway must deliver to the client while its request runs.
#[derive(Debug)]
pub enum ClientEvent {
    /// A complete JSON-RPC notification message, already addressed to this client
    /// (progress token restored).
    Notification(Bytes),
    /// A server-to-client request from the upstream (sampling, elicitation, roots); the front
    /// mints an id, relays it, and sends the client's answer back through `reply`.
    Request {
        /// The request method.
        method: String,
        /// The raw params object, if any.
        params: Option<Bytes>,
        /// Where the client's answer goes.
        reply: oneshot::Sender<ClientAnswer>,
    },
}

/// The client's answer to a relayed server-to-client request.
#[derive(Debug)]
pub enum ClientAnswer {
    /// The raw `result` value.
    Result(Bytes),
    /// The raw `error` object.
    Error(Bytes),
}

/// Where upstream events for one request go (bounded; senders never wait on a slow client).
pub type EventSink = mpsc::Sender<ClientEvent>;

/// Who produced a reply, which decides how it is adapted to the client's era.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The gateway wrote it for this client's era already.
    Gateway,
    /// An upstream speaking the given era wrote it; carries the upstream's namespace.
    Upstream(Era, Arc<str>),
}

/// The outcome of a call that reached an answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A raw `result` value.
    Result { body: Bytes, origin: Origin },
    /// A raw JSON-RPC `error` object from an upstream.
    Error { body: Bytes, origin: Origin },
}

/// The boxed future of a step that has to wait for something of its own (a lookup, a lease, a
/// backoff) before or after calling the next service.
pub type ReplyFuture = futures::future::BoxFuture<'static, Result<Reply, GatewayError>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_are_lowered_to_the_ceiling() {
        use Priority::*;
        assert_eq!(Critical.at_most(Low), Low);
        assert_eq!(High.at_most(Medium), Medium);
        assert_eq!(Low.at_most(High), Low, "asking for less is always allowed");
        assert_eq!(Medium.at_most(Medium), Medium);
    }

    #[test]
    fn callers_are_their_ids() {
        let key = |id: &str| Principal::ApiKey(Arc::new(Identity { id: id.into(), ..Default::default() }));
        assert_eq!(key("ops"), key("ops"));
        assert_ne!(key("ops"), key("ci"));
        assert_eq!(Principal::Anonymous.label(), ANONYMOUS);
        assert!(Principal::Anonymous.is_admin(), "without keys every caller is the operator");
        assert!(!key("ops").is_admin());
    }
}
