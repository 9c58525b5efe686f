//! Switches fleet-wide: with `[redis]`, every change is also stored in the hash
//! `<prefix>switches` (one field per layer, never expiring: a switch holds until switched
//! back), and every replica reads the hash every second ([`POLL`]), so a switch made on one
//! replica applies on all of them within about a second, and a replica started later takes the
//! fleet's state before its first second is out.
//!
//! Each field's value is a [`Change`] as JSON under the `[redis] entry_secret` MAC bound to
//! `<prefix>switches:<layer>` ([`L2::seal`]): a value written without the secret, altered, or
//! moved to another layer's field is ignored (counted and logged like a forged cache entry).
//! A replica takes a change only when its sequence number is newer than the one it knows
//! ([`Switches::apply`]), so an older authentic value written back cannot undo a later switch
//! on replicas that saw it.
//!
//! Redis failing or absent never blocks a switch: it applies here at once and the replica
//! keeps its last known state of the others. Polling survives reconnects without
//! resubscribing, and a replica whose own change is newer than what Redis holds (it was
//! made while Redis was down, or Redis lost the hash) writes it back on its next poll.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Change, Layer, Switches};
use crate::cache::l2::{L2, MAC_BYTES};

/// How often each replica reads the fleet's switches.
pub const POLL: Duration = Duration::from_secs(1);

/// The largest stored value read, in bytes (a change is well under 300).
const MAX_VALUE_BYTES: usize = 1024;

/// A gateway's switches and, with `[redis]`, their fleet-wide copy.
pub struct Control {
    switches: Arc<Switches>,
    l2: Option<Arc<L2>>,
    hash: String,
}

/// Where a switch made through [`Control::switch`] was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// This replica only: no Redis is configured.
    Local,
    /// Stored in Redis: every replica applies it within [`POLL`] or so.
    Fleet,
    /// This replica only for now: Redis did not answer; written back once it does.
    Pending,
}

impl Reach {
    /// The name shown by the admin API (`local`, `fleet`, `pending`).
    pub fn name(self) -> &'static str {
        match self {
            Reach::Local => "local",
            Reach::Fleet => "fleet",
            Reach::Pending => "pending",
        }
    }
}

impl Control {
    /// The control of `switches`, fleet-wide through `l2` when given.
    pub fn new(switches: Arc<Switches>, l2: Option<Arc<L2>>) -> Arc<Control> {
        let hash = l2.as_ref().map_or_else(String::new, |l| format!("{}switches", l.prefix));
        Arc::new(Control { switches, l2, hash })
    }

    /// The flags (what the steps read).
    pub fn switches(&self) -> &Arc<Switches> {
        &self.switches
    }

    /// Whether the switches are shared through Redis.
    pub fn fleet_wide(&self) -> bool {
        self.l2.is_some()
    }

    fn mac_key(&self, layer: Layer) -> String {
        format!("{}:{}", self.hash, layer.name())
    }

    /// A stored value of `layer`'s field, when authentic and readable.
    fn open(&self, l2: &L2, layer: Layer, stored: Vec<u8>) -> Option<Change> {
        if stored.len() > MAC_BYTES + MAX_VALUE_BYTES {
            return None;
        }
        let value = l2.unseal(&self.mac_key(layer), stored)?;
        serde_json::from_slice(&value).ok()
    }

    async fn store(&self, l2: &L2, layer: Layer, change: &Change) -> bool {
        let Ok(json) = serde_json::to_vec(change) else { return false };
        let sealed = l2.seal(&self.mac_key(layer), &json);
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&self.hash).arg(layer.name()).arg(sealed);
        l2.run::<i64>("switches", &cmd).await.is_some()
    }

    /// Switch `layer` on or off as `by`: here at once, then in Redis (after taking the fleet's
    /// latest change of that layer, so this one is numbered after it).
    pub async fn switch(&self, layer: Layer, on: bool, by: &str) -> (Change, Reach) {
        let Some(l2) = &self.l2 else { return (self.switches.set(layer, on, by), Reach::Local) };
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&self.hash).arg(layer.name());
        if let Some(Some(stored)) = l2.run::<Option<Vec<u8>>>("switches", &cmd).await
            && let Some(change) = self.open(l2, layer, stored)
        {
            self.switches.apply(layer, change);
        }
        let change = self.switches.set(layer, on, by);
        let reach = if self.store(l2, layer, &change).await { Reach::Fleet } else { Reach::Pending };
        (change, reach)
    }

    /// Read the fleet's switches once: take newer changes, write back this replica's own
    /// newer ones. Nothing happens while Redis does not answer.
    pub async fn sync(&self) {
        let Some(l2) = &self.l2 else { return };
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&self.hash);
        for layer in Layer::ALL {
            cmd.arg(layer.name());
        }
        let Some(values) = l2.run::<Vec<Option<Vec<u8>>>>("switches", &cmd).await else { return };
        for (layer, stored) in Layer::ALL.into_iter().zip(values) {
            let stored = stored.and_then(|v| self.open(l2, layer, v));
            if let Some(change) = &stored {
                self.switches.apply(layer, change.clone());
            }
            let Some(mine) = self.switches.last(layer) else { continue };
            if stored.is_none_or(|s| s.seq < mine.seq) {
                self.store(l2, layer, &mine).await;
            }
        }
    }

    /// Read the fleet's switches every [`POLL`] until `stop` (nothing to do without Redis).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.l2.is_none() {
            return;
        }
        loop {
            self.sync().await;
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
