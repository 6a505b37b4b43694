//! Runs the Linux component documents of tests/corpus (a copy of ../shared/corpus) that need no network, each in a fresh
//! throwaway root (an overlay of the host's `/`, see `support/rootfs.rs`), and checks the status
//! each ends in. Every Linux corpus document has an entry in [`PLANS`]: run it, skip it (with the
//! reason), or expect the engine to refuse it; a new corpus document fails
//! [`every_linux_corpus_document_has_a_plan`] until someone decides.
//!
//! The runs happen in a private network namespace with only `lo` (defence in depth: nothing a
//! document does can leave 127.0.0.1 even if a plan below is wrong). Build instances ship
//! `sudo`; when the host's root has none, the throwaway root gets a stand-in that just runs its
//! command (everything already runs as root).
//!
//! Needs root; without it the tests fail with a message rather than pass.

#[path = "support/rootfs.rs"]
mod rootfs;

use kiln_toe::engine::{Engine, EngineConfig, Outcome, Quiet, RunRequest, SourceDocument};
use kiln_toe::report::{ExecutionReport, Status};
use kiln_toe::target::LocalTarget;
use rootfs::{isolate_network, ThrowawayRoot};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Instant;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

/// How one corpus document is treated.
enum Plan {
    Run(Run),
    /// Not run, and why (network, AWS, another distribution, ...).
    Skip(&'static str),
    /// The engine must refuse the document before running anything (corpus_validate.rs names
    /// the rule it breaks).
    Rejected(&'static str),
}

struct Run {
    /// The execution's final status.
    expected: Status,
    /// With a `Failed` or `SuccessWithIgnoredFailure` expectation: the step whose failure it is.
    fails_at: Option<&'static str>,
    /// Document parameters. `$HTTP` is replaced with the base URL of a server on 127.0.0.1 that
    /// serves [`ARTIFACT`] at `/artifact`, `$SHA256` with the artifact's checksum.
    parameters: &'static [(&'static str, &'static str)],
    /// Values for `{{ aws:ssm:resolve(name) }}`.
    ssm: &'static [(&'static str, &'static str)],
    phases: Option<&'static [&'static str]>,
    /// Bash run inside the root before the document (files the sample expects to exist).
    setup: &'static str,
    /// Bash run inside the root after the document; must succeed.
    check: &'static str,
    /// Paths the document writes: they must be in the overlay's upper directory and not on
    /// the host.
    writes: &'static [&'static str],
    /// Programs the expectation relies on. When the root lacks one the document is not run
    /// (reported loudly, not silently passed).
    needs: &'static [&'static str],
}

const RUN: Run = Run {
    expected: Status::Success,
    fails_at: None,
    parameters: &[],
    ssm: &[],
    phases: None,
    setup: "",
    check: "",
    writes: &[],
    needs: &[],
};

const ARTIFACT: &[u8] = b"kiln corpus_run artifact\n";

use Plan::{Rejected, Skip};

const PLANS: &[(&str, Plan)] = &[
    ("amazon-ec2-image-builder-samples__CDK_Linux_hello-world_example-component_hello-world-component.yaml",
        Plan::Run(Run { check: "test -f ~/helloworld.txt", ..RUN })),
    ("amazon-ec2-image-builder-samples__CloudFormation_Docker_amazon-linux-2-with-helloworld_amazon-linux-2-container-image.yml__Resources.Component.Data.yaml",
        Plan::Run(RUN)),
    ("amazon-ec2-image-builder-samples__CloudFormation_Linux_amazon-linux-2023-attestable-image_base-template.yaml__Resources.KiwiNgComponent.Data.yaml",
        Skip("dnf install + git clone from GitHub + S3Download of the recipe + EBS/AMI calls (network, AWS, Amazon Linux 2023)")),
    ("amazon-ec2-image-builder-samples__Components_Linux_ansible-playbook-execution-amazon-linux-2_cloudformation.yml__Resources.AnsiblePlaybookSample.Data.yaml",
        Skip("amazon-linux-extras install (Amazon Linux 2, network) + S3Download of the playbook (AWS)")),
    ("amazon-ec2-image-builder-samples__Components_Linux_ansible-playbook-execution-amazon-linux-2_component.yaml",
        Skip("amazon-linux-extras install (Amazon Linux 2, network) + S3Download of the playbook (AWS)")),
    ("amazon-ec2-image-builder-samples__Components_Linux_chef-recipe-execution-linux_component.yaml",
        Skip("WebDownload of omnitruck.chef.io install script + S3Download of the recipe (network, AWS)")),
    ("amazon-ec2-image-builder-samples__Components_Linux_inspec-recipe-execution-linux_inspec-test-linux-component.yaml",
        Skip("WebDownload of omnitruck.chef.io + S3Download/S3Upload (network, AWS)")),
    ("amazon-ec2-image-builder-samples__Components_Linux_orca-security-scan-test-component-linux_test_component.yaml",
        Skip("S3Download of the scanner + Orca Security API (AWS, network)")),
    ("amazon-ec2-image-builder-samples__Components_Linux_wordpress-recipes-linux_install_wordpress.yaml",
        Skip("yum install (Amazon Linux 2) + wget wordpress.org (network)")),
    ("amazon-ec2-image-builder-samples__Components_Linux_wordpress-recipes-linux_install_wordpress_with_db.yaml",
        Skip("yum install (Amazon Linux 2) + wget/curl wordpress.org (network)")),
    ("amazon-ec2-image-builder-samples__Components_Linux_wordpress-recipes-linux_install_wordpress_with_db_pma.yaml",
        Skip("yum install (Amazon Linux 2) + wget wordpress.org/phpmyadmin.net (network)")),
    ("ec2-image-builder-user-guide__doc_source_manage-component-parameters.md__L23.yaml",
        Plan::Run(Run { parameters: &[("MyInputParameter", "set by corpus_run")], ..RUN })),
    ("ec2-image-builder-user-guide__doc_source_security-patch-management.md__L22.yaml",
        Skip("yum update (Amazon Linux / RHEL, network)")),
    // Exit code 194 asks for a reboot; LocalTarget's default answers Resumed, so the step
    // re-runs in the same process and finds its indicator file.
    ("ec2-image-builder-user-guide__doc_source_toe-action-modules.md__L48.yaml",
        Plan::Run(Run { check: "test ! -e /var/tmp/reboot-indicator", ..RUN })),
    ("ec2-image-builder-user-guide__doc_source_toe-get-started.md__L118.yaml",
        Plan::Run(RUN)),
    // The default host list includes amazon.com; the parameter points it at loopback only.
    ("ec2-image-builder-user-guide__doc_source_toe-user-defined-variables.md__L72.yaml",
        Plan::Run(Run { parameters: &[("Hosts", "127.0.0.1,localhost")], needs: &["ping"], ..RUN })),
    ("ec2-image-builder-user-guide__doc_source_toe-user-defined-variables.md__L195.yaml",
        Skip("pings amazon.com, fixed in a constant (internet)")),
    ("terraform-aws-ec2-image-builder__examples_linux_linuxbuild.yaml",
        Skip("S3Download of the scripts (AWS) + UpdateOS (network) + Reboot")),
    ("terraform-aws-ec2-image-builder__examples_linux_linuxtest.yaml",
        Skip("S3Download of the test scripts (AWS)")),
    ("build-and-deploy-docker-images-to-aws-using-ec2-image-builder__components_component.yaml",
        Plan::Run(RUN)),
    ("deploy-cis-level-1-hardened-ami-with-ec2-image-builder-pipeline__AnsibleConfig_component-nginx.yaml",
        Skip("amazon-linux-extras install (Amazon Linux 2, network) + S3Download of roles/playbooks (AWS)")),
    ("ec2-imagebuilder-ami-lifecycle__stacks_amilifecycle_resources_lambda_ami_lifecycle_app_ami_patch_samples_sample_component.yaml",
        Skip("yum update/install (Amazon Linux, network)")),
    ("ec2-imagebuilder-ami-lifecycle__stacks_imagebuilder_components_install_generic_component.yaml",
        Skip("yum update/install (Amazon Linux, network)")),
    ("ec2-imagebuilder-secure-proxy__stacks_secureproxy_components_mockservers_install_mock_servers.template.yaml",
        Skip("yum update + amazon-linux-extras + docker pulls (network, Amazon Linux 2)")),
    ("ec2-imagebuilder-secure-proxy__stacks_secureproxy_components_secureproxy_install_secure_proxy.template.yaml",
        Skip("yum install + curl nginx.org/github.com + pip + aws elbv2 + IMDS (network, AWS)")),
    ("aws-parallelcluster__cli_src_pcluster_resources_imagebuilder_custom_script.yaml",
        Skip("downloads the script with curl or `aws s3 cp` (network, AWS); a pcluster template")),
    ("aws-parallelcluster__cli_src_pcluster_resources_imagebuilder_parallelcluster.yaml",
        Skip("IMDS + curl of the Cinc installer and cookbook from S3 + yum/apt installs (network, AWS)")),
    ("aws-parallelcluster__cli_src_pcluster_resources_imagebuilder_parallelcluster_tag.yaml",
        Skip("IMDS + curl of the AWS CLI + aws ec2 create-tags (network, AWS)")),
    // Offline: its first steps read /etc/os-release and chain the answer; Debian is not a
    // ParallelCluster OS, so it stops there, before checks of what the pcluster build installs.
    ("aws-parallelcluster__cli_src_pcluster_resources_imagebuilder_parallelcluster_test.yaml",
        Plan::Run(Run { expected: Status::Failed, fails_at: Some("OperatingSystemName"), ..RUN })),
    ("aws-parallelcluster__cli_src_pcluster_resources_imagebuilder_parallelcluster_validate.yaml",
        Skip("curls IMDS (169.254.169.254) for the region and checks what the pcluster build installed (network, AWS)")),
    ("aws-parallelcluster__cli_src_pcluster_resources_imagebuilder_update_and_reboot.yaml",
        Skip("yum/apt upgrade (network) + reboot")),
    ("terraform-aws-imagebuilder__example_examplea_component.yaml",
        Rejected("phases must be a non-empty list")),
    ("aws-ec2-imagebuilder__modules_imagebuilder_components_tailscale-build.yaml",
        Skip("curl tailscale.com/install.sh | sh + apt install (network)")),
    ("aws-ec2-imagebuilder__modules_imagebuilder_components_tailscale-test.yaml",
        Skip("checks `tailscale version`, which only tailscale-build installs from the network")),
    // AWS docs samples with placeholder paths: the setup creates what they point at.
    ("aws_imagebuilder_component__test_file-and-folder-permissions.yaml",
        Plan::Run(Run {
            setup: "mkdir -p /home/UserName/SampleFolder/sub /SampleFolder/sub && echo x > /home/UserName/SampleFile.txt && touch /SampleFolder/sub/f /home/UserName/SampleFolder/sub/f",
            check: "test $(stat -c %a /home/UserName/SampleFile.txt) = 766 && test $(stat -c %a /SampleFolder) = 777 && test $(stat -c %a /SampleFolder/sub/f) = 777 && test $(stat -c %a /home/UserName/SampleFolder) = 777 && test $(stat -c %a /home/UserName/SampleFolder/sub) != 777",
            writes: &["/home/UserName/SampleFile.txt", "/SampleFolder"],
            ..RUN
        })),
    ("aws_imagebuilder_component__test_read-file.yaml",
        Plan::Run(Run {
            setup: "mkdir -p /home/UserName /FolderName && echo 'hello from corpus_run' > /home/UserName/SampleFile.txt && printf 'utf32 text' | iconv -f UTF-8 -t UTF-32 > /FolderName/SampleFile.txt",
            needs: &["iconv"],
            ..RUN
        })),
    ("aws_imagebuilder_component__test_set-file-encoding.yaml",
        Rejected("step names are unique in a phase")),
    // Owner and group names must be resolved inside the root, where the setup creates them.
    ("aws_imagebuilder_component__test_set-file-owner.yaml",
        Plan::Run(Run {
            setup: "groupadd LinuxUserGroup && useradd -M -g LinuxUserGroup LinuxUser && mkdir -p /home/UserName && echo x > /home/UserName/SampleText.txt",
            check: "test \"$(stat -c %U:%G /home/UserName/SampleText.txt)\" = LinuxUser:LinuxUserGroup",
            needs: &["useradd", "groupadd"],
            ..RUN
        })),
    ("aws_imagebuilder_component__test_test.yaml",
        Rejected("names are unique across parameters and constants")),
    ("aws-cdk-golden-ami-pipeline__components_build1.yaml",
        Plan::Run(Run { check: "grep -qx First ~/test.txt", ..RUN })),
    ("aws-cdk-golden-ami-pipeline__components_build2.yaml",
        Plan::Run(Run { check: "grep -qx Second ~/test.txt", ..RUN })),
    // The test components read the file the build components (offline) write.
    ("aws-cdk-golden-ami-pipeline__components_customtest.yaml",
        Plan::Run(Run { setup: "echo First > ~/test.txt", ..RUN })),
    ("aws-cdk-golden-ami-pipeline__components_test1.yaml",
        Plan::Run(Run { setup: "echo First > ~/test.txt", ..RUN })),
    ("amazon-ec2-image-builder-samples__Cdk_image-builder-components_hello-world-component.yaml",
        Plan::Run(Run { check: "test -f ~/helloworld.txt", ..RUN })),
    ("amazon-ec2-image-builder-samples__CloudFormation_EC2_Image_Builder_Blog_Post_ib_builder.yaml__Resources.InstallNET5Component.Data.yaml",
        Skip("WebDownload of aka.ms/install-dotnet-preview and the .NET install (network)")),
    ("amazon-ec2-image-builder-samples__CloudFormation_Linux_ubuntu-with-net5-preview_ubuntuserver20-with-.net5.yml__Resources.InstallNET5Component.Data.yaml",
        Skip("WebDownload of aka.ms/install-dotnet-preview and the .NET install (network)")),
    // With unzip present both install steps are skipped by their `if` (no apt-get update).
    ("amazon-ec2-image-builder-samples__awstoe_cookbook_conditional-install.yaml",
        Plan::Run(Run { needs: &["unzip"], ..RUN })),
    ("amazon-ec2-image-builder-samples__awstoe_cookbook_foreach-install.yaml",
        Skip("dnf install + rpm -q (Amazon Linux/RHEL, network)")),
    ("amazon-ec2-image-builder-samples__awstoe_cookbook_reboot-and-resume.yaml",
        Plan::Run(Run { check: "test ! -e /var/tmp/reboot-indicator", ..RUN })),
    ("amazon-ec2-image-builder-samples__awstoe_cookbook_secrets-at-build-time.yaml",
        Plan::Run(Run { ssm: &[("/cookbook/build-secret", "s3cr3t 'with' $pecial \"chars\"")], ..RUN })),
    // `rpm -q htop` fails (no rpm, or no htop): onFailure Ignore.
    ("amazon-ec2-image-builder-samples__awstoe_cookbook_tolerated-failure.yaml",
        Plan::Run(Run { expected: Status::SuccessWithIgnoredFailure, fails_at: Some("OptionalCheck"), ..RUN })),
    // Downloads from a server on 127.0.0.1 and verifies the checksum.
    ("amazon-ec2-image-builder-samples__awstoe_cookbook_web-download-verified.yaml",
        Plan::Run(Run {
            parameters: &[("source", "$HTTP/artifact"), ("sha256", "$SHA256")],
            check: "test -s /tmp/downloaded-artifact",
            writes: &["/tmp/downloaded-artifact"],
            ..RUN
        })),
    ("amazon-ec2-image-builder-samples__workflows_approval-gate_approval-gate.yml__Resources.BuildInfoComponent.Data.yaml",
        Plan::Run(Run { writes: &["/opt/approval-gate/build-info.txt"], ..RUN })),
    ("amazon-ec2-image-builder-samples__workflows_gated-distribution_gated-distribution.yml__Resources.BuildInfoComponent.Data.yaml",
        Plan::Run(Run { writes: &["/opt/gated-distribution/build-info.txt"], ..RUN })),
    ("amazon-ec2-image-builder-samples__CloudFormation_Docker_ubuntu-dotnet-web-application_ubuntu-dotnet-web-application-pipeline.yml__Resources.Component.Data.FnSub-template.yaml",
        Skip("S3Download of the website tarball (AWS; the source is a CloudFormation ${} placeholder)")),
    ("amazon-ec2-image-builder-samples__workflows_packer-build_packer-build.yml__Resources.InstallPackerComponent.Data.yaml",
        Skip("curl releases.hashicorp.com + dnf install (network)")),
    ("amazon-ec2-image-builder-samples__workflows_packer-build_packer-build.yml__Resources.RunPackerComponent.Data.yaml",
        Skip("S3Download + IMDS + packer build + aws ec2 (network, AWS)")),
    ("amazon-ec2-image-builder-samples__workflows_packer-build_packer-build.yml__Resources.VerifyPackerImageComponent.Data.yaml",
        Skip("checks /etc/packer-built.txt, which only the Packer build (S3, AWS) creates")),
    ("amazon-ec2-image-builder-samples__workflows_step-functions-integration_step-functions-integration.yml__Resources.BuildInfoComponent.Data.yaml",
        Plan::Run(Run { writes: &["/opt/sfn-integration/build-info.txt"], ..RUN })),
    ("amazon-ec2-image-builder-samples__debugging_debugging.yml__Resources.InstallComponent.Data.yaml",
        Skip("dnf install + rpm -q (Amazon Linux/RHEL, network)")),
    // build installs with dnf and validate asks rpm (network, RHEL family); the test phase only
    // needs jq, which the Debian root has.
    ("amazon-ec2-image-builder-samples__containers_cloudformation_container-pipeline.yml__Resources.BaselineComponent.Data.yaml",
        Plan::Run(Run { phases: Some(&["test"]), needs: &["jq"], ..RUN })),
    ("amazon-ec2-image-builder-samples__Terraform_cross-account-amis_source-account_components_build-info.yaml",
        Plan::Run(Run { writes: &["/etc/cross-account-sample-release"], ..RUN })),
    ("amazon-ec2-image-builder-samples__quick-start_cloudformation_quick-start.yml__Resources.BuildInfoComponent.Data.yaml",
        Plan::Run(Run { writes: &["/opt/quick-start/build-info.txt"], ..RUN })),
    ("amazon-ec2-image-builder-samples__networking_private-vpc-builds_cloudformation_private-vpc-build.yml__Resources.RepoInstallComponent.Data.yaml",
        Skip("dnf install httpd (Amazon Linux 2023, network)")),
    ("agent-toolkit-for-aws__skills_specialized-skills_ec2-skills_creating-ec2-image-builder-pipeline_references_ec2-image-builder-pipeline.md__L108.yaml",
        Skip("curl of the AWS CLI installer from awscli.amazonaws.com (network)")),
    // The test phase downloads from download.com (network); build and validate are offline.
    ("aws-cdk__packages_aws-cdk_aws-imagebuilder-alpha_test_component.test.ts__expected-Data-all-parameters.yaml",
        Plan::Run(Run { phases: Some(&["build", "validate"]), ..RUN })),
    ("aws-cdk__packages_aws-cdk_aws-imagebuilder-alpha_test_component.test.ts__expected-Data-required-parameters.yaml",
        Plan::Run(RUN)),
];

/// The Linux component documents of the corpus: (base file name, text).
fn linux_documents() -> Vec<(String, String)> {
    let sources = std::fs::read_to_string(corpus().join("SOURCES.tsv")).expect("SOURCES.tsv");
    sources
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols.len() >= 7 && cols[5] == "component" && cols[6] == "Linux").then(|| {
                let text = std::fs::read_to_string(corpus().join(cols[0])).expect(cols[0]);
                (cols[0].trim_start_matches("components/").to_string(), text)
            })
        })
        .collect()
}

#[test]
fn every_linux_corpus_document_has_a_plan() {
    let docs = linux_documents();
    assert_eq!(
        docs.len(),
        67,
        "the corpus has 67 Linux component documents"
    );
    let missing: Vec<&str> = docs
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !PLANS.iter().any(|(p, _)| p == n))
        .collect();
    assert!(
        missing.is_empty(),
        "corpus documents without a plan in corpus_run.rs (decide: run, skip or rejected):\n{}",
        missing.join("\n")
    );
    let stale: Vec<&str> = PLANS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !docs.iter().any(|(n, _)| n == p))
        .collect();
    assert!(stale.is_empty(), "plans for no corpus document: {stale:?}");
    let mut names: Vec<&str> = PLANS.iter().map(|(p, _)| *p).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), PLANS.len(), "a document is planned twice");
    for (name, plan) in PLANS {
        match plan {
            Plan::Skip(reason) | Plan::Rejected(reason) => {
                assert!(!reason.is_empty(), "{name}: give a reason")
            }
            Plan::Run(run) => assert_eq!(
                run.fails_at.is_some(),
                run.expected != Status::Success,
                "{name}: name the failing step exactly when the run is expected not to succeed"
            ),
        }
    }
}

/// A one-connection-at-a-time HTTP server on 127.0.0.1 that answers every GET of `/artifact`
/// with [`ARTIFACT`] and anything else with 404. It lives for the rest of the process.
fn serve_artifact() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut out = &stream;
            let found = request_line.starts_with("GET /artifact ");
            let (status, body) = if found {
                ("200 OK", ARTIFACT)
            } else {
                ("404 Not Found", &b"not found\n"[..])
            };
            let _ = write!(
                out,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = out.write_all(body);
        }
    });
    format!("http://{addr}")
}

const SUDO_STAND_IN: &str = r#"#!/bin/sh
# corpus_run: stand-in for sudo in a throwaway root (everything already runs as root).
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -u|-g|-C|-D|-h|-p|-r|-t|-U) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
exec "$@"
"#;

fn provide_sudo(root: &ThrowawayRoot) {
    if !root.has_binary("sudo") {
        let path = root.host_path("/usr/local/bin/sudo");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, SUDO_STAND_IN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn substitute(value: &str, http: &str) -> String {
    let sha = Sha256::digest(ARTIFACT);
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    value.replace("$HTTP", http).replace("$SHA256", &hex)
}

/// Runs one document in a fresh throwaway root; `Err` says what went wrong.
fn run_one(name: &str, text: &str, run: &Run, http: &str) -> Result<(), String> {
    let root = ThrowawayRoot::new();
    provide_sudo(&root);
    if !run.setup.is_empty() {
        root.sh(run.setup);
    }
    let config = EngineConfig {
        ssm_parameters: run
            .ssm
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..EngineConfig::default()
    };
    let target = LocalTarget::chroot(root.path());
    let scratch = root.scratch();
    let request = RunRequest {
        documents: vec![SourceDocument {
            name: name.to_string(),
            text: text.to_string(),
            parameters: run
                .parameters
                .iter()
                .map(|(k, v)| (k.to_string(), substitute(v, http)))
                .collect(),
        }],
        phases: run
            .phases
            .map(|p| p.iter().map(|s| s.to_string()).collect()),
        parameters: Vec::new(),
        execution_id: None,
        log_directory: scratch.join("logs"),
        state_directory: Some(scratch.join("state")),
    };
    let report = match Engine::new(&target, &config, &Quiet).run(request) {
        Ok(Outcome::Finished(r)) => r,
        other => return Err(format!("expected a finished run, got {other:?}")),
    };
    if report.status != run.expected {
        return Err(format!(
            "ended {} (expected {}): {}",
            report.status.name(),
            run.expected.name(),
            describe(&report)
        ));
    }
    let bad_steps: Vec<&str> = report
        .documents
        .iter()
        .flat_map(|d| &d.phases)
        .flat_map(|p| &p.steps)
        .filter(|s| matches!(s.status, Status::Failed | Status::IgnoredFailure))
        .map(|s| s.name.as_str())
        .collect();
    let want: Vec<&str> = run.fails_at.into_iter().collect();
    if bad_steps != want {
        return Err(format!(
            "failed steps {bad_steps:?}, expected {want:?}: {}",
            describe(&report)
        ));
    }
    if !run.check.is_empty() {
        let out = std::process::Command::new("chroot")
            .arg(root.path())
            .args(["/bin/bash", "-c", run.check])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "check `{}` failed: {}",
                run.check,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    // A resolved SSM value never reaches the logs (nor the report written there).
    for (name, value) in run.ssm {
        if let Some(file) = files_containing(&scratch.join("logs"), value) {
            return Err(format!(
                "the value of SSM parameter {name} is in the log file {}",
                file.display()
            ));
        }
    }
    for path in run.writes {
        let rel = path.trim_start_matches('/');
        if !root.upper().join(rel).exists() {
            return Err(format!("{path} is not in the overlay's upper directory"));
        }
        if std::path::Path::new(path).exists() {
            return Err(format!(
                "{path} exists on the host: the run escaped its root"
            ));
        }
    }
    Ok(())
}

/// The first file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = files_containing(&path, needle) {
                return Some(found);
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Some(path);
            }
        }
    }
    None
}

fn describe(report: &ExecutionReport) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &report.failure_message {
        parts.push(m.clone());
    }
    for d in &report.documents {
        for p in &d.phases {
            for s in &p.steps {
                parts.push(format!(
                    "{}/{} {} {}",
                    p.name,
                    s.name,
                    s.status.name(),
                    s.failure_message.as_deref().unwrap_or("")
                ));
            }
        }
    }
    parts.join(" | ")
}

#[test]
fn runnable_linux_corpus_documents_end_as_expected_in_a_throwaway_root() {
    rootfs::require_root("corpus_run");
    isolate_network();
    let http = serve_artifact();
    let docs = linux_documents();
    let mut failures = Vec::new();
    let mut not_run = Vec::new();
    let (mut ran, mut skipped, mut rejected) = (0, 0, 0);
    let started = Instant::now();
    for (name, text) in &docs {
        let Some((_, plan)) = PLANS.iter().find(|(p, _)| p == name) else {
            continue; // every_linux_corpus_document_has_a_plan reports it
        };
        match plan {
            Plan::Skip(_) => skipped += 1,
            Plan::Rejected(rule) => {
                rejected += 1;
                let config = EngineConfig::default();
                let target = LocalTarget::host();
                let request = RunRequest {
                    documents: vec![SourceDocument {
                        name: name.clone(),
                        text: text.clone(),
                        parameters: Vec::new(),
                    }],
                    phases: None,
                    parameters: Vec::new(),
                    execution_id: None,
                    log_directory: std::env::temp_dir().join("kiln-corpus-run-unused"),
                    state_directory: None,
                };
                match Engine::new(&target, &config, &Quiet).validate(&request) {
                    Err(e) if e.to_string().contains(rule) => {}
                    other => failures.push(format!(
                        "{name}: expected rejection `{rule}`, got {other:?}"
                    )),
                }
            }
            Plan::Run(run) => {
                let probe = ThrowawayRoot::new();
                let missing: Vec<&str> = run
                    .needs
                    .iter()
                    .copied()
                    .filter(|b| !probe.has_binary(b))
                    .collect();
                drop(probe);
                if !missing.is_empty() {
                    not_run.push(format!("{name}: the root lacks {missing:?}"));
                    continue;
                }
                ran += 1;
                let t = Instant::now();
                let result = run_one(name, text, run, &http);
                eprintln!(
                    "{:>6} ms  {:<8} {name}",
                    t.elapsed().as_millis(),
                    if result.is_ok() { "ok" } else { "FAILED" }
                );
                if let Err(e) = result {
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
    }
    eprintln!(
        "corpus_run: {ran} run, {skipped} skipped, {rejected} rejected, {} not run for missing programs, in {:?}",
        not_run.len(),
        started.elapsed()
    );
    for n in &not_run {
        eprintln!("NOT RUN (environment): {n}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ran > 0, "nothing ran");
}

/// File actions stay in the root whatever the document writes: `..` past the root, and a
/// symlink planted by a command pointing at `/etc`.
#[test]
fn engine_file_actions_stay_inside_the_throwaway_root() {
    isolate_network();
    let root = ThrowawayRoot::new();
    let host_files = [
        "/etc/kiln-escape-test",
        "/etc/kiln-escape-test2",
        "/etc/kiln-escape-test3",
        "/etc/kiln-escape-test4",
    ];
    for f in host_files {
        assert!(
            !std::path::Path::new(f).exists(),
            "{f} already exists on the host; remove it first"
        );
    }
    let doc = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: DotDot
        action: CreateFile
        inputs:
          - path: /../../etc/kiln-escape-test
            content: dotdot
      - name: PlantLinkWithBash
        action: ExecuteBash
        inputs:
          commands:
            - ln -s /etc /tmp/esc
      - name: ThroughBashLink
        action: CreateFile
        inputs:
          - path: /tmp/esc/kiln-escape-test2
            content: bash-link
      - name: PlantLinkWithAction
        action: CreateSymlink
        inputs:
          - path: /tmp/esc2
            target: /../../../etc
      - name: ThroughActionLink
        action: CreateFile
        inputs:
          - path: /tmp/esc2/kiln-escape-test3
            content: action-link
      - name: PlantRelativeLinkWithBash
        action: ExecuteBash
        inputs:
          commands:
            - mkdir -p /tmp/a/b && ln -s ../../../../../../../etc /tmp/a/b/esc3 && echo copy > /tmp/src
      - name: CopyThroughRelativeLink
        action: CopyFile
        inputs:
          - source: /tmp/src
            destination: /tmp/a/b/esc3/kiln-escape-test4
"#;
    let scratch = root.scratch();
    let config = EngineConfig::default();
    let target = LocalTarget::chroot(root.path());
    let request = RunRequest {
        documents: vec![SourceDocument {
            name: "escape.yaml".into(),
            text: doc.into(),
            parameters: Vec::new(),
        }],
        phases: None,
        parameters: Vec::new(),
        execution_id: None,
        log_directory: scratch.join("logs"),
        state_directory: None,
    };
    let report = match Engine::new(&target, &config, &Quiet).run(request) {
        Ok(Outcome::Finished(r)) => r,
        other => panic!("expected a finished run, got {other:?}"),
    };
    for f in host_files {
        assert!(
            !std::path::Path::new(f).exists(),
            "{f} was written on the host: the engine escaped its root"
        );
    }
    assert_eq!(report.status, Status::Success, "{}", describe(&report));
    for (f, content) in host_files
        .iter()
        .zip(["dotdot", "bash-link", "action-link", "copy\n"])
    {
        let in_upper = root.upper().join(f.trim_start_matches('/'));
        assert_eq!(
            std::fs::read_to_string(&in_upper).ok().as_deref(),
            Some(content),
            "{} should hold the file",
            in_upper.display()
        );
    }
    // The planted links are real links inside the root.
    assert!(std::fs::symlink_metadata(root.upper().join("tmp/esc"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::symlink_metadata(root.upper().join("tmp/esc2"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// UpdateOS end to end in a throwaway root, with package managers that only record how they
/// were called (a real upgrade would need the network): include minus exclude, holds around a
/// full upgrade with excludes, and dnf when there is no apt-get.
#[test]
fn update_os_drives_the_package_manager_of_the_root() {
    isolate_network();
    let root = ThrowawayRoot::new();
    let recorder = "#!/bin/sh\necho \"$(basename $0) $*\" >> /var/log/pm-calls\n";
    for pm in ["apt-get", "apt-mark", "dnf"] {
        let path = root.host_path(&format!("/usr/local/sbin/{pm}"));
        std::fs::write(&path, recorder).expect("write stand-in");
        std::process::Command::new("chmod")
            .args(["755", &path.display().to_string()])
            .status()
            .expect("chmod");
    }
    let run = |doc: &str| {
        let config = EngineConfig::default();
        let target = LocalTarget::chroot(root.path());
        let request = RunRequest {
            documents: vec![SourceDocument {
                name: "update.yaml".into(),
                text: doc.into(),
                parameters: Vec::new(),
            }],
            phases: None,
            parameters: Vec::new(),
            execution_id: None,
            log_directory: root.scratch().join("logs"),
            state_directory: None,
        };
        match Engine::new(&target, &config, &Quiet).run(request) {
            Ok(Outcome::Finished(r)) => r,
            other => panic!("expected a finished run, got {other:?}"),
        }
    };
    let calls = || {
        let text = std::fs::read_to_string(root.host_path("/var/log/pm-calls")).unwrap_or_default();
        std::fs::remove_file(root.host_path("/var/log/pm-calls")).ok();
        text
    };
    let doc = |inputs: &str| {
        format!("schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Update\n        action: UpdateOS\n{inputs}")
    };

    let report = run(&doc(""));
    assert_eq!(report.status, Status::Success, "{}", describe(&report));
    let all = calls();
    assert!(all.starts_with("apt-get update"), "{all}");
    assert!(
        all.contains("apt-get -y") && all.contains(" upgrade"),
        "{all}"
    );

    let report = run(&doc(
        "        inputs:\n          include: [curl, bash]\n          exclude: [bash]\n",
    ));
    assert_eq!(report.status, Status::Success, "{}", describe(&report));
    let some = calls();
    assert!(some.contains("install --only-upgrade curl"), "{some}");
    assert!(!some.contains("bash"), "{some}");

    let report = run(&doc(
        "        inputs:\n          exclude: [linux-image-amd64]\n",
    ));
    assert_eq!(report.status, Status::Success, "{}", describe(&report));
    let held = calls();
    let hold = held.find("apt-mark hold linux-image-amd64").expect(&held);
    let upgrade = held.find(" upgrade").expect(&held);
    let unhold = held.find("apt-mark unhold linux-image-amd64").expect(&held);
    assert!(hold < upgrade && upgrade < unhold, "{held}");

    // Without apt-get the root's dnf is used. (Removing the root's apt-get leaves a whiteout in
    // the overlay; the host keeps its own.)
    for hidden in ["/usr/local/sbin/apt-get", "/usr/bin/apt-get"] {
        std::fs::remove_file(root.host_path(hidden)).expect("remove apt-get from the root");
    }
    let report = run(&doc(
        "        inputs:\n          include: [curl]\n          exclude: [kernel]\n",
    ));
    assert_eq!(report.status, Status::Success, "{}", describe(&report));
    let dnf = calls();
    assert!(
        dnf.starts_with("dnf -y update curl --exclude=kernel"),
        "{dnf}"
    );
}
