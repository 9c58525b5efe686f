//! Alerts: `[alerts]` rules evaluated on every monitor sample, each alert going pending →
//! firing → resolved, firing and resolved ones logged and sent to webhooks, resolved ones
//! kept in a bounded history. `GET /admin/alerts` (`crate::front::alerts`) shows them.
//!
//! One track per rule, evaluated on each new sample (the sampler task calls
//! [`Alerts::observe`]; nothing here runs on the call path):
//!
//! - **idle → pending** when the sample's value breaches the threshold (`op`); the alert's
//!   `id` (`<replica>:<rule>:<ms>`, the pending start) is fixed for the whole episode.
//! - **pending → firing** when the condition has held `for` (the first breaching sample's
//!   timestamp to the current one; `for = 0` fires at once); a sample that does not breach,
//!   or has no value, drops the pending alert (nothing is sent).
//! - **firing → resolved** at the first sample whose value is back past the threshold by the
//!   margin `hysteresis × |threshold|` (a `> 3000` rule with 0.1 resolves at ≤ 2700); a value
//!   between the two keeps it firing, and so does a sample without a value (no calls, no
//!   cache lookups: not evidence of recovery).
//!
//! Each rule changes state once per transition, so each firing and each resolution is handed
//! to each webhook once ([`webhook`] also skips a key it has delivered).

pub mod config;
pub mod rule;
pub mod webhook;

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::monitor::sample::Sample;
pub use config::{AlertsConfig, Op, Rule, Severity};
pub use rule::Metric;

/// Where an alert is in its lifecycle.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The condition holds, not yet for `for`.
    Pending,
    /// The condition held for `for`; notified.
    Firing,
    /// Back past the threshold and its margin; notified, kept in the history.
    Resolved,
}

/// One alert: a rule's episode, as `GET /admin/alerts` and the JSON webhooks show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Alert {
    /// `<replica>:<rule>:<ms>`, the ms being the pending start: stable through the episode,
    /// distinct between episodes.
    pub id: String,
    /// The rule's name.
    pub rule: String,
    /// Its state.
    pub state: State,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's title, else `<metric> <op> <threshold>` (with the scope).
    pub title: String,
    /// What was measured against what, in words.
    pub description: String,
    /// The metric compared.
    pub metric: Metric,
    /// The upstream the rule watches (`null`: the whole gateway).
    pub scope: Option<String>,
    /// `>` or `<`.
    pub op: Op,
    /// The newest value read (at resolution: the value that resolved it).
    pub current_value: f64,
    /// The rule's threshold.
    pub threshold: f64,
    /// When the condition began to hold (the pending start), ms since the Unix epoch.
    pub timestamp: u64,
    /// When it fired, ms since the Unix epoch (`null` while pending).
    pub fired_at: Option<u64>,
    /// Whether it has resolved.
    pub resolved: bool,
    /// When it resolved, ms since the Unix epoch.
    pub resolved_at: Option<u64>,
    /// The replica that raised it (`[monitor] replica`).
    pub replica: String,
}

/// A rule's track: its pending or firing alert, if any.
enum Track {
    Idle,
    Pending(Alert),
    Firing(Alert),
}

struct Book {
    tracks: Vec<Track>,
    /// Resolved alerts, oldest first, at most `history`.
    history: VecDeque<Alert>,
}

/// The rules, their tracks, the history and the webhooks' queues.
pub struct Alerts {
    config: AlertsConfig,
    rules: Vec<Rule>,
    replica: String,
    retention_ms: u64,
    book: Mutex<Book>,
    hooks: Vec<webhook::Hook>,
}

impl Alerts {
    /// The engine of `config`'s rules (the defaults when none are given), for `replica`,
    /// keeping resolved alerts for `retention`; one delivery task per webhook, until `stop`.
    /// Must be called within a tokio runtime when webhooks are configured.
    pub fn new(
        config: &AlertsConfig,
        replica: &str,
        retention: std::time::Duration,
        stop: &CancellationToken,
    ) -> Alerts {
        let rules = config.rules();
        let hooks = match config.webhooks.is_empty() {
            true => Vec::new(),
            false => {
                let client = crate::upstream::http::client();
                config.webhooks.iter().map(|w| webhook::Hook::spawn(w, config, client.clone(), stop.clone())).collect()
            }
        };
        Alerts {
            config: config.clone(),
            book: Mutex::new(Book { tracks: rules.iter().map(|_| Track::Idle).collect(), history: VecDeque::new() }),
            rules,
            replica: replica.to_string(),
            retention_ms: retention.as_millis() as u64,
            hooks,
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Evaluate every rule on `sample` (see the module doc); log each alert that fires or
    /// resolves and queue it to every webhook. Returns those alerts.
    pub fn observe(&self, sample: &Sample) -> Vec<Alert> {
        let now = sample.timestamp_ms;
        let mut changes = Vec::new();
        let mut book = self.book.lock().expect("alerts lock");
        for (rule, track) in self.rules.iter().zip(book.tracks.iter_mut()) {
            let (value, calls) = rule.metric.read(sample, rule.scope.as_deref());
            let value = value.filter(|v| v.is_finite() && calls >= rule.min_calls);
            let next = match (std::mem::replace(track, Track::Idle), value) {
                (Track::Idle, Some(v)) if rule.op.breached(v, rule.threshold) => {
                    self.step_pending(self.begin(rule, v, now), rule, v, now, &mut changes)
                }
                (Track::Idle, _) => Track::Idle,
                (Track::Pending(a), Some(v)) if rule.op.breached(v, rule.threshold) => {
                    self.step_pending(a, rule, v, now, &mut changes)
                }
                (Track::Pending(_), _) => Track::Idle,
                (Track::Firing(mut a), Some(v)) if rule.op.cleared(v, rule.threshold, self.config.hysteresis) => {
                    a.state = State::Resolved;
                    a.resolved = true;
                    a.resolved_at = Some(now);
                    a.current_value = v;
                    a.description = describe(rule, v, "resolved");
                    changes.push(a);
                    Track::Idle
                }
                (Track::Firing(mut a), v) => {
                    if let Some(v) = v {
                        a.current_value = v;
                    }
                    Track::Firing(a)
                }
            };
            *track = next;
        }
        for a in changes.iter().filter(|a| a.resolved) {
            book.history.push_back(a.clone());
        }
        let oldest = now.saturating_sub(self.retention_ms);
        while book.history.len() > self.config.history
            || book.history.front().is_some_and(|a| a.resolved_at.unwrap_or(0) < oldest)
        {
            book.history.pop_front();
        }
        drop(book);
        for a in &changes {
            self.notify(a);
        }
        changes
    }

    /// A new pending alert of `rule` at `value`, now.
    fn begin(&self, rule: &Rule, value: f64, now: u64) -> Alert {
        let title = match rule.title.is_empty() {
            false => rule.title.clone(),
            true => {
                let scope = rule.scope.as_deref().map(|s| format!(" of {s}")).unwrap_or_default();
                let (m, o, t) = (rule.metric.as_str(), rule.op.as_str(), rule.metric.show(rule.threshold));
                format!("{m}{scope} {o} {t}")
            }
        };
        Alert {
            id: format!("{}:{}:{now}", self.replica, rule.name),
            rule: rule.name.clone(),
            state: State::Pending,
            severity: rule.severity,
            title,
            description: describe(rule, value, "pending"),
            metric: rule.metric,
            scope: rule.scope.clone(),
            op: rule.op,
            current_value: value,
            threshold: rule.threshold,
            timestamp: now,
            fired_at: None,
            resolved: false,
            resolved_at: None,
            replica: self.replica.clone(),
        }
    }

    /// A pending alert still breaching at `value`: firing once it has held `for`.
    fn step_pending(&self, mut a: Alert, rule: &Rule, value: f64, now: u64, changes: &mut Vec<Alert>) -> Track {
        a.current_value = value;
        if now.saturating_sub(a.timestamp) >= rule.for_.as_millis() as u64 {
            a.state = State::Firing;
            a.fired_at = Some(now);
            a.description = describe(rule, value, "firing");
            changes.push(a.clone());
            Track::Firing(a)
        } else {
            a.description = describe(rule, value, "pending");
            Track::Pending(a)
        }
    }

    /// Log `alert` (firing: warn; resolved: info) and queue it to every webhook.
    fn notify(&self, alert: &Alert) {
        match alert.state {
            State::Firing => tracing::warn!(
                alert = %alert.id, rule = %alert.rule, severity = alert.severity.as_str(),
                value = alert.current_value, threshold = alert.threshold, "alert firing: {}", alert.description
            ),
            _ => tracing::info!(
                alert = %alert.id, rule = %alert.rule, severity = alert.severity.as_str(),
                value = alert.current_value, "alert resolved: {}", alert.description
            ),
        }
        for hook in &self.hooks {
            hook.send(alert);
        }
    }

    /// The pending and firing alerts: firing first, then by severity (worst first), then
    /// oldest first.
    pub fn active(&self) -> Vec<Alert> {
        let book = self.book.lock().expect("alerts lock");
        let mut out: Vec<Alert> = book
            .tracks
            .iter()
            .filter_map(|t| match t {
                Track::Idle => None,
                Track::Pending(a) | Track::Firing(a) => Some(a.clone()),
            })
            .collect();
        out.sort_by(|a, b| {
            (b.state == State::Firing)
                .cmp(&(a.state == State::Firing))
                .then(b.severity.cmp(&a.severity))
                .then(a.timestamp.cmp(&b.timestamp))
        });
        out
    }

    /// Resolved alerts kept, newest first.
    pub fn history(&self) -> Vec<Alert> {
        self.book.lock().expect("alerts lock").history.iter().rev().cloned().collect()
    }

    /// How many alerts are firing.
    pub fn firing(&self) -> usize {
        let book = self.book.lock().expect("alerts lock");
        book.tracks.iter().filter(|t| matches!(t, Track::Firing(_))).count()
    }

    /// Per webhook: its redacted URL, deliveries made, given up and dropped (queue full).
    pub fn deliveries(&self) -> Vec<webhook::Stats> {
        self.hooks.iter().map(webhook::Hook::stats).collect()
    }
}

/// `<metric>[ of <scope>] is <value> (<op> <threshold>)`, with the state's word.
fn describe(rule: &Rule, value: f64, state: &str) -> String {
    let scope = rule.scope.as_deref().map(|s| format!(" of upstream {s}")).unwrap_or_default();
    let (m, v, t) = (rule.metric.as_str(), rule.metric.show(value), rule.metric.show(rule.threshold));
    match state {
        "resolved" => format!("{m}{scope} is back to {v} (threshold {} {t})", rule.op.as_str()),
        _ => format!("{m}{scope} is {v}, {} the threshold {t}", if rule.op == Op::Above { "above" } else { "below" }),
    }
}

#[cfg(test)]
mod tests;
