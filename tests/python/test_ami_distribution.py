"""AMI distribution through the API, with real builds: a distribution configuration's entries
make one AMI per Region and account (`outputResources.amis`), named from the template, tagged,
shared; the copies are usable as parents in their account and Region and nowhere else; SSM
parameters receive the AMI ids and later builds read them; failures fill `failureContext`;
DistributeImage and RetryImage run the distribution stage again.

Builds need root (mounts, namespaces, cgroups): CI runs as root; elsewhere the module is
skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from typing import Any

import pytest

from kiln_testlib import (
    ACCESS_KEY,
    DEFAULT_ACCOUNT,
    AwsCli,
    aws_cli_env,
    aws_executable,
    make_ec2_client,
    KilnServer,
    allow_distribution,
    assert_client_error,
    make_iam_client,
    trust_policy,
    DISTRIBUTION_POLICY,
    DISTRIBUTION_ROLE,
    create_infra,
    make_client,
    unique_name,
)
from test_builds import BUSYBOX, bash_component, recipe, wait_final, wait_status

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

TARGET_KEY = "AKIDTARGETACCOUNT"
TARGET_ACCOUNT = "444455556666"
STRANGER_KEY = "AKIDSTRANGERACCT"
STRANGER_ACCOUNT = "777788889999"
# An account that consents to distributions only in the middle of a test.
LATE_KEY = "AKIDLATECONSENT0"
LATE_ACCOUNT = "222233334444"
# Many target accounts (each consents), so that distribution takes long enough to cancel.
MANY = {f"AKIDMANY{i:08d}": f"{100000000000 + i:012d}" for i in range(1500)}
WEST = "us-west-2"
DATE = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = KilnServer(
        tmp_path_factory.mktemp("distribution") / "data",
        keys={TARGET_KEY: TARGET_ACCOUNT, STRANGER_KEY: STRANGER_ACCOUNT, LATE_KEY: LATE_ACCOUNT, **MANY},
    ).start()
    # The target account consents to the default account's distributions, as on AWS.
    allow_distribution(srv.endpoint, TARGET_KEY)
    yield srv
    srv.stop_gracefully()


@pytest.fixture(scope="module")
def client(server):
    return make_client(server.endpoint)


def clients(server, region: str) -> dict[str, Any]:
    return {
        "owner": make_client(server.endpoint, region=region),
        "target": make_client(server.endpoint, region=region, access_key=TARGET_KEY),
        "stranger": make_client(server.endpoint, region=region, access_key=STRANGER_KEY),
    }


@pytest.fixture(scope="module")
def infra(client) -> str:
    return create_infra(client, instanceTypes=["t3.micro"])


def distribution(client: Any, distributions: list[dict]) -> str:
    return client.create_distribution_configuration(
        name=unique_name("dist"), distributions=distributions
    )["distributionConfigurationArn"]


def create_image(client: Any, recipe_arn: str, infra: str, dist: str | None) -> str:
    extra = {"distributionConfigurationArn": dist} if dist else {}
    return client.create_image(
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infra,
        imageTestsConfiguration={"imageTestsEnabled": False},
        **extra,
    )["imageBuildVersionArn"]


def noop(client: Any) -> str:
    return bash_component(client, {"build": "true"})


def marker_recipe(client: Any, marker: str, **extra: Any) -> str:
    comp = bash_component(client, {"build": f"mkdir -p /opt && echo {marker} > /opt/marker"})
    return recipe(client, [comp], **extra)


@pytest.fixture(scope="module")
def fanned_out(server, client, infra):
    """An image distributed to two Regions and two accounts, with a name template, tags,
    sharing and an SSM parameter."""
    marker = unique_name("marker")
    recipe_arn = marker_recipe(client, marker, description="the web image")
    dist = distribution(
        client,
        [
            {
                "region": "us-east-1",
                "amiDistributionConfiguration": {
                    "name": "web-{{ imagebuilder:buildDate }}",
                    "amiTags": {"team": "web", "stage": "prod"},
                    "targetAccountIds": [TARGET_ACCOUNT],
                    "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:alias/ami",
                },
                "ssmParameterConfigurations": [
                    {"parameterName": "/golden/web/latest", "dataType": "aws:ec2:image"}
                ],
                "licenseConfigurationArns": [
                    "arn:aws:license-manager:us-east-1:123456789012:license-configuration:lic-0123456789abcdef0123456789abcdef"
                ],
            },
            {
                "region": WEST,
                "amiDistributionConfiguration": {
                    "name": "web-{{ imagebuilder:buildDate }}-b{{ imagebuilder:buildVersion }}",
                    "description": "copied west",
                    "targetAccountIds": [TARGET_ACCOUNT],
                },
            },
        ],
    )
    arn = create_image(client, recipe_arn, infra, dist)
    image = wait_final(client, arn, timeout=600)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    return {"image": image, "marker": marker, "dist": dist}


def ec2(server, access_key: str = ACCESS_KEY, region: str = "us-east-1") -> Any:
    return make_ec2_client(server.endpoint, access_key, region)


def describe_images_cli(server, tmp_path, access_key: str, region: str, *args: str) -> list[dict]:
    """`aws ec2 describe-images` as the account of `access_key`."""
    out = subprocess.run(
        [aws_executable(), "ec2", "describe-images", "--endpoint-url", server.endpoint,
         "--region", region, *args, "--output", "json"],
        env=aws_cli_env(tmp_path, access_key), capture_output=True, text=True, timeout=120, check=True,
    )
    return json.loads(out.stdout)["Images"]


def amis_by(image: dict) -> dict[tuple[str, str], dict]:
    return {(a["region"], a["accountId"]): a for a in image["outputResources"]["amis"]}


def test_one_ami_per_region_and_account_named_from_the_template(fanned_out):
    amis = amis_by(fanned_out["image"])
    assert set(amis) == {
        ("us-east-1", DEFAULT_ACCOUNT),
        ("us-east-1", TARGET_ACCOUNT),
        (WEST, DEFAULT_ACCOUNT),
        (WEST, TARGET_ACCOUNT),
    }
    assert len({a["image"] for a in amis.values()}) == 4
    for a in amis.values():
        assert re.fullmatch(r"ami-[0-9a-f]{17}", a["image"]), a
    east = amis[("us-east-1", DEFAULT_ACCOUNT)]
    assert re.fullmatch(f"web-{DATE}", east["name"]), east
    west = amis[(WEST, TARGET_ACCOUNT)]
    assert re.fullmatch(f"web-{DATE}-b1", west["name"]), west
    # The recipe's description goes to the build Region's own AMI only; an entry's to all of
    # its copies.
    assert east["description"] == "the web image"
    assert "description" not in amis[("us-east-1", TARGET_ACCOUNT)]
    assert west["description"] == "copied west"
    assert amis[(WEST, DEFAULT_ACCOUNT)]["description"] == "copied west"


def test_each_account_finds_its_copies_with_describe_images(server, fanned_out, tmp_path):
    amis = amis_by(fanned_out["image"])
    for region in ("us-east-1", WEST):
        for key, account in ((ACCESS_KEY, DEFAULT_ACCOUNT), (TARGET_KEY, TARGET_ACCOUNT)):
            found = describe_images_cli(
                server, tmp_path, key, region, "--owners", account,
                "--filters", "Name=name,Values=web-*",
            )
            assert [i["ImageId"] for i in found] == [amis[(region, account)]["image"]], (region, account)
            assert found[0]["OwnerId"] == account
            assert found[0]["Name"] == amis[(region, account)]["name"]
        # Not from a third account, nor from the owner for the copy it gave away.
        for key, owner in ((STRANGER_KEY, TARGET_ACCOUNT), (STRANGER_KEY, DEFAULT_ACCOUNT), (ACCESS_KEY, TARGET_ACCOUNT)):
            assert describe_images_cli(
                server, tmp_path, key, region, "--owners", owner, "--filters", "Name=name,Values=web-*"
            ) == []
    east = ec2(server).describe_images(ImageIds=[amis[("us-east-1", DEFAULT_ACCOUNT)]["image"]])["Images"][0]
    assert {t["Key"]: t["Value"] for t in east["Tags"]} == {"team": "web", "stage": "prod"}
    assert east["Description"] == "the web image"
    mapping = east["BlockDeviceMappings"][0]["Ebs"]
    assert mapping["Encrypted"] is True
    assert mapping["KmsKeyId"] == "arn:aws:kms:us-east-1:123456789012:alias/ami"


def test_copies_are_parents_in_their_account_and_region_only(server, fanned_out):
    amis = amis_by(fanned_out["image"])
    west_copy = amis[(WEST, TARGET_ACCOUNT)]["image"]
    west = clients(server, WEST)
    check = bash_component(
        west["target"], {"build": f"grep -qx {fanned_out['marker']} /opt/marker"}
    )
    infra = create_infra(west["target"], instanceTypes=["t3.micro"])
    child = wait_final(
        west["target"],
        create_image(west["target"], recipe(west["target"], [check], parent=west_copy), infra, None),
        timeout=600,
    )
    assert child["state"]["status"] == "AVAILABLE", child["state"]

    # A third account may not use it, nor the owner's AMI id in another Region.
    stranger = west["stranger"]
    infra = create_infra(stranger, instanceTypes=["t3.micro"])
    failed = wait_final(
        stranger, create_image(stranger, recipe(stranger, [noop(stranger)], parent=west_copy), infra, None)
    )
    assert failed["state"]["status"] == "FAILED"
    assert west_copy in failed["state"]["reason"], failed["state"]
    east_own = amis[("us-east-1", DEFAULT_ACCOUNT)]["image"]
    owner_west = west["owner"]
    infra = create_infra(owner_west, instanceTypes=["t3.micro"])
    failed = wait_final(
        owner_west, create_image(owner_west, recipe(owner_west, [noop(owner_west)], parent=east_own), infra, None)
    )
    assert failed["state"]["status"] == "FAILED"


def test_ssm_parameters_hold_the_ami_and_later_builds_read_them(client, infra, fanned_out):
    own = amis_by(fanned_out["image"])[("us-east-1", DEFAULT_ACCOUNT)]["image"]
    comp = bash_component(
        client,
        {"build": f'test "{{{{ aws:ssm:resolve(/golden/web/latest) }}}}" = "{own}"'},
    )
    image = wait_final(client, create_image(client, recipe(client, [comp]), infra, None))
    assert image["state"]["status"] == "AVAILABLE", image["state"]


def test_distribute_image_from_an_ami_id_and_an_ssm_parameter(server, client, fanned_out):
    source = fanned_out["image"]
    own = amis_by(source)[("us-east-1", DEFAULT_ACCOUNT)]["image"]
    dist = distribution(
        client,
        [
            {
                "region": "eu-west-1",
                "amiDistributionConfiguration": {"name": "eu-{{ imagebuilder:buildDate }}"},
            }
        ],
    )
    for source_image in (own, "ssm:/golden/web/latest", source["arn"]):
        arn = client.distribute_image(
            sourceImage=source_image,
            distributionConfigurationArn=dist,
            executionRole="arn:aws:iam::123456789012:role/ib-exec",
        )["imageBuildVersionArn"]
        assert arn != source["arn"]
        assert arn.rsplit("/", 2)[0] == source["arn"].rsplit("/", 2)[0]  # same name and version
        tracked = wait_final(client, arn)
        assert tracked["state"]["status"] == "AVAILABLE", tracked["state"]
        amis = tracked["outputResources"]["amis"]
        assert [(a["region"], a["accountId"]) for a in amis] == [("eu-west-1", DEFAULT_ACCOUNT)]
        assert re.fullmatch(f"eu-{DATE}", amis[0]["name"])

    # The AMI in eu-west-1 holds the source's contents: a build there finds the marker.
    eu = make_client(server.endpoint, region="eu-west-1")
    check = bash_component(eu, {"build": f"grep -qx {fanned_out['marker']} /opt/marker"})
    infra = create_infra(eu, instanceTypes=["t3.micro"])
    child = wait_final(
        eu, create_image(eu, recipe(eu, [check], parent=amis[0]["image"]), infra, None), timeout=600
    )
    assert child["state"]["status"] == "AVAILABLE", child["state"]


def test_distribute_image_refusals(server, client, fanned_out):
    dist = fanned_out["dist"]
    role = "ib-exec"
    assert_client_error(
        lambda: client.distribute_image(
            sourceImage="ami-0ffffffffffffffff", distributionConfigurationArn=dist, executionRole=role
        ),
        "ResourceNotFoundException",
        "ami-0ffffffffffffffff",
    )
    assert_client_error(
        lambda: client.distribute_image(
            sourceImage="ssm:/no/such", distributionConfigurationArn=dist, executionRole=role
        ),
        "InvalidRequestException",
        "/no/such",
    )
    # Another account's AMI, even shared with the caller, is not one of its images.
    target_copy = amis_by(fanned_out["image"])[("us-east-1", TARGET_ACCOUNT)]["image"]
    stranger = make_client(server.endpoint, access_key=STRANGER_KEY)
    stranger_dist = distribution(
        stranger, [{"region": "us-east-1", "amiDistributionConfiguration": {}}]
    )
    assert_client_error(
        lambda: stranger.distribute_image(
            sourceImage=target_copy, distributionConfigurationArn=stranger_dist, executionRole=role
        ),
        "ResourceNotFoundException",
        target_copy,
    )
    assert_client_error(
        lambda: client.distribute_image(
            sourceImage=fanned_out["image"]["arn"],
            distributionConfigurationArn=dist,
            executionRole=role,
            loggingConfiguration={"logGroupName": "/aws/imagebuilder/x"},
        ),
        "InvalidRequestException",
        "loggingConfiguration",
    )


def test_a_taken_name_fails_the_region_with_a_failure_context_and_retry_resumes(server, client, infra):
    name = unique_name("static")
    recipe_arn = marker_recipe(client, "static")
    dist = distribution(
        client,
        [
            {"region": "us-east-1", "amiDistributionConfiguration": {"name": name}},
            {"region": WEST, "amiDistributionConfiguration": {"name": f"{name}-w-{{{{ imagebuilder:buildDate }}}}"}},
        ],
    )
    first = wait_final(client, create_image(client, recipe_arn, infra, dist), timeout=600)
    assert first["state"]["status"] == "AVAILABLE", first["state"]
    second = wait_final(client, create_image(client, recipe_arn, infra, dist), timeout=600)
    state = second["state"]
    assert state["status"] == "FAILED", state
    assert "1 of 2 distributions failed" in state["reason"], state
    context = state["failureContext"]
    assert context["imageStatus"] == "DISTRIBUTING"
    failures = context["distributionFailure"]["regionFailures"]
    assert [(f["region"], f["status"]) for f in failures] == [("us-east-1", "FAILED")]
    assert "InvalidAMIName.Duplicate" in failures[0]["errorMessage"]
    assert "imageConfigurationStep" not in failures[0]
    # The Region that worked has its AMI.
    assert [a["region"] for a in second["outputResources"]["amis"]] == [WEST]

    # Retry runs the distribution again in place: the same failure, the same ARN, no rebuild.
    west_ami = second["outputResources"]["amis"][0]["image"]
    retry_when_stopped(client, second["arn"])
    again = wait_final(client, second["arn"])
    assert again["state"]["status"] == "FAILED"
    assert [a["image"] for a in again["outputResources"]["amis"]] == [west_ami]

    # Deleting the first image leaves its AMIs (as on AWS), so the name stays taken.
    client.delete_image(imageBuildVersionArn=first["arn"])
    retry_when_stopped(client, second["arn"])
    assert wait_final(client, second["arn"])["state"]["status"] == "FAILED"

    # Deregistering it frees the name: the retry distributes without building, and the
    # deleted image's contents leave the store with its last AMI.
    taken = [a["image"] for a in first["outputResources"]["amis"] if a["region"] == "us-east-1"]
    ec2(server).deregister_image(ImageId=taken[0])
    retry_when_stopped(client, second["arn"])
    done = wait_final(client, second["arn"])
    assert done["state"]["status"] == "AVAILABLE", done["state"]
    assert sorted(a["region"] for a in done["outputResources"]["amis"]) == ["us-east-1", WEST]
    assert [a["image"] for a in done["outputResources"]["amis"] if a["region"] == WEST] == [west_ami]
    first_tag = "kiln-" + hashlib.sha256(first["arn"].encode()).hexdigest()[:16]
    index = server.data_dir / "images" / "index.json"
    # Its other AMI still names the contents; they go with the last one.
    time.sleep(1)
    assert first_tag in index.read_text()
    other = [a["image"] for a in first["outputResources"]["amis"] if a["region"] == WEST]
    ec2(server, region=WEST).deregister_image(ImageId=other[0])
    deadline = time.monotonic() + 30
    while first_tag in index.read_text():
        assert time.monotonic() < deadline, "the deleted image's contents stayed in the store"
        time.sleep(0.2)
    second_tag = "kiln-" + hashlib.sha256(second["arn"].encode()).hexdigest()[:16]
    assert second_tag in index.read_text()


def test_post_copy_failures_name_the_step(client, infra):
    dist = distribution(
        client,
        [
            {
                "region": "us-east-1",
                "amiDistributionConfiguration": {"name": "fl-{{ imagebuilder:buildDate }}"},
                "fastLaunchConfigurations": [{"enabled": True}],
            }
        ],
    )
    image = wait_final(client, create_image(client, marker_recipe(client, "fl"), infra, dist), timeout=600)
    state = image["state"]
    assert state["status"] == "FAILED", state
    failure = state["failureContext"]["distributionFailure"]["regionFailures"][0]
    assert failure["imageConfigurationStep"] == "UPDATE_FAST_LAUNCH_CONFIGURATIONS"
    assert "Windows" in failure["errorMessage"]
    assert state["failureContext"]["imageStatus"] == "INTEGRATING"


def retry_when_stopped(client: Any, arn: str) -> None:
    """RetryImage, once the worker has stopped the image's last build."""
    deadline = time.monotonic() + 60
    while True:
        try:
            client.retry_image(imageBuildVersionArn=arn)
            return
        except client.exceptions.ResourceInUseException as e:
            assert "still stopping" in str(e), e
            assert time.monotonic() < deadline, "the cancelled build never stopped"
            time.sleep(0.2)


def test_retry_image_rules_and_a_cancelled_build_built_again(client, infra):
    comp = bash_component(client, {"build": "sleep 30"})
    arn = create_image(client, recipe(client, [comp]), infra, None)
    assert_client_error(
        lambda: client.retry_image(imageBuildVersionArn=arn),
        "ResourceInUseException",
        "FAILED or CANCELLED",
    )
    wait_status(client, arn, "BUILDING")
    client.cancel_image_creation(imageBuildVersionArn=arn)
    assert wait_final(client, arn)["state"]["status"] == "CANCELLED"
    retry_when_stopped(client, arn)
    wait_status(client, arn, "BUILDING")
    image = wait_final(client, arn, timeout=600)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert_client_error(
        lambda: client.retry_image(imageBuildVersionArn=arn),
        "ResourceInUseException",
        "AVAILABLE",
    )


def test_cancel_during_distribution_keeps_what_was_made(server, client, infra):
    # 1,500 target accounts (the model allows 1,536) make distribution take long enough to
    # cancel in the middle (about 2 ms an AMI). Each consents first.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: allow_distribution(server.endpoint, key), MANY))
    accounts = list(MANY.values())
    dist = distribution(
        client,
        [
            {
                "region": "us-east-1",
                "amiDistributionConfiguration": {
                    "name": "many-{{ imagebuilder:buildDate }}",
                    "targetAccountIds": accounts,
                },
            }
        ],
    )
    arn = create_image(client, marker_recipe(client, "many"), infra, dist)
    wait_status(client, arn, "DISTRIBUTING", timeout=600)
    client.cancel_image_creation(imageBuildVersionArn=arn)
    image = wait_final(client, arn)
    assert image["state"]["status"] == "CANCELLED"
    time.sleep(1)  # the worker notices between two AMIs and records what it made
    made = client.get_image(imageBuildVersionArn=arn)["image"]["outputResources"]["amis"]
    assert 0 < len(made) < 1501, len(made)


def test_distribution_configurations_check_names_and_accounts(client):
    for name, fragment in [
        ("web:{{ imagebuilder:buildDate }}", "':'"),
        ("web-{{ imagebuilder:nope }}", "imagebuilder:nope"),
    ]:
        assert_client_error(
            lambda: distribution(
                client, [{"region": "us-east-1", "amiDistributionConfiguration": {"name": name}}]
            ),
            "InvalidRequestException",
            fragment,
        )
    assert_client_error(
        lambda: distribution(
            client,
            [
                {
                    "region": "us-east-1",
                    "amiDistributionConfiguration": {"name": "lt-{{ imagebuilder:buildDate }}"},
                    "launchTemplateConfigurations": [
                        {"launchTemplateId": "lt-0123456789abcdef0", "accountId": "999999999999"}
                    ],
                }
            ],
        ),
        "InvalidParameterCombinationException",
        "999999999999",
    )


def test_the_aws_cli_distributes_and_retries(server, client, fanned_out, tmp_path):
    cli = AwsCli(server.endpoint, tmp_path)
    dist = distribution(
        client,
        [{"region": "us-east-1", "amiDistributionConfiguration": {"name": "cli-{{ imagebuilder:buildDate }}"}}],
    )
    arn = cli.json(
        "distribute-image",
        "--source-image",
        fanned_out["image"]["arn"].rsplit("/", 1)[0],  # a version ARN: the newest build
        "--distribution-configuration-arn",
        dist,
        "--execution-role",
        "ib-exec",
    )["imageBuildVersionArn"]
    image = wait_final(client, arn)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    amis = cli.json("get-image", "--image-build-version-arn", arn)["image"]["outputResources"]["amis"]
    assert re.fullmatch(f"cli-{DATE}", amis[0]["name"]), amis
    retried = cli.run("retry-image", "--image-build-version-arn", arn, check=False)
    assert retried.returncode != 0 and "ResourceInUseException" in retried.stderr, retried.stderr


def test_launch_permissions_share_and_publish(server, client, infra):
    marker = unique_name("shared")
    dist = distribution(
        client,
        [
            {
                "region": "us-east-1",
                "amiDistributionConfiguration": {
                    "name": "shared-{{ imagebuilder:buildDate }}",
                    "launchPermission": {
                        "userIds": [STRANGER_ACCOUNT],
                        "organizationArns": ["arn:aws:organizations::123456789012:organization/o-abcdefghij"],
                    },
                },
            },
            {
                "region": WEST,
                "amiDistributionConfiguration": {
                    "name": "public-{{ imagebuilder:buildDate }}",
                    "launchPermission": {"userGroups": ["all"]},
                },
            },
        ],
    )
    image = wait_final(client, create_image(client, marker_recipe(client, marker), infra, dist), timeout=600)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    amis = amis_by(image)
    shared = amis[("us-east-1", DEFAULT_ACCOUNT)]["image"]
    public = amis[(WEST, DEFAULT_ACCOUNT)]["image"]

    stranger = ec2(server, access_key=STRANGER_KEY)
    found = stranger.describe_images(ExecutableUsers=["self"], Filters=[{"Name": "name", "Values": ["shared-*"]}])
    assert [i["ImageId"] for i in found["Images"]] == [shared]
    assert found["Images"][0]["Public"] is False
    attribute = ec2(server).describe_image_attribute(ImageId=shared, Attribute="launchPermission")
    assert {"UserId": STRANGER_ACCOUNT} in attribute["LaunchPermissions"]
    assert {
        "OrganizationArn": "arn:aws:organizations::123456789012:organization/o-abcdefghij"
    } in attribute["LaunchPermissions"]
    # The account it was shared with builds on it; the target account may not.
    b = make_client(server.endpoint, access_key=STRANGER_KEY)
    check = bash_component(b, {"build": f"grep -qx {marker} /opt/marker"})
    child = wait_final(
        b, create_image(b, recipe(b, [check], parent=shared), create_infra(b, instanceTypes=["t3.micro"]), None),
        timeout=600,
    )
    assert child["state"]["status"] == "AVAILABLE", child["state"]
    assert ec2(server, access_key=TARGET_KEY).describe_images(
        Filters=[{"Name": "name", "Values": ["shared-*"]}]
    )["Images"] == []

    # Public: every account sees it, deprecated two years after its creation as EC2 does.
    for key in (TARGET_KEY, STRANGER_KEY):
        found = ec2(server, access_key=key, region=WEST).describe_images(ImageIds=[public])["Images"]
        assert found[0]["Public"] is True
        assert found[0]["DeprecationTime"].startswith(str(int(found[0]["CreationDate"][:4]) + 2))


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory, moto):
    srv = KilnServer(
        tmp_path_factory.mktemp("exports") / "data", extra_args=["--s3-endpoint", moto.endpoint]
    ).start()
    yield srv
    srv.stop_gracefully()


def test_s3_exports_write_the_disk_where_ec2_would(s3_server, moto, tmp_path):
    client = make_client(s3_server.endpoint)
    s3 = moto.client("s3")
    bucket = unique_name("exports")
    s3.create_bucket(Bucket=bucket)
    dist = distribution(
        client,
        [
            {
                "region": "us-east-1",
                "amiDistributionConfiguration": {"name": "exp-{{ imagebuilder:buildDate }}"},
                "s3ExportConfiguration": {
                    "roleName": "vmimport",
                    "diskImageFormat": "VMDK",
                    "s3Bucket": bucket,
                    "s3Prefix": "web/",
                },
            }
        ],
    )
    infra = create_infra(client, instanceTypes=["t3.micro"])
    image = wait_final(client, create_image(client, marker_recipe(client, "exported"), infra, dist), timeout=600)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    ami = image["outputResources"]["amis"][0]["image"]

    tasks = ec2(s3_server).describe_export_image_tasks()["ExportImageTasks"]
    assert [t["ImageId"] for t in tasks] == [ami]
    task = tasks[0]
    assert task["Status"] == "completed"
    assert task["S3ExportLocation"] == {"S3Bucket": bucket, "S3Prefix": "web/"}
    key = f"web/{task['ExportImageTaskId']}.vmdk"
    assert re.fullmatch(r"web/export-ami-[0-9a-f]{17}\.vmdk", key)
    disk = tmp_path / "disk.vmdk"
    s3.download_file(bucket, key, str(disk))
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output", "json", str(disk)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert info["format"] == "vmdk"
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"

    # A bucket that does not exist fails the export step, after the AMI was made.
    missing = distribution(
        client,
        [
            {
                "region": "us-east-1",
                "amiDistributionConfiguration": {"name": "nobucket-{{ imagebuilder:buildDate }}"},
                "s3ExportConfiguration": {
                    "roleName": "vmimport", "diskImageFormat": "RAW", "s3Bucket": unique_name("missing"),
                },
            }
        ],
    )
    failed = wait_final(client, create_image(client, marker_recipe(client, "nobucket"), infra, missing), timeout=600)
    state = failed["state"]
    assert state["status"] == "FAILED", state
    assert state["failureContext"]["imageStatus"] == "INTEGRATING"
    region_failure = state["failureContext"]["distributionFailure"]["regionFailures"][0]
    assert region_failure["imageConfigurationStep"] == "EXPORT_AMI"
    assert "s3://" in region_failure["errorMessage"]
    assert len(failed["outputResources"]["amis"]) == 1


def test_other_accounts_must_consent_before_they_receive_amis_or_parameters(server, client, infra):
    """As on AWS, an account receives AMI copies and SSM parameters only from accounts its
    EC2ImageBuilderDistributionCrossAccountRole trusts, with the distribution policy attached."""
    parameter = "/" + unique_name("late") + "/ami"
    dist = distribution(
        client,
        [
            {
                "region": "us-east-1",
                "amiDistributionConfiguration": {
                    "name": "late-{{ imagebuilder:buildDate }}",
                    "targetAccountIds": [LATE_ACCOUNT],
                },
                "ssmParameterConfigurations": [
                    {"parameterName": parameter, "amiAccountId": LATE_ACCOUNT}
                ],
            }
        ],
    )
    arn = create_image(client, marker_recipe(client, "late"), infra, dist)
    late_ec2 = ec2(server, access_key=LATE_KEY)

    def refused(fragment: str) -> None:
        image = wait_final(client, arn, timeout=600)
        state = image["state"]
        assert state["status"] == "FAILED", state
        failures = state["failureContext"]["distributionFailure"]["regionFailures"]
        # The copy is refused, and so the parameter step that needs it.
        assert [(f["region"], f.get("targetAccountId")) for f in failures] == [
            ("us-east-1", LATE_ACCOUNT)
        ] * 2, failures
        assert "AccessDenied" in failures[0]["errorMessage"], failures
        assert fragment in failures[0]["errorMessage"], failures
        assert parameter in failures[1]["errorMessage"], failures
        # Nothing was written into the account that did not consent.
        assert late_ec2.describe_images(Owners=["self"])["Images"] == []
        assert [a["accountId"] for a in image["outputResources"]["amis"]] == [DEFAULT_ACCOUNT]

    refused(DISTRIBUTION_ROLE)

    # A role that trusts somebody else is no consent; nor is one without the policy.
    iam = make_iam_client(server.endpoint, LATE_KEY)
    iam.create_role(RoleName=DISTRIBUTION_ROLE, AssumeRolePolicyDocument=trust_policy(STRANGER_ACCOUNT))
    retry_when_stopped(client, arn)
    refused("does not trust")
    iam.update_assume_role_policy(RoleName=DISTRIBUTION_ROLE, PolicyDocument=trust_policy(DEFAULT_ACCOUNT))
    retry_when_stopped(client, arn)
    refused("attach")

    # With the policy attached, the retry distributes: the AMI and the parameter are the
    # late account's.
    iam.attach_role_policy(RoleName=DISTRIBUTION_ROLE, PolicyArn=DISTRIBUTION_POLICY)
    retry_when_stopped(client, arn)
    image = wait_final(client, arn, timeout=600)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    copy = amis_by(image)[("us-east-1", LATE_ACCOUNT)]["image"]
    assert [i["ImageId"] for i in late_ec2.describe_images(Owners=["self"])["Images"]] == [copy]
    late = make_client(server.endpoint, access_key=LATE_KEY)
    late_dist = distribution(late, [{"region": "eu-west-1", "amiDistributionConfiguration": {}}])
    # The parameter is the late account's and holds its copy's id (which DistributeImage then
    # refuses: the copy is not an image of the late account's own).
    assert_client_error(
        lambda: late.distribute_image(
            sourceImage="ssm:" + parameter, distributionConfigurationArn=late_dist, executionRole="ib-exec"
        ),
        "InvalidRequestException",
        copy,
    )


def test_the_distribution_role_through_iam(server, tmp_path):
    """The IAM calls that carry the consent, and what Kiln refuses rather than ignore."""
    iam = make_iam_client(server.endpoint, STRANGER_KEY)
    assert_client_error(lambda: iam.get_role(RoleName=DISTRIBUTION_ROLE), "NoSuchEntity", DISTRIBUTION_ROLE)
    created = iam.create_role(
        RoleName=DISTRIBUTION_ROLE,
        AssumeRolePolicyDocument=trust_policy(DEFAULT_ACCOUNT),
        Description="lets the build account distribute here",
    )["Role"]
    assert created["Arn"] == f"arn:aws:iam::{STRANGER_ACCOUNT}:role/{DISTRIBUTION_ROLE}"
    assert created["RoleId"].startswith("AROA")
    # botocore decodes the URL-encoded policy back into JSON.
    assert created["AssumeRolePolicyDocument"] == json.loads(trust_policy(DEFAULT_ACCOUNT))
    got = iam.get_role(RoleName=DISTRIBUTION_ROLE)["Role"]
    assert got["Description"] == "lets the build account distribute here"
    assert got["MaxSessionDuration"] == 3600
    assert_client_error(
        lambda: iam.create_role(RoleName=DISTRIBUTION_ROLE, AssumeRolePolicyDocument=trust_policy(DEFAULT_ACCOUNT)),
        "EntityAlreadyExists",
        DISTRIBUTION_ROLE,
    )
    for name, policy, code, fragment in [
        ("SomeOtherRole", trust_policy(DEFAULT_ACCOUNT), "InvalidInput", "never used"),
        (DISTRIBUTION_ROLE + "2", "{not json", "MalformedPolicyDocument", "JSON"),
        (
            "x",
            json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": DEFAULT_ACCOUNT}, "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "e"}}}]}),
            "MalformedPolicyDocument",
            "Condition",
        ),
    ]:
        assert_client_error(
            lambda: iam.create_role(RoleName=name, AssumeRolePolicyDocument=policy), code, fragment
        )
    assert_client_error(
        lambda: iam.attach_role_policy(RoleName=DISTRIBUTION_ROLE, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"),
        "InvalidInput",
        "AdministratorAccess",
    )
    iam.attach_role_policy(RoleName=DISTRIBUTION_ROLE, PolicyArn=DISTRIBUTION_POLICY)
    attached = iam.list_attached_role_policies(RoleName=DISTRIBUTION_ROLE)["AttachedPolicies"]
    assert attached == [{"PolicyName": "Ec2ImageBuilderCrossAccountDistributionAccess", "PolicyArn": DISTRIBUTION_POLICY}]
    assert_client_error(lambda: iam.delete_role(RoleName=DISTRIBUTION_ROLE), "DeleteConflict", "detach")
    iam.detach_role_policy(RoleName=DISTRIBUTION_ROLE, PolicyArn=DISTRIBUTION_POLICY)
    iam.delete_role(RoleName=DISTRIBUTION_ROLE)
    assert_client_error(lambda: iam.get_role(RoleName=DISTRIBUTION_ROLE), "NoSuchEntity", DISTRIBUTION_ROLE)
    # Roles are per account: the default account sees none of the stranger's.
    assert_client_error(
        lambda: make_iam_client(server.endpoint).get_role(RoleName=DISTRIBUTION_ROLE), "NoSuchEntity", DISTRIBUTION_ROLE
    )
    assert_client_error(lambda: iam.list_roles(), "InvalidAction", "ListRoles")
    # The aws CLI, as a user would type it.
    env = aws_cli_env(tmp_path, STRANGER_KEY)
    out = subprocess.run(
        [aws_executable(), "iam", "create-role", "--endpoint-url", server.endpoint, "--region", "us-east-1", "--role-name", DISTRIBUTION_ROLE,
         "--assume-role-policy-document", trust_policy(DEFAULT_ACCOUNT), "--output", "json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Role"]["RoleName"] == DISTRIBUTION_ROLE
