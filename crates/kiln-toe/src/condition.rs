//! Evaluation of `if` expressions and `Assert` comparisons (semantics.md 1.6).
//!
//! A comparison is a one-key mapping `operator: operand` plus `value`; we read it as
//! `value <operator> operand`, so `numberLessThan: 2, value: 1` is true. String comparisons
//! are case-insensitive, following the prose of the docs over its contradictory example.
//! Numbers accept ints, floats or strings matching `^[-+]?([0-9]+[.])?[0-9]+$`; anything else
//! makes the comparison false. `and`/`or` evaluate operands in order and stop early, so a later
//! operand that would error is never looked at. File checks go through [`Host`], so the caller
//! decides the root. Hashes compare case-insensitively.

use crate::actions::inputs::scalar_text as scalar;
use crate::target::Target;
use crate::yaml::Value;
use sha2::Digest;
use std::sync::OnceLock;

/// File-system and PATH queries, resolved by the caller inside its execution root.
pub trait Host {
    fn file_exists(&self, path: &str) -> bool;
    fn folder_exists(&self, path: &str) -> bool;
    fn read_file(&self, path: &str) -> Option<Vec<u8>>;
    fn binary_exists(&self, name: &str) -> bool;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("condition nested deeper than 4 levels")]
    TooDeep,
    #[error("invalid condition `{0}`")]
    Invalid(String),
    #[error("unknown operator `{0}`")]
    UnknownOperator(String),
    #[error("invalid regular expression `{pattern}`: {message}")]
    Pattern { pattern: String, message: String },
}

/// What to do with a step after its `if`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDecision {
    Execute,
    Skip,
    Abort,
}

const MAX_DEPTH: usize = 4;

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            static NUMBER: OnceLock<regex::Regex> = OnceLock::new();
            let re = NUMBER.get_or_init(|| {
                regex::Regex::new(r"^[-+]?([0-9]+[.])?[0-9]+$").expect("valid regex")
            });
            if re.is_match(s) {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Evaluates a condition expression to a boolean.
pub fn evaluate(expr: &Value, host: &dyn Host) -> Result<bool, ConditionError> {
    eval(expr, host, 1)
}

fn eval(expr: &Value, host: &dyn Host, depth: usize) -> Result<bool, ConditionError> {
    if depth > MAX_DEPTH {
        return Err(ConditionError::TooDeep);
    }
    let map = expr
        .as_mapping()
        .ok_or_else(|| ConditionError::Invalid(format!("{expr:?}")))?;
    let value = map.get("value");
    let path = map.get("path");
    let mut op = None;
    for (k, v) in map {
        match k.as_str() {
            Some("value") | Some("path") | Some("then") | Some("else") => {}
            Some(name) if op.is_none() => op = Some((name, v)),
            _ => return Err(ConditionError::Invalid(format!("{expr:?}"))),
        }
    }
    let (op, operand) = op.ok_or_else(|| ConditionError::Invalid(format!("{expr:?}")))?;
    let str_pair = || -> Result<(String, String), ConditionError> {
        let a = value.and_then(scalar);
        let b = scalar(operand);
        match (a, b) {
            (Some(a), Some(b)) => Ok((a.to_lowercase(), b.to_lowercase())),
            _ => Err(ConditionError::Invalid(op.to_string())),
        }
    };
    let num_pair = || value.and_then(number).zip(number(operand));
    let hash = |digest: fn(&[u8]) -> String| -> Result<bool, ConditionError> {
        let p = path
            .and_then(scalar)
            .ok_or_else(|| ConditionError::Invalid(op.to_string()))?;
        let want = scalar(operand).ok_or_else(|| ConditionError::Invalid(op.to_string()))?;
        Ok(host
            .read_file(&p)
            .is_some_and(|b| digest(&b).eq_ignore_ascii_case(want.trim())))
    };
    Ok(match op {
        "and" | "or" => {
            let items = operand
                .as_sequence()
                .ok_or_else(|| ConditionError::Invalid(op.to_string()))?;
            let want_and = op == "and";
            for item in items {
                let r = eval(item, host, depth + 1)?;
                if r != want_and {
                    return Ok(r);
                }
            }
            want_and
        }
        "not" => !eval(operand, host, depth + 1)?,
        "stringIsEmpty" | "stringIsWhitespace" => {
            let s = scalar(operand).ok_or_else(|| ConditionError::Invalid(op.to_string()))?;
            if op == "stringIsEmpty" {
                s.is_empty()
            } else {
                s.trim().is_empty()
            }
        }
        "stringEquals" => {
            let (a, b) = str_pair()?;
            a == b
        }
        "stringLessThan" => {
            let (a, b) = str_pair()?;
            a < b
        }
        "stringLessThanEquals" => {
            let (a, b) = str_pair()?;
            a <= b
        }
        "stringGreaterThan" => {
            let (a, b) = str_pair()?;
            a > b
        }
        "stringGreaterThanEquals" => {
            let (a, b) = str_pair()?;
            a >= b
        }
        "patternMatches" => {
            let pattern = scalar(operand).ok_or_else(|| ConditionError::Invalid(op.into()))?;
            let v = value
                .and_then(scalar)
                .ok_or_else(|| ConditionError::Invalid(op.into()))?;
            let re = regex::Regex::new(&pattern).map_err(|e| ConditionError::Pattern {
                pattern: pattern.clone(),
                message: e.to_string(),
            })?;
            re.is_match(&v)
        }
        "numberEquals" => num_pair().is_some_and(|(a, b)| a == b),
        "numberLessThan" => num_pair().is_some_and(|(a, b)| a < b),
        "numberLessThanEquals" => num_pair().is_some_and(|(a, b)| a <= b),
        "numberGreaterThan" => num_pair().is_some_and(|(a, b)| a > b),
        "numberGreaterThanEquals" => num_pair().is_some_and(|(a, b)| a >= b),
        "binaryExists" | "fileExists" | "folderExists" => {
            let s = scalar(operand).ok_or_else(|| ConditionError::Invalid(op.to_string()))?;
            match op {
                "binaryExists" => host.binary_exists(&s),
                "fileExists" => host.file_exists(&s),
                _ => host.folder_exists(&s),
            }
        }
        "fileSHA256Equals" => hash(|b| hex(&sha2::Sha256::digest(b)))?,
        "fileSHA512Equals" => hash(|b| hex(&sha2::Sha512::digest(b)))?,
        "fileMD5Equals" => hash(|b| hex(&md5::Md5::digest(b)))?,
        "fileSHA1Equals" => hash(|b| hex(&sha1::Sha1::digest(b)))?,
        other => return Err(ConditionError::UnknownOperator(other.to_string())),
    })
}

const STRING_PAIR_OPS: [&str; 6] = [
    "stringEquals",
    "stringLessThan",
    "stringLessThanEquals",
    "stringGreaterThan",
    "stringGreaterThanEquals",
    "patternMatches",
];
const NUMBER_OPS: [&str; 5] = [
    "numberEquals",
    "numberLessThan",
    "numberLessThanEquals",
    "numberGreaterThan",
    "numberGreaterThanEquals",
];
const SINGLE_OPS: [&str; 5] = [
    "stringIsEmpty",
    "stringIsWhitespace",
    "binaryExists",
    "fileExists",
    "folderExists",
];
const HASH_OPS: [&str; 4] = [
    "fileMD5Equals",
    "fileSHA1Equals",
    "fileSHA256Equals",
    "fileSHA512Equals",
];

/// Checks the shape of an `if` block or an `Assert` expression without evaluating it:
/// exactly one operator, known operators, `value` or `path` where the operator needs one,
/// lists under `and`/`or`, at most 4 levels, `then`/`else` only at the top of an `if`, and
/// patterns that compile (unless they hold a `{{ }}` reference, known only at run time).
/// The message says what is wrong, for the caller to prefix with phase, step and line.
pub fn check(expr: &Value, is_if: bool) -> Result<(), String> {
    check_at(expr, is_if, 1)
}

fn check_at(expr: &Value, top_of_if: bool, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("conditions nest at most 4 levels deep".into());
    }
    let map = expr
        .as_mapping()
        .ok_or_else(|| "a condition must be a mapping with one operator".to_string())?;
    let mut ops = Vec::new();
    for (k, v) in map {
        let Some(key) = k.as_str() else {
            return Err("condition keys must be strings".into());
        };
        match key {
            "value" | "path" => {}
            "then" | "else" if top_of_if => match v.as_str() {
                Some("Abort" | "Execute" | "Skip") => {}
                _ => return Err(format!("{key} must be Abort, Execute or Skip")),
            },
            _ => ops.push((key, v)),
        }
    }
    let (op, operand) = match ops.as_slice() {
        [one] => *one,
        [] => return Err("a condition needs one operator".into()),
        many => {
            let names: Vec<&str> = many.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "a condition has exactly one operator, found {}",
                names.join(", ")
            ));
        }
    };
    let needs = |key: &str| -> Result<(), String> {
        match map.get(key) {
            Some(v) if scalar(v).is_some() => Ok(()),
            Some(_) => Err(format!("{op}: `{key}` must be a single value")),
            None => Err(format!("{op} needs `{key}`")),
        }
    };
    let single = || -> Result<(), String> {
        scalar(operand)
            .map(|_| ())
            .ok_or_else(|| format!("{op} takes a single value"))
    };
    match op {
        "and" | "or" => {
            let items = operand
                .as_sequence()
                .filter(|items| !items.is_empty())
                .ok_or_else(|| format!("{op} takes a non-empty list of conditions"))?;
            for item in items {
                check_at(item, false, depth + 1)?;
            }
            Ok(())
        }
        "not" => check_at(operand, false, depth + 1),
        _ if SINGLE_OPS.contains(&op) => single(),
        _ if STRING_PAIR_OPS.contains(&op) || NUMBER_OPS.contains(&op) => {
            single()?;
            needs("value")?;
            if op == "patternMatches" {
                if let Some(pattern) = scalar(operand).filter(|p| !p.contains("{{")) {
                    regex::Regex::new(&pattern).map_err(|e| {
                        format!("patternMatches: invalid regular expression `{pattern}`: {e}")
                    })?;
                }
            }
            Ok(())
        }
        _ if HASH_OPS.contains(&op) => {
            single()?;
            needs("path")
        }
        other => Err(format!("unknown operator `{other}`")),
    }
}

/// Applies `then`/`else` (Abort|Execute|Skip) to the `if` mapping: default true => Execute,
/// false => Skip.
pub fn decide(if_block: &Value, host: &dyn Host) -> Result<StepDecision, ConditionError> {
    let result = evaluate(if_block, host)?;
    let (key, default) = if result {
        ("then", StepDecision::Execute)
    } else {
        ("else", StepDecision::Skip)
    };
    match if_block.get(key).map(|v| v.as_str()) {
        None => Ok(default),
        Some(Some("Execute")) => Ok(StepDecision::Execute),
        Some(Some("Skip")) => Ok(StepDecision::Skip),
        Some(Some("Abort")) => Ok(StepDecision::Abort),
        Some(_) => Err(ConditionError::Invalid(format!(
            "{key} must be Abort|Execute|Skip"
        ))),
    }
}

/// The [`Host`] of an execution target: file checks resolve inside the target's root.
pub struct TargetHost<'a>(pub &'a dyn Target);

impl Host for TargetHost<'_> {
    fn file_exists(&self, path: &str) -> bool {
        self.0.resolve(path).is_ok_and(|p| p.is_file())
    }
    fn folder_exists(&self, path: &str) -> bool {
        self.0.resolve(path).is_ok_and(|p| p.is_dir())
    }
    fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.0.resolve(path).ok()?).ok()
    }
    fn binary_exists(&self, name: &str) -> bool {
        self.0.binary_exists(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeHost;
    impl Host for FakeHost {
        fn file_exists(&self, path: &str) -> bool {
            path == "/f"
        }
        fn folder_exists(&self, path: &str) -> bool {
            path == "/d"
        }
        fn read_file(&self, path: &str) -> Option<Vec<u8>> {
            (path == "/f").then(|| b"abc".to_vec())
        }
        fn binary_exists(&self, name: &str) -> bool {
            name == "bash"
        }
    }

    #[test]
    fn operator_table() {
        let cases: &[(&str, bool)] = &[
            ("{stringIsEmpty: ''}", true),
            ("{stringIsEmpty: ' '}", false),
            ("{stringIsWhitespace: '  '}", true),
            ("{stringEquals: ABC, value: abc}", true),
            ("{stringEquals: a, value: b}", false),
            ("{stringLessThan: b, value: a}", true),
            ("{stringLessThanEquals: a, value: a}", true),
            ("{stringGreaterThan: b, value: a}", false),
            ("{stringGreaterThanEquals: a, value: b}", true),
            ("{patternMatches: '^a.c$', value: abc}", true),
            ("{patternMatches: '^x', value: abc}", false),
            ("{numberEquals: 1, value: '1.0'}", true),
            ("{numberLessThan: 2, value: 1}", true),
            ("{numberLessThan: 1, value: 2}", false),
            ("{numberLessThanEquals: '2', value: 2}", true),
            ("{numberGreaterThan: 1.5, value: 2}", true),
            ("{numberGreaterThanEquals: 3, value: 2}", false),
            ("{numberEquals: 1, value: abc}", false),
            ("{numberEquals: 1, value: '1e0'}", false),
            ("{binaryExists: bash}", true),
            ("{binaryExists: nope}", false),
            ("{fileExists: /f}", true),
            ("{folderExists: /f}", false),
            ("{folderExists: /d}", true),
            ("{fileSHA256Equals: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad, path: /f}", true),
            ("{fileSHA256Equals: 00, path: /f}", false),
            ("{fileMD5Equals: 900150983CD24FB0D6963F7D28E17F72, path: /f}", true),
            ("{fileSHA1Equals: a9993e364706816aba3e25717850c26c9cd0d89d, path: /f}", true),
            ("{fileSHA1Equals: 00, path: /f}", false),
            ("{fileSHA512Equals: 00, path: /missing}", false),
            ("{not: {fileExists: /f}}", false),
            ("{and: [{fileExists: /f}, {folderExists: /d}]}", true),
            ("{or: [{fileExists: /x}, {folderExists: /d}]}", true),
            // Short-circuit: the second operand would error.
            ("{and: [{fileExists: /x}, {bogus: 1}]}", false),
            ("{or: [{fileExists: /f}, {bogus: 1}]}", true),
            ("{not: {not: {not: {fileExists: /f}}}}", false),
        ];
        for (src, want) in cases {
            let v: Value = crate::yaml::from_str(src).unwrap();
            assert_eq!(evaluate(&v, &FakeHost), Ok(*want), "{src}");
        }
    }

    #[test]
    fn errors_table() {
        let cases: &[(&str, ConditionError)] = &[
            (
                "{not: {not: {not: {not: {fileExists: /f}}}}}",
                ConditionError::TooDeep,
            ),
            (
                "{bogus: 1}",
                ConditionError::UnknownOperator("bogus".into()),
            ),
        ];
        for (src, want) in cases {
            let v: Value = crate::yaml::from_str(src).unwrap();
            assert_eq!(evaluate(&v, &FakeHost).as_ref(), Err(want), "{src}");
        }
    }

    #[test]
    fn decide_table() {
        let cases: &[(&str, StepDecision)] = &[
            ("{fileExists: /f}", StepDecision::Execute),
            ("{fileExists: /x}", StepDecision::Skip),
            ("{fileExists: /f, then: Abort}", StepDecision::Abort),
            ("{fileExists: /x, else: Abort}", StepDecision::Abort),
            (
                "{fileExists: /x, then: Skip, else: Execute}",
                StepDecision::Execute,
            ),
            ("{fileExists: /f, then: Skip}", StepDecision::Skip),
        ];
        for (src, want) in cases {
            let v: Value = crate::yaml::from_str(src).unwrap();
            assert_eq!(decide(&v, &FakeHost), Ok(*want), "{src}");
        }
    }
}
