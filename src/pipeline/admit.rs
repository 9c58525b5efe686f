//! Middleware that admits calls by priority: a concurrency limit with a bounded queue ordered by
//! priority class with aging, fair between callers, shedding the lowest priority first when the
//! queue is full, and failing calls that wait longer than the queue time limit. The same
//! [`Admit`] step is the gateway's global limit and each upstream's bulkhead.
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
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::Service;

use super::parts::{Principal, Priority};
use super::steps::{Named, Stepped};
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::switches::{Layer, Switches};

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
    /// The most important priority an anonymous caller (no API keys configured, or stdio) may
    /// ask for: `medium`, or `default_priority` when that is higher (a caller may always ask
    /// for what it gets without asking).
    pub fn anonymous_ceiling(&self) -> Priority {
        Priority::Medium.min(self.default_priority)
    }

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
    /// Calls that had to wait so far (each waiting call takes one number).
    seq: AtomicU64,
    /// The longest queue since [`Admission::take_peak`] last read it.
    peak: std::sync::atomic::AtomicUsize,
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
            peak: std::sync::atomic::AtomicUsize::new(0),
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
                        METRICS.shed(self.name.clone(), shed.priority.label(), caller_name(&shed.caller));
                        drop(shed.tx);
                    }
                    _ => {
                        METRICS.shed(self.name.clone(), priority.label(), caller_name(caller));
                        return Err(self.overloaded("queue is full"));
                    }
                }
            }
            s.waiters.push(Waiter { seq, priority, caller: caller.clone(), enqueued: Instant::now(), tx });
            self.peak.fetch_max(s.waiters.len(), Ordering::Relaxed);
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
                    METRICS.shed(self.name.clone(), priority.label(), caller_name(caller));
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
            // Strict priority by class, where every `aging` of waiting raises a call one class;
            // within a class the caller with fewer running calls, then first come first served.
            let aging = self.aging.as_nanos().max(1);
            let class = |w: &Waiter| {
                let raised = now.duration_since(w.enqueued).as_nanos() / aging;
                u128::from(w.priority.rank()).saturating_sub(raised)
            };
            let share = |w: &Waiter| s.per_caller.get(&w.caller).copied().unwrap_or(0);
            let pick = s
                .waiters
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| class(a).cmp(&class(b)).then(share(a).cmp(&share(b))).then(a.seq.cmp(&b.seq)))
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

    /// Calls that found no free slot and waited (or were shed) since start; cumulative.
    pub fn waited(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// The longest the queue was since the last call of this (the monitor's reading), and
    /// start over from the queue's length now.
    pub fn take_peak(&self) -> usize {
        let now = self.queued();
        self.peak.swap(now, Ordering::Relaxed).max(now)
    }

    /// Calls it lets run at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// A caller's metric label: its stable id, shared (no copy).
fn caller_name(caller: &Principal) -> Name {
    match caller {
        Principal::Anonymous => Name::Static(crate::pipeline::parts::ANONYMOUS),
        Principal::ApiKey(identity) => Name::Shared(Arc::clone(&identity.id)),
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

/// What admission needs to know of a request: its priority and who sent it.
pub trait Admissible {
    /// The request's priority class.
    fn priority(&self) -> Priority;
    /// The caller, for fair sharing between callers.
    fn caller(&self) -> &Principal;
}

/// Holds a slot of its limit for the duration of each call: the gateway's global limit
/// (`admission`) or an upstream's bulkhead (`bulkhead`).
#[derive(Clone)]
pub struct Admit {
    admission: Arc<Admission>,
    step: &'static str,
    /// The runtime switches, for the global step (`admission` off: calls pass unlimited);
    /// `None` for a bulkhead, which no switch turns off.
    switches: Option<Arc<Switches>>,
}

impl Admit {
    /// The global limit from `[admission]`, while `switches` leave `admission` on.
    pub fn global(config: &AdmissionConfig, switches: &Arc<Switches>) -> Self {
        let admission = Admission::new(
            Name::Static("gateway"),
            config.max_concurrent,
            config.queue_size,
            config.queue_timeout,
            config.aging,
        );
        Admit { admission, step: "admission", switches: Some(Arc::clone(switches)) }
    }

    /// An upstream's bulkhead over `admission`.
    pub fn bulkhead(admission: Arc<Admission>) -> Self {
        Admit { admission, step: "bulkhead", switches: None }
    }

    /// The limit (for metrics).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }
}

impl Named for Admit {
    fn name(&self) -> &'static str {
        self.step
    }
}

type Waited = Pin<Box<dyn Future<Output = Result<Permit, GatewayError>> + Send>>;

impl<S, R> Service<R> for Stepped<Admit, S>
where
    R: Admissible,
    S: Service<R, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = GatewayError;
    type Future = AdmitFuture<S, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> AdmitFuture<S, R> {
        if self.step.switches.as_ref().is_some_and(|s| !s.on(Layer::Admission)) {
            return AdmitFuture::Passed { inner: self.inner.call(req) };
        }
        // Fast path (a free slot): no allocation, the inner future runs as is.
        if let Some(permit) = self.step.admission.try_acquire(req.caller()) {
            return AdmitFuture::Running { inner: self.inner.call(req), _permit: permit };
        }
        let admission = Arc::clone(&self.step.admission);
        let (priority, caller) = (req.priority(), req.caller().clone());
        let wait: Waited = Box::pin(async move { admission.acquire(priority, &caller).await });
        AdmitFuture::Waiting { wait, req: Some(req), inner: Some(self.inner.clone()) }
    }
}

pin_project_lite::pin_project! {
    /// The future of an admission step.
    #[project = AdmitProj]
    pub enum AdmitFuture<S: Service<R>, R> {
        /// Waiting for a slot.
        Waiting { wait: Waited, req: Option<R>, inner: Option<S> },
        /// Admitted.
        Running { #[pin] inner: S::Future, _permit: Permit },
        /// Passed without a slot (the `admission` switch is off).
        Passed { #[pin] inner: S::Future },
    }
}

impl<S, R> Future for AdmitFuture<S, R>
where
    S: Service<R, Error = GatewayError>,
{
    type Output = Result<S::Response, GatewayError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                AdmitProj::Running { inner, .. } | AdmitProj::Passed { inner } => return inner.poll(cx),
                AdmitProj::Waiting { wait, req, inner } => {
                    let permit = std::task::ready!(wait.as_mut().poll(cx))?;
                    let (req, mut inner) = (req.take().expect("polled once"), inner.take().expect("polled once"));
                    let fut = inner.call(req);
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
        let id = format!("caller-{i}").into();
        Principal::ApiKey(Arc::new(crate::pipeline::parts::Identity { id, ..Default::default() }))
    }

    /// Acquire on its own task and record, in `order`, when the slot was granted.
    fn queued(
        a: &Arc<Admission>,
        p: Priority,
        caller: usize,
        order: &Arc<Mutex<Vec<&'static str>>>,
        label: &'static str,
    ) -> tokio::task::JoinHandle<Result<(), GatewayError>> {
        let (a, order) = (Arc::clone(a), Arc::clone(order));
        tokio::spawn(async move {
            let _permit = a.acquire(p, &key(caller)).await?;
            order.lock().unwrap().push(label);
            Ok(())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn strict_priority_and_shedding_lowest_first() {
        let a = Admission::new(Name::Static("t"), 1, 2, Duration::from_secs(5), Duration::from_secs(60));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = a.acquire(Priority::Medium, &key(0)).await.unwrap();
        let low = queued(&a, Priority::Low, 1, &order, "low");
        tokio::task::yield_now().await;
        let high = queued(&a, Priority::High, 2, &order, "high");
        tokio::task::yield_now().await;
        // The queue (2) is full; a critical call displaces the low one.
        let critical = queued(&a, Priority::Critical, 3, &order, "critical");
        tokio::task::yield_now().await;
        assert!(matches!(low.await.unwrap(), Err(GatewayError::Overloaded { .. })), "low was shed");
        assert_eq!(a.queued(), 2);
        drop(held);
        critical.await.unwrap().unwrap();
        high.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["critical", "high"]);
        assert_eq!(a.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_timeout_and_aging() {
        let a = Admission::new(Name::Static("t"), 1, 10, Duration::from_millis(50), Duration::from_millis(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = a.acquire(Priority::Medium, &key(0)).await.unwrap();
        let started = Instant::now();
        assert!(matches!(a.acquire(Priority::Low, &key(1)).await, Err(GatewayError::Overloaded { .. })), "times out");
        assert_eq!(started.elapsed(), Duration::from_millis(50), "after exactly queue_timeout");
        assert_eq!(a.queued(), 0);
        // With 1 ms aging, a low-priority waiter that waited 20 ms outranks a fresh high-priority one.
        let old_low = queued(&a, Priority::Low, 1, &order, "old low");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fresh_high = queued(&a, Priority::High, 2, &order, "fresh high");
        tokio::task::yield_now().await;
        drop(held);
        old_low.await.unwrap().unwrap();
        fresh_high.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["old low", "fresh high"], "aging let the old low-priority call in first");
    }

    #[tokio::test(start_paused = true)]
    async fn without_aging_the_higher_class_goes_first() {
        let a = Admission::new(Name::Static("t"), 1, 10, Duration::from_secs(60), Duration::from_secs(3600));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = a.acquire(Priority::Medium, &key(0)).await.unwrap();
        let old_low = queued(&a, Priority::Low, 1, &order, "old low");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fresh_high = queued(&a, Priority::High, 2, &order, "fresh high");
        tokio::task::yield_now().await;
        drop(held);
        old_low.await.unwrap().unwrap();
        fresh_high.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["fresh high", "old low"]);
    }

    #[tokio::test(start_paused = true)]
    async fn fair_share_between_callers() {
        let a = Admission::new(Name::Static("t"), 2, 10, Duration::from_secs(5), Duration::from_secs(60));
        let order = Arc::new(Mutex::new(Vec::new()));
        let p1 = a.acquire(Priority::Medium, &key(1)).await.unwrap();
        let _p2 = a.acquire(Priority::Medium, &key(1)).await.unwrap();
        let busy = queued(&a, Priority::Medium, 1, &order, "busy caller");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let quiet = queued(&a, Priority::Medium, 2, &order, "quiet caller");
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(p1);
        quiet.await.unwrap().unwrap();
        assert_eq!(order.lock().unwrap()[0], "quiet caller", "the caller with fewer running calls goes first");
        busy.abort();
    }
}
