"""`kiln doctor`, `kiln serve`'s start-up checks and `GET /kiln/v1/health`, through the real
binary.

`kiln doctor` on this machine (root, the tools installed) exits 0 with a line per check; with a
`PATH` that lacks the tools it names the features they serve and still exits 0; with a database
that does not answer it exits 1. The health endpoint answers an unsigned GET or HEAD (and only at
its exact path: every other `/kiln/v1/` path still needs a valid signature), is never throttled,
and answers 503 once the PostgreSQL database goes away (with `KILN_TEST_DATABASE_URL`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kiln_testlib import KilnServer, kiln_bin, raw_request, sign

ROOT = os.geteuid() == 0


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`kiln doctor ARGS` with no KILN_* setting from the environment of the tests."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") or k == "KILN_BIN"}
    clean.update(env or {})
    return subprocess.run(
        [kiln_bin(), "doctor", *args], capture_output=True, text=True, env=clean, timeout=30
    )


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines_by_check(output: str) -> dict[str, str]:
    out = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in {"ok", "warn", "MISSING", "FAILED"}:
            out[parts[1]] = line
    return out


EXPECTED = [
    "privileges",
    "overlayfs",
    "cgroups",
    "tool:skopeo",
    "tool:qemu-img",
    "tool:mkfs.ext4",
    "tool:debugfs",
    "tool:ip",
    "tool:nsenter",
    "tool:nft",
    "tool:mmdebstrap",
    "tool:unshare",
    "tool:busybox",
    "disk-space",
    "database",
    "debian-mirror",
]


@pytest.mark.skipif(not ROOT, reason="builds here need root")
def test_doctor_passes_here_with_a_line_per_check(tmp_path: Path) -> None:
    started = time.monotonic()
    run = doctor("--data-dir", str(tmp_path / "data"))
    took = time.monotonic() - started
    assert run.returncode == 0, run.stdout + run.stderr
    checks = lines_by_check(run.stdout)
    for name in EXPECTED:
        assert name in checks, f"no line for {name}:\n{run.stdout}"
    assert checks["privileges"].startswith("ok"), checks["privileges"]
    assert "not contacted" in checks["debian-mirror"]
    summary = run.stdout.strip().splitlines()[-1]
    assert summary.startswith("builds: possible"), run.stdout
    # "in a second": nothing configured to wait for here.
    assert took < 5, took


def test_doctor_json(tmp_path: Path) -> None:
    run = doctor("--data-dir", str(tmp_path / "data"), "--json")
    report = json.loads(run.stdout)
    assert run.returncode == (0 if report["buildsPossible"] else 1)
    names = [c["name"] for c in report["checks"]]
    for name in EXPECTED:
        assert name in names
    for c in report["checks"]:
        assert c["status"] in {"ok", "warn", "missing", "failed"}
        assert isinstance(c["blocksBuilds"], bool)


@pytest.mark.skipif(not ROOT, reason="builds here need root")
def test_without_the_tools_on_path_doctor_names_the_features_and_passes(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    run = doctor("--data-dir", str(tmp_path / "data"), env={"PATH": str(empty)})
    assert run.returncode == 0, run.stdout + run.stderr
    checks = lines_by_check(run.stdout)
    assert checks["tool:skopeo"].startswith("MISSING"), checks["tool:skopeo"]
    assert "registry parent images" in checks["tool:skopeo"]
    assert "install the Debian package skopeo" in checks["tool:skopeo"]
    assert checks["tool:ip"].startswith("MISSING")
    assert checks["tool:mmdebstrap"].startswith("ok"), checks["tool:mmdebstrap"]
    summary = run.stdout.strip().splitlines()[-1]
    assert summary.startswith("builds: possible"), summary
    assert "instances with networking" in summary
    assert "registry parent images" in summary


def test_an_unreachable_database_fails_doctor(tmp_path: Path) -> None:
    run = doctor(
        "--data-dir",
        str(tmp_path / "data"),
        "--database",
        "postgres://postgres:secret@127.0.0.1:1/x",
    )
    assert run.returncode == 1, run.stdout + run.stderr
    checks = lines_by_check(run.stdout)
    assert checks["database"].startswith("FAILED"), checks["database"]
    assert "does not answer" in checks["database"]
    assert "secret" not in run.stdout
    assert "IMPOSSIBLE" in run.stdout.strip().splitlines()[-1]
    assert "database" in run.stdout.strip().splitlines()[-1]


def test_configured_endpoints_are_contacted_and_unreachable_ones_named(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    up = listener.getsockname()[1]
    down = closed_port()
    try:
        run = doctor(
            "--data-dir",
            str(tmp_path / "data"),
            "--debian-mirror",
            f"http://127.0.0.1:{up}/debian",
            "--s3-endpoint",
            f"http://127.0.0.1:{down}",
            "--registry",
            f"127.0.0.1:{down}",
        )
    finally:
        listener.close()
    checks = lines_by_check(run.stdout)
    assert checks["debian-mirror"].startswith("ok"), checks["debian-mirror"]
    assert checks["s3-endpoint"].startswith("FAILED"), checks["s3-endpoint"]
    assert checks["registry"].startswith("FAILED"), checks["registry"]
    assert run.returncode == 1, run.stdout
    assert "registry" in run.stdout.strip().splitlines()[-1]


def health(endpoint: str, method: str = "GET", path: str = "/kiln/v1/health"):
    return raw_request(endpoint, method, path, signed=False)


def wait_for_builds_verdict(endpoint: str) -> dict:
    deadline = time.monotonic() + 15
    while True:
        status, _, body = health(endpoint)
        assert status == 200, body
        answer = json.loads(body)
        if answer["builds"] != "checking" or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_health_needs_no_signature_and_opens_nothing_else(tmp_path: Path) -> None:
    # A tight rate limit: health has no account and no bucket, so it is never throttled.
    srv = KilnServer(
        tmp_path / "data", extra_args=["--rate-limit", "1", "--rate-burst", "1"]
    ).start()
    try:
        answer = wait_for_builds_verdict(srv.endpoint)
        assert answer["status"] == "ok"
        assert answer["database"] == "ok"
        assert answer["builds"] in {"possible", "unavailable"}
        if ROOT:
            assert answer["builds"] == "possible", answer
        assert set(answer) == {"status", "database", "builds", "checks"}
        text = json.dumps(answer)
        assert str(tmp_path) not in text and "111122223333" not in text
        for _ in range(20):
            status, _, _ = health(srv.endpoint)
            assert status == 200
        status, headers, body = health(srv.endpoint, "HEAD")
        assert status == 200 and body == b""
        assert headers.get("content-type") == "application/json"

        # Every other path, and other methods on this one, still need a valid signature.
        for method, path in [
            ("GET", "/kiln/v1/schedule"),
            ("GET", "/kiln/v1/health/"),
            ("GET", "/kiln/v1/health/x"),
            ("GET", "/kiln/v1/%68ealth"),
            ("GET", "/kiln/v1//health"),
            ("GET", "/kiln/v1/healthz"),
            ("POST", "/kiln/v1/health"),
            ("DELETE", "/kiln/v1/health"),
            ("GET", "/images"),
        ]:
            status, headers, body = raw_request(srv.endpoint, method, path, signed=False)
            assert status in {400, 403}, (method, path, status, body)
            assert status != 200
        # A signature made with the wrong secret does not pass either.
        bad = sign(srv.endpoint, "GET", "/kiln/v1/schedule", secret_key="not-the-secret")
        status, _, body = raw_request(
            srv.endpoint, "GET", "/kiln/v1/schedule", headers=bad, signed=False
        )
        assert status == 403, body

        # The start-up checks logged their verdict.
        assert "start-up checks: builds:" in srv.log()
    finally:
        srv.stop_gracefully()


@pytest.mark.skipif(not ROOT, reason="the worker's start-up needs root here")
def test_serve_logs_a_line_per_missing_tool_and_still_serves(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    srv = KilnServer(tmp_path / "data", extra_env={"PATH": str(empty)}).start()
    try:
        answer = wait_for_builds_verdict(srv.endpoint)
        assert answer["builds"] == "possible", answer
        deadline = time.monotonic() + 10
        while "start-up checks:" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = srv.log()
        for tool in ["tool:skopeo", "tool:ip", "tool:nft"]:
            lines = [l for l in log.splitlines() if f"check={tool}" in l]
            assert len(lines) == 1, (tool, log)
            assert "WARN" in lines[0], lines[0]
    finally:
        srv.stop_gracefully()


def psql(admin: str, sql: str) -> None:
    exe = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    subprocess.run([exe, admin, "-qc", sql], check=True, capture_output=True, timeout=30)


def test_health_answers_503_when_the_database_goes_away(tmp_path: Path) -> None:
    admin = os.environ.get("KILN_TEST_DATABASE_URL", "")
    if not admin:
        assert os.environ.get("KILN_TEST_REQUIRE_POSTGRES") != "1"
        pytest.skip("KILN_TEST_DATABASE_URL is not set")
    name = f"kiln_health_{os.getpid()}_{int(time.time() * 1000) % 1000000}"
    psql(admin, f"CREATE DATABASE {name}")
    base = admin.partition("?")[0].rsplit("/", 1)[0]
    srv = KilnServer(tmp_path / "data", extra_args=["--database", f"{base}/{name}"]).start()
    try:
        status, _, body = health(srv.endpoint)
        assert status == 200, body
        assert json.loads(body)["database"] == "ok"
        psql(admin, f"DROP DATABASE {name} WITH (FORCE)")
        deadline = time.monotonic() + 10
        while True:
            status, _, body = health(srv.endpoint)
            if status == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 503, body
        answer = json.loads(body)
        assert answer["database"] == "unreachable"
        assert answer["status"] == "unavailable"
        # HEAD too, for checks that read no body.
        status, _, body = health(srv.endpoint, "HEAD")
        assert status == 503 and body == b""
    finally:
        assert srv.process is not None
        srv.process.kill()
        srv.process.wait()
        psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
