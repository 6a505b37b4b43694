"""The image store shrinks: deleted images' layers leave the disk, the rest stays whole.

One server of its own (so the store holds only this module's images), one cheap recipe whose
component writes ~1 MiB of random data (each image has its own sizeable, incompressible layer).
20 images are built, 15 deleted by a COUNT lifecycle policy; the bytes on disk (a walk of the data directory's image store)
must fall to what `kiln store usage` says the remaining images and the base need, and the
remaining images must still build children. A deletion while a child builds on the deleted
image must not break the child (its parent's layers are pinned while it runs).

Builds need root (mounts, namespaces, cgroups): elsewhere the module is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import botocore.exceptions
import pytest

from kiln_testlib import (
    DockerRegistry,
    KilnServer,
    create_infra,
    kiln_bin,
    make_client,
    make_ec2_client,
    unique_name,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

BUSYBOX = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x"
MIB = 1024 * 1024
# Directory entries, index.json, small manifests and configs that come and go.
TOLERANCE = 64 * 1024


class Clock:
    """The server's test clock (`--clock-file`): lifecycle policies run once a day on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = datetime(2030, 1, 1, tzinfo=timezone.utc)
        self.write()

    def write(self) -> None:
        temp = self.path.with_suffix(".tmp")
        temp.write_text(self.now.strftime("%Y-%m-%dT%H:%M:%SZ") + "\n")
        os.replace(temp, self.path)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
        self.write()


@pytest.fixture(scope="module")
def clock(tmp_path_factory: pytest.TempPathFactory) -> Clock:
    return Clock(tmp_path_factory.mktemp("gc-clock") / "clock")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Iterator[KilnServer]:
    server = KilnServer(
        tmp_path_factory.mktemp("gc") / "data",
        extra_args=["--build-concurrency", "4", "--clock-file", str(clock.path)],
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(srv: KilnServer) -> Any:
    return make_client(srv.endpoint)


@pytest.fixture(scope="module")
def ec2(srv: KilnServer) -> Any:
    return make_ec2_client(srv.endpoint)


@pytest.fixture(scope="module")
def infra(client: Any) -> str:
    return create_infra(client, instanceTypes=["t3.micro"])


def bash_component(client: Any, script: str) -> str:
    lines = "".join(f"            - {json.dumps(line)}\n" for line in script.strip().splitlines())
    document = (
        "name: generated\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
        "      - name: Run\n        action: ExecuteBash\n        timeoutSeconds: 120\n"
        "        inputs:\n          commands:\n" + lines
    )
    return client.create_component(
        name=unique_name("comp"), semanticVersion="1.0.0", platform="Linux", data=document
    )["componentBuildVersionArn"]


def recipe(client: Any, components: list[str], parent: str = BUSYBOX) -> str:
    return client.create_image_recipe(
        name=unique_name("recipe"),
        semanticVersion="1.0.0",
        parentImage=parent,
        components=[{"componentArn": c} for c in components],
    )["imageRecipeArn"]


# ~1 MiB of random bytes, different in every image.
RANDOM_MIB = """
mkdir -p /opt/data
dd if=/dev/urandom of=/opt/data/random.bin bs=1024 count=1024 2>/dev/null
test $(wc -c < /opt/data/random.bin) -eq 1048576
"""


def start(client: Any, recipe_arn: str, infra: str) -> str:
    return client.create_image(
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": False},
    )["imageBuildVersionArn"]


def status(client: Any, arn: str) -> str:
    return client.get_image(imageBuildVersionArn=arn)["image"]["state"]["status"]


def wait_final(client: Any, arns: list[str], timeout: float = 600) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    done: dict[str, str] = {}
    while len(done) < len(arns) and time.monotonic() < deadline:
        for arn in arns:
            if arn not in done:
                s = status(client, arn)
                if s in ("AVAILABLE", "FAILED", "CANCELLED"):
                    done[arn] = s
        time.sleep(0.3)
    assert len(done) == len(arns), f"builds did not finish: {set(arns) - set(done)}"
    return done


def build_id(arn: str) -> str:
    return hashlib.sha256(arn.encode()).hexdigest()[:16]


def store_tag(arn: str) -> str:
    return f"kiln-{build_id(arn)}"


def delete_images(client: Any, ec2: Any, arns: list[str]) -> None:
    """Deletes the images the way a lifecycle DELETE action with AMIs does: the AMIs
    distributed from each image are deregistered (while one names the build, DeleteImage keeps
    its contents, as AWS keeps an image's AMIs), then DeleteImage. The lead switches this to a
    COUNT lifecycle policy once the lifecycle engine lands: whatever deletes them, `wait_gone`
    waits for the worker."""
    for arn in arns:
        image = client.get_image(imageBuildVersionArn=arn)["image"]
        for ami in image.get("outputResources", {}).get("amis", []):
            ec2.deregister_image(ImageId=ami["image"])
        client.delete_image(imageBuildVersionArn=arn)


def delete_by_count_policy(client: Any, clock: Clock, recipe_arn: str, keep: int) -> str:
    """A lifecycle policy that keeps the newest `keep` images of the recipe's version and
    deletes the others with their AMIs and snapshots; it runs a day after it is created (the
    test clock is moved there). Answers the execution's id once it succeeded."""
    recipe = client.get_image_recipe(imageRecipeArn=recipe_arn)["imageRecipe"]
    lcp = client.create_lifecycle_policy(
        name=unique_name("gc-count"),
        executionRole="ib-lifecycle",
        resourceType="AMI_IMAGE",
        policyDetails=[{
            "action": {"type": "DELETE", "includeResources": {"amis": True, "snapshots": True}},
            "filter": {"type": "COUNT", "value": keep},
        }],
        resourceSelection={"recipes": [{"name": recipe["name"], "semanticVersion": recipe["version"]}]},
    )["lifecyclePolicyArn"]
    clock.advance(days=1, seconds=1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = client.list_lifecycle_executions(resourceArn=lcp)["lifecycleExecutions"]
        if runs and runs[0]["state"]["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
            assert runs[0]["state"]["status"] == "SUCCESS", runs[0]
            return runs[0]["lifecycleExecutionId"]
        time.sleep(0.2)
    raise AssertionError(f"the policy {lcp} did not run")


def wait_gone(client: Any, arns: list[str], timeout: float = 120) -> None:
    """Waits until the worker removed the images: their records are gone."""
    deadline = time.monotonic() + timeout
    left = set(arns)
    while left and time.monotonic() < deadline:
        for arn in list(left):
            try:
                client.get_image(imageBuildVersionArn=arn)
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] == "ResourceNotFoundException":
                    left.discard(arn)
        time.sleep(0.2)
    assert not left, f"still there: {left}"


def disk_bytes(data_dir: Path) -> int:
    """The image store's bytes on disk: regular files under blobs/, unpacked/ and tmp/, each
    inode once (what `kiln store usage` calls totalBytes)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for part in ("blobs", "unpacked", "tmp"):
        for dirpath, _dirs, files in os.walk(data_dir / "images" / part):
            for f in files:
                st = os.lstat(os.path.join(dirpath, f))
                if (st.st_mode & 0o170000) == 0o100000 and (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def usage(data_dir: Path) -> dict:
    out = subprocess.run(
        [kiln_bin(), "store", "usage", "--data-dir", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def blob(data_dir: Path, digest: str) -> Path:
    return data_dir / "images" / "blobs" / "sha256" / digest.removeprefix("sha256:")


def layers_of(data_dir: Path, manifest_digest: str) -> list[str]:
    manifest = json.loads(blob(data_dir, manifest_digest).read_bytes())
    return [layer["digest"] for layer in manifest["layers"]]


def wait_quiet(data_dir: Path, timeout: float = 30) -> dict:
    """`kiln store usage` once nothing is pinned or reclaimable (builds and removals done)."""
    deadline = time.monotonic() + timeout
    while True:
        u = usage(data_dir)
        if (u["pinnedBytes"] == 0 and u["reclaimableBytes"] == 0) or time.monotonic() > deadline:
            return u
        time.sleep(0.2)


def test_the_store_shrinks_to_what_the_remaining_images_need(srv, clock, client, ec2, infra):
    data_dir = srv.data_dir
    r = recipe(client, [bash_component(client, RANDOM_MIB)])
    started = time.monotonic()
    first = start(client, r, infra)
    assert wait_final(client, [first]) == {first: "AVAILABLE"}
    one_build = time.monotonic() - started
    rest = []
    for _ in range(19):
        # Each image a second newer than the last (its AMI's name carries its build time, and
        # the COUNT policy keeps the newest).
        clock.advance(seconds=1)
        rest.append(start(client, r, infra))
    finished = wait_final(client, rest, timeout=max(600, one_build * 30))
    assert set(finished.values()) == {"AVAILABLE"}, finished
    arns = [first, *rest]

    before = wait_quiet(data_dir)
    assert before["totalBytes"] == disk_bytes(data_dir)
    tags = {i["tag"]: i for i in before["images"]}
    for arn in arns:
        image = tags[store_tag(arn)]
        # Its own random layer (about 1 MiB, incompressible) is unique to it.
        assert image["uniqueBytes"] > MIB, image
    # The SQLite database is the running server's: images are shown by tag, with a note.
    assert before["note"] and "database" in before["note"]

    # A COUNT policy keeps the 5 newest and deletes the 15 others with their AMIs.
    deleted, kept = arns[:15], arns[15:]
    execution = delete_by_count_policy(client, clock, r, keep=5)
    rows = client.list_lifecycle_execution_resources(lifecycleExecutionId=execution)["resources"]
    assert {row["resourceId"] for row in rows} == set(deleted)
    assert {row["action"]["name"] for row in rows} == {"DELETE"}
    wait_gone(client, deleted)
    for arn in kept:
        assert status(client, arn) == "AVAILABLE"
    # The removal collects before the record goes: the bytes are gone with the records.
    after_disk = disk_bytes(data_dir)
    after = usage(data_dir)
    assert after["totalBytes"] == after_disk
    assert after["reclaimableBytes"] == 0, after
    assert after["pinnedBytes"] == 0, after
    left = {i["tag"]: i for i in after["images"]}
    assert {store_tag(a) for a in deleted}.isdisjoint(left)
    assert {store_tag(a) for a in kept} <= set(left)
    # Every deleted image's unique bytes left the disk.
    freed = before["totalBytes"] - after_disk
    expected_freed = sum(tags[store_tag(a)]["uniqueBytes"] for a in deleted)
    assert abs(freed - expected_freed) <= TOLERANCE, (freed, expected_freed)
    assert freed > 15 * MIB
    # What is left is what the 5 images and the base need: their unique bytes plus the shared
    # base layer once (every image shares the base and nothing else).
    base_tags = [t for t in left if not t.startswith("kiln-")]
    assert base_tags, left
    needed = sum(i["uniqueBytes"] for i in left.values()) + max(
        i["sharedBytes"] for i in left.values()
    )
    assert abs(after_disk - needed) <= TOLERANCE, (after_disk, needed)
    print(
        f"store: {before['totalBytes']} bytes for 20 images, {after_disk} after the policy "
        f"deleted 15 ({freed} freed, {needed} needed by the 5 left and their base)"
    )

    # The remaining images are whole: a child of one of them builds on its layers.
    child_recipe = recipe(
        client,
        [bash_component(client, "test $(wc -c < /opt/data/random.bin) -eq 1048576\necho child > /opt/child")],
        parent=kept[0],
    )
    child = start(client, child_recipe, infra)
    assert wait_final(client, [child]) == {child: "AVAILABLE"}
    for arn in kept:
        for layer in layers_of(data_dir, left[store_tag(arn)]["digest"]):
            assert blob(data_dir, layer).exists(), (arn, layer)
    final = wait_quiet(data_dir)
    assert final["totalBytes"] == disk_bytes(data_dir)
    assert final["reclaimableBytes"] == 0


def test_deleting_an_image_while_a_child_builds_on_it(srv, client, ec2, infra, tmp_path):
    data_dir = srv.data_dir
    parent = start(client, recipe(client, [bash_component(client, RANDOM_MIB)]), infra)
    assert wait_final(client, [parent]) == {parent: "AVAILABLE"}
    parent_digest = {i["tag"]: i for i in usage(data_dir)["images"]}[store_tag(parent)]["digest"]
    parent_layers = layers_of(data_dir, parent_digest)
    slow = bash_component(
        client, "sleep 6\ntest $(wc -c < /opt/data/random.bin) -eq 1048576\necho child > /opt/child"
    )
    child = start(client, recipe(client, [slow], parent=parent), infra)
    deadline = time.monotonic() + 60
    while status(client, child) != "BUILDING" and time.monotonic() < deadline:
        time.sleep(0.1)
    instance = data_dir / "instances" / f"{build_id(child)}-build"
    while not instance.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert instance.exists(), "the child's build instance never appeared"

    delete_images(client, ec2, [parent])
    wait_gone(client, [parent])
    # The parent's record is gone and the store collected, but the child still runs on its
    # layers: they are pinned.
    assert status(client, child) == "BUILDING"
    during = usage(data_dir)
    assert store_tag(parent) not in {i["tag"] for i in during["images"]}
    assert during["pinnedBytes"] > MIB, during
    for layer in parent_layers:
        assert blob(data_dir, layer).exists(), layer

    assert wait_final(client, [child]) == {child: "AVAILABLE"}
    after = wait_quiet(data_dir)
    assert after["reclaimableBytes"] == 0 and after["pinnedBytes"] == 0, after
    assert after["totalBytes"] == disk_bytes(data_dir)
    child_digest = {i["tag"]: i for i in after["images"]}[store_tag(child)]["digest"]
    child_layers = layers_of(data_dir, child_digest)
    assert child_layers[:-1] == parent_layers
    for layer in child_layers:
        assert blob(data_dir, layer).exists(), layer
    # Whole: an export of the child reads every layer.
    layout = tmp_path / "child-oci"
    out = subprocess.run(
        [kiln_bin(), "image", "export", child, "--format", "oci", "-o", str(layout), "--endpoint", srv.endpoint],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for layer in child_layers:
        assert (layout / "blobs" / "sha256" / layer.removeprefix("sha256:")).exists(), layer


def registry_has(address: str, repository: str, tag: str) -> bool:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://{address}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
        return True
    except urllib.error.HTTPError as e:
        assert e.code == 404, e
        return False


def test_a_removed_image_leaves_the_shared_registry_too(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    registry = DockerRegistry(tmp_path / "registry", port).start()
    server = KilnServer(tmp_path / "data", extra_args=["--registry", registry.address]).start()
    try:
        client = make_client(server.endpoint)
        ec2 = make_ec2_client(server.endpoint)
        infra = create_infra(client, instanceTypes=["t3.micro"])
        r = recipe(client, [bash_component(client, RANDOM_MIB)])
        arn, kept = start(client, r, infra), start(client, r, infra)
        assert wait_final(client, [arn, kept]) == {arn: "AVAILABLE", kept: "AVAILABLE"}
        # arn:aws:imagebuilder:REGION:ACCOUNT:image/NAME/VERSION/BUILD
        region, account = arn.split(":")[3:5]
        name, version, build = arn.split("/")[1:4]
        repository = f"kiln/{account}/{region}/{name}"
        tag = f"{version}-{build}-{build_id(arn)}"
        assert registry_has(registry.address, repository, tag)
        assert store_tag(arn) in {i["tag"] for i in usage(server.data_dir)["images"]}

        delete_images(client, ec2, [arn])
        wait_gone(client, [arn])
        assert not registry_has(registry.address, repository, tag)
        after = usage(server.data_dir)
        assert store_tag(arn) not in {i["tag"] for i in after["images"]}
        assert after["reclaimableBytes"] == 0
        assert after["totalBytes"] == disk_bytes(server.data_dir)
    finally:
        server.stop()
        registry.stop()
    # Once the server is gone, the command reads its database: tags are named by image ARN.
    offline = usage(server.data_dir)
    assert offline["note"] is None
    named = {i["tag"]: i["imageArn"] for i in offline["images"]}
    assert named[store_tag(kept)] == kept
    text = subprocess.run(
        [kiln_bin(), "store", "usage", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text.returncode == 0, text.stderr
    assert f"{kept} ({store_tag(kept)})" in text.stdout
    assert "a gc frees now:" in text.stdout
