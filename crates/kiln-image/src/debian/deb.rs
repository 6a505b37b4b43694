//! A `.deb`: fetched into a file and checked against the size and SHA256 of its index stanza,
//! then read as what it is, an `ar` archive of `debian-binary`, `control.tar[.xz|.zst|.gz]` and
//! `data.tar[.xz|.zst|.gz]`.

use super::packages::Package;
use super::{get, DebianMirror};
use crate::{io_err, Error, Result};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const AR_MAGIC: &[u8] = b"!<arch>\n";

/// Fetches `pkg` into `dir` (as `NAME.deb`) and checks it; answers the file.
pub(crate) fn fetch(mirror: &DebianMirror, pkg: &Package, dir: &Path) -> Result<PathBuf> {
    let url = mirror.url_of(&pkg.filename);
    let dest = dir.join(format!("{}.deb", pkg.name));
    let what = format!("package {} {}", pkg.name, pkg.version);
    get::to_file(&what, &url, &dest, pkg.size, &pkg.sha256)?;
    Ok(dest)
}

/// One member of an `ar` archive: its name, and where its data is.
#[derive(Debug)]
struct Member {
    name: String,
    offset: u64,
    size: u64,
}

fn members(file: &mut File, path: &Path) -> Result<Vec<Member>> {
    let bad = |why: &str| Error::Invalid(format!("{} is not a .deb: {why}", path.display()));
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic).map_err(|_| bad("too short"))?;
    if magic != AR_MAGIC {
        return Err(bad("no ar header"));
    }
    let len = file.metadata().map_err(io_err("reading", path))?.len();
    let mut out = Vec::new();
    let mut pos = 8u64;
    while pos + 60 <= len {
        let mut header = [0u8; 60];
        file.seek(SeekFrom::Start(pos))
            .and_then(|_| file.read_exact(&mut header))
            .map_err(io_err("reading", path))?;
        if &header[58..60] != b"`\n" {
            return Err(bad("bad member header"));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = String::from_utf8_lossy(&header[48..58])
            .trim()
            .parse()
            .map_err(|_| bad("bad member size"))?;
        let offset = pos + 60;
        if offset + size > len {
            return Err(bad("a member runs past the end"));
        }
        out.push(Member { name, offset, size });
        pos = offset + size + (size & 1);
    }
    Ok(out)
}

/// The decompressed content of the member `prefix` (`control.tar` or `data.tar`, with any of
/// the compressions dpkg writes).
fn member_tar(path: &Path, prefix: &str) -> Result<Box<dyn Read + Send>> {
    let mut file = File::open(path).map_err(io_err("opening", path))?;
    let all = members(&mut file, path)?;
    let m = all
        .iter()
        .find(|m| m.name == prefix || m.name.starts_with(&format!("{prefix}.")))
        .ok_or_else(|| Error::Invalid(format!("{} has no {prefix} member", path.display())))?;
    file.seek(SeekFrom::Start(m.offset))
        .map_err(io_err("reading", path))?;
    let raw = BufReader::with_capacity(1 << 16, file).take(m.size);
    let ext = &m.name[prefix.len()..];
    let reader: Box<dyn Read + Send> = match ext {
        "" => Box::new(raw),
        ".xz" => Box::new(lzma_rust2::XzReader::new(raw, true)),
        ".gz" => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        ".zst" => Box::new(zstd::Decoder::with_buffer(raw).map_err(io_err("decompressing", path))?),
        _ => {
            return Err(Error::Invalid(format!(
                "{}: {} is compressed in a way Kiln does not read",
                path.display(),
                m.name
            )))
        }
    };
    Ok(reader)
}

/// The package's files (`data.tar`), decompressed.
pub(crate) fn data_tar(path: &Path) -> Result<tar::Archive<Box<dyn Read + Send>>> {
    Ok(tar::Archive::new(member_tar(path, "data.tar")?))
}

/// The package's control files (`control.tar`), decompressed.
#[cfg(test)]
pub(crate) fn control_tar(path: &Path) -> Result<tar::Archive<Box<dyn Read + Send>>> {
    Ok(tar::Archive::new(member_tar(path, "control.tar")?))
}

/// The content of the file `name` (e.g. `bin/busybox`) in the package's data, at most `limit`
/// bytes.
pub(crate) fn data_file(path: &Path, name: &str, limit: u64) -> Result<Vec<u8>> {
    let mut archive = data_tar(path)?;
    let entries = archive
        .entries()
        .map_err(io_err("reading the data of", path))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("reading the data of", path))?;
        let entry_path = entry.path_bytes().into_owned();
        let entry_name = String::from_utf8_lossy(&entry_path);
        if entry_name.trim_start_matches("./").trim_start_matches('/') != name {
            continue;
        }
        if entry.header().entry_type() != tar::EntryType::Regular || entry.size() > limit {
            return Err(Error::Invalid(format!(
                "{}: {name} is not a regular file of at most {limit} bytes",
                path.display()
            )));
        }
        let mut out = Vec::new();
        entry
            .read_to_end(&mut out)
            .map_err(io_err("reading the data of", path))?;
        return Ok(out);
    }
    Err(Error::Invalid(format!(
        "{} has no file {name}",
        path.display()
    )))
}

/// Writes an `ar` archive of `members` (name, content) to `out` (the tests' and nothing
/// else's: Kiln reads debs, it does not make them).
#[cfg(test)]
pub(crate) fn write_ar(
    out: &mut impl std::io::Write,
    members: &[(&str, &[u8])],
) -> std::io::Result<()> {
    out.write_all(AR_MAGIC)?;
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            "100644",
            data.len()
        );
        out.write_all(header.as_bytes())?;
        out.write_all(data)?;
        if data.len() % 2 == 1 {
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn members_and_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.deb");
        let control = gz(&tar_of(&[("./control", b"Package: x\n")]));
        let data = zstd::encode_all(&tar_of(&[("./bin/busybox", b"odd")])[..], 3).unwrap();
        let mut f = File::create(&path).unwrap();
        write_ar(
            &mut f,
            &[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", &control),
                ("data.tar.zst", &data),
            ],
        )
        .unwrap();
        drop(f);
        assert_eq!(data_file(&path, "bin/busybox", 10).unwrap(), b"odd");
        assert!(data_file(&path, "bin/busybox", 2).is_err());
        let err = data_file(&path, "bin/sh", 10).unwrap_err().to_string();
        assert!(err.contains("has no file bin/sh"), "{err}");
        let mut c = control_tar(&path).unwrap();
        assert_eq!(c.entries().unwrap().count(), 1);
    }

    #[test]
    fn a_file_that_is_not_ar_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.deb");
        std::fs::write(&path, b"hello, not an archive").unwrap();
        let err = data_file(&path, "a", 1).unwrap_err().to_string();
        assert!(err.contains("is not a .deb"), "{err}");
    }
}
