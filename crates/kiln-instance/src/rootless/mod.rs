//! Rootless instances: build instances for a Kiln that does not run as root.
//!
//! An unprivileged process cannot mount anything on the host or create cgroups, but on a kernel
//! that allows unprivileged user namespaces (see [`crate::detect`]) an instance can have a
//! *user namespace* of its own, where Kiln's user is root over the instance's mount, PID, UTS,
//! IPC (and network) namespaces. [`RootlessPrivileged`] is the [`Privileged`] for that
//! case.
//!
//! # Limits
//!
//! Without cgroup delegation an unprivileged process cannot create cgroups, so
//! [`Privileged::cgroup_paths`] and [`Privileged::cgroup_create`] answer no directories and the
//! instance's [`Limits`] become rlimits of each command: `RLIMIT_NPROC` = `pids_max` (counted
//! per user namespace on Linux 5.14 and later, so per instance), `RLIMIT_AS` = `memory_bytes`
//! (per process address space, not the instance's total memory). There is no CPU limit.
//!
//! # Limitations
//!
//! The user namespace maps one id: files in the instance belong to root (Kiln's user on the
//! host, which snapshots record as 0:0: [`Privileged::uid_map`]) or to nobody, and `chown` to
//! another user fails. The host's file actions run as Kiln's user without capabilities: they
//! cannot write a file or directory whose owner has no write permission (a 0444 file), which
//! root in the instance can. Lower layers must be owned by Kiln's
//! user (as kiln-image unpacks them when it runs unprivileged): copying up a file the user does
//! not own fails.
//!
//! Layout: `state` is what an instance records (`rootless.json`); `privileged` is
//! [`RootlessPrivileged`], the [`Privileged`] calls; `holder` starts and finds the process that
//! keeps an instance's namespaces; `steps` prepares the mounts a namespace is made of; `command`
//! is the `pre_exec` hook that starts a command inside the holder's namespaces; `teardown` ends
//! an instance's processes. Each module's documentation explains its part.
//!
//! [`Privileged`]: crate::sys::Privileged
//! [`Limits`]: crate::Limits
//! [`Privileged::cgroup_create`]: crate::sys::Privileged::cgroup_create
//! [`Privileged::cgroup_paths`]: crate::sys::Privileged::cgroup_paths
//! [`Privileged::uid_map`]: crate::sys::Privileged::uid_map

mod command;
mod holder;
mod privileged;
mod state;
mod steps;
mod teardown;

pub use privileged::RootlessPrivileged;
pub use state::{read_state, MountOp, RootlessState};

/// The file in the instance directory that holds the recorded operations.
pub const STATE_FILE: &str = "rootless.json";

/// The file in the instance directory that lists the commands' PID-namespace inits.
pub const PIDS_FILE: &str = "rootless.pids";

/// The file in the instance directory that names the holder process (`<pid> <start time>`).
pub const HOLDER_FILE: &str = "rootless.holder";

/// The instance's root filesystem, below the instance directory.
const ROOT_DIR: &str = "merged";
