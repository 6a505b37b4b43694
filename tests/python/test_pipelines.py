"""Image pipelines: Create, Get, List, Update and Delete with every member stored and returned,
the documented defaults, references that must exist, the cross-field rules, schedules (cron and
rate syntax, time zones, dateNextRun), dry runs, and what a pipeline's references protect."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from kiln_testlib import (
    arn_prefix,
    assert_client_error,
    create_component,
    create_distribution,
    create_image_recipe,
    create_infra,
    create_workflow,
    unique_name,
)

DOCKERFILE = (
    "FROM {{{ imagebuilder:parentImage }}}\n"
    "{{{ imagebuilder:environments }}}\n"
    "{{{ imagebuilder:components }}}\n"
)
MISSING_RECIPE = f"{arn_prefix()}:image-recipe/does-not-exist-anywhere/1.0.0"
MISSING_INFRA = f"{arn_prefix()}:infrastructure-configuration/does-not-exist-anywhere"
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/ImageBuilderExecution"
WAITING_WORKFLOW_YAML = """\
schemaVersion: 1.0
parameters:
  - name: waitForActionAtEnd
    type: boolean
    default: false
steps:
  - name: WaitForApproval
    action: WaitForAction
    if:
      booleanEquals: true
      value: "$.parameters.waitForActionAtEnd"
    inputs: {}
"""


@pytest.fixture(scope="module")
def recipe(client) -> str:
    return create_image_recipe(client, [create_component(client)])


@pytest.fixture(scope="module")
def container_recipe(client) -> str:
    return client.create_container_recipe(
        containerType="DOCKER",
        name=unique_name("ctr"),
        semanticVersion="1.0.0",
        components=[{"componentArn": create_component(client)}],
        dockerfileTemplateData=DOCKERFILE,
        parentImage="amazonlinux:latest",
        targetRepository={"service": "ECR", "repositoryName": "my-repo"},
    )["containerRecipeArn"]


@pytest.fixture(scope="module")
def infra(client) -> str:
    return create_infra(client)


def pipeline_arn(name: str) -> str:
    return f"{arn_prefix()}:image-pipeline/{name}"


def get(client, arn: str) -> dict:
    return client.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]


def create(client, recipe: str, infra: str, name: str | None = None, **extra) -> str:
    return client.create_image_pipeline(
        name=name or unique_name("pipe"),
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=infra,
        **extra,
    )["imagePipelineArn"]


def parse_date(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


# --- Create, Get and the defaults --------------------------------------------------------------


def test_minimal_pipeline_gets_the_documented_defaults(client, recipe, infra, name):
    arn = create(client, recipe, infra, name)
    assert arn == pipeline_arn(name)
    pipeline = get(client, arn)
    assert pipeline["arn"] == arn
    assert pipeline["name"] == name
    assert pipeline["imageRecipeArn"] == recipe
    assert pipeline["infrastructureConfigurationArn"] == infra
    assert pipeline["imageTestsConfiguration"] == {"imageTestsEnabled": True, "timeoutMinutes": 720}
    assert pipeline["enhancedImageMetadataEnabled"] is True
    assert pipeline["status"] == "ENABLED"
    assert pipeline["platform"] == "Linux"
    assert "consecutiveFailures" not in pipeline  # absent while zero, as AWS answers
    created = parse_date(pipeline["dateCreated"])
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=5)
    assert pipeline["dateUpdated"]
    assert "schedule" not in pipeline
    assert "dateNextRun" not in pipeline


def test_every_member_is_stored_and_returned(client, recipe, infra, name):
    dist = create_distribution(client)
    # The workflow declares the parameter the pipeline sets: parameters are checked against it.
    workflow = create_workflow(client, type_="TEST", data=WAITING_WORKFLOW_YAML)
    members = dict(
        description="nightly web build",
        distributionConfigurationArn=dist,
        imageTestsConfiguration={"imageTestsEnabled": True, "timeoutMinutes": 90},
        enhancedImageMetadataEnabled=False,
        schedule={
            "scheduleExpression": "cron(0 3 * * ? *)",
            "timezone": "Europe/Paris",
            "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY",
            "autoDisablePolicy": {"failureCount": 3},
        },
        status="ENABLED",
        tags={"team": "web"},
        imageTags={"role": "web"},
        imageScanningConfiguration={
            "imageScanningEnabled": True,
            "imageScanningTypes": ["ON_DEMAND_AMI_CVE"],
            "scanResultCondition": {"maximumSeverityLabel": "HIGH", "fixAvailable": True},
        },
        workflows=[
            {
                "workflowArn": workflow,
                "parameters": [{"name": "waitForActionAtEnd", "value": ["true"]}],
                "parallelGroup": "group-a",
                "onFailure": "CONTINUE",
            }
        ],
        executionRole=EXECUTION_ROLE,
        loggingConfiguration={
            "imageLogGroupName": "/aws/imagebuilder/web",
            "pipelineLogGroupName": "/aws/imagebuilder/pipeline/web",
        },
    )
    arn = create(client, recipe, infra, name, **members)
    pipeline = get(client, arn)
    for key, value in members.items():
        if key == "imageScanningConfiguration":
            for inner_key, inner_value in value.items():
                assert pipeline[key][inner_key] == inner_value, inner_key
        else:
            assert pipeline[key] == value, key
    assert parse_date(pipeline["dateNextRun"]) > datetime.now(timezone.utc)


def test_schedule_defaults(client, recipe, infra):
    arn = create(client, recipe, infra, schedule={"scheduleExpression": "cron(0 0 * * ? *)"})
    schedule = get(client, arn)["schedule"]
    assert schedule["timezone"] == "Etc/UTC"
    assert schedule["pipelineExecutionStartCondition"] == (
        "EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE"
    )


def test_platform_comes_from_the_recipe(client, infra):
    windows_component = client.create_component(
        name=unique_name("win"),
        semanticVersion="1.0.0",
        platform="Windows",
        data="schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecutePowerShell\n        inputs:\n          commands: [echo hi]\n",
    )["componentBuildVersionArn"]
    windows_recipe = create_image_recipe(client, [windows_component])
    assert get(client, create(client, windows_recipe, infra))["platform"] == "Windows"


def test_container_pipeline(client, container_recipe, infra, name):
    arn = client.create_image_pipeline(
        name=name, containerRecipeArn=container_recipe, infrastructureConfigurationArn=infra
    )["imagePipelineArn"]
    pipeline = get(client, arn)
    assert pipeline["containerRecipeArn"] == container_recipe
    assert "imageRecipeArn" not in pipeline


def test_recipe_reference_may_use_a_version_filter(client, infra):
    name = unique_name("vf-recipe")
    create_image_recipe(client, [create_component(client)], name=name, version="1.0.0")
    reference = f"{arn_prefix()}:image-recipe/{name}/1.x.x"
    arn = create(client, reference, infra)
    assert get(client, arn)["imageRecipeArn"] == reference


# --- References must exist ---------------------------------------------------------------------


def test_missing_recipe_is_named(client, infra):
    assert_client_error(
        lambda: create(client, MISSING_RECIPE, infra),
        "InvalidRequestException",
        "imageRecipeArn",
        MISSING_RECIPE,
    )


def test_missing_infrastructure_configuration_is_named(client, recipe):
    assert_client_error(
        lambda: create(client, recipe, MISSING_INFRA),
        "InvalidRequestException",
        "infrastructureConfigurationArn",
        MISSING_INFRA,
    )


def test_missing_distribution_configuration_is_named(client, recipe, infra):
    missing = f"{arn_prefix()}:distribution-configuration/{unique_name('nope')}"
    assert_client_error(
        lambda: create(client, recipe, infra, distributionConfigurationArn=missing),
        "InvalidRequestException",
        "distributionConfigurationArn",
        missing,
    )


def test_missing_workflow_is_named_with_its_position(client, recipe, infra):
    missing = f"{arn_prefix()}:workflow/test/{unique_name('nope')}/1.0.0"
    assert_client_error(
        lambda: create(
            client,
            recipe,
            infra,
            workflows=[{"workflowArn": missing}],
            executionRole=EXECUTION_ROLE,
        ),
        "InvalidRequestException",
        "workflows[0].workflowArn",
        missing,
    )


def test_a_reference_into_another_account_does_not_exist(client, infra):
    foreign = MISSING_RECIPE.replace(":123456789012:", ":999999999999:")
    assert_client_error(
        lambda: create(client, foreign, infra), "InvalidRequestException", foreign
    )


# --- Cross-field rules -------------------------------------------------------------------------


def test_exactly_one_recipe_both(client, recipe, container_recipe, infra):
    assert_client_error(
        lambda: client.create_image_pipeline(
            name=unique_name("pipe"),
            imageRecipeArn=recipe,
            containerRecipeArn=container_recipe,
            infrastructureConfigurationArn=infra,
        ),
        "InvalidRequestException",
        "imageRecipeArn",
        "containerRecipeArn",
    )


def test_exactly_one_recipe_neither(client, infra):
    assert_client_error(
        lambda: client.create_image_pipeline(
            name=unique_name("pipe"), infrastructureConfigurationArn=infra
        ),
        "InvalidRequestException",
        "imageRecipeArn",
        "containerRecipeArn",
    )


def test_workflows_need_an_execution_role(client):
    workflow = f"{arn_prefix()}:workflow/test/some-workflow/1.0.0"
    assert_client_error(
        lambda: create(client, MISSING_RECIPE, MISSING_INFRA, workflows=[{"workflowArn": workflow}]),
        "InvalidRequestException",
        "executionRole",
    )


@pytest.mark.parametrize("member, value", [("parallelGroup", "g1"), ("onFailure", "CONTINUE")])
def test_parallel_group_and_on_failure_only_on_test_workflows(client, member, value):
    build_workflow = f"{arn_prefix()}:workflow/build/some-build/1.0.0"
    assert_client_error(
        lambda: create(
            client,
            MISSING_RECIPE,
            MISSING_INFRA,
            workflows=[{"workflowArn": build_workflow, member: value}],
            executionRole=EXECUTION_ROLE,
        ),
        "InvalidRequestException",
        f"workflows[0].{member}",
    )


def test_scan_result_condition_needs_on_demand_ami_cve(client):
    assert_client_error(
        lambda: create(
            client,
            MISSING_RECIPE,
            MISSING_INFRA,
            imageScanningConfiguration={
                "imageScanningEnabled": True,
                "imageScanningTypes": ["TEST_INSTANCE_CVE"],
                "scanResultCondition": {"maximumSeverityLabel": "HIGH"},
            },
        ),
        "InvalidRequestException",
        "scanResultCondition",
    )


# --- Schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 0 * * *)",  # the old five-field form
        "cron(0 0 * * * *)",  # neither day field is '?'
        "cron(0 0 ? * ? *)",  # both day fields are '?'
        "cron(60 0 * * ? *)",  # minute out of range
        "cron(0 0 * 13 ? *)",  # month out of range
        "cron(0 0 ? * fri#6 *)",  # sixth Friday
        "0 0 * * ? *",  # no cron(...) wrapper
        "cron(0 0 * * ? *) ",  # trailing space
        "rate(0 days)",
        "rate(1 days)",  # singular unit required for 1
        "rate(5 fortnights)",
        "every day",
    ],
)
def test_bad_schedule_expressions_are_refused_naming_the_member(client, expression):
    assert_client_error(
        lambda: create(
            client, MISSING_RECIPE, MISSING_INFRA, schedule={"scheduleExpression": expression}
        ),
        "InvalidRequestException",
        "schedule.scheduleExpression",
    )


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 10 * * ? *)",
        "cron(0 10 ? * 2-6 *)",
        "cron(0 18 ? * mon-fri *)",
        "cron(0 8 1 * ? *)",
        "cron(30 22 ? * tue#2 *)",
        "cron(0 0 L * ? *)",
        "cron(0 0 15W * ? *)",
        "cron(*/15 * * * ? *)",
        "rate(1 day)",
        "rate(12 hours)",
    ],
)
def test_documented_schedule_expressions_are_accepted(client, recipe, infra, expression):
    arn = create(client, recipe, infra, schedule={"scheduleExpression": expression})
    pipeline = get(client, arn)
    assert pipeline["schedule"]["scheduleExpression"] == expression
    assert parse_date(pipeline["dateNextRun"]) > datetime.now(timezone.utc) - timedelta(minutes=1)


def test_unknown_time_zone_is_refused(client):
    assert_client_error(
        lambda: create(
            client,
            MISSING_RECIPE,
            MISSING_INFRA,
            schedule={"scheduleExpression": "cron(0 0 * * ? *)", "timezone": "Mars/Olympus_Mons"},
        ),
        "InvalidRequestException",
        "schedule.timezone",
        "Mars/Olympus_Mons",
    )


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata", "Australia/Adelaide", "Etc/UTC"])
def test_date_next_run_is_computed_in_the_time_zone(client, recipe, infra, zone):
    arn = create(
        client,
        recipe,
        infra,
        schedule={"scheduleExpression": "cron(30 10 * * ? *)", "timezone": zone},
    )
    next_run = parse_date(get(client, arn)["dateNextRun"])
    local = next_run.astimezone(ZoneInfo(zone))
    assert (local.hour, local.minute, local.second) == (10, 30, 0)
    now = datetime.now(timezone.utc)
    assert now < next_run <= now + timedelta(days=1, minutes=1)


def test_a_disabled_pipeline_has_no_next_run(client, recipe, infra):
    arn = create(
        client,
        recipe,
        infra,
        status="DISABLED",
        schedule={"scheduleExpression": "cron(0 0 * * ? *)"},
    )
    pipeline = get(client, arn)
    assert pipeline["status"] == "DISABLED"
    assert "dateNextRun" not in pipeline


# --- Dry run, names, list ----------------------------------------------------------------------


def test_dry_run_checks_everything_and_writes_nothing(client, recipe, infra, name):
    with pytest.raises(client.exceptions.DryRunOperationException) as info:
        create(client, recipe, infra, name, dryRun=True)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert_client_error(lambda: get(client, pipeline_arn(name)), "ResourceNotFoundException")
    # A dry run of an invalid request reports the real error.
    assert_client_error(
        lambda: create(client, MISSING_RECIPE, infra, dryRun=True), "InvalidRequestException"
    )


def test_names_that_normalise_alike_clash(client, recipe, infra):
    base = unique_name("Pipe")
    arn = create(client, recipe, infra, f"Nightly {base}_Build")
    assert arn == pipeline_arn(f"nightly-{base.lower()}-build")
    assert get(client, arn)["name"] == f"Nightly {base}_Build"
    assert_client_error(
        lambda: create(client, recipe, infra, f"nightly-{base.lower()}-build"),
        "ResourceAlreadyExistsException",
    )


def test_list_with_filters(client, recipe, infra):
    prefix = unique_name("listed")
    enabled = create(client, recipe, infra, f"{prefix}-on")
    disabled = create(client, recipe, infra, f"{prefix}-off", status="DISABLED")
    by_name = client.list_image_pipelines(filters=[{"name": "name", "values": [prefix + "*"]}])
    assert sorted(p["arn"] for p in by_name["imagePipelineList"]) == sorted([enabled, disabled])
    only_disabled = client.list_image_pipelines(
        filters=[
            {"name": "name", "values": [prefix + "*"]},
            {"name": "status", "values": ["DISABLED"]},
        ]
    )
    assert [p["arn"] for p in only_disabled["imagePipelineList"]] == [disabled]
    listed = by_name["imagePipelineList"][0]
    assert listed["imageTestsConfiguration"] == {"imageTestsEnabled": True, "timeoutMinutes": 720}


def test_list_image_pipeline_images_is_empty(client, recipe, infra):
    arn = create(client, recipe, infra)
    assert client.list_image_pipeline_images(imagePipelineArn=arn)["imageSummaryList"] == []


# --- Update ------------------------------------------------------------------------------------


def test_update_replaces_the_whole_definition(client, recipe, infra):
    arn = create(
        client,
        recipe,
        infra,
        description="old",
        enhancedImageMetadataEnabled=False,
        imageTestsConfiguration={"imageTestsEnabled": False, "timeoutMinutes": 60},
        schedule={"scheduleExpression": "cron(0 0 * * ? *)", "timezone": "Asia/Tokyo"},
        status="DISABLED",
        imageTags={"a": "b"},
    )
    before = get(client, arn)
    response = client.update_image_pipeline(
        imagePipelineArn=arn,
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=infra,
        description="new",
    )
    assert response["imagePipelineArn"] == arn
    after = get(client, arn)
    assert after["description"] == "new"
    # Omitted members fall back to their defaults rather than keeping the old values.
    assert after["enhancedImageMetadataEnabled"] is True
    assert after["imageTestsConfiguration"] == {"imageTestsEnabled": True, "timeoutMinutes": 720}
    assert after["status"] == "ENABLED"
    assert "schedule" not in after
    assert "imageTags" not in after
    assert "consecutiveFailures" not in after
    assert after["dateCreated"] == before["dateCreated"]
    assert parse_date(after["dateUpdated"]) >= parse_date(before["dateUpdated"])
    assert after["name"] == before["name"]


def test_update_checks_references(client, recipe, infra):
    arn = create(client, recipe, infra)
    assert_client_error(
        lambda: client.update_image_pipeline(
            imagePipelineArn=arn, imageRecipeArn=recipe, infrastructureConfigurationArn=MISSING_INFRA
        ),
        "InvalidRequestException",
        MISSING_INFRA,
    )
    assert get(client, arn)["infrastructureConfigurationArn"] == infra


def test_update_cannot_change_the_recipe_type(client, recipe, container_recipe, infra):
    arn = create(client, recipe, infra)
    assert_client_error(
        lambda: client.update_image_pipeline(
            imagePipelineArn=arn,
            containerRecipeArn=container_recipe,
            infrastructureConfigurationArn=infra,
        ),
        "InvalidRequestException",
        "containerRecipeArn",
    )


def test_update_moves_the_references(client, recipe):
    first_infra = create_infra(client)
    second_infra = create_infra(client)
    arn = create(client, recipe, first_infra)
    client.update_image_pipeline(
        imagePipelineArn=arn, imageRecipeArn=recipe, infrastructureConfigurationArn=second_infra
    )
    # The configuration the pipeline left is free again; the one it uses now is held.
    client.delete_infrastructure_configuration(infrastructureConfigurationArn=first_infra)
    assert_client_error(
        lambda: client.delete_infrastructure_configuration(
            infrastructureConfigurationArn=second_infra
        ),
        "ResourceDependencyException",
        arn,
    )


def test_update_of_a_missing_pipeline_is_not_found(client, recipe, infra):
    missing = pipeline_arn(unique_name("missing"))
    assert_client_error(
        lambda: client.update_image_pipeline(
            imagePipelineArn=missing, imageRecipeArn=recipe, infrastructureConfigurationArn=infra
        ),
        "ResourceNotFoundException",
        missing,
    )


# --- Delete and dependencies -------------------------------------------------------------------


def test_delete(client, recipe, infra, name):
    arn = create(client, recipe, infra, name)
    assert client.delete_image_pipeline(imagePipelineArn=arn)["imagePipelineArn"] == arn
    assert_client_error(lambda: get(client, arn), "ResourceNotFoundException")
    assert_client_error(
        lambda: client.delete_image_pipeline(imagePipelineArn=arn), "ResourceNotFoundException"
    )


def test_referenced_infrastructure_cannot_be_deleted_until_the_pipeline_is(client, recipe):
    infra = create_infra(client)
    arn = create(client, recipe, infra)
    assert_client_error(
        lambda: client.delete_infrastructure_configuration(infrastructureConfigurationArn=infra),
        "ResourceDependencyException",
        arn,
    )
    client.delete_image_pipeline(imagePipelineArn=arn)
    client.delete_infrastructure_configuration(infrastructureConfigurationArn=infra)


def test_referenced_workflow_cannot_be_deleted(client, recipe, infra):
    workflow = create_workflow(client, type_="TEST")
    arn = create(
        client, recipe, infra, workflows=[{"workflowArn": workflow}], executionRole=EXECUTION_ROLE
    )
    assert_client_error(
        lambda: client.delete_workflow(workflowBuildVersionArn=workflow),
        "ResourceDependencyException",
        arn,
    )
