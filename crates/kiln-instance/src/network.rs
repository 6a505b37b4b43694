//! Networks of instances that may use the network (as root).
//!
//! An instance whose infrastructure configuration gives it a subnet or security groups gets a
//! network namespace of its own, never the host's:
//!
//! - the namespace is made by a short-lived thread (`unshare(CLONE_NEWNET)`) and kept by a bind
//!   mount of its `/proc/thread-self/ns/net` on `<instance dir>/netns`, which every command of
//!   the instance joins (`setns`), and which teardown unmounts with the instance's other mounts;
//! - a veth pair links it to the host: `kn<slot>` on the host with `10.213.<slot>.1/30`-style
//!   addresses ([`SUBNET`], one `/30` per instance, the slot chosen under a lock file so that
//!   concurrent launches, also of other processes, do not collide), `eth0` inside with the
//!   other address and a default route through the host end;
//! - the host forwards (`net.ipv4.ip_forward = 1`, as Docker sets it) and masquerades what
//!   leaves through another interface, in an nftables table of Kiln's own
//!   (`inet kiln_instances`), which also **drops every packet from an instance to the host
//!   itself** (hook `input`: all of the host's addresses, the veth's gateway address included,
//!   IPv4 and IPv6), connections into an instance and between instances, and packets to
//!   link-local addresses (a cloud's metadata service), unless the operator allowed host access
//!   (`kiln serve --instance-host-access`: the instance's interface joins the `host_access` set).
//!
//! The work is done with `ip` (iproute2), `nsenter` (util-linux) and `nft` (nftables), which
//! every distribution packages; `<instance dir>/network` records the slot for teardown, which
//! deletes the host end (the other end goes with it). The nftables table stays while any
//! instance network exists and is removed with the last one.

use crate::sys::{SysError, SysResult};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The addresses instance networks use: one `/30` per instance.
pub const SUBNET: &str = "10.213.0.0/16";
/// The host ends' names start with this.
pub const HOST_PREFIX: &str = "kn";
const SLOTS: u32 = 1 << 14;
const TABLE: &str = "kiln_instances";
const LOCK: &str = "/run/kiln-instance-network.lock";
/// The file in the instance directory that records the slot.
const RECORD: &str = "network";
/// The namespace file in the instance directory.
const NETNS: &str = "netns";

/// The host end, the host's address and the instance's address of slot `slot`.
pub fn slot_addresses(slot: u32) -> (String, String, String) {
    let base = slot * 4;
    let (b, c) = (base >> 8, base & 0xff);
    (
        format!("{HOST_PREFIX}{slot}"),
        format!("10.213.{b}.{}", c + 1),
        format!("10.213.{b}.{}", c + 2),
    )
}

/// The nftables table (see the module documentation).
fn ruleset() -> String {
    format!(
        r#"table inet {TABLE} {{
    set host_access {{ type ifname; }}
    chain input {{
        type filter hook input priority filter - 10; policy accept;
        iifname "{HOST_PREFIX}*" iifname @host_access accept
        iifname "{HOST_PREFIX}*" drop
    }}
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        oifname "{HOST_PREFIX}*" ct state established,related accept
        oifname "{HOST_PREFIX}*" drop
        iifname "{HOST_PREFIX}*" ip daddr 169.254.0.0/16 drop
        iifname "{HOST_PREFIX}*" ip6 daddr fe80::/10 drop
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {SUBNET} oifname != "{HOST_PREFIX}*" masquerade
    }}
}}
"#
    )
}

fn fail(op: &'static str, path: &Path, message: String) -> SysError {
    SysError::new(op, path, io::Error::other(message))
}

/// Runs a program; its exit status and stderr become the error.
fn run(
    op: &'static str,
    about: &Path,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> SysResult<()> {
    use std::io::Write;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        SysError::new(
            op,
            about,
            io::Error::new(e.kind(), format!("running {program}: {e}")),
        )
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| SysError::new(op, about, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| SysError::new(op, about, e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(fail(
        op,
        about,
        format!(
            "`{program} {}` {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}

/// Holds the lock file while instance networks are made or removed.
struct Lock(std::fs::File);

impl Lock {
    fn take() -> SysResult<Lock> {
        let path = Path::new(LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| SysError::new("lock", path, e))?;
        // SAFETY: flock on a descriptor owned by `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(SysError::new("lock", path, io::Error::last_os_error()));
        }
        Ok(Lock(file))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor owned by the file.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The slots whose host ends exist now.
fn used_slots() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(HOST_PREFIX)?
                .parse()
                .ok()
        })
        .collect()
}

/// A free slot, starting from one derived from the instance's directory.
fn free_slot(dir: &Path) -> SysResult<u32> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    let start = (h.finish() % u64::from(SLOTS)) as u32;
    let used = used_slots();
    (0..SLOTS)
        .map(|i| (start + i) % SLOTS)
        .find(|s| !used.contains(s))
        .ok_or_else(|| {
            fail(
                "network create",
                dir,
                format!("all {SLOTS} instance networks are in use"),
            )
        })
}

/// Makes the namespace and bind-mounts it on `file` (see the module documentation).
fn new_namespace(file: &Path) -> SysResult<()> {
    std::fs::write(file, b"").map_err(|e| SysError::new("network create", file, e))?;
    let target = crate::sys::cstring("network create", file)?;
    // A thread of its own: unshare changes the calling thread's namespace only, and the
    // thread ends right after.
    let made = std::thread::spawn(move || -> io::Result<()> {
        // SAFETY: plain system calls on NUL-terminated strings alive for the calls.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::mount(
                c"/proc/thread-self/ns/net".as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| {
        fail(
            "network create",
            file,
            "the namespace thread panicked".into(),
        )
    })?;
    made.map_err(|e| SysError::new("network create", file, e))
}

/// Gives the instance in `dir` its network; answers the namespace file.
pub fn create(dir: &Path, host_access: bool) -> SysResult<PathBuf> {
    const OP: &str = "network create";
    let netns = dir.join(NETNS);
    let _lock = Lock::take()?;
    // An instance whose root is not host root gets a network namespace its user namespace
    // owns, so that its commands can mount a sysfs showing its devices.
    let userns = dir.join(crate::userns::PIN);
    if userns.exists() {
        crate::userns::create_owned_netns(&userns, &netns)?;
    } else {
        new_namespace(&netns)?;
    }
    let slot = free_slot(dir)?;
    let (host, gateway, address) = slot_addresses(slot);
    // Recorded before the link exists, so that teardown removes a half-made network too.
    let record = dir.join(RECORD);
    std::fs::write(&record, format!("{slot}\n")).map_err(|e| SysError::new(OP, &record, e))?;
    let ns = netns
        .to_str()
        .ok_or_else(|| SysError::invalid(OP, &netns, "the path is not valid UTF-8"))?;
    let ns_arg = format!("--net={ns}");
    let inside = |args: &[&str]| -> SysResult<()> {
        let mut all = vec![ns_arg.as_str(), "ip"];
        all.extend_from_slice(args);
        run(OP, dir, "nsenter", &all, None)
    };
    // iproute2 reads a `netns` argument with a `/` as a namespace file.
    run(
        OP,
        dir,
        "ip",
        &[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ],
        None,
    )?;
    run(
        OP,
        dir,
        "ip",
        &["addr", "add", &format!("{gateway}/30"), "dev", &host],
        None,
    )?;
    run(OP, dir, "ip", &["link", "set", &host, "up"], None)?;
    inside(&["link", "set", "lo", "up"])?;
    inside(&["addr", "add", &format!("{address}/30"), "dev", "eth0"])?;
    inside(&["link", "set", "eth0", "up"])?;
    inside(&["route", "add", "default", "via", &gateway])?;
    let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
    if std::fs::read_to_string(forward)
        .map(|s| s.trim() != "1")
        .unwrap_or(true)
    {
        std::fs::write(forward, "1").map_err(|e| SysError::new(OP, forward, e))?;
    }
    if run(OP, dir, "nft", &["list", "table", "inet", TABLE], None).is_err() {
        run(OP, dir, "nft", &["-f", "-"], Some(&ruleset()))?;
    }
    if host_access {
        let element = format!("{{ {host} }}");
        run(
            OP,
            dir,
            "nft",
            &["add", "element", "inet", TABLE, "host_access", &element],
            None,
        )?;
    }
    Ok(netns)
}

/// Removes the host end of the instance in `dir` (and the table with the last network).
pub fn remove(dir: &Path) -> SysResult<()> {
    const OP: &str = "network remove";
    let record = dir.join(RECORD);
    let slot: u32 = match std::fs::read_to_string(&record) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| SysError::invalid(OP, &record, "not a slot number"))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SysError::new(OP, &record, e)),
    };
    let (host, _, _) = slot_addresses(slot);
    let _lock = Lock::take()?;
    let link = Path::new("/sys/class/net").join(&host);
    if link.exists() {
        // The kernel also deletes the pair when it frees the namespace (teardown unmounted its
        // file just before), so the link may go while this runs.
        if let Err(e) = run(OP, dir, "ip", &["link", "del", &host], None) {
            if link.exists() {
                return Err(e);
            }
        }
    }
    let element = format!("{{ {host} }}");
    let _ = run(
        OP,
        dir,
        "nft",
        &["delete", "element", "inet", TABLE, "host_access", &element],
        None,
    );
    if used_slots().is_empty() {
        let _ = run(OP, dir, "nft", &["delete", "table", "inet", TABLE], None);
    }
    std::fs::remove_file(&record).map_err(|e| SysError::new(OP, &record, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_slash_30s() {
        assert_eq!(
            slot_addresses(0),
            ("kn0".into(), "10.213.0.1".into(), "10.213.0.2".into())
        );
        assert_eq!(
            slot_addresses(65),
            ("kn65".into(), "10.213.1.5".into(), "10.213.1.6".into())
        );
        let (name, _, last) = slot_addresses(SLOTS - 1);
        assert_eq!(last, "10.213.255.254");
        assert!(name.len() <= 15, "interface names are at most 15 bytes");
    }

    #[test]
    fn the_ruleset_drops_what_goes_to_the_host() {
        let r = ruleset();
        assert!(r.contains("hook input"));
        assert!(r.contains(r#"iifname "kn*" drop"#));
        assert!(r.contains("masquerade"));
    }
}
