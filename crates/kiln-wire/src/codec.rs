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

/// Encodes a response straight to JSON text (no intermediate `Value`: responses are the hot path).
pub fn encode<T: Serialize>(output: T) -> Result<String, ApiError> {
    serde_json::to_string(&output)
        .map_err(|e| ApiError::service(format!("encoding the response failed: {e}")))
}

/// Writes a member that responses always carry: its value, or the empty value of its type (`{}`,
/// `[]`) when the handler left it unset. The generated types use it for the members the
/// always-present rule names, so that the rule lives in one place.
pub fn empty_when_unset<T, S>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
where
    T: Serialize + Default,
    S: serde::Serializer,
{
    match value {
        Some(v) => v.serialize(serializer),
        None => T::default().serialize(serializer),
    }
}

/// Adds `"requestId"` to an encoded response object. Handlers leave `requestId` unset, so the
/// member is never duplicated. Built in one allocation: cached answers are copied through here
/// on every hit.
pub fn with_request_id(json: &str, request_id: &str) -> String {
    let Some(rest) = json.strip_prefix('{') else {
        return json.to_string();
    };
    let separator = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    // Request ids are UUIDs; anything that JSON would have to escape goes through serde_json.
    let plain = request_id
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    let quoted_id = if plain {
        None
    } else {
        Some(Value::String(request_id.to_string()).to_string())
    };
    let mut out = String::with_capacity(json.len() + request_id.len() + 20);
    out.push_str("{\"requestId\":");
    match &quoted_id {
        Some(quoted) => out.push_str(quoted),
        None => {
            out.push('"');
            out.push_str(request_id);
            out.push('"');
        }
    }
    out.push_str(separator);
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_inserted_into_empty_and_full_objects() {
        assert_eq!(with_request_id("{}", "r1"), r#"{"requestId":"r1"}"#);
        let out = with_request_id(r#"{"a":1}"#, "r\"2");
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["requestId"], "r\"2");
        assert_eq!(parsed["a"], 1);
        let odd = "r\u{1}\u{e9}\\";
        let parsed: Value = serde_json::from_str(&with_request_id(r#"{ }"#, odd)).unwrap();
        assert_eq!(parsed["requestId"], odd);
    }
}
