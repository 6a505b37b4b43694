"""Components: CreateComponent (inline YAML documents checked for schemaVersion and phases, the
type derived from the phases, build numbers assigned), GetComponent by build, version or `x`
filter, ListComponents with owner and name filters, ListComponentBuildVersions, and
DeleteComponent, which a recipe's reference blocks."""

from __future__ import annotations

import pytest

from kiln_testlib import (
    BUILD_COMPONENT_YAML,
    DEFAULT_ACCOUNT,
    TEST_COMPONENT_YAML,
    arn_prefix,
    assert_client_error,
    create_component,
    create_image_recipe,
    unique_name,
)


def component_arn(name: str, version: str, build: int | None = None) -> str:
    arn = f"{arn_prefix()}:component/{name}/{version}"
    return f"{arn}/{build}" if build is not None else arn


def get(client, arn: str) -> dict:
    return client.get_component(componentBuildVersionArn=arn)["component"]


def list_versions(client, name: str, **extra) -> list[dict]:
    response = client.list_components(filters=[{"name": "name", "values": [name]}], **extra)
    return response["componentVersionList"]


# --- Create and Get ----------------------------------------------------------------------------


def test_create_assigns_build_1_and_latest_version_references(client, name):
    response = client.create_component(
        name=name, semanticVersion="1.2.3", platform="Linux", data=BUILD_COMPONENT_YAML
    )
    assert response["componentBuildVersionArn"] == component_arn(name, "1.2.3", 1)
    assert response["clientToken"]
    refs = response["latestVersionReferences"]
    assert refs == {
        "latestVersionArn": component_arn(name, "x.x.x"),
        "latestMajorVersionArn": component_arn(name, "1.x.x"),
        "latestMinorVersionArn": component_arn(name, "1.2.x"),
        "latestPatchVersionArn": component_arn(name, "1.2.3"),
    }


def test_get_returns_the_document_verbatim_and_what_was_set(client, name):
    arn = create_component(
        client,
        name,
        description="says hello",
        changeDescription="first cut",
        supportedOsVersions=["Amazon Linux 2023"],
        tags={"team": "platform"},
    )
    component = get(client, arn)
    assert component["arn"] == arn
    assert component["name"] == name
    assert component["version"] == "1.0.0"
    assert component["description"] == "says hello"
    assert component["changeDescription"] == "first cut"
    assert component["platform"] == "Linux"
    assert component["supportedOsVersions"] == ["Amazon Linux 2023"]
    assert component["data"] == BUILD_COMPONENT_YAML
    assert component["type"] == "BUILD"
    assert component["owner"] == DEFAULT_ACCOUNT
    assert component["tags"] == {"team": "platform"}
    assert component["dateCreated"]


@pytest.mark.parametrize(
    "document, expected_type",
    [
        pytest.param(BUILD_COMPONENT_YAML, "BUILD", id="build-and-validate"),
        pytest.param(TEST_COMPONENT_YAML, "TEST", id="test-only"),
        pytest.param(
            "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n        inputs:\n          commands: [true]\n"
            "  - name: test\n    steps:\n      - name: B\n        action: ExecuteBash\n        inputs:\n          commands: [true]\n",
            "BUILD",
            id="build-and-test",
        ),
    ],
)
def test_type_is_derived_from_the_phases(client, document, expected_type):
    arn = create_component(client, data=document)
    assert get(client, arn)["type"] == expected_type


BAD_DOCUMENTS = [
    pytest.param("phases: [unclosed", id="not-yaml"),
    pytest.param("- just\n- a list\n", id="not-a-mapping"),
    pytest.param(
        "phases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n        inputs: {commands: [true]}\n",
        id="no-schemaVersion",
    ),
    pytest.param("schemaVersion: 1.0\n", id="no-phases"),
    pytest.param("schemaVersion: 1.0\nphases: []\n", id="empty-phases"),
    pytest.param(
        "schemaVersion: 1.0\nphases:\n  - name: deploy\n    steps:\n      - name: A\n        action: ExecuteBash\n        inputs: {commands: [true]}\n",
        id="no-build-validate-or-test-phase",
    ),
]


@pytest.mark.parametrize("document", BAD_DOCUMENTS)
def test_documents_that_are_not_component_documents_are_refused(client, document):
    name = unique_name("bad")
    assert_client_error(
        lambda: create_component(client, name, data=document), "InvalidRequestException", "data"
    )
    assert list_versions(client, name) == []


def test_uri_needs_an_s3_endpoint(client):
    """The shared server has none; documents from S3 are tested in test_s3_documents.py."""
    assert_client_error(
        lambda: client.create_component(
            name=unique_name(), semanticVersion="1.0.0", platform="Linux", uri="s3://bucket/doc.yaml"
        ),
        "InvalidRequestException",
        "uri s3://bucket/",
        "no S3 endpoint configured",
    )


def test_data_or_uri_is_required(client):
    assert_client_error(
        lambda: client.create_component(name=unique_name(), semanticVersion="1.0.0", platform="Linux"),
        "InvalidRequestException",
        "data",
    )


def test_version_must_be_concrete(raw_client):
    assert_client_error(
        lambda: raw_client.create_component(
            name=unique_name(), semanticVersion="1.0.x", platform="Linux", data=BUILD_COMPONENT_YAML
        ),
        "InvalidRequestException",
        "semanticVersion",
    )


def test_dry_run_writes_nothing(client, name):
    with pytest.raises(client.exceptions.DryRunOperationException):
        create_component(client, name, dryRun=True)
    assert list_versions(client, name) == []


def test_name_is_normalised_in_the_arn(client):
    base = unique_name("Comp")
    arn = create_component(client, f"My {base}_Thing")
    assert arn == component_arn(f"my-{base.lower()}-thing", "1.0.0", 1)
    assert get(client, arn)["name"] == f"My {base}_Thing"


def test_a_new_version_of_the_same_name_is_allowed(client, name):
    create_component(client, name, "1.0.0")
    assert create_component(client, name, "1.0.1") == component_arn(name, "1.0.1", 1)


def test_same_version_with_new_content_gets_the_next_build(client, name):
    create_component(client, name, "1.0.0")
    changed = BUILD_COMPONENT_YAML.replace("echo hello", "echo hello again")
    assert create_component(client, name, "1.0.0", data=changed) == component_arn(name, "1.0.0", 2)
    assert get(client, component_arn(name, "1.0.0"))["data"] == changed


def test_same_version_with_the_same_content_already_exists(client, name):
    arn = create_component(client, name, "1.0.0")
    assert_client_error(
        lambda: create_component(client, name, "1.0.0"), "ResourceAlreadyExistsException", arn
    )


def test_get_answers_latest_version_references(client, name):
    arn = create_component(client, name, "3.1.4")
    refs = client.get_component(componentBuildVersionArn=arn)["latestVersionReferences"]
    assert refs["latestVersionArn"] == component_arn(name, "x.x.x")
    assert refs["latestMajorVersionArn"] == component_arn(name, "3.x.x")
    assert refs["latestMinorVersionArn"] == component_arn(name, "3.1.x")
    assert refs["latestPatchVersionArn"] == component_arn(name, "3.1.4")


# --- Version references ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def versions(client):
    """One component in versions 1.6.8, 1.7.8 and 2.2.4 (the user guide's example)."""
    name = unique_name("ver")
    for version in ("1.6.8", "2.2.4", "1.7.8"):
        create_component(client, name, version, description=f"v{version}")
    return name


@pytest.mark.parametrize(
    "reference, resolved",
    [
        ("x.x.x", "2.2.4"),
        ("1.x.x", "1.7.8"),
        ("1.6.x", "1.6.8"),
        ("1.6.8", "1.6.8"),
        ("2.2.4/1", "2.2.4"),
    ],
)
def test_version_filters_resolve_to_the_newest_match(client, versions, reference, resolved):
    component = get(client, component_arn(versions, reference))
    assert component["version"] == resolved
    assert component["arn"] == component_arn(versions, resolved, 1)


@pytest.mark.parametrize("reference", ["x.2.x", "1.x.8", "x.x.4"])
def test_misplaced_wildcards_are_invalid_versions(client, versions, reference):
    assert_client_error(
        lambda: get(client, component_arn(versions, reference)),
        "InvalidVersionNumberException",
    )


def test_a_filter_that_matches_nothing_is_not_found(client, versions):
    assert_client_error(
        lambda: get(client, component_arn(versions, "3.x.x")), "ResourceNotFoundException"
    )


def test_missing_component_is_not_found(client):
    missing = component_arn(unique_name("missing"), "1.0.0", 1)
    assert_client_error(lambda: get(client, missing), "ResourceNotFoundException", missing)


# --- Lists -------------------------------------------------------------------------------------


def test_list_components_gives_one_entry_per_version(client, versions):
    entries = list_versions(client, versions)
    assert sorted(e["version"] for e in entries) == ["1.6.8", "1.7.8", "2.2.4"]
    for entry in entries:
        assert entry["arn"] == component_arn(versions, entry["version"])
        assert entry["name"] == versions
        assert entry["type"] == "BUILD"
        assert entry["platform"] == "Linux"
        assert entry["owner"] == DEFAULT_ACCOUNT


def test_owner_filters(client, versions):
    assert len(list_versions(client, versions, owner="Self")) == 3
    for owner in ("Shared", "Amazon", "ThirdParty", "AWSMarketplace"):
        assert list_versions(client, versions, owner=owner) == [], owner


def test_by_name_gives_one_entry_per_name_with_the_newest_version(client, versions):
    entries = list_versions(client, versions, byName=True)
    assert len(entries) == 1
    assert entries[0]["version"] == "2.2.4"
    assert entries[0]["name"] == versions


def test_by_name_cannot_be_combined_with_the_version_filter(client, versions):
    assert_client_error(
        lambda: client.list_components(
            byName=True, filters=[{"name": "version", "values": ["1.6.8"]}]
        ),
        "InvalidParameterCombinationException",
        "byName",
    )


def test_list_components_filters_by_type(client):
    name = unique_name("typed")
    create_component(client, name + "-b")
    create_component(client, name + "-t", data=TEST_COMPONENT_YAML)
    response = client.list_components(
        filters=[
            {"name": "name", "values": [name + "*"]},
            {"name": "type", "values": ["TEST"]},
        ]
    )
    assert [e["name"] for e in response["componentVersionList"]] == [name + "-t"]


def test_list_components_pages(client):
    name = unique_name("paged")
    for patch in range(5):
        create_component(client, name, f"1.0.{patch}")
    filters = [{"name": "name", "values": [name]}]
    first = client.list_components(filters=filters, maxResults=3)
    assert len(first["componentVersionList"]) == 3
    rest = client.list_components(filters=filters, maxResults=3, nextToken=first["nextToken"])
    assert len(rest["componentVersionList"]) == 2
    assert "nextToken" not in rest


def test_list_component_build_versions(client, name):
    create_component(client, name, "1.0.0")
    create_component(
        client, name, "1.0.0", data=BUILD_COMPONENT_YAML.replace("hello", "bonjour")
    )
    create_component(client, name, "1.0.1")
    response = client.list_component_build_versions(componentVersionArn=component_arn(name, "1.0.0"))
    summaries = response["componentSummaryList"]
    assert sorted(s["arn"] for s in summaries) == [
        component_arn(name, "1.0.0", 1),
        component_arn(name, "1.0.0", 2),
    ]
    assert all(s["version"] == "1.0.0" and s["type"] == "BUILD" for s in summaries)


def test_build_versions_of_an_unknown_version_are_empty_or_not_found(client):
    arn = component_arn(unique_name("nothing"), "1.0.0")
    try:
        response = client.list_component_build_versions(componentVersionArn=arn)
    except client.exceptions.ResourceNotFoundException:
        return
    assert response["componentSummaryList"] == []


def test_paginator_for_components(client):
    name = unique_name("pgn")
    for patch in range(4):
        create_component(client, name, f"0.0.{patch}")
    paginator = client.get_paginator("list_components")
    pages = paginator.paginate(
        filters=[{"name": "name", "values": [name]}], PaginationConfig={"PageSize": 3}
    )
    assert sum(len(p["componentVersionList"]) for p in pages) == 4


# --- Delete ------------------------------------------------------------------------------------


def test_delete_removes_one_build(client, name):
    arn = create_component(client, name)
    response = client.delete_component(componentBuildVersionArn=arn)
    assert response["componentBuildVersionArn"] == arn
    assert_client_error(lambda: get(client, arn), "ResourceNotFoundException")
    assert_client_error(
        lambda: client.delete_component(componentBuildVersionArn=arn), "ResourceNotFoundException"
    )


def test_delete_of_a_component_a_recipe_uses_is_refused(client):
    component = create_component(client)
    recipe = create_image_recipe(client, [component])
    assert_client_error(
        lambda: client.delete_component(componentBuildVersionArn=component),
        "ResourceDependencyException",
        recipe,
    )
    client.delete_image_recipe(imageRecipeArn=recipe)
    client.delete_component(componentBuildVersionArn=component)


# --- The aws CLI -------------------------------------------------------------------------------


def test_create_component_from_a_file_with_the_cli(aws, client, tmp_path):
    document = tmp_path / "component.yaml"
    document.write_text(BUILD_COMPONENT_YAML)
    name = unique_name("cli-comp")
    created = aws.json(
        "create-component",
        "--name",
        name,
        "--semantic-version",
        "1.0.0",
        "--platform",
        "Linux",
        "--data",
        f"file://{document}",
    )
    arn = created["componentBuildVersionArn"]
    assert arn == component_arn(name, "1.0.0", 1)
    got = aws.json("get-component", "--component-build-version-arn", arn)
    assert got["component"]["data"] == BUILD_COMPONENT_YAML
    listed = aws.json("list-components", "--filters", f"name=name,values={name}")
    assert [c["arn"] for c in listed["componentVersionList"]] == [component_arn(name, "1.0.0")]
