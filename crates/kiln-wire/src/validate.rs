//! Checks a request's JSON against the model's constraints before it is decoded, and (in test
//! and debug builds) every response against the operation's output shape.
//!
//! boto3 checks required members and lengths on the client but not patterns or enums, and other
//! clients check nothing, so the server enforces every constraint of the model here. The walk is
//! driven by the generated shape table: one function serves all 77 operations. Messages follow
//! the form AWS services use ("Value 'x' at 'name' failed to satisfy constraint: ..."), naming the
//! member path and the rule.

use crate::error::ApiError;
use crate::generated::schema::{SHAPES, SHAPE_COUNT};
use crate::schema::{ShapeId, ShapeKind};
use serde_json::Value;
use std::sync::OnceLock;

/// Most violations reported in one message; the count says how many there were in all.
const MAX_REPORTED: usize = 10;

enum Pattern {
    Plain(regex::Regex),
    /// For patterns with look-around (TagKey's `(?!aws:)`), which the `regex` crate lacks.
    Fancy(fancy_regex::Regex),
}

impl Pattern {
    fn compile(source: &str) -> Option<Pattern> {
        match regex::Regex::new(source) {
            Ok(r) => Some(Pattern::Plain(r)),
            Err(_) => fancy_regex::Regex::new(source).ok().map(Pattern::Fancy),
        }
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            Pattern::Plain(r) => r.is_match(s),
            // A pattern too expensive to evaluate counts as a mismatch rather than a pass.
            Pattern::Fancy(r) => r.is_match(s).unwrap_or(false),
        }
    }
}

fn patterns() -> &'static [Option<Pattern>] {
    static PATTERNS: OnceLock<Vec<Option<Pattern>>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        SHAPES
            .iter()
            .map(|s| match s.kind {
                ShapeKind::String {
                    pattern: Some(p), ..
                } => Pattern::compile(p),
                _ => None,
            })
            .collect()
    })
}

/// Compiles every pattern of the model now, so the first request does not pay for it.
/// Returns the names of shapes whose pattern did not compile (there should be none).
pub fn warm_up() -> Vec<&'static str> {
    let compiled = patterns();
    (0..SHAPE_COUNT)
        .filter(|&i| {
            matches!(
                SHAPES[i].kind,
                ShapeKind::String {
                    pattern: Some(_),
                    ..
                }
            ) && compiled[i].is_none()
        })
        .map(|i| SHAPES[i].name)
        .collect()
}

/// Integer shapes whose model maximum is below what the service itself answers, so a response
/// may exceed it: GetWorkflowStepExecution's `timeoutSeconds` (0-43200) is the step's effective
/// timeout, and WaitForAction waits 3 days by default, up to 7 (wave-2 contract §6 #2). SDKs do
/// not check ranges on output.
const RESPONSE_UNBOUNDED: &[&str] = &["WorkflowStepTimeoutSecondsInteger"];

/// Which side of a call is checked. Responses are held to more than requests: a member the
/// shape does not have, a missing always-present member or a `DateTime` that is not an ISO 8601
/// date would each break some client, while a request's unknown members are ignored as AWS
/// ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// Validates `value` as the structure `shape`. `Err` carries every violation found.
pub fn validate(shape: ShapeId, value: &Value) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    check(Side::Request, shape, value, "", &mut errors);
    if errors.is_empty() {
        return Ok(());
    }
    let count = errors.len();
    errors.truncate(MAX_REPORTED);
    let noun = if count == 1 { "error" } else { "errors" };
    Err(ApiError::invalid_request(format!(
        "{count} validation {noun} detected: {}",
        errors.join("; ")
    )))
}

/// Checks a response against the operation's output shape: member names, JSON types, required
/// and always-present members, enums, patterns, lengths, ranges, and the two date forms
/// (`DateTime` strings, `timestamp` numbers). `Err` lists every violation.
pub fn validate_response(shape: ShapeId, value: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    check(Side::Response, shape, value, "", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Whether responses are checked: on in test and debug builds, off in release builds (the hot
/// path); `KILN_CHECK_RESPONSES=1` or `=0` overrides either.
pub fn response_checks_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| match std::env::var("KILN_CHECK_RESPONSES").as_deref() {
        Ok("1") | Ok("true") => true,
        Ok("0") | Ok("false") => false,
        _ => cfg!(debug_assertions),
    })
}

/// The model's `DateTime` shape is a string with no pattern; AWS writes ISO 8601 UTC with
/// milliseconds (`2020-02-14T19:46:16.904Z`), which is what SDKs and users parse.
fn is_iso_date_time(s: &str) -> bool {
    static FORMAT: OnceLock<regex::Regex> = OnceLock::new();
    FORMAT
        .get_or_init(|| {
            regex::Regex::new(
                r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$",
            )
            .expect("the DateTime format compiles")
        })
        .is_match(s)
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() > 80 => {
            format!("'{}...'", s.chars().take(80).collect::<String>())
        }
        Value::String(s) => format!("'{s}'"),
        Value::Object(_) => "an object".to_string(),
        Value::Array(_) => "a list".to_string(),
        other => other.to_string(),
    }
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}

fn fail(errors: &mut Vec<String>, value: &Value, path: &str, rule: impl std::fmt::Display) {
    errors.push(format!(
        "Value {} at '{path}' failed to satisfy constraint: Member {rule}",
        describe(value)
    ));
}

fn check(side: Side, id: ShapeId, value: &Value, path: &str, errors: &mut Vec<String>) {
    let shape = id.shape();
    match &shape.kind {
        ShapeKind::Structure {
            members, required, ..
        } => {
            let Some(object) = value.as_object() else {
                return fail(errors, value, path, "must be a JSON object");
            };
            for name in required.iter() {
                if object.get(*name).is_none_or(Value::is_null) {
                    errors.push(format!(
                        "Value null at '{}' failed to satisfy constraint: Member must not be null",
                        join(path, name)
                    ));
                }
            }
            for member in members.iter() {
                let Some(v) = object.get(member.name).filter(|v| !v.is_null()) else {
                    continue;
                };
                // The model's minimum sizes are request rules (`TagMap` has min 1); an
                // always-present member answers empty when there is nothing in it.
                let empty = match member.shape.shape().kind {
                    ShapeKind::Map { .. } => v.as_object().is_some_and(|o| o.is_empty()),
                    ShapeKind::List { .. } => v.as_array().is_some_and(|a| a.is_empty()),
                    _ => false,
                };
                if side == Side::Response && member.always_present && empty {
                    continue;
                }
                check(side, member.shape, v, &join(path, member.name), errors);
            }
            if side == Side::Response {
                for member in members.iter().filter(|m| m.always_present) {
                    if object.get(member.name).is_none_or(Value::is_null) {
                        errors.push(format!(
                            "Value null at '{}' failed to satisfy constraint: Member is always present in responses (empty when unset)",
                            join(path, member.name)
                        ));
                    }
                }
                for (name, v) in object {
                    if v.is_null() {
                        fail(errors, v, &join(path, name), "must not be null");
                    } else if !members.iter().any(|m| m.name == name) {
                        fail(
                            errors,
                            v,
                            &join(path, name),
                            format!("is not a member of {}", shape.name),
                        );
                    }
                }
            }
        }
        ShapeKind::List { member, min, max } => {
            let Some(items) = value.as_array() else {
                return fail(errors, value, path, "must be a list");
            };
            check_size(items.len(), *min, *max, value, path, errors);
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.is_null() {
                    fail(errors, item, &item_path, "must not be null");
                } else {
                    check(side, *member, item, &item_path, errors);
                }
            }
        }
        ShapeKind::Map {
            key,
            value: value_shape,
            min,
            max,
        } => {
            let Some(entries) = value.as_object() else {
                return fail(errors, value, path, "must be a JSON object (a map)");
            };
            check_size(entries.len(), *min, *max, value, path, errors);
            for (k, v) in entries {
                let entry_path = format!("{path}['{k}']");
                check(
                    side,
                    *key,
                    &Value::String(k.clone()),
                    &format!("{entry_path} (key)"),
                    errors,
                );
                if v.is_null() {
                    fail(errors, v, &entry_path, "must not be null");
                } else {
                    check(side, *value_shape, v, &entry_path, errors);
                }
            }
        }
        ShapeKind::String {
            min,
            max,
            pattern,
            enum_values,
        } => {
            let Some(s) = value.as_str() else {
                return fail(errors, value, path, "must be a string");
            };
            let len = s.chars().count();
            if let Some(min) = min.filter(|&m| (len as i64) < m) {
                fail(
                    errors,
                    value,
                    path,
                    format!("must have length greater than or equal to {min}"),
                );
            }
            if let Some(max) = max.filter(|&m| (len as i64) > m) {
                fail(
                    errors,
                    value,
                    path,
                    format!("must have length less than or equal to {max}"),
                );
            }
            if !enum_values.is_empty() && !enum_values.contains(&s) {
                fail(
                    errors,
                    value,
                    path,
                    format!("must satisfy enum value set: [{}]", enum_values.join(", ")),
                );
            }
            if side == Side::Response && shape.name == "DateTime" && !is_iso_date_time(s) {
                fail(errors, value, path, "must be an ISO 8601 date and time");
            }
            if let Some(source) = pattern {
                let ok = patterns()[id.0].as_ref().is_some_and(|p| p.is_match(s));
                if !ok {
                    fail(
                        errors,
                        value,
                        path,
                        format!("must satisfy regular expression pattern: {source}"),
                    );
                }
            }
        }
        ShapeKind::Integer { min, max } => {
            if let Some(n) = integer(value, path, errors) {
                if i32::try_from(n).is_err() {
                    return fail(errors, value, path, "must fit in a 32-bit integer");
                }
                let max = if side == Side::Response && RESPONSE_UNBOUNDED.contains(&shape.name) {
                    &None
                } else {
                    max
                };
                check_range(n, *min, *max, value, path, errors);
            }
        }
        ShapeKind::Long { min, max } => {
            if let Some(n) = integer(value, path, errors) {
                check_range(n, *min, *max, value, path, errors);
            }
        }
        ShapeKind::Double => {
            if !value.is_number() {
                fail(errors, value, path, "must be a number");
            }
        }
        ShapeKind::Boolean => {
            if !value.is_boolean() {
                fail(errors, value, path, "must be a boolean");
            }
        }
        ShapeKind::Timestamp => {
            if !value.is_number() {
                fail(
                    errors,
                    value,
                    path,
                    "must be a timestamp in seconds since the Unix epoch",
                );
            }
        }
    }
}

fn integer(value: &Value, path: &str, errors: &mut Vec<String>) -> Option<i64> {
    let n = value.as_i64();
    if n.is_none() {
        fail(errors, value, path, "must be an integer");
    }
    n
}

fn check_range(
    n: i64,
    min: Option<i64>,
    max: Option<i64>,
    value: &Value,
    path: &str,
    errors: &mut Vec<String>,
) {
    if let Some(min) = min.filter(|&m| n < m) {
        fail(
            errors,
            value,
            path,
            format!("must have value greater than or equal to {min}"),
        );
    }
    if let Some(max) = max.filter(|&m| n > m) {
        fail(
            errors,
            value,
            path,
            format!("must have value less than or equal to {max}"),
        );
    }
}

fn check_size(
    len: usize,
    min: Option<i64>,
    max: Option<i64>,
    value: &Value,
    path: &str,
    errors: &mut Vec<String>,
) {
    if let Some(min) = min.filter(|&m| (len as i64) < m) {
        fail(
            errors,
            value,
            path,
            format!("must have length greater than or equal to {min}"),
        );
    }
    if let Some(max) = max.filter(|&m| (len as i64) > m) {
        fail(
            errors,
            value,
            path,
            format!("must have length less than or equal to {max}"),
        );
    }
}

#[cfg(test)]
mod tests;
