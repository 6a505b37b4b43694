"""Workflows: CreateWorkflow (inline YAML checked for schemaVersion and steps; the ARN carries
the type), GetWorkflow by build, version or `x` filter, ListWorkflows, ListWorkflowBuildVersions
and DeleteWorkflow."""

from __future__ import annotations

import pytest

from kiln_testlib import (
    DEFAULT_ACCOUNT,
    REGION,
    WORKFLOW_YAML,
    arn_prefix,
    assert_client_error,
    create_workflow,
    unique_name,
)


def workflow_arn(kind: str, name: str, version: str, build: int | None = None) -> str:
    arn = f"{arn_prefix()}:workflow/{kind}/{name}/{version}"
    return f"{arn}/{build}" if build is not None else arn


def get(client, arn: str) -> dict:
    return client.get_workflow(workflowBuildVersionArn=arn)["workflow"]


def list_versions(client, name: str, **extra) -> list[dict]:
    response = client.list_workflows(filters=[{"name": "name", "values": [name]}], **extra)
    return response["workflowVersionList"]


@pytest.mark.parametrize("type_, segment", [("BUILD", "build"), ("TEST", "test"), ("DISTRIBUTION", "distribution")])
def test_create_puts_the_type_in_the_arn_and_numbers_the_build(client, type_, segment):
    name = unique_name("wf")
    response = client.create_workflow(
        name=name, semanticVersion="1.0.0", type=type_, data=WORKFLOW_YAML
    )
    assert response["workflowBuildVersionArn"] == workflow_arn(segment, name, "1.0.0", 1)
    assert response["clientToken"]


def test_get_returns_what_was_set(client, name):
    arn = create_workflow(
        client, name, description="tests things", changeDescription="v1", tags={"k": "v"}
    )
    workflow = get(client, arn)
    assert workflow["arn"] == arn
    assert workflow["name"] == name
    assert workflow["version"] == "1.0.0"
    assert workflow["type"] == "TEST"
    assert workflow["description"] == "tests things"
    assert workflow["changeDescription"] == "v1"
    assert workflow["data"] == WORKFLOW_YAML
    assert workflow["owner"] == DEFAULT_ACCOUNT
    assert workflow["tags"] == {"k": "v"}
    assert workflow["dateCreated"]


def test_get_answers_latest_version_references(client, name):
    arn = create_workflow(client, name, "2.0.1")
    refs = client.get_workflow(workflowBuildVersionArn=arn)["latestVersionReferences"]
    assert refs == {
        "latestVersionArn": workflow_arn("test", name, "x.x.x"),
        "latestMajorVersionArn": workflow_arn("test", name, "2.x.x"),
        "latestMinorVersionArn": workflow_arn("test", name, "2.0.x"),
        "latestPatchVersionArn": workflow_arn("test", name, "2.0.1"),
    }


BAD_DOCUMENTS = [
    pytest.param("steps: [unclosed", id="not-yaml"),
    pytest.param("just a string\n", id="not-a-mapping"),
    pytest.param(
        "steps:\n  - name: Launch\n    action: LaunchInstance\n    inputs: {waitFor: ssmAgent}\n",
        id="no-schemaVersion",
    ),
    pytest.param("schemaVersion: 1.0\n", id="no-steps"),
    pytest.param("schemaVersion: 1.0\nsteps: []\n", id="empty-steps"),
]


@pytest.mark.parametrize("document", BAD_DOCUMENTS)
def test_documents_that_are_not_workflow_documents_are_refused(client, document):
    name = unique_name("badwf")
    assert_client_error(
        lambda: create_workflow(client, name, data=document), "InvalidRequestException", "data"
    )
    assert list_versions(client, name) == []


def test_uri_needs_an_s3_endpoint(client):
    """The shared server has none; documents from S3 are tested in test_s3_documents.py."""
    assert_client_error(
        lambda: client.create_workflow(
            name=unique_name(), semanticVersion="1.0.0", type="TEST", uri="s3://bucket/wf.yaml"
        ),
        "InvalidRequestException",
        "uri s3://bucket/",
        "no S3 endpoint configured",
    )


def test_dry_run_writes_nothing(client, name):
    with pytest.raises(client.exceptions.DryRunOperationException):
        create_workflow(client, name, dryRun=True)
    assert list_versions(client, name) == []


@pytest.fixture(scope="module")
def versions(client):
    name = unique_name("wfver")
    for version in ("1.6.8", "2.2.4", "1.7.8"):
        create_workflow(client, name, version)
    return name


@pytest.mark.parametrize(
    "reference, resolved",
    [("x.x.x", "2.2.4"), ("1.x.x", "1.7.8"), ("1.6.x", "1.6.8"), ("1.7.8", "1.7.8")],
)
def test_version_filters_resolve_to_the_newest_match(client, versions, reference, resolved):
    workflow = get(client, workflow_arn("test", versions, reference))
    assert workflow["version"] == resolved
    assert workflow["arn"] == workflow_arn("test", versions, resolved, 1)


def test_misplaced_wildcard_is_an_invalid_version(client, versions):
    assert_client_error(
        lambda: get(client, workflow_arn("test", versions, "x.2.x")),
        "InvalidVersionNumberException",
    )


def test_the_type_is_part_of_the_identity(client, versions):
    assert_client_error(
        lambda: get(client, workflow_arn("build", versions, "1.6.8", 1)),
        "ResourceNotFoundException",
    )


def test_list_workflows(client, versions):
    entries = list_versions(client, versions)
    assert sorted(e["version"] for e in entries) == ["1.6.8", "1.7.8", "2.2.4"]
    for entry in entries:
        assert entry["arn"] == workflow_arn("test", versions, entry["version"])
        assert entry["type"] == "TEST"
        assert entry["owner"] == DEFAULT_ACCOUNT


def test_list_workflows_owner_filters(client, versions):
    assert len(list_versions(client, versions, owner="Self")) == 3
    for owner in ("Amazon", "AWSMarketplace"):
        assert list_versions(client, versions, owner=owner) == [], owner
    # Nobody shares workflows with Kiln's accounts and no third party publishes them: an empty
    # list, or a refusal that says so, are both honest answers.
    for owner in ("Shared", "ThirdParty"):
        try:
            assert list_versions(client, versions, owner=owner) == [], owner
        except client.exceptions.InvalidRequestException as exc:
            assert "owner" in exc.response["Error"]["Message"]


def test_list_workflow_build_versions(client, name):
    create_workflow(client, name)
    create_workflow(client, name, data=WORKFLOW_YAML.replace("A test workflow", "Changed"))
    response = client.list_workflow_build_versions(
        workflowVersionArn=workflow_arn("test", name, "1.0.0")
    )
    arns = sorted(s["arn"] for s in response["workflowSummaryList"])
    assert arns == [workflow_arn("test", name, "1.0.0", 1), workflow_arn("test", name, "1.0.0", 2)]
    assert all(s["type"] == "TEST" for s in response["workflowSummaryList"])


def test_delete(client, name):
    arn = create_workflow(client, name)
    assert client.delete_workflow(workflowBuildVersionArn=arn)["workflowBuildVersionArn"] == arn
    assert_client_error(lambda: get(client, arn), "ResourceNotFoundException")
    assert list_versions(client, name) == []


MANAGED = {
    ("BUILD", "build-image"), ("BUILD", "express-build-image"), ("BUILD", "build-container"),
    ("BUILD", "express-build-container"), ("TEST", "test-image"), ("TEST", "express-test-image"),
    ("TEST", "test-container"), ("DISTRIBUTION", "distribute-image"),
    ("DISTRIBUTION", "distribute-container"),
}


def test_the_managed_workflows_are_listed_read_and_kept(client):
    listed = client.list_workflows(owner="Amazon", maxResults=100)["workflowVersionList"]
    assert {(w["type"], w["name"]) for w in listed} == MANAGED
    for w in listed:
        assert w["owner"] == "aws"
        assert w["arn"] == f"arn:aws:imagebuilder:{REGION}:aws:workflow/{w['type'].lower()}/{w['name']}/1.0.0"
    got = client.get_workflow(
        workflowBuildVersionArn=f"arn:aws:imagebuilder:{REGION}:aws:workflow/build/build-image/x.x.x"
    )["workflow"]
    assert got["arn"] == f"arn:aws:imagebuilder:{REGION}:aws:workflow/build/build-image/1.0.0/1"
    assert "CreateOutputAMI" in got["data"] and got["type"] == "BUILD"
    builds = client.list_workflow_build_versions(
        workflowVersionArn=f"arn:aws:imagebuilder:{REGION}:aws:workflow/test/test-image/x.x.x"
    )["workflowSummaryList"]
    assert [b["arn"] for b in builds] == [f"arn:aws:imagebuilder:{REGION}:aws:workflow/test/test-image/1.0.0/1"]
    assert_client_error(
        lambda: client.delete_workflow(
            workflowBuildVersionArn=f"arn:aws:imagebuilder:{REGION}:aws:workflow/build/build-image/1.0.0/1"
        ),
        "InvalidRequestException",
        "cannot be deleted",
    )
    # Not in another region's name, and not for a type they do not have.
    assert_client_error(
        lambda: client.get_workflow(
            workflowBuildVersionArn="arn:aws:imagebuilder:us-west-2:aws:workflow/build/build-image/x.x.x"
        ),
        "ResourceNotFoundException",
    )
    assert_client_error(
        lambda: client.get_workflow(
            workflowBuildVersionArn=f"arn:aws:imagebuilder:{REGION}:aws:workflow/test/build-image/x.x.x"
        ),
        "ResourceNotFoundException",
    )
