"""Pagination of list operations: maxResults (1-100, default 25), nextToken chains that visit
every item once, tokens that were altered or minted elsewhere, and boto3's paginators.

The module works in a region no other test uses, so that it knows exactly what the list holds.
"""

from __future__ import annotations

import base64

import pytest

from kiln_testlib import assert_client_error, make_client, unique_name

REGION = "ca-central-1"
COUNT = 30


@pytest.fixture(scope="module")
def regional(endpoint):
    return make_client(endpoint, region=REGION)


@pytest.fixture(scope="module")
def regional_raw(endpoint):
    return make_client(endpoint, region=REGION, validate=False)


@pytest.fixture(scope="module")
def created(regional) -> list[str]:
    prefix = unique_name("page")
    arns = []
    for i in range(COUNT):
        response = regional.create_infrastructure_configuration(
            name=f"{prefix}-{i:02d}", instanceProfileName="p"
        )
        arns.append(response["infrastructureConfigurationArn"])
    return sorted(arns)


def arns_of(response: dict) -> list[str]:
    return [s["arn"] for s in response["infrastructureConfigurationSummaryList"]]


def test_default_page_is_25(regional, created):
    response = regional.list_infrastructure_configurations()
    assert len(arns_of(response)) == 25
    assert response["nextToken"]


@pytest.mark.parametrize("size", [1, 7, 29, 30, 100])
def test_pages_chain_through_every_item_once(regional, created, size):
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs = {"maxResults": size}
        if token:
            kwargs["nextToken"] = token
        response = regional.list_infrastructure_configurations(**kwargs)
        page = arns_of(response)
        assert 0 < len(page) <= size
        seen.extend(page)
        pages += 1
        token = response.get("nextToken")
        if not token:
            break
        assert pages <= COUNT, "the token chain does not end"
    assert seen == created
    assert pages == -(-COUNT // size)


def test_last_page_has_no_token(regional, created):
    response = regional.list_infrastructure_configurations(maxResults=COUNT)
    assert len(arns_of(response)) == COUNT
    assert "nextToken" not in response


def test_a_token_keeps_working_when_it_is_reused(regional, created):
    token = regional.list_infrastructure_configurations(maxResults=10)["nextToken"]
    first = regional.list_infrastructure_configurations(maxResults=10, nextToken=token)
    second = regional.list_infrastructure_configurations(maxResults=10, nextToken=token)
    assert arns_of(first) == arns_of(second) == created[10:20]


def tampered(token: str) -> str:
    """The same token with its cursor moved back one item, and the signature left as it was."""
    payload, signature = token.split(".", 1)
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    forged = raw[:-1] + bytes([raw[-1] ^ 1])
    return base64.urlsafe_b64encode(forged).decode().rstrip("=") + "." + signature


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(tampered, id="altered"),
        pytest.param(lambda t: t[:-2], id="truncated"),
        pytest.param(lambda t: "not-a-token", id="garbage"),
    ],
)
def test_tampered_token_is_refused(regional, created, make_token):
    token = regional.list_infrastructure_configurations(maxResults=5)["nextToken"]
    exc = assert_client_error(
        lambda: regional.list_infrastructure_configurations(nextToken=make_token(token)),
        "InvalidPaginationTokenException",
        "nextToken",
    )
    assert isinstance(exc, regional.exceptions.InvalidPaginationTokenException)


def test_token_of_another_list_operation_is_refused(regional, created):
    token = regional.list_infrastructure_configurations(maxResults=5)["nextToken"]
    assert_client_error(
        lambda: regional.list_image_pipelines(nextToken=token),
        "InvalidPaginationTokenException",
    )


def test_token_of_another_region_is_refused(endpoint, regional, created):
    token = regional.list_infrastructure_configurations(maxResults=5)["nextToken"]
    elsewhere = make_client(endpoint, region="sa-east-1")
    assert_client_error(
        lambda: elsewhere.list_infrastructure_configurations(nextToken=token),
        "InvalidPaginationTokenException",
    )


@pytest.mark.parametrize("bad", [0, 101, -1])
def test_max_results_outside_1_to_100_is_refused(regional_raw, bad):
    assert_client_error(
        lambda: regional_raw.list_infrastructure_configurations(maxResults=bad),
        "InvalidRequestException",
        "at 'maxResults'",
    )


def test_boto3_paginator_gets_them_all(regional, created):
    paginator = regional.get_paginator("list_infrastructure_configurations")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 8}))
    assert [len(arns_of(p)) for p in pages] == [8, 8, 8, 6]
    assert [arn for p in pages for arn in arns_of(p)] == created


def test_boto3_paginator_with_default_page_size(regional, created):
    paginator = regional.get_paginator("list_infrastructure_configurations")
    result = paginator.paginate().build_full_result()
    assert sorted(s["arn"] for s in result["infrastructureConfigurationSummaryList"]) == created


def test_filters_apply_before_paging(regional, created):
    name_of_first = created[0].rsplit("/", 1)[1]
    prefix = name_of_first.rsplit("-", 1)[0]
    response = regional.list_infrastructure_configurations(
        filters=[{"name": "name", "values": [prefix + "-0*"]}], maxResults=4
    )
    assert arns_of(response) == created[:4]
    rest = regional.list_infrastructure_configurations(
        filters=[{"name": "name", "values": [prefix + "-0*"]}],
        maxResults=4,
        nextToken=response["nextToken"],
    )
    assert arns_of(rest) == created[4:8]
    following = regional.list_infrastructure_configurations(
        filters=[{"name": "name", "values": [prefix + "-0*"]}],
        maxResults=4,
        nextToken=rest["nextToken"],
    )
    assert arns_of(following) == created[8:10]
    assert "nextToken" not in following
