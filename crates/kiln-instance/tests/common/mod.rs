//! What the tests of real instances share: a busybox root filesystem and a way to launch
//! instances on it. Needs root and a static busybox (`apt-get install -y busybox-static`).
#![allow(dead_code)]

use kiln_instance::sys::RealPrivileged;
use kiln_instance::{limits, Instance, InstanceSpec};
use kiln_toe::target::Target;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

pub const BUSYBOX: &str = "/bin/busybox";

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        assert!(
            Path::new(BUSYBOX).is_file(),
            "these tests need a static busybox at {BUSYBOX}: apt-get install -y busybox-static"
        );
        // SAFETY: geteuid cannot fail.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "these tests mount and create cgroups: run them as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in [
            "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
        ] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        // The applet links, made here: running the copy (`busybox --install`) could fail with
        // ETXTBSY while another test thread forks with the copy's descriptor still open.
        let list = std::process::Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .unwrap();
        assert!(list.status.success());
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
            }
        }
        // ExecuteBash runs `bash`; busybox's ash does for these tests.
        let bash = rootfs.join("bin/bash");
        std::fs::write(&bash, "#!/bin/sh\nexec /bin/busybox ash \"$@\"\n").unwrap();
        std::fs::set_permissions(&bash, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(rootfs.join("etc/lower-file"), "from the image\n").unwrap();
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        Fixture { dir }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn base(&self) -> PathBuf {
        self.dir.path().join("instances")
    }

    pub fn spec(&self, id: &str) -> InstanceSpec {
        InstanceSpec {
            id: id.into(),
            lowers: vec![self.rootfs()],
            limits: limits::for_instance_types(&["t3.micro".into()]).unwrap(),
            network: false,
            hostname: "kiln-build".into(),
        }
    }

    pub fn launch(&self, spec: InstanceSpec) -> Instance {
        Instance::launch(Arc::new(RealPrivileged::new()), &self.base(), spec).unwrap()
    }
}

/// A unique instance id per test, so parallel tests do not share cgroups.
pub fn id(name: &str) -> String {
    format!("t{}-{name}", std::process::id())
}

pub fn sh(inst: &Instance, script: &str) -> Output {
    inst.command("sh", &["-c".into(), script.into()])
        .output()
        .unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .map(String::from)
        .collect()
}
