//! The handle of one downstream client session that an upstream connection may hold: a
//! per-client upstream session belongs to it (and ends with it), and what that upstream says
//! outside a call (server-to-client requests, log messages) reaches only this client, on a
//! call of its in flight or on its standalone stream (legacy GET stream, `sekisho stdio`).

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::pipeline::parts::{ClientEvent, EventSink};

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
}

impl Default for ClientLink {
    fn default() -> Self {
        ClientLink { key: rand::random(), ended: CancellationToken::new(), stream: Mutex::new(None) }
    }
}

impl ClientLink {
    /// Make `sink` the client's standalone stream (a newer stream replaces an older one).
    pub fn attach(&self, sink: EventSink) {
        *self.stream.lock().expect("link lock") = Some(sink);
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
