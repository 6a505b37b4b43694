//! Parent images from outside the store: the managed Debian minimal base (built with
//! `mmdebstrap`) and images pulled from and pushed to OCI registries (with `skopeo`, through a
//! temporary OCI layout in the store's `tmp/`).

use crate::registry::RegistryAccess;
use crate::store::{check_tag, digest_hex, CommitMeta};
use crate::{io_err, Error, ImageRef, ImageStore, Result};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Debian mirror [`ImageStore::debian_base`] is usually given.
pub const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// `SOURCE_DATE_EPOCH` of the Debian base (2023-06-10T00:00:00Z, Debian 12's release day): file
/// mtimes are clamped to it and it is the image's creation time, so the same mirror content
/// gives the same image.
pub const DEBIAN_EPOCH: u64 = 1_686_355_200;
pub(crate) const DEBIAN_CREATED: &str = "2023-06-10T00:00:00Z";

/// How much of a failed command's standard error an error carries.
const STDERR_TAIL_LINES: usize = 20;
const STDERR_TAIL_CHARS: usize = 4000;

/// A temporary file or directory, removed when dropped.
pub(crate) struct Cleanup(pub(crate) PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.0) {
            Ok(md) if md.is_dir() => {
                let _ = fs::remove_dir_all(&self.0);
            }
            Ok(_) => {
                let _ = fs::remove_file(&self.0);
            }
            Err(_) => {}
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// The command line as a person would type it (for error messages).
fn shown(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// The last lines of a command's standard error.
pub(crate) fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
    let chars: Vec<char> = tail.chars().collect();
    if chars.len() > STDERR_TAIL_CHARS {
        let rest: String = chars[chars.len() - STDERR_TAIL_CHARS..].iter().collect();
        format!("...{rest}")
    } else if tail.is_empty() {
        "(no error output)".to_string()
    } else {
        tail
    }
}

/// Runs `cmd` to the end (stdin closed, output captured); a missing program is an error that
/// names the Debian `package` to install, a failure one that names the command and its stderr.
pub(crate) fn run(cmd: &mut Command, package: &str) -> Result<()> {
    let line = shown(cmd);
    let out = match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!(
                "`{}` is not installed: install the Debian package {package} (apt-get install {package})",
                cmd.get_program().to_string_lossy()
            )))
        }
        Err(e) => return Err(io_err("running", cmd.get_program())(e)),
    };
    if !out.status.success() {
        return Err(Error::Command {
            command: line,
            status: out.status.to_string(),
            stderr: stderr_tail(&out.stderr),
        });
    }
    Ok(())
}

pub(crate) fn check_suite(suite: &str) -> Result<()> {
    if suite.is_empty()
        || suite.len() > 64
        || suite.starts_with(['-', '.'])
        || !suite
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
    {
        return Err(Error::Invalid(format!(
            "bad Debian suite `{suite}`: use lower-case letters, digits, - and . (e.g. bookworm)"
        )));
    }
    Ok(())
}

pub(crate) fn check_mirror(mirror: &str) -> Result<()> {
    let scheme_ok = ["http://", "https://", "file:/"]
        .iter()
        .any(|s| mirror.starts_with(s));
    if !scheme_ok || mirror.len() > 1024 || mirror.chars().any(|c| c.is_whitespace()) {
        return Err(Error::Invalid(format!(
            "bad Debian mirror `{mirror}`: give an http://, https:// or file:/ URL without spaces"
        )));
    }
    Ok(())
}

pub(crate) fn check_registry(registry: &str) -> Result<()> {
    if registry.is_empty()
        || registry.len() > 255
        || registry.starts_with(['-', '.', ':'])
        || !registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return Err(Error::Invalid(format!(
            "bad registry `{registry}`: give a host name or address with an optional :port"
        )));
    }
    Ok(())
}

pub(crate) fn check_repository(repository: &str) -> Result<()> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    if repository.len() > 255 || !repository.split('/').all(component_ok) {
        return Err(Error::Invalid(format!(
            "bad repository `{repository}`: use /-separated components of lower-case letters, \
             digits, . _ and -"
        )));
    }
    Ok(())
}

/// `:tag` or `@sha256:...` for a reference that is a tag or a digest.
fn reference_suffix(reference: &str) -> Result<String> {
    if reference.contains(':') {
        digest_hex(reference)?;
        return Ok(format!("@{reference}"));
    }
    let ok = !reference.is_empty()
        && reference.len() <= 128
        && reference
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(Error::Invalid(format!(
            "bad reference `{reference}`: give a tag (letters, digits, _ . -; at most 128) or a \
             sha256:<hex> digest"
        )));
    }
    Ok(format!(":{reference}"))
}

fn check_dest_reference(dest: &str) -> Result<&str> {
    let dest = dest.strip_prefix("docker://").unwrap_or(dest);
    if dest.is_empty()
        || dest.len() > 1024
        || dest.starts_with(['-', '/'])
        || !dest.contains('/')
        || dest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::Invalid(format!(
            "bad destination `{dest}`: give registry/repository[:tag]"
        )));
    }
    Ok(dest)
}

/// The file name of a path in the store's temporary directory (skopeo runs there, so that the
/// `oci:` references it is given hold no `:` of the store's own path).
fn name_in_tmp(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Invalid(format!("bad temporary path {}", path.display())))
}

/// Compresses `src` into `dst` with zstd level 3, on all cores.
fn zstd_file(src: &Path, dst: &Path) -> Result<()> {
    let mut input =
        BufReader::with_capacity(1 << 20, File::open(src).map_err(io_err("opening", src))?);
    let out = File::create(dst).map_err(io_err("creating", dst))?;
    let mut encoder = zstd::Encoder::new(BufWriter::with_capacity(1 << 20, out), 3)
        .map_err(io_err("compressing into", dst))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    encoder
        .multithread(u32::try_from(workers).unwrap_or(1))
        .map_err(io_err("compressing into", dst))?;
    io::copy(&mut input, &mut encoder).map_err(io_err("compressing", src))?;
    let buf = encoder.finish().map_err(io_err("compressing into", dst))?;
    buf.into_inner()
        .map_err(|e| io_err("writing", dst)(e.into_error()))?;
    Ok(())
}

impl ImageStore {
    /// Builds the managed Debian minimal base: `mmdebstrap --variant=minbase --mode=root
    /// --format=tar SUITE TAR MIRROR` (as root, with `SOURCE_DATE_EPOCH` = [`DEBIAN_EPOCH`])
    /// into the store's `tmp/`, compressed with zstd and imported as a one-layer image under
    /// `tag`. The temporary files are removed whatever happens. Takes about 15 s and needs the
    /// network to the mirror (e.g. [`DEFAULT_DEBIAN_MIRROR`]).
    pub fn debian_base(&self, mirror: &str, suite: &str, tag: &str) -> Result<ImageRef> {
        check_tag(tag)?;
        check_suite(suite)?;
        check_mirror(mirror)?;
        let base = self.temp_path("debian");
        let tar = Cleanup(with_suffix(&base, ".tar"));
        let zst = Cleanup(with_suffix(&base, ".tar.zst"));
        run(
            Command::new("mmdebstrap")
                .args(["--variant=minbase", "--mode=root", "--format=tar", "--"])
                .arg(suite)
                .arg(&tar.0)
                .arg(mirror)
                .env("SOURCE_DATE_EPOCH", DEBIAN_EPOCH.to_string()),
            "mmdebstrap",
        )?;
        zstd_file(&tar.0, &zst.0)?;
        drop(tar);
        let layer = self.import_layer_file(&zst.0)?;
        drop(zst);
        let meta = CommitMeta {
            created: Some(DEBIAN_CREATED.to_string()),
            created_by: Some(format!("mmdebstrap --variant=minbase {suite} {mirror}")),
            comment: Some(format!("kiln debian base: {suite} from {mirror}")),
            ..CommitMeta::default()
        };
        self.commit(None, layer, &meta, tag)
    }

    /// Pulls `registry/repository:reference` (or `@reference` when it is a `sha256:` digest)
    /// with `skopeo copy` into a temporary OCI layout and imports it as `tag`. An image index
    /// gives its linux/amd64 image. `plain_http` allows a registry without (verified) TLS.
    pub fn pull_registry(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        plain_http: bool,
        tag: &str,
    ) -> Result<ImageRef> {
        let access = RegistryAccess {
            insecure: plain_http,
            ..RegistryAccess::default()
        };
        self.pull_registry_with(registry, repository, reference, &access, tag)
    }

    /// [`ImageStore::pull_registry`] with a CA bundle and credentials.
    pub fn pull_registry_with(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        access: &RegistryAccess<'_>,
        tag: &str,
    ) -> Result<ImageRef> {
        check_tag(tag)?;
        check_registry(registry)?;
        check_repository(repository)?;
        let source = format!(
            "docker://{registry}/{repository}{}",
            reference_suffix(reference)?
        );
        let dir = Cleanup(self.temp_path("pull"));
        let name = name_in_tmp(&dir.0)?;
        let mut cmd = Command::new("skopeo");
        cmd.current_dir(self.tmp_dir()).args(["copy", "--quiet"]);
        let _certs = self.access_args(&mut cmd, access, "--src-")?;
        cmd.arg(&source).arg(format!("oci:{name}:pulled"));
        run(&mut cmd, "skopeo")?;
        self.import_oci_layout(&dir.0, "pulled", tag)
    }

    /// Pushes `image` to `dest_reference` (`registry/repository[:tag]`, `docker://` optional)
    /// with `skopeo copy` from a temporary OCI layout; answers the manifest digest the registry
    /// stored. `plain_http` allows a registry without (verified) TLS.
    pub fn push_registry(
        &self,
        image: &ImageRef,
        dest_reference: &str,
        plain_http: bool,
    ) -> Result<String> {
        let access = RegistryAccess {
            insecure: plain_http,
            ..RegistryAccess::default()
        };
        self.push_registry_with(image, dest_reference, &access)
    }

    /// [`ImageStore::push_registry`] with a CA bundle and credentials.
    pub fn push_registry_with(
        &self,
        image: &ImageRef,
        dest_reference: &str,
        access: &RegistryAccess<'_>,
    ) -> Result<String> {
        let dest = check_dest_reference(dest_reference)?;
        let dir = Cleanup(self.temp_path("push"));
        let digest_file = Cleanup(self.temp_path("push-digest"));
        self.export_oci_layout(image, &dir.0, "push")?;
        let name = name_in_tmp(&dir.0)?;
        let digest_name = name_in_tmp(&digest_file.0)?;
        let mut cmd = Command::new("skopeo");
        cmd.current_dir(self.tmp_dir()).args(["copy", "--quiet"]);
        let _certs = self.access_args(&mut cmd, access, "--dest-")?;
        cmd.arg("--digestfile")
            .arg(&digest_name)
            .arg(format!("oci:{name}:push"))
            .arg(format!("docker://{dest}"));
        run(&mut cmd, "skopeo")?;
        let text = fs::read_to_string(&digest_file.0).map_err(io_err("reading", &digest_file.0))?;
        let digest = text.trim().to_string();
        digest_hex(&digest)?;
        Ok(digest)
    }

    /// Pushes `image` straight from the store's own OCI layout (`oci:<store>:<tag>`) to
    /// `registry/repository`, once per tag in `tags`, with `skopeo copy`. The first copy sends
    /// the blobs the registry lacks (none it already has, from an earlier build or another
    /// repository it mounts them from); the others find every blob there and send only the
    /// manifest. The registry must store the image's own manifest digest for every tag: the
    /// first that differs stops the pushes with [`Error::DigestMismatch`].
    pub fn push_registry_tags(
        &self,
        image: &ImageRef,
        registry: &str,
        repository: &str,
        tags: &[String],
        access: &RegistryAccess<'_>,
    ) -> Result<()> {
        check_registry(registry)?;
        check_repository(repository)?;
        check_tag(&image.tag)?;
        if tags.is_empty() {
            return Err(Error::Invalid(format!(
                "no tag to push {registry}/{repository} with"
            )));
        }
        for tag in tags {
            let suffix = reference_suffix(tag)?;
            if !suffix.starts_with(':') {
                return Err(Error::Invalid(format!(
                    "bad tag `{tag}`: a tag, not a digest"
                )));
            }
            let digest_file = Cleanup(self.temp_path("push-digest"));
            let mut cmd = Command::new("skopeo");
            // In the store, so that the `oci:` reference holds no `:` of the store's own path.
            cmd.current_dir(self.root()).args(["copy", "--quiet"]);
            let _certs = self.access_args(&mut cmd, access, "--dest-")?;
            cmd.arg("--digestfile")
                .arg(&digest_file.0)
                .arg(format!("oci:.:{}", image.tag))
                .arg(format!("docker://{registry}/{repository}{suffix}"));
            run(&mut cmd, "skopeo")?;
            let text =
                fs::read_to_string(&digest_file.0).map_err(io_err("reading", &digest_file.0))?;
            let digest = text.trim();
            if digest != image.digest {
                return Err(Error::DigestMismatch {
                    what: format!(
                        "the manifest the registry stored as {registry}/{repository}{suffix}"
                    ),
                    expected: image.digest.clone(),
                    actual: digest.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Deletes `reference` (`registry/repository:tag`) from its registry with `skopeo delete`
    /// (the registry must allow deletes: docker-registry's `storage: delete: enabled: true`).
    pub fn delete_registry(&self, reference: &str, access: &RegistryAccess<'_>) -> Result<()> {
        let reference = check_dest_reference(reference)?;
        let mut cmd = Command::new("skopeo");
        cmd.current_dir(self.tmp_dir()).arg("delete");
        let _certs = self.access_args(&mut cmd, access, "--")?;
        cmd.arg(format!("docker://{reference}"));
        run(&mut cmd, "skopeo")
    }

    /// Adds the TLS and credential options of `access` to a skopeo command (`side` is
    /// `--src-`, `--dest-` or `--`); answers the certificate directory made for a CA bundle,
    /// removed when dropped (skopeo reads CAs from a directory of `*.crt` files).
    fn access_args(
        &self,
        cmd: &mut Command,
        access: &RegistryAccess<'_>,
        side: &str,
    ) -> Result<Option<Cleanup>> {
        if let Some(auth) = access.auth {
            cmd.arg("--authfile").arg(auth);
        }
        if access.insecure {
            cmd.arg(format!("{side}tls-verify=false"));
            return Ok(None);
        }
        let Some(ca) = access.ca else {
            return Ok(None);
        };
        let dir = Cleanup(self.temp_path("certs"));
        fs::create_dir(&dir.0).map_err(io_err("creating", &dir.0))?;
        let crt = dir.0.join("ca.crt");
        fs::copy(ca, &crt).map_err(io_err("copying the registry CA bundle", ca))?;
        cmd.arg(format!("{side}cert-dir")).arg(&dir.0);
        Ok(Some(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_debian_package() {
        let err = run(&mut Command::new("kiln-no-such-mmdebstrap"), "mmdebstrap")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kiln-no-such-mmdebstrap"), "{err}");
        assert!(
            err.contains("install the Debian package mmdebstrap"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_command_names_itself_and_its_stderr_tail() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 50); do echo line$i >&2; done; exit 3",
        ]);
        let err = run(&mut cmd, "dash").unwrap_err().to_string();
        assert!(err.starts_with("`sh -c for i in"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("line50") && err.contains("line31"), "{err}");
        assert!(!err.contains("line30\n"), "{err}");
    }

    #[test]
    fn references_become_tags_or_digests() {
        assert_eq!(reference_suffix("v1.0").ok(), Some(":v1.0".to_string()));
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(reference_suffix(&d).ok(), Some(format!("@{d}")));
        assert!(reference_suffix("-x").is_err());
        assert!(reference_suffix("").is_err());
        assert!(check_dest_reference("docker://r:5000/a/b:c").is_ok());
        assert!(check_dest_reference("nohost").is_err());
    }
}
