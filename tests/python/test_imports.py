"""ImportDiskImage and ImportVmImage, end to end: a disk image becomes an IMPORT image whose root
file system is the disk's, and recipes build on it.

The round trip: a Kiln-built image is exported (`kiln image export`) as qcow2 and as raw; the
qcow2 goes to moto's S3 (`--s3-endpoint`) and comes back through ImportDiskImage; the raw disk,
put into a GPT partition table next to a swap partition, lies in an `--import-dir` and comes
back through ImportVmImage (called with the aws CLI). Recipes then build on the imported images,
by ARN (`image/<name>/x.x.x`) and by `ami-` id, and their components check that the original
build's files (contents, set-user-ID bit, owner) are there.

Refusals (Windows, ISO media, VM Import task ids, paths outside the import directories, Windows
and boot settings, log groups) are ClientExceptions naming the member; disks that are not what
Kiln imports end FAILED naming the disk and the cause. With IAM enforced in moto, an `s3://` disk
is read with a key of the importing account: one allowed to read the bucket imports it, another
one's import fails with S3's AccessDenied.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest

from kiln_testlib import (
    DEFAULT_ACCOUNT,
    AwsCli,
    KilnServer,
    MotoServer,
    assert_client_error,
    create_infra,
    make_client,
    make_ec2_client,
    unique_name,
)
from test_builds import BUSYBOX, bash_component, build, kiln, recipe, wait_final

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds and imports need root")

BUCKET = "kiln-disks"

# Files an import must keep: contents, an owner, a set-user-ID bit, a hard link, an os-release.
ORIGINAL = {
    "build": """
mkdir -p /opt/orig /etc
echo "made by the original build" > /opt/orig/marker
printf '#!/bin/sh\\necho tool\\n' > /opt/orig/tool && chown 1000:1001 /opt/orig/tool && chmod 4755 /opt/orig/tool
ln /opt/orig/marker /opt/orig/marker-link
printf 'NAME="Kiln Imported OS"\\nID=kilnimp\\nVERSION_ID="3.1"\\n' > /etc/os-release
""",
}

# What a build on an imported image checks.
ON_IMPORTED = {
    "build": """
test "$(cat /opt/orig/marker)" = "made by the original build"
test -u /opt/orig/tool
test "$(stat -c %u:%g /opt/orig/tool)" = "1000:1001"
test "$(stat -c %h /opt/orig/marker)" = "2"
echo "built on the import" > /opt/orig/child
""",
}


@pytest.fixture(scope="module")
def import_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("import-dir")


@pytest.fixture(scope="module")
def kiln_s3(
    tmp_path_factory: pytest.TempPathFactory, moto: MotoServer, import_dir: Path
) -> Iterator[KilnServer]:
    srv = KilnServer(
        tmp_path_factory.mktemp("kiln-imports") / "data",
        extra_args=["--s3-endpoint", moto.endpoint, "--import-dir", str(import_dir)],
    ).start()
    yield srv
    srv.stop_gracefully()


@pytest.fixture(scope="module")
def ib(kiln_s3: KilnServer) -> Any:
    return make_client(kiln_s3.endpoint)


@pytest.fixture(scope="module")
def s3(moto: MotoServer) -> Any:
    client = moto.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def infra(ib: Any) -> str:
    return create_infra(ib, instanceTypes=["t3.micro"])


@pytest.fixture(scope="module")
def original(ib: Any, infra: str) -> dict:
    """A Kiln-built image holding the ORIGINAL files."""
    image = build(ib, recipe(ib, [bash_component(ib, ORIGINAL)]), infra, tests=False)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    return image


def export(endpoint: str, arn: str, fmt: str, out: Path) -> Path:
    done = kiln(endpoint, "image", "export", arn, "--format", fmt, "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out


def gpt_disk(rootfs: Path, out: Path) -> None:
    """A GPT disk: partition 1 a swap signature, partition 2 the `rootfs` file system."""
    fs = rootfs.read_bytes()
    mib = 1 << 20
    total = 2 * mib + len(fs) + mib
    disk = bytearray(total)
    sectors = total // 512
    swap_first, swap_last = 2048, 4095
    root_first = 4096
    root_last = root_first + len(fs) // 512 - 1
    swap = bytearray(8192)
    swap[4086:4096] = b"SWAPSPACE2"
    disk[swap_first * 512 : swap_first * 512 + len(swap)] = swap
    disk[root_first * 512 : root_first * 512 + len(fs)] = fs

    def guid(text: str) -> bytes:
        a, b, c, d, e = text.split("-")
        return (
            struct.pack("<IHH", int(a, 16), int(b, 16), int(c, 16))
            + bytes.fromhex(d)
            + bytes.fromhex(e)
        )

    swap_type = guid("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F")
    linux_type = guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
    entries = bytearray(128 * 128)
    for i, (kind, first, last) in enumerate(
        [(swap_type, swap_first, swap_last), (linux_type, root_first, root_last)]
    ):
        struct.pack_into("<16s16sQQQ", entries, 128 * i, kind, os.urandom(16), first, last, 0)
    header = bytearray(92)
    struct.pack_into(
        "<8sIIIIQQQQ16sQIII",
        header, 0, b"EFI PART", 0x10000, 92, 0, 0, 1, sectors - 1, 34, sectors - 34,
        os.urandom(16), 2, 128, 128, zlib.crc32(entries),
    )
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    disk[512 : 512 + 92] = header
    disk[1024 : 1024 + len(entries)] = entries
    # The protective MBR.
    struct.pack_into("<B3sB3sII", disk, 446, 0, b"\0\0\0", 0xEE, b"\0\0\0", 1, sectors - 1)
    disk[510:512] = b"\x55\xaa"
    out.write_bytes(disk)


def test_round_trip_through_s3_and_an_import_directory(
    ib, s3, kiln_s3, import_dir, infra, original, tmp_path, moto
):
    endpoint = kiln_s3.endpoint
    # Out of Kiln as qcow2, into S3, and back with ImportDiskImage.
    qcow2 = export(endpoint, original["arn"], "qcow2", tmp_path / "orig.qcow2")
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output=json", str(qcow2)], capture_output=True, text=True, check=True
    ).stdout)
    assert info["format"] == "qcow2"
    s3.upload_file(str(qcow2), BUCKET, "disks/orig.qcow2")
    name = unique_name("from-s3")
    response = ib.import_disk_image(
        name=name,
        semanticVersion="2.0.0",
        description="imported from S3",
        platform="Linux",
        osVersion="Linux",
        infrastructureConfigurationArn=infra,
        uri=f"s3://{BUCKET}/disks/orig.qcow2",
        tags={"source": "s3"},
        executionRole="KilnImportRole",
    )
    from_s3 = response["imageBuildVersionArn"]
    assert from_s3.endswith(f":image/{name}/2.0.0/1"), from_s3
    image = wait_final(ib, from_s3, timeout=300)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["buildType"] == "IMPORT" and image["imageSource"] == "IMPORTED"
    assert image["type"] == "AMI" and image["platform"] == "Linux"
    # The disk's own os-release says what it is (ImportDiskImage's osVersion is AWS's Windows 11).
    assert image["osVersion"] == "Kiln Imported OS 3.1"
    [ami] = image["outputResources"]["amis"]
    assert ami["image"].startswith("ami-0") and ami["region"] == "us-east-1"
    # A real AMI of the account, as EC2 lists it.
    [listed] = make_ec2_client(endpoint).describe_images(ImageIds=[ami["image"]])["Images"]
    assert listed["Name"] == ami["name"] and listed["OwnerId"] == DEFAULT_ACCOUNT
    assert image["infrastructureConfiguration"]["arn"] == infra
    assert image["executionRole"] == "KilnImportRole"
    assert image["tags"] == {"source": "s3"}

    # Out as raw, into a GPT table in the import directory, and back with ImportVmImage through
    # the aws CLI.
    raw = export(endpoint, original["arn"], "raw", tmp_path / "orig.raw")
    gpt_disk(raw, import_dir / "partitioned.img")
    aws = AwsCli(endpoint, tmp_path)
    vm_name = unique_name("from-file")
    # The aws CLI reads a `file://` parameter as a file to load, so the request goes as JSON.
    request = {
        "name": vm_name,
        "semanticVersion": "1.0.0",
        "platform": "Linux",
        "osVersion": "Kiln Imported OS",
        "vmImportTaskId": f"file://{import_dir}/partitioned.img",
    }
    answer = aws.json("import-vm-image", "--cli-input-json", json.dumps(request))
    from_file = answer["imageArn"]
    assert answer["requestId"] and from_file.endswith(f":image/{vm_name}/1.0.0/1")
    vm_image = wait_final(ib, from_file, timeout=300)
    assert vm_image["state"]["status"] == "AVAILABLE", vm_image["state"]
    assert vm_image["osVersion"] == "Kiln Imported OS", "ImportVmImage's osVersion is the request's"
    log = kiln(endpoint, "logs", from_file)
    assert "partition 2 (Linux filesystem) of its GPT partition table" in log.stdout, log.stdout

    # Builds on both: by ARN with an x filter, and by ami- id.
    by_arn = recipe(ib, [bash_component(ib, ON_IMPORTED)], parent=from_s3.rsplit("/", 2)[0] + "/x.x.x")
    built = build(ib, by_arn, infra, tests=False)
    assert built["state"]["status"] == "AVAILABLE", built["state"]
    ami_id = vm_image["outputResources"]["amis"][0]["image"]
    by_ami = recipe(ib, [bash_component(ib, ON_IMPORTED)], parent=ami_id)
    built = build(ib, by_ami, infra, tests=False)
    assert built["state"]["status"] == "AVAILABLE", built["state"]


def test_refusals_name_the_member_and_what_kiln_imports(ib, infra, import_dir, tmp_path):
    base = dict(
        semanticVersion="1.0.0",
        platform="Linux",
        osVersion="Linux",
        infrastructureConfigurationArn=infra,
        uri=f"s3://{BUCKET}/disk.qcow2",
    )

    def disk(**changes: Any) -> Any:
        return lambda: ib.import_disk_image(name=unique_name("d"), **{**base, **changes})

    assert_client_error(disk(platform="Windows"), "ClientException", "platform:", "Linux", "qcow2")
    assert_client_error(disk(osVersion="Microsoft Windows 11"), "ClientException", "osVersion:")
    assert_client_error(disk(uri=f"s3://{BUCKET}/win11.iso"), "ClientException", "uri:", "ISO")
    assert_client_error(disk(uri="https://example.com/d.raw"), "ClientException", "uri:", "s3://bucket/key")
    assert_client_error(disk(uri="file:///etc/passwd"), "ClientException", "uri:", "--import-dir")
    assert_client_error(
        disk(windowsConfiguration={"imageIndex": 1}), "ClientException", "windowsConfiguration:"
    )
    assert_client_error(
        disk(registerImageOptions={"secureBootEnabled": False}), "ClientException", "registerImageOptions:"
    )
    assert_client_error(
        disk(loggingConfiguration={"logGroupName": "/mine"}), "ClientException", "executionRole"
    )
    # Kiln writes no CloudWatch logs: a log group it would only store is refused.
    assert_client_error(
        disk(loggingConfiguration={"logGroupName": "/aws/imagebuilder/imports"}),
        "ClientException", "loggingConfiguration:", "kiln logs",
    )
    missing = infra.rsplit("/", 1)[0] + "/no-such-infra"
    assert_client_error(
        disk(infrastructureConfigurationArn=missing), "ClientException", "infrastructureConfigurationArn"
    )

    def vm(task: str, **changes: Any) -> Any:
        request = {"semanticVersion": "1.0.0", "platform": "Linux", **changes}
        return lambda: ib.import_vm_image(name=unique_name("v"), vmImportTaskId=task, **request)

    assert_client_error(
        vm("import-ami-0123456789abcdef0"), "ClientException", "vmImportTaskId:", "VM Import"
    )
    assert_client_error(vm(f"file://{import_dir}/../outside.raw"), "ClientException", "vmImportTaskId:")
    assert_client_error(vm("s3://b/k.raw", platform="Windows"), "ClientException", "platform:")
    assert_client_error(
        vm("s3://b/k.raw", loggingConfiguration={"logGroupName": "/elsewhere"}),
        "ClientException", "/aws/imagebuilder/",
    )
    assert_client_error(
        lambda: ib.import_vm_image(
            name="bad/name", semanticVersion="1.0.0", platform="Linux", vmImportTaskId="s3://b/k"
        ),
        "ClientException", "name:",
    )


def test_disks_kiln_cannot_import_fail_naming_the_disk(ib, s3, import_dir):
    def vm(task: str) -> dict:
        arn = ib.import_vm_image(
            name=unique_name("bad"), semanticVersion="1.0.0", platform="Linux", vmImportTaskId=task
        )["imageArn"]
        image = wait_final(ib, arn, timeout=120)
        assert image["state"]["status"] == "FAILED", image["state"]
        return image

    s3.put_object(Bucket=BUCKET, Key="noise.raw", Body=os.urandom(1 << 20))
    reason = vm(f"s3://{BUCKET}/noise.raw")["state"]["reason"]
    assert f"s3://{BUCKET}/noise.raw" in reason and "no ext2, ext3 or ext4" in reason, reason
    reason = vm(f"s3://{BUCKET}/missing.qcow2")["state"]["reason"]
    assert "NoSuchKey" in reason, reason
    (import_dir / "not-a-disk.vdi").write_bytes(b"<<< Oracle VM VirtualBox Disk Image >>>\n" + bytes(4096))
    reason = vm(f"file://{import_dir}/not-a-disk.vdi")["state"]["reason"]
    assert "not-a-disk.vdi" in reason, reason


def test_without_an_s3_endpoint_s3_disks_are_refused(client):
    assert_client_error(
        lambda: client.import_vm_image(
            name=unique_name("v"), semanticVersion="1.0.0", platform="Linux",
            vmImportTaskId="s3://b/k.qcow2",
        ),
        "ClientException", "vmImportTaskId:", "no S3 endpoint",
    )


def test_s3_disks_are_read_with_the_accounts_own_key(tmp_path):
    """With IAM enforced in moto, the worker reads a disk with a key of the importing account
    (from Kiln's credentials file): an account whose key may read the bucket imports it, another
    one's import fails with S3's refusal."""
    moto = MotoServer(tmp_path)
    try:
        s3 = moto.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        disk = tmp_path / "small.raw"
        (tmp_path / "tree" / "etc").mkdir(parents=True)
        (tmp_path / "tree" / "etc" / "os-release").write_text('NAME="Small"\nVERSION_ID="1"\n')
        subprocess.run(["truncate", "-s", "8M", str(disk)], check=True)
        mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
        subprocess.run([mkfs, "-q", "-d", str(tmp_path / "tree"), str(disk)], check=True)
        s3.upload_file(str(disk), BUCKET, "private/small.raw")
        iam = moto.client("iam")
        keys = {}
        for user in ("reader", "stranger"):
            iam.create_user(UserName=user)
            k = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (k["AccessKeyId"], k["SecretAccessKey"])
        iam.put_user_policy(
            UserName="reader", PolicyName="read-disks",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/private/*",
            }]}),
        )
        moto.enforce_iam()
        credentials = tmp_path / "credentials"
        credentials.write_text("".join(
            f"[{user}]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"
            f"aws_account_id = {account}\n\n"
            for user, (akid, secret), account in [
                ("reader", keys["reader"], "111111111111"),
                ("stranger", keys["stranger"], "222222222222"),
            ]
        ))
        credentials.chmod(0o600)
        srv = KilnServer(
            tmp_path / "data",
            extra_args=["--credentials", str(credentials), "--s3-endpoint", moto.endpoint],
        ).start()
        try:
            results = {}
            for user in ("reader", "stranger"):
                client = make_client(srv.endpoint, access_key=keys[user][0], secret_key=keys[user][1])
                arn = client.import_vm_image(
                    name=unique_name(user), semanticVersion="1.0.0", platform="Linux",
                    vmImportTaskId=f"s3://{BUCKET}/private/small.raw",
                )["imageArn"]
                results[user] = wait_final(client, arn, timeout=120)["state"]
            assert results["reader"]["status"] == "AVAILABLE", results["reader"]
            assert results["stranger"]["status"] == "FAILED", results["stranger"]
            assert "AccessDenied" in results["stranger"]["reason"], results["stranger"]
            assert keys["reader"][1] not in srv.log() and keys["stranger"][1] not in srv.log()
        finally:
            srv.stop_gracefully()
    finally:
        moto.stop()
