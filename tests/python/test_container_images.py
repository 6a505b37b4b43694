"""Container pipelines through the API: the recipe's Dockerfile template runs in Kiln's own
build instances (no docker daemon, no buildah), stage by stage, and the image it makes carries
what the Dockerfile says, as `skopeo` and `umoci` read it back.

Builds need root (mounts, namespaces, cgroups): CI runs as root; elsewhere the module is
skipped.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
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
 && chown -R 1001:1001 /srv/app && mkdir -p /var/lib/dpkg \\
 && printf 'Package: kiln-demo\\nStatus: install ok installed\\nVersion: 1.2-3\\n' > /var/lib/dpkg/status
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


def image_files(uri: str, out: Path) -> dict[str, bytes]:
    """Every regular file of the image (upper layers win), read from its layers."""
    insecure = ["--src-tls-verify=false"] if uri.startswith("docker://") else []
    subprocess.run(
        ["skopeo", "copy", *insecure, "--dest-decompress", uri, f"dir:{out}"],
        capture_output=True, text=True, check=True,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    files: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        with tarfile.open(out / layer["digest"].split(":", 1)[1]) as tar:
            for member in tar.getmembers():
                name = member.name.lstrip("./")
                if member.isfile():
                    files[name] = tar.extractfile(member).read()
    return files


def container_recipe(client: Any, template: str, components: list[str] | None = None) -> str:
    extra = {"components": [{"componentArn": c} for c in components]} if components else {}
    return client.create_container_recipe(
        containerType="DOCKER",
        name=unique_name("ctr"),
        semanticVersion="1.0.0",
        parentImage=BUSYBOX,
        **extra,
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

    # The files, from the image's layers as skopeo copies them out (decompressed).
    files = image_files(uri, tmp_path / "copy")
    assert files["srv/app/app.txt"] == b"compiled\n"
    assert files["srv/app/component.txt"] == b"from-component\n"
    assert files["srv/app/uid"] == b"1001\n"
    assert not any(name.startswith("out/") for name in files), "the build stage stays there"
    # Listed as a DOCKER image, with the packages of its final root file system.
    listed = client.list_images(filters=[{"name": "type", "values": ["DOCKER"]}])["imageVersionList"]
    assert any(arn.startswith(v["arn"]) for v in listed), listed
    amis = client.list_images(filters=[{"name": "type", "values": ["AMI"]}])["imageVersionList"]
    assert all(not arn.startswith(v["arn"]) for v in amis), amis
    packages = client.list_image_packages(imageBuildVersionArn=arn)["imagePackageList"]
    assert {"packageName": "kiln-demo", "packageVersion": "1.2-3"} in packages, packages
    # Exported as an OCI layout and as a `docker save` archive.
    for fmt, out in (("oci", tmp_path / "layout"), ("docker-archive", tmp_path / "image.tar")):
        exported = kiln(endpoint, "image", "export", arn, "--format", fmt, "-o", str(out))
        assert exported.returncode == 0, exported.stderr
    archived = subprocess.run(
        ["skopeo", "inspect", "--config", f"docker-archive:{tmp_path / 'image.tar'}"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(archived.stdout)["config"]["User"] == "web"
    with tarfile.open(tmp_path / "image.tar") as tar:
        saved = json.load(tar.extractfile("manifest.json"))
    # Named as docker save names it (docker load shows it without docker.io/library/).
    assert saved[0]["RepoTags"] == [f"docker.io/library/{arn.split('/')[1]}:1.0.0-1"], saved
    listed = subprocess.run(
        ["skopeo", "inspect", f"oci:{tmp_path / 'layout'}:1.0.0-1"], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
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
        ("FROM --platform=linux/arm64 {{{ imagebuilder:parentImage }}}\n", ["line 1", "linux/arm64"]),
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


def test_add_downloads_a_url_when_the_build_has_network(tmp_path):
    body = b"downloaded by ADD\n"
    digest = hashlib.sha256(body).hexdigest()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    port = files.server_address[1]
    # The build may download from this machine only because the operator allows the address.
    srv = KilnServer(tmp_path / "data", extra_args=["--allow-registry", f"127.0.0.1:{port}"]).start()
    try:
        client = make_client(srv.endpoint)
        with_network = create_infra(
            client, instanceTypes=["t3.micro"], subnetId="subnet-0123456789abcdef0"
        )
        template = (
            "FROM {{{ imagebuilder:parentImage }}}\n"
            f"ADD --checksum=sha256:{digest} http://127.0.0.1:{port}/files/data.txt /opt/\n"
            "RUN test \"$(cat /opt/data.txt)\" = 'downloaded by ADD' && stat -c %a /opt/data.txt > /opt/mode\n"
        )
        recipe = container_recipe(client, template)
        arn = client.create_image(containerRecipeArn=recipe, infrastructureConfigurationArn=with_network)[
            "imageBuildVersionArn"
        ]
        image = wait_final(client, arn)
        assert image["state"]["status"] == "AVAILABLE", image["state"]
        got = image_files(image["outputResources"]["containers"][0]["imageUris"][0], tmp_path / "copy")
        assert got["opt/data.txt"] == body
        assert got["opt/mode"] == b"600\n", "a remote ADD is 0600, as Docker makes it"

        # A wrong checksum, and a build without network, fail naming why.
        bad = template.replace(digest, "0" * 64)
        arn = client.create_image(
            containerRecipeArn=container_recipe(client, bad), infrastructureConfigurationArn=with_network
        )["imageBuildVersionArn"]
        image = wait_final(client, arn)
        assert image["state"]["status"] == "FAILED"
        assert "Dockerfile line 2" in image["state"]["reason"], image["state"]
        assert "checksum" in image["state"]["reason"].lower(), image["state"]
        offline = create_infra(client, instanceTypes=["t3.micro"])
        arn = client.create_image(containerRecipeArn=recipe, infrastructureConfigurationArn=offline)[
            "imageBuildVersionArn"
        ]
        image = wait_final(client, arn)
        assert image["state"]["status"] == "FAILED"
        assert "no network" in image["state"]["reason"], image["state"]
    finally:
        srv.stop_gracefully()
        files.shutdown()


# --- The same Dockerfile through buildah bud ------------------------------------------------

COMPARED = """\
FROM {{{ imagebuilder:parentImage }}} AS build
ARG VERSION=1.2
RUN mkdir -p /out/lib && echo "compiled $VERSION" > /out/app.txt && ln -s ../app.txt /out/lib/link
FROM {{{ imagebuilder:parentImage }}}
ENV APP_HOME=/srv/app LEVEL=info
WORKDIR $APP_HOME
COPY --from=build /out/ ./
RUN echo 'web:x:1001:1001::/srv/app:/bin/sh' >> /etc/passwd && chown -R 1001:1001 /srv/app \\
 && rm /etc/group && chmod 0750 /srv/app/lib
USER web
RUN id -u > /srv/app/uid && mkdir data && echo kept > data/file
LABEL team="web ops" tier=front
EXPOSE 8080 53/udp
VOLUME /srv/app/data
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q -O- http://localhost:8080/ || exit 1
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat app.txt"]
"""

# What only buildah leaves in a layer: the files it mounts over in every RUN container.
BUILDAH_MOUNT_POINTS = {"etc/hostname", "etc/hosts", "etc/resolv.conf", "run"}

CONFIG_FIELDS = (
    "Env", "User", "WorkingDir", "Entrypoint", "Cmd", "ExposedPorts", "Labels", "Volumes",
    "StopSignal", "Healthcheck", "OnBuild",
)


def copied_out(reference: str, out: Path) -> tuple[dict, list[Path]]:
    """The image's configuration and its layers (decompressed tar files), as skopeo copies them."""
    subprocess.run(
        ["skopeo", "copy", "--dest-decompress", reference, f"dir:{out}"],
        capture_output=True, text=True, check=True,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    config = json.loads((out / manifest["config"]["digest"].split(":", 1)[1]).read_text())
    return config, [out / layer["digest"].split(":", 1)[1] for layer in manifest["layers"]]


def entries(layer: Path) -> dict[str, tuple]:
    """A layer's entries without their times: type, mode, owner, content digest, link target."""
    found = {}
    with tarfile.open(layer) as tar:
        for m in tar.getmembers():
            name = m.name.lstrip("./").rstrip("/")
            if name.split("/")[0] in BUILDAH_MOUNT_POINTS or name in BUILDAH_MOUNT_POINTS:
                continue
            digest = hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isfile() else ""
            # The type is its own field; the mode is compared by its permission bits (Go's tar
            # writer also puts the type bits there).
            found[name] = (m.type, oct(m.mode & 0o7777), m.uid, m.gid, digest, m.linkname)
    # buildah's mount points bring their directory along even when nothing else changed in it.
    if "etc" in found and not any(name.startswith("etc/") for name in found):
        del found["etc"]
    return found


def comparable(config: dict) -> dict:
    c = config.get("config") or {}
    out = {k: c.get(k) for k in CONFIG_FIELDS if c.get(k) not in (None, {}, [], "")}
    labels = {k: v for k, v in (out.get("Labels") or {}).items() if k != "io.buildah.version"}
    if labels:
        out["Labels"] = labels
    else:
        out.pop("Labels", None)
    return out


# The syntax a builder must read as BuildKit and buildah do: each is built by both and compared.
# Where Debian 12's buildah (1.28, openshift/imagebuilder) and BuildKit (docker build, what AWS
# runs) read a Dockerfile differently, Kiln reads it as BuildKit does, so those cases are not
# here: EXPOSE ranges (BuildKit lists each port), shell-form CMD/ENTRYPOINT after SHELL (BuildKit
# runs them with that shell), a backslash under `# escape=`` (BuildKit keeps it) and
# here-documents (buildah 1.28 has none). kiln-dockerfile's tests hold BuildKit's own test data.
PARSED = {
    "escape-directive": (
        "# escape=`\n"
        "FROM {{{ imagebuilder:parentImage }}}\n"
        "ENV A=1 `\n"
        "    B=\"two words\"\n"
        "LABEL \"key with space\"=\"v\" multi=\"a`\n"
        "b\"\n"
        "RUN echo `\n"
        "    continued > /continued\n"
    ),
    "legacy-env-and-variables": (
        "ARG V=1.2\n"
        "FROM {{{ imagebuilder:parentImage }}}\n"
        "ARG V\n"
        "ARG PORT=8080\n"
        "ENV GREETING hello   spaced world\n"
        "ENV X=${V:-none} Y=${UNSET:-dflt} Z=${V:+set} W=\"$V-$PORT\" Q='$V'\n"
        "EXPOSE $PORT ${PORT}/udp\n"
        "LABEL a='single $V' b=\"double $V\" c=no\\ quote\n"
    ),
    "shells-commands-and-users": (
        "FROM {{{ imagebuilder:parentImage }}}\n"
        "SHELL [\"/bin/sh\", \"-ec\"]\n"
        "RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && mkdir -p /home/app\n"
        "WORKDIR /a\n"
        "WORKDIR b\n"
        "WORKDIR ../c\n"
        "RUN pwd > here \\\n"
        "# a comment inside the continuation\n"
        " && echo done >> here\n"
        "USER 1000:1000\n"
        "VOLUME [\"/data\", \"/logs\"]\n"
        "STOPSIGNAL SIGINT\n"
        "HEALTHCHECK NONE\n"
        "ONBUILD RUN echo triggered\n"
        "ENTRYPOINT [\"/bin/sh\"]\n"
        "CMD [\"-c\", \"echo hi\"]\n"
    ),
    "stages": COMPARED,
}


@pytest.fixture(scope="module")
def buildah_store(server, tmp_path_factory) -> Any:
    """A private buildah store (vfs) holding Kiln's managed busybox base as localhost/kiln-base:1;
    `bud(dockerfile, out)` builds a Dockerfile there and answers its configuration and layers."""
    if not shutil.which("buildah"):
        pytest.fail("buildah is not installed (bash .ci/run installs it)")
    store = tmp_path_factory.mktemp("buildah")
    storage = f"[vfs@{store}/root+{store}/run]"
    buildah = ["buildah", "--root", f"{store}/root", "--runroot", f"{store}/run", "--storage-driver", "vfs"]

    def bud(dockerfile: str, out: Path) -> tuple[dict, list[Path]]:
        if not list(store.glob("root/vfs-images/*")):
            base = f"oci:{server.data_dir / 'images'}:aws-busybox-x86-1.0.0"
            subprocess.run(
                ["skopeo", "copy", base, f"containers-storage:{storage}localhost/kiln-base:1"],
                capture_output=True, text=True, check=True,
            )
        context = out / "context"
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(
            dockerfile.replace("{{{ imagebuilder:parentImage }}}", "localhost/kiln-base:1")
        )
        built = subprocess.run(
            [*buildah, "bud", "--isolation", "chroot", "--pull-never", "--format", "docker",
             "-t", "localhost/compared:1", str(context)],
            capture_output=True, text=True, timeout=300,
        )
        assert built.returncode == 0, built.stderr[-3000:]
        try:
            return copied_out(f"containers-storage:{storage}localhost/compared:1", out / "image")
        finally:
            subprocess.run([*buildah, "rmi", "--force", "localhost/compared:1"], capture_output=True)

    return bud


@pytest.mark.parametrize("name", sorted(PARSED))
def test_kiln_builds_what_buildah_bud_builds_from_the_same_dockerfile(
    client, infra, buildah_store, tmp_path, name
):
    dockerfile = PARSED[name]
    arn = client.create_image(
        containerRecipeArn=container_recipe(client, dockerfile), infrastructureConfigurationArn=infra
    )["imageBuildVersionArn"]
    image = wait_final(client, arn)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    kiln_config, kiln_layers = copied_out(
        image["outputResources"]["containers"][0]["imageUris"][0], tmp_path / "kiln"
    )
    buildah_config, buildah_layers = buildah_store(dockerfile, tmp_path / "buildah")

    assert comparable(kiln_config) == comparable(buildah_config)
    assert len(kiln_layers) == len(buildah_layers)
    for ours, theirs in zip(kiln_layers, buildah_layers):
        mine, other = entries(ours), entries(theirs)
        assert sorted(mine) == sorted(other), (sorted(set(mine) ^ set(other)))
        for entry in mine:
            assert mine[entry] == other[entry], (entry, mine[entry], other[entry])


def test_a_pushed_image_pulls_back_and_is_the_parent_of_the_next(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = DockerRegistry(tmp_path / "registry", port).start()
    address = registry.address
    srv = KilnServer(
        tmp_path / "data",
        extra_args=["--ecr-registry", address, "--allow-registry", address],
    ).start()
    try:
        client = make_client(srv.endpoint)
        infra = create_infra(client, instanceTypes=["t3.micro"])
        pipeline = client.create_image_pipeline(
            name=unique_name("ctr-pipe"),
            containerRecipeArn=container_recipe(client, TEMPLATE),
            infrastructureConfigurationArn=infra,
        )["imagePipelineArn"]
        first = client.start_image_pipeline_execution(imagePipelineArn=pipeline)[
            "imageBuildVersionArn"
        ]
        image = wait_final(client, first, timeout=300)
        assert image["state"]["status"] == "AVAILABLE", image["state"]
        uris = image["outputResources"]["containers"][0]["imageUris"]
        tagged = next(u for u in uris if ":1.0.0-1" in u)
        assert tagged == f"{address}/kiln/demo:1.0.0-1", uris

        # Pulled back with skopeo: the configuration the Dockerfile set.
        pulled = tmp_path / "pulled"
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{tagged}", f"oci:{pulled}:x"],
            capture_output=True, text=True, check=True,
        )
        inspect = subprocess.run(
            ["skopeo", "inspect", "--config", f"oci:{pulled}:x"],
            capture_output=True, text=True, check=True,
        )
        config = json.loads(inspect.stdout)["config"]
        assert config["User"] == "web" and config["WorkingDir"] == "/srv/app", config
        assert config["Entrypoint"] == ["/bin/sh", "-c"] and config["Cmd"] == ["cat app.txt"]

        # A second container recipe builds on the pushed image by its registry URI.
        second_template = (
            "FROM {{{ imagebuilder:parentImage }}}\n"
            "USER root\n"
            "RUN test \"$(cat /srv/app/app.txt)\" = compiled && echo second > /srv/app/second.txt\n"
        )
        second = client.create_container_recipe(
            containerType="DOCKER",
            name=unique_name("ctr"),
            semanticVersion="1.0.0",
            parentImage=tagged,
            dockerfileTemplateData=second_template,
            targetRepository={"service": "ECR", "repositoryName": "kiln/second"},
        )["containerRecipeArn"]
        arn = client.create_image(containerRecipeArn=second, infrastructureConfigurationArn=infra)[
            "imageBuildVersionArn"
        ]
        image = wait_final(client, arn, timeout=300)
        assert image["state"]["status"] == "AVAILABLE", image["state"]
        uri = image["outputResources"]["containers"][0]["imageUris"][0]
        assert uri.startswith(f"{address}/kiln/second:"), uri
        files = image_files(f"docker://{uri}", tmp_path / "second")
        assert files["srv/app/second.txt"] == b"second\n"
        assert files["srv/app/app.txt"] == b"compiled\n"
    finally:
        srv.stop_gracefully()
        registry.stop()
