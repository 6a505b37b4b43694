//! Imports: rootfs archives, the busybox base, and refusal of tar entries that escape.

mod common;

use common::*;
use kiln_image::{CommitMeta, Error, ImageStore};
use std::fs;
use std::path::Path;

#[test]
fn busybox_base_is_deterministic_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let a = ImageStore::open(&tmp.path().join("a")).unwrap();
    let b = ImageStore::open(&tmp.path().join("b")).unwrap();
    let one = a.busybox_base("busybox-x86").unwrap();
    let two = b.busybox_base("busybox-x86").unwrap();
    let three = a.busybox_base("busybox-x86").unwrap();
    assert_eq!(one.digest, two.digest);
    assert_eq!(one.digest, three.digest);
    assert_eq!(a.images().unwrap().len(), 1, "re-creating replaces the tag");

    let root = tmp.path().join("root");
    a.merged_rootfs(&one, &root).unwrap();
    assert_eq!(
        fs::read_link(root.join("bin/ls")).unwrap().to_str(),
        Some("/bin/busybox")
    );
    let out = sh(&format!(
        "chroot {} /bin/sh -c 'echo hi from $(basename /bin/ls)'",
        q(&root)
    ));
    assert_eq!(out.trim(), "hi from ls");
    sh(&format!(
        "skopeo inspect oci:{}:busybox-x86",
        q(&tmp.path().join("a"))
    ));

    let missing = a
        .busybox_base_from(Path::new("/nonexistent/busybox"), "x")
        .unwrap_err()
        .to_string();
    assert!(missing.contains("/nonexistent/busybox"), "{missing}");
    assert!(missing.contains("busybox-static"), "{missing}");
}

#[test]
fn rootfs_archives_import_as_one_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hostname"), "kiln\n").unwrap();
    std::os::unix::fs::symlink("etc/hostname", src.join("hn")).unwrap();
    sh(&format!(
        "cd {t} && tar -C src -cf rootfs.tar . && zstd -q -3 rootfs.tar -o rootfs.tar.zst && \
         tar -C src -czf rootfs.tar.gz .",
        t = q(tmp.path())
    ));
    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    let expected = listing(&src);
    for (file, media) in [
        (
            "rootfs.tar.zst",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            "rootfs.tar.gz",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        ("rootfs.tar", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let tag = file.replace('.', "-");
        let image = store
            .import_rootfs_archive(&tmp.path().join(file), &tag)
            .unwrap();
        let manifest = store.manifest(&image).unwrap();
        assert_eq!(manifest.layers().len(), 1);
        assert_eq!(manifest.layers()[0].media_type().to_string(), media);
        let out = tmp.path().join(format!("out-{tag}"));
        store.merged_rootfs(&image, &out).unwrap();
        assert_eq!(listing(&out), expected, "{file}");
        sh(&format!("skopeo inspect oci:{}:{tag}", q(&store_dir)));
    }
    // The plain tar's diff_id is its digest, and equals the others' diff_ids.
    let ids: Vec<String> = store
        .images()
        .unwrap()
        .iter()
        .map(|i| store.config(i).unwrap().rootfs().diff_ids()[0].clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

/// A tar whose entries are written with raw names (the tar crate's setters refuse `..`).
/// Name, type, link target, data.
type RawEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

fn evil_tar(path: &Path, entries: &[RawEntry]) {
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, ty, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*ty);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap();
}

fn unsafe_reason(e: Error) -> String {
    match e {
        Error::UnsafeEntry { .. } => e.to_string(),
        other => panic!("expected UnsafeEntry, got {other:?}"),
    }
}

#[test]
fn escaping_entries_are_refused() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    fs::create_dir(&victim).unwrap();
    let abs = format!("{}/abs", victim.display());
    let cases: Vec<(&str, Vec<RawEntry>, &str)> = vec![
        ("dotdot", vec![("../x", Regular, "", b"x")], "`..`"),
        (
            "nested-dotdot",
            vec![("a/../../x", Regular, "", b"x")],
            "`..`",
        ),
        (
            "absolute",
            vec![(abs.as_str(), Regular, "", b"x")],
            "absolute",
        ),
        (
            "through-symlink",
            vec![
                ("lnk", Symlink, victim.to_str().unwrap(), b""),
                ("lnk/x", Regular, "", b"x"),
            ],
            "symbolic link `lnk`",
        ),
        (
            "through-relative-symlink",
            vec![
                ("dir", Directory, "", b""),
                ("dir/up", Symlink, "../../..", b""),
                ("dir/up/x", Regular, "", b"x"),
            ],
            "symbolic link `dir/up`",
        ),
        (
            "hardlink-out",
            vec![("h", Link, "../../etc/passwd", b"")],
            "`..`",
        ),
    ];
    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    for (name, entries, want) in &cases {
        let path = tmp.path().join(format!("{name}.tar"));
        evil_tar(&path, entries);
        let msg = unsafe_reason(store.import_rootfs_archive(&path, name).unwrap_err());
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(store.resolve(name).is_err());
    }

    // The same layers smuggled in through an OCI layout (imports of layouts do not look
    // inside layers) are refused again when unpacked.
    let crafted = tmp.path().join("crafted");
    let staging = ImageStore::open(&tmp.path().join("staging")).unwrap();
    for (name, entries, want) in &cases {
        let path = tmp.path().join(format!("{name}-raw.tar"));
        evil_tar(&path, entries);
        let layer = raw_layer(&staging, &path);
        let image = staging
            .commit(None, layer, &CommitMeta::default(), name)
            .unwrap();
        staging.export_oci_layout(&image, &crafted, name).unwrap();
        let imported = store.import_oci_layout(&crafted, name, name).unwrap();
        let msg = unsafe_reason(store.lower_dirs(&imported).unwrap_err());
        assert!(msg.contains(want), "{name}: {msg}");
        let msg = unsafe_reason(
            store
                .merged_rootfs(&imported, &tmp.path().join(format!("m-{name}")))
                .unwrap_err(),
        );
        assert!(msg.contains(want), "{name}: {msg}");
    }
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0, "nothing escaped");
    assert!(!tmp.path().join("x").exists());
    // Failed unpacks leave no half-made cache directories behind.
    for e in fs::read_dir(store_dir.join("unpacked")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp"), "left over: {name}");
    }
}

/// Stores a tar file as a layer blob without any checks (bypassing the importer), the way
/// a hostile layout would carry it.
fn raw_layer(store: &ImageStore, tar: &Path) -> kiln_image::LayerInfo {
    let data = fs::read(tar).unwrap();
    let digest = sha(&data);
    fs::write(store.blob_path(&digest).unwrap(), &data).unwrap();
    kiln_image::LayerInfo::unpinned(
        kiln_image::oci_spec::image::Descriptor::new(
            kiln_image::oci_spec::image::MediaType::ImageLayer,
            data.len() as u64,
            digest
                .parse::<kiln_image::oci_spec::image::Digest>()
                .unwrap(),
        ),
        digest,
    )
}

fn sha(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(data))
}

/// Appends a PAX extended header with one record, then a directory entry.
fn pax_dir(b: &mut tar::Builder<fs::File>, name: &str, key: &str, value: &[u8]) {
    let mut rec = format!(" {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    let mut len = rec.len() + 2;
    if (len + 1).to_string().len() + rec.len() == len + 1 {
        len += 1;
    }
    let mut data = len.to_string().into_bytes();
    data.extend_from_slice(&rec);
    assert_eq!(data.len(), len);
    let mut x = tar::Header::new_ustar();
    x.set_path("PaxHeaders/x").unwrap();
    x.set_entry_type(tar::EntryType::XHeader);
    x.set_size(data.len() as u64);
    x.set_mode(0o644);
    x.set_uid(0);
    x.set_gid(0);
    x.set_mtime(0);
    x.set_cksum();
    b.append(&x, data.as_slice()).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
}

#[test]
fn overlay_xattrs_in_layers_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("forged.tar");
    let mut b = tar::Builder::new(fs::File::create(&path).unwrap());
    pax_dir(
        &mut b,
        "forged",
        "SCHILY.xattr.trusted.overlay.opaque",
        b"y",
    );
    pax_dir(&mut b, "kept", "SCHILY.xattr.user.note", b"hello");
    b.into_inner().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let image = store.import_rootfs_archive(&path, "forged").unwrap();
    let dirs = store.lower_dirs(&image).unwrap();
    assert_eq!(
        xattr::get(dirs[0].join("forged"), "trusted.overlay.opaque").unwrap(),
        None
    );
    assert_eq!(
        xattr::get(dirs[0].join("kept"), "user.note")
            .unwrap()
            .as_deref(),
        Some(&b"hello"[..])
    );
}
