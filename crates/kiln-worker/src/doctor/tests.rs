//! The checks on machines described by hand: no root, no tools, no controllers.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A machine with everything: root, overlayfs, cgroup v2 with every controller, every tool on
/// `PATH` (empty scripts), a static "busybox".
struct Machine {
    dir: tempfile::TempDir,
    env: Environment,
}

fn executable(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The start of a static 64-bit ELF file: one PT_LOAD program header, no PT_INTERP.
fn elf(interp: bool) -> Vec<u8> {
    let mut bytes = vec![0u8; 0x40 + 0x38 * 2];
    bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
    bytes[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
    bytes[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
    bytes[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
    bytes[0x40..0x44].copy_from_slice(&1u32.to_le_bytes());
    let second: u32 = if interp { 3 } else { 1 };
    bytes[0x78..0x7c].copy_from_slice(&second.to_le_bytes());
    bytes
}

impl Machine {
    fn complete() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for name in [
            "skopeo",
            "qemu-img",
            "mkfs.ext4",
            "debugfs",
            "ip",
            "nsenter",
            "nft",
            "mmdebstrap",
            "unshare",
        ] {
            executable(&bin.join(name), b"#!/bin/sh\n");
        }
        executable(&dir.path().join("busybox"), &elf(false));
        std::fs::write(
            dir.path().join("filesystems"),
            "nodev\tproc\nnodev\toverlay\n",
        )
        .unwrap();
        let cgroup = dir.path().join("cgroup");
        std::fs::create_dir(&cgroup).unwrap();
        std::fs::write(
            cgroup.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let env = Environment {
            path: bin.into_os_string(),
            sbin_dirs: Vec::new(),
            root: true,
            userns: Arc::new(|| Err("the test says no".into())),
            proc_filesystems: dir.path().join("filesystems"),
            kernel_release: "6.1.0-18-amd64".into(),
            cgroup_root: cgroup,
            busybox: dir.path().join("busybox"),
        };
        Machine { dir, env }
    }

    fn config(&self) -> Config {
        Config::new(self.dir.path().join("data"))
    }

    fn remove_tool(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join("bin").join(name)).unwrap();
    }
}

#[test]
fn a_complete_machine_can_build() {
    let m = Machine::complete();
    let report = run(&m.env, &m.config());
    assert!(report.builds_possible(), "{report:#?}");
    for name in [
        "privileges",
        "overlayfs",
        "cgroups",
        "tool:skopeo",
        "tool:busybox",
        "database",
        "debian-mirror",
    ] {
        let check = report.get(name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(check.status, Status::Ok, "{check:?}");
    }
    // The tmp file system may be small; whatever it says, it says something.
    assert!(report.get("disk-space").is_some());
    assert!(report.unavailable_features().is_empty(), "{report:#?}");
}

#[test]
fn without_qemu_img_disk_exports_are_unavailable_but_builds_run() {
    let m = Machine::complete();
    m.remove_tool("qemu-img");
    let report = run(&m.env, &m.config());
    let check = report.get("tool:qemu-img").unwrap();
    assert_eq!(check.status, Status::Missing);
    assert!(!check.blocks_builds);
    assert!(check.remedy.contains("qemu-utils"), "{check:?}");
    assert!(report
        .unavailable_features()
        .contains(&"disk image exports"));
    assert!(report.builds_possible(), "{report:#?}");
}

#[test]
fn the_disk_tools_are_also_found_in_the_sbin_directories() {
    let mut m = Machine::complete();
    m.remove_tool("mkfs.ext4");
    let sbin = m.dir.path().join("sbin");
    std::fs::create_dir(&sbin).unwrap();
    executable(&sbin.join("mkfs.ext4"), b"#!/bin/sh\n");
    m.env.sbin_dirs = vec![sbin];
    let report = run(&m.env, &m.config());
    assert_eq!(report.get("tool:mkfs.ext4").unwrap().status, Status::Ok);
}

#[test]
fn without_root_or_user_namespaces_builds_are_impossible() {
    let mut m = Machine::complete();
    m.env.root = false;
    let report = run(&m.env, &m.config());
    let check = report.get("privileges").unwrap();
    assert_eq!(check.status, Status::Missing);
    assert!(check.detail.contains("the test says no"), "{check:?}");
    assert!(check.blocks_builds);
    assert!(!report.builds_possible());
    assert_eq!(report.blocking(), vec!["privileges".to_string()]);
}

#[test]
fn rootless_needs_user_namespaces_and_userxattr() {
    let mut m = Machine::complete();
    m.env.root = false;
    m.env.userns = Arc::new(|| Ok(()));
    let report = run(&m.env, &m.config());
    assert!(report.builds_possible(), "{report:#?}");
    assert_eq!(report.get("cgroups").unwrap().status, Status::Ok);

    // The instance network tools serve root's instances only.
    m.remove_tool("nft");
    let report = run(&m.env, &m.config());
    assert_eq!(report.get("tool:nft").unwrap().status, Status::Ok);

    m.env.kernel_release = "5.10.0-28-amd64".into();
    let report = run(&m.env, &m.config());
    let check = report.get("overlayfs").unwrap();
    assert_eq!(check.status, Status::Missing);
    assert!(check.detail.contains("userxattr"), "{check:?}");
    assert!(!report.builds_possible());
}

#[test]
fn without_overlayfs_or_the_memory_controller_builds_are_impossible() {
    let m = Machine::complete();
    std::fs::write(&m.env.proc_filesystems, "nodev\tproc\n").unwrap();
    std::fs::write(m.env.cgroup_root.join("cgroup.controllers"), "cpu pids\n").unwrap();
    let report = run(&m.env, &m.config());
    assert_eq!(
        report.blocking(),
        vec!["overlayfs".to_string(), "cgroups".to_string()]
    );
    assert!(report.get("cgroups").unwrap().detail.contains("memory"));
}

#[test]
fn cgroup_v1_needs_the_devices_hierarchy_and_warns_without_cpu() {
    let m = Machine::complete();
    let v1 = m.dir.path().join("v1");
    for c in ["memory", "pids"] {
        std::fs::create_dir_all(v1.join(c)).unwrap();
    }
    let mut env = m.env.clone();
    env.cgroup_root = v1.clone();
    assert_eq!(system::cgroups(&env).status, Status::Missing);
    std::fs::create_dir_all(v1.join("devices")).unwrap();
    let check = system::cgroups(&env);
    assert_eq!(check.status, Status::Warn);
    assert!(!check.blocks_builds);
}

#[test]
fn optional_tools_only_warn() {
    let m = Machine::complete();
    m.remove_tool("mmdebstrap");
    std::fs::remove_file(&m.env.busybox).unwrap();
    let report = run(&m.env, &m.config());
    let busybox = report.get("tool:busybox").unwrap();
    assert_eq!(busybox.status, Status::Warn, "{busybox:?}");
    assert!(busybox.detail.contains("optional"), "{busybox:?}");
    // The Debian base's built-in path is as fast: mmdebstrap is not even a gap.
    let mmdebstrap = report.get("tool:mmdebstrap").unwrap();
    assert_eq!(mmdebstrap.status, Status::Ok, "{mmdebstrap:?}");
    assert!(
        mmdebstrap.detail.contains("--base-source host"),
        "{mmdebstrap:?}"
    );
    assert!(report.builds_possible());
}

#[test]
fn a_dynamic_busybox_only_warns() {
    let m = Machine::complete();
    executable(&m.env.busybox, &elf(true));
    let check = tools::all(&m.env, &m.config()).pop().unwrap();
    assert_eq!(check.name, "tool:busybox");
    assert_eq!(check.status, Status::Warn);
    assert!(check.detail.contains("dynamically linked"), "{check:?}");
}

#[test]
fn skopeo_blocks_builds_only_with_a_shared_registry() {
    let m = Machine::complete();
    m.remove_tool("skopeo");
    let mut config = m.config();
    let report = run(&m.env, &config);
    assert!(report.builds_possible());
    assert_eq!(report.get("tool:skopeo").unwrap().status, Status::Missing);

    // A listener on 127.0.0.1 stands in for the registry.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    config.registry =
        Some(kiln_image::SharedRegistry::parse(&address.to_string(), None, None).unwrap());
    let report = run(&m.env, &config);
    assert_eq!(report.get("registry").unwrap().status, Status::Ok);
    assert_eq!(report.blocking(), vec!["tool:skopeo".to_string()]);
}

#[test]
fn unreachable_endpoints_are_named_and_only_the_registry_and_database_block() {
    let m = Machine::complete();
    // A port nothing listens on: bound, then closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut config = m.config();
    config.debian_mirror = Some(format!("http://{closed}/debian"));
    config.s3_endpoint = Some(format!("http://{closed}"));
    let report = run(&m.env, &config);
    for name in ["debian-mirror", "s3-endpoint"] {
        let check = report.get(name).unwrap();
        assert_eq!(check.status, Status::Failed, "{check:?}");
        assert!(!check.blocks_builds);
    }
    assert!(report.builds_possible());

    config.registry =
        Some(kiln_image::SharedRegistry::parse(&closed.to_string(), None, None).unwrap());
    config.database = Some(format!("postgres://kiln@{closed}/kiln"));
    let report = run(&m.env, &config);
    assert_eq!(
        report.blocking(),
        vec!["database".to_string(), "registry".to_string()]
    );
    let db = report.get("database").unwrap();
    assert!(db.detail.contains("does not answer"), "{db:?}");
}

#[test]
fn a_database_password_is_never_shown() {
    let m = Machine::complete();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut config = m.config();
    config.database = Some(format!("postgres://kiln:hunter2@{closed}/kiln"));
    let check = network::database(&config);
    assert_eq!(check.status, Status::Failed);
    assert!(!check.detail.contains("hunter2"), "{check:?}");
}

#[test]
fn a_check_that_hangs_is_reported_in_time() {
    // A listener that never accepts still completes TCP handshakes, so PostgreSQL's login
    // waits for an answer that never comes: the check must give up, not the report wait.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let m = Machine::complete();
    let mut config = m.config();
    config.timeout = Duration::from_millis(300);
    config.database = Some(format!("postgres://kiln@{address}/kiln"));
    let started = Instant::now();
    let report = run(&m.env, &config);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let db = report.get("database").unwrap();
    assert_eq!(db.status, Status::Failed);
    assert!(db.blocks_builds);
    assert!(
        db.detail.contains("PostgreSQL postgres://kiln@127.0.0.1:"),
        "{db:?}"
    );
    drop(listener);
}

#[test]
fn urls_give_their_host_and_port() {
    assert_eq!(
        network::url_host_port("http://deb.debian.org/debian"),
        Some(("deb.debian.org".into(), 80))
    );
    assert_eq!(
        network::url_host_port("https://u:p@s3.local:9000/x?y"),
        Some(("s3.local".into(), 9000))
    );
    assert_eq!(
        network::url_host_port("http://[::1]:8080"),
        Some(("::1".into(), 8080))
    );
    assert_eq!(network::url_host_port("ftp://x"), None);
    assert_eq!(
        network::split_host_port("127.0.0.1:5000", 443),
        Some(("127.0.0.1".into(), 5000))
    );
    assert_eq!(
        network::split_host_port("registry.example", 443),
        Some(("registry.example".into(), 443))
    );
    assert_eq!(system::kernel_version("5.11.0"), Some((5, 11)));
    assert_eq!(system::kernel_version("6.18.44-fc"), Some((6, 18)));
    assert!(!tools::has_interpreter(&elf(false)));
    assert!(tools::has_interpreter(&elf(true)));
    assert!(tools::has_interpreter(b"#!/bin/sh\n"));
}
