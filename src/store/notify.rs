//! The change announcements on `NOTIFY sekisho_store`: what changed, so every replica drops
//! the cached resolutions it makes stale (docs/multi-tenant.md).
//!
//! Payloads: `key:<hex HMAC of the key>` (a key created, revoked or deleted: that key's entry,
//! cached as known or unknown), `tenant:<id>` (anything else of the tenant: its resolved keys),
//! `all`.

use sqlx::{Postgres, Transaction};

use super::error::StoreError;

/// The channel every change is announced on.
pub const CHANNEL: &str = "sekisho_store";

/// What a change makes stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key with this HMAC.
    Key([u8; 32]),
    /// Everything resolved for keys of this tenant.
    Tenant(i64),
    /// Everything.
    All,
}

impl Change {
    /// The NOTIFY payload.
    pub fn payload(&self) -> String {
        match self {
            Change::Key(hash) => format!("key:{}", hex::encode(hash)),
            Change::Tenant(id) => format!("tenant:{id}"),
            Change::All => "all".into(),
        }
    }

    /// Read a payload; anything unreadable counts as [`Change::All`] (dropping too much is safe,
    /// dropping too little is not).
    pub fn parse(payload: &str) -> Change {
        if let Some(h) = payload.strip_prefix("key:")
            && let Ok(bytes) = hex::decode(h)
            && let Ok(hash) = bytes.try_into()
        {
            return Change::Key(hash);
        }
        if let Some(id) = payload.strip_prefix("tenant:").and_then(|i| i.parse().ok()) {
            return Change::Tenant(id);
        }
        Change::All
    }
}

/// Announce `change` in `tx` (PostgreSQL delivers it when the transaction commits, and not at
/// all when it rolls back).
///
/// Errors: the database's.
pub async fn send(tx: &mut Transaction<'_, Postgres>, change: &Change) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(change.payload()).execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn payloads_round_trip_and_garbage_drops_everything() {
        for c in [Change::Key([9; 32]), Change::Tenant(42), Change::All] {
            assert_eq!(Change::parse(&c.payload()), c);
        }
        assert_eq!(Change::parse("key:zz"), Change::All);
        assert_eq!(Change::parse("tenant:x"), Change::All);
    }
}
