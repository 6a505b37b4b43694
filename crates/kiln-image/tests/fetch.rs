//! Parent images from outside: pushes to and pulls from a real registry (Debian's
//! docker-registry on 127.0.0.1), and the Debian base built with mmdebstrap (needs the network
//! to the Debian mirror).

mod common;

use kiln_image::{Error, ImageStore, DEFAULT_DEBIAN_MIRROR};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `docker-registry serve` on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    addr: String,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.join("storage");
        fs::create_dir_all(&storage).unwrap();
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: {addr}}}\n",
                storage.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("docker-registry (Debian package docker-registry) is needed: {e}")
            });
        let registry = Registry { child, addr };
        registry.wait_ready(dir);
        registry
    }

    /// Waits until `GET /v2/` answers 200.
    fn wait_ready(&self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
                let mut answer = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut answer).is_ok()
                    && answer.starts_with("HTTP/1.0 200")
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `path` relative to `base` (both absolute), through `..` components.
fn pathdiff(path: &Path, base: &Path) -> Option<std::path::PathBuf> {
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return None;
    }
    let mut out = std::path::PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    Some(out)
}

fn tmp_is_empty(store: &ImageStore) -> bool {
    fs::read_dir(store.root().join("tmp")).unwrap().count() == 0
}

#[test]
fn registry_round_trip_keeps_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(&tmp.path().join("registry"));
    let a = ImageStore::open(&tmp.path().join("a")).unwrap();
    let busybox = a.busybox_base("busybox").unwrap();

    let dest = format!("{}/kiln/busybox:v1", registry.addr);
    let pushed = a.push_registry(&busybox, &dest, true).unwrap();
    assert_eq!(
        pushed, busybox.digest,
        "the registry keeps the OCI manifest as is"
    );
    assert!(tmp_is_empty(&a), "push leaves no temporary files");

    // Into another store by tag, and into the same one by digest.
    let b = ImageStore::open(&tmp.path().join("b")).unwrap();
    let pulled = b
        .pull_registry(&registry.addr, "kiln/busybox", "v1", true, "pulled")
        .unwrap();
    assert_eq!(pulled.digest, busybox.digest);
    assert_eq!(pulled.tag, "pulled");
    assert_eq!(b.resolve("pulled").unwrap(), pulled);
    assert_eq!(
        b.manifest(&pulled).unwrap().layers(),
        a.manifest(&busybox).unwrap().layers()
    );
    assert_eq!(
        b.config(&pulled).unwrap().rootfs().diff_ids(),
        a.config(&busybox).unwrap().rootfs().diff_ids()
    );
    let lowers = b.lower_dirs(&pulled).unwrap();
    assert_eq!(lowers.len(), 1);
    assert!(lowers[0].join("bin/busybox").is_file(), "{lowers:?}");
    assert!(tmp_is_empty(&b), "pull leaves no temporary files");

    // A store opened by a relative path works the same (skopeo runs in its tmp/).
    let rel = std::env::current_dir()
        .ok()
        .and_then(|cwd| pathdiff(tmp.path(), &cwd));
    if let Some(rel) = rel {
        let c = ImageStore::open(&rel.join("c")).unwrap();
        let image = c.busybox_base("busybox").unwrap();
        let digest = c
            .push_registry(&image, &format!("{}/kiln/rel:v1", registry.addr), true)
            .unwrap();
        assert_eq!(digest, image.digest);
        let back = c
            .pull_registry(&registry.addr, "kiln/rel", "v1", true, "back")
            .unwrap();
        assert_eq!(back.digest, image.digest);
    }

    let by_digest = a
        .pull_registry(
            &registry.addr,
            "kiln/busybox",
            &busybox.digest,
            true,
            "by-digest",
        )
        .unwrap();
    assert_eq!(by_digest.digest, busybox.digest);
    assert_eq!(a.images().unwrap().len(), 2);

    // A repository the registry does not have: the error names the reference.
    let err = b
        .pull_registry(&registry.addr, "kiln/missing", "latest", true, "missing")
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Command { .. }), "{err:?}");
    assert!(
        text.contains(&format!("docker://{}/kiln/missing:latest", registry.addr)),
        "{text}"
    );
    assert!(b.resolve("missing").is_err());
    assert!(tmp_is_empty(&b), "a failed pull leaves no temporary files");

    // TLS is required unless asked otherwise.
    let err = b
        .pull_registry(&registry.addr, "kiln/busybox", "v1", false, "tls")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--src-tls-verify") || err.contains("http"),
        "{err}"
    );
}

#[test]
fn registry_inputs_are_checked_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let bad = |r: Result<kiln_image::ImageRef, Error>| match r {
        Err(Error::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let m = bad(store.pull_registry("127.0.0.1:1", "kiln/x", "bad tag", true, "t"));
    assert!(m.contains("`bad tag`"), "{m}");
    let m = bad(store.pull_registry("127.0.0.1:1", "kiln/x", "sha256:abc", true, "t"));
    assert!(m.contains("sha256:abc"), "{m}");
    let m = bad(store.pull_registry("127.0.0.1:1", "Kiln/X", "v1", true, "t"));
    assert!(m.contains("`Kiln/X`"), "{m}");
    let m = bad(store.pull_registry("--src-creds=x", "kiln/x", "v1", true, "t"));
    assert!(m.contains("--src-creds=x"), "{m}");
    let m = bad(store.pull_registry("127.0.0.1:1", "kiln/x", "v1", true, "bad tag"));
    assert!(m.contains("bad tag"), "{m}");
    let image = store.busybox_base("busybox").unwrap();
    match store.push_registry(&image, "--dest-creds=x", true) {
        Err(Error::Invalid(m)) => assert!(m.contains("--dest-creds=x"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let m = bad(store.debian_base(DEFAULT_DEBIAN_MIRROR, "--variant=x", "d"));
    assert!(m.contains("--variant=x"), "{m}");
    let m = bad(store.debian_base("ftp://example", "bookworm", "d"));
    assert!(m.contains("ftp://example"), "{m}");
    assert!(tmp_is_empty(&store));
}

#[test]
fn debian_base_is_debian_12() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let started = Instant::now();
    let image = store
        .debian_base(DEFAULT_DEBIAN_MIRROR, "bookworm", "debian-12")
        .unwrap();
    eprintln!("debian base built in {:?}", started.elapsed());
    assert_eq!(store.resolve("debian-12").unwrap(), image);
    let manifest = store.manifest(&image).unwrap();
    assert_eq!(manifest.layers().len(), 1);
    assert_eq!(
        manifest.layers()[0].media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert!(tmp_is_empty(&store), "no temporary files are left");

    let root = tmp.path().join("root");
    store.merged_rootfs(&image, &root).unwrap();
    let os_release = fs::read_to_string(root.join("etc/os-release")).unwrap();
    assert!(os_release.lines().any(|l| l == "ID=debian"), "{os_release}");
    assert!(
        os_release.lines().any(|l| l == "VERSION_ID=\"12\""),
        "{os_release}"
    );
    assert!(root.join("usr/bin/apt-get").is_file());

    // Building again under the same tag: a failed build (a mirror that does not exist, which
    // fails within a second) names the command and its error output, and leaves the tag and
    // tmp/ as they were.
    let err = store
        .debian_base("file:/nonexistent/debian", "bookworm", "debian-12")
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Command { .. }), "{err:?}");
    assert!(text.contains("mmdebstrap --variant=minbase"), "{text}");
    assert!(
        text.contains("invalid mirror: file:/nonexistent/debian"),
        "{text}"
    );
    assert_eq!(store.resolve("debian-12").unwrap(), image);
    assert!(
        tmp_is_empty(&store),
        "a failed build leaves no temporary files"
    );
}
