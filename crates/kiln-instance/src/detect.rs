//! What isolation this process can have, and the [`Privileged`] that gives it.
//!
//! Running as root, Kiln uses real mounts and cgroups ([`RealPrivileged`]). An unprivileged
//! Kiln builds inside user namespaces ([`RootlessPrivileged`]) where the kernel allows them;
//! [`isolation_support`] finds out whether it does (the `kernel.unprivileged_userns_clone` and
//! `user.max_user_namespaces` sysctls, then a real `unshare --user --map-root-user true`, which
//! also catches LSM restrictions such as AppArmor's `apparmor_restrict_unprivileged_userns`).
//! [`privileged_for_this_process`] picks the implementation; where neither works it answers
//! [`RealPrivileged`], whose preflight ([`require_root`]) refuses every launch with the reason
//! and what would help, while everything that does not build keeps working.

use crate::rootless::RootlessPrivileged;
use crate::sys::{Privileged, RealPrivileged};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// The isolation available to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Running as root: real mounts, cgroups and namespaces.
    Root,
    /// Not root, but the kernel lets this user create a user namespace.
    UserNamespace,
    /// Neither; the reason says why.
    Unsupported(String),
}

/// Probes what isolation this process can have (runs `unshare` once when not root).
pub fn isolation_support() -> Support {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        return Support::Root;
    }
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/{name}"))
            .ok()
            .map(|s| s.trim().to_string())
    };
    if sysctl("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Support::Unsupported(
            "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone = 0)"
                .into(),
        );
    }
    if sysctl("user/max_user_namespaces").as_deref() == Some("0") {
        return Support::Unsupported(
            "user namespaces are disabled (sysctl user.max_user_namespaces = 0)".into(),
        );
    }
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(status) if status.success() => Support::UserNamespace,
        Ok(status) => Support::Unsupported(format!(
            "the kernel refused a user namespace (`unshare --user --map-root-user true` {status})"
        )),
        Err(e) => Support::Unsupported(format!(
            "cannot run `unshare` to probe user namespaces: {e}"
        )),
    }
}

/// The [`Privileged`] for this process: [`RealPrivileged`] as root, [`RootlessPrivileged`]
/// when the kernel lets this user create user namespaces, otherwise [`RealPrivileged`], whose
/// preflight says why instances cannot be launched.
pub fn privileged_for_this_process() -> Arc<dyn Privileged> {
    privileged_with_host_access(false)
}

/// As [`privileged_for_this_process`]; `host_access` lets instances with networking reach the
/// host's own addresses ([`RealPrivileged::with_host_access`]; rootless instances with
/// networking share the host's network anyway).
pub fn privileged_with_host_access(host_access: bool) -> Arc<dyn Privileged> {
    match isolation_support() {
        Support::UserNamespace => Arc::new(RootlessPrivileged::new()),
        Support::Root | Support::Unsupported(_) => {
            Arc::new(RealPrivileged::new().with_host_access(host_access))
        }
    }
}

/// `Ok` as root; otherwise why real mounts and cgroups cannot be used (the preflight of
/// [`RealPrivileged`]).
pub fn require_root() -> Result<(), String> {
    match isolation_support() {
        Support::Root => Ok(()),
        Support::UserNamespace => Err(
            "Kiln is not running as root, so it cannot use real mounts and cgroups; this kernel \
             allows user namespaces: use rootless instances (RootlessPrivileged, which \
             detect::privileged_for_this_process picks) or run Kiln as root"
                .into(),
        ),
        Support::Unsupported(reason) => Err(format!(
            "Kiln is not running as root and cannot isolate a build without it: {reason}; \
             run Kiln as root"
        )),
    }
}
