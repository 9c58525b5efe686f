//! `sekisho audit verify`: checks every writer's chain in storage order and names the first
//! record that was altered, removed or reordered; reports what the chain cannot prove (the
//! records after each writer's last anchor, a chain that was not closed).

use std::collections::{HashMap, HashSet};

use super::read::{Columns, Row, Source};
use super::record::{GENESIS, Kind, Record, chain_hash};

/// What is wrong with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Its content does not match its hash, its columns disagree with it, or it does not link
    /// to its predecessor.
    Altered,
    /// Records before it in its chain are missing.
    Removed,
    /// It is out of its chain's order.
    Reordered,
    /// It is not a record at all (a file line that cannot be read).
    Unreadable,
}

impl Fault {
    /// The word printed.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Altered => "altered",
            Fault::Removed => "removed",
            Fault::Reordered => "reordered",
            Fault::Unreadable => "unreadable",
        }
    }
}

/// The first problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub fault: Fault,
    /// The row where it shows: table `id` or file line number.
    pub id: i64,
    /// The chain (writer id), when the row names one.
    pub writer: Option<String>,
    /// The seq the row holds (`None` for an unreadable row).
    pub seq: Option<u64>,
    /// One sentence.
    pub detail: String,
}

/// One writer's chain, as verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// The writer id.
    pub writer: String,
    /// Its records.
    pub records: u64,
    /// Its last seq.
    pub last_seq: u64,
    /// The seq of its last anchor (0: none).
    pub last_anchor: u64,
    /// Whether it ends with a closing anchor (a clean shutdown).
    pub closed: bool,
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Rows read.
    pub rows: u64,
    /// Each chain, in order of first appearance.
    pub chains: Vec<ChainSummary>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

/// What is kept of a row after its own checks.
struct Checked {
    id: i64,
    writer: u32,
    seq: u64,
    kind: Kind,
    closing: bool,
    prev: String,
    hash: String,
}

/// Verify every chain in `source`.
///
/// Errors: the source cannot be read (exit 2 in the CLI).
pub async fn verify(source: &Source) -> Result<Report, String> {
    let mut writers: Vec<String> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut checked: Vec<Checked> = Vec::new();
    let mut first_bad: Option<Problem> = None;
    let mut rows = 0u64;
    source
        .for_each(|row| {
            rows += 1;
            match check_row(&row) {
                Ok(r) => {
                    let w = *index.entry(r.writer.clone()).or_insert_with(|| {
                        writers.push(r.writer.clone());
                        writers.len() as u32 - 1
                    });
                    let closing = r.kind == Kind::Anchor
                        && r.detail.as_ref().and_then(|d| d.get("closed")).and_then(|c| c.as_bool()) == Some(true);
                    checked.push(Checked {
                        id: row.id,
                        writer: w,
                        seq: r.seq,
                        kind: r.kind,
                        closing,
                        prev: r.prev_hash,
                        hash: row.hash,
                    });
                }
                Err(p) if first_bad.is_none() => first_bad = Some(p),
                Err(_) => {}
            }
        })
        .await?;
    let mut report = Report { rows, ..Report::default() };
    let seqs: HashSet<(u32, u64)> = checked.iter().map(|c| (c.writer, c.seq)).collect();
    let mut state: Vec<(u64, String, ChainSummary)> = writers
        .iter()
        .map(|w| {
            let summary = ChainSummary { writer: w.clone(), records: 0, last_seq: 0, last_anchor: 0, closed: false };
            (1, GENESIS.to_string(), summary)
        })
        .collect();
    let mut problem: Option<Problem> = None;
    for c in &checked {
        if first_bad.as_ref().is_some_and(|b| b.id < c.id) {
            break;
        }
        let (expected, last_hash, summary) = &mut state[c.writer as usize];
        let here = |fault, detail: String| Problem {
            fault,
            id: c.id,
            writer: Some(writers[c.writer as usize].clone()),
            seq: Some(c.seq),
            detail,
        };
        if c.seq == *expected {
            if c.prev != *last_hash {
                problem = Some(here(
                    Fault::Altered,
                    format!(
                        "seq {} does not link to seq {} (its prev_hash is not that record's hash): a record was replaced or the chain rewritten from here",
                        c.seq,
                        c.seq - 1
                    ),
                ));
                break;
            }
        } else if c.seq > *expected {
            let fault = if seqs.contains(&(c.writer, *expected)) { Fault::Reordered } else { Fault::Removed };
            let detail = match fault {
                Fault::Reordered => {
                    let at = checked.iter().find(|o| o.writer == c.writer && o.seq == *expected).map_or(0, |o| o.id);
                    format!("seq {} stands where seq {} belongs (seq {} is at {at})", c.seq, *expected, *expected)
                }
                _ if c.seq == *expected + 1 => format!("seq {} is missing before seq {}", *expected, c.seq),
                _ => format!("seqs {}–{} are missing before seq {}", *expected, c.seq - 1, c.seq),
            };
            problem = Some(here(fault, detail));
            break;
        } else {
            problem = Some(here(
                Fault::Reordered,
                format!("seq {} comes after seq {} (out of order or repeated)", c.seq, *expected - 1),
            ));
            break;
        }
        *expected += 1;
        last_hash.clone_from(&c.hash);
        summary.records += 1;
        summary.last_seq = c.seq;
        if c.kind == Kind::Anchor {
            summary.last_anchor = c.seq;
        }
        summary.closed = c.closing;
    }
    report.problem = problem.or(first_bad);
    report.chains = state.into_iter().map(|(_, _, s)| s).collect();
    Ok(report)
}

/// Check one row on its own: readable, canonical, hash matches, columns agree.
fn check_row(row: &Row) -> Result<Record, Problem> {
    let bad = |fault, writer: Option<String>, seq: Option<u64>, detail: &str| Problem {
        fault,
        id: row.id,
        writer,
        seq,
        detail: detail.to_string(),
    };
    if row.hash.is_empty() {
        return Err(bad(Fault::Unreadable, None, None, "the line is not a sealed audit record"));
    }
    let record: Record = serde_json::from_str(&row.text)
        .map_err(|e| bad(Fault::Unreadable, None, None, &format!("the record is not readable: {e}")))?;
    let (w, s) = (Some(record.writer.clone()), Some(record.seq));
    if record.canonical() != row.text {
        return Err(bad(Fault::Altered, w, s, "its text is not the canonical form it was sealed in"));
    }
    if chain_hash(&record.prev_hash, &row.text) != row.hash {
        return Err(bad(Fault::Altered, w, s, "its content does not match its hash"));
    }
    if let Some(columns) = &row.columns
        && let Some(column) = disagreeing(columns, &record)
    {
        return Err(bad(Fault::Altered, w, s, &format!("its {column} column disagrees with the sealed record")));
    }
    Ok(record)
}

/// The first search column that does not repeat the record.
fn disagreeing(c: &Columns, r: &Record) -> Option<&'static str> {
    let checks: [(&'static str, bool); 9] = [
        ("writer", c.writer == r.writer),
        ("seq", c.seq as u64 == r.seq),
        ("kind", c.kind == r.kind.name()),
        ("caller", c.caller == r.caller),
        ("tenant", c.tenant == r.tenant),
        ("method", c.method == r.method),
        ("name", c.name == r.name),
        ("upstream", c.upstream == r.upstream),
        ("outcome", c.outcome == r.outcome),
    ];
    checks.iter().find(|(_, ok)| !ok).map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::Chain;
    use crate::audit::record::file_line;

    async fn verify_lines(lines: &[String]) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        verify(&Source::File(path)).await.unwrap()
    }

    fn chain(n: usize) -> Vec<String> {
        let mut chain = Chain::new("r@t".into());
        let mut out: Vec<String> = (0..n)
            .map(|i| {
                let mut r = Record::new(Kind::Call, "2026-01-01T00:00:00.000Z".into());
                r.caller = Some(format!("c{i}"));
                let s = chain.seal(r);
                file_line(&s.canonical, &s.hash)
            })
            .collect();
        let a = chain.anchor(true);
        out.push(file_line(&a.canonical, &a.hash));
        out
    }

    #[tokio::test]
    async fn each_tampering_is_named_at_its_record() {
        let lines = chain(6);
        let ok = verify_lines(&lines).await;
        assert!(ok.problem.is_none(), "{:?}", ok.problem);
        assert_eq!(ok.chains[0].last_anchor, 7);
        assert!(ok.chains[0].closed);

        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"c2\"", "\"cX\"");
        let p = verify_lines(&edited).await.problem.unwrap();
        assert_eq!((p.fault, p.id, p.seq), (Fault::Altered, 3, Some(3)));

        let mut removed = lines.clone();
        removed.remove(3);
        let p = verify_lines(&removed).await.problem.unwrap();
        assert_eq!((p.fault, p.id, p.seq), (Fault::Removed, 4, Some(5)), "{}", p.detail);

        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        let p = verify_lines(&swapped).await.problem.unwrap();
        assert_eq!((p.fault, p.id, p.seq), (Fault::Reordered, 2, Some(3)), "{}", p.detail);

        let mut junk = lines.clone();
        junk.insert(1, "{\"not\":\"a record\"}".into());
        let p = verify_lines(&junk).await.problem.unwrap();
        assert_eq!((p.fault, p.id), (Fault::Unreadable, 2));
    }
}
