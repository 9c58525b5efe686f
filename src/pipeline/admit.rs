//! Middleware that admits calls by priority: a concurrency limit (a bulkhead) with a bounded
//! queue ordered by priority class with aging, fair between callers, shedding the lowest
//! priority first when the queue is full, and failing calls that wait longer than the queue
//! time limit. The same [`Admission`] guards each upstream (its per-upstream bulkhead).
//!
//! ```toml
//! [admission]                   # the global limit, across all upstreams
//! enabled = true
//! max_concurrent = 1024
//! queue_size = 1024
//! queue_timeout = "5s"
//! aging = "1s"                  # each second of waiting raises a call by one class
//! default_priority = "medium"   # when neither _meta nor header nor API key says otherwise
//! ```
//!
//! A call's priority comes from `_meta["io.sekisho/priority"]`, else the `Sekisho-Priority`
//! HTTP header, else the API key's `priority`, else `default_priority`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tower::{Layer, Service};

use super::ctx::{Call, Principal, Priority, Reply};
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};

/// Admission settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Whether calls are admitted through the global limit at all.
    pub enabled: bool,
    /// Calls running at once across the gateway.
    pub max_concurrent: usize,
    /// Calls waiting at most; beyond it the lowest priority is shed.
    pub queue_size: usize,
    /// Longest wait in the queue.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Waiting this long raises a call by one priority class (so low priority is never starved).
    #[serde(with = "humantime_serde")]
    pub aging: Duration,
    /// Priority of calls that name none.
    pub default_priority: Priority,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            enabled: true,
            max_concurrent: 1024,
            queue_size: 1024,
            queue_timeout: Duration::from_secs(5),
            aging: Duration::from_secs(1),
            default_priority: Priority::Medium,
        }
    }
}

impl AdmissionConfig {
    /// Problems with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_concurrent == 0 {
            p.push("admission.max_concurrent must be at least 1".into());
        }
        if self.aging < Duration::from_millis(1) {
            p.push("admission.aging must be at least 1ms".into());
        }
        p
    }
}

struct Waiter {
    seq: u64,
    priority: Priority,
    caller: Principal,
    enqueued: Instant,
    tx: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    in_use: usize,
    per_caller: HashMap<Principal, usize>,
    waiters: Vec<Waiter>,
}

/// A concurrency limit with a priority queue.
pub struct Admission {
    name: Name,
    capacity: usize,
    queue_size: usize,
    queue_timeout: Duration,
    aging: Duration,
    state: Mutex<State>,
    seq: AtomicU64,
}

/// One admitted call; dropping it frees the slot for the best waiter.
pub struct Permit {
    admission: Arc<Admission>,
    caller: Principal,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(&self.caller);
    }
}

impl Admission {
    /// A limit named `name` (for metrics) with the given settings.
    pub fn new(name: Name, capacity: usize, queue_size: usize, queue_timeout: Duration, aging: Duration) -> Arc<Self> {
        Arc::new(Admission {
            name,
            capacity: capacity.max(1),
            queue_size,
            queue_timeout,
            aging: aging.max(Duration::from_millis(1)),
            state: Mutex::default(),
            seq: AtomicU64::new(0),
        })
    }

    fn overloaded(&self, reason: &str) -> GatewayError {
        GatewayError::Overloaded {
            reason: format!("{} {reason}", self.name.as_str()),
            retry_after: Duration::from_secs(1),
        }
    }

    /// Take a slot without waiting, if one is free and nobody waits.
    pub fn try_acquire(self: &Arc<Self>, caller: &Principal) -> Option<Permit> {
        let mut s = self.state.lock().expect("admission lock");
        if s.in_use < self.capacity && s.waiters.is_empty() {
            s.in_use += 1;
            *s.per_caller.entry(caller.clone()).or_default() += 1;
            return Some(Permit { admission: Arc::clone(self), caller: caller.clone() });
        }
        None
    }

    /// Take a slot, waiting in the priority queue when none is free.
    ///
    /// Errors: [`GatewayError::Overloaded`] when the queue is full of calls at least as
    /// important, when a more important call displaced this one, or after `queue_timeout`.
    pub async fn acquire(self: &Arc<Self>, priority: Priority, caller: &Principal) -> Result<Permit, GatewayError> {
        if let Some(p) = self.try_acquire(caller) {
            return Ok(p);
        }
        let (tx, rx) = oneshot::channel();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut s = self.state.lock().expect("admission lock");
            if s.waiters.len() >= self.queue_size {
                // Shed the least important waiter (the newest among equals), or this call.
                let worst = s
                    .waiters
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, w)| (w.priority.rank(), w.seq))
                    .map(|(i, w)| (i, w.priority));
                match worst {
                    Some((i, worst)) if worst.rank() > priority.rank() => {
                        let shed = s.waiters.swap_remove(i);
                        METRICS.shed(self.name.clone(), shed.priority.label());
                        drop(shed.tx);
                    }
                    _ => {
                        METRICS.shed(self.name.clone(), priority.label());
                        return Err(self.overloaded("queue is full"));
                    }
                }
            }
            s.waiters.push(Waiter { seq, priority, caller: caller.clone(), enqueued: Instant::now(), tx });
        }
        let mut guard = Waiting { admission: self, seq, caller, rx: Some(rx), done: false };
        let outcome = tokio::time::timeout(self.queue_timeout, guard.rx.as_mut().expect("set above")).await;
        guard.done = true;
        match outcome {
            Ok(Ok(())) => Ok(Permit { admission: Arc::clone(self), caller: caller.clone() }),
            Ok(Err(_)) => Err(self.overloaded("shed this call for more important work")),
            Err(_) => {
                // Timed out, unless a grant raced the deadline.
                let mut s = self.state.lock().expect("admission lock");
                if let Some(i) = s.waiters.iter().position(|w| w.seq == seq) {
                    s.waiters.swap_remove(i);
                    drop(s);
                    METRICS.shed(self.name.clone(), priority.label());
                    Err(self.overloaded(&format!("queue wait exceeded {} ms", self.queue_timeout.as_millis())))
                } else {
                    drop(s);
                    Ok(Permit { admission: Arc::clone(self), caller: caller.clone() })
                }
            }
        }
    }

    fn release(&self, caller: &Principal) {
        let mut s = self.state.lock().expect("admission lock");
        s.in_use -= 1;
        if let Some(n) = s.per_caller.get_mut(caller) {
            *n -= 1;
            if *n == 0 {
                s.per_caller.remove(caller);
            }
        }
        let now = Instant::now();
        while s.in_use < self.capacity && !s.waiters.is_empty() {
            // Strict priority with aging; among equals the caller with fewer running calls,
            // then first come first served.
            let aging = self.aging.as_secs_f64();
            let pick = s
                .waiters
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    let score = |w: &Waiter| {
                        f64::from(w.priority.rank()) - now.duration_since(w.enqueued).as_secs_f64() / aging
                    };
                    let share = |w: &Waiter| s.per_caller.get(&w.caller).copied().unwrap_or(0);
                    score(a)
                        .partial_cmp(&score(b))
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then(share(a).cmp(&share(b)))
                        .then(a.seq.cmp(&b.seq))
                })
                .map(|(i, _)| i)
                .expect("non-empty");
            let w = s.waiters.swap_remove(pick);
            if w.tx.send(()).is_ok() {
                s.in_use += 1;
                *s.per_caller.entry(w.caller).or_default() += 1;
            }
        }
    }

    /// Calls running now.
    pub fn in_use(&self) -> usize {
        self.state.lock().expect("admission lock").in_use
    }

    /// Calls waiting now.
    pub fn queued(&self) -> usize {
        self.state.lock().expect("admission lock").waiters.len()
    }
}

/// Cleans up after a waiter whose caller went away: it leaves the queue, or, when a slot was
/// granted to it in the meantime, gives the slot back.
struct Waiting<'a> {
    admission: &'a Arc<Admission>,
    seq: u64,
    caller: &'a Principal,
    rx: Option<oneshot::Receiver<()>>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.admission.state.lock().expect("admission lock");
        if let Some(i) = s.waiters.iter().position(|w| w.seq == self.seq) {
            s.waiters.swap_remove(i);
            return;
        }
        drop(s);
        if let Some(mut rx) = self.rx.take()
            && rx.try_recv().is_ok()
        {
            self.admission.release(self.caller);
        }
    }
}

/// Adds [`Admit`] around a service.
#[derive(Clone)]
pub struct AdmitLayer {
    admission: Arc<Admission>,
}

impl AdmitLayer {
    /// The global limit from `[admission]`.
    pub fn new(config: &AdmissionConfig) -> Self {
        AdmitLayer {
            admission: Admission::new(
                Name::Static("gateway"),
                config.max_concurrent,
                config.queue_size,
                config.queue_timeout,
                config.aging,
            ),
        }
    }
}

impl<S> Layer<S> for AdmitLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit { inner, admission: Arc::clone(&self.admission) }
    }
}

/// Holds a slot of the global limit for the duration of each call.
#[derive(Clone)]
pub struct Admit<S> {
    inner: S,
    admission: Arc<Admission>,
}

type Waited = Pin<Box<dyn Future<Output = Result<Permit, GatewayError>> + Send>>;

impl<S> Service<Call> for Admit<S>
where
    S: Service<Call, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = AdmitFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> AdmitFuture<S> {
        // Fast path (a free slot): no allocation, the inner future runs as is.
        if let Some(permit) = self.admission.try_acquire(&call.ctx.principal) {
            return AdmitFuture::Running { inner: self.inner.call(call), _permit: permit };
        }
        let admission = Arc::clone(&self.admission);
        let (priority, caller) = (call.ctx.priority, call.ctx.principal.clone());
        let wait: Waited = Box::pin(async move { admission.acquire(priority, &caller).await });
        AdmitFuture::Waiting { wait, call: Some(call), inner: Some(self.inner.clone()) }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Admit`].
    #[project = AdmitProj]
    pub enum AdmitFuture<S: Service<Call>> {
        /// Waiting for a slot.
        Waiting { wait: Waited, call: Option<Call>, inner: Option<S> },
        /// Admitted.
        Running { #[pin] inner: S::Future, _permit: Permit },
    }
}

impl<S> Future for AdmitFuture<S>
where
    S: Service<Call, Response = Reply, Error = GatewayError>,
{
    type Output = Result<Reply, GatewayError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                AdmitProj::Running { inner, .. } => return inner.poll(cx),
                AdmitProj::Waiting { wait, call, inner } => {
                    let permit = std::task::ready!(wait.as_mut().poll(cx))?;
                    let (call, mut inner) = (call.take().expect("polled once"), inner.take().expect("polled once"));
                    let fut = inner.call(call);
                    self.set(AdmitFuture::Running { inner: fut, _permit: permit });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Principal {
        Principal::ApiKey(i)
    }

    #[tokio::test]
    async fn strict_priority_and_shedding_lowest_first() {
        let a = Admission::new(Name::Static("t"), 1, 2, Duration::from_secs(5), Duration::from_secs(60));
        let held = a.acquire(Priority::Medium, &key(0)).await.unwrap();
        let low = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.acquire(Priority::Low, &key(1)).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        let high = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.acquire(Priority::High, &key(2)).await.map(|_p| "high") }
        });
        tokio::task::yield_now().await;
        // The queue (2) is full; a critical call displaces the low one.
        let critical = tokio::spawn({
            let a = Arc::clone(&a);
            async move {
                let _p = a.acquire(Priority::Critical, &key(3)).await?;
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, GatewayError>("critical")
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(matches!(low.await.unwrap(), Err(GatewayError::Overloaded { .. })), "low was shed");
        assert_eq!(a.queued(), 2);
        drop(held);
        assert_eq!(critical.await.unwrap().unwrap(), "critical");
        assert_eq!(high.await.unwrap().unwrap(), "high");
        assert_eq!(a.in_use(), 0);
    }

    #[tokio::test]
    async fn queue_timeout_and_aging() {
        let a = Admission::new(Name::Static("t"), 1, 10, Duration::from_millis(50), Duration::from_millis(1));
        let held = a.acquire(Priority::Medium, &key(0)).await.unwrap();
        assert!(matches!(a.acquire(Priority::Low, &key(1)).await, Err(GatewayError::Overloaded { .. })), "times out");
        assert_eq!(a.queued(), 0);
        // With 1 ms aging, an old low-priority waiter outranks a fresh high-priority one.
        let old_low = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.acquire(Priority::Low, &key(1)).await.map(|_| Instant::now()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fresh_high = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.acquire(Priority::High, &key(2)).await.map(|_| Instant::now()) }
        });
        tokio::task::yield_now().await;
        drop(held);
        let (l, h) = (old_low.await.unwrap().unwrap(), fresh_high.await.unwrap().unwrap());
        assert!(l <= h, "aging let the old low-priority call in first");
    }

    #[tokio::test]
    async fn fair_share_between_callers() {
        let a = Admission::new(Name::Static("t"), 2, 10, Duration::from_secs(5), Duration::from_secs(60));
        let p1 = a.acquire(Priority::Medium, &key(1)).await.unwrap();
        let _p2 = a.acquire(Priority::Medium, &key(1)).await.unwrap();
        let busy = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.acquire(Priority::Medium, &key(1)).await.map(|_| 1) }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let quiet = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.acquire(Priority::Medium, &key(2)).await.map(|_| 2) }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(p1);
        assert_eq!(quiet.await.unwrap().unwrap(), 2, "the caller with fewer running calls goes first");
        busy.abort();
    }
}
