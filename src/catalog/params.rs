//! A tool's `x-mcp-header` declarations (2026-07-28 `server/tools` "Custom Headers" and
//! `basic/transports` "Custom Headers from Tool Parameters", SEP-2243): which arguments a
//! Streamable HTTP `tools/call` mirrors into `Mcp-Param-{Name}` headers, read once from the
//! tool's `inputSchema` when the catalog is built.

use std::sync::Arc;

use http::HeaderName;
use serde_json::Value;

use crate::wire::mcp;

/// The annotation naming a property's header.
const ANNOTATION: &str = "x-mcp-header";
/// At most this many declarations per tool (a tool with more is refused, not cut).
pub const MAX_DECLARATIONS: usize = 64;
/// The longest declared name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Properties are followed this deep into nested object schemas.
const MAX_DEPTH: usize = 8;

/// One argument mirrored into a header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamHeader {
    /// The declared name, as the tool wrote it (`Region`).
    pub name: Box<str>,
    /// The header, lowercased: `mcp-param-region`.
    pub header: HeaderName,
    /// The property names from `arguments` down to the value (one for a top-level property).
    pub path: Box<[Box<str>]>,
}

/// A tool's declarations, shared by the catalog snapshots that list it.
pub type ParamHeaders = Arc<[ParamHeader]>;

/// The declarations of the tool object `raw` (as listed): `Ok(None)` when it declares none.
///
/// Errors: why the declarations break the spec's constraints (a name that is empty, longer
/// than [`MAX_NAME_BYTES`] or not an RFC 9110 token; two names equal but for case; a property
/// whose `type` is not `string`, `integer` or `boolean`; more than [`MAX_DECLARATIONS`]).
/// Clients "MUST exclude the invalid tool from the result of `tools/list`", so the catalog
/// does not list such a tool.
pub fn declared(raw: &[u8]) -> Result<Option<ParamHeaders>, String> {
    if memchr::memmem::find(raw, ANNOTATION.as_bytes()).is_none() {
        return Ok(None);
    }
    let tool: Value = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    if let Some(schema) = tool.get("inputSchema") {
        walk(schema, &mut Vec::new(), &mut found)?;
    }
    if found.is_empty() {
        return Ok(None);
    }
    for (i, a) in found.iter().enumerate() {
        if found[..i].iter().any(|b: &ParamHeader| b.name.eq_ignore_ascii_case(&a.name)) {
            return Err(format!("x-mcp-header {:?} is declared twice (names are case-insensitive)", a.name));
        }
    }
    Ok(Some(found.into()))
}

/// Collect the declarations under `schema.properties`, recursively.
fn walk<'s>(schema: &'s Value, path: &mut Vec<&'s str>, found: &mut Vec<ParamHeader>) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return Ok(()) };
    for (key, prop) in props {
        path.push(key);
        if let Some(annotation) = prop.get(ANNOTATION) {
            let name = annotation.as_str().ok_or("an x-mcp-header value must be a string")?;
            check_name(name)?;
            check_type(prop).map_err(|why| format!("x-mcp-header {name:?}: {why}"))?;
            if found.len() == MAX_DECLARATIONS {
                return Err(format!("more than {MAX_DECLARATIONS} x-mcp-header declarations"));
            }
            let header = format!("{}{}", mcp::HEADER_PARAM_PREFIX, name.to_ascii_lowercase());
            let header = HeaderName::try_from(header).map_err(|e| format!("x-mcp-header {name:?}: {e}"))?;
            found.push(ParamHeader { name: name.into(), header, path: path.iter().map(|p| Box::from(*p)).collect() });
        } else if path.len() < MAX_DEPTH {
            walk(prop, path, found)?;
        }
        path.pop();
    }
    Ok(())
}

/// A declared name: non-empty, bounded, and an RFC 9110 §5.6.2 token (which rules out
/// spaces, `:`, control characters and non-ASCII).
fn check_name(name: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() {
        return Err("an x-mcp-header value must not be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("an x-mcp-header value is longer than {MAX_NAME_BYTES} bytes"));
    }
    if !name.bytes().all(tchar) {
        return Err(format!("x-mcp-header {name:?} is not an HTTP token"));
    }
    Ok(())
}

/// The declaring property is a primitive: `string`, `integer` or `boolean` (`number` is not
/// permitted), optionally also `null`.
fn check_type(prop: &Value) -> Result<(), String> {
    let allowed = |t: &Value| matches!(t.as_str(), Some("string" | "integer" | "boolean"));
    let ok = match prop.get("type") {
        Some(Value::Array(types)) => {
            types.iter().any(allowed) && types.iter().all(|t| allowed(t) || t.as_str() == Some("null"))
        }
        Some(t) => allowed(t),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("declared on a property of type {}", prop.get("type").unwrap_or(&Value::Null)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(props: &str) -> Vec<u8> {
        format!(r#"{{"name":"t","inputSchema":{{"type":"object","properties":{props}}}}}"#).into_bytes()
    }

    #[test]
    fn reads_top_level_and_nested_declarations() {
        let d = declared(&tool(
            r#"{"region":{"type":"string","x-mcp-header":"Region"},"q":{"type":"string"},
                "where":{"type":"object","properties":{"zone":{"type":["integer","null"],"x-mcp-header":"Zone"}}}}"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].header, "mcp-param-region");
        assert_eq!(&*d[0].path, &[Box::from("region")]);
        assert_eq!(d[1].name.as_ref(), "Zone");
        assert_eq!(&*d[1].path, &[Box::from("where"), Box::from("zone")]);
        assert_eq!(declared(&tool(r#"{"q":{"type":"string"}}"#)).unwrap(), None);
    }

    #[test]
    fn refuses_what_the_spec_forbids() {
        for bad in [
            r#"{"v":{"type":"string","x-mcp-header":""}}"#,
            r#"{"v":{"type":"string","x-mcp-header":"My Region"}}"#,
            r#"{"v":{"type":"string","x-mcp-header":"Region:Primary"}}"#,
            r#"{"v":{"type":"string","x-mcp-header":"Région"}}"#,
            r#"{"v":{"type":"string","x-mcp-header":"Region\t1"}}"#,
            r#"{"v":{"type":"number","x-mcp-header":"Score"}}"#,
            r#"{"v":{"type":"object","x-mcp-header":"Data"}}"#,
            r#"{"v":{"type":"array","items":{"type":"string"},"x-mcp-header":"Items"}}"#,
            r#"{"v":{"type":"null","x-mcp-header":"Nil"}}"#,
            r#"{"v":{"x-mcp-header":"Untyped"}}"#,
            r#"{"v":{"type":"string","x-mcp-header":7}}"#,
            r#"{"a":{"type":"string","x-mcp-header":"MyField"},"b":{"type":"string","x-mcp-header":"myfield"}}"#,
        ] {
            assert!(declared(&tool(bad)).is_err(), "{bad}");
        }
        let many: Vec<String> =
            (0..=MAX_DECLARATIONS).map(|i| format!(r#""p{i}":{{"type":"string","x-mcp-header":"H{i}"}}"#)).collect();
        assert!(declared(&tool(&format!("{{{}}}", many.join(",")))).is_err());
    }
}
