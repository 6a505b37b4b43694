"""The contract test: every operation of the model, called through boto3 the way a
user calls it, and every response compared member by member with what AWS returns.

The test is driven by the model (model/imagebuilder-service-2.json): one test per operation.
Each builds its request from the operation's required input members only, filled from a small
world of resources created first through boto3 with every default left unset (FILLERS), and
calls the operation. An operation that answers "X is not implemented yet in Kiln" is skipped and
listed at the end; an implemented operation with a required member FILLERS has no value for
fails and says what to add. So an operation gets its contract test by being implemented.

Each response body (the raw JSON: boto3's parser would drop members the model does not know) is
walked against the operation's output shape. For every structure the SET of members present
must equal the expected set: the model's required members, the always-present members (`tags`
wherever the shape has it, `outputResources` on Image and ImageSummary, `amis` inside it), and
the members AWS fills in when the caller left them unset, per shape, from AWS's published aws
CLI examples (contract_members.json, one source per entry). Fixed values shown by the examples
(`tags == {}` on the untagged world, "Initial version", `outputResources == {"amis": []}` while
building, ...) are compared too.

Operations run in four phases: creates (and StartImagePipelineExecution), reads, other changes,
deletes; changes and deletes work on resources of their own, so the reads see the world as
created. Pipeline executions happen in a second account: a pipeline that has run carries run
history (dateLastRun, lastRunStatus) that no example documents, and the first account's
pipelines stay as created.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import botocore.exceptions
import pytest

from kiln_testlib import (
    BUILD_COMPONENT_YAML,
    DEFAULT_ACCOUNT,
    REGION,
    REPO,
    WORKFLOW_YAML,
    KilnServer,
    error_code,
    error_message,
    make_client,
    unique_name,
)

MODEL = json.loads((REPO / "model" / "imagebuilder-service-2.json").read_text())
SHAPES: dict[str, dict] = MODEL["shapes"]
OPERATIONS: dict[str, dict] = MODEL["operations"]
TABLES = json.loads((Path(__file__).parent / "contract_members.json").read_text())

# Kiln's managed base image: builds on it finish in seconds (see test_builds.py).
BUSYBOX = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x"
SECOND_KEY = "AKIDCONTRACTB0000"
SECOND_ACCOUNT = "210987654321"
DOCKERFILE = (
    "FROM {{{ imagebuilder:parentImage }}}\n"
    "{{{ imagebuilder:environments }}}\n"
    "{{{ imagebuilder:components }}}\n"
)
SLOW_COMPONENT_YAML = """\
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Wait
        action: ExecuteBash
        inputs:
          commands:
            - sleep 300
"""
FAILING_COMPONENT_YAML = SLOW_COMPONENT_YAML.replace("sleep 300", "exit 3")
SHELL_SCRIPT = "#!/bin/bash\necho hello\n"
FINAL_STATES = ("AVAILABLE", "FAILED", "CANCELLED", "DELETED", "DEPRECATED", "DISABLED")
# The states of an image before its build produced any AMI.
BEFORE_OUTPUT_STATES = ("PENDING", "CREATING", "BUILDING", "TESTING")
BUILD_TIMEOUT_SECONDS = 300


# --- The world --------------------------------------------------------------------------------


@dataclass
class World:
    """The resources the operations read, created through boto3 with defaults left unset."""

    server: KilnServer
    client: Any
    second: Any  # the second account's client: pipeline executions happen there
    component: str = ""
    slow_component: str = ""
    workflow: str = ""
    recipe: str = ""
    slow_recipe: str = ""
    container_recipe: str = ""
    infra: str = ""
    distribution: str = ""
    pipeline: str = ""
    image: str = ""
    failed_image: str = ""
    second_pipeline: str = ""
    second_image: str = ""
    second_infra: str = ""
    # Images of their own for the lifecycle executions (their states change).
    lifecycle_image: str = ""
    cancel_image: str = ""
    scheduled_execution: str = ""
    not_implemented: list[str] = field(default_factory=list)
    started_images: list[tuple[Any, str]] = field(default_factory=list)

    # Resources of their own for the operations that change or delete one.

    def own_component(self) -> str:
        return create_component(self.client)

    def own_recipe(self) -> str:
        return create_recipe(self.client, self.component)

    def own_container_recipe(self) -> str:
        return create_container_recipe(self.client, self.component)

    def own_infra(self) -> str:
        return create_infra(self.client)

    def own_distribution(self) -> str:
        return create_distribution(self.client)

    def own_workflow(self) -> str:
        return create_workflow(self.client)

    def own_pipeline(self) -> str:
        return create_pipeline(self.client, self.recipe, self.infra)

    def own_lifecycle_policy(self) -> str:
        return create_lifecycle_policy(self.client)

    def lifecycle_execution(self) -> str:
        """A StartResourceStateUpdate waiting for its `updateAt` (IN_PROGRESS, no resources yet),
        as every aws CLI example of the lifecycle executions shows one; made once in the second
        account (whose image lists the examples of ListImages do not cover), then read by
        GetLifecycleExecution, ListLifecycleExecutions and ListLifecycleExecutionResources."""
        if not self.scheduled_execution:
            self.scheduled_execution = self.scheduled_update(self.lifecycle_image)
        return self.scheduled_execution

    def scheduled_update(self, image: str) -> str:
        return self.second.start_resource_state_update(
            resourceArn=image,
            state={"status": "DEPRECATED"},
            updateAt=time.time() + 86400,
        )["lifecycleExecutionId"]

    def own_building_image(self) -> str:
        arn = self.client.create_image(
            imageRecipeArn=self.slow_recipe, infrastructureConfigurationArn=self.infra
        )["imageBuildVersionArn"]
        self.started_images.append((self.client, arn))
        return arn

    def own_finished_image(self) -> str:
        """A cancelled image: finished without waiting for a build slot, which the second
        account's slow builds hold."""
        arn = self.own_building_image()
        self.client.cancel_image_creation(imageBuildVersionArn=arn, clientToken=str(uuid.uuid4()))
        wait_final(self.client, arn)
        return arn


def create_component(client: Any, data: str = BUILD_COMPONENT_YAML) -> str:
    return client.create_component(
        name=unique_name("comp"), semanticVersion="1.0.0", platform="Linux", data=data
    )["componentBuildVersionArn"]


def create_recipe(client: Any, component: str) -> str:
    return client.create_image_recipe(
        name=unique_name("recipe"),
        semanticVersion="1.0.0",
        parentImage=BUSYBOX,
        components=[{"componentArn": component}],
    )["imageRecipeArn"]


def create_container_recipe(client: Any, component: str) -> str:
    return client.create_container_recipe(
        containerType="DOCKER",
        name=unique_name("crecipe"),
        semanticVersion="1.0.0",
        parentImage=BUSYBOX,
        components=[{"componentArn": component}],
        dockerfileTemplateData=DOCKERFILE,
        targetRepository={"service": "ECR", "repositoryName": "kiln-contract"},
    )["containerRecipeArn"]


def create_infra(client: Any) -> str:
    return client.create_infrastructure_configuration(
        name=unique_name("infra"), instanceProfileName="EC2InstanceProfileForImageBuilder"
    )["infrastructureConfigurationArn"]


def distributions() -> list[dict]:
    return [{"region": REGION, "amiDistributionConfiguration": {"name": "out-{{ imagebuilder:buildDate }}"}}]


def create_distribution(client: Any) -> str:
    return client.create_distribution_configuration(
        name=unique_name("dist"), distributions=distributions()
    )["distributionConfigurationArn"]


def create_workflow(client: Any) -> str:
    return client.create_workflow(
        name=unique_name("wf"), semanticVersion="1.0.0", type="TEST", data=WORKFLOW_YAML
    )["workflowBuildVersionArn"]


def create_lifecycle_policy(client: Any) -> str:
    return client.create_lifecycle_policy(
        name=unique_name("lcp"),
        executionRole=FILLERS["executionRole"](None),
        resourceType="AMI_IMAGE",
        policyDetails=FILLERS["policyDetails"](None),
        resourceSelection=FILLERS["resourceSelection"](None),
    )["lifecyclePolicyArn"]


def create_pipeline(client: Any, recipe: str, infra: str) -> str:
    return client.create_image_pipeline(
        name=unique_name("pipe"), imageRecipeArn=recipe, infrastructureConfigurationArn=infra
    )["imagePipelineArn"]


def wait_final(client: Any, arn: str) -> dict:
    deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        image = client.get_image(imageBuildVersionArn=arn)["image"]
        if image["state"]["status"] in FINAL_STATES:
            return image
        time.sleep(0.2)
    raise AssertionError(f"{arn} did not finish within {BUILD_TIMEOUT_SECONDS}s")


def world_execution(w: World) -> str:
    """The first workflow execution of the world's image (its build workflow)."""
    runs = w.client.list_workflow_executions(imageBuildVersionArn=w.image)["workflowExecutions"]
    if not runs:
        pytest.skip("the world's image has no workflow executions: builds do not run workflows yet")
    return runs[0]["workflowExecutionId"]


def world_step(w: World) -> str:
    """The first step of the world's build workflow (LaunchBuildInstance, as in
    get-workflow-step-execution.rst)."""
    steps = w.client.list_workflow_step_executions(workflowExecutionId=world_execution(w))["steps"]
    return steps[0]["stepExecutionId"]


def version_arn(build_version_arn: str) -> str:
    return build_version_arn.rsplit("/", 1)[0]


def build_world(server: KilnServer) -> World:
    world = World(
        server=server,
        client=make_client(server.endpoint),
        second=make_client(server.endpoint, access_key=SECOND_KEY),
    )
    c = world.client
    world.component = create_component(c)
    world.slow_component = create_component(c, SLOW_COMPONENT_YAML)
    world.workflow = create_workflow(c)
    world.recipe = create_recipe(c, world.component)
    world.slow_recipe = create_recipe(c, world.slow_component)
    world.container_recipe = create_container_recipe(c, world.component)
    world.infra = create_infra(c)
    world.distribution = create_distribution(c)
    world.pipeline = create_pipeline(c, world.recipe, world.infra)
    world.image = c.create_image(imageRecipeArn=world.recipe, infrastructureConfigurationArn=world.infra)[
        "imageBuildVersionArn"
    ]
    # Reads see this image AVAILABLE (ListImagePackages needs it so); the second account's
    # pipeline image is still BUILDING, like list-image-pipeline-images.rst (2026) shows one.
    status = wait_final(c, world.image)["state"]["status"]
    assert status == "AVAILABLE", f"the world's image ended {status}"
    s = world.second
    # RetryImage's, in the second account (the first one's reads list only AVAILABLE versions):
    # failed long before the contract test runs, so its build has stopped.
    world.failed_image = s.create_image(
        imageRecipeArn=create_recipe(s, create_component(s, FAILING_COMPONENT_YAML)),
        infrastructureConfigurationArn=create_infra(s),
    )["imageBuildVersionArn"]
    status = wait_final(s, world.failed_image)["state"]["status"]
    assert status == "FAILED", f"the world's failing image ended {status}"
    world.second_infra = create_infra(s)
    # The lifecycle executions' images (their states change), built before the second
    # account's slow pipeline build holds a build slot.
    lifecycle_recipe = create_recipe(s, create_component(s))
    world.lifecycle_image, world.cancel_image = (
        s.create_image(imageRecipeArn=lifecycle_recipe, infrastructureConfigurationArn=world.second_infra)[
            "imageBuildVersionArn"
        ]
        for _ in range(2)
    )
    for arn in (world.lifecycle_image, world.cancel_image):
        status = wait_final(s, arn)["state"]["status"]
        assert status == "AVAILABLE", f"the world's lifecycle image {arn} ended {status}"
    second_recipe = create_recipe(s, create_component(s, SLOW_COMPONENT_YAML))
    world.second_pipeline = create_pipeline(s, second_recipe, world.second_infra)
    world.second_image = s.start_image_pipeline_execution(imagePipelineArn=world.second_pipeline)[
        "imageBuildVersionArn"
    ]
    world.started_images.append((s, world.second_image))
    return world


# --- Request members ----------------------------------------------------------------------------

Filler = Callable[[World], Any]
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": [SECOND_ACCOUNT]},
                "Action": ["imagebuilder:GetComponent"],
                "Resource": ["*"],
            }
        ],
    }
)



def share_policy(arn: str, action: str) -> str:
    """A resource policy sharing `arn` with the second account."""
    statement = json.loads(POLICY)["Statement"][0]
    statement.update(Action=[f"imagebuilder:{action}"], Resource=[arn])
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


# Values of required input members, by member name: what a user would pass.
FILLERS: dict[str, Filler] = {
    "clientToken": lambda w: str(uuid.uuid4()),
    "name": lambda w: unique_name("contract"),
    "semanticVersion": lambda w: "1.0.0",
    "platform": lambda w: "Linux",
    "parentImage": lambda w: BUSYBOX,
    "containerType": lambda w: "DOCKER",
    "targetRepository": lambda w: {"service": "ECR", "repositoryName": "kiln-contract"},
    "distributions": lambda w: distributions(),
    "instanceProfileName": lambda w: "EC2InstanceProfileForImageBuilder",
    "infrastructureConfigurationArn": lambda w: w.infra,
    "componentBuildVersionArn": lambda w: w.component,
    "componentArn": lambda w: w.component,
    "containerRecipeArn": lambda w: w.container_recipe,
    "distributionConfigurationArn": lambda w: w.distribution,
    "imageBuildVersionArn": lambda w: w.image,
    "imageArn": lambda w: w.image,
    "imagePipelineArn": lambda w: w.pipeline,
    "imageRecipeArn": lambda w: w.recipe,
    "workflowBuildVersionArn": lambda w: w.workflow,
    "resourceArn": lambda w: w.component,
    "policy": lambda w: POLICY,
    "tags": lambda w: {"contract": "yes"},
    "tagKeys": lambda w: ["contract"],
    "format": lambda w: "SHELL",
    "executionRole": lambda w: "arn:aws:iam::123456789012:role/KilnContractRole",
    "resourceType": lambda w: "AMI_IMAGE",
    "policyDetails": lambda w: [{"action": {"type": "DELETE"}, "filter": {"type": "COUNT", "value": 5}}],
    "resourceSelection": lambda w: {"recipes": [{"name": "contract-recipe", "semanticVersion": "1.0.0"}]},
    "lifecycleExecutionId": lambda w: f"lce-{uuid.uuid4()}",
    "lifecyclePolicyArn": lambda w: f"arn:aws:imagebuilder:{REGION}:{DEFAULT_ACCOUNT}:lifecycle-policy/contract",
    "workflowExecutionId": lambda w: world_execution(w),
    "stepExecutionId": lambda w: world_step(w),
    "action": lambda w: "RESUME",
    # StartResourceStateUpdate on the world's AVAILABLE image: AVAILABLE again changes nothing
    # (DEPRECATED would give the image a deprecationTime the other operations then answer).
    "state": lambda w: {"status": "AVAILABLE"},
    "sourceImage": lambda w: w.image,
    "osVersion": lambda w: "Amazon Linux 2023",
    "uri": lambda w: "s3://kiln-contract/disk.raw",
    "vmImportTaskId": lambda w: "import-ami-0123456789abcdef0",
}

# Where one operation needs another value than FILLERS gives: the destructive operations work on
# resources of their own, and a few members mean different things in different operations.
OPERATION_FILLERS: dict[tuple[str, str], Filler] = {
    ("CreateWorkflow", "type"): lambda w: "TEST",
    # A policy names its resource and the actions of its type (test_sharing.py checks the rules).
    ("PutComponentPolicy", "policy"): lambda w: share_policy(w.component, "GetComponent"),
    ("PutImagePolicy", "policy"): lambda w: share_policy(w.image, "GetImage"),
    ("PutImageRecipePolicy", "policy"): lambda w: share_policy(w.recipe, "GetImageRecipe"),
    ("PutContainerRecipePolicy", "policy"): lambda w: share_policy(w.container_recipe, "GetContainerRecipe"),
    ("ImportComponent", "type"): lambda w: "BUILD",
    ("GetMarketplaceResource", "resourceType"): lambda w: "COMPONENT_DATA",
    ("StartImagePipelineExecution", "imagePipelineArn"): lambda w: w.second_pipeline,
    ("ListImagePipelineImages", "imagePipelineArn"): lambda w: w.second_pipeline,
    ("CancelImageCreation", "imageBuildVersionArn"): lambda w: w.own_building_image(),
    ("TagResource", "resourceArn"): lambda w: w.own_component(),
    ("UntagResource", "resourceArn"): lambda w: w.own_component(),
    ("UpdateInfrastructureConfiguration", "infrastructureConfigurationArn"): lambda w: w.own_infra(),
    ("UpdateDistributionConfiguration", "distributionConfigurationArn"): lambda w: w.own_distribution(),
    ("UpdateImagePipeline", "imagePipelineArn"): lambda w: w.own_pipeline(),
    ("DeleteComponent", "componentBuildVersionArn"): lambda w: w.own_component(),
    ("DeleteImageRecipe", "imageRecipeArn"): lambda w: w.own_recipe(),
    ("DeleteContainerRecipe", "containerRecipeArn"): lambda w: w.own_container_recipe(),
    ("DeleteInfrastructureConfiguration", "infrastructureConfigurationArn"): lambda w: w.own_infra(),
    ("DeleteDistributionConfiguration", "distributionConfigurationArn"): lambda w: w.own_distribution(),
    ("DeleteWorkflow", "workflowBuildVersionArn"): lambda w: w.own_workflow(),
    ("DeleteImagePipeline", "imagePipelineArn"): lambda w: w.own_pipeline(),
    ("DeleteImage", "imageBuildVersionArn"): lambda w: w.own_finished_image(),
    ("RetryImage", "imageBuildVersionArn"): lambda w: w.failed_image,
    ("StartResourceStateUpdate", "resourceArn"): lambda w: w.image,
    ("ListLifecycleExecutions", "resourceArn"): lambda w: (w.lifecycle_execution(), w.lifecycle_image)[1],
    ("GetLifecyclePolicy", "lifecyclePolicyArn"): lambda w: w.own_lifecycle_policy(),
    ("UpdateLifecyclePolicy", "lifecyclePolicyArn"): lambda w: w.own_lifecycle_policy(),
    ("DeleteLifecyclePolicy", "lifecyclePolicyArn"): lambda w: w.own_lifecycle_policy(),
    ("GetLifecycleExecution", "lifecycleExecutionId"): lambda w: w.lifecycle_execution(),
    ("ListLifecycleExecutionResources", "lifecycleExecutionId"): lambda w: w.lifecycle_execution(),
    ("CancelLifecycleExecution", "lifecycleExecutionId"): lambda w: w.scheduled_update(w.cancel_image),
    # Kiln imports disks named by URI (it has no VM Import service); the world's S3 endpoint
    # answers nothing, so the imports end FAILED, after the call this test checks.
    ("ImportVmImage", "vmImportTaskId"): lambda w: "s3://kiln-contract/disk.raw",
    ("ImportDiskImage", "infrastructureConfigurationArn"): lambda w: w.second_infra,
    ("SendWorkflowStepAction", "stepExecutionId"): lambda w: pytest.skip(
        "SendWorkflowStepAction needs a step waiting for an action, which the world's builds do "
        "not have; crates/kiln/tests/workflow_executions.rs covers it"
    ),
}

# Members the model leaves optional but a user must give: the model's documentation asks for
# exactly one of data/uri, a recipe for an image or pipeline, and the build-version lists name
# the version whose builds they list, as every example does.
EITHER_OR_MEMBERS: dict[str, dict[str, Filler]] = {
    "CreateComponent": {"data": lambda w: BUILD_COMPONENT_YAML},
    "ImportComponent": {"data": lambda w: SHELL_SCRIPT},
    "CreateWorkflow": {"data": lambda w: WORKFLOW_YAML},
    "CreateImageRecipe": {"components": lambda w: [{"componentArn": w.component}]},
    "CreateContainerRecipe": {
        "components": lambda w: [{"componentArn": w.component}],
        "dockerfileTemplateData": lambda w: DOCKERFILE,
    },
    "CreateImage": {"imageRecipeArn": lambda w: w.recipe},
    "CreateImagePipeline": {"imageRecipeArn": lambda w: w.recipe},
    "UpdateImagePipeline": {"imageRecipeArn": lambda w: w.recipe},
    "ListComponentBuildVersions": {"componentVersionArn": lambda w: version_arn(w.component)},
    "ListImageBuildVersions": {"imageVersionArn": lambda w: version_arn(w.image)},
    "ListWorkflowBuildVersions": {"workflowVersionArn": lambda w: version_arn(w.workflow)},
}

# Operations on the second account's resources (pipeline executions happen there). Imports go
# there too: an imported image answers imageSource IMPORTED, which the first account's lists,
# whose images the CLI examples show without it, are not to hold. RetryImage retries the
# second account's failed image.
SECOND_ACCOUNT_OPERATIONS = {
    "StartImagePipelineExecution",
    "ListImagePipelineImages",
    "ImportDiskImage",
    "ImportVmImage",
    "RetryImage",
    # The lifecycle executions are StartResourceStateUpdates of the second account's images.
    "ListLifecycleExecutions",
    "GetLifecycleExecution",
    "ListLifecycleExecutionResources",
    "CancelLifecycleExecution",
}


def probe(shape_name: str) -> Any:
    """A value of the right JSON type for a member FILLERS does not know: enough to learn whether
    Kiln implements the operation, which a "not implemented" answer says before anything else."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if "enum" in shape:
        return shape["enum"][0]
    if kind == "string":
        return "x" * max(1, shape.get("min", 1))
    if kind in ("integer", "long"):
        return shape.get("min", 1)
    if kind == "boolean":
        return False
    if kind == "list":
        return [probe(shape["member"]["shape"])]
    if kind == "map":
        return {}
    if kind == "structure":
        return {m: probe(shape["members"][m]["shape"]) for m in shape.get("required", [])}
    return "x"


@dataclass
class Request:
    params: dict[str, Any]
    missing: list[str]  # "member (shape Shape)" for every member FILLERS has no value for


def build_request(operation: str, world: World) -> Request:
    input_name = OPERATIONS[operation].get("input", {}).get("shape")
    params: dict[str, Any] = {}
    missing: list[str] = []
    if input_name:
        shape = SHAPES[input_name]
        for member in shape.get("required", []):
            filler = OPERATION_FILLERS.get((operation, member)) or FILLERS.get(member)
            member_shape = shape["members"][member]["shape"]
            if filler is None:
                missing.append(f"{member} (shape {member_shape})")
                params[member] = probe(member_shape)
            else:
                params[member] = filler(world)
    for member, filler in EITHER_OR_MEMBERS.get(operation, {}).items():
        params[member] = filler(world)
    return Request(params, missing)


# --- Response members -------------------------------------------------------------------------

ALWAYS_PRESENT = {
    # Kiln's rule for list and map members: present, `{}`/`[]` when empty, on every shape that has them.
    "Image": {"outputResources": "always present (Kiln's rule for list and map members)"},
    "ImageSummary": {"outputResources": "always present (Kiln's rule for list and map members)"},
    "OutputResources": {"amis": "always present (Kiln's rule for list and map members)"},
}


def image_status(value: dict) -> str | None:
    """`state.status` of an image (or of anything else with a state structure)."""
    state = value.get("state")
    return state.get("status") if isinstance(state, dict) else None


def expected_members(shape_name: str, value: dict) -> dict[str, str]:
    """Member -> why it is expected, for a structure of `shape_name` holding `value`."""
    shape = SHAPES[shape_name]
    expected = {m: "required by the model" for m in shape.get("required", [])}
    if "tags" in shape["members"]:
        expected["tags"] = "always present on every shape with tags (Kiln's rule)"
    expected.update(ALWAYS_PRESENT.get(shape_name, {}))
    expected.update(TABLES["members"].get(shape_name, {}))
    if image_status(value) == "AVAILABLE":
        expected.update(TABLES["members_when_available"].get(shape_name, {}))
    return expected


def expected_values(shape_name: str, value: dict) -> dict[str, tuple[Any, str]]:
    shape = SHAPES[shape_name]
    values: dict[str, tuple[Any, str]] = {}
    if "tags" in shape["members"]:
        values["tags"] = ({}, "the world is untagged: list-tags-for-resource.rst, get-*.rst show tags {}")
    for member, spec in TABLES["values"].get(shape_name, {}).items():
        values[member] = (spec["value"], spec["source"])
    if image_status(value) in BEFORE_OUTPUT_STATES:
        for member, spec in TABLES["values_while_building"].get(shape_name, {}).items():
            values[member] = (spec["value"], spec["source"])
    return values


def check(operation: str, shape_name: str, value: Any, path: str, problems: list[str]) -> None:
    """Appends one line per difference between `value` and what AWS returns for `shape_name`."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "list":
        if isinstance(value, list):
            for i, item in enumerate(value):
                check(operation, shape["member"]["shape"], item, f"{path}[{i}]", problems)
        return
    if kind == "map":
        if isinstance(value, dict):
            for key, item in value.items():
                check(operation, shape["value"]["shape"], item, f"{path}.{key}", problems)
        return
    if kind != "structure" or not isinstance(value, dict):
        return
    expected = expected_members(shape_name, value)
    present = set(value)
    allowed = set(TABLES["members_when_present"].get(shape_name, {}))
    for member in sorted(present - set(expected) - allowed):
        problems.append(
            f"{operation}: {path}.{member}: present, but AWS does not return it here "
            f"({shape_name}: not required by the model, not always present, not in "
            f"contract_members.json)"
        )
    for member in sorted(set(expected) - present):
        problems.append(f"{operation}: {path}.{member}: missing ({shape_name}: {expected[member]})")
    for member, (want, source) in expected_values(shape_name, value).items():
        if member in value and value[member] != want:
            problems.append(
                f"{operation}: {path}.{member}: is {value[member]!r}, AWS returns {want!r} ({source})"
            )
    for member in sorted(present & set(shape["members"])):
        check(operation, shape["members"][member]["shape"], value[member], f"{path}.{member}", problems)


def output_shape(operation: str) -> str:
    return OPERATIONS[operation]["output"]["shape"]


# --- Order and driver --------------------------------------------------------------------------


def phase(operation: str) -> int:
    if operation.startswith(("Create", "Import")) or operation == "StartImagePipelineExecution":
        return 0
    if operation.startswith(("Get", "List")):
        return 1
    if operation.startswith("Delete"):
        return 3
    return 2


ORDERED = sorted(OPERATIONS, key=lambda op: (phase(op), op))


def not_implemented(exc: botocore.exceptions.ClientError, operation: str) -> bool:
    return error_code(exc) == "ClientException" and error_message(exc) == (
        f"{operation} is not implemented yet in Kiln"
    )


class RawBodies:
    """Keeps the raw JSON body of the last response of a client: boto3's parsed response drops
    members the model does not know and turns timestamps into datetimes."""

    def __init__(self, client: Any) -> None:
        self.last: bytes = b""
        client.meta.events.register("after-call.imagebuilder", self.keep)

    def keep(self, http_response: Any, **_: Any) -> None:
        self.last = http_response.content


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # Imports need an S3 endpoint to be accepted; nothing listens on this one.
    server = KilnServer(
        tmp_path_factory.mktemp("contract") / "data",
        keys={SECOND_KEY: SECOND_ACCOUNT},
        extra_args=["--s3-endpoint", "http://127.0.0.1:9"],
    ).start()
    built: World | None = None
    try:
        built = build_world(server)
        yield built
    finally:
        try:
            if built is not None:
                stop_builds(built)
                report_not_implemented(request, built)
        finally:
            server.stop_gracefully()


def stop_builds(world: World) -> None:
    """Cancels the slow builds, so that the server stops at once."""
    for client, arn in world.started_images:
        try:
            client.cancel_image_creation(imageBuildVersionArn=arn, clientToken=str(uuid.uuid4()))
        except botocore.exceptions.ClientError:
            continue  # it ended, or DeleteImage deleted it
        wait_final(client, arn)


def report_not_implemented(request: pytest.FixtureRequest, world: World) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not world.not_implemented:
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    # Teardown output is captured; this list is for the reader of every run.
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(
            f"contract: {len(world.not_implemented)} of {len(OPERATIONS)} operations are not "
            f"implemented in Kiln: {', '.join(world.not_implemented)}"
        )


@pytest.mark.parametrize("operation", ORDERED)
def test_contract(world: World, operation: str) -> None:
    request = build_request(operation, world)
    client = world.second if operation in SECOND_ACCOUNT_OPERATIONS else world.client
    if request.missing:
        # botocore would refuse the probe values' shapes only for type errors; the server answers
        # "not implemented" before it looks at them.
        client = make_client(world.server.endpoint, validate=False)
    bodies = RawBodies(client)
    method = {api: name for name, api in client.meta.method_to_api_mapping.items()}[operation]
    try:
        getattr(client, method)(**request.params)
    except botocore.exceptions.ClientError as exc:
        if not_implemented(exc, operation):
            world.not_implemented.append(operation)
            pytest.skip(f"{operation} is not implemented in Kiln")
        if request.missing:
            pytest.fail(missing_fillers(operation, request), pytrace=False)
        raise AssertionError(
            f"{operation}({request.params}) failed: {error_code(exc)}: {error_message(exc)}"
        ) from exc
    if request.missing:
        pytest.fail(missing_fillers(operation, request), pytrace=False)
    body = json.loads(bodies.last or b"{}")
    problems: list[str] = []
    check(operation, output_shape(operation), body, "$", problems)
    if problems:
        # The lines say all there is to say; the test's source would only hide them.
        summary = f"{len(problems)} difference(s) from AWS:\n" + "\n".join(problems)
        pytest.fail(summary, pytrace=False)


def missing_fillers(operation: str, request: Request) -> str:
    return (
        f"Kiln implements {operation}, but test_contract.py cannot fill its required member(s) "
        f"{', '.join(request.missing)}: add a value to FILLERS (or OPERATION_FILLERS when the "
        f"value is particular to {operation}), and the members AWS returns to "
        f"contract_members.json"
    )


def test_tables_name_model_members() -> None:
    """Every shape and member contract_members.json names exists in the model, so a renamed
    member cannot silently stop being checked."""
    unknown = []
    for table in ("members", "members_when_available", "values", "values_while_building"):
        for shape_name, members in TABLES[table].items():
            if shape_name.startswith("_"):
                continue
            if shape_name not in SHAPES:
                unknown.append(f"{table}: shape {shape_name}")
                continue
            for member in members:
                if member not in SHAPES[shape_name].get("members", {}):
                    unknown.append(f"{table}: {shape_name}.{member}")
    assert not unknown, unknown


def test_fillers_cover_every_required_member() -> None:
    """Every required input member of every operation has a value, so that an operation Kiln does
    not implement yet gets a clean "not implemented" answer rather than a validation error."""
    missing = []
    for operation, definition in OPERATIONS.items():
        input_name = definition.get("input", {}).get("shape")
        for member in SHAPES[input_name].get("required", []) if input_name else []:
            if (operation, member) not in OPERATION_FILLERS and member not in FILLERS:
                missing.append(f"{operation}.{member}")
    assert not missing, missing
