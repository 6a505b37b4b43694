"""Fixtures of the end-to-end suite: one real `kiln serve` for the whole session, boto3 clients
for it, and the aws CLI pointed at it.

Tests share the server and stay out of each other's way by giving every resource a unique name
(`kiln_testlib.unique_name`). Tests that need a server of their own (other settings, restarts)
start one with `kiln_testlib.KilnServer`.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from kiln_testlib import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    AwsCli,
    KilnServer,
    MotoServer,
    make_client,
    unique_name,
)

SERVER_KEY = pytest.StashKey[KilnServer]()
LOG_LINES_ON_FAILURE = 60


def pytest_configure(config: pytest.Config) -> None:
    """The `kiln logs`/`kiln image export`/... commands the tests run sign their requests with
    the aws CLI's credentials from the environment: the test servers' default key."""
    import os

    os.environ["AWS_ACCESS_KEY_ID"] = ACCESS_KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    os.environ["AWS_REGION"] = REGION
    os.environ.pop("AWS_SESSION_TOKEN", None)


@pytest.fixture(scope="session")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KilnServer]:
    srv = KilnServer(tmp_path_factory.mktemp("kiln") / "data").start()
    request.config.stash[SERVER_KEY] = srv
    yield srv
    # Teardown doubles as the check that SIGTERM shuts the server down cleanly (exit 0).
    srv.stop_gracefully()


@pytest.fixture(scope="session")
def endpoint(server: KilnServer) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def client(endpoint: str) -> Any:
    return make_client(endpoint)


@pytest.fixture(scope="session")
def raw_client(endpoint: str) -> Any:
    """A client without botocore's client-side parameter validation, so that requests reach
    the server's own validation."""
    return make_client(endpoint, validate=False)


@pytest.fixture(scope="session")
def aws(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> AwsCli:
    return AwsCli(endpoint, tmp_path_factory.mktemp("awscli"))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3-compatible server for the tests of one module (see `MotoServer`)."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto_endpoint(moto: MotoServer) -> str:
    return moto.endpoint


@pytest.fixture
def name() -> str:
    """A resource name no other test uses."""
    return unique_name()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """When something failed, the end of the shared server's log is usually the first thing
    one wants to read, and a CI run leaves nothing else behind."""
    srv = config.stash.get(SERVER_KEY, None)
    if exitstatus == 0 or srv is None:
        return
    lines = srv.log().splitlines()[-LOG_LINES_ON_FAILURE:]
    terminalreporter.section(f"kiln server log (last {len(lines)} lines of {srv.log_path})")
    for line in lines:
        terminalreporter.write_line(line)
