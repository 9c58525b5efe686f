//! Detection on results returned to clients: the `detect` setting of an upstream or tool
//! (`detect = { results = "off" | "redact" | "block", kinds = [...] }`) and its application.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::redact::{self, Place};
use super::{Finding, KindSet};

/// What to do with a result holding sensitive data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultAction {
    /// Return results as they are (the default).
    #[default]
    Off,
    /// Replace each finding in the result's strings with `[REDACTED:<kind>]`.
    Redact,
    /// Answer the call with an error instead of a result holding a finding.
    Block,
}

/// The `detect` table of an upstream or tool, as written: `detect = { results = "block",
/// kinds = ["secrets"] }` (docs/configuration.md). A tool's table replaces its upstream's.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// What to do with results holding findings (default `off`).
    #[serde(default)]
    pub results: ResultAction,
    /// The kinds looked for: kind names, `secrets`, `personal` or `all` (default all).
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
}

/// The checked form of [`DetectConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultPolicy {
    /// What to do.
    pub action: ResultAction,
    /// The kinds looked for.
    pub kinds: KindSet,
}

impl DetectConfig {
    /// The policy this table sets.
    ///
    /// # Errors
    /// An unknown kind name, or an empty `kinds` list.
    pub fn policy(&self) -> Result<ResultPolicy, String> {
        let kinds = match &self.kinds {
            None => KindSet::ALL,
            Some(names) if names.is_empty() => return Err("kinds is empty; leave it out for all kinds".into()),
            Some(names) => KindSet::from_names(names.iter().map(String::as_str))?,
        };
        Ok(ResultPolicy { action: self.results, kinds })
    }

    /// The configuration problems of an upstream's `detect` table (at `at`, e.g.
    /// `upstreams.github`) and of its tools' (`tools`: each tool's name and table, if any):
    /// unknown kind names and empty `kinds` lists, each naming where it is.
    pub fn problems<'a>(
        at: &str,
        upstream: Option<&DetectConfig>,
        tools: impl Iterator<Item = (&'a str, Option<&'a DetectConfig>)>,
    ) -> Vec<String> {
        let tools = tools.filter_map(|(t, d)| Some((format!("{at}.tools.{t}.detect"), d?)));
        upstream
            .map(|d| (format!("{at}.detect"), d))
            .into_iter()
            .chain(tools)
            .filter_map(|(at, d)| d.policy().err().map(|e| format!("{at}: {e}")))
            .collect()
    }
}

/// What the policy made of a result.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing found, or the policy is off: the result as it was.
    Clean,
    /// This many findings were replaced in the result.
    Redacted(usize),
    /// The result holds these findings (of its first string with any) and must not be returned.
    Blocked(Vec<Finding>),
}

/// Apply `policy` to `result` (a `tools/call` result, or any JSON): redaction rewrites its
/// strings in place (the JSON stays valid; member names are kept), blocking leaves it as it is.
pub fn apply(policy: ResultPolicy, result: &mut Value) -> Outcome {
    match policy.action {
        ResultAction::Off => Outcome::Clean,
        ResultAction::Redact => match redact::value(result, policy.kinds, Place::Result) {
            0 => Outcome::Clean,
            n => Outcome::Redacted(n),
        },
        ResultAction::Block => {
            let found = redact::first_in(result, policy.kinds);
            if found.is_empty() {
                Outcome::Clean
            } else {
                redact::count(&found, Place::Result, "block");
                Outcome::Blocked(found)
            }
        }
    }
}

/// Screen a message an upstream relays to the client during a call (the `params` of a log
/// message, a progress notification, or a sampling/elicitation request: raw JSON) under the
/// call's `policy`: `Ok` with the bytes as they were (no policy, or nothing found) or redacted;
/// `Err` with the kinds found when the policy blocks, or when the JSON cannot be read and holds
/// a finding (a message that cannot be rewritten is withheld). Findings are counted at
/// [`Place::Relayed`].
///
/// # Errors
/// The kinds found, when the message must not reach the client.
pub fn screen(policy: Option<ResultPolicy>, json: bytes::Bytes) -> Result<bytes::Bytes, KindSet> {
    let Some(policy) = policy.filter(|p| p.action != ResultAction::Off) else {
        return Ok(json);
    };
    let block = policy.action == ResultAction::Block;
    let action = if block { "block" } else { "redact" };
    match super::json::scan(&json, policy.kinds, !block, Place::Relayed, action) {
        Ok(s) if s.count == 0 => Ok(json),
        Ok(s) if block => Err(s.kinds),
        Ok(s) => Ok(bytes::Bytes::from(s.redacted.expect("redaction was asked for"))),
        Err(super::json::Unreadable) => {
            let found = super::scan_bytes(&json, policy.kinds);
            if found.is_empty() {
                return Ok(json);
            }
            redact::count(&found, Place::Relayed, "block");
            Err(found.iter().fold(KindSet::NONE, |k, f| k.with(f.kind)))
        }
    }
}
