//! `sekisho check`'s account of a configuration: the listener, the callers, every upstream
//! with the settings in force, and every gateway-wide section (defaults included), with
//! secrets shown only as `<set>`/`<redacted>`.

use super::audit;

/// The resolved upstream list for `check`, with secrets redacted: env and header values, API
/// keys (only their ids, roles and priorities are shown), and the user info and query strings
/// of URLs.
pub fn describe(config: &crate::config::Config) -> String {
    use crate::upstream::config::Transport;
    let mut out = format!("listen: {}\n", config.server.listen);
    if let Some(oauth) = &config.auth.oauth {
        let issuers: Vec<&str> = oauth.issuers.iter().map(|i| i.issuer.as_str()).collect();
        out.push_str(&format!("auth: OAuth access tokens for {} from {}\n", oauth.resource, issuers.join(", ")));
    }
    if config.server.api_keys.is_empty() && config.auth.oauth.is_none() {
        out.push_str("auth: none (loopback only; every caller is the admin)\n");
    } else if !config.server.api_keys.is_empty() {
        out.push_str(&format!("auth: {} API key(s)\n", config.server.api_keys.len()));
        for key in &config.server.api_keys {
            let id = &key.identity;
            // The rate limit in force: the key's own, else `[rate_limits] per_key`.
            let rate = match id.rate_limit.or_else(|| config.rate_limits.per_key.map(|l| l.resolve())) {
                Some(l) => format!(" rate_limit={}/s burst={}", 1.0 / l.interval.as_secs_f64(), l.burst),
                None => String::new(),
            };
            out.push_str(&format!(
                "  {}: role={} priority={} max_priority={}{rate}\n",
                id.id,
                if id.admin { "admin" } else { "client" },
                id.priority.label(),
                id.max_priority.label()
            ));
        }
    }
    out.push_str(&format!("upstreams ({}):\n", config.upstreams.len()));
    for (name, up) in &config.upstreams {
        let state = if up.enabled { "" } else { " (disabled)" };
        match up.transport() {
            Transport::Stdio { command, args, env, inherit_env, cwd } => {
                out.push_str(&format!(
                    "  {name}{state}: stdio `{}`",
                    std::iter::once(command).chain(args).collect::<Vec<_>>().join(" ")
                ));
                if !env.is_empty() {
                    out.push_str(&format!(
                        " env=[{}]",
                        env.keys().map(|k| format!("{k}=<redacted>")).collect::<Vec<_>>().join(", ")
                    ));
                }
                if inherit_env {
                    out.push_str(" inherit_env");
                }
                if let Some(cwd) = cwd {
                    out.push_str(&format!(" cwd={}", cwd.display()));
                }
            }
            Transport::Http { urls, headers, flavor, credentials } => {
                let urls: Vec<String> = urls.iter().map(|u| crate::observe::redact::url(&u.to_string())).collect();
                let kind = if flavor == crate::upstream::config::HttpTransport::Sse { "sse" } else { "http" };
                out.push_str(&format!("  {name}{state}: {kind} {}", urls.join(" ")));
                if !headers.is_empty() {
                    out.push_str(&format!(
                        " headers=[{}]",
                        headers.keys().map(|k| format!("{k}: <redacted>")).collect::<Vec<_>>().join(", ")
                    ));
                }
                if let Some(c) = credentials.first() {
                    out.push_str(&format!(" auth={c:?}"));
                }
            }
        }
        out.push_str(&format!(" era={:?}\n", up.era).to_lowercase());
        if up.enabled {
            // The values in force, as the gateway resolved them (defaults included).
            let settings = toml::to_string(&up.settings).unwrap_or_default();
            for line in settings.lines().filter(|l| !l.is_empty()) {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out.push_str(&sections(config));
    out
}

/// The gateway-wide sections as they are in force (defaults included), secrets left out.
fn sections(config: &crate::config::Config) -> String {
    let s = &config.server;
    let server = serde_json::json!({
        "max_body_bytes": s.max_body_bytes,
        "shutdown_grace": humantime::format_duration(s.shutdown_grace).to_string(),
        "session_ttl": humantime::format_duration(s.session_ttl).to_string(),
        "session_key": if s.session_key.is_empty() { "<random per process>" } else { "<set>" },
        "allowed_hosts": s.allowed_hosts,
        "allowed_origins": s.allowed_origins,
        "worker_threads": s.worker_threads,
        "max_connections": s.max_connections,
        "header_read_timeout": humantime::format_duration(s.header_read_timeout).to_string(),
        "body_read_timeout": humantime::format_duration(s.body_read_timeout).to_string(),
        "idle_timeout": humantime::format_duration(s.idle_timeout).to_string(),
        "send_timeout": humantime::format_duration(s.send_timeout).to_string(),
        "max_header_bytes": s.max_header_bytes,
        "metrics_listen": if s.metrics_listen.is_empty() { "<none>" } else { s.metrics_listen.as_str() },
        "tls_cert": if s.tls_cert.is_empty() { "<none: plain HTTP>" } else { s.tls_cert.as_str() },
        "max_batch_size": s.max_batch_size,
        "max_batch_response_bytes": s.max_batch_response_bytes,
        "max_sessions_per_caller": s.max_sessions_per_caller,
        "max_ended_sessions_per_caller": s.max_ended_sessions_per_caller,
        "max_streams_per_session": s.max_streams_per_session,
        "max_calls_per_sse_session": s.max_calls_per_sse_session,
        "max_listens_per_caller": s.max_listens_per_caller,
        "max_subscriptions_per_session": s.max_subscriptions_per_session,
        "max_uri_bytes": s.max_uri_bytes,
    });
    let redis = serde_json::json!({
        "url": if config.redis.resolved_url().is_some() { "<set>" } else { "<none>" },
        "prefix": config.redis.prefix,
        "timeout": humantime::format_duration(config.redis.timeout).to_string(),
        "tls": config.redis.resolved_url().is_some_and(|u| u.starts_with("rediss://")),
        "entry_secret": if config.redis.entry_secret.is_empty() { "<none>" } else { "<set>" },
        "ca_file": if config.redis.ca_file.is_empty() { "<system store>" } else { config.redis.ca_file.as_str() },
    });
    let st = &config.store;
    let set = |v: &str| if v.is_empty() { "<none>" } else { "<set>" };
    let store = serde_json::json!({
        "postgres_url": if st.enabled() { "<set>" } else { "<none: keys from this file>" },
        "key_pepper": set(&st.key_pepper),
        "secret_key": set(&st.secret_key),
        "cache_ttl": humantime::format_duration(st.cache_ttl).to_string(),
        "max_stale": humantime::format_duration(st.max_stale).to_string(),
        "last_used_flush": humantime::format_duration(st.last_used_flush).to_string(),
        "timeout": humantime::format_duration(st.timeout).to_string(),
        "max_connections": st.max_connections,
        "cache_capacity": st.cache_capacity,
        "lookups_per_second": st.lookups_per_second,
    });
    let m = &config.monitor;
    let monitor = serde_json::json!({
        "enabled": m.enabled,
        "interval": humantime::format_duration(m.interval).to_string(),
        "retention": humantime::format_duration(m.retention).to_string(),
        "top_n": m.top_n,
        "samples_kept": m.capacity(),
        "replica": m.replica_name(),
    });
    let al = &config.alerts;
    let rules: Vec<String> = al
        .rules()
        .iter()
        .map(|r| {
            let scope = r.scope.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
            let (m, o, t) = (r.metric.as_str(), r.op.as_str(), r.metric.show(r.threshold));
            let held = humantime::format_duration(r.for_);
            format!("{}: {m}{scope} {o} {t} for {held} -> {}", r.name, r.severity.as_str())
        })
        .collect();
    let alerts = serde_json::json!({
        "enabled": al.enabled && m.enabled,
        "rules": rules,
        "rules_source": if al.rules.is_some() { "configured" } else { "defaults" },
        "webhooks": al.webhooks.iter().map(|w| crate::observe::redact::url(&w.url)).collect::<Vec<_>>(),
        "history": al.history,
        "hysteresis": al.hysteresis,
        "queue": al.queue,
        "attempts": al.attempts,
        "backoff": humantime::format_duration(al.backoff).to_string(),
        "timeout": humantime::format_duration(al.timeout).to_string(),
    });
    let mut out = String::from("settings in force:\n");
    let mut section = |name: &str, text: Result<String, toml::ser::Error>| {
        out.push_str(&format!("  [{name}]\n"));
        for line in text.unwrap_or_default().lines().filter(|l| !l.is_empty()) {
            out.push_str(&format!("    {line}\n"));
        }
    };
    section("server", toml::to_string(&server));
    section("admission", toml::to_string(&config.admission));
    section("resilience", toml::to_string(&config.resilience));
    section("cache", toml::to_string(&config.cache));
    section("idempotency", toml::to_string(&config.idempotency));
    section("redis", toml::to_string(&redis));
    section("rate_limits", toml::to_string(&config.rate_limits));
    section("store", toml::to_string(&store));
    section("monitor", toml::to_string(&monitor));
    section("alerts", toml::to_string(&alerts));
    section("self_tools", toml::to_string(&config.self_tools));
    section("audit", toml::to_string(&audit::settings(config)));
    section("approvals", toml::to_string(&config.approvals));
    if let Some(oauth) = &config.auth.oauth {
        // Issuers' client secrets are never serialized.
        section("auth.oauth", toml::to_string(oauth));
    }
    section("catalog", toml::to_string(&config.catalog));
    section("log", toml::to_string(&config.log));
    out
}
