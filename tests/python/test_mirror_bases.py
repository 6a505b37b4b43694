"""The managed bases made by Kiln itself from the Debian mirror (`--base-source mirror`): no
host busybox, no mmdebstrap; the release verified with the Debian archive keyring built into
Kiln. A server of its own builds on `busybox-x86` to AVAILABLE. (The Debian base is made the
same way under the default `--base-source auto`, which test_builds.py's
test_the_managed_debian_base and tests/bare-debian/run.sh build on; one build of it here would
only cost CI another minute.)

Needs root (builds; the Debian base's dpkg runs chrooted) and the network to the Debian
mirror, like test_builds.py's test_the_managed_debian_base.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from kiln_testlib import KilnServer, create_infra, make_client
from test_builds import build_on

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

BUSYBOX = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x"


@pytest.fixture(scope="module")
def mirror_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KilnServer]:
    srv = KilnServer(
        tmp_path_factory.mktemp("kiln-mirror") / "data",
        extra_args=["--base-source", "mirror"],
    ).start()
    yield srv
    srv.stop_gracefully()


@pytest.fixture(scope="module")
def mclient(mirror_server: KilnServer) -> Any:
    return make_client(mirror_server.endpoint)


@pytest.fixture(scope="module")
def minfra(mclient: Any) -> str:
    return create_infra(mclient, instanceTypes=["t3.micro"])


def store_history(server: KilnServer, tag_part: str) -> str:
    """The image configurations of the server's store (their history says how a base was made)."""
    blobs = server.data_dir / "images" / "blobs" / "sha256"
    found = []
    for blob in blobs.iterdir():
        if blob.stat().st_size < 64 * 1024:
            text = blob.read_bytes().decode("utf-8", "replace")
            if tag_part in text:
                found.append(text)
    return "\n".join(found)


def test_busybox_from_the_mirror(mirror_server, mclient, minfra):
    image = build_on(mclient, minfra, BUSYBOX, "busybox | head -1 | grep -q BusyBox\necho ok > /tmp/x")
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    # Made from busybox-static of the mirror, not from the host's /bin/busybox.
    history = store_history(mirror_server, "busybox from busybox-static")
    assert "busybox from busybox-static" in history
