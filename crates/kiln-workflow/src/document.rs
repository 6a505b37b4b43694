//! A workflow document in typed form. The YAML is read with `kiln_toe::yaml` (as the API does)
//! and converted to JSON, the form every later stage (expressions, stored executions) uses.
//! Errors name the member that is wrong (`steps[2].timeoutSeconds`). Members the engine does not
//! know are refused rather than ignored.

use crate::actions;
use crate::expr::{self, Condition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

pub const MAX_STEPS: usize = 15;
pub const MAX_OUTPUTS: usize = 25;
pub const MAX_PARAMETERS: usize = 25;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DocumentError {
    #[error("the document is not valid YAML: {0}")]
    Syntax(String),
    /// `at` is the member's path in the document, `steps[1].action`.
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
}

fn invalid(at: impl Into<String>, message: impl Into<String>) -> DocumentError {
    DocumentError::Invalid {
        at: at.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamType {
    String,
    Integer,
    Boolean,
    StringList,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::StringList => "stringList",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterDef {
    pub name: String,
    pub kind: ParamType,
    /// Already of `kind`'s JSON type; `None` means the pipeline must give a value.
    pub default: Option<Value>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnFailure {
    Abort,
    Continue,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Abort => "Abort",
            OnFailure::Continue => "Continue",
        }
    }
}

/// `rollbackEnabled`: a boolean, or a JSONPath decided when the rollback would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RollbackEnabled {
    Fixed(bool),
    Path(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub action: String,
    pub description: Option<String>,
    pub condition: Option<Condition>,
    /// A JSON object, unresolved (`key.$` members and `{{ }}` still in place).
    pub inputs: Value,
    /// As written; [`Step::effective_timeout_seconds`] applies the action default.
    pub timeout_seconds: Option<u64>,
    pub on_failure: OnFailure,
    pub rollback_enabled: RollbackEnabled,
}

impl Step {
    pub fn effective_timeout_seconds(&self) -> u64 {
        self.timeout_seconds.unwrap_or_else(|| {
            actions::lookup(&self.action)
                .map(|a| a.default_timeout_seconds)
                .unwrap_or(3600)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDef {
    pub name: String,
    /// A JSONPath (or a `{{ }}` template), resolved when the workflow completes.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub name: Option<String>,
    pub description: Option<String>,
    pub schema_version: String,
    pub parameters: Vec<ParameterDef>,
    pub steps: Vec<Step>,
    pub outputs: Vec<OutputDef>,
}

impl Document {
    /// Parses and checks a YAML workflow document.
    pub fn parse(yaml: &str) -> Result<Document, DocumentError> {
        let value: kiln_toe::yaml::Value =
            kiln_toe::yaml::from_str(yaml).map_err(|e| DocumentError::Syntax(e.to_string()))?;
        let json = serde_json::to_value(&value)
            .map_err(|e| DocumentError::Syntax(format!("it cannot be read as JSON data: {e}")))?;
        Document::from_json(&json)
    }

    pub fn from_json(json: &Value) -> Result<Document, DocumentError> {
        let top = object(json, "the document")?;
        known_members(
            top,
            "",
            &[
                "name",
                "description",
                "schemaVersion",
                "parameters",
                "steps",
                "outputs",
            ],
        )?;
        let schema_version = match get(top, "schemaVersion") {
            None => return Err(invalid("schemaVersion", "is required (use 1.0)")),
            Some(Value::Number(n)) if n.as_f64() == Some(1.0) => "1.0".to_string(),
            Some(Value::String(s)) if s == "1.0" || s == "1" => "1.0".to_string(),
            Some(other) => {
                return Err(invalid(
                    "schemaVersion",
                    format!("must be 1.0, not {other}"),
                ))
            }
        };
        let parameters = list(top, "parameters")?
            .iter()
            .enumerate()
            .map(|(i, p)| parameter(p, &format!("parameters[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if parameters.len() > MAX_PARAMETERS {
            return Err(invalid(
                "parameters",
                format!("a workflow can have at most {MAX_PARAMETERS}"),
            ));
        }
        for (i, p) in parameters.iter().enumerate() {
            if parameters[..i].iter().any(|q| q.name == p.name) {
                return Err(invalid(
                    format!("parameters[{i}].name"),
                    format!("'{}' is declared twice", p.name),
                ));
            }
        }
        let steps_json = list(top, "steps")?;
        if steps_json.is_empty() {
            return Err(invalid("steps", "the workflow needs at least one step"));
        }
        if steps_json.len() > MAX_STEPS {
            return Err(invalid(
                "steps",
                format!(
                    "a workflow can have at most {MAX_STEPS} steps, not {}",
                    steps_json.len()
                ),
            ));
        }
        let steps = steps_json
            .iter()
            .enumerate()
            .map(|(i, s)| step(s, &format!("steps[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, s) in steps.iter().enumerate() {
            if steps[..i].iter().any(|t| t.name == s.name) {
                return Err(invalid(
                    format!("steps[{i}].name"),
                    format!(
                        "'{}' is used by an earlier step; step names must be unique",
                        s.name
                    ),
                ));
            }
        }
        let outputs = list(top, "outputs")?
            .iter()
            .enumerate()
            .map(|(i, o)| output(o, &format!("outputs[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if outputs.len() > MAX_OUTPUTS {
            return Err(invalid(
                "outputs",
                format!("a workflow can have at most {MAX_OUTPUTS}"),
            ));
        }
        for (i, o) in outputs.iter().enumerate() {
            if outputs[..i].iter().any(|p| p.name == o.name) {
                return Err(invalid(
                    format!("outputs[{i}].name"),
                    format!("'{}' is declared twice", o.name),
                ));
            }
        }
        Ok(Document {
            name: optional_string(top, "name", "")?,
            description: optional_string(top, "description", "")?,
            schema_version,
            parameters,
            steps,
            outputs,
        })
    }
}

/// A member, with an explicit `null` counting as absent (as the API reads documents).
fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, DocumentError> {
    value
        .as_object()
        .ok_or_else(|| invalid(at, format!("must be a mapping, not {value}")))
}

fn list<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], DocumentError> {
    match get(map, key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(invalid(key, format!("must be a list, not {other}"))),
    }
}

fn known_members(
    map: &Map<String, Value>,
    prefix: &str,
    known: &[&str],
) -> Result<(), DocumentError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(
            format!("{prefix}{unknown}"),
            format!("is not a member Kiln knows here; use {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn required_string(
    map: &Map<String, Value>,
    key: &str,
    prefix: &str,
) -> Result<String, DocumentError> {
    optional_string(map, key, prefix)?
        .ok_or_else(|| invalid(format!("{prefix}{key}"), "is required"))
}

fn optional_string(
    map: &Map<String, Value>,
    key: &str,
    prefix: &str,
) -> Result<Option<String>, DocumentError> {
    match get(map, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => {
            Err(invalid(format!("{prefix}{key}"), "must not be empty"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(
            format!("{prefix}{key}"),
            format!("must be a string, not {other}"),
        )),
    }
}

fn parameter(value: &Value, at: &str) -> Result<ParameterDef, DocumentError> {
    let map = object(value, at)?;
    let prefix = format!("{at}.");
    known_members(map, &prefix, &["name", "type", "default", "description"])?;
    let name = required_string(map, "name", &prefix)?;
    let kind = match optional_string(map, "type", &prefix)?.as_deref() {
        None | Some("string") => ParamType::String,
        Some("integer") => ParamType::Integer,
        Some("boolean") => ParamType::Boolean,
        Some("stringList") => ParamType::StringList,
        Some(other) => {
            return Err(invalid(
                format!("{prefix}type"),
                format!(
                    "'{other}' is not a parameter type; use string, integer, boolean or stringList"
                ),
            ))
        }
    };
    // `default: ''` is a real (empty) default, so only a missing member means "required".
    let default = match map.get("default") {
        None => None,
        Some(v) => Some(typed_default(kind, v).ok_or_else(|| {
            invalid(
                format!("{prefix}default"),
                format!("{v} is not a {} value", kind.as_str()),
            )
        })?),
    };
    let description = match get(map, "description") {
        Some(Value::String(s)) => Some(s.clone()),
        None => None,
        Some(other) => {
            return Err(invalid(
                format!("{prefix}description"),
                format!("must be a string, not {other}"),
            ))
        }
    };
    Ok(ParameterDef {
        name,
        kind,
        default,
        description,
    })
}

fn typed_default(kind: ParamType, v: &Value) -> Option<Value> {
    match (kind, v) {
        (ParamType::String, Value::String(_)) => Some(v.clone()),
        (ParamType::String, Value::Null) => Some(Value::String(String::new())),
        (ParamType::String, Value::Number(_) | Value::Bool(_)) => {
            Some(Value::String(v.to_string()))
        }
        (ParamType::Integer, Value::Number(n)) if n.is_i64() => Some(v.clone()),
        (ParamType::Integer, Value::String(s)) => s.trim().parse::<i64>().ok().map(Value::from),
        (ParamType::Boolean, Value::Bool(_)) => Some(v.clone()),
        (ParamType::Boolean, Value::String(s)) if s == "true" || s == "false" => {
            Some(Value::Bool(s == "true"))
        }
        (ParamType::StringList, Value::Array(items)) if items.iter().all(Value::is_string) => {
            Some(v.clone())
        }
        _ => None,
    }
}

/// Step names: letter first, then letters, digits, `_` or `-`, 3-100 characters in all (the
/// rule both the user guide and the API model accept; contract §6 #3).
fn check_step_name(name: &str, at: &str) -> Result<(), DocumentError> {
    let mut chars = name.chars();
    let ok = (3..=100).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(at, format!("'{name}' is not a step name: 3-100 characters, a letter first, then letters, digits, _ or -")))
    }
}

fn step(value: &Value, at: &str) -> Result<Step, DocumentError> {
    let map = object(value, at)?;
    let prefix = format!("{at}.");
    known_members(
        map,
        &prefix,
        &[
            "name",
            "action",
            "description",
            "if",
            "inputs",
            "timeoutSeconds",
            "onFailure",
            "rollbackEnabled",
        ],
    )?;
    let name = required_string(map, "name", &prefix)?;
    check_step_name(&name, &format!("{prefix}name"))?;
    let action = required_string(map, "action", &prefix)?;
    let spec = actions::lookup(&action).ok_or_else(|| {
        invalid(
            format!("{prefix}action"),
            format!(
                "'{action}' is not a workflow step action; use one of: {}",
                actions::names()
            ),
        )
    })?;
    let description = optional_string(map, "description", &prefix)?;
    let condition = get(map, "if")
        .map(|c| Condition::parse(c, &format!("{prefix}if")))
        .transpose()
        .map_err(|e| invalid(format!("{prefix}if"), e.to_string()))?;
    let inputs = match get(map, "inputs") {
        Some(v @ Value::Object(_)) => {
            check_input_paths(v, &format!("{prefix}inputs"))?;
            v.clone()
        }
        // The guide marks inputs required, but real documents (CDK, Terraform tests) leave them
        // out for actions that need none, and CreateWorkflow accepts that: no inputs is `{}`.
        // An action missing a required input says so when it runs.
        None => Value::Object(Map::new()),
        Some(other) => {
            return Err(invalid(
                format!("{prefix}inputs"),
                format!("must be a mapping, not {other}"),
            ))
        }
    };
    let timeout_seconds = match get(map, "timeoutSeconds") {
        None => None,
        Some(v) => {
            let t = v.as_u64().filter(|t| *t >= 1).ok_or_else(|| {
                invalid(
                    format!("{prefix}timeoutSeconds"),
                    format!("must be a whole number of seconds, at least 1, not {v}"),
                )
            })?;
            if t > spec.max_timeout_seconds {
                return Err(invalid(
                    format!("{prefix}timeoutSeconds"),
                    format!(
                        "{t} is more than the {} seconds {action} allows",
                        spec.max_timeout_seconds
                    ),
                ));
            }
            Some(t)
        }
    };
    let on_failure = match optional_string(map, "onFailure", &prefix)?.as_deref() {
        None | Some("Abort") => OnFailure::Abort,
        Some("Continue") => OnFailure::Continue,
        Some(other) => {
            return Err(invalid(
                format!("{prefix}onFailure"),
                format!("'{other}' is not Abort or Continue"),
            ))
        }
    };
    let rollback_enabled = match get(map, "rollbackEnabled") {
        None => RollbackEnabled::Fixed(true),
        Some(Value::Bool(b)) => RollbackEnabled::Fixed(*b),
        Some(Value::String(s)) if s.trim_start().starts_with('$') => {
            expr::parse_path(s)
                .map_err(|e| invalid(format!("{prefix}rollbackEnabled"), e.to_string()))?;
            RollbackEnabled::Path(s.clone())
        }
        Some(other) => {
            return Err(invalid(
                format!("{prefix}rollbackEnabled"),
                format!("must be true, false or a JSONPath, not {other}"),
            ))
        }
    };
    Ok(Step {
        name,
        action,
        description,
        condition,
        inputs,
        timeout_seconds,
        on_failure,
        rollback_enabled,
    })
}

/// `key.$` members must hold a JSONPath: checked now so a typo fails at CreateWorkflow time.
fn check_input_paths(value: &Value, at: &str) -> Result<(), DocumentError> {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let here = format!("{at}.{key}");
                if key.ends_with(".$") {
                    expr::check_dollar(v).map_err(|e| invalid(&here, e.to_string()))?;
                } else {
                    check_input_paths(v, &here)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_input_paths(v, &format!("{at}[{i}]"))),
        _ => Ok(()),
    }
}

fn output(value: &Value, at: &str) -> Result<OutputDef, DocumentError> {
    let map = object(value, at)?;
    let prefix = format!("{at}.");
    known_members(map, &prefix, &["name", "value"])?;
    let name = required_string(map, "name", &prefix)?;
    let value = required_string(map, "value", &prefix)?;
    if value.trim_start().starts_with('$') {
        expr::parse_path(&value).map_err(|e| invalid(format!("{prefix}value"), e.to_string()))?;
    }
    Ok(OutputDef { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
name: sample
schemaVersion: 1.0
parameters:
  - name: waitForActionAtEnd
    type: boolean
    default: true
  - name: topic
steps:
  - name: LaunchTestInstance
    action: LaunchInstance
    inputs: { waitFor: ssmAgent }
  - name: Approve
    action: WaitForAction
    timeoutSeconds: 600
    onFailure: Continue
    rollbackEnabled: false
    if: { booleanEquals: true, value: "$.parameters.waitForActionAtEnd" }
    inputs: { snsTopicArn.$: "$.parameters.topic" }
outputs:
  - name: InstanceId
    value: "$.stepOutputs.LaunchTestInstance.instanceId"
"#;

    #[test]
    fn parses_a_document() {
        let d = Document::parse(DOC).unwrap();
        assert_eq!(d.schema_version, "1.0");
        assert_eq!(d.parameters[0].default, Some(Value::Bool(true)));
        assert_eq!(d.parameters[1].kind, ParamType::String);
        assert_eq!(d.parameters[1].default, None);
        assert_eq!(d.steps[0].effective_timeout_seconds(), 4500);
        assert_eq!(d.steps[1].effective_timeout_seconds(), 600);
        assert_eq!(d.steps[1].on_failure, OnFailure::Continue);
        assert_eq!(d.steps[1].rollback_enabled, RollbackEnabled::Fixed(false));
        assert!(d.steps[1].condition.is_some());
        assert_eq!(d.outputs[0].name, "InstanceId");
    }

    #[test]
    fn errors_name_the_member() {
        let cases = [
            (
                DOC.replace("schemaVersion: 1.0", "schemaVersion: 2.0"),
                "schemaVersion: must be 1.0",
            ),
            (
                DOC.replace("action: LaunchInstance", "action: Launch"),
                "steps[0].action: 'Launch'",
            ),
            (
                DOC.replace("timeoutSeconds: 600", "timeoutSeconds: 999999"),
                "steps[1].timeoutSeconds: 999999 is more",
            ),
            (
                DOC.replace("onFailure: Continue", "onFailure: Retry"),
                "steps[1].onFailure",
            ),
            (
                DOC.replace("name: Approve", "name: LaunchTestInstance"),
                "steps[1].name: 'LaunchTestInstance' is used",
            ),
            (DOC.replace("name: Approve", "name: 9x"), "steps[1].name"),
            (
                DOC.replace("inputs: { waitFor: ssmAgent }", "inputs: [ssmAgent]"),
                "steps[0].inputs: must be a mapping",
            ),
            (
                DOC.replace("snsTopicArn.$: \"$.parameters.topic\"", "snsTopicArn.$: 3"),
                "steps[1].inputs.snsTopicArn.$",
            ),
            (
                DOC.replace(
                    "snsTopicArn.$: \"$.parameters.topic\"",
                    "snsTopicArn.$: \"$.a b\"",
                ),
                "steps[1].inputs.snsTopicArn.$",
            ),
            (
                DOC.replace("default: true", "default: maybe"),
                "parameters[0].default",
            ),
            (
                DOC.replace("type: boolean", "type: bool"),
                "parameters[0].type",
            ),
            (
                DOC.replace("onFailure: Continue", "retries: 3"),
                "steps[1].retries: is not a member",
            ),
            (
                DOC.replace(
                    "booleanEquals: true,",
                    "booleanEquals: true, stringEquals: x,",
                ),
                "steps[1].if",
            ),
            ("[1, 2]".to_string(), "the document: must be a mapping"),
        ];
        for (doc, want) in cases {
            let err = Document::parse(&doc).unwrap_err().to_string();
            assert!(err.starts_with(want), "wanted {want:?}, got {err:?}");
        }
        assert!(matches!(
            Document::parse("a: [").unwrap_err(),
            DocumentError::Syntax(_)
        ));
    }
}
