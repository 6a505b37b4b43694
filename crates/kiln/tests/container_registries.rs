//! Container images pushed to the registries that stand in for ECR (`--ecr-registry`): a
//! container pipeline with a distribution configuration pushes to every Region's repository
//! with its tags, a container image without one goes to its recipe's `targetRepository` in
//! the build's Region, `outputResources.containers` names what was pushed (by tag and by
//! digest) and every URI pulls back with the image's own digest; a Region without a registry
//! is refused up front by CreateImage, or fails the build in the distribute stage, naming the
//! Region and the flag; a TLS registry with a password is reached with `--ecr-registry-ca` and
//! `--ecr-auth-file`, and wrong credentials fail the build naming it; bad flag values stop Kiln
//! before it starts.
//!
//! Real builds and one `docker-registry` on 127.0.0.1: runs as root with `docker-registry` and
//! `skopeo` installed, and skips with a message otherwise.

mod common;

use aws_sdk_imagebuilder::types::{
    ComponentConfiguration, ContainerDistributionConfiguration, ContainerRepositoryService,
    ContainerType, Distribution, ImageTestsConfiguration, Platform, TargetContainerRepository,
};
use aws_sdk_imagebuilder::Client;
use common::registry::{missing_prerequisite, Registry, RegistryOptions, TlsAuth};
use common::{error_code, error_message, status_and_reason, wait_final, Server, BUSYBOX};
use std::process::Command;
use std::time::{Duration, Instant};

const DOCKERFILE: &str = "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}\n";

async fn infrastructure(client: &Client) -> String {
    common::create_infra(client, "infra").await
}

/// A container recipe on busybox with one build component; `repository` is its
/// targetRepository.
async fn container_recipe(client: &Client, name: &str, repository: &str) -> String {
    let component = client
        .create_component()
        .name(format!("{name}-component"))
        .semantic_version("1.0.0")
        .platform(Platform::Linux)
        .data("schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Run\n        action: ExecuteBash\n        inputs:\n          commands:\n            - echo pushed > /pushed.txt\n")
        .send()
        .await
        .expect("CreateComponent")
        .component_build_version_arn
        .expect("a component ARN");
    client
        .create_container_recipe()
        .container_type(ContainerType::Docker)
        .name(name)
        .semantic_version("1.0.0")
        .parent_image(BUSYBOX)
        .components(
            ComponentConfiguration::builder()
                .component_arn(component)
                .build()
                .expect("a component configuration"),
        )
        .dockerfile_template_data(DOCKERFILE)
        .target_repository(repository_of(repository))
        .send()
        .await
        .expect("CreateContainerRecipe")
        .container_recipe_arn
        .expect("a recipe ARN")
}

fn repository_of(name: &str) -> TargetContainerRepository {
    TargetContainerRepository::builder()
        .service(ContainerRepositoryService::Ecr)
        .repository_name(name)
        .build()
        .expect("a target repository")
}

/// A distribution entry that pushes to `repository` in `region` with `tags`.
fn container_entry(region: &str, repository: &str, tags: &[&str]) -> Distribution {
    let mut c =
        ContainerDistributionConfiguration::builder().target_repository(repository_of(repository));
    for tag in tags {
        c = c.container_tags(*tag);
    }
    Distribution::builder()
        .region(region)
        .container_distribution_configuration(c.build())
        .build()
        .expect("a distribution")
}

async fn distribution(client: &Client, name: &str, entries: Vec<Distribution>) -> String {
    client
        .create_distribution_configuration()
        .name(name)
        .set_distributions(Some(entries))
        .send()
        .await
        .expect("CreateDistributionConfiguration")
        .distribution_configuration_arn
        .expect("a distribution ARN")
}

fn no_tests() -> ImageTestsConfiguration {
    ImageTestsConfiguration::builder()
        .image_tests_enabled(false)
        .build()
}

/// `outputResources.containers` as (Region, URIs).
fn containers(image: &aws_sdk_imagebuilder::types::Image) -> Vec<(String, Vec<String>)> {
    image
        .output_resources()
        .map(|o| o.containers())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c.region().unwrap_or_default().to_string(),
                c.image_uris().to_vec(),
            )
        })
        .collect()
}

/// The manifest digest the registry answers for `uri` (a tag or a digest reference).
fn registry_digest(uri: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{uri}"))
        .output()
        .expect("running skopeo inspect");
    assert!(
        out.status.success(),
        "skopeo inspect {uri}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("a stdin")
                .write_all(&out.stdout)?;
            child.wait_with_output()
        })
        .expect("running sha256sum");
    let hex = String::from_utf8_lossy(&digest.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    format!("sha256:{hex}")
}

/// How many blobs (config and layers) the manifest at `uri` names.
fn manifest_blobs(uri: &str) -> usize {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{uri}"))
        .output()
        .expect("running skopeo inspect");
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a manifest");
    1 + manifest["layers"].as_array().map_or(0, Vec::len)
}

/// The digest of the image a build stored locally (`kiln-<build id>` in the data directory's
/// OCI layout): the image's own.
fn local_digest(server: &Server, arn: &str) -> String {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(server.data_dir().join("images/index.json"))
            .expect("the image store's index"),
    )
    .expect("an OCI index");
    let logs = std::fs::read_dir(server.data_dir().join("logs")).expect("the logs directory");
    // The build whose log names the image.
    let build_id = logs
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_to_string(e.path().join("build.log")).is_ok_and(|l| l.contains(arn))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("the build's log");
    let tag = format!("kiln-{build_id}");
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .and_then(|m| m["digest"].as_str())
        .map(str::to_string)
        .expect("the image in the store")
}

/// The build log of `arn` on `server`.
fn build_log(server: &Server, arn: &str) -> String {
    std::fs::read_dir(server.data_dir().join("logs"))
        .expect("the logs directory")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("build.log")).ok())
        .find(|l| l.contains(arn))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn container_images_go_where_their_distribution_or_recipe_says() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipped: {why}");
        return;
    }
    let registry = Registry::start(&RegistryOptions {
        request_log: true,
        ..RegistryOptions::default()
    });
    let host = registry.host_port();
    // Two Regions on one registry: us-east-1 at its root, us-west-2 under a prefix.
    let east = format!("us-east-1={host}");
    let west = format!("us-west-2={host}/west");
    let server = Server::start_with_args("", &["--ecr-registry", &east, "--ecr-registry", &west]);
    let client = server.client();
    let infra = infrastructure(&client).await;
    let recipe = container_recipe(&client, "pushed", "recipe-repo").await;
    let dist = distribution(
        &client,
        "two-regions",
        vec![
            container_entry("us-east-1", "team/east-app", &["latest", "east"]),
            container_entry("us-west-2", "west-app", &["west"]),
        ],
    )
    .await;
    let pipeline = client
        .create_image_pipeline()
        .name("containers")
        .container_recipe_arn(&recipe)
        .infrastructure_configuration_arn(&infra)
        .distribution_configuration_arn(&dist)
        .image_tests_configuration(no_tests())
        .send()
        .await
        .expect("CreateImagePipeline")
        .image_pipeline_arn
        .expect("a pipeline ARN");
    let arn = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&pipeline)
        .send()
        .await
        .expect("StartImagePipelineExecution")
        .image_build_version_arn
        .expect("an image ARN");
    let image = wait_final(&client, &arn).await;
    let (status, reason) = status_and_reason(&image);
    assert_eq!(
        status,
        "AVAILABLE",
        "{reason}\n{}",
        build_log(&server, &arn)
    );
    let digest = local_digest(&server, &arn);
    assert_eq!(
        containers(&image),
        vec![
            (
                "us-east-1".to_string(),
                vec![
                    format!("{host}/team/east-app:1.0.0-1"),
                    format!("{host}/team/east-app:latest"),
                    format!("{host}/team/east-app:east"),
                    format!("{host}/team/east-app@{digest}"),
                ]
            ),
            (
                "us-west-2".to_string(),
                vec![
                    format!("{host}/west/west-app:1.0.0-1"),
                    format!("{host}/west/west-app:west"),
                    format!("{host}/west/west-app@{digest}"),
                ]
            ),
        ]
    );
    // Every URI pulls back as the image Kiln built.
    for (_, uris) in containers(&image) {
        for uri in uris {
            assert_eq!(registry_digest(&uri), digest, "{uri}");
        }
    }
    // The lists show the same outputs.
    let listed = client
        .list_image_pipeline_images()
        .image_pipeline_arn(&pipeline)
        .send()
        .await
        .expect("ListImagePipelineImages");
    let summary = listed.image_summary_list().first().expect("the image");
    let summary_containers: Vec<(String, Vec<String>)> = summary
        .output_resources()
        .map(|o| o.containers())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c.region().unwrap_or_default().to_string(),
                c.image_uris().to_vec(),
            )
        })
        .collect();
    assert_eq!(summary_containers, containers(&image));
    let log = build_log(&server, &arn);
    assert!(
        log.contains(&format!("pushing to {host}/team/east-app in us-east-1")),
        "{log}"
    );
    // Each blob went up once per repository at most, whatever the number of tags: the
    // copies after the first found them all in the registry.
    let requests = registry.requests();
    let blobs = manifest_blobs(&format!("{host}/team/east-app@{digest}"));
    for repository in ["team/east-app", "west/west-app"] {
        let uploads = requests
            .iter()
            .filter(|r| r.starts_with(&format!("POST /v2/{repository}/blobs/uploads/")))
            .count();
        let manifests = requests
            .iter()
            .filter(|r| r.starts_with(&format!("PUT /v2/{repository}/manifests/")))
            .count();
        assert!(
            (1..=blobs).contains(&uploads),
            "{repository}: {uploads} uploads for {blobs} blobs: {requests:#?}"
        );
        let tags = if repository == "team/east-app" { 3 } else { 2 };
        assert_eq!(manifests, tags, "{repository}: {requests:#?}");
    }

    // A second build of the pipeline: its own default tag, the shared tags move to it.
    let second = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&pipeline)
        .send()
        .await
        .expect("StartImagePipelineExecution")
        .image_build_version_arn
        .expect("an image ARN");
    let image = wait_final(&client, &second).await;
    let (status, reason) = status_and_reason(&image);
    assert_eq!(status, "AVAILABLE", "{reason}");
    let second_digest = local_digest(&server, &second);
    assert_eq!(
        registry_digest(&format!("{host}/team/east-app:1.0.0-2")),
        second_digest
    );
    assert_eq!(
        registry_digest(&format!("{host}/team/east-app:latest")),
        second_digest
    );
    assert_eq!(
        registry_digest(&format!("{host}/team/east-app:1.0.0-1")),
        digest,
        "the first build's tag still names the first image"
    );

    // Without a distribution configuration: the recipe's targetRepository, in the Region of
    // the build.
    let arn = client
        .create_image()
        .container_recipe_arn(&recipe)
        .infrastructure_configuration_arn(&infra)
        .image_tests_configuration(no_tests())
        .send()
        .await
        .expect("CreateImage")
        .image_build_version_arn
        .expect("an image ARN");
    let image = wait_final(&client, &arn).await;
    let (status, reason) = status_and_reason(&image);
    assert_eq!(status, "AVAILABLE", "{reason}");
    let digest = local_digest(&server, &arn);
    assert_eq!(
        containers(&image),
        vec![(
            "us-east-1".to_string(),
            vec![
                format!("{host}/recipe-repo:1.0.0-3"),
                format!("{host}/recipe-repo@{digest}"),
            ]
        )]
    );
    assert_eq!(
        registry_digest(&format!("{host}/recipe-repo:1.0.0-3")),
        digest
    );
    // DeleteImage deletes the Image Builder image, not what it pushed (as AWS leaves ECR).
    client
        .delete_image()
        .image_build_version_arn(&arn)
        .send()
        .await
        .expect("DeleteImage");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.data_dir().join("logs").read_dir().is_ok_and(|d| {
        d.filter_map(|e| e.ok()).any(|e| {
            std::fs::read_to_string(e.path().join("build.log")).is_ok_and(|l| l.contains(&arn))
        })
    }) {
        assert!(Instant::now() < deadline, "the deleted image's log stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        registry_digest(&format!("{host}/recipe-repo:1.0.0-3")),
        digest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_without_a_registry_is_refused_or_fails_the_build_naming_it() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipped: {why}");
        return;
    }
    let registry = Registry::start(&RegistryOptions::default());
    let east = format!("us-east-1={}", registry.host_port());
    let every = registry.host_port();
    // Builds are queued, not run, until the restart below.
    let mut server =
        Server::start_with_args("", &["--ecr-registry", &every, "--build-concurrency", "0"]);
    let client = server.client();
    let infra = infrastructure(&client).await;
    let recipe = container_recipe(&client, "unmapped", "app").await;
    let dist = distribution(
        &client,
        "to-the-west",
        vec![
            container_entry("us-east-1", "app", &[]),
            container_entry("eu-west-1", "app", &[]),
        ],
    )
    .await;
    let queued = client
        .create_image()
        .container_recipe_arn(&recipe)
        .infrastructure_configuration_arn(&infra)
        .distribution_configuration_arn(&dist)
        .image_tests_configuration(no_tests())
        .send()
        .await
        .expect("CreateImage")
        .image_build_version_arn
        .expect("an image ARN");

    // A server whose registries serve us-east-1 only refuses a new image bound for eu-west-1...
    server.restart_with_args(&["--ecr-registry", &east]);
    let client = server.client();
    let refused = client
        .create_image()
        .container_recipe_arn(&recipe)
        .infrastructure_configuration_arn(&infra)
        .distribution_configuration_arn(&dist)
        .send()
        .await;
    assert_eq!(error_code(&refused), "InvalidRequestException");
    let message = error_message(&refused);
    assert!(
        message.starts_with(
            "distributionConfigurationArn: distributions[1].containerDistributionConfiguration"
        ) && message.contains("Region eu-west-1")
            && message.contains("--ecr-registry eu-west-1=HOST:PORT"),
        "{message}"
    );
    let pipeline = client
        .create_image_pipeline()
        .name("to-the-west")
        .container_recipe_arn(&recipe)
        .infrastructure_configuration_arn(&infra)
        .distribution_configuration_arn(&dist)
        .send()
        .await
        .expect("CreateImagePipeline")
        .image_pipeline_arn
        .expect("a pipeline ARN");
    let refused = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&pipeline)
        .send()
        .await;
    assert_eq!(error_code(&refused), "InvalidRequestException");
    assert!(error_message(&refused).contains("Region eu-west-1"));
    let images = client
        .list_image_pipeline_images()
        .image_pipeline_arn(&pipeline)
        .send()
        .await
        .expect("ListImagePipelineImages");
    assert!(
        images.image_summary_list().is_empty(),
        "a refused run leaves no image"
    );

    // ...and the image queued before, built now, fails in the distribute stage, having
    // pushed nothing.
    let image = wait_final(&client, &queued).await;
    let (status, reason) = status_and_reason(&image);
    assert_eq!(status, "FAILED");
    assert!(
        reason
            .starts_with("distribute stage failed: distributionConfigurationArn: distributions[1]")
            && reason.contains("Region eu-west-1")
            && reason.contains("--ecr-registry eu-west-1=HOST:PORT"),
        "{reason}"
    );
    let tags = registry.get("/v2/app/tags/list");
    assert_eq!(tags.status, 404, "nothing was pushed: {}", tags.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_registries_container_images_stay_local_and_the_log_says_so() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipped: {why}");
        return;
    }
    let server = Server::start();
    let client = server.client();
    let infra = infrastructure(&client).await;
    let recipe = container_recipe(&client, "local", "app").await;
    let arn = client
        .create_image()
        .container_recipe_arn(&recipe)
        .infrastructure_configuration_arn(&infra)
        .image_tests_configuration(no_tests())
        .send()
        .await
        .expect("CreateImage")
        .image_build_version_arn
        .expect("an image ARN");
    let image = wait_final(&client, &arn).await;
    let (status, reason) = status_and_reason(&image);
    assert_eq!(status, "AVAILABLE", "{reason}");
    let outputs = containers(&image);
    assert_eq!(outputs.len(), 1);
    assert!(outputs[0].1[0].starts_with("oci:"), "{outputs:?}");
    let log = build_log(&server, &arn);
    assert!(
        log.contains("no registry for container images is configured (kiln --ecr-registry)"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_registry_with_credentials_gets_the_image_and_wrong_ones_fail_the_build() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipped: {why}");
        return;
    }
    let secrets = TlsAuth::make();
    let registry = Registry::start(&RegistryOptions {
        tls: Some((secrets.path("cert.pem"), secrets.path("key.pem"))),
        htpasswd: Some(secrets.path("htpasswd")),
        ..RegistryOptions::default()
    });
    let host = registry.host_port();
    let url = format!("https://{host}/tls");
    let ca = secrets.path("cert.pem");
    let ca = ca.to_str().expect("UTF-8");
    let good = secrets.auth_file("auth.json", &host, "kiln-secret");
    let wrong = secrets.auth_file("wrong.json", &host, "not-it");
    for (auth, ok) in [(&good, true), (&wrong, false)] {
        let auth = auth.to_str().expect("UTF-8");
        let server = Server::start_with_args(
            "",
            &[
                "--ecr-registry",
                &url,
                "--ecr-registry-ca",
                ca,
                "--ecr-auth-file",
                auth,
            ],
        );
        let client = server.client();
        let infra = infrastructure(&client).await;
        let recipe = container_recipe(&client, "over-tls", "app").await;
        let arn = client
            .create_image()
            .container_recipe_arn(&recipe)
            .infrastructure_configuration_arn(&infra)
            .image_tests_configuration(no_tests())
            .send()
            .await
            .expect("CreateImage")
            .image_build_version_arn
            .expect("an image ARN");
        let image = wait_final(&client, &arn).await;
        let (status, reason) = status_and_reason(&image);
        if ok {
            assert_eq!(status, "AVAILABLE", "{reason}");
            let digest = local_digest(&server, &arn);
            assert_eq!(
                containers(&image),
                vec![(
                    "us-east-1".to_string(),
                    vec![
                        format!("{host}/tls/app:1.0.0-1"),
                        format!("{host}/tls/app@{digest}"),
                    ]
                )]
            );
        } else {
            assert_eq!(status, "FAILED");
            assert!(
                reason.starts_with(&format!(
                    "distribute stage failed: pushing the container image to {host}/tls/app (the Region us-east-1's registry)"
                )) && reason.to_lowercase().contains("unauthorized"),
                "{reason}"
            );
        }
    }
}

#[test]
fn bad_ecr_registry_flags_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").expect("writing a CA file");
    let ca = ca.to_str().expect("UTF-8");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--ecr-registry", "http://registry.example.com"],
            "--ecr-registry `http://registry.example.com`: plain HTTP is allowed only for a loopback registry",
        ),
        (
            &["--ecr-registry", "east=127.0.0.1:5000"],
            "--ecr-registry `east=127.0.0.1:5000`: `east` is not a Region code",
        ),
        (
            &["--ecr-registry", "us-east-1=127.0.0.1:5000/Team"],
            "the prefix `Team`",
        ),
        (
            &["--ecr-registry", "127.0.0.1:5000", "--ecr-registry", "127.0.0.1:6000"],
            "a registry for every Region (no REGION=) is already given",
        ),
        (
            &["--ecr-registry", "registry.example.com", "--ecr-registry-ca", ca],
            "--ecr-registry-ca",
        ),
        (
            &["--ecr-registry", "registry.example.com", "--ecr-auth-file", "/nonexistent/auth.json"],
            "--ecr-auth-file /nonexistent/auth.json",
        ),
        (
            &["--ecr-auth-file", "/etc/hostname"],
            "--ecr-auth-file is given without --ecr-registry",
        ),
    ];
    for (args, message) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(*args)
            .env_remove("KILN_ECR_REGISTRY")
            .env_remove("KILN_ECR_REGISTRY_CA")
            .env_remove("KILN_ECR_AUTH_FILE")
            .output()
            .expect("running kiln serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!data.exists(), "{args:?} left a data directory");
    }
    // `kiln worker` refuses them too, before it connects to the database; and the variable.
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "worker",
            "--database",
            "postgres://kiln@127.0.0.1:1/none",
            "--data-dir",
        ])
        .arg(&data)
        .env("KILN_ECR_REGISTRY", "127.0.0.1:5000,eu-west-1=-bad")
        .env_remove("KILN_ECR_REGISTRY_CA")
        .env_remove("KILN_ECR_AUTH_FILE")
        .output()
        .expect("running kiln worker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--ecr-registry `eu-west-1=-bad`"),
        "{stderr}"
    );
    assert!(!data.exists(), "kiln worker left a data directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_names_and_tags_no_registry_takes_are_refused_naming_the_field() {
    let server = Server::start();
    let client = server.client();
    let refused = client
        .create_container_recipe()
        .container_type(ContainerType::Docker)
        .name("bad-repo")
        .semantic_version("1.0.0")
        .parent_image(BUSYBOX)
        .dockerfile_template_data("FROM {{{ imagebuilder:parentImage }}}\nRUN true\n")
        .target_repository(repository_of("Team/App"))
        .send()
        .await;
    assert_eq!(error_code(&refused), "InvalidRequestException");
    assert!(
        error_message(&refused).starts_with("targetRepository.repositoryName: 'Team/App'"),
        "{}",
        error_message(&refused)
    );
    let refused = client
        .create_distribution_configuration()
        .name("bad-tag")
        .distributions(container_entry("us-east-1", "app", &["ok", "not ok"]))
        .send()
        .await;
    assert_eq!(error_code(&refused), "InvalidRequestException");
    assert!(
        error_message(&refused).starts_with(
            "distributions[0].containerDistributionConfiguration.containerTags[1]: 'not ok'"
        ),
        "{}",
        error_message(&refused)
    );
}
