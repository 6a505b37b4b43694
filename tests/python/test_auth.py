"""Verified callers: every request carries a valid SigV4 signature of a key
in the server's credentials file, which says the key's account; Kiln's own /kiln/v1/ endpoints
verify callers the same way and answer only about the caller's account.

Signatures here come from real botocore (boto3 clients, its SigV4Auth for raw requests, its
presigned URLs) and the real aws CLI."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import pytest

from kiln_testlib import (
    ACCESS_KEY,
    DEFAULT_ACCOUNT,
    REGION,
    SECRET_KEY,
    KilnServer,
    arn_prefix,
    assert_client_error,
    aws_executable,
    create_infra,
    kiln_bin,
    make_client,
    raw_request,
    sign,
    unique_name,
)

OTHER_KEY = "AKIDSECONDACCOUNT"
OTHER_ACCOUNT = "210987654321"
TEMP_KEY = "ASIATEMPORARYKEY0"
TEMP_TOKEN = "FwoGZXIvYXdzEXAMPLEsessiontoken0123456789"
EXPIRED_KEY = "ASIAEXPIREDKEY000"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = KilnServer(
        tmp_path_factory.mktemp("auth") / "data", keys={OTHER_KEY: OTHER_ACCOUNT}
    )
    server.start()
    yield server
    server.stop_gracefully()


def add_profile(server: KilnServer, text: str) -> None:
    with open(server.credentials_path, "a", encoding="utf-8") as f:
        f.write("\n" + text)


def reloads(server: KilnServer) -> int:
    return server.log_path.read_text(errors="replace").count("reloaded the credentials file")


def reload(server: KilnServer) -> None:
    assert server.process is not None
    seen = reloads(server)
    server.process.send_signal(signal.SIGHUP)
    # The reload is asynchronous; the log says when it happened.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if reloads(server) > seen:
            return
        time.sleep(0.05)
    raise AssertionError("the server did not reload its credentials file:\n" + server.log())


def error_of(status: int, headers: dict, body: bytes) -> tuple[int, str, str]:
    message = json.loads(body)["message"]
    return status, headers.get("x-amzn-errortype", ""), message


def test_a_signed_request_acts_as_the_keys_account(srv):
    assert create_infra(make_client(srv.endpoint)).startswith(arn_prefix(DEFAULT_ACCOUNT) + ":")
    other = make_client(srv.endpoint, access_key=OTHER_KEY)
    assert create_infra(other).startswith(arn_prefix(OTHER_ACCOUNT) + ":")


def test_unsigned_requests_are_refused(srv):
    for method, path in [("POST", "/ListComponents"), ("GET", "/kiln/v1/logs?imageBuildVersionArn=x")]:
        status, kind, message = error_of(*raw_request(srv.endpoint, method, path, "{}", signed=False))
        assert (status, kind) == (403, "MissingAuthenticationTokenException"), message


def test_a_wrong_secret_is_refused_without_leaking_the_signature(srv):
    exc = assert_client_error(
        lambda: make_client(srv.endpoint, secret_key="not-the-secret").list_components(),
        "InvalidSignatureException",
        "does not match",
    )
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert not re.search(r"[0-9a-f]{64}", exc.response["Error"]["Message"])


def test_an_unknown_key_is_refused(srv):
    assert_client_error(
        lambda: make_client(srv.endpoint, access_key="AKIDNOBODYKNOWS0").list_components(),
        "UnrecognizedClientException",
    )


@pytest.mark.parametrize("age", [datetime.timedelta(days=365), datetime.timedelta(minutes=-20)])
def test_a_request_time_outside_15_minutes_is_refused(srv, age):
    when = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - age
    client = make_client(srv.endpoint)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        exc = assert_client_error(client.list_components, "InvalidSignatureException")
    message = exc.response["Error"]["Message"]
    assert ("expired" in message) if age.days > 0 else ("not yet current" in message), message


def test_a_body_changed_after_signing_is_refused(srv):
    name = unique_name()
    signed_body = json.dumps({"name": name, "instanceProfileName": "p", "clientToken": name})
    headers = sign(srv.endpoint, "PUT", "/CreateInfrastructureConfiguration", signed_body.encode(),
                   {"Content-Type": "application/json"})
    changed = signed_body.replace(name, name + "-evil")
    status, kind, _ = error_of(*raw_request(
        srv.endpoint, "PUT", "/CreateInfrastructureConfiguration", changed, headers=headers, signed=False
    ))
    assert (status, kind) == (403, "InvalidSignatureException")
    names = [s["name"] for s in make_client(srv.endpoint).list_infrastructure_configurations()[
        "infrastructureConfigurationSummaryList"]]
    assert name + "-evil" not in names and name not in names


@pytest.mark.parametrize("region", ["us-east-1:111111111111", "mars-north-1", "us-east-1/extra"])
def test_a_malformed_or_unknown_region_is_refused_never_pasted_into_an_arn(srv, region):
    name = unique_name()
    body = json.dumps({"name": name, "instanceProfileName": "p", "clientToken": name}).encode()
    headers = sign(srv.endpoint, "PUT", "/CreateInfrastructureConfiguration", body,
                   {"Content-Type": "application/json"}, region=region)
    status, kind, message = error_of(*raw_request(
        srv.endpoint, "PUT", "/CreateInfrastructureConfiguration", body, headers=headers, signed=False
    ))
    assert status in (400, 403) and kind == "IncompleteSignatureException", (status, kind, message)
    assert "region" in message or "Credential" in message


def test_presigned_urls_work_until_they_expire(srv):
    client = make_client(srv.endpoint)
    arn = create_infra(client)
    url = client.generate_presigned_url(
        "get_infrastructure_configuration",
        Params={"infrastructureConfigurationArn": arn},
        ExpiresIn=2,
    )
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert json.loads(response.read())["infrastructureConfiguration"]["arn"] == arn
    time.sleep(3)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)
    assert info.value.code == 403
    assert info.value.headers["x-amzn-errortype"] == "InvalidSignatureException"
    # A presigned URL whose query was changed does not verify.
    tampered = url.replace("infrastructureConfigurationArn=", "infrastructureConfigurationArn=x")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(tampered, timeout=10)
    assert info.value.code == 403


def test_temporary_keys_need_their_session_token_until_they_expire(srv):
    add_profile(
        srv,
        f"[temporary]\naws_access_key_id = {TEMP_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        f"aws_account_id = {DEFAULT_ACCOUNT}\naws_session_token = {TEMP_TOKEN}\n"
        "kiln_session_expiration = 2099-01-01T00:00:00Z\n\n"
        f"[expired]\naws_access_key_id = {EXPIRED_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        f"aws_account_id = {DEFAULT_ACCOUNT}\naws_session_token = {TEMP_TOKEN}\n"
        "kiln_session_expiration = 2020-01-01T00:00:00Z\n",
    )
    reload(srv)
    make_client(srv.endpoint, access_key=TEMP_KEY, token=TEMP_TOKEN).list_components()
    assert_client_error(
        make_client(srv.endpoint, access_key=TEMP_KEY, token="another-token").list_components,
        "UnrecognizedClientException",
    )
    assert_client_error(
        make_client(srv.endpoint, access_key=TEMP_KEY).list_components,
        "UnrecognizedClientException",
    )
    assert_client_error(
        make_client(srv.endpoint, access_key=EXPIRED_KEY, token=TEMP_TOKEN).list_components,
        "ExpiredTokenException",
    )


def test_kiln_credentials_create_then_sighup_lets_a_new_key_in(srv):
    result = subprocess.run(
        [kiln_bin(), "credentials", "create", "--account", "333344445555", "--profile", "new-team",
         "--file", str(srv.credentials_path)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    fields = dict(re.findall(r"^(\w+) = (\S+)$", result.stdout, re.M))
    assert fields["aws_account_id"] == "333344445555"
    client = make_client(srv.endpoint, access_key=fields["aws_access_key_id"],
                         secret_key=fields["aws_secret_access_key"])
    assert_client_error(client.list_components, "UnrecognizedClientException")
    reload(srv)
    assert create_infra(client).startswith(arn_prefix("333344445555") + ":")
    # The aws CLI reads the same file.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(srv.credentials_path), AWS_CONFIG_FILE="/dev/null",
               AWS_PROFILE="new-team", AWS_DEFAULT_REGION=REGION, AWS_PAGER="")
    cli = subprocess.run(
        [aws_executable(), "imagebuilder", "list-infrastructure-configurations",
         "--endpoint-url", srv.endpoint, "--output", "json"],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )
    assert cli.returncode == 0, cli.stderr
    arns = [s["arn"] for s in json.loads(cli.stdout)["infrastructureConfigurationSummaryList"]]
    assert arns and all(a.startswith(arn_prefix("333344445555")) for a in arns)
    # A duplicate profile name is refused.
    again = subprocess.run(
        [kiln_bin(), "credentials", "create", "--account", "333344445555", "--profile", "new-team",
         "--file", str(srv.credentials_path)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert again.returncode != 0 and "new-team" in again.stderr


def test_a_broken_credentials_file_keeps_the_keys_in_use(srv):
    saved = srv.credentials_path.read_text()
    try:
        srv.credentials_path.write_text("[broken]\naws_access_key_id = AKIDBROKENPROFILE\n")
        assert srv.process is not None
        srv.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "did not load" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "did not load" in srv.log()
        make_client(srv.endpoint).list_components()
    finally:
        srv.credentials_path.write_text(saved)


def test_the_aws_cli_signs_and_a_wrong_secret_fails(srv):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY="wrong", AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_MAX_ATTEMPTS="1")
    cli = subprocess.run(
        [aws_executable(), "imagebuilder", "list-components", "--endpoint-url", srv.endpoint],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )
    assert cli.returncode != 0
    assert "InvalidSignatureException" in cli.stderr, cli.stderr


# --- /kiln/v1/: signed like the API, scoped to the caller's account ---------------------------

def kiln_cli(endpoint: str, *args: str, key: str = ACCESS_KEY) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION)
    return subprocess.run(
        [kiln_bin(), *args, "--endpoint", endpoint],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )


def test_kiln_endpoints_answer_only_for_the_callers_account(srv):
    from kiln_testlib import create_component, create_image_recipe

    owner = make_client(srv.endpoint)
    recipe = create_image_recipe(owner, [create_component(owner)])
    image = owner.create_image(
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=create_infra(owner),
    )["imageBuildVersionArn"]
    pipeline = owner.create_image_pipeline(
        name=unique_name(), imageRecipeArn=recipe,
        infrastructureConfigurationArn=create_infra(owner), status="DISABLED",
    )["imagePipelineArn"]

    assert kiln_cli(srv.endpoint, "logs", image).returncode == 0
    assert kiln_cli(srv.endpoint, "pipeline", "schedule", pipeline).returncode == 0
    for args in (["logs", image], ["image", "export", image, "--format", "raw", "-o", "/dev/null"],
                 ["pipeline", "schedule", pipeline], ["instance", "shell", "0123456789abcdef-build"]):
        out = kiln_cli(srv.endpoint, *args, key=OTHER_KEY)
        assert out.returncode != 0, args
        assert "does not exist" in out.stderr or "no instance" in out.stderr, (args, out.stderr)

    # The raw endpoints: unsigned is refused, another account's image is not found.
    path = f"/kiln/v1/logs?imageBuildVersionArn={urllib.parse.quote(image, safe='')}"
    status, headers, _ = raw_request(srv.endpoint, "GET", path, signed=False)
    assert status == 403
    theirs = sign(srv.endpoint, "GET", path, b"", {}, access_key=OTHER_KEY)
    status, headers, body = raw_request(srv.endpoint, "GET", path, headers=theirs, signed=False)
    assert status == 404 and headers["x-amzn-errortype"] == "ResourceNotFoundException", body
    mine = sign(srv.endpoint, "GET", path, b"", {})
    status, _, _ = raw_request(srv.endpoint, "GET", path, headers=mine, signed=False)
    assert status == 200


def test_kiln_commands_without_credentials_say_how_to_get_them(srv, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path))
    out = subprocess.run(
        [kiln_bin(), "logs", f"{arn_prefix()}:image/x/1.0.0/1", "--endpoint", srv.endpoint],
        capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL,
    )
    assert out.returncode != 0
    assert "AWS_SHARED_CREDENTIALS_FILE" in out.stderr, out.stderr


# --- Starting a server: credentials by default --------------------------------------------------

def start_plain(data_dir: Path, *args: str) -> tuple[subprocess.Popen, list[str]]:
    process = subprocess.Popen(
        [kiln_bin(), "serve", "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("KILN_")},
    )
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.strip())
        if line.startswith("kiln listening on "):
            break
    return process, lines


def test_a_loopback_server_creates_a_credentials_file_the_aws_cli_uses(tmp_path):
    process, lines = start_plain(tmp_path / "data", "--listen", "127.0.0.1:0")
    try:
        path = tmp_path / "data" / "credentials"
        assert any(str(path) in line for line in lines), lines
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        endpoint = lines[-1].split("kiln listening on ", 1)[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_SHARED_CREDENTIALS_FILE=str(path), AWS_CONFIG_FILE="/dev/null",
                   AWS_DEFAULT_REGION=REGION, AWS_PAGER="")
        cli = subprocess.run(
            [aws_executable(), "imagebuilder", "create-infrastructure-configuration", "--name", "first-infra",
             "--instance-profile-name", "p", "--endpoint-url", endpoint, "--output", "json"],
            capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
        )
        assert cli.returncode == 0, cli.stderr
        assert f":{DEFAULT_ACCOUNT}:" in json.loads(cli.stdout)["infrastructureConfigurationArn"]
        unsigned = raw_request(endpoint, "POST", "/ListComponents", "{}", signed=False)
        assert unsigned[0] == 403
    finally:
        process.terminate()
        process.wait(20)
    first = path.read_text()
    process, _ = start_plain(tmp_path / "data", "--listen", "127.0.0.1:0")
    process.terminate()
    process.wait(20)
    assert path.read_text() == first, "a restart keeps the key it created"


def test_a_non_loopback_server_refuses_to_start_without_credentials(tmp_path):
    result = subprocess.run(
        [kiln_bin(), "serve", "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("KILN_")},
    )
    assert result.returncode != 0
    assert "kiln listening" not in result.stdout
    assert "--credentials" in result.stderr
    assert not (tmp_path / "data" / "credentials").exists()


# --- HTTPS ----------------------------------------------------------------------------------------

def test_native_tls_serves_the_api_over_https(tmp_path):
    ca, ca_key = tmp_path / "ca.pem", tmp_path / "ca.key"
    cert, key, csr = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "leaf.csr"
    ext = tmp_path / "leaf.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["openssl", "req", "-x509", *ec, "-days", "1", "-subj", "/CN=kiln-test-ca",
         "-keyout", str(ca_key), "-out", str(ca)],
        ["openssl", "req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr)],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert)],
    ):
        made = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    server = KilnServer(tmp_path / "data", extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    server.start()
    try:
        assert server.endpoint.startswith("https://127.0.0.1:")
        client = make_client(server.endpoint, verify=str(ca))
        assert create_infra(client).startswith(arn_prefix(DEFAULT_ACCOUNT) + ":")
        # `kiln` commands trust the certificate through AWS_CA_BUNDLE, as the aws CLI does.
        pipeline = f"{arn_prefix()}:image-pipeline/none"
        env = dict(os.environ, AWS_CA_BUNDLE=str(ca))
        out = subprocess.run(
            [kiln_bin(), "pipeline", "schedule", pipeline, "--endpoint", server.endpoint],
            capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL,
        )
        assert "does not exist" in out.stderr, out.stderr
        # Plain HTTP on the TLS port gets no answer from the API.
        plain = server.endpoint.replace("https://", "http://")
        with pytest.raises(Exception):
            raw_request(plain, "POST", "/ListComponents", "{}")
    finally:
        server.stop_gracefully()


def test_a_bad_tls_key_stops_the_server_at_start(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    result = subprocess.run(
        [kiln_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
         "--tls-cert", str(cert), "--tls-key", str(cert)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert str(cert) in result.stderr and "kiln listening" not in result.stdout
