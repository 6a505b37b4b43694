//! Reading YAML workflow documents: parsing with positions in the errors, and typed access to
//! members with messages that name the member's path in the document. (Component documents are
//! read by `kiln_toe::document`.)

use kiln_toe::yaml::{Mapping, Value};

/// Parses a document that must be a YAML mapping.
pub fn parse(data: &str) -> Result<Mapping, String> {
    let value: Value = kiln_toe::yaml::from_str(data).map_err(|e| syntax_error(&e))?;
    match value {
        Value::Mapping(map) => Ok(map),
        Value::Null => Err("the document is empty".to_string()),
        other => Err(format!(
            "the document must be a YAML mapping (with schemaVersion at the top level), not {}",
            describe(&other)
        )),
    }
}

fn syntax_error(e: &kiln_toe::yaml::Error) -> String {
    let message = e.to_string();
    match e.location() {
        // The YAML crate usually ends its message with the position already.
        Some(at) if !message.contains(" line ") => format!(
            "the document is not valid YAML: {message} at line {} column {}",
            at.line(),
            at.column()
        ),
        _ => format!("the document is not valid YAML: {message}"),
    }
}

/// What a value is, for messages ("a list"); shared with component validation.
pub use kiln_toe::actions::inputs::describe;

/// A member, treating an explicit `null` (`key:` with nothing after it) as absent.
pub fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// Any YAML scalar as text; shared with component validation.
pub use kiln_toe::actions::inputs::scalar_text;

pub fn as_mapping<'a>(value: &'a Value, path: &str) -> Result<&'a Mapping, String> {
    value
        .as_mapping()
        .ok_or_else(|| format!("{path}: must be a mapping, not {}", describe(value)))
}

/// A member that must be a non-empty string.
pub fn required_string(map: &Mapping, key: &str, path: &str) -> Result<String, String> {
    match get(map, key) {
        None => Err(format!("{path}{key}: is required")),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("{path}{key}: must not be empty")),
        Some(other) => Err(format!(
            "{path}{key}: must be a string, not {}",
            describe(other)
        )),
    }
}

/// A member that, when present, must be a string.
pub fn optional_string(map: &Mapping, key: &str, path: &str) -> Result<Option<String>, String> {
    match get(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "{path}{key}: must be a string, not {}",
            describe(other)
        )),
    }
}

/// A member that, when present, must be a list.
pub fn optional_list<'a>(
    map: &'a Mapping,
    key: &str,
    path: &str,
) -> Result<Option<&'a Vec<Value>>, String> {
    match get(map, key) {
        None => Ok(None),
        Some(Value::Sequence(items)) => Ok(Some(items)),
        Some(other) => Err(format!(
            "{path}{key}: must be a list, not {}",
            describe(other)
        )),
    }
}

/// A member that must be a non-empty list; `what` says what the list holds.
pub fn required_list<'a>(
    map: &'a Mapping,
    key: &str,
    path: &str,
    what: &str,
) -> Result<&'a Vec<Value>, String> {
    match optional_list(map, key, path)? {
        None => Err(format!("{path}{key}: is required: give a list of {what}")),
        Some(items) if items.is_empty() => Err(format!(
            "{path}{key}: is empty: give at least one of the {what}"
        )),
        Some(items) => Ok(items),
    }
}

/// `schemaVersion` is required, and 1.0 is the only version there is.
pub fn check_schema_version(doc: &Mapping) -> Result<(), String> {
    let Some(value) = get(doc, "schemaVersion") else {
        return Err("schemaVersion: is required (schemaVersion: 1.0)".to_string());
    };
    let text = scalar_text(value)
        .ok_or_else(|| format!("schemaVersion: must be 1.0, not {}", describe(value)))?;
    if text.trim().parse::<f64>() == Ok(1.0) {
        Ok(())
    } else {
        Err(format!(
            "schemaVersion: '{text}' is not supported; the only schema version is 1.0"
        ))
    }
}
