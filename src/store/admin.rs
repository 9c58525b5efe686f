//! Changes to the store (tenants, server configs, instances and their tool groups, API keys),
//! each in one transaction that also announces it with `NOTIFY sekisho_store` (delivered at
//! commit), and the read-only listings the CLI prints. Secret values go in sealed and never
//! come out: listings show the names of environment variables and headers only.

use sqlx::{PgPool, Postgres, Transaction};

use super::error::StoreError;
use super::notify;
use super::resolve::Endpoint;
use super::secrets::{Keys, SecretValues, new_key};

/// Tool group entries per instance at most.
pub const MAX_GRANTS: i64 = 256;
/// Environment variables (and, separately, headers) per server config at most.
pub const MAX_SECRETS: usize = 64;
/// Bytes of one secret value at most.
pub const MAX_SECRET_BYTES: usize = 8192;
/// Arguments of a command at most, and bytes of one.
pub const MAX_ARGS: usize = 64;

/// A tool group entry as an operator names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantSpec {
    /// Tools of the tenant's server config `server` matching `pattern`.
    Server {
        /// The server config's name.
        server: String,
        /// Tool name pattern (`*` globs).
        pattern: String,
    },
    /// Tools of the static (TOML) upstream `namespace` matching `pattern`.
    Shared {
        /// The upstream's namespace.
        namespace: String,
        /// Tool name pattern (`*` globs).
        pattern: String,
    },
}

/// Check a name of a tenant, server config or instance: 1-32 of `a-z`, `0-9`, `-`, `_`,
/// without `__` (the default catalog separator).
///
/// Errors: [`StoreError::Invalid`] saying what a name may hold.
pub fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.contains("__");
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("{what} name {name:?}: 1-32 of a-z, 0-9, '-', '_' (no \"__\")")))
    }
}

fn check_pattern(pattern: &str) -> Result<(), StoreError> {
    let ok = !pattern.is_empty()
        && pattern.len() <= 128
        && pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./*".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("tool pattern {pattern:?}: 1-128 of A-Z, a-z, 0-9, _ - . / *")))
    }
}

fn check_secrets(values: &SecretValues) -> Result<(), StoreError> {
    for (kind, map, header) in [("environment variables", &values.env, false), ("headers", &values.headers, true)] {
        if map.len() > MAX_SECRETS {
            return Err(StoreError::Invalid(format!("at most {MAX_SECRETS} {kind}")));
        }
        for (name, value) in map {
            let name_ok = !name.is_empty()
                && name.len() <= 128
                && name.bytes().all(|b| b.is_ascii_graphic() && b != b'=' && b != b':')
                && (!header || http::HeaderName::from_bytes(name.as_bytes()).is_ok());
            // A header value must be one a request can carry (no CR, LF or NUL: no injection).
            let value_ok = value.expose().len() <= MAX_SECRET_BYTES
                && !value.expose().contains('\0')
                && (!header || http::HeaderValue::from_str(value.expose()).is_ok());
            if !name_ok || !value_ok {
                return Err(StoreError::Invalid(format!(
                    "{kind}: {name:?} is not a valid name, or its value is over {MAX_SECRET_BYTES} bytes or holds NUL (or, in a header, CR or LF)"
                )));
            }
        }
    }
    Ok(())
}

async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    Ok(pool.begin().await?)
}

async fn tenant_id(tx: &mut Transaction<'_, Postgres>, tenant: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
        .bind(tenant)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("tenant {tenant:?}")))
}

async fn scoped_id(
    tx: &mut Transaction<'_, Postgres>,
    table: &'static str,
    what: &str,
    tenant: i64,
    name: &str,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE tenant_id = $1 AND name = $2"))
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("{what} {name:?}")))
}

/// Create tenant `name`; returns its id.
///
/// Errors: [`StoreError::Invalid`] name, [`StoreError::Conflict`] when it exists.
pub async fn tenant_create(pool: &PgPool, name: &str) -> Result<i64, StoreError> {
    check_name("tenant", name)?;
    let mut tx = begin(pool).await?;
    let id: i64 = sqlx::query_scalar("INSERT INTO tenants (name) VALUES ($1) RETURNING id")
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, format!("tenant {name:?} exists")))?;
    notify::send(&mut tx, &notify::Change::Tenant(id)).await?;
    tx.commit().await?;
    Ok(id)
}

/// Delete tenant `name` with everything it owns (server configs, instances, keys).
///
/// Errors: [`StoreError::NotFound`].
pub async fn tenant_delete(pool: &PgPool, name: &str) -> Result<(), StoreError> {
    let mut tx = begin(pool).await?;
    let id = tenant_id(&mut tx, name).await?;
    sqlx::query("DELETE FROM tenants WHERE id = $1").bind(id).execute(&mut *tx).await?;
    notify::send(&mut tx, &notify::Change::Tenant(id)).await?;
    Ok(tx.commit().await?)
}

/// Create server config `name` of `tenant` reached at `endpoint`, its `values` sealed under
/// `keys`; returns its id.
///
/// Errors: [`StoreError::Invalid`] (name, too many or too large values, arguments),
/// [`StoreError::NotFound`] tenant, [`StoreError::Conflict`] when it exists.
pub async fn server_create(
    pool: &PgPool,
    keys: &Keys,
    tenant: &str,
    name: &str,
    endpoint: &Endpoint,
    values: &SecretValues,
) -> Result<i64, StoreError> {
    check_name("server config", name)?;
    check_secrets(values)?;
    let (command, args, url) = match endpoint {
        Endpoint::Command { command, args } => {
            if command.is_empty()
                || args.len() > MAX_ARGS
                || args.iter().chain([command]).any(|a| a.len() > 4096 || a.contains('\0'))
            {
                return Err(StoreError::Invalid(format!(
                    "command: non-empty, at most {MAX_ARGS} arguments of 4096 bytes"
                )));
            }
            (Some(command.clone()), args.clone(), None)
        }
        Endpoint::Url(url) => {
            let ok = (url.starts_with("http://") || url.starts_with("https://")) && url.len() <= 2048;
            if !ok || url.parse::<http::Uri>().is_err() {
                return Err(StoreError::Invalid("url: an http:// or https:// URL of at most 2048 bytes".into()));
            }
            (None, Vec::new(), Some(url.clone()))
        }
    };
    let mut tx = begin(pool).await?;
    let tid = tenant_id(&mut tx, tenant).await?;
    let sealed = keys.seal(tid, name, values);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO server_configs (tenant_id, name, command, args, url, env_names, header_names, secrets) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(tid)
    .bind(name)
    .bind(command)
    .bind(args)
    .bind(url)
    .bind(values.env.keys().cloned().collect::<Vec<_>>())
    .bind(values.headers.keys().cloned().collect::<Vec<_>>())
    .bind(sealed)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| conflict(e, format!("server config {name:?} exists in tenant {tenant:?}")))?;
    notify::send(&mut tx, &notify::Change::Tenant(tid)).await?;
    tx.commit().await?;
    Ok(id)
}

/// Delete server config `name` of `tenant` (and the tool group entries naming it).
///
/// Errors: [`StoreError::NotFound`].
pub async fn server_delete(pool: &PgPool, tenant: &str, name: &str) -> Result<(), StoreError> {
    delete_scoped(pool, "server_configs", "server config", tenant, name).await
}

/// Delete instance `name` of `tenant` (with its tool group and keys).
///
/// Errors: [`StoreError::NotFound`].
pub async fn instance_delete(pool: &PgPool, tenant: &str, name: &str) -> Result<(), StoreError> {
    delete_scoped(pool, "instances", "instance", tenant, name).await
}

async fn delete_scoped(
    pool: &PgPool,
    table: &'static str,
    what: &str,
    tenant: &str,
    name: &str,
) -> Result<(), StoreError> {
    let mut tx = begin(pool).await?;
    let tid = tenant_id(&mut tx, tenant).await?;
    let id = scoped_id(&mut tx, table, what, tid, name).await?;
    sqlx::query(&format!("DELETE FROM {table} WHERE id = $1")).bind(id).execute(&mut *tx).await?;
    notify::send(&mut tx, &notify::Change::Tenant(tid)).await?;
    Ok(tx.commit().await?)
}

/// Create instance `name` of `tenant` with the tool group `grants`; returns its id.
///
/// Errors: [`StoreError::Invalid`] names or patterns, [`StoreError::NotFound`] tenant or server
/// config (only the tenant's own are found), [`StoreError::Conflict`] when it exists.
pub async fn instance_create(pool: &PgPool, tenant: &str, name: &str, grants: &[GrantSpec]) -> Result<i64, StoreError> {
    check_name("instance", name)?;
    let mut tx = begin(pool).await?;
    let tid = tenant_id(&mut tx, tenant).await?;
    let id: i64 = sqlx::query_scalar("INSERT INTO instances (tenant_id, name) VALUES ($1, $2) RETURNING id")
        .bind(tid)
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, format!("instance {name:?} exists in tenant {tenant:?}")))?;
    add_grants(&mut tx, tid, id, grants).await?;
    notify::send(&mut tx, &notify::Change::Tenant(tid)).await?;
    tx.commit().await?;
    Ok(id)
}

/// Add `grants` to the tool group of instance `name` (entries it has already are kept once).
///
/// Errors: as [`instance_create`]; [`StoreError::Invalid`] past [`MAX_GRANTS`] entries.
pub async fn instance_grant(pool: &PgPool, tenant: &str, name: &str, grants: &[GrantSpec]) -> Result<(), StoreError> {
    let mut tx = begin(pool).await?;
    let tid = tenant_id(&mut tx, tenant).await?;
    let id = scoped_id(&mut tx, "instances", "instance", tid, name).await?;
    add_grants(&mut tx, tid, id, grants).await?;
    notify::send(&mut tx, &notify::Change::Tenant(tid)).await?;
    Ok(tx.commit().await?)
}

/// Remove `grants` from the tool group of instance `name`; returns how many entries went.
///
/// Errors: [`StoreError::NotFound`] tenant, instance or server config.
pub async fn instance_revoke(pool: &PgPool, tenant: &str, name: &str, grants: &[GrantSpec]) -> Result<u64, StoreError> {
    let mut tx = begin(pool).await?;
    let tid = tenant_id(&mut tx, tenant).await?;
    let id = scoped_id(&mut tx, "instances", "instance", tid, name).await?;
    let mut removed = 0;
    for g in grants {
        let (server, namespace, pattern) = grant_columns(&mut tx, tid, g).await?;
        removed += sqlx::query(
            "DELETE FROM tool_grants WHERE instance_id = $1 AND server_id IS NOT DISTINCT FROM $2 \
             AND namespace IS NOT DISTINCT FROM $3 AND pattern = $4",
        )
        .bind(id)
        .bind(server)
        .bind(namespace)
        .bind(pattern)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    notify::send(&mut tx, &notify::Change::Tenant(tid)).await?;
    tx.commit().await?;
    Ok(removed)
}

async fn grant_columns<'g>(
    tx: &mut Transaction<'_, Postgres>,
    tid: i64,
    g: &'g GrantSpec,
) -> Result<(Option<i64>, Option<&'g str>, &'g str), StoreError> {
    Ok(match g {
        GrantSpec::Server { server, pattern } => {
            check_pattern(pattern)?;
            (Some(scoped_id(tx, "server_configs", "server config", tid, server).await?), None, pattern)
        }
        GrantSpec::Shared { namespace, pattern } => {
            check_pattern(pattern)?;
            let ok = !namespace.is_empty()
                && namespace.len() <= 32
                && namespace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(StoreError::Invalid(format!(
                    "shared namespace {namespace:?}: 1-32 of A-Z, a-z, 0-9, '-', '_'"
                )));
            }
            (None, Some(namespace.as_str()), pattern)
        }
    })
}

async fn add_grants(
    tx: &mut Transaction<'_, Postgres>,
    tid: i64,
    instance: i64,
    grants: &[GrantSpec],
) -> Result<(), StoreError> {
    for g in grants {
        let (server, namespace, pattern) = grant_columns(tx, tid, g).await?;
        sqlx::query(
            "INSERT INTO tool_grants (tenant_id, instance_id, server_id, namespace, pattern) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(tid)
        .bind(instance)
        .bind(server)
        .bind(namespace)
        .bind(pattern)
        .execute(&mut **tx)
        .await?;
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tool_grants WHERE instance_id = $1")
        .bind(instance)
        .fetch_one(&mut **tx)
        .await?;
    if count > MAX_GRANTS {
        return Err(StoreError::Invalid(format!("an instance's tool group holds at most {MAX_GRANTS} entries")));
    }
    Ok(())
}

/// A new key's one-time text and its record's id and display prefix.
#[derive(Debug)]
pub struct NewKey {
    /// The key itself: shown once, never stored.
    pub key: super::secrets::Secret,
    /// `api_keys.id`.
    pub id: i64,
    /// Its display prefix.
    pub prefix: String,
}

/// Create a key for instance `instance` of `tenant`, labelled `name`, with an optional own rate
/// limit (`rps` > 0, `burst` ≥ 1).
///
/// Errors: [`StoreError::NotFound`] tenant or instance, [`StoreError::Invalid`] limits.
pub async fn key_create(
    pool: &PgPool,
    keys: &Keys,
    tenant: &str,
    instance: &str,
    name: &str,
    rps: Option<f64>,
    burst: Option<u32>,
) -> Result<NewKey, StoreError> {
    if name.len() > 64 || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid("key name: at most 64 characters, no control characters".into()));
    }
    if rps.is_some_and(|r| !(r > 0.0 && r.is_finite())) || burst.is_some_and(|b| b == 0 || b > i32::MAX as u32) {
        return Err(StoreError::Invalid("rps must be positive and burst at least 1".into()));
    }
    let mut tx = begin(pool).await?;
    let tid = tenant_id(&mut tx, tenant).await?;
    let iid = scoped_id(&mut tx, "instances", "instance", tid, instance).await?;
    let (key, prefix) = new_key();
    let hash = keys.hash_key(&key);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_keys (tenant_id, instance_id, name, prefix, key_hash, rps, burst) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(tid)
    .bind(iid)
    .bind(name)
    .bind(&prefix)
    .bind(&hash[..])
    .bind(rps)
    .bind(burst.map(|b| b as i32))
    .fetch_one(&mut *tx)
    .await?;
    notify::send(&mut tx, &notify::Change::Key(hash)).await?;
    tx.commit().await?;
    Ok(NewKey { key: super::secrets::Secret::new(key), id, prefix })
}

/// Revoke (`delete = false`: keep the row with `revoked_at`) or delete the key of `tenant`
/// whose display prefix is `prefix`.
///
/// Errors: [`StoreError::NotFound`] when the tenant has no such key (another tenant's key is
/// not found either).
pub async fn key_end(pool: &PgPool, tenant: &str, prefix: &str, delete: bool) -> Result<(), StoreError> {
    let mut tx = begin(pool).await?;
    let tid = tenant_id(&mut tx, tenant).await?;
    let sql = if delete {
        "DELETE FROM api_keys WHERE tenant_id = $1 AND prefix = $2 RETURNING key_hash"
    } else {
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE tenant_id = $1 AND prefix = $2 RETURNING key_hash"
    };
    let hash: Vec<u8> = sqlx::query_scalar(sql)
        .bind(tid)
        .bind(prefix)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("key {prefix:?} in tenant {tenant:?}")))?;
    let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Database("malformed key hash".into()))?;
    notify::send(&mut tx, &notify::Change::Key(hash)).await?;
    Ok(tx.commit().await?)
}

fn conflict(e: sqlx::Error, message: String) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(message),
        other => other,
    }
}
