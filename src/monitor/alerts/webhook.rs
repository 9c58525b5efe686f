//! Webhook delivery: one task per webhook takes the alerts queued to it in order and POSTs
//! each (the alert as JSON, or Slack's `{"text": …}`), retrying a failed attempt (no answer,
//! 408, 429, 5xx) after a backoff that doubles from `[alerts] backoff` up to 60 s, each wait
//! drawn from its upper half (jitter), for at most `attempts` attempts; other answers end the
//! delivery. The queue holds at most `[alerts] queue` alerts: one that finds it full is
//! dropped and logged, so a dead webhook costs bounded memory.
//!
//! Each delivery carries `Idempotency-Key: <alert id>:<state>`, and the task skips a key it
//! has delivered (the last 1024), so each state change reaches a webhook once even if it is
//! queued twice; a receiver can use the header to drop the rare duplicate a lost answer to a
//! delivered attempt makes.
//!
//! The URL is logged through `crate::observe::redact::url`; header values are never logged.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::Full;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::{AlertsConfig, Format, Webhook};
use super::{Alert, State};
use crate::upstream::http::HttpClient;

/// Delivery keys remembered per webhook.
const REMEMBERED: usize = 1024;
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A webhook's counters, for `GET /admin/alerts`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// The URL without user info and query.
    pub url: String,
    /// State changes delivered (answered 2xx).
    pub delivered: u64,
    /// Deliveries given up (attempts spent, or a final answer that was not 2xx).
    pub failed: u64,
    /// Alerts dropped because the queue was full.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// One queued delivery.
struct Delivery {
    key: String,
    body: Bytes,
}

/// One webhook: its queue, format and counters.
pub struct Hook {
    tx: mpsc::Sender<Delivery>,
    format: Format,
    shown: String,
    counters: Arc<Counters>,
}

/// How the task reaches the webhook and how hard it tries.
struct Target {
    client: HttpClient,
    uri: Uri,
    headers: HeaderMap,
    shown: String,
    attempts: u32,
    backoff: Duration,
    timeout: Duration,
}

impl Hook {
    /// Start `webhook`'s delivery task (until `stop`) with `config`'s bounds.
    pub fn spawn(webhook: &Webhook, config: &AlertsConfig, client: HttpClient, stop: CancellationToken) -> Hook {
        let shown = crate::observe::redact::url(&webhook.url);
        let mut headers = HeaderMap::new();
        for (k, v) in &webhook.headers {
            // Validated with the configuration.
            if let (Ok(k), Ok(mut v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v.as_str())) {
                v.set_sensitive(true);
                headers.insert(k, v);
            }
        }
        let (tx, rx) = mpsc::channel(config.queue);
        let counters = Arc::new(Counters::default());
        let target = Target {
            client,
            uri: webhook.url.parse().unwrap_or_default(),
            headers,
            shown: shown.clone(),
            attempts: config.attempts,
            backoff: config.backoff,
            timeout: config.timeout,
        };
        tokio::spawn(run(target, rx, Arc::clone(&counters), stop));
        Hook { tx, format: webhook.format, shown, counters }
    }

    /// Queue `alert` (firing or resolved) for delivery; drop it when the queue is full.
    pub fn send(&self, alert: &Alert) {
        let key = format!("{}:{}", alert.id, state_name(alert.state));
        let body = match self.format {
            Format::Json => serde_json::to_vec(alert).unwrap_or_default(),
            Format::Slack => serde_json::to_vec(&serde_json::json!({ "text": slack_text(alert) })).unwrap_or_default(),
        };
        if self.tx.try_send(Delivery { key, body: Bytes::from(body) }).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(webhook = %self.shown, alert = %alert.id, "alert webhook queue full (or stopped); dropped");
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Stats {
        Stats {
            url: self.shown.clone(),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Pending => "pending",
        State::Firing => "firing",
        State::Resolved => "resolved",
    }
}

/// `[FIRING] HIGH: <title> — <description> (<id>)`.
pub fn slack_text(a: &Alert) -> String {
    let state = state_name(a.state).to_ascii_uppercase();
    format!("[{state}] {}: {} — {} ({})", a.severity.as_str().to_ascii_uppercase(), a.title, a.description, a.id)
}

/// The wait before retry `n` (1 for the first retry): `backoff × 2^(n-1)`, at most 60 s, drawn
/// uniformly from its upper half.
pub fn backoff(base: Duration, n: u32) -> Duration {
    let full = base.saturating_mul(1u32 << (n.saturating_sub(1)).min(16)).min(MAX_BACKOFF);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

async fn run(target: Target, mut rx: mpsc::Receiver<Delivery>, counters: Arc<Counters>, stop: CancellationToken) {
    let mut seen: HashSet<String> = HashSet::new();
    let mut order: VecDeque<String> = VecDeque::new();
    loop {
        let d = tokio::select! {
            d = rx.recv() => match d { Some(d) => d, None => return },
            () = stop.cancelled() => return,
        };
        if seen.contains(&d.key) {
            continue;
        }
        let ok = tokio::select! {
            ok = deliver(&target, &d) => ok,
            () = stop.cancelled() => return,
        };
        if ok {
            counters.delivered.fetch_add(1, Ordering::Relaxed);
            if order.len() == REMEMBERED
                && let Some(old) = order.pop_front()
            {
                seen.remove(&old);
            }
            seen.insert(d.key.clone());
            order.push_back(d.key);
        } else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Attempts to deliver `d` until one is answered 2xx (true) or the attempts are spent or an
/// answer is final (false).
async fn deliver(t: &Target, d: &Delivery) -> bool {
    for attempt in 1..=t.attempts {
        let mut req = Request::post(t.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("sekisho/", env!("CARGO_PKG_VERSION")))
            .header("idempotency-key", d.key.as_str())
            .body(Full::new(d.body.clone()))
            .expect("a valid request");
        req.headers_mut().extend(t.headers.clone());
        let outcome = match tokio::time::timeout(t.timeout, t.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp.status()),
            Ok(Err(e)) => Err(crate::observe::redact::url(&format!("{e:?}"))),
            Err(_) => Err("no answer in time".to_string()),
        };
        let retry = match &outcome {
            Ok(s) if s.is_success() => return true,
            Ok(s) => *s == StatusCode::REQUEST_TIMEOUT || *s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error(),
            Err(_) => true,
        };
        let why = match outcome {
            Ok(s) => format!("answered {}", s.as_u16()),
            Err(e) => e,
        };
        if !retry || attempt == t.attempts {
            tracing::warn!(webhook = %t.shown, key = %d.key, attempt, "alert webhook delivery given up: {why}");
            return false;
        }
        let wait = backoff(t.backoff, attempt);
        tracing::info!(webhook = %t.shown, key = %d.key, attempt, wait_ms = wait.as_millis() as u64, "alert webhook delivery failed ({why}); retrying");
        tokio::time::sleep(wait).await;
    }
    false
}
