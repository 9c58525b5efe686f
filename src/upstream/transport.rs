//! How an upstream is spoken to (`[upstreams.<namespace>] transport` and `era`): the transport
//! chosen for a `url` (Streamable HTTP, or the 2024-11-05 HTTP+SSE transport), the protocol
//! era, and the validated [`Transport`] a pool starts its replicas with.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The transport of an HTTP upstream (`transport`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HttpTransport {
    /// Streamable HTTP (2025-03-26 and later `basic/transports`): `url` is the MCP endpoint.
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05 `basic/transports`, "HTTP with SSE"): `url`
    /// is the SSE endpoint (e.g. `http://host:3001/sse`); its first event names the URI
    /// messages are POSTed to, which must be on the same origin. Legacy era only.
    Sse,
}

/// Which protocol era to speak to an upstream.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EraChoice {
    /// Probe with `server/discover`, fall back to `initialize`.
    #[default]
    Auto,
    /// Always use the `initialize` handshake.
    Legacy,
    /// Always use the per-request envelope.
    Modern,
}

/// How an upstream is reached, after validation.
#[derive(Clone, Debug, PartialEq)]
pub enum Transport {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio { command: String, args: Vec<String>, env: BTreeMap<String, String>, inherit_env: bool, cwd: Option<PathBuf> },
    /// HTTP endpoints (one per replica), spoken to with `flavor`.
    Http {
        urls: Vec<http::Uri>,
        headers: http::HeaderMap,
        flavor: HttpTransport,
        /// The credentials of each URL, in `urls` order (empty: no `auth`).
        credentials: Vec<std::sync::Arc<crate::upstream::auth::Credentials>>,
    },
}
