use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored record {arn} cannot be decoded: {message}")]
    Corrupt { arn: String, message: String },
    #[error("the transaction this write was part of did not commit: {reason}")]
    BatchFailed { reason: String },
    #[error("cannot open the database at {path}: {message}")]
    Open { path: String, message: String },
}
