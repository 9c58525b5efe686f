//! `api_keys.last_used_at`, buffered: each use is remembered in memory and all of them are
//! written in one statement every `[store] last_used_flush` and at drain (a crash loses at most
//! one interval).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::PgPool;

use super::error::StoreError;

/// Keys remembered between flushes at most; past it further keys wait for the next flush
/// (a key already remembered is still updated).
pub const MAX_PENDING: usize = 100_000;

/// The one statement: every remembered key's time, never moving a time backwards.
const FLUSH: &str = "UPDATE api_keys AS k SET last_used_at = GREATEST(k.last_used_at, to_timestamp(u.at)) \
    FROM unnest($1::bigint[], $2::float8[]) AS u(id, at) WHERE k.id = u.id";

/// Last uses (unix seconds) by `api_keys.id`, waiting to be written.
#[derive(Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<i64, f64>>,
}

impl LastUsed {
    /// Remember that key `id` was used now (no I/O).
    pub fn touch(&self, id: i64) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() < MAX_PENDING || pending.contains_key(&id) {
            pending.insert(id, now);
        }
    }

    /// Keys waiting to be written.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Write every remembered use in one `UPDATE … FROM unnest(…)`; returns how many keys were
    /// written. On failure the uses are remembered again for the next flush.
    ///
    /// Errors: the database's.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, StoreError> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.is_empty() {
            return Ok(0);
        }
        let (ids, ats): (Vec<i64>, Vec<f64>) = taken.iter().map(|(k, v)| (*k, *v)).unzip();
        match sqlx::query(FLUSH).bind(&ids).bind(&ats).execute(pool).await {
            Ok(_) => Ok(ids.len()),
            Err(e) => {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (id, at) in taken {
                    let slot = pending.entry(id).or_insert(at);
                    *slot = slot.max(at);
                }
                Err(e.into())
            }
        }
    }
}
