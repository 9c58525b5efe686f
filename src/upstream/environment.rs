//! What a stdio child's environment holds (design.md §8: children get only the environment
//! meant for them): by default a few variables a program needs to run (`PATH`, `HOME`, `LANG`,
//! `LC_*`, `TZ`, `TMPDIR`, `USER`) plus the upstream's configured `env`; with `inherit_env`,
//! the gateway's whole environment instead. sekisho's own variables (`SEKISHO_*`, which carry
//! configuration overrides such as API keys and the session key, and `REDIS_URL`) are never
//! inherited.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

/// Variables every child gets from the gateway's environment (when set).
const BASE: [&str; 6] = ["PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER"];

/// Whether `name` is one of sekisho's own variables, which no child inherits.
fn own(name: &str) -> bool {
    name.starts_with("SEKISHO_") || name == "REDIS_URL"
}

/// Whether a child inherits the gateway's variable `name`: never sekisho's own; with `inherit`
/// every other one; otherwise only [`BASE`] and the locale's `LC_*`.
pub fn inherited(name: &OsStr, inherit: bool) -> bool {
    let Some(name) = name.to_str() else { return inherit };
    if own(name) {
        return false;
    }
    inherit || BASE.contains(&name) || name.starts_with("LC_")
}

/// The complete environment of a child: the inherited part of `from` (the gateway's
/// environment), then `configured` (which wins, and may set anything the operator chose).
pub fn for_child(
    from: impl IntoIterator<Item = (OsString, OsString)>,
    inherit: bool,
    configured: &BTreeMap<String, String>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = from.into_iter().filter(|(k, _)| inherited(k, inherit)).collect();
    env.retain(|(k, _)| k.to_str().is_none_or(|k| !configured.contains_key(k)));
    env.extend(configured.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway_env() -> Vec<(OsString, OsString)> {
        [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/g"),
            ("LC_ALL", "C.UTF-8"),
            ("MY_SECRET_TOKEN", "hunter2"),
            ("SEKISHO_SERVER__API_KEYS", "[\"k\"]"),
            ("REDIS_URL", "redis://secret@host"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
    }

    fn names(env: &[(OsString, OsString)]) -> Vec<String> {
        let mut v: Vec<String> = env.iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_child_gets_only_what_it_needs_and_what_is_configured() {
        let configured =
            BTreeMap::from([("TOKEN".to_string(), "t".to_string()), ("HOME".to_string(), "/h".to_string())]);
        let env = for_child(gateway_env(), false, &configured);
        assert_eq!(names(&env), ["HOME", "LC_ALL", "PATH", "TOKEN"]);
        assert!(env.contains(&(OsString::from("HOME"), OsString::from("/h"))), "configured values win");
    }

    #[test]
    fn inheriting_never_passes_sekishos_own_variables() {
        let env = for_child(gateway_env(), true, &BTreeMap::new());
        assert_eq!(names(&env), ["HOME", "LC_ALL", "MY_SECRET_TOKEN", "PATH"]);
    }
}
