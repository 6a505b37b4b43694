"""Builds run as workflow executions (issue 16): the default build runs the managed
build-image and test-image workflows (its log shows every workflow and step transition), a
pipeline's own workflows replace them (a RunCommand before the components, test workflows in
parallel groups, onFailure CONTINUE and ABORT), and the build log reads like before.

These tests read the build log (`kiln logs`) and the image's status; test_workflow_gates.py
and crates/kiln/tests/workflow_executions.rs drive the runtime operations.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import time
from typing import Any

import pytest
from kiln_testlib import unique_name
from test_builds import bash_component, infra, kiln, recipe, wait_final  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

ROLE = "kiln-workflow-role"


def workflow(client: Any, kind: str, yaml: str, name: str | None = None) -> str:
    """CreateWorkflow; the build log names a run by its workflow's name."""
    return client.create_workflow(
        name=name or unique_name("wf"), semanticVersion="1.0.0", type=kind, data=yaml
    )["workflowBuildVersionArn"]


def managed(client: Any, kind: str, name: str) -> str:
    """The AWS-managed workflow `name`, with an `x` filter resolved when the build starts."""
    region = client.meta.region_name
    return f"arn:aws:imagebuilder:{region}:aws:workflow/{kind}/{name}/x.x.x"


def run_pipeline(client: Any, recipe_arn: str, infra: str, workflows: list[dict]) -> dict:
    pipe = client.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": True},
        workflows=workflows,
        executionRole=ROLE,
    )["imagePipelineArn"]
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipe)["imageBuildVersionArn"]
    return wait_final(client, arn, timeout=600)


def log_of(endpoint: str, arn: str) -> str:
    out = kiln(endpoint, "logs", arn)
    assert out.returncode == 0, out.stderr
    return out.stdout


def stamp_of(log: str, pattern: str) -> dt.datetime:
    for line in log.splitlines():
        if re.search(pattern, line):
            return dt.datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    raise AssertionError(f"no log line matches {pattern!r}:\n{log}")


BUILD_WITH_RUNCOMMAND = """
name: build-with-runcommand
schemaVersion: 1.0
steps:
  - name: Launch
    action: LaunchInstance
    onFailure: Abort
    inputs:
      waitFor: ssmAgent
  - name: Prepare
    action: RunCommand
    onFailure: Abort
    inputs:
      instanceId.$: "$.stepOutputs.Launch.instanceId"
      documentName: AWS-RunShellScript
      parameters:
        commands:
          - "echo prepared-by-runcommand > /root/prepared"
          - "echo runcommand-said-hello"
  - name: Components
    action: ExecuteComponents
    onFailure: Abort
    inputs:
      instanceId.$: "$.stepOutputs.Launch.instanceId"
  - name: Snapshot
    action: CreateImage
    onFailure: Abort
    inputs:
      instanceId.$: "$.stepOutputs.Launch.instanceId"
  - name: Terminate
    action: TerminateInstance
    onFailure: Continue
    inputs:
      instanceId.$: "$.stepOutputs.Launch.instanceId"
outputs:
  - name: ImageId
    value: "$.stepOutputs.Snapshot.imageId"
"""


def checking_workflow(name: str, command: str) -> str:
    return f"""
name: {name}
schemaVersion: 1.0
steps:
  - name: LaunchTest
    action: LaunchInstance
    onFailure: Abort
    inputs:
      waitFor: ssmAgent
  - name: Check
    action: RunCommand
    onFailure: Abort
    inputs:
      instanceId.$: "$.stepOutputs.LaunchTest.instanceId"
      documentName: AWS-RunShellScript
      parameters:
        commands:
          - "{command}"
  - name: TerminateTest
    action: TerminateInstance
    onFailure: Continue
    inputs:
      instanceId.$: "$.stepOutputs.LaunchTest.instanceId"
"""


def test_the_default_build_runs_the_managed_workflows(client, infra, endpoint):
    r = recipe(
        client, [bash_component(client, {"build": "echo built", "test": "echo tested-ok"})]
    )
    arn = client.create_image(
        imageRecipeArn=r,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": True},
    )["imageBuildVersionArn"]
    image = wait_final(client, arn, timeout=600)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    log = log_of(endpoint, arn)
    # Today's lines are all there...
    for line in ("BUILDING", "stage build started", "stage snapshot started",
                 "stage test started", "stage distribute started", "AVAILABLE"):
        assert line in log, line
    # ... and the workflows' transitions beside them.
    assert re.search(r"workflow build-image \(wf-[0-9a-f-]{36}, BUILD\): RUNNING", log), log
    assert "workflow build-image step LaunchBuildInstance (LaunchInstance): COMPLETED" in log
    # enhancedImageMetadataEnabled is on by default: the inventory is collected.
    assert "workflow build-image step InventoryCollection (CollectImageMetadata): COMPLETED" in log
    assert "workflow build-image step RunSysPrepScript (RunSysPrep): SKIPPED" in log
    assert "workflow build-image step CreateOutputAMI (CreateImage): COMPLETED" in log
    assert re.search(r"workflow build-image \(wf-[^)]*\): COMPLETED", log)
    assert re.search(r"workflow test-image \(wf-[^)]*\): COMPLETED", log)
    assert "tested-ok" in log
    assert stamp_of(log, r"workflow build-image \(wf-[^)]*\): COMPLETED") <= stamp_of(
        log, r"workflow test-image \(wf-[^,]*, TEST\): RUNNING"
    )


def test_a_custom_build_workflow_runs_a_command_before_the_components(client, infra, endpoint):
    build = workflow(client, "BUILD", BUILD_WITH_RUNCOMMAND)
    component = bash_component(
        client,
        {"build": "grep -q prepared-by-runcommand /root/prepared", "test": "exit 1"},
    )
    image = run_pipeline(client, recipe(client, [component]), infra, [{"workflowArn": build}])
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    log = log_of(endpoint, image["arn"])
    assert "RunCommand stdout: runcommand-said-hello" in log
    assert "step Prepare (RunCommand): COMPLETED" in log
    # No TEST workflow listed: the failing test phase never ran.
    assert "stage test started" not in log


def test_test_workflows_run_in_parallel_groups_in_order(client, infra, endpoint):
    names = {n: unique_name(f"t{n}") for n in ("a", "b", "c")}
    tests = {
        n: workflow(client, "TEST", checking_workflow(name, "sleep 2"), name)
        for n, name in names.items()
    }
    r = recipe(client, [bash_component(client, {"build": "echo ok"})])
    image = run_pipeline(
        client,
        r,
        infra,
        [
            {"workflowArn": managed(client, "build", "build-image")},
            {"workflowArn": tests["a"], "parallelGroup": "first"},
            {"workflowArn": tests["b"], "parallelGroup": "first"},
            {"workflowArn": tests["c"], "parallelGroup": "second"},
        ],
    )
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    log = log_of(endpoint, image["arn"])

    def span(n: str) -> tuple[dt.datetime, dt.datetime]:
        return (
            stamp_of(log, rf"workflow {names[n]} step Check \(RunCommand\): RUNNING"),
            stamp_of(log, rf"workflow {names[n]} step Check \(RunCommand\): COMPLETED"),
        )

    (a0, a1), (b0, b1), (c0, c1) = span("a"), span("b"), span("c")
    assert a0 < b1 and b0 < a1, "the two workflows of the first group overlap"
    assert c0 >= max(a1, b1), "the second group starts after the first ended"


@pytest.mark.parametrize("on_failure,status", [("CONTINUE", "AVAILABLE"), ("ABORT", "FAILED")])
def test_a_failing_test_workflow_continues_or_aborts(client, infra, endpoint, on_failure, status):
    failing = workflow(client, "TEST", checking_workflow(unique_name("t-fail"), "exit 7"))
    r = recipe(client, [bash_component(client, {"build": "echo ok"})])
    image = run_pipeline(
        client,
        r,
        infra,
        [
            {"workflowArn": managed(client, "build", "build-image")},
            {"workflowArn": failing, "onFailure": on_failure},
        ],
    )
    assert image["state"]["status"] == status, image["state"]
    if status == "FAILED":
        assert image["state"]["reason"].startswith("test stage failed"), image["state"]
    log = log_of(endpoint, image["arn"])
    assert "step Check (RunCommand): FAILED" in log


GATED_BUILD = """
name: gated-build
schemaVersion: 1.0
steps:
  - name: Gate
    action: WaitForAction
    onFailure: Continue
    timeoutSeconds: {timeout}
  - name: Launch
    action: LaunchInstance
    onFailure: Abort
    inputs:
      waitFor: ssmAgent
  - name: Components
    action: ExecuteComponents
    onFailure: Abort
    inputs:
      instanceId.$: "$.stepOutputs.Launch.instanceId"
  - name: Snapshot
    action: CreateImage
    onFailure: Abort
    inputs:
      instanceId.$: "$.stepOutputs.Launch.instanceId"
  - name: Terminate
    action: TerminateInstance
    onFailure: Continue
    inputs:
      instanceId.$: "$.stepOutputs.Launch.instanceId"
"""


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_waiting_step_keeps_waiting_across_a_restart(tmp_path, how):
    """Kiln stops (or dies) while a WaitForAction step waits: after the restart the build goes
    on from the waiting step (nothing that completed runs again) and the step's deadline still
    counts from when it started; here it times out and its onFailure CONTINUE lets the build
    go on. (SendWorkflowStepAction's part is in test_workflow_gates.py.)"""
    from kiln_testlib import KilnServer, create_infra, make_client
    from test_builds import wait_status

    data = tmp_path / "data"
    srv = KilnServer(data).start()
    try:
        client = make_client(srv.endpoint)
        infra = create_infra(client, instanceTypes=["t3.micro"])
        name = unique_name("gated")
        gated = workflow(client, "BUILD", GATED_BUILD.format(timeout=12), name)
        r = recipe(client, [bash_component(client, {"build": "echo after-the-gate"})])
        pipe = client.create_image_pipeline(
            name=unique_name("pipe"),
            imageRecipeArn=r,
            infrastructureConfigurationArn=infra,
            workflows=[{"workflowArn": gated}],
            executionRole=ROLE,
        )["imagePipelineArn"]
        arn = client.start_image_pipeline_execution(imagePipelineArn=pipe)[
            "imageBuildVersionArn"
        ]
        wait_status(client, arn, "BUILDING")
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        while "waiting for SendWorkflowStepAction" not in log_of(srv.endpoint, arn):
            assert dt.datetime.now() < deadline, log_of(srv.endpoint, arn)
            time.sleep(0.1)
        if how == "kill":
            assert srv.process is not None
            srv.process.kill()
            srv.process.wait()
        else:
            srv.stop()
    finally:
        if how == "kill" and srv.log_file is not None:
            srv.log_file.close()
    again = KilnServer(data).start()
    try:
        client = make_client(again.endpoint)
        assert client.get_image(imageBuildVersionArn=arn)["image"]["state"]["status"] in (
            "BUILDING",
            "AVAILABLE",
        )
        image = wait_final(client, arn, timeout=120)
        log = log_of(again.endpoint, arn)
        assert image["state"]["status"] == "AVAILABLE", (image["state"], log)
        assert "going on with its workflows after a restart of Kiln" in log
        assert "step Gate (WaitForAction): FAILED: Step timed out" in log
        assert log.count(f"workflow {name} step Gate (WaitForAction): RUNNING") == 1
        assert log.count("step Launch (LaunchInstance): COMPLETED") == 1
        assert "after-the-gate" in log
    finally:
        again.stop()


def test_cancel_image_creation_cancels_the_running_execution(client, infra, endpoint):
    from test_builds import wait_status

    gated = workflow(client, "BUILD", GATED_BUILD.format(timeout=600))
    r = recipe(client, [bash_component(client, {"build": "echo never"})])
    pipe = client.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=r,
        infrastructureConfigurationArn=infra,
        workflows=[{"workflowArn": gated}],
        executionRole=ROLE,
    )["imagePipelineArn"]
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipe)["imageBuildVersionArn"]
    wait_status(client, arn, "BUILDING")
    deadline = time.monotonic() + 30
    while "waiting for SendWorkflowStepAction" not in log_of(endpoint, arn):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    client.cancel_image_creation(imageBuildVersionArn=arn, clientToken=unique_name("c"))
    image = wait_final(client, arn)
    assert image["state"]["status"] == "CANCELLED"
    deadline = time.monotonic() + 10
    while "): CANCELLED" not in log_of(endpoint, arn):
        assert time.monotonic() < deadline, log_of(endpoint, arn)
        time.sleep(0.1)
    log = log_of(endpoint, arn)
    assert "step Gate (WaitForAction): CANCELLED" in log
    assert "never" not in log.replace("echo never", "")


def test_a_failed_component_step_is_named_in_the_failure_context(client, infra):
    fine = bash_component(client, {"test": "echo only a test phase"})
    bad = bash_component(client, {"build": "echo about to fail\nexit 3"})
    r = recipe(client, [fine, bad])
    arn = client.create_image(
        imageRecipeArn=r,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": True},
    )["imageBuildVersionArn"]
    state = wait_final(client, arn, timeout=600)["state"]
    assert state["status"] == "FAILED"
    context = state["failureContext"]
    assert context["imageStatus"] == "BUILDING"
    assert context["failedStep"] == "ApplyBuildComponents"
    assert re.fullmatch(r"wf-[0-9a-f-]{32}0000", context["workflowExecutionId"]), context
    assert context["workflowArn"].endswith(":aws:workflow/build/build-image/1.0.0/1")
    assert context["stepExecutionId"].startswith("step-")
    component = context["componentFailure"]
    assert component["componentArn"] == bad
    assert component["phaseName"] == "build"
    assert component["stepName"] == "BuildStep"
    assert component["action"] == "ExecuteBash"
    assert "3" in component["errorMessage"]


def test_a_distribution_workflow_distributes_and_reads_the_build_s_outputs(client, infra, endpoint):
    gated_distribution = """
name: dist
schemaVersion: 1.0
steps:
  - name: Say
    action: WaitForAction
    onFailure: Continue
    timeoutSeconds: 1
  - name: Distribute
    action: DistributeImage
    onFailure: Abort
  - name: Modify
    action: ModifyImageAttributes
    onFailure: Abort
    inputs:
      distributedImages.$: "$.stepOutputs.Distribute.distributedImages"
outputs:
  - name: Built
    value: "$.workflowOutputs.ImageId"
"""
    build = managed(client, "build", "build-image")
    dist = workflow(client, "DISTRIBUTION", gated_distribution)
    r = recipe(client, [bash_component(client, {"build": "echo ok"})])
    image = run_pipeline(client, r, infra, [{"workflowArn": build}, {"workflowArn": dist}])
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["outputResources"]["amis"][0]["image"].startswith("ami-")
    log = log_of(endpoint, image["arn"])
    assert "step Distribute (DistributeImage): COMPLETED" in log
    assert "step Modify (ModifyImageAttributes): COMPLETED" in log
    assert "stage distribute started" in log
    assert stamp_of(log, r"step Say \(WaitForAction\): FAILED") <= stamp_of(
        log, "stage distribute started"
    )


def test_a_step_past_its_timeout_is_stopped_and_fails(client, infra, endpoint):
    slow = BUILD_WITH_RUNCOMMAND.replace(
        '          - "echo runcommand-said-hello"',
        '          - "sleep 120"',
    ).replace(
        "    action: RunCommand\n    onFailure: Abort\n",
        "    action: RunCommand\n    onFailure: Abort\n    timeoutSeconds: 2\n",
    )
    build = workflow(client, "BUILD", slow)
    r = recipe(client, [bash_component(client, {"build": "echo never"})])
    started = time.monotonic()
    image = run_pipeline(client, r, infra, [{"workflowArn": build}])
    assert time.monotonic() - started < 60
    assert image["state"]["status"] == "FAILED", image["state"]
    assert "Step timed out" in image["state"]["reason"], image["state"]
    log = log_of(endpoint, image["arn"])
    assert "ran past its timeoutSeconds" in log
    assert "step Launch (LaunchInstance): rollback COMPLETED" in log
