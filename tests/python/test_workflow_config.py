"""`workflows` and `executionRole` on CreateImagePipeline, UpdateImagePipeline and CreateImage,
checked when the pipeline or image is created (issue 16 item 4): workflow ARNs that resolve (the
caller's own, or AWS-managed ones with `x.x.x`), at most one BUILD and one DISTRIBUTION workflow
and ten in all, workflows that suit the recipe, `parameters` typed by the workflow document
(known names, values of the declared type, required ones given, none twice), `parallelGroup`
and `onFailure` on TEST workflows only, output names unique across the workflows, and an
execution role whenever workflows are given. Every refusal is an InvalidRequestException naming
the member. GetImage and GetImagePipeline echo what was given.

The module runs its own server with `--build-concurrency 0`: images stay PENDING, no build runs
(what a build does with its workflows is the worker's, tested elsewhere)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from kiln_testlib import (
    REGION,
    KilnServer,
    arn_prefix,
    assert_client_error,
    create_component,
    create_image_recipe,
    create_infra,
    create_workflow,
    make_client,
    unique_name,
)

ROLE = "arn:aws:iam::123456789012:role/ImageBuilderExecution"
DOCKERFILE = (
    "FROM {{{ imagebuilder:parentImage }}}\n"
    "{{{ imagebuilder:environments }}}\n"
    "{{{ imagebuilder:components }}}\n"
)

GATE_YAML = """\
name: gate
schemaVersion: 1.0
parameters:
  - name: topic
    type: string
  - name: waitForActionAtEnd
    type: boolean
    default: true
  - name: attempts
    type: integer
    default: 1
  - name: approvers
    type: stringList
    default: [ops]
steps:
  - name: ApproveImage
    action: WaitForAction
    if:
      booleanEquals: true
      value: "$.parameters.waitForActionAtEnd"
    inputs: {}
outputs:
  - name: ApprovedBy
    value: "$.stepOutputs.ApproveImage.reason"
"""

PUSH_YAML = """\
schemaVersion: 1.0
steps:
  - name: PushContainer
    action: DistributeContainerImage
    inputs:
      instanceId.$: "$.workflowOutputs.InstanceId"
"""


def managed(stage: str, name: str, version: str = "x.x.x") -> str:
    return f"arn:aws:imagebuilder:{REGION}:aws:workflow/{stage}/{name}/{version}"


@pytest.fixture(scope="module")
def ib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = KilnServer(
        tmp_path_factory.mktemp("wfconfig") / "data", extra_args=["--build-concurrency", "0"]
    ).start()
    try:
        yield make_client(server.endpoint)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def recipe(ib: Any) -> str:
    return create_image_recipe(ib, [create_component(ib)])


@pytest.fixture(scope="module")
def container_recipe(ib: Any) -> str:
    return ib.create_container_recipe(
        containerType="DOCKER",
        name=unique_name("ctr"),
        semanticVersion="1.0.0",
        components=[{"componentArn": create_component(ib)}],
        dockerfileTemplateData=DOCKERFILE,
        parentImage="amazonlinux:latest",
        targetRepository={"service": "ECR", "repositoryName": "my-repo"},
    )["containerRecipeArn"]


@pytest.fixture(scope="module")
def infra(ib: Any) -> str:
    return create_infra(ib)


@pytest.fixture(scope="module")
def gate(ib: Any) -> str:
    return create_workflow(ib, type_="TEST", data=GATE_YAML)


@pytest.fixture(scope="module")
def push(ib: Any) -> str:
    return create_workflow(ib, type_="DISTRIBUTION", data=PUSH_YAML)


@pytest.fixture(scope="module")
def pipeline(ib: Any, recipe: str, infra: str) -> str:
    """A pipeline without workflows, for UpdateImagePipeline."""
    return ib.create_image_pipeline(
        name=unique_name("pipe"), imageRecipeArn=recipe, infrastructureConfigurationArn=infra
    )["imagePipelineArn"]


Submit = Callable[..., Any]


def submitters(ib: Any, recipe: str, infra: str, pipeline: str) -> dict[str, Submit]:
    """The three operations that take `workflows`, each for the image recipe."""

    def role_args(role: str | None) -> dict[str, str]:
        return {} if role is None else {"executionRole": role}

    return {
        "CreateImagePipeline": lambda workflows, role=ROLE: ib.create_image_pipeline(
            name=unique_name("pipe"),
            imageRecipeArn=recipe,
            infrastructureConfigurationArn=infra,
            workflows=workflows,
            **role_args(role),
        ),
        "UpdateImagePipeline": lambda workflows, role=ROLE: ib.update_image_pipeline(
            imagePipelineArn=pipeline,
            imageRecipeArn=recipe,
            infrastructureConfigurationArn=infra,
            workflows=workflows,
            **role_args(role),
        ),
        "CreateImage": lambda workflows, role=ROLE: ib.create_image(
            imageRecipeArn=recipe,
            infrastructureConfigurationArn=infra,
            workflows=workflows,
            **role_args(role),
        ),
    }


OPERATIONS = ["CreateImagePipeline", "UpdateImagePipeline", "CreateImage"]


@pytest.fixture(scope="module")
def ops(ib: Any, recipe: str, infra: str, pipeline: str) -> dict[str, Submit]:
    return submitters(ib, recipe, infra, pipeline)


def gate_with(gate: str, *parameters: tuple[str, list[str]], **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"workflowArn": gate, **extra}
    if parameters:
        entry["parameters"] = [{"name": n, "value": v} for n, v in parameters]
    return entry


# --- Accepted and echoed -----------------------------------------------------------------------


def test_create_image_stores_its_workflows_and_get_image_answers_them(ib, recipe, infra, gate):
    workflows = [
        {"workflowArn": managed("build", "build-image")},
        gate_with(
            gate,
            ("topic", ["release"]),
            ("attempts", ["3"]),
            ("approvers", ["alice", "bob"]),
            parallelGroup="approvals",
            onFailure="CONTINUE",
        ),
        {"workflowArn": managed("distribution", "distribute-image")},
    ]
    arn = ib.create_image(
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=infra,
        workflows=workflows,
        executionRole=ROLE,
    )["imageBuildVersionArn"]
    image = ib.get_image(imageBuildVersionArn=arn)["image"]
    assert image["workflows"] == workflows
    assert image["executionRole"] == ROLE
    ib.cancel_image_creation(imageBuildVersionArn=arn)


def test_an_image_without_workflows_answers_none(ib, recipe, infra):
    arn = ib.create_image(imageRecipeArn=recipe, infrastructureConfigurationArn=infra)[
        "imageBuildVersionArn"
    ]
    image = ib.get_image(imageBuildVersionArn=arn)["image"]
    assert "workflows" not in image
    assert "executionRole" not in image
    ib.cancel_image_creation(imageBuildVersionArn=arn)


@pytest.mark.parametrize("version", ["x.x.x", "1.x.x", "1.0.0", "1.0.0/1"])
def test_managed_workflow_arns_with_x_filters_are_accepted(ib, recipe, infra, version):
    workflows = [
        {"workflowArn": managed("build", "build-image", version)},
        {"workflowArn": managed("test", "test-image", version)},
    ]
    arn = ib.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=infra,
        workflows=workflows,
        executionRole=ROLE,
    )["imagePipelineArn"]
    got = ib.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]
    # Stored as given: the filter resolves again when a build starts.
    assert got["workflows"] == workflows
    assert got["executionRole"] == ROLE


def test_a_pipeline_run_carries_the_pipelines_workflows_to_the_image(ib, recipe, infra, gate):
    workflows = [
        {"workflowArn": managed("build", "express-build-image")},
        gate_with(gate, ("topic", ["nightly"]), parallelGroup="g1"),
    ]
    arn = ib.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=infra,
        workflows=workflows,
        executionRole=ROLE,
    )["imagePipelineArn"]
    image_arn = ib.start_image_pipeline_execution(imagePipelineArn=arn)["imageBuildVersionArn"]
    image = ib.get_image(imageBuildVersionArn=image_arn)["image"]
    assert image["workflows"] == workflows
    assert image["executionRole"] == ROLE
    ib.cancel_image_creation(imageBuildVersionArn=image_arn)


def test_a_workflow_version_arn_resolves_to_its_newest_build(ib, ops, gate):
    version_arn = gate.rsplit("/", 1)[0]
    filtered = version_arn.rsplit("/", 1)[0] + "/1.x.x"
    for arn in (version_arn, filtered):
        ops["CreateImagePipeline"]([gate_with(arn, ("topic", ["t"]))])


def test_container_recipes_take_the_container_workflows(ib, container_recipe, infra, push):
    workflows = [
        {"workflowArn": managed("build", "build-container")},
        {"workflowArn": managed("test", "test-container")},
        {"workflowArn": push},
    ]
    arn = ib.create_image_pipeline(
        name=unique_name("pipe"),
        containerRecipeArn=container_recipe,
        infrastructureConfigurationArn=infra,
        workflows=workflows,
        executionRole=ROLE,
    )["imagePipelineArn"]
    assert ib.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]["workflows"] == workflows


def test_the_limits_are_reached_but_not_passed(ops, gate):
    # One build, one distribution and eight tests: ten in all.
    workflows = [{"workflowArn": managed("build", "build-image")}]
    workflows += [{"workflowArn": managed("test", "test-image")} for _ in range(8)]
    workflows.append({"workflowArn": managed("distribution", "distribute-image")})
    ops["CreateImagePipeline"](workflows)


# --- Refused, with the member at fault ---------------------------------------------------------


def missing_own_workflow() -> str:
    return f"{arn_prefix()}:workflow/test/{unique_name('nope')}/1.0.0"


REFUSALS: list[tuple[str, Callable[[str, str], list[dict[str, Any]]], tuple[str, ...]]] = [
    (
        "own-workflow-missing",
        lambda gate, push: [{"workflowArn": missing_own_workflow()}],
        ("workflows[0].workflowArn", "does not exist"),
    ),
    (
        "managed-workflow-missing",
        lambda gate, push: [{"workflowArn": managed("build", "no-such-workflow")}],
        ("workflows[0].workflowArn", "no AWS-managed BUILD workflow"),
    ),
    (
        "managed-version-missing",
        lambda gate, push: [{"workflowArn": managed("build", "build-image", "2.x.x")}],
        ("workflows[0].workflowArn",),
    ),
    (
        "managed-in-another-region",
        lambda gate, push: [
            {"workflowArn": "arn:aws:imagebuilder:eu-west-1:aws:workflow/build/build-image/x.x.x"}
        ],
        ("workflows[0].workflowArn", "no AWS-managed BUILD workflow"),
    ),
    (
        "two-build-workflows",
        lambda gate, push: [
            {"workflowArn": managed("build", "build-image")},
            {"workflowArn": managed("build", "express-build-image")},
        ],
        ("workflows[1].workflowArn", "at most one BUILD workflow"),
    ),
    (
        "two-distribution-workflows",
        lambda gate, push: [
            {"workflowArn": managed("distribution", "distribute-image")},
            {"workflowArn": managed("test", "test-image")},
            {"workflowArn": managed("distribution", "distribute-image")},
        ],
        ("workflows[2].workflowArn", "at most one DISTRIBUTION workflow"),
    ),
    (
        "eleven-workflows",
        lambda gate, push: [{"workflowArn": managed("test", "test-image")} for _ in range(11)],
        ("workflows:", "at most 10"),
    ),
    (
        "managed-container-workflow-for-an-image-recipe",
        lambda gate, push: [{"workflowArn": managed("build", "build-container")}],
        ("workflows[0].workflowArn", "use 'build-image'"),
    ),
    (
        "container-distribution-for-an-image-recipe",
        lambda gate, push: [{"workflowArn": push}],
        ("workflows[0].workflowArn", "DistributeContainerImage"),
    ),
    (
        "required-parameter-missing",
        lambda gate, push: [gate_with(gate)],
        ("workflows[0].parameters:", "needs a value for topic"),
    ),
    (
        "unknown-parameter",
        lambda gate, push: [gate_with(gate, ("topic", ["t"]), ("colour", ["red"]))],
        ("workflows[0].parameters[1].name", "colour", "topic, waitForActionAtEnd"),
    ),
    (
        "integer-parameter-not-a-number",
        lambda gate, push: [gate_with(gate, ("topic", ["t"]), ("attempts", ["three"]))],
        ("workflows[0].parameters[1].value", "'three' is not an integer"),
    ),
    (
        "boolean-parameter-not-a-boolean",
        lambda gate, push: [
            {"workflowArn": managed("build", "build-image")},
            gate_with(gate, ("waitForActionAtEnd", ["yes"]), ("topic", ["t"])),
        ],
        ("workflows[1].parameters[0].value", "'yes' is not a boolean"),
    ),
    (
        "string-parameter-with-two-values",
        lambda gate, push: [gate_with(gate, ("topic", ["a", "b"]))],
        ("workflows[0].parameters[0].value", "exactly one value"),
    ),
    (
        "string-parameter-with-no-value",
        lambda gate, push: [gate_with(gate, ("topic", []))],
        ("workflows[0].parameters[0].value", "exactly one value"),
    ),
    (
        "value-too-long",
        lambda gate, push: [gate_with(gate, ("topic", ["x" * 1025]))],
        ("workflows[0].parameters[0].value", "1024"),
    ),
    (
        "parameter-given-twice",
        lambda gate, push: [gate_with(gate, ("topic", ["a"]), ("topic", ["b"]))],
        ("workflows[0].parameters[1].name", "topic", "parameters[0]"),
    ),
    (
        "parameter-on-a-workflow-that-declares-none",
        lambda gate, push: [
            {
                "workflowArn": managed("build", "build-image"),
                "parameters": [{"name": "anything", "value": ["1"]}],
            }
        ],
        ("workflows[0].parameters[0].name", "declares none"),
    ),
    (
        "parallel-group-on-a-build-workflow",
        lambda gate, push: [{"workflowArn": managed("build", "build-image"), "parallelGroup": "g"}],
        ("workflows[0].parallelGroup", "test workflows"),
    ),
    (
        "on-failure-on-a-distribution-workflow",
        lambda gate, push: [
            {"workflowArn": managed("distribution", "distribute-image"), "onFailure": "CONTINUE"}
        ],
        ("workflows[0].onFailure", "test workflows"),
    ),
    (
        "output-names-clash",
        lambda gate, push: [
            gate_with(gate, ("topic", ["a"])),
            gate_with(gate, ("topic", ["b"])),
        ],
        ("workflows[1].workflowArn", "ApprovedBy", "workflows[0]"),
    ),
]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    "workflows, fragments", [pytest.param(w, f, id=i) for i, w, f in REFUSALS]
)
def test_refusals_name_the_member(ops, gate, push, operation, workflows, fragments):
    assert_client_error(
        lambda: ops[operation](workflows(gate, push)), "InvalidRequestException", *fragments
    )


@pytest.mark.parametrize("operation", OPERATIONS)
def test_workflows_need_an_execution_role(ops, operation):
    assert_client_error(
        lambda: ops[operation]([{"workflowArn": managed("build", "build-image")}], role=None),
        "InvalidRequestException",
        "executionRole",
        "execution role is required",
    )


def test_image_workflows_for_a_container_recipe_are_refused(ib, container_recipe, infra):
    assert_client_error(
        lambda: ib.create_image(
            containerRecipeArn=container_recipe,
            infrastructureConfigurationArn=infra,
            workflows=[{"workflowArn": managed("distribution", "distribute-image")}],
            executionRole=ROLE,
        ),
        "InvalidRequestException",
        "workflows[0].workflowArn",
        "use 'distribute-container'",
    )


def test_a_refused_update_leaves_the_pipeline_as_it_was(ib, ops, pipeline):
    before = ib.get_image_pipeline(imagePipelineArn=pipeline)["imagePipeline"]
    assert_client_error(
        lambda: ops["UpdateImagePipeline"]([{"workflowArn": managed("build", "nope")}]),
        "InvalidRequestException",
    )
    after = ib.get_image_pipeline(imagePipelineArn=pipeline)["imagePipeline"]
    assert after == before


def test_a_refused_create_image_leaves_no_image(ib, recipe, infra):
    name_versions = ib.list_image_build_versions(imageVersionArn=recipe.replace("image-recipe", "image"))
    before = len(name_versions["imageSummaryList"])
    assert_client_error(
        lambda: ib.create_image(
            imageRecipeArn=recipe,
            infrastructureConfigurationArn=infra,
            workflows=[{"workflowArn": managed("build", "nope")}],
            executionRole=ROLE,
        ),
        "InvalidRequestException",
    )
    after = ib.list_image_build_versions(imageVersionArn=recipe.replace("image-recipe", "image"))
    assert len(after["imageSummaryList"]) == before
