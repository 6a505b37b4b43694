"""Infrastructure configurations end to end: Create, Get, List, Update and Delete through boto3
and through the aws CLI, dry runs, and names that normalise alike."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from kiln_testlib import (
    DEFAULT_ACCOUNT,
    REGION,
    arn_prefix,
    assert_client_error,
    create_infra,
    unique_name,
)

FULL_SETTINGS = {
    "description": "builds on big boxes",
    "instanceTypes": ["m5.large", "m5.xlarge"],
    "instanceProfileName": "EC2InstanceProfileForImageBuilder",
    "securityGroupIds": ["sg-0123456789abcdef0"],
    "subnetId": "subnet-0123456789abcdef0",
    "logging": {"s3Logs": {"s3BucketName": "my-logs", "s3KeyPrefix": "builds/"}},
    "keyPair": "my-key",
    "terminateInstanceOnFailure": False,
    "snsTopicArn": "arn:aws:sns:us-east-1:123456789012:builds",
    "resourceTags": {"cost-centre": "42"},
    "instanceMetadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 2},
    "tags": {"team": "platform"},
}


def names_listed(client, **filters) -> list[str]:
    response = client.list_infrastructure_configurations(**filters)
    return [s["name"] for s in response["infrastructureConfigurationSummaryList"]]


def by_name(name: str) -> dict:
    return {"filters": [{"name": "name", "values": [name]}]}


def test_create_returns_the_arn_and_echoes_the_client_token(client, name):
    response = client.create_infrastructure_configuration(
        name=name, instanceProfileName="p", clientToken="token-" + name
    )
    assert (
        response["infrastructureConfigurationArn"]
        == f"{arn_prefix()}:infrastructure-configuration/{name}"
    )
    assert response["clientToken"] == "token-" + name
    assert response["requestId"]


def test_get_returns_every_member_that_was_set(client, name):
    arn = create_infra(client, name, **{k: v for k, v in FULL_SETTINGS.items() if k != "instanceProfileName"})
    got = client.get_infrastructure_configuration(infrastructureConfigurationArn=arn)[
        "infrastructureConfiguration"
    ]
    assert got["arn"] == arn
    assert got["name"] == name
    for key, value in FULL_SETTINGS.items():
        assert got[key] == value, key
    assert isinstance(got["dateCreated"], str)
    datetime.strptime(got["dateCreated"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert "dateUpdated" not in got


def test_terminate_instance_on_failure_defaults_to_true(client, name):
    arn = create_infra(client, name)
    got = client.get_infrastructure_configuration(infrastructureConfigurationArn=arn)[
        "infrastructureConfiguration"
    ]
    assert got["terminateInstanceOnFailure"] is True
    assert got["tags"] == {}


def test_list_filters_by_name_and_summarises(client, name):
    arn = create_infra(client, name, description="summary me", tags={"k": "v"})
    create_infra(client, name + "-other")
    response = client.list_infrastructure_configurations(**by_name(name))
    summaries = response["infrastructureConfigurationSummaryList"]
    assert [s["arn"] for s in summaries] == [arn]
    summary = summaries[0]
    assert summary["description"] == "summary me"
    assert summary["tags"] == {"k": "v"}
    assert summary["instanceProfileName"] == "EC2InstanceProfileForImageBuilder"


def test_list_name_filter_supports_trailing_wildcard(client):
    prefix = unique_name("wild")
    for suffix in ("a", "b"):
        create_infra(client, f"{prefix}-{suffix}")
    assert sorted(names_listed(client, **by_name(prefix + "*"))) == [f"{prefix}-a", f"{prefix}-b"]


def test_list_refuses_an_unknown_filter(client):
    assert_client_error(
        lambda: client.list_infrastructure_configurations(
            filters=[{"name": "colour", "values": ["blue"]}]
        ),
        "InvalidRequestException",
        "filters[0].name",
        "colour",
    )


def test_update_replaces_the_settings_and_sets_date_updated(client, name):
    arn = create_infra(client, name, description="before", keyPair="old-key")
    response = client.update_infrastructure_configuration(
        infrastructureConfigurationArn=arn,
        instanceProfileName="OtherProfile",
        description="after",
        instanceTypes=["c5.large"],
    )
    assert response["infrastructureConfigurationArn"] == arn
    got = client.get_infrastructure_configuration(infrastructureConfigurationArn=arn)[
        "infrastructureConfiguration"
    ]
    assert got["description"] == "after"
    assert got["instanceProfileName"] == "OtherProfile"
    assert got["instanceTypes"] == ["c5.large"]
    # Update takes the whole definition: what it omits is gone.
    assert "keyPair" not in got
    assert got["dateUpdated"] >= got["dateCreated"]
    assert got["name"] == name


def test_an_unknown_instance_type_is_refused_at_create_naming_it(client, name):
    assert_client_error(
        lambda: create_infra(client, name, instanceTypes=["t3.micro", "x9.enormous"]),
        "InvalidParameterValueException",
        "instanceTypes[1]",
        "x9.enormous",
    )
    # Nothing was created: the name is still free.
    create_infra(client, name, instanceTypes=["t3.micro"])


def test_an_unknown_instance_type_is_refused_at_update_and_nothing_changes(client, name):
    arn = create_infra(client, name, instanceTypes=["m5.large"])
    assert_client_error(
        lambda: client.update_infrastructure_configuration(
            infrastructureConfigurationArn=arn,
            instanceProfileName="p",
            instanceTypes=["m5.huge"],
        ),
        "InvalidParameterValueException",
        "instanceTypes[0]",
        "m5.huge",
    )
    got = client.get_infrastructure_configuration(infrastructureConfigurationArn=arn)[
        "infrastructureConfiguration"
    ]
    assert got["instanceTypes"] == ["m5.large"]


def test_update_of_a_missing_configuration_is_not_found(client):
    missing = f"{arn_prefix()}:infrastructure-configuration/{unique_name('missing')}"
    assert_client_error(
        lambda: client.update_infrastructure_configuration(
            infrastructureConfigurationArn=missing, instanceProfileName="p"
        ),
        "ResourceNotFoundException",
        missing,
    )


def test_delete_removes_it(client, name):
    arn = create_infra(client, name)
    response = client.delete_infrastructure_configuration(infrastructureConfigurationArn=arn)
    assert response["infrastructureConfigurationArn"] == arn
    assert_client_error(
        lambda: client.get_infrastructure_configuration(infrastructureConfigurationArn=arn),
        "ResourceNotFoundException",
    )
    assert names_listed(client, **by_name(name)) == []
    assert_client_error(
        lambda: client.delete_infrastructure_configuration(infrastructureConfigurationArn=arn),
        "ResourceNotFoundException",
    )


def test_a_deleted_name_can_be_used_again(client, name):
    arn = create_infra(client, name)
    client.delete_infrastructure_configuration(infrastructureConfigurationArn=arn)
    assert create_infra(client, name) == arn


def test_dry_run_checks_everything_and_writes_nothing(client, name):
    with pytest.raises(client.exceptions.DryRunOperationException) as info:
        create_infra(client, name, dryRun=True)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert names_listed(client, **by_name(name)) == []
    # Nothing was written, so the real create still works.
    create_infra(client, name)


def test_dry_run_still_reports_a_real_error_first(client, name):
    create_infra(client, name)
    assert_client_error(
        lambda: create_infra(client, name, dryRun=True), "ResourceAlreadyExistsException"
    )


def test_names_that_normalise_alike_clash(client):
    base = unique_name("Clash")
    arn = create_infra(client, f"My {base}_Config")
    assert arn.endswith(f"/my-{base.lower()}-config")
    got = client.get_infrastructure_configuration(infrastructureConfigurationArn=arn)[
        "infrastructureConfiguration"
    ]
    assert got["name"] == f"My {base}_Config"
    for alike in (f"my-{base.lower()}-config", f"MY {base.upper()} CONFIG", f"my_{base}_config"):
        assert_client_error(
            lambda alike=alike: create_infra(client, alike),
            "ResourceAlreadyExistsException",
            arn,
        )


def test_resource_of_another_region_is_not_found(client, name):
    arn = create_infra(client, name)
    elsewhere = arn.replace(f":{REGION}:", ":eu-west-1:")
    assert_client_error(
        lambda: client.get_infrastructure_configuration(infrastructureConfigurationArn=elsewhere),
        "ResourceNotFoundException",
    )
    assert f":{DEFAULT_ACCOUNT}:" in arn


# --- The same through the aws CLI -------------------------------------------------------------


def test_crud_through_the_aws_cli(aws, tmp_path):
    name = unique_name("cli-infra")
    created = aws.json(
        "create-infrastructure-configuration",
        "--name",
        name,
        "--instance-profile-name",
        "EC2InstanceProfileForImageBuilder",
        "--instance-types",
        "t3.micro",
        "t3.small",
        "--tags",
        "team=cli",
    )
    arn = created["infrastructureConfigurationArn"]
    assert arn == f"{arn_prefix()}:infrastructure-configuration/{name}"
    assert created["clientToken"]  # generated by the CLI

    got = aws.json("get-infrastructure-configuration", "--infrastructure-configuration-arn", arn)
    config = got["infrastructureConfiguration"]
    assert config["instanceTypes"] == ["t3.micro", "t3.small"]
    assert config["tags"] == {"team": "cli"}

    listed = aws.json(
        "list-infrastructure-configurations", "--filters", f"name=name,values={name}"
    )
    assert [s["arn"] for s in listed["infrastructureConfigurationSummaryList"]] == [arn]

    settings = tmp_path / "update.json"
    settings.write_text(
        json.dumps(
            {
                "infrastructureConfigurationArn": arn,
                "instanceProfileName": "EC2InstanceProfileForImageBuilder",
                "description": "updated by the CLI",
                "terminateInstanceOnFailure": False,
            }
        )
    )
    aws.json("update-infrastructure-configuration", "--cli-input-json", f"file://{settings}")
    config = aws.json(
        "get-infrastructure-configuration", "--infrastructure-configuration-arn", arn
    )["infrastructureConfiguration"]
    assert config["description"] == "updated by the CLI"
    assert config["terminateInstanceOnFailure"] is False

    deleted = aws.json(
        "delete-infrastructure-configuration", "--infrastructure-configuration-arn", arn
    )
    assert deleted["infrastructureConfigurationArn"] == arn
    missing = aws.run(
        "get-infrastructure-configuration",
        "--infrastructure-configuration-arn",
        arn,
        check=False,
    )
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr


def test_cli_reports_validation_errors(aws):
    result = aws.run(
        "create-infrastructure-configuration",
        "--name",
        "x",
        "--instance-profile-name",
        "p",
        check=False,
    )
    assert result.returncode != 0
    assert "InvalidRequestException" in result.stderr
    assert "'name'" in result.stderr
