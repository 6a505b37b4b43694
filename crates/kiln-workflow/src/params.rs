//! Typing the `parameters` a pipeline or image gives a workflow (`WorkflowConfiguration.
//! parameters`: every value is a list of strings) against the document's declarations.

use crate::document::{Document, ParamType};
use serde_json::{Map, Value};
use thiserror::Error;

/// The longest value the guide allows for one parameter.
pub const MAX_VALUE_CHARS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    #[error("parameters: the workflow declares no parameter named {0}")]
    Unknown(String),
    #[error("parameters: {0} is given more than once")]
    Duplicate(String),
    #[error("parameters: {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("parameters: the workflow needs a value for {}", .0.join(", "))]
    Missing(Vec<String>),
}

/// The typed `$.parameters` object: given values converted to the declared type, defaults for
/// the rest. Every problem with a given parameter is reported by name; missing required ones are
/// reported together.
pub fn bind(
    document: &Document,
    given: &[(String, Vec<String>)],
) -> Result<Map<String, Value>, ParamError> {
    let mut out = Map::new();
    for (i, (name, values)) in given.iter().enumerate() {
        if given[..i].iter().any(|(n, _)| n == name) {
            return Err(ParamError::Duplicate(name.clone()));
        }
        let def = document
            .parameters
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| ParamError::Unknown(name.clone()))?;
        let invalid = |message: String| ParamError::Invalid {
            name: name.clone(),
            message,
        };
        if let Some(long) = values.iter().find(|v| v.chars().count() > MAX_VALUE_CHARS) {
            return Err(invalid(format!(
                "a value is {} characters; the limit is {MAX_VALUE_CHARS}",
                long.chars().count()
            )));
        }
        let single = || match values.as_slice() {
            [one] => Ok(one.as_str()),
            _ => Err(invalid(format!(
                "a {} parameter takes exactly one value, not {}",
                def.kind.as_str(),
                values.len()
            ))),
        };
        let typed = match def.kind {
            ParamType::String => Value::String(single()?.to_string()),
            ParamType::Integer => {
                let text = single()?;
                Value::from(
                    text.trim()
                        .parse::<i64>()
                        .map_err(|_| invalid(format!("'{text}' is not an integer")))?,
                )
            }
            ParamType::Boolean => match single()? {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => {
                    return Err(invalid(format!(
                        "'{other}' is not a boolean; use \"true\" or \"false\""
                    )))
                }
            },
            ParamType::StringList => {
                Value::Array(values.iter().cloned().map(Value::String).collect())
            }
        };
        out.insert(name.clone(), typed);
    }
    let mut missing = Vec::new();
    for def in &document.parameters {
        if out.contains_key(&def.name) {
            continue;
        }
        match &def.default {
            Some(default) => {
                out.insert(def.name.clone(), default.clone());
            }
            None => missing.push(def.name.clone()),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(ParamError::Missing(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOC: &str = r#"
schemaVersion: 1.0
parameters:
  - { name: flag, type: boolean, default: false }
  - { name: size, type: integer }
  - { name: names, type: stringList, default: [a] }
  - { name: topic }
  - { name: label, default: x }
steps:
  - { name: Wait, action: WaitForAction, inputs: {} }
"#;

    fn given(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn binds_and_types() {
        let doc = Document::parse(DOC).unwrap();
        let bound = bind(
            &doc,
            &given(&[
                ("size", &["8"]),
                ("topic", &["t"]),
                ("flag", &["true"]),
                ("names", &["b", "c"]),
            ]),
        )
        .unwrap();
        assert_eq!(
            Value::Object(bound),
            json!({"flag": true, "size": 8, "names": ["b", "c"], "topic": "t", "label": "x"})
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        let doc = Document::parse(DOC).unwrap();
        type Given<'a> = &'a [(&'a str, &'a [&'a str])];
        let cases: [(Given, &str); 6] = [
            (
                &[],
                "parameters: the workflow needs a value for size, topic",
            ),
            (
                &[("size", &["x"]), ("topic", &["t"])],
                "parameters: size: 'x' is not an integer",
            ),
            (
                &[("size", &["1"]), ("topic", &["t"]), ("flag", &["yes"])],
                "parameters: flag: 'yes' is not a boolean",
            ),
            (
                &[("size", &["1", "2"]), ("topic", &["t"])],
                "parameters: size: a integer parameter takes exactly one value",
            ),
            (
                &[("nope", &["1"])],
                "parameters: the workflow declares no parameter named nope",
            ),
            (
                &[("topic", &["1"]), ("topic", &["2"])],
                "parameters: topic is given more than once",
            ),
        ];
        for (g, want) in cases {
            let err = bind(&doc, &given(g)).unwrap_err().to_string();
            assert!(err.starts_with(want), "wanted {want:?}, got {err:?}");
        }
    }
}
