//! Real container builds as root: Dockerfile templates on the busybox base, every stage in a
//! real instance, the image and its configuration committed to a real OCI store.

mod common;

use common::{Fixture, Recorded};
use kiln_build::container::ContainerSpec;
use kiln_build::{BuildRequest, Stage};
use serde_json::json;

/// The recipe's parent as the template names it.
const PARENT: &str = "busybox-x86:1.0.0";

fn container_request(f: &Fixture, id: &str, template: &str, components: &[&str]) -> BuildRequest {
    let dockerfile =
        kiln_dockerfile::template::expand_template(template, PARENT).expect("template");
    kiln_dockerfile::validate::validate(&dockerfile).expect("valid Dockerfile");
    BuildRequest {
        container: Some(ContainerSpec {
            dockerfile,
            parent_reference: PARENT.to_string(),
        }),
        ..f.request(id, &f.base, components)
    }
}

fn config(f: &Fixture, image: &kiln_image::ImageRef) -> serde_json::Value {
    let manifest = f.store.manifest(image).unwrap();
    let path = f
        .store
        .blob_path(manifest.config().digest().as_ref())
        .unwrap();
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

const COMPONENT: &str = r#"
name: stamp
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Stamp
        action: ExecuteBash
        inputs:
          commands:
            - test "$(cat /app/greeting.txt)" = "hello world"
            - echo component > /component.txt
  - name: test
    steps:
      - name: Check
        action: ExecuteBash
        inputs:
          commands:
            - test -e /component.txt
            - test "$(cat /app/notes.txt)" = inline
"#;

const MULTI_STAGE: &str = r#"# escape=\
ARG BASE_DIR=/opt
FROM {{{ imagebuilder:parentImage }}} AS builder
ARG BASE_DIR
ENV GREETING="hello world"
WORKDIR $BASE_DIR/src
RUN echo "$GREETING" > greeting.txt \
 && mkdir -p out \
 && cp greeting.txt out/ \
 && ln -s greeting.txt out/link
RUN <<EOF
echo from-heredoc > /opt/src/out/heredoc.txt
EOF

FROM {{{ imagebuilder:parentImage }}}
{{{ imagebuilder:environments }}}
COPY --from=builder /opt/src/out/ /app/
COPY <<EOF /app/notes.txt
inline
EOF
RUN echo 'app:x:1000:1000:App:/home/app:/bin/sh' >> /etc/passwd \
 && mkdir -p /home/app && chown 1000:1000 /home/app
USER app
WORKDIR /home/app
RUN id -u > /home/app/uid && pwd > /home/app/pwd && echo "$HOME" > /home/app/home
ENV A=1 B=two
LABEL team="web ops"
EXPOSE 80 53/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --retries=2 CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
USER root
{{{ imagebuilder:components }}}
USER app
"#;

#[test]
fn a_multi_stage_dockerfile_runs_in_kiln_instances_and_configures_the_image() {
    let f = Fixture::new();
    let stages = Recorded::default();
    let request = container_request(&f, "c1", MULTI_STAGE, &[COMPONENT]);
    let built = f.build(&request, &stages).expect("build");
    assert_eq!(
        *stages.0.lock().unwrap(),
        [Stage::Build, Stage::Snapshot, Stage::Test]
    );
    let read = |path: &str| f.merged(&built.image, path);
    assert_eq!(read("/app/greeting.txt").as_deref(), Some("hello world\n"));
    assert_eq!(read("/app/heredoc.txt").as_deref(), Some("from-heredoc\n"));
    assert_eq!(read("/app/notes.txt").as_deref(), Some("inline\n"));
    assert_eq!(read("/home/app/uid").as_deref(), Some("1000\n"));
    assert_eq!(read("/home/app/pwd").as_deref(), Some("/home/app\n"));
    assert_eq!(read("/home/app/home").as_deref(), Some("/home/app\n"));
    assert_eq!(read("/component.txt").as_deref(), Some("component\n"));
    // The builder stage's work directory is not in the image: only what was copied.
    assert_eq!(read("/opt/src/greeting.txt"), None);

    let image_config = config(&f, &built.image);
    let c = &image_config["config"];
    // The builder stage's ENV stays in that stage; the base sets no PATH, so the image gets
    // Docker's default, as BuildKit and buildah give it.
    assert_eq!(
        c["Env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "A=1",
            "B=two"
        ])
    );
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/home/app");
    assert_eq!(c["Labels"]["team"], "web ops");
    assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
    assert_eq!(c["Volumes"], json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000u64, "Retries": 2})
    );
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], json!(["echo hi"]));
    // One layer on top of the parent's, as buildah bud commits a stage.
    let parent_layers = f.store.manifest(&f.base).unwrap().layers().len();
    assert_eq!(
        f.store.manifest(&built.image).unwrap().layers().len(),
        parent_layers + 1
    );
    assert_eq!(f.instances_left(), 0, "every stage's instance is removed");
    assert!(
        f.store.resolve("c1:1-stage0").is_err(),
        "intermediate stages are not kept in the store"
    );
}

#[test]
fn a_failing_run_names_its_line_and_its_output() {
    let f = Fixture::new();
    let template = "FROM {{{ imagebuilder:parentImage }}}\nRUN true\nRUN echo about to fail; echo on stderr >&2; exit 3\nRUN echo never\n";
    let e = f
        .build(
            &container_request(&f, "c2", template, &[]),
            &Recorded::default(),
        )
        .unwrap_err();
    assert_eq!(e.stage, Stage::Build);
    assert!(e.reason.contains("Dockerfile line 3"), "{}", e.reason);
    assert!(e.reason.contains("RUN echo about to fail"), "{}", e.reason);
    assert!(e.reason.contains("exit status 3"), "{}", e.reason);
    assert!(
        e.reason.contains("about to fail") && e.reason.contains("on stderr"),
        "{}",
        e.reason
    );
    assert_eq!(f.instances_left(), 0);
}

#[test]
fn a_scratch_stage_gets_only_what_is_copied_into_it() {
    let f = Fixture::new();
    let template = "FROM {{{ imagebuilder:parentImage }}} AS build\nRUN mkdir -p /out && echo static > /out/app\nFROM scratch\nCOPY --from=build --chmod=755 /out/app /app\nCOPY --from=0 /bin/busybox /bin/\nENTRYPOINT [\"/app\"]\n";
    let built = f
        .build(
            &container_request(&f, "c3", template, &[]),
            &Recorded::default(),
        )
        .expect("build");
    assert_eq!(f.merged(&built.image, "/app").as_deref(), Some("static\n"));
    assert!(f.merged(&built.image, "/etc/passwd").is_none());
    let manifest = f.store.manifest(&built.image).unwrap();
    assert_eq!(
        manifest.layers().len(),
        1,
        "scratch has no layers of its own"
    );
    let c = config(&f, &built.image);
    assert_eq!(c["config"]["Entrypoint"], json!(["/app"]));
}

#[test]
fn copies_follow_symlinks_only_inside_their_own_instances() {
    let f = Fixture::new();
    let marker = format!("kiln-copy-escape-{}", std::process::id());
    assert!(!std::path::Path::new("/").join(&marker).exists());
    // The source's symlink points at /etc of its own stage; the destination's /app points at
    // its own root. Followed on the host, either would read or write the host's files.
    let template = format!(
        "FROM {{{{{{ imagebuilder:parentImage }}}}}} AS build\n\
         RUN mkdir -p /out && ln -s /etc /out/etc-link && echo stage-secret > /etc/stage-file\n\
         FROM {{{{{{ imagebuilder:parentImage }}}}}}\n\
         RUN ln -s / /app\n\
         COPY --from=build /out/etc-link/stage-file /app/{marker}\n"
    );
    let built = f
        .build(
            &container_request(&f, "c4", &template, &[]),
            &Recorded::default(),
        )
        .expect("build");
    assert_eq!(
        f.merged(&built.image, &format!("/{marker}")).as_deref(),
        Some("stage-secret\n")
    );
    assert!(
        !std::path::Path::new("/").join(&marker).exists(),
        "the copy landed on the host"
    );
}
