//! The tables the operator commands print (`ops.rs`), each from the admin API's JSON answer:
//! missing members print as `-`, never fail.

use serde_json::Value;

/// `0.1234` as `12.3%`; `-` for `null`.
fn percent(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0))
}

/// Milliseconds with one decimal; `-` for `null`.
fn ms(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |m| format!("{m:.1} ms"))
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        _ => "-".into(),
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// A duration in ms as `1h`, `30s`.
fn span(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".into(), |m| humantime::format_duration(std::time::Duration::from_millis(m)).to_string())
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC, seconds).
fn when(v: &Value) -> String {
    v.as_u64().map_or_else(
        || "-".into(),
        |m| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(m);
            humantime::format_rfc3339_seconds(t).to_string()
        },
    )
}

fn bytes(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
}

fn reasons(out: &mut String, v: &Value) {
    for r in v.as_array().into_iter().flatten() {
        out.push_str(&format!("  - {}\n", text(r)));
    }
}

/// `sekisho performance`.
pub fn performance(v: &Value) -> String {
    let mut out = format!("{:<18}{}\n", "overall health", text(&v["overall_health"]));
    reasons(&mut out, &v["reasons"]);
    if v["monitor"] == false {
        out.push_str("(the monitor is off: [monitor] enabled = false)\n");
    }
    let rows = [
        ("period", format!("{} ({} samples)", span(&v["period_ms"]), num(&v["samples"]))),
        ("calls", format!("{} ({}/s)", num(&v["calls"]), num(&v["requests_per_sec"]))),
        ("cache hit rate", percent(&v["cache_hit_rate"])),
        ("avg response", ms(&v["average_response_time"])),
        ("p95 (max)", ms(&v["p95_ms_max"])),
        ("error rate", percent(&v["error_rate"])),
        ("cost efficiency", percent(&v["cost_efficiency"])),
        ("cost", spend(&v["cost"])),
    ];
    for (k, val) in rows {
        out.push_str(&format!("{k:<18}{val}\n"));
    }
    out
}

/// `sekisho metrics`: the newest sample beside the period's totals; `detailed` adds the
/// newest sample's breakdowns.
pub fn metrics(v: &Value, detailed: bool) -> String {
    let (l, s) = (&v["latest"], &v["summary"]);
    let mut out = format!(
        "period {}: {} samples, one every {}\n",
        span(&v["period_ms"]),
        num(&s["samples"]),
        span(&v["interval_ms"])
    );
    if l.is_null() {
        out.push_str("no sample yet (the first comes one interval after start)\n");
    }
    let lat = &l["latency"];
    let rows = [
        ("requests/s", num(&l["requests_per_sec"]), num(&s["requests_per_sec"])),
        ("calls", num(&l["calls"]), num(&s["calls"])),
        ("errors", num(&l["errors"]), num(&s["errors"])),
        ("error rate", percent(&l["error_rate"]), percent(&s["error_rate"])),
        ("latency mean", ms(&lat["mean_ms"]), ms(&s["average_response_ms"])),
        ("latency p50", ms(&lat["p50_ms"]), String::new()),
        ("latency p95", ms(&lat["p95_ms"]), format!("{} (max)", ms(&s["p95_ms_max"]))),
        ("latency p99", ms(&lat["p99_ms"]), String::new()),
        ("cache hit rate", percent(&l["cache_hit_rate"]), percent(&s["cache_hit_rate"])),
        ("coalesced", percent(&l["coalesced_share"]), num(&s["coalesced"])),
        ("cost efficiency", String::new(), percent(&s["cost_efficiency"])),
        ("shed", num(&l["shed"]), num(&s["shed"])),
        ("rate limited", num(&l["rate_limited"]), num(&s["rate_limited"])),
        ("queued", num(&l["queued"]), String::new()),
        ("in flight", num(&l["in_flight"]), String::new()),
        ("sessions", num(&l["sessions"]), String::new()),
        ("upstreams up", num(&l["upstreams_up"]), String::new()),
        ("upstreams down", num(&l["upstreams_down"]), String::new()),
        ("breakers open", num(&l["breakers_open"]), String::new()),
        ("gateway memory", bytes(&l["gateway"]["rss_bytes"]), String::new()),
    ];
    out.push_str(&format!("{:<18}{:<16}{}\n", "", "LATEST", "PERIOD"));
    for (k, a, b) in rows {
        out.push_str(format!("{k:<18}{a:<16}{b}").trim_end());
        out.push('\n');
    }
    if detailed {
        let newest = [("BY UPSTREAM (newest sample)", "by_upstream"), ("BY METHOD (newest sample)", "by_method")];
        for (title, key) in newest {
            out.push_str(&format!("\n{title:<32}{:>8}{:>8}{:>12}\n", "CALLS", "ERRORS", "P95"));
            for b in l[key].as_array().into_iter().flatten() {
                let p95 = ms(&b["p95_ms"]);
                out.push_str(&format!(
                    "{:<32}{:>8}{:>8}{p95:>12}\n",
                    text(&b["name"]),
                    num(&b["calls"]),
                    num(&b["errors"])
                ));
            }
        }
        out.push_str(&format!("\n{:<32}{:>8}{:>12}{:>8}\n", "PROCESS", "PID", "RSS", "CPU"));
        let processes = l["gateway"]
            .as_object()
            .map(|_| &l["gateway"])
            .into_iter()
            .chain(l["children"].as_array().into_iter().flatten());
        for p in processes {
            let cpu = p["cpu_percent"].as_f64().map_or_else(|| "-".into(), |c| format!("{c:.1}%"));
            out.push_str(&format!(
                "{:<32}{:>8}{:>12}{cpu:>8}\n",
                text(&p["name"]),
                num(&p["pid"]),
                bytes(&p["rss_bytes"])
            ));
        }
    }
    out
}

/// `sekisho alerts`: firing and pending alerts, then the history when the answer has one.
pub fn alerts(v: &Value) -> String {
    let row = |a: &Value, at: &Value| {
        let threshold = format!("{} {}", text(&a["op"]), num(&a["threshold"]));
        format!(
            "{:<10}{:<10}{:<22}{:<12}{:<12}{}\n",
            text(&a["severity"]),
            text(&a["state"]),
            when(at),
            num(&a["current_value"]),
            threshold,
            text(&a["title"])
        )
    };
    let header =
        |at: &str| format!("{:<10}{:<10}{at:<22}{:<12}{:<12}{}\n", "SEVERITY", "STATE", "VALUE", "THRESHOLD", "TITLE");
    let active = v["active"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "{} firing, {} pending\n",
        num(&v["firing"]),
        active.iter().filter(|a| a["state"] == "pending").count()
    );
    if !active.is_empty() {
        out.push_str(&header("SINCE"));
        for a in &active {
            out.push_str(&row(a, &a["timestamp"]));
        }
    }
    if let Some(history) = v["history"].as_array() {
        out.push_str(&format!("\nresolved ({}):\n", history.len()));
        if !history.is_empty() {
            out.push_str(&header("RESOLVED"));
            for a in history {
                out.push_str(&row(a, &a["resolved_at"]));
            }
        }
    }
    out
}

/// `sekisho health`.
pub fn health(v: &Value) -> String {
    let ready = if v["ready"] == true { "ready" } else { "not ready" };
    let mut out = format!("status: {} ({ready})\n", text(&v["status"]));
    reasons(&mut out, &v["reasons"]);
    out.push_str(&format!(
        "upstreams: {} of {} up, {} breaker(s) open\n",
        num(&v["upstreams_up"]),
        num(&v["upstreams_total"]),
        num(&v["breakers_open"])
    ));
    let ups = v["upstreams"].as_array().cloned().unwrap_or_default();
    if !ups.is_empty() {
        out.push_str(&format!(
            "{:<24}{:<10}{:<8}{:>10}{:>10}  {:<16}{}\n",
            "UPSTREAM", "STATUS", "ERA", "IN FLIGHT", "RESTARTS", "BREAKERS", "DETAIL"
        ));
        for u in &ups {
            let breakers: Vec<&str> =
                u["replicas"].as_array().into_iter().flatten().map(|r| text(&r["breaker"])).collect();
            let breakers = if breakers.is_empty() { "-".to_string() } else { breakers.join(",") };
            let detail: String = u["reason"].as_str().unwrap_or("").chars().take(60).collect();
            out.push_str(&format!(
                "{:<24}{:<10}{:<8}{:>10}{:>10}  {breakers:<16}{detail}\n",
                text(&u["name"]),
                text(&u["status"]),
                text(&u["era"]),
                num(&u["in_flight"]),
                num(&u["restarts"])
            ));
        }
    }
    let store = if v["store"].is_null() { "-".to_string() } else { text(&v["store"]["status"]).to_string() };
    let redis = v["redis"].as_str().unwrap_or("-");
    let off: Vec<&str> = v["switched_off"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let off = if off.is_empty() { "none".to_string() } else { off.join(", ") };
    out.push_str(&format!(
        "store: {store}  redis: {redis}  switched off: {off}  alerts firing: {}  draining: {}\n",
        num(&v["alerts_firing"]),
        num(&v["draining"])
    ));
    out
}

/// `sekisho cache clear --url`.
pub fn cleared(v: &Value) -> String {
    let c = &v["cleared"];
    match (c["upstream"].as_str(), c["tool"].as_str()) {
        (Some(u), Some(t)) => format!("cleared the cached results of tool {t:?} of upstream {u:?}\n"),
        (Some(u), None) => format!("cleared the cached results of upstream {u:?}\n"),
        _ => "cleared every cached result (every replica within a second, with Redis)\n".into(),
    }
}

/// `sekisho drain`.
pub fn drained(v: &Value) -> String {
    let already = if v["already"] == true { " (it was draining already)" } else { "" };
    format!(
        "draining{already}: new work is refused; calls in flight have up to {} to finish, then the gateway exits\n",
        span(&v["grace_ms"])
    )
}

/// `performance`'s `cost`: `$0.0300 ($36.00/h); budget gateway 120% of $0.03/h (alert)`.
fn spend(cost: &Value) -> String {
    if cost.is_null() {
        return "- (no prices or budgets)".into();
    }
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut out = format!("${:.4} (${:.2}/h)", num(&cost["spent_usd"]), num(&cost["per_hour_usd"]));
    for b in cost["budgets"].as_array().into_iter().flatten().take(8) {
        let name = b["name"].as_str().unwrap_or("?");
        let action = b["action"].as_str().unwrap_or("?");
        out += &format!("; budget {name} {:.0}% of ${:.2}/h ({action})", num(&b["used"]) * 100.0, num(&b["per_hour"]));
    }
    out
}
