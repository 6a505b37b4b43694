"""The aws CLI as a user types it: the README's example, verbatim, against a server of its own
(so that its fixed names and ARNs are free), then a flow with a pipeline input file and the
teardown in dependency order on the shared server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from kiln_testlib import (
    BUILD_COMPONENT_YAML,
    REGION,
    aws_executable,
    PARENT_AMI,
    AwsCli,
    KilnServer,
    arn_prefix,
    unique_name,
)

README_HELLO = """\
name: hello
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: SayHello
        action: ExecuteBash
        inputs:
          commands:
            - echo hello
"""
ACCOUNT_ARN = "arn:aws:imagebuilder:us-east-1:123456789012"


@pytest.fixture(scope="module")
def readme_aws(tmp_path_factory):
    srv = KilnServer(tmp_path_factory.mktemp("readme") / "data").start()
    yield AwsCli(srv.endpoint, tmp_path_factory.mktemp("readme-cli"))
    srv.stop_gracefully()


def test_the_readme_example(readme_aws):
    ib = readme_aws
    (ib.workdir / "hello.yaml").write_text(README_HELLO)

    created = ib.json(
        "create-component",
        "--name", "hello",
        "--semantic-version", "1.0.0",
        "--platform", "Linux",
        "--data", "file://hello.yaml",
    )
    assert created["componentBuildVersionArn"] == f"{ACCOUNT_ARN}:component/hello/1.0.0/1"

    recipe = ib.json(
        "create-image-recipe",
        "--name", "web",
        "--semantic-version", "1.0.x",
        "--parent-image", "arn:aws:imagebuilder:us-east-1:aws:image/debian-12-x86/x.x.x",
        "--components", f"componentArn={ACCOUNT_ARN}:component/hello/1.x.x",
    )
    assert recipe["imageRecipeArn"] == f"{ACCOUNT_ARN}:image-recipe/web/1.0.0"

    ib.json(
        "create-infrastructure-configuration",
        "--name", "build-hosts",
        "--instance-profile-name", "builder",
        "--instance-types", "t3.micro",
    )

    ib.json(
        "create-image-pipeline",
        "--name", "Web nightly",
        "--image-recipe-arn", f"{ACCOUNT_ARN}:image-recipe/web/1.x.x",
        "--infrastructure-configuration-arn", f"{ACCOUNT_ARN}:infrastructure-configuration/build-hosts",
        "--schedule", "scheduleExpression=cron(0 3 * * ? *),timezone=Europe/Berlin",
    )

    pipeline = ib.json(
        "get-image-pipeline", "--image-pipeline-arn", f"{ACCOUNT_ARN}:image-pipeline/web-nightly"
    )["imagePipeline"]
    assert pipeline["name"] == "Web nightly"
    assert pipeline["status"] == "ENABLED"
    assert pipeline["imageTestsConfiguration"] == {"imageTestsEnabled": True, "timeoutMinutes": 720}
    assert pipeline["schedule"]["pipelineExecutionStartCondition"] == (
        "EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE"
    )
    assert pipeline["platform"] == "Linux"
    assert "consecutiveFailures" not in pipeline
    next_run = datetime.strptime(pipeline["dateNextRun"], "%Y-%m-%dT%H:%M:%S.%fZ")
    berlin = next_run.replace(tzinfo=timezone.utc).astimezone(ZoneInfo("Europe/Berlin"))
    assert (berlin.hour, berlin.minute) == (3, 0)


def test_the_readme_waits_for_a_build_with_the_installed_cli(aws, client):
    """The README's waiting step, taken from the README itself, run by bash with the aws CLI that
    `.ci/run` installs (v1, which has no Image Builder waiter)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [loop] = [line for line in readme.splitlines() if line.startswith("until s=$($IB get-image")]
    component = client.create_component(
        name=unique_name("wait"), semanticVersion="1.0.0", platform="Linux",
        data=BUILD_COMPONENT_YAML,
    )["componentBuildVersionArn"]
    recipe = client.create_image_recipe(
        name=unique_name("wait"), semanticVersion="1.0.0",
        parentImage="arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
        components=[{"componentArn": component}],
    )["imageRecipeArn"]
    infra = client.create_infrastructure_configuration(
        name=unique_name("wait"), instanceProfileName="builder",
    )["infrastructureConfigurationArn"]
    image = client.create_image(imageRecipeArn=recipe, infrastructureConfigurationArn=infra)[
        "imageBuildVersionArn"
    ]
    env = dict(aws.env, IMAGE=image, IB=f"{aws_executable()} imagebuilder --endpoint-url {aws.endpoint} --region {REGION}")
    done = subprocess.run(
        ["bash", "-c", loop], env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "AVAILABLE", done.stdout + done.stderr
    assert client.get_image(imageBuildVersionArn=image)["image"]["state"]["status"] == "AVAILABLE"


def test_flow_with_an_input_file_and_teardown(aws, tmp_path):
    suffix = unique_name("cli")
    document = tmp_path / "hello.yaml"
    document.write_text(BUILD_COMPONENT_YAML)

    component = aws.json(
        "create-component",
        "--name",
        f"hello-{suffix}",
        "--semantic-version",
        "1.0.0",
        "--platform",
        "Linux",
        "--data",
        f"file://{document}",
    )["componentBuildVersionArn"]
    assert component == f"{arn_prefix()}:component/hello-{suffix}/1.0.0/1"

    recipe = aws.json(
        "create-image-recipe",
        "--name",
        f"web-{suffix}",
        "--semantic-version",
        "1.0.0",
        "--parent-image",
        PARENT_AMI,
        "--components",
        f"componentArn={component}",
    )["imageRecipeArn"]
    assert recipe == f"{arn_prefix()}:image-recipe/web-{suffix}/1.0.0"

    infra = aws.json(
        "create-infrastructure-configuration",
        "--name",
        f"builders-{suffix}",
        "--instance-profile-name",
        "EC2InstanceProfileForImageBuilder",
        "--instance-types",
        "t3.micro",
    )["infrastructureConfigurationArn"]

    pipeline_input = tmp_path / "pipeline.json"
    pipeline_input.write_text(
        json.dumps(
            {
                "name": f"nightly-{suffix}",
                "imageRecipeArn": recipe,
                "infrastructureConfigurationArn": infra,
                "schedule": {
                    "scheduleExpression": "cron(0 2 * * ? *)",
                    "timezone": "Europe/Berlin",
                },
            }
        )
    )
    pipeline = aws.json("create-image-pipeline", "--cli-input-json", f"file://{pipeline_input}")[
        "imagePipelineArn"
    ]
    assert pipeline == f"{arn_prefix()}:image-pipeline/nightly-{suffix}"

    got = aws.json("get-image-pipeline", "--image-pipeline-arn", pipeline)["imagePipeline"]
    assert got["imageRecipeArn"] == recipe
    assert got["infrastructureConfigurationArn"] == infra
    assert got["schedule"]["scheduleExpression"] == "cron(0 2 * * ? *)"
    assert got["schedule"]["timezone"] == "Europe/Berlin"
    assert got["status"] == "ENABLED"
    assert got["dateNextRun"]

    listed = aws.json("list-image-pipelines", "--filters", f"name=name,values=nightly-{suffix}")
    assert [p["arn"] for p in listed["imagePipelineList"]] == [pipeline]

    # Tear down in dependency order: each step would be refused while something still uses it.
    blocked = aws.run("delete-image-recipe", "--image-recipe-arn", recipe, check=False)
    assert blocked.returncode != 0 and "ResourceDependencyException" in blocked.stderr
    aws.json("delete-image-pipeline", "--image-pipeline-arn", pipeline)
    aws.json("delete-image-recipe", "--image-recipe-arn", recipe)
    aws.json("delete-component", "--component-build-version-arn", component)
    aws.json("delete-infrastructure-configuration", "--infrastructure-configuration-arn", infra)


def test_cli_pipeline_error_names_the_missing_recipe(aws):
    missing = f"{arn_prefix()}:image-recipe/{unique_name('nope')}/1.0.0"
    result = aws.run(
        "create-image-pipeline",
        "--name",
        unique_name("pipe"),
        "--image-recipe-arn",
        missing,
        "--infrastructure-configuration-arn",
        f"{arn_prefix()}:infrastructure-configuration/whatever",
        check=False,
    )
    assert result.returncode != 0
    assert "InvalidRequestException" in result.stderr
    assert missing in result.stderr
