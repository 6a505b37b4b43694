"""`kiln toe`, as a developer uses it: validate and run component documents on this machine,
with awstoe's flags, Kiln's exit codes, the TOE_* log folder, live output, reboots and resume;
and the API refusing what `kiln toe validate` refuses, with the same message."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from kiln_testlib import assert_client_error, kiln_bin, unique_name

HELLO = """\
name: hello
schemaVersion: 1.0
parameters:
  - Who:
      type: string
      default: world
phases:
  - name: build
    steps:
      - name: Greet
        action: ExecuteBash
        inputs:
          commands:
            - echo "hello {{ Who }}"
      - name: Tolerated
        action: ExecuteBash
        onFailure: Ignore
        inputs:
          commands: ['exit 3']
  - name: validate
    steps:
      - name: Check
        action: Assert
        inputs:
          stringEquals: 'hello {{ Who }}'
          value: '{{ build.Greet.outputs.stdout }}'
  - name: test
    steps:
      - name: Skipped
        action: ExecuteBash
        if:
          fileExists: /no/such/file
        inputs:
          commands: ['exit 1']
"""

BAD = """\
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Windows
        action: ExecutePowerShell
        inputs:
          commands: [Write-Host hi]
      - name: Late
        action: ExecuteBash
        timeoutSeconds: 0
        inputs:
          commands: [echo]
"""


def toe(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kiln_bin(), "toe", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def log_folder(cwd: Path) -> Path:
    folders = sorted(cwd.glob("TOE_*"))
    assert len(folders) == 1, folders
    return folders[0]


def test_validate_reports_every_problem_with_phase_step_and_line(tmp_path):
    (tmp_path / "good.yaml").write_text(HELLO)
    (tmp_path / "bad.yaml").write_text(BAD)
    ok = toe("validate", "--documents", "good.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "good.yaml: valid"
    bad = toe("validate", "-d", "good.yaml,bad.yaml", cwd=tmp_path)
    assert bad.returncode == 1
    lines = bad.stdout.strip().splitlines()
    assert lines == [
        "good.yaml: valid",
        "bad.yaml: phase 'build', step 'Windows', line 6: action ExecutePowerShell is not supported on Linux",
        "bad.yaml: phase 'build', step 'Late', line 11: timeoutSeconds must be a positive whole number of seconds, or -1 for no limit",
    ]


def test_the_api_refuses_what_validate_refuses_with_the_same_message(client, tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD)
    out = toe("validate", "-d", "bad.yaml", cwd=tmp_path)
    problems = [line.removeprefix("bad.yaml: ") for line in out.stdout.strip().splitlines()]
    exc = assert_client_error(
        lambda: client.create_component(
            name=unique_name("bad"), semanticVersion="1.0.0", platform="Linux", data=BAD
        ),
        "InvalidRequestException",
    )
    assert exc.response["Error"]["Message"] == "data: " + "; ".join(problems)


def test_run_prints_progress_and_a_summary_and_writes_awstoe_logs(tmp_path):
    (tmp_path / "hello.yaml").write_text(HELLO)
    run = toe(
        "run", "--documents", "hello.yaml", "--parameters", "Who=kiln",
        "--execution-id", "exec-1", cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "  │ hello kiln" in out
    assert "✓ build/Greet ExecuteBash success in " in out
    assert "! build/Tolerated ExecuteBash ignoredFailure in " in out
    assert "↷ test/Skipped ExecuteBash skipped in " in out
    assert (
        "Execution exec-1: successWithIgnoredFailure in " in out
        and "2 succeeded, 0 failed, 1 ignored, 1 skipped" in out
    ), out
    folder = log_folder(tmp_path)
    assert folder.name.startswith("TOE_") and folder.name.endswith("_UTC-0_exec-1")
    assert {p.name for p in folder.iterdir()} >= {
        "console.log", "detailedoutput.json", "chaining.json", "document.yaml", "application.log",
    }
    detailed = json.loads((folder / "detailedoutput.json").read_text())
    assert detailed["status"] == "successWithIgnoredFailure"
    greet = detailed["documents"][0]["phases"][0]["steps"][0]
    assert greet["name"] == "Greet" and greet["status"] == "success"
    assert json.loads(greet["outputs"]) == {"stdout": "hello kiln"}
    assert json.loads(greet["inputs"]) == {"commands": ['echo "hello kiln"']}
    chaining = json.loads((folder / "chaining.json").read_text())
    assert {"document": "hello.yaml", "phase": "validate", "step": "Check",
            "expression": "build.Greet.outputs.stdout", "value": "hello kiln"} in chaining
    assert "hello kiln" in (folder / "console.log").read_text()


def test_phases_flag_and_exit_codes(tmp_path):
    (tmp_path / "hello.yaml").write_text(HELLO)
    (tmp_path / "fail.yaml").write_text(HELLO.replace("onFailure: Ignore", "onFailure: Abort"))
    only_test = toe("run", "-d", "hello.yaml", "--phases", "test", "-l", "logs", cwd=tmp_path)
    assert only_test.returncode == 0
    assert "build/Greet" not in only_test.stdout and "test/Skipped" in only_test.stdout
    failed = toe("run", "-d", "fail.yaml", "-l", "logs", cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout
    assert "✗ build/Tolerated ExecuteBash failed" in failed.stdout
    assert "Failure: phase build: step Tolerated failed: ExecuteBash: exit status 3" in failed.stdout
    # Nothing runs for an invalid document, a missing file or a missing parameter: exit 2.
    (tmp_path / "bad.yaml").write_text(BAD)
    invalid = toe("run", "-d", "bad.yaml", cwd=tmp_path)
    assert invalid.returncode == 2 and "not supported on Linux" in invalid.stderr
    missing = toe("run", "-d", "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read nope.yaml" in missing.stderr
    (tmp_path / "req.yaml").write_text(HELLO.replace("      default: world\n", ""))
    required = toe("run", "-d", "req.yaml", cwd=tmp_path)
    assert required.returncode == 2 and "missing required parameter Who" in required.stderr
    bad_param = toe("run", "-d", "hello.yaml", "--parameters", "Who=", cwd=tmp_path)
    assert bad_param.returncode == 2


def test_config_file(tmp_path):
    (tmp_path / "hello.yaml").write_text(HELLO)
    (tmp_path / "run.json").write_text(json.dumps({
        "documents": [{"path": "hello.yaml", "parameters": [{"name": "Who", "value": "config"}]}],
        "phases": "build",
        "executionId": "from-config",
        "logDirectory": "cfg-logs",
    }))
    run = toe("run", "--config", "run.json", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hello config" in run.stdout
    assert list((tmp_path / "cfg-logs").glob("TOE_*_UTC-0_from-config"))
    both = toe("run", "--config", "run.json", "-d", "hello.yaml", cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr


def test_output_is_streamed_while_the_step_runs(tmp_path):
    (tmp_path / "slow.yaml").write_text(
        "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
        "      - name: Slow\n        action: ExecuteBash\n        inputs:\n"
        "          commands: ['echo first', 'sleep 3', 'echo second']\n"
    )
    proc = subprocess.Popen(
        [kiln_bin(), "toe", "run", "-d", "slow.yaml"],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True,
    )
    try:
        started = time.monotonic()
        assert proc.stdout is not None
        for line in proc.stdout:
            if "│ first" in line:
                break
        seen_after = time.monotonic() - started
        assert proc.poll() is None, "the run ended before its first line was read"
        assert seen_after < 2.5, seen_after
        # console.log follows too: the line is there while the step still runs.
        console = next(tmp_path.glob("TOE_*")) / "console.log"
        assert "first" in console.read_text()
        assert "second" not in console.read_text()
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == 0


REBOOTING = """\
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Kernel
        action: ExecuteBash
        inputs:
          commands:
            - echo kernel >> {dir}/runs
            - if [ ! -e {dir}/rebooted ]; then touch {dir}/rebooted; exit 194; fi
      - name: After
        action: ExecuteBash
        inputs:
          commands:
            - echo after >> {dir}/runs
"""


def test_reboot_exit_saves_state_and_a_second_run_resumes(tmp_path):
    (tmp_path / "reboot.yaml").write_text(REBOOTING.format(dir=tmp_path))
    first = toe(
        "run", "-d", "reboot.yaml", "--reboot", "exit", "--state-directory", "state",
        cwd=tmp_path,
    )
    assert first.returncode == 194, first.stdout + first.stderr
    assert "waiting for a reboot" in first.stdout
    assert (tmp_path / "state" / "executionstate.json").exists()
    second = toe("run", "--reboot", "exit", "--state-directory", "state", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (tmp_path / "runs").read_text() == "kernel\nkernel\nafter\n"
    assert not (tmp_path / "state" / "executionstate.json").exists()
    # Without --reboot exit the step re-runs at once (this machine is not rebooted).
    (tmp_path / "rebooted").unlink()
    (tmp_path / "runs").unlink()
    again = toe("run", "-d", "reboot.yaml", cwd=tmp_path)
    assert again.returncode == 0
    assert (tmp_path / "runs").read_text() == "kernel\nkernel\nafter\n"


def test_root_confines_file_actions(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "tmp").mkdir()
    (tmp_path / "files.yaml").write_text(
        "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
        "      - name: Write\n        action: CreateFile\n        inputs:\n"
        "          - path: /../../etc/kiln-toe-escape\n            content: inside\n"
    )
    run = toe("run", "-d", "files.yaml", "--root", str(root), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (root / "etc" / "kiln-toe-escape").read_text() == "inside"
    assert not Path("/etc/kiln-toe-escape").exists()


def test_s3_upload_and_download_against_a_configured_endpoint(tmp_path, moto_endpoint):
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="kiln", aws_secret_access_key="kiln",
    )
    s3.create_bucket(Bucket="toe-bucket")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("alpha")
    (tmp_path / "out" / "b.txt").write_text("beta")
    (tmp_path / "s3.yaml").write_text(f"""\
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Up
        action: S3Upload
        inputs:
          - source: {tmp_path}/out/*
            destination: s3://toe-bucket/files/
      - name: Down
        action: S3Download
        inputs:
          - source: s3://toe-bucket/files/*
            destination: {tmp_path}/back/
""")
    run = toe("run", "-d", "s3.yaml", "--s3-endpoint", moto_endpoint, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="toe-bucket")["Contents"])
    assert keys == ["files/a.txt", "files/b.txt"]
    assert (tmp_path / "back" / "a.txt").read_text() == "alpha"
    assert (tmp_path / "back" / "b.txt").read_text() == "beta"
    # The log folder goes to S3 when asked, as awstoe's --log-s3-* flags do.
    logged = toe(
        "run", "-d", "s3.yaml", "--s3-endpoint", moto_endpoint, "--execution-id", "s3-logs",
        "--log-s3-bucket-name", "toe-bucket", "--log-s3-key-prefix", "runs", cwd=tmp_path,
    )
    assert logged.returncode == 0, logged.stdout + logged.stderr
    log_keys = {
        o["Key"].rsplit("/", 1)[-1]
        for o in s3.list_objects_v2(Bucket="toe-bucket", Prefix="runs/")["Contents"]
        if o["Key"].split("/")[1].endswith("_UTC-0_s3-logs")
    }
    assert {"console.log", "detailedoutput.json", "chaining.json"} <= log_keys, log_keys
    # Documents can come from S3 too: on the command line and in ExecuteDocument.
    s3.put_object(Bucket="toe-bucket", Key="docs/hello.yaml", Body=HELLO.encode())
    (tmp_path / "outer.yaml").write_text(
        "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Nested\n"
        "        action: ExecuteDocument\n        inputs:\n"
        "          document: s3://toe-bucket/docs/hello.yaml\n          phases: build\n"
    )
    from_s3 = toe(
        "run", "-d", "s3://toe-bucket/docs/hello.yaml,outer.yaml", "--parameters", "Who=s3",
        "--s3-endpoint", moto_endpoint, cwd=tmp_path,
    )
    assert from_s3.returncode == 0, from_s3.stdout + from_s3.stderr
    assert from_s3.stdout.count("│ hello s3") == 1 and "│ hello world" in from_s3.stdout
    missing = toe("run", "-d", "s3://toe-bucket/docs/none.yaml", "--s3-endpoint", moto_endpoint,
                  cwd=tmp_path)
    assert missing.returncode == 2 and "NoSuchKey" in missing.stderr, missing.stderr
    # CloudWatch is not available: refused, unless failures are to be ignored.
    cw = toe("run", "-d", "s3.yaml", "--cw-log-group", "g", cwd=tmp_path)
    assert cw.returncode == 2 and "CloudWatch" in cw.stderr
    # Without an endpoint the step fails and says how to configure one.
    unconfigured = subprocess.run(
        [kiln_bin(), "toe", "run", "-d", "s3.yaml"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert unconfigured.returncode == 1
    assert "no S3 endpoint is configured" in unconfigured.stdout
