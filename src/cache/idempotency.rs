//! Idempotency keys (the MCP-Tx pattern): a key is bound to its caller and the request's hash;
//! a repeat replays the stored answer, waits for a running first call, or fails on a different
//! request. Records live in Redis (`SET NX PX`) when it answers, else in process.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::IdempotencyConfig;
use super::entry::Entry;
use super::l2::L2;
use crate::error::GatewayError;
use crate::pipeline::parts::Principal;

/// What [`Idempotency::begin`] decided.
pub enum Begin {
    /// First use of the key: run the call, then [`Claim::complete`] it.
    Run(Claim),
    /// The key's call already finished: answer with this.
    Replay(Arc<Entry>),
}

/// The right to run the call of an idempotency key. Dropped without [`Claim::complete`]
/// (the call failed before an answer), the key is released so the caller may try again.
pub struct Claim {
    records: Arc<Idempotency>,
    record: String,
    hash: String,
    local: Option<Outcome>,
    done: bool,
}

impl Claim {
    /// Record the answer for repeats within the window.
    pub async fn complete(mut self, entry: Arc<Entry>) {
        self.done = true;
        if let Some(outcome) = self.local.take() {
            // The channel keeps the answer for later repeats after the sender is gone.
            let _ = outcome.send(Some(entry));
            return;
        }
        if let Some(l2) = &self.records.l2 {
            let value = idem_value(&self.hash, Some(&entry));
            if l2.set(&self.record, &value, self.records.config.window, false).await.is_none() {
                tracing::warn!("could not record an idempotent result in Redis; a repeat may run the call again");
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(outcome) = self.local.take() {
            self.records.local.invalidate(&self.record);
            let _ = outcome.send(None);
        } else if let Some(l2) = self.records.l2.clone() {
            let record = std::mem::take(&mut self.record);
            tokio::spawn(async move { l2.del(&record).await });
        }
    }
}

/// An in-process idempotency record: the request hash and the first call's answer (`None`
/// while it runs).
pub struct IdemRecord {
    hash: String,
    answer: watch::Receiver<Option<Arc<Entry>>>,
}

fn idem_value(hash: &str, entry: Option<&Entry>) -> Vec<u8> {
    match entry {
        None => format!(r#"{{"h":"{hash}","s":"p"}}"#).into_bytes(),
        Some(e) => {
            let mut v = format!(r#"{{"h":"{hash}","s":"d","e":"#).into_bytes();
            v.extend_from_slice(&e.encode());
            v.push(b'}');
            v
        }
    }
}

/// Where the first call of a key announces its answer (`None`: it failed without one).
type Outcome = watch::Sender<Option<Arc<Entry>>>;

/// The idempotency records of one gateway process (and, through Redis, of the fleet).
pub struct Idempotency {
    config: IdempotencyConfig,
    local: moka::sync::Cache<String, Arc<IdemRecord>>,
    l2: Option<Arc<L2>>,
    prefix: String,
}

impl Idempotency {
    /// Records kept for `config.window`, in Redis through `l2` when given (keys under `prefix`).
    pub fn new(config: &IdempotencyConfig, l2: Option<Arc<L2>>, prefix: &str) -> Arc<Self> {
        Arc::new(Idempotency {
            local: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(config.window).build(),
            config: config.clone(),
            l2,
            prefix: prefix.to_string(),
        })
    }

    /// Whether idempotency keys are honoured.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Claim idempotency key `key` of `principal` for a request with hash `hash`, or find its
    /// answer.
    ///
    /// Errors: [`GatewayError::IdempotencyConflict`] when the key was used for a different
    /// request within the window; [`GatewayError::IdempotencyInProgress`] when the first call
    /// is still running after `wait`.
    ///
    /// `running_for` is the longest the call can take (all attempts): a Redis record of a call
    /// whose replica died mid-call expires after it, not after the whole window.
    pub async fn begin(
        self: &Arc<Self>,
        principal: &Principal,
        key: &str,
        hash: &[u8; 32],
        running_for: Duration,
    ) -> Result<Begin, GatewayError> {
        let hash = hex::encode(hash);
        let record = format!("{}idem:{}:{}", self.prefix, principal.label(), hex::encode(Sha256::digest(key)));
        let deadline = Instant::now() + self.config.wait;
        let conflict = || GatewayError::IdempotencyConflict { key: key.to_string() };
        loop {
            if let Some(l2) = &self.l2 {
                let pending = (running_for + Duration::from_secs(1)).min(self.config.window);
                match l2.set(&record, &idem_value(&hash, None), pending, true).await {
                    Some(true) => {
                        return Ok(Begin::Run(Claim {
                            records: Arc::clone(self),
                            record,
                            hash,
                            local: None,
                            done: false,
                        }));
                    }
                    Some(false) => {
                        if let Some(raw) = l2.get(&record).await {
                            #[derive(serde::Deserialize)]
                            struct Record<'a> {
                                h: &'a str,
                                #[serde(borrow)]
                                e: Option<&'a RawValue>,
                            }
                            if let Ok(r) = serde_json::from_slice::<Record<'_>>(&raw) {
                                if r.h != hash {
                                    return Err(conflict());
                                }
                                if let Some(e) = r.e.and_then(|e| Entry::decode(e.get().as_bytes())) {
                                    return Ok(Begin::Replay(Arc::new(e)));
                                }
                            }
                        }
                        if Instant::now() >= deadline {
                            return Err(GatewayError::IdempotencyInProgress { key: key.to_string() });
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    // Redis is failing: fall back to the in-process records.
                    None => {}
                }
            }
            let (tx, rx) = watch::channel(None);
            let entry = self
                .local
                .entry(record.clone())
                .or_insert_with(|| Arc::new(IdemRecord { hash: hash.clone(), answer: rx }));
            let fresh = entry.is_fresh();
            let rec = entry.into_value();
            if fresh {
                return Ok(Begin::Run(Claim { records: Arc::clone(self), record, hash, local: Some(tx), done: false }));
            }
            if rec.hash != hash {
                return Err(conflict());
            }
            let mut answer = rec.answer.clone();
            if let Some(e) = answer.borrow_and_update().clone() {
                return Ok(Begin::Replay(e));
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, answer.changed()).await {
                Err(_) => return Err(GatewayError::IdempotencyInProgress { key: key.to_string() }),
                Ok(_) => {
                    if let Some(e) = answer.borrow().clone() {
                        return Ok(Begin::Replay(e));
                    }
                    // The first call failed and released the key: try to claim it.
                }
            }
        }
    }
}
