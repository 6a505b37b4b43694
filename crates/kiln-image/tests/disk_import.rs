//! Disk image imports (`ImageStore::import_disk`): Kiln's own exports in every format come back
//! as the same tree (owners, modes with set-user-ID bits, hard and symbolic links, device nodes,
//! FIFOs, odd names, mtimes); the root is found in GPT and MBR tables (logical partitions
//! included, and by `/etc/os-release` among several ext file systems); disks that would reach
//! other files, or hold no ext file system, are refused naming what they are. Needs root,
//! busybox-static, e2fsprogs and qemu-utils.

mod common;

use common::*;
use kiln_image::{CommitMeta, Compression, DiskFormat, DiskInput, Error, ImageRef, ImageStore};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The busybox base with a layer of everything a root file system may hold.
fn test_image(store: &ImageStore, work: &Path) -> ImageRef {
    let base = store.busybox_base("base:1").unwrap();
    let upper = work.join("upper");
    sh(&format!(
        "set -e; mkdir -p {u}/opt/app {u}/etc {u}/dev {u}/var/tmp && cd {u}
         printf 'ID=kiln\\nNAME=\"Kiln Test\"\\nVERSION_ID=\"7\"\\n' > etc/os-release
         printf 'tool\\n' > opt/app/tool && chown 1000:1001 opt/app/tool && chmod 4750 opt/app/tool
         ln opt/app/tool opt/app/tool-link && ln -s tool opt/app/tool-sym
         ln -s /$(printf 'x%.0s' $(seq 1 90)) opt/app/long-sym
         printf 'g\\n' > opt/app/sgid && chmod 2755 opt/app/sgid
         mknod dev/null c 1 3 && chmod 666 dev/null && mknod dev/sda1 b 8 1 && mkfifo var/fifo
         chmod 1777 var/tmp && chown 5:7 var/tmp
         printf 'q' > \"opt/we ird\\\"na
me\" && touch -d @1600000000 opt/app/tool",
        u = q(&upper)
    ));
    xattr::set(upper.join("etc/os-release"), "user.kiln", b"lost").unwrap();
    let layer = store.snapshot_layer(&upper, Compression::Zstd).unwrap();
    store
        .commit(Some(&base), layer, &CommitMeta::default(), "disk-test")
        .unwrap()
}

/// A work directory as the worker makes it: empty, only root may enter.
fn work_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    dir
}

fn import(
    store: &ImageStore,
    disk: &Path,
    work: &Path,
    tag: &str,
) -> kiln_image::Result<kiln_image::DiskImport> {
    store.import_disk(DiskInput::File(disk), work, tag, "test import", &|| false)
}

/// The tree of `image` as a listing, without extended attributes (a disk import drops them).
fn tree(
    store: &ImageStore,
    image: &ImageRef,
    dir: &Path,
) -> std::collections::BTreeMap<String, Node> {
    store.merged_rootfs(image, dir).unwrap();
    let mut l = listing(dir);
    for node in l.values_mut() {
        node.xattrs.clear();
    }
    l
}

#[test]
fn every_export_format_comes_back_as_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let image = test_image(&store, tmp.path());
    let want = tree(&store, &image, &tmp.path().join("want"));
    assert!(want["opt/app/tool"].mode == 0o4750 && want["opt/app/tool"].uid == 1000);
    for format in DiskFormat::ALL {
        let disk = tmp.path().join(format!("disk.{format}"));
        store.export_disk(&image, format, &disk).unwrap();
        let work = work_dir(tmp.path(), &format!("work-{format}"));
        let imported = import(&store, &disk, &work, &format!("imported-{format}")).unwrap();
        assert_eq!(imported.format, format, "{format}");
        assert_eq!(imported.location, "the whole disk (no partition table)");
        assert_eq!(imported.filesystem, "ext4");
        assert!(
            imported.extracted.left_out.is_empty(),
            "{:?}",
            imported.extracted.left_out
        );
        let got = tree(
            &store,
            &imported.image,
            &tmp.path().join(format!("got-{format}")),
        );
        let diff: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: want {v:?}, got {:?}", got.get(k)))
            .chain(
                got.keys()
                    .filter(|k| !want.contains_key(*k))
                    .map(|k| format!("{k}: extra")),
            )
            .collect();
        assert!(diff.is_empty(), "{format}: {diff:#?}");
        let got_dir = tmp.path().join(format!("got-{format}"));
        let tool = fs::metadata(got_dir.join("opt/app/tool")).unwrap();
        assert_eq!(tool.mtime(), 1_600_000_000, "{format}: mtime");
        assert_eq!(tool.nlink(), 2, "{format}: the hard link is one");
        // The copied tree is left for the caller (metadata), the tools' directory is gone.
        assert!(imported.root.join("etc/os-release").is_file());
        assert!(!work.join("out").exists());
    }
}

/// `len` zero bytes with `fs` (a raw file system) written at `at`.
fn disk_with(len: u64, parts: &[(u64, &Path)]) -> Vec<u8> {
    let mut disk = vec![0u8; len as usize];
    for (at, fs) in parts {
        let bytes = fs::read(fs).unwrap();
        disk[*at as usize..*at as usize + bytes.len()].copy_from_slice(&bytes);
    }
    disk
}

fn mbr_entry(disk: &mut [u8], sector: u64, i: usize, kind: u8, start: u64, sectors: u64) {
    let base = sector as usize * 512;
    let e = base + 446 + 16 * i;
    disk[e + 4] = kind;
    disk[e + 8..e + 12].copy_from_slice(&(start as u32).to_le_bytes());
    disk[e + 12..e + 16].copy_from_slice(&(sectors as u32).to_le_bytes());
    disk[base + 510] = 0x55;
    disk[base + 511] = 0xaa;
}

fn gpt(disk: &mut [u8], entries: &[(u64, u64)]) {
    const LINUX_FS: [u8; 16] = [
        0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d,
        0xe4,
    ];
    mbr_entry(disk, 0, 0, 0xee, 1, disk.len() as u64 / 512 - 1);
    disk[512..520].copy_from_slice(b"EFI PART");
    disk[584..592].copy_from_slice(&2u64.to_le_bytes());
    disk[592..596].copy_from_slice(&128u32.to_le_bytes());
    disk[596..600].copy_from_slice(&128u32.to_le_bytes());
    for (i, (first, last)) in entries.iter().enumerate() {
        let e = 1024 + 128 * i;
        disk[e..e + 16].copy_from_slice(&LINUX_FS);
        disk[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
        disk[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn the_root_is_found_in_partition_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let image = test_image(&store, tmp.path());
    let rootfs = tmp.path().join("rootfs.raw");
    store.export_disk(&image, DiskFormat::Raw, &rootfs).unwrap();
    let fs_size = fs::metadata(&rootfs).unwrap().len();
    // A swap signature in partition 1, the root in partition 2.
    let swap = tmp.path().join("swap");
    let mut signature = vec![0u8; 8192];
    signature[4086..4096].copy_from_slice(b"SWAPSPACE2");
    fs::write(&swap, &signature).unwrap();
    let total = 2 * MIB + fs_size + MIB;
    let mut disk = disk_with(total, &[(MIB, &swap), (2 * MIB, &rootfs)]);
    gpt(&mut disk, &[(2048, 4095), (4096, 4096 + fs_size / 512 - 1)]);
    let path = tmp.path().join("gpt.img");
    fs::write(&path, &disk).unwrap();
    let work = work_dir(tmp.path(), "work-gpt");
    let imported = import(&store, &path, &work, "from-gpt").unwrap();
    assert_eq!(
        imported.location,
        "partition 2 (Linux filesystem) of its GPT partition table"
    );
    assert!(imported.root.join("opt/app/tool").is_file());

    // MBR: an empty ext4 in partition 1, the root in logical partition 5; os-release decides.
    let empty = tmp.path().join("empty.raw");
    sh(&format!(
        "truncate -s 8M {e} && mkfs.ext4 -q {e}",
        e = q(&empty)
    ));
    let ext_start = 2 * MIB + 8 * MIB;
    let total = ext_start + MIB + fs_size + MIB;
    let mut disk = disk_with(total, &[(2 * MIB, &empty), (ext_start + MIB, &rootfs)]);
    mbr_entry(&mut disk, 0, 0, 0x83, 4096, 8 * MIB / 512);
    let ext_sector = ext_start / 512;
    mbr_entry(&mut disk, 0, 1, 0x05, ext_sector, (total - ext_start) / 512);
    mbr_entry(&mut disk, ext_sector, 0, 0x83, 2048, fs_size / 512);
    let path = tmp.path().join("mbr.img");
    fs::write(&path, &disk).unwrap();
    let work = work_dir(tmp.path(), "work-mbr");
    let imported = import(&store, &path, &work, "from-mbr").unwrap();
    assert_eq!(
        imported.location,
        "partition 5 (type 0x83, logical) of its MBR partition table"
    );

    // Two ext file systems and no os-release in either: Kiln cannot tell.
    let mut disk = disk_with(
        2 * MIB + 16 * MIB + MIB,
        &[(2 * MIB, &empty), (10 * MIB, &empty)],
    );
    mbr_entry(&mut disk, 0, 0, 0x83, 4096, 8 * MIB / 512);
    mbr_entry(&mut disk, 0, 1, 0x83, 10 * MIB / 512, 8 * MIB / 512);
    let path = tmp.path().join("two.img");
    fs::write(&path, &disk).unwrap();
    let err = import(&store, &path, &work_dir(tmp.path(), "work-two"), "two")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("partitions 1, 2") && err.contains("/etc/os-release"),
        "{err}"
    );
}

#[test]
fn disks_kiln_cannot_import_are_refused_naming_why() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let refused = |name: &str, disk: &Path| -> String {
        let work = work_dir(tmp.path(), name);
        let err = import(&store, disk, &work, name).unwrap_err().to_string();
        assert!(
            store.resolve(name).is_err(),
            "{name}: nothing was committed"
        );
        err
    };

    // A qcow2 whose backing file is a host file.
    let secret = tmp.path().join("secret.raw");
    sh(&format!("truncate -s 1M {}", q(&secret)));
    let overlay = tmp.path().join("overlay.qcow2");
    sh(&format!(
        "qemu-img create -q -f qcow2 -b {} -F raw {}",
        q(&secret),
        q(&overlay)
    ));
    let err = refused("backing", &overlay);
    assert!(
        err.contains("backing file") && err.contains("secret.raw"),
        "{err}"
    );

    // Installation media.
    let mut iso = vec![0u8; 4 * MIB as usize];
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    let path = tmp.path().join("setup.iso");
    fs::write(&path, &iso).unwrap();
    assert!(refused("iso", &path).contains("ISO 9660"));

    // No ext file system: what is there is named.
    let mut disk = vec![0u8; 4 * MIB as usize];
    disk[..4].copy_from_slice(b"XFSB");
    let path = tmp.path().join("xfs.raw");
    fs::write(&path, &disk).unwrap();
    let err = refused("xfs", &path);
    assert!(
        err.contains("the whole disk (no partition table): xfs")
            && err.contains("ext2, ext3 or ext4"),
        "{err}"
    );

    // Cancelled: stops with Error::Cancelled.
    let empty = tmp.path().join("empty.raw");
    sh(&format!(
        "truncate -s 8M {e} && mkfs.ext4 -q {e}",
        e = q(&empty)
    ));
    let work = work_dir(tmp.path(), "cancelled");
    let err = store
        .import_disk(DiskInput::File(&empty), &work, "cancelled", "x", &|| true)
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");

    // A disk other users may not read is copied for the tools, and imports.
    fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let work = work_dir(tmp.path(), "private");
    let imported = import(&store, &empty, &work, "private").unwrap();
    assert_eq!(
        imported.extracted.entries, 0,
        "only lost+found, which is left out"
    );
}
