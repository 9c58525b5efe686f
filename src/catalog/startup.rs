//! The start-up gate: right after the gateway starts, list requests (and calls to names not
//! listed yet) wait until every enabled upstream has connected and been listed, or failed its
//! first start, so a client that reads the tool list once at start sees the whole catalog. The
//! wait is bounded by `[catalog] initial_wait` from start; upstreams still starting then are
//! named in the list's `_meta["io.sekisho/unavailableUpstreams"]` and arrive later through
//! `list_changed`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Which upstreams are still on their first start, and until when callers wait for them.
#[derive(Debug)]
pub struct StartupGate {
    starting: Mutex<BTreeSet<String>>,
    open: AtomicBool,
    opened: Notify,
    until: Instant,
}

impl StartupGate {
    /// A gate that waits for `upstreams`, at most `limit` from now.
    pub fn new<'a>(upstreams: impl IntoIterator<Item = &'a str>, limit: Duration) -> Self {
        let starting: BTreeSet<String> = upstreams.into_iter().map(str::to_string).collect();
        let open = AtomicBool::new(starting.is_empty());
        StartupGate { starting: Mutex::new(starting), open, opened: Notify::new(), until: Instant::now() + limit }
    }

    /// Note that `upstream`'s first start ended (listed, or failed); the last one opens the gate.
    pub fn settled(&self, upstream: &str) {
        if self.open.load(Ordering::Acquire) {
            return;
        }
        let mut starting = self.starting.lock().expect("startup lock");
        starting.remove(upstream);
        if starting.is_empty() {
            self.open.store(true, Ordering::Release);
            self.opened.notify_waiters();
        }
    }

    /// Whether callers no longer wait (every upstream settled, or the limit passed). One atomic
    /// load once open; the clock is read only during the start-up window.
    pub fn is_open(&self) -> bool {
        if self.open.load(Ordering::Acquire) {
            return true;
        }
        if Instant::now() >= self.until {
            self.open.store(true, Ordering::Release);
            self.opened.notify_waiters();
            return true;
        }
        false
    }

    /// Wait until the gate opens (at most until the limit).
    pub async fn wait(&self) {
        if self.is_open() {
            return;
        }
        let _ = tokio::time::timeout_at(self.until, async {
            loop {
                let opened = self.opened.notified();
                if self.open.load(Ordering::Acquire) {
                    return;
                }
                opened.await;
            }
        })
        .await;
        self.is_open();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_when_the_last_upstream_settles() {
        let gate = Arc::new(StartupGate::new(["a", "b"], Duration::from_secs(8)));
        gate.settled("a");
        assert!(!gate.is_open(), "b is still starting");
        let started = Instant::now();
        let waiter = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.wait().await }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!waiter.is_finished());
        gate.settled("b");
        waiter.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(2), "the waiter woke when b settled");
        assert!(gate.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_never_settles_holds_callers_only_until_the_limit() {
        let gate = StartupGate::new(["never"], Duration::from_secs(8));
        let started = Instant::now();
        gate.wait().await;
        assert_eq!(started.elapsed(), Duration::from_secs(8));
        assert!(gate.is_open());
        assert!(StartupGate::new([], Duration::from_secs(8)).is_open(), "nothing to wait for");
    }
}
