//! `sekisho db migrate` and `sekisho tenant|server|instance|key …`: the store's operator
//! commands against PostgreSQL directly (`--database-url`). Printing only; the work is in
//! `crate::store`. Secret values are read from the command line or the CLI's environment and
//! never printed; a new key is printed once.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};

use crate::store::admin::{self, GrantSpec};
use crate::store::listing::{self, Kind, Record};
use crate::store::resolve::Endpoint;
use crate::store::secrets::{Keys, Secret, SecretValues};
use crate::store::{StoreError, pool};

/// Where the database is, and the secrets some commands need.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// PostgreSQL URL (`postgres://user@host:port/db`).
    #[arg(long, env = "SEKISHO_STORE__POSTGRES_URL", hide_env_values = true)]
    pub database_url: String,
    /// `[store] key_pepper` (needed by `key create`).
    #[arg(long, env = "SEKISHO_STORE__KEY_PEPPER", hide_env_values = true, default_value = "")]
    pub key_pepper: String,
    /// `[store] secret_key` (needed by `server create`).
    #[arg(long, env = "SEKISHO_STORE__SECRET_KEY", hide_env_values = true, default_value = "")]
    pub secret_key: String,
}

/// One named thing of a tenant: a server config, an instance.
#[derive(Debug, Args)]
pub struct Named {
    /// Its name.
    pub name: String,
    /// The tenant it belongs to.
    #[arg(long)]
    pub tenant: String,
    #[command(flatten)]
    pub db: DbArgs,
}

/// All things of one kind of a tenant.
#[derive(Debug, Args)]
pub struct OfTenant {
    /// The tenant.
    #[arg(long)]
    pub tenant: String,
    #[command(flatten)]
    pub db: DbArgs,
}

/// One key of a tenant, by its display prefix.
#[derive(Debug, Args)]
pub struct KeyRef {
    /// The key's display prefix (`sks_` + 8 characters).
    pub prefix: String,
    /// The tenant it belongs to.
    #[arg(long)]
    pub tenant: String,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `sekisho db …`.
#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Apply the embedded migrations not yet applied.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `sekisho tenant …`.
#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Create a tenant.
    Create {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show one tenant.
    Show {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a tenant with its server configs, instances and keys.
    Delete {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `sekisho server …`: a tenant's own MCP servers.
#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Create a server config: `--command` (with `--arg`s) or `--url`; `--env NAME=VALUE` or
    /// `--env NAME` (the value of NAME in this command's environment), `--header` likewise.
    Create {
        name: String,
        #[arg(long)]
        tenant: String,
        #[arg(long, conflicts_with = "url", required_unless_present = "url")]
        command: Option<String>,
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        env: Vec<String>,
        #[arg(long)]
        header: Vec<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a tenant's server configs (names of secrets only).
    List(OfTenant),
    /// Show one server config (names of secrets only).
    Show(Named),
    /// Delete a server config (and the tool group entries naming it).
    Delete(Named),
}

/// Tool group entries on the command line.
#[derive(Debug, Args)]
pub struct Grants {
    /// `SERVER:PATTERN`: tools of the tenant's server config SERVER (`*` globs).
    #[arg(long = "tool")]
    pub tools: Vec<String>,
    /// `NAMESPACE:PATTERN`: tools of the static upstream NAMESPACE the operator shares.
    #[arg(long = "shared")]
    pub shared: Vec<String>,
}

/// `sekisho instance …`: virtual servers and their tool groups.
#[derive(Debug, Subcommand)]
pub enum InstanceAction {
    /// Create an instance with a tool group.
    Create {
        name: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        grants: Grants,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a tenant's instances.
    List(OfTenant),
    /// Show one instance.
    Show(Named),
    /// Add entries to an instance's tool group.
    Grant {
        #[command(flatten)]
        of: Named,
        #[command(flatten)]
        grants: Grants,
    },
    /// Remove entries from an instance's tool group.
    Revoke {
        #[command(flatten)]
        of: Named,
        #[command(flatten)]
        grants: Grants,
    },
    /// Delete an instance with its keys.
    Delete(Named),
}

/// `sekisho key …`: API keys of instances.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Create a key for an instance; the key is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        instance: String,
        /// A label.
        #[arg(long, default_value = "")]
        name: String,
        /// The key's own rate limit (requests per second).
        #[arg(long)]
        rps: Option<f64>,
        /// The key's own burst (requests).
        #[arg(long)]
        burst: Option<u32>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a tenant's keys (prefixes only).
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        instance: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show one key by its display prefix.
    Show(KeyRef),
    /// Revoke a key (kept, refused from now on).
    Revoke(KeyRef),
    /// Delete a key.
    Delete(KeyRef),
}

/// One store command, as `main` hands it over.
#[derive(Debug)]
pub enum StoreCommand {
    /// `db …`.
    Db(DbAction),
    /// `tenant …`.
    Tenant(TenantAction),
    /// `server …`.
    Server(ServerAction),
    /// `instance …`.
    Instance(InstanceAction),
    /// `key …`.
    Key(KeyAction),
}

/// Run `command`; returns what to print on stdout.
///
/// Errors: the store's, as text (names and causes, never secret values).
pub async fn run(command: StoreCommand) -> Result<String, StoreError> {
    use StoreCommand as C;
    match command {
        C::Db(DbAction::Migrate { db }) => {
            let applied = crate::store::migrate(&connect(&db)?).await?;
            Ok(if applied.is_empty() {
                "database schema up to date\n".into()
            } else {
                format!("applied migrations {applied:?}; database schema up to date\n")
            })
        }
        C::Tenant(a) => tenant(a).await,
        C::Server(a) => server(a).await,
        C::Instance(a) => instance(a).await,
        C::Key(a) => key(a).await,
    }
}

fn connect(db: &DbArgs) -> Result<sqlx::PgPool, StoreError> {
    pool(&db.database_url, 2, std::time::Duration::from_secs(10))
}

fn keys(db: &DbArgs) -> Result<Keys, StoreError> {
    Keys::new(&db.key_pepper, &db.secret_key).map_err(|e| {
        StoreError::Invalid(format!(
            "{e} (pass --key-pepper/--secret-key or set SEKISHO_STORE__KEY_PEPPER/SEKISHO_STORE__SECRET_KEY)"
        ))
    })
}

async fn show(
    db: &DbArgs,
    kind: Kind,
    tenant: Option<&str>,
    name: Option<&str>,
    instance: Option<&str>,
) -> Result<String, StoreError> {
    let rows = listing::list(&connect(db)?, kind, tenant, name, instance).await?;
    if rows.is_empty() && name.is_some() {
        return Err(StoreError::NotFound(format!("{kind:?} {:?}", name.unwrap_or_default()).to_lowercase()));
    }
    Ok(rows.iter().map(render).collect())
}

/// One record as `field: value` lines; URLs with user info or a query are redacted.
fn render(record: &Record) -> String {
    let mut out = String::new();
    for (i, (k, v)) in record.iter().enumerate() {
        let text = match v {
            serde_json::Value::String(s) if k == "url" => crate::observe::redact::url(s),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".into(),
            other => other.to_string(),
        };
        out.push_str(&format!("{}{k}: {text}\n", if i == 0 { "" } else { "  " }));
    }
    out
}

async fn tenant(a: TenantAction) -> Result<String, StoreError> {
    match a {
        TenantAction::Create { name, db } => {
            let id = admin::tenant_create(&connect(&db)?, &name).await?;
            Ok(format!("created tenant {name} (id {id})\n"))
        }
        TenantAction::List { db } => show(&db, Kind::Tenant, None, None, None).await,
        TenantAction::Show { name, db } => show(&db, Kind::Tenant, None, Some(&name), None).await,
        TenantAction::Delete { name, db } => {
            admin::tenant_delete(&connect(&db)?, &name).await?;
            Ok(format!("deleted tenant {name}\n"))
        }
    }
}

/// `NAME=VALUE`, or `NAME` taken from this process's environment.
fn secret_values(items: &[String], what: &str) -> Result<BTreeMap<String, Secret>, StoreError> {
    let mut out = BTreeMap::new();
    for item in items {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = std::env::var(item).map_err(|_| {
                    StoreError::Invalid(format!("--{what} {item}: no value given and {item} is not set"))
                })?;
                (item.clone(), v)
            }
        };
        out.insert(name, Secret::new(value));
    }
    Ok(out)
}

async fn server(a: ServerAction) -> Result<String, StoreError> {
    match a {
        ServerAction::Create { name, tenant, command, args, url, env, header, db } => {
            let endpoint = match (command, url) {
                (Some(command), None) => Endpoint::Command { command, args },
                (None, Some(url)) => Endpoint::Url(url),
                _ => return Err(StoreError::Invalid("give --command or --url".into())),
            };
            let values = SecretValues { env: secret_values(&env, "env")?, headers: secret_values(&header, "header")? };
            let id = admin::server_create(&connect(&db)?, &keys(&db)?, &tenant, &name, &endpoint, &values).await?;
            Ok(format!("created server config {name} of tenant {tenant} (id {id})\n"))
        }
        ServerAction::List(OfTenant { tenant, db }) => show(&db, Kind::Server, Some(&tenant), None, None).await,
        ServerAction::Show(Named { name, tenant, db }) => {
            show(&db, Kind::Server, Some(&tenant), Some(&name), None).await
        }
        ServerAction::Delete(Named { name, tenant, db }) => {
            admin::server_delete(&connect(&db)?, &tenant, &name).await?;
            Ok(format!("deleted server config {name} of tenant {tenant}\n"))
        }
    }
}

fn grant_specs(g: &Grants) -> Result<Vec<GrantSpec>, StoreError> {
    let split = |s: &String| {
        s.split_once(':')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or_else(|| StoreError::Invalid(format!("{s:?}: expected NAME:PATTERN")))
    };
    let mut out = Vec::new();
    for t in &g.tools {
        let (server, pattern) = split(t)?;
        out.push(GrantSpec::Server { server, pattern });
    }
    for t in &g.shared {
        let (namespace, pattern) = split(t)?;
        out.push(GrantSpec::Shared { namespace, pattern });
    }
    Ok(out)
}

async fn instance(a: InstanceAction) -> Result<String, StoreError> {
    match a {
        InstanceAction::Create { name, tenant, grants, db } => {
            let id = admin::instance_create(&connect(&db)?, &tenant, &name, &grant_specs(&grants)?).await?;
            Ok(format!("created instance {name} of tenant {tenant} (id {id})\n"))
        }
        InstanceAction::List(OfTenant { tenant, db }) => show(&db, Kind::Instance, Some(&tenant), None, None).await,
        InstanceAction::Show(Named { name, tenant, db }) => {
            show(&db, Kind::Instance, Some(&tenant), Some(&name), None).await
        }
        InstanceAction::Grant { of: Named { name, tenant, db }, grants } => {
            admin::instance_grant(&connect(&db)?, &tenant, &name, &grant_specs(&grants)?).await?;
            Ok(format!("updated the tool group of instance {name}\n"))
        }
        InstanceAction::Revoke { of: Named { name, tenant, db }, grants } => {
            let n = admin::instance_revoke(&connect(&db)?, &tenant, &name, &grant_specs(&grants)?).await?;
            Ok(format!("removed {n} entries from the tool group of instance {name}\n"))
        }
        InstanceAction::Delete(Named { name, tenant, db }) => {
            admin::instance_delete(&connect(&db)?, &tenant, &name).await?;
            Ok(format!("deleted instance {name} of tenant {tenant}\n"))
        }
    }
}

async fn key(a: KeyAction) -> Result<String, StoreError> {
    match a {
        KeyAction::Create { tenant, instance, name, rps, burst, db } => {
            let new = admin::key_create(&connect(&db)?, &keys(&db)?, &tenant, &instance, &name, rps, burst).await?;
            Ok(format!(
                "created key {} (id {}) for instance {instance} of tenant {tenant}; it is shown only now:\n{}\n",
                new.prefix,
                new.id,
                new.key.expose()
            ))
        }
        KeyAction::List { tenant, instance, db } => {
            show(&db, Kind::Key, Some(&tenant), None, instance.as_deref()).await
        }
        KeyAction::Show(KeyRef { prefix, tenant, db }) => {
            show(&db, Kind::Key, Some(&tenant), Some(&prefix), None).await
        }
        KeyAction::Revoke(KeyRef { prefix, tenant, db }) => {
            admin::key_end(&connect(&db)?, &tenant, &prefix, false).await?;
            Ok(format!("revoked key {prefix}\n"))
        }
        KeyAction::Delete(KeyRef { prefix, tenant, db }) => {
            admin::key_end(&connect(&db)?, &tenant, &prefix, true).await?;
            Ok(format!("deleted key {prefix}\n"))
        }
    }
}
