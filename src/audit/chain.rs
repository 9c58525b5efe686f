//! One writer's hash chain: numbers records, links each to the previous one's hash, and makes
//! the anchor records that state the head so far.

use std::time::{Instant, SystemTime};

use super::event::timestamp;
use super::record::{GENESIS, Kind, Record, chain_hash};

/// A record with its place in the chain: what a sink stores.
#[derive(Clone, Debug)]
pub struct Sealed {
    /// The record (chain members filled).
    pub record: Record,
    /// Its canonical form (what `hash` covers; stored as it is).
    pub canonical: String,
    /// SHA-256(prev_hash ‖ canonical), hex.
    pub hash: String,
}

/// The state of one writer's chain.
#[derive(Debug)]
pub struct Chain {
    writer: String,
    seq: u64,
    head: String,
    since_anchor: u64,
    last_anchor: Instant,
}

impl Chain {
    /// A new chain for `writer` (`<replica>@<start time>`), empty.
    pub fn new(writer: String) -> Chain {
        Chain { writer, seq: 0, head: GENESIS.to_string(), since_anchor: 0, last_anchor: Instant::now() }
    }

    /// The writer id.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// The last record's seq (0 before any) and hash.
    pub fn head(&self) -> (u64, &str) {
        (self.seq, &self.head)
    }

    /// Records sealed since the last anchor.
    pub fn since_anchor(&self) -> u64 {
        self.since_anchor
    }

    /// When the last anchor was sealed (or the chain began).
    pub fn last_anchor(&self) -> Instant {
        self.last_anchor
    }

    /// Number `record`, link it to the head, and make it the head.
    pub fn seal(&mut self, mut record: Record) -> Sealed {
        self.seq += 1;
        record.writer.clone_from(&self.writer);
        record.seq = self.seq;
        record.prev_hash.clone_from(&self.head);
        let canonical = record.canonical();
        let hash = chain_hash(&self.head, &canonical);
        self.head.clone_from(&hash);
        if record.kind == Kind::Anchor {
            self.since_anchor = 0;
            self.last_anchor = Instant::now();
        } else {
            self.since_anchor += 1;
        }
        Sealed { record, canonical, hash }
    }

    /// Seal an anchor naming the current head; `closed` for the last record of a clean stop.
    pub fn anchor(&mut self, closed: bool) -> Sealed {
        let mut r = Record::new(Kind::Anchor, timestamp(SystemTime::now()));
        let mut detail = serde_json::json!({ "head_seq": self.seq, "head_hash": self.head });
        if closed {
            detail["closed"] = true.into();
        }
        r.detail = Some(detail);
        let sealed = self.seal(r);
        tracing::info!(
            writer = %self.writer, seq = sealed.record.seq, hash = %sealed.hash, closed,
            "audit anchor: the chain head (keep these lines elsewhere to detect a rewritten chain)"
        );
        sealed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_link_to_their_predecessor() {
        let mut chain = Chain::new("r@t".into());
        let a = chain.seal(Record::new(Kind::Call, "t".into()));
        let b = chain.seal(Record::new(Kind::Call, "t".into()));
        assert_eq!((a.record.seq, a.record.prev_hash.as_str()), (1, GENESIS));
        assert_eq!((b.record.seq, b.record.prev_hash.as_str()), (2, a.hash.as_str()));
        assert_eq!(b.hash, chain_hash(&a.hash, &b.canonical));
        let anchor = chain.anchor(false);
        assert_eq!(anchor.record.detail.unwrap()["head_hash"], b.hash.as_str());
        assert_eq!(chain.since_anchor(), 0);
    }
}
