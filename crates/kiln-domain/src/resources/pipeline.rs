//! Image pipelines: a recipe, the infrastructure to build it on, where to distribute it, and
//! when to run.
//!
//! [`PipelineDefinition`] is everything a caller sets (Create and Update take the same
//! definition; Update replaces it whole). [`PipelineDefinition::check`] enforces the documented
//! cross-field rules, and [`PipelineDefinition::with_defaults`] fills the documented defaults, so
//! the stored record always holds the values Get answers. The record adds what the service
//! tracks: dates, run status and the consecutive-failure count.

use super::{Millis, Resource};
use crate::arn::{Arn, ResourceKind};
use crate::error::DomainError;
use crate::schedule::{parse_timezone, ScheduleExpression};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// "If you don't specify a value, Image Builder stores and returns 720."
pub const DEFAULT_TEST_TIMEOUT_MINUTES: i32 = 720;
pub const DEFAULT_TIMEZONE: &str = "Etc/UTC";
/// Log groups under this prefix are the service's; others need an execution role.
pub const MANAGED_LOG_GROUP_PREFIX: &str = "/aws/imagebuilder/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipelineStatus {
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartCondition {
    ExpressionMatchOnly,
    ExpressionMatchAndDependencyUpdatesAvailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipeKind {
    Image,
    Container,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanType {
    TestInstanceCve,
    OnDemandAmiCve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowFailureAction {
    Continue,
    Abort,
}

/// The recipe a pipeline builds, as the caller referenced it (the version may be an `x` filter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeRef {
    pub kind: RecipeKind,
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageTests {
    pub enabled: bool,
    pub timeout_minutes: i32,
}

impl Default for ImageTests {
    fn default() -> Self {
        ImageTests {
            enabled: true,
            timeout_minutes: DEFAULT_TEST_TIMEOUT_MINUTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub expression: String,
    pub timezone: String,
    pub start_condition: StartCondition,
    pub auto_disable_failure_count: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResultCondition {
    pub maximum_severity_label: String,
    pub fix_available: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageScanning {
    pub enabled: Option<bool>,
    pub ecr_repository_name: Option<String>,
    pub ecr_container_tags: Option<Vec<String>>,
    pub ecr_configured: bool,
    pub scanning_types: Option<Vec<ScanType>>,
    pub scan_result_condition: Option<ScanResultCondition>,
}

impl ImageScanning {
    /// The documented cross-field rules of `imageScanningConfiguration` (CreateImage's and a
    /// pipeline's alike).
    pub fn check(&self, recipe: RecipeKind, tests_enabled: bool) -> Result<(), DomainError> {
        let types = self.scanning_types.as_deref().unwrap_or(&[]);
        let on_demand = types.contains(&ScanType::OnDemandAmiCve);
        if self.scan_result_condition.is_some() && !on_demand {
            return Err(DomainError::invalid(
                "imageScanningConfiguration.scanResultCondition",
                "scanResultCondition can only be set when imageScanningTypes is ON_DEMAND_AMI_CVE",
            ));
        }
        if on_demand && recipe == RecipeKind::Container {
            return Err(DomainError::invalid(
                "imageScanningConfiguration.imageScanningTypes",
                "ON_DEMAND_AMI_CVE scans need an image recipe; this one builds a container recipe",
            ));
        }
        if self.enabled == Some(true) && !tests_enabled {
            return Err(DomainError::invalid(
                "imageScanningConfiguration.imageScanningEnabled",
                "image scanning runs during image tests: enable imageTestsConfiguration.imageTestsEnabled too",
            ));
        }
        if let Some(condition) = &self.scan_result_condition {
            if !["INFORMATIONAL", "LOW", "MEDIUM", "HIGH"]
                .contains(&condition.maximum_severity_label.as_str())
            {
                return Err(DomainError::invalid(
                    "imageScanningConfiguration.scanResultCondition.maximumSeverityLabel",
                    format!(
                        "'{}' is not one of INFORMATIONAL, LOW, MEDIUM, HIGH",
                        condition.maximum_severity_label
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `imageScanningTypes` defaults to TEST_INSTANCE_CVE for image recipes.
    pub fn fill_defaults(&mut self, recipe: RecipeKind) {
        if self.enabled == Some(true)
            && self.scanning_types.is_none()
            && recipe == RecipeKind::Image
        {
            self.scanning_types = Some(vec![ScanType::TestInstanceCve]);
        }
    }

    /// Whether the build scans the image.
    pub fn is_on(&self) -> bool {
        self.enabled == Some(true)
    }

    /// Whether the scan type is ON_DEMAND_AMI_CVE (the output image, gated by
    /// `scanResultCondition`).
    pub fn on_demand(&self) -> bool {
        self.scanning_types
            .as_deref()
            .is_some_and(|t| t.contains(&ScanType::OnDemandAmiCve))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowParameter {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineWorkflow {
    pub workflow_arn: String,
    pub parameters: Option<Vec<WorkflowParameter>>,
    pub parallel_group: Option<String>,
    pub on_failure: Option<WorkflowFailureAction>,
}

/// "Workflows per image or pipeline: 10", of which at most one build and one distribution
/// workflow (user guide, workflow resource constraints).
pub const MAX_WORKFLOWS: usize = 10;

/// The rules of a `workflows` list (with its `executionRole`) that need nothing stored: the
/// role, the number of workflows per stage (the stage is in the ARN), `parallelGroup` and
/// `onFailure` only on test workflows, and each parameter named once. CreateImagePipeline,
/// UpdateImagePipeline and CreateImage share them; what needs the workflows' documents is
/// `kiln_core::workflow_config`'s.
pub fn check_workflows(
    workflows: Option<&[PipelineWorkflow]>,
    execution_role: Option<&str>,
) -> Result<(), DomainError> {
    let Some(workflows) = workflows else {
        return Ok(());
    };
    if execution_role.is_none() {
        return Err(DomainError::invalid(
            "executionRole",
            "an execution role is required when you specify workflows",
        ));
    }
    if workflows.len() > MAX_WORKFLOWS {
        return Err(DomainError::invalid(
            "workflows",
            format!(
                "{} workflows given; an image or pipeline runs at most {MAX_WORKFLOWS}",
                workflows.len()
            ),
        ));
    }
    let kinds: Vec<Option<ResourceKind>> = workflows
        .iter()
        .map(|w| Arn::parse(&w.workflow_arn).ok().map(|a| a.kind))
        .collect();
    for (i, workflow) in workflows.iter().enumerate() {
        let kind = kinds[i];
        for (stage, label) in [
            (ResourceKind::BuildWorkflow, "BUILD"),
            (ResourceKind::DistributionWorkflow, "DISTRIBUTION"),
        ] {
            if kind != Some(stage) {
                continue;
            }
            if let Some(first) = kinds[..i].iter().position(|k| *k == Some(stage)) {
                return Err(DomainError::invalid(
                    format!("workflows[{i}].workflowArn"),
                    format!(
                        "a second {label} workflow (workflows[{first}] is one); an image runs at most one {label} workflow"
                    ),
                ));
            }
        }
        let is_test = kind == Some(ResourceKind::TestWorkflow);
        if !is_test && workflow.parallel_group.is_some() {
            return Err(DomainError::invalid(
                format!("workflows[{i}].parallelGroup"),
                "parallel groups apply only to test workflows",
            ));
        }
        if !is_test && workflow.on_failure.is_some() {
            return Err(DomainError::invalid(
                format!("workflows[{i}].onFailure"),
                "onFailure can only be set for test workflows",
            ));
        }
        let parameters = workflow.parameters.as_deref().unwrap_or(&[]);
        for (j, parameter) in parameters.iter().enumerate() {
            if let Some(first) = parameters[..j]
                .iter()
                .position(|p| p.name == parameter.name)
            {
                return Err(DomainError::invalid(
                    format!("workflows[{i}].parameters[{j}].name"),
                    format!(
                        "the parameter '{}' is already given in parameters[{first}]; give each parameter once, with all its values",
                        parameter.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Logging {
    pub image_log_group_name: Option<String>,
    pub pipeline_log_group_name: Option<String>,
}

/// What a caller sets on Create and Update. Optional members are `None` when omitted, until
/// [`PipelineDefinition::with_defaults`] fills the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineDefinition {
    pub description: Option<String>,
    pub recipe: RecipeRef,
    pub infrastructure_configuration_arn: String,
    pub distribution_configuration_arn: Option<String>,
    pub image_tests: ImageTests,
    pub enhanced_image_metadata_enabled: bool,
    pub schedule: Option<Schedule>,
    pub status: PipelineStatus,
    pub image_tags: Option<BTreeMap<String, String>>,
    pub image_scanning: Option<ImageScanning>,
    pub workflows: Option<Vec<PipelineWorkflow>>,
    pub execution_role: Option<String>,
    pub logging: Option<Logging>,
}

/// Which recipe member a request set: exactly one is allowed.
pub fn pick_recipe(image: Option<&str>, container: Option<&str>) -> Result<RecipeRef, DomainError> {
    match (image, container) {
        (Some(arn), None) => Ok(RecipeRef {
            kind: RecipeKind::Image,
            arn: arn.to_string(),
        }),
        (None, Some(arn)) => Ok(RecipeRef {
            kind: RecipeKind::Container,
            arn: arn.to_string(),
        }),
        (Some(_), Some(_)) => Err(DomainError::invalid(
            "imageRecipeArn, containerRecipeArn",
            "specify exactly one recipe: either imageRecipeArn or containerRecipeArn, not both",
        )),
        (None, None) => Err(DomainError::invalid(
            "imageRecipeArn, containerRecipeArn",
            "specify exactly one recipe: imageRecipeArn or containerRecipeArn is required",
        )),
    }
}

impl PipelineDefinition {
    /// The documented cross-field rules. Schedules are parsed here too, so a definition that
    /// passes can always compute its next run.
    pub fn check(&self) -> Result<(), DomainError> {
        if let Some(schedule) = &self.schedule {
            ScheduleExpression::parse(&schedule.expression)
                .map_err(|e| DomainError::invalid("schedule.scheduleExpression", e.message))?;
            parse_timezone(&schedule.timezone)
                .map_err(|e| DomainError::invalid("schedule.timezone", e.message))?;
        }
        check_workflows(self.workflows.as_deref(), self.execution_role.as_deref())?;
        if let Some(scanning) = &self.image_scanning {
            scanning.check(self.recipe.kind, self.image_tests.enabled)?;
        }
        if let Some(logging) = &self.logging {
            for (field, group) in [
                (
                    "loggingConfiguration.imageLogGroupName",
                    &logging.image_log_group_name,
                ),
                (
                    "loggingConfiguration.pipelineLogGroupName",
                    &logging.pipeline_log_group_name,
                ),
            ] {
                if let Some(group) = group {
                    if !group.starts_with(MANAGED_LOG_GROUP_PREFIX) && self.execution_role.is_none()
                    {
                        return Err(DomainError::invalid(
                            field,
                            format!("log group '{group}' is outside {MANAGED_LOG_GROUP_PREFIX}: an executionRole is required"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Fills the documented defaults of the nested members that have them.
    pub fn with_defaults(mut self) -> PipelineDefinition {
        if let Some(scanning) = &mut self.image_scanning {
            scanning.fill_defaults(self.recipe.kind);
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePipeline {
    pub arn: Arn,
    pub name: String,
    /// Inherited from the recipe.
    pub platform: String,
    pub definition: PipelineDefinition,
    pub date_created: Millis,
    pub date_updated: Millis,
    pub date_last_run: Option<Millis>,
    pub last_run_status: Option<String>,
    pub consecutive_failures: i32,
    /// When the schedule runs next (`dateNextRun`): set on create and update, moved on by
    /// every run of the schedule, cleared while disabled or without a schedule.
    #[serde(default)]
    pub date_next_run: Option<Millis>,
    /// What the schedule did lately, newest last (see [`super::scheduled_run`]).
    #[serde(default)]
    pub schedule_events: Vec<super::scheduled_run::ScheduleEvent>,
}

impl ImagePipeline {
    /// When the schedule fires next after `now`: `None` without a schedule or while disabled
    /// (a disabled pipeline does not run on its schedule).
    pub fn next_run(&self, now: Millis) -> Option<Millis> {
        next_runs(&[self.timing()], now)[0]
    }

    /// What decides when it runs.
    pub fn timing(&self) -> Timing<'_> {
        Timing {
            schedule: self.definition.schedule.as_ref(),
            status: self.definition.status,
        }
    }
}

/// The part of a stored [`ImagePipeline`] that says when it runs. Reading every pipeline (to
/// rebuild the due set) decodes only this, which skips the rest of each record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PipelineTiming {
    pub definition: TimingDefinition,
    #[serde(default)]
    pub date_next_run: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TimingDefinition {
    pub schedule: Option<Schedule>,
    pub status: PipelineStatus,
}

impl PipelineTiming {
    pub fn timing(&self) -> Timing<'_> {
        Timing {
            schedule: self.definition.schedule.as_ref(),
            status: self.definition.status,
        }
    }
}

/// A pipeline's schedule and status: all its next run depends on.
#[derive(Debug, Clone, Copy)]
pub struct Timing<'a> {
    pub schedule: Option<&'a Schedule>,
    pub status: PipelineStatus,
}

/// The next run after `now` of each pipeline: `None` without a schedule or while disabled.
/// Schedules are parsed once per distinct expression (see [`crate::schedule::next_runs`]).
pub fn next_runs(pipelines: &[Timing<'_>], now: Millis) -> Vec<Option<Millis>> {
    let Some(at) = chrono::DateTime::from_timestamp_millis(now) else {
        return vec![None; pipelines.len()];
    };
    let runs_on_schedule: Vec<(usize, (&str, &str))> = pipelines
        .iter()
        .enumerate()
        .filter(|(_, t)| t.status == PipelineStatus::Enabled)
        .filter_map(|(i, t)| {
            let s = t.schedule?;
            Some((i, (s.expression.as_str(), s.timezone.as_str())))
        })
        .collect();
    let schedules: Vec<(&str, &str)> = runs_on_schedule.iter().map(|(_, s)| *s).collect();
    let mut runs = vec![None; pipelines.len()];
    for ((i, _), run) in runs_on_schedule
        .iter()
        .zip(crate::schedule::next_runs(&schedules, at))
    {
        runs[*i] = run.map(|t| t.timestamp_millis());
    }
    runs
}

impl Resource for ImagePipeline {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const RECIPE: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/1.0.0";
    const TEST_WF: &str = "arn:aws:imagebuilder:us-east-1:123456789012:workflow/test/t/1.0.0";
    const BUILD_WF: &str = "arn:aws:imagebuilder:us-east-1:123456789012:workflow/build/b/1.0.0";
    const DIST_WF: &str =
        "arn:aws:imagebuilder:us-east-1:123456789012:workflow/distribution/d/1.0.0";

    pub(crate) fn definition() -> PipelineDefinition {
        PipelineDefinition {
            description: None,
            recipe: RecipeRef {
                kind: RecipeKind::Image,
                arn: RECIPE.into(),
            },
            infrastructure_configuration_arn:
                "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/i".into(),
            distribution_configuration_arn: None,
            image_tests: ImageTests::default(),
            enhanced_image_metadata_enabled: true,
            schedule: None,
            status: PipelineStatus::Enabled,
            image_tags: None,
            image_scanning: None,
            workflows: None,
            execution_role: None,
            logging: None,
        }
    }

    fn workflow(
        arn: &str,
        group: Option<&str>,
        on_failure: Option<WorkflowFailureAction>,
    ) -> PipelineWorkflow {
        PipelineWorkflow {
            workflow_arn: arn.into(),
            parameters: None,
            parallel_group: group.map(Into::into),
            on_failure,
        }
    }

    pub(crate) fn schedule(expression: &str, timezone: &str) -> Option<Schedule> {
        Some(Schedule {
            expression: expression.into(),
            timezone: timezone.into(),
            start_condition: StartCondition::ExpressionMatchOnly,
            auto_disable_failure_count: None,
        })
    }

    #[test]
    fn workflow_counts_and_parameter_names() {
        let check = |list: Vec<PipelineWorkflow>| {
            check_workflows(Some(&list), Some("role")).map_err(|e| e.to_string())
        };
        let tests = || (0..8).map(|_| workflow(TEST_WF, None, None));
        let mut ten: Vec<_> = tests().collect();
        ten.push(workflow(BUILD_WF, None, None));
        ten.push(workflow(DIST_WF, None, None));
        assert_eq!(check(ten.clone()), Ok(()));
        let mut eleven = ten.clone();
        eleven.push(workflow(TEST_WF, None, None));
        assert!(check(eleven)
            .unwrap_err()
            .starts_with("workflows: 11 workflows"));
        for second in [BUILD_WF, DIST_WF] {
            let list = vec![
                workflow(second, None, None),
                workflow(TEST_WF, None, None),
                workflow(second, None, None),
            ];
            let err = check(list).unwrap_err();
            assert!(
                err.starts_with("workflows[2].workflowArn: a second"),
                "{err}"
            );
            assert!(err.contains("workflows[0] is one"), "{err}");
        }
        let mut repeated = workflow(TEST_WF, None, None);
        repeated.parameters = Some(
            ["a", "b", "a"]
                .map(|name| WorkflowParameter {
                    name: name.into(),
                    values: vec!["v".into()],
                })
                .to_vec(),
        );
        let err = check(vec![workflow(BUILD_WF, None, None), repeated]).unwrap_err();
        assert!(err.starts_with("workflows[1].parameters[2].name"), "{err}");
        assert!(err.contains("parameters[0]"), "{err}");
    }

    #[test]
    fn exactly_one_recipe() {
        assert!(pick_recipe(Some("a"), None).is_ok());
        assert!(pick_recipe(None, Some("c")).is_ok());
        assert!(pick_recipe(Some("a"), Some("c"))
            .unwrap_err()
            .to_string()
            .contains("not both"));
        assert!(pick_recipe(None, None)
            .unwrap_err()
            .to_string()
            .contains("required"));
    }

    type Edit = Box<dyn Fn(&mut PipelineDefinition)>;

    #[test]
    fn cross_field_rules() {
        let cases: Vec<(Edit, Option<&str>)> = vec![
            (Box::new(|_| {}), None),
            (
                Box::new(|d| d.workflows = Some(vec![workflow(TEST_WF, None, None)])),
                Some("executionRole"),
            ),
            (
                Box::new(|d| {
                    d.execution_role = Some("r".into());
                    d.workflows = Some(vec![workflow(
                        TEST_WF,
                        Some("g"),
                        Some(WorkflowFailureAction::Continue),
                    )]);
                }),
                None,
            ),
            (
                Box::new(|d| {
                    d.execution_role = Some("r".into());
                    d.workflows = Some(vec![workflow(BUILD_WF, Some("g"), None)]);
                }),
                Some("workflows[0].parallelGroup"),
            ),
            (
                Box::new(|d| {
                    d.execution_role = Some("r".into());
                    d.workflows = Some(vec![
                        workflow(TEST_WF, None, None),
                        workflow(BUILD_WF, None, Some(WorkflowFailureAction::Abort)),
                    ]);
                }),
                Some("workflows[1].onFailure"),
            ),
            (
                Box::new(|d| {
                    d.image_scanning = Some(ImageScanning {
                        scan_result_condition: Some(ScanResultCondition {
                            maximum_severity_label: "HIGH".into(),
                            fix_available: true,
                        }),
                        ..Default::default()
                    })
                }),
                Some("scanResultCondition"),
            ),
            (
                Box::new(|d| {
                    d.image_scanning = Some(ImageScanning {
                        scanning_types: Some(vec![ScanType::OnDemandAmiCve]),
                        scan_result_condition: Some(ScanResultCondition {
                            maximum_severity_label: "HIGH".into(),
                            fix_available: true,
                        }),
                        ..Default::default()
                    })
                }),
                None,
            ),
            (
                Box::new(|d| {
                    d.image_tests.enabled = false;
                    d.image_scanning = Some(ImageScanning {
                        enabled: Some(true),
                        ..Default::default()
                    });
                }),
                Some("imageTestsEnabled"),
            ),
            (
                Box::new(|d| d.schedule = schedule("cron(0 0 * * *)", "Etc/UTC")),
                Some("schedule.scheduleExpression"),
            ),
            (
                Box::new(|d| d.schedule = schedule("cron(0 0 * * ? *)", "Mars/Olympus")),
                Some("schedule.timezone"),
            ),
            (
                Box::new(|d| d.schedule = schedule("rate(1 day)", "America/Los_Angeles")),
                None,
            ),
            (
                Box::new(|d| {
                    d.logging = Some(Logging {
                        image_log_group_name: Some("/custom/x".into()),
                        pipeline_log_group_name: None,
                    })
                }),
                Some("loggingConfiguration.imageLogGroupName"),
            ),
            (
                Box::new(|d| {
                    d.logging = Some(Logging {
                        image_log_group_name: Some("/aws/imagebuilder/x".into()),
                        pipeline_log_group_name: None,
                    })
                }),
                None,
            ),
        ];
        for (i, (edit, expected)) in cases.into_iter().enumerate() {
            let mut d = definition();
            edit(&mut d);
            match (d.check(), expected) {
                (Ok(()), None) => {}
                (Err(e), Some(fragment)) => {
                    assert!(e.to_string().contains(fragment), "case {i}: {e}")
                }
                (result, expected) => panic!("case {i}: got {result:?}, expected {expected:?}"),
            }
        }
    }

    pub(crate) fn pipeline(schedule: Option<Schedule>) -> ImagePipeline {
        let mut d = definition();
        d.schedule = schedule;
        ImagePipeline {
            arn: Arn::parse("arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p")
                .unwrap(),
            name: "p".into(),
            platform: "Linux".into(),
            definition: d,
            date_created: 0,
            date_updated: 0,
            date_last_run: None,
            last_run_status: None,
            consecutive_failures: 0,
            date_next_run: None,
            schedule_events: Vec::new(),
        }
    }

    #[test]
    fn next_run_is_computed_in_the_schedule_zone_and_not_while_disabled() {
        let mut pipeline = pipeline(schedule("cron(0 10 * * ? *)", "America/Los_Angeles"));
        // 2026-11-26T12:00:00Z is 04:00 in Los Angeles (PST, UTC-8): next 10:00 local is 18:00Z.
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .timestamp_millis();
        let expected = chrono::DateTime::parse_from_rfc3339("2026-11-26T18:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(pipeline.next_run(now), Some(expected));
        pipeline.definition.status = PipelineStatus::Disabled;
        assert_eq!(pipeline.next_run(now), None);
    }

    #[test]
    fn scanning_types_default_to_test_instance_cve() {
        let mut d = definition();
        d.image_scanning = Some(ImageScanning {
            enabled: Some(true),
            ..Default::default()
        });
        let d = d.with_defaults();
        assert_eq!(
            d.image_scanning.unwrap().scanning_types,
            Some(vec![ScanType::TestInstanceCve])
        );
    }
}
