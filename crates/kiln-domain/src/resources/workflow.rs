//! Workflows: versioned documents that describe the steps of one stage of an image build
//! (build, test or distribution).
//!
//! The stage is part of the ARN, `workflow/<build|test|distribution>/<name>/<x.y.z>/<build>`, so
//! each stage is its own [`ResourceKind`]. As for components, the caller picks name and version
//! and Kiln numbers the builds ([`super::component::next_build`]); the document is kept verbatim
//! and its parameters are extracted once, at creation, by the API layer.
//!
//! The rules here are the ones the user guide states for workflow documents that do not depend
//! on YAML: at most [`MAX_STEPS`] steps with unique names. Which actions exist and where they
//! may be used is the step-action catalogue's (`kiln_workflow::actions::check_actions`).

use super::component::DocumentParameter;
use super::{Millis, Resource};
use crate::arn::{Arn, ResourceKind};
use crate::version::SemVer;
use serde::{Deserialize, Serialize};

/// "Up to 15 steps, run in document order" (user guide, workflow document schema).
pub const MAX_STEPS: usize = 15;

/// The parameter types a workflow document may declare; an omitted type means `string`.
pub const PARAMETER_TYPES: [&str; 4] = ["string", "integer", "boolean", "stringList"];

/// The values a step's `onFailure` may take.
pub const ON_FAILURE_VALUES: [&str; 2] = ["Abort", "Continue"];

/// The image creation stage a workflow applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowType {
    Build,
    Test,
    Distribution,
}

impl WorkflowType {
    pub const ALL: [WorkflowType; 3] = [
        WorkflowType::Build,
        WorkflowType::Test,
        WorkflowType::Distribution,
    ];

    /// The ARN kind of workflows of this stage.
    pub fn kind(self) -> ResourceKind {
        match self {
            WorkflowType::Build => ResourceKind::BuildWorkflow,
            WorkflowType::Test => ResourceKind::TestWorkflow,
            WorkflowType::Distribution => ResourceKind::DistributionWorkflow,
        }
    }

    pub fn from_kind(kind: ResourceKind) -> Option<WorkflowType> {
        WorkflowType::ALL.into_iter().find(|t| t.kind() == kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowType::Build => "BUILD",
            WorkflowType::Test => "TEST",
            WorkflowType::Distribution => "DISTRIBUTION",
        }
    }
}

/// Checks the number of steps and that their names are unique.
pub fn check_step_names<S: AsRef<str>>(names: &[S]) -> Result<(), String> {
    if names.is_empty() {
        return Err("steps: the workflow needs at least one step".to_string());
    }
    if names.len() > MAX_STEPS {
        return Err(format!(
            "steps: the workflow has {} steps; a workflow can have at most {MAX_STEPS}",
            names.len()
        ));
    }
    for (i, name) in names.iter().enumerate() {
        let name = name.as_ref();
        if names[..i].iter().any(|earlier| earlier.as_ref() == name) {
            return Err(format!(
                "steps[{i}].name: the step name '{name}' is used more than once; step names must be unique"
            ));
        }
    }
    Ok(())
}

/// One build version of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// The build-version ARN, `.../workflow/<stage>/<name>/<x.y.z>/<build>`.
    pub arn: Arn,
    /// The name as the caller wrote it for this build (the ARN holds the normalised form).
    pub name: String,
    pub version: SemVer,
    pub build: u32,
    pub workflow_type: WorkflowType,
    pub description: Option<String>,
    pub change_description: Option<String>,
    pub parameters: Vec<DocumentParameter>,
    /// The owning account's ID.
    pub owner: String,
    /// The YAML document exactly as given.
    pub data: String,
    pub kms_key_id: Option<String>,
    pub date_created: Millis,
}

impl Workflow {
    /// The version ARN this build belongs to, `.../workflow/<stage>/<name>/<x.y.z>`.
    pub fn version_arn(&self) -> Arn {
        self.arn.without_build()
    }

    /// Whether `other` would be the same build: the API refuses to create a build whose
    /// configuration is identical to the newest one. Tags and display name do not count.
    pub fn same_content(&self, other: &Workflow) -> bool {
        self.data == other.data
            && self.description == other.description
            && self.change_description == other.change_description
            && self.kms_key_id == other.kms_key_id
    }
}

impl Resource for Workflow {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for t in WorkflowType::ALL {
            assert_eq!(WorkflowType::from_kind(t.kind()), Some(t));
        }
        assert_eq!(WorkflowType::from_kind(ResourceKind::Component), None);
    }

    #[test]
    fn step_count_and_names() {
        assert!(check_step_names(&["a", "b"]).is_ok());
        assert!(check_step_names::<&str>(&[]).is_err());
        let many: Vec<String> = (0..16).map(|i| format!("s{i}")).collect();
        let err = check_step_names(&many).unwrap_err();
        assert!(err.contains("at most 15"), "{err}");
        assert!(check_step_names(&many[..15]).is_ok());
        let err = check_step_names(&["a", "b", "a"]).unwrap_err();
        assert!(err.starts_with("steps[2].name"), "{err}");
    }
}
