//! Images that do not come from a build: rootfs archives and the managed busybox base.

use crate::layer::{EntryMeta, Kind};
use crate::store::CommitMeta;
use crate::{io_err, Compression, Error, ImageRef, ImageStore, Result};
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

/// Where the busybox base takes its binary from (Debian's busybox-static package).
pub const BUSYBOX: &str = "/bin/busybox";

/// The fixed time of the busybox base (its entries and its configuration), so that building it
/// twice gives the same digest.
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// True if the ELF file has no program interpreter (is statically linked).
/// `/bin/bash` of the busybox base image.
const BASH_SHIM: &[u8] = b"#!/bin/sh\nexec /bin/sh \"$@\"\n";

/// Refuses what is not a static x86-64 ELF binary (`what` names it).
pub(crate) fn check_static(data: &[u8], what: &str) -> Result<()> {
    match is_static_elf(data) {
        Some(true) => Ok(()),
        Some(false) => Err(Error::Invalid(format!(
            "{what} is dynamically linked; the busybox base image needs the static one (Debian package busybox-static)"
        ))),
        None => Err(Error::Invalid(format!("{what} is not an x86-64 ELF executable"))),
    }
}

/// Whether `data` is a static little-endian ELF64 binary: `Some(false)` when it names a program
/// interpreter (`PT_INTERP`, dynamically linked), `None` when it is not ELF64 or is truncated.
pub fn is_static_elf(data: &[u8]) -> Option<bool> {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return None; // not a little-endian ELF64
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        if u32_at(phoff.checked_add(i.checked_mul(phentsize)?)?)? == 3 {
            return Some(false); // PT_INTERP
        }
    }
    Some(true)
}

impl ImageStore {
    /// Imports a root file system archive (`.tar`, `.tar.gz` or `.tar.zst`; recognised by
    /// content) as a one-layer image. The blob is stored as given; every entry is checked first.
    pub fn import_rootfs_archive(&self, path: &Path, tag: &str) -> Result<ImageRef> {
        let layer = self.import_layer_file(path)?;
        let meta = CommitMeta {
            comment: Some(format!("imported from {}", path.display())),
            ..CommitMeta::default()
        };
        self.commit(None, layer, &meta, tag)
    }

    /// Builds the managed `busybox` base image from the host's static [`BUSYBOX`]: the usual
    /// top-level directories, the binary, one symlink per applet and a `/bin/bash` shim that
    /// runs busybox's ash, all with fixed owners and mtimes, so the same binary always gives the
    /// same image digest.
    pub fn busybox_base(&self, tag: &str) -> Result<ImageRef> {
        self.busybox_base_from(Path::new(BUSYBOX), tag)
    }

    /// [`ImageStore::busybox_base`] with another binary.
    pub fn busybox_base_from(&self, busybox: &Path, tag: &str) -> Result<ImageRef> {
        let data = match fs::read(busybox) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::Invalid(format!(
                    "the busybox base image needs {} (Debian package busybox-static), which does not exist",
                    busybox.display()
                )))
            }
            Err(e) => return Err(io_err("reading", busybox)(e)),
        };
        check_static(&data, &busybox.display().to_string())?;
        self.busybox_layer(
            busybox,
            &data,
            &format!("busybox from the host's {}", busybox.display()),
            tag,
        )
    }

    /// The busybox base from the bytes of a static busybox binary (`source` says where they
    /// came from, for the image's history): written to the store's temporary directory for
    /// `--list-full`, removed afterwards.
    pub(crate) fn busybox_base_bytes(
        &self,
        data: &[u8],
        source: &str,
        tag: &str,
    ) -> Result<ImageRef> {
        check_static(data, source)?;
        // Named `busybox`: busybox picks its applet by the name it runs as.
        let dir = crate::fetch::Cleanup(self.temp_path("busybox"));
        fs::create_dir(&dir.0).map_err(io_err("creating", &dir.0))?;
        let bin = dir.0.join("busybox");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o700)
                .open(&bin)
                .map_err(io_err("creating", &bin))?;
            io::Write::write_all(&mut f, data).map_err(io_err("writing", &bin))?;
        }
        self.busybox_layer(&bin, data, source, tag)
    }

    /// The layer and image of the busybox base; `busybox` is a runnable copy of `data`.
    fn busybox_layer(
        &self,
        busybox: &Path,
        data: &[u8],
        source: &str,
        tag: &str,
    ) -> Result<ImageRef> {
        let out = Command::new(busybox)
            .arg("--list-full")
            .output()
            .map_err(io_err("running", busybox))?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "`{} --list-full` failed: {}",
                busybox.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_start_matches('/').to_string())
            .filter(|l| !l.is_empty() && !l.contains("..") && l != "bin/busybox")
            .collect();
        applets.sort();
        applets.dedup();

        let dirs: [(&str, u32); 11] = [
            ("bin", 0o755),
            ("dev", 0o755),
            ("etc", 0o755),
            ("proc", 0o555),
            ("root", 0o700),
            ("sbin", 0o755),
            ("sys", 0o555),
            ("tmp", 0o1777),
            ("usr", 0o755),
            ("usr/bin", 0o755),
            ("usr/sbin", 0o755),
        ];
        let files: [(&str, &[u8]); 2] = [
            ("etc/group", b"root:x:0:\n"),
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        ];
        let layer = self.write_layer(Compression::Zstd, |w| {
            let werr = |e| io_err("writing the busybox layer for", busybox)(e);
            for (d, mode) in dirs {
                w.append(
                    d.as_bytes(),
                    &EntryMeta::simple(Kind::Dir, mode, 0),
                    &mut io::empty(),
                )
                .map_err(werr)?;
            }
            let mut bin = EntryMeta::simple(Kind::File, 0o755, 0);
            bin.size = data.len() as u64;
            w.append(b"bin/busybox", &bin, &mut &data[..])
                .map_err(werr)?;
            for (name, content) in files {
                let mut m = EntryMeta::simple(Kind::File, 0o644, 0);
                m.size = content.len() as u64;
                w.append(name.as_bytes(), &m, &mut &content[..])
                    .map_err(werr)?;
            }
            // Component documents run ExecuteBash, and Debian's busybox has no bash applet: a
            // shim hands bash's scripts to busybox's ash (POSIX sh plus common bash-isms).
            if !applets.iter().any(|a| a == "bin/bash") {
                let mut m = EntryMeta::simple(Kind::File, 0o755, 0);
                m.size = BASH_SHIM.len() as u64;
                w.append(b"bin/bash", &m, &mut &BASH_SHIM[..])
                    .map_err(werr)?;
            }
            for a in &applets {
                let m = EntryMeta::simple(Kind::Symlink(b"/bin/busybox".to_vec()), 0o777, 0);
                w.append(a.as_bytes(), &m, &mut io::empty()).map_err(werr)?;
            }
            Ok(())
        })?;
        let meta = CommitMeta {
            created: Some(EPOCH.to_string()),
            created_by: Some("kiln busybox base".to_string()),
            comment: Some(source.to_string()),
            ..CommitMeta::default()
        };
        self.commit(None, layer, &meta, tag)
    }
}
