//! Workflows: versioned documents that describe the steps of one stage of an image build
//! (build, test or distribution).
//!
//! The stage is part of the ARN, `workflow/<build|test|distribution>/<name>/<x.y.z>/<build>`, so
//! each stage is its own [`ResourceKind`]. As for components, the caller picks name and version
//! and Kiln numbers the builds ([`super::component::next_build`]); the document is kept verbatim
//! and its parameters are extracted once, at creation, by the API layer.
//!
//! The rules here are the ones the user guide states for workflow documents that do not depend
//! on YAML: at most [`MAX_STEPS`] steps with unique names, and actions that exist and are allowed
//! in the workflow's stage ([`check_actions`]).

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

/// Where a step action may be used, per the user guide's step action reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stages {
    Any,
    BuildOrTest,
    TestOnly,
    DistributionOnly,
}

impl Stages {
    fn allows(self, stage: WorkflowType) -> bool {
        match self {
            Stages::Any => true,
            Stages::BuildOrTest => stage != WorkflowType::Distribution,
            Stages::TestOnly => stage == WorkflowType::Test,
            Stages::DistributionOnly => stage == WorkflowType::Distribution,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Stages::Any => "any",
            Stages::BuildOrTest => "BUILD and TEST",
            Stages::TestOnly => "TEST",
            Stages::DistributionOnly => "DISTRIBUTION",
        }
    }
}

const ACTIONS: [(&str, Stages); 18] = [
    ("LaunchInstance", Stages::Any),
    ("BootstrapInstanceForContainer", Stages::Any),
    ("ExecuteComponents", Stages::BuildOrTest),
    ("CollectImageMetadata", Stages::Any),
    ("CollectImageScanFindings", Stages::TestOnly),
    ("SanitizeInstance", Stages::Any),
    ("RunSysPrep", Stages::Any),
    ("RunCommand", Stages::Any),
    ("CreateImage", Stages::Any),
    ("CreateImageFromIso", Stages::Any),
    ("RegisterImage", Stages::Any),
    ("WaitForSSMAgent", Stages::Any),
    ("WaitForAction", Stages::Any),
    ("ExecuteStateMachine", Stages::Any),
    ("TerminateInstance", Stages::Any),
    ("DistributeImage", Stages::DistributionOnly),
    ("ModifyImageAttributes", Stages::DistributionOnly),
    ("ApplyImageConfigurations", Stages::DistributionOnly),
];

/// Container distribution replaces the AMI distribution actions; a workflow cannot mix them.
const DISTRIBUTE_CONTAINER_IMAGE: &str = "DistributeContainerImage";
const AMI_DISTRIBUTION_ACTIONS: [&str; 3] = [
    "DistributeImage",
    "ModifyImageAttributes",
    "ApplyImageConfigurations",
];

fn stages_of(action: &str) -> Option<Stages> {
    if action == DISTRIBUTE_CONTAINER_IMAGE {
        return Some(Stages::DistributionOnly);
    }
    ACTIONS
        .iter()
        .find(|(name, _)| *name == action)
        .map(|(_, stages)| *stages)
}

/// Checks the step actions of a workflow of type `stage`, given in step order: each must be a
/// known action allowed in that stage, and container and AMI distribution must not be mixed.
/// The message starts with the offending member (`steps[2].action`).
pub fn check_actions<S: AsRef<str>>(actions: &[S], stage: WorkflowType) -> Result<(), String> {
    for (i, action) in actions.iter().enumerate() {
        let action = action.as_ref();
        let Some(stages) = stages_of(action) else {
            return Err(format!(
                "steps[{i}].action: '{action}' is not a workflow step action; use one of: {}, {DISTRIBUTE_CONTAINER_IMAGE}",
                ACTIONS.map(|(name, _)| name).join(", ")
            ));
        };
        if !stages.allows(stage) {
            return Err(format!(
                "steps[{i}].action: '{action}' can only be used in {} workflows, not in a {} workflow",
                stages.describe(),
                stage.as_str()
            ));
        }
    }
    let has = |wanted: &str| actions.iter().position(|a| a.as_ref() == wanted);
    if let Some(container) = has(DISTRIBUTE_CONTAINER_IMAGE) {
        if let Some((i, ami)) = AMI_DISTRIBUTION_ACTIONS
            .iter()
            .find_map(|a| has(a).map(|i| (i, a)))
        {
            return Err(format!(
                "steps[{i}].action: '{ami}' cannot be used in a workflow that distributes a container image (steps[{container}] is {DISTRIBUTE_CONTAINER_IMAGE})"
            ));
        }
    }
    Ok(())
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
    fn actions_must_exist_and_suit_the_stage() {
        let build = ["LaunchInstance", "ExecuteComponents", "CreateImage"];
        assert!(check_actions(&build, WorkflowType::Build).is_ok());
        let err = check_actions(&build, WorkflowType::Distribution).unwrap_err();
        assert!(
            err.starts_with("steps[1].action: 'ExecuteComponents'"),
            "{err}"
        );
        let err = check_actions(&["CollectImageScanFindings"], WorkflowType::Build).unwrap_err();
        assert!(err.contains("only be used in TEST"), "{err}");
        let err = check_actions(&["LaunchInstance", "Nope"], WorkflowType::Test).unwrap_err();
        assert!(err.starts_with("steps[1].action: 'Nope' is not"), "{err}");
        let dist = ["WaitForAction", "DistributeImage", "ModifyImageAttributes"];
        assert!(check_actions(&dist, WorkflowType::Distribution).is_ok());
    }

    #[test]
    fn container_and_ami_distribution_do_not_mix() {
        assert!(check_actions(&["DistributeContainerImage"], WorkflowType::Distribution).is_ok());
        let err = check_actions(
            &["DistributeContainerImage", "DistributeImage"],
            WorkflowType::Distribution,
        )
        .unwrap_err();
        assert!(
            err.starts_with("steps[1].action: 'DistributeImage'"),
            "{err}"
        );
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
