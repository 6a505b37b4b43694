//! Valid inputs, generated from the operation's input shape in the model's constraint table
//! (`kiln_wire::generated::schema`, written from `model/imagebuilder-service-2.json`): required
//! members always, optional ones sometimes, strings from their enum or pattern within their
//! lengths, numbers within their ranges, lists and maps within their sizes.
//!
//! ARN members sometimes name a resource that exists (from the pool the fuzzer fills with the
//! ARNs its successful requests answered), so that valid inputs reach past "not found".

use super::regex_gen;
use kiln_wire::schema::{ShapeId, ShapeKind};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Beyond this depth only required members are generated: the model's recursion is shallow,
/// but optional members compound.
const OPTIONAL_DEPTH: usize = 3;

pub struct Gen<'a> {
    pub rng: &'a mut StdRng,
    /// ARNs of resources that exist; empty when the operation must not touch real resources.
    pub pool: &'a [String],
    /// Component documents that parse (CreateComponent's `data`).
    pub documents: &'a [String],
    pub operation: &'static str,
}

impl Gen<'_> {
    /// A valid value of `shape` for the member called `name`.
    pub fn value(&mut self, shape: ShapeId, name: &str, depth: usize) -> Value {
        if let Some(v) = self.special(name) {
            return v;
        }
        match &shape.shape().kind {
            ShapeKind::Structure {
                members, required, ..
            } => {
                let mut map = Map::new();
                for member in members.iter() {
                    // Documents by S3 URI are not supported, and exclude the inline ones.
                    if member.name.ends_with("Uri") || member.name == "uri" {
                        continue;
                    }
                    let needed = required.contains(&member.name);
                    let odds = if depth >= OPTIONAL_DEPTH { 0.0 } else { 0.35 };
                    if needed || self.rng.gen_bool(odds) {
                        let v = self.value(member.shape, member.name, depth + 1);
                        map.insert(member.name.to_string(), v);
                    }
                }
                Value::Object(map)
            }
            ShapeKind::List { member, min, max } => {
                let n = self.count(*min, *max);
                Value::Array(
                    (0..n)
                        .map(|_| self.value(*member, name, depth + 1))
                        .collect(),
                )
            }
            ShapeKind::Map {
                key,
                value,
                min,
                max,
            } => {
                let n = self.count(*min, *max);
                let mut map = Map::new();
                for _ in 0..n {
                    let k = match self.value(*key, "key", depth + 1) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    let v = self.value(*value, "value", depth + 1);
                    map.insert(k, v);
                }
                Value::Object(map)
            }
            ShapeKind::String {
                min,
                max,
                pattern,
                enum_values,
            } => Value::String(self.string(*min, *max, *pattern, enum_values)),
            ShapeKind::Integer { min, max } => {
                Value::from(self.number(*min, *max, i64::from(i32::MAX)))
            }
            ShapeKind::Long { min, max } => Value::from(self.number(*min, *max, 1 << 40)),
            ShapeKind::Double => Value::from(self.rng.gen_range(0.0..100.0)),
            ShapeKind::Boolean => Value::Bool(self.rng.gen()),
            // rest-json timestamps: epoch seconds, between 2001 and 2033.
            ShapeKind::Timestamp => Value::from(self.rng.gen_range(1_000_000_000..2_000_000_000)),
        }
    }

    /// Members whose valid values no pattern describes: documents and policies.
    fn special(&mut self, name: &str) -> Option<Value> {
        match (self.operation, name) {
            ("CreateComponent", "data") if !self.documents.is_empty() => {
                let i = self.rng.gen_range(0..self.documents.len());
                Some(Value::String(self.documents[i].clone()))
            }
            ("CreateWorkflow", "data") => Some(Value::String(WORKFLOW.to_string())),
            ("CreateContainerRecipe", "dockerfileTemplateData") => {
                Some(Value::String(DOCKERFILE.to_string()))
            }
            (_, "policy") => Some(Value::String(POLICY.to_string())),
            (_, "region") => {
                let regions = ["us-east-1", "us-west-2", "eu-west-1"];
                Some(Value::String(
                    regions[self.rng.gen_range(0..regions.len())].to_string(),
                ))
            }
            _ => None,
        }
    }

    fn count(&mut self, min: Option<i64>, max: Option<i64>) -> usize {
        let lo = min.unwrap_or(0).max(0) as usize;
        let hi = max.map_or(lo + 3, |m| (m.max(0) as usize).min(lo + 3));
        self.rng.gen_range(lo..=hi.max(lo))
    }

    fn number(&mut self, min: Option<i64>, max: Option<i64>, limit: i64) -> i64 {
        let lo = min.unwrap_or(0);
        let hi = max.unwrap_or(lo.saturating_add(1000)).min(limit);
        if hi < lo {
            return lo;
        }
        self.rng.gen_range(lo..=hi)
    }

    fn string(
        &mut self,
        min: Option<i64>,
        max: Option<i64>,
        pattern: Option<&'static str>,
        enum_values: &[&str],
    ) -> String {
        if !enum_values.is_empty() {
            return enum_values[self.rng.gen_range(0..enum_values.len())].to_string();
        }
        if let Some(p) = pattern {
            if let Some(arn) = self.existing_arn(p) {
                return arn;
            }
        }
        let lo = min.unwrap_or(0).max(0) as usize;
        let hi = max.map_or(lo + 24, |m| (m.max(0) as usize).min(lo + 24));
        let mut s = match pattern.and_then(|p| regex_gen::generate(p, self.rng)) {
            Some(s) => s,
            None => {
                let n = self.rng.gen_range(lo..=hi.max(lo));
                (0..n)
                    .map(|_| self.rng.gen_range(b'a'..=b'z') as char)
                    .collect()
            }
        };
        if let Some(max) = max {
            let max = max.max(0) as usize;
            if s.chars().count() > max {
                s = s.chars().take(max).collect();
            }
        }
        while s.chars().count() < lo {
            s.push('a');
        }
        s
    }

    /// An existing resource's ARN that matches `pattern`, half of the time there is one.
    fn existing_arn(&mut self, pattern: &str) -> Option<String> {
        if self.pool.is_empty() || !pattern.starts_with("^arn:aws") || !self.rng.gen_bool(0.6) {
            return None;
        }
        let re = compiled(pattern)?;
        let matching: Vec<&String> = self.pool.iter().filter(|a| re.is_match(a)).collect();
        if matching.is_empty() {
            return None;
        }
        Some(matching[self.rng.gen_range(0..matching.len())].clone())
    }
}

fn compiled(pattern: &str) -> Option<regex::Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| regex::Regex::new(pattern).ok())
        .clone()
}

pub const WORKFLOW: &str = "\
name: fuzz-test
description: A test workflow
schemaVersion: 1.0
steps:
  - name: LaunchTestInstance
    action: LaunchInstance
    onFailure: Abort
    inputs:
      waitFor: ssmAgent
";

pub const DOCKERFILE: &str = "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}\n";

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["123456789012"]},"Action":["imagebuilder:GetComponent"],"Resource":["*"]}]}"#;
