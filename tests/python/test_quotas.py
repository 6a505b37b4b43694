"""Per-account quotas: a server started with tiny quotas (`--quota NAME=N`) lets an account
create up to the limit, refuses the next create with 402 `ServiceQuotaExceededException` naming
the quota and the limit, leaves other accounts unaffected, and makes room again when a resource
is deleted. (The concurrent-builds quota is tested in `kiln_api::quotas`, where no worker runs
the builds away.)"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from kiln_testlib import (
    KilnServer,
    assert_client_error,
    create_component,
    create_infra,
    make_client,
    unique_name,
)

OTHER_KEY = "AKIDQUOTAOTHER000"
OTHER_ACCOUNT = "777788889999"


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory) -> Iterator[KilnServer]:
    srv = KilnServer(
        tmp_path_factory.mktemp("quotas") / "data",
        extra_args=[
            "--quota",
            "infrastructure-configurations=2",
            "--quota",
            "components=2,image-pipelines=unlimited",
        ],
        keys={OTHER_KEY: OTHER_ACCOUNT},
    ).start()
    yield srv
    srv.stop_gracefully()


@pytest.fixture(scope="module")
def mine(quota_server) -> Any:
    return make_client(quota_server.endpoint)


@pytest.fixture(scope="module")
def theirs(quota_server) -> Any:
    return make_client(quota_server.endpoint, access_key=OTHER_KEY)


def test_creates_up_to_the_limit_then_402_naming_quota_and_limit(mine, theirs):
    first = create_infra(mine)
    create_infra(mine)
    name = unique_name("over")
    exc = assert_client_error(
        lambda: create_infra(mine, name),
        "ServiceQuotaExceededException",
        "CreateInfrastructureConfiguration",
        "infrastructure-configurations",
        "allows 2",
    )
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 402
    assert isinstance(exc, mine.exceptions.ServiceQuotaExceededException)
    # The refused create left nothing behind.
    listed = mine.list_infrastructure_configurations()["infrastructureConfigurationSummaryList"]
    assert len(listed) == 2 and name not in {s["name"] for s in listed}

    # Another account has its own quota.
    create_infra(theirs)
    create_infra(theirs)

    # Deleting makes room.
    mine.delete_infrastructure_configuration(infrastructureConfigurationArn=first)
    create_infra(mine, name)
    assert_client_error(lambda: create_infra(mine), "ServiceQuotaExceededException")


def test_a_retry_of_a_create_that_succeeded_is_not_counted_again(mine):
    token = unique_name("token")
    name = unique_name("comp")
    arn = create_component(mine, name, "1.0.0", clientToken=token)
    create_component(mine, name, "1.0.1")
    # At the limit: the retry (same token, same parameters) still answers the first response.
    again = create_component(mine, name, "1.0.0", clientToken=token)
    assert again == arn
    # Component build versions count one each.
    assert_client_error(
        lambda: create_component(mine, name, "1.0.2"),
        "ServiceQuotaExceededException",
        "components",
        "allows 2",
    )
