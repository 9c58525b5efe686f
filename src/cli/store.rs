//! `sekisho db migrate` and `sekisho tenant|server|instance|key …`: the store's operator
//! commands, run against PostgreSQL directly (`--database-url`) or through a running gateway's
//! admin API (`--url` with an admin key). Parsing and printing only: each command becomes a
//! [`crate::store::ops::Op`], which `crate::store::ops::execute` runs (here, or in the gateway);
//! both ways print the same text. Secret values are read from the command line or the CLI's
//! environment and never printed; a new key is printed once.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::store::ops::{self, Op};
use crate::store::secrets::{Keys, Secret};
use crate::store::{StoreError, pool};
use crate::upstream::auth::config::{AuthConfig, BearerConfig, ClientCredentialsConfig};

pub use super::remote::ADMIN_KEY_ENV;
use super::remote::{self, RemoteError};
/// The environment variable the database URL may come from.
const DATABASE_URL_ENV: &str = "SEKISHO_STORE__POSTGRES_URL";

/// Where `sekisho db migrate` runs.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// PostgreSQL URL (`postgres://user@host:port/db`).
    #[arg(long, env = DATABASE_URL_ENV, hide_env_values = true)]
    pub database_url: String,
}

/// Where a store command runs: PostgreSQL (`--database-url`, with the secrets `key create`
/// and `server create` need), or a running gateway (`--url`, with an admin key). Exactly one
/// of the two is given; `--url` wins over a database URL from the environment.
#[derive(Debug, Args)]
pub struct Target {
    /// PostgreSQL URL (`postgres://user@host:port/db`): run the command against the database.
    #[arg(long, env = DATABASE_URL_ENV, hide_env_values = true)]
    pub database_url: Option<String>,
    /// A running gateway's base URL (`https://gateway.example`): run the command through its
    /// admin API (`POST /admin/store/…`), which needs an admin key.
    #[arg(long)]
    pub url: Option<String>,
    /// An API key of the gateway with `role = "admin"` (for `--url`).
    #[arg(long, env = ADMIN_KEY_ENV, hide_env_values = true)]
    pub admin_key: Option<String>,
    /// `[store] key_pepper` (needed by `key create` with `--database-url`).
    #[arg(long, env = "SEKISHO_STORE__KEY_PEPPER", hide_env_values = true, default_value = "")]
    pub key_pepper: String,
    /// `[store] secret_key` (needed by `server create` with `--database-url`).
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
    pub at: Target,
}

/// All things of one kind of a tenant.
#[derive(Debug, Args)]
pub struct OfTenant {
    /// The tenant.
    #[arg(long)]
    pub tenant: String,
    #[command(flatten)]
    pub at: Target,
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
    pub at: Target,
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
        at: Target,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        at: Target,
    },
    /// Show one tenant.
    Show {
        name: String,
        #[command(flatten)]
        at: Target,
    },
    /// Delete a tenant with its server configs, instances and keys.
    Delete {
        name: String,
        #[command(flatten)]
        at: Target,
    },
}

/// `sekisho server …`: a tenant's own MCP servers.
#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Create a server config: `--command` (with `--arg`s) or `--endpoint` (the server's URL);
    /// `--env NAME=VALUE` or `--env NAME` (the value of NAME in this command's environment),
    /// `--header` likewise.
    Create {
        name: String,
        #[arg(long)]
        tenant: String,
        #[arg(long, conflicts_with = "endpoint", required_unless_present = "endpoint")]
        command: Option<String>,
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// The MCP server's own URL (Streamable HTTP).
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        env: Vec<String>,
        #[arg(long)]
        header: Vec<String>,
        #[command(flatten)]
        credentials: Box<Credentials>,
        #[command(flatten)]
        at: Target,
    },
    /// List a tenant's server configs (names of secrets only).
    List(OfTenant),
    /// Show one server config (names of secrets only).
    Show(Named),
    /// Delete a server config (and the tool group entries naming it).
    Delete(Named),
}

/// The credentials sekisho presents to a tenant's HTTP server (`upstreams.<name>.auth` of the
/// TOML file): a static bearer token, or OAuth client credentials (`--oauth-client-id` with
/// `--oauth-client-secret`). Secrets are read from this command's environment, by name.
#[derive(Debug, Args)]
pub struct Credentials {
    /// A static bearer token: the name of the environment variable holding it.
    #[arg(long, value_name = "VAR", conflicts_with = "oauth_client_id")]
    pub bearer_from: Option<String>,
    /// The OAuth client id registered at the server's authorization server.
    #[arg(long, requires = "oauth_client_secret_from")]
    pub oauth_client_id: Option<String>,
    /// The environment variable holding the client secret.
    #[arg(long, value_name = "VAR", requires = "oauth_client_id")]
    pub oauth_client_secret_from: Option<String>,
    /// The token endpoint (else discovered from `--oauth-issuer` or the server's 401).
    #[arg(long, requires = "oauth_client_id")]
    pub oauth_token_url: Option<String>,
    /// The authorization server's issuer (its metadata names the token endpoint).
    #[arg(long, requires = "oauth_client_id")]
    pub oauth_issuer: Option<String>,
    /// Scopes asked for (space-separated).
    #[arg(long, requires = "oauth_client_id")]
    pub oauth_scope: Option<String>,
    /// The RFC 8707 resource asked for (default: the server's URL).
    #[arg(long, requires = "oauth_client_id")]
    pub oauth_resource: Option<String>,
}

impl Credentials {
    /// The `auth` these flags describe, secrets read from the environment.
    ///
    /// Errors: [`StoreError::Invalid`] naming a variable that is not set.
    fn auth(self) -> Result<Option<Box<AuthConfig>>, StoreError> {
        let var = |flag: &str, name: &str| {
            std::env::var(name).map_err(|_| StoreError::Invalid(format!("--{flag} {name}: {name} is not set")))
        };
        if let Some(name) = &self.bearer_from {
            return Ok(Some(Box::new(AuthConfig::Bearer(BearerConfig { token: var("bearer-from", name)? }))));
        }
        let (Some(client_id), Some(secret)) = (self.oauth_client_id, &self.oauth_client_secret_from) else {
            return Ok(None);
        };
        Ok(Some(Box::new(AuthConfig::ClientCredentials(ClientCredentialsConfig {
            client_id,
            client_secret: Some(var("oauth-client-secret-from", secret)?),
            token_url: self.oauth_token_url,
            issuer: self.oauth_issuer,
            scope: self.oauth_scope,
            resource: self.oauth_resource,
            ..ClientCredentialsConfig::default()
        }))))
    }
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
        at: Target,
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
        #[arg(long, value_parser = finite)]
        rps: Option<f64>,
        /// The key's own burst (requests).
        #[arg(long)]
        burst: Option<u32>,
        #[command(flatten)]
        at: Target,
    },
    /// List a tenant's keys (prefixes only).
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        instance: Option<String>,
        #[command(flatten)]
        at: Target,
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

/// Why a store command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The store refused it, or could not run it (with `--database-url`, or before sending).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gateway refused it: the store's text, as the gateway gave it.
    #[error("{0}")]
    Refused(String),
    /// The gateway could not be reached, or did not answer as its admin API does.
    #[error("{0}")]
    Gateway(String),
}

/// Run `command`; returns what to print on stdout.
///
/// Errors: the store's, as text (names and causes, never secret values), or the gateway's.
pub async fn run(command: StoreCommand) -> Result<String, CommandError> {
    use StoreCommand as C;
    let (op, at) = match command {
        C::Db(DbAction::Migrate { db }) => {
            let applied = crate::store::migrate(&connect(&db.database_url)?).await?;
            return Ok(if applied.is_empty() {
                "database schema up to date\n".into()
            } else {
                format!("applied migrations {applied:?}; database schema up to date\n")
            });
        }
        C::Tenant(a) => tenant(a),
        C::Server(a) => server(a)?,
        C::Instance(a) => instance(a),
        C::Key(a) => key(a),
    };
    at.run(op).await
}

impl Target {
    /// Run `op` where this says.
    ///
    /// Errors: as [`run`]; [`StoreError::Invalid`] when neither or both of `--database-url`
    /// and `--url` are given.
    async fn run(self, op: Op) -> Result<String, CommandError> {
        // A database URL from the environment gives way to `--url`; one given as a flag too
        // is a contradiction.
        let from_env = std::env::var(DATABASE_URL_ENV).ok();
        match (self.database_url, self.url) {
            (Some(db), Some(_)) if Some(&db) != from_env.as_ref() => {
                Err(StoreError::Invalid("give --database-url or --url, not both".into()).into())
            }
            (_, Some(url)) => through_gateway(&url, self.admin_key.as_deref(), &op).await,
            (Some(db), None) => {
                let keys = Keys::new(&self.key_pepper, &self.secret_key).map_err(|e| {
                    StoreError::Invalid(format!(
                        "{e} (pass --key-pepper/--secret-key or set SEKISHO_STORE__KEY_PEPPER/SEKISHO_STORE__SECRET_KEY)"
                    ))
                });
                Ok(ops::execute(op, &connect(&db)?, keys.as_ref()).await?)
            }
            (None, None) => Err(StoreError::Invalid(format!(
                "give --database-url (or set {DATABASE_URL_ENV}) or --url with an admin key"
            ))
            .into()),
        }
    }
}

fn connect(url: &str) -> Result<sqlx::PgPool, StoreError> {
    pool(url, 2, Duration::from_secs(10))
}

/// `POST {base}/admin/store/{command}` with `op`'s arguments; the answer's `output`.
///
/// Errors: [`CommandError::Refused`] with the gateway's error text; [`CommandError::Gateway`]
/// when it cannot be reached, does not answer in time, or answers something else.
async fn through_gateway(base: &str, admin_key: Option<&str>, op: &Op) -> Result<String, CommandError> {
    let body = serde_json::to_vec(&op.arguments()).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let path = format!("/admin/store/{}", op.command());
    let answer =
        remote::request(base, admin_key, http::Method::POST, &path, Some(body)).await.map_err(|e| match e {
            RemoteError::Invalid(text) => CommandError::Store(StoreError::Invalid(text)),
            RemoteError::Gateway(text) => CommandError::Gateway(text),
        })?;
    if answer.status.is_success() {
        return match answer.json["output"].as_str() {
            Some(text) => Ok(text.to_string()),
            None => {
                Err(CommandError::Gateway(format!("{} answered {} without an output", answer.shown, answer.status)))
            }
        };
    }
    if let Some(text) = answer.json["error"].as_str() {
        return Err(CommandError::Refused(text.to_string()));
    }
    Err(CommandError::Gateway(answer.refusal()))
}

/// A finite number (JSON has no NaN or infinity: over `--url` one would arrive as `null`).
fn finite(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err("a finite number".into()),
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

fn tenant(a: TenantAction) -> (Op, Target) {
    match a {
        TenantAction::Create { name, at } => (Op::TenantCreate { name }, at),
        TenantAction::List { at } => (Op::TenantList, at),
        TenantAction::Show { name, at } => (Op::TenantShow { name }, at),
        TenantAction::Delete { name, at } => (Op::TenantDelete { name }, at),
    }
}

fn server(a: ServerAction) -> Result<(Op, Target), StoreError> {
    Ok(match a {
        ServerAction::Create { name, tenant, command, args, endpoint, env, header, credentials, at } => {
            let env = secret_values(&env, "env")?;
            let headers = secret_values(&header, "header")?;
            let auth = credentials.auth()?;
            (Op::ServerCreate { tenant, name, command, args, url: endpoint, env, headers, auth }, at)
        }
        ServerAction::List(OfTenant { tenant, at }) => (Op::ServerList { tenant }, at),
        ServerAction::Show(Named { name, tenant, at }) => (Op::ServerShow { tenant, name }, at),
        ServerAction::Delete(Named { name, tenant, at }) => (Op::ServerDelete { tenant, name }, at),
    })
}

fn instance(a: InstanceAction) -> (Op, Target) {
    match a {
        InstanceAction::Create { name, tenant, grants: Grants { tools, shared }, at } => {
            (Op::InstanceCreate { tenant, name, tools, shared }, at)
        }
        InstanceAction::List(OfTenant { tenant, at }) => (Op::InstanceList { tenant }, at),
        InstanceAction::Show(Named { name, tenant, at }) => (Op::InstanceShow { tenant, name }, at),
        InstanceAction::Grant { of: Named { name, tenant, at }, grants: Grants { tools, shared } } => {
            (Op::InstanceGrant { tenant, name, tools, shared }, at)
        }
        InstanceAction::Revoke { of: Named { name, tenant, at }, grants: Grants { tools, shared } } => {
            (Op::InstanceRevoke { tenant, name, tools, shared }, at)
        }
        InstanceAction::Delete(Named { name, tenant, at }) => (Op::InstanceDelete { tenant, name }, at),
    }
}

fn key(a: KeyAction) -> (Op, Target) {
    match a {
        KeyAction::Create { tenant, instance, name, rps, burst, at } => {
            (Op::KeyCreate { tenant, instance, name, rps, burst }, at)
        }
        KeyAction::List { tenant, instance, at } => (Op::KeyList { tenant, instance }, at),
        KeyAction::Show(KeyRef { prefix, tenant, at }) => (Op::KeyShow { tenant, prefix }, at),
        KeyAction::Revoke(KeyRef { prefix, tenant, at }) => (Op::KeyRevoke { tenant, prefix }, at),
        KeyAction::Delete(KeyRef { prefix, tenant, at }) => (Op::KeyDelete { tenant, prefix }, at),
    }
}
