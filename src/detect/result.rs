//! Detection on results returned to clients: the `detect` setting of an upstream or tool
//! (`detect = { results = "off" | "redact" | "block", kinds = [...] }`) and its application.

use serde::Deserialize;
use serde_json::Value;

use super::redact::{self, Place};
use super::{Finding, KindSet};

/// What to do with a result holding sensitive data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
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

/// The `detect` table of an upstream or tool, as written.
#[derive(Clone, Debug, Default, Deserialize)]
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
            Some(names) if names.is_empty() => return Err("detect.kinds is empty; leave it out for all kinds".into()),
            Some(names) => KindSet::from_names(names.iter().map(String::as_str))?,
        };
        Ok(ResultPolicy { action: self.results, kinds })
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
