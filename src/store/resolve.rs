//! The resolution of a presented API key: key → instance → tenant → tool group → server configs,
//! in one SQL statement (one round trip: joins and JSON aggregation, no N+1), decrypted into a
//! [`Resolved`] the edge turns into an identity and a catalog view.

use serde::Deserialize;
use sqlx::PgPool;

use super::error::StoreError;
use super::secrets::{Keys, SecretValues};

/// An id and a name (tenants, instances).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// The row's id.
    pub id: i64,
    /// Its name (unique among its siblings).
    pub name: String,
}

/// The presented key's own record (never the key: only its display prefix).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRecord {
    /// `api_keys.id`; what `last_used_at` is buffered under.
    pub id: i64,
    /// The operator's label of the key (may be empty).
    pub name: String,
    /// The key's first characters (`sks_` + 8), safe to show and log.
    pub prefix: String,
    /// The key's own rate limit, requests per second, if set.
    pub rps: Option<f64>,
    /// The key's own burst (requests), if set.
    pub burst: Option<u32>,
}

/// Where a tool group entry's tools come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolSource {
    /// One of the tenant's own server configs, by `server_configs.id`
    /// ([`TenantServer::id`] in [`Resolved::servers`]).
    Server(i64),
    /// A static upstream of the TOML configuration, by namespace, shared by the operator.
    Shared(String),
}

/// One tool group entry: the tools of `source` whose names match `pattern`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolGrant {
    /// Where the tools come from.
    pub source: ToolSource,
    /// The upstream's own tool name, where `*` matches any run of characters (`*` alone: all).
    pub pattern: String,
}

impl ToolGrant {
    /// Whether `tool` (the upstream's own name) matches this entry's pattern.
    pub fn matches(&self, tool: &str) -> bool {
        pattern_matches(&self.pattern, tool)
    }
}

/// Whether the tool name `tool` matches the tool group pattern `pattern` (`*` matches any run
/// of characters).
pub fn pattern_matches(pattern: &str, tool: &str) -> bool {
    glob(pattern.as_bytes(), tool.as_bytes())
}

/// `*`-only glob, iterative (linear backtracking to the last star; no recursion, so a hostile
/// pattern costs at most |pattern| × |name| steps).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// How a tenant's server is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A child process (stdio).
    Command {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// A Streamable HTTP endpoint.
    Url(String),
}

/// A tenant's own MCP server, with its secret values opened (`Debug` shows names only).
#[derive(Clone, Debug, PartialEq)]
pub struct TenantServer {
    /// `server_configs.id`.
    pub id: i64,
    /// Its name, unique within the tenant (a namespace in the instance's catalog).
    pub name: String,
    /// How it is reached.
    pub endpoint: Endpoint,
    /// Its environment variables and headers, decrypted.
    pub secrets: SecretValues,
}

/// Everything a valid key may reach, as of one load.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The key.
    pub key: KeyRecord,
    /// The instance (virtual server) the key belongs to.
    pub instance: Named,
    /// The tenant owning the instance.
    pub tenant: Named,
    /// The instance's tool group, in creation order.
    pub tools: Vec<ToolGrant>,
    /// The tenant's server configs the tool group names (only those), in name order.
    pub servers: Vec<TenantServer>,
}

impl Resolved {
    /// Whether `other` exposes the same catalog: the same tool group and the same server
    /// configs (endpoints and secrets). The key's own record (name, rate limit) may differ.
    pub fn same_view(&self, other: &Resolved) -> bool {
        self.instance == other.instance && self.tools == other.tools && self.servers == other.servers
    }

    /// Whether the tool group exposes `tool` (the upstream's own name) of `source`.
    pub fn allows(&self, source: &ToolSource, tool: &str) -> bool {
        self.tools.iter().any(|g| &g.source == source && g.matches(tool))
    }
}

/// The one statement, around its key columns and its `FROM … WHERE`: the instance and its
/// tenant, with the tool group and the server configs it names aggregated as JSON. The server
/// configs are restricted to the instance's tenant twice over: by the composite foreign keys
/// of `tool_grants`, and by the `s.tenant_id = i.tenant_id` condition here.
macro_rules! resolution {
    ($key:literal, $from:literal) => {
        concat!(
            "SELECT ",
            $key,
            r#", i.id AS instance_id, i.name AS instance_name, t.id AS tenant_id, t.name AS tenant_name,
       COALESCE((SELECT json_agg(json_build_object('server', g.server_id, 'namespace', g.namespace,
                                                   'pattern', g.pattern) ORDER BY g.id)
                 FROM tool_grants g WHERE g.instance_id = i.id AND g.tenant_id = i.tenant_id), '[]')::text AS tools,
       COALESCE((SELECT json_agg(json_build_object('id', s.id, 'name', s.name, 'command', s.command,
                                                   'args', s.args, 'url', s.url,
                                                   'secrets', encode(s.secrets, 'hex')) ORDER BY s.name)
                 FROM server_configs s
                 WHERE s.tenant_id = i.tenant_id
                   AND s.id IN (SELECT g.server_id FROM tool_grants g WHERE g.instance_id = i.id)), '[]')::text AS servers
"#,
            $from
        )
    };
}

/// A key's resolution: its row joined to its instance (of the key's own tenant) and tenant.
/// Revoked keys find nothing.
const RESOLVE: &str = resolution!(
    "k.id, k.name, k.prefix, k.rps, k.burst",
    "FROM api_keys k
JOIN instances i ON i.id = k.instance_id AND i.tenant_id = k.tenant_id
JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
);

/// An instance's resolution by tenant and instance name (an OAuth caller's virtual server,
/// [`load_instance`]), with an empty key record (id 0, no rate limit).
const RESOLVE_INSTANCE: &str = resolution!(
    "0::bigint, ''::text, ''::text, NULL::float8, NULL::int4",
    "FROM instances i
JOIN tenants t ON t.id = i.tenant_id
WHERE t.name = $1 AND i.name = $2"
);

/// The resolution's columns: key id, name, prefix, rps, burst; instance id, name; tenant id,
/// name; tools and servers as JSON text.
type Row = (i64, String, String, Option<f64>, Option<i32>, i64, String, i64, String, String, String);

#[derive(Deserialize)]
struct GrantRow {
    server: Option<i64>,
    namespace: Option<String>,
    pattern: String,
}

#[derive(Deserialize)]
struct ServerRow {
    id: i64,
    name: String,
    command: Option<String>,
    args: Vec<String>,
    url: Option<String>,
    secrets: String,
}

/// Load what the key with HMAC `hash` reaches: `None` when no unrevoked key has that hash.
///
/// Errors: [`StoreError::Unavailable`] when PostgreSQL does not answer; [`StoreError::Secret`]
/// when a server config's secrets do not open; [`StoreError::NotMigrated`] without the schema.
pub async fn load(pool: &PgPool, keys: &Keys, hash: &[u8; 32]) -> Result<Option<Resolved>, StoreError> {
    // `fetch_all` (at most one row: `key_hash` is unique) reads the answer to its end, so the
    // connection needs no extra Sync round trip before its next statement, as an abandoned
    // `fetch_optional` stream would.
    let rows: Vec<Row> = sqlx::query_as(RESOLVE).bind(&hash[..]).fetch_all(pool).await?;
    rows.into_iter().next().map(|row| parse(keys, row)).transpose()
}

/// Load what instance `instance` of tenant `tenant` (both by name) reaches, for a caller the
/// instance is bound to by other means than a key (an OAuth token's claims): `None` when the
/// tenant or the instance does not exist. The key record is empty (id 0, no rate limit).
///
/// Errors: as [`load`].
pub async fn load_instance(
    pool: &PgPool,
    keys: &Keys,
    tenant: &str,
    instance: &str,
) -> Result<Option<Resolved>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(RESOLVE_INSTANCE).bind(tenant).bind(instance).fetch_all(pool).await?;
    rows.into_iter().next().map(|row| parse(keys, row)).transpose()
}

/// One resolution row, its secrets opened.
fn parse(keys: &Keys, row: Row) -> Result<Resolved, StoreError> {
    let (id, name, prefix, rps, burst, instance_id, instance_name, tenant_id, tenant_name, tools, servers) = row;
    let bad = |what: &str| {
        StoreError::Database(format!("the resolution of {instance_name} ({prefix}) returned malformed {what}"))
    };
    let grants: Vec<GrantRow> = serde_json::from_str(&tools).map_err(|_| bad("tools"))?;
    let rows: Vec<ServerRow> = serde_json::from_str(&servers).map_err(|_| bad("servers"))?;
    let mut opened = Vec::with_capacity(rows.len());
    for s in rows {
        let sealed = hex::decode(&s.secrets).map_err(|_| bad("secrets"))?;
        let endpoint = match (s.command, s.url) {
            (Some(command), None) => Endpoint::Command { command, args: s.args },
            (None, Some(url)) => Endpoint::Url(url),
            _ => return Err(bad("endpoint")),
        };
        let secrets = keys.open(tenant_id, &s.name, &sealed)?;
        opened.push(TenantServer { id: s.id, name: s.name, endpoint, secrets });
    }
    let tools = grants
        .into_iter()
        .map(|g| {
            let source = match (g.server, g.namespace) {
                (Some(id), None) => ToolSource::Server(id),
                (None, Some(ns)) => ToolSource::Shared(ns),
                _ => return Err(bad("tool group")),
            };
            Ok(ToolGrant { source, pattern: g.pattern })
        })
        .collect::<Result<_, _>>()?;
    Ok(Resolved {
        key: KeyRecord { id, name, prefix, rps, burst: burst.map(|b| b as u32) },
        instance: Named { id: instance_id, name: instance_name },
        tenant: Named { id: tenant_id, name: tenant_name },
        tools,
        servers: opened,
    })
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn star_globs_match_runs_of_characters() {
        for (p, n, want) in [
            ("*", "anything", true),
            ("get_*", "get_forecast", true),
            ("get_*", "set_forecast", false),
            ("*_forecast", "get_forecast", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
        ] {
            assert_eq!(glob(p.as_bytes(), n.as_bytes()), want, "{p} vs {n}");
        }
        // A hostile pattern stays linear-ish: this returns quickly.
        assert!(!glob("*a*a*a*a*a*a*a*a*b".as_bytes(), "a".repeat(2000).as_bytes()));
    }
}
