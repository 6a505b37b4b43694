"""The server process itself: it announces its address, shuts down cleanly on SIGTERM and
SIGINT, and everything it answered survives a restart on the same data directory (resources,
tags, idempotency tokens, pagination tokens)."""

from __future__ import annotations

import signal
import subprocess
import uuid

from kiln_testlib import KilnServer, create_infra, kiln_bin, make_client, unique_name


def test_restart_keeps_resources_tags_and_tokens(tmp_path):
    data = tmp_path / "data"
    first = KilnServer(data).start()
    client = make_client(first.endpoint)
    name = unique_name()
    token = str(uuid.uuid4())
    created = client.create_infrastructure_configuration(
        name=name, instanceProfileName="p", clientToken=token, tags={"keep": "me"}
    )
    for _ in range(3):
        create_infra(client)
    page_token = client.list_infrastructure_configurations(maxResults=2)["nextToken"]
    first.stop_gracefully()

    second = KilnServer(data).start()
    try:
        client = make_client(second.endpoint)
        got = client.get_infrastructure_configuration(
            infrastructureConfigurationArn=created["infrastructureConfigurationArn"]
        )["infrastructureConfiguration"]
        assert got["name"] == name
        assert got["tags"] == {"keep": "me"}
        replay = client.create_infrastructure_configuration(
            name=name, instanceProfileName="p", clientToken=token, tags={"keep": "me"}
        )
        assert replay["infrastructureConfigurationArn"] == created["infrastructureConfigurationArn"]
        rest = client.list_infrastructure_configurations(maxResults=2, nextToken=page_token)
        assert len(rest["infrastructureConfigurationSummaryList"]) == 2
    finally:
        second.stop_gracefully()


def test_sigint_is_a_clean_shutdown_too(tmp_path):
    srv = KilnServer(tmp_path / "data").start()
    make_client(srv.endpoint).list_infrastructure_configurations()
    assert srv.process is not None
    srv.process.send_signal(signal.SIGINT)
    assert srv.process.wait(20) == 0
    srv.stop()


def test_the_announced_address_is_the_one_it_listens_on(tmp_path):
    srv = KilnServer(tmp_path / "data").start()
    try:
        assert srv.endpoint.startswith("http://127.0.0.1:")
        assert srv.port > 0
        response = make_client(srv.endpoint).list_infrastructure_configurations()
        assert response["infrastructureConfigurationSummaryList"] == []
    finally:
        srv.stop_gracefully()


def test_a_busy_port_is_a_clear_startup_error(server, tmp_path):
    result = subprocess.run(
        [kiln_bin(), "serve", "--listen", f"127.0.0.1:{server.port}", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert f"127.0.0.1:{server.port}" in result.stderr
