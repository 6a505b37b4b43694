"""Every workflow document of the corpus (tests/corpus/workflows: real documents from AWS's
samples, the CDK and the Terraform provider) through CreateWorkflow with the type its source
gives it: accepted, or refused with the rule it breaks. Each is also tried as the types it is
not written for, where the stage rules of the step actions decide."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln_testlib import KilnServer, assert_client_error, make_client, unique_name

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "workflows"

# file name -> (the type its source creates it with, None when accepted or the refusal's words)
EXPECTED: dict[str, tuple[str, str | None]] = {
    "amazon-ec2-image-builder-samples__CloudFormation_Linux_amazon-linux-2023-attestable-image_base-template.yaml__Resources.ImageWorkflow.Data.FnSub-template.yaml": ("BUILD", None),
    "amazon-ec2-image-builder-samples__workflows_approval-gate_approval-gate.yml__Resources.ApprovalWorkflow.Data.yaml": ("BUILD", None),
    "amazon-ec2-image-builder-samples__workflows_gated-distribution_gated-distribution.yml__Resources.DistributionWorkflow.Data.FnSub-template.yaml": ("DISTRIBUTION", None),
    "amazon-ec2-image-builder-samples__workflows_packer-build_packer-build.yml__Resources.BuildWorkflow.Data.yaml": ("BUILD", None),
    "amazon-ec2-image-builder-samples__workflows_step-functions-integration_step-functions-integration.yml__Resources.BuildWorkflow.Data.yaml": ("BUILD", None),
    "amazon-ec2-image-builder-samples__workflows_step-functions-integration_step-functions-integration.yml__Resources.OsCheckWorkflow.Data.yaml": ("TEST", None),
    # Kiln has no Step Functions: the step would always fail, so the document is refused.
    "amazon-ec2-image-builder-samples__workflows_step-functions-integration_step-functions-integration.yml__Resources.ValidateAmiWorkflow.Data.yaml": ("TEST", "'ExecuteStateMachine' cannot run on Kiln"),
    "aws-cdk__packages_aws-cdk_aws-imagebuilder-alpha_test_assets_workflow-data.yaml": ("BUILD", None),
    "aws-cdk__packages_aws-cdk_aws-imagebuilder-alpha_test_workflow.test.ts__expected-Data-build-workflow.yaml": ("BUILD", None),
    "aws-cdk__packages_aws-cdk_aws-imagebuilder-alpha_test_workflow.test.ts__expected-Data-required-parameters.yaml": ("BUILD", None),
    "aws-cdk__packages_aws-cdk_aws-imagebuilder-alpha_test_workflow.test.ts__fromInline-string.yaml": ("BUILD", None),
    "terraform-provider-aws__internal_service_imagebuilder_image_test.go__testAccImageConfig_workflows.test_build.TF-template.yaml": ("BUILD", None),
    "terraform-provider-aws__internal_service_imagebuilder_image_test.go__testAccImageConfig_workflows.test_test.TF-template.yaml": ("TEST", None),
    "terraform-provider-aws__internal_service_imagebuilder_workflow_test.go__testAccWorkflowConfig_name.yaml": ("BUILD", None),
}

# A document tried as another type: the stage rule it breaks (None: it fits that type too).
AS_OTHER_TYPE: dict[tuple[str, str], str] = {
    ("gated-distribution", "BUILD"): "'DistributeImage' can only be used in DISTRIBUTION workflows",
    ("packer-build", "DISTRIBUTION"): "'ExecuteComponents' can only be used in BUILD and TEST workflows",
    ("test_build.TF-template", "DISTRIBUTION"): "'ExecuteComponents' can only be used in BUILD and TEST workflows",
    ("test_test.TF-template", "BUILD"): "'CollectImageScanFindings' can only be used in TEST workflows",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    srv = KilnServer(tmp_path_factory.mktemp("corpus") / "data").start()
    yield make_client(srv.endpoint)
    srv.stop_gracefully()


def create(client, data: str, kind: str) -> dict:
    return client.create_workflow(
        name=unique_name("corpus"), semanticVersion="1.0.0", type=kind, data=data
    )


def test_the_corpus_is_the_one_this_table_describes():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_corpus_document_is_accepted_or_refused_with_its_rule(client, name):
    kind, refusal = EXPECTED[name]
    data = (CORPUS / name).read_text()
    if refusal is None:
        arn = create(client, data, kind)["workflowBuildVersionArn"]
        workflow = client.get_workflow(workflowBuildVersionArn=arn)["workflow"]
        assert workflow["type"] == kind
        assert workflow["data"] == data
    else:
        assert_client_error(lambda: create(client, data, kind), "InvalidRequestException", refusal)


@pytest.mark.parametrize("fragment,kind", sorted(AS_OTHER_TYPE))
def test_corpus_documents_as_the_wrong_type_break_the_stage_rules(client, fragment, kind):
    [name] = [n for n in EXPECTED if fragment in n]
    data = (CORPUS / name).read_text()
    assert_client_error(
        lambda: create(client, data, kind), "InvalidRequestException", AS_OTHER_TYPE[(fragment, kind)]
    )


@pytest.mark.parametrize("action", ["ExecuteStateMachine", "RunSysPrep", "CreateImageFromIso"])
def test_actions_kiln_cannot_run_are_refused_unless_behind_an_if(client, action):
    always = f"""
name: cannot
schemaVersion: 1.0
steps:
  - name: Step
    action: {action}
"""
    assert_client_error(
        lambda: create(client, always, "BUILD"), "InvalidRequestException", f"'{action}' cannot run on Kiln"
    )
    # As in the managed build-image, whose RunSysPrep runs only on Windows.
    guarded = always + """    if:
      stringEquals: Windows
      value: "$.imagebuilder.platform"
"""
    assert create(client, guarded, "BUILD")["workflowBuildVersionArn"]
