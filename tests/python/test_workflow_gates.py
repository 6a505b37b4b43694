"""Approval gates (issue 16): a WaitForAction step waits for SendWorkflowStepAction, also
across a restart of Kiln; RESUME goes on, STOP fails the step and its onFailure decides.

The worker stores the waiting step; the runtime operations (ListWaitingWorkflowSteps,
SendWorkflowStepAction, ListWorkflowExecutions) act on and read the same records.
"""
from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest
from kiln_testlib import KilnServer, create_infra, make_client, unique_name
from test_builds import bash_component, infra, recipe, wait_final, wait_status  # noqa: F401
from test_workflow_runs import GATED_BUILD, ROLE, log_of, workflow

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")


def gated_pipeline(client: Any, infra: str, on_failure: str = "Continue") -> tuple[str, str]:
    document = GATED_BUILD.format(timeout=600).replace(
        "onFailure: Continue\n    timeoutSeconds", f"onFailure: {on_failure}\n    timeoutSeconds"
    )
    gated = workflow(client, "BUILD", document)
    r = recipe(client, [bash_component(client, {"build": "echo after-the-gate"})])
    pipe = client.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=r,
        infrastructureConfigurationArn=infra,
        workflows=[{"workflowArn": gated}],
        executionRole=ROLE,
    )["imagePipelineArn"]
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipe)["imageBuildVersionArn"]
    return arn, gated


def waiting_step(client: Any, arn: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = client.list_waiting_workflow_steps()["steps"]
        mine = [s for s in steps if s["imageBuildVersionArn"] == arn]
        if mine:
            return mine[0]
        time.sleep(0.2)
    raise AssertionError(f"{arn} has no waiting step")


def test_an_approval_gate_is_resumed_after_a_restart(tmp_path):
    data = tmp_path / "data"
    srv = KilnServer(data).start()
    try:
        client = make_client(srv.endpoint)
        infra_arn = create_infra(client, instanceTypes=["t3.micro"])
        arn, _ = gated_pipeline(client, infra_arn)
        step = waiting_step(client, arn)
        assert step["name"] == "Gate" and step["action"] == "WaitForAction"
    finally:
        srv.stop()
    again = KilnServer(data).start()
    try:
        client = make_client(again.endpoint)
        step = waiting_step(client, arn)
        client.send_workflow_step_action(
            stepExecutionId=step["stepExecutionId"],
            imageBuildVersionArn=arn,
            action="RESUME",
            reason="looks good",
            clientToken=str(uuid.uuid4()),
        )
        image = wait_final(client, arn, timeout=120)
        assert image["state"]["status"] == "AVAILABLE", image["state"]
        log = log_of(again.endpoint, arn)
        assert "step Gate (WaitForAction): COMPLETED" in log
        assert "after-the-gate" in log
    finally:
        again.stop()


@pytest.mark.parametrize("on_failure,status", [("Continue", "AVAILABLE"), ("Abort", "FAILED")])
def test_stop_fails_the_step_and_its_on_failure_decides(client, infra, endpoint, on_failure, status):
    arn, _ = gated_pipeline(client, infra, on_failure)
    step = waiting_step(client, arn)
    client.send_workflow_step_action(
        stepExecutionId=step["stepExecutionId"],
        imageBuildVersionArn=arn,
        action="STOP",
        reason="not today",
        clientToken=str(uuid.uuid4()),
    )
    image = wait_final(client, arn, timeout=120)
    assert image["state"]["status"] == status, image["state"]
    log = log_of(endpoint, arn)
    assert "step Gate (WaitForAction): FAILED: Stopped by SendWorkflowStepAction: not today" in log
    if status == "FAILED":
        assert image["state"]["reason"].startswith("build stage failed"), image["state"]
        assert "after-the-gate" not in log
    else:
        assert "after-the-gate" in log


def test_retry_image_runs_the_workflows_again_as_a_retried_attempt(client, infra):
    """A cancelled build retried with RetryImage runs new executions (`retried`), listed after
    the first attempt's, which stay as they ended."""
    arn, gated = gated_pipeline(client, infra)
    waiting_step(client, arn)
    client.cancel_image_creation(imageBuildVersionArn=arn, clientToken=unique_name("c"))
    assert wait_final(client, arn)["state"]["status"] == "CANCELLED"
    deadline = time.monotonic() + 60
    while True:
        try:
            client.retry_image(imageBuildVersionArn=arn)
            break
        except client.exceptions.ResourceInUseException:
            assert time.monotonic() < deadline, "the cancelled build never stopped"
            time.sleep(0.2)
    step = waiting_step(client, arn)
    client.send_workflow_step_action(
        stepExecutionId=step["stepExecutionId"],
        imageBuildVersionArn=arn,
        action="RESUME",
        clientToken=str(uuid.uuid4()),
    )
    assert wait_final(client, arn, timeout=120)["state"]["status"] == "AVAILABLE"
    runs = client.list_workflow_executions(imageBuildVersionArn=arn)["workflowExecutions"]
    assert [(r["workflowBuildVersionArn"], r["status"], r["retried"]) for r in runs] == [
        (gated, "CANCELLED", False),
        (gated, "COMPLETED", True),
    ], runs
    assert step["workflowExecutionId"] == runs[1]["workflowExecutionId"]
