"""Vulnerability scanning, end to end: data imported with `kiln vulndb import` (OSV records, the
Debian security tracker's JSON, an Alpine secdb file, written here for packages the builds
install), builds with `imageScanningConfiguration` that scan their image in the test stage, the
findings through ListImageScanFindings and ListImageScanFindingAggregations (boto3 and the aws
CLI) and `kiln image findings`, ON_DEMAND_AMI_CVE's scanResultCondition failing an image before
distribution, findings following newly imported data without another build, and imports that
fail changing nothing.

The packages the fixtures hit are made and installed by the builds themselves: a .deb built
with dpkg-deb inside the Debian build instance and installed with `dpkg -i`, and on busybox an
apk database written as apk would (there is no Alpine mirror to install from here).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from kiln_testlib import (
    DEFAULT_ACCOUNT,
    database_for,
    AwsCli,
    KilnServer,
    assert_client_error,
    create_infra,
    kiln_bin,
    make_client,
    unique_name,
)
from test_builds import BUSYBOX, bash_component, recipe, wait_final

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")

DEBIAN = "arn:aws:imagebuilder:us-east-1:aws:image/debian-12-minimal-x86/x.x.x"
OTHER_KEY = "AKIDSCANOTHER000"
OTHER_ACCOUNT = "210987654321"

CRITICAL_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
HIGH_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"  # 7.5
MEDIUM_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"  # 5.3
LOW_VECTOR = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"  # 1.8

# A .deb made and installed in the build instance: binary kiln-fixture 1:1.0-1 from source
# kiln-fixture-src, and kiln-tilde 2.0~rc1-1 (its own source).
INSTALL_DEBS = r"""
set -e
make_deb() {
  d=/tmp/deb-$1; rm -rf $d; mkdir -p $d/DEBIAN $d/usr/share/doc/$1
  echo "$1" > $d/usr/share/doc/$1/README
  printf 'Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: Kiln <kiln@example.invalid>\n%sDescription: a Kiln scan fixture\n' "$1" "$2" "$3" > $d/DEBIAN/control
  dpkg-deb --build $d /tmp/$1.deb >/dev/null
  dpkg -i /tmp/$1.deb >/dev/null
}
make_deb kiln-fixture 1:1.0-1 'Source: kiln-fixture-src (1:1.0-1)\n'
make_deb kiln-tilde 2.0~rc1-1 ''
dpkg -s kiln-fixture | grep -q 'Version: 1:1.0-1'
"""

INSTALL_NOFIX = r"""
set -e
d=/tmp/deb-nofix; mkdir -p $d/DEBIAN
printf 'Package: kiln-nofix\nVersion: 3.0-1\nArchitecture: amd64\nMaintainer: Kiln <kiln@example.invalid>\nDescription: a Kiln scan fixture\n' > $d/DEBIAN/control
dpkg-deb --build $d /tmp/kiln-nofix.deb >/dev/null
dpkg -i /tmp/kiln-nofix.deb >/dev/null
"""

# On busybox: an Alpine 3.20 system as apk leaves it, with kiln-apk 1.2.3-r0 from origin
# kiln-apk-src.
ALPINE_DB = r"""
mkdir -p /etc /lib/apk/db
printf 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME="Alpine Linux v3.20"\n' > /etc/os-release
printf 'C:Q1abc=\nP:kiln-apk\nV:1.2.3-r0\nA:x86_64\no:kiln-apk-src\nT:a Kiln scan fixture\n\n' > /lib/apk/db/installed
"""


def osv(
    id_: str,
    cve: str,
    package: str,
    events: list[dict[str, str]] | None = None,
    vector: str | None = None,
    modified: str = "2026-11-01T00:00:00Z",
    versions: list[str] | None = None,
    **extra: Any,
) -> dict:
    affected: dict[str, Any] = {"package": {"ecosystem": "Debian:12", "name": package}}
    if events is not None:
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
    if versions is not None:
        affected["versions"] = versions
    record: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": id_,
        "modified": modified,
        "published": "2026-10-01T00:00:00Z",
        "aliases": [cve],
        "summary": f"{cve} in {package}",
        "details": f"A made-up vulnerability of {package} for Kiln's tests.",
        "affected": [affected],
        "references": [{"type": "ADVISORY", "url": f"https://example.invalid/{cve}"}],
    }
    if vector:
        record["severity"] = [{"type": "CVSS_V3", "score": vector}]
    record.update(extra)
    return record


def osv_records() -> list[dict]:
    return [
        # Fixed in a later version: a finding with a fix (CRITICAL from its vector).
        osv("KILN-2099-1001", "CVE-2099-1001", "kiln-fixture-src",
            [{"introduced": "0"}, {"fixed": "1:1.0-2"}], CRITICAL_VECTOR),
        # last_affected is the installed version: a finding without a fix.
        osv("KILN-2099-1002", "CVE-2099-1002", "kiln-fixture-src",
            [{"introduced": "0"}, {"last_affected": "1:1.0-1"}], MEDIUM_VECTOR),
        # Fixed in exactly the installed version: no finding.
        osv("KILN-2099-1003", "CVE-2099-1003", "kiln-fixture-src",
            [{"introduced": "0"}, {"fixed": "1:1.0-1"}], CRITICAL_VECTOR),
        # Fixed in 1.5-1, epoch 0: below 1:1.0-1, so no finding.
        osv("KILN-2099-1004", "CVE-2099-1004", "kiln-fixture-src",
            [{"introduced": "0"}, {"fixed": "1.5-1"}], CRITICAL_VECTOR),
        # 2.0~rc1-1 sorts before 2.0-1: a finding.
        osv("KILN-2099-1005", "CVE-2099-1005", "kiln-tilde",
            [{"introduced": "0"}, {"fixed": "2.0-1"}], HIGH_VECTOR),
        # Listed explicitly, no ranges, no severity: UNTRIAGED.
        osv("KILN-2099-1006", "CVE-2099-1006", "kiln-fixture-src", None, None,
            versions=["1:1.0-1"]),
        # Introduced after the installed version: no finding.
        osv("KILN-2099-1007", "CVE-2099-1007", "kiln-fixture-src",
            [{"introduced": "1:1.1-1"}], CRITICAL_VECTOR),
        # Withdrawn: never a finding.
        osv("KILN-2099-1008", "CVE-2099-1008", "kiln-fixture-src",
            [{"introduced": "0"}], CRITICAL_VECTOR, withdrawn="2026-11-02T00:00:00Z"),
        # Everything from 1:0.9-1 on is beyond its limit: no finding.
        osv("KILN-2099-1009", "CVE-2099-1009", "kiln-fixture-src",
            [{"introduced": "0"}, {"limit": "1:0.9-1"}], CRITICAL_VECTOR),
        # kiln-nofix: CRITICAL and never fixed.
        osv("KILN-2099-1010", "CVE-2099-1010", "kiln-nofix", [{"introduced": "0"}],
            CRITICAL_VECTOR),
        # No affected packages: the CVSS of an Alpine CVE that secdb gives no severity.
        {"schema_version": "1.6.0", "id": "CVE-2099-3001", "modified": "2026-11-01T00:00:00Z",
         "summary": "CVE-2099-3001", "severity": [{"type": "CVSS_V3", "score": HIGH_VECTOR}]},
    ]


DEBIAN_TRACKER = {
    "kiln-fixture-src": {
        "CVE-2099-2001": {"description": "fixed in bookworm by 1:1.0-3", "scope": "remote",
                          "releases": {"bookworm": {"status": "resolved", "fixed_version": "1:1.0-3",
                                                    "urgency": "high",
                                                    "repositories": {"bookworm": "1:1.0-3"}}}},
        "CVE-2099-2002": {"description": "never affected bookworm",
                          "releases": {"bookworm": {"status": "resolved", "fixed_version": "0",
                                                    "urgency": "low"}}},
        "CVE-2099-2003": {"description": "not yet looked at",
                          "releases": {"bookworm": {"status": "undetermined",
                                                    "urgency": "not yet assigned"}}},
        "CVE-2099-2004": {"description": "open in bookworm",
                          "releases": {"bookworm": {"status": "open", "urgency": "medium"}}},
        "CVE-2099-2005": {"description": "only trixie",
                          "releases": {"trixie": {"status": "open", "urgency": "high"}}},
    }
}

ALPINE_SECDB = {
    "distroversion": "v3.20",
    "reponame": "main",
    "urlprefix": "https://dl-cdn.alpinelinux.org/alpine",
    "apkurl": "{{urlprefix}}/{{distroversion}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
    "archs": ["x86_64"],
    "packages": [{"pkg": {"name": "kiln-apk-src", "secfixes": {
        "1.2.3-r1": ["CVE-2099-3001"],
        "1.2.3_rc1-r0": ["CVE-2099-3002 CVE-2099-3004"],
        "0": ["CVE-2099-3003"],
    }}}],
}

# What the Debian image's scan finds with the data above: id -> (severity, fixAvailable).
DEBIAN_FINDINGS = {
    "CVE-2099-1001": ("CRITICAL", "YES"),
    "CVE-2099-1002": ("MEDIUM", "NO"),
    "CVE-2099-1005": ("HIGH", "YES"),
    "CVE-2099-1006": ("UNTRIAGED", "NO"),
    "CVE-2099-2001": ("HIGH", "YES"),
    "CVE-2099-2004": ("MEDIUM", "NO"),
}


def kiln_cli(endpoint: str, *args: str, key: str | None = None, timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if key:
        env["AWS_ACCESS_KEY_ID"] = key
    return subprocess.run([kiln_bin(), *args, "--endpoint", endpoint], capture_output=True,
                          text=True, timeout=timeout, env=env)


def vulndb_status(endpoint: str) -> dict:
    out = kiln_cli(endpoint, "vulndb", "status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def scanning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A server of its own (it takes vulnerability data from the default account), the data
    written and imported, and the images built on it."""
    base = tmp_path_factory.mktemp("scan")
    srv = KilnServer(base / "data", extra_args=["--vulndb-importer", DEFAULT_ACCOUNT,
                                                "--rpm-timeout", "3"],
                     keys={OTHER_KEY: OTHER_ACCOUNT}).start()
    try:
        feeds = base / "feeds"
        (feeds / "osv").mkdir(parents=True)
        records = osv_records()
        # Some records as files of their own, the rest in an all.zip as OSV.dev publishes.
        for record in records[:3]:
            (feeds / "osv" / f"{record['id']}.json").write_text(json.dumps(record))
        with zipfile.ZipFile(feeds / "osv" / "all.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for record in records[3:]:
                z.writestr(f"{record['id']}.json", json.dumps(record))
        (feeds / "debian.json").write_text(json.dumps(DEBIAN_TRACKER))
        (feeds / "main.json").write_text(json.dumps(ALPINE_SECDB))
        out = kiln_cli(srv.endpoint, "vulndb", "import", str(feeds / "osv"),
                       str(feeds / "debian.json"), str(feeds / "main.json"))
        assert out.returncode == 0, out.stderr + out.stdout
        client = make_client(srv.endpoint)
        yield {"server": srv, "client": client, "feeds": feeds, "base": base,
               "infra": create_infra(client, instanceTypes=["t3.micro"]), "import": out.stdout}
    finally:
        srv.stop()


def build_scanned(env: dict, parent: str, script: str, scanning: dict | None = None,
                  pipeline: bool = False) -> dict:
    client = env["client"]
    r = recipe(client, [bash_component(client, {"build": script})], parent=parent)
    config = scanning if scanning is not None else {"imageScanningEnabled": True}
    if pipeline:
        pipe = client.create_image_pipeline(
            name=unique_name("scanpipe"), imageRecipeArn=r,
            infrastructureConfigurationArn=env["infra"],
            imageScanningConfiguration=config,
        )["imagePipelineArn"]
        arn = client.start_image_pipeline_execution(imagePipelineArn=pipe)["imageBuildVersionArn"]
    else:
        arn = client.create_image(
            imageRecipeArn=r, infrastructureConfigurationArn=env["infra"],
            imageScanningConfiguration=config,
        )["imageBuildVersionArn"]
    return wait_final(client, arn, timeout=900)


@pytest.fixture(scope="module")
def debian_image(scanning: dict) -> dict:
    image = build_scanned(scanning, DEBIAN, INSTALL_DEBS, pipeline=True)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    return image


def findings_of(client: Any, **filter_: str) -> list[dict]:
    filters = [{"name": k, "values": [v]} for k, v in filter_.items()]
    found: list[dict] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"filters": filters} if filters else {}
        if token:
            kwargs["nextToken"] = token
        page = client.list_image_scan_findings(**kwargs)
        found += page["findings"]
        token = page.get("nextToken")
        if not token:
            return found


def test_the_import_reports_each_source(scanning):
    text = scanning["import"]
    assert "osv" in text and "debian-tracker" in text and "alpine-secdb:v3.20/main" in text
    status = vulndb_status(scanning["server"].endpoint)
    sources = {s["source"]: s for s in status["sources"]}
    # 10 OSV records without the withdrawn one; the tracker's CVEs that affect something.
    assert sources["osv"]["records"] == 10
    assert sources["osv"]["newest_modified"].startswith("2026-11-01")
    assert {"Debian:12", "Alpine:v3.20"} <= set(status["ecosystems"])


def test_a_scanned_build_reports_its_findings(scanning, debian_image):
    client = scanning["client"]
    image = debian_image
    assert image["scanState"]["status"] == "COMPLETED", image.get("scanState")
    assert image["imageScanningConfiguration"]["imageScanningEnabled"] is True
    assert image["imageScanningConfiguration"]["imageScanningTypes"] == ["TEST_INSTANCE_CVE"]
    findings = findings_of(client, imageBuildVersionArn=image["arn"])
    got = {f["packageVulnerabilityDetails"]["vulnerabilityId"]: (f["severity"], f["fixAvailable"])
           for f in findings}
    assert got == DEBIAN_FINDINGS
    by_id = {f["packageVulnerabilityDetails"]["vulnerabilityId"]: f for f in findings}
    critical = by_id["CVE-2099-1001"]
    assert critical["awsAccountId"] == DEFAULT_ACCOUNT
    assert critical["imageBuildVersionArn"] == image["arn"]
    assert critical["imagePipelineArn"] == image["sourcePipelineArn"]
    assert critical["type"] == "PACKAGE_VULNERABILITY"
    assert critical["title"].startswith("CVE-2099-1001")
    assert critical["inspectorScore"] == pytest.approx(9.8)
    adjusted = critical["inspectorScoreDetails"]["adjustedCvss"]
    assert adjusted["scoringVector"] == CRITICAL_VECTOR and adjusted["score"] == pytest.approx(9.8)
    details = critical["packageVulnerabilityDetails"]
    assert details["cvss"][0]["baseScore"] == pytest.approx(9.8)
    assert "https://example.invalid/CVE-2099-1001" in details["referenceUrls"]
    package = details["vulnerablePackages"][0]
    assert package["name"] == "kiln-fixture"
    assert package["epoch"] == 1
    assert "1:1.0-2" in package["fixedInVersion"] or package["fixedInVersion"].startswith("1.0-2")
    assert package["remediation"] == "apt-get install --only-upgrade kiln-fixture"
    assert package["packageManager"] == "OS"
    assert critical["remediation"]["recommendation"]["text"]
    # Timestamps are numbers (epoch seconds), as the model types them.
    assert critical["firstObservedAt"].timestamp() > 0 and critical["updatedAt"].timestamp() > 0
    tracker = by_id["CVE-2099-2001"]
    assert tracker["packageVulnerabilityDetails"]["vendorSeverity"] == "high"
    assert tracker["packageVulnerabilityDetails"]["sourceUrl"].endswith("/CVE-2099-2001")
    tilde = by_id["CVE-2099-1005"]["packageVulnerabilityDetails"]["vulnerablePackages"][0]
    assert tilde["name"] == "kiln-tilde"


def test_every_filter_pagination_and_aggregations(scanning, debian_image):
    client = scanning["client"]
    arn = debian_image["arn"]
    pipeline = debian_image["sourcePipelineArn"]
    assert len(findings_of(client, imagePipelineArn=pipeline)) == len(DEBIAN_FINDINGS)
    only = findings_of(client, vulnerabilityId="CVE-2099-1001")
    assert [f["imageBuildVersionArn"] for f in only] == [arn]
    highs = findings_of(client, severity="HIGH")
    assert {f["packageVulnerabilityDetails"]["vulnerabilityId"] for f in highs} >= {
        "CVE-2099-1005", "CVE-2099-2001"}
    assert all(f["severity"] == "HIGH" for f in highs)
    # One a page.
    pages, token = [], None
    while True:
        kwargs: dict[str, Any] = {"maxResults": 1,
                                  "filters": [{"name": "imageBuildVersionArn", "values": [arn]}]}
        if token:
            kwargs["nextToken"] = token
        page = client.list_image_scan_findings(**kwargs)
        assert len(page["findings"]) <= 1
        pages += page["findings"]
        token = page.get("nextToken")
        if not token:
            break
    assert len(pages) == len(DEBIAN_FINDINGS)
    # Aggregations: the image, its pipeline, a vulnerability, the account.
    counts = {"all": 6, "critical": 1, "high": 2, "medium": 2}
    agg = client.list_image_scan_finding_aggregations(
        filter={"name": "imageBuildVersionArn", "values": [arn]})
    assert agg["aggregationType"] == "imageBuildVersionArn"
    assert agg["responses"][0]["imageAggregation"] == {"imageBuildVersionArn": arn,
                                                        "severityCounts": counts}
    agg = client.list_image_scan_finding_aggregations(
        filter={"name": "imagePipelineArn", "values": [pipeline]})
    assert agg["responses"][0]["imagePipelineAggregation"]["severityCounts"] == counts
    agg = client.list_image_scan_finding_aggregations(
        filter={"name": "vulnerabilityId", "values": ["CVE-2099-1001"]})
    vuln = agg["responses"][0]["vulnerabilityIdAggregation"]
    assert vuln["vulnerabilityId"] == "CVE-2099-1001" and vuln["severityCounts"]["critical"] >= 1
    agg = client.list_image_scan_finding_aggregations()
    assert agg["aggregationType"] == "accountId"
    account = agg["responses"][0]["accountAggregation"]
    assert account["accountId"] == DEFAULT_ACCOUNT
    total = account["severityCounts"]
    assert total["all"] >= total["critical"] + total["high"] + total["medium"] >= 5
    # Another account sees none of it.
    other = make_client(scanning["server"].endpoint, access_key=OTHER_KEY)
    assert findings_of(other, imageBuildVersionArn=arn) == []
    assert other.list_image_scan_finding_aggregations()["responses"][0]["accountAggregation"][
        "severityCounts"]["all"] == 0


def test_bad_requests_are_refused(scanning):
    client = scanning["client"]
    raw = make_client(scanning["server"].endpoint, validate=False)
    f = {"name": "severity", "values": ["HIGH"]}
    assert_client_error(lambda: raw.list_image_scan_findings(filters=[f, f]),
                        "InvalidRequestException", "filters")
    assert_client_error(lambda: raw.list_image_scan_findings(
        filters=[{"name": "severity", "values": ["HIGH", "LOW"]}]),
        "InvalidRequestException", "values")
    assert_client_error(lambda: raw.list_image_scan_findings(maxResults=101),
                        "InvalidRequestException", "maxResults")
    assert_client_error(lambda: client.list_image_scan_findings(
        filters=[{"name": "severity", "values": ["SEVERE"]}]),
        "InvalidParameterValueException", "SEVERE")
    assert_client_error(lambda: client.list_image_scan_findings(
        filters=[{"name": "color", "values": ["red"]}]), "InvalidRequestException", "color")
    # Scanning without tests, and a condition without ON_DEMAND_AMI_CVE.
    r = recipe(client, [bash_component(client, {"build": "true"})])
    assert_client_error(lambda: client.create_image(
        imageRecipeArn=r, infrastructureConfigurationArn=scanning["infra"],
        imageTestsConfiguration={"imageTestsEnabled": False},
        imageScanningConfiguration={"imageScanningEnabled": True}),
        "InvalidRequestException", "imageTestsEnabled")
    assert_client_error(lambda: client.create_image(
        imageRecipeArn=r, infrastructureConfigurationArn=scanning["infra"],
        imageScanningConfiguration={"imageScanningEnabled": True,
                                    "scanResultCondition": {"maximumSeverityLabel": "HIGH"}}),
        "InvalidRequestException", "scanResultCondition")


def test_the_aws_cli_and_kiln_image_findings(scanning, debian_image, tmp_path):
    srv = scanning["server"]
    cli = AwsCli(srv.endpoint, tmp_path)
    out = cli.json("list-image-scan-findings", "--filters",
                   f"name=imageBuildVersionArn,values={debian_image['arn']}")
    ids = {f["packageVulnerabilityDetails"]["vulnerabilityId"] for f in out["findings"]}
    assert ids == set(DEBIAN_FINDINGS)
    table = kiln_cli(srv.endpoint, "image", "findings", debian_image["arn"])
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("scan COMPLETED")
    assert "6 findings: 1 CRITICAL, 2 HIGH, 2 MEDIUM, 1 UNTRIAGED" in lines[1]
    assert lines[2].split()[:3] == ["SEVERITY", "VULNERABILITY", "SCORE"]
    # The most severe first.
    assert lines[3].split()[:3] == ["CRITICAL", "CVE-2099-1001", "9.8"]
    assert "kiln-fixture" in lines[3] and "1:1.0-2" in lines[3]


def test_an_alpine_image_matches_secdb_and_takes_cvss_from_osv(scanning):
    image = build_scanned(scanning, BUSYBOX, ALPINE_DB)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["scanState"]["status"] == "COMPLETED", image.get("scanState")
    findings = findings_of(scanning["client"], imageBuildVersionArn=image["arn"])
    assert [f["packageVulnerabilityDetails"]["vulnerabilityId"] for f in findings] == [
        "CVE-2099-3001"]
    finding = findings[0]
    # secdb has no severity: the OSV record named by the CVE gives its CVSS.
    assert finding["severity"] == "HIGH" and finding["inspectorScore"] == pytest.approx(7.5)
    package = finding["packageVulnerabilityDetails"]["vulnerablePackages"][0]
    assert package["name"] == "kiln-apk" and "1.2.3-r1" in package["fixedInVersion"]
    assert package["remediation"] == "apk upgrade kiln-apk"


def test_scan_result_condition_gates_distribution(scanning):
    gate = {"imageScanningEnabled": True, "imageScanningTypes": ["ON_DEMAND_AMI_CVE"],
            "scanResultCondition": {"maximumSeverityLabel": "HIGH"}}
    failed = build_scanned(scanning, DEBIAN, INSTALL_DEBS, gate)
    assert failed["state"]["status"] == "FAILED", failed["state"]
    reason = failed["state"]["reason"]
    assert reason.startswith("test stage failed") and "CVE-2099-1001 (CRITICAL)" in reason
    assert failed["state"]["failureContext"]["imageStatus"] == "TESTING"
    assert not failed.get("outputResources", {}).get("amis")
    assert failed["scanState"]["status"] == "COMPLETED"
    # A CRITICAL finding with no fix does not count by default ...
    medium = {**gate, "scanResultCondition": {"maximumSeverityLabel": "MEDIUM"}}
    passed = build_scanned(scanning, DEBIAN, INSTALL_NOFIX, medium)
    assert passed["state"]["status"] == "AVAILABLE", passed["state"]
    assert passed["outputResources"]["amis"]
    # ... and does with fixAvailable false.
    strict = {**gate, "scanResultCondition": {"maximumSeverityLabel": "MEDIUM",
                                              "fixAvailable": False}}
    failed = build_scanned(scanning, DEBIAN, INSTALL_NOFIX, strict)
    assert failed["state"]["status"] == "FAILED", failed["state"]
    assert "CVE-2099-1010 (CRITICAL)" in failed["state"]["reason"]


def wait_for(predicate: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("timed out")


def test_new_data_reevaluates_available_images(scanning, debian_image):
    client = scanning["client"]
    arn = debian_image["arn"]
    before = {f["packageVulnerabilityDetails"]["vulnerabilityId"]: f
              for f in findings_of(client, imageBuildVersionArn=arn)}
    feeds = scanning["base"] / "feeds-2"
    feeds.mkdir()
    # A new vulnerability, and 1001 corrected: it never affected 1:1.0-1.
    new = osv("KILN-2099-1011", "CVE-2099-1011", "kiln-fixture-src",
              [{"introduced": "0"}, {"fixed": "1:2.0-1"}], HIGH_VECTOR,
              modified="2026-11-20T00:00:00Z")
    corrected = osv("KILN-2099-1001", "CVE-2099-1001", "kiln-fixture-src",
                    [{"introduced": "0"}, {"fixed": "1:0.5-1"}], CRITICAL_VECTOR,
                    modified="2026-11-20T00:00:00Z")
    # 1002 gets a fix: the same finding, changed.
    fixed = osv("KILN-2099-1002", "CVE-2099-1002", "kiln-fixture-src",
                [{"introduced": "0"}, {"fixed": "1:1.0-9"}], MEDIUM_VECTOR,
                modified="2026-11-20T00:00:00Z")
    (feeds / "new.json").write_text(json.dumps(new))
    (feeds / "corrected.json").write_text(json.dumps(corrected))
    (feeds / "fixed.json").write_text(json.dumps(fixed))
    time.sleep(1.1)  # so that the re-evaluation's time differs from the build's
    out = kiln_cli(scanning["server"].endpoint, "vulndb", "import", str(feeds))
    assert out.returncode == 0, out.stderr

    def current() -> dict | None:
        found = {f["packageVulnerabilityDetails"]["vulnerabilityId"]: f
                 for f in findings_of(client, imageBuildVersionArn=arn)}
        return found if "CVE-2099-1011" in found and "CVE-2099-1001" not in found else None

    after = wait_for(current)
    assert after["CVE-2099-1011"]["firstObservedAt"] > before["CVE-2099-1002"]["firstObservedAt"]
    # A changed finding keeps when it was first observed, and is updated now ...
    changed = after["CVE-2099-1002"]
    assert changed["fixAvailable"] == "YES" and before["CVE-2099-1002"]["fixAvailable"] == "NO"
    assert changed["firstObservedAt"] == before["CVE-2099-1002"]["firstObservedAt"]
    assert changed["updatedAt"] > before["CVE-2099-1002"]["updatedAt"]
    # ... and one the new data did not change is as it was.
    assert after["CVE-2099-1005"] == before["CVE-2099-1005"]
    # Importing the same records again changes nothing.
    again = kiln_cli(scanning["server"].endpoint, "vulndb", "import", "--json", str(feeds))
    changes = json.loads(again.stdout)["changes"]
    assert all(c["added"] == c["updated"] == 0 for c in changes), changes


def test_an_import_straight_into_the_data_directory(scanning, debian_image, tmp_path):
    """`kiln vulndb import --data-dir` (or `--database`): no server in the way. A SQLite
    database belongs to one process, so the server is stopped first (the import says so
    otherwise); on PostgreSQL the server keeps running. Either way its scans follow the data."""
    srv = scanning["server"]
    store = ["--data-dir", str(srv.data_dir), *database_for(srv.data_dir)]
    record = tmp_path / "direct.json"
    record.write_text(json.dumps(osv("KILN-2099-1200", "CVE-2099-1200", "kiln-fixture-src",
                                     [{"introduced": "0"}, {"fixed": "1:3.0-1"}], LOW_VECTOR,
                                     modified="2026-11-25T00:00:00Z")))
    command = [kiln_bin(), "vulndb", "import", *store, str(record)]
    sqlite = "--database" not in store
    if sqlite:
        busy = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert busy.returncode != 0 and "another kiln process" in busy.stderr, busy.stderr
        srv.stop()
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    status = subprocess.run([kiln_bin(), "vulndb", "status", "--json", *store],
                            capture_output=True, text=True, timeout=60)
    if sqlite:
        srv.start()
        scanning["client"] = make_client(srv.endpoint)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == vulndb_status(srv.endpoint)
    found = wait_for(lambda: [f for f in findings_of(scanning["client"],
                                                     imageBuildVersionArn=debian_image["arn"])
                              if f["packageVulnerabilityDetails"]["vulnerabilityId"]
                              == "CVE-2099-1200"], timeout=30)
    assert found[0]["severity"] == "LOW"


def test_failed_imports_change_nothing(scanning, tmp_path):
    endpoint = scanning["server"].endpoint
    before = vulndb_status(endpoint)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(osv("KILN-2099-1100", "CVE-2099-1100", "kiln-fixture-src",
                                   [{"introduced": "0"}])))
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps(osv_records()[0])[:-20])
    out = kiln_cli(endpoint, "vulndb", "import", str(good), str(truncated))
    assert out.returncode != 0 and "truncated.json" in out.stderr, out.stderr
    # A zip bomb: a small file that inflates past the limit on one entry.
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("bomb.json", "w", force_zip64=True) as entry:
            chunk = b" " * (1 << 20)
            for _ in range(300):
                entry.write(chunk)
    assert bomb.stat().st_size < 2 << 20
    out = kiln_cli(endpoint, "vulndb", "import", str(good), str(bomb))
    assert out.returncode != 0 and "bomb" in out.stderr, out.stderr
    not_json = tmp_path / "binary.json"
    not_json.write_bytes(b"\xff\xfe\x00garbage")
    out = kiln_cli(endpoint, "vulndb", "import", str(not_json))
    assert out.returncode != 0 and "binary.json" in out.stderr
    assert vulndb_status(endpoint) == before
    # Only the accounts the server names import through it.
    out = kiln_cli(endpoint, "vulndb", "import", str(good), key=OTHER_KEY)
    assert out.returncode != 0 and "may not import" in out.stderr, out.stderr
    assert vulndb_status(endpoint) == before


def test_no_data_for_the_os_fails_the_scan_not_the_image(scanning):
    """A busybox image with no os-release: Kiln cannot tell what to match, and says so."""
    image = build_scanned(scanning, BUSYBOX, "echo hello > /hello")
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["scanState"]["status"] == "FAILED"
    assert "cannot scan" in image["scanState"]["reason"]
    assert findings_of(scanning["client"], imageBuildVersionArn=image["arn"]) == []


def test_a_container_image_is_scanned_and_ecr_configuration_needs_a_registry(scanning):
    """A container recipe's image is scanned like an AMI's (here in Kiln's own store: this
    server has no registry for container images, so an ecrConfiguration is refused)."""
    client = scanning["client"]
    component = bash_component(client, {"build": ALPINE_DB})
    recipe = client.create_container_recipe(
        containerType="DOCKER", name=unique_name("ctr"), semanticVersion="1.0.0",
        parentImage=BUSYBOX, components=[{"componentArn": component}],
        dockerfileTemplateData=("FROM {{{ imagebuilder:parentImage }}}\n"
                                "{{{ imagebuilder:environments }}}\n"
                                "{{{ imagebuilder:components }}}\n"),
        targetRepository={"service": "ECR", "repositoryName": "scanned"},
    )["containerRecipeArn"]
    assert_client_error(lambda: client.create_image(
        containerRecipeArn=recipe, infrastructureConfigurationArn=scanning["infra"],
        imageScanningConfiguration={"imageScanningEnabled": True,
                                    "ecrConfiguration": {"repositoryName": "scans"}}),
        "InvalidRequestException", "ecrConfiguration", "--ecr-registry")
    # A pipeline too, when it is made (no scheduled run finds out later).
    assert_client_error(lambda: client.create_image_pipeline(
        name=unique_name("scanpipe"), containerRecipeArn=recipe,
        infrastructureConfigurationArn=scanning["infra"],
        imageScanningConfiguration={"imageScanningEnabled": True,
                                    "ecrConfiguration": {"repositoryName": "scans"}}),
        "InvalidRequestException", "ecrConfiguration", "--ecr-registry")
    arn = client.create_image(
        containerRecipeArn=recipe, infrastructureConfigurationArn=scanning["infra"],
        imageScanningConfiguration={"imageScanningEnabled": True},
    )["imageBuildVersionArn"]
    image = wait_final(client, arn, timeout=600)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["scanState"]["status"] == "COMPLETED", image.get("scanState")
    found = findings_of(client, imageBuildVersionArn=arn)
    assert [f["packageVulnerabilityDetails"]["vulnerabilityId"] for f in found] == ["CVE-2099-3001"]


# An RPM-based system whose `rpm` never answers.
STUCK_RPM = r"""
mkdir -p /etc /var/lib/rpm /usr/bin
printf 'NAME="Red Hat Enterprise Linux"\nID=rhel\nID_LIKE=fedora\nVERSION_ID=9.4\n' > /etc/os-release
printf '#!/bin/sh\nsleep 600\n' > /usr/bin/rpm
chmod +x /usr/bin/rpm
"""


def test_an_rpm_that_never_answers_times_out(scanning):
    """The image's own rpm lists an rpm database's packages; this server gives it 3 s
    (`--rpm-timeout`). Past it the scan is TIMED_OUT and the image goes on; enhanced metadata's
    inventory collection fails the build instead of waiting."""
    client = scanning["client"]
    r = recipe(client, [bash_component(client, {"build": STUCK_RPM})], parent=BUSYBOX)
    started = time.monotonic()
    arn = client.create_image(
        imageRecipeArn=r, infrastructureConfigurationArn=scanning["infra"],
        enhancedImageMetadataEnabled=False,
        imageScanningConfiguration={"imageScanningEnabled": True},
    )["imageBuildVersionArn"]
    image = wait_final(client, arn, timeout=300)
    assert image["state"]["status"] == "AVAILABLE", image["state"]
    assert image["scanState"]["status"] == "TIMED_OUT", image["scanState"]
    assert "within 3 s" in image["scanState"]["reason"]
    arn = client.create_image(
        imageRecipeArn=r, infrastructureConfigurationArn=scanning["infra"],
    )["imageBuildVersionArn"]
    image = wait_final(client, arn, timeout=300)
    assert image["state"]["status"] == "FAILED", image["state"]
    assert "did not list its packages within 3 s" in image["state"]["reason"]
    assert time.monotonic() - started < 120
