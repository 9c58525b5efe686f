//! The store's operator commands as data ([`Op`]): what `sekisho tenant|server|instance|key …`
//! parses from its command line, and what the gateway's admin API (`POST /admin/store/…`,
//! `front/admin_store.rs`) receives as JSON. [`execute`] runs one against a pool and answers
//! the text the CLI prints, so both ways of running a command print the same. Every change
//! goes through [`super::admin`] (which announces it with NOTIFY).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::admin::{self, GrantSpec};
use super::error::StoreError;
use super::listing::{self, Kind, Record};
use super::resolve::Endpoint;
use super::secrets::{Keys, Secret, SecretValues};
use crate::upstream::auth::config::AuthConfig;

/// One operator command. As JSON, an object whose `op` names the command as
/// `<kind>/<action>` (the admin API's path after `/admin/store/`) and whose other members are
/// the command's arguments; unknown members are refused.
///
/// `Debug` shows secret values as `<redacted>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", deny_unknown_fields)]
pub enum Op {
    /// Create a tenant.
    #[serde(rename = "tenant/create")]
    TenantCreate {
        /// Its name.
        name: String,
    },
    /// List tenants.
    #[serde(rename = "tenant/list")]
    TenantList,
    /// Show one tenant.
    #[serde(rename = "tenant/show")]
    TenantShow {
        /// Its name.
        name: String,
    },
    /// Delete a tenant with everything it owns.
    #[serde(rename = "tenant/delete")]
    TenantDelete {
        /// Its name.
        name: String,
    },
    /// Create a server config: `command` (with `args`) or `url`, and secret values.
    #[serde(rename = "server/create")]
    ServerCreate {
        /// The tenant.
        tenant: String,
        /// The server config's name.
        name: String,
        /// The command of a stdio server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        /// Its arguments.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// The URL of an HTTP server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// Environment variables of the server's process, by name.
        #[serde(default, with = "exposed")]
        env: BTreeMap<String, Secret>,
        /// Headers of every request to the server's URL, by name.
        #[serde(default, with = "exposed")]
        headers: BTreeMap<String, Secret>,
        /// The credentials presented to an HTTP server (`upstreams.<name>.auth` of the TOML
        /// file; `private_key_file` is refused: a tenant names no file of the gateway's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth: Option<Box<crate::upstream::auth::config::AuthConfig>>,
    },
    /// List a tenant's server configs.
    #[serde(rename = "server/list")]
    ServerList {
        /// The tenant.
        tenant: String,
    },
    /// Show one server config.
    #[serde(rename = "server/show")]
    ServerShow {
        /// The tenant.
        tenant: String,
        /// The server config's name.
        name: String,
    },
    /// Delete a server config.
    #[serde(rename = "server/delete")]
    ServerDelete {
        /// The tenant.
        tenant: String,
        /// The server config's name.
        name: String,
    },
    /// Create an instance with a tool group.
    #[serde(rename = "instance/create")]
    InstanceCreate {
        /// The tenant.
        tenant: String,
        /// The instance's name.
        name: String,
        /// `SERVER:PATTERN` entries: tools of the tenant's server config SERVER (`*` globs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tools: Vec<String>,
        /// `NAMESPACE:PATTERN` entries: tools of the static upstream NAMESPACE the operator
        /// shares.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shared: Vec<String>,
    },
    /// List a tenant's instances.
    #[serde(rename = "instance/list")]
    InstanceList {
        /// The tenant.
        tenant: String,
    },
    /// Show one instance.
    #[serde(rename = "instance/show")]
    InstanceShow {
        /// The tenant.
        tenant: String,
        /// The instance's name.
        name: String,
    },
    /// Add entries to an instance's tool group.
    #[serde(rename = "instance/grant")]
    InstanceGrant {
        /// The tenant.
        tenant: String,
        /// The instance's name.
        name: String,
        /// `SERVER:PATTERN` entries: tools of the tenant's server config SERVER (`*` globs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tools: Vec<String>,
        /// `NAMESPACE:PATTERN` entries: tools of the static upstream NAMESPACE the operator
        /// shares.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shared: Vec<String>,
    },
    /// Remove entries from an instance's tool group.
    #[serde(rename = "instance/revoke")]
    InstanceRevoke {
        /// The tenant.
        tenant: String,
        /// The instance's name.
        name: String,
        /// `SERVER:PATTERN` entries: tools of the tenant's server config SERVER (`*` globs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tools: Vec<String>,
        /// `NAMESPACE:PATTERN` entries: tools of the static upstream NAMESPACE the operator
        /// shares.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shared: Vec<String>,
    },
    /// Delete an instance with its keys.
    #[serde(rename = "instance/delete")]
    InstanceDelete {
        /// The tenant.
        tenant: String,
        /// The instance's name.
        name: String,
    },
    /// Create a key for an instance (its text is in the answer, once).
    #[serde(rename = "key/create")]
    KeyCreate {
        /// The tenant.
        tenant: String,
        /// The instance.
        instance: String,
        /// A label.
        #[serde(default)]
        name: String,
        /// Its own rate limit (requests per second).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rps: Option<f64>,
        /// Its own burst (requests).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burst: Option<u32>,
    },
    /// List a tenant's keys (of one instance).
    #[serde(rename = "key/list")]
    KeyList {
        /// The tenant.
        tenant: String,
        /// Only this instance's keys.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
    },
    /// Show one key by its display prefix.
    #[serde(rename = "key/show")]
    KeyShow {
        /// The tenant.
        tenant: String,
        /// The display prefix.
        prefix: String,
    },
    /// Revoke a key.
    #[serde(rename = "key/revoke")]
    KeyRevoke {
        /// The tenant.
        tenant: String,
        /// The display prefix.
        prefix: String,
    },
    /// Delete a key.
    #[serde(rename = "key/delete")]
    KeyDelete {
        /// The tenant.
        tenant: String,
        /// The display prefix.
        prefix: String,
    },
}

/// Every command's `op` (`<kind>/<action>`), as the admin API's paths name them.
pub const COMMANDS: [&str; 19] = [
    "tenant/create",
    "tenant/list",
    "tenant/show",
    "tenant/delete",
    "server/create",
    "server/list",
    "server/show",
    "server/delete",
    "instance/create",
    "instance/list",
    "instance/show",
    "instance/grant",
    "instance/revoke",
    "instance/delete",
    "key/create",
    "key/list",
    "key/show",
    "key/revoke",
    "key/delete",
];

/// Secret values on the admin API's wire: the one place they are (de)serialized, explicitly,
/// for the request that carries them to the gateway ([`Secret`] itself has no `Serialize`).
mod exposed {
    use super::*;

    pub fn serialize<S: serde::Serializer>(map: &BTreeMap<String, Secret>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k, v.expose())))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Secret>, D::Error> {
        let plain = BTreeMap::<String, String>::deserialize(d)?;
        Ok(plain.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
    }
}

impl Op {
    /// Its `<kind>/<action>` (one of [`COMMANDS`]).
    pub fn command(&self) -> &'static str {
        use Op::*;
        match self {
            TenantCreate { .. } => "tenant/create",
            TenantList => "tenant/list",
            TenantShow { .. } => "tenant/show",
            TenantDelete { .. } => "tenant/delete",
            ServerCreate { .. } => "server/create",
            ServerList { .. } => "server/list",
            ServerShow { .. } => "server/show",
            ServerDelete { .. } => "server/delete",
            InstanceCreate { .. } => "instance/create",
            InstanceList { .. } => "instance/list",
            InstanceShow { .. } => "instance/show",
            InstanceGrant { .. } => "instance/grant",
            InstanceRevoke { .. } => "instance/revoke",
            InstanceDelete { .. } => "instance/delete",
            KeyCreate { .. } => "key/create",
            KeyList { .. } => "key/list",
            KeyShow { .. } => "key/show",
            KeyRevoke { .. } => "key/revoke",
            KeyDelete { .. } => "key/delete",
        }
    }

    /// Its arguments as the JSON object the admin API takes at `/admin/store/<command>`
    /// (secret values included: for that request body only).
    pub fn arguments(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut v = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("an internally tagged enum serializes to an object"),
        };
        v.remove("op");
        v
    }

    /// The command `command` (one of [`COMMANDS`]) with `arguments` (a JSON object).
    ///
    /// Errors: [`StoreError::Invalid`] saying what is wrong, with no string value of the body
    /// repeated (it may be a secret).
    pub fn from_json(command: &str, arguments: &[u8]) -> Result<Op, StoreError> {
        let bad = |e: serde_json::Error| {
            StoreError::Invalid(format!("the body of {command} is not valid: {}", without_strings(&e.to_string())))
        };
        let mut object: serde_json::Map<String, serde_json::Value> = if arguments.iter().all(u8::is_ascii_whitespace) {
            Default::default()
        } else {
            serde_json::from_slice(arguments).map_err(bad)?
        };
        object.insert("op".into(), command.into());
        serde_json::from_value(serde_json::Value::Object(object)).map_err(bad)
    }
}

/// `text` with the contents of every `string "…"` (how serde names an unexpected string value)
/// left out.
fn without_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i + "string ".len()]);
        out.push_str("<value>");
        let tail = &rest[i + "string \"".len()..];
        let mut escaped = false;
        let end = tail.char_indices().find(|&(_, c)| {
            let close = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            close
        });
        rest = match end {
            Some((j, _)) => &tail[j + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Run `op` against `pool`; returns the text to print. `keys` (the pepper and the secret key)
/// is used by `server/create` and `key/create` only, whose error it is when missing.
///
/// Errors: the store's ([`StoreError`]; names and causes, never secret values).
pub async fn execute(op: Op, pool: &PgPool, keys: Result<&Keys, &StoreError>) -> Result<String, StoreError> {
    use Op::*;
    let keys = || keys.map_err(Clone::clone);
    Ok(match op {
        TenantCreate { name } => {
            let id = admin::tenant_create(pool, &name).await?;
            format!("created tenant {name} (id {id})\n")
        }
        TenantList => show(pool, Kind::Tenant, None, None, None).await?,
        TenantShow { name } => show(pool, Kind::Tenant, None, Some(&name), None).await?,
        TenantDelete { name } => {
            admin::tenant_delete(pool, &name).await?;
            format!("deleted tenant {name}\n")
        }
        ServerCreate { tenant, name, command, args, url, env, headers, auth } => {
            let endpoint = match (command, url) {
                (Some(command), None) if auth.is_none() => Endpoint::Command { command, args },
                (None, Some(url)) if args.is_empty() => Endpoint::Url(url),
                _ => {
                    let what = "give a command (with its arguments) or a URL; credentials need a URL";
                    return Err(StoreError::Invalid(what.into()));
                }
            };
            if let Some(a) = &auth {
                // Refused before `validate`, which would read the file.
                if let AuthConfig::ClientCredentials(c) = &**a
                    && c.private_key_file.is_some()
                {
                    let why = "auth.private_key_file: a server config cannot name the gateway's files";
                    return Err(StoreError::Invalid(why.into()));
                }
                let problems = a.validate("auth");
                if !problems.is_empty() {
                    return Err(StoreError::Invalid(problems.join("; ")));
                }
            }
            let values = SecretValues { env, headers, auth: auth.map(|a| *a) };
            let id = admin::server_create(pool, keys()?, &tenant, &name, &endpoint, &values).await?;
            format!("created server config {name} of tenant {tenant} (id {id})\n")
        }
        ServerList { tenant } => show(pool, Kind::Server, Some(&tenant), None, None).await?,
        ServerShow { tenant, name } => show(pool, Kind::Server, Some(&tenant), Some(&name), None).await?,
        ServerDelete { tenant, name } => {
            admin::server_delete(pool, &tenant, &name).await?;
            format!("deleted server config {name} of tenant {tenant}\n")
        }
        InstanceCreate { tenant, name, tools, shared } => {
            let id = admin::instance_create(pool, &tenant, &name, &grant_specs(&tools, &shared)?).await?;
            format!("created instance {name} of tenant {tenant} (id {id})\n")
        }
        InstanceList { tenant } => show(pool, Kind::Instance, Some(&tenant), None, None).await?,
        InstanceShow { tenant, name } => show(pool, Kind::Instance, Some(&tenant), Some(&name), None).await?,
        InstanceGrant { tenant, name, tools, shared } => {
            admin::instance_grant(pool, &tenant, &name, &grant_specs(&tools, &shared)?).await?;
            format!("updated the tool group of instance {name}\n")
        }
        InstanceRevoke { tenant, name, tools, shared } => {
            let n = admin::instance_revoke(pool, &tenant, &name, &grant_specs(&tools, &shared)?).await?;
            format!("removed {n} entries from the tool group of instance {name}\n")
        }
        InstanceDelete { tenant, name } => {
            admin::instance_delete(pool, &tenant, &name).await?;
            format!("deleted instance {name} of tenant {tenant}\n")
        }
        KeyCreate { tenant, instance, name, rps, burst } => {
            let new = admin::key_create(pool, keys()?, &tenant, &instance, &name, rps, burst).await?;
            format!(
                "created key {} (id {}) for instance {instance} of tenant {tenant}; it is shown only now:\n{}\n",
                new.prefix,
                new.id,
                new.key.expose()
            )
        }
        KeyList { tenant, instance } => show(pool, Kind::Key, Some(&tenant), None, instance.as_deref()).await?,
        KeyShow { tenant, prefix } => show(pool, Kind::Key, Some(&tenant), Some(&prefix), None).await?,
        KeyRevoke { tenant, prefix } => {
            admin::key_end(pool, &tenant, &prefix, false).await?;
            format!("revoked key {prefix}\n")
        }
        KeyDelete { tenant, prefix } => {
            admin::key_end(pool, &tenant, &prefix, true).await?;
            format!("deleted key {prefix}\n")
        }
    })
}

async fn show(
    pool: &PgPool,
    kind: Kind,
    tenant: Option<&str>,
    name: Option<&str>,
    instance: Option<&str>,
) -> Result<String, StoreError> {
    let rows = listing::list(pool, kind, tenant, name, instance).await?;
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

fn grant_specs(tools: &[String], shared: &[String]) -> Result<Vec<GrantSpec>, StoreError> {
    let split = |s: &String| {
        s.split_once(':')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or_else(|| StoreError::Invalid(format!("{s:?}: expected NAME:PATTERN")))
    };
    let mut out = Vec::new();
    for t in tools {
        let (server, pattern) = split(t)?;
        out.push(GrantSpec::Server { server, pattern });
    }
    for t in shared {
        let (namespace, pattern) = split(t)?;
        out.push(GrantSpec::Shared { namespace, pattern });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_travels_as_its_path_and_a_json_object() {
        let mut env = BTreeMap::new();
        env.insert("TOKEN".to_string(), Secret::new("hunter2".into()));
        let ops = [
            Op::TenantList,
            Op::TenantCreate { name: "acme".into() },
            Op::ServerCreate {
                tenant: "acme".into(),
                name: "w".into(),
                command: Some("npx".into()),
                args: vec!["-y".into()],
                url: None,
                env,
                headers: BTreeMap::new(),
                auth: None,
            },
            Op::InstanceGrant {
                tenant: "acme".into(),
                name: "bot".into(),
                tools: vec!["w:get_*".into()],
                shared: vec!["time:*".into()],
            },
            Op::KeyCreate {
                tenant: "acme".into(),
                instance: "bot".into(),
                name: "".into(),
                rps: Some(2.5),
                burst: None,
            },
            Op::KeyList { tenant: "acme".into(), instance: None },
        ];
        for op in ops {
            assert!(COMMANDS.contains(&op.command()));
            let body = serde_json::to_vec(&op.arguments()).unwrap();
            assert_eq!(Op::from_json(op.command(), &body).unwrap(), op);
            assert!(!format!("{op:?}").contains("hunter2"), "Debug redacts secret values");
        }
        assert_eq!(Op::from_json("tenant/list", b"").unwrap(), Op::TenantList);
    }

    #[test]
    fn a_bad_body_is_refused_without_repeating_its_strings() {
        let err = Op::from_json("server/create", br#"{"tenant":"a","name":"b","env":"TOKEN=hunter2"}"#).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)) && !err.to_string().contains("hunter2"), "{err}");
        let err =
            Op::from_json("server/create", br#"{"tenant":"a","name":"b","env":{"T":"x"},"endpoint":"u"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `endpoint`"), "{err}");
        let err = Op::from_json("key/create", br#"{"tenant":"a","instance":"i","burst":"hunter2\"x"}"#).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(Op::from_json("tenant/create", b"[1]").is_err());
        assert!(Op::from_json("tenant/nosuch", b"{}").is_err());
    }

    #[test]
    fn without_strings_drops_string_values_only() {
        assert_eq!(
            without_strings(r#"invalid type: string "a\"b", expected u32 at line 1"#),
            "invalid type: string <value>, expected u32 at line 1"
        );
        assert_eq!(without_strings("missing field `name`"), "missing field `name`");
    }
}
