//! The Debian minimal base from the mirror, as `mmdebstrap --variant=minbase` makes it: the
//! `Essential: yes` and `Priority: required` packages, apt, and what they depend on.
//!
//! Like mmdebstrap, the essential packages' files are unpacked into a tree first (with
//! merged /usr: `bin`, `sbin`, `lib`, `lib64` are links into `usr/`), so that the tree has a
//! shell, libc and dpkg; then the tree's own dpkg, chrooted into it (root, a private mount
//! namespace with `/proc` and the host's `/dev`, no network needed), installs the essential
//! packages with `--force-depends` (their order is not known to dpkg's database yet) and then
//! the rest. The tree becomes one layer with mtimes clamped to [`DEBIAN_EPOCH`], logs and
//! caches that hold the day's date removed, so the same mirror content gives the same image.

use super::packages::{self, Package};
use super::{deb, DebianMirror};
use crate::fetch::{stderr_tail, Cleanup, DEBIAN_CREATED};
use crate::layer::UpperWalk;
use crate::store::CommitMeta;
use crate::{io_err, Compression, Error, ImageRef, ImageStore, Result, DEBIAN_EPOCH};
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Downloads at once.
const FETCHERS: usize = 6;

/// Merged /usr: these top-level directories are links into `usr/`.
const MERGED: [&str; 4] = ["bin", "sbin", "lib", "lib64"];

/// Where the debs are put in the tree for dpkg (removed before the layer is made).
const DEBS_IN_TREE: &str = "var/cache/kiln-debs";

/// Files the installation leaves that hold the date or the machine: removed.
const VOLATILE: [&str; 9] = [
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
    "var/cache/ldconfig/aux-cache",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/available-old",
    "usr/sbin/policy-rc.d",
];

/// Fetches every package of `pkgs` into `dir`, a few at once; answers the files in `pkgs`'
/// order. The first failure is the error.
fn fetch_all(mirror: &DebianMirror, pkgs: &[&Package], dir: &Path) -> Result<Vec<PathBuf>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<PathBuf>>>> =
        Mutex::new((0..pkgs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..FETCHERS.min(pkgs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(pkg) = pkgs.get(i) else { break };
                let r = deb::fetch(mirror, pkg, dir);
                let failed = r.is_err();
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
                if failed {
                    // The others stop at their next package.
                    next.store(pkgs.len(), Ordering::Relaxed);
                    break;
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::with_capacity(pkgs.len());
    // The first failure in order is the error; a package skipped after it has none.
    for r in results.into_iter().flatten() {
        out.push(r?);
    }
    if out.len() != pkgs.len() {
        return Err(Error::Invalid(
            "fetching the Debian packages stopped early".to_string(),
        ));
    }
    Ok(out)
}

/// `name` of a package's data with merged /usr applied: `./bin/sh` → `usr/bin/sh`. None for
/// the root itself; an error for `..` or anything else that would leave the tree.
fn mapped(name: &Path, what: &Path) -> Result<Option<PathBuf>> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir | Component::RootDir => {}
            _ => {
                return Err(Error::UnsafeEntry {
                    entry: name.display().to_string(),
                    reason: format!("in {}: leaves the root", what.display()),
                })
            }
        }
    }
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    let mut out = PathBuf::new();
    if MERGED.iter().any(|m| first.as_bytes() == m.as_bytes()) {
        out.push("usr");
    }
    out.extend(parts);
    Ok(Some(out))
}

/// Refuses `rel` if a directory on its way in `tree` is a symbolic link: Kiln unpacks outside
/// the chroot, where a link a package made would lead to the host's files. (Merged-/usr names
/// never go through the top-level links: [`mapped`] rewrote them.)
fn check_parents(tree: &Path, rel: &Path, file: &Path) -> Result<()> {
    let mut at = tree.to_path_buf();
    let parents = rel.parent().map(|p| p.components().count()).unwrap_or(0);
    for c in rel.components().take(parents) {
        at.push(c);
        if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::UnsafeEntry {
                entry: rel.display().to_string(),
                reason: format!(
                    "in {}: goes through the symbolic link {}",
                    file.display(),
                    at.display()
                ),
            });
        }
    }
    Ok(())
}

/// Unpacks the data of the deb `file` into `tree` (owners, modes and mtimes kept).
fn unpack(file: &Path, tree: &Path) -> Result<()> {
    let err = |e: io::Error| io_err("unpacking", file)(e);
    let mut archive = deb::data_tar(file)?;
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let name = entry.path().map_err(err)?.into_owned();
        let Some(rel) = mapped(&name, file)? else {
            continue;
        };
        check_parents(tree, &rel, file)?;
        let dst = tree.join(&rel);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            // A directory that a merged-/usr link already stands for is left as it is.
            if fs::metadata(&dst).is_ok_and(|m| m.is_dir()) {
                continue;
            }
        }
        if kind.is_hard_link() {
            let target = entry.link_name().map_err(err)?.ok_or_else(|| {
                Error::Invalid(format!("{}: a hard link without a target", file.display()))
            })?;
            let Some(target) = mapped(&target, file)? else {
                continue;
            };
            check_parents(tree, &target, file)?;
            let _ = fs::remove_file(&dst);
            fs::hard_link(tree.join(target), &dst).map_err(io_err("linking", &dst))?;
            continue;
        }
        entry.set_preserve_permissions(true);
        entry.set_preserve_mtime(true);
        entry.set_unpack_xattrs(false);
        entry.unpack(&dst).map_err(io_err("unpacking into", &dst))?;
    }
    Ok(())
}

/// The files dpkg needs to start with an empty database, and the merged-/usr links.
fn prepare(tree: &Path) -> Result<()> {
    for dir in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "etc/apt/apt.conf.d",
        "etc/apt/sources.list.d",
        "etc/apt/preferences.d",
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/lib/dpkg/alternatives",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/log/apt",
        DEBS_IN_TREE,
        "dev",
        "proc",
        "sys",
        "tmp",
    ] {
        let p = tree.join(dir);
        fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
    }
    let tmp = tree.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
        .map_err(io_err("setting the mode of", &tmp))?;
    for m in MERGED {
        let link = tree.join(m);
        std::os::unix::fs::symlink(format!("usr/{m}"), &link).map_err(io_err("linking", &link))?;
    }
    for (file, content) in [
        ("var/lib/dpkg/status", ""),
        ("var/lib/dpkg/available", ""),
        ("var/lib/dpkg/arch", "amd64\n"),
        // No service starts while the tree is made.
        ("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n"),
    ] {
        let p = tree.join(file);
        fs::write(&p, content).map_err(io_err("writing", &p))?;
    }
    let rc = tree.join("usr/sbin/policy-rc.d");
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o755))
        .map_err(io_err("setting the mode of", &rc))?;
    Ok(())
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("{} holds a NUL byte", p.display())))
}

/// Runs the tree's dpkg with `args`, chrooted into `tree` in a private mount namespace with
/// `/proc` and the host's `/dev` mounted (gone with the namespace).
fn dpkg_in(tree: &Path, args: &[String]) -> Result<()> {
    let root = cstring(tree)?;
    let proc_dir = cstring(&tree.join("proc"))?;
    let dev_dir = cstring(&tree.join("dev"))?;
    let mut cmd = Command::new("/usr/bin/dpkg");
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
        .env("SOURCE_DATE_EPOCH", DEBIAN_EPOCH.to_string())
        .env("HOME", "/root")
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe system calls, on C strings made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"proc".as_ptr(),
                proc_dir.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"/dev".as_ptr(),
                dev_dir.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            check(libc::chroot(root.as_ptr()))?;
            check(libc::chdir(c"/".as_ptr()))?;
            Ok(())
        });
    }
    let shown = format!("chroot {} dpkg {}", tree.display(), args.join(" "));
    let out = cmd.output().map_err(|e| {
        Error::Invalid(format!(
            "running `{shown}`: {e} (it needs root, and the tree's dpkg and libc)"
        ))
    })?;
    if !out.status.success() {
        let mut text = out.stderr.clone();
        text.extend_from_slice(&out.stdout);
        return Err(Error::Command {
            command: shown,
            status: out.status.to_string(),
            stderr: stderr_tail(&text),
        });
    }
    Ok(())
}

/// Removes what the installation leaves that differs from run to run, and the debs.
fn tidy(tree: &Path) -> Result<()> {
    for f in VOLATILE {
        let p = tree.join(f);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &p)(e)),
        }
    }
    let debs = tree.join(DEBS_IN_TREE);
    fs::remove_dir_all(&debs).map_err(io_err("removing", &debs))?;
    let cache = tree.join("var/cache/debconf");
    if let Ok(entries) = fs::read_dir(&cache) {
        for e in entries.flatten() {
            if e.file_name().as_bytes().ends_with(b"-old") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

impl ImageStore {
    /// Builds the managed Debian minimal base of `suite` from `mirror` with no host package:
    /// the release's signature and every index's and package's hash verified, the packages
    /// unpacked and installed by the tree's own dpkg (needs root), one zstd layer with mtimes
    /// clamped to [`DEBIAN_EPOCH`]. The temporary files are removed whatever happens.
    pub fn debian_base_mirror(
        &self,
        mirror: &DebianMirror,
        suite: &str,
        tag: &str,
    ) -> Result<ImageRef> {
        let (_release, all) = super::signed_index(mirror, suite, tag)?;
        let index = packages::Index::new(&all);
        let pkgs = index.closure(&index.minbase_roots())?;
        // Installed first, unpacked by Kiln beforehand: the essential packages and what they
        // need (libc, ...), as mmdebstrap's essential phase.
        let first: std::collections::BTreeSet<&str> = index
            .closure(&index.essential_roots())?
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let work = Cleanup(self.temp_path("debian-mirror"));
        let tree = work.0.join("root");
        fs::create_dir_all(&tree).map_err(io_err("creating", &tree))?;
        prepare(&tree)?;
        let debs_dir = tree.join(DEBS_IN_TREE);
        let files = fetch_all(mirror, &pkgs, &debs_dir)?;
        let mut essential = Vec::new();
        let mut rest = Vec::new();
        for (pkg, file) in pkgs.iter().zip(&files) {
            let in_tree = format!(
                "/{DEBS_IN_TREE}/{}",
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            if first.contains(pkg.name.as_str()) {
                unpack(file, &tree)?;
                essential.push(in_tree);
            } else {
                rest.push(in_tree);
            }
        }
        // `--force-unsafe-io` as mmdebstrap: no fsync per file, the tree is thrown away if
        // anything fails and the layer made from it is synced.
        let install = |debs: Vec<String>| {
            let mut args: Vec<String> = [
                "--install",
                "--force-depends",
                "--force-confold",
                "--force-unsafe-io",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(debs);
            dpkg_in(&tree, &args)
        };
        install(essential)?;
        if !rest.is_empty() {
            install(rest)?;
        }
        dpkg_in(&tree, &["--configure".to_string(), "-a".to_string()])?;
        let sources = tree.join("etc/apt/sources.list");
        fs::write(&sources, format!("deb {} {suite} main\n", mirror.url))
            .map_err(io_err("writing", &sources))?;
        tidy(&tree)?;
        let layer = self.write_layer(Compression::Zstd, |w| {
            UpperWalk::new(w)
                .clamping_mtime(DEBIAN_EPOCH)
                .walk(&tree, b"")
        })?;
        drop(work);
        let meta = CommitMeta {
            created: Some(DEBIAN_CREATED.to_string()),
            created_by: Some(format!(
                "kiln minbase {suite} {} ({} packages)",
                mirror.url,
                pkgs.len()
            )),
            comment: Some(format!("kiln debian base: {suite} from {}", mirror.url)),
            ..CommitMeta::default()
        };
        self.commit(None, layer, &meta, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_maps_names() {
        let f = Path::new("x.deb");
        assert_eq!(
            mapped(Path::new("./bin/sh"), f).unwrap(),
            Some(PathBuf::from("usr/bin/sh"))
        );
        assert_eq!(
            mapped(Path::new("./lib64"), f).unwrap(),
            Some(PathBuf::from("usr/lib64"))
        );
        assert_eq!(
            mapped(Path::new("./etc/x"), f).unwrap(),
            Some(PathBuf::from("etc/x"))
        );
        assert_eq!(
            mapped(Path::new("./binx/y"), f).unwrap(),
            Some(PathBuf::from("binx/y"))
        );
        assert_eq!(mapped(Path::new("./"), f).unwrap(), None);
        assert!(mapped(Path::new("./a/../../x"), f).is_err());
    }

    #[test]
    fn names_through_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        fs::create_dir_all(tree.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/etc", tree.join("usr/lib/evil")).unwrap();
        let f = Path::new("x.deb");
        assert!(check_parents(tree, Path::new("usr/lib/ok/file"), f).is_ok());
        assert!(check_parents(tree, Path::new("usr/lib/evil"), f).is_ok());
        let err = check_parents(tree, Path::new("usr/lib/evil/passwd"), f).unwrap_err();
        assert!(
            err.to_string().contains("goes through the symbolic link"),
            "{err}"
        );
    }
}
