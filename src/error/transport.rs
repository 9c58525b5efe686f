//! Transport failures between the gateway and an upstream: their kind (refused, reset,
//! timed out, closed, …) read off the error's cause chain, and whether the request provably
//! never left the gateway.

/// How a connection to an upstream failed: the cause, not a string, so retries, breakers and
/// operators can tell a refused connection from a reset one or a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// Nothing listens there (`ECONNREFUSED`).
    Refused,
    /// The peer reset or aborted the connection, or the pipe broke.
    Reset,
    /// A connect or I/O timeout below the call's own deadline.
    TimedOut,
    /// The connection, stream or child process ended before the answer.
    Closed,
    /// The host could not be reached (DNS failure, no route, other connect errors).
    Unreachable,
    /// The TLS handshake or a TLS record failed.
    Tls,
    /// The upstream answered with this unexpected HTTP status.
    Status(u16),
    /// Another I/O error.
    Io,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportKind::Refused => f.write_str("connection refused"),
            TransportKind::Reset => f.write_str("connection reset"),
            TransportKind::TimedOut => f.write_str("timed out"),
            TransportKind::Closed => f.write_str("connection closed"),
            TransportKind::Unreachable => f.write_str("unreachable"),
            TransportKind::Tls => f.write_str("TLS failure"),
            TransportKind::Status(s) => write!(f, "HTTP {s}"),
            TransportKind::Io => f.write_str("I/O error"),
        }
    }
}

/// A transport failure: its kind, the underlying error's text for the log, and whether the
/// request provably never left the gateway.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct TransportError {
    /// What happened.
    pub kind: TransportKind,
    /// The underlying error, for people.
    pub detail: String,
    /// True only when the request provably never reached the upstream: the connection could
    /// not be opened (refused, unreachable), or the child's stdin was gone before the request
    /// was queued for it. Such a call may be sent again whatever it does; every other
    /// transport failure may have happened after the upstream read the request.
    pub unsent: bool,
}

impl TransportError {
    /// A failure of `kind` described by `detail`, which may have happened after the request
    /// was sent (the safe assumption).
    pub fn new(kind: TransportKind, detail: impl Into<String>) -> Self {
        TransportError { kind, detail: detail.into(), unsent: false }
    }

    /// The same failure, known to have happened before any byte of the request was sent.
    pub fn not_sent(mut self) -> Self {
        self.unsent = true;
        self
    }

    /// Classify an error from the HTTP client or an I/O call by walking its cause chain.
    pub fn classify(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut kind = None;
        let mut text = e.to_string();
        let mut source = Some(e);
        while let Some(s) = source {
            if kind.is_none()
                && let Some(io) = s.downcast_ref::<std::io::Error>()
            {
                kind = Some(match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => TransportKind::Refused,
                    std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe => TransportKind::Reset,
                    std::io::ErrorKind::TimedOut => TransportKind::TimedOut,
                    std::io::ErrorKind::UnexpectedEof => TransportKind::Closed,
                    std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::AddrNotAvailable => TransportKind::Unreachable,
                    _ if io.get_ref().is_some_and(|inner| inner.to_string().contains("tls")) => TransportKind::Tls,
                    _ => TransportKind::Io,
                });
            }
            if let Some(h) = s.downcast_ref::<hyper::Error>()
                && kind.is_none()
                && (h.is_incomplete_message() || h.is_closed() || h.is_canceled())
            {
                kind = Some(TransportKind::Closed);
            }
            if !std::ptr::eq(s, e) {
                text.push_str(": ");
                text.push_str(&s.to_string());
            }
            source = s.source();
        }
        let kind = kind.unwrap_or_else(|| {
            if text.contains("dns error") || text.contains("connect") {
                TransportKind::Unreachable
            } else {
                TransportKind::Io
            }
        });
        TransportError { kind, detail: text, unsent: false }
    }
}
