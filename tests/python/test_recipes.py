"""Image and container recipes: Create (components resolved and checked to exist, `x` versions
accepted, the parent image stored, wildcard recipe versions taking the next free patch), Get,
List with owner filters, Delete, and the rules about components a recipe lists."""

from __future__ import annotations

import pytest

from kiln_testlib import (
    BUILD_COMPONENT_YAML,
    DEFAULT_ACCOUNT,
    PARENT_AMI,
    arn_prefix,
    assert_client_error,
    create_component,
    create_image_recipe,
    create_infra,
    unique_name,
)

DOCKERFILE = (
    "FROM {{{ imagebuilder:parentImage }}}\n"
    "{{{ imagebuilder:environments }}}\n"
    "{{{ imagebuilder:components }}}\n"
)

PARAMETERISED_COMPONENT_YAML = """\
schemaVersion: 1.0
parameters:
  - Greeting:
      type: string
      default: hello
  - Target:
      type: string
      description: who to greet (required)
phases:
  - name: build
    steps:
      - name: Greet
        action: ExecuteBash
        inputs:
          commands:
            - echo "{{ Greeting }} {{ Target }}"
"""


def recipe_arn(name: str, version: str) -> str:
    return f"{arn_prefix()}:image-recipe/{name}/{version}"


def get_recipe(client, arn: str) -> dict:
    return client.get_image_recipe(imageRecipeArn=arn)["imageRecipe"]


def recipe_names(client, name_filter: str, **extra) -> list[str]:
    response = client.list_image_recipes(
        filters=[{"name": "name", "values": [name_filter]}], **extra
    )
    return [s["arn"] for s in response["imageRecipeSummaryList"]]


@pytest.fixture(scope="module")
def component(client) -> str:
    return create_component(client)


def create_container_recipe(client, components: list[str], name: str | None = None, **extra) -> str:
    kwargs = dict(
        containerType="DOCKER",
        name=name or unique_name("ctr"),
        semanticVersion="1.0.0",
        components=[{"componentArn": arn} for arn in components],
        dockerfileTemplateData=DOCKERFILE,
        parentImage="amazonlinux:latest",
        targetRepository={"service": "ECR", "repositoryName": "my-repo"},
    )
    kwargs.update(extra)
    return client.create_container_recipe(**kwargs)["containerRecipeArn"]


# --- Image recipes: create and get -------------------------------------------------------------


def test_create_and_get_an_image_recipe(client, component, name):
    response = client.create_image_recipe(
        name=name,
        semanticVersion="1.0.0",
        description="web server",
        components=[{"componentArn": component}],
        parentImage=PARENT_AMI,
        blockDeviceMappings=[
            {"deviceName": "/dev/xvda", "ebs": {"volumeSize": 30, "volumeType": "gp3"}}
        ],
        workingDirectory="/tmp",
        tags={"team": "web"},
    )
    arn = response["imageRecipeArn"]
    assert arn == recipe_arn(name, "1.0.0")
    assert response["latestVersionReferences"]["latestVersionArn"] == recipe_arn(name, "x.x.x")
    assert response["latestVersionReferences"]["latestPatchVersionArn"] == recipe_arn(name, "1.0.0")
    recipe = get_recipe(client, arn)
    assert recipe["arn"] == arn
    assert recipe["name"] == name
    assert recipe["version"] == "1.0.0"
    assert "type" not in recipe  # "isn't currently returned in responses" (the model)
    assert recipe["description"] == "web server"
    assert recipe["parentImage"] == PARENT_AMI
    assert recipe["platform"] == "Linux"
    assert recipe["owner"] == DEFAULT_ACCOUNT
    assert recipe["components"] == [{"componentArn": component}]
    assert recipe["blockDeviceMappings"][0]["deviceName"] == "/dev/xvda"
    assert recipe["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 30
    assert recipe["workingDirectory"] == "/tmp"
    assert recipe["tags"] == {"team": "web"}
    assert recipe["dateCreated"]


def test_component_references_may_use_version_filters(client):
    name = unique_name("filtered")
    create_component(client, name, "1.0.0")
    create_component(client, name, "1.4.0")
    reference = f"{arn_prefix()}:component/{name}/1.x.x"
    arn = create_image_recipe(client, [reference])
    # The recipe keeps the reference as written, so later versions are picked up.
    assert get_recipe(client, arn)["components"] == [{"componentArn": reference}]


def test_a_missing_component_is_named_with_its_position(client, component):
    missing = f"{arn_prefix()}:component/{unique_name('nope')}/1.0.0/1"
    name = unique_name("r")
    assert_client_error(
        lambda: create_image_recipe(client, [component, missing], name=name),
        "InvalidRequestException",
        "components[1].componentArn",
        missing,
    )
    assert recipe_names(client, name) == []


def test_a_filter_that_matches_no_component_is_refused(client, component):
    name = component.split("/")[-3]
    reference = f"{arn_prefix()}:component/{name}/9.x.x"
    assert_client_error(
        lambda: create_image_recipe(client, [reference]),
        "InvalidRequestException",
        "components[0].componentArn",
    )


def test_a_component_may_appear_only_once(client, component):
    version_reference = component.rsplit("/", 1)[0]
    assert_client_error(
        lambda: create_image_recipe(client, [component, version_reference]),
        "InvalidRequestException",
        "components[1].componentArn",
    )


def test_component_parameters_are_checked_against_the_document(client):
    component = create_component(client, data=PARAMETERISED_COMPONENT_YAML)

    def recipe(parameters):
        return client.create_image_recipe(
            name=unique_name("params"),
            semanticVersion="1.0.0",
            components=[{"componentArn": component, "parameters": parameters}],
            parentImage=PARENT_AMI,
        )

    assert_client_error(
        lambda: recipe([{"name": "Greeting", "value": ["hi"]}]),
        "InvalidRequestException",
        "Target",
    )
    assert_client_error(
        lambda: recipe([{"name": "Target", "value": ["world"]}, {"name": "Colour", "value": ["red"]}]),
        "InvalidRequestException",
        "Colour",
    )
    arn = recipe([{"name": "Target", "value": ["world"]}])["imageRecipeArn"]
    assert get_recipe(client, arn)["components"][0]["parameters"] == [
        {"name": "Target", "value": ["world"]}
    ]


def test_parent_image_is_stored_as_written(client, component):
    for parent in (
        "ami-0abcdef1234567890",
        "ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        "arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-2023-x86/x.x.x",
    ):
        arn = create_image_recipe(client, [component], parentImage=parent)
        assert get_recipe(client, arn)["parentImage"] == parent


def test_a_parent_image_arn_must_name_an_image(client, component):
    infra = create_infra(client)
    assert_client_error(
        lambda: create_image_recipe(client, [component], parentImage=infra),
        "InvalidRequestException",
        "parentImage",
    )


def test_platform_comes_from_the_components(client):
    windows = client.create_component(
        name=unique_name("win"),
        semanticVersion="1.0.0",
        platform="Windows",
        data=BUILD_COMPONENT_YAML.replace("ExecuteBash", "ExecutePowerShell"),
    )["componentBuildVersionArn"]
    arn = create_image_recipe(client, [windows])
    assert get_recipe(client, arn)["platform"] == "Windows"


def test_components_of_different_platforms_are_refused(client, component):
    windows = client.create_component(
        name=unique_name("win"),
        semanticVersion="1.0.0",
        platform="Windows",
        data=BUILD_COMPONENT_YAML.replace("ExecuteBash", "ExecutePowerShell"),
    )["componentBuildVersionArn"]
    assert_client_error(
        lambda: create_image_recipe(client, [component, windows]),
        "InvalidRequestException",
        "components[1].componentArn",
    )


# --- Versions and names ------------------------------------------------------------------------


def test_the_same_name_and_version_exists_once(client, component, name):
    create_image_recipe(client, [component], name=name)
    assert_client_error(
        lambda: create_image_recipe(client, [component], name=name),
        "ResourceAlreadyExistsException",
        recipe_arn(name, "1.0.0"),
    )


def test_names_that_normalise_alike_clash(client, component):
    base = unique_name("Recipe")
    arn = create_image_recipe(client, [component], name=f"My {base}")
    assert arn == recipe_arn(f"my-{base.lower()}", "1.0.0")
    assert_client_error(
        lambda: create_image_recipe(client, [component], name=f"my_{base}"),
        "ResourceAlreadyExistsException",
    )


def test_a_wildcard_version_takes_the_next_free_patch(client, component, name):
    create_image_recipe(client, [component], name=name, version="1.0.0")
    assert create_image_recipe(client, [component], name=name, version="1.0.x") == recipe_arn(
        name, "1.0.1"
    )
    assert create_image_recipe(client, [component], name=name, version="1.0.x") == recipe_arn(
        name, "1.0.2"
    )


def test_get_with_a_version_filter_gives_the_newest(client, component, name):
    for version in ("1.0.0", "1.2.0", "2.0.0"):
        create_image_recipe(client, [component], name=name, version=version)
    assert get_recipe(client, recipe_arn(name, "1.x.x"))["version"] == "1.2.0"
    assert get_recipe(client, recipe_arn(name, "x.x.x"))["version"] == "2.0.0"


def test_get_answers_latest_version_references(client, component, name):
    arn = create_image_recipe(client, [component], name=name, version="4.5.6")
    refs = client.get_image_recipe(imageRecipeArn=arn)["latestVersionReferences"]
    assert refs == {
        "latestVersionArn": recipe_arn(name, "x.x.x"),
        "latestMajorVersionArn": recipe_arn(name, "4.x.x"),
        "latestMinorVersionArn": recipe_arn(name, "4.5.x"),
        "latestPatchVersionArn": recipe_arn(name, "4.5.6"),
    }


def test_dry_run_writes_nothing(client, component, name):
    with pytest.raises(client.exceptions.DryRunOperationException):
        create_image_recipe(client, [component], name=name, dryRun=True)
    assert recipe_names(client, name) == []


# --- List and delete ---------------------------------------------------------------------------


def test_list_image_recipes_with_owner_filters(client, component, name):
    arn = create_image_recipe(client, [component], name=name, tags={"k": "v"})
    response = client.list_image_recipes(filters=[{"name": "name", "values": [name]}])
    summaries = response["imageRecipeSummaryList"]
    assert [s["arn"] for s in summaries] == [arn]
    assert summaries[0]["parentImage"] == PARENT_AMI
    assert summaries[0]["owner"] == DEFAULT_ACCOUNT
    assert summaries[0]["platform"] == "Linux"
    assert summaries[0]["tags"] == {"k": "v"}
    assert recipe_names(client, name, owner="Self") == [arn]
    for owner in ("Shared", "Amazon", "ThirdParty", "AWSMarketplace"):
        assert recipe_names(client, name, owner=owner) == [], owner


def test_delete_image_recipe(client, component, name):
    arn = create_image_recipe(client, [component], name=name)
    assert client.delete_image_recipe(imageRecipeArn=arn)["imageRecipeArn"] == arn
    assert_client_error(lambda: get_recipe(client, arn), "ResourceNotFoundException")
    assert_client_error(
        lambda: client.delete_image_recipe(imageRecipeArn=arn), "ResourceNotFoundException"
    )


def test_a_recipe_a_pipeline_uses_cannot_be_deleted(client, component):
    recipe = create_image_recipe(client, [component])
    pipeline = client.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=create_infra(client),
    )["imagePipelineArn"]
    assert_client_error(
        lambda: client.delete_image_recipe(imageRecipeArn=recipe),
        "ResourceDependencyException",
        pipeline,
    )
    client.delete_image_pipeline(imagePipelineArn=pipeline)
    client.delete_image_recipe(imageRecipeArn=recipe)


# --- Container recipes -------------------------------------------------------------------------


def test_create_and_get_a_container_recipe(client, component, name):
    arn = create_container_recipe(client, [component], name=name, description="svc", tags={"a": "b"})
    assert arn == f"{arn_prefix()}:container-recipe/{name}/1.0.0"
    recipe = client.get_container_recipe(containerRecipeArn=arn)["containerRecipe"]
    assert recipe["arn"] == arn
    assert recipe["name"] == name
    assert recipe["containerType"] == "DOCKER"
    assert recipe["version"] == "1.0.0"
    assert recipe["description"] == "svc"
    assert recipe["parentImage"] == "amazonlinux:latest"
    assert recipe["platform"] == "Linux"
    assert recipe["owner"] == DEFAULT_ACCOUNT
    assert recipe["components"] == [{"componentArn": component}]
    assert recipe["dockerfileTemplateData"] == DOCKERFILE
    assert recipe["targetRepository"] == {"service": "ECR", "repositoryName": "my-repo"}
    assert recipe["tags"] == {"a": "b"}


def test_container_recipe_checks_its_components(client):
    missing = f"{arn_prefix()}:component/{unique_name('nope')}/1.0.0/1"
    assert_client_error(
        lambda: create_container_recipe(client, [missing]),
        "InvalidRequestException",
        "components[0].componentArn",
        missing,
    )


def test_dockerfile_template_must_use_the_parent_image(client, component):
    assert_client_error(
        lambda: create_container_recipe(
            client, [component], dockerfileTemplateData="FROM ubuntu\nRUN true\n"
        ),
        "InvalidRequestException",
        "dockerfileTemplateData",
    )


def test_list_and_delete_container_recipes(client, component, name):
    arn = create_container_recipe(client, [component], name=name)
    response = client.list_container_recipes(filters=[{"name": "name", "values": [name]}])
    summaries = response["containerRecipeSummaryList"]
    assert [s["arn"] for s in summaries] == [arn]
    assert summaries[0]["containerType"] == "DOCKER"
    assert summaries[0]["parentImage"] == "amazonlinux:latest"
    for owner in ("Amazon", "Shared"):
        listed = client.list_container_recipes(
            owner=owner, filters=[{"name": "name", "values": [name]}]
        )["containerRecipeSummaryList"]
        assert listed == [], owner
    client.delete_container_recipe(containerRecipeArn=arn)
    assert_client_error(
        lambda: client.get_container_recipe(containerRecipeArn=arn), "ResourceNotFoundException"
    )


def test_container_recipe_dry_run_writes_nothing(client, component, name):
    with pytest.raises(client.exceptions.DryRunOperationException):
        create_container_recipe(client, [component], name=name, dryRun=True)
    listed = client.list_container_recipes(filters=[{"name": "name", "values": [name]}])
    assert listed["containerRecipeSummaryList"] == []


def test_a_container_recipe_a_pipeline_uses_cannot_be_deleted(client, component):
    recipe = create_container_recipe(client, [component])
    pipeline = client.create_image_pipeline(
        name=unique_name("pipe"),
        containerRecipeArn=recipe,
        infrastructureConfigurationArn=create_infra(client),
    )["imagePipelineArn"]
    assert_client_error(
        lambda: client.delete_container_recipe(containerRecipeArn=recipe),
        "ResourceDependencyException",
        pipeline,
    )
