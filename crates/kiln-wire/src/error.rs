//! The one error type of the API: it knows its AWS error code (the exception shape's name) and
//! its HTTP status, which is all a client needs to raise the right exception class.

use std::fmt;

macro_rules! error_kinds {
    ($($kind:ident = $status:literal),* $(,)?) => {
        /// Every exception shape of the model. The name is the wire code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind { $($kind),* }

        impl ErrorKind {
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind),*];

            /// The code sent in `X-Amzn-ErrorType`: the exception shape's name.
            pub fn code(self) -> &'static str {
                match self { $(ErrorKind::$kind => stringify!($kind)),* }
            }

            /// The HTTP status the model gives the exception shape.
            pub fn status(self) -> u16 {
                match self { $(ErrorKind::$kind => $status),* }
            }
        }
    };
}

error_kinds! {
    AccessDeniedException = 403,
    CallRateLimitExceededException = 429,
    ClientException = 400,
    DryRunOperationException = 412,
    ForbiddenException = 403,
    IdempotentParameterMismatchException = 400,
    InvalidPaginationTokenException = 400,
    InvalidParameterCombinationException = 400,
    InvalidParameterException = 400,
    InvalidParameterValueException = 400,
    InvalidRequestException = 400,
    InvalidVersionNumberException = 400,
    ResourceAlreadyExistsException = 400,
    ResourceDependencyException = 400,
    ResourceInUseException = 400,
    ResourceNotFoundException = 404,
    ServiceException = 500,
    ServiceQuotaExceededException = 402,
    ServiceUnavailableException = 503,
    TooManyRequestsException = 429,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequestException, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFoundException, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceAlreadyExistsException, message)
    }
    pub fn dependency(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceDependencyException, message)
    }
    pub fn client(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ClientException, message)
    }
    pub fn service(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ServiceException, message)
    }
    pub fn invalid_version(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidVersionNumberException, message)
    }
    pub fn dry_run(operation: &str) -> Self {
        Self::new(
            ErrorKind::DryRunOperationException,
            format!("{operation}: the request would have succeeded, but the dryRun flag is set"),
        )
    }
    pub fn not_implemented(operation: &str) -> Self {
        Self::client(format!("{operation} is not implemented yet in Kiln"))
    }
    pub fn status(&self) -> u16 {
        self.kind.status()
    }
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
    /// The JSON body of the error response.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message }).to_string()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::schema::SHAPES;
    use crate::schema::ShapeKind;

    #[test]
    fn every_exception_shape_has_a_kind_with_its_status() {
        let mut seen = 0;
        for shape in SHAPES.iter() {
            if let ShapeKind::Structure {
                error_status: Some(status),
                ..
            } = shape.kind
            {
                let kind = ErrorKind::ALL
                    .iter()
                    .find(|k| k.code() == shape.name)
                    .unwrap_or_else(|| panic!("no ErrorKind for {}", shape.name));
                assert_eq!(kind.status(), status, "{}", shape.name);
                seen += 1;
            }
        }
        assert_eq!(seen, ErrorKind::ALL.len());
    }
}
