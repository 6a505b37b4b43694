"""`kiln serve` as a service: SIGHUP reloads the log level from the config file (with the
precedence of a start) while requests go on being answered."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from kiln_testlib import KilnServer, make_client

CHANGED = "SIGHUP: log level changed"
UNCHANGED = "SIGHUP: log level unchanged"
BROKEN = "SIGHUP: the configuration does not load; keeping the log level"


def count(server: KilnServer, text: str) -> int:
    return server.log_path.read_text(errors="replace").count(text)


def hup(server: KilnServer, expect: str | None = None) -> None:
    """SIGHUP, then wait for the line `expect` to appear once more; without one (when the filter
    hides what the server logs), a pause long enough for the server to have handled it."""
    assert server.process is not None
    seen = count(server, expect) if expect else 0
    server.process.send_signal(signal.SIGHUP)
    if expect is None:
        time.sleep(1.0)
        return
    deadline = time.monotonic() + 10
    while count(server, expect) == seen:
        assert time.monotonic() < deadline, f"no '{expect}' after SIGHUP:\n{server.log()}"
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_server_left(monkeypatch: pytest.MonkeyPatch):
    """Every server a test here starts is gone after it, also when an assertion failed first."""
    started: list[KilnServer] = []
    start = KilnServer.start

    def recorded(self: KilnServer) -> KilnServer:
        started.append(self)
        return start(self)

    monkeypatch.setattr(KilnServer, "start", recorded)
    yield
    for server in started:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_sighup_reloads_the_log_level_without_dropping_requests(tmp_path: Path):
    config = tmp_path / "kiln.toml"
    config.write_text('log-level = "warn"\n')
    # RUST_LOG empty: the level comes from the file alone.
    server = KilnServer(
        tmp_path / "data", extra_args=["--config", str(config), "--rate-limit", "0"],
        extra_env={"RUST_LOG": ""}
    ).start()
    client = make_client(server.endpoint)
    answered, failed = [0], []
    stop = threading.Event()

    def requests() -> None:
        while not stop.is_set():
            try:
                client.list_components()
                answered[0] += 1
            except Exception as e:  # noqa: BLE001 - any failure is what the test looks for
                failed.append(repr(e))

    worker = threading.Thread(target=requests)
    worker.start()
    try:
        time.sleep(0.3)
        # At warn, the start's info lines were not logged.
        assert count(server, "kiln ready") == 0, server.log()

        config.write_text('log-level = "info"\n')
        hup(server, CHANGED)
        assert "log_level=info" in server.log()
        # Info lines now show: a SIGHUP with nothing changed says so.
        hup(server, UNCHANGED)

        # A file that no longer parses keeps the level, and says why (at error level).
        config.write_text('log-level = "info"\nno-such-flag = 1\n')
        hup(server, BROKEN)
        assert "no-such-flag" in server.log(), server.log()

        config.write_text('log-level = "warn"\n')
        hup(server)
        hup(server)
        # Back at warn: neither the change (logged at the new level) nor "unchanged" shows.
        assert count(server, CHANGED) == 1 and count(server, UNCHANGED) == 1, server.log()
    finally:
        stop.set()
        worker.join()
    assert not failed, failed[:3]
    assert answered[0] > 10
    assert server.stop() == 0


def test_a_log_level_on_the_command_line_outlasts_a_sighup(tmp_path: Path):
    config = tmp_path / "kiln.toml"
    config.write_text('log-level = "warn"\n')
    server = KilnServer(
        tmp_path / "data",
        extra_args=["--config", str(config), "--log-level", "info"],
        extra_env={"RUST_LOG": ""},
    ).start()
    assert count(server, "kiln ready") == 1, server.log()
    config.write_text('log-level = "error"\n')
    # The command line still decides: info, so "unchanged" is logged.
    hup(server, UNCHANGED)
    assert count(server, CHANGED) == 0, server.log()
    assert server.stop() == 0


def test_signals_right_after_start_are_handled_not_fatal(tmp_path: Path):
    """SIGHUP and SIGTERM the moment the server says it listens (as systemd may send them):
    the handlers are in place by then, so SIGHUP reloads and SIGTERM stops gracefully."""
    server = KilnServer(tmp_path / "data", extra_env={"RUST_LOG": ""}).start()
    hup(server, "reloaded the credentials file")
    assert server.stop() == 0, server.log()
    again = KilnServer(tmp_path / "again").start()
    assert again.stop() == 0, again.log()
