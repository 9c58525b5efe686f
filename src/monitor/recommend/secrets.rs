//! Secrets written inline in a configuration file: the key paths (never the values) of
//! secret-bearing settings whose value is in the file itself instead of coming from the
//! environment. Upstreams' `env` and `headers` and webhooks' `url` and `headers` expand
//! `${VAR}`; `[server]`, `[redis]` and `[store]` secrets come from `SEKISHO_<SECTION>__<KEY>`.

use toml::Value;

/// The largest file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Names of environment variables and headers that carry secrets (matched case-insensitively
/// as parts of the name).
const SECRET_WORDS: [&str; 9] =
    ["token", "secret", "password", "passwd", "key", "auth", "credential", "cookie", "session"];

fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

fn inline(value: &str) -> bool {
    !value.is_empty() && !value.contains("${")
}

/// Whether a URL carries a password in its user info or a secret-looking query parameter.
fn url_has_secret(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let password = authority.rsplit_once('@').is_some_and(|(user, _)| user.contains(':'));
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    password || query.split('&').any(|p| p.split_once('=').is_some_and(|(k, v)| secret_name(k) && inline(v)))
}

fn str_at<'a>(table: Option<&'a Value>, key: &str) -> Option<&'a str> {
    table.and_then(|t| t.get(key)).and_then(Value::as_str)
}

/// The key paths of inline secrets in the TOML `text` (empty when it does not parse).
pub fn inline_secrets(text: &str) -> Vec<String> {
    let Ok(doc) = text.parse::<toml::Table>() else { return Vec::new() };
    let mut out = Vec::new();
    let server = doc.get("server");
    if let Some(keys) = server.and_then(|s| s.get("api_keys")).and_then(Value::as_array) {
        for (i, k) in keys.iter().enumerate() {
            let value = k.as_str().or_else(|| k.get("key").and_then(Value::as_str)).unwrap_or("");
            if !value.is_empty() {
                out.push(format!("server.api_keys[{i}]"));
            }
        }
    }
    for (section, key) in
        [("server", "session_key"), ("redis", "entry_secret"), ("store", "key_pepper"), ("store", "secret_key")]
    {
        if str_at(doc.get(section), key).is_some_and(|v| !v.is_empty()) {
            out.push(format!("{section}.{key}"));
        }
    }
    for (section, key) in [("redis", "url"), ("store", "postgres_url")] {
        if str_at(doc.get(section), key).is_some_and(url_has_secret) {
            out.push(format!("{section}.{key}"));
        }
    }
    if let Some(ups) = doc.get("upstreams").and_then(Value::as_table) {
        for (name, up) in ups {
            for map in ["env", "headers"] {
                for (k, v) in up.get(map).and_then(Value::as_table).into_iter().flatten() {
                    if secret_name(k) && v.as_str().is_some_and(inline) {
                        out.push(format!("upstreams.{name}.{map}.{k}"));
                    }
                }
            }
            let urls = up.get("urls").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
            if up.get("url").and_then(Value::as_str).into_iter().chain(urls).any(|u| inline(u) && url_has_secret(u)) {
                out.push(format!("upstreams.{name}.url"));
            }
        }
    }
    let hooks = doc.get("alerts").and_then(|a| a.get("webhooks")).and_then(Value::as_array);
    for (i, hook) in hooks.into_iter().flatten().enumerate() {
        if hook.get("url").and_then(Value::as_str).is_some_and(|u| inline(u) && url_has_secret(u)) {
            out.push(format!("alerts.webhooks[{i}].url"));
        }
        for (k, v) in hook.get("headers").and_then(Value::as_table).into_iter().flatten() {
            if secret_name(k) && v.as_str().is_some_and(inline) {
                out.push(format!("alerts.webhooks[{i}].headers.{k}"));
            }
        }
    }
    out
}

/// The inline secrets of the file at `path` (empty when it cannot be read or is over
/// [`MAX_FILE_BYTES`]).
pub fn inline_secrets_in(path: &std::path::Path) -> Vec<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() <= MAX_FILE_BYTES => {
            std::fs::read_to_string(path).map(|t| inline_secrets(&t)).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_inline_secrets_and_spares_variables_and_plain_settings() {
        let text = r#"
            [server]
            api_keys = ["k-0123456789abcdef", { key = "k-fedcba9876543210", role = "admin" }]
            session_key = ""
            [redis]
            url = "redis://:hunter2@10.0.0.9:6379"
            entry_secret = "abc"
            [store]
            postgres_url = "postgres://sekisho@db/sekisho"
            [upstreams.gh]
            command = "x"
            env = { GITHUB_TOKEN = "ghp_inline", LOG_LEVEL = "info", API_KEY = "${API_KEY}" }
            [upstreams.w]
            url = "https://api.example/mcp?api_key=abc&region=eu"
            headers = { Authorization = "Bearer ${W}", "X-Api-Key" = "raw" }
            [[alerts.webhooks]]
            url = "https://hooks.example/T0?token=${HOOK}"
            headers = { Authorization = "Bearer raw" }
        "#;
        assert_eq!(
            inline_secrets(text),
            vec![
                "server.api_keys[0]",
                "server.api_keys[1]",
                "redis.entry_secret",
                "redis.url",
                "upstreams.gh.env.GITHUB_TOKEN",
                "upstreams.w.headers.X-Api-Key",
                "upstreams.w.url",
                "alerts.webhooks[0].headers.Authorization",
            ]
        );
        assert!(inline_secrets("not toml [").is_empty());
    }
}
