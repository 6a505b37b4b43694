//! The busybox base from a Debian mirror, with no network: a mirror built here in a temporary
//! directory (a fake `busybox-static` deb holding the host's static busybox, its index, a
//! release signed with a key made here) served on 127.0.0.1 by a small HTTP thread. A good
//! mirror gives the base; a tampered release, a release signed by another key, an index or a
//! deb whose hash is not the signed one are each refused with an error naming what failed.

use flate2::write::GzEncoder;
use kiln_image::{DebianMirror, ImageStore};
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedSecretKey,
};
use pgp::ser::Serialize;
use pgp::types::Password;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

const DEB_PATH: &str = "pool/main/b/busybox/busybox-static_1.35.0-4+b3_amd64.deb";

fn key(name: &str) -> SignedSecretKey {
    let params = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(format!("{name} <{name}@kiln.test>"))
        .build()
        .unwrap();
    params.generate(rand::thread_rng()).unwrap()
}

fn keyring_file(dir: &Path, key: &SignedSecretKey) -> PathBuf {
    let path = dir.join("keyring.gpg");
    fs::write(&path, key.to_public_key().to_bytes().unwrap()).unwrap();
    path
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn ar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            "100644",
            data.len()
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// A fake busybox-static deb whose `bin/busybox` is the host's static busybox.
fn busybox_deb() -> Vec<u8> {
    let busybox =
        fs::read(kiln_image::BUSYBOX).expect("the host's static /bin/busybox (busybox-static)");
    let control = gz(&tar_of(&[(
        "./control",
        b"Package: busybox-static\nVersion: 1.35.0-4+b3\n",
        0o644,
    )]));
    let data = gz(&tar_of(&[("./bin/busybox", &busybox, 0o755)]));
    ar_of(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", &control),
        ("data.tar.gz", &data),
    ])
}

fn packages_for(deb: &[u8]) -> Vec<u8> {
    gz(format!(
        "Package: busybox-static\nVersion: 1.35.0-4+b3\nArchitecture: amd64\nPriority: optional\n\
         Filename: {DEB_PATH}\nSize: {}\nSHA256: {}\nDescription: a fake\n",
        deb.len(),
        sha256(deb)
    )
    .as_bytes())
}

fn release_for(packages_gz: &[u8]) -> String {
    format!(
        "Origin: Kiln test\nSuite: stable\nCodename: bookworm\nArchitectures: amd64\nSHA256:\n {} {} main/binary-amd64/Packages.gz\n",
        sha256(packages_gz),
        packages_gz.len()
    )
}

fn sign(text: &str, key: &SignedSecretKey) -> String {
    CleartextSignedMessage::sign(
        rand::thread_rng(),
        text,
        &key.primary_key,
        &Password::empty(),
    )
    .unwrap()
    .to_armored_string(ArmorOptions::default())
    .unwrap()
}

/// Writes a mirror into `root`: `deb` is what the pool serves, `packages` the index served,
/// `inrelease` the release served.
fn write_mirror(root: &Path, deb: &[u8], packages: &[u8], inrelease: &str) {
    let files: [(&str, &[u8]); 3] = [
        (DEB_PATH, deb),
        ("dists/bookworm/main/binary-amd64/Packages.gz", packages),
        ("dists/bookworm/InRelease", inrelease.as_bytes()),
    ];
    for (path, data) in files {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
}

/// Serves the files under `root` on 127.0.0.1 (HTTP/1.0, one thread, for the test's life).
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let answer = match (path.contains(".."), fs::read(root.join(path))) {
                (false, Ok(body)) => {
                    let mut a = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    a.extend_from_slice(&body);
                    a
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&answer);
        }
    });
    format!("http://{addr}/debian")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    store: ImageStore,
    root: PathBuf,
    url: String,
    key: SignedSecretKey,
    keyring: PathBuf,
    deb: Vec<u8>,
    packages: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mirror/debian");
        let key = key("kiln-test-archive");
        let keyring = keyring_file(tmp.path(), &key);
        let deb = busybox_deb();
        let packages = packages_for(&deb);
        write_mirror(&root, &deb, &packages, &sign(&release_for(&packages), &key));
        let url = serve(tmp.path().join("mirror"));
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        Fixture {
            _tmp: tmp,
            store,
            root,
            url,
            key,
            keyring,
            deb,
            packages,
        }
    }

    fn mirror(&self) -> DebianMirror {
        DebianMirror::with_keyring_file(&self.url, &self.keyring).unwrap()
    }

    fn build(&self) -> Result<kiln_image::ImageRef, String> {
        self.store
            .busybox_base_mirror(&self.mirror(), "bookworm", "busybox")
            .map_err(|e| e.to_string())
    }

    fn tmp_is_empty(&self) -> bool {
        fs::read_dir(self.store.root().join("tmp")).unwrap().count() == 0
    }
}

#[test]
fn a_good_mirror_gives_the_busybox_base() {
    let f = Fixture::new();
    let image = f.build().unwrap();
    assert!(f.tmp_is_empty());
    let rootfs = f._tmp.path().join("rootfs");
    f.store.merged_rootfs(&image, &rootfs).unwrap();
    assert_eq!(
        fs::read(rootfs.join("bin/busybox")).unwrap(),
        fs::read(kiln_image::BUSYBOX).unwrap()
    );
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(rootfs.join("bin/bash").is_file());
    // Same package, same image.
    let other = ImageStore::open(&f._tmp.path().join("store2")).unwrap();
    let again = other
        .busybox_base_mirror(&f.mirror(), "bookworm", "busybox")
        .unwrap();
    assert_eq!(again.digest, image.digest);
}

#[test]
fn a_tampered_release_is_refused() {
    let f = Fixture::new();
    let signed = sign(&release_for(&f.packages), &f.key);
    let tampered = signed.replace("Origin: Kiln test", "Origin: Kiln tesT");
    assert_ne!(tampered, signed);
    write_mirror(&f.root, &f.deb, &f.packages, &tampered);
    let err = f.build().unwrap_err();
    assert!(
        err.contains("signature of") && err.contains("/dists/bookworm/InRelease"),
        "{err}"
    );
    assert!(f.store.resolve("busybox").is_err());
    assert!(f.tmp_is_empty());
}

#[test]
fn a_release_signed_by_another_key_is_refused() {
    let f = Fixture::new();
    let stranger = key("stranger");
    write_mirror(
        &f.root,
        &f.deb,
        &f.packages,
        &sign(&release_for(&f.packages), &stranger),
    );
    let err = f.build().unwrap_err();
    assert!(
        err.contains("does not verify with the Debian keyring"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}/dists/bookworm/InRelease", f.url)),
        "{err}"
    );
    // Nor does the real Debian keyring accept it.
    let err = f
        .store
        .busybox_base_mirror(&DebianMirror::new(&f.url), "bookworm", "busybox")
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not verify"), "{err}");
    // An unsigned release is no better.
    write_mirror(&f.root, &f.deb, &f.packages, &release_for(&f.packages));
    let err = f.build().unwrap_err();
    assert!(err.contains("not an OpenPGP clearsigned release"), "{err}");
}

#[test]
fn an_index_whose_hash_is_not_the_signed_one_is_refused() {
    let f = Fixture::new();
    let other = packages_for(b"another deb");
    let release = sign(&release_for(&f.packages), &f.key);
    write_mirror(&f.root, &f.deb, &other, &release);
    let err = f.build().unwrap_err();
    assert!(err.contains("the package index"), "{err}");
    assert!(
        err.contains("/dists/bookworm/main/binary-amd64/Packages.gz"),
        "{err}"
    );
    assert!(f.tmp_is_empty());
}

#[test]
fn a_deb_whose_hash_is_not_the_indexed_one_is_refused() {
    let f = Fixture::new();
    let mut deb = f.deb.clone();
    let last = deb.len() - 1;
    deb[last] ^= 1;
    let release = sign(&release_for(&f.packages), &f.key);
    write_mirror(&f.root, &deb, &f.packages, &release);
    let err = f.build().unwrap_err();
    assert!(err.contains("package busybox-static 1.35.0-4+b3"), "{err}");
    assert!(err.contains(&format!("{}/{DEB_PATH}", f.url)), "{err}");
    assert!(f.store.resolve("busybox").is_err());
    assert!(f.tmp_is_empty(), "the bad deb is not left behind");
}

#[test]
fn a_release_of_another_suite_is_refused() {
    let f = Fixture::new();
    let text = release_for(&f.packages).replace("Codename: bookworm", "Codename: trixie");
    write_mirror(&f.root, &f.deb, &f.packages, &sign(&text, &f.key));
    let err = f.build().unwrap_err();
    assert!(err.contains("not of `bookworm`"), "{err}");
}
