//! Security findings in the configuration in force: no keys (or keys in clear text) on a
//! listener beyond loopback, `/metrics` without a key beyond loopback, wildcard `Origin` or
//! `Host` acceptance, and secrets written inline in the file ([`super::secrets`]).

use std::net::SocketAddr;

use super::model::{Category, Effort, Input, Priority, Recommendation, ev};
use super::patch::Change;

fn beyond_loopback(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| !a.ip().is_loopback())
}

fn finding(rule: &'static str, priority: Priority, title: String, description: String, impact: &str) -> Recommendation {
    Recommendation {
        id: rule.to_string(),
        rule,
        category: Category::Security,
        priority,
        title,
        description,
        impact: impact.to_string(),
        implementation_effort: Effort::Low,
        estimated_improvement: "The exposure is closed.".into(),
        action_items: Vec::new(),
        evidence: Vec::new(),
        config_patch: Vec::new(),
    }
}

/// Every finding.
pub fn rules(input: &Input<'_>) -> Vec<Recommendation> {
    let c = input.config;
    let s = &c.server;
    let keyless = s.api_keys.is_empty() && !c.store.enabled();
    let mut out = Vec::new();
    if beyond_loopback(&s.listen) && keyless {
        let mut r = finding(
            "open-listener",
            Priority::Critical,
            format!("{} serves every tool without a key", s.listen),
            format!("server.listen = {:?} is reachable beyond this machine and server.api_keys is empty.", s.listen),
            "Anyone who can reach the address can call every upstream tool.",
        );
        r.action_items = vec!["Set server.api_keys (through SEKISHO_SERVER__API_KEYS), or listen on 127.0.0.1.".into()];
        r.config_patch = vec![Change::set(&["server", "listen"], loopback(&s.listen))];
        out.push(r);
    } else if beyond_loopback(&s.listen) && s.tls_cert.is_empty() {
        let mut r = finding(
            "cleartext-keys",
            Priority::High,
            format!("API keys cross the network in clear text to {}", s.listen),
            format!(
                "server.listen = {:?} is reachable beyond this machine without TLS (server.tls_cert is empty).",
                s.listen
            ),
            "Anyone on the path can read the bearer keys and the calls.",
        );
        r.implementation_effort = Effort::Medium;
        r.action_items = vec![
            "Set server.tls_cert and server.tls_key, or terminate TLS in front of the gateway on the same host.".into(),
        ];
        out.push(r);
    }
    if beyond_loopback(&s.metrics_listen) {
        let mut r = finding(
            "metrics-exposed",
            Priority::Medium,
            format!("/metrics is served without a key on {}", s.metrics_listen),
            format!("server.metrics_listen = {:?} is reachable beyond this machine and asks no key.", s.metrics_listen),
            "Upstream names, tool names, callers' names and traffic are readable by anyone who reaches it.",
        );
        r.action_items = vec![
            "Listen on loopback (the patch) and scrape through the main listener with a key, or firewall it.".into(),
        ];
        r.config_patch = vec![Change::set(&["server", "metrics_listen"], loopback(&s.metrics_listen))];
        out.push(r);
    }
    for (rule, field, list, what) in [
        ("wildcard-origins", "allowed_origins", &s.allowed_origins, "any web page's scripts"),
        ("wildcard-hosts", "allowed_hosts", &s.allowed_hosts, "DNS-rebinding pages"),
    ] {
        if !list.iter().any(|v| v == "*") {
            continue;
        }
        let priority = if keyless { Priority::Critical } else { Priority::High };
        let mut r = finding(
            rule,
            priority,
            format!("server.{field} accepts any value (\"*\")"),
            format!(
                "server.{field} contains \"*\", so {what} may reach the gateway from a browser{}.",
                if keyless { " with no key at all" } else { "" }
            ),
            "A browser on a visited page can call tools through the gateway.",
        );
        let rest: Vec<String> = list.iter().filter(|v| *v != "*").cloned().collect();
        r.action_items = vec![format!(
            "List the {} your clients use instead of \"*\" (the patch keeps the others).",
            field.trim_start_matches("allowed_")
        )];
        r.config_patch = vec![Change::set(&["server", field], rest)];
        out.push(r);
    }
    if !input.inline_secrets.is_empty() {
        let mut r = finding(
            "inline-secrets",
            Priority::Medium,
            format!("{} secret(s) written inline in the configuration file", input.inline_secrets.len()),
            format!("These settings hold a secret in the file itself: {}.", input.inline_secrets.join(", ")),
            "Anyone who reads the file, a backup or the repository it is kept in has the secrets.",
        );
        r.action_items = input
            .inline_secrets
            .iter()
            .map(|path| match path.split('.').next() {
                Some("upstreams" | "alerts") => {
                    format!("{path}: write \"${{VAR}}\" and set VAR in sekisho's environment.")
                }
                _ => format!(
                    "{path}: remove it from the file and set SEKISHO_{} in the environment.",
                    path.split('[').next().unwrap_or(path).replace('.', "__").to_uppercase()
                ),
            })
            .collect();
        r.evidence = vec![ev("inline_secrets", input.inline_secrets.len() as f64, "count")];
        out.push(r);
    }
    out
}

/// `addr` with its host made `127.0.0.1` (its port kept).
fn loopback(addr: &str) -> String {
    let port = addr.parse::<SocketAddr>().map_or(0, |a| a.port());
    format!("127.0.0.1:{port}")
}
