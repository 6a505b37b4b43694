//! What an isolated command is allowed: the capabilities it keeps, the paths of `/proc` and
//! `/sys` masked or made read-only (runc's lists), and the devices the device cgroup allows.

/// Linux capability numbers (`linux/capability.h`) a container runtime keeps by default.
pub const DEFAULT_CAPABILITIES: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

pub(super) const CAP_MKNOD: u32 = 27;

/// What runc masks in a container: directories get an empty read-only tmpfs, files
/// `/dev/null`. Paths relative to the instance's root.
pub const MASKED_PATHS: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// What runc makes read-only in a container (`/proc/sys/kernel/core_pattern` is the classic
/// way from a writable `/proc` to root on the host).
pub const READONLY_PATHS: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// The character devices an instance may use (runc's defaults): `(major, minor)`, `None` for
/// any minor. Everything else is refused by the device cgroup, also when a node is made.
pub const ALLOWED_DEVICES: &[(u32, Option<u32>)] = &[
    (1, Some(3)), // null
    (1, Some(5)), // zero
    (1, Some(7)), // full
    (1, Some(8)), // random
    (1, Some(9)), // urandom
    (5, Some(0)), // tty
    (5, Some(1)), // console
    (5, Some(2)), // ptmx
    (136, None),  // /dev/pts/*
];

/// The device cgroup's allow rules for [`ALLOWED_DEVICES`] (`c 1:3 rwm`, `c 136:* rwm`).
pub fn device_rules() -> Vec<String> {
    ALLOWED_DEVICES
        .iter()
        .map(|(major, minor)| match minor {
            Some(minor) => format!("c {major}:{minor} rwm"),
            None => format!("c {major}:* rwm"),
        })
        .collect()
}
