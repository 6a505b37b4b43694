//! What the domain can refuse, independent of how the API reports it.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// A value breaks a rule; `field` names the member (dotted path) it came from.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A version string or filter is malformed.
    #[error("{field}: {message}")]
    InvalidVersion { field: String, message: String },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn invalid_version(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::InvalidVersion {
            field: field.into(),
            message: message.into(),
        }
    }
}
