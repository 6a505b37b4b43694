//! The single error type of the schedule module.
//!
//! Every parse failure becomes one human-readable sentence, because the API
//! layer hands it back to the caller verbatim (as an `InvalidRequestException`
//! message) and the caller has to be able to fix the expression from it alone.

/// Why a schedule expression or time zone was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    /// The sentence shown to the caller.
    pub message: String,
}

impl ScheduleError {
    /// Wraps a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Longest piece of caller input echoed back inside an error message.
const QUOTE_LIMIT: usize = 64;

/// Quotes caller input for an error message, cut to [`QUOTE_LIMIT`]
/// characters so that a huge request body is not reflected back whole.
pub(crate) fn quote(input: &str) -> String {
    // Cut on a char boundary: slicing bytes could split a UTF-8 sequence.
    match input.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("'{}...'", &input[..cut]),
        None => format!("'{input}'"),
    }
}
