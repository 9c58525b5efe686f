//! Finds the top-level `id` member of a JSON-RPC message read in pieces and not kept (RFC 8259
//! tokens, JSON-RPC 2.0 §4/§5 `id`): when an upstream's answer is larger than the gateway
//! will hold, it still learns which call the answer was for, so that call fails at once with
//! a clear error instead of waiting for its deadline. Memory: a few words and at most
//! [`MAX_ID_BYTES`] of the id.

/// Longest id kept (raw JSON bytes); a longer one is not an id the gateway minted.
pub const MAX_ID_BYTES: usize = 64;

/// A streaming scan for the top-level `"id"` member of one JSON object.
#[derive(Debug, Default)]
pub struct IdScan {
    depth: u32,
    in_string: bool,
    escape: bool,
    /// At depth 1, between `{`/`,` and the member name.
    expect_key: bool,
    /// Reading a member name at depth 1.
    in_key: bool,
    /// The member name so far, when it can still be `id` (`None` once it cannot).
    key: Option<[u8; 2]>,
    key_len: usize,
    /// The member just named is `id`; its value comes after the `:`.
    key_is_id: bool,
    /// Collecting the id's raw value.
    capturing: bool,
    value: Vec<u8>,
    found: bool,
    gave_up: bool,
}

impl IdScan {
    /// Scan the next piece of the message.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.found || self.gave_up {
                return;
            }
            self.byte(b);
        }
    }

    /// The raw JSON of the top-level `id` (e.g. `17` or `"a"`), once the scan has seen all of it.
    pub fn id(&self) -> Option<&[u8]> {
        self.found.then_some(&self.value[..])
    }

    fn byte(&mut self, b: u8) {
        if self.in_string {
            self.string_byte(b);
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.capturing {
                    self.keep(b);
                } else if self.depth == 1 && self.expect_key {
                    (self.in_key, self.key, self.key_len) = (true, Some([0; 2]), 0);
                }
            }
            b'{' | b'[' => {
                if self.capturing {
                    self.gave_up = true;
                }
                self.depth += 1;
                self.expect_key = self.depth == 1 && b == b'{';
            }
            b'}' | b']' => {
                if self.capturing && self.depth == 1 {
                    self.finish();
                }
                self.depth = self.depth.saturating_sub(1);
            }
            b':' if self.depth == 1 => {
                self.capturing = self.key_is_id;
                self.key_is_id = false;
            }
            b',' if self.depth == 1 => {
                if self.capturing {
                    self.finish();
                }
                self.expect_key = true;
            }
            b' ' | b'\t' | b'\n' | b'\r' if self.capturing && !self.value.is_empty() => self.finish(),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ if self.capturing => self.keep(b),
            _ => {}
        }
    }

    fn string_byte(&mut self, b: u8) {
        if self.capturing {
            self.keep(b);
        }
        if self.escape {
            self.escape = false;
            self.key_byte(b);
            return;
        }
        match b {
            b'\\' => {
                self.escape = true;
                // An escaped name is never the plain `id` the gateway looks for.
                self.key = None;
            }
            b'"' => {
                self.in_string = false;
                if self.capturing {
                    self.finish();
                } else if self.in_key {
                    self.in_key = false;
                    self.expect_key = false;
                    self.key_is_id = self.key_len == 2 && self.key == Some(*b"id");
                }
            }
            _ => self.key_byte(b),
        }
    }

    fn key_byte(&mut self, b: u8) {
        if !self.in_key {
            return;
        }
        match &mut self.key {
            Some(k) if self.key_len < 2 => k[self.key_len] = b,
            _ => self.key = None,
        }
        self.key_len += 1;
    }

    fn keep(&mut self, b: u8) {
        if self.value.len() >= MAX_ID_BYTES {
            self.gave_up = true;
        } else {
            self.value.push(b);
        }
    }

    fn finish(&mut self) {
        self.capturing = false;
        self.found = !self.value.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str, piece: usize) -> Option<Vec<u8>> {
        let mut s = IdScan::default();
        for chunk in text.as_bytes().chunks(piece) {
            s.feed(chunk);
        }
        s.id().map(<[u8]>::to_vec)
    }

    #[test]
    fn finds_the_top_level_id_wherever_it_is() {
        let cases = [
            (r#"{"jsonrpc":"2.0","id":17,"result":{"id":99}}"#, &b"17"[..]),
            (r#"{"result":{"content":[{"id":1,"text":"\"id\":5"}]},"jsonrpc":"2.0","id":42}"#, b"42"),
            (r#"{ "result" : [1, {"id": 3}], "id" : "a\"b" }"#, br#""a\"b""#),
            (r#"{"i\u0064":7,"id":8}"#, b"8"),
            (r#"{"idx":7,"di":1,"id":-3}"#, b"-3"),
        ];
        for (text, want) in cases {
            for piece in [1, 3, 1000] {
                assert_eq!(scan(text, piece).as_deref(), Some(want), "{text} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn no_id_or_a_strange_one_is_none() {
        assert_eq!(scan(r#"{"jsonrpc":"2.0","result":{"id":1}}"#, 4), None);
        assert_eq!(scan(r#"{"id":{"x":1}}"#, 4), None);
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(100));
        assert_eq!(scan(&long, 7), None);
    }
}
