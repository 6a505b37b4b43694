//! Reading a step's `inputs` into typed structs.
//!
//! Modules declare their inputs as serde structs (camelCase, unknown keys refused) whose scalar
//! fields are [`Text`]. A document may write `overwrite: false`, `overwrite: 'false'` or
//! `overwrite: '{{ Overwrite }}'`; all three are valid at validation time, and [`Text::flag`] /
//! [`Text::number`] convert after substitution, naming the field when the value is not one.

use crate::yaml::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Any YAML scalar, kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Text(s)),
            Value::Number(n) => Ok(Text(n.to_string())),
            Value::Bool(b) => Ok(Text(b.to_string())),
            Value::Null => Ok(Text(String::new())),
            other => Err(serde::de::Error::custom(format!(
                "expected a single value, found {}",
                describe(&other)
            ))),
        }
    }
}

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `true`/`false`, case-insensitive.
    pub fn flag(&self, field: &str) -> Result<bool, String> {
        match self.0.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{field} must be true or false, not `{}`", self.0)),
        }
    }

    /// A whole number.
    pub fn number(&self, field: &str) -> Result<i64, String> {
        self.0
            .trim()
            .parse()
            .map_err(|_| format!("{field} must be a whole number, not `{}`", self.0))
    }
}

/// An optional flag with its documented default.
pub fn flag_or(value: &Option<Text>, field: &str, default: bool) -> Result<bool, String> {
    value.as_ref().map_or(Ok(default), |t| t.flag(field))
}

/// Any YAML scalar as text (numbers and booleans as the YAML crate writes them); `None` for nothing,
/// lists and mappings.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A short description of a YAML value's kind, for messages.
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Deserializes inputs into `T`, with serde's message (it names the missing or unknown field).
pub fn parse<T: DeserializeOwned>(inputs: &Value) -> Result<T, String> {
    T::deserialize(inputs.clone()).map_err(|e| e.to_string())
}

/// Inputs that are a list of entries (CreateFile, CopyFile, ...): the message names the entry.
pub fn parse_list<T: DeserializeOwned>(inputs: &Value) -> Result<Vec<T>, String> {
    let Value::Sequence(items) = inputs else {
        return Err(format!("inputs must be a list, found {}", describe(inputs)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| T::deserialize(item.clone()).map_err(|e| format!("inputs[{i}]: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Entry {
        path: Text,
        overwrite: Option<Text>,
    }

    #[test]
    fn scalars_read_as_text() {
        let v: Value =
            crate::yaml::from_str("- {path: /a, overwrite: false}\n- {path: 755}").unwrap();
        let entries: Vec<Entry> = parse_list(&v).unwrap();
        assert_eq!(entries[0].path.as_str(), "/a");
        assert!(!flag_or(&entries[0].overwrite, "overwrite", true).unwrap());
        assert!(flag_or(&entries[1].overwrite, "overwrite", true).unwrap());
        assert_eq!(entries[1].path.number("path").unwrap(), 755);
    }

    #[test]
    fn errors_name_the_field_and_entry() {
        let cases: &[(&str, &str)] = &[
            ("- {overwrite: true}", "inputs[0]: missing field `path`"),
            ("- {path: /a, bogus: 1}", "inputs[0]: unknown field `bogus`"),
            ("{path: /a}", "inputs must be a list, found a mapping"),
            ("- {path: [1]}", "expected a single value, found a list"),
        ];
        for (src, want) in cases {
            let v: Value = crate::yaml::from_str(src).unwrap();
            let err = parse_list::<Entry>(&v).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
        }
        let t = Text("maybe".into());
        assert_eq!(
            t.flag("overwrite").unwrap_err(),
            "overwrite must be true or false, not `maybe`"
        );
    }
}
