//! Coalescing (singleflight): identical concurrent cacheable calls share one upstream call. In
//! a process, the first call of a key leads and the others wait for its entry; across replicas
//! the leader takes a Redis lease (`SET NX PX`) and the others poll L2 for its result until the
//! lease runs out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::entry::{Entry, Level};
use super::l2::L2;
use super::store::Store;

/// What [`Coalescer::coalesce`] decided.
pub enum Flight {
    /// This call goes upstream; the others wait for it. Complete it with [`Leader::finish`].
    Leader(Leader),
    /// Another call with the same key finished first and left this entry.
    Shared(Arc<Entry>, Level),
    /// The entry was in L2 (a plain hit, found while taking the lead).
    Stored(Arc<Entry>),
    /// The one this call waited for failed: call upstream without coalescing.
    Alone,
}

/// The call that goes upstream for a key; dropping it without [`Leader::finish`] releases
/// the waiters to call for themselves.
pub struct Leader {
    coalescer: Arc<Coalescer>,
    l2: Option<Arc<L2>>,
    key: String,
    tx: Option<watch::Sender<Option<Arc<Entry>>>>,
    lease: bool,
}

impl Leader {
    /// Hand `entry` (when the result was cacheable) to the waiters and release the key.
    pub fn finish(mut self, entry: Option<Arc<Entry>>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(entry);
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.coalescer.flights.lock().expect("flights lock").remove(&self.key);
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(None);
        }
        if self.lease
            && let Some(l2) = self.l2.take()
        {
            let lease = lease_key(&self.key);
            tokio::spawn(async move { l2.del(&lease).await });
        }
    }
}

/// The Redis lease of cache key `key` (which carries the prefix already).
fn lease_key(key: &str) -> String {
    format!("{key}:lease")
}

/// The calls in flight per cache key in this process.
pub struct Coalescer {
    flights: Mutex<HashMap<String, watch::Receiver<Option<Arc<Entry>>>>>,
    /// How long a replica's lease (and the others' wait for it) lasts: `[cache] lease`.
    lease: Duration,
}

impl Coalescer {
    /// A coalescer whose Redis leases last `lease`.
    pub fn new(lease: Duration) -> Arc<Self> {
        Arc::new(Coalescer { flights: Mutex::default(), lease })
    }

    /// After an L1 miss: join the in-flight call for `key`, or lead it. A leader with Redis
    /// looks the key up in L2 and takes the lease in one round trip; a replica that finds the
    /// lease taken polls L2 for the result until the lease would have run out.
    pub async fn coalesce(self: &Arc<Self>, store: &Store, key: &str) -> Flight {
        let joined = {
            let mut flights = self.flights.lock().expect("flights lock");
            match flights.get(key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(key.to_string(), rx);
                    Ok(tx)
                }
            }
        };
        let mut rx = match joined {
            Err(rx) => rx,
            Ok(tx) => return self.lead(store, key, tx).await,
        };
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return Flight::Shared(e, Level::L1);
            }
            if rx.changed().await.is_err() {
                return match rx.borrow().clone() {
                    Some(e) => Flight::Shared(e, Level::L1),
                    None => Flight::Alone,
                };
            }
        }
    }

    /// Lead the flight of `key`: without Redis (or when it does not answer) go upstream; with
    /// it, answer from L2, or take the lease and go upstream, or wait for the replica holding it.
    async fn lead(self: &Arc<Self>, store: &Store, key: &str, tx: watch::Sender<Option<Arc<Entry>>>) -> Flight {
        let l2 = store.l2().cloned();
        let mut leader =
            Leader { coalescer: Arc::clone(self), l2: l2.clone(), key: key.to_string(), tx: Some(tx), lease: false };
        let Some(l2) = l2 else { return Flight::Leader(leader) };
        let Some((stored, taken)) = l2.get_and_lease(key, &lease_key(key), self.lease).await else {
            return Flight::Leader(leader);
        };
        leader.lease = taken;
        if let Some(e) = stored.and_then(|raw| Entry::decode(&raw)).filter(|e| !e.remaining().is_zero()) {
            let e = Arc::new(e);
            store.fill_l1(key, Arc::clone(&e));
            leader.finish(Some(Arc::clone(&e)));
            return Flight::Stored(e);
        }
        if taken {
            return Flight::Leader(leader);
        }
        match self.await_remote(store, &l2, key).await {
            Some(entry) => {
                leader.finish(Some(Arc::clone(&entry)));
                Flight::Shared(entry, Level::L2)
            }
            None => Flight::Leader(leader),
        }
    }

    async fn await_remote(&self, store: &Store, l2: &L2, key: &str) -> Option<Arc<Entry>> {
        let deadline = Instant::now() + self.lease;
        let lease = lease_key(key);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Some(raw) = l2.get(key).await
                && let Some(e) = Entry::decode(&raw)
            {
                let e = Arc::new(e);
                store.fill_l1(key, Arc::clone(&e));
                return Some(e);
            }
            // The leader gave up (its call failed or was not cacheable): stop waiting.
            l2.get_raw(&lease).await?;
        }
        None
    }
}
