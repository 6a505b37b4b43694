//! Images shared between machines through a registry: two `kiln serve` processes with their
//! own data directories on one PostgreSQL database and one `docker-registry` on 127.0.0.1.
//! What one builds the other builds on and exports (pulled from the registry into its own
//! store), and `kiln logs` of a build reads the same through either server, live included.
//!
//! Real builds: runs as root with `docker-registry` and `skopeo` installed, on the PostgreSQL
//! server `KILN_TEST_DATABASE_URL` names (each test creates a database of its own); skips with
//! a message otherwise (fails instead when `KILN_TEST_REQUIRE_POSTGRES=1` and no database).

mod common;

use aws_sdk_imagebuilder::Client;
use common::registry::{
    base64, free_port, missing_prerequisite, Registry, RegistryOptions, TlsAuth,
};
use common::{bash_recipe as recipe, create_image, Server, BUSYBOX};
use kiln_store::testing::TestDatabase;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `kiln ARGS` against `server`, signed with the test key.
fn kiln(args: &[&str], server: &Server) -> Output {
    kiln_command(args, server).output().expect("running kiln")
}

fn kiln_command(args: &[&str], server: &Server) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .env("KILN_ENDPOINT", server.url())
        .env("AWS_ACCESS_KEY_ID", common::DEFAULT_KEY)
        .env("AWS_SECRET_ACCESS_KEY", common::SECRET)
        .env("AWS_REGION", common::REGION)
        .env_remove("AWS_PROFILE")
        .env("RUST_LOG", "warn");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn infrastructure(client: &Client) -> String {
    client
        .create_infrastructure_configuration()
        .name("infra")
        .instance_profile_name("p")
        .instance_types("t3.micro")
        .send()
        .await
        .expect("CreateInfrastructureConfiguration")
        .infrastructure_configuration_arn
        .expect("an infrastructure ARN")
}

/// The image's status and reason once its build ended.
async fn wait_final(client: &Client, arn: &str) -> (String, String) {
    common::status_and_reason(&common::wait_final(client, arn).await)
}

/// The build id of an image as its log directory on the server that built it names it.
fn build_ids(server: &Server) -> Vec<String> {
    std::fs::read_dir(server.data_dir().join("logs"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn store_has(server: &Server, build_id: &str) -> bool {
    std::fs::read_to_string(server.data_dir().join("images/index.json"))
        .is_ok_and(|index| index.contains(&format!("kiln-{build_id}")))
}

fn export_oci(arn: &str, server: &Server, out: &Path) {
    let out_text = out.to_str().expect("a UTF-8 path");
    let done = kiln(
        &["image", "export", arn, "--format", "oci", "-o", out_text],
        server,
    );
    assert!(
        done.status.success(),
        "export of {arn}: {}",
        text(&done.stderr)
    );
    assert!(
        out.join("index.json").is_file(),
        "an OCI layout at {}",
        out.display()
    );
}

/// The size of a build's log in the database (read on a thread of its own: the blocking
/// client refuses to run inside the test's runtime).
fn log_size(url: &str, build_id: &str) -> u64 {
    let (url, build_id) = (url.to_string(), build_id.to_string());
    std::thread::spawn(move || {
        let store = kiln_store::Store::open(
            &kiln_store::Database::Postgres(url),
            kiln_store::Sync::Normal,
        )
        .expect("opening the database");
        store
            .read(|tx| tx.read_build_log(&build_id, 0, 10))
            .expect("reading")
            .expect("reading the log")
            .size
    })
    .join()
    .expect("reading the log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_built_on_one_machine_are_built_on_and_exported_by_another() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipped: {why}");
        return;
    }
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let registry = Registry::start(&RegistryOptions::default());
    let shared = ["--database", &db.url, "--registry", &registry.host_port()];
    let with_builds = |n: &'static str| -> Vec<&str> {
        shared
            .iter()
            .copied()
            .chain(["--build-concurrency", n])
            .collect()
    };
    // Only A builds at first.
    let mut a = Server::start_with_args("", &with_builds("1"));
    let mut b = Server::start_with_args("", &with_builds("0"));
    let (ca, cb) = (a.client(), b.client());
    let infra = infrastructure(&ca).await;
    let first_recipe = recipe(
        &ca,
        "first",
        BUSYBOX,
        &[
            "echo made-by-the-first-image > /etc/kiln-first",
            "echo first build done",
        ],
    )
    .await;
    let first = create_image(&ca, &first_recipe, &infra).await;
    let (status, reason) = wait_final(&cb, &first).await;
    assert_eq!(status, "AVAILABLE", "{reason}");
    let [first_build] = build_ids(&a).try_into().expect("A ran the one build");
    assert!(build_ids(&b).is_empty(), "B ran no build");
    let catalog = registry.get("/v2/_catalog");
    assert!(
        catalog.body.contains("kiln/123456789012/us-east-1/first"),
        "{}",
        catalog.body
    );

    // The log through B (from the database) is the log through A (A's file).
    let through_a = kiln(&["logs", &first], &a);
    let through_b = kiln(&["logs", &first], &b);
    assert!(through_a.status.success() && through_b.status.success());
    assert!(text(&through_a.stdout).contains("first build done"));
    assert!(text(&through_a.stdout).contains("AVAILABLE"));
    assert_eq!(text(&through_b.stdout), text(&through_a.stdout));
    let followed = kiln(&["logs", "--follow", &first], &b);
    assert_eq!(
        followed.status.code(),
        Some(0),
        "{}",
        text(&followed.stderr)
    );
    assert_eq!(text(&followed.stdout), text(&through_a.stdout));

    // Now only B builds: the second image's parent is the first, which B pulls.
    a.restart_with_args(&with_builds("0"));
    b.restart_with_args(&with_builds("1"));
    let (ca, cb) = (a.client(), b.client());
    let second_recipe = recipe(
        &cb,
        "second",
        &first,
        &[
            "grep -q made-by-the-first-image /etc/kiln-first",
            "for i in 1 2 3 4 5 6; do echo second build line $i; sleep 0.5; done",
        ],
    )
    .await;
    let second = create_image(&cb, &second_recipe, &infra).await;
    // Followed through A, which does not run the build, from before it starts to its end.
    let follower = kiln_command(&["logs", "--follow", &second], &a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln logs --follow");
    let (status, reason) = wait_final(&ca, &second).await;
    assert_eq!(status, "AVAILABLE", "{reason}");
    let followed = follower
        .wait_with_output()
        .expect("kiln logs --follow ends");
    assert_eq!(
        followed.status.code(),
        Some(0),
        "{}",
        text(&followed.stderr)
    );
    let followed = text(&followed.stdout);
    for i in 1..=6 {
        assert!(
            followed.contains(&format!("second build line {i}")),
            "{followed}"
        );
    }
    let through_b = kiln(&["logs", &second], &b);
    assert_eq!(followed, text(&through_b.stdout), "the whole log, live");
    let second_build = build_ids(&b)
        .into_iter()
        .find(|id| *id != first_build)
        .expect("B ran the second build");
    assert!(store_has(&b, &first_build), "B keeps the parent it pulled");
    assert!(!store_has(&a, &second_build));

    // Each exports what the other built.
    let out = tempfile::tempdir().expect("a temporary directory");
    export_oci(&second, &a, &out.path().join("second"));
    assert!(store_has(&a, &second_build), "A pulled the second image");
    export_oci(&first, &b, &out.path().join("first"));

    // Deleting an image deletes its log from the database; its contents leave the registry
    // with its last AMI (DeleteImage does not deregister AMIs, as on AWS).
    let ami = cb
        .get_image()
        .image_build_version_arn(&second)
        .send()
        .await
        .expect("GetImage")
        .image
        .and_then(|i| i.output_resources)
        .and_then(|o| o.amis)
        .and_then(|a| a.into_iter().next())
        .and_then(|a| a.image)
        .expect("the second image's AMI");
    cb.delete_image()
        .image_build_version_arn(&second)
        .send()
        .await
        .expect("DeleteImage");
    let deadline = Instant::now() + Duration::from_secs(30);
    while log_size(&db.url, &second_build) != 0 {
        assert!(Instant::now() < deadline, "the log stayed in the database");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tags = registry.get("/v2/kiln/123456789012/us-east-1/second/tags/list");
    assert!(tags.body.contains(&second_build), "{}", tags.body);
    let deregistered = b.ec2(&format!(
        "Action=DeregisterImage&Version=2016-11-15&ImageId={ami}"
    ));
    assert_eq!(deregistered.status, 200, "{}", deregistered.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = log_size(&db.url, &second_build);
        let tags = registry.get("/v2/kiln/123456789012/us-east-1/second/tags/list");
        if log == 0 && !tags.body.contains(&second_build) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "log {log} bytes, tags {}",
            tags.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_that_refuses_the_push_fails_the_build_naming_it() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipped: {why}");
        return;
    }
    // Nothing listens there.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with_args("", &["--registry", &nowhere]);
    let client = server.client();
    let infra = infrastructure(&client).await;
    let recipe = recipe(&client, "unpushed", BUSYBOX, &["true"]).await;
    let arn = create_image(&client, &recipe, &infra).await;
    let (status, reason) = wait_final(&client, &arn).await;
    assert_eq!(status, "FAILED");
    assert!(
        reason.starts_with("distribute stage failed: pushing the image to the registry")
            && reason.contains(&nowhere),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_registry_with_credentials_is_pushed_to_and_pulled_from() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipped: {why}");
        return;
    }
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let secrets = TlsAuth::make();
    let registry = Registry::start(&RegistryOptions {
        tls: Some((secrets.path("cert.pem"), secrets.path("key.pem"))),
        htpasswd: Some(secrets.path("htpasswd")),
        ..RegistryOptions::default()
    });
    let url = format!("https://{}", registry.host_port());
    let ca = secrets.path("cert.pem");
    let good = secrets.auth_file("auth.json", &registry.host_port(), "kiln-secret");
    let wrong = secrets.auth_file("wrong.json", &registry.host_port(), "not-it");
    let flags = |auth: &Path, builds: &'static str| -> Vec<String> {
        [
            "--database",
            &db.url,
            "--registry",
            &url,
            "--registry-ca",
            ca.to_str().expect("UTF-8"),
            "--registry-auth-file",
            auth.to_str().expect("UTF-8"),
            "--build-concurrency",
            builds,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (a_flags, b_flags) = (flags(&good, "1"), flags(&good, "0"));
    let a = Server::start_with_args("", &a_flags.iter().map(String::as_str).collect::<Vec<_>>());
    let b = Server::start_with_args("", &b_flags.iter().map(String::as_str).collect::<Vec<_>>());
    let client = a.client();
    let infra = infrastructure(&client).await;
    let over_tls = recipe(&client, "over-tls", BUSYBOX, &["echo over tls"]).await;
    let arn = create_image(&client, &over_tls, &infra).await;
    let (status, reason) = wait_final(&client, &arn).await;
    assert_eq!(status, "AVAILABLE", "{reason}");
    let out = tempfile::tempdir().expect("a temporary directory");
    export_oci(&arn, &b, &out.path().join("pulled"));

    // Wrong credentials, or no CA for the self-signed certificate: the build fails naming
    // the registry. (Single servers on SQLite: nothing else is shared here.)
    let wrong_password = Server::start_with_args(
        "",
        &[
            "--registry",
            &url,
            "--registry-ca",
            ca.to_str().expect("UTF-8"),
            "--registry-auth-file",
            wrong.to_str().expect("UTF-8"),
        ],
    );
    let no_ca = Server::start_with_args(
        "",
        &[
            "--registry",
            &url,
            "--registry-auth-file",
            good.to_str().expect("UTF-8"),
        ],
    );
    for (server, why) in [(&wrong_password, "unauthorized"), (&no_ca, "certificate")] {
        let client = server.client();
        let infra = infrastructure(&client).await;
        let refused = recipe(&client, "refused", BUSYBOX, &["true"]).await;
        let arn = create_image(&client, &refused, &infra).await;
        let (status, reason) = wait_final(&client, &arn).await;
        assert_eq!(status, "FAILED", "{why}");
        assert!(
            reason.contains(&format!("the registry {}", registry.host_port()))
                && reason.to_lowercase().contains(why),
            "{why}: {reason}"
        );
    }
}

#[test]
fn base64_pads_like_the_standard() {
    assert_eq!(base64(b"kiln:pw"), "a2lsbjpwdw==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
}

#[test]
fn bad_registry_flags_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").expect("writing a CA file");
    let ca = ca.to_str().expect("UTF-8");
    for (args, message) in [
        (
            vec!["--registry", "http://registry.example.com"],
            "plain HTTP is allowed only for a loopback registry",
        ),
        (
            vec!["--registry", "127.0.0.1:5000/Team"],
            "the prefix `Team`",
        ),
        (
            vec!["--registry", "127.0.0.1:5000", "--registry-ca", ca],
            "write https://127.0.0.1:5000",
        ),
        (
            vec![
                "--registry",
                "registry.example.com",
                "--registry-auth-file",
                "/nonexistent/auth.json",
            ],
            "--registry-auth-file /nonexistent/auth.json",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(&args)
            .env_remove("KILN_REGISTRY")
            .output()
            .expect("running kiln serve");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!data.exists(), "{args:?} left a data directory");
    }
}
