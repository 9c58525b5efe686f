//! What can go wrong in the store, and whether trying again later can help.

/// A store failure. Messages name settings, rows and causes, never a secret value or a key.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL did not answer (refused, timed out, connection lost): retryable; a request
    /// whose key is not cached fails with this while it lasts.
    #[error("the configuration store is unavailable: {0}")]
    Unavailable(String),
    /// The database lacks migrations this binary needs: run `sekisho db migrate`.
    #[error(
        "the database schema is not migrated ({0}): run `sekisho db migrate --database-url …` with this version of sekisho"
    )]
    NotMigrated(String),
    /// The named row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A row with that name exists already (or another row still refers to it).
    #[error("{0}")]
    Conflict(String),
    /// A value the caller gave is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A sealed secret does not open (wrong `[store] secret_key`, or an altered row).
    #[error("{0}")]
    Secret(String),
    /// Any other database error (its text, which names no secret: values are bound
    /// parameters and never part of statements).
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// Whether the same operation may succeed later without anyone changing anything
    /// (PostgreSQL unreachable, timed out, or restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("23505") => {
                    StoreError::Conflict(format!("already exists ({})", db.constraint().unwrap_or("unique")))
                }
                Some("23503") => StoreError::Conflict("still referred to by another row".into()),
                Some("23514") => StoreError::Invalid(format!("refused by check {}", db.constraint().unwrap_or("?"))),
                // 42P01 undefined_table: the schema is not there.
                Some("42P01") => StoreError::NotMigrated(db.message().to_string()),
                // 57P01..57P03: admin shutdown, crash shutdown, cannot connect now.
                Some(c) if c.starts_with("57P") || c.starts_with("08") => StoreError::Unavailable(db.message().into()),
                _ => StoreError::Database(db.message().to_string()),
            },
            _ => StoreError::Database(e.to_string()),
        }
    }
}
