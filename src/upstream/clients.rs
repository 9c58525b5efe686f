//! Per-client upstream sessions (`session = "per-client"`): the live ones of one upstream,
//! by client session, at most `max_client_sessions`; each one is a [`Replica`] of its own (a
//! process, or an HTTP session with its own `Mcp-Session-Id`) that stops when its client
//! session ends or it idles for `idle_timeout`. Its breaker is shared with the other
//! per-client sessions on the same base replica (the URL, or the upstream's command), so a
//! broken upstream fails fast for every client while each client keeps its own state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::breaker::{Breaker, BreakerConfig};
use super::replica::Replica;
use crate::error::GatewayError;

/// How long a client refused for the cap is asked to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The per-client upstream sessions of one upstream.
pub struct ClientSessions {
    upstream: Arc<str>,
    max: usize,
    idle: Duration,
    live: Mutex<HashMap<u64, Arc<Replica>>>,
    breakers: Vec<Arc<Breaker>>,
}

impl ClientSessions {
    /// No sessions yet; at most `max`, stopped after `idle` without calls; one breaker per
    /// base replica (`bases`: URLs of an HTTP upstream, 1 for stdio).
    pub fn new(upstream: &Arc<str>, max: usize, idle: Duration, bases: usize, breaker: &BreakerConfig) -> Self {
        ClientSessions {
            upstream: Arc::clone(upstream),
            max,
            idle,
            live: Mutex::default(),
            breakers: (0..bases.max(1)).map(|_| Arc::new(Breaker::new(breaker.clone()))).collect(),
        }
    }

    /// The live session of client `key`, if any.
    pub fn get(&self, key: u64) -> Option<Arc<Replica>> {
        self.live.lock().expect("clients lock").get(&key).cloned()
    }

    /// The session of client `key`: the live one, or the one `start` makes (given the base
    /// replica it goes to and that base's shared breaker). The second value tells whether it
    /// was started now.
    ///
    /// Errors: [`GatewayError::Overloaded`] when `max_client_sessions` sessions are live.
    pub fn get_or_start(
        &self,
        key: u64,
        start: impl FnOnce(usize, Arc<Breaker>) -> Arc<Replica>,
    ) -> Result<(Arc<Replica>, bool), GatewayError> {
        let mut live = self.live.lock().expect("clients lock");
        if let Some(r) = live.get(&key) {
            return Ok((Arc::clone(r), false));
        }
        if live.len() >= self.max {
            tracing::warn!(upstream = %self.upstream, max = self.max, "per-client upstream sessions are at max_client_sessions");
            return Err(GatewayError::Overloaded {
                reason: format!(
                    "upstream {} has {} per-client sessions (max_client_sessions)",
                    self.upstream, self.max
                ),
                retry_after: RETRY_AFTER,
            });
        }
        let base = (key % self.breakers.len() as u64) as usize;
        let replica = start(base, Arc::clone(&self.breakers[base]));
        live.insert(key, Arc::clone(&replica));
        Ok((replica, true))
    }

    /// Forget client `key`'s session `replica` (not a newer one) and stop it.
    pub fn end(&self, key: u64, replica: &Arc<Replica>) {
        let mut live = self.live.lock().expect("clients lock");
        if live.get(&key).is_some_and(|r| Arc::ptr_eq(r, replica)) {
            live.remove(&key);
        }
        drop(live);
        replica.stop.cancel();
    }

    /// Stop `replica` once its client session ends, it idles for `idle_timeout`, or the
    /// gateway shuts down (its stop token fires).
    pub async fn reap_when_done(self: Arc<Self>, key: u64, replica: Arc<Replica>) {
        let Some(ended) = replica.owner().map(|o| o.link.ended.clone()) else { return };
        let every = (self.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        let why = loop {
            tokio::select! {
                () = ended.cancelled() => break "its client session ended",
                () = replica.stop.cancelled() => break "the gateway is stopping",
                () = tokio::time::sleep(every) => {
                    if replica.outstanding() == 0 && replica.idle_for() >= self.idle {
                        break "it was idle";
                    }
                }
            }
        };
        tracing::info!(upstream = %self.upstream, replica = replica.index, why, "stopping a per-client upstream session");
        self.end(key, &replica);
    }

    /// Live per-client sessions now.
    pub fn len(&self) -> usize {
        self.live.lock().expect("clients lock").len()
    }

    /// Whether none is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most that may be live (`max_client_sessions`).
    pub fn max(&self) -> usize {
        self.max
    }

    /// The live sessions now.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        self.live.lock().expect("clients lock").values().cloned().collect()
    }
}
