"""Sharing between accounts of one Region: resource policies (Put/Get{Component,Image,
ImageRecipe,ContainerRecipe}Policy), and what a grantee may then do with what is shared with it:
list it under `--owner Shared`, get it by ARN, use a shared component in its own recipes and a
shared image as a parent (real builds), but never change, tag, delete or re-share it. Taking
the grant away takes all of that away; unshared resources stay invisible.

The module runs its own server with three accounts: the owner (the default key), a grantee
and a stranger that nothing is shared with.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from typing import Any

import pytest

from kiln_testlib import (
    DEFAULT_ACCOUNT,
    AwsCli,
    KilnServer,
    arn_prefix,
    assert_client_error,
    aws_cli_env,
    create_component,
    create_infra,
    make_client,
    sign,
    unique_name,
)

GRANTEE_KEY = "AKIDSHAREGRANTEE0"
GRANTEE = "444455556666"
STRANGER_KEY = "AKIDSHARESTRANGER"
STRANGER = "777788889999"
BUSYBOX = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x"
FAST = {"Delay": 1, "MaxAttempts": 300}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

DOCKERFILE = (
    "FROM {{{ imagebuilder:parentImage }}}\n"
    "{{{ imagebuilder:environments }}}\n"
    "{{{ imagebuilder:components }}}\n"
)


@pytest.fixture(scope="module")
def share_server(tmp_path_factory):
    srv = KilnServer(
        tmp_path_factory.mktemp("sharing") / "data",
        keys={GRANTEE_KEY: GRANTEE, STRANGER_KEY: STRANGER},
    ).start()
    yield srv
    srv.stop_gracefully()


@pytest.fixture(scope="module")
def owner(share_server):
    return make_client(share_server.endpoint)


@pytest.fixture(scope="module")
def grantee(share_server):
    return make_client(share_server.endpoint, access_key=GRANTEE_KEY)


@pytest.fixture(scope="module")
def stranger(share_server):
    return make_client(share_server.endpoint, access_key=STRANGER_KEY)


def policy(arn: str, action: list[str] | str, principals: Any = GRANTEE, **statement: Any) -> str:
    body = {
        "Effect": "Allow",
        "Principal": {"AWS": principals},
        "Action": action,
        "Resource": arn,
        **statement,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [body]})


COMPONENT_ACTIONS = ["imagebuilder:GetComponent", "imagebuilder:ListComponents"]
IMAGE_ACTIONS = ["imagebuilder:GetImage", "imagebuilder:ListImages"]
RECIPE_ACTIONS = ["imagebuilder:GetImageRecipe", "imagebuilder:ListImageRecipes"]
CONTAINER_ACTIONS = ["imagebuilder:GetContainerRecipe", "imagebuilder:ListContainerRecipes"]


def bash_document(script: str, phase: str = "build") -> str:
    lines = [
        "name: generated",
        "schemaVersion: 1.0",
        "phases:",
        f"  - name: {phase}",
        "    steps:",
        "      - name: Run",
        "        action: ExecuteBash",
        "        inputs:",
        "          commands:",
    ]
    lines += [f"            - {json.dumps(line)}" for line in script.strip().splitlines()]
    return "\n".join(lines) + "\n"


def share_component(owner, arn: str, principals: Any = GRANTEE) -> None:
    owner.put_component_policy(componentArn=arn, policy=policy(arn, COMPONENT_ACTIONS, principals))


def image_recipe(client, components: list[str], parent: str = BUSYBOX) -> str:
    return client.create_image_recipe(
        name=unique_name("recipe"),
        semanticVersion="1.0.0",
        parentImage=parent,
        components=[{"componentArn": c} for c in components],
    )["imageRecipeArn"]


def container_recipe(client, components: list[str]) -> str:
    return client.create_container_recipe(
        containerType="DOCKER",
        name=unique_name("ctr"),
        semanticVersion="1.0.0",
        parentImage=BUSYBOX,
        components=[{"componentArn": c} for c in components],
        dockerfileTemplateData=DOCKERFILE,
        targetRepository={"service": "ECR", "repositoryName": "kiln/shared"},
    )["containerRecipeArn"]


def component_arns(client, **kwargs) -> list[str]:
    return [c["arn"] for c in client.list_components(**kwargs)["componentVersionList"]]


def build(client, recipe_arn: str) -> dict:
    infra = create_infra(client, instanceTypes=["t3.micro"])
    arn = client.create_image(
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": True},
    )["imageBuildVersionArn"]
    try:
        client.get_waiter("image_available").wait(imageBuildVersionArn=arn, WaiterConfig=FAST)
    except Exception:
        pass
    return client.get_image(imageBuildVersionArn=arn)["image"]


def wait_status(client, arn: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        image = client.get_image(imageBuildVersionArn=arn)["image"]
        if image["state"]["status"] == status or time.monotonic() > deadline:
            assert image["state"]["status"] == status, image["state"]
            return image
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Policies


def test_put_and_get_component_policy_by_the_owner(owner):
    arn = create_component(owner)
    # No policy yet: the empty document, as the model documents for Get*Policy.
    assert owner.get_component_policy(componentArn=arn)["policy"] == "{}"
    text = policy(arn, COMPONENT_ACTIONS, [GRANTEE, f"arn:aws:iam::{STRANGER}:root"])
    out = owner.put_component_policy(componentArn=arn, policy=text)
    assert out["componentArn"] == arn
    assert owner.get_component_policy(componentArn=arn)["policy"] == text
    # Put replaces.
    replaced = policy(arn, "imagebuilder:GetComponent")
    owner.put_component_policy(componentArn=arn, policy=replaced)
    assert owner.get_component_policy(componentArn=arn)["policy"] == replaced


@pytest.mark.parametrize(
    "document, fragment",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"Statement": []}), "Version is required"),
        ("EFFECT", "Effect"),
        ("USER", "is not an account"),
        ("STAR", "Principal must be"),
        ("SELF", "the resource's owner"),
        ("ACTION", "'imagebuilder:DeleteComponent' is not allowed for a component"),
        ("IMAGE_ACTION", "'imagebuilder:GetImage' is not allowed for a component"),
        ("RESOURCE", "is not the ARN of the resource"),
        ("CONDITION", "Condition is not supported"),
    ],
)
def test_bad_component_policies_are_refused_naming_the_part(owner, document, fragment):
    arn = create_component(owner)
    other = arn.rsplit("/", 1)[0] + "/99"
    documents = {
        "EFFECT": policy(arn, COMPONENT_ACTIONS)
        .replace('"Allow"', '"Deny"'),
        "USER": policy(arn, COMPONENT_ACTIONS, f"arn:aws:iam::{GRANTEE}:user/bob"),
        "STAR": json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Principal": "*", "Action": COMPONENT_ACTIONS},
            }
        ),
        "SELF": policy(arn, COMPONENT_ACTIONS, DEFAULT_ACCOUNT),
        "ACTION": policy(arn, ["imagebuilder:GetComponent", "imagebuilder:DeleteComponent"]),
        "IMAGE_ACTION": policy(arn, "imagebuilder:GetImage"),
        "RESOURCE": policy(other, COMPONENT_ACTIONS),
        "CONDITION": policy(arn, COMPONENT_ACTIONS, Condition={"StringEquals": {"a": "b"}}),
    }
    text = documents.get(document, document)
    assert_client_error(
        lambda: owner.put_component_policy(componentArn=arn, policy=text),
        "InvalidParameterValueException",
        fragment,
    )
    # Nothing was stored.
    assert owner.get_component_policy(componentArn=arn)["policy"] == "{}"


def test_recipe_policies_take_their_own_actions(owner):
    recipe = image_recipe(owner, [create_component(owner)])
    assert_client_error(
        lambda: owner.put_image_recipe_policy(
            imageRecipeArn=recipe, policy=policy(recipe, COMPONENT_ACTIONS)
        ),
        "InvalidParameterValueException",
        "not allowed for a image recipe",
    )
    owner.put_image_recipe_policy(imageRecipeArn=recipe, policy=policy(recipe, RECIPE_ACTIONS))
    assert json.loads(owner.get_image_recipe_policy(imageRecipeArn=recipe)["policy"])[
        "Statement"
    ][0]["Action"] == RECIPE_ACTIONS
    ctr = container_recipe(owner, [create_component(owner)])
    assert_client_error(
        lambda: owner.put_container_recipe_policy(
            containerRecipeArn=ctr, policy=policy(ctr, RECIPE_ACTIONS)
        ),
        "InvalidParameterValueException",
        "imagebuilder:GetContainerRecipe",
    )
    owner.put_container_recipe_policy(containerRecipeArn=ctr, policy=policy(ctr, CONTAINER_ACTIONS))
    assert "ListContainerRecipes" in owner.get_container_recipe_policy(containerRecipeArn=ctr)["policy"]


def test_policies_of_nothing_or_of_another_account_are_not_found(owner, grantee, stranger):
    arn = create_component(owner)
    share_component(owner, arn)
    missing = f"{arn_prefix()}:component/no-such-component/1.0.0/1"
    assert_client_error(
        lambda: owner.put_component_policy(componentArn=missing, policy=policy(missing, COMPONENT_ACTIONS)),
        "ResourceNotFoundException",
    )
    # Only the owner may read or change the policy, the grantee included.
    for other in (grantee, stranger):
        assert_client_error(
            lambda: other.get_component_policy(componentArn=arn), "ResourceNotFoundException"
        )
        assert_client_error(
            lambda: other.put_component_policy(componentArn=arn, policy=policy(arn, COMPONENT_ACTIONS)),
            "ResourceNotFoundException",
        )
    missing_image = f"{arn_prefix()}:image/no-such-image/1.0.0/1"
    assert_client_error(
        lambda: owner.get_image_policy(imageArn=missing_image), "ResourceNotFoundException"
    )


# ---------------------------------------------------------------------------------------------
# Sharing in effect


def test_shared_components_and_recipes_are_listed_and_read_by_the_grantee_only(owner, grantee, stranger):
    comp = create_component(owner)
    unshared = create_component(owner)
    share_component(owner, comp)
    recipe = image_recipe(owner, [comp])
    owner.put_image_recipe_policy(imageRecipeArn=recipe, policy=policy(recipe, RECIPE_ACTIONS))
    ctr = container_recipe(owner, [comp])
    owner.put_container_recipe_policy(containerRecipeArn=ctr, policy=policy(ctr, CONTAINER_ACTIONS))
    version = comp.rsplit("/", 1)[0]

    # The grantee lists them under Shared, not under Self; the stranger lists nothing.
    shared = component_arns(grantee, owner="Shared")
    assert version in shared
    assert unshared.rsplit("/", 1)[0] not in shared
    assert version not in component_arns(grantee)
    assert component_arns(stranger, owner="Shared") == []
    listed = grantee.list_components(owner="Shared")["componentVersionList"]
    assert [c["owner"] for c in listed if c["arn"] == version] == [DEFAULT_ACCOUNT]
    recipes = grantee.list_image_recipes(owner="Shared")["imageRecipeSummaryList"]
    assert recipe in [r["arn"] for r in recipes]
    containers = grantee.list_container_recipes(owner="Shared")["containerRecipeSummaryList"]
    assert ctr in [r["arn"] for r in containers]
    assert stranger.list_image_recipes(owner="Shared")["imageRecipeSummaryList"] == []

    # Get by ARN: the build, its version, the recipes.
    assert grantee.get_component(componentBuildVersionArn=comp)["component"]["arn"] == comp
    assert grantee.get_component(componentBuildVersionArn=version)["component"]["arn"] == comp
    assert grantee.get_image_recipe(imageRecipeArn=recipe)["imageRecipe"]["arn"] == recipe
    assert grantee.get_container_recipe(containerRecipeArn=ctr)["containerRecipe"]["arn"] == ctr
    for call in (
        lambda: grantee.get_component(componentBuildVersionArn=unshared),
        lambda: stranger.get_component(componentBuildVersionArn=comp),
        lambda: stranger.get_image_recipe(imageRecipeArn=recipe),
        lambda: stranger.get_container_recipe(containerRecipeArn=ctr),
    ):
        assert_client_error(call, "ResourceNotFoundException")


def test_the_grantee_can_use_but_never_change_a_shared_resource(owner, grantee):
    comp = create_component(owner)
    share_component(owner, comp)
    recipe = image_recipe(owner, [comp])
    owner.put_image_recipe_policy(imageRecipeArn=recipe, policy=policy(recipe, RECIPE_ACTIONS))
    # Its own recipe may use the shared component.
    mine = image_recipe(grantee, [comp])
    assert grantee.get_image_recipe(imageRecipeArn=mine)["imageRecipe"]["components"][0][
        "componentArn"
    ] == comp
    ctr = container_recipe(grantee, [comp])
    assert ctr.startswith(arn_prefix(GRANTEE))
    # Changing, tagging, deleting and re-sharing answer as for anyone else's resource.
    for call in (
        lambda: grantee.delete_component(componentBuildVersionArn=comp),
        lambda: grantee.delete_image_recipe(imageRecipeArn=recipe),
        lambda: grantee.tag_resource(resourceArn=comp, tags={"k": "v"}),
        lambda: grantee.untag_resource(resourceArn=comp, tagKeys=["k"]),
        lambda: grantee.put_image_recipe_policy(imageRecipeArn=recipe, policy=policy(recipe, RECIPE_ACTIONS)),
    ):
        assert_client_error(call, "ResourceNotFoundException")
    assert owner.get_component(componentBuildVersionArn=comp)["component"].get("tags", {}) == {}
    # The grantee's recipe does not keep the owner from deleting the component (its own does).
    owner.delete_image_recipe(imageRecipeArn=recipe)
    owner.delete_component(componentBuildVersionArn=comp)
    assert component_arns(grantee, owner="Shared").count(comp.rsplit("/", 1)[0]) == 0


def test_removing_the_grant_removes_list_get_and_use(owner, grantee):
    comp = create_component(owner)
    share_component(owner, comp)
    recipe = image_recipe(grantee, [comp])
    infra = create_infra(grantee, instanceTypes=["t3.micro"])
    # Put again without the grantee: the grant is gone.
    share_component(owner, comp, principals=STRANGER)
    assert comp.rsplit("/", 1)[0] not in component_arns(grantee, owner="Shared")
    assert_client_error(
        lambda: grantee.get_component(componentBuildVersionArn=comp), "ResourceNotFoundException"
    )
    assert_client_error(
        lambda: image_recipe(grantee, [comp]),
        "InvalidRequestException",
        "not shared with your account",
    )
    # The grantee's existing recipe still reads, but a new build of it is refused, naming it.
    assert grantee.get_image_recipe(imageRecipeArn=recipe)["imageRecipe"]["arn"] == recipe
    assert_client_error(
        lambda: grantee.create_image(imageRecipeArn=recipe, infrastructureConfigurationArn=infra),
        "InvalidRequestException",
        comp,
    )
    # Deleting the component removes its policy and grants too.
    share_component(owner, comp)
    owner.delete_component(componentBuildVersionArn=comp)
    assert comp.rsplit("/", 1)[0] not in component_arns(grantee, owner="Shared")


def test_two_accounts_through_the_aws_cli(share_server, owner, tmp_path):
    arn = create_component(owner)
    (tmp_path / "owner").mkdir()
    (tmp_path / "grantee").mkdir()
    mine = AwsCli(share_server.endpoint, tmp_path / "owner")
    theirs = AwsCli(share_server.endpoint, tmp_path / "grantee")
    theirs.env = aws_cli_env(tmp_path / "grantee", access_key=GRANTEE_KEY)
    assert arn.rsplit("/", 1)[0] not in [
        c["arn"] for c in theirs.json("list-components", "--owner", "Shared")["componentVersionList"]
    ]
    out = mine.json(
        "put-component-policy", "--component-arn", arn, "--policy", policy(arn, COMPONENT_ACTIONS)
    )
    assert out["componentArn"] == arn
    got = mine.json("get-component-policy", "--component-arn", arn)
    assert json.loads(got["policy"])["Statement"][0]["Principal"]["AWS"] == GRANTEE
    listed = theirs.json("list-components", "--owner", "Shared")["componentVersionList"]
    assert arn.rsplit("/", 1)[0] in [c["arn"] for c in listed]
    refused = theirs.run("get-component-policy", "--component-arn", arn, check=False)
    assert refused.returncode != 0 and "ResourceNotFoundException" in refused.stderr


# ---------------------------------------------------------------------------------------------
# Real builds


@pytest.fixture(scope="module")
def owner_image(owner) -> dict:
    comp = owner.create_component(
        name=unique_name("base"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=bash_document("mkdir -p /opt/owner\necho from-owner > /opt/owner/base.txt"),
    )["componentBuildVersionArn"]
    image = build(owner, image_recipe(owner, [comp]))
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    return image


@needs_root
def test_a_grantee_recipe_builds_with_a_shared_component(owner, grantee):
    shared = owner.create_component(
        name=unique_name("shared"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=bash_document("mkdir -p /opt/shared\necho shared > /opt/shared/done.txt"),
    )["componentBuildVersionArn"]
    share_component(owner, shared)
    check = grantee.create_component(
        name=unique_name("check"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=bash_document("grep -q shared /opt/shared/done.txt", phase="test"),
    )["componentBuildVersionArn"]
    image = build(grantee, image_recipe(grantee, [shared, check]))
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["arn"].startswith(arn_prefix(GRANTEE))


@needs_root
def test_a_shared_image_is_listed_read_and_built_on(owner, grantee, stranger, owner_image):
    arn = owner_image["arn"]
    version = arn.rsplit("/", 1)[0]
    assert version not in [i["arn"] for i in grantee.list_images(owner="Shared")["imageVersionList"]]
    assert_client_error(lambda: grantee.get_image(imageBuildVersionArn=arn), "ResourceNotFoundException")
    check = grantee.create_component(
        name=unique_name("layer"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=bash_document("grep -q from-owner /opt/owner/base.txt", phase="test"),
    )["componentBuildVersionArn"]
    parent = version.rsplit("/", 1)[0] + "/x.x.x"
    # Before the grant the grantee may not name it as a parent.
    assert_client_error(
        lambda: image_recipe(grantee, [check], parent=parent),
        "InvalidParameterValueException",
        "nor one shared with it",
    )
    owner.put_image_policy(imageArn=arn, policy=policy(arn, IMAGE_ACTIONS))
    assert json.loads(owner.get_image_policy(imageArn=arn)["policy"])["Statement"][0]["Action"] == IMAGE_ACTIONS
    listed = grantee.list_images(owner="Shared")["imageVersionList"]
    assert version in [i["arn"] for i in listed]
    assert stranger.list_images(owner="Shared")["imageVersionList"] == []
    assert grantee.get_image(imageBuildVersionArn=arn)["image"]["arn"] == arn
    assert_client_error(lambda: stranger.get_image(imageBuildVersionArn=arn), "ResourceNotFoundException")
    for call in (
        lambda: grantee.delete_image(imageBuildVersionArn=arn),
        lambda: grantee.tag_resource(resourceArn=arn, tags={"k": "v"}),
        lambda: grantee.put_image_policy(imageArn=arn, policy=policy(arn, IMAGE_ACTIONS)),
    ):
        assert_client_error(call, "ResourceNotFoundException")

    # The grantee builds on the owner's image: its test reads the owner's file.
    recipe = image_recipe(grantee, [check], parent=parent)
    image = build(grantee, recipe)
    assert image["state"]["status"] == "AVAILABLE", image["state"]

    # Taking the grant away: no list, no get, no new recipe naming it, no new build on it.
    owner.put_image_policy(imageArn=arn, policy=policy(arn, IMAGE_ACTIONS, STRANGER))
    assert version not in [i["arn"] for i in grantee.list_images(owner="Shared")["imageVersionList"]]
    assert_client_error(lambda: grantee.get_image(imageBuildVersionArn=arn), "ResourceNotFoundException")
    assert_client_error(
        lambda: image_recipe(grantee, [check], parent=parent),
        "InvalidParameterValueException",
        "nor one shared with it",
    )
    again = build(grantee, recipe)
    assert again["state"]["status"] == "FAILED"
    assert "shares with account" in again["state"]["reason"]


# ---------------------------------------------------------------------------------------------
# Using a shared recipe, build-version lists, tags


def share_recipe(owner, recipe: str, principals: Any = GRANTEE) -> None:
    owner.put_image_recipe_policy(
        imageRecipeArn=recipe, policy=policy(recipe, RECIPE_ACTIONS, principals)
    )


def grantee_pipeline(grantee, recipe: str, **extra: Any) -> str:
    return grantee.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=create_infra(grantee, instanceTypes=["t3.micro"]),
        imageTestsConfiguration={"imageTestsEnabled": True},
        **extra,
    )["imagePipelineArn"]


def test_a_grantee_pipeline_on_a_shared_recipe_never_blocks_its_owner(owner, grantee, stranger):
    recipe = image_recipe(owner, [create_component(owner)])
    # Not shared yet: neither CreateImage nor a pipeline may name it.
    infra = create_infra(grantee, instanceTypes=["t3.micro"])
    for call in (
        lambda: grantee.create_image(imageRecipeArn=recipe, infrastructureConfigurationArn=infra),
        lambda: grantee_pipeline(grantee, recipe),
    ):
        assert_client_error(call, "InvalidRequestException", f"{recipe}' does not exist or is not shared")
    share_recipe(owner, recipe)
    pipe = grantee_pipeline(grantee, recipe)
    got = grantee.get_image_pipeline(imagePipelineArn=pipe)["imagePipeline"]
    assert got["imageRecipeArn"] == recipe
    # An `x` filter resolves among the versions shared with the grantee, as for components.
    grantee.update_image_pipeline(
        imagePipelineArn=pipe,
        imageRecipeArn=recipe.rsplit("/", 1)[0] + "/1.x.x",
        infrastructureConfigurationArn=got["infrastructureConfigurationArn"],
    )
    assert_client_error(lambda: grantee_pipeline(stranger, recipe), "InvalidRequestException", recipe)
    # The grantee still cannot change, tag or delete the recipe.
    for call in (
        lambda: grantee.delete_image_recipe(imageRecipeArn=recipe),
        lambda: grantee.tag_resource(resourceArn=recipe, tags={"k": "v"}),
    ):
        assert_client_error(call, "ResourceNotFoundException")
    # References are per account: the grantee's pipeline does not keep the owner from deleting
    # its recipe; the pipeline's next run is then refused, naming the recipe.
    owner.delete_image_recipe(imageRecipeArn=recipe)
    assert_client_error(
        lambda: grantee.start_image_pipeline_execution(imagePipelineArn=pipe),
        "InvalidRequestException",
        recipe.rsplit("/", 1)[0] + "/1.x.x' does not exist or is not shared",
    )


def test_build_version_lists_answer_the_grantee_the_builds_shared_with_it(owner, grantee, stranger):
    comp = create_component(owner)
    version = comp.rsplit("/", 1)[0]
    unshared = create_component(owner).rsplit("/", 1)[0]
    share_component(owner, comp)

    def builds(client, arn: str) -> list[str]:
        listed = client.list_component_build_versions(componentVersionArn=arn)
        return [c["arn"] for c in listed["componentSummaryList"]]

    assert builds(owner, version) == [comp]
    assert builds(grantee, version) == [comp]
    assert builds(grantee, unshared) == []
    assert builds(stranger, version) == []
    # Images: two builds of one version, only the first shared.
    recipe = image_recipe(owner, [create_component(owner)])
    infra = create_infra(owner, instanceTypes=["t3.micro"])
    first, second = (
        owner.create_image(imageRecipeArn=recipe, infrastructureConfigurationArn=infra)[
            "imageBuildVersionArn"
        ]
        for _ in range(2)
    )
    for arn in (first, second):
        owner.cancel_image_creation(imageBuildVersionArn=arn)
    image_version = first.rsplit("/", 1)[0]
    owner.put_image_policy(imageArn=first, policy=policy(first, IMAGE_ACTIONS))

    def image_builds(client) -> list[str]:
        listed = client.list_image_build_versions(imageVersionArn=image_version)
        return [i["arn"] for i in listed["imageSummaryList"]]

    assert sorted(image_builds(owner)) == sorted([first, second])
    assert image_builds(grantee) == [first]
    assert image_builds(stranger) == []
    # Taking the grant away takes the build out of the grantee's list.
    owner.put_image_policy(imageArn=first, policy=policy(first, IMAGE_ACTIONS, STRANGER))
    assert image_builds(grantee) == []
    assert image_builds(stranger) == [first]


def test_the_grantee_never_sees_the_owners_tags(owner, grantee):
    tags = {"team": "owner-only"}
    comp = create_component(owner)
    owner.tag_resource(resourceArn=comp, tags=tags)
    share_component(owner, comp)
    recipe = image_recipe(owner, [comp])
    owner.tag_resource(resourceArn=recipe, tags=tags)
    share_recipe(owner, recipe)
    ctr = container_recipe(owner, [comp])
    owner.tag_resource(resourceArn=ctr, tags=tags)
    owner.put_container_recipe_policy(containerRecipeArn=ctr, policy=policy(ctr, CONTAINER_ACTIONS))

    # The owner reads its tags.
    assert owner.get_component(componentBuildVersionArn=comp)["component"]["tags"] == tags
    assert owner.get_image_recipe(imageRecipeArn=recipe)["imageRecipe"]["tags"] == tags
    # The grantee reads the resources, never the tags.
    assert grantee.get_component(componentBuildVersionArn=comp)["component"]["tags"] == {}
    listed = grantee.list_component_build_versions(componentVersionArn=comp.rsplit("/", 1)[0])
    assert [c["tags"] for c in listed["componentSummaryList"]] == [{}]
    assert grantee.get_image_recipe(imageRecipeArn=recipe)["imageRecipe"]["tags"] == {}
    summaries = grantee.list_image_recipes(owner="Shared")["imageRecipeSummaryList"]
    assert [r["tags"] for r in summaries if r["arn"] == recipe] == [{}]
    assert grantee.get_container_recipe(containerRecipeArn=ctr)["containerRecipe"]["tags"] == {}
    summaries = grantee.list_container_recipes(owner="Shared")["containerRecipeSummaryList"]
    assert [r["tags"] for r in summaries if r["arn"] == ctr] == [{}]
    # ListTagsForResource is the owner's alone, as TagResource is.
    for arn in (comp, recipe, ctr):
        assert_client_error(
            lambda: grantee.list_tags_for_resource(resourceArn=arn), "ResourceNotFoundException"
        )
    assert owner.list_tags_for_resource(resourceArn=recipe)["tags"] == tags
    # Its own image of the shared recipe shows its own tags, not the recipe's.
    infra = create_infra(grantee, instanceTypes=["t3.micro"])
    image = grantee.create_image(
        imageRecipeArn=recipe, infrastructureConfigurationArn=infra, tags={"mine": "yes"}
    )["imageBuildVersionArn"]
    grantee.cancel_image_creation(imageBuildVersionArn=image)
    got = grantee.get_image(imageBuildVersionArn=image)["image"]
    assert got["tags"] == {"mine": "yes"}
    assert got["imageRecipe"]["arn"] == recipe
    assert got["imageRecipe"]["tags"] == {}


@needs_root
def test_a_grantee_builds_its_own_image_from_a_shared_recipe(owner, grantee, owner_image):
    # The owner's recipe: on the owner's image (not shared with the grantee), with an owner's
    # component (not shared either) and a test reading what both wrote.
    writes = owner.create_component(
        name=unique_name("writes"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=bash_document("mkdir -p /opt/recipe\necho owner-component > /opt/recipe/ran.txt"),
    )["componentBuildVersionArn"]
    reads = owner.create_component(
        name=unique_name("reads"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=bash_document(
            "grep -q owner-component /opt/recipe/ran.txt\ngrep -q from-owner /opt/owner/base.txt",
            phase="test",
        ),
    )["componentBuildVersionArn"]
    parent = owner_image["arn"].rsplit("/", 2)[0] + "/x.x.x"
    recipe = image_recipe(owner, [writes, reads], parent=parent)
    share_recipe(owner, recipe)

    image = build(grantee, recipe)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["arn"].startswith(arn_prefix(GRANTEE))
    assert image["imageRecipe"]["arn"] == recipe
    # The image is the grantee's: listed as its own, never the owner's.
    assert image["arn"].rsplit("/", 1)[0] in [
        i["arn"] for i in grantee.list_images()["imageVersionList"]
    ]
    assert_client_error(
        lambda: owner.get_image(imageBuildVersionArn=image["arn"]), "ResourceNotFoundException"
    )

    # A pipeline of the grantee on the same recipe runs it too.
    pipe = grantee_pipeline(grantee, recipe)
    run = grantee.start_image_pipeline_execution(imagePipelineArn=pipe)["imageBuildVersionArn"]
    try:
        grantee.get_waiter("image_available").wait(imageBuildVersionArn=run, WaiterConfig=FAST)
    except Exception:
        pass
    ran = grantee.get_image(imageBuildVersionArn=run)["image"]
    assert ran["state"]["status"] == "AVAILABLE", ran["state"]
    assert ran["sourcePipelineArn"] == pipe

    # An image ordered while shared whose build starts after the grant is gone fails with the
    # reason (cancelled at once, then retried once the grant is gone).
    infra = create_infra(grantee, instanceTypes=["t3.micro"])
    late = grantee.create_image(imageRecipeArn=recipe, infrastructureConfigurationArn=infra)[
        "imageBuildVersionArn"
    ]
    grantee.cancel_image_creation(imageBuildVersionArn=late)
    wait_status(grantee, late, "CANCELLED")

    # Taking the grant away: CreateImage and the pipeline's next run are refused, naming it.
    share_recipe(owner, recipe, principals=STRANGER)
    assert_client_error(
        lambda: grantee.create_image(imageRecipeArn=recipe, infrastructureConfigurationArn=infra),
        "InvalidRequestException",
        f"{recipe}' does not exist or is not shared with this account",
    )
    assert_client_error(
        lambda: grantee.start_image_pipeline_execution(imagePipelineArn=pipe),
        "InvalidRequestException",
        recipe,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            grantee.retry_image(imageBuildVersionArn=late)
            break
        except grantee.exceptions.ResourceInUseException as e:
            # The cancelled build's worker has not let it go yet.
            assert "still stopping" in str(e) and time.monotonic() < deadline, e
            time.sleep(0.2)
    failed = wait_status(grantee, late, "FAILED")
    assert f"{recipe} is no longer shared with account {GRANTEE}" in failed["state"]["reason"]
    # What was built stays the grantee's.
    assert grantee.get_image(imageBuildVersionArn=image["arn"])["image"]["state"]["status"] == "AVAILABLE"


def test_a_scheduled_run_of_a_recipe_no_longer_shared_fails_to_start_with_the_reason(tmp_path):
    clock = tmp_path / "clock"
    clock.write_text("2030-01-01T09:59:30Z\n")
    srv = KilnServer(
        tmp_path / "data",
        extra_args=["--clock-file", str(clock)],
        keys={GRANTEE_KEY: GRANTEE},
    ).start()
    try:
        owner = make_client(srv.endpoint)
        grantee = make_client(srv.endpoint, access_key=GRANTEE_KEY)
        recipe = image_recipe(owner, [create_component(owner)])
        share_recipe(owner, recipe)
        pipe = grantee_pipeline(
            grantee,
            recipe,
            schedule={
                "scheduleExpression": "cron(* * * * ? *)",
                "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY",
            },
        )
        # The grant goes before the schedule is due.
        share_recipe(owner, recipe, principals=STRANGER)
        clock.with_suffix(".tmp").write_text("2030-01-01T10:00:00Z\n")
        os.replace(clock.with_suffix(".tmp"), clock)

        path = "/kiln/v1/schedule?" + urllib.parse.urlencode({"imagePipelineArn": pipe})

        def events() -> list[dict]:
            headers = sign(srv.endpoint, "GET", path, b"", {}, access_key=GRANTEE_KEY)
            conn = http.client.HTTPConnection(srv.endpoint.split("://", 1)[1], timeout=30)
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
            finally:
                conn.close()
            assert response.status == 200, body
            return json.loads(body)["events"]

        deadline = time.monotonic() + 30
        while not events() and time.monotonic() < deadline:
            time.sleep(0.05)
        [event] = events()
        assert event["outcome"] == "FAILED_TO_START"
        assert recipe in event["reason"] and "not shared with this account" in event["reason"]
        assert grantee.list_image_pipeline_images(imagePipelineArn=pipe)["imageSummaryList"] == []
    finally:
        srv.stop_gracefully()


@needs_root
def test_a_grantee_pipeline_builds_a_shared_container_recipe(owner, grantee):
    # Two owner's components, neither shared: the second fails unless the first ran.
    writes = owner.create_component(
        name=unique_name("ctr-writes"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=bash_document("echo owner-container > /srv-owner.txt"),
    )["componentBuildVersionArn"]
    reads = owner.create_component(
        name=unique_name("ctr-reads"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=bash_document("grep -q owner-container /srv-owner.txt"),
    )["componentBuildVersionArn"]
    ctr = container_recipe(owner, [writes, reads])
    infra = create_infra(grantee, instanceTypes=["t3.micro"])

    def pipeline() -> str:
        return grantee.create_image_pipeline(
            name=unique_name("ctr-pipe"),
            containerRecipeArn=ctr,
            infrastructureConfigurationArn=infra,
        )["imagePipelineArn"]

    assert_client_error(pipeline, "InvalidRequestException", f"{ctr}' does not exist or is not shared")
    owner.put_container_recipe_policy(containerRecipeArn=ctr, policy=policy(ctr, CONTAINER_ACTIONS))
    pipe = pipeline()
    run = grantee.start_image_pipeline_execution(imagePipelineArn=pipe)["imageBuildVersionArn"]
    assert run.startswith(arn_prefix(GRANTEE))
    try:
        grantee.get_waiter("image_available").wait(imageBuildVersionArn=run, WaiterConfig=FAST)
    except Exception:
        pass
    image = grantee.get_image(imageBuildVersionArn=run)["image"]
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["type"] == "DOCKER"
    assert image["containerRecipe"]["arn"] == ctr
    assert image["sourcePipelineArn"] == pipe
    assert image["outputResources"]["containers"][0]["imageUris"]

    # Revoked: the pipeline's next run is refused, naming the recipe.
    owner.put_container_recipe_policy(
        containerRecipeArn=ctr, policy=policy(ctr, CONTAINER_ACTIONS, STRANGER)
    )
    assert_client_error(
        lambda: grantee.start_image_pipeline_execution(imagePipelineArn=pipe),
        "InvalidRequestException",
        f"{ctr}' does not exist or is not shared",
    )
