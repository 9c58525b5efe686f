//! Configuration changes as TOML key paths and values: shown as a TOML patch, and applied to a
//! copy of a configuration file with `toml_edit`, so the file's comments, order and formatting
//! survive and only the changed keys differ.

use serde::Serialize;
use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

/// Set the key at `path` to `value`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// The key's path, table by table (`["upstreams", "weather", "timeout"]`).
    pub path: Vec<String>,
    /// The same as a TOML dotted key (`upstreams.weather.timeout`), quoted where needed.
    pub key: String,
    /// Its new value: a string (durations are written as `"5m"`), number, boolean or array.
    pub value: serde_json::Value,
}

impl Change {
    /// Set `path` (segments) to `value`.
    pub fn set(path: &[&str], value: impl Into<serde_json::Value>) -> Change {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        Change { key: dotted(&path), path, value: value.into() }
    }
}

/// `path` as a TOML dotted key, each segment bare when it can be, else quoted.
pub fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|seg| {
            let bare = !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if bare { seg.clone() } else { Value::from(seg.as_str()).to_string().trim().to_string() }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `value` as a TOML value; `None` for null and objects (never in a change).
fn toml_value(value: &serde_json::Value) -> Option<Value> {
    Some(match value {
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64()?),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            let mut a = toml_edit::Array::new();
            for v in items {
                a.push_formatted(toml_value(v)?);
            }
            Value::Array(a)
        }
        _ => return None,
    })
}

/// Set one change in `doc`: tables along the path are made when missing (implicit, so a
/// header appears only for the table that holds the key); an existing value keeps its
/// comments.
///
/// Errors: a segment along the path that is a value, not a table, or a value TOML cannot hold.
pub fn apply_one(doc: &mut DocumentMut, change: &Change) -> Result<(), String> {
    let Some((last, parents)) = change.path.split_last() else { return Err("an empty key".into()) };
    let mut value = toml_value(&change.value).ok_or_else(|| format!("{}: not a TOML value", change.key))?;
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    let mut inline = false;
    for seg in parents {
        if !table.contains_key(seg) {
            let mut t = Table::new();
            t.set_implicit(true);
            table.insert(seg, Item::Table(t));
        }
        table = match table.get_mut(seg) {
            Some(Item::Table(t)) => {
                inline = false;
                t
            }
            Some(Item::Value(Value::InlineTable(t))) => {
                inline = true;
                t
            }
            _ => return Err(format!("{}: {seg} is not a table in the file", change.key)),
        };
    }
    if let Some(Item::Value(old)) = table.get(last) {
        let decor = old.decor().clone();
        *value.decor_mut() = decor;
    }
    table.insert(last, Item::Value(value));
    if inline {
        // An inline table spaces its members itself; a key added to it needs the same.
        table.fmt();
    }
    Ok(())
}

/// `text` (a configuration file) with `changes` applied, everything else as it was.
///
/// Errors: `text` is not TOML, or a change cannot be set ([`apply_one`]).
pub fn apply(text: &str, changes: &[Change]) -> Result<String, String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("the configuration is not TOML: {e}"))?;
    for change in changes {
        apply_one(&mut doc, change)?;
    }
    Ok(doc.to_string())
}

/// `changes` as a TOML document of their own (the patch an operator reads).
pub fn render(changes: &[Change]) -> String {
    apply("", changes).unwrap_or_else(|e| format!("# {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_comments_and_make_only_the_tables_they_need() {
        let text = "# the gateway\n[server]\nlisten = \"127.0.0.1:8080\" # here\n\n\
                    [upstreams.weather]\nurl = \"http://x/mcp\"\ntimeout = \"120s\" # generous\n\
                    env = { A = \"1\" }\n";
        let changes = vec![
            Change::set(&["upstreams", "weather", "timeout"], "3s"),
            Change::set(&["upstreams", "weather", "tools", "get.forecast", "cache"], true),
            Change::set(&["upstreams", "weather", "env", "B"], "2"),
            Change::set(&["cache", "ttl"], "10m"),
        ];
        let out = apply(text, &changes).unwrap();
        assert!(out.starts_with("# the gateway\n[server]\nlisten = \"127.0.0.1:8080\" # here\n"), "{out}");
        assert!(out.contains("timeout = \"3s\" # generous\n"), "{out}");
        assert!(out.contains("[upstreams.weather.tools.\"get.forecast\"]\ncache = true\n"), "{out}");
        assert!(out.contains("env = { A = \"1\", B = \"2\" }"), "{out}");
        assert!(out.contains("[cache]\nttl = \"10m\"\n"), "{out}");
        assert!(!out.contains("[upstreams]\n"), "implicit parents: {out}");
        let parsed: toml::Table = out.parse().unwrap();
        assert_eq!(parsed["upstreams"]["weather"]["tools"]["get.forecast"]["cache"].as_bool(), Some(true));
        assert_eq!(changes[1].key, "upstreams.weather.tools.\"get.forecast\".cache");
    }

    #[test]
    fn a_value_in_the_way_is_an_error_and_the_patch_renders_alone() {
        let err = apply("[upstreams]\nweather = 3\n", &[Change::set(&["upstreams", "weather", "timeout"], "3s")]);
        assert!(err.unwrap_err().contains("weather is not a table"));
        let patch = render(&[Change::set(&["upstreams", "a", "enabled"], false)]);
        assert_eq!(patch, "[upstreams.a]\nenabled = false\n");
    }
}
