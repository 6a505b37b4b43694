"""The EC2 Query API for Kiln's AMIs: boto3's `ec2` client and the aws CLI against a real
`kiln serve`, over AMIs that real builds distributed.

Two images are built: one without a distribution configuration (its one AMI, in the build
Region, owned by the builder, named `<image name> <build date>`) and one distributed with a name
template, tags, a KMS key, a copy for another account and a launch permission for a third.
Then three accounts look at them the way users do (`describe-images --owners ... --filters
Name=name,Values=...`), tag them, share and unshare them, deprecate and deregister them.

Builds need root (mounts, namespaces, cgroups): CI runs as root; elsewhere the module is
skipped.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kiln_testlib import (
    ACCESS_KEY,
    DEFAULT_ACCOUNT,
    REGION,
    SECRET_KEY,
    KilnServer,
    allow_distribution,
    assert_client_error,
    aws_cli_env,
    aws_executable,
    make_ec2_client,
    create_infra,
    make_client,
    unique_name,
)
from test_builds import bash_component, recipe, wait_final

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

SHARED_KEY = "AKIDEC2SHAREDACCT"
SHARED_ACCOUNT = "222233334444"
COPY_KEY = "AKIDEC2COPYACCOUNT"
COPY_ACCOUNT = "555566667777"
STRANGER_KEY = "AKIDEC2STRANGERAC"
STRANGER_ACCOUNT = "888899990000"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/ami-key"
ACTIONS = Path(__file__).resolve().parents[2] / "crates/kiln-api/src/ec2/actions.txt"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = KilnServer(
        tmp_path_factory.mktemp("ec2") / "data",
        keys={
            SHARED_KEY: SHARED_ACCOUNT,
            COPY_KEY: COPY_ACCOUNT,
            STRANGER_KEY: STRANGER_ACCOUNT,
        },
    ).start()
    # The copy account consents to the default account's distributions, as on AWS.
    allow_distribution(srv.endpoint, COPY_KEY)
    yield srv
    srv.stop_gracefully()


def ec2(server, access_key: str = ACCESS_KEY, region: str = REGION) -> Any:
    return make_ec2_client(server.endpoint, access_key, region)


@pytest.fixture(scope="module")
def built(server):
    """The two images and their AMIs."""
    client = make_client(server.endpoint)
    infra = create_infra(client, instanceTypes=["t3.micro"])
    plain_recipe = recipe(client, [bash_component(client, {"build": "true"})])
    shared_recipe = recipe(client, [bash_component(client, {"build": "true"})])
    web = unique_name("web")
    dist = client.create_distribution_configuration(
        name=unique_name("dist"),
        distributions=[
            {
                "region": REGION,
                "amiDistributionConfiguration": {
                    "name": web + "-{{ imagebuilder:buildDate }}",
                    "description": "the web image",
                    "amiTags": {"team": "web"},
                    "kmsKeyId": KMS_KEY,
                    "targetAccountIds": [COPY_ACCOUNT],
                    "launchPermission": {"userIds": [SHARED_ACCOUNT]},
                },
            }
        ],
    )["distributionConfigurationArn"]
    arns = [
        client.create_image(
            imageRecipeArn=plain_recipe,
            infrastructureConfigurationArn=infra,
            imageTestsConfiguration={"imageTestsEnabled": False},
        )["imageBuildVersionArn"],
        client.create_image(
            imageRecipeArn=shared_recipe,
            infrastructureConfigurationArn=infra,
            imageTestsConfiguration={"imageTestsEnabled": False},
            distributionConfigurationArn=dist,
        )["imageBuildVersionArn"],
    ]
    plain, shared = (wait_final(client, arn, timeout=600) for arn in arns)
    for image in (plain, shared):
        assert image["state"]["status"] == "AVAILABLE", image["state"]
    by_account = {a["accountId"]: a for a in shared["outputResources"]["amis"]}
    return {
        "plain": plain["outputResources"]["amis"][0],
        "plain_image": plain,
        "web": by_account[DEFAULT_ACCOUNT],
        "copy": by_account[COPY_ACCOUNT],
        "prefix": web,
    }


def ids(answer: dict) -> list[str]:
    return sorted(i["ImageId"] for i in answer["Images"])


def test_the_owner_finds_its_amis_by_name(server, built):
    owner = ec2(server)
    web = built["web"]
    found = owner.describe_images(
        Owners=["self"], Filters=[{"Name": "name", "Values": [built["prefix"] + "-*"]}]
    )["Images"]
    assert [i["ImageId"] for i in found] == [web["image"]]
    image = found[0]
    assert image["Name"] == web["name"]
    assert image["Description"] == "the web image"
    assert image["OwnerId"] == DEFAULT_ACCOUNT
    assert image["State"] == "available"
    assert image["Public"] is False
    assert image["Architecture"] == "x86_64"
    assert image["ImageType"] == "machine"
    assert image["RootDeviceType"] == "ebs"
    assert image["VirtualizationType"] == "hvm"
    assert image["PlatformDetails"] == "Linux/UNIX"
    assert image["Tags"] == [{"Key": "team", "Value": "web"}]
    ebs = image["BlockDeviceMappings"][0]["Ebs"]
    assert ebs["Encrypted"] is True and ebs["KmsKeyId"] == KMS_KEY
    assert ebs["SnapshotId"].startswith("snap-")
    created = datetime.datetime.fromisoformat(image["CreationDate"].replace("Z", "+00:00"))
    assert abs(created - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(hours=1)

    # The image built without a distribution configuration has its one AMI, named after it.
    plain = built["plain"]
    found = owner.describe_images(ImageIds=[plain["image"]])["Images"]
    assert found[0]["Name"] == plain["name"]
    assert found[0]["Name"].startswith(built["plain_image"]["name"] + " ")
    assert "BlockDeviceMappings" in found[0] and found[0]["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is False
    assert set(ids(owner.describe_images(Owners=["self"]))) >= {plain["image"], web["image"]}


def test_accounts_see_what_is_shared_with_them_only(server, built):
    web, copy, plain = built["web"]["image"], built["copy"]["image"], built["plain"]["image"]
    shared = ec2(server, SHARED_KEY)
    assert ids(shared.describe_images(Owners=[DEFAULT_ACCOUNT])) == [web]
    # The copy in the other account carries the entry's launch permission too.
    assert ids(shared.describe_images(ExecutableUsers=["self"])) == sorted([web, copy])
    # The copy account owns its copy; the owner's AMIs are not shared with it.
    copier = ec2(server, COPY_KEY)
    assert ids(copier.describe_images(Owners=["self"])) == [copy]
    assert ids(copier.describe_images(Owners=[DEFAULT_ACCOUNT])) == []
    # A third account sees nothing of the owner's, and the ids do not exist for it.
    stranger = ec2(server, STRANGER_KEY)
    assert ids(stranger.describe_images(Owners=[DEFAULT_ACCOUNT])) == []
    assert ids(stranger.describe_images()) == []
    assert_client_error(
        lambda: stranger.describe_images(ImageIds=[plain]), "InvalidAMIID.NotFound", plain
    )
    # Nor do they in another Region, for the owner itself.
    west = ec2(server, region="us-west-2")
    assert ids(west.describe_images(Owners=["self"])) == []
    assert_client_error(lambda: west.describe_images(ImageIds=[web]), "InvalidAMIID.NotFound")


def test_the_aws_cli_describes_images(server, built, tmp_path):
    env = aws_cli_env(tmp_path, SHARED_KEY)
    out = subprocess.run(
        [
            aws_executable(),
            "ec2",
            "describe-images",
            "--endpoint-url",
            server.endpoint,
            "--region",
            REGION,
            "--owners",
            DEFAULT_ACCOUNT,
            "--filters",
            f"Name=name,Values={built['prefix']}-*",
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    images = json.loads(out.stdout)["Images"]
    assert [i["ImageId"] for i in images] == [built["web"]["image"]]
    assert images[0]["Tags"] == [{"Key": "team", "Value": "web"}]


def test_pages_and_dry_runs(server, built):
    owner = ec2(server)
    pages = list(
        owner.get_paginator("describe_images").paginate(
            Owners=["self"], PaginationConfig={"PageSize": 5}
        )
    )
    seen = [i["ImageId"] for p in pages for i in p["Images"]]
    assert set(seen) >= {built["plain"]["image"], built["web"]["image"]}
    assert len(seen) == len(set(seen))
    assert_client_error(lambda: owner.describe_images(DryRun=True), "DryRunOperation")
    assert_client_error(lambda: owner.describe_images(MaxResults=2), "InvalidParameterValue", "MaxResults")
    assert_client_error(
        lambda: owner.describe_images(Filters=[{"Name": "colour", "Values": ["red"]}]),
        "InvalidParameterValue",
        "'colour'",
    )


def test_only_the_owner_tags(server, built):
    web = built["web"]["image"]
    owner, shared = ec2(server), ec2(server, SHARED_KEY)
    assert_client_error(
        lambda: shared.create_tags(Resources=[web], Tags=[{"Key": "mine", "Value": "x"}]),
        "AuthFailure",
        DEFAULT_ACCOUNT,
    )
    assert_client_error(
        lambda: ec2(server, STRANGER_KEY).create_tags(Resources=[web], Tags=[{"Key": "k", "Value": "v"}]),
        "InvalidAMIID.NotFound",
    )
    assert_client_error(
        lambda: owner.create_tags(Resources=["vol-0123456789abcdef0"], Tags=[{"Key": "k", "Value": "v"}]),
        "InvalidID",
        "only AMIs",
    )
    owner.create_tags(Resources=[web], Tags=[{"Key": "stage", "Value": "prod"}])
    found = shared.describe_images(Filters=[{"Name": "tag:stage", "Values": ["prod"]}])
    assert ids(found) == [web]
    owner.delete_tags(Resources=[web], Tags=[{"Key": "stage", "Value": "dev"}])
    assert ids(owner.describe_images(Filters=[{"Name": "tag-key", "Values": ["stage"]}])) == [web]
    owner.delete_tags(Resources=[web], Tags=[{"Key": "stage"}])
    assert ids(owner.describe_images(Filters=[{"Name": "tag-key", "Values": ["stage"]}])) == []


def test_sharing_through_launch_permissions(server, built):
    plain = built["plain"]["image"]
    owner, stranger = ec2(server), ec2(server, STRANGER_KEY)
    owner.modify_image_attribute(
        ImageId=plain, LaunchPermission={"Add": [{"UserId": STRANGER_ACCOUNT}]}
    )
    assert ids(stranger.describe_images(Owners=[DEFAULT_ACCOUNT])) == [plain]
    attribute = owner.describe_image_attribute(ImageId=plain, Attribute="launchPermission")
    assert attribute["LaunchPermissions"] == [{"UserId": STRANGER_ACCOUNT}]
    assert_client_error(
        lambda: stranger.describe_image_attribute(ImageId=plain, Attribute="launchPermission"),
        "AuthFailure",
    )
    assert_client_error(
        lambda: stranger.modify_image_attribute(
            ImageId=plain, LaunchPermission={"Add": [{"Group": "all"}]}, DryRun=True
        ),
        "UnauthorizedOperation",
    )
    owner.modify_image_attribute(
        ImageId=plain, Attribute="launchPermission", OperationType="remove", UserIds=[STRANGER_ACCOUNT]
    )
    assert ids(stranger.describe_images(Owners=[DEFAULT_ACCOUNT])) == []
    owner.modify_image_attribute(ImageId=plain, Description={"Value": "described"})
    assert owner.describe_image_attribute(ImageId=plain, Attribute="description")["Description"] == {
        "Value": "described"
    }


def test_deprecation(server, built):
    web = built["web"]["image"]
    owner, shared = ec2(server), ec2(server, SHARED_KEY)
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    owner.enable_image_deprecation(ImageId=web, DeprecateAt=soon.replace(second=40, microsecond=0))
    image = owner.describe_images(ImageIds=[web])["Images"][0]
    rounded = (soon.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:00.000Z"
    )
    assert image["DeprecationTime"] == rounded
    assert_client_error(
        lambda: owner.enable_image_deprecation(ImageId=web, DeprecateAt=datetime.datetime(2020, 1, 1)),
        "InvalidParameterValue",
        "past",
    )
    owner.disable_image_deprecation(ImageId=web)
    assert "DeprecationTime" not in shared.describe_images(ImageIds=[web])["Images"][0]


def test_ec2_calls_must_be_signed_for_ec2(server, built):
    body = "Action=DescribeImages&Version=2016-11-15"
    request = AWSRequest(
        method="POST",
        url=server.endpoint + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "imagebuilder", REGION).add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 403
    text = info.value.read().decode()
    assert "<Code>SignatureDoesNotMatch</Code>" in text and "'ec2'" in text, text
    # The Image Builder client still works beside it.
    assert "imageVersionList" in make_client(server.endpoint).list_images()


def test_unserved_and_unknown_actions(server):
    owner = ec2(server)
    assert_client_error(
        lambda: owner.describe_instances(), "UnsupportedOperation", "DescribeImages", "DescribeInstances"
    )
    # Every action of botocore's EC2 model is in Kiln's list, so none is called unknown.
    names = {line for line in ACTIONS.read_text().splitlines() if not line.startswith("#")}
    model = botocore.session.get_session().get_service_model("ec2")
    missing = set(model.operation_names) - names
    assert not missing, f"add these EC2 actions to {ACTIONS}: {sorted(missing)}"


def test_deregistration(server, built):
    copy = built["copy"]["image"]
    owner, copier = ec2(server), ec2(server, COPY_KEY)
    assert_client_error(lambda: owner.deregister_image(ImageId=copy), "InvalidAMIID.NotFound")
    copier.deregister_image(ImageId=copy)
    assert ids(copier.describe_images(Owners=["self"])) == []
    assert_client_error(lambda: copier.describe_images(ImageIds=[copy]), "InvalidAMIID.NotFound")
    # The owner's AMI of the same build stays.
    assert ids(owner.describe_images(ImageIds=[built["web"]["image"]])) == [built["web"]["image"]]
