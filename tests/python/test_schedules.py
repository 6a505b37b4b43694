"""Pipelines that run themselves: `kiln serve`'s scheduler starts SCHEDULED builds of
ENABLED pipelines when their schedule is due, honours the start condition (dependency updates),
disables a pipeline after too many failed scheduled builds, fires each due time exactly once
across restarts (and once after downtime), and computes dateNextRun in the pipeline's time zone.

Every test starts its own server with `--clock-file`: Kiln's time is read from a file that the
test rewrites, so minutes pass in milliseconds. The schedule's own record comes from
`kiln pipeline schedule ARN --json`.

Tests that build need root (mounts, namespaces, cgroups), like test_builds.py; the time zone and
validation tests build nothing and run anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from kiln_testlib import (
    KilnServer,
    assert_client_error,
    create_infra,
    kiln_bin,
    make_client,
    raw_request,
    unique_name,
)

BUSYBOX = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x"
EVERY_MINUTE = "cron(* * * * ? *)"
# The scheduler looks every 50 ms: this is 20 looks, long enough for a firing that should not
# happen to have happened.
SETTLE_SECONDS = 1.0
FINAL = ("AVAILABLE", "FAILED", "CANCELLED")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")


class ClockedKiln:
    """A `kiln serve` of one test on its own data dir, whose time is a file the test writes."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.clock_path = tmp_path / "clock"
        self.server: KilnServer | None = None
        self.client: Any = None
        self.endpoint = ""

    def set_clock(self, instant: str) -> None:
        """Moves Kiln's time; written whole and renamed, so the server never reads half."""
        temp = self.clock_path.with_suffix(".tmp")
        temp.write_text(instant + "\n")
        os.replace(temp, self.clock_path)

    def start(self, at: str | None = None) -> "ClockedKiln":
        if at is not None:
            self.set_clock(at)
        self.server = KilnServer(
            self.data_dir, extra_args=["--clock-file", str(self.clock_path)]
        ).start()
        self.endpoint = self.server.endpoint
        self.client = make_client(self.endpoint)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to tidy up or write anything more."""
        assert self.server is not None and self.server.process is not None
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait()
        if self.server.log_file is not None:
            self.server.log_file.close()
        self.server = None

    def stop(self) -> None:
        assert self.server is not None
        self.server.stop_gracefully()
        self.server = None

    def schedule(self, pipeline_arn: str) -> dict:
        out = subprocess.run(
            [kiln_bin(), "pipeline", "schedule", pipeline_arn, "--json", "--endpoint", self.endpoint],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, f"kiln pipeline schedule failed: {out.stderr}"
        return json.loads(out.stdout)

    def log(self) -> str:
        log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        try:
            return log_path.read_text(encoding="utf-8", errors="replace")[-6000:]
        except OSError:
            return ""


@pytest.fixture
def kiln(tmp_path: Path) -> Iterator[ClockedKiln]:
    k = ClockedKiln(tmp_path)
    try:
        yield k
    finally:
        # Shown by pytest only when the test failed.
        print(f"--- kiln log ({tmp_path}) ---\n{k.log()}")
        if k.server is not None:
            k.stop()


# --- Helpers ---------------------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30, interval: float = 0.05) -> Any:
    """Calls `probe` until it answers something truthy, and answers that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def bash_component(client: Any, script: str, name: str | None = None, version: str = "1.0.0") -> str:
    lines = [
        "name: generated",
        "schemaVersion: 1.0",
        "phases:",
        "  - name: build",
        "    steps:",
        "      - name: BuildStep",
        "        action: ExecuteBash",
        "        timeoutSeconds: 60",
        "        inputs:",
        "          commands:",
    ]
    lines += [f"            - {json.dumps(line)}" for line in script.strip().splitlines()]
    return client.create_component(
        name=name or unique_name("comp"),
        semanticVersion=version,
        platform="Linux",
        data="\n".join(lines) + "\n",
    )["componentBuildVersionArn"]


def recipe(client: Any, component_arns: list[str]) -> str:
    return client.create_image_recipe(
        name=unique_name("recipe"),
        semanticVersion="1.0.0",
        parentImage=BUSYBOX,
        components=[{"componentArn": arn} for arn in component_arns],
    )["imageRecipeArn"]


def scheduled_pipeline(
    client: Any, recipe_arn: str, infra: str, schedule: dict, **extra: Any
) -> str:
    return client.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": False},
        schedule=schedule,
        **extra,
    )["imagePipelineArn"]


def pipeline_of(client: Any, arn: str) -> dict:
    return client.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]


def images_of(client: Any, pipeline_arn: str) -> list[dict]:
    """The pipeline's images, oldest build first."""
    listed = client.list_image_pipeline_images(imagePipelineArn=pipeline_arn)["imageSummaryList"]
    return sorted(listed, key=lambda s: int(s["arn"].rsplit("/", 1)[1]))


def wait_images(client: Any, pipeline_arn: str, count: int, timeout: float = 30) -> list[dict]:
    """Waits until the pipeline has `count` images, and checks that it has no more."""

    def probe() -> list[dict] | None:
        found = images_of(client, pipeline_arn)
        return found if len(found) >= count else None

    images = wait_for(f"{count} image(s) of {pipeline_arn}", probe, timeout=timeout)
    assert len(images) == count, f"expected {count} images, found {[i['arn'] for i in images]}"
    return images


def wait_final(client: Any, image_arn: str, timeout: float = 180) -> dict:
    def probe() -> dict | None:
        image = client.get_image(imageBuildVersionArn=image_arn)["image"]
        return image if image["state"]["status"] in FINAL else None

    return wait_for(f"{image_arn} to finish", probe, timeout=timeout, interval=0.2)


def settle_and_count(client: Any, pipeline_arn: str, seconds: float = SETTLE_SECONDS) -> int:
    time.sleep(seconds)
    return len(images_of(client, pipeline_arn))


def events_due(answer: dict, due: str) -> list[dict]:
    return [e for e in answer["events"] if e["due"] == due]


def wait_event(kiln: ClockedKiln, pipeline_arn: str, due: str, timeout: float = 30) -> dict:
    """The (single) event the scheduler recorded for the firing due at `due`."""

    def probe() -> list[dict]:
        return events_due(kiln.schedule(pipeline_arn), due)

    found = wait_for(f"an event due {due}", probe, timeout=timeout)
    assert len(found) == 1, f"more than one event for {due}: {found}"
    return found[0]


def wait_for_schedule(
    kiln: ClockedKiln, pipeline_arn: str, condition: Callable[[dict], bool], timeout: float = 30
) -> dict:
    """The pipeline's schedule answer, once `condition` holds for it."""

    def probe() -> dict | None:
        answer = kiln.schedule(pipeline_arn)
        return answer if condition(answer) else None

    return wait_for(f"the schedule of {pipeline_arn} to change", probe, timeout=timeout)


def component_family(build_version_arn: str) -> str:
    """`.../component/NAME/1.0.0/1` -> `.../component/NAME/x.x.x`."""
    return build_version_arn.rsplit("/", 2)[0] + "/x.x.x"


def update_pipeline(client: Any, pipeline: dict, **changes: Any) -> None:
    """UpdateImagePipeline with the pipeline's current settings, `changes` applied."""
    request = {
        "imagePipelineArn": pipeline["arn"],
        "imageRecipeArn": pipeline["imageRecipeArn"],
        "infrastructureConfigurationArn": pipeline["infrastructureConfigurationArn"],
        "imageTestsConfiguration": pipeline["imageTestsConfiguration"],
        "schedule": pipeline["schedule"],
        "status": pipeline["status"],
    }
    request.update(changes)
    client.update_image_pipeline(**request)


# --- 1. A due schedule starts a SCHEDULED build ------------------------------------------------


@needs_root
def test_a_due_cron_starts_one_scheduled_build_with_the_pipeline_tags(kiln):
    kiln.start(at="2030-01-01T09:59:30Z")
    client = kiln.client
    infra = create_infra(client, instanceTypes=["t3.micro"])
    r = recipe(client, [bash_component(client, "echo scheduled build ran")])
    tags = {"team": "images", "cadence": "minutely"}
    pipe = scheduled_pipeline(
        client,
        r,
        infra,
        {"scheduleExpression": EVERY_MINUTE, "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"},
        imageTags=tags,
    )
    assert pipeline_of(client, pipe)["dateNextRun"] == "2030-01-01T10:00:00.000Z"
    listed = client.list_image_pipelines()["imagePipelineList"]
    assert [p["dateNextRun"] for p in listed if p["arn"] == pipe] == ["2030-01-01T10:00:00.000Z"]
    # Not due yet: nothing happens.
    assert settle_and_count(client, pipe, 0.5) == 0

    kiln.set_clock("2030-01-01T10:00:00Z")
    [summary] = wait_images(client, pipe, 1)
    assert summary["buildType"] == "SCHEDULED"
    image = client.get_image(imageBuildVersionArn=summary["arn"])["image"]
    assert image["buildType"] == "SCHEDULED"
    assert image["tags"] == tags
    assert image["sourcePipelineArn"] == pipe
    assert image["dateCreated"] == "2030-01-01T10:00:00.000Z"
    final = wait_final(client, summary["arn"])
    assert final["state"]["status"] == "AVAILABLE", final["state"]

    p = pipeline_of(client, pipe)
    assert p["dateNextRun"] == "2030-01-01T10:01:00.000Z"
    assert p["lastRunStatus"] == "AVAILABLE"
    # Later in the same minute: the 10:00 firing is not repeated.
    kiln.set_clock("2030-01-01T10:00:59Z")
    assert settle_and_count(client, pipe) == 1

    answer = kiln.schedule(pipe)
    assert answer["imagePipelineArn"] == pipe
    assert answer["status"] == "ENABLED"
    assert answer["scheduleExpression"] == EVERY_MINUTE
    assert answer["timezone"] == "Etc/UTC"
    assert answer["dateNextRun"] == "2030-01-01T10:01:00.000Z"
    assert answer["consecutiveFailures"] == 0
    [event] = answer["events"]
    assert event["due"] == "2030-01-01T10:00:00.000Z"
    assert event["outcome"] == "STARTED"
    assert event["imageBuildVersionArn"] == summary["arn"]
    # The same answer over plain HTTP.
    query = urllib.parse.urlencode({"imagePipelineArn": pipe})
    status, _, body = raw_request(kiln.endpoint, "GET", f"/kiln/v1/schedule?{query}")
    assert status == 200, body
    assert json.loads(body) == answer


# --- 2. The default start condition: only when dependencies changed ----------------------------


@needs_root
def test_dependency_updates_decide_whether_a_firing_builds(kiln):
    kiln.start(at="2030-01-01T09:59:30Z")
    client = kiln.client
    infra = create_infra(client, instanceTypes=["t3.micro"])
    comp_name = unique_name("comp")
    first_comp = bash_component(client, "echo version one", name=comp_name)
    r = recipe(client, [component_family(first_comp)])
    pipe = scheduled_pipeline(client, r, infra, {"scheduleExpression": EVERY_MINUTE})
    assert (
        pipeline_of(client, pipe)["schedule"]["pipelineExecutionStartCondition"]
        == "EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE"
    )

    # A pipeline that never built builds.
    kiln.set_clock("2030-01-01T10:00:00Z")
    [first] = wait_images(client, pipe, 1)
    assert wait_final(client, first["arn"])["state"]["status"] == "AVAILABLE"
    assert wait_event(kiln, pipe, "2030-01-01T10:00:00.000Z")["outcome"] == "STARTED"

    # Nothing changed: the next firing is skipped, and says why.
    kiln.set_clock("2030-01-01T10:01:00Z")
    skipped = wait_event(kiln, pipe, "2030-01-01T10:01:00.000Z")
    assert skipped["outcome"] == "SKIPPED", skipped
    assert f"no dependency updates since {first['arn']}" in skipped["reason"], skipped
    assert not skipped.get("imageBuildVersionArn"), skipped
    assert settle_and_count(client, pipe) == 1
    assert pipeline_of(client, pipe)["dateNextRun"] == "2030-01-01T10:02:00.000Z"

    # A new version of the component: the next firing builds, and names it.
    new_comp = bash_component(client, "echo version two", name=comp_name, version="1.0.1")
    kiln.set_clock("2030-01-01T10:02:00Z")
    _, second = wait_images(client, pipe, 2)
    assert second["buildType"] == "SCHEDULED"
    started = wait_event(kiln, pipe, "2030-01-01T10:02:00.000Z")
    assert started["outcome"] == "STARTED", started
    assert started["imageBuildVersionArn"] == second["arn"]
    assert new_comp in started["reason"], started
    assert wait_final(client, second["arn"])["state"]["status"] == "AVAILABLE"
    assert pipeline_of(client, pipe)["dateNextRun"] == "2030-01-01T10:03:00.000Z"


# --- 3. Auto-disable after consecutive failed scheduled builds --------------------------------


@needs_root
def test_consecutive_failed_scheduled_builds_disable_the_pipeline(kiln):
    kiln.start(at="2030-01-01T09:59:30Z")
    client = kiln.client
    infra = create_infra(client, instanceTypes=["t3.micro"])
    r = recipe(client, [bash_component(client, "echo failing on purpose\nexit 1")])
    pipe = scheduled_pipeline(
        client,
        r,
        infra,
        {
            "scheduleExpression": EVERY_MINUTE,
            "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY",
            "autoDisablePolicy": {"failureCount": 2},
        },
    )

    kiln.set_clock("2030-01-01T10:00:00Z")
    [first] = wait_images(client, pipe, 1)
    assert wait_final(client, first["arn"])["state"]["status"] == "FAILED"
    answer = wait_for_schedule(kiln, pipe, lambda a: a["consecutiveFailures"] == 1)
    assert answer["status"] == "ENABLED"
    assert answer["autoDisableFailureCount"] == 2
    assert answer["dateNextRun"] == "2030-01-01T10:01:00.000Z"

    kiln.set_clock("2030-01-01T10:01:00Z")
    _, second = wait_images(client, pipe, 2)
    assert second["buildType"] == "SCHEDULED"
    assert wait_final(client, second["arn"])["state"]["status"] == "FAILED"
    wait_for_schedule(kiln, pipe, lambda a: a["status"] == "DISABLED")
    p = pipeline_of(client, pipe)
    assert p["status"] == "DISABLED"
    assert "dateNextRun" not in p, p
    assert p.get("consecutiveFailures") == 2, p
    answer = kiln.schedule(pipe)
    assert answer["status"] == "DISABLED"
    assert answer["consecutiveFailures"] == 2
    assert not answer.get("dateNextRun"), answer
    disabled = [e for e in answer["events"] if e["outcome"] == "DISABLED"]
    assert len(disabled) == 1, answer["events"]
    assert "disabled after 2 consecutive failed scheduled builds" in disabled[0]["reason"]

    # A disabled pipeline never fires again...
    kiln.set_clock("2030-01-01T10:05:30Z")
    assert settle_and_count(client, pipe) == 2
    # ...but can still be run by hand; a failed manual run leaves the count as it is.
    manual = client.start_image_pipeline_execution(imagePipelineArn=pipe)["imageBuildVersionArn"]
    image = client.get_image(imageBuildVersionArn=manual)["image"]
    assert image["buildType"] == "USER_INITIATED"
    assert wait_final(client, manual)["state"]["status"] == "FAILED"
    assert len(images_of(client, pipe)) == 3
    time.sleep(0.3)
    p = pipeline_of(client, pipe)
    assert p["status"] == "DISABLED"
    assert "dateNextRun" not in p
    assert kiln.schedule(pipe)["consecutiveFailures"] == 2


# --- 4. Exactly once across restarts and downtime ---------------------------------------------


@needs_root
def test_restarts_never_repeat_a_firing_and_downtime_catches_up_once(kiln):
    kiln.start(at="2030-01-01T09:59:30Z")
    client = kiln.client
    infra = create_infra(client, instanceTypes=["t3.micro"])
    r = recipe(client, [bash_component(client, "echo restart test")])
    pipe = scheduled_pipeline(
        client,
        r,
        infra,
        {"scheduleExpression": EVERY_MINUTE, "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"},
    )
    kiln.set_clock("2030-01-01T10:00:00Z")
    [first] = wait_images(client, pipe, 1)
    assert wait_final(client, first["arn"])["state"]["status"] == "AVAILABLE"

    # Killed and started again at the very instant it fired: 10:00 is not fired again...
    kiln.kill()
    kiln.start()
    client = kiln.client
    assert settle_and_count(client, pipe, 1.5) == 1
    assert pipeline_of(client, pipe)["dateNextRun"] == "2030-01-01T10:01:00.000Z"
    # ...nor later in that minute, by a server that was started during it.
    kiln.set_clock("2030-01-01T10:00:40Z")
    assert settle_and_count(client, pipe, 0.5) == 1

    # Down for ten minutes: the ten missed firings make one build at start-up.
    kiln.stop()
    kiln.set_clock("2030-01-01T10:10:40Z")
    kiln.start()
    client = kiln.client
    _, second = wait_images(client, pipe, 2)
    assert second["buildType"] == "SCHEDULED"
    assert settle_and_count(client, pipe, 1.5) == 2
    assert pipeline_of(client, pipe)["dateNextRun"] == "2030-01-01T10:11:00.000Z"
    answer = kiln.schedule(pipe)
    started = [e for e in answer["events"] if e["outcome"] == "STARTED"]
    assert [e["imageBuildVersionArn"] for e in started] == [first["arn"], second["arn"]], answer
    assert answer["dateNextRun"] == "2030-01-01T10:11:00.000Z"
    assert wait_final(client, second["arn"])["state"]["status"] == "AVAILABLE"


# --- 5. Time zones and daylight saving, through the API ----------------------------------------


def test_date_next_run_skips_a_missing_local_time_and_takes_the_earlier_of_a_repeated_one(kiln):
    # (Checked with zoneinfo: 2030-03-10 02:30 does not exist in Los Angeles (clocks go from
    # 02:00 PST to 03:00 PDT); 2030-10-27 02:30 happens twice in Berlin, 00:30Z (CEST) and
    # 01:30Z (CET); 2030-10-28 02:30 CET is 01:30Z.)
    kiln.start(at="2030-03-09T12:00:00Z")
    client = kiln.client
    infra = create_infra(client, instanceTypes=["t3.micro"])
    r = recipe(client, [bash_component(client, "echo never built")])
    nightly = "cron(30 2 * * ? *)"

    la = scheduled_pipeline(
        client, r, infra, {"scheduleExpression": nightly, "timezone": "America/Los_Angeles"}
    )
    p = pipeline_of(client, la)
    assert p["schedule"]["timezone"] == "America/Los_Angeles"
    assert p["dateNextRun"] == "2030-03-11T09:30:00.000Z"
    answer = kiln.schedule(la)
    assert answer["timezone"] == "America/Los_Angeles"
    assert answer["dateNextRun"] == "2030-03-11T09:30:00.000Z"
    # The day without 02:30 passes without a firing.
    kiln.set_clock("2030-03-10T12:00:00Z")
    assert settle_and_count(client, la) == 0
    assert pipeline_of(client, la)["dateNextRun"] == "2030-03-11T09:30:00.000Z"
    update_pipeline(client, p, status="DISABLED")
    assert "dateNextRun" not in pipeline_of(client, la)

    kiln.set_clock("2030-10-26T12:00:00Z")
    berlin = scheduled_pipeline(
        client, r, infra, {"scheduleExpression": nightly, "timezone": "Europe/Berlin"}
    )
    p = pipeline_of(client, berlin)
    assert p["dateNextRun"] == "2030-10-27T00:30:00.000Z"
    # Disabled over the first 02:30, then enabled again between the two: the repeated 02:30
    # does not fire a second time; the next firing is the next day's.
    update_pipeline(client, p, status="DISABLED")
    kiln.set_clock("2030-10-27T00:45:00Z")
    assert settle_and_count(client, berlin) == 0
    update_pipeline(client, p, status="ENABLED")
    assert pipeline_of(client, berlin)["dateNextRun"] == "2030-10-28T01:30:00.000Z"
    assert settle_and_count(client, berlin, 0.5) == 0
    assert len(images_of(client, la)) == 0


# --- 6. Bad schedules are refused cleanly ----------------------------------------------------


def test_bad_schedules_are_refused_naming_the_member(kiln):
    kiln.start(at="2030-01-01T09:59:30Z")
    client = kiln.client
    infra = create_infra(client, instanceTypes=["t3.micro"])
    r = recipe(client, [bash_component(client, "echo never built")])
    bad = [
        ({"scheduleExpression": "cron(0 10 * * * *)"}, "schedule.scheduleExpression"),
        ({"scheduleExpression": "cron(0 10 * * ? *)", "timezone": "Mars/Olympus_Mons"}, "schedule.timezone"),
    ]
    for schedule, member in bad:
        exc = assert_client_error(
            lambda: scheduled_pipeline(client, r, infra, schedule),
            "InvalidRequestException",
            member,
        )
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert client.list_image_pipelines()["imagePipelineList"] == []

    # The same through UpdateImagePipeline, which leaves the pipeline as it was.
    good = scheduled_pipeline(client, r, infra, {"scheduleExpression": "cron(0 10 * * ? *)"})
    before = pipeline_of(client, good)
    for schedule, member in bad:
        exc = assert_client_error(
            lambda: update_pipeline(client, before, schedule=schedule),
            "InvalidRequestException",
            member,
        )
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    after = pipeline_of(client, good)
    assert after["schedule"] == before["schedule"]
    assert after["dateNextRun"] == before["dateNextRun"] == "2030-01-01T10:00:00.000Z"
