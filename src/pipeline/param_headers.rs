//! Custom parameter headers of a `tools/call` (2026-07-28 `basic/transports` "Custom Headers
//! from Tool Parameters", SEP-2243), decided by resolve once it knows the tool: a modern HTTP
//! client's `Mcp-Param-*` headers are checked against the arguments they mirror, and the
//! headers the gateway sends a modern HTTP upstream are made from the same arguments.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::parts::Params;
use crate::catalog::params::ParamHeader;
use crate::error::GatewayError;
use crate::wire::header_value;
use crate::wire::mcp;
use crate::wire::object::ObjectView;

/// The `Mcp-Param-*` headers of a request (and nothing else), for [`mirror`] to check.
pub fn client_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if name.as_str().starts_with(mcp::HEADER_PARAM_PREFIX) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// One argument's value as its header carries it.
enum Value<'a> {
    Text(Cow<'a, str>),
    Number(serde_json::Number, &'a str),
    Bool(bool),
}

impl Value<'_> {
    fn text(&self) -> &str {
        match self {
            Value::Text(t) => t,
            Value::Number(_, raw) => raw,
            Value::Bool(true) => "true",
            Value::Bool(false) => "false",
        }
    }

    /// Whether a decoded header value carries this value: text byte for byte, booleans as
    /// `true`/`false`, numbers by value (integers exactly; others within a relative 1E-9, as
    /// the transport's implementation note advises).
    fn carried_by(&self, header: &str) -> bool {
        match self {
            Value::Text(t) => header == t.as_ref(),
            Value::Bool(_) => header == self.text(),
            Value::Number(n, _) => match serde_json::from_str::<serde_json::Number>(header) {
                Ok(h) => match (n.as_i64(), h.as_i64(), n.as_u64(), h.as_u64()) {
                    (Some(a), Some(b), ..) => a == b,
                    (_, _, Some(a), Some(b)) => a == b,
                    _ => match (n.as_f64(), h.as_f64()) {
                        (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
                        _ => false,
                    },
                },
                Err(_) => false,
            },
        }
    }
}

/// Check a `tools/call`'s headers against its arguments and make the upstream's headers.
///
/// `client`: the request's `Mcp-Param-*` headers ([`client_headers`]) when it came over
/// modern Streamable HTTP, else `None` (legacy and stdio clients send none; nothing to check).
/// Each declared argument present in the body (and not `null`) must arrive in exactly one
/// header carrying its value (the `=?base64?…?=` form decoded); a header for an argument the
/// body lacks is refused too. Headers the tool does not declare are ignored.
///
/// Returns the headers for the upstream (a modern HTTP upstream sends them; see
/// `upstream::http`), one per present argument, Base64-encoded when not plain header text.
///
/// Errors: [`GatewayError::HeaderMismatch`] (HTTP 400, -32020) naming the header;
/// [`GatewayError::InvalidParams`] when `arguments` is not an object or a declared argument
/// is an object or an array (no header can carry it).
pub fn mirror(
    declared: &[ParamHeader],
    params: &Params,
    client: Option<&HeaderMap>,
) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
    let args = match params.get("arguments") {
        None | Some(b"null") => None,
        Some(raw) => Some((
            raw,
            ObjectView::parse(raw)
                .map_err(|e| GatewayError::InvalidParams(format!("params.arguments must be an object: {e}")))?,
        )),
    };
    let mut out = Vec::with_capacity(declared.len());
    for decl in declared {
        let value = match &args {
            Some((raw, view)) => lookup(raw, view, &decl.path, decl)?,
            None => None,
        };
        if let Some(client) = client {
            check(decl, value.as_ref(), client)?;
        }
        if let Some(v) = value {
            out.push((decl.header.clone(), header_value::encode(v.text())));
        }
    }
    Ok(out)
}

/// The argument at `path`, or `None` when it (or an object on the way) is absent or `null`.
///
/// Errors: [`GatewayError::InvalidParams`] for an object or array where a primitive is
/// declared, or a nested object that names a member twice.
fn lookup<'a>(
    raw: &'a [u8],
    view: &ObjectView,
    path: &[Box<str>],
    decl: &ParamHeader,
) -> Result<Option<Value<'a>>, GatewayError> {
    let (first, rest) = path.split_first().expect("a declaration has a path");
    let Some(span) = view.get(raw, first) else { return Ok(None) };
    let member = &raw[span];
    let dotted = || path.join(".");
    if !rest.is_empty() {
        if !member.starts_with(b"{") {
            return Ok(None);
        }
        let inner = ObjectView::parse(member)
            .map_err(|e| GatewayError::InvalidParams(format!("params.arguments.{}: {e}", dotted())))?;
        return lookup(member, &inner, rest, decl);
    }
    let text = std::str::from_utf8(member).unwrap_or_default();
    Ok(match member.first() {
        Some(b'n') => None,
        Some(b't') => Some(Value::Bool(true)),
        Some(b'f') => Some(Value::Bool(false)),
        Some(b'"') => Some(Value::Text(
            serde_json::from_slice::<Cow<'a, str>>(member)
                .map_err(|e| GatewayError::InvalidParams(format!("params.arguments.{}: {e}", dotted())))?,
        )),
        Some(b'-' | b'0'..=b'9') => Some(Value::Number(
            serde_json::from_str(text)
                .map_err(|e| GatewayError::InvalidParams(format!("params.arguments.{}: {e}", dotted())))?,
            text,
        )),
        _ => {
            return Err(GatewayError::InvalidParams(format!(
                "params.arguments.{} must be a string, integer or boolean: it is mirrored in {}",
                dotted(),
                header_label(decl)
            )));
        }
    })
}

/// `Mcp-Param-{name}` as the tool declared it, for messages.
fn header_label(decl: &ParamHeader) -> String {
    format!("Mcp-Param-{}", decl.name)
}

/// One declared header against its argument.
///
/// Errors: [`GatewayError::HeaderMismatch`].
fn check(decl: &ParamHeader, value: Option<&Value<'_>>, client: &HeaderMap) -> Result<(), GatewayError> {
    let label = header_label(decl);
    let mut sent = client.get_all(&decl.header).iter();
    let (first, again) = (sent.next(), sent.next());
    if again.is_some() {
        return Err(GatewayError::HeaderMismatch(format!("{label} header appears more than once")));
    }
    match (value, first) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(GatewayError::HeaderMismatch(format!(
            "{label} header is sent but the argument it mirrors is absent from the request body"
        ))),
        (Some(_), None) => Err(GatewayError::HeaderMismatch(format!(
            "{label} header is missing: the request body carries the argument it mirrors"
        ))),
        (Some(v), Some(raw)) => {
            let Some(decoded) = raw.to_str().ok().and_then(header_value::decode) else {
                return Err(GatewayError::HeaderMismatch(format!(
                    "{label} header is not visible ASCII or not valid =?base64?...?= encoding"
                )));
            };
            if v.carried_by(&decoded) {
                Ok(())
            } else {
                Err(GatewayError::HeaderMismatch(format!("{label} header does not match the request body's argument")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::params::declared;
    use bytes::Bytes;

    fn decls() -> crate::catalog::params::ParamHeaders {
        let tool = br#"{"name":"t","inputSchema":{"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "tenant":{"type":"integer","x-mcp-header":"Tenant"},
            "dry":{"type":"boolean","x-mcp-header":"Dry"},
            "where":{"type":"object","properties":{"zone":{"type":"string","x-mcp-header":"Zone"}}}}}}"#;
        declared(tool).unwrap().unwrap()
    }

    fn params(args: &str) -> Params {
        Params::parse(Bytes::from(format!(r#"{{"name":"t","arguments":{args}}}"#))).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn code(args: &str, pairs: &[(&str, &str)]) -> Option<i64> {
        mirror(&decls(), &params(args), Some(&headers(pairs))).err().map(|e| e.class(mcp::Era::Modern).code)
    }

    #[test]
    fn matching_headers_pass_and_make_the_upstream_headers() {
        let args = r#"{"region":"café","tenant":42,"dry":false,"where":{"zone":"a b"}}"#;
        let sent = [
            ("Mcp-Param-Region", "=?base64?Y2Fmw6k=?="),
            ("mcp-param-tenant", " 42 "),
            ("MCP-PARAM-DRY", "false"),
            ("mcp-param-zone", "a b"),
        ];
        let out = mirror(&decls(), &params(args), Some(&headers(&sent))).unwrap();
        let out: Vec<(String, String)> =
            out.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())).collect();
        assert_eq!(
            out,
            [
                ("mcp-param-region".to_string(), "=?base64?Y2Fmw6k=?=".to_string()),
                ("mcp-param-tenant".into(), "42".into()),
                ("mcp-param-dry".into(), "false".into()),
                ("mcp-param-zone".into(), "a b".into()),
            ]
        );
        assert_eq!(code(r#"{"tenant":42.0}"#, &[("mcp-param-tenant", "42")]), None, "numbers compare by value");
        assert_eq!(code(r#"{"region":null}"#, &[]), None, "null is absent");
        assert_eq!(code(r#"{"region":"x"}"#, &[("mcp-param-region", "x"), ("mcp-param-other", "y")]), None);
        assert!(mirror(&decls(), &params(r#"{"region":"x"}"#), None).is_ok(), "no client headers: nothing to check");
    }

    #[test]
    fn mismatches_are_refused_with_header_mismatch() {
        let mismatch = Some(mcp::code::HEADER_MISMATCH);
        assert_eq!(code(r#"{"region":"eu"}"#, &[("mcp-param-region", "us")]), mismatch);
        assert_eq!(code(r#"{"region":"eu"}"#, &[]), mismatch, "missing");
        assert_eq!(code(r#"{}"#, &[("mcp-param-region", "eu")]), mismatch, "header without argument");
        assert_eq!(code(r#"{"region":"Hello"}"#, &[("mcp-param-region", "=?base64?SGVsbG8?=")]), mismatch);
        assert_eq!(code(r#"{"region":"Hello"}"#, &[("mcp-param-region", "=?base64?SGVs!!!bG8=?=")]), mismatch);
        assert_eq!(code(r#"{"region":" x"}"#, &[("mcp-param-region", " x")]), mismatch, "OWS is trimmed");
        assert_eq!(code(r#"{"tenant":42}"#, &[("mcp-param-tenant", "43")]), mismatch);
        assert_eq!(code(r#"{"tenant":42}"#, &[("mcp-param-tenant", "forty-two")]), mismatch);
        assert_eq!(code(r#"{"dry":true}"#, &[("mcp-param-dry", "TRUE")]), mismatch);
        assert_eq!(code(r#"{"where":{"zone":"a"}}"#, &[("mcp-param-zone", "b")]), mismatch);
        assert_eq!(
            code(r#"{"region":"eu"}"#, &[("mcp-param-region", "eu"), ("mcp-param-region", "eu")]),
            mismatch,
            "twice"
        );
        let invalid = Some(mcp::code::INVALID_PARAMS);
        assert_eq!(code(r#"{"region":{"a":1}}"#, &[]), invalid);
        assert_eq!(code(r#"["region"]"#, &[]), invalid);
    }
}
