//! Shared helpers of the kiln-image tests: shell commands, overlay mounts, tree listings,
//! and a two-layer test image built through a real overlay mount.
#![allow(dead_code)]

use kiln_image::{CommitMeta, Compression, ImageRef, ImageStore, LayerInfo};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a bash command, panics with its output unless it succeeds, answers stdout.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// An overlay mount, unmounted on drop.
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn overlay(lowers: &[PathBuf], upper_work: Option<(&Path, &Path)>, merged: &Path) -> Mount {
        fs::create_dir_all(merged).unwrap();
        let lower = lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut opts = format!("lowerdir={lower}");
        if let Some((u, w)) = upper_work {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                u.display(),
                w.display()
            ));
        }
        sh(&format!("mount -t overlay overlay -o {opts} {}", q(merged)));
        Mount(merged.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// What a tree listing records of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: String,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

fn file_sha(p: &Path) -> String {
    let mut h = Sha256::new();
    h.update(fs::read(p).unwrap());
    format!("{:x}", h.finalize())
}

/// Lists a tree: relative path → kind, mode, owner, content hash or link target, user xattrs.
pub fn listing(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let (kind, content) = if ft.is_symlink() {
            ("symlink", fs::read_link(&p).unwrap().display().to_string())
        } else if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_file() {
            ("file", file_sha(&p))
        } else {
            ("special", format!("{:x}", md.rdev()))
        };
        let mut xattrs = Vec::new();
        if !ft.is_symlink() {
            for n in xattr::list(&p).unwrap() {
                let n = n.to_string_lossy().into_owned();
                if n.starts_with("user.") {
                    xattrs.push((n.clone(), xattr::get(&p, &n).unwrap().unwrap_or_default()));
                }
            }
            xattrs.sort();
        }
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        out.insert(
            rel,
            Node {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    md.permissions().mode() & 0o7777
                },
                uid: md.uid(),
                gid: md.gid(),
                content,
                xattrs,
            },
        );
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// A long file name (well over tar's 100 bytes) in a deep directory.
pub const LONG_DIR: &str =
    "deep/a-rather-long-directory-name-to-push-past-the-ustar-limits-0123456789";
pub const LONG_FILE: &str =
    "and-an-equally-long-file-name-so-that-pax-path-records-are-needed-0123456789.txt";

/// The two-layer test image: a base layer snapshotted from a plain "lower" tree, and a top
/// layer snapshotted from the upper dir of a REAL overlay mount over it, where files were
/// changed, added and deleted (whiteout) and a directory was replaced (opaque).
pub struct TwoLayers {
    pub base: ImageRef,
    pub top: ImageRef,
    pub top_layer: LayerInfo,
}

pub fn build_two_layers(store: &ImageStore, work: &Path, compression: Compression) -> TwoLayers {
    let lower = work.join("lower");
    let upper = work.join("upper");
    let wdir = work.join("work");
    let merged = work.join("merged");
    for d in [&lower, &upper, &wdir] {
        fs::create_dir_all(d).unwrap();
    }
    sh(&format!(
        "cd {l} && echo gone > gone.txt && mkdir -p d/sub keep && echo old > d/old.txt && \
         echo s > d/sub/s.txt && echo kept > keep/kept.txt && echo base > replaced.txt",
        l = q(&lower)
    ));
    let base_layer = store.snapshot_layer(&lower, compression).unwrap();
    let base = store
        .commit(None, base_layer, &CommitMeta::default(), "base")
        .unwrap();
    {
        let _m = Mount::overlay(std::slice::from_ref(&lower), Some((&upper, &wdir)), &merged);
        sh(&format!(
            "set -e; cd {m}
             rm gone.txt
             rm -rf d && mkdir d && echo new > d/new.txt
             echo changed > replaced.txt
             echo hello > file.txt && chmod 0640 file.txt && chown 1000:1000 file.txt
             mkdir -p owned && chown 1000:1000 owned && chmod 0750 owned
             printf 'x' > owned/suid && chmod 4755 owned/suid
             ln -s file.txt link && ln -s /nonexistent/abs abslink
             echo pair > hl1 && ln hl1 hl2
             mkfifo fifo
             mkdir -p '{LONG_DIR}' && echo long > '{LONG_DIR}/{LONG_FILE}'
             touch -d @1600000000 file.txt",
            m = q(&merged)
        ));
        xattr::set(merged.join("file.txt"), "user.kiln", b"1").unwrap();
    }
    // The kernel made the whiteout and the opaque directory.
    let wh = fs::symlink_metadata(upper.join("gone.txt")).unwrap();
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr::get(upper.join("d"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    let top_layer = store.snapshot_layer(&upper, compression).unwrap();
    let meta = CommitMeta {
        comment: Some("test build".into()),
        labels: [("kiln.test".to_string(), "yes".to_string())].into(),
        ..CommitMeta::default()
    };
    let top = store
        .commit(Some(&base), top_layer.clone(), &meta, "test")
        .unwrap();
    TwoLayers {
        base,
        top,
        top_layer,
    }
}

/// `umoci unpack` of a tag into `bundle`; answers the rootfs.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    sh(&format!(
        "umoci unpack --image {}:{tag} {}",
        q(layout),
        q(bundle)
    ));
    bundle.join("rootfs")
}
