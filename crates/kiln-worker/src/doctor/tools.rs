//! The programs Kiln runs, and which feature each serves. Only the Rust code runs without
//! them; every tool here serves a feature, and only `skopeo` with a shared registry is needed
//! by every build.

use super::{Check, Config, Environment, Status};
use std::path::{Path, PathBuf};

/// How a missing tool matters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Its features are unavailable without it.
    Feature,
    /// Used only when the operator asks for it (`--base-source host`): Kiln's own path is as
    /// fast.
    HostSourceOnly,
    /// Needed only when not root (the user-namespace probe).
    Rootless,
    /// Its features need it only as root (rootless instances with networking share the host's
    /// network, so the instance network tools are not run).
    RootFeature,
}

struct Tool {
    name: &'static str,
    package: &'static str,
    features: &'static [&'static str],
    need: Need,
    /// Also found in the sbin directories when `PATH` lacks it (the disk tools are looked up
    /// that way by `kiln-image`).
    sbin_fallback: bool,
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "skopeo",
        package: "skopeo",
        features: &[
            "registry parent images",
            "container image pushes (--ecr-registry)",
            "the shared registry (--registry)",
        ],
        need: Need::Feature,
        sbin_fallback: false,
    },
    Tool {
        name: "qemu-img",
        package: "qemu-utils",
        features: &["disk image exports", "disk image imports"],
        need: Need::Feature,
        sbin_fallback: true,
    },
    Tool {
        name: "mkfs.ext4",
        package: "e2fsprogs",
        features: &["disk image exports"],
        need: Need::Feature,
        sbin_fallback: true,
    },
    Tool {
        name: "debugfs",
        package: "e2fsprogs",
        features: &["disk image imports"],
        need: Need::Feature,
        sbin_fallback: true,
    },
    Tool {
        name: "ip",
        package: "iproute2",
        features: &["instances with networking"],
        need: Need::RootFeature,
        sbin_fallback: false,
    },
    Tool {
        name: "nsenter",
        package: "util-linux",
        features: &["instances with networking"],
        need: Need::RootFeature,
        sbin_fallback: false,
    },
    Tool {
        name: "nft",
        package: "nftables",
        features: &["instances with networking"],
        need: Need::RootFeature,
        sbin_fallback: false,
    },
    Tool {
        name: "mmdebstrap",
        package: "mmdebstrap",
        features: &["managed Debian base with --base-source host"],
        need: Need::HostSourceOnly,
        sbin_fallback: false,
    },
    Tool {
        name: "unshare",
        package: "util-linux",
        features: &["rootless instances"],
        need: Need::Rootless,
        sbin_fallback: false,
    },
];

/// One check per tool, and one for the static busybox.
pub(super) fn all(env: &Environment, config: &Config) -> Vec<Check> {
    let mut out: Vec<Check> = TOOLS.iter().map(|t| tool(env, config, t)).collect();
    out.push(busybox(&env.busybox));
    out
}

fn tool(env: &Environment, config: &Config, tool: &Tool) -> Check {
    let name = format!("tool:{}", tool.name);
    if let Some(found) = find(env, tool) {
        return Check::ok(name, format!("{}", found.display()));
    }
    let install = format!("install the Debian package {}", tool.package);
    match tool.need {
        Need::Rootless if env.root => Check::ok(name, "not found; not needed as root"),
        Need::RootFeature if !env.root => {
            Check::ok(name, "not found; not used by rootless instances")
        }
        Need::HostSourceOnly => Check::ok(
            name,
            "not found; only --base-source host uses it (the managed Debian base is made from \
             the Debian mirror by Kiln itself, as fast)",
        ),
        // Every build pushes its image to the shared registry.
        Need::Feature if tool.name == "skopeo" && config.registry.is_some() => Check::gap(
            name,
            Status::Missing,
            format!(
                "not found: unavailable: {}; every build pushes to --registry",
                tool.features.join(", ")
            ),
            install,
        )
        .affecting(tool.features)
        .blocking(),
        Need::Rootless => Check::gap(
            name,
            Status::Missing,
            "not found: user namespaces cannot be probed",
            install,
        )
        .affecting(tool.features)
        .blocking(),
        Need::Feature | Need::RootFeature => Check::gap(
            name,
            Status::Missing,
            format!("not found: unavailable: {}", tool.features.join(", ")),
            install,
        )
        .affecting(tool.features),
    }
}

/// The program `tool` runs as: on `PATH`, else (for some) in the sbin directories.
fn find(env: &Environment, tool: &Tool) -> Option<PathBuf> {
    let on_path = std::env::split_paths(&env.path).map(|d| d.join(tool.name));
    let fallback: Vec<PathBuf> = if tool.sbin_fallback {
        env.sbin_dirs.iter().map(|d| d.join(tool.name)).collect()
    } else {
        Vec::new()
    };
    on_path.chain(fallback).find(|p| executable(p))
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The managed busybox base copies a statically linked busybox into the image.
fn busybox(path: &Path) -> Check {
    let name = "tool:busybox";
    let features = &["managed busybox base: faster host path"][..];
    let remedy = "install the Debian package busybox-static for the faster host path";
    match std::fs::read(path) {
        Err(_) => Check::gap(
            name,
            Status::Warn,
            format!(
                "{} not found (optional: the managed base is made from the Debian mirror instead)",
                path.display()
            ),
            remedy,
        )
        .affecting(features),
        Ok(bytes) if has_interpreter(&bytes) => Check::gap(
            name,
            Status::Warn,
            format!(
                "{} is dynamically linked (optional: the managed base is made from the Debian \
                 mirror instead)",
                path.display()
            ),
            remedy,
        )
        .affecting(features),
        Ok(_) => Check::ok(name, format!("{} (static)", path.display())),
    }
}

/// Whether a file is unusable as the static busybox: dynamically linked, or not ELF64 at all
/// (the image store's own check, [`kiln_image::is_static_elf`]).
pub(super) fn has_interpreter(elf: &[u8]) -> bool {
    kiln_image::is_static_elf(elf) != Some(true)
}
