//! Rootless instances ([`RootlessPrivileged`]): the recording of operations without any
//! privilege, and real instances run by an unprivileged user. CI runs as root, so
//! `rootless_instance_runs_as_nobody` prepares a directory for `nobody` and re-runs this test
//! binary as `nobody` (util-linux `setpriv`) with only `rootless_inner` selected. Needs a static
//! busybox at /bin/busybox (`apt-get install -y busybox-static`).

use kiln_instance::rootless::{self, MountOp, RootlessState};
use kiln_instance::{Instance, InstanceSpec, Limits, Privileged, RootlessPrivileged, Support};
use kiln_toe::engine::{Engine, EngineConfig, Outcome, Quiet, RunRequest, SourceDocument};
use kiln_toe::report::Status;
use kiln_toe::target::Target;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BUSYBOX: &str = "/bin/busybox";
const INNER_ENV: &str = "KILN_ROOTLESS_INNER";
const DIR_ENV: &str = "KILN_ROOTLESS_DIR";

fn limits() -> Limits {
    Limits {
        vcpus: 1,
        memory_bytes: 512 << 20,
        pids_max: 32,
    }
}

/// An instance directory as `Instance::launch` makes it (without mounting anything).
fn instance_dirs(base: &Path, id: &str) -> PathBuf {
    let dir = base.join(id);
    for d in ["upper", "work", "merged/dev"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    dir
}

fn host_mounts_below(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy().into_owned();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_string)
        .collect()
}

#[test]
fn operations_are_recorded_in_rootless_json_and_not_made() {
    let base = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(base.path()).unwrap();
    let dir = instance_dirs(&base, "i-1");
    let merged = dir.join("merged");
    let lower = base.join("lower");
    std::fs::create_dir(&lower).unwrap();
    let sys = RootlessPrivileged::new();

    // Nothing can be recorded before the instance's overlay.
    assert!(sys.mount_tmpfs(&merged.join("dev"), "mode=755").is_err());
    sys.mount_overlay(
        std::slice::from_ref(&lower),
        &dir.join("upper"),
        &dir.join("work"),
        &merged,
    )
    .unwrap();
    sys.mount_tmpfs(&merged.join("dev"), "nosuid,mode=755")
        .unwrap();
    sys.mknod_char(&merged.join("dev/null"), 1, 3, 0o666)
        .unwrap();
    let err = sys
        .mknod_char(&merged.join("dev/sda"), 8, 0, 0o660)
        .unwrap_err();
    assert!(err.to_string().contains("8:0"), "{err}");
    assert!(sys
        .mount_tmpfs(&base.join("elsewhere"), "mode=755")
        .is_err());
    assert!(sys.cgroup_paths("i-1").is_empty());
    assert!(sys.cgroup_create("i-1", &limits()).unwrap().is_empty());
    assert!(sys.cgroup_create("unknown", &limits()).is_err());

    let expected = RootlessState {
        mounts: vec![
            MountOp::Overlay {
                lowers: vec![lower.clone()],
                upper: dir.join("upper"),
                work: dir.join("work"),
                target: merged.clone(),
            },
            MountOp::Tmpfs {
                target: merged.join("dev"),
                options: "nosuid,mode=755".into(),
            },
            MountOp::Device {
                src: "/dev/null".into(),
                dst: merged.join("dev/null"),
            },
        ],
        limits: Some(limits()),
    };
    assert_eq!(rootless::read_state(&dir).unwrap(), expected);
    // Another process (a second value) finds the same state in the file.
    assert_eq!(RootlessPrivileged::new().state(&dir).unwrap(), expected);
    let text = std::fs::read_to_string(dir.join(rootless::STATE_FILE)).unwrap();
    assert!(text.contains("\"kind\": \"overlay\""), "{text}");

    // Nothing was mounted or created on the host.
    assert!(host_mounts_below(&base).is_empty());
    assert!(!merged.join("dev/null").exists());
    sys.unmount(&merged).unwrap();
    assert!(sys.mounts_under(&dir).unwrap().is_empty());
    assert!(sys.cgroup_kill(&[]).is_ok());

    // A bad overlay target is refused.
    let err = sys
        .mount_overlay(&[lower], &dir.join("upper"), &dir.join("work"), &dir)
        .unwrap_err();
    assert!(err.to_string().contains("merged"), "{err}");
}

#[test]
fn preflight_says_why_it_cannot_run() {
    let sys = RootlessPrivileged::new();
    match kiln_instance::isolation_support() {
        Support::UserNamespace => assert!(sys.preflight().is_ok()),
        Support::Root => {
            let err = sys.preflight().unwrap_err();
            assert!(err.contains("runs as root"), "{err}");
        }
        Support::Unsupported(reason) => {
            let err = sys.preflight().unwrap_err();
            assert!(err.contains(&reason), "{err}");
        }
    }
}

/// Runs as root: prepares a directory for `nobody` and runs `rootless_inner` as `nobody`.
#[test]
fn rootless_instance_runs_as_nobody() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP rootless_instance_runs_as_nobody: needs root to switch to nobody");
        return;
    }
    assert!(
        Path::new(BUSYBOX).is_file(),
        "this test needs a static busybox at {BUSYBOX}: apt-get install -y busybox-static"
    );
    let tmp = tempfile::Builder::new()
        .prefix("kiln-rootless")
        .tempdir_in("/tmp")
        .unwrap();
    let rootfs = tmp.path().join("rootfs");
    for d in [
        "bin", "sbin", "usr/bin", "etc/opq", "proc", "sys", "dev", "tmp", "root",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
    }
    // ExecuteBash runs `bash`; busybox's ash does for these tests.
    let bash = rootfs.join("bin/bash");
    std::fs::write(&bash, "#!/bin/sh\nexec /bin/busybox ash \"$@\"\n").unwrap();
    std::fs::set_permissions(&bash, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(rootfs.join("etc/lower-file"), "from the image\n").unwrap();
    std::fs::write(rootfs.join("etc/opq/old"), "old\n").unwrap();
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    // Layers unpacked by an unprivileged Kiln belong to its user.
    let status = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(status.success());

    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["rootless_inner", "--exact", "--ignored", "--nocapture"])
        .env(INNER_ENV, "1")
        .env(DIR_ENV, tmp.path())
        .env("HOME", tmp.path())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(line) = stdout.lines().find(|l| l.starts_with("SKIP:")) {
        eprintln!("rootless_instance_runs_as_nobody skipped: {line}");
        return;
    }
    assert!(
        out.status.success(),
        "the inner test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ROOTLESS OK"), "{stdout}\n{stderr}");
}

fn sh(inst: &Instance, script: &str) -> Output {
    inst.command("sh", &["-c".into(), script.into()])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn sh_ok(inst: &Instance, script: &str) -> String {
    let out = sh(inst, script);
    assert!(
        out.status.success(),
        "`{script}` failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 64) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

fn recorded_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join(rootless::PIDS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

fn holder_pid(dir: &Path) -> i32 {
    let text = std::fs::read_to_string(dir.join(rootless::HOLDER_FILE)).unwrap();
    text.split(' ').next().unwrap().trim().parse().unwrap()
}

/// The unprivileged half of `rootless_instance_runs_as_nobody`.
#[test]
#[ignore = "run by rootless_instance_runs_as_nobody as nobody"]
fn rootless_inner() {
    if std::env::var_os(INNER_ENV).is_none() {
        return;
    }
    let tmp = PathBuf::from(std::env::var_os(DIR_ENV).unwrap());
    // SAFETY: geteuid cannot fail.
    assert_ne!(unsafe { libc::geteuid() }, 0);
    if let Support::Unsupported(reason) = kiln_instance::isolation_support() {
        println!("SKIP: the kernel refuses unprivileged user namespaces here: {reason}");
        return;
    }
    // What an unprivileged Kiln picks.
    let picked = kiln_instance::privileged_for_this_process();
    picked.preflight().unwrap();
    let sys = Arc::new(RootlessPrivileged::new());
    let base = tmp.join("instances");
    let spec = InstanceSpec {
        id: "rl-1".into(),
        lowers: vec![tmp.join("rootfs")],
        limits: limits(),
        network: false,
        hostname: "kiln-rootless".into(),
    };
    let inst = Instance::launch(sys.clone(), &base, spec).unwrap();
    let dir = inst.dir().to_path_buf();
    let upper = inst.upper();
    assert!(dir.join(rootless::STATE_FILE).is_file());
    assert!(host_mounts_below(&dir).is_empty(), "mounted on the host");

    // Writes land in the upper dir; the lower is visible.
    let out = sh_ok(&inst, "echo hello > /root/new && cat /etc/lower-file");
    assert_eq!(out, "from the image");
    assert_eq!(
        std::fs::read_to_string(upper.join("root/new")).unwrap(),
        "hello\n"
    );
    // Root in its namespace, its own hostname, PID 1, /proc mounted.
    assert_eq!(sh_ok(&inst, "id -u"), "0");
    assert_eq!(sh_ok(&inst, "hostname"), "kiln-rootless");
    assert_eq!(sh_ok(&inst, "echo $$"), "1");
    assert_eq!(sh_ok(&inst, "read c < /proc/1/comm; echo $c"), "sh");
    assert_eq!(
        sh_ok(
            &inst,
            "n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n"
        ),
        "1"
    ); // only sh
       // No network: only a loopback device, and it is down.
    let devices = sh_ok(&inst, "grep ':' /proc/net/dev | cut -d: -f1");
    assert_eq!(devices.trim(), "lo");
    let lo = sh_ok(&inst, "ip link show lo");
    assert!(!lo.contains("UP"), "{lo}");
    // A minimal /dev with the host's device nodes.
    let dev = sh_ok(&inst, "ls /dev");
    for name in ["null", "zero", "urandom", "fd", "shm", "pts"] {
        assert!(dev.lines().any(|l| l == name), "{name} missing: {dev}");
    }
    assert_eq!(
        sh_ok(&inst, "echo x > /dev/null && head -c 5 /dev/zero | wc -c"),
        "5"
    );
    assert_eq!(
        sh_ok(&inst, "echo shm > /dev/shm/a && cat /dev/shm/a"),
        "shm"
    );
    // Capabilities reduced to a container runtime's.
    let caps = sh_ok(&inst, "grep CapBnd /proc/self/status");
    assert!(caps.ends_with("00000000a80405fb"), "{caps}");

    // A deleted lower file is a whiteout; a replaced directory is opaque (userxattr).
    sh_ok(
        &inst,
        "rm /etc/lower-file && rm -rf /etc/opq && mkdir /etc/opq && touch /etc/opq/new",
    );
    let wh = std::fs::symlink_metadata(upper.join("etc/lower-file")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        getxattr(&upper.join("etc/opq"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(sh_ok(&inst, "ls /etc/opq"), "new");

    // The host sees the instance's root filesystem through the holder's mount namespace,
    // and commands see what the host writes there.
    let root = inst.root().to_path_buf();
    let holder = holder_pid(&dir);
    assert_eq!(
        root,
        PathBuf::from(format!("/proc/{holder}/root"))
            .join(dir.join("merged").strip_prefix("/").unwrap())
    );
    assert_eq!(
        std::fs::read_to_string(root.join("root/new")).unwrap(),
        "hello\n"
    );
    assert!(root.join("bin/busybox").is_file());
    std::fs::write(root.join("tmp/from-host"), "host\n").unwrap();
    assert_eq!(sh_ok(&inst, "cat /tmp/from-host"), "host");
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp/from-host")).unwrap(),
        "host\n"
    );
    // The host's `merged` directory itself stays an unmounted directory.
    assert!(host_mounts_below(&dir).is_empty(), "mounted on the host");

    // Two commands at once share one filesystem: each sees the other's writes.
    let waiter = inst
        .command(
            "sh",
            &[
                "-c".into(),
                "i=0; while [ ! -f /tmp/ping ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
                 cat /tmp/ping && echo pong > /tmp/pong"
                    .into(),
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = sh_ok(
        &inst,
        "echo ping > /tmp/ping; i=0; while [ ! -f /tmp/pong ] && [ $i -lt 200 ]; do sleep 0.05; \
         i=$((i+1)); done; cat /tmp/pong",
    );
    assert_eq!(out, "pong");
    let waited = waiter.wait_with_output().unwrap();
    assert!(waited.status.success());
    assert_eq!(String::from_utf8_lossy(&waited.stdout).trim(), "ping");

    // A component document runs through the engine: its scratch files (ExecuteBash's script)
    // and file actions go through the host root and are seen by its commands.
    let yaml = r#"
name: rootless engine
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Shell
        action: ExecuteBash
        inputs:
          commands:
            - echo from-bash > /tmp/bash-out
            - id -u > /tmp/uid
            - hostname > /tmp/host
      - name: Files
        action: CreateFile
        inputs:
          - path: /etc/motd
            content: built rootless
      - name: SeeFiles
        action: ExecuteBash
        inputs:
          commands:
            - cat /etc/motd > /tmp/motd-seen
      - name: Read
        action: ReadFile
        inputs:
          - path: /tmp/bash-out
"#;
    let request = RunRequest {
        documents: vec![SourceDocument {
            name: "doc.yaml".into(),
            text: yaml.into(),
            parameters: Vec::new(),
        }],
        phases: None,
        parameters: Vec::new(),
        execution_id: None,
        log_directory: tmp.join("logs"),
        state_directory: None,
    };
    let config = EngineConfig::default();
    let report = match Engine::new(&inst, &config, &Quiet).run(request) {
        Ok(Outcome::Finished(r)) => r,
        other => panic!("expected a finished run, got {other:?}"),
    };
    assert_eq!(report.status, Status::Success, "{report:?}");
    let read = |p: &str| std::fs::read_to_string(upper.join(p)).unwrap_or_default();
    assert_eq!(read("tmp/bash-out"), "from-bash\n");
    assert_eq!(read("tmp/uid"), "0\n");
    assert_eq!(read("tmp/host"), "kiln-rootless\n");
    assert_eq!(read("etc/motd"), "built rootless");
    assert_eq!(read("tmp/motd-seen"), "built rootless");
    let read_step = report
        .documents
        .iter()
        .flat_map(|d| &d.phases)
        .flat_map(|p| &p.steps)
        .find(|s| s.name == "Read")
        .unwrap();
    assert!(read_step.outputs.contains("from-bash"), "{read_step:?}");
    // The files "root" made belong to this user on the host: a snapshot maps them to 0:0.
    let me = (unsafe { libc::geteuid() }, unsafe { libc::getegid() });
    assert_eq!(inst.uid_map(), Some(me));
    let md = std::fs::metadata(upper.join("etc/motd")).unwrap();
    assert_eq!((md.uid(), md.gid()), me);

    // Another process opens the instance from its files (`kiln instance shell`) and sees the
    // same filesystem, through the same holder.
    let attached = Instance::attach(Arc::new(RootlessPrivileged::new()), &base, "rl-1").unwrap();
    assert_eq!(attached.root(), inst.root());
    assert_eq!(
        sh_ok(&attached, "cat /root/new /etc/motd"),
        "hello\nbuilt rootless"
    );
    sh_ok(&attached, "echo from-shell > /tmp/shell");
    drop(attached);
    assert_eq!(sh_ok(&inst, "cat /tmp/shell"), "from-shell");

    // The process limit is an rlimit that stops a fork loop.
    assert_eq!(sh_ok(&inst, "ulimit -u"), "32");
    let out = sh(
        &inst,
        "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo forked $i",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("forked 100") || !out.status.success(),
        "the fork loop was not stopped: {text}"
    );
    assert!(text.contains("fork"), "{text}");

    // Terminate kills what runs and leaves nothing.
    let before = recorded_pids(&dir).len();
    let mut long = inst
        .command("sleep", &["1000".into()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while recorded_pids(&dir).len() <= before && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids = recorded_pids(&dir);
    let sleeper = *pids.last().unwrap();
    assert!(Path::new(&format!("/proc/{sleeper}")).exists());
    inst.terminate().unwrap();
    let status = long.wait().unwrap();
    assert!(!status.success());
    assert!(!dir.exists(), "the instance directory is left");
    for pid in pids.into_iter().chain([holder]) {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z"),
            "process {pid} survived: {state}"
        );
    }

    // An instance whose owner died: reap kills its holder and removes it.
    let spec = InstanceSpec {
        id: "rl-dead".into(),
        lowers: vec![tmp.join("rootfs")],
        limits: limits(),
        network: false,
        hostname: "kiln-rootless".into(),
    };
    let dead = Instance::launch(sys.clone(), &base, spec).unwrap();
    let dead_dir = dead.dir().to_path_buf();
    assert_eq!(sh_ok(&dead, "echo alive"), "alive");
    let holder = holder_pid(&dead_dir);
    std::mem::forget(dead);
    let state_path = dead_dir.join("instance.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["owner_start"] = serde_json::json!(0); // no process of ours started at boot
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    assert!(Path::new(&format!("/proc/{holder}")).exists());
    let reaped = kiln_instance::reap(&RootlessPrivileged::new(), &base).unwrap();
    assert_eq!(reaped, vec!["rl-dead".to_string()]);
    assert!(!dead_dir.exists());
    let left = std::fs::read_to_string(format!("/proc/{holder}/stat")).unwrap_or_default();
    assert!(
        left.is_empty() || left.contains(") Z"),
        "holder survived: {left}"
    );
    println!("ROOTLESS OK");
}
