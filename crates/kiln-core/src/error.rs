//! What can go wrong below the HTTP layer. Each variant's text is the whole message the caller
//! sees; the HTTP crate picks the AWS exception class from the variant (`kiln_api::convert`),
//! so these errors never carry a wire type.

use kiln_domain::arn::ResourceKind;
use kiln_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A resource the caller named exactly does not exist (or is not the caller's).
    #[error("The {} '{arn}' does not exist.", kind.label())]
    NotFound { kind: ResourceKind, arn: String },
    /// A request names something that cannot be used: a malformed ARN, a reference to nothing.
    /// The message starts with the field at fault.
    #[error("{0}")]
    Invalid(String),
    /// A version or version filter that does not parse; the message starts with the field.
    #[error("{0}")]
    InvalidVersion(String),
    /// The database failed, or holds a record that does not decode.
    #[error("internal storage error: {0}")]
    Storage(#[from] StoreError),
    /// Kiln could not do what was asked for a reason that is not the caller's (such as reading
    /// images while resolving a parent).
    #[error("{0}")]
    Internal(String),
}

impl CoreError {
    pub fn not_found(kind: ResourceKind, arn: &str) -> CoreError {
        CoreError::NotFound {
            kind,
            arn: arn.to_string(),
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_those_the_api_answers() {
        assert_eq!(
            CoreError::not_found(ResourceKind::Image, "arn:x").to_string(),
            "The image 'arn:x' does not exist."
        );
        let corrupt = StoreError::Corrupt {
            arn: "arn:x".into(),
            message: "bad".into(),
        };
        assert!(CoreError::from(corrupt)
            .to_string()
            .starts_with("internal storage error: "));
    }
}
