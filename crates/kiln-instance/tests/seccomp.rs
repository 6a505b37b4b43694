//! The seccomp filter on its own: a forked child of this test applies it and makes the system
//! calls it must refuse, as root, where only the filter stands in the way (no namespaces, all
//! capabilities), and the ones builds need.

use kiln_instance::seccomp;

/// A system call to try: answers its raw result.
type Probe = fn() -> libc::c_long;

/// In a forked child: applies the filters, runs `probe`, and exits with what it answered
/// (0 when the call worked, else its errno).
fn errno_after_filter(probe: Probe) -> i32 {
    let filters = seccomp::filters().unwrap();
    // SAFETY: the child only makes system calls on data prepared before the fork and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match seccomp::apply(&filters) {
            Err(_) => 200,
            Ok(()) => {
                let rc = probe();
                if rc < 0 {
                    std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(201)
                } else {
                    0
                }
            }
        };
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the child was killed: {status:#x}");
    libc::WEXITSTATUS(status)
}

fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "run these tests as root");
}

#[test]
fn the_dangerous_calls_are_refused_with_eperm() {
    require_root();
    let cases: &[(&str, Probe)] = &[
        ("unshare(CLONE_NEWUSER)", || unsafe {
            libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)
        }),
        ("unshare(CLONE_NEWNS)", || unsafe {
            libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS)
        }),
        ("clone(CLONE_NEWUSER)", || unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWUSER | libc::SIGCHLD,
                0,
                0,
                0,
                0,
            )
        }),
        ("mount", || unsafe {
            libc::syscall(
                libc::SYS_mount,
                c"none".as_ptr(),
                c"/mnt".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                0,
            )
        }),
        ("setns", || unsafe { libc::syscall(libc::SYS_setns, 0, 0) }),
        ("keyctl", || unsafe {
            libc::syscall(libc::SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0)
        }),
        ("add_key", || unsafe {
            libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"kiln".as_ptr(),
                c"x".as_ptr(),
                1,
                -3,
            )
        }),
        ("bpf", || unsafe { libc::syscall(libc::SYS_bpf, 0, 0, 0) }),
        ("perf_event_open", || unsafe {
            libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0)
        }),
        ("kexec_load", || unsafe {
            libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0)
        }),
        ("init_module", || unsafe {
            libc::syscall(libc::SYS_init_module, 0, 0, c"".as_ptr())
        }),
        ("open_by_handle_at", || unsafe {
            libc::syscall(libc::SYS_open_by_handle_at, -100, 0, 0)
        }),
        ("personality(0xdead)", || unsafe {
            libc::syscall(libc::SYS_personality, 0xdead)
        }),
        ("io_uring_setup", || unsafe {
            libc::syscall(libc::SYS_io_uring_setup, 1, 0)
        }),
    ];
    for (name, probe) in cases {
        assert_eq!(errno_after_filter(*probe), libc::EPERM, "{name}");
    }
}

#[test]
fn clone3_and_x32_calls_answer_enosys() {
    require_root();
    assert_eq!(
        errno_after_filter(|| unsafe { libc::syscall(libc::SYS_clone3, 0, 0) }),
        libc::ENOSYS,
        "clone3"
    );
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            errno_after_filter(|| unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) }),
            libc::ENOSYS,
            "x32 getpid"
        );
    }
}

#[test]
fn what_builds_need_still_works() {
    require_root();
    let cases: &[(&str, Probe)] = &[
        ("getpid", || unsafe { libc::syscall(libc::SYS_getpid) }),
        ("personality query", || unsafe {
            libc::syscall(libc::SYS_personality, 0xffff_ffffu32)
        }),
        ("unshare(0)", || unsafe {
            libc::syscall(libc::SYS_unshare, 0)
        }),
        ("clone (fork)", || unsafe {
            let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0);
            if pid == 0 {
                libc::_exit(0);
            }
            if pid > 0 {
                let mut st = 0;
                libc::waitpid(pid as libc::pid_t, &mut st, 0);
            }
            pid
        }),
        ("open", || unsafe {
            let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY);
            if fd >= 0 {
                libc::close(fd);
            }
            fd as libc::c_long
        }),
    ];
    for (name, probe) in cases {
        assert_eq!(errno_after_filter(*probe), 0, "{name}");
    }
}
