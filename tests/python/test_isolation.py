"""Build instances contain their code: a component tries every way out of an instance that
matters, from inside a real build made through the API, and each attempt must fail.

The component runs each attempt as `attempt NAME COMMAND`, which prints `ATTEMPT NAME refused`
or `ATTEMPT NAME ALLOWED` to the build log; the test reads the log with `kiln logs` and wants
every attempt refused (and every attempt present, so that a component that stopped half-way
does not pass). The build's infrastructure configuration has a subnet, so the instance has a
network: it must reach an "outside" server (a network namespace this test makes, with a veth
pair to the host: traffic never leaves namespaces the test created) through NAT, and never a
port on the host: not the API's port on any host address, not the gateway.

Builds need root (mounts, namespaces, cgroups): CI runs as root; elsewhere the module is
skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from kiln_testlib import create_infra
from test_builds import bash_component, build, kiln, recipe

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

DEBIAN = "arn:aws:imagebuilder:us-east-1:aws:image/debian-12-minimal-x86/x.x.x"

# `attempt NAME COMMAND...` runs the command with its output in the log and says whether it
# worked. Defined at the top of every script that uses it.
ATTEMPT = """attempt() { n=$1; shift; if ( "$@" ) </dev/null; then echo "ATTEMPT $n ALLOWED"; else echo "ATTEMPT $n refused"; fi; }"""


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses, read on the host (`ip -4 addr`)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True)
    found = []
    for line in out.stdout.splitlines():
        address = line.split()[3].split("/")[0]
        if not address.startswith(("10.213.", "198.18.")):
            found.append(address)
    return found


class Outside:
    """A network namespace standing for the internet, with a TCP server answering `pong`."""

    def __init__(self) -> None:
        n = os.getpid() % 250 + 1
        self.ns = f"kiln-pytest-out-{os.getpid()}"
        self.host_if = f"kpo{os.getpid()}"[:15]
        self.address = f"198.18.{n}.2"
        self.port = 18000 + n
        self.server: subprocess.Popen[str] | None = None
        ip = lambda *args: subprocess.run(["ip", *args], check=True, capture_output=True)  # noqa: E731
        ip("netns", "add", self.ns)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        ip("addr", "add", f"198.18.{n}.1/24", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        ip("-n", self.ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        ip("-n", self.ns, "link", "set", "eth0", "up")
        ip("-n", self.ns, "link", "set", "lo", "up")
        code = (
            "import socket\n"
            f"s = socket.create_server(({self.address!r}, {self.port}))\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    c, _ = s.accept()\n"
            "    c.settimeout(2)\n"
            "    try:\n"
            "        c.recv(16)\n"
            "    except OSError:\n"
            "        pass\n"
            "    c.sendall(b'pong\\n')\n"
            "    c.close()\n"
        )
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.server.stdout is not None
        assert self.server.stdout.readline().strip() == "ready"

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture
def outside() -> Iterator[Outside]:
    o = Outside()
    try:
        yield o
    finally:
        o.close()


def attempts(log: str) -> dict[str, str]:
    found = {}
    for line in log.splitlines():
        if "ATTEMPT " in line:
            words = line.split("ATTEMPT ", 1)[1].split()
            if len(words) >= 2:
                found[words[0]] = words[1]
    return found


def test_a_build_cannot_get_out(client, server, endpoint, outside):
    infra = create_infra(client, instanceTypes=["t3.micro"], subnetId="subnet-0123456789abcdef0")
    port = server.port
    marker = Path("/tmp") / f"kiln-host-secret-{uuid.uuid4().hex}"
    marker.write_text("secret")
    addresses = host_addresses()
    probe = "echo ping | timeout 5 nc -w 2 {} {} | grep -q ."
    script = [
        ATTEMPT,
        # Root in the build is not host root: its user namespace maps it elsewhere.
        "echo \"UIDMAP $(cat /proc/self/uid_map)\"",
        # /proc and /sys: the classic way to host root, and the kernel's switches.
        "attempt core_pattern sh -c \"echo '|/tmp/x' > /proc/sys/kernel/core_pattern\"",
        "attempt sysrq sh -c 'echo h > /proc/sysrq-trigger'",
        "attempt sys_write sh -c 'echo 1 > /sys/kernel/mm/ksm/run'",
        "attempt kcore_read sh -c 'test -s /proc/kcore || head -c 1 /proc/kcore | grep -q .'",
        # Devices beyond the defaults: made, or opened.
        "attempt mknod_kvm mknod /dev/kvm c 10 232",
        "attempt open_kvm sh -c ': < /dev/kvm'",
        "attempt mknod_loop_control mknod /dev/loop-control c 10 237",
        "attempt open_loop_control sh -c ': < /dev/loop-control'",
        "attempt mknod_sda mknod /tmp/sda b 8 0",
        # Mounts, user namespaces, other namespaces.
        "attempt mount_tmpfs mount -t tmpfs none /mnt",
        "attempt mount_proc mount -t proc proc /mnt",
        "attempt unshare_user unshare -U true",
        "attempt unshare_user_root unshare -U -r true",
        "attempt nsenter_pid1 nsenter -t 1 -m true",
        "attempt nsenter_proc1_net nsenter --net=/proc/1/ns/net true",
        # Host paths.
        f"attempt host_file cat {marker}",
        f"attempt proc1_root cat /proc/1/root{marker}",
        f"attempt host_data_dir ls {server.data_dir}",
        # Kiln's API on every host address: the gateway (the host end of the instance's veth
        # pair), the host's loopback and its other addresses. (Kiln uses no slirp, so there is
        # no 10.0.2.2: that address would be routed out of the machine, and tests send nothing
        # there.)
        "gw=$(ip route | awk '/default/ {print $3}')",
        "echo \"gateway: $gw\"",
        f'attempt api_via_gateway sh -c "{probe.format("$gw", port)}"',
        f"attempt api_via_loopback sh -c '{probe.format('127.0.0.1', port)}'",
    ]
    for i, address in enumerate(addresses):
        script.append(f"attempt api_via_host_address_{i} sh -c '{probe.format(address, port)}'")
    # Out through NAT to the "outside" server: this one must work.
    script.append(
        f"if {probe.format(outside.address, outside.port)}; then echo OUTBOUND ok; else echo OUTBOUND failed; fi"
    )
    script.append("echo ATTEMPTS DONE")
    try:
        r = recipe(client, [bash_component(client, {"build": "\n".join(script)})])
        image = build(client, r, infra, tests=False)
        log = kiln(endpoint, "logs", image["arn"]).stdout
        assert image["state"]["status"] == "AVAILABLE", (image["state"], log[-3000:])
        assert "ATTEMPTS DONE" in log, log[-3000:]
        found = attempts(log)
        expected = sum(1 for line in script if line.startswith("attempt "))
        assert len(found) == expected, (sorted(found), log[-3000:])
        allowed = {name for name, outcome in found.items() if outcome != "refused"}
        assert not allowed, (allowed, log[-4000:])
        assert "gateway: 10.213." in log, log[-3000:]
        assert "OUTBOUND ok" in log, log[-3000:]
        uid_map = [line.split("UIDMAP", 1)[1].split() for line in log.splitlines() if "UIDMAP " in line]
        assert uid_map, log[-3000:]
        assert uid_map[0][:1] == ["0"] and uid_map[0] != ["0", "0", "4294967295"], uid_map
        assert int(uid_map[0][1]) >= 65536, uid_map
    finally:
        marker.unlink()


def test_host_access_is_the_operators_choice(tmp_path):
    """With `kiln serve --instance-host-access`, the gateway address reaches the host."""
    from kiln_testlib import KilnServer, make_client

    srv = KilnServer(tmp_path / "data", extra_args=["--instance-host-access"]).start()
    try:
        client = make_client(srv.endpoint)
        infra = create_infra(client, instanceTypes=["t3.micro"], subnetId="subnet-0123456789abcdef0")
        # The server listens on 127.0.0.1 only: a listener on the gateway address stands for a
        # service of the host (made by the build's own script through the API would be
        # circular), so the component checks the route to the host instead: an ICMP-free TCP
        # connection to a port nobody listens on is refused by the host's kernel (it answers),
        # where without host access the packet is dropped (a timeout).
        script = "\n".join(
            [
                "gw=$(ip route | awk '/default/ {print $3}')",
                "out=$(echo | timeout 5 nc -w 3 $gw 9 2>&1)",
                'echo "HOST ANSWER: $out"',
            ]
        )
        r = recipe(client, [bash_component(client, {"build": script})])
        image = build(client, r, infra, tests=False)
        log = kiln(srv.endpoint, "logs", image["arn"]).stdout
        assert image["state"]["status"] == "AVAILABLE", (image["state"], log[-3000:])
        assert "HOST ANSWER:" in log and "refused" in log.split("HOST ANSWER:", 1)[1], log[-3000:]
    finally:
        srv.stop_gracefully()


def test_debian_builds_still_work_under_the_filter(client):
    """dpkg, apt's checks and user management inside the seccomp filter, without network: a
    package built and installed in the build."""
    infra = create_infra(client, instanceTypes=["t3.small"])
    script = """
set -e
mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/kiln-demo
printf 'Package: kiln-demo\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: Kiln <kiln@example.com>\\nDescription: demo\\n' > /tmp/pkg/DEBIAN/control
echo hello > /tmp/pkg/usr/share/kiln-demo/hello
dpkg-deb --build /tmp/pkg /tmp/kiln-demo.deb
dpkg -i /tmp/kiln-demo.deb
apt-get check
useradd -m builder
su builder -s /bin/sh -c 'id -un > /tmp/who'
grep -q builder /tmp/who
chown builder /usr/share/kiln-demo/hello
echo DEBIAN OK
"""
    r = recipe(client, [bash_component(client, {"build": script})], parent=DEBIAN)
    started = time.monotonic()
    image = build(client, r, infra, tests=False)
    assert image["state"]["status"] == "AVAILABLE", (image["state"], time.monotonic() - started)
