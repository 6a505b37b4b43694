"""Real builds through the API: StartImagePipelineExecution and CreateImage build
images on this machine, in build instances on Kiln's managed busybox base, and boto3's
`image_available` waiter waits for them.

The tests check what the image record says at the end (status, outputs, packages, the recipe
and infrastructure it was built from, the pipeline's last run), the failure reasons of failing
build and test components, cancellation, a second pipeline built on the first one's output,
the build log through `kiln logs`, exports through `kiln image export`, and that components
run isolated: no network, no host files, memory and process limits, no way out of the root.

Builds need root (mounts, namespaces, cgroups): CI runs as root; elsewhere the module is
skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kiln_testlib import (
    DockerRegistry,
    KilnServer,
    assert_client_error,
    create_infra,
    kiln_bin,
    make_client,
    unique_name,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

BUSYBOX = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x"
FAST = {"Delay": 1, "MaxAttempts": 180}


def component(client: Any, document: str, name: str | None = None) -> str:
    return client.create_component(
        name=name or unique_name("comp"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=document,
    )["componentBuildVersionArn"]


def bash_component(client: Any, phases: dict[str, str]) -> str:
    """A component with one ExecuteBash step per phase (each script a block of lines)."""
    body = ["name: generated", "schemaVersion: 1.0", "phases:"]
    for phase, script in phases.items():
        body += [
            f"  - name: {phase}",
            "    steps:",
            f"      - name: {phase.capitalize()}Step",
            "        action: ExecuteBash",
            "        timeoutSeconds: 120",
            "        inputs:",
            "          commands:",
        ]
        body += [f"            - {json.dumps(line)}" for line in script.strip().splitlines()]
    return component(client, "\n".join(body) + "\n")


def recipe(client: Any, components: list[str], parent: str = BUSYBOX, **extra: Any) -> str:
    return client.create_image_recipe(
        name=unique_name("recipe"),
        semanticVersion="1.0.0",
        parentImage=parent,
        components=[{"componentArn": c} for c in components],
        **extra,
    )["imageRecipeArn"]


def pipeline(client: Any, recipe_arn: str, infra: str, tests: bool = True) -> str:
    return client.create_image_pipeline(
        name=unique_name("pipe"),
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": tests},
    )["imagePipelineArn"]


def image_of(client: Any, arn: str) -> dict:
    return client.get_image(imageBuildVersionArn=arn)["image"]


def wait_final(client: Any, arn: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        image = image_of(client, arn)
        if image["state"]["status"] in ("AVAILABLE", "FAILED", "CANCELLED"):
            return image
        time.sleep(0.2)
    raise AssertionError(f"{arn} did not finish within {timeout}s: {image['state']}")


def start(client: Any, recipe_arn: str, infra: str, tests: bool = True) -> str:
    """CreateImage; answers the image's ARN."""
    return client.create_image(
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": tests},
    )["imageBuildVersionArn"]


def build(client: Any, recipe_arn: str, infra: str, tests: bool = True) -> dict:
    """CreateImage, then the image once its build has ended."""
    return wait_final(client, start(client, recipe_arn, infra, tests), timeout=600)


def wait_status(client: Any, arn: str, status: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = image_of(client, arn)["state"]["status"]
        if seen == status:
            return
        assert seen not in ("AVAILABLE", "FAILED", "CANCELLED"), f"ended {seen} waiting for {status}"
        time.sleep(0.1)
    raise AssertionError(f"{arn} never reached {status} (last {seen})")


def wait_instance(client: Any, data_dir: Path, arn: str) -> None:
    """Waits until the build of `arn` runs its first step in its build instance."""
    wait_status(client, arn, "BUILDING")
    instance = data_dir / "instances" / f"{build_id(arn)}-build"
    deadline = time.monotonic() + 60
    while not instance.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.exists(), "the build instance never appeared"
    time.sleep(0.5)  # the step starts


def build_id(arn: str) -> str:
    """The id Kiln names a build's instances and log folder with."""
    return hashlib.sha256(arn.encode()).hexdigest()[:16]


def kiln(endpoint: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kiln_bin(), *args, "--endpoint", endpoint],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def infra(client) -> str:
    return create_infra(client, instanceTypes=["t3.micro"])


# A component that writes files in build, checks them in validate, and has a test phase; it
# also leaves an os-release and a dpkg database in the image, so that enhanced metadata has
# something to read on busybox.
APP = {
    "build": """
mkdir -p /opt/app /var/lib/dpkg /etc
echo "hello from kiln" > /opt/app/hello.txt
printf 'NAME="Kiln Test OS"\\nID=kilntest\\nVERSION_ID="7.1"\\nPRETTY_NAME="Kiln Test OS 7.1"\\n' > /etc/os-release
printf 'Package: kiln-demo\\nStatus: install ok installed\\nVersion: 1.2-3\\n\\nPackage: zz-tool\\nStatus: install ok installed\\nVersion: 0.9\\n' > /var/lib/dpkg/status
mkdir -p /var/lib/rpm /usr/bin
printf '#!/bin/sh\\nprintf "rpm-demo\\\\t4.5-6\\\\n"\\n' > /usr/bin/rpm
chmod +x /usr/bin/rpm
echo built-marker-line
""",
    "validate": "grep -q hello /opt/app/hello.txt",
    "test": "test -f /opt/app/hello.txt && echo tested",
}


@pytest.fixture(scope="module")
def built(client, infra) -> dict:
    """One successful pipeline run, shared by the tests that read its results."""
    recipe_arn = recipe(client, [bash_component(client, APP)])
    pipe = pipeline(client, recipe_arn, infra)
    started = time.monotonic()
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipe)["imageBuildVersionArn"]
    first = image_of(client, arn)["state"]["status"]
    client.get_waiter("image_available").wait(imageBuildVersionArn=arn, WaiterConfig=FAST)
    return {
        "arn": arn,
        "pipeline": pipe,
        "recipe": recipe_arn,
        "first_status": first,
        "seconds": time.monotonic() - started,
    }


def test_a_pipeline_run_builds_an_available_image(client, built, infra):
    image = image_of(client, built["arn"])
    assert built["first_status"] in ("PENDING", "BUILDING", "TESTING", "DISTRIBUTING", "AVAILABLE")
    assert image["state"]["status"] == "AVAILABLE"
    assert image["buildType"] == "USER_INITIATED"
    assert "imageSource" not in image  # AWS shows it on its managed images only
    assert image["type"] == "AMI"
    assert image["version"] == "1.0.0/1"
    assert image["sourcePipelineArn"] == built["pipeline"]
    assert image["imageRecipe"]["arn"] == built["recipe"]
    assert image["infrastructureConfiguration"]["arn"] == infra
    assert image["imageTestsConfiguration"]["imageTestsEnabled"] is True
    amis = image["outputResources"]["amis"]
    assert len(amis) == 1 and amis[0]["image"].startswith("ami-0") and len(amis[0]["image"]) == 21
    assert image["osVersion"] == "Kiln Test OS 7.1"


def test_enhanced_metadata_lists_the_packages(client, built):
    packages = client.list_image_packages(imageBuildVersionArn=built["arn"])["imagePackageList"]
    assert {"packageName": "kiln-demo", "packageVersion": "1.2-3"} in packages  # dpkg
    assert {"packageName": "rpm-demo", "packageVersion": "4.5-6"} in packages  # the image's rpm
    assert [p["packageName"] for p in packages] == sorted(p["packageName"] for p in packages)
    page = client.list_image_packages(imageBuildVersionArn=built["arn"], maxResults=1)
    assert len(page["imagePackageList"]) == 1 and "nextToken" in page


def test_the_pipeline_records_its_last_run(client, built):
    p = client.get_image_pipeline(imagePipelineArn=built["pipeline"])["imagePipeline"]
    assert p["lastRunStatus"] == "AVAILABLE"
    assert "dateLastRun" in p
    listed = client.list_image_pipeline_images(imagePipelineArn=built["pipeline"])
    assert [s["arn"] for s in listed["imageSummaryList"]] == [built["arn"]]
    assert listed["imageSummaryList"][0]["state"]["status"] == "AVAILABLE"


def test_list_images_and_build_versions(client, built):
    name = image_of(client, built["arn"])["name"]
    versions = client.list_images(filters=[{"name": "name", "values": [name]}])["imageVersionList"]
    assert [v["arn"] for v in versions] == [built["arn"].rsplit("/", 1)[0]]
    assert versions[0]["version"] == "1.0.0"
    builds = client.list_image_build_versions(imageVersionArn=versions[0]["arn"])
    assert [s["arn"] for s in builds["imageSummaryList"]] == [built["arn"]]


def test_managed_base_images_are_listed_under_amazon(client):
    listed = client.list_images(owner="Amazon")["imageVersionList"]
    names = {v["name"] for v in listed}
    assert {"busybox-x86", "debian-12-minimal-x86"} <= names
    assert all(v["owner"] == "Amazon" for v in listed)
    image = image_of(client, BUSYBOX)
    assert image["state"]["status"] == "AVAILABLE"
    assert image["imageSource"] == "AMAZON_MANAGED"
    assert client.list_images(owner="Self", filters=[{"name": "name", "values": ["busybox-x86"]}])[
        "imageVersionList"
    ] == []


def test_the_build_log_has_every_step(client, built, endpoint):
    out = kiln(endpoint, "logs", built["arn"])
    assert out.returncode == 0, out.stderr
    assert "built-marker-line" in out.stdout
    assert "build/BuildStep" in out.stdout and "test/TestStep" in out.stdout
    assert "AVAILABLE" in out.stdout
    follow = kiln(endpoint, "logs", built["arn"], "--follow")
    assert follow.returncode == 0 and follow.stdout == out.stdout


def test_export_as_oci_layout_and_qcow2(client, built, endpoint, tmp_path):
    oci = tmp_path / "layout"
    out = kiln(endpoint, "image", "export", built["arn"], "--format", "oci", "-o", str(oci))
    assert out.returncode == 0, out.stderr
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci:{oci}:1.0.0-1"], capture_output=True, text=True
    )
    assert inspect.returncode == 0, inspect.stderr
    assert len(json.loads(inspect.stdout)["Layers"]) >= 2  # busybox base + the build's layer
    disk = tmp_path / "disk.qcow2"
    out = kiln(endpoint, "image", "export", built["arn"], "--format", "qcow2", "-o", str(disk))
    assert out.returncode == 0, out.stderr
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(disk)], capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["format"] == "qcow2"


def test_exports_of_an_image_are_reproducible(built, endpoint, tmp_path):
    """The same image exported twice is the same OCI image, digest for digest: the store's
    layers are written once and exports copy them (a faster build path must not change that)."""
    digests = []
    for n in range(2):
        oci = tmp_path / f"layout{n}"
        out = kiln(endpoint, "image", "export", built["arn"], "--format", "oci", "-o", str(oci))
        assert out.returncode == 0, out.stderr
        index = json.loads((oci / "index.json").read_text())
        manifest = index["manifests"][0]["digest"]
        blob = oci / "blobs" / "sha256" / manifest.split(":", 1)[1]
        layers = [layer["digest"] for layer in json.loads(blob.read_text())["layers"]]
        digests.append((manifest, layers))
    assert digests[0] == digests[1]
    assert len(digests[0][1]) >= 2


def test_a_failing_build_component_fails_the_image_naming_the_step(client, infra):
    bad = bash_component(client, {"build": "echo about to fail\nexit 3"})
    r = recipe(client, [bash_component(client, {"build": "echo fine"}), bad])
    image = build(client, r, infra)
    arn = image["arn"]
    assert image["state"]["status"] == "FAILED"
    reason = image["state"]["reason"]
    assert "build" in reason and "BuildStep" in reason and "3" in reason, reason
    with pytest.raises(Exception) as info:
        client.get_waiter("image_available").wait(imageBuildVersionArn=arn, WaiterConfig=FAST)
    assert "FAILED" in str(info.value) or "failure" in str(info.value)


def test_a_failing_test_component_fails_the_image(client, infra):
    r = recipe(
        client,
        [bash_component(client, {"build": "echo ok", "test": "echo testing\ntest -f /nonexistent"})],
    )
    image = build(client, r, infra)
    assert image["state"]["status"] == "FAILED"
    assert image["state"]["reason"].startswith("test stage failed"), image["state"]["reason"]
    assert "TestStep" in image["state"]["reason"]


def test_tests_disabled_skip_the_test_phase(client, infra):
    r = recipe(client, [bash_component(client, {"build": "echo ok", "test": "exit 1"})])
    arn = start(client, r, infra, tests=False)
    assert wait_final(client, arn)["state"]["status"] == "AVAILABLE"


def test_create_image_answers_like_every_versioned_create(client, infra):
    r = recipe(client, [bash_component(client, {"build": "echo ok"})])
    answer = client.create_image(imageRecipeArn=r, infrastructureConfigurationArn=infra)
    arn = answer["imageBuildVersionArn"]
    base = arn.rsplit("/", 2)[0]  # .../image/<name>
    assert answer["latestVersionReferences"] == {
        "latestVersionArn": f"{base}/x.x.x",
        "latestMajorVersionArn": f"{base}/1.x.x",
        "latestMinorVersionArn": f"{base}/1.0.x",
        "latestPatchVersionArn": f"{base}/1.0.0",
    }
    building = image_of(client, arn)
    assert building["tags"] == {}
    assert building["outputResources"] == {"amis": []} or building["state"]["status"] == "AVAILABLE"
    wait_final(client, arn)


def test_cancel_stops_a_running_build(client, infra, server):
    r = recipe(client, [bash_component(client, {"build": "echo sleeping\nsleep 300"})])
    arn = start(client, r, infra)
    wait_instance(client, server.data_dir, arn)
    began = time.monotonic()
    client.cancel_image_creation(imageBuildVersionArn=arn)
    assert image_of(client, arn)["state"]["status"] == "CANCELLED"
    instance = server.data_dir / "instances" / f"{build_id(arn)}-build"
    while instance.exists() and time.monotonic() - began < 10:
        time.sleep(0.05)
    assert not instance.exists(), "the cancelled build's instance is still there"
    assert time.monotonic() - began < 2.0, "cancelling took more than 2 seconds"
    assert_client_error(
        lambda: client.cancel_image_creation(imageBuildVersionArn=arn),
        "ResourceInUseException",
        "CANCELLED",
    )
    assert image_of(client, arn)["state"]["status"] == "CANCELLED"


def test_a_second_pipeline_builds_on_the_first_ones_output(client, infra, built):
    first = image_of(client, built["arn"])
    parent = first["arn"].rsplit("/", 2)[0] + "/x.x.x"
    layered = bash_component(
        client,
        {
            "build": "grep -q hello /opt/app/hello.txt\necho second > /opt/app/second.txt",
            "test": "test -f /opt/app/hello.txt && test -f /opt/app/second.txt",
        },
    )
    pipe = pipeline(client, recipe(client, [layered], parent=parent), infra)
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipe)["imageBuildVersionArn"]
    client.get_waiter("image_available").wait(imageBuildVersionArn=arn, WaiterConfig=FAST)
    # The parent can also be named by the id the first image answers to.
    ami = first["outputResources"]["amis"][0]["image"]
    by_ami = recipe(client, [layered], parent=ami)
    arn2 = start(client, by_ami, infra)
    assert wait_final(client, arn2)["state"]["status"] == "AVAILABLE"


def test_a_parent_with_no_available_image_fails_the_build(client, infra):
    missing = "arn:aws:imagebuilder:us-east-1:123456789012:image/no-such-image-anywhere/x.x.x"
    r = recipe(client, [bash_component(client, {"build": "true"})], parent=missing)
    image = build(client, r, infra)
    assert image["state"]["status"] == "FAILED"
    assert "no AVAILABLE image matches" in image["state"]["reason"]


def test_delete_image(client, infra):
    r = recipe(client, [bash_component(client, {"build": "sleep 300"})])
    running = start(client, r, infra)
    assert_client_error(
        lambda: client.delete_image(imageBuildVersionArn=running), "ResourceInUseException"
    )
    client.cancel_image_creation(imageBuildVersionArn=running)
    client.delete_image(imageBuildVersionArn=running)
    assert_client_error(
        lambda: client.get_image(imageBuildVersionArn=running), "ResourceNotFoundException"
    )
    assert_client_error(
        lambda: client.delete_image(imageBuildVersionArn=running), "ResourceNotFoundException"
    )


def test_a_container_recipe_builds_an_oci_image(client, infra):
    r = client.create_container_recipe(
        containerType="DOCKER",
        name=unique_name("ctr"),
        semanticVersion="1.0.0",
        parentImage=BUSYBOX,
        components=[{"componentArn": bash_component(client, {"build": "echo in-container > /srv.txt"})}],
        dockerfileTemplateData=(
            "FROM {{{ imagebuilder:parentImage }}}\n"
            "{{{ imagebuilder:environments }}}\n"
            "{{{ imagebuilder:components }}}\n"
        ),
        targetRepository={"service": "ECR", "repositoryName": "kiln/app"},
    )["containerRecipeArn"]
    arn = client.create_image(containerRecipeArn=r, infrastructureConfigurationArn=infra)[
        "imageBuildVersionArn"
    ]
    image = wait_final(client, arn)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["type"] == "DOCKER"
    assert image["containerRecipe"]["arn"] == r
    uri = image["outputResources"]["containers"][0]["imageUris"][0]
    assert uri.startswith("oci:")
    inspect = subprocess.run(["skopeo", "inspect", uri], capture_output=True, text=True)
    assert inspect.returncode == 0, inspect.stderr


def test_a_retried_start_builds_once(client, infra):
    pipe = pipeline(client, recipe(client, [bash_component(client, {"build": "true"})]), infra)
    token = str(uuid.uuid4())
    first = client.start_image_pipeline_execution(imagePipelineArn=pipe, clientToken=token)
    again = client.start_image_pipeline_execution(imagePipelineArn=pipe, clientToken=token)
    assert first["imageBuildVersionArn"] == again["imageBuildVersionArn"]
    client.get_waiter("image_available").wait(
        imageBuildVersionArn=first["imageBuildVersionArn"], WaiterConfig=FAST
    )
    listed = client.list_image_pipeline_images(imagePipelineArn=pipe)["imageSummaryList"]
    assert len(listed) == 1


def test_bad_references_are_refused_naming_the_field(client, infra):
    prefix = "arn:aws:imagebuilder:us-east-1:123456789012"
    assert_client_error(
        lambda: client.start_image_pipeline_execution(
            imagePipelineArn=f"{prefix}:image-pipeline/no-such-pipeline"
        ),
        "ResourceNotFoundException",
        "no-such-pipeline",
    )
    assert_client_error(
        lambda: client.create_image(
            imageRecipeArn=f"{prefix}:image-recipe/no-such-recipe/1.0.0",
            infrastructureConfigurationArn=infra,
        ),
        "InvalidRequestException",
        "imageRecipeArn",
    )
    assert_client_error(
        lambda: client.list_image_packages(imageBuildVersionArn=f"{prefix}:image/none/1.0.0/1"),
        "ResourceNotFoundException",
    )


def test_get_image_of_nothing_is_not_found(client):
    assert_client_error(
        lambda: client.get_image(
            imageBuildVersionArn="arn:aws:imagebuilder:us-east-1:123456789012:image/none/1.0.0/1"
        ),
        "ResourceNotFoundException",
    )


# --- Isolation ---------------------------------------------------------------------------


def test_components_run_isolated(client, endpoint, tmp_path):
    # t3.small: 2 GiB, room for 4,096 processes; the process limit is 4,096 for every type.
    infra = create_infra(client, instanceTypes=["t3.small"])
    marker = Path("/tmp") / f"kiln-host-secret-{uuid.uuid4().hex}"
    marker.write_text("secret")
    port = endpoint.rsplit(":", 1)[1]
    try:
        checks = bash_component(
            client,
            {
                "build": f"""
test ! -e {marker} || {{ echo host file visible; exit 1; }}
ln -s / /tmp/up
test ! -e /tmp/up{marker} || {{ echo escaped through a symlink; exit 1; }}
test ! -e /../../..{marker} || {{ echo escaped through dotdot; exit 1; }}
if echo | nc -w 2 127.0.0.1 {port} >/dev/null 2>&1; then echo reached the host network; exit 1; fi
if awk 'BEGIN {{ s = "x"; while (1) s = s s }}'; then echo allocated without limit; exit 1; fi
# A fork that fails ends ash's loop (and its subshell), so only builtins follow it. The
# children outlive the loop however slow the machine is (a busy CI host forks slowly), and are
# killed with builtins afterwards (no fork is possible while they hold the limit).
( i=0; while [ $i -lt 4500 ]; do sh -c 'echo >> /tmp/started; exec sleep 120' >/dev/null 2>&1 & echo $! >> /tmp/pids; i=$((i+1)); done ) 2>/dev/null
n=0; while read -r line; do n=$((n+1)); done < /tmp/started
while read -r pid; do kill -9 $pid 2>/dev/null; done < /tmp/pids
echo "processes started: $n"
[ "$n" -lt 4500 ] || {{ echo no process limit; exit 1; }}
echo isolated
""",
            },
        )
        r = recipe(client, [checks])
        image = build(client, r, infra, tests=False)
        arn = image["arn"]
        log = kiln(endpoint, "logs", arn).stdout
        if image["state"]["status"] != "AVAILABLE":
            print(log)
        assert image["state"]["status"] == "AVAILABLE", (image["state"], log[-3000:])
        assert "isolated" in log
    finally:
        marker.unlink()


def test_networking_is_on_when_the_infrastructure_has_a_subnet(client, endpoint):
    # A network namespace of the instance's own, with a default route out; the host's
    # loopback (where the API listens) is not the instance's (test_isolation.py tries more).
    infra = create_infra(client, instanceTypes=["t3.micro"], subnetId="subnet-0123456789abcdef0")
    port = endpoint.rsplit(":", 1)[1]
    script = f"""
ip route | grep -q '^default via 10.213.'
ls /sys/class/net | grep -qx eth0
if echo | nc -w 2 127.0.0.1 {port} >/dev/null 2>&1; then echo reached the host; exit 1; fi
"""
    r = recipe(client, [bash_component(client, {"build": script})])
    image = build(client, r, infra, tests=False)
    assert image["state"]["status"] == "AVAILABLE", image["state"]


# --- Kept instances and restarts -----------------------------------------------------------


def test_a_kept_failed_instance_can_be_entered(client, server, endpoint):
    infra = create_infra(client, instanceTypes=["t3.micro"], terminateInstanceOnFailure=False)
    r = recipe(client, [bash_component(client, {"build": "echo left-behind > /root/note\nexit 1"})])
    image = build(client, r, infra)
    arn = image["arn"]
    reason = image["state"]["reason"]
    assert image["state"]["status"] == "FAILED"
    assert "kiln instance shell" in reason, reason
    instance_id = reason.rsplit("kiln instance shell ", 1)[1].rstrip(")")
    shell = subprocess.run(
        [kiln_bin(), "instance", "shell", instance_id, "--endpoint", endpoint, "--", "cat", "/root/note"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip() == "left-behind"
    kept = server.data_dir / "instances" / instance_id
    assert kept.is_dir()
    # Deleting the image removes the instance kept for it.
    client.delete_image(imageBuildVersionArn=arn)
    deadline = time.monotonic() + 30
    while kept.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not kept.exists()
    assert str(kept) not in Path("/proc/self/mountinfo").read_text()


def test_a_killed_server_marks_its_builds_interrupted_and_leaves_nothing(tmp_path):
    srv = KilnServer(tmp_path / "data").start()
    try:
        client = make_client(srv.endpoint)
        infra = create_infra(client, instanceTypes=["t3.micro"])
        r = recipe(client, [bash_component(client, {"build": "sleep 300"})])
        arn = start(client, r, infra)
        wait_instance(client, tmp_path / "data", arn)
        assert srv.process is not None
        srv.process.kill()
        srv.process.wait()
    finally:
        if srv.log_file is not None:
            srv.log_file.close()
    assert any((tmp_path / "data" / "instances").iterdir()), "the build's instance should be left"
    again = KilnServer(tmp_path / "data").start()
    try:
        client = make_client(again.endpoint)
        image = image_of(client, arn)
        assert image["state"]["status"] == "FAILED"
        assert "interrupted" in image["state"]["reason"]
        assert not any((tmp_path / "data" / "instances").iterdir())
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(tmp_path / "data") not in mounts
        assert not list(Path("/sys/fs/cgroup/pids").glob(f"kiln*/{build_id(arn)}-*"))
    finally:
        again.stop_gracefully()
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


# --- Parent images from outside Kiln -------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def busybox_rootfs_archive(path: Path) -> None:
    """A gzip'd root filesystem: busybox, sh and bash links, and /opt/app/hello.txt."""
    import io
    import tarfile

    def add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w:gz") as tar:
        for d in ("bin", "tmp", "opt", "opt/app", "root", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        add(tar, "bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
        add(tar, "bin/bash", b'#!/bin/sh\nexec /bin/sh "$@"\n', 0o755)
        for applet in ("sh", "grep", "cat", "test", "echo", "mkdir", "rm"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        add(tar, "opt/app/hello.txt", b"hello from an archive\n")


def build_on(client: Any, infra: str, parent: str, check: str) -> dict:
    r = recipe(client, [bash_component(client, {"build": check, "test": check})], parent=parent)
    return build(client, r, infra)


def test_parents_from_a_layout_an_archive_and_a_registry(endpoint, built, tmp_path):
    """On a server of its own, which lists the directory of the layout and the archive
    (--import-dir) and the loopback registry (--allow-registry): without them it refuses such
    parents (tests/python/test_walls.py)."""
    imports = tmp_path / "imports"
    imports.mkdir()
    layout = imports / "layout"
    out = kiln(endpoint, "image", "export", built["arn"], "--format", "oci", "-o", str(layout))
    assert out.returncode == 0, out.stderr
    port = free_port()
    server = KilnServer(
        tmp_path / "data",
        extra_args=["--import-dir", str(imports), "--allow-registry", f"127.0.0.1:{port}"],
    ).start()
    try:
        client = make_client(server.endpoint)
        infra = create_infra(client, instanceTypes=["t3.micro"])
        from_layout = build_on(
            client, infra, f"oci:{layout}:1.0.0-1", "grep -q hello /opt/app/hello.txt"
        )
        assert from_layout["state"]["status"] == "AVAILABLE", from_layout["state"]

        archive = imports / "rootfs.tar.gz"
        busybox_rootfs_archive(archive)
        from_archive = build_on(
            client, infra, f"file://{archive}", "grep -q 'an archive' /opt/app/hello.txt"
        )
        assert from_archive["state"]["status"] == "AVAILABLE", from_archive["state"]
        registry_parents(client, infra, layout, port, tmp_path)
    finally:
        server.stop_gracefully()


def registry_parents(client: Any, infra: str, layout: Path, port: int, tmp_path: Path) -> None:
    registry = DockerRegistry(tmp_path / "registry", port).start()
    try:
        pushed = None
        for _ in range(50):
            pushed = subprocess.run(
                [
                    "skopeo", "copy", "--dest-tls-verify=false",
                    f"oci:{layout}:1.0.0-1", f"docker://127.0.0.1:{port}/kiln/app:1",
                ],
                capture_output=True,
                text=True,
            )
            if pushed.returncode == 0:
                break
            time.sleep(0.1)
        assert pushed is not None and pushed.returncode == 0, pushed.stderr
        from_registry = build_on(
            client, infra, f"127.0.0.1:{port}/kiln/app:1", "grep -q hello /opt/app/hello.txt"
        )
        assert from_registry["state"]["status"] == "AVAILABLE", from_registry["state"]
    finally:
        registry.stop()
    gone = build_on(client, infra, f"127.0.0.1:{port}/kiln/app:1", "true")
    assert gone["state"]["status"] == "FAILED"
    assert f"127.0.0.1:{port}/kiln/app" in gone["state"]["reason"]


def test_the_managed_debian_base(client, infra):
    """Made by Kiln from the Debian mirror on first use (a minute or more): the built-in path
    that `--base-source auto` takes, even where mmdebstrap is installed."""
    debian = "arn:aws:imagebuilder:us-east-1:aws:image/debian-12-minimal-x86/x.x.x"
    image = build_on(
        client,
        infra,
        debian,
        "dpkg -s base-files >/dev/null\ngrep -q bookworm /etc/os-release\necho ok > /etc/kiln-debian",
    )
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["osVersion"] == "Debian GNU/Linux 12"
    packages = client.list_image_packages(imageBuildVersionArn=image["arn"], maxResults=100)
    names = {p["packageName"] for p in packages["imagePackageList"]}
    assert {"base-files", "dpkg", "apt"} <= names


# --- Without root ----------------------------------------------------------------------------

NOBODY = 65534


def userns_allowed() -> bool:
    probe = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "unshare", "--user", "--map-root-user", "true"],
        capture_output=True,
    )
    return probe.returncode == 0


def test_an_unprivileged_server_builds_in_user_namespaces():
    """`kiln serve` as nobody builds rootless: user namespaces, the same API and results, and
    files the build's root made are owned by root in the image."""
    if not userns_allowed():
        pytest.skip("this kernel refuses unprivileged user namespaces")
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="kiln-rootless-", dir="/tmp"))
    try:
        os.chmod(home, 0o755)
        os.chown(home, NOBODY, NOBODY)
        binary = home / "kiln"
        shutil.copy(kiln_bin(), binary)
        os.chmod(binary, 0o755)
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                "env", f"HOME={home}"]
        srv = KilnServer(home / "data", prefix=drop, binary=str(binary)).start()
        try:
            client = make_client(srv.endpoint)
            infra = create_infra(client, instanceTypes=["t3.micro"])
            r = recipe(client, [bash_component(client, APP)])
            image = build(client, r, infra)
            log = kiln(srv.endpoint, "logs", image["arn"]).stdout
            assert image["state"]["status"] == "AVAILABLE", (image["state"], log[-2000:])
            assert "built-marker-line" in log and "tested" in log
            # The new layer records the build's files as root's.
            layout = home / "layout"
            out = kiln(srv.endpoint, "image", "export", image["arn"], "--format", "oci", "-o", str(layout))
            assert out.returncode == 0, out.stderr
            manifest_digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
            manifest = json.loads((layout / "blobs/sha256" / manifest_digest.split(":")[1]).read_text())
            top = manifest["layers"][-1]["digest"].split(":")[1]
            listing = subprocess.run(
                f"zstd -dc {layout}/blobs/sha256/{top} | tar -tv --numeric-owner",
                shell=True, capture_output=True, text=True,
            )
            assert listing.returncode == 0, listing.stderr
            line = next(l for l in listing.stdout.splitlines() if l.endswith("opt/app/hello.txt"))
            assert " 0/0 " in line, line
            # Cancelling stops a running rootless build as quickly.
            slow = start(client, recipe(client, [bash_component(client, {"build": "sleep 300"})]), infra)
            wait_instance(client, home / "data", slow)
            began = time.monotonic()
            client.cancel_image_creation(imageBuildVersionArn=slow)
            instance = home / "data" / "instances" / f"{build_id(slow)}-build"
            while instance.exists() and time.monotonic() - began < 10:
                time.sleep(0.05)
            assert not instance.exists()
            assert time.monotonic() - began < 2.0
        finally:
            srv.stop_gracefully()
    finally:
        shutil.rmtree(home, ignore_errors=True)
