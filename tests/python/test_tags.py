"""TagResource, UntagResource and ListTagsForResource, on every kind of resource Kiln stores:
tags merge, untag removes only the keys named, a missing resource is not found, and keys in
the reserved `aws:` namespace are refused."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from kiln_testlib import (
    arn_prefix,
    assert_client_error,
    create_component,
    create_distribution,
    create_image_recipe,
    create_infra,
    create_workflow,
    raw_request,
    unique_name,
)


def make_infra(client):
    return create_infra(client)


def make_component(client):
    return create_component(client)


def make_image_recipe(client):
    return create_image_recipe(client, [create_component(client)])


def make_container_recipe(client):
    response = client.create_container_recipe(
        containerType="DOCKER",
        name=unique_name("ctr"),
        semanticVersion="1.0.0",
        components=[{"componentArn": create_component(client)}],
        dockerfileTemplateData="FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}\n",
        parentImage="amazonlinux:latest",
        targetRepository={"service": "ECR", "repositoryName": "my-repo"},
    )
    return response["containerRecipeArn"]


def make_workflow(client):
    return create_workflow(client)


def make_distribution(client):
    return create_distribution(client)


def make_pipeline(client):
    return client.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=make_image_recipe(client),
        infrastructureConfigurationArn=create_infra(client),
    )["imagePipelineArn"]


KINDS = [
    pytest.param(make_infra, id="infrastructure-configuration"),
    pytest.param(make_component, id="component"),
    pytest.param(make_image_recipe, id="image-recipe"),
    pytest.param(make_container_recipe, id="container-recipe"),
    pytest.param(make_workflow, id="workflow"),
    pytest.param(make_distribution, id="distribution-configuration"),
    pytest.param(make_pipeline, id="image-pipeline"),
]


@pytest.mark.parametrize("make", KINDS)
def test_tag_list_untag_on_every_kind(client, make):
    arn = make(client)
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {}
    client.tag_resource(resourceArn=arn, tags={"team": "platform", "env": "dev"})
    client.tag_resource(resourceArn=arn, tags={"env": "prod", "cost": "42"})
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {
        "team": "platform",
        "env": "prod",
        "cost": "42",
    }
    client.untag_resource(resourceArn=arn, tagKeys=["env", "not-there"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {
        "team": "platform",
        "cost": "42",
    }


def test_tags_given_at_create_are_listed_and_returned_by_get(client):
    arn = create_infra(client, tags={"a": "1"})
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "1"}
    client.tag_resource(resourceArn=arn, tags={"b": "2"})
    got = client.get_infrastructure_configuration(infrastructureConfigurationArn=arn)
    assert got["infrastructureConfiguration"]["tags"] == {"a": "1", "b": "2"}


def test_untagging_everything_leaves_an_empty_tags_member(client):
    arn = create_infra(client, tags={"a": "1"})
    client.untag_resource(resourceArn=arn, tagKeys=["a"])
    got = client.get_infrastructure_configuration(infrastructureConfigurationArn=arn)
    assert got["infrastructureConfiguration"]["tags"] == {}


def test_tags_go_with_the_resource(client, name):
    arn = create_infra(client, name, tags={"old": "yes"})
    client.delete_infrastructure_configuration(infrastructureConfigurationArn=arn)
    assert create_infra(client, name) == arn
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {}


def test_missing_resource_is_not_found(client):
    missing = f"{arn_prefix()}:infrastructure-configuration/{unique_name('missing')}"
    for call in (
        lambda: client.list_tags_for_resource(resourceArn=missing),
        lambda: client.tag_resource(resourceArn=missing, tags={"a": "b"}),
        lambda: client.untag_resource(resourceArn=missing, tagKeys=["a"]),
    ):
        assert_client_error(call, "ResourceNotFoundException", missing)


def test_aws_prefixed_keys_are_refused(client, raw_client):
    arn = create_infra(client)
    assert_client_error(
        lambda: raw_client.tag_resource(resourceArn=arn, tags={"aws:owner": "me"}),
        "InvalidRequestException",
        "aws:owner",
    )
    assert_client_error(
        lambda: raw_client.untag_resource(resourceArn=arn, tagKeys=["aws:owner"]),
        "InvalidRequestException",
        "tagKeys[0]",
    )
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {}


def test_at_most_fifty_tags(client):
    arn = create_infra(client)
    client.tag_resource(resourceArn=arn, tags={f"k{i}": "v" for i in range(30)})
    exc = assert_client_error(
        lambda: client.tag_resource(resourceArn=arn, tags={f"j{i}": "v" for i in range(25)}),
        "InvalidParameterException",
        "50",
    )
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Refused whole: none of the 25 was added.
    assert len(client.list_tags_for_resource(resourceArn=arn)["tags"]) == 30


def test_the_arn_travels_as_one_encoded_path_segment(endpoint, client):
    arn = create_infra(client, tags={"x": "y"})
    status, _, body = raw_request(endpoint, "GET", "/tags/" + quote(arn, safe=""))
    assert status == 200, body
    assert b'"x":"y"' in body.replace(b" ", b"")


def test_tags_through_the_aws_cli(aws, client):
    arn = create_infra(client)
    aws.run("tag-resource", "--resource-arn", arn, "--tags", "team=cli,env=test")
    assert aws.json("list-tags-for-resource", "--resource-arn", arn)["tags"] == {
        "team": "cli",
        "env": "test",
    }
    aws.run("untag-resource", "--resource-arn", arn, "--tag-keys", "env")
    assert aws.json("list-tags-for-resource", "--resource-arn", arn)["tags"] == {"team": "cli"}
