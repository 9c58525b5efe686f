//! One client connection's clock: what it is doing (reading a request's head, running
//! requests, idle, stuck writing), observed from its socket and its requests, and the
//! deadline that closes it (`[server] header_read_timeout`, `idle_timeout`, `send_timeout`).
//!
//! hyper's own `header_read_timeout` is not used: it starts when a connection goes idle, so it
//! would also be the keep-alive idle timeout (the two could not differ), and it covers neither
//! HTTP/2, the HTTP-version sniffing of the auto builder, nor the TLS handshake. Here a
//! connection's head deadline runs from its first byte (from the connection's start for its
//! first request), whatever the protocol.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// "Not now" for the millisecond marks below.
const NONE: u64 = u64::MAX;

/// The timeouts a connection is held to.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From a request's first byte (a connection's start, for its first) to its last header.
    pub header_read: Duration,
    /// Nothing in flight and nothing received.
    pub idle: Duration,
    /// A pending write without progress.
    pub send: Duration,
}

/// What one connection is doing, shared by its socket wrapper ([`Watched`]), its requests
/// ([`Activity::start`]) and its watchdog ([`Activity::expired`]). Marks are milliseconds since
/// the connection was accepted.
#[derive(Debug)]
pub struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    /// First byte received while nothing was in flight: a request head is arriving.
    reading_since: AtomicU64,
    /// A write has been pending (the peer's window is closed) since then.
    stalled_since: AtomicU64,
    changed: Notify,
}

impl Activity {
    /// A connection accepted now; its first request's head deadline starts now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            reading_since: AtomicU64::new(0),
            stalled_since: AtomicU64::new(NONE),
            changed: Notify::new(),
        })
    }

    fn now(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// A request's head has arrived and it runs until the returned guard is dropped (its
    /// response body has been handed to the connection, or the request was dropped).
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.reading_since.store(NONE, Ordering::Release);
        InFlight(Arc::clone(self))
    }

    fn received(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.reading_since.compare_exchange(NONE, self.now(), Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn write_pending(&self) {
        if self.stalled_since.compare_exchange(NONE, self.now(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        if self.stalled_since.load(Ordering::Relaxed) != NONE {
            self.stalled_since.store(NONE, Ordering::Release);
        }
    }

    /// Resolves with the name of the timeout that ran out, when one does: `send_timeout` (a
    /// write stuck), `header_read_timeout` (a head arriving too slowly), `idle_timeout`
    /// (nothing in flight, nothing received). A running request has no deadline here (its
    /// body read has `body_read_timeout`, its call its own deadline).
    pub async fn expired(&self, t: Timeouts) -> &'static str {
        loop {
            let notified = self.changed.notified();
            let now = self.now();
            let mut next = NONE;
            let mut due = |since: u64, limit: Duration| {
                let at = since.saturating_add(limit.as_millis() as u64);
                next = next.min(at);
                now >= at
            };
            let stalled = self.stalled_since.load(Ordering::Acquire);
            if stalled != NONE && due(stalled, t.send) {
                return "send_timeout";
            }
            if self.in_flight.load(Ordering::Acquire) == 0 {
                let reading = self.reading_since.load(Ordering::Acquire);
                if reading != NONE {
                    if due(reading, t.header_read) {
                        return "header_read_timeout";
                    }
                } else if due(self.idle_since.load(Ordering::Acquire), t.idle) {
                    return "idle_timeout";
                }
            }
            // Waking at `next` at the latest; a change (a first byte, a stuck write, the last
            // request ending) may bring a deadline closer.
            let sleep = tokio::time::sleep_until(self.born + Duration::from_millis(next.min(now + 60_000)));
            tokio::select! {
                () = notified => {}
                () = sleep => {}
            }
        }
    }
}

/// A running request of a connection; dropping it makes the connection idle when it was the
/// last.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.idle_since.store(a.now(), Ordering::Release);
            a.changed.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A socket that reports reads and stuck writes to its connection's [`Activity`].
    pub struct Watched<T> {
        #[pin]
        io: T,
        activity: Arc<Activity>,
    }
}

impl<T> Watched<T> {
    /// Watch `io` for `activity`.
    pub fn new(io: T, activity: Arc<Activity>) -> Self {
        Watched { io, activity }
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let out = this.io.poll_read(cx, buf);
        if matches!(out, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.received();
        }
        out
    }
}

impl<T: AsyncWrite> Watched<T> {
    fn track(activity: &Activity, out: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        match &out {
            Poll::Pending => activity.write_pending(),
            Poll::Ready(Ok(n)) if *n > 0 => activity.wrote(),
            Poll::Ready(_) => {}
        }
        out
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let out = this.io.poll_write(cx, buf);
        Self::track(this.activity, out)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let out = this.io.poll_write_vectored(cx, bufs);
        Self::track(this.activity, out)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts =
        Timeouts { header_read: Duration::from_secs(2), idle: Duration::from_secs(5), send: Duration::from_secs(3) };

    #[tokio::test(start_paused = true)]
    async fn the_first_head_is_due_from_the_start() {
        let a = Activity::new();
        let started = Instant::now();
        assert_eq!(a.expired(T).await, "header_read_timeout");
        assert_eq!(started.elapsed().as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_after_the_last_request_then_a_slow_head() {
        let a = Activity::new();
        drop(a.start());
        let started = Instant::now();
        assert_eq!(a.expired(T).await, "idle_timeout");
        assert_eq!(started.elapsed().as_secs(), 5);
        let b = Activity::new();
        let running = b.start();
        let waited = tokio::time::timeout(Duration::from_secs(30), b.expired(T)).await;
        assert!(waited.is_err(), "a running request has no deadline here");
        drop(running);
        tokio::time::advance(Duration::from_secs(1)).await;
        b.received();
        let started = Instant::now();
        assert_eq!(b.expired(T).await, "header_read_timeout");
        assert_eq!(started.elapsed().as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_write_closes_even_while_a_request_runs() {
        let a = Activity::new();
        let _running = a.start();
        a.write_pending();
        let started = Instant::now();
        assert_eq!(a.expired(T).await, "send_timeout");
        assert_eq!(started.elapsed().as_secs(), 3);
    }
}
