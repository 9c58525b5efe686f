//! Where sealed records are appended: the `audit_log` table (one multi-row INSERT per batch)
//! or a JSON-lines file (one write and one `fsync` per batch).

use std::path::PathBuf;

use sqlx::PgPool;
use tokio::io::AsyncWriteExt;

use super::chain::Sealed;

/// Rows per INSERT: 12 bound values each, under PostgreSQL's 65,535 parameters.
const ROWS_PER_INSERT: usize = 4000;

/// An append-only destination.
pub enum Sink {
    /// The `audit_log` table (migration `0002_audit.sql`).
    Postgres(PgPool),
    /// A JSON-lines file, opened for appending on first use and again after an error.
    File {
        /// The file.
        path: PathBuf,
        /// The open file, if any.
        file: Option<tokio::fs::File>,
    },
}

impl Sink {
    /// The file sink at `path` (nothing is opened yet).
    pub fn file(path: impl Into<PathBuf>) -> Sink {
        Sink::File { path: path.into(), file: None }
    }

    /// A short name for logs and `sekisho check`.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Postgres(_) => "postgres",
            Sink::File { .. } => "file",
        }
    }

    /// Append `batch` in order, all or nothing as far as the sink allows (PostgreSQL: one
    /// transaction per call; the file: one write, then `fsync`; a failed write is retried
    /// whole, so a file may hold a partial line before the retried batch, which `audit verify`
    /// reports).
    ///
    /// Errors: the database's or the file system's, as text (logged and counted by the writer).
    pub async fn append(&mut self, batch: &[Sealed]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Postgres(pool) => insert(pool, batch).await.map_err(|e| e.to_string()),
            Sink::File { path, file } => {
                let mut text = String::with_capacity(batch.iter().map(|s| s.canonical.len() + 80).sum());
                for s in batch {
                    text.push_str(&super::record::file_line(&s.canonical, &s.hash));
                    text.push('\n');
                }
                let result = async {
                    if file.is_none() {
                        *file = Some(tokio::fs::OpenOptions::new().create(true).append(true).open(&*path).await?);
                    }
                    let f = file.as_mut().expect("opened above");
                    f.write_all(text.as_bytes()).await?;
                    f.sync_data().await
                }
                .await;
                if result.is_err() {
                    *file = None;
                }
                result.map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }
}

async fn insert(pool: &PgPool, batch: &[Sealed]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for chunk in batch.chunks(ROWS_PER_INSERT) {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO audit_log (writer, seq, at, kind, caller, tenant, method, name, upstream, outcome, record, hash) ",
        );
        q.push_values(chunk, |mut b, s| {
            let r = &s.record;
            b.push_bind(&r.writer)
                .push_bind(r.seq as i64)
                .push_bind(&r.at)
                .push_unseparated("::timestamptz")
                .push_bind(r.kind.name())
                .push_bind(&r.caller)
                .push_bind(&r.tenant)
                .push_bind(&r.method)
                .push_bind(&r.name)
                .push_bind(&r.upstream)
                .push_bind(&r.outcome)
                .push_bind(&s.canonical)
                .push_bind(&s.hash);
        });
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await
}
