"""Container pipelines through the API: the recipe's Dockerfile template runs in Kiln's own
build instances (no docker daemon, no buildah), stage by stage, and the image it makes carries
what the Dockerfile says, as `skopeo` and `umoci` read it back.

Builds need root (mounts, namespaces, cgroups): CI runs as root; elsewhere the module is
skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kiln_testlib import assert_client_error, create_infra, kiln_bin, unique_name
from test_builds import BUSYBOX, bash_component, wait_final, wait_status

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

TEMPLATE = """\
# A build stage, then the image: ENV, WORKDIR, COPY --from, a user, the components.
FROM {{{ imagebuilder:parentImage }}} AS build
RUN mkdir -p /out && echo compiled > /out/app.txt

FROM {{{ imagebuilder:parentImage }}}
{{{ imagebuilder:environments }}}
ENV APP_HOME=/srv/app \\
    LEVEL=info
WORKDIR $APP_HOME
COPY --from=build /out/app.txt ./
RUN echo 'web:x:1001:1001::/srv/app:/bin/sh' >> /etc/passwd \\
 && chown -R 1001:1001 /srv/app
{{{ imagebuilder:components }}}
USER web
RUN id -u > /srv/app/uid
LABEL org.opencontainers.image.title="kiln demo"
EXPOSE 8080
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat app.txt"]
"""


@pytest.fixture(scope="module")
def infra(client) -> str:
    return create_infra(client, instanceTypes=["t3.micro"])


def kiln(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kiln_bin(), *args, "--endpoint", endpoint], capture_output=True, text=True, timeout=120
    )


def container_recipe(client: Any, template: str, components: list[str] | None = None) -> str:
    return client.create_container_recipe(
        containerType="DOCKER",
        name=unique_name("ctr"),
        semanticVersion="1.0.0",
        parentImage=BUSYBOX,
        components=[{"componentArn": c} for c in components or []],
        dockerfileTemplateData=template,
        targetRepository={"service": "ECR", "repositoryName": "kiln/demo"},
    )["containerRecipeArn"]


def test_a_container_pipeline_runs_its_dockerfile(client, infra, endpoint, tmp_path):
    stamp = bash_component(
        client,
        {"build": "test -f /srv/app/app.txt\necho from-component > /srv/app/component.txt"},
    )
    pipeline = client.create_image_pipeline(
        name=unique_name("ctr-pipe"),
        containerRecipeArn=container_recipe(client, TEMPLATE, [stamp]),
        infrastructureConfigurationArn=infra,
    )["imagePipelineArn"]
    arn = client.start_image_pipeline_execution(imagePipelineArn=pipeline)["imageBuildVersionArn"]
    image = wait_final(client, arn, timeout=300)
    log = kiln(endpoint, "logs", arn).stdout
    assert image["state"]["status"] == "AVAILABLE", (image["state"], log[-3000:])
    assert image["type"] == "DOCKER"
    uri = image["outputResources"]["containers"][0]["imageUris"][0]

    inspect = subprocess.run(
        ["skopeo", "inspect", "--config", uri], capture_output=True, text=True, check=True
    )
    config = json.loads(inspect.stdout)["config"]
    assert "APP_HOME=/srv/app" in config["Env"] and "LEVEL=info" in config["Env"]
    assert config["User"] == "web"
    assert config["WorkingDir"] == "/srv/app"
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Labels"]["org.opencontainers.image.title"] == "kiln demo"
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["cat app.txt"]

    # The files, as umoci unpacks the image.
    layout, tag = uri[len("oci:"):].rsplit(":", 1)
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
        capture_output=True, text=True, check=True,
    )
    root = bundle / "rootfs"
    assert (root / "srv/app/app.txt").read_text() == "compiled\n"
    assert (root / "srv/app/component.txt").read_text() == "from-component\n"
    assert (root / "srv/app/uid").read_text() == "1001\n"
    assert not (root / "out").exists(), "the build stage's files stay in that stage"
    # The build log has the Dockerfile's own steps.
    assert "RUN (line 3)" in log and "RUN (line 16)" in log, log[-3000:]


def test_a_failing_run_fails_the_image_with_its_line_and_output(client, infra, endpoint):
    template = (
        "FROM {{{ imagebuilder:parentImage }}}\n"
        "RUN echo preparing\n"
        "RUN echo no-such-package >&2 && exit 100\n"
    )
    arn = client.create_image(
        containerRecipeArn=container_recipe(client, template),
        infrastructureConfigurationArn=infra,
    )["imageBuildVersionArn"]
    image = wait_final(client, arn)
    assert image["state"]["status"] == "FAILED"
    reason = image["state"]["reason"]
    assert "Dockerfile line 3" in reason and "exit status 100" in reason, reason
    assert "no-such-package" in reason, reason
    log = kiln(endpoint, "logs", arn).stdout
    assert "preparing" in log and "no-such-package" in log, log[-2000:]


def test_a_container_build_is_cancelled_during_a_run(client, infra):
    template = "FROM {{{ imagebuilder:parentImage }}}\nRUN sleep 300\n"
    arn = client.create_image(
        containerRecipeArn=container_recipe(client, template),
        infrastructureConfigurationArn=infra,
    )["imageBuildVersionArn"]
    wait_status(client, arn, "BUILDING")
    import time

    time.sleep(1.5)
    client.cancel_image_creation(imageBuildVersionArn=arn)
    started = time.monotonic()
    image = wait_final(client, arn, timeout=60)
    assert image["state"]["status"] == "CANCELLED", image["state"]
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    ("template", "fragments"),
    [
        ("FROM {{{ imagebuilder:parentImage }}}\nCOPY app.py /app/\n", ["line 2", "build context"]),
        ("FROM {{{ imagebuilder:parentImage }}}\nADD ./src /src\n", ["line 2", "build context"]),
        ("FROM {{{ imagebuilder:parentImage }}}\nRUN --mount=type=cache,target=/c true\n", ["line 2", "--mount"]),
        ("FROM {{{ imagebuilder:parentImage }}}\nFROM nginx:latest\n", ["line 2", "nginx:latest", "parentImage"]),
        ("FROM {{{ imagebuilder:parentImage }}}\nCOPY --from=later /x /x\nFROM scratch AS later\n", ["line 2", "later"]),
        ("FROM {{{ imagebuilder:parentImage }}}\nFROBNICATE now\n", ["line 2", "FROBNICATE"]),
        ("FROM {{{ imagebuilder:parentImage }}}\nRUN echo {{{ imagebuilder:nonsense }}}\n", ["imagebuilder:nonsense"]),
    ],
)
def test_templates_a_container_build_cannot_run_are_refused_at_create(client, template, fragments):
    assert_client_error(
        lambda: container_recipe(client, template),
        "InvalidRequestException",
        "dockerfileTemplateData",
        *fragments,
    )
