"""The Debian package and the config file, through the real binary.

The package tests take the .deb from `KILN_TEST_DEB` (`cargo xtask deb` makes it) and skip
without it; with `KILN_TEST_REQUIRE_DEB=1` (CI) they fail instead. They unpack it into a
throwaway root (`dpkg-deb -x`), check what it holds, verify the unit with
`systemd-analyze verify`, then run the unit's own ExecStart command line (the installed binary
and config file; only the data directory and the listen address come from the environment,
which also exercises the precedence) and drive a build on the managed busybox base to
AVAILABLE with boto3.

The config tests run `KILN_BIN`: precedence (file < environment < command line), the errors
of a bad file, and `--log-level`.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from kiln_testlib import REGION, kiln_bin, make_client, unique_name

READY = "kiln listening on "
BUSYBOX = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any KILN_ setting or RUST_LOG of the machine, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") and k != "RUST_LOG"}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


class Served:
    """A `kiln serve` command line run until it prints where it listens (or exits)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.log_file = open(log, "a", encoding="utf-8")
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        ready = threading.Event()
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                self.lines.append(line.rstrip("\n"))
                if line.startswith(READY):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(60)
        self.endpoint = next(
            (line[len(READY) :].strip() for line in self.lines if line.startswith(READY)), ""
        )
        assert self.endpoint, f"kiln did not start: exit {self.process.poll()}; log:\n{self.log()}"

    def log(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    def credentials_file(self) -> Path:
        """The generated credentials file the server printed (`kiln credentials: PATH (...)`)."""
        for line in self.lines:
            if line.startswith("kiln credentials: "):
                return Path(line.split()[2])
        raise AssertionError(f"no credentials line in {self.lines}")

    def stop(self) -> int:
        # One request answered: the server's loop, and with it its SIGTERM handler, runs (the
        # listening line is printed just before).
        try:
            urllib.request.urlopen(self.endpoint, timeout=10).close()
        except urllib.error.HTTPError:
            pass
        except OSError:
            pass
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode


def run_fails(argv: list[str], env: dict[str, str]) -> str:
    """Runs a command that must fail at once; answers its stderr."""
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0, f"{argv} succeeded: {out.stdout}"
    return out.stderr


# --- The config file and its precedence, through KILN_BIN ---------------------------------


def test_precedence_is_file_then_environment_then_command_line(tmp_path: Path) -> None:
    file_port = free_port()
    config = tmp_path / "kiln.toml"
    config.write_text(
        f'listen = "127.0.0.1:{file_port}"\ndata-dir = "{tmp_path / "file-data"}"\n'
        "build-concurrency = 1\n"
    )
    # The environment asks for any free port (:0), so only the file's case needs a fixed one.
    env = {"KILN_LISTEN": "127.0.0.1:0", "KILN_DATA_DIR": str(tmp_path / "env-data")}
    cases = [
        ({}, [], True, "file-data"),
        (env, [], False, "env-data"),
        (env, ["--data-dir", str(tmp_path / "cli-data")], False, "cli-data"),
    ]
    for i, (extra, args, on_file_port, data) in enumerate(cases):
        # KILN_CONFIG names the file: the environment's way to give it.
        served = Served(
            [kiln_bin(), "serve", *args],
            clean_env(KILN_CONFIG=str(config), **extra),
            tmp_path / f"serve-{i}.log",
        )
        try:
            assert (served.endpoint == f"http://127.0.0.1:{file_port}") == on_file_port, (
                i,
                served.endpoint,
            )
            assert served.credentials_file() == tmp_path / data / "credentials", i
        finally:
            assert served.stop() == 0, served.log()


def test_a_switch_from_the_file_is_turned_off_by_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "kiln.toml"
    config.write_text(f'insecure-no-auth = true\ndata-dir = "{tmp_path / "data"}"\n')
    for i, (env, verifies) in enumerate([({}, False), ({"KILN_INSECURE_NO_AUTH": "false"}, True)]):
        env = clean_env(KILN_LISTEN="127.0.0.1:0", **env)
        served = Served(
            [kiln_bin(), "serve", "--config", str(config)], env, tmp_path / f"switch-{i}.log"
        )
        try:
            # A server that verifies signatures says which credentials file it reads.
            said = any(line.startswith("kiln credentials: ") for line in served.lines)
            assert said == verifies, (i, served.lines, served.log())
        finally:
            assert served.stop() == 0, served.log()


def test_a_bad_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "kiln.toml"
    for text, words in [
        ('listne = "127.0.0.1:1"\n', ["listne", "unknown key"]),
        ('build-concurrency = "many"\n', ["build-concurrency", "many"]),
        ("insecure-no-auth = 1\n", ["insecure-no-auth", "true or false"]),
        ('quota = "components=5"\n', ["quota", "array"]),
    ]:
        config.write_text(text)
        stderr = run_fails(
            [kiln_bin(), "serve", "--config", str(config)],
            clean_env(KILN_DATA_DIR=str(tmp_path / "data")),
        )
        for word in [str(config), *words]:
            assert word in stderr, (text, stderr)
    # Nothing was started, so nothing was left in the data directory.
    assert not (tmp_path / "data").exists()
    # A worker's file may not carry serve's flags.
    config.write_text('listen = "127.0.0.1:1"\n')
    stderr = run_fails([kiln_bin(), "worker", "--config", str(config)], clean_env())
    assert "`kiln worker` has no --listen" in stderr, stderr
    # A missing file is an error, not an empty configuration.
    stderr = run_fails([kiln_bin(), "serve", "--config", str(tmp_path / "none.toml")], clean_env())
    assert "none.toml" in stderr, stderr


def test_log_level_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "kiln.toml"
    config.write_text(f'log-level = "warn"\ndata-dir = "{tmp_path / "data"}"\n')
    for i, (env, shown) in enumerate([({}, False), ({"KILN_LOG": "info"}, True)]):
        env = clean_env(KILN_LISTEN="127.0.0.1:0", **env)
        served = Served(
            [kiln_bin(), "serve", "--config", str(config)], env, tmp_path / f"log-{i}.log"
        )
        assert served.stop() == 0
        assert ("kiln ready" in served.log()) == shown, (env.get("KILN_LOG"), served.log())


# --- The package --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deb() -> Path:
    path = os.environ.get("KILN_TEST_DEB")
    if not path:
        if os.environ.get("KILN_TEST_REQUIRE_DEB") == "1":
            pytest.fail("KILN_TEST_REQUIRE_DEB=1 but KILN_TEST_DEB names no package")
        pytest.skip("KILN_TEST_DEB names no package (cargo xtask deb makes one)")
    assert Path(path).is_file(), path
    return Path(path)


@pytest.fixture(scope="module")
def root(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package unpacked into a throwaway root, its control files in root/DEBIAN."""
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)
    return root


def test_the_package_holds_binary_unit_config_docs_and_completions(root: Path) -> None:
    for path in [
        "usr/bin/kiln",
        "lib/systemd/system/kiln.service",
        "etc/kiln/kiln.toml",
        "usr/share/man/man1/kiln.1.gz",
        "usr/share/man/man1/kiln-serve.1.gz",
        "usr/share/man/man1/kiln-worker.1.gz",
        "usr/share/bash-completion/completions/kiln",
        "usr/share/zsh/vendor-completions/_kiln",
        "usr/share/fish/vendor_completions.d/kiln.fish",
        "usr/share/doc/kiln/copyright",
    ]:
        assert (root / path).is_file(), path
    assert os.access(root / "usr/bin/kiln", os.X_OK)
    control = (root / "DEBIAN/control").read_text()
    depends = next(line for line in control.splitlines() if line.startswith("Depends:"))
    assert "libc6 (>= " in depends, depends
    assert "skopeo" in control and "mmdebstrap" in control, control
    assert (root / "DEBIAN/conffiles").read_text().split() == ["/etc/kiln/kiln.toml"]
    # The installed binary knows its flags (the man page is made from them).
    out = subprocess.run(
        [str(root / "usr/bin/kiln"), "serve", "--help"], capture_output=True, text=True, check=True
    )
    assert "--config <FILE>" in out.stdout and "KILN_CONFIG" in out.stdout


def test_the_unit_verifies(root: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("KILN_TEST_REQUIRE_DEB") == "1":
            pytest.fail("systemd-analyze is missing (package systemd)")
        pytest.skip("no systemd-analyze")
    # verify checks ExecStart's binary and the man pages Documentation= names: the unit is
    # checked as installed, with its paths looked up in the throwaway root.
    unit = tmp_path / "kiln.service"
    unit.write_text(
        (root / "lib/systemd/system/kiln.service")
        .read_text()
        .replace("/usr/bin/kiln", str(root / "usr/bin/kiln"))
    )
    env = dict(os.environ, MANPATH=str(root / "usr/share/man"))
    # Without man-db the Documentation= pages cannot be looked up; everything else still is.
    man = [] if shutil.which("man") else ["--man=no"]
    out = subprocess.run(
        [analyze, "verify", *man, str(unit)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def unit_settings(root: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(root / "lib/systemd/system/kiln.service")
    return parser


@pytest.fixture
def unit_server(root: Path, tmp_path: Path) -> Iterator[Served]:
    """The unit's ExecStart, as it is, on the installed files; the environment moves only the
    data directory (the file says /var/lib/kiln) and the listen address (the file says :7070)."""
    service = unit_settings(root)["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[:4] == ["/usr/bin/kiln", "serve", "--config", "/etc/kiln/kiln.toml"], argv
    argv = [str(root / a.lstrip("/")) if a.startswith("/") else a for a in argv]
    env = clean_env(KILN_DATA_DIR=str(tmp_path / "data"), KILN_LISTEN="127.0.0.1:0")
    for line in service.get("Environment", "").split("\n"):
        for assignment in shlex.split(line):
            key, _, value = assignment.partition("=")
            env.setdefault(key, value)
    served = Served(argv, env, tmp_path / "unit.log")
    yield served
    assert served.stop() == 0, served.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")
def test_the_unit_command_line_serves_a_build(unit_server: Served, tmp_path: Path) -> None:
    assert unit_server.endpoint.startswith("http://127.0.0.1:")
    credentials = configparser.ConfigParser()
    credentials.read(unit_server.credentials_file())
    assert unit_server.credentials_file() == tmp_path / "data" / "credentials"
    key = credentials["default"]
    client = make_client(
        unit_server.endpoint,
        region=REGION,
        access_key=key["aws_access_key_id"],
        secret_key=key["aws_secret_access_key"],
    )
    component = client.create_component(
        name=unique_name("pkg"),
        semanticVersion="1.0.0",
        platform="Linux",
        data=(
            "name: packaged\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
            "      - name: Hello\n        action: ExecuteBash\n        inputs:\n"
            "          commands:\n            - echo built by the package > /hello.txt\n"
        ),
    )["componentBuildVersionArn"]
    recipe = client.create_image_recipe(
        name=unique_name("pkg"),
        semanticVersion="1.0.0",
        parentImage=BUSYBOX,
        components=[{"componentArn": component}],
    )["imageRecipeArn"]
    infra = client.create_infrastructure_configuration(
        name=unique_name("pkg"), instanceProfileName="EC2InstanceProfileForImageBuilder"
    )["infrastructureConfigurationArn"]
    arn = client.create_image(
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": False},
    )["imageBuildVersionArn"]
    deadline = time.monotonic() + 600
    status = ""
    while time.monotonic() < deadline:
        state = client.get_image(imageBuildVersionArn=arn)["image"]["state"]
        status = state["status"]
        if status in ("AVAILABLE", "FAILED", "CANCELLED"):
            break
        time.sleep(0.5)
    assert status == "AVAILABLE", (state, unit_server.log())
