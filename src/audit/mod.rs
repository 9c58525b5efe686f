//! The tamper-evident audit log: one record per `tools/call`, `resources/read`, `prompts/get`,
//! admin action and approval decision, hash-chained per writer and appended off the call path
//! to PostgreSQL (`[store]`) or a JSON-lines file (docs/security.md "Audit log").
//!
//! ```toml
//! [audit]
//! enabled = true
//! path = "/var/log/sekisho/audit.jsonl"   # without [store]
//! on_audit_failure = "serve"              # or "refuse"
//! ```
//!
//! The call path (`pipeline::audited`) clones a few handles into a [`event::CallEvent`] and
//! `try_send`s it into a bounded channel (`buffer`); the writer task ([`writer`]) parses,
//! digests, redacts, seals into the [`chain::Chain`] and appends in batches ([`sink::Sink`]).
//! [`verify`] checks a stored chain; [`read`] reads records back for `sekisho audit tail|search`.

pub mod chain;
pub mod config;
pub mod event;
pub mod read;
pub mod record;
pub mod redact;
pub mod sink;
pub mod verify;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::{self, OwnedPermit, error::TrySendError};
use tokio_util::sync::CancellationToken;

pub use config::{AuditConfig, OnFailure, SinkKind};
pub use event::{CallEvent, Event, Outcome};
use record::{Kind, Record};
use redact::Redact;

use crate::observe::metrics::METRICS;
use crate::pipeline::parts::Principal;

/// The least time between two warnings about dropped records.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// State shared by the handle and the writer task.
struct Shared {
    redact: Arc<dyn Redact>,
    max_argument_bytes: usize,
    /// Records dropped because the buffer was full, since start.
    dropped: AtomicU64,
    /// Whether the last append failed.
    failing: AtomicBool,
    /// Milliseconds since the Unix epoch of the last dropped-records warning.
    last_warning_ms: AtomicU64,
    tx: mpsc::Sender<Event>,
}

impl Shared {
    /// Publish the buffer depth gauge.
    fn depth(&self) {
        METRICS.audit.depth((self.tx.max_capacity() - self.tx.capacity()) as i64);
    }
}

/// The audit log's handle: cheap to share, what the call path and the admin API write through.
pub struct Audit {
    shared: Arc<Shared>,
    policy: OnFailure,
    writer: String,
    sink: &'static str,
    stop: CancellationToken,
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("writer", &self.writer).field("sink", &self.sink).finish()
    }
}

/// The call cannot be recorded (`on_audit_failure = "refuse"` and the buffer is full).
#[derive(Clone, Copy, Debug)]
pub struct Refused;

impl Audit {
    /// Start the writer task for `config` (enabled and valid) on `sink`, as `replica`, with
    /// the default redaction ([`redact::Detectors`]).
    pub fn start(config: &AuditConfig, sink: sink::Sink, replica: &str) -> Arc<Audit> {
        Self::start_with(config, sink, replica, Arc::new(redact::Detectors))
    }

    /// [`Audit::start`] with another redaction (the sensitive-data detectors' hook).
    pub fn start_with(config: &AuditConfig, sink: sink::Sink, replica: &str, redact: Arc<dyn Redact>) -> Arc<Audit> {
        let (tx, rx) = mpsc::channel(config.buffer);
        let writer = format!("{replica}@{}", event::timestamp(SystemTime::now()));
        let shared = Arc::new(Shared {
            redact,
            max_argument_bytes: config.max_argument_bytes,
            dropped: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            last_warning_ms: AtomicU64::new(0),
            tx,
        });
        let stop = CancellationToken::new();
        let sink_name = sink.name();
        let chain = chain::Chain::new(writer.clone());
        let task = tokio::spawn(writer::run(rx, sink, chain, Arc::clone(&shared), config.clone(), stop.clone()));
        tracing::info!(writer, sink = sink_name, "audit log on");
        Arc::new(Audit {
            shared,
            policy: config.on_audit_failure,
            writer,
            sink: sink_name,
            stop,
            done: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// This writer's chain id (`<replica>@<start time>`).
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// What happens while the buffer is full.
    pub fn policy(&self) -> OnFailure {
        self.policy
    }

    /// A slot for one call's record, taken before the call runs (`refuse` only).
    ///
    /// Errors: [`Refused`] when the buffer is full (the sink is down or behind).
    pub fn reserve(&self) -> Result<OwnedPermit<Event>, Refused> {
        self.shared.tx.clone().try_reserve_owned().map_err(|_| {
            METRICS.audit.refused();
            Refused
        })
    }

    /// Hand `event` to the writer without waiting; a full buffer drops it (counted, warned
    /// about at most every 10 s, and noted in the chain once the sink takes records again).
    pub fn submit(&self, event: Event) {
        match self.shared.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped(),
            Err(TrySendError::Closed(_)) => self.dropped(),
        }
    }

    fn dropped(&self) {
        let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        METRICS.audit.dropped();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let last = self.shared.last_warning_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64
            && self.shared.last_warning_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(total, "audit: the buffer is full; records are dropped (on_audit_failure = \"serve\")");
        }
    }

    /// Records dropped since start.
    pub fn dropped_total(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting in the buffer now.
    pub fn depth(&self) -> usize {
        self.shared.tx.max_capacity() - self.shared.tx.capacity()
    }

    /// Whether the sink's last append failed.
    pub fn failing(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
    }

    /// Record an admin action by `caller`: `action` (`switch`, `cache/clear`, `drain`,
    /// `store/<kind>/<action>`), its object `name`, its `outcome` (`ok` or an error kind) and
    /// `detail` (parameters that are not secret).
    pub fn admin(
        &self,
        caller: &Principal,
        action: &str,
        name: Option<&str>,
        outcome: &str,
        detail: serde_json::Value,
    ) {
        let mut r = Self::by(Kind::Admin, caller);
        r.method = Some(action.to_string());
        r.name = name.map(str::to_string);
        r.outcome = Some(outcome.to_string());
        r.detail = (!detail.is_null()).then_some(detail);
        self.submit(Event::Record(Box::new(r)));
    }

    /// Record an approval decision on a held call (issue 15 item 3): who decided (`decider`),
    /// on which tool, `approved` or `denied`/`expired`, and `detail` (the held call's id,
    /// its caller, the argument digest).
    pub fn approval(&self, decider: &Principal, tool: &str, decision: &str, detail: serde_json::Value) {
        let mut r = Self::by(Kind::Approval, decider);
        r.method = Some("approval".into());
        r.name = Some(tool.to_string());
        r.outcome = Some(decision.to_string());
        r.detail = (!detail.is_null()).then_some(detail);
        self.submit(Event::Record(Box::new(r)));
    }

    fn by(kind: Kind, caller: &Principal) -> Record {
        let mut r = Record::new(kind, event::timestamp(SystemTime::now()));
        r.caller = Some(caller.label().to_string());
        if let Principal::ApiKey(identity) = caller {
            r.key_id = Some(identity.id.to_string());
            r.tenant = identity.tenant.as_deref().map(str::to_string);
        }
        r
    }

    /// Stop the writer: it writes what is buffered and a closing anchor (a few tries while
    /// the sink fails), then ends. Idempotent.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        if let Some(task) = self.done.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// Open the sink `config` names (`postgres_url`: the `[store]` database, when configured) and
/// start the audit log as `replica`; `None` when `[audit]` is off.
///
/// Errors: the PostgreSQL URL is not one (`crate::store::pool`'s message).
pub fn open(config: &AuditConfig, postgres_url: Option<&str>, replica: &str) -> Result<Option<Arc<Audit>>, String> {
    if !config.enabled {
        return Ok(None);
    }
    let sink = match (config.resolved_sink(postgres_url.is_some()), postgres_url) {
        (SinkKind::Postgres, Some(url)) => {
            sink::Sink::Postgres(crate::store::pool(url, 2, Duration::from_secs(5)).map_err(|e| e.to_string())?)
        }
        _ => sink::Sink::file(&config.path),
    };
    Ok(Some(Audit::start(config, sink, replica)))
}
