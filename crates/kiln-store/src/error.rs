use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("PostgreSQL error: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("stored record {arn} cannot be decoded: {message}")]
    Corrupt { arn: String, message: String },
    #[error("the transaction this write was part of did not commit: {reason}")]
    BatchFailed { reason: String },
    #[error("cannot open the database at {path}: {message}")]
    Open { path: String, message: String },
    #[error(
        "the database at {path} was written by a newer Kiln: schema version {found}, \
         this Kiln knows up to {known}"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        known: i64,
    },
}
