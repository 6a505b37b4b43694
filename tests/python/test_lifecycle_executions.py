"""Lifecycle policies that run: the worker's lifecycle thread runs each ENABLED policy once a
day on the service clock, and StartResourceStateUpdate changes an image's state by hand.

One server for the module on a test clock (`--clock-file`): images are built at one time and
the clock is moved months ahead, so ages pass in milliseconds. Each test uses its own recipes,
so the policies of one test never select another's images; the clock only moves forward.
Builds are real (busybox parent, a no-op component) and take seconds: each test builds few.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from kiln_testlib import (
    DockerRegistry,
    KilnServer,
    assert_client_error,
    create_infra,
    kiln_bin,
    make_client,
    make_ec2_client,
    unique_name,
)
from test_builds import bash_component, wait_final

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

BUSYBOX = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x"
WEST = "us-west-2"
COMBINATION = "InvalidParameterCombinationException"
VALUE = "InvalidParameterValueException"
IN_USE = "ResourceInUseException"


class Clocked:
    def __init__(self, tmp: Path, extra: list[str] | None = None) -> None:
        self.clock_path = tmp / "clock"
        self.now = datetime(2030, 1, 1, tzinfo=timezone.utc)
        self.write()
        self.server = KilnServer(
            tmp / "data", extra_args=["--clock-file", str(self.clock_path), *(extra or [])]
        ).start()
        self.endpoint = self.server.endpoint
        self.client = make_client(self.endpoint)

    def write(self) -> None:
        temp = self.clock_path.with_suffix(".tmp")
        temp.write_text(self.now.strftime("%Y-%m-%dT%H:%M:%SZ") + "\n")
        os.replace(temp, self.clock_path)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
        self.write()


@pytest.fixture(scope="module")
def kiln(tmp_path_factory) -> Iterator[Clocked]:
    k = Clocked(tmp_path_factory.mktemp("lifecycle"))
    yield k
    k.server.stop_gracefully()


@pytest.fixture(scope="module")
def infra(kiln) -> str:
    return create_infra(kiln.client, instanceTypes=["t3.micro"])


@pytest.fixture(scope="module")
def noop(kiln) -> str:
    return bash_component(kiln.client, {"build": "true"})


def make_recipe(client: Any, name: str, version: str, noop: str) -> str:
    return client.create_image_recipe(
        name=name,
        semanticVersion=version,
        parentImage=BUSYBOX,
        components=[{"componentArn": noop}],
    )["imageRecipeArn"]


def build(client: Any, recipe_arn: str, infra: str, dist: str | None = None) -> str:
    extra = {"distributionConfigurationArn": dist} if dist else {}
    arn = client.create_image(
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": False},
        **extra,
    )["imageBuildVersionArn"]
    image = wait_final(client, arn, timeout=600)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    return arn


def status(client: Any, arn: str) -> str:
    return client.get_image(imageBuildVersionArn=arn)["image"]["state"]["status"]


def wait_execution(client: Any, resource_arn: str, count: int, timeout: float = 30) -> dict:
    """Waits for the `count`-th execution of `resource_arn` to end; answers it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executions = client.list_lifecycle_executions(resourceArn=resource_arn)["lifecycleExecutions"]
        if len(executions) >= count and executions[0]["state"]["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
            return executions[0]
        time.sleep(0.1)
    raise AssertionError(f"no {count}th finished execution of {resource_arn}: {executions}")


def wait_id(client: Any, execution_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = client.get_lifecycle_execution(lifecycleExecutionId=execution_id)["lifecycleExecution"]
        if e["state"]["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
            return e
        time.sleep(0.1)
    raise AssertionError(f"{execution_id} did not end: {e}")


def resources(client: Any, execution_id: str, parent: str | None = None) -> list[dict]:
    extra = {"parentResourceId": parent} if parent else {}
    return client.list_lifecycle_execution_resources(lifecycleExecutionId=execution_id, **extra)["resources"]


def policy(client: Any, recipes: list[dict], details: list[dict], resource_type: str = "AMI_IMAGE") -> str:
    return client.create_lifecycle_policy(
        name=unique_name("lcp"),
        executionRole="ib-lifecycle",
        resourceType=resource_type,
        policyDetails=details,
        resourceSelection={"recipes": recipes},
    )["lifecyclePolicyArn"]


def amis_of(client: Any, arn: str) -> dict[str, dict]:
    image = client.get_image(imageBuildVersionArn=arn)["image"]
    return {a["region"]: a for a in image["outputResources"]["amis"]}


def ec2_image(kiln: Clocked, region: str, ami_id: str) -> dict | None:
    found = make_ec2_client(kiln.endpoint, region=region).describe_images(
        Owners=["self"], Filters=[{"Name": "image-id", "Values": [ami_id]}]
    )["Images"]
    return found[0] if found else None


# --- Policy runs ---------------------------------------------------------------------------------


def test_escalation_over_days_one_action_per_run_and_an_excluded_region(kiln, infra, noop):
    """90/120/180 days: deprecate, then disable, then delete, one action per run; the AMI in an
    excluded Region is reported SKIPPED and the image record is kept."""
    client = kiln.client
    name = unique_name("esc")
    dist = client.create_distribution_configuration(
        name=unique_name("dist"),
        distributions=[
            {"region": "us-east-1", "amiDistributionConfiguration": {"name": "esc-{{ imagebuilder:buildDate }}"}},
            {"region": WEST, "amiDistributionConfiguration": {"name": "esc-{{ imagebuilder:buildDate }}"}},
        ],
    )["distributionConfigurationArn"]
    arn = build(client, make_recipe(client, name, "1.0.0", noop), infra, dist)
    amis = amis_of(client, arn)
    assert set(amis) == {"us-east-1", WEST}
    east, west = amis["us-east-1"]["image"], amis[WEST]["image"]

    kiln.advance(days=200)
    lcp = policy(
        client,
        [{"name": name, "semanticVersion": "1.x.x"}],
        [
            {"action": {"type": "DEPRECATE", "includeResources": {"amis": True}},
             "filter": {"type": "AGE", "value": 90, "unit": "DAYS"}},
            {"action": {"type": "DISABLE", "includeResources": {"amis": True}},
             "filter": {"type": "AGE", "value": 120, "unit": "DAYS"}},
            {"action": {"type": "DELETE", "includeResources": {"amis": True, "snapshots": True}},
             "filter": {"type": "AGE", "value": 180, "unit": "DAYS"},
             "exclusionRules": {"amis": {"regions": [WEST]}}},
        ],
    )
    # The first run is a day after the policy was created; nothing runs before.
    time.sleep(0.5)
    assert client.list_lifecycle_executions(resourceArn=lcp)["lifecycleExecutions"] == []
    assert status(client, arn) == "AVAILABLE"

    # Day 1: 201 days old, but only DEPRECATE applies in this run.
    kiln.advance(days=1, seconds=1)
    first = wait_execution(client, lcp, 1)
    assert first["state"]["status"] == "SUCCESS", first
    assert first["resourcesImpactedSummary"]["hasImpactedResources"] is True
    image = client.get_image(imageBuildVersionArn=arn)["image"]
    assert image["state"]["status"] == "DEPRECATED"
    assert image["lifecycleExecutionId"] == first["lifecycleExecutionId"]
    assert "deprecationTime" in image
    rows = resources(client, first["lifecycleExecutionId"])
    assert [(r["resourceId"], r["action"]["name"], r["state"]["status"]) for r in rows] == [
        (arn, "DEPRECATE", "SUCCESS")
    ]
    children = resources(client, first["lifecycleExecutionId"], arn)
    assert sorted((r["resourceId"], r["region"], r["state"]["status"]) for r in children) == sorted(
        [(east, "us-east-1", "SUCCESS"), (west, WEST, "SUCCESS")]
    )
    described = ec2_image(kiln, "us-east-1", east)
    assert described is not None and "DeprecationTime" in described
    assert {"Key": "DeprecatedBy", "Value": "EC2 Image Builder"} in described.get("Tags", [])

    # Day 2: DISABLE (deprecated images are not deprecated again).
    kiln.advance(days=1)
    second = wait_execution(client, lcp, 2)
    assert second["state"]["status"] == "SUCCESS", second
    assert status(client, arn) == "DISABLED"
    described = ec2_image(kiln, "us-east-1", east)
    assert described is not None and described["State"] == "disabled"
    assert described.get("Public") is False
    assert {"Key": "DeprecatedBy", "Value": "EC2 Image Builder"} not in described.get("Tags", [])

    # Day 3: DELETE. The west AMI is excluded by Region: SKIPPED, and the record stays.
    kiln.advance(days=1)
    third = wait_execution(client, lcp, 3)
    assert third["state"]["status"] == "SUCCESS", third
    children = {r["resourceId"]: r for r in resources(client, third["lifecycleExecutionId"], arn)}
    assert children[east]["state"]["status"] == "SUCCESS"
    assert children[east]["snapshots"][0]["snapshotId"].startswith("snap-")
    assert children[west]["state"]["status"] == "SKIPPED"
    assert "Region excluded" in children[west]["state"]["reason"]
    assert ec2_image(kiln, "us-east-1", east) is None
    assert ec2_image(kiln, WEST, west) is not None
    (row,) = resources(client, third["lifecycleExecutionId"])
    assert row["state"]["status"] == "SKIPPED" and "kept" in row["state"]["reason"]
    assert status(client, arn) == "DISABLED"

    # The schedule: the next run is a day after the last.
    out = subprocess.run(
        [kiln_bin(), "lifecycle", "schedule", lcp, "--json", "--endpoint", kiln.endpoint],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    schedule = json.loads(out.stdout)
    assert schedule["lifecyclePolicyArn"] == lcp
    assert schedule["nextRun"] > kiln.now.timestamp() * 1000
    shown = subprocess.run(
        [kiln_bin(), "lifecycle", "show", third["lifecycleExecutionId"], "--endpoint", kiln.endpoint],
        capture_output=True, text=True, timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"DELETE {west} SKIPPED Region excluded: {WEST}" in shown.stdout, shown.stdout


def test_count_per_recipe_version_failed_images_and_tag_exclusion(kiln, infra, noop):
    """COUNT 1 over three images of 1.0.0 and two of 1.1.0: the newest of each stays, a
    tag-excluded image beyond retention is kept (SKIPPED) and takes no slot."""
    client = kiln.client
    name = unique_name("cnt")
    r100 = make_recipe(client, name, "1.0.0", noop)
    r110 = make_recipe(client, name, "1.1.0", noop)
    old100 = build(client, r100, infra)
    kiln.advance(minutes=1)
    mid100 = build(client, r100, infra)
    kiln.advance(minutes=1)
    new100 = build(client, r100, infra)
    kiln.advance(minutes=1)
    old110 = build(client, r110, infra)
    kiln.advance(minutes=1)
    new110 = build(client, r110, infra)
    client.tag_resource(resourceArn=old100, tags={"Retain": "True"})

    lcp = policy(
        client,
        [{"name": name, "semanticVersion": "1.x.x"}],
        [{"action": {"type": "DELETE"}, "filter": {"type": "COUNT", "value": 1},
          "exclusionRules": {"tagMap": {"Retain": "True"}}}],
    )
    kiln.advance(days=1, seconds=1)
    run = wait_execution(client, lcp, 1)
    assert run["state"]["status"] == "SUCCESS", run
    rows = {r["resourceId"]: r for r in resources(client, run["lifecycleExecutionId"])}
    assert rows[mid100]["action"]["name"] == "DELETE" and rows[mid100]["state"]["status"] == "SUCCESS"
    assert rows[old110]["state"]["status"] == "SUCCESS"
    assert rows[old100]["state"]["status"] == "SKIPPED"
    assert "Retain=True" in rows[old100]["state"]["reason"]
    assert new100 not in rows and new110 not in rows
    for arn in (new100, new110, old100):
        assert status(client, arn) == "AVAILABLE"
    for arn in (mid100, old110):
        assert_client_error(lambda: client.get_image(imageBuildVersionArn=arn), "ResourceNotFoundException")


def test_age_with_retain_at_least_and_failed_images(kiln, infra, noop):
    """AGE 30 days with retainAtLeast 1: the newest image stays whatever its age, older ones go;
    a FAILED image goes without taking the slot."""
    client = kiln.client
    name = unique_name("age")
    r = make_recipe(client, name, "1.0.0", noop)
    oldest = build(client, r, infra)
    kiln.advance(minutes=1)
    older = build(client, r, infra)
    kiln.advance(minutes=1)
    failing = client.create_image_recipe(
        name=name, semanticVersion="1.0.1", parentImage=BUSYBOX,
        components=[{"componentArn": bash_component(client, {"build": "exit 1"})}],
    )["imageRecipeArn"]
    failed = client.create_image(
        imageRecipeArn=failing, infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": False},
    )["imageBuildVersionArn"]
    assert wait_final(client, failed, timeout=600)["state"]["status"] == "FAILED"
    kiln.advance(minutes=1)
    newest = build(client, r, infra)

    kiln.advance(days=40)
    lcp = policy(
        client,
        [{"name": name, "semanticVersion": "1.0.x"}],
        [{"action": {"type": "DELETE"},
          "filter": {"type": "AGE", "value": 30, "unit": "DAYS", "retainAtLeast": 1}}],
    )
    kiln.advance(days=1, seconds=1)
    run = wait_execution(client, lcp, 1)
    assert run["state"]["status"] == "SUCCESS", run
    rows = {r["resourceId"]: r["state"]["status"] for r in resources(client, run["lifecycleExecutionId"])}
    assert rows == {failed: "SUCCESS", older: "SUCCESS", oldest: "SUCCESS"}
    assert status(client, newest) == "AVAILABLE"
    for arn in (failed, older, oldest):
        assert_client_error(lambda: client.get_image(imageBuildVersionArn=arn), "ResourceNotFoundException")
    # The next day, nothing is left to do: the run is empty.
    kiln.advance(days=1)
    second = wait_execution(client, lcp, 2)
    assert second["state"]["status"] == "SUCCESS"
    assert second["resourcesImpactedSummary"]["hasImpactedResources"] is False
    assert resources(client, second["lifecycleExecutionId"]) == []


def test_tag_selection_is_on_the_image_builder_image_with_or_logic(kiln, infra, noop):
    """resourceSelection.tagMap: any pair on the Image Builder image selects it; images of the
    same recipe without the tags are left alone."""
    client = kiln.client
    name = unique_name("tag")
    r = make_recipe(client, name, "1.0.0", noop)
    a = build(client, r, infra)
    kiln.advance(minutes=1)
    b = build(client, r, infra)
    kiln.advance(minutes=1)
    c = build(client, r, infra)
    client.tag_resource(resourceArn=a, tags={"Lifecycle": "short"})
    client.tag_resource(resourceArn=b, tags={"Team": name})
    client.tag_resource(resourceArn=c, tags={"Lifecycle": "long"})
    lcp = client.create_lifecycle_policy(
        name=unique_name("lcp"),
        executionRole="ib-lifecycle",
        resourceType="AMI_IMAGE",
        policyDetails=[{"action": {"type": "DEPRECATE"}, "filter": {"type": "AGE", "value": 1, "unit": "DAYS"}}],
        resourceSelection={"tagMap": {"Lifecycle": "short", "Team": name}},
    )["lifecyclePolicyArn"]
    kiln.advance(days=1, seconds=1)
    run = wait_execution(client, lcp, 1)
    assert run["state"]["status"] == "SUCCESS", run
    assert sorted(r["resourceId"] for r in resources(client, run["lifecycleExecutionId"])) == sorted([a, b])
    assert (status(client, a), status(client, b), status(client, c)) == ("DEPRECATED", "DEPRECATED", "AVAILABLE")


# --- StartResourceStateUpdate --------------------------------------------------------------------


def test_last_launched_excludes_amis_a_build_launched_lately(kiln, infra, noop):
    """A build on an image launches its AMI: EC2's lastLaunchedTime is recorded, and a DELETE
    rule's `lastLaunched` exclusion keeps that AMI (SKIPPED, the record kept) once EC2 shows
    the launch (a day later); an image whose AMI was never launched is deleted."""
    client = kiln.client
    ec2 = make_ec2_client(kiln.endpoint)
    name = unique_name("launched")
    r = make_recipe(client, name, "1.0.0", noop)
    launched = build(client, r, infra)
    kiln.advance(minutes=1)  # AMI names carry the build time
    never = build(client, r, infra)
    (launched_ami,) = [a["image"] for a in amis_of(client, launched).values()]
    attribute = ec2.describe_image_attribute(ImageId=launched_ami, Attribute="lastLaunchedTime")
    assert "Value" not in attribute.get("LastLaunchedTime", {})
    child = client.create_image_recipe(
        name=unique_name("child"), semanticVersion="1.0.0", parentImage=launched,
        components=[{"componentArn": noop}],
    )["imageRecipeArn"]
    kiln.advance(minutes=1)
    build(client, child, infra)
    attribute = ec2.describe_image_attribute(ImageId=launched_ami, Attribute="lastLaunchedTime")
    assert attribute["LastLaunchedTime"]["Value"].startswith(kiln.now.strftime("%Y-%m-%dT%H:%M"))

    kiln.advance(days=2)
    lcp = policy(
        client,
        [{"name": name, "semanticVersion": "1.0.0"}],
        [{"action": {"type": "DELETE", "includeResources": {"amis": True}},
          "filter": {"type": "AGE", "value": 1, "unit": "DAYS"},
          "exclusionRules": {"amis": {"lastLaunched": {"value": 30, "unit": "DAYS"}}}}],
    )
    kiln.advance(days=1, seconds=1)
    run = wait_execution(client, lcp, 1)
    assert run["state"]["status"] == "SUCCESS", run
    rows = {r["resourceId"]: r for r in resources(client, run["lifecycleExecutionId"])}
    assert rows[never]["state"]["status"] == "SUCCESS"
    assert rows[launched]["state"]["status"] == "SKIPPED"
    (ami_row,) = resources(client, run["lifecycleExecutionId"], launched)
    assert ami_row["resourceId"] == launched_ami
    assert ami_row["state"]["status"] == "SKIPPED"
    assert "lastLaunched" in ami_row["state"]["reason"]
    assert status(client, launched) == "AVAILABLE"
    assert ec2_image(kiln, "us-east-1", launched_ami) is not None
    assert_client_error(lambda: client.get_image(imageBuildVersionArn=never), "ResourceNotFoundException")


@pytest.fixture(scope="module")
def srsu_images(kiln, infra, noop) -> list[str]:
    client = kiln.client
    name = unique_name("srsu")
    r = make_recipe(client, name, "1.0.0", noop)
    first = build(client, r, infra)
    # AMI names carry the build date: a second build at the same instant would take the name.
    kiln.advance(minutes=1)
    return [first, build(client, r, infra)]


def test_state_update_refusals(kiln, srsu_images):
    client = kiln.client
    arn = srsu_images[0]
    update = client.start_resource_state_update
    assert_client_error(
        lambda: update(resourceArn=arn, state={"status": "DEPRECATED"}, executionRole="r"),
        COMBINATION, "executionRole and includeResources",
    )
    assert_client_error(
        lambda: update(resourceArn=arn, state={"status": "DEPRECATED"}, includeResources={"amis": True}),
        COMBINATION, "executionRole and includeResources",
    )
    assert_client_error(
        lambda: update(resourceArn=arn, state={"status": "DISABLED"}, executionRole="r",
                       includeResources={"amis": True, "snapshots": True}),
        COMBINATION, "snapshots",
    )
    assert_client_error(lambda: update(resourceArn=arn, state={"status": "DELETED"}), COMBINATION, "DeleteImage")
    assert_client_error(
        lambda: update(resourceArn=arn, state={"status": "DEPRECATED"},
                       exclusionRules={"amis": {"regions": [WEST]}}),
        COMBINATION, "exclusionRules.amis",
    )
    assert_client_error(
        lambda: update(resourceArn=arn, state={"status": "DISABLED"},
                       updateAt=kiln.now + timedelta(days=1)),
        COMBINATION, "updateAt",
    )
    assert_client_error(
        lambda: update(resourceArn=arn, state={"status": "DEPRECATED"}, updateAt=kiln.now - timedelta(days=1)),
        VALUE, "updateAt",
    )
    # Already in the target state: nothing to do, and no execution.
    same = update(resourceArn=arn, state={"status": "AVAILABLE"})
    assert "lifecycleExecutionId" not in same and status(client, arn) == "AVAILABLE"
    assert_client_error(
        lambda: update(resourceArn=arn.rsplit("/", 1)[0] + "/99", state={"status": "DEPRECATED"}),
        "ResourceNotFoundException",
    )


def test_state_update_sync_then_available_again(kiln, srsu_images):
    client = kiln.client
    arn = srsu_images[0]
    answer = client.start_resource_state_update(resourceArn=arn, state={"status": "DEPRECATED"}, clientToken="t-dep")
    assert "lifecycleExecutionId" not in answer and answer["resourceArn"] == arn
    assert status(client, arn) == "DEPRECATED"
    # The same token answers the same thing again.
    again = client.start_resource_state_update(resourceArn=arn, state={"status": "DEPRECATED"}, clientToken="t-dep")
    assert again["resourceArn"] == arn
    client.start_resource_state_update(resourceArn=arn, state={"status": "DISABLED"})
    assert status(client, arn) == "DISABLED"
    # A disabled image is not distributed.
    dist = client.create_distribution_configuration(
        name=unique_name("dist"),
        distributions=[{"region": WEST, "amiDistributionConfiguration": {"name": "d-{{ imagebuilder:buildDate }}"}}],
    )["distributionConfigurationArn"]
    assert_client_error(
        lambda: client.distribute_image(sourceImage=arn, distributionConfigurationArn=dist,
                                        executionRole="ib-distribute"),
        "InvalidRequestException", "DISABLED",
    )
    # Disabled -> Deprecated is not a transition.
    assert_client_error(
        lambda: client.start_resource_state_update(resourceArn=arn, state={"status": "DEPRECATED"}),
        "InvalidRequestException", "DISABLED",
    )
    client.start_resource_state_update(resourceArn=arn, state={"status": "AVAILABLE"})
    image = client.get_image(imageBuildVersionArn=arn)["image"]
    assert image["state"]["status"] == "AVAILABLE" and "deprecationTime" not in image


def test_state_update_async_with_amis_and_update_at(kiln, srsu_images):
    client = kiln.client
    arn = srsu_images[1]
    (ami,) = client.get_image(imageBuildVersionArn=arn)["image"]["outputResources"]["amis"]
    at = kiln.now + timedelta(days=2)
    answer = client.start_resource_state_update(
        resourceArn=arn, state={"status": "DEPRECATED"}, executionRole="ib-lifecycle",
        includeResources={"amis": True}, updateAt=at,
    )
    lce = answer["lifecycleExecutionId"]
    assert lce.startswith("lce-")
    # The AMI is deprecated at that time at once; the image flips when the time comes.
    described = ec2_image(kiln, "us-east-1", ami["image"])
    assert described is not None and described["DeprecationTime"].startswith(at.strftime("%Y-%m-%dT%H:%M"))
    time.sleep(0.5)
    assert status(client, arn) == "AVAILABLE"
    e = client.get_lifecycle_execution(lifecycleExecutionId=lce)["lifecycleExecution"]
    # As AWS shows a scheduled update: IN_PROGRESS, with no resources until it applies.
    assert e["state"]["status"] == "IN_PROGRESS"
    assert resources(client, lce) == []
    listed = client.list_lifecycle_executions(resourceArn=arn)["lifecycleExecutions"]
    assert [x["lifecycleExecutionId"] for x in listed] == [lce]
    # While it waits, the image is in use.
    assert_client_error(
        lambda: client.start_resource_state_update(resourceArn=arn, state={"status": "DISABLED"}),
        IN_USE, lce,
    )
    kiln.advance(days=2, seconds=1)
    done = wait_id(client, lce)
    assert done["state"]["status"] == "SUCCESS", done
    assert status(client, arn) == "DEPRECATED"
    (row,) = resources(client, lce)
    assert row["action"]["name"] == "DEPRECATE" and row["state"]["status"] == "SUCCESS"
    (child,) = resources(client, lce, arn)
    assert child["resourceId"] == ami["image"] and child["state"]["status"] == "SUCCESS"

    # Async DISABLE with the AMI: EC2 shows it disabled.
    lce2 = client.start_resource_state_update(
        resourceArn=arn, state={"status": "DISABLED"}, executionRole="ib-lifecycle",
        includeResources={"amis": True},
    )["lifecycleExecutionId"]
    assert wait_id(client, lce2)["state"]["status"] == "SUCCESS"
    assert status(client, arn) == "DISABLED"
    assert ec2_image(kiln, "us-east-1", ami["image"])["State"] == "disabled"

    # AVAILABLE again, with the AMI: enabled, no deprecation time, no DeprecatedBy tag.
    lce_back = client.start_resource_state_update(
        resourceArn=arn, state={"status": "AVAILABLE"}, executionRole="ib-lifecycle",
        includeResources={"amis": True},
    )["lifecycleExecutionId"]
    assert wait_id(client, lce_back)["state"]["status"] == "SUCCESS"
    assert status(client, arn) == "AVAILABLE"
    described = ec2_image(kiln, "us-east-1", ami["image"])
    assert described["State"] == "available" and "DeprecationTime" not in described
    assert all(t["Key"] != "DeprecatedBy" for t in described.get("Tags", []))

    # DELETED with the AMI and its snapshot: everything goes.
    lce3 = client.start_resource_state_update(
        resourceArn=arn, state={"status": "DELETED"}, executionRole="ib-lifecycle",
        includeResources={"amis": True, "snapshots": True},
    )["lifecycleExecutionId"]
    assert wait_id(client, lce3)["state"]["status"] == "SUCCESS"
    assert ec2_image(kiln, "us-east-1", ami["image"]) is None
    assert_client_error(lambda: client.get_image(imageBuildVersionArn=arn), "ResourceNotFoundException")


def test_cancel_a_scheduled_update(kiln, infra, noop):
    client = kiln.client
    arn = build(client, make_recipe(client, unique_name("cxl"), "1.0.0", noop), infra)
    lce = client.start_resource_state_update(
        resourceArn=arn, state={"status": "DEPRECATED"}, updateAt=kiln.now + timedelta(days=1),
    )["lifecycleExecutionId"]
    assert "deprecationTime" in client.get_image(imageBuildVersionArn=arn)["image"]
    client.cancel_lifecycle_execution(lifecycleExecutionId=lce, clientToken="c1")
    done = wait_id(client, lce)
    assert done["state"]["status"] == "CANCELLED"
    assert resources(client, lce) == []
    assert "deprecationTime" not in client.get_image(imageBuildVersionArn=arn)["image"]
    kiln.advance(days=1, seconds=1)
    time.sleep(0.5)
    assert status(client, arn) == "AVAILABLE"


# --- Container images ----------------------------------------------------------------------------

DOCKERFILE = (
    "FROM {{{ imagebuilder:parentImage }}}\n"
    "{{{ imagebuilder:environments }}}\n"
    "{{{ imagebuilder:components }}}\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_registry(uri: str) -> bool:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{uri}"], capture_output=True, text=True
    )
    return out.returncode == 0


@pytest.mark.skipif(
    not (shutil.which("docker-registry") and shutil.which("skopeo")),
    reason="needs Debian's docker-registry and skopeo",
)
def test_container_images_are_deleted_from_their_registry(tmp_path):
    """CONTAINER_IMAGE, DELETE COUNT 1 with containers: the older image's manifest leaves the
    registry (`--ecr-registry`), its row lists the URIs, and the image record goes."""
    registry = DockerRegistry(tmp_path / "registry", free_port()).start()
    k = Clocked(tmp_path, extra=["--ecr-registry", registry.address])
    try:
        client = k.client
        infra = create_infra(client, instanceTypes=["t3.micro"])
        noop = bash_component(client, {"build": "true"})
        name = unique_name("ctr")
        recipe_arn = client.create_container_recipe(
            containerType="DOCKER", name=name, semanticVersion="1.0.0", parentImage=BUSYBOX,
            components=[{"componentArn": noop}], dockerfileTemplateData=DOCKERFILE,
            targetRepository={"service": "ECR", "repositoryName": "lifecycle-test"},
        )["containerRecipeArn"]

        def build_container() -> tuple[str, list[str]]:
            arn = client.create_image(
                containerRecipeArn=recipe_arn, infrastructureConfigurationArn=infra,
                imageTestsConfiguration={"imageTestsEnabled": False},
            )["imageBuildVersionArn"]
            image = wait_final(client, arn, timeout=600)
            assert image["state"]["status"] == "AVAILABLE", image["state"]
            (out,) = image["outputResources"]["containers"]
            return arn, out["imageUris"]

        old, old_uris = build_container()
        k.advance(minutes=1)
        new, new_uris = build_container()
        old_digest = next(u for u in old_uris if "@sha256:" in u)
        assert in_registry(old_digest)

        lcp = policy(
            client, [{"name": name, "semanticVersion": "x.x.x"}],
            [{"action": {"type": "DELETE", "includeResources": {"containers": True}},
              "filter": {"type": "COUNT", "value": 1}}],
            resource_type="CONTAINER_IMAGE",
        )
        k.advance(days=1, seconds=1)
        run = wait_execution(client, lcp, 1)
        assert run["state"]["status"] == "SUCCESS", run
        (row,) = resources(client, run["lifecycleExecutionId"])
        assert row["resourceId"] == old and row["state"]["status"] == "SUCCESS"
        (child,) = resources(client, run["lifecycleExecutionId"], old)
        assert child["resourceId"] == old_digest and sorted(child["imageUris"]) == sorted(old_uris)
        assert child["state"]["status"] == "SUCCESS"
        assert not in_registry(old_digest)
        assert all(in_registry(u) for u in new_uris)
        assert_client_error(lambda: client.get_image(imageBuildVersionArn=old), "ResourceNotFoundException")
        assert status(client, new) == "AVAILABLE"
    finally:
        k.server.stop_gracefully()
        registry.stop()
