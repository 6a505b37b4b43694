"""Component and workflow documents from S3 (`uri: s3://bucket/key`), ImportComponent, and the
"Initial version" changeDescription default, end to end through boto3.

moto's S3 server stands in for S3 (`kiln serve --s3-endpoint`). With IAM enforced in moto,
the tests show that Kiln reads with the caller's own key: one caller may read the bucket,
another is refused. A small fake endpoint on loopback serves what moto cannot: wrong
checksums and an answer that never comes.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from kiln_testlib import (
    KilnServer,
    MotoServer,
    assert_client_error,
    create_infra,
    make_client,
    unique_name,
)

BUCKET = "kiln-docs"

COMPONENT = """\
name: from-s3
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Hello
        action: ExecuteBash
        inputs:
          commands:
            - echo hello from s3
"""

WORKFLOW = """\
name: wf-from-s3
schemaVersion: 1.0
steps:
  - name: Components
    action: ExecuteComponents
    onFailure: Abort
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(moto: MotoServer) -> Any:
    client = moto.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def kiln(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[KilnServer]:
    srv = KilnServer(
        tmp_path_factory.mktemp("kiln-s3") / "data",
        extra_args=["--s3-endpoint", moto.endpoint],
    ).start()
    yield srv
    srv.stop_gracefully()


@pytest.fixture(scope="module")
def ib(kiln: KilnServer) -> Any:
    return make_client(kiln.endpoint)


def put(s3: Any, body: str | bytes, key: str | None = None) -> str:
    key = key or f"docs/{uuid.uuid4().hex}.yaml"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)
    return f"s3://{BUCKET}/{key}"


def test_without_an_s3_endpoint_a_uri_is_refused(client):
    for call in (
        lambda: client.create_component(
            name=unique_name("c"), semanticVersion="1.0.0", platform="Linux",
            uri=f"s3://{BUCKET}/doc.yaml",
        ),
        lambda: client.create_workflow(
            name=unique_name("w"), semanticVersion="1.0.0", type="TEST",
            uri=f"s3://{BUCKET}/doc.yaml",
        ),
        lambda: client.import_component(
            name=unique_name("i"), semanticVersion="1.0.0", type="BUILD", format="SHELL",
            platform="Linux", uri=f"s3://{BUCKET}/script.sh",
        ),
    ):
        assert_client_error(
            call, "InvalidRequestException", f"uri s3://{BUCKET}/", "no S3 endpoint configured"
        )


def test_a_component_from_s3_is_checked_and_stored_like_data(ib, s3):
    name = unique_name("s3c")
    # Bigger than inline data may be (16,000 characters), within S3's 64 KB.
    big = COMPONENT + "".join(f"# padding line {i:05d} " + "x" * 40 + "\n" for i in range(400))
    assert 16000 < len(big) < 64 * 1024
    uri = put(s3, big)
    arn = ib.create_component(
        name=name, semanticVersion="1.0.0", platform="Linux", uri=uri
    )["componentBuildVersionArn"]
    assert arn.endswith(f"component/{name}/1.0.0/1")
    got = ib.get_component(componentBuildVersionArn=arn)["component"]
    assert got["data"] == big
    assert got["type"] == "BUILD"
    assert got["changeDescription"] == "Initial version"
    # The same content again is "already exists", as with data; changed content is a new build.
    assert_client_error(
        lambda: ib.create_component(name=name, semanticVersion="1.0.0", platform="Linux", uri=uri),
        "ResourceAlreadyExistsException",
    )
    s3.put_object(Bucket=BUCKET, Key=uri.split("/", 3)[3], Body=(big + "# changed\n").encode())
    second = ib.create_component(
        name=name, semanticVersion="1.0.0", platform="Linux", uri=uri
    )["componentBuildVersionArn"]
    assert second.endswith("/1.0.0/2")
    # Inline data of the same document is the same content.
    small = unique_name("s3c")
    ib.create_component(name=small, semanticVersion="1.0.0", platform="Linux", uri=put(s3, COMPONENT))
    assert_client_error(
        lambda: ib.create_component(
            name=small, semanticVersion="1.0.0", platform="Linux", data=COMPONENT
        ),
        "ResourceAlreadyExistsException",
    )


def test_a_bad_document_from_s3_gets_the_inline_message_naming_the_uri(ib, s3, client):
    bad = COMPONENT.replace("ExecuteBash", "ExecuteNothing")
    uri = put(s3, bad)
    inline = assert_client_error(
        lambda: client.create_component(
            name=unique_name("c"), semanticVersion="1.0.0", platform="Linux", data=bad
        ),
        "InvalidRequestException",
    )
    problem = inline.response["Error"]["Message"].removeprefix("data: ")
    assert_client_error(
        lambda: ib.create_component(
            name=unique_name("c"), semanticVersion="1.0.0", platform="Linux", uri=uri
        ),
        "InvalidRequestException",
        f"uri {uri}: {problem}",
    )


def test_a_workflow_from_s3(ib, s3):
    name = unique_name("s3w")
    uri = put(s3, WORKFLOW)
    arn = ib.create_workflow(
        name=name, semanticVersion="1.0.0", type="BUILD", uri=uri
    )["workflowBuildVersionArn"]
    got = ib.get_workflow(workflowBuildVersionArn=arn)["workflow"]
    assert got["data"] == WORKFLOW
    assert got["changeDescription"] == "Initial version"
    assert_client_error(
        lambda: ib.create_workflow(name=name, semanticVersion="1.0.0", type="BUILD", uri=uri),
        "ResourceAlreadyExistsException",
    )
    # A document for another stage is refused as it would be inline.
    assert_client_error(
        lambda: ib.create_workflow(name=name, semanticVersion="2.0.0", type="DISTRIBUTION", uri=uri),
        "InvalidRequestException",
        f"uri {uri}: steps[0].action: 'ExecuteComponents' can only be used in",
    )
    later = ib.create_workflow(
        name=name, semanticVersion="2.0.0", type="BUILD", data=WORKFLOW
    )["workflowBuildVersionArn"]
    assert "changeDescription" not in ib.get_workflow(workflowBuildVersionArn=later)["workflow"]


def test_s3_errors_name_the_uri_and_s3s_code(ib, s3):
    def create(uri: str) -> Any:
        return lambda: ib.create_component(
            name=unique_name("c"), semanticVersion="1.0.0", platform="Linux", uri=uri
        )

    missing = f"s3://{BUCKET}/docs/none.yaml"
    assert_client_error(create(missing), "InvalidRequestException", f"uri {missing}", "404", "NoSuchKey")
    assert_client_error(
        create("s3://no-such-bucket/doc.yaml"), "InvalidRequestException", "NoSuchBucket"
    )
    for bad in ("https://example.com/doc.yaml", f"s3://{BUCKET}", f"s3://{BUCKET}/dir/", "s3:///k"):
        assert_client_error(create(bad), "InvalidRequestException", f"uri {bad}", "s3://bucket/key")
    too_big = put(s3, COMPONENT + "#" * (64 * 1024))
    assert_client_error(
        create(too_big), "InvalidRequestException", f"uri {too_big}", "at most 65536 bytes"
    )
    binary = put(s3, b"name: x\nschemaVersion: 1.0\n\xff\xfe\n")
    assert_client_error(create(binary), "InvalidRequestException", "not UTF-8")
    assert_client_error(
        lambda: ib.create_component(
            name=unique_name("c"), semanticVersion="1.0.0", platform="Linux",
            data=COMPONENT, uri=put(s3, COMPONENT),
        ),
        "InvalidParameterCombinationException",
        "data and uri",
    )


def test_a_client_token_retry_answers_the_first_response_without_reading_again(ib, s3):
    name = unique_name("tok")
    key = f"docs/{uuid.uuid4().hex}.yaml"
    uri = put(s3, COMPONENT, key)
    token = str(uuid.uuid4())
    first = ib.create_component(
        name=name, semanticVersion="1.0.0", platform="Linux", uri=uri, clientToken=token
    )
    s3.delete_object(Bucket=BUCKET, Key=key)
    again = ib.create_component(
        name=name, semanticVersion="1.0.0", platform="Linux", uri=uri, clientToken=token
    )
    assert again["componentBuildVersionArn"] == first["componentBuildVersionArn"]
    assert_client_error(
        lambda: ib.create_component(
            name=name, semanticVersion="1.0.1", platform="Linux", uri=uri, clientToken=token
        ),
        "IdempotentParameterMismatchException",
    )


def test_change_description_defaults_to_initial_version_for_the_first_version(ib):
    name = unique_name("cd")
    create = lambda version, **extra: ib.create_component(  # noqa: E731
        name=name, semanticVersion=version, platform="Linux", data=COMPONENT, **extra
    )["componentBuildVersionArn"]
    get = lambda arn: ib.get_component(componentBuildVersionArn=arn)["component"]  # noqa: E731
    first = create("1.0.0")
    assert get(first)["changeDescription"] == "Initial version"
    second = create("1.1.0")
    assert "changeDescription" not in get(second)
    third = create("1.2.0", changeDescription="Adds things")
    assert get(third)["changeDescription"] == "Adds things"
    # The first version stays the first one: the same content again still "already exists".
    assert_client_error(lambda: create("1.0.0"), "ResourceAlreadyExistsException")
    summaries = ib.list_components(filters=[{"name": "name", "values": [name]}])["componentVersionList"]
    assert len(summaries) == 3


# ImportComponent


def test_import_component_wraps_a_shell_script(ib, s3):
    name = unique_name("imp")
    script = "#!/bin/bash\nset -e\necho \"imported: $HOSTNAME\"\n"
    token = str(uuid.uuid4())
    response = ib.import_component(
        name=name, semanticVersion="1.0.0", type="TEST", format="SHELL", platform="Linux",
        data=script, clientToken=token, description="a script", tags={"k": "v"},
    )
    arn = response["componentBuildVersionArn"]
    assert set(response) - {"ResponseMetadata"} == {"requestId", "clientToken", "componentBuildVersionArn"}
    assert response["clientToken"] == token
    got = ib.get_component(componentBuildVersionArn=arn)["component"]
    assert got["type"] == "TEST"
    assert got["platform"] == "Linux"
    assert got["description"] == "a script"
    assert got["changeDescription"] == "Initial version"
    assert got["tags"] == {"k": "v"}
    import yaml

    doc = yaml.safe_load(got["data"])
    assert doc["name"] == name and doc["schemaVersion"] == 1.0
    assert doc["phases"] == [{
        "name": "test",
        "steps": [{"name": "RunScript", "action": "ExecuteBash", "inputs": {"commands": [script]}}],
    }]
    # A retry with the token answers the same; identical content is "already exists".
    again = ib.import_component(
        name=name, semanticVersion="1.0.0", type="TEST", format="SHELL", platform="Linux",
        data=script, clientToken=token, description="a script", tags={"k": "v"},
    )
    assert again["componentBuildVersionArn"] == arn
    assert_client_error(
        lambda: ib.import_component(
            name=name, semanticVersion="1.0.0", type="TEST", format="SHELL", platform="Linux",
            data=script, description="a script",
        ),
        "ResourceAlreadyExistsException",
    )
    # From S3, for Windows: a PowerShell step in the build phase; longer than inline allows.
    long_script = "Write-Host 'hello'\n" + "# comment\n" * 200
    uri = put(s3, long_script, f"scripts/{uuid.uuid4().hex}.ps1")
    win = ib.import_component(
        name=unique_name("impw"), semanticVersion="1.0.0", type="BUILD", format="SHELL",
        platform="Windows", uri=uri,
    )["componentBuildVersionArn"]
    win_doc = yaml.safe_load(ib.get_component(componentBuildVersionArn=win)["component"]["data"])
    step = win_doc["phases"][0]["steps"][0]
    assert win_doc["phases"][0]["name"] == "build"
    assert step["action"] == "ExecutePowerShell" and step["inputs"]["commands"] == [long_script]


def test_import_component_refuses_what_the_model_refuses(kiln):
    raw = make_client(kiln.endpoint, validate=False)
    base = dict(name=unique_name("imp"), semanticVersion="1.0.0", type="BUILD",
                platform="Linux", clientToken=str(uuid.uuid4()))
    assert_client_error(
        lambda: raw.import_component(**{**base, "format": "YAML", "data": "echo hi"}),
        "InvalidRequestException", "format",
    )
    assert_client_error(
        lambda: raw.import_component(**{**base, "format": "SHELL", "data": "x" * 1025}),
        "InvalidRequestException", "data",
    )
    assert_client_error(
        lambda: raw.import_component(**{**base, "format": "SHELL"}),
        "InvalidRequestException", "data and uri",
    )
    assert_client_error(
        lambda: raw.import_component(**{**base, "format": "SHELL", "data": "   \n"}),
        "InvalidRequestException", "empty",
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")
def test_an_imported_script_runs_in_a_build(ib):
    infra = create_infra(ib, instanceTypes=["t3.micro"])
    comp = ib.import_component(
        name=unique_name("run"), semanticVersion="1.0.0", type="BUILD", format="SHELL",
        platform="Linux", data="echo imported-script-ran\nexit 7\n",
    )["componentBuildVersionArn"]
    recipe = ib.create_image_recipe(
        name=unique_name("recipe"), semanticVersion="1.0.0",
        parentImage="arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
        components=[{"componentArn": comp}],
    )["imageRecipeArn"]
    arn = ib.create_image(
        imageRecipeArn=recipe, infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": False},
    )["imageBuildVersionArn"]
    deadline = time.monotonic() + 600
    while True:
        state = ib.get_image(imageBuildVersionArn=arn)["image"]["state"]
        if state["status"] in ("AVAILABLE", "FAILED", "CANCELLED"):
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    # The script's exit code fails the build in the wrapper's step.
    assert state["status"] == "FAILED", state
    assert "RunScript" in state["reason"] and "7" in state["reason"], state["reason"]


# Whose permissions


def credentials_file(path: Path, keys: dict[str, tuple[str, str]]) -> Path:
    """Kiln's credentials file: {access key id: (secret, account)}."""
    path.write_text("".join(
        f"[k{i}]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"
        f"aws_account_id = {account}\n\n"
        for i, (akid, (secret, account)) in enumerate(keys.items())
    ))
    path.chmod(0o600)
    return path


def test_s3_is_read_with_the_callers_own_key(tmp_path):
    moto = MotoServer(tmp_path)
    try:
        s3 = moto.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="private/doc.yaml", Body=COMPONENT.encode())
        iam = moto.client("iam")
        keys = {}
        for user in ("reader", "stranger"):
            iam.create_user(UserName=user)
            k = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (k["AccessKeyId"], k["SecretAccessKey"])
        iam.put_user_policy(
            UserName="reader", PolicyName="read-docs",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/private/*",
            }]}),
        )
        moto.enforce_iam()
        uri = f"s3://{BUCKET}/private/doc.yaml"
        creds = credentials_file(tmp_path / "credentials", {
            keys["reader"][0]: (keys["reader"][1], "111111111111"),
            keys["stranger"][0]: (keys["stranger"][1], "222222222222"),
        })
        srv = KilnServer(
            tmp_path / "data",
            extra_args=["--credentials", str(creds), "--s3-endpoint", moto.endpoint],
        ).start()
        try:
            reader = make_client(srv.endpoint, access_key=keys["reader"][0], secret_key=keys["reader"][1])
            stranger = make_client(srv.endpoint, access_key=keys["stranger"][0], secret_key=keys["stranger"][1])
            arn = reader.create_component(
                name="private", semanticVersion="1.0.0", platform="Linux", uri=uri
            )["componentBuildVersionArn"]
            assert ":111111111111:" in arn
            assert_client_error(
                lambda: stranger.create_component(
                    name="private", semanticVersion="1.0.0", platform="Linux", uri=uri
                ),
                "ForbiddenException", f"uri {uri}", "caller's credentials", "403", "AccessDenied",
            )
            # The secret never reaches the log.
            assert keys["reader"][1] not in srv.log() and keys["stranger"][1] not in srv.log()
        finally:
            srv.stop_gracefully()

        # --insecure-no-auth has no caller key: the operator's key, or nothing.
        insecure = KilnServer(
            tmp_path / "insecure", extra_args=["--insecure-no-auth", "--s3-endpoint", moto.endpoint],
        ).start()
        try:
            assert_client_error(
                lambda: make_client(insecure.endpoint).create_component(
                    name="xyz", semanticVersion="1.0.0", platform="Linux", uri=uri
                ),
                "InvalidRequestException", "--insecure-no-auth", "--s3-access-key-id",
            )
        finally:
            insecure.stop_gracefully()
        with_key = KilnServer(
            tmp_path / "insecure-key",
            extra_args=["--insecure-no-auth", "--s3-endpoint", moto.endpoint],
            extra_env={
                "KILN_S3_ACCESS_KEY_ID": keys["reader"][0],
                "KILN_S3_SECRET_ACCESS_KEY": keys["reader"][1],
            },
        ).start()
        try:
            make_client(with_key.endpoint).create_component(
                name="xyz", semanticVersion="1.0.0", platform="Linux", uri=uri
            )
        finally:
            with_key.stop_gracefully()
    finally:
        moto.stop()


# What moto cannot do: a fake endpoint on loopback.


class FakeS3(http.server.BaseHTTPRequestHandler):
    """Answers GET /bucket/<case>: `good-sha`, `bad-sha`, `good-etag`, `bad-etag`,
    `unsized-big`, `hang`."""

    seen: list[dict[str, str]] = []
    body = COMPONENT.encode()

    def do_GET(self) -> None:  # noqa: N802
        FakeS3.seen.append({k.lower(): v for k, v in self.headers.items()})
        case = self.path.rsplit("/", 1)[-1]
        if case == "hang":
            time.sleep(30)
            return
        if case == "unsized-big":
            # No Content-Length (HTTP/1.0, the body ends with the connection): the cap applies
            # while reading.
            self.send_response(200)
            self.end_headers()
            self.wfile.write(self.body + b"#" * (70 * 1024))
            return
        sha = base64.b64encode(hashlib.sha256(self.body).digest()).decode()
        headers = {
            "good-sha": {"x-amz-checksum-sha256": sha},
            "bad-sha": {"x-amz-checksum-sha256": base64.b64encode(b"\0" * 32).decode()},
            "bad-etag": {"ETag": '"' + "0" * 32 + '"'},
            "good-etag": {"ETag": '"' + hashlib.md5(self.body).hexdigest() + '"'},
        }[case]
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeS3)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kiln = KilnServer(
        tmp_path_factory.mktemp("kiln-fake") / "data",
        extra_args=["--s3-endpoint", f"http://127.0.0.1:{server.server_address[1]}"],
    ).start()
    yield make_client(kiln.endpoint)
    kiln.stop_gracefully()
    server.shutdown()


def create_from(client: Any, case: str) -> Any:
    return client.create_component(
        name=unique_name("f"), semanticVersion="1.0.0", platform="Linux", uri=f"s3://b/{case}"
    )


def test_checksums_s3_sends_are_verified(fake):
    FakeS3.seen.clear()
    create_from(fake, "good-sha")
    assert FakeS3.seen[-1].get("x-amz-checksum-mode") == "ENABLED"
    create_from(fake, "good-etag")
    assert_client_error(
        lambda: create_from(fake, "bad-sha"), "InvalidRequestException",
        "uri s3://b/bad-sha", "x-amz-checksum-sha256",
    )
    assert_client_error(
        lambda: create_from(fake, "bad-etag"), "InvalidRequestException", "ETag",
    )
    assert_client_error(
        lambda: create_from(fake, "unsized-big"), "InvalidRequestException",
        "more than 65536 bytes", "at most 65536 bytes",
    )


def test_an_endpoint_that_is_down_or_silent_is_unavailable_not_a_hang(fake, tmp_path):
    started = time.monotonic()
    assert_client_error(
        lambda: create_from(fake, "hang"), "ServiceUnavailableException", "uri s3://b/hang",
    )
    assert time.monotonic() - started < 25
    down = KilnServer(
        tmp_path / "data", extra_args=["--s3-endpoint", f"http://127.0.0.1:{free_port()}"],
    ).start()
    try:
        assert_client_error(
            lambda: create_from(make_client(down.endpoint), "doc.yaml"),
            "ServiceUnavailableException", "uri s3://b/doc.yaml", "could not be read",
        )
    finally:
        down.stop_gracefully()


def test_a_container_recipe_reads_its_dockerfile_template_from_s3(ib, s3):
    template = (
        "FROM {{{ imagebuilder:parentImage }}}\n"
        "ENV FROM_S3=yes\n"
        "RUN echo built > /from-s3.txt\n"
    )
    uri = put(s3, template, key=f"templates/{uuid.uuid4().hex}/Dockerfile")
    base = dict(
        containerType="DOCKER",
        semanticVersion="1.0.0",
        parentImage="arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
        targetRepository={"service": "ECR", "repositoryName": "kiln/s3"},
    )
    arn = ib.create_container_recipe(
        name=unique_name("s3ctr"), dockerfileTemplateUri=uri, **base
    )["containerRecipeArn"]
    got = ib.get_container_recipe(containerRecipeArn=arn)["containerRecipe"]
    assert got["dockerfileTemplateData"] == template
    # The template read from S3 is checked as inline data is, naming where it came from.
    bad = put(s3, "FROM {{{ imagebuilder:parentImage }}}\nCOPY app.py /app/\n")
    assert_client_error(
        lambda: ib.create_container_recipe(
            name=unique_name("s3ctr"), dockerfileTemplateUri=bad, **base
        ),
        "InvalidRequestException",
        f"dockerfileTemplateUri {bad}",
        "line 2",
        "build context",
    )
    assert_client_error(
        lambda: ib.create_container_recipe(
            name=unique_name("s3ctr"),
            dockerfileTemplateUri=f"s3://{BUCKET}/templates/missing/Dockerfile",
            **base,
        ),
        "InvalidRequestException",
        "dockerfileTemplateUri",
    )
