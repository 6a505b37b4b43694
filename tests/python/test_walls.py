"""Account walls on everything a caller names: parent images and the
network actions of builds.

- An Image Builder image ARN (exact or `x` filter) of another account is refused when the
  recipe is created; an `ami-` id finds only the caller's own images, so another account's
  fails the build.
- `oci:` and `file://` parents are read only under the operator's `--import-dir`s, never from
  Kiln's data directory (not even when an import dir contains it), and never through a symlink
  that leads out, whether it was there at create time or swapped in before the build.
- Registries on loopback or private addresses need the operator's `--allow-registry`.
- WebDownload in a build cannot reach the host: not the API port, not a loopback HTTP server,
  not through a redirect; a build without network cannot download at all.

Builds need root (mounts, namespaces, cgroups): CI runs as root; elsewhere the module is
skipped.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from kiln_testlib import (
    KilnServer,
    arn_prefix,
    assert_client_error,
    create_infra,
    kiln_bin,
    make_client,
    unique_name,
)
from test_builds import bash_component, build, build_id, busybox_rootfs_archive, component, recipe

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

OTHER_KEY = "AKIDWALLSACCOUNT"
OTHER_ACCOUNT = "111122223333"
REFUSED = "InvalidParameterValueException"


class Walls:
    """A server whose import dir is `root`, the parent of its data directory `root/data`."""

    def __init__(self, root: Path, outside: Path) -> None:
        self.root = root
        self.imports = root / "imports"
        self.imports.mkdir()
        self.outside = outside
        self.server = KilnServer(
            root / "data",
            extra_args=["--import-dir", str(root)],
            keys={OTHER_KEY: OTHER_ACCOUNT},
        ).start()
        self.data = self.server.data_dir
        self.mine = make_client(self.server.endpoint)
        self.theirs = make_client(self.server.endpoint, access_key=OTHER_KEY)
        self.infra = create_infra(self.mine, instanceTypes=["t3.micro"])
        self.their_infra = create_infra(self.theirs, instanceTypes=["t3.micro"])


@pytest.fixture(scope="module")
def walls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walls]:
    w = Walls(tmp_path_factory.mktemp("walls"), tmp_path_factory.mktemp("outside"))
    yield w
    w.server.stop_gracefully()


@pytest.fixture(scope="module")
def a_image(walls: Walls) -> dict:
    """An image of the default account, with a file only that account should read."""
    r = recipe(walls.mine, [bash_component(walls.mine, {"build": "mkdir -p /opt\necho A-secret > /opt/a.txt"})])
    image = build(walls.mine, r, walls.infra, tests=False)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    return image


@pytest.fixture(scope="module")
def secret_archive(walls: Walls) -> Path:
    """A root-only root filesystem archive outside every import dir."""
    private = walls.outside / "private"
    private.mkdir(mode=0o700)
    path = private / "secret.tar.gz"
    busybox_rootfs_archive(path)
    os.chmod(path, 0o600)
    return path


def their_recipe(client: Any, parent: str) -> Any:
    return client.create_image_recipe(
        name=unique_name("recipe"),
        semanticVersion="1.0.0",
        parentImage=parent,
        components=[{"componentArn": bash_component(client, {"build": "true"})}],
    )


# --- Image Builder images of other accounts ------------------------------------------------



def export_layout(walls, arn: str, layout: Path) -> None:
    """`kiln image export ARN --format oci -o LAYOUT` against the walls server."""
    out = subprocess.run(
        [kiln_bin(), "image", "export", arn, "--format", "oci", "-o", str(layout),
         "--endpoint", walls.server.endpoint],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr

def test_another_accounts_image_arn_is_refused(walls, a_image):
    arn = a_image["arn"]
    name_arn = arn.rsplit("/", 2)[0]
    for parent in (arn, f"{name_arn}/x.x.x", f"{name_arn}/1.0.0"):
        assert_client_error(
            lambda: their_recipe(walls.theirs, parent),
            REFUSED,
            "parentImage",
            "not an image of your account",
        )
    assert_client_error(
        lambda: walls.theirs.create_container_recipe(
            name=unique_name("ctr"),
            semanticVersion="1.0.0",
            containerType="DOCKER",
            parentImage=arn,
            components=[{"componentArn": bash_component(walls.theirs, {"build": "true"})}],
            dockerfileTemplateData="FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}",
            targetRepository={"service": "ECR", "repositoryName": "r"},
        ),
        REFUSED,
        "parentImage",
        "not an image of your account",
    )
    # The owner itself may.
    assert their_recipe(walls.mine, f"{name_arn}/x.x.x")["imageRecipeArn"].startswith(arn_prefix())


def test_another_accounts_ami_id_finds_nothing(walls, a_image):
    ami = a_image["outputResources"]["amis"][0]["image"]
    r = their_recipe(walls.theirs, ami)["imageRecipeArn"]
    image = build(walls.theirs, r, walls.their_infra, tests=False)
    assert image["state"]["status"] == "FAILED"
    assert f"that account {OTHER_ACCOUNT} owns or may launch" in image["state"]["reason"]
    # The same id is the owner's image.
    check = bash_component(walls.mine, {"build": "grep -q A-secret /opt/a.txt"})
    mine = walls.mine.create_image_recipe(
        name=unique_name("recipe"), semanticVersion="1.0.0", parentImage=ami,
        components=[{"componentArn": check}],
    )["imageRecipeArn"]
    assert build(walls.mine, mine, walls.infra, tests=False)["state"]["status"] == "AVAILABLE"


# --- Paths on this machine -------------------------------------------------------------------


def test_kilns_own_store_is_never_a_parent(walls, a_image, client):
    """B names A's image in the store directly; the import dir (root) contains the data dir."""
    store = walls.data / "images"
    for parent in (
        f"oci:{store}:kiln-{build_id(a_image['arn'])}",
        f"oci:{walls.imports}/../data/images:kiln-{build_id(a_image['arn'])}",
        f"file://{walls.data}/kiln.db.tar",
    ):
        assert_client_error(
            lambda: their_recipe(walls.theirs, parent), REFUSED, "parentImage", "data directory"
        )
    # The shared session server lists no import dir at all.
    assert_client_error(
        lambda: their_recipe(client, f"oci:{store}:kiln-{build_id(a_image['arn'])}"),
        REFUSED,
        "parentImage",
        "--import-dir",
    )


def test_host_paths_outside_the_import_dirs_are_refused(walls, secret_archive, client):
    for c in (walls.theirs, walls.mine, client):
        for parent in (
            f"file://{secret_archive}",
            "file:///root/secret.tar",
            f"oci:{secret_archive.parent}",
            f"file://{walls.imports}/../../{secret_archive.parent.parent.name}/private/secret.tar.gz",
        ):
            assert_client_error(
                lambda: their_recipe(c, parent), REFUSED, "parentImage", "--import-dir"
            )


def test_parents_under_an_import_dir_build(walls, a_image, tmp_path):
    layout = walls.imports / unique_name("layout")
    export_layout(walls, a_image["arn"], layout)
    check = "grep -q A-secret /opt/a.txt"
    r = recipe(walls.mine, [bash_component(walls.mine, {"build": check})], parent=f"oci:{layout}:1.0.0-1")
    image = build(walls.mine, r, walls.infra, tests=False)
    assert image["state"]["status"] == "AVAILABLE", image["state"]

    archive = walls.imports / unique_name("rootfs")
    archive = archive.with_name(archive.name + ".tar.gz")
    busybox_rootfs_archive(archive)
    r = recipe(
        walls.theirs,
        [bash_component(walls.theirs, {"build": "grep -q 'an archive' /opt/app/hello.txt"})],
        parent=f"file://{archive}",
    )
    image = build(walls.theirs, r, walls.their_infra, tests=False)
    assert image["state"]["status"] == "AVAILABLE", image["state"]


def test_symlinks_out_of_the_import_dir_are_refused(walls, a_image, secret_archive):
    # There when the recipe is created.
    link = walls.imports / unique_name("escape")
    link = link.with_name(link.name + ".tar.gz")
    link.symlink_to(secret_archive)
    assert_client_error(
        lambda: their_recipe(walls.theirs, f"file://{link}"), REFUSED, "parentImage", "symbolic link"
    )

    # Swapped in after the recipe was created: the build reads nothing and fails.
    swapped = walls.imports / unique_name("swap")
    swapped = swapped.with_name(swapped.name + ".tar.gz")
    busybox_rootfs_archive(swapped)
    r = their_recipe(walls.theirs, f"file://{swapped}")["imageRecipeArn"]
    swapped.unlink()
    swapped.symlink_to(secret_archive)
    image = build(walls.theirs, r, walls.their_infra, tests=False)
    assert image["state"]["status"] == "FAILED"
    assert "outside" in image["state"]["reason"], image["state"]["reason"]

    # A layout swapped for a link into Kiln's own store.
    layout = walls.imports / unique_name("layout")
    export_layout(walls, a_image["arn"], layout)
    tag = f"kiln-{build_id(a_image['arn'])}"
    r = their_recipe(walls.theirs, f"oci:{layout}:{tag}")["imageRecipeArn"]
    shutil.rmtree(layout)
    layout.symlink_to(walls.data / "images")
    image = build(walls.theirs, r, walls.their_infra, tests=False)
    assert image["state"]["status"] == "FAILED"
    assert "data directory" in image["state"]["reason"], image["state"]["reason"]

    # A blob inside a layout that links out is not followed either.
    layout = walls.imports / unique_name("layout")
    export_layout(walls, a_image["arn"], layout)
    r = their_recipe(walls.theirs, f"oci:{layout}:1.0.0-1")["imageRecipeArn"]
    blob = next((layout / "blobs" / "sha256").iterdir())
    target = walls.outside / blob.name
    shutil.move(blob, target)
    blob.symlink_to(target)
    image = build(walls.theirs, r, walls.their_infra, tests=False)
    assert image["state"]["status"] == "FAILED"
    assert "outside" in image["state"]["reason"] or "symbolic link" in image["state"]["reason"], image["state"]["reason"]


# --- Registries ----------------------------------------------------------------------------


def test_loopback_registries_need_the_operators_listing(walls, tmp_path):
    for parent in (
        "127.0.0.1:5000/kiln/app:1",
        "localhost:5000/kiln/app:1",
        "[::1]:5000/kiln/app",
        "169.254.169.254/latest/meta-data",
        "10.0.0.5:5000/team/app:1",
    ):
        assert_client_error(
            lambda: their_recipe(walls.theirs, parent), REFUSED, "parentImage", "--allow-registry"
        )
    listed = KilnServer(tmp_path / "data", extra_args=["--allow-registry", "127.0.0.1:5000"]).start()
    try:
        c = make_client(listed.endpoint)
        assert their_recipe(c, "127.0.0.1:5000/kiln/app:1")["imageRecipeArn"]
        assert_client_error(
            lambda: their_recipe(c, "127.0.0.1:5001/kiln/app:1"), REFUSED, "--allow-registry 127.0.0.1"
        )
    finally:
        listed.stop_gracefully()


# --- WebDownload from builds -------------------------------------------------------------------


class Hits(http.server.BaseHTTPRequestHandler):
    count = 0

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        Hits.count += 1
        body = b"the host's own service\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def host_http() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 (this machine's own), counting requests."""
    Hits.count = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def download(client: Any, url: str) -> str:
    return component(
        client,
        "name: download\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
        "      - name: Fetch\n        action: WebDownload\n        timeoutSeconds: 60\n"
        f"        inputs:\n          - source: {url}\n            destination: /tmp/fetched\n",
    )


def test_web_download_cannot_reach_the_host(walls, host_http):
    networked = create_infra(walls.theirs, instanceTypes=["t3.micro"], subnetId="subnet-0123456789abcdef0")
    for url in (
        f"http://127.0.0.1:{host_http}/secret",
        f"http://localhost:{host_http}/secret",
        f"{walls.server.endpoint}/kiln/v1/schedule",
        f"http://169.254.169.254/latest/meta-data/",
    ):
        r = recipe(walls.theirs, [download(walls.theirs, url)])
        image = build(walls.theirs, r, networked, tests=False)
        assert image["state"]["status"] == "FAILED", url
        assert "may not reach the host" in image["state"]["reason"], image["state"]["reason"]
    assert Hits.count == 0

    # Without a network the instance could not download, so neither can the build.
    r = recipe(walls.theirs, [download(walls.theirs, "https://example.com/file")])
    image = build(walls.theirs, r, walls.their_infra, tests=False)
    assert image["state"]["status"] == "FAILED"
    assert "has no network" in image["state"]["reason"], image["state"]["reason"]


def test_web_download_from_a_listed_host_service(host_http, tmp_path):
    server = KilnServer(tmp_path / "data", extra_args=["--allow-registry", f"127.0.0.1:{host_http}"]).start()
    try:
        c = make_client(server.endpoint)
        networked = create_infra(c, instanceTypes=["t3.micro"], subnetId="subnet-0123456789abcdef0")
        r = recipe(c, [download(c, f"http://127.0.0.1:{host_http}/file")])
        image = build(c, r, networked, tests=False)
        assert image["state"]["status"] == "AVAILABLE", image["state"]
        assert Hits.count == 1
    finally:
        server.stop_gracefully()


def test_the_build_checks_again_with_the_servers_current_settings(tmp_path):
    """Recipes made while the operator allowed their parents; the server restarts without
    --import-dir and --allow-registry: their builds read and pull nothing and fail."""
    imports = tmp_path / "imports"
    imports.mkdir()
    archive = imports / "rootfs.tar.gz"
    busybox_rootfs_archive(archive)
    allowed = ["--import-dir", str(imports), "--allow-registry", "127.0.0.1:5999"]
    server = KilnServer(tmp_path / "data", extra_args=allowed).start()
    try:
        c = make_client(server.endpoint)
        from_file = their_recipe(c, f"file://{archive}")["imageRecipeArn"]
        from_registry = their_recipe(c, "127.0.0.1:5999/kiln/app:1")["imageRecipeArn"]
        infra = create_infra(c, instanceTypes=["t3.micro"])
    finally:
        server.stop_gracefully()
    server = KilnServer(tmp_path / "data").start()
    try:
        c = make_client(server.endpoint)
        for r, flag in ((from_file, "--import-dir"), (from_registry, "--allow-registry")):
            image = build(c, r, infra, tests=False)
            assert image["state"]["status"] == "FAILED"
            assert flag in image["state"]["reason"], image["state"]["reason"]
    finally:
        server.stop_gracefully()
