//! Component documents: parsing and validation (semantics.md 1.1, 1.5, 1.6).
//!
//! [`parse`] reads YAML text into a [`Document`], checking every documented rule, and reports
//! all violations at once as a [`DocumentError`]. Each [`Problem`] names the phase, the step,
//! the line and what is wrong, and the same text serves `kiln toe validate` and the API
//! (CreateComponent answers it as InvalidRequestException).
//!
//! Where the docs are silent, Kiln decides, and the rule is stated where it is checked:
//! - unknown keys at the top of the document, in a phase or in a step are errors (a typo such
//!   as `onfailure` would otherwise be silently ignored); `disableLogging` is accepted on a step
//!   because AWS's own cookbook uses it (the step's console output is kept out of the logs);
//! - phase names are `build`, `validate`, `test` and `container-host-test`;
//! - step names, like loop names, are letters, digits, `_` and `-`, so that chaining
//!   expressions (`{{ build.Step.outputs.stdout }}`) can always name them;
//! - `{{ Name }}` must name a declared parameter or constant.

use crate::actions::{self, ActionKind};
use crate::condition;
use crate::lines::{LineIndex, Seg};
use crate::variables::{parse_reference, Reference};
use crate::yaml::{Mapping, Value};
use std::collections::HashSet;
use std::fmt;

/// Default `timeoutSeconds` of a step (two hours).
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 7200;

/// The platform a document is validated for: its actions must exist there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Linux,
    Windows,
    MacOs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub name: Option<String>,
    pub description: Option<String>,
    pub parameters: Vec<Parameter>,
    pub constants: Vec<Constant>,
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    /// `None`: the parameter is required.
    pub default: Option<String>,
    pub description: Option<String>,
    /// When given, the only values the parameter may take.
    pub allowed_values: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constant {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Abort,
    Continue,
    Ignore,
}

impl OnFailure {
    pub fn name(self) -> &'static str {
        match self {
            OnFailure::Abort => "Abort",
            OnFailure::Continue => "Continue",
            OnFailure::Ignore => "Ignore",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub action: ActionKind,
    /// `Null` when the step has none (UpdateOS, Reboot).
    pub inputs: Value,
    pub on_failure: OnFailure,
    /// As written: -1 means no limit.
    pub timeout_seconds: i64,
    pub max_attempts: u32,
    pub condition: Option<Value>,
    pub looping: Option<Loop>,
    pub disable_logging: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    pub name: Option<String>,
    pub kind: LoopKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoopKind {
    /// Inclusive range.
    For {
        start: i64,
        end: i64,
        update_by: i64,
    },
    /// Items may hold `{{ }}` references, substituted when the step starts.
    ForEach(Vec<String>),
    /// A string (often a chaining expression) split on one character.
    Delimited { list: String, delimiter: char },
}

/// One thing wrong with a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub phase: Option<String>,
    pub step: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = Vec::new();
        if let Some(p) = &self.phase {
            place.push(format!("phase '{p}'"));
        }
        if let Some(s) = &self.step {
            place.push(format!("step '{s}'"));
        }
        if let Some(l) = self.line {
            place.push(format!("line {l}"));
        }
        if place.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", place.join(", "), self.message)
        }
    }
}

/// Everything wrong with a document, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.problems.iter().map(|p| p.to_string()).collect();
        write!(f, "{}", texts.join("; "))
    }
}

impl std::error::Error for DocumentError {}

const PHASE_NAMES: [&str; 4] = ["build", "validate", "test", "container-host-test"];
const TOP_KEYS: [&str; 6] = [
    "name",
    "description",
    "schemaVersion",
    "parameters",
    "constants",
    "phases",
];
const STEP_KEYS: [&str; 9] = [
    "name",
    "action",
    "inputs",
    "onFailure",
    "timeoutSeconds",
    "maxAttempts",
    "if",
    "loop",
    "disableLogging",
];
const DELIMITERS: [char; 10] = ['.', ',', ';', ':', '\n', '\t', ' ', '-', '_', '\r'];

/// Parses and validates a document for `platform`.
pub fn parse(text: &str, platform: Platform) -> Result<Document, DocumentError> {
    // A UTF-8 byte order mark (Windows editors write one) confuses the YAML parser when the top
    // mapping has more than one key; it changes no line numbers.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = match crate::yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Err(DocumentError {
                problems: vec![Problem {
                    phase: None,
                    step: None,
                    line: e.location().map(|l| l.line()),
                    message: format!("the document is not valid YAML: {}", yaml_message(&e)),
                }],
            })
        }
    };
    let mut reader = Reader {
        text,
        lines: None,
        problems: Vec::new(),
        platform,
    };
    let doc = reader.document(&value);
    if reader.problems.is_empty() {
        if let Some(doc) = doc {
            return Ok(doc);
        }
    }
    Err(DocumentError {
        problems: reader.problems,
    })
}

/// The YAML parser's message without its own " at line N column M" (the problem has the line).
fn yaml_message(e: &crate::yaml::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Where in the document a problem is: for messages and line lookup.
#[derive(Clone, Copy)]
struct At<'a> {
    phase: Option<(usize, &'a str)>,
    step: Option<(usize, &'a str)>,
}

const TOP: At = At {
    phase: None,
    step: None,
};

struct Reader<'t> {
    text: &'t str,
    lines: Option<LineIndex>,
    problems: Vec<Problem>,
    platform: Platform,
}

impl Reader<'_> {
    /// Records a problem at `at`, with the line of `field` (a key in the step, the phase or the
    /// document) when it can be found.
    fn problem(&mut self, at: At, field: &[Seg], message: impl Into<String>) {
        let lines = self
            .lines
            .get_or_insert_with(|| LineIndex::build(self.text));
        let mut path: Vec<Seg> = Vec::new();
        if let Some((i, _)) = at.phase {
            path.extend([Seg::Key("phases"), Seg::Index(i)]);
            if let Some((j, _)) = at.step {
                path.extend([Seg::Key("steps"), Seg::Index(j)]);
            }
        }
        path.extend_from_slice(field);
        let line = lines.line(&path);
        self.problems.push(Problem {
            phase: at.phase.map(|(_, n)| n.to_string()),
            step: at.step.map(|(_, n)| n.to_string()),
            line,
            message: message.into(),
        });
    }

    fn document(&mut self, value: &Value) -> Option<Document> {
        let Some(map) = value.as_mapping() else {
            self.problem(
                TOP,
                &[],
                format!(
                    "a component document is a mapping with schemaVersion and phases, found {}",
                    actions::inputs::describe(value)
                ),
            );
            return None;
        };
        for key in map.keys() {
            match key.as_str() {
                Some(k) if TOP_KEYS.contains(&k) => {}
                Some(k) => self.problem(
                    TOP,
                    &[Seg::Key(k)],
                    format!("unknown key `{k}` (a document has {})", TOP_KEYS.join(", ")),
                ),
                None => self.problem(TOP, &[], "document keys must be strings"),
            }
        }
        match map.get("schemaVersion") {
            None => self.problem(TOP, &[], "schemaVersion is required (1.0)"),
            Some(v) if is_schema_1_0(v) => {}
            Some(_) => self.problem(
                TOP,
                &[Seg::Key("schemaVersion")],
                "schemaVersion must be 1.0",
            ),
        }
        let name = self.optional_text(map, "name");
        let description = self.optional_text(map, "description");
        let (parameters, constants) = self.variables(map);
        let declared: HashSet<String> = parameters
            .iter()
            .map(|p| p.name.clone())
            .chain(constants.iter().map(|c| c.name.clone()))
            .collect();
        let phases = self.phases(map, &declared);
        Some(Document {
            name,
            description,
            parameters,
            constants,
            phases,
        })
    }

    fn optional_text(&mut self, map: &Mapping, key: &str) -> Option<String> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => match scalar_text(v) {
                Some(s) => Some(s),
                None => {
                    self.problem(TOP, &[Seg::Key(key)], format!("{key} must be a string"));
                    None
                }
            },
        }
    }

    fn variables(&mut self, map: &Mapping) -> (Vec<Parameter>, Vec<Constant>) {
        let mut parameters = Vec::new();
        let mut constants = Vec::new();
        let mut seen = HashSet::new();
        for section in ["parameters", "constants"] {
            let Some(list) = map.get(section) else {
                continue;
            };
            if list.is_null() {
                continue;
            }
            let Some(items) = list.as_sequence() else {
                self.problem(
                    TOP,
                    &[Seg::Key(section)],
                    format!("{section} must be a list of single-key mappings"),
                );
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                let field = [Seg::Key(section), Seg::Index(i)];
                let entry = item.as_mapping().filter(|m| m.len() == 1);
                let Some((key, body)) = entry.and_then(|m| m.iter().next()) else {
                    self.problem(
                        TOP,
                        &field,
                        format!("{section}[{i}] must be a mapping with one key, the name"),
                    );
                    continue;
                };
                let Some(name) = key.as_str() else {
                    self.problem(
                        TOP,
                        &field,
                        format!("{section}[{i}]: the name must be a string"),
                    );
                    continue;
                };
                if !is_variable_name(name) {
                    self.problem(
                        TOP,
                        &field,
                        format!(
                            "{section}[{i}]: name `{name}` must be 3-128 letters, digits, `_` or `-`"
                        ),
                    );
                }
                if !seen.insert(name.to_string()) {
                    self.problem(
                        TOP,
                        &field,
                        format!(
                            "{section}[{i}]: `{name}` is declared twice (names are unique across parameters and constants)"
                        ),
                    );
                }
                let Some(body) = body.as_mapping() else {
                    self.problem(
                        TOP,
                        &field,
                        format!(
                            "{section}[{i}] `{name}` must be a mapping with type and {}",
                            if section == "parameters" {
                                "default"
                            } else {
                                "value"
                            }
                        ),
                    );
                    continue;
                };
                let allowed: &[&str] = if section == "parameters" {
                    &["type", "default", "description", "allowedValues"]
                } else {
                    &["type", "value", "description"]
                };
                for k in body.keys() {
                    let k = k.as_str().unwrap_or("?");
                    if !allowed.contains(&k) {
                        self.problem(
                            TOP,
                            &field,
                            format!(
                                "{section}[{i}] `{name}`: unknown key `{k}` (allowed: {})",
                                allowed.join(", ")
                            ),
                        );
                    }
                }
                match body.get("type").and_then(Value::as_str) {
                    Some("string") => {}
                    Some(other) => self.problem(
                        TOP,
                        &field,
                        format!("{section}[{i}] `{name}`: type `{other}` is not supported; the only type is string"),
                    ),
                    None => self.problem(
                        TOP,
                        &field,
                        format!("{section}[{i}] `{name}`: type is required (string)"),
                    ),
                }
                let description = body.get("description").and_then(scalar_text);
                if section == "parameters" {
                    let default = match body.get("default") {
                        None => None,
                        Some(v) => match scalar_text(v) {
                            Some(s) => Some(s),
                            None => {
                                self.problem(
                                    TOP,
                                    &field,
                                    format!("parameters[{i}] `{name}`: default must be a string"),
                                );
                                None
                            }
                        },
                    };
                    let allowed_values = match body.get("allowedValues") {
                        None => None,
                        Some(v) => match v.as_sequence().and_then(|items| {
                            items.iter().map(scalar_text).collect::<Option<Vec<_>>>()
                        }) {
                            Some(values) if !values.is_empty() => Some(values),
                            _ => {
                                self.problem(TOP, &field, format!("parameters[{i}] `{name}`: allowedValues must be a non-empty list of strings"));
                                None
                            }
                        },
                    };
                    if let (Some(d), Some(allowed)) = (&default, &allowed_values) {
                        if !allowed.contains(d) {
                            self.problem(TOP, &field, format!("parameters[{i}] `{name}`: default `{d}` is not one of allowedValues"));
                        }
                    }
                    parameters.push(Parameter {
                        name: name.to_string(),
                        default,
                        description,
                        allowed_values,
                    });
                } else {
                    match body.get("value").and_then(scalar_text) {
                        Some(value) => constants.push(Constant {
                            name: name.to_string(),
                            value,
                        }),
                        None => self.problem(
                            TOP,
                            &field,
                            format!(
                                "constants[{i}] `{name}`: value is required and must be a string"
                            ),
                        ),
                    }
                }
            }
        }
        (parameters, constants)
    }

    fn phases(&mut self, map: &Mapping, declared: &HashSet<String>) -> Vec<Phase> {
        let Some(list) = map.get("phases") else {
            self.problem(
                TOP,
                &[],
                "phases is required: a list of phases with name and steps",
            );
            return Vec::new();
        };
        let Some(items) = list.as_sequence().filter(|s| !s.is_empty()) else {
            self.problem(
                TOP,
                &[Seg::Key("phases")],
                "phases must be a non-empty list of phases, each with name and steps",
            );
            return Vec::new();
        };
        let mut phases = Vec::new();
        let mut names = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let name = item.get("name").and_then(scalar_text).unwrap_or_default();
            let at = At {
                phase: Some((i, name.as_str())),
                step: None,
            };
            let Some(phase) = item.as_mapping() else {
                self.problem(
                    at,
                    &[],
                    format!("phases[{i}] must be a mapping with name and steps"),
                );
                continue;
            };
            for key in phase.keys() {
                let k = key.as_str().unwrap_or("?");
                if k != "name" && k != "steps" {
                    self.problem(
                        at,
                        &[Seg::Key(k)],
                        format!("unknown key `{k}` in a phase (a phase has name and steps)"),
                    );
                }
            }
            if name.is_empty() {
                self.problem(at, &[], format!("phases[{i}]: name is required"));
            } else if !PHASE_NAMES.contains(&name.as_str()) {
                self.problem(
                    at,
                    &[Seg::Key("name")],
                    format!(
                        "unknown phase name `{name}` (phases are {})",
                        PHASE_NAMES.join(", ")
                    ),
                );
            } else if !names.insert(name.clone()) {
                self.problem(
                    at,
                    &[Seg::Key("name")],
                    format!("phase `{name}` appears twice; phase names are unique"),
                );
            }
            let steps = self.steps(phase, at, declared);
            phases.push(Phase {
                name: name.clone(),
                steps,
            });
        }
        if !phases
            .iter()
            .any(|p| ["build", "validate", "test"].contains(&p.name.as_str()))
        {
            self.problem(
                TOP,
                &[Seg::Key("phases")],
                "a document needs at least one of the phases build, validate or test",
            );
        }
        phases
    }

    fn steps(&mut self, phase: &Mapping, at: At, declared: &HashSet<String>) -> Vec<Step> {
        let Some(items) = phase
            .get("steps")
            .and_then(Value::as_sequence)
            .filter(|s| !s.is_empty())
        else {
            self.problem(
                at,
                &[Seg::Key("steps")],
                "steps must be a non-empty list of steps",
            );
            return Vec::new();
        };
        let mut steps = Vec::new();
        let mut names = HashSet::new();
        let mut loop_names = HashSet::new();
        for (j, item) in items.iter().enumerate() {
            let name = item.get("name").and_then(scalar_text).unwrap_or_default();
            let at = At {
                phase: at.phase,
                step: Some((j, name.as_str())),
            };
            let Some(map) = item.as_mapping() else {
                self.problem(
                    at,
                    &[],
                    format!("steps[{j}] must be a mapping with name, action and inputs"),
                );
                continue;
            };
            if !name.is_empty() && !names.insert(name.clone()) {
                self.problem(at, &[Seg::Key("name")], format!("step `{name}` appears twice in this phase; step names are unique in a phase"));
            }
            if let Some(step) = self.step(map, &name, j, at, declared, &mut loop_names) {
                steps.push(step);
            }
        }
        steps
    }

    fn step(
        &mut self,
        map: &Mapping,
        name: &str,
        j: usize,
        at: At,
        declared: &HashSet<String>,
        loop_names: &mut HashSet<String>,
    ) -> Option<Step> {
        let before = self.problems.len();
        for key in map.keys() {
            let k = key.as_str().unwrap_or("?");
            if !STEP_KEYS.contains(&k) {
                self.problem(
                    at,
                    &[Seg::Key(k)],
                    format!(
                        "unknown key `{k}` in a step (a step has {})",
                        STEP_KEYS.join(", ")
                    ),
                );
            }
        }
        if name.is_empty() {
            self.problem(at, &[], format!("steps[{j}]: name is required"));
        } else if !is_step_name(name) {
            self.problem(
                at,
                &[Seg::Key("name")],
                format!("step name `{name}` must be letters, digits, `_` or `-` (up to 128)"),
            );
        }
        let action = match map.get("action") {
            None => {
                self.problem(at, &[], "action is required");
                None
            }
            Some(v) => match v.as_str().and_then(ActionKind::parse) {
                Some(kind) => {
                    let unsupported = match self.platform {
                        Platform::Linux | Platform::MacOs => kind.windows_only(),
                        Platform::Windows => {
                            matches!(
                                kind,
                                ActionKind::ExecuteBash
                                    | ActionKind::CreateSymlink
                                    | ActionKind::SetFileOwner
                                    | ActionKind::SetFolderOwner
                                    | ActionKind::SetFilePermissions
                                    | ActionKind::SetFolderPermissions
                            )
                        }
                    };
                    if unsupported {
                        let platform = match self.platform {
                            Platform::Linux => "Linux",
                            Platform::Windows => "Windows",
                            Platform::MacOs => "macOS",
                        };
                        self.problem(
                            at,
                            &[Seg::Key("action")],
                            format!("action {} is not supported on {platform}", kind.name()),
                        );
                    }
                    Some(kind)
                }
                None => {
                    let shown = scalar_text(v).unwrap_or_else(|| "?".into());
                    self.problem(
                        at,
                        &[Seg::Key("action")],
                        format!("unknown action `{shown}`"),
                    );
                    None
                }
            },
        };
        let on_failure = match map.get("onFailure") {
            None => OnFailure::Abort,
            Some(v) => match v.as_str() {
                Some("Abort") => OnFailure::Abort,
                Some("Continue") => OnFailure::Continue,
                Some("Ignore") => OnFailure::Ignore,
                _ => {
                    self.problem(
                        at,
                        &[Seg::Key("onFailure")],
                        "onFailure must be Abort, Continue or Ignore",
                    );
                    OnFailure::Abort
                }
            },
        };
        let timeout_seconds = match map.get("timeoutSeconds") {
            None => {
                if action == Some(ActionKind::ExecuteDocument) {
                    -1
                } else {
                    DEFAULT_TIMEOUT_SECONDS
                }
            }
            Some(v) => match integer(v) {
                Some(n) if n == -1 || n > 0 => {
                    if action == Some(ActionKind::ExecuteDocument) && n != -1 {
                        self.problem(
                            at,
                            &[Seg::Key("timeoutSeconds")],
                            "ExecuteDocument steps cannot set timeoutSeconds (it is always -1)",
                        );
                    }
                    n
                }
                _ => {
                    self.problem(at, &[Seg::Key("timeoutSeconds")], "timeoutSeconds must be a positive whole number of seconds, or -1 for no limit");
                    DEFAULT_TIMEOUT_SECONDS
                }
            },
        };
        let max_attempts = match map.get("maxAttempts") {
            None => 1,
            Some(v) => match integer(v) {
                Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => {
                    if action == Some(ActionKind::ExecuteDocument) && n != 1 {
                        self.problem(
                            at,
                            &[Seg::Key("maxAttempts")],
                            "ExecuteDocument steps cannot set maxAttempts (it is always 1)",
                        );
                    }
                    n as u32
                }
                _ => {
                    self.problem(
                        at,
                        &[Seg::Key("maxAttempts")],
                        "maxAttempts must be a whole number of at least 1",
                    );
                    1
                }
            },
        };
        let disable_logging = match map.get("disableLogging") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.problem(
                    at,
                    &[Seg::Key("disableLogging")],
                    "disableLogging must be true or false",
                );
                false
            }
        };
        let condition = map.get("if").cloned();
        if let Some(c) = &condition {
            if let Err(message) = condition::check(c, true) {
                self.problem(at, &[Seg::Key("if")], format!("if: {message}"));
            }
        }
        let looping = map
            .get("loop")
            .and_then(|v| self.looping(v, at, loop_names));
        let inputs = map.get("inputs").cloned().unwrap_or(Value::Null);
        if let Some(kind) = action {
            let optional = matches!(kind, ActionKind::UpdateOS | ActionKind::Reboot);
            if inputs.is_null() && !optional {
                self.problem(at, &[], format!("inputs is required for {}", kind.name()));
            } else {
                let checked = match kind {
                    ActionKind::Assert => condition::check(&inputs, false),
                    ActionKind::ExecuteDocument => check_execute_document(&inputs),
                    _ => actions::validate(kind, &inputs),
                };
                if let Err(message) = checked {
                    // Platform problems were reported on the action already.
                    if !message.contains("is not supported on") {
                        self.problem(at, &[Seg::Key("inputs")], format!("inputs: {message}"));
                    }
                }
            }
        }
        self.check_references(map, at, declared);
        if self.problems.len() > before {
            return None;
        }
        Some(Step {
            name: name.to_string(),
            action: action?,
            inputs,
            on_failure,
            timeout_seconds,
            max_attempts,
            condition,
            looping,
            disable_logging,
        })
    }

    fn looping(&mut self, v: &Value, at: At, loop_names: &mut HashSet<String>) -> Option<Loop> {
        let field = [Seg::Key("loop")];
        let Some(map) = v.as_mapping() else {
            self.problem(at, &field, "loop must be a mapping with for or forEach");
            return None;
        };
        for key in map.keys() {
            let k = key.as_str().unwrap_or("?");
            if !["name", "for", "forEach"].contains(&k) {
                self.problem(
                    at,
                    &field,
                    format!("loop: unknown key `{k}` (a loop has name and for or forEach)"),
                );
            }
        }
        let name = match map.get("name") {
            None => None,
            Some(n) => match n.as_str() {
                Some(n) if is_step_name(n) && n != "loop" => {
                    if !loop_names.insert(n.to_string()) {
                        self.problem(at, &field, format!("loop name `{n}` is used twice in this phase; loop names are unique in a phase"));
                    }
                    Some(n.to_string())
                }
                _ => {
                    self.problem(
                        at,
                        &field,
                        "loop name must be letters, digits, `_` or `-`, and not `loop`",
                    );
                    None
                }
            },
        };
        let kind = match (map.get("for"), map.get("forEach")) {
            (Some(_), Some(_)) | (None, None) => {
                self.problem(at, &field, "a loop has exactly one of for and forEach");
                return None;
            }
            (Some(f), None) => {
                let get = |k: &str| f.get(k).and_then(integer);
                match (get("start"), get("end"), get("updateBy")) {
                    (Some(start), Some(end), Some(update_by)) => {
                        if update_by == 0 {
                            self.problem(at, &field, "loop for: updateBy must not be 0");
                            return None;
                        }
                        if (end - start).signum() * update_by.signum() < 0 {
                            self.problem(at, &field, format!("loop for: from {start} to {end} by {update_by} never ends; updateBy must move start toward end"));
                            return None;
                        }
                        LoopKind::For {
                            start,
                            end,
                            update_by,
                        }
                    }
                    _ => {
                        self.problem(
                            at,
                            &field,
                            "loop for needs whole numbers start, end and updateBy (no variables)",
                        );
                        return None;
                    }
                }
            }
            (None, Some(Value::Sequence(items))) => {
                let texts: Option<Vec<String>> = items.iter().map(scalar_text).collect();
                match texts {
                    Some(t) if !t.is_empty() => LoopKind::ForEach(t),
                    _ => {
                        self.problem(
                            at,
                            &field,
                            "loop forEach must be a non-empty list of strings",
                        );
                        return None;
                    }
                }
            }
            (None, Some(Value::Mapping(m))) => {
                let list = m.get("list").and_then(scalar_text);
                let delimiter = match m.get("delimiter") {
                    None => Some(','),
                    Some(d) => scalar_text(d).and_then(|d| {
                        let mut chars = d.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) if DELIMITERS.contains(&c) => Some(c),
                            _ => None,
                        }
                    }),
                };
                match (list, delimiter) {
                    (Some(list), Some(delimiter)) => LoopKind::Delimited { list, delimiter },
                    (None, _) => {
                        self.problem(
                            at,
                            &field,
                            "loop forEach: list is required and must be a string",
                        );
                        return None;
                    }
                    (_, None) => {
                        self.problem(at, &field, "loop forEach: delimiter must be one of . , ; : - _ space, tab or newline");
                        return None;
                    }
                }
            }
            (None, Some(_)) => {
                self.problem(
                    at,
                    &field,
                    "loop forEach must be a list, or a mapping with list and delimiter",
                );
                return None;
            }
        };
        Some(Loop { name, kind })
    }

    /// Every `{{ ... }}` in the step must be a well-formed reference, and a plain name must be
    /// a declared parameter or constant.
    fn check_references(&mut self, map: &Mapping, at: At, declared: &HashSet<String>) {
        let mut found = Vec::new();
        for key in ["inputs", "if", "loop"] {
            if let Some(v) = map.get(key) {
                collect_references(v, &mut found);
            }
        }
        for expr in found {
            match parse_reference(&expr) {
                None => self.problem(at, &[], format!("`{{{{ {expr} }}}}` is not a valid reference (a parameter or constant name, phase.step.outputs.name, phase.step.inputs[i].name, or loop.index/loop.value)")),
                Some(Reference::Variable(name)) if !declared.contains(&name) => self.problem(
                    at,
                    &[],
                    format!("`{{{{ {name} }}}}` names no parameter or constant of this document"),
                ),
                Some(_) => {}
            }
        }
    }
}

fn collect_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                out.push(after[..end].trim().to_string());
                rest = &after[end + 2..];
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| collect_references(i, out)),
        Value::Mapping(m) => m.values().for_each(|i| collect_references(i, out)),
        _ => {}
    }
}

fn check_execute_document(inputs: &Value) -> Result<(), String> {
    let map = inputs
        .as_mapping()
        .ok_or("inputs must be a mapping with document")?;
    for key in map.keys() {
        let k = key.as_str().unwrap_or("?");
        if ![
            "document",
            "document-s3-bucket-owner",
            "phases",
            "parameters",
        ]
        .contains(&k)
        {
            return Err(format!("unknown key `{k}` (ExecuteDocument takes document, document-s3-bucket-owner, phases, parameters)"));
        }
    }
    if map.get("document").and_then(scalar_text).is_none() {
        return Err("document is required: a file path, s3:// URI or component ARN".into());
    }
    if let Some(p) = map.get("phases") {
        if scalar_text(p).is_none() {
            return Err("phases must be a comma-separated string".into());
        }
    }
    if let Some(params) = map.get("parameters") {
        let ok = params.as_sequence().is_some_and(|items| {
            items.iter().all(|i| {
                i.get("name").and_then(scalar_text).is_some()
                    && i.get("value").and_then(scalar_text).is_some()
            })
        });
        if !ok {
            return Err("parameters must be a list of {name, value}".into());
        }
    }
    Ok(())
}

fn is_schema_1_0(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64() == Some(1.0),
        Value::String(s) => s == "1.0" || s == "1",
        _ => false,
    }
}

pub use crate::actions::inputs::scalar_text;

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn is_variable_name(name: &str) -> bool {
    (3..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_step_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Document {
    /// Parameters without a default, which a run (or a recipe) must give.
    pub fn required_parameters(&self) -> impl Iterator<Item = &Parameter> {
        self.parameters.iter().filter(|p| p.default.is_none())
    }

    /// Image Builder's component type: TEST when the only phase is `test`.
    pub fn is_test_only(&self) -> bool {
        self.phases.iter().all(|p| p.name == "test")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document with one build step made of `step` (YAML lines at step indentation).
    fn with_step(step: &str) -> String {
        let body: String = step.lines().map(|l| format!("        {l}\n")).collect();
        format!("schemaVersion: 1.0\nparameters:\n  - Known: {{type: string, default: x}}\nphases:\n  - name: build\n    steps:\n      - name: S\n{body}")
    }

    #[test]
    fn step_rules() {
        // (step body, fragment of the message; "" = valid)
        let cases: &[(&str, &str)] = &[
            ("action: ExecuteBash\ninputs: {commands: [echo]}", ""),
            ("action: Reboot", ""),
            ("action: UpdateOS", ""),
            ("action: ExecuteBash", "inputs is required for ExecuteBash"),
            ("action: executebash\ninputs: {commands: [x]}", "unknown action `executebash`"),
            ("action: InstallMSI\ninputs: {path: x}", "action InstallMSI is not supported on Linux"),
            ("action: SetRegistry\ninputs: []", "action SetRegistry is not supported on Linux"),
            ("action: Reboot\nonFailure: abort", "onFailure must be Abort, Continue or Ignore"),
            ("action: Reboot\ntimeoutSeconds: 0", "timeoutSeconds must be a positive"),
            ("action: Reboot\ntimeoutSeconds: -2", "timeoutSeconds must be a positive"),
            ("action: Reboot\ntimeoutSeconds: -1", ""),
            ("action: Reboot\nmaxAttempts: 0", "maxAttempts must be a whole number of at least 1"),
            ("action: Reboot\nmaxAttempts: 3", ""),
            ("action: Reboot\nretries: 3", "unknown key `retries` in a step"),
            ("action: Reboot\ndisableLogging: yes-please", "disableLogging must be true or false"),
            ("action: ExecuteDocument\ninputs: {document: /d.yaml}", ""),
            ("action: ExecuteDocument\ntimeoutSeconds: 60\ninputs: {document: /d.yaml}", "ExecuteDocument steps cannot set timeoutSeconds"),
            ("action: ExecuteDocument\nmaxAttempts: 2\ninputs: {document: /d.yaml}", "ExecuteDocument steps cannot set maxAttempts"),
            ("action: ExecuteDocument\ninputs: {phases: build}", "document is required"),
            ("action: ExecuteDocument\ninputs: {document: /d, parameters: [{name: a}]}", "parameters must be a list of {name, value}"),
            ("action: Assert\ninputs: {stringEquals: a, value: a}", ""),
            ("action: Assert\ninputs: {stringEquals: a}", "stringEquals needs `value`"),
            ("action: Assert\ninputs: {fileSHA256Equals: abc}", "fileSHA256Equals needs `path`"),
            ("action: Reboot\nif: {fileExists: /x, then: Skip}", ""),
            ("action: Reboot\nif: {fileExists: /x, then: Later}", "then must be Abort, Execute or Skip"),
            ("action: Reboot\nif: {fileExists: /x, folderExists: /y}", "exactly one operator"),
            ("action: Reboot\nif: {and: []}", "and takes a non-empty list"),
            ("action: Reboot\nif: {isCool: x}", "unknown operator `isCool`"),
            ("action: Reboot\nif: {patternMatches: '(', value: x}", "invalid regular expression"),
            ("action: Reboot\nif: {not: {not: {not: {fileExists: /x}}}}", ""),
            ("action: Reboot\nif: {not: {not: {not: {not: {fileExists: /x}}}}}", "at most 4 levels"),
            ("action: Reboot\nloop: {for: {start: 1, end: 3, updateBy: 1}}", ""),
            ("action: Reboot\nloop: {for: {start: 1, end: 3, updateBy: 0}}", "updateBy must not be 0"),
            ("action: Reboot\nloop: {for: {start: 1, end: 3, updateBy: -1}}", "never ends"),
            ("action: Reboot\nloop: {for: {start: '{{ Known }}', end: 3, updateBy: 1}}", "whole numbers start, end and updateBy"),
            ("action: Reboot\nloop: {forEach: [a, b], for: {start: 1, end: 1, updateBy: 1}}", "exactly one of for and forEach"),
            ("action: Reboot\nloop: {forEach: []}", "non-empty list"),
            ("action: Reboot\nloop: {forEach: {list: 'a b', delimiter: ' '}}", ""),
            ("action: Reboot\nloop: {forEach: {list: 'a b', delimiter: '|'}}", "delimiter must be one of"),
            ("action: Reboot\nloop: {name: loop, forEach: [a]}", "not `loop`"),
            ("action: Reboot\nloop: {forEach: [a], until: b}", "loop: unknown key `until`"),
            ("action: ExecuteBash\ninputs: {commands: ['{{ Known }} {{ build.S.outputs.stdout }} {{ loop.value }}']}", ""),
            ("action: ExecuteBash\ninputs: {commands: ['{{ Unknown }}']}", "`{{ Unknown }}` names no parameter or constant"),
            ("action: ExecuteBash\ninputs: {commands: ['{{ a.b.c }}']}", "is not a valid reference"),
            ("action: ExecuteBash\ninputs: {commands: ['{{ aws:ssm:resolve(/my/param) }}']}", ""),
        ];
        for (step, want) in cases {
            let text = with_step(step);
            match (parse(&text, Platform::Linux), *want) {
                (Ok(_), "") => {}
                (Err(e), want) if !want.is_empty() => {
                    let message = e.to_string();
                    assert!(
                        message.contains(want),
                        "{step}\nwant: {want}\ngot: {message}"
                    );
                    // Problems inside a step name it, its phase and its line.
                    assert!(
                        message.starts_with("phase 'build', step 'S', line "),
                        "{step}: {message}"
                    );
                }
                (got, want) => panic!("{step}\nwant: {want:?}\ngot: {got:?}"),
            }
        }
    }

    #[test]
    fn document_rules() {
        let step = "    steps:\n      - {name: S, action: Reboot}\n";
        let cases: Vec<(String, &str)> = vec![
            (format!("schemaVersion: 1.0\nphases:\n  - name: build\n{step}"), ""),
            (format!("schemaVersion: '1.0'\nphases:\n  - name: test\n{step}"), ""),
            (format!("schemaVersion: 2.0\nphases:\n  - name: build\n{step}"), "line 1: schemaVersion must be 1.0"),
            (format!("phases:\n  - name: build\n{step}"), "schemaVersion is required"),
            (format!("schemaVersion: 1.0\nextra: 1\nphases:\n  - name: build\n{step}"), "line 2: unknown key `extra`"),
            ("schemaVersion: 1.0\nphases: {name: build}\n".into(), "phases must be a non-empty list"),
            (format!("schemaVersion: 1.0\nphases:\n  - name: container-host-test\n{step}"), "needs at least one of the phases build, validate or test"),
            (format!("schemaVersion: 1.0\nphases:\n  - name: build\n{step}  - name: build\n{step}"), "phase 'build', line 6: phase `build` appears twice"),
            (format!("schemaVersion: 1.0\nphases:\n  - name: deploy\n{step}"), "unknown phase name `deploy`"),
            ("schemaVersion: 1.0\nphases:\n  - name: build\n    steps: []\n".into(), "steps must be a non-empty list"),
            (format!("schemaVersion: 1.0\nparameters:\n  - Ab: {{type: string}}\nphases:\n  - name: build\n{step}"), "line 3: parameters[0]: name `Ab` must be 3-128"),
            (format!("schemaVersion: 1.0\nparameters:\n  - Abc: {{type: string}}\nconstants:\n  - Abc: {{type: string, value: v}}\nphases:\n  - name: build\n{step}"), "`Abc` is declared twice"),
            (format!("schemaVersion: 1.0\nparameters:\n  - Abc: {{type: number}}\nphases:\n  - name: build\n{step}"), "type `number` is not supported"),
            (format!("schemaVersion: 1.0\nparameters:\n  - Abc: {{type: string, default: z, allowedValues: [x, y]}}\nphases:\n  - name: build\n{step}"), "default `z` is not one of allowedValues"),
            (format!("schemaVersion: 1.0\nconstants:\n  - Abc: {{type: string}}\nphases:\n  - name: build\n{step}"), "value is required"),
            ("schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: A, action: Reboot}\n      - {name: A, action: Reboot}\n".into(), "phase 'build', step 'A', line 6: step `A` appears twice"),
            ("schemaVersion: 1.0\nphases:\n  - name: 'build\n".into(), "the document is not valid YAML"),
            ("".into(), "a component document is a mapping"),
            ("just text".into(), "a component document is a mapping"),
        ];
        for (text, want) in &cases {
            match (parse(text, Platform::Linux), *want) {
                (Ok(_), "") => {}
                (Err(e), want) if !want.is_empty() => {
                    assert!(
                        e.to_string().contains(want),
                        "{text}\nwant: {want}\ngot: {e}"
                    )
                }
                (got, want) => panic!("{text}\nwant: {want:?}\ngot: {got:?}"),
            }
        }
    }

    #[test]
    fn every_problem_is_reported_and_the_model_is_typed() {
        let text = "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: A, action: Nope}\n      - {name: B, action: Reboot, onFailure: Never}\n";
        let e = parse(text, Platform::Linux).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert_eq!(e.problems[0].line, Some(5));
        assert_eq!(e.problems[1].line, Some(6));

        let doc = parse(
            "name: n\nschemaVersion: 1.0\nparameters:\n  - Req: {type: string}\n  - Opt: {type: string, default: d}\nconstants:\n  - Con: {type: string, value: v}\nphases:\n  - name: test\n    steps:\n      - name: T\n        action: ExecuteBash\n        onFailure: Ignore\n        maxAttempts: 2\n        timeoutSeconds: 30\n        loop: {name: each, forEach: {list: 'a,b'}}\n        inputs: {commands: [x]}\n",
            Platform::Linux,
        )
        .unwrap();
        assert!(doc.is_test_only());
        let required: Vec<&str> = doc.required_parameters().map(|p| p.name.as_str()).collect();
        assert_eq!(required, ["Req"]);
        let step = &doc.phases[0].steps[0];
        assert_eq!(step.on_failure, OnFailure::Ignore);
        assert_eq!((step.max_attempts, step.timeout_seconds), (2, 30));
        assert_eq!(
            step.looping,
            Some(Loop {
                name: Some("each".into()),
                kind: LoopKind::Delimited {
                    list: "a,b".into(),
                    delimiter: ','
                }
            })
        );
    }

    #[test]
    fn platforms_decide_which_actions_exist() {
        let doc = |action: &str| {
            format!("schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: {action}\n        inputs: {{commands: [x]}}\n")
        };
        assert!(parse(&doc("ExecutePowerShell"), Platform::Windows).is_ok());
        let e = parse(&doc("ExecuteBash"), Platform::Windows).unwrap_err();
        assert!(e
            .to_string()
            .contains("action ExecuteBash is not supported on Windows"));
        assert!(parse(&doc("ExecuteBash"), Platform::MacOs).is_ok());
    }
}
