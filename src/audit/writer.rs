//! The writer task: takes events from the bounded channel, turns calls into records, seals
//! them into the chain, and appends them in batches (by count and by time), anchoring the chain
//! every `anchor_every` records or `anchor_interval`. While the sink fails it keeps its batch
//! and retries with backoff without taking more events, so the channel is the buffer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::chain::{Chain, Sealed};
use super::config::AuditConfig;
use super::event::{Event, timestamp};
use super::record::{Kind, Record};
use super::sink::Sink;
use crate::observe::metrics::METRICS;

/// Tries to write what is left at a stop while the sink is failing.
const LAST_TRIES: u32 = 3;

/// Run until `stop` (then write what is buffered and a closing anchor) or until every sender
/// is gone.
pub(super) async fn run(
    mut rx: mpsc::Receiver<Event>,
    mut sink: Sink,
    mut chain: Chain,
    shared: Arc<Shared>,
    config: AuditConfig,
    stop: CancellationToken,
) {
    let mut batch: Vec<Sealed> = Vec::with_capacity(config.batch);
    let mut dropped_noted = 0u64;
    loop {
        let anchor_due = chain.last_anchor() + config.anchor_interval;
        let first = tokio::select! {
            biased;
            e = rx.recv() => e,
            () = stop.cancelled() => None,
            () = tokio::time::sleep_until(anchor_due.into()), if chain.since_anchor() > 0 => {
                batch.push(chain.anchor(false));
                write(&mut sink, &mut batch, &shared, &stop, None).await;
                continue;
            }
        };
        let Some(first) = first else { break };
        let deadline = Instant::now() + config.flush_interval;
        let mut next = Some(first);
        while let Some(event) = next.take() {
            note_dropped(&shared, &mut dropped_noted, &mut chain, &mut batch);
            batch.push(chain.seal(record_of(event, &shared)));
            if chain.since_anchor() >= config.anchor_every {
                batch.push(chain.anchor(false));
            }
            if batch.len() >= config.batch {
                break;
            }
            next = match rx.try_recv() {
                Ok(e) => Some(e),
                Err(_) => tokio::select! {
                    e = rx.recv() => e,
                    () = tokio::time::sleep_until(deadline) => None,
                    () = stop.cancelled() => None,
                },
            };
        }
        write(&mut sink, &mut batch, &shared, &stop, None).await;
        shared.depth();
    }
    // Stopping: what is buffered, a notice of what was dropped, a closing anchor.
    rx.close();
    while let Some(event) = rx.recv().await {
        batch.push(chain.seal(record_of(event, &shared)));
    }
    note_dropped(&shared, &mut dropped_noted, &mut chain, &mut batch);
    batch.push(chain.anchor(true));
    write(&mut sink, &mut batch, &shared, &stop, Some(LAST_TRIES)).await;
    if !batch.is_empty() {
        tracing::error!(
            records = batch.len(),
            "audit: the sink did not take the last records at shutdown; they are lost"
        );
    }
}

fn record_of(event: Event, shared: &Shared) -> Record {
    match event {
        Event::Call(call) => call.into_record(shared.redact.as_ref(), shared.max_argument_bytes),
        Event::Record(r) => *r,
    }
}

/// A `dropped` record for the records dropped since the last one noted.
fn note_dropped(shared: &Shared, noted: &mut u64, chain: &mut Chain, batch: &mut Vec<Sealed>) {
    let dropped = shared.dropped.load(Ordering::Relaxed);
    if dropped > *noted {
        let mut r = Record::new(Kind::Dropped, timestamp(SystemTime::now()));
        r.detail = Some(serde_json::json!({ "count": dropped - *noted, "total": dropped }));
        batch.push(chain.seal(r));
        *noted = dropped;
    }
}

/// Append `batch`, retrying with backoff (100 ms doubling to 5 s) until it is written; at
/// most `tries` times when given, and only while not stopped otherwise.
async fn write(
    sink: &mut Sink,
    batch: &mut Vec<Sealed>,
    shared: &Shared,
    stop: &CancellationToken,
    tries: Option<u32>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 0;
    while !batch.is_empty() {
        attempt += 1;
        match sink.append(batch).await {
            Ok(()) => {
                METRICS.audit.written(batch.len() as u64);
                batch.clear();
                if shared.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(sink = sink.name(), "audit: the sink takes records again");
                }
            }
            Err(e) => {
                METRICS.audit.sink_error();
                if !shared.failing.swap(true, Ordering::Relaxed) || attempt % 20 == 0 {
                    tracing::warn!(sink = sink.name(), error = %e, records = batch.len(), "audit: cannot write records; retrying");
                }
                if tries.is_some_and(|t| attempt >= t) {
                    return;
                }
                if tries.is_none() && stop.is_cancelled() {
                    return;
                }
                shared.depth();
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled(), if tries.is_none() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
