//! Server-Sent Events framing: the encoder for responses the gateway streams, and an
//! incremental decoder for upstream streams.
//!
//! Source: WHATWG HTML §9.2 "Server-sent events" (event stream interpretation), as used by
//! MCP Streamable HTTP (`basic/transports`): each JSON-RPC message is one `message` event.
//!
//! The decoder's memory is bounded by its event cap (plus one received chunk): an event over
//! the cap is reported once, then skipped to its end, and decoding goes on with the next event.

use bytes::{Bytes, BytesMut};

/// Append one SSE `message` event carrying `data` (one JSON-RPC message), with an optional
/// event id. Line breaks inside `data` become separate `data:` lines, as the format requires.
pub fn write_event(out: &mut Vec<u8>, data: &[u8], id: Option<&str>) {
    write_typed_event(out, "message", data, id);
}

/// Append one SSE event of type `event` (e.g. `endpoint`, the first event of the 2024-11-05
/// HTTP+SSE transport, whose data is the URI to POST messages to). `event` must be a single
/// line; `data` is framed as in [`write_event`].
pub fn write_typed_event(out: &mut Vec<u8>, event: &str, data: &[u8], id: Option<&str>) {
    debug_assert!(!event.contains(['\n', '\r']));
    out.reserve(data.len() + event.len() + 32);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.push(b'\n');
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if memchr::memchr2(b'\n', b'\r', data).is_none() {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(data);
        out.push(b'\n');
    } else {
        for line in data.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // A lone CR inside a line would also end it; JSON only has CR between tokens.
            for part in line.split(|b| *b == b'\r') {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(part);
                out.push(b'\n');
            }
        }
    }
    out.push(b'\n');
}

/// An SSE comment line; used as a keep-alive that clients ignore.
pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, when one was given (`message` is the default type).
    pub event: Option<String>,
    /// The concatenated `data:` lines, joined with `\n`.
    pub data: Bytes,
    /// The `id:` field, when one was given.
    pub id: Option<String>,
    /// The `retry:` field in milliseconds, when one was given.
    pub retry_ms: Option<u64>,
}

/// Longest `id:` value kept (bytes); a longer one is ignored like one containing NUL. The id
/// goes back to the upstream in a `Last-Event-ID` header, so it must stay small.
pub const MAX_ID_BYTES: usize = 256;

/// Incremental SSE parser: feed it chunks as they arrive, take events as they complete.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
    scanned: usize,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    retry_ms: Option<u64>,
    max_event_bytes: usize,
    /// Inside an event over the cap: its lines are dropped until the blank line that ends it.
    skipping: bool,
    /// The start of the current line was dropped (it was over the cap): its end is not a
    /// blank line.
    rest_of_line: bool,
}

/// An event grew past the decoder's size cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTooLarge(pub usize);

impl Decoder {
    /// A decoder that refuses events larger than `max_event_bytes` (bounded memory): an event
    /// whose data, or any line plus the data before it, exceeds the cap, however the stream is
    /// cut into chunks.
    pub fn new(max_event_bytes: usize) -> Self {
        Decoder { max_event_bytes, ..Default::default() }
    }

    /// Add received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if the buffered bytes hold one.
    ///
    /// Errors: [`EventTooLarge`], once per event whose data (or one line) exceeds the cap; that
    /// event is dropped and the next call goes on after it.
    pub fn next_event(&mut self) -> Result<Option<Event>, EventTooLarge> {
        loop {
            let Some(pos) = memchr::memchr2(b'\n', b'\r', &self.buf[self.scanned..]) else {
                self.scanned = self.buf.len();
                if self.buf.len() + self.data.len() > self.max_event_bytes {
                    // Drop the line read so far; what follows up to its end is dropped too.
                    self.buf.clear();
                    self.scanned = 0;
                    self.rest_of_line = true;
                    return self.overflow();
                }
                return Ok(None);
            };
            let end = self.scanned + pos;
            // A CR at the very end may be the first half of CRLF: wait for the next byte. The
            // line before it is complete, so it meets the bound of every line now, as it would
            // had it arrived without its CR (the CR then ends the dropped rest of the line).
            if self.buf[end] == b'\r' && end + 1 == self.buf.len() {
                if end + self.data.len() > self.max_event_bytes {
                    let _ = self.buf.split_to(end);
                    self.scanned = 0;
                    self.rest_of_line = true;
                    return self.overflow();
                }
                self.scanned = end;
                return Ok(None);
            }
            let skip = if self.buf[end] == b'\r' && self.buf.get(end + 1) == Some(&b'\n') { 2 } else { 1 };
            let line = self.buf.split_to(end + skip).freeze();
            self.scanned = 0;
            let line = &line[..end];
            if std::mem::take(&mut self.rest_of_line) {
                continue;
            }
            if line.is_empty() {
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                if let Some(event) = self.dispatch() {
                    return Ok(Some(event));
                }
                continue;
            }
            if self.skipping {
                continue;
            }
            // The same bound as for a line still arriving (above), so whether an event is
            // refused never depends on how the stream was cut into chunks.
            if line.len() + self.data.len() > self.max_event_bytes {
                return self.overflow();
            }
            self.field(line);
            if self.data.len() > self.max_event_bytes {
                return self.overflow();
            }
        }
    }

    /// The current event is over the cap: forget it and skip to its end; report it once.
    fn overflow(&mut self) -> Result<Option<Event>, EventTooLarge> {
        let first = !self.skipping;
        self.skipping = true;
        self.data = Vec::new();
        self.has_data = false;
        self.event = None;
        self.retry_ms = None;
        if first { Err(EventTooLarge(self.max_event_bytes)) } else { Ok(None) }
    }

    fn field(&mut self, line: &[u8]) {
        if line[0] == b':' {
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) && value.len() <= MAX_ID_BYTES => {
                self.id = Some(String::from_utf8_lossy(value).into_owned())
            }
            b"retry" => self.retry_ms = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event = self.event.take();
        let retry_ms = self.retry_ms.take();
        if !self.has_data {
            // The id still updates the last-event-id even without data; report it if set.
            if retry_ms.is_some() {
                return Some(Event { event, data: Bytes::new(), id: self.id.clone(), retry_ms });
            }
            return None;
        }
        self.has_data = false;
        Some(Event { event, data: Bytes::from(std::mem::take(&mut self.data)), id: self.id.clone(), retry_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut Decoder) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = d.next_event().unwrap() {
            v.push(e);
        }
        v
    }

    #[test]
    fn round_trips_single_and_multiline_data() {
        let mut out = Vec::new();
        write_event(&mut out, br#"{"a":1}"#, Some("7"));
        write_event(&mut out, b"{\n  \"b\": 2\r\n}", None);
        let mut d = Decoder::new(1 << 20);
        d.push(&out);
        let ev = all(&mut d);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].data, &br#"{"a":1}"#[..]);
        assert_eq!(ev[0].id.as_deref(), Some("7"));
        assert_eq!(ev[1].data, &b"{\n  \"b\": 2\n}"[..]);
    }

    #[test]
    fn handles_split_chunks_crlf_and_comments() {
        let stream = b": ping\r\n\r\nevent: message\r\ndata: {\"x\"\r\ndata: :1}\r\n\r\nretry: 500\n\n";
        for cut in 0..stream.len() {
            let mut d = Decoder::new(1 << 20);
            d.push(&stream[..cut]);
            let mut ev = all(&mut d);
            d.push(&stream[cut..]);
            ev.extend(all(&mut d));
            assert_eq!(ev.len(), 2, "cut at {cut}");
            assert_eq!(ev[0].data, &b"{\"x\"\n:1}"[..]);
            assert_eq!(ev[0].event.as_deref(), Some("message"));
            assert_eq!(ev[1].retry_ms, Some(500));
        }
    }

    #[test]
    fn caps_event_size() {
        let mut d = Decoder::new(8);
        d.push(b"data: 0123456789abcdef");
        assert!(d.next_event().is_err());
    }

    /// Fuzzing found (`fuzz/regressions/sse_decoder/`): a comment line longer than the cap was
    /// refused when it arrived byte by byte, but accepted when it arrived whole.
    #[test]
    fn a_long_line_is_refused_however_it_is_cut() {
        let stream = b"data: x\r\n\r\n: a comment longer than the cap\n\ndata: after\n\n";
        let outcome = |chunk: usize| {
            let mut d = Decoder::new(16);
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some(r) = d.next_event().transpose() {
                    out.push(r.map(|e| e.data).map_err(|_| ()));
                }
            }
            out
        };
        let whole = outcome(stream.len());
        let after = Ok(Bytes::from_static(b"after"));
        assert_eq!(whole, vec![Ok(Bytes::from_static(b"x")), Err(()), after], "refused, then the next event");
        assert_eq!(outcome(1), whole);
        assert_eq!(outcome(7), whole);
        // A long line that has only its CR so far (its LF may follow): refused at once, as
        // when it arrives byte by byte (`fuzz/regressions/sse_decoder/`, the second finding).
        let pending = [&[0u8; 100][..], b"data: x\r"].concat();
        for chunk in [1, 5, pending.len()] {
            let mut d = Decoder::new(68);
            let mut errors = 0;
            for piece in pending.chunks(chunk) {
                d.push(piece);
                while let Some(r) = d.next_event().transpose() {
                    errors += usize::from(r.is_err());
                }
            }
            assert_eq!(errors, 1, "chunks of {chunk}");
            d.push(b"\n\ndata: next\n\n");
            assert_eq!(d.next_event().unwrap().map(|e| e.data), Some(Bytes::from_static(b"next")), "chunks of {chunk}");
        }
    }

    #[test]
    fn recovers_after_an_oversized_event_with_bounded_memory() {
        for long_line in [true, false] {
            let mut d = Decoder::new(64);
            let mut errors = 0;
            let mut events = Vec::new();
            let mut feed = |d: &mut Decoder, bytes: &[u8]| {
                d.push(bytes);
                loop {
                    match d.next_event() {
                        Ok(Some(e)) => events.push(e),
                        Ok(None) => break,
                        Err(EventTooLarge(64)) => errors += 1,
                        Err(e) => panic!("{e:?}"),
                    }
                }
                assert!(d.buf.len() <= 64 + 4096 && d.data.len() <= 64 + 4096, "bounded");
            };
            feed(&mut d, b"data: first\n\n");
            if long_line {
                // One line of a megabyte, in pieces, with no newline until the end.
                feed(&mut d, b"data: ");
                for _ in 0..256 {
                    feed(&mut d, &[b'x'; 4096]);
                }
                feed(&mut d, b"\r");
                feed(&mut d, b"\ndata: still the big event\n\n");
            } else {
                // Many short data lines that add up.
                for _ in 0..100 {
                    feed(&mut d, b"data: 0123456789\n");
                }
                feed(&mut d, b"\n");
            }
            feed(&mut d, b"id: 7\ndata: after\n\n");
            assert_eq!(errors, 1, "reported once");
            let data: Vec<&[u8]> = events.iter().map(|e| &e.data[..]).collect();
            assert_eq!(data, [&b"first"[..], b"after"], "long line: {long_line}");
            assert_eq!(events[1].id.as_deref(), Some("7"));
        }
    }

    #[test]
    fn ids_with_nul_or_too_long_are_ignored() {
        let mut d = Decoder::new(1 << 20);
        let long = format!("id: {}\ndata: x\n\n", "9".repeat(MAX_ID_BYTES + 1));
        d.push(format!("id: 1\ndata: a\n\nid: 2\0\ndata: b\n\n{long}").as_bytes());
        let ids: Vec<Option<String>> = all(&mut d).into_iter().map(|e| e.id).collect();
        assert_eq!(ids, [Some("1".to_string()), Some("1".into()), Some("1".into())]);
    }
}
