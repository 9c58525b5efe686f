//! What an upstream says outside of calls, on its way to the catalog follower: connections
//! coming and going, list changes, resource updates. The queue is bounded (design.md §8): an
//! upstream that floods notifications while the follower is busy loses the excess, which is
//! counted (`sekisho_upstream_discarded_total{kind="signal"}`); the follower then re-lists the
//! upstream and re-reads its status, so no list change or status change is lost for good
//! (a dropped `notifications/resources/updated` is: its cached read lives out its TTL).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::observe::metrics::METRICS;

/// Signals queued per upstream at most.
pub const SIGNAL_QUEUE: usize = 1024;

/// Something an upstream said that is not an answer to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The upstream (re)connected and completed its handshake.
    Up,
    /// The upstream went down (crash, session loss, failed handshake).
    Down,
    /// `notifications/{tools,prompts,resources}/list_changed`.
    ListChanged(ListKind),
    /// `notifications/resources/updated` with its raw params, and the client session whose
    /// per-client upstream session sent it (only that session hears of it), if any.
    ResourceUpdated(Bytes, Option<u64>),
    /// Signals were dropped because the queue was full: re-list everything, re-read the status.
    Resync,
}

/// Which list changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

/// Counts the list changes an upstream announced and the catalog refreshes that caught up with
/// them, so that a list request made right after a change waits for the refreshed catalog
/// (a client that calls a list-changing tool and then lists sees the change).
#[derive(Debug, Default)]
pub struct Freshness {
    announced: AtomicU64,
    caught_up: AtomicU64,
    notify: tokio::sync::Notify,
}

impl Freshness {
    /// Changes announced so far.
    pub fn announced(&self) -> u64 {
        self.announced.load(Ordering::Acquire)
    }

    /// The catalog now reflects every change up to `n`.
    pub fn caught_up_to(&self, n: u64) {
        self.caught_up.fetch_max(n, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Wait (at most `limit`) until the catalog reflects every change announced so far.
    pub async fn wait(&self, limit: std::time::Duration) {
        let target = self.announced();
        let _ = tokio::time::timeout(limit, async {
            loop {
                let notified = self.notify.notified();
                if self.caught_up.load(Ordering::Acquire) >= target {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }
}

/// Where a connection reports what its upstream says outside of calls (cheap to clone).
#[derive(Clone, Debug)]
pub struct Signals {
    upstream: Arc<str>,
    tx: mpsc::Sender<Signal>,
    overflowed: Arc<AtomicBool>,
    /// The upstream's list freshness.
    pub freshness: Arc<Freshness>,
    /// Drops `Up` and `Down`: a per-client upstream session coming and going says nothing
    /// about the upstream's catalog or health.
    quiet: bool,
}

impl Signals {
    /// The same queue for a per-client upstream session: list changes and resource updates
    /// go on, its connection's comings and goings are not reported.
    pub fn quiet(&self) -> Signals {
        Signals { quiet: true, ..self.clone() }
    }
}

/// The catalog follower's end of an upstream's signal queue.
pub struct SignalReceiver {
    rx: mpsc::Receiver<Signal>,
    overflowed: Arc<AtomicBool>,
}

impl Signals {
    /// A bounded queue ([`SIGNAL_QUEUE`]) for `upstream`'s signals, counting list changes in
    /// `freshness`.
    pub fn channel(upstream: &Arc<str>, freshness: Arc<Freshness>) -> (Signals, SignalReceiver) {
        let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
        let overflowed = Arc::new(AtomicBool::new(false));
        let signals = Signals {
            upstream: Arc::clone(upstream),
            tx,
            overflowed: Arc::clone(&overflowed),
            freshness,
            quiet: false,
        };
        (signals, SignalReceiver { rx, overflowed })
    }

    /// Report a signal without waiting; list changes are counted first, so a list request that
    /// follows the answer of the call that caused them already waits for the refresh. When the
    /// queue is full the signal is dropped, and the follower is told to resync: the flag is set
    /// before the `Resync` is tried, so a follower that drains the queue sees one or the other.
    pub fn send(&self, s: Signal) {
        if self.quiet && matches!(s, Signal::Up | Signal::Down) {
            return;
        }
        if matches!(s, Signal::ListChanged(_)) {
            self.freshness.announced.fetch_add(1, Ordering::AcqRel);
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(s) {
            METRICS.upstream_discarded(METRICS.upstream_name(&self.upstream), "signal");
            self.overflowed.store(true, Ordering::Release);
            let _ = self.tx.try_send(Signal::Resync);
        }
    }
}

impl SignalReceiver {
    /// The next signal; `None` when every sender is gone.
    pub async fn recv(&mut self) -> Option<Signal> {
        self.rx.recv().await
    }

    /// A queued signal, without waiting.
    pub fn try_recv(&mut self) -> Option<Signal> {
        self.rx.try_recv().ok()
    }

    /// Whether signals were dropped since the last call (then re-list everything).
    pub fn overflowed(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_bounded_and_asks_for_a_resync() {
        let (signals, mut rx) = Signals::channel(&Arc::from("t"), Arc::default());
        for _ in 0..(SIGNAL_QUEUE * 10) {
            signals.send(Signal::ListChanged(ListKind::Tools));
        }
        let mut queued = 0;
        while rx.try_recv().is_some() {
            queued += 1;
        }
        assert_eq!(queued, SIGNAL_QUEUE, "bounded");
        assert!(rx.overflowed(), "the follower learns that it missed some");
        assert!(!rx.overflowed(), "once");
        assert_eq!(signals.freshness.announced(), (SIGNAL_QUEUE * 10) as u64, "every change counted");
        signals.send(Signal::Down);
        assert_eq!(rx.try_recv(), Some(Signal::Down));
    }
}
