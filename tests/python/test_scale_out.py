"""Many machines, one Kiln, end to end: one PostgreSQL database, one OCI registry, two API
servers that run no builds (`--build-concurrency 0`) and two build workers (`kiln worker`), each
with its own data directory, as separate processes on 127.0.0.1.

In order, the module shows that:
- what is created through server A is read through server B;
- an image built by one worker is the parent of a second image built by the other, which pulls
  it from the registry; both export, and their logs read, through either server;
- 64 identical requests (one clientToken) spread over both servers create one resource;
- a worker killed with SIGKILL in the middle of a build loses its lease: the build ends FAILED
  naming that worker within the lease, while the other worker goes on building;
- a cron(* * * * ? *) pipeline, with both servers' schedulers running on one test clock, builds
  once per minute.

It needs root (builds), PostgreSQL (`KILN_TEST_DATABASE_URL`, as the Rust suite) and Debian's
`docker-registry`; it skips without them unless `KILN_TEST_REQUIRE_POSTGRES=1`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

from kiln_testlib import DockerRegistry, KilnServer, KilnWorker, create_infra, make_client, unique_name
from test_builds import (
    bash_component,
    build_id,
    free_port,
    image_of,
    kiln,
    recipe,
    start,
    wait_final,
    wait_status,
)

# A lease short enough for the test to wait out (the default is 60 s).
LEASE_SECONDS = 5


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("KILN_TEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"KILN_TEST_REQUIRE_POSTGRES=1 but {why}")
    pytest.skip(why)


def psql(admin: str, sql: str) -> None:
    binary = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    subprocess.run([binary, admin, "-qc", sql], check=True, capture_output=True)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    require(os.geteuid() == 0, "builds need root")
    admin = os.environ.get("KILN_TEST_DATABASE_URL", "")
    require(bool(admin), "KILN_TEST_DATABASE_URL is not set")
    name = f"kiln_scale_{uuid.uuid4().hex[:12]}"
    psql(admin, f"CREATE DATABASE {name}")
    base, _, _ = admin.partition("?")
    yield base.rsplit("/", 1)[0] + "/" + name
    psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require(shutil.which("docker-registry") is not None, "docker-registry is not installed")
    registry = DockerRegistry(tmp_path_factory.mktemp("registry"), free_port()).start()
    try:
        yield registry.address
    finally:
        registry.stop()


class Cluster:
    def __init__(self, root: Path, database: str, registry: str) -> None:
        self.root = root
        self.database = database
        self.registry = registry
        shared = ["--database", database, "--registry", registry]
        self.servers = [
            KilnServer(root / name, extra_args=[*shared, "--build-concurrency", "0",
                                                "--lease-seconds", str(LEASE_SECONDS)])
            for name in ("server-a", "server-b")
        ]
        self.workers = [self.new_worker(name) for name in ("worker-1", "worker-2")]

    def new_worker(self, name: str) -> KilnWorker:
        return KilnWorker(
            self.root / name,
            self.database,
            extra_args=["--registry", self.registry, "--build-concurrency", "1",
                        "--lease-seconds", str(LEASE_SECONDS)],
        )

    def start(self) -> "Cluster":
        for process in [*self.servers, *self.workers]:
            process.start()
        self.a = make_client(self.servers[0].endpoint)
        self.b = make_client(self.servers[1].endpoint)
        self.infra = create_infra(self.a, instanceTypes=["t3.micro"])
        return self

    def worker_that_built(self, arn: str) -> KilnWorker:
        """The worker whose data directory holds the build's log."""
        ran = [w for w in self.workers if (w.data_dir / "logs" / build_id(arn)).exists()]
        assert len(ran) == 1, f"{arn} ran on {[w.data_dir.name for w in ran]}"
        return ran[0]

    def stop(self) -> None:
        for process in [*self.workers, *self.servers]:
            if process.process is not None and process.process.poll() is None:
                process.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, database: str, registry: str
) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("scale"), database, registry)
    try:
        yield c.start()
    finally:
        c.stop()


def test_what_server_a_creates_server_b_reads(cluster: Cluster):
    arn = bash_component(cluster.a, {"build": "true"})
    assert cluster.b.get_component(componentBuildVersionArn=arn)["component"]["arn"] == arn
    infra = cluster.b.get_infrastructure_configuration(
        infrastructureConfigurationArn=cluster.infra
    )["infrastructureConfiguration"]
    assert infra["instanceTypes"] == ["t3.micro"]
    names = [c["arn"] for c in cluster.b.list_components(owner="Self")["componentVersionList"]]
    assert any(arn.startswith(n) for n in names)


def test_b_s_cached_answers_follow_a_s_updates(cluster: Cluster):
    """B keeps Get answers (served without a database read of the resource), yet every Get
    after an update acknowledged by A answers that update."""
    arn = cluster.a.create_infrastructure_configuration(
        name="cached", instanceProfileName="p0", clientToken="cached-0"
    )["infrastructureConfigurationArn"]

    def profile() -> str:
        return cluster.b.get_infrastructure_configuration(infrastructureConfigurationArn=arn)[
            "infrastructureConfiguration"
        ]["instanceProfileName"]

    for n in range(1, 21):
        assert profile() == f"p{n - 1}"
        assert profile() == f"p{n - 1}", "served again"
        cluster.a.update_infrastructure_configuration(
            infrastructureConfigurationArn=arn, instanceProfileName=f"p{n}", clientToken=f"cached-{n}"
        )
        assert profile() == f"p{n}", f"round {n}: B answers A's acknowledged update"


@pytest.fixture(scope="module")
def parent_and_child(cluster: Cluster) -> tuple[dict, dict]:
    """Image 1 on one worker; with that worker stopped, image 2 on image 1 on the other,
    which has to pull image 1 from the registry."""
    first = wait_final(
        cluster.a,
        start(cluster.a, recipe(cluster.a, [bash_component(cluster.a, {
            "build": "mkdir -p /opt/app && echo from-the-first-image > /opt/app/first",
        })]), cluster.infra),
        timeout=300,
    )
    assert first["state"]["status"] == "AVAILABLE", first["state"]
    builder = cluster.worker_that_built(first["arn"])
    other = next(w for w in cluster.workers if w is not builder)
    assert not (other.data_dir / "logs" / build_id(first["arn"])).exists()
    builder.stop()
    try:
        child_recipe = recipe(
            cluster.b,
            [bash_component(cluster.b, {
                "build": "grep -q from-the-first-image /opt/app/first\necho second > /opt/app/second",
            })],
            parent=first["arn"],
        )
        second = wait_final(cluster.b, start(cluster.b, child_recipe, cluster.infra), timeout=300)
        assert second["state"]["status"] == "AVAILABLE", second["state"]
        assert cluster.worker_that_built(second["arn"]) is other
    finally:
        restarted = cluster.new_worker(builder.data_dir.name)
        cluster.workers[cluster.workers.index(builder)] = restarted
        restarted.start()
    return first, second


def test_a_child_image_builds_on_a_parent_another_worker_built(parent_and_child):
    first, second = parent_and_child
    assert second["imageRecipe"]["parentImage"] == first["arn"]


def test_exports_and_logs_through_either_server(cluster: Cluster, parent_and_child, tmp_path):
    first, second = parent_and_child
    for server, image in ((cluster.servers[0], second), (cluster.servers[1], first)):
        out = tmp_path / f"{build_id(image['arn'])}.qcow2"
        done = kiln(server.endpoint, "image", "export", image["arn"], "--format", "qcow2",
                    "-o", str(out), timeout=300)
        assert done.returncode == 0, done.stderr
        assert out.read_bytes()[:4] == b"QFI\xfb", "a qcow2 image"
        log = kiln(server.endpoint, "logs", image["arn"])
        assert log.returncode == 0, log.stderr
        assert "build/BuildStep" in log.stdout and "AVAILABLE" in log.stdout, log.stdout[-2000:]
        follow = kiln(server.endpoint, "logs", image["arn"], "--follow")
        assert follow.returncode == 0 and follow.stdout == log.stdout


def test_64_token_requests_over_both_servers_create_one_resource(cluster: Cluster):
    token = str(uuid.uuid4())
    name = unique_name("tok")
    clients = [cluster.a, cluster.b]

    def create(i: int) -> str:
        return clients[i % 2].create_infrastructure_configuration(
            name=name, instanceProfileName="builder", clientToken=token
        )["infrastructureConfigurationArn"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        arns = set(pool.map(create, range(64)))
    assert len(arns) == 1, arns
    listed = cluster.b.list_infrastructure_configurations(
        filters=[{"name": "name", "values": [name]}]
    )["infrastructureConfigurationSummaryList"]
    assert [s["arn"] for s in listed] == list(arns)


def test_a_killed_worker_s_build_fails_within_the_lease(cluster: Cluster):
    sleeper = recipe(cluster.a, [bash_component(cluster.a, {"build": "sleep 600"})])
    arn = start(cluster.a, sleeper, cluster.infra)
    wait_status(cluster.a, arn, "BUILDING", timeout=120)
    victim = cluster.worker_that_built(arn)
    survivor = next(w for w in cluster.workers if w is not victim)
    victim.kill()
    killed_at = time.monotonic()
    image = wait_final(cluster.b, arn, timeout=LEASE_SECONDS + 30)
    took = time.monotonic() - killed_at
    assert image["state"]["status"] == "FAILED", image["state"]
    assert victim.worker_id in image["state"]["reason"], image["state"]["reason"]
    # Within the lease, plus the keeper's look and a loaded machine's slack.
    assert took <= LEASE_SECONDS + 10, f"FAILED only {took:.1f}s after the kill"

    # The other worker keeps building.
    quick = recipe(cluster.b, [bash_component(cluster.b, {"build": "echo after the kill"})])
    after = wait_final(cluster.b, start(cluster.b, quick, cluster.infra), timeout=300)
    assert after["state"]["status"] == "AVAILABLE", after["state"]
    assert cluster.worker_that_built(after["arn"]) is survivor

    # The killed worker comes back on its data directory: its instance is reaped.
    back = cluster.new_worker(victim.data_dir.name)
    cluster.workers[cluster.workers.index(victim)] = back
    back.start()
    instances = back.data_dir / "instances"
    assert not instances.exists() or not any(instances.iterdir())
    assert image_of(cluster.a, arn)["state"]["status"] == "FAILED"


def test_a_cron_pipeline_builds_once_a_minute_with_two_schedulers(
    cluster: Cluster, tmp_path: Path
):
    """Both API servers restart on one test clock; the workers stop first (the test clock runs
    ahead of their leases' clock), so the images stay PENDING: what is counted is runs."""
    for worker in cluster.workers:
        worker.stop()
    clock = tmp_path / "clock"
    now = dt.datetime(2031, 3, 3, 12, 0, 30, tzinfo=dt.timezone.utc)

    def set_clock(t: dt.datetime) -> None:
        clock.write_text(t.strftime("%Y-%m-%dT%H:%M:%SZ"))

    set_clock(now)
    for server in cluster.servers:
        server.stop_gracefully()
    restarted = [
        KilnServer(s.data_dir, extra_args=[*s.extra_args, "--clock-file", str(clock)]).start()
        for s in cluster.servers
    ]
    cluster.servers = restarted
    a, b = (make_client(s.endpoint) for s in restarted)
    pipeline_arn = a.create_image_pipeline(
        name=unique_name("cron"),
        imageRecipeArn=recipe(a, [bash_component(a, {"build": "true"})]),
        infrastructureConfigurationArn=cluster.infra,
        # Every due time builds (the default waits for a dependency update).
        schedule={
            "scheduleExpression": "cron(* * * * ? *)",
            "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY",
        },
    )["imagePipelineArn"]

    def runs() -> int:
        return len(b.list_image_pipeline_images(imagePipelineArn=pipeline_arn)["imageSummaryList"])

    assert runs() == 0
    for minute in range(1, 4):
        set_clock(now.replace(second=1) + dt.timedelta(minutes=minute))
        deadline = time.monotonic() + 20
        while runs() < minute and time.monotonic() < deadline:
            time.sleep(0.1)
        # Both schedulers look every 50 ms on a test clock: a second run would show by now.
        time.sleep(1.0)
        assert runs() == minute, f"minute {minute}: {runs()} runs"
