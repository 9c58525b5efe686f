//! The handle of one downstream client session that an upstream connection may hold: a
//! per-client upstream session belongs to it (and ends with it), and what that upstream says
//! outside a call (server-to-client requests, log messages) reaches only this client, on a
//! call of its in flight or on its standalone stream (legacy GET stream, `sekisho stdio`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::pipeline::parts::{ClientEvent, EventSink, LogLevel};

/// One downstream client session as upstream connections see it.
#[derive(Debug)]
pub struct ClientLink {
    /// 64 random bits naming the session inside the gateway (never shown to anyone); the key
    /// of its per-client upstream sessions, and how a shared connection tells two clients apart.
    pub key: u64,
    /// Cancelled when the client session ends (`DELETE`, or its stdio conversation closed):
    /// its per-client upstream sessions stop (otherwise they stop after idling).
    pub ended: CancellationToken,
    stream: Mutex<Option<EventSink>>,
    /// The level set with `logging/setLevel`: 0 none yet, else its rank + 1 (what a
    /// per-client upstream session logs outside a call is filtered with it).
    log_level: AtomicU8,
    /// Woken when a standalone stream is attached: the client now wants what its upstreams
    /// send outside calls, so a per-client upstream session opens its own standalone stream
    /// (`upstream::http::gate`).
    attention: Notify,
}

impl Default for ClientLink {
    fn default() -> Self {
        ClientLink {
            key: rand::random(),
            ended: CancellationToken::new(),
            stream: Mutex::new(None),
            log_level: AtomicU8::new(0),
            attention: Notify::new(),
        }
    }
}

impl ClientLink {
    /// Make `sink` the client's standalone stream (a newer stream replaces an older one).
    pub fn attach(&self, sink: EventSink) {
        *self.stream.lock().expect("link lock") = Some(sink);
        self.attention.notify_waiters();
    }

    /// Whether the client can use what an upstream sends it outside a call: it has a
    /// standalone stream open (what comes outside calls goes nowhere else, resource updates
    /// included).
    pub fn wants_unsolicited(&self) -> bool {
        self.stream().is_some()
    }

    /// Resolves at the next [`ClientLink::attach`] after the returned future is enabled
    /// (`Notified::enable`); check [`ClientLink::wants_unsolicited`] after enabling it, so no
    /// attach is missed.
    pub fn attention(&self) -> tokio::sync::futures::Notified<'_> {
        self.attention.notified()
    }

    /// The level the client set with `logging/setLevel`, if it did.
    pub fn log_level(&self) -> Option<LogLevel> {
        self.log_level.load(Ordering::Relaxed).checked_sub(1).and_then(LogLevel::from_rank)
    }

    /// Remember the level set with `logging/setLevel`.
    pub fn set_log_level(&self, level: LogLevel) {
        self.log_level.store(level as u8 + 1, Ordering::Relaxed);
    }

    /// Forget the standalone stream (the session ended).
    pub fn detach(&self) {
        *self.stream.lock().expect("link lock") = None;
    }

    /// The standalone stream, while one is open.
    pub fn stream(&self) -> Option<EventSink> {
        let mut stream = self.stream.lock().expect("link lock");
        if stream.as_ref().is_some_and(|s| s.is_closed()) {
            *stream = None;
        }
        stream.clone()
    }

    /// Deliver `event` on the standalone stream without waiting.
    ///
    /// Errors: gives `event` back when no stream is open or it is full.
    pub fn send(&self, event: ClientEvent) -> Result<(), ClientEvent> {
        match self.stream() {
            Some(sink) => sink.try_send(event).map_err(|e| e.into_inner()),
            None => Err(event),
        }
    }
}
