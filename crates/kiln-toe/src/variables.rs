//! Substitution of `{{ ... }}` references in component documents (semantics.md 1.3).
//!
//! An expression between double braces is trimmed and then classified: a plain name is a
//! parameter or constant, `phase.step.outputs.name` and `phase.step.inputs[i].name` are chaining
//! references, and `loop.index` / `<loopName>.value` are loop references. Lookups are case
//! sensitive. A loop reference that the scope cannot resolve is left verbatim, as AWSTOE does for
//! loop references used in a step without a loop; any other unresolved reference is an error that
//! names the expression.

use std::collections::HashMap;

/// Which loop variable a loop reference asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoopField {
    Index,
    Value,
}

/// A classified `{{ ... }}` expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Variable(String),
    StepInput {
        phase: String,
        step: String,
        index: Option<usize>,
        name: String,
    },
    StepOutput {
        phase: String,
        step: String,
        name: String,
    },
    Loop {
        loop_name: Option<String>,
        field: LoopField,
    },
    /// `{{ aws:ssm:resolve(name) }}`: an SSM parameter (or Secrets Manager secret through
    /// `/aws/reference/secretsmanager/...`) resolved on the instance; the argument is a
    /// parameter or constant of the document, or the parameter name itself.
    SsmParameter(String),
}

/// Resolves references to values; the engine implements it over its run state.
pub trait Scope {
    fn lookup(&self, path: &Reference) -> Option<String>;
}

/// A scope backed by a map, for tests and simple callers.
#[derive(Debug, Clone, Default)]
pub struct MapScope {
    pub values: HashMap<Reference, String>,
}

impl MapScope {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, reference: Reference, value: impl Into<String>) {
        self.values.insert(reference, value.into());
    }
}

impl Scope for MapScope {
    fn lookup(&self, path: &Reference) -> Option<String> {
        self.values.get(path).cloned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    #[error("invalid variable reference `{{{{ {0} }}}}`")]
    InvalidReference(String),
    #[error("unknown variable `{{{{ {0} }}}}`")]
    Unknown(String),
    #[error("unterminated `{{{{` in `{0}`")]
    Unterminated(String),
    #[error("invalid parameter override `{0}`: expected name=value with both non-empty")]
    InvalidOverride(String),
}

/// The result of substituting a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substituted {
    pub text: String,
    /// Expression (trimmed) -> value, recorded for chaining.json.
    pub resolved: Vec<(String, String)>,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Classifies a trimmed expression; `None` when it matches no documented form.
pub fn parse_reference(expr: &str) -> Option<Reference> {
    let expr = expr.trim();
    if let Some(arg) = expr
        .strip_prefix("aws:ssm:resolve(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        let arg = arg.trim();
        return (!arg.is_empty()).then(|| Reference::SsmParameter(arg.to_string()));
    }
    let parts: Vec<&str> = expr.split('.').collect();
    match parts.as_slice() {
        [name] if is_name(name) => Some(Reference::Variable((*name).to_string())),
        [loop_name, field] if is_name(loop_name) => {
            let field = match *field {
                "index" => LoopField::Index,
                "value" => LoopField::Value,
                _ => return None,
            };
            let loop_name = (*loop_name != "loop").then(|| (*loop_name).to_string());
            Some(Reference::Loop { loop_name, field })
        }
        [phase, step, kind, name] if is_name(phase) && is_name(step) && is_name(name) => {
            let (phase, step, name) = (phase.to_string(), step.to_string(), name.to_string());
            if *kind == "outputs" {
                return Some(Reference::StepOutput { phase, step, name });
            }
            if *kind == "inputs" {
                return Some(Reference::StepInput {
                    phase,
                    step,
                    index: None,
                    name,
                });
            }
            let index = kind.strip_prefix("inputs[")?.strip_suffix(']')?;
            if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            Some(Reference::StepInput {
                phase,
                step,
                index: Some(index.parse().ok()?),
                name,
            })
        }
        _ => None,
    }
}

/// The SSM parameters `text` reads with `{{ aws:ssm:resolve(name) }}`, each once, in order:
/// what a caller must load into `EngineConfig::ssm_parameters` before a run.
pub fn ssm_parameter_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        if let Some(Reference::SsmParameter(name)) = parse_reference(&after[..end]) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        rest = &after[end + 2..];
    }
    names
}

/// Replaces every `{{ ... }}` in `text`; unknown loop references are left verbatim, unknown
/// variables are an error naming them.
pub fn substitute(text: &str, scope: &dyn Scope) -> Result<Substituted, VariableError> {
    let mut out = String::with_capacity(text.len());
    let mut resolved = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| VariableError::Unterminated(text.to_string()))?;
        let raw = &after[..end];
        let expr = raw.trim();
        let reference =
            parse_reference(expr).ok_or_else(|| VariableError::InvalidReference(expr.into()))?;
        match scope.lookup(&reference) {
            Some(value) => {
                out.push_str(&value);
                resolved.push((expr.to_string(), value));
            }
            // Documented: loop references outside a loop stay verbatim.
            None if matches!(reference, Reference::Loop { .. }) => {
                out.push_str(&rest[start..start + 2 + end + 2]);
            }
            None => return Err(VariableError::Unknown(expr.to_string())),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(Substituted {
        text: out,
        resolved,
    })
}

/// Substitutes every string inside a YAML value (inputs), recursively.
pub fn substitute_value(
    value: &crate::yaml::Value,
    scope: &dyn Scope,
) -> Result<(crate::yaml::Value, Vec<(String, String)>), VariableError> {
    use crate::yaml::Value;
    let mut resolved = Vec::new();
    let new = match value {
        Value::String(s) => {
            let sub = substitute(s, scope)?;
            resolved.extend(sub.resolved);
            Value::String(sub.text)
        }
        Value::Sequence(items) => {
            let mut seq = Vec::with_capacity(items.len());
            for item in items {
                let (v, r) = substitute_value(item, scope)?;
                resolved.extend(r);
                seq.push(v);
            }
            Value::Sequence(seq)
        }
        Value::Mapping(map) => {
            let mut new = crate::yaml::Mapping::new();
            for (k, v) in map {
                let (v, r) = substitute_value(v, scope)?;
                resolved.extend(r);
                new.insert(k.clone(), v);
            }
            Value::Mapping(new)
        }
        other => other.clone(),
    };
    Ok((new, resolved))
}

/// Runtime overrides: "name1=value1,name2=value2" (awstoe --parameters); names and values both
/// required ("ntp-server=" is invalid).
pub fn parse_parameter_overrides(s: &str) -> Result<Vec<(String, String)>, VariableError> {
    s.split(',')
        .map(|pair| match pair.split_once('=') {
            Some((n, v)) if !n.trim().is_empty() && !v.is_empty() => {
                Ok((n.trim().to_string(), v.to_string()))
            }
            _ => Err(VariableError::InvalidOverride(pair.to_string())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_ssm_parameters_a_text_reads() {
        assert_eq!(
            ssm_parameter_names(
                "a {{ aws:ssm:resolve(/golden/web) }} {{ x }} {{aws:ssm:resolve(p)}} {{ aws:ssm:resolve(/golden/web) }}"
            ),
            vec!["/golden/web".to_string(), "p".to_string()]
        );
        assert!(ssm_parameter_names("{{ unterminated").is_empty());
    }

    fn scope() -> MapScope {
        let mut s = MapScope::new();
        s.insert(Reference::Variable("Source".into()), "s3://b/app");
        s.insert(
            Reference::StepOutput {
                phase: "build".into(),
                step: "A".into(),
                name: "stdout".into(),
            },
            "out",
        );
        s.insert(
            Reference::StepInput {
                phase: "build".into(),
                step: "A".into(),
                index: Some(1),
                name: "source".into(),
            },
            "in1",
        );
        s.insert(
            Reference::StepInput {
                phase: "build".into(),
                step: "A".into(),
                index: None,
                name: "path".into(),
            },
            "p",
        );
        s.insert(
            Reference::Loop {
                loop_name: None,
                field: LoopField::Index,
            },
            "3",
        );
        s.insert(
            Reference::Loop {
                loop_name: Some("outer".into()),
                field: LoopField::Value,
            },
            "v",
        );
        s
    }

    #[test]
    fn substitution_table() {
        let cases: &[(&str, Result<&str, VariableError>)] = &[
            ("{{ Source }}", Ok("s3://b/app")),
            ("x{{Source}}y", Ok("xs3://b/appy")),
            ("{{ build.A.outputs.stdout }}", Ok("out")),
            ("{{ build.A.inputs[1].source }}", Ok("in1")),
            ("{{ build.A.inputs.path }}", Ok("p")),
            ("{{ loop.index }}", Ok("3")),
            ("{{ outer.value }}", Ok("v")),
            ("{{ loop.value }}", Ok("{{ loop.value }}")),
            ("{{ source }}", Err(VariableError::Unknown("source".into()))),
            (
                "{{ a.b.c }}",
                Err(VariableError::InvalidReference("a.b.c".into())),
            ),
            (
                "{{ Source",
                Err(VariableError::Unterminated("{{ Source".into())),
            ),
        ];
        let s = scope();
        for (input, want) in cases {
            let got = substitute(input, &s).map(|r| r.text);
            assert_eq!(got, want.clone().map(String::from), "{input}");
        }
    }

    #[test]
    fn nested_values() {
        let v: crate::yaml::Value =
            crate::yaml::from_str("- source: '{{ Source }}'\n  n: 1\n  l: ['{{ loop.index }}']")
                .unwrap();
        let (out, resolved) = substitute_value(&v, &scope()).unwrap();
        let want: crate::yaml::Value =
            crate::yaml::from_str("- source: 's3://b/app'\n  n: 1\n  l: ['3']").unwrap();
        assert_eq!(out, want);
        assert_eq!(resolved.len(), 2);
    }

    #[test]
    fn overrides_table() {
        let cases: &[(&str, bool)] = &[
            ("a=1,b=2", true),
            ("ntp-server=", false),
            ("=x", false),
            ("a", false),
            ("a=1,", false),
        ];
        for (input, ok) in cases {
            assert_eq!(parse_parameter_overrides(input).is_ok(), *ok, "{input}");
        }
        assert_eq!(
            parse_parameter_overrides("a=1,b=x=y").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
    }
}
