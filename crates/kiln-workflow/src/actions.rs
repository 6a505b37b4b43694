//! The step-action catalogue (user guide, "Workflow step actions"): per action the workflow
//! types it may be used in, its default and maximum `timeoutSeconds`, whether it has a rollback,
//! its outputs, and whether Kiln may run it again after a restart interrupted it. It is the one
//! list of actions: CreateWorkflow checks documents against it ([`check_actions`]) and the
//! engine runs them by it.

use kiln_domain::resources::workflow::WorkflowType;

const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// Where a step action may be used, per the user guide's step action reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stages {
    Any,
    BuildOrTest,
    TestOnly,
    DistributionOnly,
}

impl Stages {
    pub fn allows(self, stage: WorkflowType) -> bool {
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

/// What the engine needs to know about one step action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    pub name: &'static str,
    pub stages: Stages,
    pub default_timeout_seconds: u64,
    pub max_timeout_seconds: u64,
    /// Whether the action undoes itself when a later step aborts the workflow (the guide names
    /// LaunchInstance, which terminates the instance, and CollectImageMetadata, which removes the
    /// SSM resources it made). Every other action records rollback status SKIPPED.
    pub has_rollback: bool,
    /// Whether a run interrupted by a Kiln restart may simply run again: true only for actions
    /// that create nothing and whose repetition is harmless.
    pub rerun_safe: bool,
    pub outputs: &'static [&'static str],
}

const RUN_OUTPUTS: &[&str] = &["runCommandId", "status", "output"];

const fn spec(
    name: &'static str,
    stages: Stages,
    default_timeout_seconds: u64,
    max_timeout_seconds: u64,
    has_rollback: bool,
    rerun_safe: bool,
    outputs: &'static [&'static str],
) -> ActionSpec {
    ActionSpec {
        name,
        stages,
        default_timeout_seconds,
        max_timeout_seconds,
        has_rollback,
        rerun_safe,
        outputs,
    }
}

/// All step actions, in the user guide's order.
pub const CATALOGUE: [ActionSpec; 19] = [
    spec(
        "LaunchInstance",
        Stages::Any,
        75 * MIN,
        720 * MIN,
        true,
        false,
        &["instanceId"],
    ),
    spec(
        "BootstrapInstanceForContainer",
        Stages::Any,
        60 * MIN,
        720 * MIN,
        false,
        false,
        RUN_OUTPUTS,
    ),
    spec(
        "ExecuteComponents",
        Stages::BuildOrTest,
        720 * MIN,
        DAY,
        false,
        false,
        RUN_OUTPUTS,
    ),
    spec(
        "CollectImageMetadata",
        Stages::Any,
        30 * MIN,
        720 * MIN,
        true,
        false,
        &["osVersion", "associationId"],
    ),
    spec(
        "CollectImageScanFindings",
        Stages::TestOnly,
        120 * MIN,
        720 * MIN,
        false,
        true,
        RUN_OUTPUTS,
    ),
    spec(
        "SanitizeInstance",
        Stages::Any,
        60 * MIN,
        720 * MIN,
        false,
        false,
        RUN_OUTPUTS,
    ),
    spec(
        "RunSysPrep",
        Stages::Any,
        60 * MIN,
        720 * MIN,
        false,
        false,
        RUN_OUTPUTS,
    ),
    spec(
        "RunCommand",
        Stages::Any,
        720 * MIN,
        720 * MIN,
        false,
        false,
        RUN_OUTPUTS,
    ),
    spec(
        "CreateImage",
        Stages::Any,
        720 * MIN,
        3 * DAY,
        false,
        false,
        &["imageId"],
    ),
    spec(
        "CreateImageFromIso",
        Stages::Any,
        720 * MIN,
        720 * MIN,
        false,
        false,
        &["amiName", "snapshotId", "architecture"],
    ),
    spec(
        "RegisterImage",
        Stages::Any,
        540 * MIN,
        720 * MIN,
        false,
        false,
        &["imageId"],
    ),
    spec(
        "WaitForSSMAgent",
        Stages::Any,
        60 * MIN,
        180 * MIN,
        false,
        true,
        &["status"],
    ),
    spec(
        "TerminateInstance",
        Stages::Any,
        30 * MIN,
        720 * MIN,
        false,
        true,
        &[],
    ),
    spec(
        "WaitForAction",
        Stages::Any,
        3 * DAY,
        7 * DAY,
        false,
        false,
        &["action", "reason"],
    ),
    spec(
        "ExecuteStateMachine",
        Stages::Any,
        6 * HOUR,
        DAY,
        false,
        false,
        &["executionArn", "output"],
    ),
    spec(
        "DistributeImage",
        Stages::DistributionOnly,
        360 * MIN,
        720 * MIN,
        false,
        false,
        &["distributedImages"],
    ),
    spec(
        "ModifyImageAttributes",
        Stages::DistributionOnly,
        120 * MIN,
        180 * MIN,
        false,
        false,
        &["modifiedImages"],
    ),
    spec(
        "ApplyImageConfigurations",
        Stages::DistributionOnly,
        360 * MIN,
        720 * MIN,
        false,
        false,
        &["configuredImages"],
    ),
    spec(
        "DistributeContainerImage",
        Stages::DistributionOnly,
        120 * MIN,
        720 * MIN,
        false,
        false,
        &["status", "succeededRegions", "failedRegions"],
    ),
];

/// The action that pauses until SendWorkflowStepAction (or its timeout).
pub const WAIT_FOR_ACTION: &str = "WaitForAction";

pub fn lookup(name: &str) -> Option<&'static ActionSpec> {
    CATALOGUE.iter().find(|a| a.name == name)
}

/// The names, for error messages.
pub fn names() -> String {
    CATALOGUE.map(|a| a.name).join(", ")
}

/// Container distribution replaces the AMI distribution actions; a workflow cannot mix them.
const DISTRIBUTE_CONTAINER_IMAGE: &str = "DistributeContainerImage";
const AMI_DISTRIBUTION_ACTIONS: [&str; 3] = [
    "DistributeImage",
    "ModifyImageAttributes",
    "ApplyImageConfigurations",
];

/// Checks the step actions of a workflow of type `stage`, given in step order: each must be a
/// known action allowed in that stage, and container and AMI distribution must not be mixed.
/// The message starts with the offending member (`steps[2].action`).
/// Why Kiln cannot run `action`, for the actions of AWS's catalogue it cannot: CreateWorkflow
/// refuses a step that would always run one (a step behind an `if`, such as the managed
/// build-image's Windows-only RunSysPrep, is allowed: on Linux it is skipped, and if it ran it
/// would fail saying this).
pub fn cannot_run_on_kiln(action: &str) -> Option<&'static str> {
    match action {
        "ExecuteStateMachine" => Some("it starts an AWS Step Functions state machine, and Kiln has no Step Functions"),
        "RunSysPrep" => Some("Sysprep prepares Windows instances, and Kiln builds Linux images only"),
        "CreateImageFromIso" => Some("it installs an operating system from an ISO into a Windows AMI, and Kiln builds Linux images from images only"),
        _ => None,
    }
}

/// Refuses the steps that would always run an action Kiln cannot run ([`cannot_run_on_kiln`]);
/// `conditional[i]` says whether step `i` has an `if`.
pub fn check_runnable<S: AsRef<str>>(actions: &[S], conditional: &[bool]) -> Result<(), String> {
    for (i, action) in actions.iter().enumerate() {
        let action = action.as_ref();
        if conditional.get(i).copied().unwrap_or(false) {
            continue;
        }
        if let Some(why) = cannot_run_on_kiln(action) {
            return Err(format!(
                "steps[{i}].action: '{action}' cannot run on Kiln: {why} (a step with an `if` that is false on Kiln is allowed)"
            ));
        }
    }
    Ok(())
}

pub fn check_actions<S: AsRef<str>>(actions: &[S], stage: WorkflowType) -> Result<(), String> {
    for (i, action) in actions.iter().enumerate() {
        let action = action.as_ref();
        let Some(spec) = lookup(action) else {
            return Err(format!(
                "steps[{i}].action: '{action}' is not a workflow step action; use one of: {}",
                names()
            ));
        };
        if !spec.stages.allows(stage) {
            return Err(format!(
                "steps[{i}].action: '{action}' can only be used in {} workflows, not in a {} workflow",
                spec.stages.describe(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn catalogue_is_consistent() {
        for a in CATALOGUE {
            assert!(
                a.default_timeout_seconds <= a.max_timeout_seconds,
                "{}",
                a.name
            );
            assert_eq!(lookup(a.name), Some(&a));
        }
        let launch = lookup("LaunchInstance").unwrap();
        assert_eq!(launch.default_timeout_seconds, 4500);
        assert!(launch.has_rollback);
        assert_eq!(lookup("CreateImage").unwrap().max_timeout_seconds, 259_200);
        assert_eq!(
            lookup(WAIT_FOR_ACTION).unwrap().max_timeout_seconds,
            604_800
        );
        assert!(lookup("Nope").is_none());
    }
}
