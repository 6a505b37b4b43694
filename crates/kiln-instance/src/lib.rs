//! Build instances: where Kiln runs the components of an image build.
//!
//! EC2 Image Builder launches a virtual machine for every build. Kiln launches an *instance*: a
//! root filesystem assembled with overlayfs from the image's read-only layers and a fresh
//! writable layer on top, whose commands run with their own mount, PID, UTS, IPC and network
//! namespaces (an instance with networking has one with outbound NAT and no way to the host), a
//! minimal `/dev` behind a device allow-list, their own `/proc` with runc's masked and read-only
//! paths, a hostname, the capability set of a container runtime, NoNewPrivs, a seccomp filter,
//! and cgroup limits on CPU, memory and processes taken from the configuration's instance type.
//!
//! The crate has these parts.
//!
//! - [`limits`] maps EC2 instance types to [`Limits`] through a built-in table.
//! - [`sys`] is the only code that makes privileged system calls (mounts, device nodes, cgroups,
//!   and the namespace set-up that runs in a command's child process). It is the [`Privileged`]
//!   trait; [`RealPrivileged`] does the calls, [`RecordingPrivileged`] records them, so the
//!   logic of [`instance`] is tested without root.
//! - [`instance`] is the lifecycle: [`Instance::launch`] mounts and records what it did in
//!   `instance.json`; [`Instance::terminate`] (and `Drop`) kills every process, unmounts
//!   everything below the instance's directory, removes the cgroups and the directory, whatever
//!   state the instance is in; [`reap`] does the same for instances left behind by a process
//!   that died (the next start calls it). An [`Instance`] is a `kiln_toe` [`Target`], so the
//!   component engine runs documents in it unchanged.
//! - [`seccomp`], [`devices`] and [`network`] are the filters and the instance networks the
//!   calls of [`sys`] set up.
//! - [`userns`] gives a root-mode instance a user namespace of its own, so root in a build is
//!   an unprivileged host uid: idmapped lower layers, owners shifted in and back.
//! - [`detect`] answers what isolation this process can have and picks the [`Privileged`] for
//!   it ([`privileged_for_this_process`]): as root, real mounts and cgroups
//!   ([`RealPrivileged`]); unprivileged on a kernel that allows user namespaces, rootless
//!   instances ([`rootless`], [`RootlessPrivileged`]: a holder process per instance keeps a
//!   user and a mount namespace with the instance's mounts, every command joins them, the host
//!   sees the root through `/proc/<holder>/root`, and the limits are rlimits, not cgroups);
//!   otherwise launching fails with an error that says why (the rest of Kiln keeps working).
//!
//! [`Target`]: kiln_toe::target::Target

pub mod detect;
pub mod devices;
pub mod instance;
pub mod limits;
pub mod network;
pub mod rootless;
pub mod seccomp;
pub mod sys;
pub mod userns;

pub use detect::{isolation_support, privileged_for_this_process, Support};
pub use instance::{reap, Instance, InstanceSpec};
pub use limits::{for_instance_types, Limits};
pub use rootless::RootlessPrivileged;
pub use sys::{Privileged, RealPrivileged, RecordingPrivileged, SysError};

use std::path::PathBuf;

/// Why an instance could not be launched, torn down or reaped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown instance type `{0}`: Kiln knows the t2, t3, t3a, t4g, m5, m5a, m6i, m6a, m6g, m7i, m7g, c5, c5a, c6i, c6a, c6g, c7i, c7g, r5, r5a, r6i, r6g and r7i families (nano to 8xlarge as EC2 offers them)")]
    UnknownInstanceType(String),
    #[error("invalid instance spec: {0}")]
    Spec(String),
    #[error("cannot build: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("instance state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("teardown of {path} left {what}")]
    Leftover { path: PathBuf, what: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
