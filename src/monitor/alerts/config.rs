//! `[alerts]`: the rules evaluated on every monitor sample (with the issue's thresholds as
//! defaults when none are given), the webhooks that hear of state changes, and the bounds of
//! the history and delivery queues.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rule::Metric;

/// The most rules.
pub const MAX_RULES: usize = 200;
/// The most webhooks.
pub const MAX_WEBHOOKS: usize = 16;
/// The most alerts `history` may keep.
pub const MAX_HISTORY: usize = 100_000;

/// How bad an alert is, least to most.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// The deployment guide's early warning levels.
    Warning,
    /// Degraded.
    Medium,
    /// Users notice.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// Its name in configuration, logs and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Warning => "warning",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A rule's comparison.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum Op {
    /// The condition holds while the value is above the threshold.
    #[serde(rename = ">")]
    Above,
    /// The condition holds while the value is below the threshold.
    #[serde(rename = "<")]
    Below,
}

impl Op {
    /// `>` or `<`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Above => ">",
            Op::Below => "<",
        }
    }

    /// Whether `value` breaches `threshold`.
    pub fn breached(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Above => value > threshold,
            Op::Below => value < threshold,
        }
    }

    /// Whether `value` is back past `threshold` by the margin `hysteresis × |threshold|` (the
    /// resolve condition of a firing alert).
    pub fn cleared(self, value: f64, threshold: f64, hysteresis: f64) -> bool {
        let margin = threshold.abs() * hysteresis;
        match self {
            Op::Above => value <= threshold - margin,
            Op::Below => value >= threshold + margin,
        }
    }
}

/// One rule of `[[alerts.rules]]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name: 1 to 64 ASCII letters, digits, `.`, `_`, `-` (part of each alert's id).
    pub name: String,
    /// The sample indicator compared ([`Metric`]).
    pub metric: Metric,
    /// `>` or `<`.
    pub op: Op,
    /// The value compared against, in the metric's unit (ms, a 0..1 rate, a count, bytes).
    pub threshold: f64,
    /// How long the condition must hold before the alert fires; 0 (the default): at the
    /// first sample that breaches.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub for_: Duration,
    /// How bad it is.
    pub severity: Severity,
    /// An upstream name: the metric is read from that upstream's entry of the sample (only
    /// for the metrics that have one, [`Metric::scoped`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Samples with fewer calls than this neither fire nor keep pending the rule's alert
    /// (rates and percentiles of a handful of calls are noise); 0: no minimum.
    #[serde(default)]
    pub min_calls: u64,
    /// The alert's title; empty: made from the rule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
}

/// How a webhook's body is shaped.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The alert object as JSON.
    #[default]
    Json,
    /// `{"text": "…"}`, which Slack's (and compatible) incoming webhooks take.
    Slack,
}

/// One webhook of `[[alerts.webhooks]]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `http://` or `https://` URL; `${VAR}` is expanded. Logged without user info and query.
    pub url: String,
    /// The body's shape.
    #[serde(default)]
    pub format: Format,
    /// Headers sent with each delivery (`${VAR}` expanded); their values are never logged
    /// nor shown by `sekisho check`.
    #[serde(default, skip_serializing)]
    pub headers: BTreeMap<String, String>,
}

/// `[alerts]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Whether rules are evaluated (needs `[monitor] enabled`).
    pub enabled: bool,
    /// The rules; when absent, [`default_rules`]. An empty list means no rules.
    pub rules: Option<Vec<Rule>>,
    /// Where firing and resolved alerts are sent.
    pub webhooks: Vec<Webhook>,
    /// Resolved alerts kept (also dropped after `[monitor] retention`), `1..=100000`.
    pub history: usize,
    /// A firing alert resolves when its value is back past the threshold by this share of the
    /// threshold (0.1: a `> 3000` alert resolves at 2700 or below), `0..=1`.
    pub hysteresis: f64,
    /// Deliveries waiting per webhook; a change that finds the queue full is dropped (and
    /// logged), so a dead webhook cannot grow memory. `1..=10000`.
    pub queue: usize,
    /// Attempts per delivery (the first and the retries), `1..=20`.
    pub attempts: u32,
    /// The first retry's wait; each next one doubles, up to 60 s, with full jitter.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Time limit of one delivery attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            rules: None,
            webhooks: Vec::new(),
            history: 1000,
            hysteresis: 0.1,
            queue: 256,
            attempts: 5,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The rules in force when `rules` is not given: the issue's thresholds, each a warning level
/// and a higher one. Error-rate and latency rules need 20 calls in the sample.
pub fn default_rules() -> Vec<Rule> {
    let rule = |name: &str, metric, op, threshold, severity, min_calls| Rule {
        name: name.into(),
        metric,
        op,
        threshold,
        for_: Duration::ZERO,
        severity,
        scope: None,
        min_calls,
        title: String::new(),
    };
    use Metric::*;
    use Op::*;
    use Severity::*;
    const MB: f64 = 1024.0 * 1024.0;
    vec![
        rule("latency-p95-warning", LatencyP95Ms, Above, 3000.0, Warning, 20),
        rule("latency-p95-high", LatencyP95Ms, Above, 5000.0, High, 20),
        rule("error-rate-warning", ErrorRate, Above, 0.02, Warning, 20),
        rule("error-rate-critical", ErrorRate, Above, 0.05, Critical, 20),
        rule("cache-hit-rate-medium", CacheHitRate, Below, 0.6, Medium, 0),
        rule("queue-high", Queued, Above, 10.0, High, 0),
        rule("memory-warning", RssBytes, Above, 400.0 * MB, Warning, 0),
        rule("memory-medium", RssBytes, Above, 512.0 * MB, Medium, 0),
    ]
}

/// One rule per budget of `[budgets]`: `budget_used` of the budget above its `alert_at`,
/// severity `warning`, named `budget.<name>` (characters a rule name cannot hold become `_`).
pub fn budget_rules(budgets: &crate::cost::config::BudgetsConfig) -> Vec<Rule> {
    let clean = |c: char| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' };
    budgets
        .all()
        .map(|(name, b)| Rule {
            name: format!("budget.{}", name.chars().map(clean).take(57).collect::<String>()),
            metric: Metric::BudgetUsed,
            op: Op::Above,
            threshold: b.alert_at,
            for_: Duration::ZERO,
            severity: Severity::Warning,
            title: format!("cost budget {name} above {:.0}% of ${}/h", b.alert_at * 100.0, b.per_hour),
            scope: Some(name),
            min_calls: 0,
        })
        .collect()
}

impl AlertsConfig {
    /// The rules in force: `rules`, else [`default_rules`].
    pub fn rules(&self) -> Vec<Rule> {
        self.rules.clone().unwrap_or_else(default_rules)
    }

    /// This configuration with the rules of `budgets` ([`budget_rules`]) after its own.
    pub fn with_budgets(&self, budgets: &crate::cost::config::BudgetsConfig) -> AlertsConfig {
        let rules = [self.rules(), budget_rules(budgets)].concat();
        AlertsConfig { rules: Some(rules), ..self.clone() }
    }

    /// Problems with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let rules = self.rules();
        if rules.len() > MAX_RULES {
            p.push(format!("alerts.rules holds {} rules; at most {MAX_RULES}", rules.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &rules {
            let at = format!("alerts.rules[{:?}]", r.name);
            if !valid_name(&r.name) {
                p.push(format!("{at}: the name must be 1 to 64 ASCII letters, digits, '.', '_' or '-'"));
            }
            if !seen.insert(r.name.as_str()) {
                p.push(format!("{at}: the name repeats"));
            }
            if !r.threshold.is_finite() {
                p.push(format!("{at}: threshold must be a finite number"));
            }
            if r.scope.is_some() && !r.metric.scoped() {
                p.push(format!("{at}: metric {} has no per-upstream value, so it takes no scope", r.metric.as_str()));
            }
            if r.for_ > Duration::from_secs(7 * 24 * 3600) {
                p.push(format!("{at}: for is longer than 7 days"));
            }
        }
        if self.webhooks.len() > MAX_WEBHOOKS {
            p.push(format!("alerts.webhooks holds {}; at most {MAX_WEBHOOKS}", self.webhooks.len()));
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let ok = w.url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
            });
            if !ok {
                let shown = crate::observe::redact::url(&w.url);
                p.push(format!("alerts.webhooks[{i}].url = {shown:?} is not an http:// or https:// URL"));
            }
            for (k, v) in &w.headers {
                if http::HeaderName::try_from(k.as_str()).is_err() || http::HeaderValue::try_from(v.as_str()).is_err() {
                    p.push(format!("alerts.webhooks[{i}].headers.{k}: not a valid header name and value"));
                }
            }
        }
        if !(1..=MAX_HISTORY).contains(&self.history) {
            p.push(format!("alerts.history = {} is outside 1..={MAX_HISTORY}", self.history));
        }
        if !(0.0..=1.0).contains(&self.hysteresis) {
            p.push(format!("alerts.hysteresis = {} is outside 0..=1", self.hysteresis));
        }
        if !(1..=10_000).contains(&self.queue) {
            p.push(format!("alerts.queue = {} is outside 1..=10000", self.queue));
        }
        if !(1..=20).contains(&self.attempts) {
            p.push(format!("alerts.attempts = {} is outside 1..=20", self.attempts));
        }
        if self.backoff.is_zero() || self.backoff > Duration::from_secs(60) {
            p.push(format!("alerts.backoff = {:?} is outside (0, 60s]", self.backoff));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(120) {
            p.push(format!("alerts.timeout = {:?} is outside (0, 120s]", self.timeout));
        }
        p
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_carry_the_issue_thresholds_and_bad_values_are_named() {
        let c = crate::config::Config::from_toml("").unwrap().alerts;
        let rules = c.rules();
        assert_eq!(rules.len(), 8);
        let find = |n: &str| rules.iter().find(|r| r.name == n).unwrap().clone();
        assert_eq!((find("latency-p95-high").threshold, find("latency-p95-high").severity), (5000.0, Severity::High));
        assert_eq!(find("error-rate-critical").severity, Severity::Critical);
        assert_eq!((find("cache-hit-rate-medium").op, find("cache-hit-rate-medium").threshold), (Op::Below, 0.6));
        assert_eq!(find("memory-medium").threshold, 512.0 * 1024.0 * 1024.0);
        let c = crate::config::Config::from_toml(
            "[alerts]\nrules = [{ name = \"slow\", metric = \"latency_p95_ms\", op = \">\", threshold = 50, for = \"2s\", severity = \"high\", scope = \"e\" }]\n\
             webhooks = [{ url = \"http://127.0.0.1:9/hook\", format = \"slack\", headers = { authorization = \"Bearer x\" } }]\n",
        )
        .unwrap()
        .alerts;
        assert_eq!(c.rules().len(), 1);
        assert_eq!(c.rules()[0].for_, Duration::from_secs(2));
        assert_eq!(c.webhooks[0].format, Format::Slack);
        let e = crate::config::Config::from_toml(
            "[alerts]\nhistory = 0\nhysteresis = 2.0\nattempts = 0\n\
             rules = [{ name = \"a b\", metric = \"sessions\", op = \"<\", threshold = 1, severity = \"low\", scope = \"e\" },\n\
                      { name = \"x\", metric = \"queued\", op = \">\", threshold = 1, severity = \"low\" },\n\
                      { name = \"x\", metric = \"queued\", op = \">\", threshold = 1, severity = \"low\" }]\n\
             webhooks = [{ url = \"ftp://u:secret@h/x\" }]\n",
        )
        .unwrap_err()
        .problems;
        assert_eq!(e.len(), 7, "{e:?}");
        assert!(!e.join(" ").contains("secret"), "URLs are redacted: {e:?}");
        let e = crate::config::Config::from_toml(
            "[alerts]\nrules = [{ name = \"x\", metric = \"nope\", op = \">\", threshold = 1, severity = \"low\" }]\n",
        );
        assert!(e.is_err());
    }

    #[test]
    fn hysteresis_moves_the_resolve_point_past_the_threshold() {
        assert!(Op::Above.breached(3001.0, 3000.0) && !Op::Above.breached(3000.0, 3000.0));
        assert!(!Op::Above.cleared(2800.0, 3000.0, 0.1) && Op::Above.cleared(2700.0, 3000.0, 0.1));
        assert!(
            Op::Below.breached(0.5, 0.6) && !Op::Below.cleared(0.62, 0.6, 0.1) && Op::Below.cleared(0.66, 0.6, 0.1)
        );
    }
}
