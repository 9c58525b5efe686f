//! Loads the gateway configuration: a TOML file, `SEKISHO_*` environment overrides,
//! `${VAR}` expansion, then full validation with readable errors.
//!
//! Each module owns its section's type (`front::config`, `catalog::config`, `upstream::config`,
//! `observe::config`); this module layers sources and runs the cross-section checks.
//!
//! Environment overrides use `__` between path segments, e.g.
//! `SEKISHO_SERVER__LISTEN=127.0.0.1:9000` or `SEKISHO_UPSTREAMS__WEATHER__URL=http://…`, for
//! every section ([`SECTIONS`]); values are parsed as TOML values when they parse
//! (`["k1","k2"]`, `30`), else as strings. A variable naming no section is an error.

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::catalog::config::CatalogConfig;
use crate::front::config::ServerConfig;
use crate::observe::config::LogConfig;
use crate::pipeline::admit::AdmissionConfig;
use crate::upstream::config::ResilienceConfig;
use crate::upstream::config::UpstreamConfig;

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The client-facing listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Authentication besides API keys (`[auth.oauth]`: the OAuth 2.1 resource server).
    #[serde(default)]
    pub auth: crate::oauth::config::AuthConfig,
    /// How upstream catalogs are merged.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// Logs.
    #[serde(default)]
    pub log: LogConfig,
    /// Admission control (priorities, the global limit, load shedding).
    #[serde(default)]
    pub admission: AdmissionConfig,
    /// Defaults for every upstream's timeout, retries and breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
    /// The response cache and coalescing.
    #[serde(default)]
    pub cache: crate::cache::config::CacheConfig,
    /// Idempotency keys.
    #[serde(default)]
    pub idempotency: crate::cache::config::IdempotencyConfig,
    /// The shared store for the cache and idempotency records across replicas.
    #[serde(default)]
    pub redis: crate::cache::config::RedisConfig,
    /// Request rates per API key and per tenant.
    #[serde(default)]
    pub rate_limits: crate::pipeline::quota::RateLimitsConfig,
    /// The multi-tenant store in PostgreSQL (off without `postgres_url`).
    #[serde(default)]
    pub store: crate::store::StoreConfig,
    /// The monitor: samples of the indicators every interval, kept for the retention.
    #[serde(default)]
    pub monitor: crate::monitor::MonitorConfig,
    /// Alerts: rules on the monitor's samples, webhooks, history.
    #[serde(default)]
    pub alerts: crate::monitor::alerts::AlertsConfig,
    /// The gateway's own MCP tools (`sekisho__performance`, …) and who sees them.
    #[serde(default)]
    pub self_tools: crate::report::config::SelfToolsConfig,
    /// Cost budgets in dollars per hour (prices are per upstream and tool).
    #[serde(default)]
    pub budgets: crate::cost::config::BudgetsConfig,
    /// The tamper-evident audit log of calls and admin actions.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// The approval policy for risky `tools/call`s and the bounds of held calls.
    #[serde(default)]
    pub approvals: crate::approvals::ApprovalsConfig,
    /// Upstream servers by namespace, in name order.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// The file this was loaded from ([`Config::load`]; `None` from text), for what reads the
    /// file itself (the recommendations' scan for inline secrets).
    #[serde(skip)]
    pub source: Option<std::path::PathBuf>,
}

/// Why the configuration could not be used; the message lists every problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration{}:\n  - {}", source_note(.path), .problems.join("\n  - "))]
pub struct ConfigError {
    /// The file that was loaded, if any.
    pub path: Option<String>,
    /// One readable sentence per problem.
    pub problems: Vec<String>,
}

fn source_note(path: &Option<String>) -> String {
    path.as_ref().map(|p| format!(" in {p}")).unwrap_or_default()
}

impl Config {
    /// Load `path` (TOML), apply `SEKISHO_*` environment overrides, expand `${VAR}` in upstream
    /// `env` and `headers` values (and in alert webhooks' `url` and `headers`), and validate.
    ///
    /// Errors: [`ConfigError`] listing every problem (unreadable file, TOML syntax, unknown
    /// keys, wrong types, missing variables, invalid values, cross-section conflicts).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = Some(path.display().to_string());
        if !path.is_file() {
            return Err(ConfigError {
                path: shown,
                problems: vec!["the file does not exist or is not readable".into()],
            });
        }
        let unknown = unknown_sections();
        if !unknown.is_empty() {
            return Err(ConfigError { path: shown, problems: unknown });
        }
        let figment = Figment::new().merge(Toml::file(path)).merge(overrides());
        // Paths are resolved before validation, which reads the files they name (TLS, `ca_file`).
        let mut config = Self::from_figment(figment, shown, Some(path.parent().unwrap_or(Path::new("."))))?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Resolve relative paths against `base` (the configuration file's folder): an upstream's
    /// `command` containing a `/` (a bare name is looked up on `PATH`), `cwd` and `ca_file`, the
    /// server's `tls_cert` and `tls_key`, and `[redis] ca_file`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for file in [&mut self.server.tls_cert, &mut self.server.tls_key] {
            if !file.is_empty() && Path::new(file.as_str()).is_relative() {
                *file = base.join(file.as_str()).to_string_lossy().into_owned();
            }
        }
        for up in self.upstreams.values_mut() {
            if let Some(cmd) = &up.command
                && cmd.contains('/')
                && Path::new(cmd).is_relative()
            {
                up.command = Some(base.join(cmd).to_string_lossy().into_owned());
            }
            if let Some(cwd) = &up.cwd
                && cwd.is_relative()
            {
                up.cwd = Some(base.join(cwd));
            }
            if let Some(ca) = &up.ca_file
                && ca.is_relative()
            {
                up.ca_file = Some(base.join(ca));
            }
            if let Some(crate::upstream::auth::config::AuthConfig::ClientCredentials(c)) = &mut up.auth
                && let Some(key) = &c.private_key_file
                && key.is_relative()
            {
                c.private_key_file = Some(base.join(key));
            }
        }
        if !self.audit.path.is_empty() && Path::new(&self.audit.path).is_relative() {
            self.audit.path = base.join(&self.audit.path).to_string_lossy().into_owned();
        }
        if !self.redis.ca_file.is_empty() && Path::new(&self.redis.ca_file).is_relative() {
            self.redis.ca_file = base.join(&self.redis.ca_file).to_string_lossy().into_owned();
        }
    }

    /// Parse a configuration from TOML text (no environment overrides); for tests and tools.
    ///
    /// Errors: as [`Config::load`].
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)), None, None)
    }

    /// Extract, resolve relative paths against `base` (so validation reads the files meant),
    /// expand variables, validate.
    fn from_figment(figment: Figment, path: Option<String>, base: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(|e| ConfigError {
            path: path.clone(),
            problems: e.into_iter().map(|e| e.to_string()).collect(),
        })?;
        if let Some(base) = base {
            config.resolve_paths(if base.as_os_str().is_empty() { Path::new(".") } else { base });
        }
        let mut problems = config.expand_variables();
        problems.extend(config.validate());
        if !problems.is_empty() {
            return Err(ConfigError { path, problems });
        }
        for up in config.upstreams.values_mut() {
            up.resolve(&config.resilience);
        }
        config.server.resolve_keys(config.admission.default_priority);
        Ok(config)
    }

    fn expand_variables(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, up) in &mut self.upstreams {
            for (section, map) in [("env", &mut up.env), ("headers", &mut up.headers)] {
                for (key, value) in map.iter_mut() {
                    match expand(value) {
                        Ok(v) => *value = v,
                        Err(var) => {
                            problems.push(format!("upstreams.{name}.{section}.{key} uses ${{{var}}}, which is not set"))
                        }
                    }
                }
            }
        }
        for (name, up) in &mut self.upstreams {
            for (key, value) in up.auth.iter_mut().flat_map(|a| a.secrets_mut()) {
                match expand(value) {
                    Ok(v) => *value = v,
                    Err(var) => problems.push(format!("upstreams.{name}.auth.{key} uses ${{{var}}}, which is not set")),
                }
            }
        }
        for (i, iss) in self.auth.oauth.iter_mut().flat_map(|o| o.issuers.iter_mut()).enumerate() {
            for (key, value) in [("client_id", &mut iss.client_id), ("client_secret", &mut iss.client_secret)] {
                match expand(value) {
                    Ok(v) => *value = v,
                    Err(var) => {
                        problems.push(format!("auth.oauth.issuers[{i}].{key} uses ${{{var}}}, which is not set"))
                    }
                }
            }
        }
        for (i, hook) in self.alerts.webhooks.iter_mut().enumerate() {
            let values = std::iter::once(("url".to_string(), &mut hook.url))
                .chain(hook.headers.iter_mut().map(|(k, v)| (format!("headers.{k}"), v)));
            for (key, value) in values {
                match expand(value) {
                    Ok(v) => *value = v,
                    Err(var) => problems.push(format!("alerts.webhooks[{i}].{key} uses ${{{var}}}, which is not set")),
                }
            }
        }
        problems
    }

    /// Check every section and the rules that span sections; returns every problem found.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = self.server.validate();
        if self.auth.oauth.is_some() {
            // OAuth authenticates callers: a listener beyond loopback needs no API keys then.
            problems.retain(|p| !p.contains("set server.api_keys to expose the gateway"));
        }
        problems.extend(self.auth.oauth.iter().flat_map(|o| o.validate()));
        if self.auth.oauth.as_ref().is_some_and(|o| !o.instance_claim.is_empty()) && !self.store.enabled() {
            problems.push("auth.oauth.instance_claim names store instances: it needs [store]".into());
        }
        problems.extend(self.server.validate_priorities(self.admission.default_priority));
        problems.extend(self.catalog.validate());
        problems.extend(self.log.validate());
        problems.extend(self.admission.validate());
        problems.extend(self.resilience.validate());
        problems.extend(self.redis.validate());
        problems.extend(self.store.validate());
        problems.extend(self.cache.validate());
        problems.extend(self.rate_limits.validate());
        problems.extend(self.monitor.validate());
        problems.extend(self.alerts.validate());
        problems.extend(self.audit.validate(self.store.enabled()));
        problems.extend(self.self_tools.validate(self.upstreams.keys()));
        problems.extend(self.budgets.validate());
        problems.extend(self.approvals.validate(self.upstreams.keys()));
        for (name, up) in &self.upstreams {
            problems.extend(up.validate(name));
            if let Some(fallback) = &up.fallback
                && !self.upstreams.get(fallback).is_some_and(|f| f.enabled)
            {
                problems.push(format!("upstreams.{name}.fallback = {fallback:?} is not an enabled upstream"));
            }
            if name.contains(&self.catalog.separator) {
                problems.push(format!(
                    "upstreams.{name}: the namespace contains the catalog separator {:?}",
                    self.catalog.separator
                ));
            }
        }
        problems
    }

    /// Whether any rate limit is configured (`[rate_limits]`, or `rps` on an API key): the
    /// quota step is present only then.
    pub fn rate_limited(&self) -> bool {
        self.rate_limits.per_key.is_some()
            || self.rate_limits.per_tenant.is_some()
            || self.server.api_keys.iter().any(|k| k.rps.is_some())
            // Store keys may carry their own limits.
            || self.store.enabled()
    }

    /// The enabled upstreams, in namespace order.
    pub fn enabled_upstreams(&self) -> impl Iterator<Item = (&String, &UpstreamConfig)> {
        self.upstreams.iter().filter(|(_, u)| u.enabled)
    }
}

/// Every section of [`Config`], as `SEKISHO_<SECTION>__<KEY>` names it (a test checks this list
/// against the fields of [`Config`], so a new section cannot be left out).
pub const SECTIONS: [&str; 18] = [
    "server",
    "auth",
    "catalog",
    "log",
    "admission",
    "resilience",
    "cache",
    "idempotency",
    "redis",
    "rate_limits",
    "store",
    "monitor",
    "alerts",
    "self_tools",
    "budgets",
    "audit",
    "approvals",
    "upstreams",
];

/// The section a `SEKISHO_…` variable (prefix removed, any case) addresses: its text before the
/// first `__`. Variables without `__` (`SEKISHO_CONFIG`, a script's `SEKISHO_BIN` or
/// `SEKISHO_CACHE`) are not configuration keys.
fn section_of(key: &str) -> Option<String> {
    key.split_once("__").map(|(section, _)| section.to_ascii_lowercase())
}

/// `SEKISHO_<SECTION>__…` variables for every section.
fn overrides() -> Env {
    Env::prefixed("SEKISHO_")
        .filter(|key| section_of(key.as_str()).is_some_and(|s| SECTIONS.contains(&s.as_str())))
        .split("__")
}

/// `SEKISHO_<X>__…` variables whose `<X>` is no section: errors, like unknown keys in the file
/// (a misspelt section would otherwise be dropped without a word).
fn unknown_sections() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| {
            let name = name.into_string().ok()?;
            let section = section_of(name.strip_prefix("SEKISHO_")?)?;
            (!SECTIONS.contains(&section.as_str())).then(|| {
                format!("environment variable {name} names no configuration section (one of {})", SECTIONS.join(", "))
            })
        })
        .collect()
}

/// Expand `${NAME}` from the process environment; `$${` escapes a literal `${`.
/// Errors: the name of the first unset variable.
fn expand(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let Some(end) = rest[i + 2..].find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let var = &rest[i + 2..i + 2 + end];
        out.push_str(&std::env::var(var).map_err(|_| var.to_string())?);
        rest = &rest[i + 2 + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::parts::Priority;

    #[test]
    fn minimal_config_gets_secure_defaults() {
        let c = Config::from_toml("[upstreams.time]\ncommand = \"mcp-server-time\"\n").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert!(c.server.api_keys.is_empty());
        assert_eq!(c.server.shutdown_grace.as_secs(), 9);
        assert_eq!(c.catalog.separator, "__");
    }

    #[test]
    fn lists_every_problem() {
        let err = Config::from_toml(
            r#"
            [server]
            listen = "0.0.0.0:8080"
            [upstreams."bad name"]
            command = "x"
            [upstreams.both]
            command = "x"
            url = "http://127.0.0.1:1/mcp"
            [upstreams.neither]
            [upstreams.a__b]
            url = "ftp://x"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in ["not a loopback", "bad name", "not both", "upstreams.neither", "separator", "ftp://x"] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn session_modes_resolve_their_caps_once_and_are_checked() {
        use crate::upstream::config::SessionMode;
        let c = Config::from_toml(
            "[upstreams.a]\ncommand = \"x\"\n[upstreams.b]\ncommand = \"x\"\nsession = \"per-client\"\n\
             [upstreams.c]\nurl = \"http://127.0.0.1:1/mcp\"\nsession = \"per-client\"\n\
             [upstreams.d]\nurl = \"http://127.0.0.1:1/mcp\"\nsession = \"per-client\"\nmax_client_sessions = 7\n",
        )
        .unwrap();
        let s = |n: &str| (c.upstreams[n].settings.session, c.upstreams[n].settings.max_client_sessions);
        assert_eq!(s("a"), (SessionMode::Shared, 0));
        assert_eq!(s("b"), (SessionMode::PerClient, 32), "a process per client: a small default cap");
        assert_eq!(s("c"), (SessionMode::PerClient, 1024));
        assert_eq!(s("d"), (SessionMode::PerClient, 7));
        let err = Config::from_toml(
            "[upstreams.a]\ncommand = \"x\"\nmax_client_sessions = 3\n\
             [upstreams.b]\ncommand = \"x\"\nsession = \"per-client\"\nmax_client_sessions = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("upstreams.a.max_client_sessions only applies"), "{err}");
        assert!(err.contains("upstreams.b.max_client_sessions must be between 1 and 4096"), "{err}");
        assert!(Config::from_toml("[upstreams.a]\ncommand = \"x\"\nsession = \"mine\"\n").is_err());
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors() {
        assert!(Config::from_toml("[server]\nlisten = 5\n").unwrap_err().to_string().contains("listen"));
        assert!(Config::from_toml("[server]\nlisen = \"x\"\n").unwrap_err().to_string().contains("lisen"));
    }

    #[test]
    fn relative_commands_resolve_against_the_config_folder() {
        let mut c = Config::from_toml(
            "[upstreams.a]\ncommand = \"../bin/srv\"\n[upstreams.b]\ncommand = \"npx\"\ncwd = \"work\"\n",
        )
        .unwrap();
        c.resolve_paths(Path::new("/etc/sekisho"));
        assert_eq!(c.upstreams["a"].command.as_deref(), Some("/etc/sekisho/../bin/srv"));
        assert_eq!(c.upstreams["b"].command.as_deref(), Some("npx"));
        assert_eq!(c.upstreams["b"].cwd.as_deref(), Some(Path::new("/etc/sekisho/work")));
    }

    #[test]
    fn sections_lists_every_section_of_the_config() {
        let value = serde_json::to_value(Config::default()).unwrap();
        let mut fields: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        let mut listed = SECTIONS.to_vec();
        fields.sort_unstable();
        listed.sort_unstable();
        assert_eq!(fields, listed, "SECTIONS must name every section, so each can be overridden");
    }

    /// Load `toml` with the variables `vars` set, through the same path as `sekisho serve`.
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn load_with_env(toml: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, toml).unwrap();
        let mut out = Err(String::new());
        figment::Jail::expect_with(|jail| {
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            out = Config::load(&path).map_err(|e| e.to_string());
            Ok(())
        });
        out
    }

    #[test]
    fn every_section_takes_environment_overrides() {
        let one = |var: &str, value: &str| load_with_env("[upstreams.a]\ncommand = \"x\"\n", &[(var, value)]).unwrap();
        assert_eq!(one("SEKISHO_SERVER__MAX_BODY_BYTES", "5000").server.max_body_bytes, 5000);
        // The connection and per-client limits, one of each kind.
        assert_eq!(one("SEKISHO_SERVER__MAX_CONNECTIONS", "12").server.max_connections, 12);
        assert_eq!(one("SEKISHO_SERVER__HEADER_READ_TIMEOUT", "3s").server.header_read_timeout.as_secs(), 3);
        assert_eq!(one("SEKISHO_SERVER__IDLE_TIMEOUT", "4s").server.idle_timeout.as_secs(), 4);
        assert_eq!(one("SEKISHO_SERVER__MAX_BATCH_SIZE", "5").server.max_batch_size, 5);
        assert_eq!(one("SEKISHO_SERVER__MAX_SESSIONS_PER_CALLER", "6").server.max_sessions_per_caller, 6);
        assert_eq!(one("SEKISHO_SERVER__METRICS_LISTEN", "127.0.0.1:9464").server.metrics_listen, "127.0.0.1:9464");
        assert_eq!(one("SEKISHO_CATALOG__PAGE_SIZE", "7").catalog.page_size, 7);
        assert_eq!(one("SEKISHO_LOG__LEVEL", "debug").log.level, "debug");
        assert_eq!(one("SEKISHO_ADMISSION__QUEUE_SIZE", "9").admission.queue_size, 9);
        assert_eq!(one("SEKISHO_RESILIENCE__TIMEOUT", "42s").resilience.timeout.as_secs(), 42);
        assert_eq!(one("SEKISHO_CACHE__TTL", "7m").cache.ttl.as_secs(), 420);
        assert_eq!(one("SEKISHO_IDEMPOTENCY__WINDOW", "9m").idempotency.window.as_secs(), 540);
        assert_eq!(one("SEKISHO_REDIS__PREFIX", "fleet9:").redis.prefix, "fleet9:");
        let secret = "an-entry-secret-of-at-least-32-bytes";
        assert_eq!(one("SEKISHO_REDIS__ENTRY_SECRET", secret).redis.entry_secret, secret);
        let (_dir, ca) = ca_file();
        assert_eq!(one("SEKISHO_REDIS__CA_FILE", &ca).redis.ca_file, ca);
        assert_eq!(one("SEKISHO_UPSTREAMS__A__TIMEOUT", "13s").upstreams["a"].settings.timeout.as_secs(), 13);
        let http = load_with_env(
            "[upstreams.h]\nurl = \"https://example.com/mcp\"\n",
            &[("SEKISHO_UPSTREAMS__H__CA_FILE", &ca)],
        );
        assert_eq!(http.unwrap().upstreams["h"].ca_file.as_deref(), Some(Path::new(&ca)));
    }

    /// A PEM file holding one self-signed CA certificate (its folder lives as long as the guard).
    fn ca_file() -> (tempfile::TempDir, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        (dir, path.display().to_string())
    }

    #[test]
    fn redis_needs_an_entry_secret_and_a_tls_url_for_its_ca_file() {
        let err = Config::from_toml("[redis]\nurl = \"redis://127.0.0.1:6379\"\n").unwrap_err().to_string();
        assert!(err.contains("redis.entry_secret must be set"), "{err}");
        let short = Config::from_toml("[redis]\nurl = \"redis://h:6379\"\nentry_secret = \"short\"\n").unwrap_err();
        assert!(short.to_string().contains("at least 32 bytes"), "{short}");
        let (_dir, ca) = ca_file();
        let secret = "entry_secret = \"0123456789abcdef0123456789abcdef\"\n";
        let tls =
            Config::from_toml(&format!("[redis]\nurl = \"rediss://h:6380/0\"\n{secret}ca_file = {ca:?}\n")).unwrap();
        assert_eq!(tls.redis.ca_file, ca);
        let plain = Config::from_toml(&format!("[redis]\nurl = \"redis://h:6379\"\n{secret}ca_file = {ca:?}\n"));
        assert!(plain.unwrap_err().to_string().contains("needs a rediss:// URL"));
        let missing =
            Config::from_toml(&format!("[redis]\nurl = \"rediss://h:6380\"\n{secret}ca_file = \"/nonexistent.pem\"\n"));
        assert!(missing.unwrap_err().to_string().contains("redis.ca_file: cannot read"));
        // Never printed: the secret is not serialized.
        assert!(!serde_json::to_string(&tls).unwrap().contains("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn upstream_ca_files_are_read_resolved_and_http_only() {
        let (dir, _ca) = ca_file();
        let cfg = dir.path().join("s.toml");
        std::fs::write(&cfg, "[upstreams.h]\nurl = \"https://example.com/mcp\"\nca_file = \"ca.pem\"\n").unwrap();
        let c = Config::load(&cfg).unwrap();
        assert_eq!(
            c.upstreams["h"].ca_file.as_deref(),
            Some(dir.path().join("ca.pem").as_path()),
            "relative to the file"
        );
        std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
        std::fs::write(&cfg, "[upstreams.h]\nurl = \"https://example.com/mcp\"\nca_file = \"bad.pem\"\n").unwrap();
        assert!(Config::load(&cfg).unwrap_err().to_string().contains("holds no PEM certificate"));
        let stdio = Config::from_toml("[upstreams.s]\ncommand = \"x\"\nca_file = \"ca.pem\"\n").unwrap_err();
        assert!(stdio.to_string().contains("ca_file only applies to HTTP upstreams"), "{stdio}");
    }

    #[test]
    fn server_limits_are_checked() {
        let err = Config::from_toml(
            "[server]\nmax_connections = 0\nmax_header_bytes = 100\nidle_timeout = \"1ms\"\ntls_cert = \"c.pem\"\nmetrics_listen = \"nope\"\n",
        )
        .unwrap_err()
        .to_string();
        for needle in ["max_connections", "max_header_bytes", "idle_timeout", "set together", "metrics_listen"] {
            assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
        }
        let err = Config::from_toml("[server]\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls_cert"), "{err}");
    }

    #[test]
    fn a_variable_naming_no_section_is_an_error() {
        let err = load_with_env("", &[("SEKISHO_CAHCE__TTL", "1m")]).unwrap_err();
        assert!(err.contains("SEKISHO_CAHCE__TTL"), "{err}");
        let err = load_with_env("", &[("SEKISHO_CACHE__TLL", "1m")]).unwrap_err();
        assert!(err.contains("tll"), "an unknown key in a known section: {err}");
    }

    #[test]
    fn api_key_tables_refuse_unknown_keys() {
        let err = Config::from_toml("[server]\napi_keys = [{ key = \"k-0123456789abcdef\", rol = \"admin\" }]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rol"), "{err}");
        let c = Config::from_toml(
            "[server]\napi_keys = [\"k-0123456789abcdef\", { key = \"k-fedcba9876543210\", name = \"ops\", role = \"admin\", priority = \"low\" }]\n",
        )
        .unwrap();
        let [plain, ops] = [&c.server.api_keys[0].identity, &c.server.api_keys[1].identity];
        assert!(plain.id.starts_with("key:") && !plain.admin && plain.max_priority == Priority::Medium);
        assert!(&*ops.id == "ops" && ops.admin && ops.priority == Priority::Low && ops.max_priority == Priority::Low);
    }

    #[test]
    fn api_key_names_and_priorities_are_checked() {
        let err = Config::from_toml(
            "[server]\napi_keys = [{ key = \"k-0123456789abcdef\", name = \"a b\" }, { key = \"k-0123456789abcdef\", name = \"anon\" }, { key = \"k-1123456789abcdef\", name = \"x\", max_priority = \"low\" }, { key = \"k-2123456789abcdef\", name = \"x\" }]\n",
        )
        .unwrap_err()
        .to_string();
        for needle in ["\"a b\"", "\"anon\"", "repeats", "below the key's priority", "used by another key"] {
            assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn environment_overrides_only_known_sections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("SEKISHO_SERVER__LISTEN", "127.0.0.1:9999");
            jail.set_env("SEKISHO_BIN", "/usr/bin/whatever");
            jail.set_env("SEKISHO_CONFIG", "/etc/x.toml");
            jail.set_env("SEKISHO_CACHE", "/root/.cache/sekisho");
            let c = Config::load(&path).map_err(|e| e.to_string())?;
            assert_eq!(c.server.listen, "127.0.0.1:9999");
            Ok(())
        });
    }

    #[test]
    fn expands_variables() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("SEKISHO_TEST_TOKEN", "s3cret") };
        assert_eq!(expand("Bearer ${SEKISHO_TEST_TOKEN}").unwrap(), "Bearer s3cret");
        assert_eq!(expand("$${X}").unwrap(), "${X}");
        assert_eq!(expand("${SEKISHO_SURELY_UNSET_VAR}").unwrap_err(), "SEKISHO_SURELY_UNSET_VAR");
    }
}
