//! The cgroup v2 eBPF device filter on its own: a cgroup of the unified hierarchy (the hybrid
//! layout's `/sys/fs/cgroup/unified` here, `/sys/fs/cgroup` on a pure v2 host) gets the
//! program, a forked child joins it and opens devices. Needs root.

use std::path::PathBuf;

fn unified_root() -> PathBuf {
    let hybrid = PathBuf::from("/sys/fs/cgroup/unified");
    if hybrid.join("cgroup.procs").exists() {
        hybrid
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// Forks a child that joins `cgroup` and opens `path`; answers 0 or the errno.
fn open_in(cgroup: &std::path::Path, path: &std::ffi::CStr) -> i32 {
    let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").to_str().unwrap()).unwrap();
    // SAFETY: the child only makes system calls on data prepared before the fork and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(200);
            }
            libc::close(fd);
            let dev = libc::open(path.as_ptr(), libc::O_RDONLY);
            let code = if dev < 0 {
                *libc::__errno_location()
            } else {
                0
            };
            libc::_exit(code);
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status));
    libc::WEXITSTATUS(status)
}

#[test]
fn the_ebpf_filter_allows_the_default_devices_only() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "run as root");
    let cgroup = unified_root().join(format!("kiln-devtest-{}", std::process::id()));
    std::fs::create_dir(&cgroup).unwrap();
    let result = std::panic::catch_unwind(|| {
        assert_eq!(
            open_in(&cgroup, c"/dev/loop-control"),
            0,
            "before the filter"
        );
        kiln_instance::devices::attach(&cgroup).unwrap();
        assert_eq!(open_in(&cgroup, c"/dev/null"), 0);
        assert_eq!(open_in(&cgroup, c"/dev/urandom"), 0);
        assert_eq!(open_in(&cgroup, c"/dev/loop-control"), libc::EPERM);
        assert_eq!(open_in(&cgroup, c"/dev/kvm"), libc::EPERM);
    });
    // The children are gone; the cgroup (and the program with it) can go.
    let _ = std::fs::remove_dir(&cgroup);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
