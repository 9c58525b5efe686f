//! What the CLI lists and shows: one JSON object per row, built by PostgreSQL, with names of
//! secrets but never their values (the sealed column is never selected) and never a key.

use serde_json::{Map, Value};
use sqlx::PgPool;

use super::error::StoreError;

/// One row, fields in display order.
pub type Record = Map<String, Value>;

const TENANTS: &str = "SELECT json_build_object('id', t.id, 'name', t.name, 'created_at', t.created_at,
    'server_configs', (SELECT count(*) FROM server_configs s WHERE s.tenant_id = t.id),
    'instances', (SELECT count(*) FROM instances i WHERE i.tenant_id = t.id),
    'active_keys', (SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL))::text
  FROM tenants t WHERE ($1::text IS NULL OR t.name = $1) ORDER BY t.name";

const SERVERS: &str = "SELECT json_build_object('id', s.id, 'name', s.name, 'command', s.command, 'args', s.args,
    'url', s.url, 'env', s.env_names, 'headers', s.header_names, 'created_at', s.created_at)::text
  FROM server_configs s JOIN tenants t ON t.id = s.tenant_id
  WHERE t.name = $1 AND ($2::text IS NULL OR s.name = $2) ORDER BY s.name";

const INSTANCES: &str = "SELECT json_build_object('id', i.id, 'name', i.name, 'created_at', i.created_at,
    'tools', COALESCE((SELECT json_agg(COALESCE(s.name, 'shared:' || g.namespace) || ':' || g.pattern ORDER BY g.id)
                       FROM tool_grants g LEFT JOIN server_configs s ON s.id = g.server_id
                       WHERE g.instance_id = i.id), '[]'),
    'active_keys', (SELECT count(*) FROM api_keys k WHERE k.instance_id = i.id AND k.revoked_at IS NULL))::text
  FROM instances i JOIN tenants t ON t.id = i.tenant_id
  WHERE t.name = $1 AND ($2::text IS NULL OR i.name = $2) ORDER BY i.name";

const KEYS: &str = "SELECT json_build_object('id', k.id, 'prefix', k.prefix, 'name', k.name, 'instance', i.name,
    'rps', k.rps, 'burst', k.burst, 'created_at', k.created_at, 'last_used_at', k.last_used_at,
    'revoked_at', k.revoked_at)::text
  FROM api_keys k JOIN instances i ON i.id = k.instance_id JOIN tenants t ON t.id = k.tenant_id
  WHERE t.name = $1 AND ($2::text IS NULL OR i.name = $2) AND ($3::text IS NULL OR k.prefix = $3)
  ORDER BY k.id";

/// What is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Tenants.
    Tenant,
    /// A tenant's server configs.
    Server,
    /// A tenant's instances with their tool groups.
    Instance,
    /// A tenant's keys (of one instance when `scope` names it).
    Key,
}

/// Rows of `kind`: tenants (`name` filters), or within `tenant` (`name` filters by name, for
/// keys by display prefix; `instance` filters keys).
///
/// Errors: the database's ([`StoreError::Unavailable`], [`StoreError::NotMigrated`]).
pub async fn list(
    pool: &PgPool,
    kind: Kind,
    tenant: Option<&str>,
    name: Option<&str>,
    instance: Option<&str>,
) -> Result<Vec<Record>, StoreError> {
    let rows: Vec<String> = match kind {
        Kind::Tenant => sqlx::query_scalar(TENANTS).bind(name.or(tenant)).fetch_all(pool).await?,
        Kind::Server => sqlx::query_scalar(SERVERS).bind(tenant).bind(name).fetch_all(pool).await?,
        Kind::Instance => sqlx::query_scalar(INSTANCES).bind(tenant).bind(name).fetch_all(pool).await?,
        Kind::Key => sqlx::query_scalar(KEYS).bind(tenant).bind(instance).bind(name).fetch_all(pool).await?,
    };
    rows.iter()
        .map(|r| serde_json::from_str(r).map_err(|e| StoreError::Database(format!("malformed listing: {e}"))))
        .collect()
}
