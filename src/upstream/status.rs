//! What an upstream, or one of its replicas, is doing, as `/readyz` and metrics show it.

use crate::wire::mcp::Era;

/// The state of a replica, or the aggregate of an upstream's replicas.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Connecting for the first time or after a failure.
    Starting,
    /// Connected.
    Up {
        /// Protocol era spoken.
        era: Era,
        /// Revision in use.
        version: &'static str,
    },
    /// Not connected; the supervisor will retry.
    Down {
        /// Why, in detail (the underlying error's text: for logs and admins' `/readyz`).
        reason: String,
        /// Why, in a few words of the gateway's own, safe to show clients (no host names, no
        /// upstream text).
        brief: &'static str,
    },
    /// Stopped for shutdown.
    Stopped,
}

impl Status {
    /// Whether calls can be sent now.
    pub fn is_up(&self) -> bool {
        matches!(self, Status::Up { .. })
    }

    /// Lowercase name (`/readyz`).
    pub fn name(&self) -> &'static str {
        match self {
            Status::Up { .. } => "up",
            Status::Down { .. } => "down",
            Status::Starting => "starting",
            Status::Stopped => "stopped",
        }
    }
}
