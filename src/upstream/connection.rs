//! A live connection to one upstream replica: a child process, a Streamable HTTP session, or
//! an HTTP+SSE session.

use std::sync::Arc;

use super::conn::ConnError;
use super::handshake::Handshake;
use super::http::HttpConn;
use super::request::Outbound;
use super::sse::SseConn;
use super::stdio::StdioConn;
use crate::wire::jsonrpc::Message;

/// A live connection to an upstream replica.
pub enum Connection {
    /// A child process.
    Stdio(Arc<StdioConn>),
    /// A Streamable HTTP session.
    Http(Arc<HttpConn>),
    /// A legacy HTTP+SSE session (its stream and its POST endpoint).
    Sse(Arc<SseConn>),
}

impl Connection {
    /// The handshake of this connection.
    pub fn handshake(&self) -> &Handshake {
        match self {
            Connection::Stdio(c) => c.handshake().expect("published conns completed their handshake"),
            Connection::Http(c) => c.handshake(),
            Connection::Sse(c) => c.handshake(),
        }
    }

    /// Send one request and wait for its answer; dropping the future cancels it upstream.
    ///
    /// Errors: [`ConnError`] when no answer arrives.
    pub async fn call(&self, req: &Outbound) -> Result<Message, ConnError> {
        match self {
            Connection::Stdio(c) => c.call(req).await,
            Connection::Http(c) => c.call(req).await,
            Connection::Sse(c) => c.call(req).await,
        }
    }

    /// Send a notification, best effort (e.g. a client's `notifications/roots/list_changed`
    /// to its per-client upstream session).
    pub fn notify(&self, method: &str) {
        match self {
            Connection::Stdio(c) => c.notify(method, None),
            Connection::Http(c) => c.notify(method),
            Connection::Sse(c) => c.notify(method),
        }
    }

    /// Calls waiting on this connection.
    pub fn in_flight(&self) -> usize {
        match self {
            Connection::Stdio(c) => c.mux.in_flight(),
            Connection::Http(c) => c.mux.in_flight(),
            Connection::Sse(c) => c.mux.in_flight(),
        }
    }

    /// The child's process id, for stdio connections.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Connection::Stdio(c) => c.pid(),
            Connection::Http(_) | Connection::Sse(_) => None,
        }
    }

    /// Give up on this connection after a transport failure: an HTTP session is torn down so
    /// its supervisor reconnects (and reports the replica down meanwhile).
    pub fn abandon(&self) {
        match self {
            Connection::Http(c) => c.closed().cancel(),
            Connection::Sse(c) => c.close(),
            Connection::Stdio(_) => {}
        }
    }
}
