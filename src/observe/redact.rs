//! Redaction of secrets in what the gateway prints (`sekisho check`, configuration errors):
//! URLs keep their scheme, host, port and path, and lose user info and query strings, where
//! credentials and tokens travel (RFC 3986 §3.2.1 deprecates `user:password@` for this reason).

/// `text` with a URL's user info replaced by `<redacted>` and its query and fragment by
/// `?<redacted>`; works on any text, valid URL or not, so a malformed URL in an error message is
/// redacted too. Text without `://` is returned unchanged, except for a query.
pub fn url(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    let (before_query, query) = match rest.find(['?', '#']) {
        Some(i) => (&rest[..i], true),
        None => (rest, false),
    };
    let authority_end = if scheme.is_empty() { 0 } else { before_query.find('/').unwrap_or(before_query.len()) };
    let (authority, path) = before_query.split_at(authority_end);
    let mut out = String::with_capacity(text.len());
    out.push_str(scheme);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str("<redacted>@");
            out.push_str(&authority[at + 1..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if query {
        out.push_str("?<redacted>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn user_info_and_queries_are_redacted() {
        assert_eq!(
            url("https://alice:s3cret@mcp.example.com:8443/mcp?token=t0k#x"),
            "https://<redacted>@mcp.example.com:8443/mcp?<redacted>"
        );
        assert_eq!(url("http://127.0.0.1:9/mcp"), "http://127.0.0.1:9/mcp");
        assert_eq!(url("http://user@host"), "http://<redacted>@host");
        assert_eq!(url("http://host/a@b"), "http://host/a@b", "an @ in the path is not user info");
        assert_eq!(url("ftp://u:p@x?q"), "ftp://<redacted>@x?<redacted>");
        assert_eq!(url("not a url?key=1"), "not a url?<redacted>");
    }
}
