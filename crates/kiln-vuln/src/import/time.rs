//! OSV timestamps (RFC 3339, UTC) to milliseconds.

pub fn millis(field: &str, text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{field}` {text:?} is not an RFC 3339 time: {e}"))
}
