"""Accounts and regions: the key that signed a request picks its account (its aws_account_id in
the credentials file; with --insecure-no-auth, KILN_ACCOUNTS / --accounts), its SigV4 credential
scope picks its region, and each (account, region) sees only its own resources."""

from __future__ import annotations

import subprocess

import pytest

from kiln_testlib import (
    DEFAULT_ACCOUNT,
    KilnServer,
    arn_prefix,
    assert_client_error,
    create_infra,
    kiln_bin,
    make_client,
    unique_name,
)

OTHER_KEY = "AKIDOTHERACCOUNT"
OTHER_ACCOUNT = "111122223333"


@pytest.fixture(scope="module")
def accounts_server(tmp_path_factory):
    srv = KilnServer(
        tmp_path_factory.mktemp("accounts") / "data",
        keys={OTHER_KEY: OTHER_ACCOUNT},
    ).start()
    yield srv
    srv.stop_gracefully()


@pytest.fixture(scope="module")
def mine(accounts_server):
    return make_client(accounts_server.endpoint)


@pytest.fixture(scope="module")
def theirs(accounts_server):
    return make_client(accounts_server.endpoint, access_key=OTHER_KEY)


def listed_arns(client) -> list[str]:
    response = client.list_infrastructure_configurations()
    return [s["arn"] for s in response["infrastructureConfigurationSummaryList"]]


def test_the_access_key_picks_the_account(mine, theirs):
    name = unique_name()
    assert create_infra(theirs, name) == (
        f"{arn_prefix(OTHER_ACCOUNT)}:infrastructure-configuration/{name}"
    )
    assert create_infra(mine, unique_name()).startswith(arn_prefix(DEFAULT_ACCOUNT) + ":")


def test_keys_not_in_the_credentials_file_are_refused(accounts_server, mine):
    arn = create_infra(mine, unique_name())
    stranger = make_client(accounts_server.endpoint, access_key="AKIDSTRANGER0000")
    assert_client_error(
        lambda: stranger.get_infrastructure_configuration(infrastructureConfigurationArn=arn),
        "UnrecognizedClientException",
    )


def test_accounts_do_not_see_each_other(mine, theirs):
    their_arn = create_infra(theirs, unique_name())
    my_arn = create_infra(mine, unique_name())
    assert their_arn not in listed_arns(mine)
    assert my_arn not in listed_arns(theirs)
    assert_client_error(
        lambda: mine.get_infrastructure_configuration(infrastructureConfigurationArn=their_arn),
        "ResourceNotFoundException",
    )
    assert_client_error(
        lambda: mine.delete_infrastructure_configuration(infrastructureConfigurationArn=their_arn),
        "ResourceNotFoundException",
    )
    # Still there for its owner.
    theirs.get_infrastructure_configuration(infrastructureConfigurationArn=their_arn)


def test_the_same_name_may_exist_in_each_account(mine, theirs):
    name = unique_name()
    assert create_infra(mine, name) != create_infra(theirs, name)


def test_the_credential_scope_picks_the_region(accounts_server):
    name = unique_name()
    west = make_client(accounts_server.endpoint, region="us-west-2")
    arn = create_infra(west, name)
    assert arn == f"{arn_prefix(region='us-west-2')}:infrastructure-configuration/{name}"
    east = make_client(accounts_server.endpoint)
    assert arn not in listed_arns(east)
    assert arn in listed_arns(west)
    assert_client_error(
        lambda: east.get_infrastructure_configuration(infrastructureConfigurationArn=arn),
        "ResourceNotFoundException",
    )


def test_the_same_name_may_exist_in_each_region(accounts_server):
    name = unique_name()
    arns = {
        create_infra(make_client(accounts_server.endpoint, region=region), name)
        for region in ("us-east-1", "eu-central-1", "ap-northeast-1")
    }
    assert len(arns) == 3


def test_tags_of_another_account_are_out_of_reach(mine, theirs):
    their_arn = create_infra(theirs, unique_name(), tags={"owner": "them"})
    assert_client_error(
        lambda: mine.list_tags_for_resource(resourceArn=their_arn), "ResourceNotFoundException"
    )
    assert_client_error(
        lambda: mine.tag_resource(resourceArn=their_arn, tags={"owner": "me"}),
        "ResourceNotFoundException",
    )
    assert theirs.list_tags_for_resource(resourceArn=their_arn)["tags"] == {"owner": "them"}


def test_insecure_servers_take_accounts_from_the_accounts_flag(tmp_path):
    srv = KilnServer(
        tmp_path / "data",
        extra_args=[
            "--insecure-no-auth",
            "--accounts",
            "AKIDFLAG=444455556666",
            "--default-account",
            "777788889999",
        ],
    ).start()
    try:
        flagged = make_client(srv.endpoint, access_key="AKIDFLAG")
        assert create_infra(flagged, unique_name()).startswith(arn_prefix("444455556666") + ":")
        other = make_client(srv.endpoint)
        assert create_infra(other, unique_name()).startswith(arn_prefix("777788889999") + ":")
        assert "--insecure-no-auth" in srv.log()
    finally:
        srv.stop_gracefully()


@pytest.mark.parametrize(
    "args",
    [
        ["--insecure-no-auth", "--accounts", "AKID=12"],
        ["--insecure-no-auth", "--accounts", "nonsense"],
        ["--accounts", "AKIDVALID0000000=111111111111"],
        ["--default-account", "abc"],
    ],
)
def test_bad_account_settings_stop_the_server_at_start(tmp_path, args):
    result = subprocess.run(
        [kiln_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "kiln listening" not in result.stdout
    assert "account" in result.stderr.lower()
