"""The end-to-end suite's toolkit: a real `kiln serve` process, boto3 clients, raw HTTP, the
aws CLI, and builders of valid resources that the resource tests share.

Fixtures live in conftest.py; this module holds the plain code so that test files can import it.
The binary comes from `KILN_BIN` (default: `<repo>/target/debug/kiln`). With
`KILN_TEST_PYTHON_DATABASE_URL` (a PostgreSQL server's URL) every server runs on a database of
its own there (`--database`), one per data directory, so the suite checks the PostgreSQL backend.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import boto3
import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCESS_KEY = "AKIDTESTDEFAULT0"
SECRET_KEY = "secret"
DEFAULT_ACCOUNT = "123456789012"
STARTUP_TIMEOUT_SECONDS = 30
SHUTDOWN_TIMEOUT_SECONDS = 20
LISTENING_PREFIX = "kiln listening on "


def kiln_bin() -> str:
    return os.environ.get("KILN_BIN") or str(REPO / "target" / "debug" / "kiln")


def database_for(data_dir: Path) -> list[str]:
    """`--database` on a PostgreSQL database named after `data_dir` (so that a restarted server
    finds its data) when `KILN_TEST_PYTHON_DATABASE_URL` names a server; else nothing."""
    admin = os.environ.get("KILN_TEST_PYTHON_DATABASE_URL")
    if not admin:
        return []
    import hashlib

    name = "kiln_py_" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
    found = subprocess.run(
        [psql, admin, "-Atc", query], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not found:
        subprocess.run([psql, admin, "-qc", f"CREATE DATABASE {name}"], check=True)
    base, _, _ = admin.partition("?")
    return ["--database", base.rsplit("/", 1)[0] + "/" + name]


class KilnServer:
    """One `kiln serve` process on an ephemeral loopback port.

    The server prints `kiln listening on http://127.0.0.1:PORT` on stdout once it accepts
    connections; its log (stderr) goes to a file in the data directory's parent so that a full
    pipe can never stall it, and so that a failing test can show it.
    """

    def __init__(
        self,
        data_dir: Path,
        extra_args: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        binary: str | None = None,
        keys: dict[str, str] | None = None,
    ) -> None:
        """`prefix` runs the server through another command (`setpriv ...` to drop root);
        `binary` replaces the kiln under test (a copy another user can run).

        Unless `extra_args` says `--credentials` or `--insecure-no-auth`, the server verifies
        signatures against a credentials file written beside the data directory: ACCESS_KEY for
        DEFAULT_ACCOUNT, plus `keys` ({access key id: account}), every one with SECRET_KEY."""
        self.data_dir = Path(data_dir)
        self.prefix = prefix or []
        self.binary = binary
        self.extra_args = extra_args or []
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.log_file: Any = None
        self.keys = {ACCESS_KEY: DEFAULT_ACCOUNT, **(keys or {})}
        self.credentials_path = self.data_dir.parent / f"{self.data_dir.name}.credentials"

    def write_credentials(self) -> None:
        self.credentials_path.write_text(
            "".join(
                f"[key-{i}]\naws_access_key_id = {key}\naws_secret_access_key = {SECRET_KEY}\n"
                f"aws_account_id = {account}\n\n"
                for i, (key, account) in enumerate(self.keys.items())
            )
        )
        self.credentials_path.chmod(0o600)
        # A server run as another user (rootless tests) owns the directory: it must read the file.
        owner = self.data_dir.parent.stat()
        if os.geteuid() == 0 and owner.st_uid != 0:
            os.chown(self.credentials_path, owner.st_uid, owner.st_gid)

    # The line the process prints on stdout once it is ready; what follows it is kept as
    # `endpoint` (for a server, its URL).
    READY_PREFIX = LISTENING_PREFIX

    def command_args(self) -> list[str]:
        """The `kiln` subcommand and its arguments."""
        auth_args: list[str] = []
        if not {"--credentials", "--insecure-no-auth"} & set(self.extra_args):
            self.write_credentials()
            auth_args = ["--credentials", str(self.credentials_path)]
        db_args = [] if "--database" in self.extra_args else database_for(self.data_dir)
        return [
            "serve",
            *db_args,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            *auth_args,
            *self.extra_args,
        ]

    def start(self) -> "KilnServer":
        env = dict(os.environ)
        # The server's own settings come only from what the test asks for.
        for key in list(env):
            if key.startswith("KILN_") and key != "KILN_BIN":
                del env[key]
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"  # the log is read from a file, not a terminal
        env.update(self.extra_env)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        args = [*self.prefix, self.binary or kiln_bin(), *self.command_args()]
        self.log_file = open(self.log_path, "a", encoding="utf-8")
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.endpoint = self._wait_for_listening_line()
        return self

    def _wait_for_listening_line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        found: list[str] = []
        ready = threading.Event()
        stdout = self.process.stdout

        def read_stdout() -> None:
            # Keep draining stdout for the life of the process, so that it never blocks on it.
            for line in stdout:
                if not found and line.startswith(self.READY_PREFIX):
                    found.append(line[len(self.READY_PREFIX) :].strip())
                    ready.set()
            ready.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(STARTUP_TIMEOUT_SECONDS) or not found:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(
                f"kiln did not print '{self.READY_PREFIX}...' within {STARTUP_TIMEOUT_SECONDS}s "
                f"(exit code {self.process.returncode}); log:\n{self.log()}"
            )
        return found[0]

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-8000:]
        except OSError:
            return ""

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit code (0 is a graceful shutdown)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(SHUTDOWN_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"kiln did not exit within {SHUTDOWN_TIMEOUT_SECONDS}s of SIGTERM; log:\n{self.log()}"
                )
        if self.log_file is not None:
            self.log_file.close()
        return self.process.returncode

    def stop_gracefully(self) -> None:
        code = self.stop()
        assert code == 0, f"kiln exited with {code} after SIGTERM; log:\n{self.log()}"


class KilnWorker(KilnServer):
    """One `kiln worker` process: builds from the shared queue of `database`, serves no API.
    `endpoint` is its worker id once it is ready."""

    READY_PREFIX = "kiln worker ready: "

    def __init__(self, data_dir: Path, database: str, extra_args: list[str] | None = None) -> None:
        super().__init__(data_dir, extra_args)
        self.database = database

    @property
    def worker_id(self) -> str:
        return self.endpoint

    def command_args(self) -> list[str]:
        return [
            "worker",
            "--database",
            self.database,
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to clean up."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        if self.log_file is not None:
            self.log_file.close()


class DockerRegistry:
    """Debian's `docker-registry` on 127.0.0.1:`port`, storing under `root`, deletes allowed;
    `start` returns once it answers `/v2/`."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.address = f"127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "DockerRegistry":
        import urllib.request

        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: {self.address}}}\n"
        )
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            try:
                urllib.request.urlopen(f"http://{self.address}/v2/", timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not start on {self.address}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


class MotoServer:
    """moto's S3-compatible (and IAM) server on a free loopback port, from
    KILN_TEST_MOTO_SERVER (`bash .ci/run` installs it). Its log goes to `log_dir/moto.log`."""

    def __init__(self, log_dir: Path) -> None:
        import time
        import urllib.request

        server = os.environ.get("KILN_TEST_MOTO_SERVER")
        assert server, "set KILN_TEST_MOTO_SERVER to moto_server (bash .ci/run installs it)"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.log_path = Path(log_dir) / "moto.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [server, "-H", "127.0.0.1", "-p", str(port)], stdout=self.log, stderr=self.log
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.1)

    def client(self, service: str, access_key: str = "kiln", secret_key: str = "kiln") -> Any:
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        )

    def enforce_iam(self) -> None:
        """From now on every request must be signed by one of moto's IAM keys and be allowed
        by its policies (moto's `INITIAL_NO_AUTH_ACTION_COUNT`, set to 0 at run time)."""
        import urllib.request

        request = urllib.request.Request(
            self.endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=10).read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def make_client(
    endpoint: str,
    region: str = REGION,
    access_key: str = ACCESS_KEY,
    validate: bool = True,
    secret_key: str = SECRET_KEY,
    token: str | None = None,
    verify: str | bool | None = None,
    retries: dict[str, Any] | None = None,
) -> Any:
    """A boto3 Image Builder client for `endpoint`. With validate=False botocore sends what it
    is given, so that the server's own validation can be tested. `retries` is botocore's retry
    configuration; the default makes one attempt, so that a test sees every error."""
    return boto3.client(
        "imagebuilder",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        verify=verify,
        config=Config(
            retries=retries or {"total_max_attempts": 1},
            parameter_validation=validate,
        ),
    )


def make_ec2_client(endpoint: str, access_key: str = ACCESS_KEY, region: str = REGION) -> Any:
    """A boto3 EC2 client for Kiln's EC2 Query API (the AMI calls) on `endpoint`."""
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )


def make_iam_client(endpoint: str, access_key: str = ACCESS_KEY) -> Any:
    """A boto3 IAM client for Kiln's IAM endpoint (the cross-account distribution role)."""
    return boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )


DISTRIBUTION_ROLE = "EC2ImageBuilderDistributionCrossAccountRole"
DISTRIBUTION_POLICY = "arn:aws:iam::aws:policy/Ec2ImageBuilderCrossAccountDistributionAccess"


def trust_policy(*accounts: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in accounts]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def allow_distribution(endpoint: str, target_key: str, source: str = DEFAULT_ACCOUNT) -> None:
    """The account of `target_key` consents, as on AWS, to distributions from `source`: it
    creates EC2ImageBuilderDistributionCrossAccountRole trusting `source` and attaches the
    distribution policy."""
    iam = make_iam_client(endpoint, target_key)
    iam.create_role(RoleName=DISTRIBUTION_ROLE, AssumeRolePolicyDocument=trust_policy(source))
    iam.attach_role_policy(RoleName=DISTRIBUTION_ROLE, PolicyArn=DISTRIBUTION_POLICY)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return exc.response["Error"]["Code"]


def error_message(exc: botocore.exceptions.ClientError) -> str:
    return exc.response["Error"]["Message"]


def sign(
    endpoint: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    region: str = REGION,
    token: str | None = None,
) -> dict[str, str]:
    """`headers` plus the SigV4 headers botocore adds (X-Amz-Date, Authorization, and
    X-Amz-Security-Token with a token), signed now for `method endpoint+path` with `body`."""
    request = AWSRequest(method=method, url=endpoint + path, data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(access_key, secret_key, token), "imagebuilder", region).add_auth(request)
    return dict(request.headers.items())


def raw_request(
    endpoint: str,
    method: str,
    path: str,
    body: bytes | str | dict | None = None,
    headers: dict[str, str] | None = None,
    signed: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request without any SDK: (status, lower-cased headers, body). It is signed with
    ACCESS_KEY (over the body and Content-Type) unless `signed` is false; `headers` are added
    after signing, so they can also replace what was signed."""
    host = endpoint.split("://", 1)[1]
    conn = http.client.HTTPConnection(host, timeout=30)
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    all_headers = {"Content-Type": "application/json"}
    if signed:
        all_headers = sign(endpoint, method, path, body or b"", all_headers)
    all_headers.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def aws_executable() -> str:
    """The aws CLI of the venv running the tests, else the first on PATH."""
    beside_python = Path(sys.executable).parent / "aws"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("aws")
    if not found:
        raise RuntimeError("the aws CLI is not installed (pip install -r tests/python/requirements.txt)")
    return found


def aws_cli_env(workdir: Path, access_key: str = ACCESS_KEY) -> dict[str, str]:
    """The environment of an aws CLI that signs with `access_key` (and SECRET_KEY) and reads no
    configuration of the machine's: empty config and credentials files in `workdir`."""
    config = workdir / "aws-config"
    credentials = workdir / "aws-credentials"
    config.write_text("")
    credentials.write_text("")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    return env


class AwsCli:
    """Runs `aws imagebuilder ...` against the server with throwaway credentials and config."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        self.endpoint = endpoint
        self.workdir = workdir
        self.env = aws_cli_env(workdir)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [
            aws_executable(),
            "imagebuilder",
            *args,
            "--endpoint-url",
            self.endpoint,
            "--region",
            REGION,
            "--output",
            "json",
        ]
        result = subprocess.run(
            command,
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def json(self, *args: str) -> dict:
        out = self.run(*args).stdout
        return json.loads(out) if out.strip() else {}


# --- Builders of valid resources, shared by the resource test files ------------------------

BUILD_COMPONENT_YAML = """\
name: hello
description: Says hello
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Hello
        action: ExecuteBash
        inputs:
          commands:
            - echo hello
  - name: validate
    steps:
      - name: Check
        action: ExecuteBash
        inputs:
          commands:
            - test -n "$HOME"
"""

TEST_COMPONENT_YAML = """\
schemaVersion: 1.0
phases:
  - name: test
    steps:
      - name: Probe
        action: ExecuteBash
        inputs:
          commands:
            - echo probing
"""

WORKFLOW_YAML = """\
name: sample-test
description: A test workflow
schemaVersion: 1.0
steps:
  - name: LaunchTestInstance
    action: LaunchInstance
    onFailure: Abort
    inputs:
      waitFor: ssmAgent
  - name: TerminateTestInstance
    action: TerminateInstance
    onFailure: Continue
    inputs:
      instanceId.$: "$.stepOutputs.LaunchTestInstance.instanceId"
"""

PARENT_AMI = "ami-0123456789abcdef0"


def create_infra(client: Any, name: str | None = None, **extra: Any) -> str:
    response = client.create_infrastructure_configuration(
        name=name or unique_name("infra"),
        instanceProfileName="EC2InstanceProfileForImageBuilder",
        **extra,
    )
    return response["infrastructureConfigurationArn"]


def create_component(
    client: Any,
    name: str | None = None,
    version: str = "1.0.0",
    data: str = BUILD_COMPONENT_YAML,
    **extra: Any,
) -> str:
    response = client.create_component(
        name=name or unique_name("comp"),
        semanticVersion=version,
        platform="Linux",
        data=data,
        **extra,
    )
    return response["componentBuildVersionArn"]


def create_image_recipe(
    client: Any,
    component_arns: list[str],
    name: str | None = None,
    version: str = "1.0.0",
    **extra: Any,
) -> str:
    extra.setdefault("parentImage", PARENT_AMI)
    response = client.create_image_recipe(
        name=name or unique_name("recipe"),
        semanticVersion=version,
        components=[{"componentArn": arn} for arn in component_arns],
        **extra,
    )
    return response["imageRecipeArn"]


def create_workflow(
    client: Any,
    name: str | None = None,
    version: str = "1.0.0",
    type_: str = "TEST",
    data: str = WORKFLOW_YAML,
    **extra: Any,
) -> str:
    response = client.create_workflow(
        name=name or unique_name("wf"),
        semanticVersion=version,
        type=type_,
        data=data,
        **extra,
    )
    return response["workflowBuildVersionArn"]


def create_distribution(client: Any, name: str | None = None, **extra: Any) -> str:
    response = client.create_distribution_configuration(
        name=name or unique_name("dist"),
        distributions=[
            {
                "region": REGION,
                "amiDistributionConfiguration": {"name": "out-{{ imagebuilder:buildDate }}"},
            }
        ],
        **extra,
    )
    return response["distributionConfigurationArn"]


def arn_prefix(account: str = DEFAULT_ACCOUNT, region: str = REGION) -> str:
    return f"arn:aws:imagebuilder:{region}:{account}"


def assert_client_error(
    call: Callable[[], Any], code: str, *fragments: str
) -> botocore.exceptions.ClientError:
    """Runs `call`, which must fail with `code`; the message must contain every fragment."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    exc = info.value
    assert error_code(exc) == code, f"expected {code}, got {error_code(exc)}: {error_message(exc)}"
    message = error_message(exc)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message {message!r}"
    return exc


def raw_request_streaming_body(
    endpoint: str, method: str, path: str, body_size: int
) -> tuple[int, dict[str, str], bytes]:
    """Like `raw_request`, for bodies the server may refuse before reading them to the end.

    The body is sent from another thread while this one reads the response, so an early answer
    (and the connection closing under the sender) cannot deadlock or fail the request.
    """
    host, port = endpoint.split("://", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_size}\r\n\r\n"
    ).encode()
    # A JSON string of the requested size: valid JSON, so only its size is wrong.
    body = b'{"description":"' + b"x" * (body_size - 18) + b'"}'

    def send() -> None:
        try:
            sock.sendall(head)
            for offset in range(0, len(body), 64 * 1024):
                sock.sendall(body[offset : offset + 64 * 1024])
        except OSError:
            pass  # The server answered and closed the connection early: expected.

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        sender.join(10)
        sock.close()


def raw_exchange(
    endpoint: str, data: bytes, responses: int = 1
) -> tuple[list[tuple[int, dict[str, str], bytes]], bool]:
    """Sends `data` exactly as given on one connection (requests no HTTP library would write:
    malformed heads, pipelines) and reads `responses` answers; returns them (status,
    lower-cased headers, body) and whether the server then closed the connection.

    Only for requests the server refuses at its HTTP edge, before any credentials are looked at.
    """
    host, port = endpoint.split("://", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)

    def send() -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass  # The server refused early and closed: the answer is what counts.

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answers = []
    try:
        reader = sock.makefile("rb")
        for _ in range(responses):
            answers.append(_read_response(reader))
        sock.settimeout(5)
        try:
            closed = reader.read(1) == b""
        except (TimeoutError, OSError):
            closed = False
        return answers, closed
    finally:
        sender.join(10)
        sock.close()


def _read_response(reader: Any) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body (all of the server's answers have one)."""
    status_line = reader.readline().decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise AssertionError(f"not an HTTP response: {status_line!r}")
    headers: dict[str, str] = {}
    while True:
        line = reader.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return int(parts[1]), headers, body
