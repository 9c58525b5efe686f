//! Reading stored records back (for `sekisho audit verify|tail|search`): rows in storage order
//! from the `audit_log` table or a JSON-lines file, and the filters of `audit search`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::SystemTime;

use sqlx::PgPool;
use tokio::io::AsyncBufReadExt;

use super::record::{Record, split_line};

/// Rows fetched per query.
const PAGE: i64 = 5000;

/// Where records are read from.
pub enum Source {
    /// The `audit_log` table.
    Postgres(PgPool),
    /// A JSON-lines file.
    File(PathBuf),
}

/// The columns of a table row that repeat members of its record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    /// `writer`.
    pub writer: String,
    /// `seq`.
    pub seq: i64,
    /// `kind`.
    pub kind: String,
    /// `caller`.
    pub caller: Option<String>,
    /// `tenant`.
    pub tenant: Option<String>,
    /// `method`.
    pub method: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `upstream`.
    pub upstream: Option<String>,
    /// `outcome`.
    pub outcome: Option<String>,
}

/// One stored record as read: its place (table `id`, or line number from 1), its canonical
/// text and stored hash (empty when a file line is not a sealed record), and the table's
/// search columns.
#[derive(Clone, Debug)]
pub struct Row {
    /// Table id or line number.
    pub id: i64,
    /// The canonical record (or the whole line, when it cannot be split).
    pub text: String,
    /// The stored hash; empty for an unreadable line.
    pub hash: String,
    /// The search columns (table rows only).
    pub columns: Option<Columns>,
}

/// What `audit search` keeps: every given filter must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The caller id, exactly.
    pub caller: Option<String>,
    /// The tool, prompt or resource (or the admin action's object), exactly.
    pub tool: Option<String>,
    /// Records at or after this time.
    pub since: Option<SystemTime>,
    /// The outcome label, exactly.
    pub outcome: Option<String>,
}

impl Filter {
    /// Whether `r` passes.
    pub fn matches(&self, r: &Record) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| want.as_ref().is_none_or(|w| have.as_ref() == Some(w));
        eq(&self.caller, &r.caller)
            && eq(&self.tool, &r.name)
            && eq(&self.outcome, &r.outcome)
            && self.since.is_none_or(|since| humantime::parse_rfc3339(&r.at).is_ok_and(|at| at >= since))
    }
}

impl Source {
    /// Call `each` on every row in storage order.
    ///
    /// Errors: the database's or the file system's, as text.
    pub async fn for_each(&self, mut each: impl FnMut(Row)) -> Result<(), String> {
        match self {
            Source::Postgres(pool) => {
                let mut after = 0i64;
                loop {
                    let rows = page(pool, after, PAGE).await?;
                    let n = rows.len() as i64;
                    for row in rows {
                        after = row.id;
                        each(row);
                    }
                    if n < PAGE {
                        return Ok(());
                    }
                }
            }
            Source::File(path) => {
                let file = tokio::fs::File::open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
                let mut lines = tokio::io::BufReader::new(file).lines();
                let mut n = 0;
                while let Some(line) = lines.next_line().await.map_err(|e| format!("{}: {e}", path.display()))? {
                    n += 1;
                    if line.trim().is_empty() {
                        continue;
                    }
                    each(file_row(n, line));
                }
                Ok(())
            }
        }
    }

    /// The last `n` records that pass `filter`, oldest first, with the place of the last row read.
    ///
    /// Errors: as [`Source::for_each`].
    pub async fn last(&self, n: usize, filter: &Filter) -> Result<(Vec<Record>, i64), String> {
        let mut kept = VecDeque::with_capacity(n.min(10_000));
        let mut place = 0;
        self.for_each(|row| {
            place = row.id;
            if let Ok(r) = serde_json::from_str::<Record>(&row.text)
                && filter.matches(&r)
            {
                if kept.len() == n {
                    kept.pop_front();
                }
                if n > 0 {
                    kept.push_back(r);
                }
            }
        })
        .await?;
        Ok((kept.into(), place))
    }

    /// Records after place `after` that pass `filter` (for `--follow`), with the new place.
    ///
    /// Errors: as [`Source::for_each`].
    pub async fn after(&self, after: i64, filter: &Filter) -> Result<(Vec<Record>, i64), String> {
        let mut out = Vec::new();
        let mut place = after;
        let mut keep = |row: Row, place: &mut i64| {
            *place = row.id;
            if let Ok(r) = serde_json::from_str::<Record>(&row.text)
                && filter.matches(&r)
            {
                out.push(r);
            }
        };
        match self {
            Source::Postgres(pool) => {
                for row in page(pool, after, PAGE).await? {
                    keep(row, &mut place);
                }
            }
            Source::File(_) => {
                let mut rows = Vec::new();
                self.for_each(|row| {
                    if row.id > after {
                        rows.push(row)
                    }
                })
                .await?;
                for row in rows {
                    keep(row, &mut place);
                }
            }
        }
        Ok((out, place))
    }
}

fn file_row(n: i64, line: String) -> Row {
    match split_line(&line) {
        Ok((text, hash)) => Row { id: n, hash: hash.to_string(), text, columns: None },
        Err(_) => Row { id: n, text: line, hash: String::new(), columns: None },
    }
}

type Tuple = (
    i64,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

async fn page(pool: &PgPool, after: i64, limit: i64) -> Result<Vec<Row>, String> {
    let rows: Vec<Tuple> = sqlx::query_as(
        "SELECT id, writer, seq, kind, caller, tenant, method, name, upstream, outcome, record, hash \
         FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(|e| crate::store::StoreError::from(e).to_string())?;
    Ok(rows
        .into_iter()
        .map(|(id, writer, seq, kind, caller, tenant, method, name, upstream, outcome, text, hash)| Row {
            id,
            text,
            hash,
            columns: Some(Columns { writer, seq, kind, caller, tenant, method, name, upstream, outcome }),
        })
        .collect())
}
