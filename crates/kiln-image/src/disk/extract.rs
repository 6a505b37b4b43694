//! An ext2/3/4 file system copied into a directory without mounting it, through `debugfs`.
//!
//! `debugfs -R 'rdump / DIR'` alone would lose too much and trust the disk too far: it drops
//! set-user-ID bits (it sets modes before owners, and the owner change clears them), hard links
//! (each name gets its own copy), device nodes and FIFOs (skipped), and it writes every name of
//! the disk below DIR with the host's file calls, so a crafted file system (names with `/`,
//! two entries of the same name, one a symlink to `/etc`) could write outside it. So:
//!
//! 1. **Walk**: `ls -p <inode>` for every directory, level by level, gives every entry's inode,
//!    type, mode, owner and name. Names are checked (not empty, no `/`, at most 255 bytes, none
//!    twice in a directory) and a directory reached twice (a loop) is refused, so the tree is
//!    a tree. The root's `lost+found` is left out: it is the file system's, and a disk made
//!    from the image gets a new one.
//! 2. **Contents**: debugfs writes only names Kiln chose, in its own `out/` directory: `dump -p
//!    <N> f<N>` once per regular inode (data, and the mtime), `rdump <N> .` per symbolic link
//!    (it writes `<N>`, the link with its target), and `stat <N>` gives the device numbers and
//!    mtimes of the other inodes.
//! 3. **Build**: Kiln makes the tree itself from the walk, parents first: directories,
//!    hard links of the dumped files (every name of an inode links the same file, so hard
//!    links stay hard links), symbolic links with their targets, device nodes and FIFOs (mknod);
//!    then owners, then modes (so set-user-ID and set-group-ID bits stay), and modification
//!    times, directories last.
//!
//! Kept: contents, owners, modes with their special bits, hard links, symbolic links, device
//! nodes, FIFOs, modification times (whole seconds; symbolic links and directories included).
//! Lost: extended attributes (file capabilities, SELinux labels, ACLs), access and change
//! times, sockets (a tar layer cannot hold them), character devices 0:0 (overlay whiteouts in a
//! layer), the root's `lost+found`. Sparse files come back dense.

use super::debugfs::{parse_listings, parse_stats, Entry, Stat};
use super::tools::Output;
use crate::{io_err, Error, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, CWD};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The root directory's inode in every ext file system.
const ROOT_INODE: u32 = 2;
/// The most entries Kiln takes from one disk.
const MAX_ENTRIES: usize = 10_000_000;
/// The deepest directory nesting Kiln follows.
const MAX_DEPTH: usize = 1024;
/// debugfs commands per run (each run opens the file system once).
const BATCH: usize = 20_000;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;

/// One entry of the tree.
#[derive(Debug, Clone)]
struct Node {
    /// Index of the directory it is in (the root is its own).
    parent: usize,
    name: Vec<u8>,
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Node {
    fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }
}

/// What was copied and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Entries made (the root not counted).
    pub entries: u64,
    /// What could not be kept, by kind: `socket` -> 2.
    pub left_out: BTreeMap<String, u64>,
}

/// Runs debugfs with commands on standard input, in `out/`.
pub(crate) type Debugfs<'a> = &'a dyn Fn(&[u8]) -> Result<Output>;

/// Copies the file system debugfs reads into `root` (which must not exist); `out` is debugfs's
/// working directory (empty), `out_dir` an open descriptor of it.
pub(crate) fn extract(
    debugfs: Debugfs,
    out: &Path,
    out_dir: impl AsFd,
    root: &Path,
    cancel: &dyn Fn() -> bool,
) -> Result<Extracted> {
    let nodes = walk(debugfs, cancel)?;
    let check_cancel = || {
        if cancel() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    };
    check_cancel()?;
    // Contents, once per inode.
    let mut regular = Vec::new();
    let mut links = Vec::new();
    let mut others = Vec::new();
    let mut seen = HashSet::new();
    for n in &nodes {
        if !seen.insert(n.ino) {
            continue;
        }
        match n.kind() {
            S_IFREG => regular.push(n.ino),
            S_IFLNK => links.push(n.ino),
            _ => others.push(n.ino),
        }
    }
    // What debugfs says of files it could not dump (for the error naming a missing one), without
    // its complaints about owners it may not set as nobody (Kiln sets them).
    let mut dump_errors = String::new();
    let mut keep_errors = |stderr: &str| {
        for line in stderr
            .lines()
            .filter(|l| !l.contains("while changing ownership"))
        {
            dump_errors.push_str(line);
            dump_errors.push('\n');
        }
        if dump_errors.len() > 64 * 1024 {
            let cut = (dump_errors.len() - 32 * 1024..dump_errors.len())
                .find(|&i| dump_errors.is_char_boundary(i))
                .unwrap_or(0);
            dump_errors.drain(..cut);
        }
    };
    for chunk in regular.chunks(BATCH) {
        let commands: String = chunk
            .iter()
            .map(|i| format!("dump -p <{i}> f{i}\n"))
            .collect();
        keep_errors(&debugfs(commands.as_bytes())?.stderr);
        check_cancel()?;
    }
    for chunk in links.chunks(BATCH) {
        let commands: String = chunk.iter().map(|i| format!("rdump <{i}> .\n")).collect();
        keep_errors(&debugfs(commands.as_bytes())?.stderr);
        check_cancel()?;
    }
    let mut stats: HashMap<u32, Stat> = HashMap::new();
    for chunk in others.chunks(BATCH).chain(links.chunks(BATCH)) {
        let commands: String = chunk.iter().map(|i| format!("stat <{i}>\n")).collect();
        stats.extend(parse_stats(&debugfs(commands.as_bytes())?.stdout));
        check_cancel()?;
    }
    let extracted = build(&nodes, &out_dir.as_fd(), &stats, root, &dump_errors, cancel)?;
    std::fs::remove_dir_all(out).map_err(io_err("removing", out))?;
    Ok(extracted)
}

/// The path of node `i` below the root, as bytes.
fn rel_path(nodes: &[Node], mut i: usize) -> Vec<u8> {
    let mut parts = Vec::new();
    while i != 0 {
        parts.push(nodes[i].name.as_slice());
        i = nodes[i].parent;
    }
    parts.reverse();
    let mut path = Vec::new();
    for p in parts {
        path.push(b'/');
        path.extend_from_slice(p);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

fn shown(nodes: &[Node], i: usize) -> String {
    String::from_utf8_lossy(&rel_path(nodes, i)).into_owned()
}

/// The tree, parents before children (breadth first); node 0 is the root.
fn walk(debugfs: Debugfs, cancel: &dyn Fn() -> bool) -> Result<Vec<Node>> {
    let invalid = |m: String| Error::Invalid(m);
    let mut nodes = vec![Node {
        parent: 0,
        name: Vec::new(),
        ino: ROOT_INODE,
        mode: S_IFDIR | 0o755,
        uid: 0,
        gid: 0,
    }];
    let mut dirs_seen = HashSet::from([ROOT_INODE]);
    let mut level = vec![0usize];
    let mut depth = 0;
    while !level.is_empty() {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(invalid(format!(
                "directories nest deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut next = Vec::new();
        for chunk in level.chunks(BATCH) {
            if cancel() {
                return Err(Error::Cancelled);
            }
            let commands: String = chunk
                .iter()
                .map(|&i| format!("ls -p <{}>\n", nodes[i].ino))
                .collect();
            let output = debugfs(commands.as_bytes())?;
            let listings = parse_listings(&output.stdout).map_err(invalid)?;
            for &dir in chunk {
                let entries = listings
                    .get(&nodes[dir].ino)
                    .filter(|e| e.iter().any(|e| e.name == b"."))
                    .ok_or_else(|| {
                        invalid(format!(
                            "debugfs could not read the directory {} (inode {}): {}",
                            shown(&nodes, dir),
                            nodes[dir].ino,
                            output.stderr.trim()
                        ))
                    })?;
                let mut names: HashSet<&[u8]> = HashSet::new();
                for e in entries {
                    if e.name == b"." {
                        if dir == 0 {
                            let root = &mut nodes[0];
                            (root.mode, root.uid, root.gid) = (e.mode, e.uid, e.gid);
                        }
                        continue;
                    }
                    if e.name == b".." || (dir == 0 && e.name == b"lost+found") {
                        continue;
                    }
                    check_name(e, || shown(&nodes, dir))?;
                    if !names.insert(&e.name) {
                        return Err(invalid(format!(
                            "the directory {} has two entries named {:?}",
                            shown(&nodes, dir),
                            String::from_utf8_lossy(&e.name)
                        )));
                    }
                    let index = nodes.len();
                    if index >= MAX_ENTRIES {
                        return Err(invalid(format!(
                            "the file system has more than {MAX_ENTRIES} entries"
                        )));
                    }
                    if e.mode & S_IFMT == S_IFDIR {
                        if !dirs_seen.insert(e.ino) {
                            return Err(invalid(format!(
                                "the directory inode {} is reached twice (again as {}/{}): the file system's tree has a loop",
                                e.ino,
                                shown(&nodes, dir),
                                String::from_utf8_lossy(&e.name)
                            )));
                        }
                        next.push(index);
                    }
                    nodes.push(Node {
                        parent: dir,
                        name: e.name.clone(),
                        ino: e.ino,
                        mode: e.mode,
                        uid: e.uid,
                        gid: e.gid,
                    });
                }
            }
        }
        level = next;
    }
    Ok(nodes)
}

fn check_name(e: &Entry, dir: impl Fn() -> String) -> Result<()> {
    let bad = if e.name.is_empty() {
        Some("an empty name")
    } else if e.name.contains(&b'/') || e.name.contains(&0) {
        Some("a name with '/' or NUL")
    } else if e.name.len() > 255 {
        Some("a name longer than 255 bytes")
    } else {
        None
    };
    match bad {
        Some(what) => Err(Error::Invalid(format!(
            "the directory {} has an entry (inode {}) with {what}",
            dir(),
            e.ino
        ))),
        None => Ok(()),
    }
}

/// An owner id as the host takes it: `-1` means "leave unchanged" to chown, so the overflow
/// id stands for it.
fn id(raw: u32) -> u32 {
    if raw == u32::MAX {
        super::tools::NOBODY
    } else {
        raw
    }
}

fn errno<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(rustix::io::Errno) -> Error + 'a {
    move |e| io_err(action, path)(e.into())
}

/// Makes the tree at `root` (see the module documentation, step 3).
fn build(
    nodes: &[Node],
    out_dir: &impl AsFd,
    stats: &HashMap<u32, Stat>,
    root: &Path,
    dump_errors: &str,
    cancel: &dyn Fn() -> bool,
) -> Result<Extracted> {
    let privileged = super::tools::privileged();
    let mut entries = 0u64;
    let mut left = BTreeMap::new();
    let mut paths: Vec<PathBuf> = Vec::with_capacity(nodes.len());
    // The first name of each regular inode: its other names link to it.
    let mut first_names: HashMap<u32, usize> = HashMap::new();
    let mut made: Vec<usize> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let path = if i == 0 {
            root.to_path_buf()
        } else {
            paths[n.parent].join(OsStr::from_bytes(&n.name))
        };
        paths.push(path);
        let path = &paths[i];
        if i % 4096 == 0 && cancel() {
            return Err(Error::Cancelled);
        }
        let missing = |what: &str| {
            let tail: String = dump_errors
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join("; ");
            Error::Invalid(format!(
                "debugfs could not read {what} {} (inode {}): {tail}",
                shown(nodes, i),
                n.ino
            ))
        };
        match n.kind() {
            S_IFDIR => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(path)
                    .map_err(io_err("creating directory", path))?;
            }
            S_IFREG => {
                if let Some(&first) = first_names.get(&n.ino) {
                    std::fs::hard_link(&paths[first], path).map_err(io_err("linking", path))?;
                    entries += 1;
                    continue;
                }
                let dumped = format!("f{}", n.ino);
                let file = rustix::fs::openat(
                    out_dir,
                    dumped.as_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                    Mode::empty(),
                )
                .map_err(|_| missing("the file"))?;
                let stat = rustix::fs::fstat(&file).map_err(errno("reading", path))?;
                if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                    return Err(missing("the file"));
                }
                own(&file, n, path, privileged, &mut left)?;
                // Exactly the inode checked above goes into the tree, whatever the name does.
                let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
                rustix::fs::linkat(CWD, proc_path.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW)
                    .map_err(errno("linking", path))?;
                first_names.insert(n.ino, i);
            }
            S_IFLNK => {
                let target = rustix::fs::readlinkat(out_dir, format!("<{}>", n.ino), Vec::new())
                    .map_err(|_| missing("the symbolic link"))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(target.as_bytes()), path)
                    .map_err(io_err("creating symbolic link", path))?;
            }
            kind @ (S_IFCHR | S_IFBLK | S_IFIFO) => {
                let (file_type, dev) = match kind {
                    S_IFIFO => (FileType::Fifo, 0),
                    _ => {
                        let Some((major, minor)) = stats.get(&n.ino).and_then(|s| s.device) else {
                            return Err(missing("the device"));
                        };
                        if kind == S_IFCHR && (major, minor) == (0, 0) {
                            note(&mut left, "character device 0:0");
                            continue;
                        }
                        let t = if kind == S_IFCHR {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (t, rustix::fs::makedev(major, minor))
                    }
                };
                match rustix::fs::mknodat(CWD, path, file_type, Mode::from_raw_mode(0o600), dev) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::PERM) if !privileged => {
                        note(&mut left, "device node (Kiln does not run as root)");
                        continue;
                    }
                    Err(e) => return Err(errno("creating", path)(e)),
                }
            }
            S_IFSOCK => {
                note(&mut left, "socket");
                continue;
            }
            _ => {
                note(&mut left, "entry of unknown type");
                continue;
            }
        }
        entries += u64::from(i != 0);
        if n.kind() != S_IFREG {
            made.push(i);
        }
    }
    // Owners, then modes, then times; directories after everything in them.
    for &i in made.iter().rev() {
        let n = &nodes[i];
        let path = &paths[i];
        let owner = rustix::fs::chownat(
            CWD,
            path,
            Some(rustix::fs::Uid::from_raw(id(n.uid))),
            Some(rustix::fs::Gid::from_raw(id(n.gid))),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        match owner {
            Ok(()) => {}
            Err(_) if !privileged => note(&mut left, "owner (Kiln does not run as root)"),
            Err(e) => return Err(errno("changing the owner of", path)(e)),
        }
        if n.kind() != S_IFLNK {
            rustix::fs::chmodat(
                CWD,
                path,
                Mode::from_raw_mode(n.mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(errno("changing the mode of", path))?;
        }
        if let Some(mtime) = stats.get(&n.ino).and_then(|s| s.mtime) {
            let time = Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            };
            let times = Timestamps {
                last_access: time,
                last_modification: time,
            };
            rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno("setting the times of", path))?;
        }
    }
    Ok(Extracted {
        entries,
        left_out: left,
    })
}

fn note(left: &mut BTreeMap<String, u64>, what: &str) {
    *left.entry(what.to_string()).or_insert(0) += 1;
}

/// Gives a dumped file its owner, then its mode (an owner change clears set-user-ID bits).
fn own(
    file: &impl AsFd,
    n: &Node,
    path: &Path,
    privileged: bool,
    left: &mut BTreeMap<String, u64>,
) -> Result<()> {
    let owner = rustix::fs::fchown(
        file,
        Some(rustix::fs::Uid::from_raw(id(n.uid))),
        Some(rustix::fs::Gid::from_raw(id(n.gid))),
    );
    match owner {
        Ok(()) => {}
        Err(_) if !privileged => note(left, "owner (Kiln does not run as root)"),
        Err(e) => return Err(errno("changing the owner of", path)(e)),
    }
    rustix::fs::fchmod(file, Mode::from_raw_mode(n.mode & 0o7777))
        .map_err(errno("changing the mode of", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: u32, entries: &[(u32, u32, &str)]) -> String {
        let mut s = format!("debugfs: ls -p <{dir}>\n/{dir}/040755/0/0/.//\n/2/040755/0/0/..//\n");
        for (ino, mode, name) in entries {
            let size = if mode & S_IFMT == S_IFDIR { "" } else { "0" };
            s.push_str(&format!("/{ino}/{mode:06o}/0/0/{name}/{size}/\n"));
        }
        s.push('\n');
        s
    }

    /// `(directory inode, [(inode, mode, name)])`.
    type Table = Vec<(u32, Vec<(u32, u32, &'static str)>)>;

    /// A fake debugfs answering `ls -p` from a fixed table of directories.
    fn fake(dirs: Table) -> impl Fn(&[u8]) -> Result<Output> {
        move |commands: &[u8]| {
            let mut out = String::new();
            for line in String::from_utf8_lossy(commands).lines() {
                let ino: u32 = line
                    .trim_start_matches("ls -p <")
                    .trim_end_matches('>')
                    .parse()
                    .unwrap();
                let entries = dirs.iter().find(|(d, _)| *d == ino).map(|(_, e)| e.clone());
                out.push_str(&listing(ino, &entries.unwrap_or_default()));
            }
            Ok(Output {
                stdout: out.into_bytes(),
                stderr: String::new(),
            })
        }
    }

    #[test]
    fn the_walk_is_breadth_first_and_skips_lost_and_found() {
        let debugfs = fake(vec![
            (
                2,
                vec![
                    (11, 0o40700, "lost+found"),
                    (12, 0o40755, "etc"),
                    (13, 0o100644, "a"),
                ],
            ),
            (
                12,
                vec![(14, 0o100644, "os-release"), (13, 0o100644, "hard")],
            ),
        ]);
        let nodes = walk(&debugfs, &|| false).unwrap();
        let names: Vec<String> = (0..nodes.len()).map(|i| shown(&nodes, i)).collect();
        assert_eq!(names, ["/", "/etc", "/a", "/etc/os-release", "/etc/hard"]);
    }

    #[test]
    fn loops_and_twin_names_are_refused() {
        let looping = fake(vec![
            (2, vec![(12, 0o40755, "a")]),
            (12, vec![(13, 0o40755, "b")]),
            (13, vec![(12, 0o40755, "back")]),
        ]);
        let err = walk(&looping, &|| false).unwrap_err().to_string();
        assert!(
            err.contains("inode 12") && err.contains("/a/b/back"),
            "{err}"
        );
        let twins = fake(vec![(2, vec![(12, 0o120777, "x"), (13, 0o40755, "x")])]);
        let err = walk(&twins, &|| false).unwrap_err().to_string();
        assert!(err.contains("two entries named \"x\""), "{err}");
        let missing = |_: &[u8]| {
            Ok(Output {
                stdout: b"debugfs: ls -p <2>\n".to_vec(),
                stderr: "ls: EXT2 directory corrupted".into(),
            })
        };
        let err = walk(&missing, &|| false).unwrap_err().to_string();
        assert!(
            err.contains("could not read the directory /") && err.contains("corrupted"),
            "{err}"
        );
    }
}
