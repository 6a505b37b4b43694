"""Lifecycle policies end to end: Create, Get, List, Update and Delete through boto3 and the aws
CLI, every cross-field rule of a policy (exception class and the member named), dry runs,
idempotency, tags, and the lifecycle execution APIs' errors."""

from __future__ import annotations

import copy
import json
import time
import uuid

import pytest

from kiln_testlib import arn_prefix, assert_client_error, unique_name

COMBINATION = "InvalidParameterCombinationException"
VALUE = "InvalidParameterValueException"

AMI_DETAILS = [
    {
        "action": {"type": "DEPRECATE", "includeResources": {"amis": True}},
        "filter": {"type": "AGE", "value": 90, "unit": "DAYS"},
    },
    {
        "action": {"type": "DISABLE", "includeResources": {"amis": True}},
        "filter": {"type": "AGE", "value": 120, "unit": "DAYS"},
    },
    {
        "action": {"type": "DELETE", "includeResources": {"amis": True, "snapshots": True}},
        "filter": {"type": "AGE", "value": 180, "unit": "DAYS", "retainAtLeast": 3},
        "exclusionRules": {
            "tagMap": {"Retain": "True"},
            "amis": {
                "isPublic": True,
                "regions": ["eu-central-1"],
                "sharedAccounts": ["444455556666"],
                "lastLaunched": {"value": 30, "unit": "DAYS"},
                "tagMap": {"SharedWith": "Partner"},
            },
        },
    },
]
RECIPES = {"recipes": [{"name": "web", "semanticVersion": "1.x.x"}]}


def create(client, name: str, **overrides) -> str:
    request = {
        "name": name,
        "executionRole": "ib-lifecycle",
        "resourceType": "AMI_IMAGE",
        "policyDetails": copy.deepcopy(AMI_DETAILS),
        "resourceSelection": RECIPES,
    }
    request.update(overrides)
    return client.create_lifecycle_policy(**request)["lifecyclePolicyArn"]


def get(client, arn: str) -> dict:
    return client.get_lifecycle_policy(lifecyclePolicyArn=arn)["lifecyclePolicy"]


def names_listed(client, *filters) -> list[str]:
    pages = client.get_paginator("list_lifecycle_policies").paginate(
        filters=[{"name": n, "values": v} for n, v in filters]
    )
    return [s["name"] for page in pages for s in page["lifecyclePolicySummaryList"]]


def delete_rule(filter_: dict | None = None, **action) -> dict:
    return {
        "action": {"type": "DELETE", **action},
        "filter": filter_ or {"type": "COUNT", "value": 5},
    }


# --- Create and Get ----------------------------------------------------------------------------


def test_create_answers_the_arn_and_get_echoes_every_member(client):
    name = unique_name("lcp")
    response = client.create_lifecycle_policy(
        name=name,
        description="web AMIs age out",
        executionRole="arn:aws:iam::111122223333:role/ib-lifecycle",
        resourceType="AMI_IMAGE",
        policyDetails=AMI_DETAILS,
        resourceSelection=RECIPES,
        tags={"team": "web"},
        clientToken="tok-" + name,
    )
    arn = response["lifecyclePolicyArn"]
    assert arn == f"{arn_prefix()}:lifecycle-policy/{name}"
    assert response["clientToken"] == "tok-" + name
    before = time.time()
    got = get(client, arn)
    assert got["arn"] == arn
    assert got["name"] == name
    assert got["description"] == "web AMIs age out"
    assert got["status"] == "ENABLED"
    assert got["executionRole"] == "arn:aws:iam::111122223333:role/ib-lifecycle"
    assert got["resourceType"] == "AMI_IMAGE"
    assert got["resourceSelection"] == RECIPES
    assert got["tags"] == {"team": "web"}
    assert got["policyDetails"][0]["filter"] == AMI_DETAILS[0]["filter"]
    assert got["policyDetails"][2]["filter"] == AMI_DETAILS[2]["filter"]
    assert got["policyDetails"][2]["exclusionRules"] == AMI_DETAILS[2]["exclusionRules"]
    assert got["policyDetails"][2]["action"]["includeResources"]["snapshots"] is True
    # Timestamps are numbers, which boto3 turns into datetimes.
    assert abs(got["dateCreated"].timestamp() - before) < 60
    assert "dateUpdated" not in got and "dateLastRun" not in got


def test_container_policy_and_tag_selection(client):
    arn = create(
        client,
        unique_name("lcp"),
        resourceType="CONTAINER_IMAGE",
        policyDetails=[delete_rule(includeResources={"containers": True})],
        resourceSelection={"tagMap": {"env": "test"}},
        status="DISABLED",
    )
    got = get(client, arn)
    assert got["resourceType"] == "CONTAINER_IMAGE"
    assert got["status"] == "DISABLED"
    assert got["resourceSelection"] == {"tagMap": {"env": "test"}}
    assert got["policyDetails"][0]["action"]["includeResources"]["containers"] is True


def test_names_are_unique_per_account_and_region(client):
    name = unique_name("lcp")
    create(client, name)
    assert_client_error(lambda: create(client, name), "ResourceAlreadyExistsException", name)
    assert_client_error(lambda: create(client, name.upper()), "ResourceAlreadyExistsException")


def test_get_of_an_unknown_policy_is_not_found(client):
    arn = f"{arn_prefix()}:lifecycle-policy/{unique_name('none')}"
    assert_client_error(
        lambda: client.get_lifecycle_policy(lifecyclePolicyArn=arn), "ResourceNotFoundException", arn
    )


def test_dry_run_checks_everything_and_creates_nothing(client):
    name = unique_name("lcp")
    with pytest.raises(client.exceptions.DryRunOperationException):
        create(client, name, dryRun=True)
    assert names_listed(client, ("name", [name])) == []
    # A dry run of an invalid request answers the validation error, not DryRunOperation.
    assert_client_error(
        lambda: create(client, name, dryRun=True, policyDetails=[delete_rule(), delete_rule()]),
        COMBINATION,
        "policyDetails[1].action.type",
    )
    # And a taken name is refused before the dry run answers.
    create(client, name)
    assert_client_error(lambda: create(client, name, dryRun=True), "ResourceAlreadyExistsException")


def test_a_repeated_client_token_answers_the_first_response(client):
    name = unique_name("lcp")
    token = "idem-" + name
    first = create(client, name, clientToken=token)
    again = create(client, name, clientToken=token)
    assert again == first
    assert_client_error(
        lambda: create(client, name, clientToken=token, description="other"),
        "IdempotentParameterMismatchException",
        token,
    )


def test_tags_work_on_the_policy_arn(client):
    arn = create(client, unique_name("lcp"), tags={"a": "1"})
    client.tag_resource(resourceArn=arn, tags={"b": "2"})
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "1", "b": "2"}
    client.untag_resource(resourceArn=arn, tagKeys=["a"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "2"}
    assert get(client, arn)["tags"] == {"b": "2"}


def test_aws_cli_creates_and_gets_a_policy(aws, tmp_path):
    name = unique_name("lcp")
    request = tmp_path / "policy.json"
    request.write_text(
        json.dumps(
            {
                "name": name,
                "executionRole": "ib-lifecycle",
                "resourceType": "AMI_IMAGE",
                "policyDetails": AMI_DETAILS,
                "resourceSelection": RECIPES,
            }
        )
    )
    created = aws.json("create-lifecycle-policy", "--cli-input-json", f"file://{request}")
    arn = created["lifecyclePolicyArn"]
    assert arn.endswith(f":lifecycle-policy/{name}")
    got = aws.json("get-lifecycle-policy", "--lifecycle-policy-arn", arn)["lifecyclePolicy"]
    assert got["name"] == name
    assert got["status"] == "ENABLED"
    assert got["policyDetails"][1]["action"]["type"] == "DISABLE"
    assert isinstance(got["dateCreated"], (int, float))


# --- The cross-field rules, one test each --------------------------------------------------------


def refuse(client, code: str, member: str, **overrides) -> None:
    exc = assert_client_error(lambda: create(client, unique_name("bad"), **overrides), code, member)
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_rule_at_most_one_rule_per_action(client):
    refuse(client, COMBINATION, "policyDetails[1].action.type", policyDetails=[delete_rule(), delete_rule()])


def test_rule_count_only_with_delete(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].filter.type",
        policyDetails=[{"action": {"type": "DEPRECATE"}, "filter": {"type": "COUNT", "value": 3}}],
    )


def test_rule_age_needs_a_unit(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].filter.unit",
        policyDetails=[delete_rule({"type": "AGE", "value": 3})],
    )


def test_rule_retain_at_least_only_with_age(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].filter.retainAtLeast",
        policyDetails=[delete_rule({"type": "COUNT", "value": 3, "retainAtLeast": 2})],
    )


def test_rule_retain_at_least_only_with_delete(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].filter.retainAtLeast",
        policyDetails=[
            {
                "action": {"type": "DEPRECATE"},
                "filter": {"type": "AGE", "value": 3, "unit": "DAYS", "retainAtLeast": 2},
            }
        ],
    )


def test_rule_snapshots_only_with_amis(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].action.includeResources.snapshots",
        policyDetails=[delete_rule(includeResources={"snapshots": True})],
    )


def test_rule_deprecate_and_disable_include_amis_only(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].action.includeResources.snapshots",
        policyDetails=[
            {
                "action": {"type": "DISABLE", "includeResources": {"amis": True, "snapshots": True}},
                "filter": {"type": "AGE", "value": 3, "unit": "DAYS"},
            }
        ],
    )


def test_rule_container_policies_only_delete(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].action.type",
        resourceType="CONTAINER_IMAGE",
        policyDetails=[AMI_DETAILS[0]],
    )


def test_rule_container_policies_include_no_amis(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].action.includeResources.amis",
        resourceType="CONTAINER_IMAGE",
        policyDetails=[delete_rule(includeResources={"amis": True})],
    )


def test_rule_container_policies_include_no_snapshots(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].action.includeResources.snapshots",
        resourceType="CONTAINER_IMAGE",
        policyDetails=[delete_rule(includeResources={"containers": True, "snapshots": True})],
    )


def test_rule_container_policies_exclude_no_amis(client):
    rule = delete_rule()
    rule["exclusionRules"] = {"amis": {"isPublic": True}}
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].exclusionRules.amis",
        resourceType="CONTAINER_IMAGE",
        policyDetails=[rule],
    )


def test_rule_ami_policies_include_no_containers(client):
    refuse(
        client,
        COMBINATION,
        "policyDetails[0].action.includeResources.containers",
        policyDetails=[delete_rule(includeResources={"containers": True})],
    )


def test_rule_recipes_and_tag_map_not_both(client):
    refuse(
        client,
        COMBINATION,
        "resourceSelection",
        resourceSelection={**RECIPES, "tagMap": {"env": "test"}},
    )


def test_rule_recipes_or_tag_map_required(raw_client):
    refuse(raw_client, COMBINATION, "resourceSelection", resourceSelection={})


def test_rule_a_recipe_selected_twice_is_a_bad_value(client):
    twice = {"recipes": RECIPES["recipes"] * 2}
    refuse(client, VALUE, "resourceSelection.recipes[1]", resourceSelection=twice)


def test_rule_semantic_version_pattern(client):
    exc = assert_client_error(
        lambda: create(
            client,
            unique_name("bad"),
            resourceSelection={"recipes": [{"name": "web", "semanticVersion": "1.*"}]},
        ),
        "InvalidRequestException",
        "semanticVersion",
    )
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# --- List ------------------------------------------------------------------------------------------


def test_list_filters_by_name_resource_type_and_status(client):
    stem = unique_name("lcl")
    ami = create(client, f"{stem}-ami")
    container = create(
        client,
        f"{stem}-ctr",
        resourceType="CONTAINER_IMAGE",
        policyDetails=[delete_rule()],
        status="DISABLED",
        description="containers",
    )
    assert sorted(names_listed(client, ("name", [f"{stem}*"]))) == [f"{stem}-ami", f"{stem}-ctr"]
    assert names_listed(client, ("name", [f"{stem}*"]), ("resourceType", ["CONTAINER_IMAGE"])) == [
        f"{stem}-ctr"
    ]
    assert names_listed(client, ("name", [f"{stem}*"]), ("status", ["ENABLED"])) == [f"{stem}-ami"]
    assert names_listed(client, ("name", [f"{stem}-ctr"]), ("status", ["ENABLED"])) == []
    summaries = client.list_lifecycle_policies(filters=[{"name": "name", "values": [f"{stem}-ctr"]}])[
        "lifecyclePolicySummaryList"
    ]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["arn"] == container
    assert summary["description"] == "containers"
    assert summary["status"] == "DISABLED"
    assert summary["resourceType"] == "CONTAINER_IMAGE"
    assert summary["executionRole"] == "ib-lifecycle"
    assert summary["tags"] == {}
    assert "dateCreated" in summary
    assert ami != container


def test_list_pages(client):
    stem = unique_name("lcpg")
    for i in range(3):
        create(client, f"{stem}-{i}")
    first = client.list_lifecycle_policies(filters=[{"name": "name", "values": [f"{stem}*"]}], maxResults=2)
    assert len(first["lifecyclePolicySummaryList"]) == 2
    second = client.list_lifecycle_policies(
        filters=[{"name": "name", "values": [f"{stem}*"]}], maxResults=2, nextToken=first["nextToken"]
    )
    assert len(second["lifecyclePolicySummaryList"]) == 1
    assert "nextToken" not in second


def test_list_refuses_an_unknown_filter(client):
    assert_client_error(
        lambda: client.list_lifecycle_policies(filters=[{"name": "owner", "values": ["x"]}]),
        "InvalidRequestException",
        "filters[0].name",
    )


# --- Update ----------------------------------------------------------------------------------------


def update(client, arn: str, **overrides) -> None:
    request = {
        "lifecyclePolicyArn": arn,
        "executionRole": "ib-lifecycle",
        "resourceType": "AMI_IMAGE",
        "policyDetails": [delete_rule()],
        "resourceSelection": {"tagMap": {"env": "prod"}},
    }
    request.update(overrides)
    assert client.update_lifecycle_policy(**request)["lifecyclePolicyArn"] == arn


def test_update_is_a_full_replace(client):
    arn = create(client, unique_name("lcu"), description="first", status="DISABLED")
    update(client, arn, executionRole="other-role")
    got = get(client, arn)
    # An omitted status re-enables; an omitted description is removed.
    assert got["status"] == "ENABLED"
    assert "description" not in got
    assert got["executionRole"] == "other-role"
    assert got["resourceSelection"] == {"tagMap": {"env": "prod"}}
    assert len(got["policyDetails"]) == 1
    assert got["policyDetails"][0]["filter"] == {"type": "COUNT", "value": 5}
    assert got["dateUpdated"] >= got["dateCreated"]
    update(client, arn, status="DISABLED", description="second")
    got = get(client, arn)
    assert got["status"] == "DISABLED"
    assert got["description"] == "second"


def test_update_cannot_change_the_resource_type(client):
    arn = create(client, unique_name("lcu"))
    assert_client_error(
        lambda: update(client, arn, resourceType="CONTAINER_IMAGE"),
        "InvalidRequestException",
        "resourceType",
    )
    assert get(client, arn)["resourceType"] == "AMI_IMAGE"


def test_update_checks_the_rules(client):
    arn = create(client, unique_name("lcu"))
    assert_client_error(
        lambda: update(client, arn, policyDetails=[delete_rule(includeResources={"snapshots": True})]),
        COMBINATION,
        "policyDetails[0].action.includeResources.snapshots",
    )
    assert len(get(client, arn)["policyDetails"]) == 3


def test_update_of_an_unknown_policy_is_not_found(client):
    arn = f"{arn_prefix()}:lifecycle-policy/{unique_name('none')}"
    assert_client_error(lambda: update(client, arn), "ResourceNotFoundException", arn)


# --- Delete ----------------------------------------------------------------------------------------


def test_delete_removes_the_policy(client):
    name = unique_name("lcd")
    arn = create(client, name)
    assert client.delete_lifecycle_policy(lifecyclePolicyArn=arn)["lifecyclePolicyArn"] == arn
    assert_client_error(lambda: get(client, arn), "ResourceNotFoundException")
    assert names_listed(client, ("name", [name])) == []
    assert_client_error(
        lambda: client.delete_lifecycle_policy(lifecyclePolicyArn=arn), "ResourceNotFoundException", arn
    )
    # The name is free again.
    assert create(client, name) == arn


# --- The execution APIs ----------------------------------------------------------------------------


def test_executions_of_a_new_policy_and_of_an_image_are_empty(client):
    arn = create(client, unique_name("lce"))
    assert client.list_lifecycle_executions(resourceArn=arn)["lifecycleExecutions"] == []
    image = f"{arn_prefix()}:image/{unique_name('img')}/1.0.0/1"
    assert client.list_lifecycle_executions(resourceArn=image)["lifecycleExecutions"] == []


def test_executions_of_another_kind_of_arn_are_refused(client):
    for arn in (
        f"{arn_prefix()}:component/c/1.0.0/1",
        f"{arn_prefix()}:image/web/1.0.0",
        f"{arn_prefix()}:infrastructure-configuration/x",
    ):
        assert_client_error(
            lambda: client.list_lifecycle_executions(resourceArn=arn), VALUE, "resourceArn", arn
        )


def test_unknown_execution_ids_are_not_found(client):
    unknown = f"lce-{uuid.uuid4()}"
    assert_client_error(
        lambda: client.get_lifecycle_execution(lifecycleExecutionId=unknown),
        "ResourceNotFoundException",
        unknown,
    )
    assert_client_error(
        lambda: client.list_lifecycle_execution_resources(lifecycleExecutionId=unknown),
        "ResourceNotFoundException",
        unknown,
    )
    assert_client_error(
        lambda: client.cancel_lifecycle_execution(lifecycleExecutionId=unknown),
        "ResourceNotFoundException",
        unknown,
    )
