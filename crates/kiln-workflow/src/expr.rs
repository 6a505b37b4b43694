//! The expression languages of workflow documents, evaluated over one JSON "context":
//! `{"parameters": …, "stepOutputs": …, "workflowOutputs": …, "imagebuilder": …}`.
//!
//! - JSONPath, the subset the user guide uses: `$` then `.member` and `[index]` segments.
//! - `key.$` inputs: the member's value is a JSONPath; the input `key` gets what it resolves to.
//! - `{{ $.path }}` interpolation inside strings (no `.$` needed). Other `{{ … }}` forms, such as
//!   `{{ imagebuilder:buildDate }}` in distribution names, are left for the action to expand.
//! - `if` conditions: `and`, `or`, `not`, `booleanEquals`, `stringEquals`, `numberEquals`,
//!   `numberGreaterThan(Equals)`, `numberLessThan(Equals)`, each comparison with a `value`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExprError {
    #[error("'{0}' is not a JSONPath of the form $.member.member[0]: {1}")]
    Syntax(String, String),
    #[error("{0} does not resolve: {1}")]
    Unresolved(String, String),
    #[error("{0}")]
    Condition(String),
}

/// One step of a JSONPath.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Segment {
    Member(String),
    Index(usize),
}

/// Parses `$.a.b[0]`. Members are letters, digits, `_` and `-` (step and output names).
pub fn parse_path(path: &str) -> Result<Vec<Segment>, ExprError> {
    let err = |why: &str| ExprError::Syntax(path.to_string(), why.to_string());
    let rest = path
        .trim()
        .strip_prefix('$')
        .ok_or_else(|| err("it must start with $"))?;
    let mut segments = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if name.is_empty() {
                    return Err(err("a '.' must be followed by a member name"));
                }
                segments.push(Segment::Member(name));
            }
            '[' => {
                let mut digits = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    digits.push(c);
                }
                let index = digits
                    .trim()
                    .parse()
                    .map_err(|_| err("an index must be a number in brackets, like [0]"))?;
                segments.push(Segment::Index(index));
            }
            other => return Err(err(&format!("unexpected '{other}'"))),
        }
    }
    Ok(segments)
}

/// Resolves a JSONPath against the context; a missing member or index is an error naming it.
pub fn resolve(path: &str, context: &Value) -> Result<Value, ExprError> {
    let mut at = context;
    let mut walked = String::from("$");
    for segment in parse_path(path)? {
        let next = match &segment {
            Segment::Member(name) => {
                walked.push('.');
                walked.push_str(name);
                at.get(name.as_str())
            }
            Segment::Index(i) => {
                walked.push_str(&format!("[{i}]"));
                at.get(*i)
            }
        };
        at = next.ok_or_else(|| {
            ExprError::Unresolved(path.to_string(), format!("{walked} is not set"))
        })?;
    }
    Ok(at.clone())
}

/// Replaces each `{{ $.path }}` in `text` with what the path resolves to (strings as they are,
/// other values as JSON). Braces whose content does not start with `$` are kept verbatim.
pub fn interpolate(text: &str, context: &Value) -> Result<String, ExprError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        let inner = rest[open + 2..open + close].trim();
        out.push_str(&rest[..open]);
        if inner.starts_with('$') {
            match resolve(inner, context)? {
                Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            }
        } else {
            out.push_str(&rest[open..open + close + 2]);
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves a step's `inputs`: `key.$` members become `key` with the resolved value, strings
/// are interpolated, and lists and mappings are walked. Errors name the input member.
pub fn resolve_inputs(inputs: &Value, context: &Value) -> Result<Value, ExprError> {
    resolve_value(inputs, context, "inputs")
}

fn resolve_value(value: &Value, context: &Value, at: &str) -> Result<Value, ExprError> {
    let named = |e: ExprError| match e {
        ExprError::Unresolved(p, why) => ExprError::Unresolved(format!("{at}: {p}"), why),
        ExprError::Syntax(p, why) => ExprError::Syntax(p, format!("{why} (at {at})")),
        other => other,
    };
    Ok(match value {
        Value::String(s) => Value::String(interpolate(s, context).map_err(named)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| resolve_value(v, context, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                let here = format!("{at}.{key}");
                if let Some(base) = key.strip_suffix(".$") {
                    let resolved = resolve_dollar(v, context).map_err(|e| match e {
                        ExprError::Unresolved(p, why) => {
                            ExprError::Unresolved(format!("{here}: {p}"), why)
                        }
                        ExprError::Syntax(p, why) => {
                            ExprError::Syntax(p, format!("{why} (at {here})"))
                        }
                        other => other,
                    })?;
                    out.insert(base.to_string(), resolved);
                } else {
                    out.insert(key.clone(), resolve_value(v, context, &here)?);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// The value of a `key.$` input. Real documents use three forms: a JSONPath (`"$.a.b"`), a list
/// of JSONPaths (RunCommand `parameters`, whose values are lists), and a JSON template string
/// with `{{ $... }}` inside (ExecuteStateMachine `input.$`), which is interpolated.
pub fn resolve_dollar(value: &Value, context: &Value) -> Result<Value, ExprError> {
    match value {
        Value::String(s) if s.trim_start().starts_with('$') => resolve(s, context),
        Value::String(s) if s.contains("{{") => Ok(Value::String(interpolate(s, context)?)),
        Value::Array(items) => items.iter().map(|v| resolve_dollar(v, context)).collect(),
        other => Err(ExprError::Syntax(
            other.to_string(),
            "a key ending in .$ needs a JSONPath, a list of them, or a string with {{ $... }} in it".to_string(),
        )),
    }
}

/// Checks a `key.$` value's form without a context (for document validation).
pub fn check_dollar(value: &Value) -> Result<(), ExprError> {
    match value {
        Value::String(s) if s.trim_start().starts_with('$') => parse_path(s).map(|_| ()),
        Value::String(s) if s.contains("{{") => Ok(()),
        Value::Array(items) => items.iter().try_for_each(check_dollar),
        other => Err(ExprError::Syntax(
            other.to_string(),
            "a key ending in .$ needs a JSONPath, a list of them, or a string with {{ $... }} in it".to_string(),
        )),
    }
}

/// A comparison operator of the `if` language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    BooleanEquals,
    StringEquals,
    NumberEquals,
    NumberGreaterThan,
    NumberGreaterThanEquals,
    NumberLessThan,
    NumberLessThanEquals,
}

impl Compare {
    const ALL: [(Compare, &'static str); 7] = [
        (Compare::BooleanEquals, "booleanEquals"),
        (Compare::StringEquals, "stringEquals"),
        (Compare::NumberEquals, "numberEquals"),
        (Compare::NumberGreaterThan, "numberGreaterThan"),
        (Compare::NumberGreaterThanEquals, "numberGreaterThanEquals"),
        (Compare::NumberLessThan, "numberLessThan"),
        (Compare::NumberLessThanEquals, "numberLessThanEquals"),
    ];

    fn from_key(key: &str) -> Option<Compare> {
        Compare::ALL
            .iter()
            .find(|(_, k)| *k == key)
            .map(|(c, _)| *c)
    }

    pub fn key(self) -> &'static str {
        Compare::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, k)| *k)
            .unwrap_or("?")
    }
}

/// A parsed `if`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    /// `{<op>: expected, value: "$.path" or a literal}`.
    Compare {
        op: Compare,
        expected: Value,
        value: Value,
    },
}

/// How deeply `and`/`or`/`not` may nest (wave-1 research: the guide allows four levels).
pub const MAX_CONDITION_DEPTH: usize = 4;

impl Condition {
    /// Parses an `if` mapping; `at` names it in errors (`steps[2].if`).
    pub fn parse(value: &Value, at: &str) -> Result<Condition, ExprError> {
        Condition::parse_depth(value, at, 1)
    }

    fn parse_depth(value: &Value, at: &str, depth: usize) -> Result<Condition, ExprError> {
        let err = |why: String| ExprError::Condition(format!("{at}: {why}"));
        if depth > MAX_CONDITION_DEPTH {
            return Err(err(format!(
                "conditions can nest at most {MAX_CONDITION_DEPTH} levels deep"
            )));
        }
        let Value::Object(map) = value else {
            return Err(err(format!("must be a mapping, not {value}")));
        };
        let operators: Vec<&String> = map.keys().filter(|k| *k != "value").collect();
        let [op] = operators.as_slice() else {
            return Err(err(format!(
                "must have exactly one operator (and, or, not, booleanEquals, stringEquals, numberEquals, numberGreaterThan, numberGreaterThanEquals, numberLessThan, numberLessThanEquals); found {}",
                if operators.is_empty() { "none".to_string() } else { operators.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ") }
            )));
        };
        let operand = &map[op.as_str()];
        let list = |name: &str| -> Result<Vec<Condition>, ExprError> {
            if map.contains_key("value") {
                return Err(err(format!("{name} takes no value member")));
            }
            let Value::Array(items) = operand else {
                return Err(err(format!("{name} must be a list of conditions")));
            };
            if items.is_empty() {
                return Err(err(format!("{name} needs at least one condition")));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, c)| Condition::parse_depth(c, &format!("{at}.{name}[{i}]"), depth + 1))
                .collect()
        };
        match op.as_str() {
            "and" => Ok(Condition::And(list("and")?)),
            "or" => Ok(Condition::Or(list("or")?)),
            "not" => {
                if map.contains_key("value") {
                    return Err(err("not takes no value member".to_string()));
                }
                Ok(Condition::Not(Box::new(Condition::parse_depth(
                    operand,
                    &format!("{at}.not"),
                    depth + 1,
                )?)))
            }
            key => {
                let op = Compare::from_key(key)
                    .ok_or_else(|| err(format!("'{key}' is not a condition operator")))?;
                let value = map
                    .get("value")
                    .ok_or_else(|| err(format!("{key} needs a value member to compare")))?;
                let kind_ok = match op {
                    Compare::BooleanEquals => operand.is_boolean(),
                    Compare::StringEquals => operand.is_string(),
                    _ => operand.is_number(),
                };
                if !kind_ok {
                    return Err(err(format!(
                        "{key}: {operand} is not the right type for {key}"
                    )));
                }
                if let Value::String(s) = value {
                    if s.trim_start().starts_with('$') {
                        parse_path(s)?;
                    }
                }
                Ok(Condition::Compare {
                    op,
                    expected: operand.clone(),
                    value: value.clone(),
                })
            }
        }
    }

    /// Evaluates the condition. A `value` that is a JSONPath is resolved first; a path that does
    /// not resolve is an error (the step fails), never silently false.
    pub fn eval(&self, context: &Value) -> Result<bool, ExprError> {
        match self {
            Condition::And(all) => {
                for c in all {
                    if !c.eval(context)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Condition::Or(any) => {
                for c in any {
                    if c.eval(context)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Condition::Not(c) => Ok(!c.eval(context)?),
            Condition::Compare {
                op,
                expected,
                value,
            } => {
                let actual = match value {
                    Value::String(s) if s.trim_start().starts_with('$') => resolve(s, context)?,
                    other => other.clone(),
                };
                compare(*op, expected, &actual)
            }
        }
    }
}

fn compare(op: Compare, expected: &Value, actual: &Value) -> Result<bool, ExprError> {
    let mismatch = || {
        ExprError::Condition(format!(
            "{} compares with {expected}, but the value is {actual}",
            op.key()
        ))
    };
    match op {
        Compare::BooleanEquals => {
            // Pipeline parameters arrive as strings; typed booleans may still be text.
            let got = match actual {
                Value::Bool(b) => *b,
                Value::String(s) if s == "true" => true,
                Value::String(s) if s == "false" => false,
                _ => return Err(mismatch()),
            };
            Ok(Some(got) == expected.as_bool())
        }
        Compare::StringEquals => match actual {
            Value::String(s) => Ok(Some(s.as_str()) == expected.as_str()),
            Value::Null => Ok(false),
            other => Ok(Some(other.to_string().as_str()) == expected.as_str()),
        },
        _ => {
            let got = match actual {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .ok_or_else(mismatch)?;
            let want = expected.as_f64().ok_or_else(mismatch)?;
            Ok(match op {
                Compare::NumberEquals => got == want,
                Compare::NumberGreaterThan => got > want,
                Compare::NumberGreaterThanEquals => got >= want,
                Compare::NumberLessThan => got < want,
                _ => got <= want,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "parameters": {"flag": true, "name": "web", "size": 8, "list": ["a", "b"]},
            "stepOutputs": {"Launch": {"instanceId": "i-1"}, "Run": {"output": ["first", "second"]}},
            "workflowOutputs": {"ImageId": "ami-1"},
            "imagebuilder": {"imageType": "AMI", "platform": "Linux"}
        })
    }

    #[test]
    fn paths() {
        let c = ctx();
        assert_eq!(
            resolve("$.stepOutputs.Launch.instanceId", &c).unwrap(),
            json!("i-1")
        );
        assert_eq!(
            resolve("$.stepOutputs.Run.output[1]", &c).unwrap(),
            json!("second")
        );
        assert_eq!(resolve("$.parameters.list", &c).unwrap(), json!(["a", "b"]));
        assert_eq!(
            resolve("$.workflowOutputs.ImageId", &c).unwrap(),
            json!("ami-1")
        );
        let err = resolve("$.stepOutputs.Nope.x", &c).unwrap_err().to_string();
        assert!(err.contains("$.stepOutputs.Nope is not set"), "{err}");
        for bad in ["stepOutputs.x", "$.", "$.a[x]", "$.a b"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interpolation() {
        let c = ctx();
        assert_eq!(
            interpolate(
                "AMI {{ $.workflowOutputs.ImageId }} size {{$.parameters.size}}",
                &c
            )
            .unwrap(),
            "AMI ami-1 size 8"
        );
        assert_eq!(
            interpolate("name-{{ imagebuilder:buildDate }}", &c).unwrap(),
            "name-{{ imagebuilder:buildDate }}"
        );
        assert_eq!(interpolate("open {{ only", &c).unwrap(), "open {{ only");
        assert!(interpolate("{{ $.parameters.missing }}", &c).is_err());
    }

    #[test]
    fn inputs() {
        let c = ctx();
        let inputs = json!({
            "instanceId.$": "$.stepOutputs.Launch.instanceId",
            "waitFor": "ssmAgent",
            "payload": "image {{ $.workflowOutputs.ImageId }}",
            "nested": [{"x.$": "$.parameters.size"}],
            "params": {"names.$": ["$.parameters.name", "$.stepOutputs.Launch.instanceId"]},
            "input.$": "{\"id\": \"{{ $.workflowOutputs.ImageId }}\"}"
        });
        assert_eq!(
            resolve_inputs(&inputs, &c).unwrap(),
            json!({"instanceId": "i-1", "waitFor": "ssmAgent", "payload": "image ami-1", "nested": [{"x": 8}],
                   "params": {"names": ["web", "i-1"]}, "input": "{\"id\": \"ami-1\"}"})
        );
        let err = resolve_inputs(&json!({"a.$": "$.stepOutputs.X.y"}), &c)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("inputs.a.$: $.stepOutputs.X.y"), "{err}");
        assert!(resolve_inputs(&json!({"a.$": 3}), &c).is_err());
    }

    #[test]
    fn conditions() {
        let c = ctx();
        let cases = [
            (
                json!({"booleanEquals": true, "value": "$.parameters.flag"}),
                true,
            ),
            (
                json!({"stringEquals": "AMI", "value": "$.imagebuilder.imageType"}),
                true,
            ),
            (
                json!({"not": {"stringEquals": "Windows", "value": "$.imagebuilder.platform"}}),
                true,
            ),
            (
                json!({"and": [{"stringEquals": "AMI", "value": "$.imagebuilder.imageType"},
                             {"stringEquals": "Windows", "value": "$.imagebuilder.platform"}]}),
                false,
            ),
            (
                json!({"or": [{"booleanEquals": false, "value": "$.parameters.flag"},
                            {"numberGreaterThan": 4, "value": "$.parameters.size"}]}),
                true,
            ),
            (
                json!({"numberEquals": 8, "value": "$.parameters.size"}),
                true,
            ),
            (
                json!({"numberLessThan": 8, "value": "$.parameters.size"}),
                false,
            ),
            (
                json!({"numberLessThanEquals": 8, "value": "$.parameters.size"}),
                true,
            ),
            (
                json!({"numberGreaterThanEquals": 9, "value": "$.parameters.size"}),
                false,
            ),
            (json!({"booleanEquals": true, "value": "true"}), true),
        ];
        for (doc, want) in cases {
            let cond = Condition::parse(&doc, "if").unwrap();
            assert_eq!(cond.eval(&c).unwrap(), want, "{doc}");
        }
    }

    #[test]
    fn bad_conditions() {
        let bad = [
            json!({"booleanEquals": true}),
            json!({"booleanEquals": "yes", "value": "$.parameters.flag"}),
            json!({"stringEquals": "a", "booleanEquals": true, "value": "x"}),
            json!({"and": []}),
            json!({"maybe": 1, "value": "x"}),
            json!({"not": {"not": {"not": {"not": {"booleanEquals": true, "value": "true"}}}}}),
            json!("just text"),
        ];
        for doc in bad {
            assert!(Condition::parse(&doc, "steps[0].if").is_err(), "{doc}");
        }
        let cond = Condition::parse(
            &json!({"booleanEquals": true, "value": "$.parameters.name"}),
            "if",
        )
        .unwrap();
        assert!(cond.eval(&ctx()).is_err());
        let cond = Condition::parse(
            &json!({"booleanEquals": true, "value": "$.parameters.none"}),
            "if",
        )
        .unwrap();
        assert!(cond.eval(&ctx()).is_err());
    }
}
