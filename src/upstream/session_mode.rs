//! An upstream's session mode (`[upstreams.<namespace>] session`): whether client sessions share
//! the upstream's sessions or each gets its own, and the caps on per-client sessions.

use serde::{Deserialize, Serialize};

/// How client sessions map onto an upstream's sessions (`session`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SessionMode {
    /// Every client shares the upstream's pooled processes or HTTP sessions. An upstream's
    /// request not tied to a client request goes to the one client with a call in flight on
    /// that connection, else it is refused.
    #[default]
    Shared,
    /// Each downstream session (legacy `Mcp-Session-Id`, or a `sekisho stdio` conversation)
    /// gets its own upstream session, started on its first call and stopped when the client
    /// session ends or idles for `idle_timeout`. Calls without a session (the modern era) and
    /// the gateway's own listing use the shared connections.
    PerClient,
}

/// Default `max_client_sessions` of a stdio upstream (each is a process).
pub const DEFAULT_MAX_CLIENT_PROCESSES: usize = 32;
/// Default `max_client_sessions` of an HTTP upstream (each is an upstream `Mcp-Session-Id`).
pub const DEFAULT_MAX_CLIENT_HTTP_SESSIONS: usize = 1024;
/// Largest `max_client_sessions` accepted.
pub const MAX_CLIENT_SESSIONS_CAP: usize = 4096;
