//! The seccomp filter every command of an instance runs under.
//!
//! Docker's default profile is an allow-list of about 350 system calls. Kiln uses the
//! equivalent *deny-list*: every system call Docker's profile refuses to a container without
//! extra capabilities is refused here too, and everything else is allowed. The trade-off: a
//! system call added to a future kernel is allowed until it is listed here, where Docker's
//! profile would refuse it; in exchange no build breaks on a system call this list forgot to
//! allow. The filters are compiled with `seccompiler` (the firecracker project's) before the
//! fork and applied, with `PR_SET_NO_NEW_PRIVS`, as the very last thing before `exec`.
//!
//! Three filters are stacked (the kernel runs all of them, the strictest answer wins):
//!
//! 1. `EPERM` for the refused calls ([`DENIED`]), for `clone` and `unshare` with any namespace
//!    flag (the way out through a user namespace, where a process has every capability again),
//!    and for `personality` with values other than the ones Docker allows;
//! 2. `ENOSYS` for `clone3`: its flags sit in a structure seccomp cannot read, and `ENOSYS`
//!    makes the C library fall back to `clone`, which the first filter checks (what Docker
//!    does);
//! 3. `ENOSYS` for every x32 system call (numbers with bit 30 set), which would otherwise reach
//!    the same kernel code under numbers the first filter does not list.
//!
//! seccompiler's filters check the architecture first and kill a process that makes a system
//! call of another one: 32-bit (`int 0x80`) programs cannot run in an instance.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// System calls refused outright, with what each would give a build.
pub const DENIED: &[(&str, i64)] = &[
    // Kernel modules, a new kernel, the machine's state.
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("syslog", libc::SYS_syslog),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("uselib", libc::SYS_uselib),
    ("ustat", libc::SYS_ustat),
    ("sysfs", libc::SYS_sysfs),
    ("_sysctl", libc::SYS__sysctl),
    ("vhangup", libc::SYS_vhangup),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    // Time of the whole machine.
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    // Mounts and namespaces: the filesystem and the namespaces Kiln set up stay as they are.
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("setns", libc::SYS_setns),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    // Files by handle bypass the path (and so the root): the "shocker" escape.
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    // The kernel keyring is not namespaced.
    ("add_key", libc::SYS_add_key),
    ("keyctl", libc::SYS_keyctl),
    ("request_key", libc::SYS_request_key),
    // Large kernel attack surfaces a build does not need.
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    // NUMA placement (Docker asks for CAP_SYS_NICE).
    ("mbind", libc::SYS_mbind),
    ("move_pages", libc::SYS_move_pages),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("migrate_pages", libc::SYS_migrate_pages),
];

/// The namespace flags of `clone` and `unshare`: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET (and CLONE_NEWTIME, 0x80).
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
    0x0000_0080,
];

/// The `personality` values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26 |
/// PER_LINUX32, and 0xffffffff (a query).
const PERSONALITIES: &[u64] = &[0, 8, 0x20000, 0x20008, 0xffff_ffff];

/// The bit that marks an x32 system call number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the seccomp filter: {0}")]
pub struct FilterError(String);

fn target_arch() -> Result<TargetArch, FilterError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| FilterError(e.to_string()))
}

fn err(e: seccompiler::BackendError) -> FilterError {
    FilterError(e.to_string())
}

fn flag_rules() -> Result<Vec<SeccompRule>, FilterError> {
    NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(err)?;
            SeccompRule::new(vec![cond]).map_err(err)
        })
        .collect()
}

/// The filters, in the order they are applied (see the module documentation).
pub fn filters() -> Result<Vec<BpfProgram>, FilterError> {
    let arch = target_arch()?;
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&(_, nr)| (nr, Vec::new())).collect();
    denied.insert(libc::SYS_clone, flag_rules()?);
    denied.insert(libc::SYS_unshare, flag_rules()?);
    let odd_personality = PERSONALITIES
        .iter()
        .map(|&p| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    denied.insert(
        libc::SYS_personality,
        vec![SeccompRule::new(odd_personality).map_err(err)?],
    );
    let eperm = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let enosys = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(err)?;
    let mut programs: Vec<BpfProgram> = vec![
        eperm.try_into().map_err(err)?,
        enosys.try_into().map_err(err)?,
    ];
    if cfg!(target_arch = "x86_64") {
        programs.push(x32_filter());
    }
    Ok(programs)
}

/// `ENOSYS` for every system call number with the x32 bit (seccompiler matches exact numbers,
/// not ranges, so this one is written by hand: four instructions).
fn x32_filter() -> BpfProgram {
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let ins = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    vec![
        ins(BPF_LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        ins(
            BPF_RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Applies `filters` to the calling thread, with `PR_SET_NO_NEW_PRIVS`. Async-signal-safe: no
/// allocation (the programs were built before the fork).
pub fn apply(filters: &[BpfProgram]) -> std::io::Result<()> {
    // SAFETY: prctl with plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for filter in filters {
        seccompiler::apply_filter(filter).map_err(|e| match e {
            seccompiler::Error::Seccomp(io) | seccompiler::Error::Prctl(io) => io,
            _ => std::io::Error::from_raw_os_error(libc::EINVAL),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_and_list_the_dangerous_calls() {
        let programs = filters().unwrap();
        assert_eq!(
            programs.len(),
            if cfg!(target_arch = "x86_64") { 3 } else { 2 }
        );
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
        for name in [
            "mount",
            "bpf",
            "keyctl",
            "kexec_load",
            "init_module",
            "setns",
            "perf_event_open",
        ] {
            assert!(DENIED.iter().any(|(n, _)| *n == name), "{name}");
        }
    }
}
