//! The multi-tenant store in PostgreSQL: tenants, their server configs (secrets sealed),
//! instances (virtual servers) with tool groups, and API keys (stored as keyed hashes); the
//! resolution of a presented key in one round trip, cached, invalidated by `LISTEN/NOTIFY`,
//! and `last_used_at` written in batches (docs/multi-tenant.md).
//!
//! ```toml
//! [store]
//! postgres_url = "postgres://sekisho@db.internal/sekisho"
//! key_pepper = "…"   # or SEKISHO_STORE__KEY_PEPPER
//! secret_key = "…"   # or SEKISHO_STORE__SECRET_KEY
//! ```
//!
//! The schema is created and changed only by `sekisho db migrate` ([`migrate`]); a gateway
//! started against a database that lacks a migration refuses to start ([`check_schema`]).

pub mod admin;
pub mod cache;
pub mod config;
pub mod error;
pub mod last_used;
pub mod listing;
pub mod notify;
pub mod ops;
pub mod resolve;
pub mod secrets;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;

pub use cache::{KeyCache, Lookup};
pub use config::StoreConfig;
pub use error::StoreError;
pub use resolve::Resolved;
use secrets::Keys;

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pool of at most `max_connections` to `url`, whose connection attempts and acquisitions
/// give up after `timeout`, and which does not ping connections before use. Connects lazily: the first query finds out whether PostgreSQL
/// answers.
///
/// Errors: [`StoreError::Invalid`] when `url` is not a PostgreSQL URL (the message does not
/// repeat it: it may hold a password).
pub fn pool(url: &str, max_connections: u32, timeout: Duration) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions =
        url.parse().map_err(|_| StoreError::Invalid("the database URL is not a valid postgres:// URL".into()))?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(timeout)
        // No ping before each use: it would be a second round trip per resolution. A connection
        // found broken fails its one query (Unavailable, retryable) and is replaced.
        .test_before_acquire(false)
        .connect_lazy_with(options.application_name("sekisho")))
}

/// Apply every embedded migration not yet applied (`sekisho db migrate`); returns the versions
/// applied now.
///
/// Errors: [`StoreError::Unavailable`], or [`StoreError::Database`] when a migration fails
/// (it is rolled back) or the database holds a changed migration.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let before = applied(pool).await.unwrap_or_default();
    MIGRATOR.run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
        other => StoreError::Database(other.to_string()),
    })?;
    Ok(MIGRATOR.iter().map(|m| m.version).filter(|v| !before.contains(v)).collect())
}

async fn applied(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?)
}

/// Check that every embedded migration has been applied (versions the database has beyond
/// them are accepted: migrations are written to keep older replicas working).
///
/// Errors: [`StoreError::NotMigrated`] naming the first missing version; [`StoreError::Unavailable`].
pub async fn check_schema(pool: &PgPool) -> Result<(), StoreError> {
    let done = applied(pool).await?;
    match MIGRATOR.iter().find(|m| !done.contains(&m.version)) {
        Some(m) => Err(StoreError::NotMigrated(format!("migration {} ({}) is not applied", m.version, m.description))),
        None => Ok(()),
    }
}

/// Check, at start-up, that the store `config` describes answers and is migrated, without
/// starting anything.
///
/// Errors: as [`Store::open`].
pub async fn verify(config: &StoreConfig) -> Result<(), StoreError> {
    Keys::new(&config.key_pepper, &config.secret_key)?;
    let pool = pool(&config.postgres_url, 1, config.timeout)?;
    let checked = check_schema(&pool).await;
    pool.close().await;
    checked
}

/// What an instance's resolution is cached under: SHA-256 over a label and the two names, each
/// length-prefixed (no key's HMAC can be it, and no two name pairs share it).
pub fn instance_digest(tenant: &str, instance: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"sekisho instance\0");
    for part in [tenant, instance] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// What `/readyz` reports about the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// PostgreSQL did not answer the last load, or the change listener is disconnected:
    /// known keys are served from memory, unknown keys fail (retryable).
    pub degraded: bool,
    /// Whether the `LISTEN sekisho_store` connection is up.
    pub listening: bool,
    /// Resolved keys in memory.
    pub cached: u64,
    /// Keys whose `last_used_at` waits for the next flush.
    pub pending_last_used: usize,
}

/// The running store of a gateway: the pool, the keys, the config cache, the change listener
/// and the `last_used_at` flusher.
pub struct Store {
    pool: PgPool,
    /// One connection of its own for `LISTEN` (a listener holds its connection for good).
    listen_pool: PgPool,
    keys: Keys,
    cache: KeyCache,
    last_used: last_used::LastUsed,
    config: StoreConfig,
    listening: watch::Sender<bool>,
    /// Every change received (after the cache dropped what it makes stale).
    changes: tokio::sync::broadcast::Sender<notify::Change>,
    stop: tokio_util::sync::CancellationToken,
}

/// Changes kept for a slow [`Store::changes`] receiver; one that falls further behind gets
/// `RecvError::Lagged` and must treat it as [`notify::Change::All`].
pub const CHANGE_BUFFER: usize = 256;

impl Store {
    /// Connect with `config` (which must be enabled and valid), check the schema, and start
    /// the listener and the flusher (tasks on the current runtime, ended by
    /// [`Store::shutdown`]).
    ///
    /// A PostgreSQL that does not answer now is no error: the store starts degraded (unknown
    /// keys fail, retryable) and recovers when it answers.
    ///
    /// Errors: [`StoreError::Invalid`] settings, [`StoreError::NotMigrated`] when `sekisho db
    /// migrate` is due.
    pub async fn open(config: &StoreConfig) -> Result<Arc<Store>, StoreError> {
        let keys = Keys::new(&config.key_pepper, &config.secret_key)?;
        let pool = pool(&config.postgres_url, config.max_connections, config.timeout)?;
        match check_schema(&pool).await {
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "store: PostgreSQL does not answer; starting degraded (unknown keys fail until it does)")
            }
            other => other?,
        }
        let listen_pool = self::pool(&config.postgres_url, 1, config.timeout)?;
        let store = Arc::new(Store {
            pool,
            listen_pool,
            keys,
            cache: KeyCache::new(config),
            last_used: last_used::LastUsed::default(),
            config: config.clone(),
            listening: watch::channel(false).0,
            changes: tokio::sync::broadcast::channel(CHANGE_BUFFER).0,
            stop: tokio_util::sync::CancellationToken::new(),
        });
        tokio::spawn(listen(Arc::downgrade(&store), store.stop.clone()));
        tokio::spawn(flush_every(Arc::downgrade(&store), store.stop.clone()));
        Ok(store)
    }

    /// Resolve a presented bearer key: `Ok(None)` for a key that is not ours, unknown or
    /// revoked; the resolution (shared, cached) otherwise. Records the use for `last_used_at`.
    ///
    /// Errors: [`StoreError::Unavailable`] (retryable) when the key is not cached (or its stale
    /// copy is older than `max_stale`) and PostgreSQL does not answer; [`StoreError::Secret`]
    /// when a server config's secrets do not open.
    pub async fn resolve(&self, bearer: &str) -> Result<Lookup, StoreError> {
        if bearer.len() > secrets::MAX_KEY_LEN || !bearer.starts_with(secrets::KEY_PREFIX) {
            return Ok(None);
        }
        let hash = self.keys.hash_key(bearer);
        let prefix = bearer.get(..secrets::DISPLAY_PREFIX_LEN).unwrap_or("");
        let found = self.lookup(hash, prefix).await?;
        if let Some(r) = &found {
            self.last_used.touch(r.key.id);
        }
        Ok(found)
    }

    /// What the key with HMAC `hash` resolves to now (through the cache, like
    /// [`Store::resolve`], without counting a use): for deciding whether a change concerns a
    /// key whose streams are open.
    ///
    /// Errors: as [`Store::resolve`].
    pub async fn resolve_hash(&self, hash: [u8; 32]) -> Result<Lookup, StoreError> {
        self.lookup(hash, "").await
    }

    /// Resolve instance (virtual server) `instance` of tenant `tenant`, both by name, for a
    /// caller bound to it by an OAuth token's claims: `Ok(None)` when either does not exist.
    /// Cached like keys, under [`instance_digest`]; dropped by the tenant's changes (and an
    /// unknown instance's entry by any tenant's change, so a new instance is served at once).
    ///
    /// Errors: as [`Store::resolve`].
    pub async fn resolve_instance(&self, tenant: &str, instance: &str) -> Result<Lookup, StoreError> {
        if tenant.is_empty() || instance.is_empty() || tenant.len() > 128 || instance.len() > 128 {
            return Ok(None);
        }
        let load = async {
            let loaded = tokio::time::timeout(
                self.config.timeout,
                resolve::load_instance(&self.pool, &self.keys, tenant, instance),
            )
            .await;
            match loaded {
                Ok(r) => r.map(|r| r.map(Arc::new)),
                Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.config.timeout))),
            }
        };
        self.cache.get(instance_digest(tenant, instance), "", load).await
    }

    async fn lookup(&self, hash: [u8; 32], prefix: &str) -> Result<Lookup, StoreError> {
        let load = async {
            let loaded = tokio::time::timeout(self.config.timeout, resolve::load(&self.pool, &self.keys, &hash)).await;
            match loaded {
                Ok(r) => r.map(|r| r.map(Arc::new)),
                Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.config.timeout))),
            }
        };
        self.cache.get(hash, prefix, load).await
    }

    /// The HMAC-SHA-256 of a presented key under the pepper (what the store keeps of it).
    pub fn hash_key(&self, bearer: &str) -> [u8; 32] {
        self.keys.hash_key(bearer)
    }

    /// The store's state for `/readyz` and metrics.
    pub fn health(&self) -> Health {
        let listening = *self.listening.borrow();
        Health {
            degraded: self.cache.degraded() || !listening,
            listening,
            cached: self.cache.len(),
            pending_last_used: self.last_used.pending(),
        }
    }

    /// Wait until the change listener is connected (or `within` passes); returns whether it is.
    pub async fn wait_listening(&self, within: Duration) -> bool {
        let mut rx = self.listening.subscribe();
        tokio::time::timeout(within, rx.wait_for(|up| *up)).await.is_ok_and(|r| r.is_ok())
    }

    /// Write the buffered `last_used_at` times now (one statement); returns how many keys.
    ///
    /// Errors: the database's (the times stay buffered for the next flush).
    pub async fn flush(&self) -> Result<usize, StoreError> {
        self.last_used.flush(&self.pool).await
    }

    /// Stop the listener and the flusher, and flush once more (at drain).
    ///
    /// Errors: the last flush's.
    pub async fn shutdown(&self) -> Result<usize, StoreError> {
        self.stop.cancel();
        self.flush().await
    }

    /// The changes this replica learns of, after its cache has dropped what they make stale:
    /// for sending `list_changed` to the sessions whose view changed. A (re)connection of the
    /// listener is [`notify::Change::All`] (changes may have been missed); `Lagged` means the
    /// same.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<notify::Change> {
        self.changes.subscribe()
    }

    /// The pool (for the CLI and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pepper and the secret key (for the admin API's `key/create` and `server/create`).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}

impl Drop for Store {
    /// Ends the listener and the flusher (buffered `last_used_at` times not flushed by
    /// [`Store::shutdown`] are lost).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `LISTEN sekisho_store` on a connection of its own, reconnecting with backoff (100 ms doubling
/// to 5 s). Changes missed while disconnected cannot be known, so on every (re)connection
/// everything cached is dropped.
async fn listen(store: std::sync::Weak<Store>, stop: tokio_util::sync::CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(s) = store.upgrade() else { return };
        let pool = s.listen_pool.clone();
        drop(s);
        let connected = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.ignore_pool_close_event(true);
            l.listen(notify::CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = stop.cancelled() => return,
            l = connected => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %StoreError::from(e), "store: cannot listen for changes; retrying");
                    if let Some(s) = store.upgrade() { s.cache.set_degraded(true) }
                    tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(100);
        if let Some(s) = store.upgrade() {
            s.cache.invalidate(&notify::Change::All).await;
            s.cache.set_degraded(false);
            s.listening.send_replace(true);
            let _ = s.changes.send(notify::Change::All);
            tracing::info!("store: listening for changes");
        }
        loop {
            let next = tokio::select! { _ = stop.cancelled() => return, n = listener.try_recv() => n };
            let Some(s) = store.upgrade() else { return };
            match next {
                Ok(Some(n)) => {
                    let change = notify::Change::parse(n.payload());
                    crate::observe::metrics::METRICS.store.notification();
                    s.cache.invalidate(&change).await;
                    let _ = s.changes.send(change);
                }
                Ok(None) | Err(_) => {
                    s.listening.send_replace(false);
                    tracing::warn!("store: the change listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Flush `last_used_at` every `last_used_flush` until stopped.
async fn flush_every(store: std::sync::Weak<Store>, stop: tokio_util::sync::CancellationToken) {
    let Some(every) = store.upgrade().map(|s| s.config.last_used_flush) else { return };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! { _ = stop.cancelled() => return, _ = tick.tick() => {} }
        let Some(s) = store.upgrade() else { return };
        if let Err(e) = s.flush().await {
            tracing::warn!(error = %e, "store: cannot write last_used_at; kept for the next flush");
        }
    }
}
