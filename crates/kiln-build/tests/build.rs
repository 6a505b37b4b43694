//! Real builds as root: the busybox base image from the host's busybox-static, components run
//! in a build instance, the snapshot committed to a real OCI store, the test stage in a fresh
//! instance of the new image.

mod common;

use common::{Fixture, Recorded};
use kiln_build::Stage;
use kiln_instance::RealPrivileged;
use kiln_toe::engine::EngineConfig;
use std::path::Path;
use std::sync::Arc;

const WRITE: &str = r#"
name: write
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Write
        action: ExecuteBash
        inputs:
          commands:
            - echo built > /etc/kiln-built
            - rm /etc/group
      - name: File
        action: CreateFile
        inputs:
          - path: /opt/app/config
            content: "mode=fast"
  - name: validate
    steps:
      - name: Check
        action: Assert
        inputs:
          fileExists: /etc/kiln-built
  - name: test
    steps:
      - name: StillThere
        action: ExecuteBash
        inputs:
          commands:
            - test "$(cat /opt/app/config)" = mode=fast
            - test ! -e /tmp/build-only
"#;

#[test]
fn a_build_snapshots_the_changes_and_tests_them_in_a_fresh_instance() {
    let f = Fixture::new();
    let stages = Recorded::default();
    let built = f
        .build(&f.request("b1", &f.base, &[WRITE]), &stages)
        .expect("build");
    assert_eq!(
        *stages.0.lock().unwrap(),
        [Stage::Build, Stage::Snapshot, Stage::Test]
    );
    assert!(built.test_report.is_some());
    assert_eq!(
        f.merged(&built.image, "/etc/kiln-built").as_deref(),
        Some("built\n")
    );
    assert_eq!(
        f.merged(&built.image, "/opt/app/config").as_deref(),
        Some("mode=fast")
    );
    // The deletion is a whiteout in the new layer: gone from the image.
    assert_eq!(f.merged(&built.image, "/etc/group"), None);
    assert!(f.merged(&f.base, "/etc/group").is_some());
    assert_eq!(
        f.instances_left(),
        0,
        "instances are removed after the build"
    );
    // The store lists the new image; its parent is unchanged.
    assert!(f.store.resolve("b1:1").is_ok());

    // A second build on the first one's output sees its files.
    let on_top = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Append
        action: ExecuteBash
        inputs:
          commands:
            - echo "$(cat /etc/kiln-built) twice" > /etc/kiln-built
"#;
    let second = f
        .build(
            &f.request("b2", &built.image, &[on_top]),
            &Recorded::default(),
        )
        .expect("second build");
    assert!(second.test_report.is_none(), "no test phase, no test stage");
    // Busybox has no os-release and no package database.
    assert_eq!(
        second.metadata,
        Some(kiln_build::metadata::Metadata::default())
    );
    assert_eq!(
        f.merged(&second.image, "/etc/kiln-built").as_deref(),
        Some("built twice\n")
    );
}

#[test]
fn a_build_on_a_set_clock_records_that_clock_s_time() {
    let f = Fixture::new();
    let at = chrono::DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let engine = EngineConfig {
        clock: Some(Arc::new(move || at)),
        ..EngineConfig::default()
    };
    let built = f
        .build_with(
            &f.request("clocked", &f.base, &[WRITE]),
            &Recorded::default(),
            &engine,
        )
        .expect("build");
    assert_eq!(built.build_report.start_time, "2030-01-01T10:00:00.000Z");
    assert_eq!(
        built.build_report.end_time.as_deref(),
        Some("2030-01-01T10:00:00.000Z")
    );
    let config = f.store.config(&built.image).unwrap();
    assert_eq!(config.created().as_deref(), Some("2030-01-01T10:00:00Z"));
    let logs = std::fs::read_dir(f.dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(
        logs.iter()
            .any(|name| name.starts_with("TOE_2030-01-01_10-00-00_UTC-0_")),
        "the log folders are named by the clock's time: {logs:?}"
    );
}

#[test]
fn enhanced_metadata_reads_the_built_root() {
    let f = Fixture::new();
    let fake_distro = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Distro
        action: CreateFile
        inputs:
          - path: /etc/os-release
            content: "NAME=\"Kiln Linux\"\nVERSION_ID=\"3\"\n"
          - path: /var/lib/dpkg/status
            content: "Package: hello\nStatus: install ok installed\nVersion: 2.10-3\n"
"#;
    let built = f
        .build(
            &f.request("m1", &f.base, &[fake_distro]),
            &Recorded::default(),
        )
        .expect("build");
    let metadata = built.metadata.expect("metadata");
    assert_eq!(metadata.os.unwrap().os_version(), "Kiln Linux 3");
    assert_eq!(metadata.packages.len(), 1);
    assert_eq!(metadata.packages[0].name, "hello");
}

#[test]
fn failures_name_the_stage_and_the_step_and_leave_nothing_behind() {
    let f = Fixture::new();
    let failing_build = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Breaks
        action: ExecuteBash
        inputs:
          commands: ['echo no >&2; exit 7']
"#;
    let err = f
        .build(
            &f.request("f1", &f.base, &[failing_build]),
            &Recorded::default(),
        )
        .unwrap_err();
    assert_eq!(err.stage, Stage::Build);
    assert!(err.reason.contains("Breaks"), "{err}");
    assert!(err.reason.contains("exit status 7"), "{err}");
    assert!(
        f.store.resolve("f1:1").is_err(),
        "no image for a failed build"
    );

    let failing_test = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {name: Ok, action: ExecuteBash, inputs: {commands: ['true']}}
  - name: test
    steps:
      - {name: Probe, action: Assert, inputs: {fileExists: /nowhere}}
"#;
    let err = f
        .build(
            &f.request("f2", &f.base, &[failing_test]),
            &Recorded::default(),
        )
        .unwrap_err();
    assert_eq!(err.stage, Stage::Test);
    assert!(err.reason.contains("Probe"), "{err}");
    assert_eq!(f.instances_left(), 0);
}

#[test]
fn components_cannot_reach_the_network_or_the_host() {
    let f = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let marker = f.dir.path().join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let probe = format!(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: NoNetwork
        action: ExecuteBash
        inputs:
          commands:
            - if nc -w 1 127.0.0.1 {port} </dev/null; then exit 1; fi
      - name: NoHostFiles
        action: Assert
        inputs:
          not:
            fileExists: {marker}
"#,
        marker = marker.display()
    );
    let built = f.build(&f.request("n1", &f.base, &[&probe]), &Recorded::default());
    assert!(built.is_ok(), "{built:?}");
    assert!(Path::new(&marker).exists());
}

#[test]
fn a_failed_stage_keeps_its_instance_when_asked() {
    let f = Fixture::new();
    let failing = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: LeavesANote
        action: ExecuteBash
        inputs:
          commands: ['echo inspect-me > /root/note; exit 1']
"#;
    let mut request = f.request("k1", &f.base, &[failing]);
    request.keep_failed_instance = true;
    let err = f.build(&request, &Recorded::default()).unwrap_err();
    assert_eq!(err.kept_instance.as_deref(), Some("k1-build"));
    let instances = f.dir.path().join("instances");
    let note = instances.join("k1-build/merged/root/note");
    assert_eq!(
        std::fs::read_to_string(&note).unwrap(),
        "inspect-me\n",
        "the kept instance is still mounted"
    );
    let sys = Arc::new(RealPrivileged::new());
    let kept = kiln_instance::Instance::attach(sys, &instances, "k1-build").unwrap();
    kept.terminate().unwrap();
    assert_eq!(f.instances_left(), 0);
}

const OWNERS: &str = r#"
name: owners
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: FromTheHost
        action: CreateFile
        inputs:
          - path: /etc/from-host
            content: "written by the engine"
      - name: Owners
        action: ExecuteBash
        inputs:
          commands:
            - cat /etc/from-host > /dev/null
            - stat -c %u:%g /etc/from-host > /etc/from-host-owner
            - cat /proc/self/uid_map > /etc/uid-map
            - mkdir -p /home/u && echo x > /home/u/f && chown -R 1000:1001 /home/u
            - cp /bin/busybox /bin/suid-tool && chmod 4755 /bin/suid-tool
  - name: test
    steps:
      - name: OwnersInTheTestInstance
        action: ExecuteBash
        inputs:
          commands:
            - test "$(stat -c %u:%g /home/u/f)" = 1000:1001
            - test "$(stat -c %u:%g:%a /bin/suid-tool)" = 0:0:4755
"#;

/// Root in a build is an unprivileged host uid (a user namespace), and the image records the
/// owners the build gave, as before: the build's own, the engine's host-side writes (root's),
/// setuid bits; the test instance, on the build's writable layer, sees the same.
#[test]
fn owners_survive_the_builds_user_namespace() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new();
    let built = f
        .build(&f.request("own", &f.base, &[OWNERS]), &Recorded::default())
        .expect("build");
    assert!(built.test_report.is_some());
    let uid_map = f.merged(&built.image, "/etc/uid-map").unwrap();
    let words: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(words[0], "0", "{uid_map}");
    assert_ne!(
        words,
        ["0", "0", "4294967295"],
        "root in the build is host root"
    );
    assert_eq!(
        f.merged(&built.image, "/etc/from-host-owner").as_deref(),
        Some("0:0\n")
    );
    let root = f
        .dir
        .path()
        .join(format!("merged-{}", &built.image.digest[7..19]));
    let owner = |p: &str| {
        let md = std::fs::symlink_metadata(root.join(p)).unwrap();
        (md.uid(), md.gid(), md.mode() & 0o7777)
    };
    assert_eq!(owner("home/u/f").0, 1000);
    assert_eq!(owner("home/u/f").1, 1001);
    assert_eq!(owner("home/u").0, 1000);
    assert_eq!(owner("bin/suid-tool"), (0, 0, 0o4755));
    assert_eq!(owner("etc/from-host").0, 0);
    assert_eq!(owner("etc/uid-map").0, 0);
    assert_eq!(owner("etc").0, 0);
    assert_eq!(f.instances_left(), 0);
}
