//! The response cache (L1 in process with moka, optional L2 in Redis), request coalescing, and
//! idempotency keys: design.md §5 items 6–8.
//!
//! - **What is cached**: `tools/call` results of tools that a `trusted` upstream annotates
//!   `readOnlyHint` (and not `destructiveHint`), or that configuration marks `cache = true`;
//!   never results with `isError`, never errors, never results over `max_entry_bytes`.
//! - **Keys**: SHA-256 over the scope (`public`, or the calling principal for `private`
//!   results), the upstream, the tool, the upstream's and the tool's generation (bumped to
//!   invalidate), and the canonical JSON of the arguments (object keys sorted, no whitespace).
//!   The same key names the entry in L1 and L2.
//! - **Invalidation** drops matching L1 entries and increments the generation in Redis, which
//!   every replica re-reads at most a second later: no `KEYS` scans.
//! - **L1** is a `moka::sync::Cache`: its operations take microseconds and never wait, so the
//!   async call path uses it directly.
//! - **Coalescing**: one upstream call per key at a time in a process (followers wait for the
//!   leader's result); across replicas the leader takes a Redis lease (`SET NX PX`) and the
//!   others poll L2 for its result until the lease runs out.
//! - **Idempotency keys** are bound to the caller and the request's hash: a repeat replays the
//!   stored answer, waits for a running first call, or fails on a different request. Records
//!   live in Redis (`SET NX PX`) when it answers, else in process.

pub mod config;
pub mod l2;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::config::{CacheConfig, CacheScope, IdempotencyConfig, RedisConfig};
use self::l2::L2;
use crate::error::GatewayError;
use crate::observe::metrics::METRICS;
use crate::pipeline::ctx::Principal;
use crate::wire::mcp::Era;

/// A stored answer: a cached result, or the outcome recorded for an idempotency key.
#[derive(Debug)]
pub struct Entry {
    /// The raw `result` (or, for idempotency records, the raw `error` when `error` is set).
    pub body: Bytes,
    /// Whether `body` is a JSON-RPC error object.
    pub error: bool,
    /// The era of the upstream that wrote it.
    pub era: Era,
    /// The upstream's namespace.
    pub upstream: Arc<str>,
    /// The upstream's own tool name.
    pub tool: Arc<str>,
    /// When it was stored, in Unix milliseconds.
    pub stored_ms: u64,
    /// How long it lives from `stored_ms`.
    pub ttl: Duration,
    /// Whether `[cache] adaptive_ttl` may shorten and stretch its L1 lifetime (tool results;
    /// not resources, whose lifetime is the upstream's).
    pub adaptive: bool,
}

impl Entry {
    /// An entry stored now. `body` is copied: a reply's bytes are a slice of the whole upstream
    /// read buffer, which must not live on in the cache (~5 KB per small entry).
    pub fn new(
        body: &[u8],
        error: bool,
        era: Era,
        upstream: &Arc<str>,
        tool: &str,
        ttl: Duration,
        adaptive: bool,
    ) -> Self {
        Entry {
            body: Bytes::copy_from_slice(body),
            error,
            era,
            upstream: Arc::clone(upstream),
            tool: Arc::from(tool),
            stored_ms: now_ms(),
            ttl,
            adaptive,
        }
    }

    /// Age now, in milliseconds.
    pub fn age_ms(&self) -> u64 {
        now_ms().saturating_sub(self.stored_ms)
    }

    fn remaining(&self) -> Duration {
        self.ttl.saturating_sub(Duration::from_millis(self.age_ms()))
    }

    /// The L2 form: a JSON object whose `body` member is the stored JSON byte for byte.
    fn encode(&self) -> Vec<u8> {
        let era = if self.era == Era::Modern { "modern" } else { "legacy" };
        let mut out = Vec::with_capacity(self.body.len() + 128);
        out.extend_from_slice(format!(r#"{{"era":"{era}","up":"#).as_bytes());
        serde_json::to_writer(&mut out, &*self.upstream).expect("JSON");
        out.extend_from_slice(b",\"tool\":");
        serde_json::to_writer(&mut out, &*self.tool).expect("JSON");
        let rest = format!(
            r#","at":{},"ttl":{},"err":{},"adaptive":{},"body":"#,
            self.stored_ms,
            self.ttl.as_millis(),
            self.error,
            self.adaptive
        );
        out.extend_from_slice(rest.as_bytes());
        out.extend_from_slice(if self.body.is_empty() { b"null" } else { &self.body });
        out.push(b'}');
        out
    }

    fn decode(raw: &[u8]) -> Option<Entry> {
        #[derive(serde::Deserialize)]
        struct Wire<'a> {
            era: &'a str,
            up: &'a str,
            tool: &'a str,
            at: u64,
            ttl: u64,
            err: bool,
            #[serde(default)]
            adaptive: bool,
            #[serde(borrow)]
            body: &'a RawValue,
        }
        let w: Wire<'_> = serde_json::from_slice(raw).ok()?;
        Some(Entry {
            body: Bytes::copy_from_slice(w.body.get().as_bytes()),
            error: w.err,
            era: if w.era == "modern" { Era::Modern } else { Era::Legacy },
            upstream: Arc::from(w.up),
            tool: Arc::from(w.tool),
            stored_ms: w.at,
            ttl: Duration::from_millis(w.ttl),
            adaptive: w.adaptive,
        })
    }
}

/// Now, in Unix milliseconds.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where a cached answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// In process.
    L1,
    /// Redis.
    L2,
}

impl Level {
    /// `l1` / `l2`.
    pub fn label(self) -> &'static str {
        match self {
            Level::L1 => "l1",
            Level::L2 => "l2",
        }
    }
}

/// Write the canonical JSON of `v`: object keys sorted by code point, no insignificant
/// whitespace, numbers and strings as `serde_json` writes them. Equal JSON values have equal
/// canonical forms whatever their key order or spacing.
pub fn canonical_json(v: &serde_json::Value, out: &mut Vec<u8>) {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("JSON");
                out.push(b':');
                canonical_json(&map[k], out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("JSON"),
    }
}

/// The canonical form of raw JSON arguments (`{}` when absent or not JSON).
pub fn canonical_arguments(raw: Option<&[u8]>) -> Vec<u8> {
    let v: serde_json::Value = raw.and_then(|r| serde_json::from_slice(r).ok()).unwrap_or(serde_json::json!({}));
    let mut out = Vec::with_capacity(raw.map_or(2, <[u8]>::len));
    canonical_json(&v, &mut out);
    out
}

/// What `POST /admin/cache/clear` (and `sekisho cache clear`) drops: everything, one upstream's
/// results, or one tool's (the query string `?upstream=U&tool=T`).
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct ClearScope {
    /// Only this upstream's results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Only this tool's results (the upstream's own name; needs `upstream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

/// The name cached reads of resource `uri` are keyed and invalidated under, in place of a tool.
pub fn resource_target(uri: &str) -> String {
    format!("resource:{uri}")
}

/// A principal's stable label in keys (`anon`, `key0`, …: the position in `server.api_keys`,
/// identical on replicas that share the configuration).
fn principal_label(p: &Principal) -> String {
    match p {
        Principal::Anonymous => "anon".into(),
        Principal::ApiKey(i) => format!("key{i}"),
    }
}

/// What [`Store::coalesce`] decided.
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
    store: Arc<Store>,
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
        self.store.flights.lock().expect("flights lock").remove(&self.key);
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(None);
        }
        if self.lease
            && let Some(l2) = self.store.l2.clone()
        {
            let lease = Store::lease_key(&self.key);
            tokio::spawn(async move { l2.del(&lease).await });
        }
    }
}

/// Where the first call of a key announces its answer (`None`: it failed without one).
type Outcome = watch::Sender<Option<Arc<Entry>>>;

/// What [`Store::idempotency_begin`] decided.
pub enum Begin {
    /// First use of the key: run the call, then [`Claim::complete`] it.
    Run(Claim),
    /// The key's call already finished: answer with this.
    Replay(Arc<Entry>),
}

/// The right to run the call of an idempotency key. Dropped without [`Claim::complete`]
/// (the call failed before an answer), the key is released so the caller may try again.
pub struct Claim {
    store: Arc<Store>,
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
        if let Some(l2) = &self.store.l2 {
            let value = idem_value(&self.hash, Some(&entry));
            if l2.set(&self.record, &value, self.store.idem.window, false).await.is_none() {
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
            self.store.idem_local.invalidate(&self.record);
            let _ = outcome.send(None);
        } else if let Some(l2) = self.store.l2.clone() {
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

struct Generation {
    value: u64,
    fetched: Instant,
}

/// Re-read shared generations at most this often.
const GENERATION_REFRESH: Duration = Duration::from_secs(1);

/// The cache, coalescing table and idempotency records of one gateway process.
pub struct Store {
    /// `[cache]`.
    pub cache: CacheConfig,
    idem: IdempotencyConfig,
    l1: moka::sync::Cache<String, Arc<Entry>>,
    l2: Option<Arc<L2>>,
    generations: Mutex<HashMap<String, Generation>>,
    flights: Mutex<HashMap<String, watch::Receiver<Option<Arc<Entry>>>>>,
    idem_local: moka::sync::Cache<String, Arc<IdemRecord>>,
}

/// L1 lifetimes: the entry's own TTL, or under `adaptive_ttl` a lifetime that starts at
/// `min` and doubles with every hit up to `max` (both counted from when it was stored).
struct PerEntryTtl {
    adaptive: Option<(Duration, Duration)>,
}

impl moka::Expiry<String, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Arc<Entry>, _created_at: Instant) -> Option<Duration> {
        match self.adaptive {
            Some((min, _)) if value.adaptive => {
                Some(min.saturating_sub(Duration::from_millis(value.age_ms())).min(value.remaining()))
            }
            _ => Some(value.remaining()),
        }
    }

    fn expire_after_read(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _read_at: Instant,
        until_expiry: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        match (self.adaptive, until_expiry) {
            (Some((_, max)), Some(left)) if value.adaptive => {
                let age = Duration::from_millis(value.age_ms());
                let lifetime = ((age + left) * 2).min(max);
                Some(lifetime.saturating_sub(age).max(left))
            }
            _ => until_expiry,
        }
    }
}

impl Store {
    /// A store with these settings; with a Redis URL (config or `REDIS_URL`) it connects in the
    /// background and works without Redis until then.
    pub fn new(
        cache: &CacheConfig,
        idem: &IdempotencyConfig,
        redis: &RedisConfig,
        stop: CancellationToken,
    ) -> Arc<Store> {
        // Weights are in KiB (moka sizes its internal structures by capacity, so byte units would
        // cost memory); each entry weighs at least capacity / max_entries, so both caps hold.
        let capacity_kib = (cache.max_bytes / 1024).max(1);
        let floor = (capacity_kib / cache.max_entries.max(1)).clamp(1, u64::from(u32::MAX)) as u32;
        let l1 = moka::sync::Cache::builder()
            .max_capacity(capacity_kib)
            .weigher(move |k: &String, v: &Arc<Entry>| {
                u32::try_from((v.body.len() + k.len() + 128).div_ceil(1024)).unwrap_or(u32::MAX).max(floor)
            })
            .expire_after(PerEntryTtl {
                adaptive: cache.adaptive_ttl.then_some((cache.adaptive_min, cache.adaptive_max)),
            })
            .eviction_listener(|_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    METRICS.cache_eviction();
                }
            })
            .support_invalidation_closures()
            .build();
        let idem_local = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(idem.window).build();
        let l2 = redis.resolved_url().map(|url| L2::connect(url, redis, stop));
        Arc::new(Store {
            cache: cache.clone(),
            idem: idem.clone(),
            l1,
            l2,
            generations: Mutex::default(),
            flights: Mutex::default(),
            idem_local,
        })
    }

    /// Whether idempotency keys are honoured.
    pub fn idempotency_enabled(&self) -> bool {
        self.idem.enabled
    }

    /// Whether a Redis store is configured and currently failing or not yet connected.
    pub fn redis_degraded(&self) -> Option<bool> {
        self.l2.as_ref().map(|l| l.degraded())
    }

    /// L1 entries and weighted bytes (for metrics).
    pub fn l1_size(&self) -> (u64, u64) {
        (self.l1.entry_count(), self.l1.weighted_size())
    }

    async fn generations(&self, names: [String; 2]) -> [u64; 2] {
        let Some(l2) = &self.l2 else { return [0, 0] };
        {
            let g = self.generations.lock().expect("generations lock");
            let fresh = |n: &String| g.get(n).filter(|x| x.fetched.elapsed() < GENERATION_REFRESH).map(|x| x.value);
            if let (Some(a), Some(b)) = (fresh(&names[0]), fresh(&names[1])) {
                return [a, b];
            }
        }
        let keys: Vec<String> = names.iter().map(|n| format!("{}gen:{n}", l2.prefix)).collect();
        let fetched = l2.counters(&keys).await.filter(|v| v.len() == 2);
        let mut g = self.generations.lock().expect("generations lock");
        // On a Redis failure keep the last known values (a missed invalidation lasts until Redis answers).
        if let Some(values) = fetched {
            for (n, v) in names.iter().zip(&values) {
                g.insert(n.clone(), Generation { value: *v, fetched: Instant::now() });
            }
        }
        [g.get(&names[0]).map_or(0, |x| x.value), g.get(&names[1]).map_or(0, |x| x.value)]
    }

    /// The cache key (also the Redis key) of a call: scope, upstream, tool, generations,
    /// canonical arguments.
    pub async fn key(
        &self,
        principal: &Principal,
        scope: CacheScope,
        upstream: &str,
        tool: &str,
        canonical_args: &[u8],
    ) -> String {
        let [gu, gt] = self.generations([format!("u:{upstream}"), format!("t:{upstream}/{tool}")]).await;
        let mut h = Sha256::new();
        match scope {
            CacheScope::Public => h.update(b"public"),
            CacheScope::Private => h.update(format!("private:{}", principal_label(principal))),
        }
        for part in [upstream.as_bytes(), tool.as_bytes(), &gu.to_be_bytes(), &gt.to_be_bytes(), canonical_args] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        format!("{}c:{}", self.prefix(), hex::encode(h.finalize()))
    }

    /// The prefix of every key: `[redis] prefix` (in process too, where it is only a name).
    fn prefix(&self) -> &str {
        self.l2.as_ref().map_or("sekisho:", |l| l.prefix.as_str())
    }

    /// The Redis lease of cache key `key` (which carries the prefix already).
    fn lease_key(key: &str) -> String {
        format!("{key}:lease")
    }

    /// Look `key` up in L1 only.
    pub fn lookup_l1(&self, key: &str) -> Option<Arc<Entry>> {
        self.l1.get(key)
    }

    /// Look `key` up in L1, then L2 (an L2 hit fills L1).
    pub async fn lookup(&self, key: &str) -> Option<(Arc<Entry>, Level)> {
        if let Some(e) = self.l1.get(key) {
            return Some((e, Level::L1));
        }
        let raw = self.l2.as_ref()?.get(key).await?;
        let entry = Arc::new(Entry::decode(&raw)?);
        if entry.remaining().is_zero() {
            return None;
        }
        self.l1.insert(key.to_string(), Arc::clone(&entry));
        Some((entry, Level::L2))
    }

    /// Store `entry` under `key` in both levels.
    pub async fn put(&self, key: &str, entry: Arc<Entry>) {
        if let Some(l2) = &self.l2 {
            let _ = l2.set(key, &entry.encode(), entry.ttl, false).await;
        }
        self.l1.insert(key.to_string(), entry);
    }

    /// After an L1 miss: join the in-flight call for `key`, or lead it. A leader with Redis
    /// looks the key up in L2 and takes the lease in one round trip; a replica that finds the
    /// lease taken polls L2 for the result until the lease would have run out.
    pub async fn coalesce(self: &Arc<Self>, key: &str) -> Flight {
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
            Ok(tx) => return self.lead(key, tx).await,
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
    async fn lead(self: &Arc<Self>, key: &str, tx: watch::Sender<Option<Arc<Entry>>>) -> Flight {
        let mut leader = Leader { store: Arc::clone(self), key: key.to_string(), tx: Some(tx), lease: false };
        let Some(l2) = &self.l2 else { return Flight::Leader(leader) };
        let Some((stored, taken)) = l2.get_and_lease(key, &Self::lease_key(key), self.cache.lease).await else {
            return Flight::Leader(leader);
        };
        leader.lease = taken;
        if let Some(e) = stored.and_then(|raw| Entry::decode(&raw)).filter(|e| !e.remaining().is_zero()) {
            let e = Arc::new(e);
            self.l1.insert(key.to_string(), Arc::clone(&e));
            leader.finish(Some(Arc::clone(&e)));
            return Flight::Stored(e);
        }
        if taken {
            return Flight::Leader(leader);
        }
        match self.await_remote(key).await {
            Some(entry) => {
                leader.finish(Some(Arc::clone(&entry)));
                Flight::Shared(entry, Level::L2)
            }
            None => Flight::Leader(leader),
        }
    }

    async fn await_remote(&self, key: &str) -> Option<Arc<Entry>> {
        let l2 = self.l2.as_ref()?;
        let deadline = Instant::now() + self.cache.lease;
        let lease = Self::lease_key(key);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Some(raw) = l2.get(key).await
                && let Some(e) = Entry::decode(&raw)
            {
                let e = Arc::new(e);
                self.l1.insert(key.to_string(), Arc::clone(&e));
                return Some(e);
            }
            // The leader gave up (its call failed or was not cacheable): stop waiting.
            l2.get(&lease).await?;
        }
        None
    }

    /// Drop cached results of `upstream` (or of one of its tools): matching L1 entries now,
    /// and everything in Redis by bumping the generation that every key includes.
    pub async fn invalidate(&self, upstream: &str, tool: Option<&str>) {
        let (up, t): (Arc<str>, Option<Arc<str>>) = (Arc::from(upstream), tool.map(Arc::from));
        let _ =
            self.l1.invalidate_entries_if(move |_, e| *e.upstream == *up && t.as_deref().is_none_or(|t| *e.tool == *t));
        let name = match tool {
            Some(t) => format!("t:{upstream}/{t}"),
            None => format!("u:{upstream}"),
        };
        if let Some(l2) = &self.l2
            && let Some(v) = l2.incr(&format!("{}gen:{name}", l2.prefix)).await
        {
            self.generations
                .lock()
                .expect("generations lock")
                .insert(name, Generation { value: v, fetched: Instant::now() });
        }
        METRICS.cache_invalidation();
    }

    /// Drop every cached result.
    pub async fn clear(&self, upstreams: impl Iterator<Item = Arc<str>>) {
        for up in upstreams {
            self.invalidate(&up, None).await;
        }
        self.l1.invalidate_all();
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
    pub async fn idempotency_begin(
        self: &Arc<Self>,
        principal: &Principal,
        key: &str,
        hash: &[u8; 32],
        running_for: Duration,
    ) -> Result<Begin, GatewayError> {
        let hash = hex::encode(hash);
        let record =
            format!("{}idem:{}:{}", self.prefix(), principal_label(principal), hex::encode(Sha256::digest(key)));
        let deadline = Instant::now() + self.idem.wait;
        let conflict = || GatewayError::IdempotencyConflict { key: key.to_string() };
        loop {
            if let Some(l2) = &self.l2 {
                let pending = (running_for + Duration::from_secs(1)).min(self.idem.window);
                match l2.set(&record, &idem_value(&hash, None), pending, true).await {
                    Some(true) => {
                        return Ok(Begin::Run(Claim {
                            store: Arc::clone(self),
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
                .idem_local
                .entry(record.clone())
                .or_insert_with(|| Arc::new(IdemRecord { hash: hash.clone(), answer: rx }));
            let fresh = entry.is_fresh();
            let rec = entry.into_value();
            if fresh {
                return Ok(Begin::Run(Claim { store: Arc::clone(self), record, hash, local: Some(tx), done: false }));
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

/// The hash an idempotency key is bound to: method, upstream, target and canonical arguments.
pub fn request_hash(method: &str, upstream: &str, target: &str, canonical_args: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), upstream.as_bytes(), target.as_bytes(), canonical_args] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order_and_whitespace() {
        let a = canonical_arguments(Some(br#"{"b": [1, {"y":2,"x":1}], "a": "s"}"#));
        let b = canonical_arguments(Some(br#"{"a":"s","b":[1,{"x":1,"y":2}]}"#));
        assert_eq!(a, b);
        assert_eq!(a, br#"{"a":"s","b":[1,{"x":1,"y":2}]}"#);
        assert_ne!(canonical_arguments(Some(br#"{"b":[2,1]}"#)), canonical_arguments(Some(br#"{"b":[1,2]}"#)));
        assert_eq!(canonical_arguments(None), b"{}");
    }

    #[test]
    fn entries_survive_the_l2_encoding() {
        let e = Entry {
            body: Bytes::from_static(br#"{"content":[{"type":"text","text":"x"}]}"#),
            error: false,
            era: Era::Modern,
            upstream: Arc::from("up"),
            tool: Arc::from("t"),
            stored_ms: 42,
            ttl: Duration::from_secs(3),
            adaptive: true,
        };
        let d = Entry::decode(&e.encode()).unwrap();
        assert_eq!(
            (d.body, d.era, &*d.upstream, &*d.tool, d.stored_ms, d.ttl, d.adaptive),
            (e.body, e.era, "up", "t", 42, e.ttl, true)
        );
    }
}
