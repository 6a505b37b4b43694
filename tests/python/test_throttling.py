"""Per-account request rates: a server started with a low limit (`--rate-limit 5 --rate-burst
5`) answers calls beyond an account's bucket with 429 `ThrottlingException` and `Retry-After`;
boto3's standard retry mode recovers from it without user code; other accounts, and the same
account's other bucket (reads and writes are separate), are not slowed; `/kiln/v1/` requests
count too."""

from __future__ import annotations

import json
from typing import Iterator

import botocore.exceptions
import pytest

from kiln_testlib import KilnServer, create_infra, make_client, raw_request

RATE = 5
OTHER_KEY = "AKIDTHROTTLEOTHER"
OTHER_ACCOUNT = "444455556666"


@pytest.fixture
def slow_server(tmp_path) -> Iterator[KilnServer]:
    """A server of its own per test, so that every test starts with full buckets."""
    srv = KilnServer(
        tmp_path / "data",
        extra_args=["--rate-limit", str(RATE), "--rate-burst", str(RATE)],
        keys={OTHER_KEY: OTHER_ACCOUNT},
    ).start()
    yield srv
    srv.stop_gracefully()


def throttled_call(call) -> botocore.exceptions.ClientError:
    """Calls until the bucket is empty (more than a burst and a second's refill cannot pass
    while this loop runs); returns the refusal."""
    for _ in range(RATE * 20):
        try:
            call()
        except botocore.exceptions.ClientError as exc:
            return exc
    raise AssertionError("no call was throttled")


def test_a_client_without_retries_sees_429_throttling_with_retry_after(slow_server):
    client = make_client(slow_server.endpoint)
    exc = throttled_call(client.list_infrastructure_configurations)
    assert exc.response["Error"]["Code"] == "ThrottlingException"
    metadata = exc.response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == 429
    headers = metadata["HTTPHeaders"]
    assert int(headers["retry-after"]) >= 1
    assert headers["x-amzn-errortype"] == "ThrottlingException"
    assert "Rate exceeded" in exc.response["Error"]["Message"]


def test_standard_retry_mode_recovers_without_user_code(slow_server):
    client = make_client(
        slow_server.endpoint, retries={"mode": "standard", "max_attempts": 10}
    )
    retried = 0
    for _ in range(RATE * 4):
        response = client.list_infrastructure_configurations()
        retried += response["ResponseMetadata"]["RetryAttempts"]
    assert retried > 0, "the limit was never reached, so nothing was proven"
    # Writes too: every create succeeds, and each exists once.
    names = [f"throttled-{i}" for i in range(RATE * 2)]
    for name in names:
        create_infra(client, name)
    listed = client.list_infrastructure_configurations()["infrastructureConfigurationSummaryList"]
    assert sorted(s["name"] for s in listed) == sorted(names)


def test_another_account_is_not_slowed_by_the_first(slow_server):
    mine = make_client(slow_server.endpoint)
    theirs = make_client(slow_server.endpoint, access_key=OTHER_KEY)
    throttled_call(mine.list_infrastructure_configurations)
    for _ in range(RATE):
        theirs.list_infrastructure_configurations()


def test_reads_and_writes_have_separate_buckets(slow_server):
    client = make_client(slow_server.endpoint)
    throttled_call(client.list_infrastructure_configurations)
    create_infra(client)


def test_kiln_v1_requests_count_and_are_refused_in_the_aws_format(slow_server):
    # Made first: a client takes longer to make than a token takes to come back.
    client = make_client(slow_server.endpoint)

    def get_schedule() -> tuple[int, dict[str, str], bytes]:
        return raw_request(slow_server.endpoint, "GET", "/kiln/v1/schedule?imagePipelineArn=x")

    for _ in range(RATE * 20):
        status, headers, body = get_schedule()
        if status == 429:
            break
    else:
        raise AssertionError("no /kiln/v1/ request was throttled")
    assert headers["x-amzn-errortype"] == "ThrottlingException"
    assert int(headers["retry-after"]) >= 1
    assert json.loads(body)["message"]
    # The same bucket: the API's reads are refused now as well.
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.list_infrastructure_configurations()
    assert info.value.response["Error"]["Code"] == "ThrottlingException"


