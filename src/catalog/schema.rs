//! Tools' `inputSchema`s made into validators (the `jsonschema` crate), within bounds that a
//! hostile upstream cannot stretch, and arguments checked against them with a bounded report.
//!
//! An upstream's schema is untrusted input. Before it is compiled it must be at most
//! [`MAX_SCHEMA_BYTES`] of JSON, nested at most [`MAX_SCHEMA_DEPTH`] levels, refer only within
//! itself (`"$ref": "#"` or `"#/json/pointer"`; no `$dynamicRef`, `$recursiveRef` or embedded
//! `$id`), have no reference cycle, and stay within [`MAX_EXPANDED_NODES`] nodes with every
//! reference expanded — so validating one value costs at most that many schema nodes per
//! instance node. A chain of shared references makes validation exponential: 41 definitions,
//! each an `anyOf` of two references to the next, kept `jsonschema` 0.61 busy for more than 5 s
//! on the value `5` (measured); cycles are refused too, though the crate stops at them, since
//! their cost grows with the instance. Nothing is ever fetched: the compiler is offline (and built without its HTTP
//! and file retrieval). Patterns use the linear-time `regex` engine with bounded sizes, and
//! `format` is an annotation, as JSON Schema 2020-12 (the MCP default dialect) has it. A schema
//! outside these bounds, or one that does not compile, is not used: calls to its tool are not
//! validated (the upstream still sees them and may refuse them itself).

use jsonschema::{PatternOptions, Validator};
use serde_json::Value;

use crate::cache::key::strict_json;
use crate::observe::redact;
use crate::wire::object::ObjectView;

/// Largest `inputSchema` used, in bytes of JSON.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;
/// Deepest nesting of objects and arrays in a used `inputSchema` (references expanded).
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Most JSON nodes of a used `inputSchema` with every `$ref` expanded where it stands.
pub const MAX_EXPANDED_NODES: usize = 20_000;
/// Size bound of one compiled `pattern` and of its lazy DFA's cache, in bytes.
const MAX_REGEX_BYTES: usize = 256 * 1024;
/// Validation errors named in one refusal.
pub const MAX_REPORTED_ERRORS: usize = 5;
/// Characters of one error's path or reason in a refusal (longer ones are cut, marked `…`).
const MAX_REPORTED_CHARS: usize = 200;

/// Make the validator of a listed tool (its raw JSON object from `tools/list`).
///
/// `Ok(None)`: the tool declares no `inputSchema`, so there is nothing to check.
///
/// Errors: why the schema is not used — over a bound, a reference it may not make, or one that
/// does not compile (the reason is for the log: the upstream's words, URLs redacted).
pub fn compile(tool: &[u8]) -> Result<Option<Validator>, String> {
    let view = ObjectView::parse(tool).map_err(|e| format!("the tool is not a JSON object: {e}"))?;
    let Some(span) = view.get(tool, "inputSchema") else { return Ok(None) };
    let raw = &tool[span];
    if raw.len() > MAX_SCHEMA_BYTES {
        return Err(format!("it is {} bytes; at most {MAX_SCHEMA_BYTES} are used", raw.len()));
    }
    let schema: Value = serde_json::from_slice(raw).map_err(|e| format!("it is not readable JSON: {e}"))?;
    bounded(&schema)?;
    let patterns = PatternOptions::regex().size_limit(MAX_REGEX_BYTES).dfa_size_limit(MAX_REGEX_BYTES);
    jsonschema::options()
        .offline()
        .should_validate_formats(false)
        .with_pattern_options(patterns)
        .build(&schema)
        .map(Some)
        .map_err(|e| format!("it does not compile: {}", redact::url(&e.to_string())))
}

/// How the message of arguments that break their schema begins (arguments that do not parse
/// say `params.arguments: …` instead): the one refusal SEP-1303 makes a tool result.
pub const MISMATCH: &str = "the arguments do not match the tool's inputSchema";

/// Check `arguments` (the raw `params.arguments`; absent or `null` is checked as `{}`) against
/// `validator`.
///
/// Errors: the refusal's text (for a -32602): arguments the gateway cannot read exactly as an
/// upstream would (see [`strict_json`]), or the first [`MAX_REPORTED_ERRORS`] validation
/// errors, each as its instance path under `arguments` and the validator's reason, each cut at
/// 200 characters, followed by "and more" when there are more.
pub fn check(validator: &Validator, arguments: Option<&[u8]>) -> Result<(), String> {
    let instance = match arguments {
        None | Some(b"null") => Value::Object(serde_json::Map::new()),
        Some(raw) => strict_json(raw).map_err(|e| format!("params.arguments: {e}"))?,
    };
    if validator.is_valid(&instance) {
        return Ok(());
    }
    let mut out = String::from(MISMATCH);
    let mut errors = validator.iter_errors(&instance);
    for (i, e) in errors.by_ref().take(MAX_REPORTED_ERRORS).enumerate() {
        out.push_str(if i == 0 { ": " } else { "; " });
        out.push_str("arguments");
        push_cut(&mut out, e.instance_path().as_str());
        out.push_str(": ");
        push_cut(&mut out, &e.to_string());
    }
    if errors.next().is_some() {
        out.push_str("; and more");
    }
    Err(out)
}

/// Append `s`, cut at [`MAX_REPORTED_CHARS`] characters.
fn push_cut(out: &mut String, s: &str) {
    match s.char_indices().nth(MAX_REPORTED_CHARS) {
        Some((at, _)) => {
            out.push_str(&s[..at]);
            out.push('…');
        }
        None => out.push_str(s),
    }
}

/// Check the bounds of the module doc on `schema`: depth, local references only, no cycle, at
/// most [`MAX_EXPANDED_NODES`] nodes with references expanded.
///
/// Errors: the first bound it breaks.
fn bounded(schema: &Value) -> Result<(), String> {
    let mut walk = Walk { root: schema, budget: MAX_EXPANDED_NODES, expanding: Vec::new() };
    walk.node(schema, 0, Place::Root)
}

/// A depth-first walk over a schema that expands references where they stand.
struct Walk<'a> {
    root: &'a Value,
    /// Nodes left to visit.
    budget: usize,
    /// The targets of the references being expanded (a target met again is a cycle).
    expanding: Vec<*const Value>,
}

/// Keywords whose values are data, not schemas: they hold no references (a `$ref` member in a
/// `default` is a value like any other).
const DATA_KEYWORDS: [&str; 4] = ["const", "enum", "default", "examples"];
/// Keywords whose values map names to schemas: their members' names are not keywords (a
/// property may be called `default` or `$ref`).
const NAME_MAPS: [&str; 6] =
    ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"];

/// What a node of the walk is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The schema itself.
    Root,
    /// A subschema (or any value that is not known to be data).
    Schema,
    /// The value of one of [`NAME_MAPS`].
    Names,
}

impl<'a> Walk<'a> {
    fn node(&mut self, node: &'a Value, depth: usize, place: Place) -> Result<(), String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| format!("it has more than {MAX_EXPANDED_NODES} nodes with its references expanded"))?;
        if depth > MAX_SCHEMA_DEPTH {
            return Err(format!("it is nested deeper than {MAX_SCHEMA_DEPTH} levels (references expanded)"));
        }
        match node {
            Value::Object(members) if place == Place::Names => {
                for value in members.values() {
                    self.node(value, depth + 1, Place::Schema)?;
                }
            }
            Value::Object(members) => {
                for (key, value) in members {
                    match (key.as_str(), value) {
                        (k, _) if DATA_KEYWORDS.contains(&k) => continue,
                        ("$ref", Value::String(reference)) => self.reference(reference, depth)?,
                        ("$dynamicRef" | "$recursiveRef", _) => return Err(format!("it uses {key}")),
                        ("$id" | "id", Value::String(_)) if place != Place::Root => {
                            return Err(format!("it embeds a resource with its own {key}"));
                        }
                        _ => {}
                    }
                    let next = if NAME_MAPS.contains(&key.as_str()) { Place::Names } else { Place::Schema };
                    self.node(value, depth + 1, next)?;
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.node(item, depth + 1, Place::Schema)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Expand the reference `reference` made at `depth`.
    fn reference(&mut self, reference: &str, depth: usize) -> Result<(), String> {
        let target = local_target(self.root, reference).ok_or_else(|| {
            format!("it makes a reference that is not a JSON pointer within it: {:?}", cut(&redact::url(reference)))
        })?;
        let at = target as *const Value;
        if self.expanding.contains(&at) {
            return Err(format!("its references make a cycle through {:?}", cut(reference)));
        }
        self.expanding.push(at);
        self.node(target, depth + 1, Place::Schema)?;
        self.expanding.pop();
        Ok(())
    }
}

/// The node a reference `#` or `#/json/pointer` (RFC 6901 escapes, no percent-encoding) names
/// in `root`; `None` for any other reference or a pointer to nothing.
fn local_target<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.contains('%') || !(pointer.is_empty() || pointer.starts_with('/')) {
        return None;
    }
    root.pointer(pointer)
}

/// `s` cut for a log line.
fn cut(s: &str) -> String {
    let mut out = String::new();
    push_cut(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(schema: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"name": "t", "inputSchema": schema})).unwrap()
    }

    fn refusal(schema: Value, args: Value) -> String {
        let v = compile(&tool(schema)).unwrap().unwrap();
        check(&v, Some(&serde_json::to_vec(&args).unwrap())).unwrap_err()
    }

    fn add() -> Value {
        json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]})
    }

    #[test]
    fn valid_arguments_pass_and_absent_ones_are_an_empty_object() {
        let v = compile(&tool(add())).unwrap().unwrap();
        assert_eq!(check(&v, Some(br#"{"a": 1, "b": 2.5}"#)), Ok(()));
        let open = compile(&tool(json!({"type": "object"}))).unwrap().unwrap();
        assert_eq!(check(&open, None), Ok(()));
        assert_eq!(check(&open, Some(b"null")), Ok(()));
        let e = check(&v, None).unwrap_err();
        assert!(e.contains(r#"arguments: "a" is a required property"#), "{e}");
    }

    #[test]
    fn a_refusal_names_paths_and_reasons_and_is_bounded() {
        let e = refusal(add(), json!({"a": "one", "b": 2}));
        assert!(e.contains(r#"arguments/a: "one" is not of type "number""#), "{e}");
        // Seven wrong items: five are named, the rest summed up.
        let schema = json!({"type": "array", "items": {"type": "integer"}});
        let long = "x".repeat(10_000);
        let e = refusal(schema, json!([long, "b", "c", "d", "e", "f", "g"]));
        assert_eq!(e.matches("arguments/").count(), 5, "{e}");
        assert!(e.ends_with("; and more"), "{e}");
        assert!(e.len() < 2000, "{} bytes", e.len());
        assert!(e.contains('…'));
    }

    #[test]
    fn extra_members_are_refused_only_when_the_schema_says_so() {
        let mut strict = add();
        strict["additionalProperties"] = json!(false);
        let e = refusal(strict, json!({"a": 1, "b": 2, "c": 3}));
        assert!(e.contains("Additional properties are not allowed ('c' was unexpected)"), "{e}");
        let v = compile(&tool(add())).unwrap().unwrap();
        assert_eq!(check(&v, Some(br#"{"a": 1, "b": 2, "c": 3}"#)), Ok(()));
    }

    #[test]
    fn arguments_that_name_a_member_twice_are_refused() {
        let v = compile(&tool(add())).unwrap().unwrap();
        let e = check(&v, Some(br#"{"a": 1, "b": 2, "a": "x"}"#)).unwrap_err();
        assert!(e.contains("duplicate member"), "{e}");
    }

    #[test]
    fn a_tool_without_a_schema_has_nothing_to_check() {
        assert!(compile(br#"{"name": "t"}"#).unwrap().is_none());
    }

    #[test]
    fn local_references_are_followed() {
        let schema = json!({"type": "object", "properties": {"p": {"$ref": "#/$defs/point"}},
                            "$defs": {"point": {"type": "object", "required": ["x"]}}});
        let e = refusal(schema, json!({"p": {}}));
        assert!(e.contains(r#"arguments/p: "x" is a required property"#), "{e}");
    }

    #[test]
    fn hostile_schemas_are_not_used() {
        let refused = |schema: Value, why: &str| {
            let e = compile(&tool(schema)).err().unwrap_or_else(|| panic!("used a schema that {why}"));
            assert!(e.contains(why), "{e}");
        };
        refused(json!({"$ref": "http://127.0.0.1:9/schema.json"}), "not a JSON pointer");
        let e = compile(&tool(json!({"$ref": "https://user:secret@127.0.0.1:9/s.json?token=t"}))).unwrap_err();
        assert!(!e.contains("secret") && !e.contains("token"), "{e}");
        refused(json!({"properties": {"x": {"$ref": "other.json#/a"}}}), "not a JSON pointer");
        refused(
            json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            "cycle",
        );
        refused(json!({"anyOf": [{"$ref": "#"}, {"type": "string"}]}), "cycle");
        refused(json!({"$dynamicRef": "#meta"}), "$dynamicRef");
        refused(json!({"$defs": {"x": {"$id": "http://127.0.0.1:9/x", "type": "string"}}}), "$id");
        refused(json!({"enum": ["y".repeat(MAX_SCHEMA_BYTES)]}), "bytes");
        // Each level refers twice to the next: 2^18 nodes expanded from a schema of 19 entries.
        let mut defs = serde_json::Map::new();
        for i in 0..18 {
            let next = json!({"$ref": format!("#/$defs/l{}", i + 1)});
            defs.insert(format!("l{i}"), json!({"anyOf": [next.clone(), next]}));
        }
        defs.insert("l18".into(), json!({"type": "string"}));
        refused(json!({"$defs": defs, "$ref": "#/$defs/l0"}), "nodes");
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"items": deep});
        }
        refused(deep, "deeper");
        refused(json!({"type": 5}), "does not compile");
        refused(json!({"$schema": "http://127.0.0.1:9/meta", "type": "object"}), "does not compile");
    }

    #[test]
    fn data_keywords_are_not_read_as_schemas() {
        let schema = json!({"type": "object", "default": {"$ref": "http://127.0.0.1:9/x", "id": "a"},
                            "properties": {"id": {"type": "string", "examples": [{"$id": "x"}]}}});
        let v = compile(&tool(schema)).unwrap().unwrap();
        assert_eq!(check(&v, Some(br#"{"id": "ok"}"#)), Ok(()));
        // A property may be called like a data keyword: its schema is still read.
        let e = compile(&tool(json!({"properties": {"default": {"$ref": "#"}}}))).unwrap_err();
        assert!(e.contains("cycle"), "{e}");
    }

    #[test]
    fn patterns_run_in_linear_time() {
        // Catastrophic for a backtracking engine; the regex engine answers at once.
        let schema = json!({"type": "string", "pattern": "^(a+)+$"});
        let e = refusal(schema, json!(format!("{}!", "a".repeat(100_000))));
        assert!(e.starts_with(r#"the arguments do not match the tool's inputSchema: arguments: "aaaa"#), "{e}");
    }
}
