//! The checks of the machine itself: privileges, overlayfs, cgroups, free disk.

use super::{Check, Environment, Status};
use std::path::Path;

/// Every build runs in an instance; without isolation there are no instances.
const BUILDS: &[&str] = &["builds"];

/// Root, or an unprivileged user namespace (rootless instances).
pub(super) fn privileges(env: &Environment) -> Check {
    if env.root {
        return Check::ok(
            "privileges",
            "running as root: real mounts, cgroups and namespaces",
        );
    }
    match (env.userns)() {
        Ok(()) => Check::ok(
            "privileges",
            "not root; unprivileged user namespaces work: rootless instances (rlimits instead \
             of cgroups; instances with networking share the host's network)",
        ),
        Err(reason) => Check::gap(
            "privileges",
            Status::Missing,
            format!("not root and no user namespaces: {reason}"),
            "run kiln as root, or allow unprivileged user namespaces (sysctl \
             kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0, \
             kernel.apparmor_restrict_unprivileged_userns=0)",
        )
        .affecting(BUILDS)
        .blocking(),
    }
}

/// overlayfs in the kernel; rootless, also its `userxattr` option (Linux 5.11).
pub(super) fn overlayfs(env: &Environment) -> Check {
    let listed = std::fs::read_to_string(&env.proc_filesystems)
        .map(|text| {
            text.lines()
                .any(|line| line.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false);
    if !listed {
        return Check::gap(
            "overlayfs",
            Status::Missing,
            "the kernel lists no overlay file system",
            "load it: modprobe overlay (and add `overlay` to /etc/modules-load.d/)",
        )
        .affecting(BUILDS)
        .blocking();
    }
    if env.root {
        return Check::ok("overlayfs", "overlay file system available");
    }
    match kernel_version(&env.kernel_release) {
        Some(v) if v >= (5, 11) => Check::ok(
            "overlayfs",
            format!(
                "overlay file system with userxattr (Linux {}) for rootless instances",
                env.kernel_release
            ),
        ),
        _ => Check::gap(
            "overlayfs",
            Status::Missing,
            format!(
                "rootless instances need overlayfs's userxattr (Linux 5.11); this kernel is '{}'",
                env.kernel_release
            ),
            "run kiln as root, or upgrade the kernel to 5.11 or later",
        )
        .affecting(BUILDS)
        .blocking(),
    }
}

/// `major.minor` of a kernel release such as `6.1.0-18-amd64`.
pub(super) fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The cgroup layout and the controllers instances use (root only: rootless instances get
/// rlimits instead). memory and pids are required (their limits are written or the launch
/// fails); cpu is best effort; on cgroup v1, devices is required too.
pub(super) fn cgroups(env: &Environment) -> Check {
    if !env.root {
        return Check::ok(
            "cgroups",
            "not used: rootless instances are limited by rlimits",
        );
    }
    let root = &env.cgroup_root;
    let (layout, present): (&str, Vec<String>) = if root.join("cgroup.controllers").exists() {
        let listed = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        (
            "v2",
            listed.split_whitespace().map(str::to_string).collect(),
        )
    } else {
        let dirs = ["memory", "pids", "devices", "cpu"]
            .into_iter()
            .filter(|c| root.join(c).is_dir())
            .map(str::to_string)
            .collect();
        ("v1", dirs)
    };
    let required: &[&str] = if layout == "v2" {
        &["memory", "pids"]
    } else {
        &["memory", "pids", "devices"]
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|c| !present.iter().any(|p| p == c))
        .collect();
    if !missing.is_empty() {
        return Check::gap(
            "cgroups",
            Status::Missing,
            format!(
                "cgroup {layout} without the {} controller(s) instances need",
                missing.join(", ")
            ),
            if layout == "v2" {
                "enable them for Kiln: echo '+memory +pids +cpu' > /sys/fs/cgroup/cgroup.subtree_control \
                 (under systemd: Delegate=yes in kiln's unit)"
            } else {
                "mount the missing cgroup v1 hierarchies under /sys/fs/cgroup, or boot with the \
                 unified hierarchy (systemd.unified_cgroup_hierarchy=1)"
            },
        )
        .affecting(BUILDS)
        .blocking();
    }
    if !present.iter().any(|p| p == "cpu") {
        return Check::gap(
            "cgroups",
            Status::Warn,
            format!("cgroup {layout}: memory and pids limits, but no cpu controller"),
            "enable the cpu controller, or builds run without the instance type's CPU limit",
        )
        .affecting(&["cpu limits"]);
    }
    Check::ok(
        "cgroups",
        format!("cgroup {layout} with {}", required.join(", ") + ", cpu"),
    )
}

/// Below this, builds and snapshots soon fail for lack of room.
const FREE_MIN: u64 = 1 << 30;
/// Below this, a few builds of a large image fill the disk.
const FREE_LOW: u64 = 10 << 30;

/// `path`, or its nearest parent that exists (the data directory before the first start); `.`
/// for a relative path none of whose parents exist.
pub(super) fn nearest_existing(path: &Path) -> &Path {
    let mut dir = path;
    while !dir.exists() {
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
            _ => return Path::new("."),
        }
    }
    dir
}

/// Free space on the file system of the data directory (or of its nearest existing parent,
/// before the first start).
pub(super) fn disk_space(data_dir: &Path) -> Check {
    let dir = nearest_existing(data_dir);
    match free_bytes(dir) {
        Err(e) => Check::gap(
            "disk-space",
            Status::Failed,
            format!("cannot read the free space under {}: {e}", dir.display()),
            "check that --data-dir names a directory kiln can reach",
        )
        .affecting(BUILDS)
        .blocking(),
        Ok(free) if free < FREE_MIN => Check::gap(
            "disk-space",
            Status::Failed,
            format!("{} free under {}", gib(free), dir.display()),
            "free space there (kiln store usage; remove unused images), or move --data-dir",
        )
        .affecting(BUILDS)
        .blocking(),
        Ok(free) if free < FREE_LOW => Check::gap(
            "disk-space",
            Status::Warn,
            format!("only {} free under {}", gib(free), dir.display()),
            "free space there or move --data-dir: large images need several GiB each",
        ),
        Ok(free) => Check::ok(
            "disk-space",
            format!("{} free under {}", gib(free), dir.display()),
        ),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Bytes an unprivileged user may still write on the file system of `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a NUL-terminated path and `stat` a zeroed struct statvfs(3) fills.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}
