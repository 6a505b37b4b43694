//! The lifecycle of a build instance: launch, run commands, terminate, reap.
//!
//! An instance lives in one directory, `<base_dir>/<id>/`:
//!
//! ```text
//! instance.json   what a later process needs to clean up (owner, cgroups)
//! upper/          the writable layer: everything the build changed
//! work/           overlayfs's scratch directory
//! merged/         the root filesystem: the overlay of the lowers and upper/
//! empty/          an empty lower, for an instance launched with no layers
//! userns          its user namespace, pinned (root-mode instances where the kernel allows)
//! lower/<n>/      the lowers, idmapped through that namespace
//! ```
//!
//! Where the kernel allows it, root in a root-mode instance is not host root: see
//! [`crate::userns`]. [`Instance::launch`] tries that first (a user namespace, idmapped lowers,
//! the overlay, and a command started in the namespace up to right before `exec`); if any step
//! fails, it unmounts what it made, logs the reason once per process and launches the instance
//! with host root as root, as before.
//!
//! [`Instance::launch`] creates the directory and writes `instance.json` *before* it mounts or
//! creates anything, so whatever happens next (a failed step, a crash), the directory and the
//! state file say there is something to undo. It then mounts the overlay, gives the root a
//! minimal `/dev` (a tmpfs with `null`, `zero`, `full`, `random`, `urandom`, `tty`, the
//! `/proc/self/fd` links and a `/dev/shm` tmpfs) and creates the cgroups. If any step fails, it
//! tears down what it did and answers the step's error.
//!
//! Commands start isolated through the [`Target`] implementation: each one gets fresh
//! namespaces, `/proc` and the hostname (see [`crate::sys`]). Mounts a command makes stay in its
//! own mount namespace, so the host only ever sees the overlay and the two tmpfs mounts.
//!
//! Teardown does not trust any bookkeeping of what was mounted: it kills every process in the
//! instance's cgroups (and waits until they are gone, since they hold the mounts busy),
//! unmounts every mount point the kernel lists below the instance's directory, most recent
//! first (lazily detaching what stays busy), removes the cgroups, and only when nothing is
//! mounted below the directory any more, removes it. So it works on an instance in any state,
//! half-launched or left behind by a process that died, and it never deletes through a mount.
//! [`reap`] runs it for every instance whose owner process is gone: call it when Kiln starts.

use crate::limits::Limits;
use crate::sys::{IsolationPlan, Privileged};
use crate::Error;
use kiln_toe::target::{resolve_in_canonical_root, Target, TargetError};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The `PATH` commands in an instance get.
pub const INSTANCE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const STATE_FILE: &str = "instance.json";

/// What to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Names the instance's directory and cgroups: letters, digits, `.`, `_`, `-`, at most 64
    /// characters, not starting with `.`.
    pub id: String,
    /// The read-only layers, **top-most first** (as overlayfs's `lowerdir` lists them): a path
    /// in an earlier layer hides the same path in a later one. May be empty.
    pub lowers: Vec<PathBuf>,
    pub limits: Limits,
    /// Whether commands have a network: a namespace of the instance's own with outbound NAT
    /// and no way to the host ([`crate::network`]; rootless instances share the host's).
    /// Without it they only have a loopback device that is down.
    pub network: bool,
    pub hostname: String,
}

/// What `instance.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct State {
    id: String,
    /// The process that launched the instance, and its start time (clock ticks after boot,
    /// `/proc/<pid>/stat` field 22) so a reused pid is not mistaken for it.
    owner_pid: u32,
    owner_start: Option<u64>,
    cgroups: Vec<PathBuf>,
    hostname: String,
    network: bool,
    /// The instance's network namespace file, when it has networking.
    #[serde(default)]
    netns: Option<PathBuf>,
    /// The instance's user namespace file and the first host id of its range, when its root
    /// is not host root ([`crate::userns`]).
    #[serde(default)]
    userns: Option<PathBuf>,
    #[serde(default)]
    id_base: Option<u32>,
}

/// A launched instance. Terminate it with [`Instance::terminate`]; dropping it tears it down
/// too, ignoring errors.
pub struct Instance {
    sys: Arc<dyn Privileged>,
    dir: PathBuf,
    merged: PathBuf,
    /// Where the host sees the root filesystem ([`Privileged::host_root`]).
    root: PathBuf,
    cgroups: Vec<PathBuf>,
    plan: IsolationPlan,
    /// The first host id of the instance's user namespace range, when it has one.
    id_base: Option<u32>,
    done: bool,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("dir", &self.dir)
            .field("cgroups", &self.cgroups)
            .field("plan", &self.plan)
            .finish()
    }
}

fn check_id(id: &str) -> Result<(), Error> {
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !id_ok {
        return Err(Error::Spec(format!(
            "id `{id}` must be 1-64 letters, digits, `.`, `_` or `-`, not starting with `.`"
        )));
    }
    Ok(())
}

fn check_spec(spec: &InstanceSpec) -> Result<(), Error> {
    check_id(&spec.id)?;
    let host_ok = !spec.hostname.is_empty()
        && spec.hostname.len() <= 64
        && spec
            .hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !host_ok {
        return Err(Error::Spec(format!(
            "hostname `{}` must be 1-64 letters, digits, `-` or `.`",
            spec.hostname
        )));
    }
    if spec.limits.vcpus == 0 || spec.limits.memory_bytes == 0 || spec.limits.pids_max == 0 {
        return Err(Error::Spec(format!(
            "limits must not be zero: {:?}",
            spec.limits
        )));
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir(path).map_err(|e| Error::io(path, e))
}

/// Makes `path` inside a fresh root a real directory: a symlink or file the image put there
/// would make a mount follow it (on the host!), so it is replaced.
fn ensure_dir(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    mkdir(path)
}

fn write_state(dir: &Path, state: &State) -> Result<(), Error> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(".instance.json.tmp");
    let text = serde_json::to_vec_pretty(state).map_err(|e| Error::State {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

fn read_state(dir: &Path) -> Result<State, Error> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::State {
        path,
        message: e.to_string(),
    })
}

/// Start time of process `pid` in clock ticks after boot, if it exists.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Instance {
    /// Launches an instance in `<base_dir>/<spec.id>`; see the module documentation.
    pub fn launch(
        sys: Arc<dyn Privileged>,
        base_dir: &Path,
        spec: InstanceSpec,
    ) -> Result<Instance, Error> {
        check_spec(&spec)?;
        sys.preflight().map_err(Error::Unsupported)?;
        let mut lowers = Vec::with_capacity(spec.lowers.len());
        for lower in &spec.lowers {
            let canon = std::fs::canonicalize(lower).map_err(|e| Error::io(lower, e))?;
            if !canon.is_dir() {
                return Err(Error::Spec(format!(
                    "lower layer {} is not a directory",
                    lower.display()
                )));
            }
            lowers.push(canon);
        }
        std::fs::create_dir_all(base_dir).map_err(|e| Error::io(base_dir, e))?;
        let base = std::fs::canonicalize(base_dir).map_err(|e| Error::io(base_dir, e))?;
        let dir = base.join(&spec.id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::Spec(format!(
                    "instance directory {} already exists",
                    dir.display()
                )))
            }
            Err(e) => return Err(Error::io(&dir, e)),
        }
        let owner_pid = std::process::id();
        let state = State {
            id: spec.id.clone(),
            owner_pid,
            owner_start: process_start(owner_pid),
            cgroups: sys.cgroup_paths(&spec.id),
            hostname: spec.hostname.clone(),
            network: spec.network,
            netns: None,
            userns: None,
            id_base: None,
        };
        let merged = dir.join("merged");
        let sys_caps = sys.capabilities();
        let mut instance = Instance {
            sys,
            dir,
            root: merged.clone(),
            merged,
            cgroups: state.cgroups.clone(),
            plan: IsolationPlan {
                root: PathBuf::new(),
                hostname: spec.hostname.clone(),
                network: spec.network,
                cgroup_procs: Vec::new(),
                capabilities: sys_caps,
                netns: None,
                userns: None,
                process: None,
            },
            id_base: None,
            done: false,
        };
        // From here on, a failure drops `instance`, which tears down what was done.
        write_state(&instance.dir, &state)?;
        instance.setup(lowers, &spec.limits, state)?;
        Ok(instance)
    }

    /// Opens an instance another process launched in `<base_dir>/<id>`, to run commands in it
    /// (`kiln instance shell`). The returned value does not own the instance: dropping it
    /// leaves the instance as it is (only its launcher, or [`reap`], tears it down).
    pub fn attach(sys: Arc<dyn Privileged>, base_dir: &Path, id: &str) -> Result<Instance, Error> {
        check_id(id)?;
        let dir = base_dir.join(id);
        if !dir.is_dir() {
            return Err(Error::Spec(format!(
                "instance directory {} does not exist",
                dir.display()
            )));
        }
        let dir = std::fs::canonicalize(&dir).map_err(|e| Error::io(&dir, e))?;
        let merged = dir.join("merged");
        if !merged.is_dir() {
            return Err(Error::Spec(format!(
                "instance {id} has no root filesystem at {}",
                merged.display()
            )));
        }
        let state = read_state(&dir)?;
        if state.id != id {
            return Err(Error::State {
                path: dir.join(STATE_FILE),
                message: format!("names instance `{}`, not `{id}`", state.id),
            });
        }
        sys.instance_attached(&dir)?;
        let root = sys.host_root(&merged);
        let cgroup_procs = state
            .cgroups
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .collect();
        let capabilities = sys.capabilities();
        Ok(Instance {
            sys,
            plan: IsolationPlan {
                root: merged.clone(),
                hostname: state.hostname,
                network: state.network,
                cgroup_procs,
                capabilities,
                netns: state.netns,
                userns: state.userns,
                process: None,
            },
            id_base: state.id_base,
            dir,
            merged,
            root,
            cgroups: state.cgroups,
            done: true,
        })
    }

    /// Leaves the instance running (mounts, cgroups, directory) and answers its directory:
    /// for builds whose infrastructure configuration keeps the instance of a failed build.
    /// [`reap`] removes it once this process is gone.
    pub fn keep(mut self) -> PathBuf {
        self.done = true;
        std::mem::take(&mut self.dir)
    }

    fn setup(
        &mut self,
        mut lowers: Vec<PathBuf>,
        limits: &Limits,
        mut state: State,
    ) -> Result<(), Error> {
        let (upper, work) = (self.dir.join("upper"), self.dir.join("work"));
        mkdir(&upper)?;
        mkdir(&work)?;
        mkdir(&self.merged)?;
        if lowers.is_empty() {
            let empty = self.dir.join("empty");
            mkdir(&empty)?;
            lowers.push(empty);
        }
        match self.sys.user_namespace(&self.dir) {
            Ok(Some((userns, base))) => {
                match self.mount_shifted(&lowers, &upper, &work, &userns, base) {
                    Ok(()) => {
                        self.plan.userns = Some(userns.clone());
                        self.id_base = Some(base);
                        state.userns = Some(userns);
                        state.id_base = Some(base);
                        write_state(&self.dir, &state)?;
                    }
                    Err(e) => {
                        self.undo_shifted(&upper, &work)?;
                        log_host_root(&e.to_string());
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                self.undo_shifted(&upper, &work)?;
                log_host_root(&e.to_string());
            }
        }
        if self.id_base.is_none() {
            self.sys
                .mount_overlay(&lowers, &upper, &work, &self.merged)?;
            self.prepare_root()?;
        }
        let cgroups = self.sys.cgroup_create(self.id(), limits)?;
        self.cgroups = cgroups;
        self.plan.root = self.merged.clone();
        self.plan.cgroup_procs = self
            .cgroups
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .collect();
        if self.plan.network {
            self.plan.netns = self.sys.network_create(&self.dir)?;
            state.netns = self.plan.netns.clone();
            write_state(&self.dir, &state)?;
        }
        self.sys.instance_ready(&self.dir, &self.plan)?;
        self.root = self.sys.host_root(&self.merged);
        Ok(())
    }

    fn prepare_root(&self) -> Result<(), Error> {
        self.prepare_dev()?;
        for name in ["proc", "sys", "tmp"] {
            ensure_dir(&self.merged.join(name))?;
        }
        Ok(())
    }

    /// The root filesystem of an instance whose root is host id `base`: idmapped lowers below
    /// `lower/`, the overlay, `/dev`, what the host made there given to the namespace's ids,
    /// and a command started in the user namespace to prove the kernel lets it set itself up
    /// (mount `/proc`, `pivot_root`, ...). An error leaves the mounts for
    /// [`Instance::undo_shifted`].
    fn mount_shifted(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        userns: &Path,
        base: u32,
    ) -> Result<(), Error> {
        // Root in the instance is an unprivileged host uid: it must be able to pass through
        // the instance directory to its root (commands enter it as host root, see `sys`).
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| Error::io(&self.dir, e))?;
        let dir = self.dir.join("lower");
        mkdir(&dir)?;
        let mut mapped = Vec::with_capacity(lowers.len());
        for (i, lower) in lowers.iter().enumerate() {
            let dst = dir.join(i.to_string());
            mkdir(&dst)?;
            self.sys.mount_idmapped(lower, &dst, userns)?;
            mapped.push(dst);
        }
        // The overlay's root directory is the upper dir itself: the instance's root owns it.
        std::os::unix::fs::lchown(upper, Some(base), Some(base))
            .map_err(|e| Error::io(upper, e))?;
        self.sys.mount_overlay(&mapped, upper, work, &self.merged)?;
        self.prepare_root()?;
        crate::userns::shift_into_range(upper, &self.merged, base)
            .map_err(|e| Error::io(upper, e))?;
        let dev = self.merged.join("dev");
        crate::userns::shift_into_range(&dev, &dev, base).map_err(|e| Error::io(&dev, e))?;
        self.probe_user_namespace(userns)
    }

    /// Starts a command the way [`Target::command`] does, in the user namespace, that exits
    /// right before `exec`: whether every step of the set-up works in it.
    fn probe_user_namespace(&self, userns: &Path) -> Result<(), Error> {
        use std::os::unix::process::CommandExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        // What the probe finds out is the kernel's (mounting /proc, pivot_root and the rest in
        // a user namespace), the same for every instance this process launches: once one
        // passed, later launches skip its fork (a few ms each).
        static PASSED: AtomicBool = AtomicBool::new(false);
        if PASSED.load(Ordering::Relaxed) {
            return Ok(());
        }
        let plan = IsolationPlan {
            root: self.merged.clone(),
            hostname: self.plan.hostname.clone(),
            network: false,
            cgroup_procs: Vec::new(),
            capabilities: self.plan.capabilities.clone(),
            netns: None,
            userns: Some(userns.to_path_buf()),
            process: None,
        };
        let mut cmd = Command::new("/kiln-user-namespace-probe");
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        self.sys.isolate(&mut cmd, &plan);
        // SAFETY: _exit(2) is async-signal-safe; it runs in the isolated inner process.
        unsafe { cmd.pre_exec(|| libc::_exit(0)) };
        let status = cmd
            .status()
            .map_err(|e| Error::io("starting a command in the user namespace", e))?;
        if !status.success() {
            return Err(Error::Unsupported(format!(
                "a command could not set itself up in the user namespace ({status})"
            )));
        }
        PASSED.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Undoes a failed [`Instance::mount_shifted`]: unmounts everything below the instance's
    /// directory and empties the upper and work dirs, for an instance whose root is host root.
    fn undo_shifted(&self, upper: &Path, work: &Path) -> Result<(), Error> {
        for _ in 0..3 {
            for mount in self.sys.mounts_under(&self.dir)? {
                self.sys.unmount(&mount)?;
            }
        }
        let left = self.sys.mounts_under(&self.dir)?;
        if !left.is_empty() {
            return Err(Error::Leftover {
                path: self.dir.clone(),
                what: format!("mounts: {left:?}"),
            });
        }
        for dir in [upper, work] {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            mkdir(dir)?;
        }
        for extra in [self.dir.join("lower")] {
            match std::fs::remove_dir_all(&extra) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(Error::io(&extra, e)),
                _ => {}
            }
        }
        let pin = self.dir.join(crate::userns::PIN);
        match std::fs::remove_file(&pin) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(&pin, e)),
            _ => Ok(()),
        }
    }

    fn prepare_dev(&self) -> Result<(), Error> {
        let dev = self.merged.join("dev");
        ensure_dir(&dev)?;
        self.sys.mount_tmpfs(&dev, "nosuid,mode=755,size=65536k")?;
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            self.sys.mknod_char(&dev.join(name), major, minor, 0o666)?;
        }
        for (link, to) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            let path = dev.join(link);
            std::os::unix::fs::symlink(to, &path).map_err(|e| Error::io(&path, e))?;
        }
        ensure_dir(&dev.join("pts"))?;
        let shm = dev.join("shm");
        ensure_dir(&shm)?;
        self.sys
            .mount_tmpfs(&shm, "nosuid,nodev,noexec,mode=1777,size=65536k")?;
        Ok(())
    }

    /// The instance's name.
    pub fn id(&self) -> &str {
        self.dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }

    /// The instance's directory (`<base_dir>/<id>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The writable layer: what the build changed (deleted lower files are overlay whiteouts,
    /// character devices 0:0).
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The cgroup directories of the instance.
    pub fn cgroups(&self) -> &[PathBuf] {
        &self.cgroups
    }

    /// How commands are isolated.
    pub fn plan(&self) -> &IsolationPlan {
        &self.plan
    }

    /// `Some((uid, gid))` when the instance's root is this host user and group (a rootless
    /// instance): what the upper dir's files owned by "root" belong to on the host, to be
    /// recorded as 0:0 in a snapshot.
    pub fn uid_map(&self) -> Option<(u32, u32)> {
        self.sys.uid_map()
    }

    /// The first host id of the instance's user namespace range (its root's host uid and
    /// gid), or `None` when its root is host root.
    pub fn id_base(&self) -> Option<u32> {
        self.id_base
    }

    /// Gives the writable layer the image's ids back (host id `base + n` becomes `n`), for
    /// the snapshot or a test instance that uses it as a lower layer. Call it once, after the
    /// last command (no command may run in the instance afterwards).
    pub fn restore_owners(&self) -> Result<(), Error> {
        match self.id_base {
            Some(base) => {
                let upper = self.upper();
                crate::userns::shift_back(&upper, base).map_err(|e| Error::io(&upper, e))
            }
            None => Ok(()),
        }
    }

    /// Kills every process running in the instance and waits until they are gone; the
    /// instance stays (its files, mounts and cgroups).
    pub fn stop_processes(&self) -> Result<(), Error> {
        Ok(self.sys.stop_processes(&self.dir, &self.cgroups)?)
    }

    /// Kills every process in the instance, unmounts everything below its directory, removes
    /// its cgroups and its directory.
    pub fn terminate(mut self) -> Result<(), Error> {
        self.done = true;
        teardown(self.sys.as_ref(), &self.dir, &self.cgroups)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            let _ = teardown(self.sys.as_ref(), &self.dir, &self.cgroups);
        }
    }
}

impl Target for Instance {
    /// The root filesystem as the host sees it: the overlay mount point, or for a rootless
    /// instance the mount point seen through the process that holds its mounts
    /// (`/proc/<pid>/root/<dir>/merged`).
    fn root(&self) -> &Path {
        &self.root
    }

    /// As [`Target::resolve`], inside [`Instance::root`] as it is: the default canonicalizes
    /// the root, which would turn a rootless instance's `/proc/<pid>/root/...` into the host
    /// path of the (unmounted) `merged` directory. The instance's paths are canonical already.
    fn resolve(&self, path: &str) -> Result<PathBuf, TargetError> {
        resolve_in_canonical_root(&self.root, &self.working_dir(), path, true)
    }

    fn resolve_link(&self, path: &str) -> Result<PathBuf, TargetError> {
        resolve_in_canonical_root(&self.root, &self.working_dir(), path, false)
    }

    /// `program` runs isolated in the instance (see [`crate::sys`]), with a clean environment
    /// (`PATH` = [`INSTANCE_PATH`], `HOME=/root`) and `/` as its working directory.
    fn command(&self, program: &str, args: &[String]) -> Command {
        self.command_in(program, args, &self.plan)
    }
}

impl Instance {
    /// As [`Target::command`], run as `process` says (a Dockerfile's `USER` and `WORKDIR`).
    pub fn command_as(
        &self,
        program: &str,
        args: &[String],
        process: crate::sys::Process,
    ) -> Command {
        let plan = IsolationPlan {
            process: Some(process),
            ..self.plan.clone()
        };
        self.command_in(program, args, &plan)
    }

    fn command_in(&self, program: &str, args: &[String], plan: &IsolationPlan) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", INSTANCE_PATH)
            .env("HOME", "/root")
            .env("HOSTNAME", &self.plan.hostname);
        self.sys.isolate(&mut cmd, plan);
        if let Some(base) = self.id_base {
            // What the engine wrote from the host (scripts, file actions) belongs to host
            // root, which is nobody in the instance: give it to the instance's ids first.
            if let Err(e) = crate::userns::shift_into_range(&self.upper(), &self.root, base) {
                let code = e.raw_os_error().unwrap_or(libc::EIO);
                tracing::warn!("instance {}: {e}", self.id());
                use std::os::unix::process::CommandExt;
                // SAFETY: the hook makes no call at all.
                unsafe { cmd.pre_exec(move || Err(io::Error::from_raw_os_error(code))) };
            }
        }
        cmd
    }
}

/// Says once per process that root builds run as host root, and why.
fn log_host_root(reason: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            "root in build instances is host root (with every other protection): no user \
             namespace with idmapped layers here: {reason}"
        );
    });
}

/// Undoes an instance, whatever state it is in. See the module documentation.
fn teardown(sys: &dyn Privileged, dir: &Path, cgroups: &[PathBuf]) -> Result<(), Error> {
    let mut first: Option<Error> = None;
    let mut keep = |r: Result<(), Error>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    keep(sys.cgroup_kill(cgroups).map_err(Error::from));
    for _ in 0..5 {
        let mounts = sys.mounts_under(dir)?;
        if mounts.is_empty() {
            break;
        }
        for mount in mounts {
            keep(sys.unmount(&mount).map_err(Error::from));
        }
    }
    keep(sys.network_remove(dir).map_err(Error::from));
    let left = sys.mounts_under(dir)?;
    if !left.is_empty() {
        // Never delete through a mount.
        return Err(first.unwrap_or(Error::Leftover {
            path: dir.to_path_buf(),
            what: format!("mounts: {left:?}"),
        }));
    }
    keep(sys.cgroup_remove(cgroups).map_err(Error::from));
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => keep(Err(Error::io(dir, e))),
    }
    first.map_or(Ok(()), Err)
}

/// Tears down every instance in `base_dir` whose owner process is gone (a crash), and every
/// directory there without a readable `instance.json` (a crash during launch). Answers the
/// names it removed. Instances of live processes are left alone.
pub fn reap(sys: &dyn Privileged, base_dir: &Path) -> Result<Vec<String>, Error> {
    let entries = match std::fs::read_dir(base_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(base_dir, e)),
    };
    let base = std::fs::canonicalize(base_dir).map_err(|e| Error::io(base_dir, e))?;
    let mut reaped = Vec::new();
    let mut first: Option<Error> = None;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(base_dir, e))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_dir {
            continue;
        }
        let dir = base.join(entry.file_name());
        let mut cgroups = sys.cgroup_paths(&name);
        if let Ok(state) = read_state(&dir) {
            if process_start(state.owner_pid).is_some_and(|s| Some(s) == state.owner_start) {
                continue; // the owner is alive
            }
            for c in state.cgroups {
                if !cgroups.contains(&c) {
                    cgroups.push(c);
                }
            }
        }
        match teardown(sys, &dir, &cgroups) {
            Ok(()) => reaped.push(name),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(reaped), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Call, RecordingPrivileged};

    fn spec(id: &str) -> InstanceSpec {
        InstanceSpec {
            id: id.into(),
            lowers: Vec::new(),
            limits: crate::limits::for_instance_types(&["t3.micro".into()]).unwrap(),
            network: false,
            hostname: "build-host".into(),
        }
    }

    #[test]
    fn launch_mounts_then_terminate_undoes_in_reverse() {
        let base = tempfile::tempdir().unwrap();
        let fake = Arc::new(RecordingPrivileged::new());
        let inst = Instance::launch(fake.clone(), base.path(), spec("i-1")).unwrap();
        let dir = inst.dir().to_path_buf();
        assert!(dir.join("instance.json").is_file());
        let merged = dir.join("merged");
        assert_eq!(
            fake.mounted(),
            vec![merged.clone(), merged.join("dev"), merged.join("dev/shm")]
        );
        let calls = fake.calls();
        assert!(
            matches!(&calls[0], Call::MountOverlay { lowers, .. } if lowers == &vec![dir.join("empty")])
        );
        let nodes = calls
            .iter()
            .filter(|c| matches!(c, Call::Mknod { .. }))
            .count();
        assert_eq!(nodes, 6);
        assert!(calls
            .iter()
            .any(|c| matches!(c, Call::CgroupCreate { name, .. } if name == "i-1")));

        let _ = inst.command("sh", &["-c".into(), "true".into()]);
        let plan = match fake.calls().last() {
            Some(Call::Isolate(plan)) => plan.clone(),
            other => panic!("expected an isolate call, got {other:?}"),
        };
        assert_eq!(plan.root, merged);
        assert_eq!(plan.hostname, "build-host");
        assert!(!plan.network);
        assert_eq!(
            plan.cgroup_procs,
            vec![PathBuf::from("/fake-cgroup/i-1/cgroup.procs")]
        );

        inst.terminate().unwrap();
        assert!(fake.mounted().is_empty());
        assert!(!dir.exists());
        let calls = fake.calls();
        let unmounts: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Unmount(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            unmounts,
            vec![merged.join("dev/shm"), merged.join("dev"), merged.clone()]
        );
        let kill = calls
            .iter()
            .position(|c| matches!(c, Call::CgroupKill(_)))
            .unwrap();
        let first_unmount = calls
            .iter()
            .position(|c| matches!(c, Call::Unmount(_)))
            .unwrap();
        let remove = calls
            .iter()
            .position(|c| matches!(c, Call::CgroupRemove(_)))
            .unwrap();
        assert!(kill < first_unmount && first_unmount < remove);
    }

    #[test]
    fn an_instance_with_network_gets_a_namespace_of_its_own() {
        let base = tempfile::tempdir().unwrap();
        let fake = Arc::new(RecordingPrivileged::new());
        let inst = Instance::launch(fake.clone(), base.path(), spec("i-net")).unwrap();
        assert_eq!(inst.plan().netns, None);
        assert!(!fake
            .calls()
            .iter()
            .any(|c| matches!(c, Call::NetworkCreate(_))));
        inst.terminate().unwrap();

        let mut s = spec("i-net2");
        s.network = true;
        let inst = Instance::launch(fake.clone(), base.path(), s).unwrap();
        let dir = inst.dir().to_path_buf();
        assert_eq!(inst.plan().netns, Some(dir.join("netns")));
        // The commands of another process join the same namespace.
        let attached = Instance::attach(fake.clone(), base.path(), "i-net2").unwrap();
        assert_eq!(attached.plan().netns, Some(dir.join("netns")));
        drop(attached);
        inst.terminate().unwrap();
        let calls = fake.calls();
        let ready = calls
            .iter()
            .position(|c| matches!(c, Call::InstanceReady(d) if *d == dir))
            .unwrap();
        let created = calls
            .iter()
            .position(|c| matches!(c, Call::NetworkCreate(d) if *d == dir))
            .unwrap();
        assert!(
            created < ready,
            "the plan is final before the instance is ready"
        );
        assert!(calls
            .iter()
            .any(|c| matches!(c, Call::NetworkRemove(d) if *d == dir)));
    }

    #[test]
    fn failed_launch_leaves_nothing() {
        for op in [
            "mount overlay",
            "mount tmpfs",
            "mknod",
            "cgroup create",
            "instance ready",
        ] {
            let base = tempfile::tempdir().unwrap();
            let fake = Arc::new(RecordingPrivileged::new());
            fake.fail_on(op);
            let err = Instance::launch(fake.clone(), base.path(), spec("i-2")).unwrap_err();
            assert!(err.to_string().contains(op), "{op}: {err}");
            assert!(fake.mounted().is_empty(), "{op}");
            assert!(!base.path().join("i-2").exists(), "{op}");
        }
    }

    #[test]
    fn a_failing_unmount_keeps_the_directory() {
        let base = tempfile::tempdir().unwrap();
        let fake = Arc::new(RecordingPrivileged::new());
        let inst = Instance::launch(fake.clone(), base.path(), spec("i-3")).unwrap();
        let dir = inst.dir().to_path_buf();
        fake.fail_on("unmount");
        assert!(inst.terminate().is_err());
        assert!(dir.join("upper").exists(), "deleted through a mount");
    }

    #[test]
    fn bad_specs_are_refused_before_anything_happens() {
        let base = tempfile::tempdir().unwrap();
        let fake = Arc::new(RecordingPrivileged::new());
        for (id, host) in [("../x", "h"), ("", "h"), (".x", "h"), ("ok", "bad host")] {
            let mut s = spec(id);
            s.hostname = host.into();
            assert!(Instance::launch(fake.clone(), base.path(), s).is_err());
        }
        assert!(fake.calls().is_empty());
        let mut s = spec("i-4");
        s.lowers = vec![base.path().join("missing")];
        let err = Instance::launch(fake.clone(), base.path(), s).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    fn unmounts(fake: &RecordingPrivileged) -> usize {
        fake.calls()
            .iter()
            .filter(|c| matches!(c, Call::Unmount(_) | Call::CgroupKill(_)))
            .count()
    }

    #[test]
    fn attach_opens_an_instance_without_owning_it() {
        let base = tempfile::tempdir().unwrap();
        let fake = Arc::new(RecordingPrivileged::new());
        let mut s = spec("i-5");
        s.network = true;
        let inst = Instance::launch(fake.clone(), base.path(), s).unwrap();
        let attached = Instance::attach(fake.clone(), base.path(), "i-5").unwrap();
        assert_eq!(attached.plan(), inst.plan());
        assert_eq!(attached.dir(), inst.dir());
        assert_eq!(attached.root(), inst.dir().join("merged"));
        assert_eq!(attached.cgroups(), inst.cgroups());
        let _ = attached.command("sh", &[]);
        match fake.calls().last() {
            Some(Call::Isolate(plan)) => assert_eq!(plan, inst.plan()),
            other => panic!("expected an isolate call, got {other:?}"),
        }
        drop(attached);
        assert_eq!(unmounts(&fake), 0);
        assert_eq!(fake.mounted().len(), 3);
        assert!(inst.dir().join("upper").is_dir());
        inst.terminate().unwrap();
        assert!(fake.mounted().is_empty());
    }

    #[test]
    fn attach_refuses_what_is_not_an_instance() {
        let base = tempfile::tempdir().unwrap();
        let fake = Arc::new(RecordingPrivileged::new());
        for id in ["", "../x", ".x", "a/b", "missing"] {
            let err = Instance::attach(fake.clone(), base.path(), id).unwrap_err();
            assert!(matches!(err, Error::Spec(_)), "{id}: {err}");
        }
        std::fs::create_dir(base.path().join("no-root")).unwrap();
        let err = Instance::attach(fake.clone(), base.path(), "no-root").unwrap_err();
        assert!(matches!(err, Error::Spec(_)), "{err}");
        assert!(err.to_string().contains("root filesystem"), "{err}");
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn keep_leaves_the_instance_in_place() {
        let base = tempfile::tempdir().unwrap();
        let fake = Arc::new(RecordingPrivileged::new());
        let inst = Instance::launch(fake.clone(), base.path(), spec("i-6")).unwrap();
        let dir = inst.dir().to_path_buf();
        assert_eq!(inst.keep(), dir);
        assert_eq!(unmounts(&fake), 0);
        assert_eq!(fake.mounted().len(), 3);
        assert!(dir.join("instance.json").is_file());
        // A later process can still open it, and reap cleans it up once its owner is gone.
        let attached = Instance::attach(fake.clone(), base.path(), "i-6").unwrap();
        drop(attached);
        assert_eq!(fake.mounted().len(), 3);
    }

    #[test]
    fn reap_removes_instances_of_dead_owners_only() {
        let base = tempfile::tempdir().unwrap();
        let fake = Arc::new(RecordingPrivileged::new());
        let live = Instance::launch(fake.clone(), base.path(), spec("live")).unwrap();
        let dead = Instance::launch(fake.clone(), base.path(), spec("dead")).unwrap();
        let dead_dir = dead.dir().to_path_buf();
        let mut state = read_state(&dead_dir).unwrap();
        state.owner_start = Some(0); // no process started at boot time zero with our pid
        write_state(&dead_dir, &state).unwrap();
        std::mem::forget(dead);
        std::fs::create_dir(base.path().join("half-launched")).unwrap();

        let mut reaped = reap(fake.as_ref(), base.path()).unwrap();
        reaped.sort();
        assert_eq!(reaped, vec!["dead", "half-launched"]);
        assert!(!dead_dir.exists());
        assert!(live.dir().exists());
        assert!(fake.mounted().iter().all(|m| m.starts_with(live.dir())));
        live.terminate().unwrap();
    }
}
