//! Between validated JSON and the generated types.

use crate::error::ApiError;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// Decodes a request that [`crate::validate`] already accepted. A failure here means the schema
/// and the types disagree, so the message carries the member path for the bug report.
pub fn decode<T: DeserializeOwned>(input: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(input).map_err(|e| {
        ApiError::invalid_request(format!("invalid value at '{}': {}", e.path(), e.inner()))
    })
}

pub fn encode<T: Serialize>(output: T) -> Result<Value, ApiError> {
    serde_json::to_value(output)
        .map_err(|e| ApiError::service(format!("encoding the response failed: {e}")))
}
