//! Build code is contained: each way out of an instance is tried from
//! inside a real instance and must fail: writing `core_pattern`, making and opening devices,
//! mounting, new user namespaces, entering other namespaces, reading host paths, reaching the
//! host over the network. Needs root, a static busybox at /bin/busybox, iproute2 and nftables.

use kiln_instance::sys::RealPrivileged;
use kiln_instance::{Instance, InstanceSpec};
use kiln_toe::target::Target;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::*;

/// Runs `attempt` in the instance and answers `ALLOWED` or `refused` (with the error).
fn attempt(inst: &Instance, attempt: &str) -> String {
    let out = sh(
        inst,
        &format!("if {attempt}; then echo ALLOWED; else echo refused; fi 2>&1"),
    );
    stdout(&out)
}

fn refused(inst: &Instance, what: &str) {
    let got = attempt(inst, what);
    assert!(
        got.ends_with("refused") && !got.contains("ALLOWED"),
        "`{what}` was not refused: {got}"
    );
}

#[test]
fn proc_and_sys_cannot_be_written_and_secrets_are_masked() {
    let f = Fixture::new();
    let inst = f.launch(f.spec(&id("proc")));
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    refused(&inst, "echo '|/tmp/x' > /proc/sys/kernel/core_pattern");
    refused(&inst, "echo 1 > /proc/sys/vm/drop_caches");
    refused(&inst, "echo h > /proc/sysrq-trigger");
    refused(&inst, "touch /sys/kiln-was-here");
    refused(&inst, "echo 1 > /sys/kernel/mm/ksm/run");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
    // Masked: empty files and empty directories.
    let out = sh(
        &inst,
        "for f in kcore keys timer_list sched_debug; do \
           [ -e /proc/$f ] && echo $f:$(head -c 100 /proc/$f | wc -c); done; \
         ls -A /sys/firmware | wc -l",
    );
    let text = stdout(&out);
    for line in text.lines().filter(|l| l.contains(':')) {
        assert!(line.ends_with(":0"), "{text}");
    }
    assert!(text.ends_with('0'), "/sys/firmware is not empty: {text}");
    // Reading the rest of /proc still works.
    let out = sh(
        &inst,
        "cat /proc/sys/kernel/hostname; head -1 /proc/meminfo",
    );
    assert!(stdout(&out).starts_with("kiln-build\nMemTotal"), "{out:?}");
    inst.terminate().unwrap();
}

#[test]
fn devices_beyond_the_defaults_cannot_be_made_or_opened() {
    let f = Fixture::new();
    // A device node the image brings along.
    let node = f.rootfs().join("etc/loop-control");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: mknod on a NUL-terminated path.
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(10, 237)) },
        0
    );
    let inst = f.launch(f.spec(&id("devices")));
    refused(&inst, "mknod /dev/kvm c 10 232");
    refused(&inst, "mknod /dev/loop-control c 10 237");
    refused(&inst, "mknod /tmp/sda b 8 0");
    refused(&inst, "cat /etc/loop-control");
    // A node that exists in /dev (made from the host): the device cgroup refuses to open it.
    for (name, minor) in [("kvm", 232), ("loop-control", 237)] {
        let path = inst.root().join("dev").join(name);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mknod on a NUL-terminated path.
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(10, minor)) },
            0
        );
        let got = attempt(&inst, &format!("( : </dev/{name} )"));
        assert!(got.contains("refused"), "{name}: {got}");
        assert!(got.contains("Operation not permitted"), "{name}: {got}");
    }
    // The default devices work.
    let out = sh(
        &inst,
        "echo x > /dev/null && head -c 3 /dev/urandom | wc -c && head -c 2 /dev/zero | wc -c",
    );
    assert_eq!(stdout(&out), "3\n2", "{out:?}");
    inst.terminate().unwrap();
}

#[test]
fn mounts_namespaces_and_privilege_gains_are_refused() {
    let f = Fixture::new();
    let inst = f.launch(f.spec(&id("syscalls")));
    refused(&inst, "mount -t tmpfs none /mnt");
    refused(&inst, "mount -t proc proc /mnt");
    refused(&inst, "mount --bind / /mnt");
    refused(&inst, "umount /proc");
    refused(&inst, "unshare -U true");
    refused(&inst, "unshare -U -r true");
    refused(&inst, "unshare -n true");
    refused(&inst, "unshare -m true");
    refused(&inst, "nsenter -t 1 -m true");
    refused(&inst, "nsenter --net=/proc/1/ns/net true");
    refused(&inst, "nsenter --user=/proc/self/ns/user true");
    refused(&inst, "chroot / true && pivot_root / /mnt");
    // The filter and NoNewPrivs are on, with runc's capabilities.
    let out = sh(&inst, "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status");
    let status: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(status, vec!["NoNewPrivs: 1", "Seccomp: 2"], "{out:?}");
    // Ordinary work still runs: processes, pipes, files, signals.
    let out = sh(
        &inst,
        "mkdir -p /root/a && echo hi | tee /root/a/b | wc -c && (sleep 5 & kill $!) && chown 1:1 /root/a/b && ls -n /root/a/b | awk '{print $3}'",
    );
    assert_eq!(stdout(&out), "3\n1", "{out:?}");
    inst.terminate().unwrap();
}

#[test]
fn host_paths_are_out_of_reach() {
    let f = Fixture::new();
    let marker = std::env::temp_dir().join(format!("kiln-host-secret-{}", std::process::id()));
    std::fs::write(&marker, "secret").unwrap();
    let inst = f.launch(f.spec(&id("paths")));
    let m = marker.display();
    refused(&inst, &format!("cat {m}"));
    refused(&inst, &format!("cat /proc/1/root{m}"));
    refused(&inst, &format!("cat /proc/self/root{m}"));
    refused(&inst, &format!("cat /proc/1/cwd{m}"));
    refused(&inst, &format!("ls /proc/*/root{m}"));
    // Only the instance's processes are in its /proc: PID 1 is its own.
    let out = sh(&inst, "cat /proc/1/cmdline | tr '\\0' ' '");
    assert!(stdout(&out).starts_with("sh -c"), "{out:?}");
    inst.terminate().unwrap();
    std::fs::remove_file(&marker).unwrap();
}

/// A network namespace standing for "the internet": a veth pair from the host to a namespace
/// this test makes, with a TCP server in it. Traffic never leaves namespaces the test made.
struct Outside {
    ns: String,
    host_if: String,
    address: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

impl Outside {
    fn new() -> Outside {
        let pid = std::process::id();
        let n = (pid % 250 + 1) as u8;
        let ns = format!("kiln-test-out-{pid}");
        let host_if = format!("kto{pid}");
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("198.18.{n}.1/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("198.18.{n}.2/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        Outside {
            ns,
            host_if,
            address: Ipv4Addr::new(198, 18, n, 2),
        }
    }

    /// A listener inside the namespace (made by a thread that joined it).
    fn listen(&self) -> TcpListener {
        let path = format!("/run/netns/{}", self.ns);
        let address = self.address;
        std::thread::spawn(move || {
            let ns = std::fs::File::open(path).unwrap();
            // SAFETY: setns on an open namespace file; affects this thread only.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            TcpListener::bind((address, 0)).unwrap()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// The instance's gateway: the host end of its veth pair.
fn gateway(inst: &Instance) -> String {
    let out = sh(inst, "ip route | awk '/default/ {print $3}'");
    let gw = stdout(&out);
    assert!(gw.starts_with("10.213."), "{out:?}");
    gw
}

/// The host's own IPv4 addresses (`ip -4 addr`, read on the host).
fn host_addresses() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|a| a.split('/').next())
        // 127.0.0.1 inside is the instance's own loopback: tried on its own.
        .filter(|a| {
            !a.starts_with("127.") && !a.starts_with("10.213.") && !a.starts_with("198.18.")
        })
        .map(str::to_string)
        .collect()
}

/// Connects from the instance; answers what `nc` said.
fn connect(inst: &Instance, host: &str, port: u16) -> String {
    attempt(
        inst,
        &format!("echo ping | timeout 5 nc -w 3 {host} {port} | grep -q pong"),
    )
}

/// Answers `pong` to every connection, from a thread, until the process ends.
fn serve(listener: TcpListener) {
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 5];
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"pong\n");
        }
    });
}

fn with_network(f: &Fixture, name: &str, sys: RealPrivileged) -> Instance {
    let mut spec: InstanceSpec = f.spec(&id(name));
    spec.network = true;
    Instance::launch(Arc::new(sys), &f.base(), spec).unwrap()
}

#[test]
fn an_instance_without_network_has_only_a_loopback() {
    let f = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    serve(listener);
    let inst = f.launch(f.spec(&id("nonet")));
    let out = sh(&inst, "ls /sys/class/net | tr '\\n' ' '");
    assert_eq!(stdout(&out), "lo", "only a loopback device");
    refused(&inst, &format!("echo | nc -w 2 127.0.0.1 {port}"));
    inst.terminate().unwrap();
}

#[test]
fn an_instance_with_network_reaches_out_but_never_the_host() {
    let f = Fixture::new();
    let outside = Outside::new();
    let out_listener = outside.listen();
    let out_port = out_listener.local_addr().unwrap().port();
    serve(out_listener);
    // The host's loopback (where Kiln's API listens).
    let lo_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let lo_port = lo_listener.local_addr().unwrap().port();
    serve(lo_listener);

    let inst = with_network(&f, "net", RealPrivileged::new());
    let netns = inst.dir().join("netns");
    assert!(netns.exists(), "no namespace file");
    let out = sh(&inst, "ls /sys/class/net | tr '\\n' ' '");
    assert_eq!(stdout(&out), "eth0 lo", "its own devices, not the host's");
    let gw = gateway(&inst);
    // A listener on the gateway address: the host end of the instance's own veth.
    let gw_listener = TcpListener::bind((gw.as_str(), 0)).unwrap();
    let gw_port = gw_listener.local_addr().unwrap().port();
    serve(gw_listener);

    // Out through NAT: the outside server answers.
    let got = connect(&inst, &outside.address.to_string(), out_port);
    assert!(got.ends_with("ALLOWED"), "no outbound access: {got}");
    // Never the host: its loopback is not the instance's, the gateway and every other host
    // address drop the packets (a timeout, not a refusal: nothing on the host answers).
    refused(&inst, &format!("echo | nc -w 2 127.0.0.1 {lo_port}"));
    let got = connect(&inst, &gw, gw_port);
    assert!(got.ends_with("refused"), "reached the gateway: {got}");
    for address in host_addresses() {
        let got = connect(&inst, &address, lo_port);
        assert!(got.ends_with("refused"), "reached {address}: {got}");
        assert!(
            !got.contains("Connection refused"),
            "the host answered on {address} (a packet reached it): {got}"
        );
    }
    inst.terminate().unwrap();
    assert!(!netns.exists());
}

#[test]
fn host_access_is_the_operators_choice() {
    let f = Fixture::new();
    let inst = with_network(&f, "hostnet", RealPrivileged::new().with_host_access(true));
    let gw = gateway(&inst);
    let gw_listener = TcpListener::bind((gw.as_str(), 0)).unwrap();
    let gw_port = gw_listener.local_addr().unwrap().port();
    serve(gw_listener);
    let got = connect(&inst, &gw, gw_port);
    assert!(got.ends_with("ALLOWED"), "host access was allowed: {got}");
    inst.terminate().unwrap();
}

#[test]
fn instance_networks_are_removed_with_their_instance() {
    let f = Fixture::new();
    let a = with_network(&f, "net-a", RealPrivileged::new());
    let b = with_network(&f, "net-b", RealPrivileged::new());
    let (ga, gb) = (gateway(&a), gateway(&b));
    assert_ne!(ga, gb, "two instances share a network");
    // One instance cannot reach the other.
    let peer = {
        let out = sh(
            &b,
            "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1",
        );
        stdout(&out)
    };
    // Dropped on the way (a timeout), where the peer's kernel would answer with a refusal.
    let got = attempt(&a, &format!("echo | nc -w 2 {peer} 9"));
    assert!(
        got.ends_with("refused") && !got.contains("Connection refused"),
        "reached {peer}: {got}"
    );
    let host_end = |inst: &Instance| {
        std::fs::read_to_string(inst.dir().join("network"))
            .unwrap()
            .trim()
            .to_string()
    };
    let link = format!("/sys/class/net/kn{}", host_end(&a));
    assert!(std::path::Path::new(&link).exists());
    a.terminate().unwrap();
    assert!(!std::path::Path::new(&link).exists(), "{link} is left");
    b.terminate().unwrap();
}
