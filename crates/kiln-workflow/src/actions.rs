//! The step-action catalogue (user guide, "Workflow step actions"): per action its default and
//! maximum `timeoutSeconds`, whether it has a rollback, its outputs, and whether Kiln may run it
//! again after a restart interrupted it.

const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// What the engine needs to know about one step action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    pub name: &'static str,
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
    default_timeout_seconds: u64,
    max_timeout_seconds: u64,
    has_rollback: bool,
    rerun_safe: bool,
    outputs: &'static [&'static str],
) -> ActionSpec {
    ActionSpec {
        name,
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
        75 * MIN,
        720 * MIN,
        true,
        false,
        &["instanceId"],
    ),
    spec(
        "BootstrapInstanceForContainer",
        60 * MIN,
        720 * MIN,
        false,
        false,
        RUN_OUTPUTS,
    ),
    spec(
        "ExecuteComponents",
        720 * MIN,
        DAY,
        false,
        false,
        RUN_OUTPUTS,
    ),
    spec(
        "CollectImageMetadata",
        30 * MIN,
        720 * MIN,
        true,
        false,
        &["osVersion", "associationId"],
    ),
    spec(
        "CollectImageScanFindings",
        120 * MIN,
        720 * MIN,
        false,
        true,
        RUN_OUTPUTS,
    ),
    spec(
        "SanitizeInstance",
        60 * MIN,
        720 * MIN,
        false,
        false,
        RUN_OUTPUTS,
    ),
    spec("RunSysPrep", 60 * MIN, 720 * MIN, false, false, RUN_OUTPUTS),
    spec(
        "RunCommand",
        720 * MIN,
        720 * MIN,
        false,
        false,
        RUN_OUTPUTS,
    ),
    spec(
        "CreateImage",
        720 * MIN,
        3 * DAY,
        false,
        false,
        &["imageId"],
    ),
    spec(
        "CreateImageFromIso",
        720 * MIN,
        720 * MIN,
        false,
        false,
        &["amiName", "snapshotId", "architecture"],
    ),
    spec(
        "RegisterImage",
        540 * MIN,
        720 * MIN,
        false,
        false,
        &["imageId"],
    ),
    spec(
        "WaitForSSMAgent",
        60 * MIN,
        180 * MIN,
        false,
        true,
        &["status"],
    ),
    spec("TerminateInstance", 30 * MIN, 720 * MIN, false, true, &[]),
    spec(
        "WaitForAction",
        3 * DAY,
        7 * DAY,
        false,
        false,
        &["action", "reason"],
    ),
    spec(
        "ExecuteStateMachine",
        6 * HOUR,
        DAY,
        false,
        false,
        &["executionArn", "output"],
    ),
    spec(
        "DistributeImage",
        360 * MIN,
        720 * MIN,
        false,
        false,
        &["distributedImages"],
    ),
    spec(
        "ModifyImageAttributes",
        120 * MIN,
        180 * MIN,
        false,
        false,
        &["modifiedImages"],
    ),
    spec(
        "ApplyImageConfigurations",
        360 * MIN,
        720 * MIN,
        false,
        false,
        &["configuredImages"],
    ),
    spec(
        "DistributeContainerImage",
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

#[cfg(test)]
mod tests {
    use super::*;

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
