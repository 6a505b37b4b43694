"""Distribution configurations: Create, Get, List, Update (which replaces the distributions)
and Delete, with the rules that span entries (one entry per Region, AMI or container output)."""

from __future__ import annotations

import pytest

from kiln_testlib import (
    arn_prefix,
    assert_client_error,
    create_component,
    create_distribution,
    create_image_recipe,
    create_infra,
    unique_name,
)

AMI_ENTRY = {
    "region": "us-east-1",
    "amiDistributionConfiguration": {
        "name": "web-{{ imagebuilder:buildDate }}",
        "description": "web server AMI",
        "targetAccountIds": ["444455556666"],
        "amiTags": {"built-by": "kiln"},
        "launchPermission": {"userIds": ["777788889999"]},
    },
}
SECOND_REGION_ENTRY = {
    "region": "eu-west-1",
    "amiDistributionConfiguration": {"name": "web-eu-{{ imagebuilder:buildDate }}"},
}


def get(client, arn: str) -> dict:
    return client.get_distribution_configuration(distributionConfigurationArn=arn)[
        "distributionConfiguration"
    ]


def listed(client, name: str) -> list[dict]:
    return client.list_distribution_configurations(
        filters=[{"name": "name", "values": [name]}]
    )["distributionConfigurationSummaryList"]


def test_create_and_get(client, name):
    response = client.create_distribution_configuration(
        name=name,
        description="two regions",
        distributions=[AMI_ENTRY, SECOND_REGION_ENTRY],
        tags={"team": "web"},
    )
    arn = response["distributionConfigurationArn"]
    assert arn == f"{arn_prefix()}:distribution-configuration/{name}"
    assert response["clientToken"]
    config = get(client, arn)
    assert config["arn"] == arn
    assert config["name"] == name
    assert config["description"] == "two regions"
    assert config["distributions"] == [AMI_ENTRY, SECOND_REGION_ENTRY]
    assert config["timeoutMinutes"] == 720
    assert config["tags"] == {"team": "web"}
    assert config["dateCreated"]


def test_container_distribution_round_trips(client, name):
    entry = {
        "region": "us-east-1",
        "containerDistributionConfiguration": {
            "description": "push",
            "containerTags": ["latest", "1.0"],
            "targetRepository": {"service": "ECR", "repositoryName": "team/app"},
        },
    }
    arn = client.create_distribution_configuration(name=name, distributions=[entry])[
        "distributionConfigurationArn"
    ]
    assert get(client, arn)["distributions"] == [entry]


def test_list_summarises_with_regions(client, name):
    arn = create_distribution(client, name, tags={"k": "v"})
    summaries = listed(client, name)
    assert [s["arn"] for s in summaries] == [arn]
    assert summaries[0]["regions"] == ["us-east-1"]
    assert summaries[0]["tags"] == {"k": "v"}


def test_update_replaces_the_distributions(client, name):
    arn = client.create_distribution_configuration(
        name=name, description="before", distributions=[AMI_ENTRY, SECOND_REGION_ENTRY]
    )["distributionConfigurationArn"]
    response = client.update_distribution_configuration(
        distributionConfigurationArn=arn, description="after", distributions=[SECOND_REGION_ENTRY]
    )
    assert response["distributionConfigurationArn"] == arn
    config = get(client, arn)
    assert config["description"] == "after"
    assert config["distributions"] == [SECOND_REGION_ENTRY]
    assert config["dateUpdated"] >= config["dateCreated"]
    assert listed(client, name)[0]["regions"] == ["eu-west-1"]


def test_update_of_a_missing_configuration_is_not_found(client):
    missing = f"{arn_prefix()}:distribution-configuration/{unique_name('missing')}"
    assert_client_error(
        lambda: client.update_distribution_configuration(
            distributionConfigurationArn=missing, distributions=[AMI_ENTRY]
        ),
        "ResourceNotFoundException",
        missing,
    )


def test_one_entry_per_region(client, name):
    assert_client_error(
        lambda: client.create_distribution_configuration(
            name=name, distributions=[AMI_ENTRY, AMI_ENTRY]
        ),
        "InvalidParameterCombinationException",
        "distributions[1].region",
    )
    assert listed(client, name) == []


def test_an_entry_needs_an_output(client, name):
    assert_client_error(
        lambda: client.create_distribution_configuration(
            name=name, distributions=[{"region": "us-east-1"}]
        ),
        "InvalidRequestException",
        "distributions[0]",
    )


def test_an_entry_is_ami_or_container_not_both(client, name):
    both = dict(AMI_ENTRY)
    both["containerDistributionConfiguration"] = {
        "targetRepository": {"service": "ECR", "repositoryName": "app"}
    }
    assert_client_error(
        lambda: client.create_distribution_configuration(name=name, distributions=[both]),
        "InvalidParameterCombinationException",
        "distributions[0].containerDistributionConfiguration",
    )


def test_region_must_look_like_a_region(client, name):
    assert_client_error(
        lambda: client.create_distribution_configuration(
            name=name,
            distributions=[
                {
                    "region": "moon-base",
                    "amiDistributionConfiguration": {"name": "x-{{ imagebuilder:buildDate }}"},
                }
            ],
        ),
        "InvalidRequestException",
        "distributions[0].region",
        "moon-base",
    )


def test_names_that_normalise_alike_clash(client):
    base = unique_name("Dist")
    arn = create_distribution(client, f"My {base}")
    assert arn.endswith(f"/my-{base.lower()}")
    assert_client_error(
        lambda: create_distribution(client, f"my_{base.upper()}"), "ResourceAlreadyExistsException"
    )


def test_dry_run_writes_nothing(client, name):
    with pytest.raises(client.exceptions.DryRunOperationException):
        create_distribution(client, name, dryRun=True)
    assert listed(client, name) == []


def test_delete(client, name):
    arn = create_distribution(client, name)
    response = client.delete_distribution_configuration(distributionConfigurationArn=arn)
    assert response["distributionConfigurationArn"] == arn
    assert_client_error(lambda: get(client, arn), "ResourceNotFoundException")


def test_a_configuration_a_pipeline_uses_cannot_be_deleted(client):
    dist = create_distribution(client)
    pipeline = client.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=create_image_recipe(client, [create_component(client)]),
        infrastructureConfigurationArn=create_infra(client),
        distributionConfigurationArn=dist,
    )["imagePipelineArn"]
    assert_client_error(
        lambda: client.delete_distribution_configuration(distributionConfigurationArn=dist),
        "ResourceDependencyException",
        pipeline,
    )

