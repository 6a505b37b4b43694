//! The device allow-list as a cgroup v2 eBPF program (`BPF_PROG_TYPE_CGROUP_DEVICE`), for the
//! unified hierarchy, which has no `devices` controller: the kernel asks the program of the
//! process's cgroup before every `mknod` and `open` of a device node, and refuses with `EPERM`
//! when it answers 0. runc does the same on cgroup v2.
//!
//! The program is a list of comparisons, one per allowed device of
//! [`crate::sys::ALLOWED_DEVICES`] (character devices only, any access), written by hand: a few
//! dozen instructions, no compiler, no BPF library. It stays attached to the cgroup until the
//! cgroup is removed.

use crate::sys::{SysError, SysResult, ALLOWED_DEVICES};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`: other programs (a parent's) keep running too; all must allow.
const BPF_F_ALLOW_MULTI: u32 = 2;
/// `bpf_cgroup_dev_ctx.access_type`'s low half: the device type.
const DEVCG_DEV_CHAR: i32 = 2;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst_reg (low 4 bits) and src_reg (high 4 bits).
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes: class | size/op | source.
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_W | BPF_MEM
const ALU_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// The program: `r1` is the context (`access_type`, `major`, `minor`, 32 bits each).
pub fn program() -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),          // r2 = access_type
        insn(ALU_AND_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_W, 3, 1, 4, 0),          // r3 = major
        insn(LDX_W, 4, 1, 8, 0),          // r4 = minor
    ];
    for (major, minor) in ALLOWED_DEVICES {
        // Each block: skip to the next block unless type, major (and minor) match.
        let checks: Vec<(u8, i32)> = [(2, DEVCG_DEV_CHAR), (3, *major as i32)]
            .into_iter()
            .chain(minor.map(|m| (4, m as i32)))
            .collect();
        let n = checks.len();
        for (i, (reg, value)) in checks.into_iter().enumerate() {
            // Past the remaining checks and the two instructions that allow.
            let skip = (n - i - 1 + 2) as i16;
            p.push(insn(JNE_K, reg, 0, skip, value));
        }
        p.push(insn(MOV64_K, 0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to the fields used.
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a properly laid out bpf_attr prefix, alive for the call; the kernel
    // reads at most size_of::<T>() bytes of it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads [`program`] and attaches it to the cgroup v2 directory `cgroup`.
pub fn attach(cgroup: &Path) -> SysResult<()> {
    const OP: &str = "attach the device filter";
    let insns = program();
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"kiln_devs");
    let mut load = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..LoadAttr::default()
    };
    let prog = bpf(BPF_PROG_LOAD, &mut load).map_err(|e| {
        let text = String::from_utf8_lossy(&log);
        let text = text.trim_end_matches('\0').trim();
        SysError::new(
            OP,
            cgroup,
            io::Error::new(e.kind(), format!("loading the program: {e} {text}")),
        )
    })?;
    // SAFETY: the kernel just answered this new descriptor; nothing else owns it.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as libc::c_int) };
    let dir = std::fs::File::open(cgroup).map_err(|e| SysError::new(OP, cgroup, e))?;
    let mut att = AttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..AttachAttr::default()
    };
    bpf(BPF_PROG_ATTACH, &mut att).map_err(|e| SysError::new(OP, cgroup, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allowed_device_has_a_block_and_the_rest_is_refused() {
        let p = program();
        let exits = p.iter().filter(|i| i.code == EXIT).count();
        assert_eq!(exits, ALLOWED_DEVICES.len() + 1);
        assert_eq!(p[p.len() - 2], insn(MOV64_K, 0, 0, 0, 0));
        // Every jump lands on the first instruction of the next block, inside the program.
        for (i, ins) in p.iter().enumerate() {
            if ins.code == JNE_K {
                let target = i + 1 + ins.off as usize;
                assert!(target < p.len());
                assert!(
                    p[target].code == JNE_K || p[target] == insn(MOV64_K, 0, 0, 0, 0),
                    "jump at {i} lands on {:?}",
                    p[target]
                );
            }
        }
    }
}
