"""Container images pushed to the registries that stand in for ECR (`kiln serve --ecr-registry`),
through boto3.

A container pipeline whose distribution configuration names two Regions, both mapped to one
`docker-registry` on 127.0.0.1 with different repositories and tags, pushes to both:
`outputResources.containers` has one entry per Region with every tag's URI and the digest's, and
each URI pulls back (`skopeo inspect`) as the image Kiln built. Without a distribution
configuration the image goes to its recipe's targetRepository. A Region with no registry is
refused by CreateImage, and fails a build already queued in the distribute stage, naming the
Region and the flag. Bad flag values stop the server before it starts.

Builds need root (mounts, namespaces, cgroups) and Debian's docker-registry and skopeo.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
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

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="builds need root"),
    pytest.mark.skipif(
        not (shutil.which("docker-registry") and shutil.which("skopeo")),
        reason="needs Debian's docker-registry and skopeo",
    ),
]

BUSYBOX = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x"
DOCKERFILE = (
    "FROM {{{ imagebuilder:parentImage }}}\n"
    "{{{ imagebuilder:environments }}}\n"
    "{{{ imagebuilder:components }}}\n"
)
NO_TESTS = {"imageTestsEnabled": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    reg = DockerRegistry(tmp_path_factory.mktemp("registry"), free_port()).start()
    yield reg
    reg.stop()


def container_recipe(client: Any, repository: str) -> str:
    component = client.create_component(
        name=unique_name("comp"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=(
            "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Mark\n"
            "        action: ExecuteBash\n        inputs:\n          commands:\n"
            "            - echo pushed > /pushed.txt\n"
        ),
    )["componentBuildVersionArn"]
    return client.create_container_recipe(
        containerType="DOCKER",
        name=unique_name("ctr"),
        semanticVersion="1.0.0",
        parentImage=BUSYBOX,
        components=[{"componentArn": component}],
        dockerfileTemplateData=DOCKERFILE,
        targetRepository={"service": "ECR", "repositoryName": repository},
    )["containerRecipeArn"]


def container_entry(region: str, repository: str, tags: list[str]) -> dict:
    entry: dict[str, Any] = {"targetRepository": {"service": "ECR", "repositoryName": repository}}
    if tags:
        entry["containerTags"] = tags
    return {"region": region, "containerDistributionConfiguration": entry}


def wait_final(client: Any, arn: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        image = client.get_image(imageBuildVersionArn=arn)["image"]
        if image["state"]["status"] in ("AVAILABLE", "FAILED", "CANCELLED"):
            return image
        assert time.monotonic() < deadline, f"{arn} still {image['state']}"
        time.sleep(0.2)


def registry_digest(uri: str) -> str:
    """The manifest digest the registry answers for a tag or digest URI."""
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{uri}"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"skopeo inspect {uri}: {out.stderr}"
    return json.loads(out.stdout)["Digest"]


def local_digest(data_dir: Path, arn: str) -> str:
    """The digest of the image the build stored in the server's image store (`kiln-<build
    id>`, the build id being the first 16 hex digits of the SHA-256 of the image's ARN)."""
    tag = "kiln-" + hashlib.sha256(arn.encode()).hexdigest()[:16]
    out = subprocess.run(
        ["skopeo", "inspect", f"oci:images:{tag}"], capture_output=True, text=True, cwd=data_dir
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["Digest"]


@pytest.fixture(scope="module")
def pushing(registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server whose registries serve us-east-1 (at the registry's root) and us-west-2 (under
    the prefix `west`), both on one registry."""
    data = tmp_path_factory.mktemp("pushing") / "data"
    server = KilnServer(
        data,
        extra_args=[
            "--ecr-registry",
            f"us-east-1={registry.address}",
            "--ecr-registry",
            f"us-west-2={registry.address}/west",
        ],
    ).start()
    yield server
    server.stop_gracefully()


def test_a_pipeline_pushes_to_every_region_of_its_distribution(pushing, registry):
    client = make_client(pushing.endpoint)
    host = registry.address
    infra = create_infra(client, instanceTypes=["t3.micro"])
    recipe = container_recipe(client, "recipe-repo")
    east, west = unique_name("east"), unique_name("west")
    dist = client.create_distribution_configuration(
        name=unique_name("dist"),
        distributions=[
            container_entry("us-east-1", f"team/{east}", ["latest", "stable"]),
            container_entry("us-west-2", west, ["west"]),
        ],
    )["distributionConfigurationArn"]
    pipeline = client.create_image_pipeline(
        name=unique_name("pipe"),
        containerRecipeArn=recipe,
        infrastructureConfigurationArn=infra,
        distributionConfigurationArn=dist,
        imageTestsConfiguration=NO_TESTS,
    )["imagePipelineArn"]
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipeline)["imageBuildVersionArn"]
    image = wait_final(client, arn)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    digest = local_digest(pushing.data_dir, arn)
    assert image["outputResources"]["containers"] == [
        {
            "region": "us-east-1",
            "imageUris": [
                f"{host}/team/{east}:1.0.0-1",
                f"{host}/team/{east}:latest",
                f"{host}/team/{east}:stable",
                f"{host}/team/{east}@{digest}",
            ],
        },
        {
            "region": "us-west-2",
            "imageUris": [
                f"{host}/west/{west}:1.0.0-1",
                f"{host}/west/{west}:west",
                f"{host}/west/{west}@{digest}",
            ],
        },
    ]
    for container in image["outputResources"]["containers"]:
        for uri in container["imageUris"]:
            assert registry_digest(uri) == digest, uri
    # ListImageBuildVersions and ListImagePipelineImages say the same.
    version_arn = arn.rsplit("/", 1)[0]
    versions = client.list_image_build_versions(imageVersionArn=version_arn)["imageSummaryList"]
    assert [v["outputResources"] for v in versions] == [image["outputResources"]]
    listed = client.list_image_pipeline_images(imagePipelineArn=pipeline)["imageSummaryList"]
    assert [i["outputResources"] for i in listed] == [image["outputResources"]]


def test_without_a_distribution_the_recipe_target_repository(pushing, registry):
    client = make_client(pushing.endpoint)
    repository = unique_name("app")
    infra = create_infra(client, instanceTypes=["t3.micro"])
    arn = client.create_image(
        containerRecipeArn=container_recipe(client, repository),
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration=NO_TESTS,
    )["imageBuildVersionArn"]
    image = wait_final(client, arn)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    digest = local_digest(pushing.data_dir, arn)
    host = registry.address
    assert image["outputResources"]["containers"] == [
        {
            "region": "us-east-1",
            "imageUris": [f"{host}/{repository}:1.0.0-1", f"{host}/{repository}@{digest}"],
        }
    ]
    assert registry_digest(f"{host}/{repository}:1.0.0-1") == digest


def test_a_region_without_a_registry_is_refused_or_fails_the_build(registry, tmp_path):
    data = tmp_path / "data"
    # Every Region has a registry while the build is queued (no build threads)...
    queuing = KilnServer(
        data, extra_args=["--ecr-registry", registry.address, "--build-concurrency", "0"]
    ).start()
    try:
        client = make_client(queuing.endpoint)
        infra = create_infra(client, instanceTypes=["t3.micro"])
        recipe = container_recipe(client, "app")
        dist = client.create_distribution_configuration(
            name=unique_name("dist"),
            distributions=[
                container_entry("us-east-1", "app", []),
                container_entry("eu-west-1", "app", []),
            ],
        )["distributionConfigurationArn"]
        queued = client.create_image(
            containerRecipeArn=recipe,
            infrastructureConfigurationArn=infra,
            distributionConfigurationArn=dist,
            imageTestsConfiguration=NO_TESTS,
        )["imageBuildVersionArn"]
    finally:
        queuing.stop_gracefully()
    # ...then only us-east-1 has one.
    server = KilnServer(
        data, extra_args=["--ecr-registry", f"us-east-1={registry.address}"]
    ).start()
    try:
        client = make_client(server.endpoint)
        assert_client_error(
            lambda: client.create_image(
                containerRecipeArn=recipe,
                infrastructureConfigurationArn=infra,
                distributionConfigurationArn=dist,
            ),
            "InvalidRequestException",
            "distributionConfigurationArn: distributions[1].containerDistributionConfiguration",
            "Region eu-west-1",
            "--ecr-registry eu-west-1=HOST:PORT",
        )
        image = wait_final(client, queued)
        assert image["state"]["status"] == "FAILED"
        reason = image["state"]["reason"]
        assert reason.startswith(
            "distribute stage failed: distributionConfigurationArn: distributions[1]"
        ), reason
        assert "Region eu-west-1" in reason, reason
        assert "--ecr-registry eu-west-1=HOST:PORT" in reason, reason
        assert not image.get("outputResources", {}).get("containers"), image["outputResources"]
    finally:
        server.stop_gracefully()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--ecr-registry", "http://10.0.0.5:5000"],
            "--ecr-registry `http://10.0.0.5:5000`: plain HTTP",
        ),
        (["--ecr-registry", "useast1=127.0.0.1:5000"], "`useast1` is not a Region code"),
        (["--ecr-registry", "us-east-1=127.0.0.1:5000/Upper"], "the prefix `Upper`"),
        (
            ["--ecr-registry", "127.0.0.1:5000", "--ecr-auth-file", "/nonexistent/auth.json"],
            "--ecr-auth-file /nonexistent/auth.json",
        ),
        (
            ["--ecr-registry-ca", "/etc/hostname"],
            "--ecr-registry-ca is given without --ecr-registry",
        ),
    ],
)
def test_bad_flag_values_are_refused_naming_the_flag(args, message, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    data = tmp_path / "data"
    out = subprocess.run(
        [kiln_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert message in out.stderr, out.stderr
    assert not data.exists()


def test_a_scanned_container_image_leaves_its_copy_where_ecr_configuration_says(pushing, registry):
    """imageScanningConfiguration.ecrConfiguration: the copy the scan looks at goes to its
    repository with its tags, in the build's Region's registry; the image's own destinations
    are unchanged. (This server has no vulnerability data: the scan fails saying so, and the
    image is still AVAILABLE.)"""
    client = make_client(pushing.endpoint)
    infra = create_infra(client, instanceTypes=["t3.micro"])
    repository = unique_name("own")
    recipe = container_recipe(client, repository)
    scans = unique_name("scans")
    arn = client.create_image(
        containerRecipeArn=recipe,
        infrastructureConfigurationArn=infra,
        imageScanningConfiguration={
            "imageScanningEnabled": True,
            "ecrConfiguration": {"repositoryName": f"team/{scans}", "containerTags": ["scanned"]},
        },
    )["imageBuildVersionArn"]
    image = wait_final(client, arn)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["scanState"]["status"] == "FAILED", image["scanState"]
    assert "cannot scan" in image["scanState"]["reason"]
    digest = local_digest(pushing.data_dir, arn)
    assert registry_digest(f"{registry.address}/team/{scans}:scanned") == digest
    uris = image["outputResources"]["containers"][0]["imageUris"]
    assert all(f"/{repository}" in uri for uri in uris), uris
