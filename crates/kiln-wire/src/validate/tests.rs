//! Data-driven: each case is an operation, an input and what the validator must say about it.
use super::*;
use crate::generated::operations::Operation;
use serde_json::json;

const INFRA: &str =
    "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/infra";
const RECIPE: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/1.0.0";

fn pipeline(extra: Value) -> Value {
    let mut base = json!({"name": "My Pipeline", "infrastructureConfigurationArn": INFRA, "imageRecipeArn": RECIPE, "clientToken": "t"});
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

#[test]
fn every_pattern_of_the_model_compiles() {
    assert_eq!(warm_up(), Vec::<&str>::new());
}

#[test]
fn valid_pipeline_passes() {
    let full = pipeline(json!({
        "description": "d", "status": "ENABLED", "tags": {"team": "infra"},
        "schedule": {"scheduleExpression": "cron(0 0 * * ? *)", "timezone": "Etc/UTC",
                     "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY", "autoDisablePolicy": {"failureCount": 3}},
        "imageTestsConfiguration": {"imageTestsEnabled": true, "timeoutMinutes": 90},
        "workflows": [{"workflowArn": "arn:aws:imagebuilder:us-east-1:123456789012:workflow/test/my-wf/1.0.0",
                       "parameters": [{"name": "p", "value": ["v"]}], "parallelGroup": "g1", "onFailure": "CONTINUE"}],
        "executionRole": "MyRole"
    }));
    validate(Operation::CreateImagePipeline.def().input, &full).unwrap();
}

#[test]
fn violations_name_the_member_and_the_rule() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"infrastructureConfigurationArn": INFRA, "clientToken": "t"}), "at 'name' failed to satisfy constraint: Member must not be null"),
        (pipeline(json!({"name": "x"})), "Value 'x' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern"),
        (pipeline(json!({"name": 5})), "at 'name' failed to satisfy constraint: Member must be a string"),
        (pipeline(json!({"status": "ON"})), "at 'status' failed to satisfy constraint: Member must satisfy enum value set: [DISABLED, ENABLED]"),
        (pipeline(json!({"description": ""})), "at 'description' failed to satisfy constraint: Member must have length greater than or equal to 1"),
        (pipeline(json!({"imageTestsConfiguration": {"timeoutMinutes": 5}})), "at 'imageTestsConfiguration.timeoutMinutes' failed to satisfy constraint: Member must have value greater than or equal to 60"),
        (pipeline(json!({"imageTestsConfiguration": {"timeoutMinutes": "90"}})), "Member must be an integer"),
        (pipeline(json!({"imageTestsConfiguration": {"timeoutMinutes": 99999999999i64}})), "Member must fit in a 32-bit integer"),
        (pipeline(json!({"tags": {"aws:owner": "me"}})), "at 'tags['aws:owner'] (key)' failed to satisfy constraint: Member must satisfy regular expression pattern"),
        (pipeline(json!({"tags": {}})), "at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1"),
        (pipeline(json!({"infrastructureConfigurationArn": "y"})), "Value 'y' at 'infrastructureConfigurationArn'"),
        (pipeline(json!({"schedule": {"autoDisablePolicy": {"failureCount": 11}}})), "at 'schedule.autoDisablePolicy.failureCount'"),
        (pipeline(json!({"schedule": {"autoDisablePolicy": {}}})), "at 'schedule.autoDisablePolicy.failureCount' failed to satisfy constraint: Member must not be null"),
        (pipeline(json!({"workflows": [{"workflowArn": "nope"}]})), "at 'workflows[0].workflowArn'"),
        (pipeline(json!({"workflows": {}})), "at 'workflows' failed to satisfy constraint: Member must be a list"),
        (pipeline(json!({"enhancedImageMetadataEnabled": "yes"})), "Member must be a boolean"),
        (pipeline(json!({"imageScanningConfiguration": {"imageScanningTypes": ["X"]}})), "at 'imageScanningConfiguration.imageScanningTypes[0]'"),
        (pipeline(json!({"clientToken": "x".repeat(65)})), "at 'clientToken' failed to satisfy constraint: Member must have length less than or equal to 64"),
    ];
    for (input, expected) in cases {
        let err = validate(Operation::CreateImagePipeline.def().input, &input).expect_err(expected);
        assert_eq!(err.code(), "InvalidRequestException");
        assert!(
            err.message.contains(expected),
            "expected {expected:?} in {:?}",
            err.message
        );
    }
}

#[test]
fn tag_keys_allow_everything_but_the_aws_prefix() {
    let def = Operation::TagResource.def();
    let arn = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p";
    validate(
        def.input,
        &json!({"resourceArn": arn, "tags": {"team:aws": "x", "a b": ""}}),
    )
    .unwrap();
    assert!(validate(
        def.input,
        &json!({"resourceArn": arn, "tags": {"aws:x": "y"}})
    )
    .is_err());
}

#[test]
fn several_violations_are_counted() {
    let err = validate(Operation::CreateImagePipeline.def().input, &json!({})).unwrap_err();
    assert!(
        err.message.starts_with("3 validation errors detected"),
        "{}",
        err.message
    );
}

#[test]
fn nulls_count_as_absent() {
    validate(
        Operation::CreateImagePipeline.def().input,
        &pipeline(json!({"description": null})),
    )
    .unwrap();
}

fn image_response(image: Value) -> Value {
    json!({"requestId": "r-1", "image": image})
}

fn response_violations(op: Operation, value: &Value) -> Vec<String> {
    validate_response(op.def().output, value)
        .err()
        .unwrap_or_default()
}

/// A building image as AWS's GetImage example shows it.
fn building_image() -> Value {
    json!({
        "arn": "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1",
        "name": "web", "version": "1.0.0/1", "platform": "Linux",
        "state": {"status": "BUILDING"},
        "dateCreated": "2020-02-14T23:14:13.597Z",
        "outputResources": {"amis": []},
        "tags": {}
    })
}

#[test]
fn responses_may_carry_empty_always_present_members() {
    let ok = image_response(building_image());
    assert_eq!(
        response_violations(Operation::GetImage, &ok),
        Vec::<String>::new()
    );
}

#[test]
fn responses_are_held_to_the_output_shape() {
    // (member of the image, its new value or None to remove it, the violation that must name it)
    let cases: Vec<(&str, Option<Value>, &str)> = vec![
        ("tags", Some(Value::Null), "'image.tags'"),
        ("tags", None, "'image.tags' failed to satisfy constraint: Member is always present"),
        ("outputResources", None, "'image.outputResources'"),
        ("outputResources", Some(json!({})), "'image.outputResources.amis'"),
        ("colour", Some(json!("blue")), "'image.colour' failed to satisfy constraint: Member is not a member of Image"),
        ("state", Some(json!({"status": "DONE"})), "'image.state.status'"),
        ("dateCreated", Some(json!("yesterday")), "must be an ISO 8601 date and time"),
        ("dateCreated", Some(json!(1_700_000_000)), "must be a string"),
        ("deprecationTime", Some(json!("2020-02-14T23:14:13.597Z")), "'image.deprecationTime' failed to satisfy constraint: Member must be a timestamp"),
        ("tags", Some(json!({"k": 1})), "'image.tags['k']'"),
        ("arn", Some(json!("not-an-arn")), "'image.arn' failed to satisfy constraint: Member must satisfy regular expression pattern"),
    ];
    for (member, value, expected) in cases {
        let mut image = building_image();
        let fields = image.as_object_mut().expect("an object");
        match value {
            Some(v) => fields.insert(member.to_string(), v),
            None => fields.remove(member),
        };
        let violations = response_violations(Operation::GetImage, &image_response(image.clone()));
        assert!(
            violations.iter().any(|v| v.contains(expected)),
            "{image}: expected a violation containing {expected:?}, got {violations:?}"
        );
    }
}

#[test]
fn requests_keep_ignoring_unknown_members() {
    let input = json!({"imageBuildVersionArn": "arn:aws:imagebuilder:us-east-1:123456789012:image/r/1.0.0/1", "colour": "blue"});
    validate(Operation::GetImage.def().input, &input).unwrap();
}

#[test]
fn the_always_present_members_are_the_rule_s() {
    let mut marked: Vec<String> = Vec::new();
    for shape in crate::generated::schema::SHAPES.iter() {
        if let ShapeKind::Structure { members, .. } = &shape.kind {
            for m in members.iter().filter(|m| m.always_present) {
                marked.push(format!("{}.{}", shape.name, m.name));
            }
        }
    }
    for expected in [
        "Image.tags",
        "ImageSummary.tags",
        "Component.tags",
        "Image.outputResources",
        "ImageSummary.outputResources",
        "OutputResources.amis",
        "ListTagsForResourceResponse.tags",
        "WorkflowSummary.tags",
    ] {
        assert!(
            marked.contains(&expected.to_string()),
            "{expected} is not marked: {marked:?}"
        );
    }
    assert!(
        marked.iter().all(|m| m.ends_with(".tags")
            || m.ends_with("outputResources")
            || m == "OutputResources.amis"),
        "{marked:?}"
    );
    assert!(
        !marked
            .iter()
            .any(|m| m.starts_with("CreateComponentRequest")),
        "request shapes keep their rules"
    );
}

#[test]
fn a_step_timeout_above_the_model_maximum_may_be_answered() {
    // WaitForAction's default is 3 days; the model's WorkflowStepTimeoutSecondsInteger stops
    // at 43200 (wave-2 contract §6 #2): the service answers the real value.
    let step = |timeout: Value| json!({"stepExecutionId": "step-00000000-0000-0000-0000-000000000001", "timeoutSeconds": timeout});
    assert_eq!(
        response_violations(Operation::GetWorkflowStepExecution, &step(json!(259_200))),
        Vec::<String>::new()
    );
    let violations = response_violations(Operation::GetWorkflowStepExecution, &step(json!(-1)));
    assert!(
        violations.iter().any(|v| v.contains("timeoutSeconds")),
        "{violations:?}"
    );
}
