//! Fuzzing harnesses: one function per `cargo fuzz` target in `fuzz/`, each feeding arbitrary
//! bytes to a parser that faces hostile input (design.md §8) and checking what must hold for
//! every input, not only that nothing panics. `tests/fuzz_corpora.rs` replays the committed
//! corpora through the same functions as ordinary tests. Not a stable API.

use std::time::Duration;

use bytes::Bytes;
use serde::de::IgnoredAny;

use crate::cache::key::canonical_arguments;
use crate::pipeline::parts::Params;
use crate::session::token::{ClientFlags, SessionSealer};
use crate::wire::batch::{is_batch, split_batch};
use crate::wire::jsonrpc::{Kind, Message, Outcome, Span};
use crate::wire::sse::Decoder;

/// Batch members split at most, as `[server] max_batch_size`'s default.
const MAX_BATCH: usize = 100;

/// JSON-RPC framing (single messages and batches), the shallow params view and the canonical
/// arguments, as a request body goes through them. Checks: every span lies in its buffer and
/// holds one JSON value; ids are strings or numbers; params that pass the view name no member
/// twice (the view has as many members as a map of the distinct names); canonical arguments
/// read back to themselves.
pub fn envelope(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    if is_batch(&body) {
        if let Ok(items) = split_batch(&body, MAX_BATCH) {
            for span in items {
                assert!(span.end <= body.len(), "batch element out of bounds");
                one_message(body.slice(span));
            }
        }
    } else {
        one_message(body);
    }
}

fn one_message(src: Bytes) {
    let Ok(msg) = Message::parse(src.clone()) else { return };
    serde_json::from_slice::<IgnoredAny>(&src).expect("a framed message is JSON");
    let json_at = |span: &Span| {
        assert!(span.start <= span.end && span.end <= src.len(), "span out of bounds");
        serde_json::from_slice::<IgnoredAny>(&src[span.clone()]).expect("a span holds one JSON value");
    };
    match &msg.kind {
        Kind::Request { id, params, .. } => {
            json_at(&id.0);
            assert!(matches!(src[id.0.start], b'"' | b'-' | b'0'..=b'9'), "an id is a string or a number");
            if let Some(p) = params {
                params_view(src.slice(p.clone()));
            }
        }
        Kind::Notification { params, .. } => {
            if let Some(p) = params {
                params_view(src.slice(p.clone()));
            }
        }
        Kind::Response { outcome: Outcome::Result(s) | Outcome::Error(s), .. } => {
            json_at(s);
        }
    }
}

fn params_view(raw: Bytes) {
    // Distinct member names (a map keeps one entry per name).
    let distinct = serde_json::from_slice::<std::collections::HashMap<String, IgnoredAny>>(&raw).map(|m| m.len());
    let Ok(params) = Params::parse(raw) else { return };
    let distinct = distinct.expect("params the view accepts are an object");
    assert_eq!(params.view.len(), distinct, "the view accepted a duplicate member");
    if let Ok(canonical) = canonical_arguments(params.get("arguments")) {
        let again = canonical_arguments(Some(&canonical)).expect("canonical arguments are readable");
        assert_eq!(again, canonical, "canonical form is a fixed point");
    }
}

/// The upstream SSE decoder under arbitrary chunking: the first byte picks a size cap, the
/// second a chunk size, the rest is the stream. Checks: the events (and size errors) do not
/// depend on how the stream is cut, and no event's data exceeds the cap.
pub fn sse_decoder(data: &[u8]) {
    let [cap, chunk, stream @ ..] = data else { return };
    let cap = 16 + usize::from(*cap) * 4;
    let chunk = usize::from(*chunk).max(1);
    let whole = decode(stream, cap, stream.len().max(1));
    let cut = decode(stream, cap, chunk);
    let bytewise = decode(stream, cap, 1);
    assert_eq!(whole, cut, "chunks of {chunk} changed the events");
    assert_eq!(whole, bytewise, "single bytes changed the events");
}

fn decode(stream: &[u8], cap: usize, chunk: usize) -> Vec<Result<crate::wire::sse::Event, usize>> {
    let mut d = Decoder::new(cap);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        d.push(piece);
        loop {
            match d.next_event() {
                Ok(Some(e)) => {
                    assert!(e.data.len() <= cap, "an event over the cap was dispatched");
                    out.push(Ok(e));
                }
                Ok(None) => break,
                Err(e) => out.push(Err(e.0)),
            }
        }
    }
    // Size errors report how far the decoder had read, which depends on the chunking; that
    // one happened (and where, among the events) does not.
    out.into_iter().map(|r| r.map_err(|_| 0)).collect()
}

/// The fixed key the session-token harness seals with.
const FUZZ_KEY: [u8; 32] = [0x5e; 32];

/// Legacy session ids (sealed tokens): arbitrary text never opens (it would be a forgery),
/// and a genuine token with any edit the input describes opens only if the edit changed
/// nothing. A genuine token opens with the claims it was sealed with.
pub fn session_token(data: &[u8]) {
    let sealer = SessionSealer::new(Some(FUZZ_KEY), Duration::from_secs(3600));
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(sealer.open(text).is_none(), "an arbitrary token opened: {text:?}");
    }
    let caller: [u8; 16] = std::array::from_fn(|i| data.get(i).copied().unwrap_or(0));
    let flags = ClientFlags {
        sampling: data.first().is_some_and(|b| b & 1 != 0),
        elicitation: data.first().is_some_and(|b| b & 2 != 0),
        roots: data.first().is_some_and(|b| b & 4 != 0),
    };
    let token = sealer.seal("2025-06-18", flags, caller);
    let claims = sealer.open(&token).expect("a genuine token opens");
    assert_eq!((claims.version, claims.flags, claims.caller), ("2025-06-18", flags, caller));
    // Edits: pairs of (position, byte) applied to the token's text.
    let mut edited = token.clone().into_bytes();
    for pair in data.chunks_exact(2) {
        let at = usize::from(pair[0]) % (edited.len() + 1);
        if at == edited.len() {
            edited.push(pair[1]);
        } else {
            edited[at] = pair[1];
        }
    }
    if let Ok(text) = std::str::from_utf8(&edited)
        && text != token
    {
        assert!(sealer.open(text).is_none(), "an edited token opened: {text:?}");
    }
}

/// Configuration loading from arbitrary text (TOML parse, unknown keys, validation, defaults
/// and resolution). Checks: a configuration that loads validates clean.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = crate::config::Config::from_toml(text) {
        assert!(config.validate().is_empty(), "a loaded configuration has problems");
    }
}
