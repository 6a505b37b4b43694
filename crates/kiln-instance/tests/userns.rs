//! Root builds in a user namespace: root in an instance is an unprivileged
//! host uid, and the image's ownership survives the round trip. Needs root and a static busybox
//! at /bin/busybox.

use kiln_instance::sys::RealPrivileged;
use kiln_instance::userns::{DEFAULT_BASE, RANGE};
use kiln_instance::{Instance, Privileged};
use kiln_toe::target::Target;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;

mod common;
use common::*;

const BASE: u32 = DEFAULT_BASE;

fn host_status_uid(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string()
}

#[test]
fn root_in_a_build_is_an_unprivileged_host_uid() {
    let f = Fixture::new();
    // A data directory only root may search: root in the build is not root on the host.
    std::fs::set_permissions(f.dir.path(), PermissionsExt::from_mode(0o700)).unwrap();
    // The image's files keep their owners: a file of uid 1000 and a setuid binary of root.
    let rootfs = f.rootfs();
    std::fs::write(rootfs.join("etc/owned"), "user's\n").unwrap();
    std::os::unix::fs::lchown(rootfs.join("etc/owned"), Some(1000), Some(1001)).unwrap();
    std::fs::write(rootfs.join("bin/suid"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(rootfs.join("bin/suid"), PermissionsExt::from_mode(0o4755)).unwrap();

    let inst = f.launch(f.spec(&id("userns")));
    assert_eq!(inst.id_base(), Some(BASE), "this kernel supports it");

    let out = sh(
        &inst,
        "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map",
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "{text}");
    assert_eq!(lines[1], ["0"], "{text}");
    let range = ["0".to_string(), BASE.to_string(), RANGE.to_string()];
    assert_eq!(lines[2], range, "uid_map: {text}");
    assert_eq!(lines[3], range, "gid_map: {text}");

    // Inside, the image's owners are as they were; root can do what root does.
    let out = sh(
        &inst,
        "stat -c '%u:%g %a' /etc/owned /bin/suid / && echo new > /root/made && \
         mkdir -p /home/u && chown 1000:1000 /home/u && chmod 4711 /root/made && \
         echo more >> /etc/owned",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "1000:1001 644\n0:0 4755\n0:0 755");

    // On the host, the upper dir holds shifted ids.
    let upper = inst.upper();
    let md = std::fs::metadata(upper.join("root/made")).unwrap();
    assert_eq!((md.uid(), md.gid()), (BASE, BASE));
    let md = std::fs::metadata(upper.join("home/u")).unwrap();
    assert_eq!((md.uid(), md.gid()), (BASE + 1000, BASE + 1000));
    let md = std::fs::metadata(upper.join("etc/owned")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (BASE + 1000, BASE + 1001),
        "copied up"
    );

    // A process of the build is seen from the host as the unprivileged uid.
    let mut sleeper = inst.command("sleep", &["30".into()]).spawn().unwrap();
    let pid = find_sleep(&inst).expect("the sleep process");
    let uid = host_status_uid(pid);
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        [
            "Uid:",
            &BASE.to_string(),
            &BASE.to_string(),
            &BASE.to_string(),
            &BASE.to_string()
        ],
        "{uid}"
    );
    inst.stop_processes().unwrap();
    let _ = sleeper.wait();

    // Files the host writes (the engine's file actions and scripts) are root's inside.
    let host_file = inst.resolve("/tmp/from-host").unwrap();
    std::fs::write(&host_file, "host\n").unwrap();
    std::fs::set_permissions(&host_file, PermissionsExt::from_mode(0o600)).unwrap();
    let out = sh(
        &inst,
        "stat -c '%u:%g' /tmp/from-host && cat /tmp/from-host",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "0:0\nhost");

    // After the last command, the upper dir has the image's ids again, setuid bits kept.
    inst.restore_owners().unwrap();
    let md = std::fs::metadata(upper.join("root/made")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o4711));
    let md = std::fs::metadata(upper.join("home/u")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    let md = std::fs::metadata(upper.join("etc/owned")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1001));
    let md = std::fs::metadata(upper.join("tmp/from-host")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    let dir = inst.dir().to_path_buf();
    inst.terminate().unwrap();
    assert!(!dir.exists());
    assert!(mounts_under(&dir).is_empty());
}

/// The pid of the instance's `sleep`, as the host sees it (a process in the instance's
/// cgroup whose command is `sleep`).
fn find_sleep(inst: &Instance) -> Option<u32> {
    for _ in 0..200 {
        for cgroup in inst.cgroups() {
            let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "sleep" {
                    return Some(pid);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

#[test]
fn switched_off_root_in_a_build_is_host_root() {
    let f = Fixture::new();
    let sys: Arc<dyn Privileged> = Arc::new(RealPrivileged::new().with_user_namespace(None));
    let inst = Instance::launch(sys, &f.base(), f.spec(&id("hostroot"))).unwrap();
    assert_eq!(inst.id_base(), None);
    assert!(inst.plan().userns.is_none());
    let out = sh(&inst, "id -u; cat /proc/self/uid_map; echo x > /root/made");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("0\n"), "{text}");
    assert_eq!(
        text.lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
    let md = std::fs::metadata(inst.upper().join("root/made")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    inst.restore_owners().unwrap();
    inst.terminate().unwrap();
}

#[test]
fn where_the_kernel_refuses_the_instance_falls_back_to_host_root() {
    // A base whose range does not fit in 32 bits: creating the namespace fails, as it does on
    // a kernel without user namespaces, and the instance is launched as before.
    let f = Fixture::new();
    let sys: Arc<dyn Privileged> =
        Arc::new(RealPrivileged::new().with_user_namespace(Some(u32::MAX - 5)));
    let inst = Instance::launch(sys, &f.base(), f.spec(&id("fallback"))).unwrap();
    assert_eq!(inst.id_base(), None);
    let out = sh(&inst, "id -u; cat /proc/self/uid_map; echo x > /root/made");
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("4294967295"), "{out:?}");
    assert!(!inst.dir().join("userns").exists());
    assert!(!inst.dir().join("lower").exists());
    let md = std::fs::metadata(inst.upper().join("root/made")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    let dir = inst.dir().to_path_buf();
    inst.terminate().unwrap();
    assert!(mounts_under(&dir).is_empty());
}
