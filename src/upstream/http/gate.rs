//! When a per-client HTTP upstream session holds its notification stream: the legacy standalone
//! GET stream (2025-11-25 `basic/transports`, "Listening for Messages from the Server") or a
//! modern `subscriptions/listen`.
//!
//! An open stream costs the gateway a connection of its own with hyper's read and write
//! buffers and a listener's state (≈ 20 KiB), and the upstream one more open stream. A shared
//! upstream session holds it always: list changes come on it. A per-client session holds it
//! only while its one client can use what arrives there: while a call of the client is in
//! flight (an upstream may send the call's server requests there instead of on the call's
//! stream, and the SDKs drop what they would send on a stream that is not open), for
//! [`LINGER`] after the last call ends, and while the client holds its own standalone stream
//! (where what comes outside calls goes, resource updates included). A call finds the stream
//! open before its POST leaves: it wakes the listener and waits (at most [`OPEN_WAIT`]) for
//! the upstream to accept the GET.
//!
//! A per-client session with a modern upstream (2026-07-28) is gated the same way, except that
//! calls do not open its `subscriptions/listen` stream: the modern era ties everything a server
//! asks to the call (`input_required`), so the stream carries only what comes outside calls
//! (list changes, resource updates), and it is held while the client has a standalone stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::session::link::ClientLink;

/// How long the stream stays open after the client's last call ends, for what the upstream
/// sends right after it (5 s).
pub const LINGER: Duration = Duration::from_secs(5);
/// How long a call waits for the stream to open before it is sent without it (2 s).
pub const OPEN_WAIT: Duration = Duration::from_secs(2);

/// The stream is closed and nobody wants it.
const IDLE: u8 = 0;
/// The listener is opening it.
const OPENING: u8 = 1;
/// The upstream accepted the GET.
const OPEN: u8 = 2;
/// The last attempt failed or the upstream ended the stream; the listener tries again after a
/// backoff once it is wanted, and calls do not wait for it meanwhile.
const FAILED: u8 = 3;

/// The demand for one per-client upstream session's GET stream.
pub struct StreamGate {
    link: Arc<ClientLink>,
    state: AtomicU8,
    /// Client calls in flight on the session.
    calls: AtomicUsize,
    /// When the last call ended, in ms after `born`.
    last_call_ms: AtomicU64,
    born: Instant,
    /// A call wants the stream (a permit is kept if the listener is not waiting yet).
    wake: Notify,
    /// The state left `IDLE`/`OPENING`.
    settled: Notify,
}

/// Counts one client call in flight on the session while it lives.
pub struct CallHold<'a>(&'a StreamGate);

impl Drop for CallHold<'_> {
    fn drop(&mut self) {
        let gate = self.0;
        gate.last_call_ms.store(gate.now_ms().max(1), Ordering::SeqCst);
        gate.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StreamGate {
    /// The gate of a session serving `link`'s client alone; the stream starts closed.
    pub fn new(link: Arc<ClientLink>) -> Self {
        StreamGate {
            link,
            state: AtomicU8::new(IDLE),
            calls: AtomicUsize::new(0),
            last_call_ms: AtomicU64::new(0),
            born: Instant::now(),
            wake: Notify::new(),
            settled: Notify::new(),
        }
    }

    /// Count a client call in flight, and return once the stream is open (or failed, or
    /// [`OPEN_WAIT`] passed): the call's POST may then leave.
    pub async fn enter(&self) -> CallHold<'_> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let hold = CallHold(self);
        if matches!(self.state.load(Ordering::SeqCst), OPEN | FAILED) {
            return hold;
        }
        self.wake.notify_one();
        let settled = async {
            loop {
                let notified = self.settled.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if matches!(self.state.load(Ordering::SeqCst), OPEN | FAILED) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(OPEN_WAIT, settled).await.is_err() {
            // The upstream is slow to accept the GET: later calls do not wait for it either
            // (the listener still marks the stream open when the upstream answers).
            let _ = self.state.compare_exchange(OPENING, FAILED, Ordering::SeqCst, Ordering::SeqCst);
        }
        hold
    }

    /// Whether the stream should be open now: a call is in flight or ended within
    /// [`LINGER`], or the client wants what comes outside calls.
    pub fn wanted(&self) -> bool {
        if self.calls.load(Ordering::SeqCst) > 0 || self.link.wants_unsolicited() {
            return true;
        }
        let last = self.last_call_ms.load(Ordering::SeqCst);
        last > 0 && self.now_ms().saturating_sub(last) < LINGER.as_millis() as u64
    }

    /// Wait until the stream is wanted (returns at once if it is).
    pub async fn until_wanted(&self) {
        loop {
            let call = self.wake.notified();
            let client = self.link.attention();
            tokio::pin!(call, client);
            call.as_mut().enable();
            client.as_mut().enable();
            if self.wanted() {
                return;
            }
            tokio::select! {
                () = call => {}
                () = client => {}
            }
        }
    }

    /// The listener is opening the stream (a call waits for the outcome).
    pub fn opening(&self) {
        self.state.store(OPENING, Ordering::SeqCst);
    }

    /// The upstream accepted the GET.
    pub fn opened(&self) {
        self.settle(OPEN);
    }

    /// Opening failed: calls go without the stream until it opens.
    pub fn failed(&self) {
        self.settle(FAILED);
    }

    /// Try to close the idle stream: true when it is closed (nobody wants it); false when a
    /// call came in meanwhile, and the stream stays open.
    pub fn try_close(&self) -> bool {
        if self.wanted() {
            return false;
        }
        self.state.store(IDLE, Ordering::SeqCst);
        // A call that saw `OPEN` just before the store counted itself first (SeqCst): seen
        // here, and the stream stays. A later one sees `IDLE` and wakes the listener.
        if self.calls.load(Ordering::SeqCst) > 0 {
            self.settle(OPEN);
            return false;
        }
        true
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn settle(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
        self.settled.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> StreamGate {
        StreamGate::new(Arc::new(ClientLink::default()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_for_the_stream_once_and_then_not_again_while_it_is_slow() {
        let gate = gate();
        assert!(!gate.wanted(), "an idle session with no client stream wants nothing");
        gate.opening();
        let started = tokio::time::Instant::now();
        let first = gate.enter().await;
        assert_eq!(started.elapsed(), OPEN_WAIT, "the first call waited for the GET, then went");
        let again = tokio::time::Instant::now();
        let second = gate.enter().await;
        assert_eq!(again.elapsed(), Duration::ZERO, "a slow upstream does not make every call wait");
        assert!(gate.wanted());
        drop((first, second));
        assert!(gate.wanted(), "lingering after the last call");
        tokio::time::advance(LINGER + Duration::from_millis(1)).await;
        assert!(!gate.wanted(), "idle after the linger");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_goes_as_soon_as_the_stream_is_open() {
        let gate = Arc::new(gate());
        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move {
                let started = tokio::time::Instant::now();
                let _hold = gate.enter().await;
                started.elapsed()
            }
        });
        // The listener is woken by the call, opens the stream, and the upstream accepts it.
        tokio::time::timeout(Duration::from_secs(1), gate.until_wanted()).await.expect("the call woke the listener");
        gate.opening();
        tokio::time::advance(Duration::from_millis(30)).await;
        gate.opened();
        let waited = waiting.await.unwrap();
        assert!(waited >= Duration::from_millis(30) && waited < OPEN_WAIT, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_never_closes_under_a_call() {
        let gate = gate();
        gate.opened();
        let hold = gate.enter().await;
        assert!(!gate.try_close(), "a call is in flight");
        drop(hold);
        assert!(!gate.try_close(), "within the linger");
        tokio::time::advance(LINGER + Duration::from_millis(1)).await;
        assert!(gate.try_close(), "idle: closed");
        // Closed and idle: the next call finds it closed and waits for the listener again.
        gate.opening();
        gate.opened();
        let _hold = gate.enter().await;
        assert!(!gate.try_close());
    }
}
