//! [`RealPrivileged`]: the privileged calls made for real, as root. Mounts, device nodes, the
//! instance's cgroups (v2, or v1 with a devices controller), user and network namespaces, and
//! [`Privileged::isolate`] through the `pre_exec` hook of [`super::isolation`].

use super::calls::{check, cstring, raw_mount, tmpfs_options};
use super::isolation::Hook;
use super::mountinfo::parse_mounts_under;
use super::policy::{device_rules, CAP_MKNOD, DEFAULT_CAPABILITIES};
use super::{IsolationPlan, Privileged, SysError, SysResult};
use crate::limits::Limits;
use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set once this kernel refused an overlay's `volatile` option (before Linux 5.10).
///
/// An instance's overlay is mounted `volatile`: the kernel skips every sync of its writable
/// layer (a component's `fsync`, and the writeback of the whole upper filesystem that
/// unmounting an overlay otherwise waits for: 35 ms after the reference build's 50 MB file).
/// Nothing needs that layer to survive a crash: a build that dies with the machine is failed
/// and its instance removed, never mounted again; the snapshot writes (and syncs) the layer it
/// makes of it.
static VOLATILE_REFUSED: AtomicBool = AtomicBool::new(false);

/// The privileged calls, made for real. Needs root.
#[derive(Debug, Clone)]
pub struct RealPrivileged {
    cgroup_root: PathBuf,
    /// Name of the directory under each hierarchy that holds Kiln's cgroups.
    cgroup_parent: String,
    /// Whether instances with networking may reach the host's own addresses.
    host_access: bool,
    /// The first host id of the range an instance's user namespace maps its ids to; `None`
    /// runs root builds as host root.
    userns_base: Option<u32>,
}

impl Default for RealPrivileged {
    fn default() -> Self {
        RealPrivileged {
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "kiln".into(),
            host_access: false,
            userns_base: userns_base_from_env(),
        }
    }
}

/// The v1 controllers an instance uses; memory, pids and devices are required.
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "devices"];

const CPU_PERIOD_US: u64 = 100_000;

impl RealPrivileged {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets instances with networking reach the host's own addresses (`kiln serve
    /// --instance-host-access`); by default every packet from an instance to the host is
    /// dropped.
    pub fn with_host_access(mut self, allowed: bool) -> Self {
        self.host_access = allowed;
        self
    }

    /// Runs root builds in a user namespace mapping their ids to `base..base+65536`
    /// (`Some`), or as host root (`None`: what `KILN_BUILD_USERNS=off` selects).
    pub fn with_user_namespace(mut self, base: Option<u32>) -> Self {
        self.userns_base = base;
        self
    }

    /// Whether the cgroup mount is a pure cgroup v2 hierarchy.
    fn unified_only(&self) -> bool {
        self.cgroup_root.join("cgroup.controllers").exists()
    }

    fn write(path: &Path, value: &str) -> SysResult<()> {
        std::fs::write(path, value).map_err(|e| SysError::new("write", path, e))
    }

    fn mkdir_p(path: &Path) -> SysResult<()> {
        std::fs::create_dir_all(path).map_err(|e| SysError::new("mkdir", path, e))
    }

    fn create_v2(&self, dir: &Path, limits: &Limits) -> SysResult<()> {
        let parent = self.cgroup_root.join(&self.cgroup_parent);
        // Controllers must be enabled on the way down; the root may refuse some (then the
        // limit files below are missing and writing them fails with that path).
        let _ = Self::write(
            &self.cgroup_root.join("cgroup.subtree_control"),
            "+memory +pids +cpu",
        );
        Self::mkdir_p(&parent)?;
        let _ = Self::write(&parent.join("cgroup.subtree_control"), "+memory +pids +cpu");
        Self::mkdir_p(dir)?;
        Self::write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
        let _ = Self::write(&dir.join("memory.swap.max"), "0");
        Self::write(&dir.join("pids.max"), &limits.pids_max.to_string())?;
        let quota = u64::from(limits.vcpus) * CPU_PERIOD_US;
        let _ = Self::write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"));
        // No devices controller in v2: the eBPF device filter is the only allow-list.
        crate::devices::attach(dir)
    }

    fn create_v1(&self, dirs: &[PathBuf], limits: &Limits) -> SysResult<()> {
        for dir in dirs {
            Self::mkdir_p(dir)?;
            let controller = dir
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .and_then(OsStr::to_str)
                .unwrap_or("");
            match controller {
                "memory" => {
                    Self::write(
                        &dir.join("memory.limit_in_bytes"),
                        &limits.memory_bytes.to_string(),
                    )?;
                    // Present only with swap accounting; without it there is nothing to cap.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        Self::write(&memsw, &limits.memory_bytes.to_string())?;
                    }
                }
                "pids" => Self::write(&dir.join("pids.max"), &limits.pids_max.to_string())?,
                "devices" => {
                    // Deny everything, then allow the default devices (read, write, mknod).
                    Self::write(&dir.join("devices.deny"), "a")?;
                    for rule in device_rules() {
                        Self::write(&dir.join("devices.allow"), &rule)?;
                    }
                }
                "cpu" => {
                    let quota = u64::from(limits.vcpus) * CPU_PERIOD_US;
                    Self::write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    Self::write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                // The cgroup2 directory of a hybrid layout, for cgroup.kill; the eBPF device
                // filter there doubles the v1 device cgroup where the kernel allows it.
                _ => {
                    let _ = crate::devices::attach(dir);
                }
            }
        }
        Ok(())
    }
}

/// `KILN_BUILD_USERNS`: `off` runs root builds as host root; a number is the first host id
/// of the instances' range; unset (or anything else) is [`crate::userns::DEFAULT_BASE`].
fn userns_base_from_env() -> Option<u32> {
    match std::env::var("KILN_BUILD_USERNS")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        Some("off") | Some("0") => None,
        Some(n) => Some(n.parse().unwrap_or(crate::userns::DEFAULT_BASE)),
        None => Some(crate::userns::DEFAULT_BASE),
    }
}

impl Privileged for RealPrivileged {
    fn preflight(&self) -> Result<(), String> {
        crate::detect::require_root()
    }

    /// On a pure cgroup v2 host the device allow-list is an eBPF program ([`crate::devices`]);
    /// commands also lose CAP_MKNOD there, so they cannot make a device node at all (the root
    /// filesystem is mounted `nodev` anyway, so nodes an image brings do not open).
    fn capabilities(&self) -> Vec<u32> {
        if self.unified_only() {
            DEFAULT_CAPABILITIES
                .iter()
                .copied()
                .filter(|&c| c != CAP_MKNOD)
                .collect()
        } else {
            DEFAULT_CAPABILITIES.to_vec()
        }
    }

    fn network_create(&self, dir: &Path) -> SysResult<Option<PathBuf>> {
        crate::network::create(dir, self.host_access).map(Some)
    }

    fn user_namespace(&self, dir: &Path) -> SysResult<Option<(PathBuf, u32)>> {
        let Some(base) = self.userns_base else {
            return Ok(None);
        };
        let pin = dir.join(crate::userns::PIN);
        crate::userns::create(&pin, base)?;
        Ok(Some((pin, base)))
    }

    fn mount_idmapped(&self, src: &Path, dst: &Path, userns: &Path) -> SysResult<()> {
        crate::userns::mount_idmapped(src, dst, userns)
    }

    fn network_remove(&self, dir: &Path) -> SysResult<()> {
        crate::network::remove(dir)
    }

    fn mount_overlay(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> SysResult<()> {
        if lowers.is_empty() {
            return Err(SysError::invalid(
                "mount overlay",
                target,
                "an overlay needs at least one lower directory",
            ));
        }
        let mut paths = Vec::new();
        for p in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
            let text = p.to_str().ok_or_else(|| {
                SysError::invalid("mount overlay", p, "the path is not valid UTF-8")
            })?;
            if text.contains([',', ':', '\\']) {
                return Err(SysError::invalid(
                    "mount overlay",
                    p,
                    "overlay layer paths may not contain `,`, `:` or `\\`",
                ));
            }
            paths.push(text);
        }
        let (upper_text, work_text) = (paths[lowers.len()], paths[lowers.len() + 1]);
        // redirect_dir and metacopy off: the upper dir must hold plain files and whiteouts only,
        // so that kiln-image can turn it into an OCI layer (it refuses redirects and metacopy).
        let data = format!(
            "lowerdir={},upperdir={upper_text},workdir={work_text},redirect_dir=off,metacopy=off",
            paths[..lowers.len()].join(":")
        );
        // nodev: a device node an image brings (or a build makes outside /dev) does not open;
        // only the instance's /dev tmpfs holds usable nodes.
        let mount = |data: &str| {
            raw_mount(
                "mount overlay",
                "overlay",
                target,
                Some("overlay"),
                libc::MS_NODEV,
                Some(data),
            )
        };
        if !VOLATILE_REFUSED.load(Ordering::Relaxed) {
            match mount(&format!("{data},volatile")) {
                Err(e) if e.source.raw_os_error() == Some(libc::EINVAL) => {
                    // A kernel before 5.10 has no `volatile`: mount as before, and, once that
                    // works (so the refusal was the option's, not the layers'), do not ask
                    // again.
                    let plain = mount(&data);
                    if plain.is_ok() {
                        VOLATILE_REFUSED.store(true, Ordering::Relaxed);
                    }
                    return plain;
                }
                done => return done,
            }
        }
        mount(&data)
    }

    fn mount_tmpfs(&self, target: &Path, options: &str) -> SysResult<()> {
        let (flags, data) = tmpfs_options(options);
        raw_mount(
            "mount tmpfs",
            "tmpfs",
            target,
            Some("tmpfs"),
            flags,
            Some(&data),
        )
    }

    fn bind_mount(&self, src: &Path, dst: &Path, readonly: bool) -> SysResult<()> {
        let source = src
            .to_str()
            .ok_or_else(|| SysError::invalid("bind mount", src, "the path is not valid UTF-8"))?;
        raw_mount("bind mount", source, dst, None, libc::MS_BIND, None)?;
        if readonly {
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
            if let Err(e) = raw_mount("remount read-only", "none", dst, None, flags, None) {
                let _ = self.unmount(dst);
                return Err(e);
            }
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> SysResult<()> {
        let c = cstring("unmount", target)?;
        // SAFETY: `c` is a NUL-terminated path alive for both calls.
        if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()), // not (or no longer) mounted
            Some(libc::EBUSY) => {
                let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                check("unmount (detach)", target, rc)
            }
            _ => Err(SysError::new("unmount", target, err)),
        }
    }

    fn mknod_char(&self, path: &Path, major: u32, minor: u32, mode: u32) -> SysResult<()> {
        let c = cstring("mknod", path)?;
        let dev = libc::makedev(major, minor);
        // SAFETY: `c` is a NUL-terminated path alive for both calls.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | (mode & 0o7777), dev) };
        check("mknod", path, rc)?;
        // mknod applies the umask; the mode is meant as given.
        let rc = unsafe { libc::chmod(c.as_ptr(), mode & 0o7777) };
        check("chmod", path, rc)
    }

    fn cgroup_paths(&self, name: &str) -> Vec<PathBuf> {
        if self.unified_only() {
            return vec![self.cgroup_root.join(&self.cgroup_parent).join(name)];
        }
        let mut dirs: Vec<PathBuf> = V1_CONTROLLERS
            .iter()
            .map(|c| self.cgroup_root.join(c))
            .filter(|c| c.is_dir())
            .map(|c| c.join(&self.cgroup_parent).join(name))
            .collect();
        let unified = self.cgroup_root.join("unified");
        if unified.join("cgroup.procs").exists() {
            dirs.push(unified.join(&self.cgroup_parent).join(name));
        }
        dirs
    }

    fn cgroup_create(&self, name: &str, limits: &Limits) -> SysResult<Vec<PathBuf>> {
        let dirs = self.cgroup_paths(name);
        if self.unified_only() {
            self.create_v2(&dirs[0], limits)?;
        } else {
            for required in ["memory", "pids", "devices"] {
                let hierarchy = self.cgroup_root.join(required);
                if !hierarchy.is_dir() {
                    return Err(SysError::invalid(
                        "cgroup create",
                        hierarchy,
                        "no cgroup v1 hierarchy for this controller and no cgroup v2 mount",
                    ));
                }
            }
            self.create_v1(&dirs, limits)?;
        }
        Ok(dirs)
    }

    fn cgroup_add(&self, dirs: &[PathBuf], pid: u32) -> SysResult<()> {
        for dir in dirs {
            Self::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn cgroup_kill(&self, dirs: &[PathBuf]) -> SysResult<()> {
        let dirs: Vec<&PathBuf> = dirs.iter().filter(|d| d.is_dir()).collect();
        for dir in &dirs {
            let kill = dir.join("cgroup.kill");
            if kill.exists() {
                let _ = Self::write(&kill, "1");
            }
        }
        // cgroup.kill is asynchronous and v1 has none: SIGKILL what is listed until nothing is.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut alive = 0;
            for dir in &dirs {
                let procs = dir.join("cgroup.procs");
                let text = match std::fs::read_to_string(&procs) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(SysError::new("read", procs, e)),
                };
                for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    alive += 1;
                    // SAFETY: kill(2) takes plain integers.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if alive == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SysError::new(
                    "cgroup kill",
                    dirs.first().map_or_else(PathBuf::new, |d| d.to_path_buf()),
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{alive} processes still alive after 10 s of SIGKILL"),
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn cgroup_remove(&self, dirs: &[PathBuf]) -> SysResult<()> {
        for dir in dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // Killed processes leave the cgroup a moment after they are gone from
                    // cgroup.procs.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(SysError::new("cgroup remove", dir, e)),
                }
            }
        }
        Ok(())
    }

    fn mounts_under(&self, dir: &Path) -> SysResult<Vec<PathBuf>> {
        let info = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(info).map_err(|e| SysError::new("read", info, e))?;
        Ok(parse_mounts_under(&text, dir))
    }

    fn isolate(&self, cmd: &mut Command, plan: &IsolationPlan) {
        match Hook::new(plan) {
            Ok(hook) => {
                // SAFETY: the hook only makes async-signal-safe calls on data prepared here.
                unsafe { cmd.pre_exec(move || hook.run()) };
            }
            Err(_) => {
                // A path with a NUL byte: fail the spawn (EINVAL) rather than run the command
                // unisolated. Instance paths are checked at launch, so this does not happen.
                // SAFETY: the hook makes no call at all.
                unsafe { cmd.pre_exec(|| Err(io::Error::from_raw_os_error(libc::EINVAL))) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_cgroup_allows_runcs_default_devices_only() {
        let rules = device_rules();
        assert!(rules.contains(&"c 1:3 rwm".to_string()));
        assert!(rules.contains(&"c 136:* rwm".to_string()));
        assert!(!rules
            .iter()
            .any(|r| r.starts_with("c 10:") || r.starts_with('b')));
        assert!(V1_CONTROLLERS.contains(&"devices"));
    }

    #[test]
    fn without_a_device_controller_commands_lose_cap_mknod() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        let sys = RealPrivileged {
            cgroup_root: v2.path().to_path_buf(),
            ..RealPrivileged::default()
        };
        assert!(!sys.capabilities().contains(&CAP_MKNOD));
        let hybrid = tempfile::tempdir().unwrap();
        let sys = RealPrivileged {
            cgroup_root: hybrid.path().to_path_buf(),
            ..RealPrivileged::default()
        };
        assert_eq!(sys.capabilities(), DEFAULT_CAPABILITIES.to_vec());
    }
}
