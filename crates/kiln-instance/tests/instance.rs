//! Real instances: real overlay mounts, namespaces and cgroups. Needs root and a static busybox
//! (`apt-get install -y busybox-static`) for the test root filesystem.

use kiln_instance::sys::RealPrivileged;
use kiln_instance::{limits, reap, Instance, InstanceSpec, Limits, Privileged};
use kiln_toe::engine::{Engine, EngineConfig, Outcome, Quiet, RunRequest, SourceDocument};
use kiln_toe::report::Status;
use kiln_toe::target::Target;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[test]
fn commands_run_isolated_inside() {
    let f = Fixture::new();
    let marker = f.dir.path().join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let inst = f.launch(f.spec(&id("isolated")));

    let out = sh(&inst, "hostname; echo $$; cat /etc/lower-file; pwd");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "kiln-build\n1\nfrom the image\n/",
        "hostname, PID 1, the image's files, working directory"
    );
    // Only the instance's own processes are visible.
    let out = sh(&inst, "ps -o pid,comm");
    let procs = stdout(&out);
    assert!(procs.lines().count() <= 4, "{procs}");
    // Host files are not.
    let out = sh(
        &inst,
        &format!("test -e {} && echo visible", marker.display()),
    );
    assert_eq!(stdout(&out), "");
    let out = sh(&inst, "ls /tmp; ls / | tr '\\n' ' '");
    assert!(!stdout(&out).contains("host-marker"));
    // Capabilities are reduced to the container runtime set (no CAP_SYS_ADMIN etc.).
    let out = sh(&inst, "grep -E '^Cap(Bnd|Eff|Prm)' /proc/self/status");
    let caps = stdout(&out);
    for line in caps.lines() {
        assert!(line.ends_with("00000000a80405fb"), "{caps}");
    }
    assert_eq!(caps.lines().count(), 3, "{caps}");
    let out = sh(&inst, "mount -t tmpfs t /mnt 2>&1 || echo refused");
    assert!(stdout(&out).contains("refused"), "{out:?}");
    // A minimal /dev.
    let out = sh(
        &inst,
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c && ls /dev | tr '\\n' ' '",
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("4\n"), "{text}");
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "shm", "fd",
    ] {
        assert!(text.contains(node), "{node} missing from /dev: {text}");
    }
    // t3.micro's limits are in the cgroups (v1 hierarchies on this machine).
    let read = |controller: &str, file: &str| {
        let dir = inst
            .cgroups()
            .iter()
            .find(|d| d.starts_with(format!("/sys/fs/cgroup/{controller}")))
            .unwrap_or_else(|| panic!("no {controller} cgroup in {:?}", inst.cgroups()));
        std::fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (1u64 << 30).to_string()
    );
    assert_eq!(read("pids", "pids.max"), "4096");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "200000");
    let out = sh(&inst, "ls /dev/pts/ && test -c /dev/ptmx && echo pty");
    assert!(
        stdout(&out).contains("ptmx") && stdout(&out).ends_with("pty"),
        "{out:?}"
    );
    // The environment is the instance's, not the host's.
    let out = sh(&inst, "echo $PATH; echo $HOME");
    assert_eq!(
        stdout(&out),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/root"
    );
    inst.terminate().unwrap();
}

#[test]
fn a_command_runs_as_the_user_and_in_the_directory_it_is_given() {
    let f = Fixture::new();
    let inst = f.launch(f.spec(&id("process")));
    let process = kiln_instance::sys::Process {
        user: Some((1000, 1001, vec![1002, 1003])),
        working_dir: Some("/etc".to_string()),
    };
    let script = "id -u; id -g; id -G; pwd; grep -E '^CapEff' /proc/self/status; touch /root/x 2>&1 || echo refused";
    let out = inst
        .command_as("/bin/sh", &["-c".to_string(), script.to_string()], process)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..4],
        ["1000", "1001", "1001 1002 1003", "/etc"],
        "{text}"
    );
    // A non-root user has no effective capabilities and cannot write root's files.
    assert_eq!(
        lines[4].split_whitespace().nth(1),
        Some("0000000000000000"),
        "{text}"
    );
    assert!(text.contains("refused"), "{text}");
    // The instance's other commands are unchanged: root, in /.
    assert_eq!(stdout(&sh(&inst, "id -u; pwd")), "0\n/");
    inst.terminate().unwrap();
}

#[test]
fn writes_land_in_the_upper_layer() {
    let f = Fixture::new();
    let inst = f.launch(f.spec(&id("overlay")));
    let out = sh(
        &inst,
        "echo new > /root/new && rm /etc/lower-file && echo changed > /etc/passwd",
    );
    assert!(out.status.success(), "{out:?}");
    let upper = inst.upper();
    assert_eq!(
        std::fs::read_to_string(upper.join("root/new")).unwrap(),
        "new\n"
    );
    assert!(!f.rootfs().join("root/new").exists());
    // A deleted lower file is a whiteout: a character device 0:0 in the upper layer.
    let meta = std::fs::symlink_metadata(upper.join("etc/lower-file")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0);
    assert!(f.rootfs().join("etc/lower-file").exists());
    assert_eq!(
        std::fs::read_to_string(f.rootfs().join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    inst.terminate().unwrap();
}

#[test]
fn an_instance_without_layers_is_an_empty_root() {
    let f = Fixture::new();
    let mut spec = f.spec(&id("empty"));
    spec.lowers.clear();
    let inst = f.launch(spec);
    let mut names: Vec<String> = std::fs::read_dir(inst.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["dev", "proc", "sys", "tmp"]);
    inst.terminate().unwrap();
}

#[test]
fn memory_limit_kills_a_process_that_allocates_more() {
    let f = Fixture::new();
    let mut spec = f.spec(&id("memory"));
    spec.limits = Limits {
        vcpus: 1,
        memory_bytes: 64 << 20,
        pids_max: 64,
    };
    let inst = f.launch(spec);
    // awk doubles a string: 2^k bytes, kept in memory (with a copy while concatenating).
    let grow = |k: u32| {
        sh(
            &inst,
            &format!(
                "awk 'BEGIN {{ s = \"x\"; for (i = 0; i < {k}; i++) s = s s; print length(s) }}'"
            ),
        )
    };
    let small = grow(20);
    assert_eq!(stdout(&small), "1048576", "{small:?}");
    let big = grow(28); // 256 MiB
    assert!(!big.status.success(), "{big:?}");
    assert_ne!(stdout(&big), "268435456");
    let memory = inst
        .cgroups()
        .iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/memory"))
        .expect("a v1 memory cgroup on this machine");
    // The kernel's OOM killer did it (exit 137 = SIGKILL, counted in the cgroup).
    assert_eq!(big.status.code(), Some(137), "{big:?}");
    let oom = std::fs::read_to_string(memory.join("memory.oom_control")).unwrap();
    assert!(
        oom.lines()
            .any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"),
        "{oom}"
    );
    inst.terminate().unwrap();
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let f = Fixture::new();
    let mut spec = f.spec(&id("pids"));
    spec.limits.pids_max = 20;
    let inst = f.launch(spec);
    // Start 100 sleepers from a subshell, which dies at the first fork that fails; then count
    // the processes with a shell glob, which needs no fork.
    let out = sh(
        &inst,
        "(i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; \
         set -- /proc/[0-9]*; echo $#",
    );
    let count: usize = stdout(&out).parse().unwrap_or(0);
    assert!((10..20).contains(&count), "{out:?}");
    let pids = inst
        .cgroups()
        .iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/pids"))
        .expect("a v1 pids cgroup on this machine");
    let current: u64 = std::fs::read_to_string(pids.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 20, "{current}");
    let events = std::fs::read_to_string(pids.join("pids.events")).unwrap();
    assert_ne!(events.trim(), "max 0", "no fork was refused");
    let t = Instant::now();
    inst.terminate().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn terminate_kills_everything_and_leaves_nothing() {
    let f = Fixture::new();
    let t = Instant::now();
    let inst = f.launch(f.spec(&id("terminate")));
    let launched = t.elapsed();
    let dir = inst.dir().to_path_buf();
    let cgroups = inst.cgroups().to_vec();
    assert!(!cgroups.is_empty());
    let mut child = inst
        .command("sh", &["-c".into(), "sleep 1000 & sleep 1000".into()])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let pids = cgroups[0].join("cgroup.procs");
    while std::fs::read_to_string(&pids).unwrap().lines().count() < 3 {
        assert!(Instant::now() < deadline, "sleepers did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!mounts_under(&dir).is_empty());

    let t = Instant::now();
    inst.terminate().unwrap();
    let terminated = t.elapsed();
    eprintln!("launch {launched:?}, terminate with 4 processes {terminated:?}");
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(mounts_under(&dir).is_empty(), "{:?}", mounts_under(&dir));
    for c in &cgroups {
        assert!(!c.exists(), "{} is left", c.display());
    }
    assert!(!dir.exists());
}

#[test]
fn dropping_an_instance_tears_it_down() {
    let f = Fixture::new();
    let inst = f.launch(f.spec(&id("drop")));
    let dir = inst.dir().to_path_buf();
    let cgroups = inst.cgroups().to_vec();
    drop(inst);
    assert!(mounts_under(&dir).is_empty());
    assert!(cgroups.iter().all(|c| !c.exists()));
    assert!(!dir.exists());
}

#[test]
fn reap_cleans_up_after_a_crashed_owner() {
    let f = Fixture::new();
    let inst = f.launch(f.spec(&id("crashed")));
    let dir = inst.dir().to_path_buf();
    let cgroups = inst.cgroups().to_vec();
    let mut child = inst.command("sleep", &["1000".into()]).spawn().unwrap();
    // The owner "crashes": nothing tears the instance down, and its state names a process
    // that is gone.
    std::mem::forget(inst);
    let state_path = dir.join("instance.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["owner_start"] = serde_json::json!(0);
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    assert!(!mounts_under(&dir).is_empty());

    let sys = RealPrivileged::new();
    let reaped = reap(&sys, &f.base()).unwrap();
    assert_eq!(
        reaped,
        vec![dir.file_name().unwrap().to_string_lossy().into_owned()]
    );
    assert!(!child.wait().unwrap().success());
    assert!(mounts_under(&dir).is_empty());
    assert!(cgroups.iter().all(|c| !c.exists()));
    assert!(!dir.exists());
    assert!(sys
        .cgroup_paths("anything")
        .iter()
        .all(|p| p.parent().is_some()));
}

#[test]
fn reap_leaves_live_instances_alone() {
    let f = Fixture::new();
    let inst = f.launch(f.spec(&id("alive")));
    let reaped = reap(&RealPrivileged::new(), &f.base()).unwrap();
    assert!(reaped.is_empty());
    assert!(inst.dir().exists());
    inst.terminate().unwrap();
}

#[test]
fn documents_run_in_the_instance_through_the_engine() {
    let f = Fixture::new();
    let inst = f.launch(f.spec(&id("engine")));
    let outside = format!("/tmp/kiln-instance-escape-{}", std::process::id());
    let yaml = format!(
        r#"
name: instance test
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Shell
        action: ExecuteBash
        inputs:
          commands:
            - echo hi > /tmp/x
            - hostname > /tmp/host
            - ln -s / /escape
            - ln -s ../../../../.. /up
      - name: Files
        action: CreateFile
        inputs:
          - path: /etc/motd
            content: built by kiln
          - path: /escape{outside}
            content: through a link
          - path: /up/up{outside}-2
            content: through dot-dots
"#
    );
    let logs = f.dir.path().join("logs");
    let request = RunRequest {
        documents: vec![SourceDocument {
            name: "doc.yaml".into(),
            text: yaml,
            parameters: Vec::new(),
        }],
        phases: None,
        parameters: Vec::new(),
        execution_id: None,
        log_directory: logs,
        state_directory: None,
    };
    let config = EngineConfig::default();
    let report = match Engine::new(&inst, &config, &Quiet).run(request) {
        Ok(Outcome::Finished(r)) => r,
        other => panic!("expected a finished run, got {other:?}"),
    };
    assert_eq!(report.status, Status::Success, "{report:?}");
    let upper = inst.upper();
    let read = |p: &str| std::fs::read_to_string(upper.join(p)).unwrap_or_default();
    assert_eq!(read("tmp/x"), "hi\n");
    assert_eq!(read("tmp/host"), "kiln-build\n");
    assert_eq!(read("etc/motd"), "built by kiln");
    assert_eq!(read(&outside[1..]), "through a link");
    assert_eq!(read(&format!("{}-2", &outside[1..])), "through dot-dots");
    assert!(!Path::new(&outside).exists());
    assert!(!Path::new(&format!("{outside}-2")).exists());
    assert!(inst.binary_exists("sh"));
    assert!(!inst.binary_exists("cargo"));
    inst.terminate().unwrap();
}

#[test]
fn launch_and_terminate_are_fast() {
    let f = Fixture::new();
    let mut launch = Duration::ZERO;
    let mut run = Duration::ZERO;
    let mut terminate = Duration::ZERO;
    let n = 10;
    for i in 0..n {
        let t = Instant::now();
        let inst = f.launch(f.spec(&id(&format!("speed{i}"))));
        launch += t.elapsed();
        let t = Instant::now();
        assert!(sh(&inst, "true").status.success());
        run += t.elapsed();
        let t = Instant::now();
        inst.terminate().unwrap();
        terminate += t.elapsed();
    }
    eprintln!(
        "mean over {n}: launch {:?}, one command {:?}, terminate {:?}",
        launch / n,
        run / n,
        terminate / n
    );
    assert!(launch / n < Duration::from_secs(1));
}

/// Without root, launching refuses with the reason. The test re-runs this test binary as
/// `nobody` (through util-linux `setpriv`) with only the child half selected.
#[test]
fn unprivileged_launch_refuses_and_says_why() {
    if std::env::var_os("KILN_INSTANCE_UNPRIVILEGED_CHILD").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let spec = InstanceSpec {
            id: "unprivileged".into(),
            lowers: Vec::new(),
            limits: limits::for_instance_types(&[]).unwrap(),
            network: false,
            hostname: "h".into(),
        };
        let err = Instance::launch(Arc::new(RealPrivileged::new()), dir.path(), spec)
            .unwrap_err()
            .to_string();
        println!("REFUSED: {err}");
        assert!(err.contains("not running as root"), "{err}");
        assert!(!dir.path().join("unprivileged").exists());
        assert_ne!(
            kiln_instance::isolation_support(),
            kiln_instance::Support::Root
        );
        return;
    }
    assert_eq!(
        kiln_instance::isolation_support(),
        kiln_instance::Support::Root
    );
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "unprivileged_launch_refuses_and_says_why",
            "--nocapture",
        ])
        .env("KILN_INSTANCE_UNPRIVILEGED_CHILD", "1")
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("REFUSED: cannot build: Kiln is not running as root"),
        "{text}"
    );
}
