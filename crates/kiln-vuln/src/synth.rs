//! Generated OSV records for the benchmark (issue 17 item 6): `Debian:12` advisories in the
//! real format (`DEBIAN-CVE-...` ids, source packages, ECOSYSTEM ranges), so that an import of
//! an `all.zip` of them and a scan of the managed Debian base image do realistic work.
//!
//! Package names: the 67 source packages of a bookworm minbase (with their versions there;
//! half of the fixed versions are above them, so half of the records naming one affect the
//! image) and generated names, 2,000 in all, drawn uniformly. Deterministic for a seed (splitmix64; no `rand`).

use serde_json::{json, Value};

/// Source packages of `mmdebstrap --variant=minbase bookworm` and their versions.
pub const MINBASE: [(&str, &str); 67] = [
    ("acl", "2.3.1-3"),
    ("adduser", "3.134"),
    ("apt", "2.6.1"),
    ("attr", "1:2.5.1-4"),
    ("audit", "1:3.0.9-1"),
    ("base-files", "12.4+deb12u15"),
    ("base-passwd", "3.6.1"),
    ("bash", "5.2.15-2"),
    ("bzip2", "1.0.8-5"),
    ("cdebconf", "0.270"),
    ("coreutils", "9.1-1"),
    ("dash", "0.5.12-2"),
    ("db5.3", "5.3.28+dfsg2-1"),
    ("debconf", "1.5.82"),
    ("debian-archive-keyring", "2023.3+deb12u2"),
    ("debianutils", "5.7-0.5~deb12u1"),
    ("diffutils", "1:3.8-4"),
    ("dpkg", "1.21.23"),
    ("e2fsprogs", "1.47.0-2"),
    ("findutils", "4.9.0-4"),
    ("gcc-12", "12.2.0-14+deb12u1"),
    ("gdbm", "1.23-3"),
    ("glibc", "2.36-9+deb12u14"),
    ("gmp", "2:6.2.1+dfsg1-1.1"),
    ("gnupg2", "2.2.40-1.1+deb12u2"),
    ("gnutls28", "3.7.9-2+deb12u7"),
    ("grep", "3.8-5"),
    ("gzip", "1.12-1"),
    ("hostname", "3.23+nmu1"),
    ("init-system-helpers", "1.65.2+deb12u1"),
    ("libcap-ng", "0.8.3-1"),
    ("libcap2", "1:2.66-4+deb12u3"),
    ("libffi", "3.4.4-1"),
    ("libfile-find-rule-perl", "0.34-4~deb12u1"),
    ("libgcrypt20", "1.10.1-3+deb12u1"),
    ("libgpg-error", "1.46-1"),
    ("libidn2", "2.3.3-1"),
    ("libmd", "1.0.4-2"),
    ("libnumber-compare-perl", "0.03-3"),
    ("libseccomp", "2.5.4-1+deb12u1"),
    ("libselinux", "3.4-1"),
    ("libsemanage", "3.4-1"),
    ("libsepol", "3.4-2.1"),
    ("libtasn1-6", "4.19.0-2+deb12u1"),
    ("libtext-glob-perl", "0.11-3"),
    ("libunistring", "1.0-2"),
    ("libxcrypt", "1:4.4.33-2"),
    ("libzstd", "1.5.4+dfsg2-5"),
    ("lz4", "1.9.4-1"),
    ("mawk", "1.3.4.20200120-3.1"),
    ("ncurses", "6.4-4"),
    ("nettle", "3.8.1-2"),
    ("p11-kit", "0.24.1-2"),
    ("pam", "1.5.2-6+deb12u2"),
    ("pcre2", "10.42-1"),
    ("perl", "5.36.0-7+deb12u3"),
    ("sed", "4.9-1+deb12u1"),
    ("shadow", "1:4.13+dfsg1-1+deb12u2"),
    ("systemd", "252.39-1~deb12u2"),
    ("sysvinit", "3.06-4"),
    ("tar", "1.34+dfsg-1.2+deb12u1"),
    ("tzdata", "2026b-0+deb12u1"),
    ("usrmerge", "37~deb12u1"),
    ("util-linux", "2.38.1-5+deb12u3"),
    ("xxhash", "0.8.1-1"),
    ("xz-utils", "5.4.1-1+deb12u1"),
    ("zlib", "1:1.2.13.dfsg-1"),
];

/// How many source package names records draw from. The Debian archive has about 35,000
/// source packages; OSV's Debian records name about half of them. With 20,000 names, 100,000
/// records give a minbase image about 700 advisories for its packages and some 350 findings:
/// a few times what scanners report for debian:bookworm (on the order of 100), so the
/// benchmark's figures err on the slow side.
pub const PACKAGE_NAMES: usize = 20_000;

const STEMS: [&str; 40] = [
    "curl",
    "openssl",
    "nginx",
    "apache2",
    "python3",
    "ruby",
    "node",
    "golang",
    "php",
    "rust",
    "xml",
    "yaml",
    "json",
    "png",
    "jpeg",
    "tiff",
    "sqlite",
    "postgresql",
    "mariadb",
    "redis",
    "git",
    "vim",
    "emacs",
    "gtk",
    "qt",
    "kde",
    "gnome",
    "x11",
    "wayland",
    "mesa",
    "ffmpeg",
    "gstreamer",
    "samba",
    "bind9",
    "dnsmasq",
    "krb5",
    "ldap",
    "sasl",
    "ssh",
    "zip",
];
const SUFFIXES: [&str; 10] = [
    "", "-utils", "-perl", "-python", "-tools", "-common", "-core", "-extra", "-dev", "-data",
];

/// The package name and base version of index `i` (minbase first).
pub fn package(i: usize) -> (String, String) {
    if let Some((name, version)) = MINBASE.get(i) {
        return (name.to_string(), version.to_string());
    }
    let n = i - MINBASE.len();
    let stem = STEMS[n % STEMS.len()];
    let suffix = SUFFIXES[(n / STEMS.len()) % SUFFIXES.len()];
    let generation = n / (STEMS.len() * SUFFIXES.len());
    let name = if generation == 0 {
        format!("{stem}{suffix}")
    } else {
        format!("lib{stem}{generation}{suffix}")
    };
    (
        name,
        format!("{}.{}.{}-{}", 1 + n % 7, n % 13, n % 5, 1 + n % 3),
    )
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const VECTORS: [&str; 4] = [
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N",
    "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
];
const URGENCIES: [&str; 5] = ["low", "medium", "high", "unimportant", "not yet assigned"];

/// `n` OSV records for `Debian:12`, deterministic for `seed`.
pub fn generate(n: usize, seed: u64) -> impl Iterator<Item = Value> {
    let mut rng = SplitMix(seed);
    (0..n).map(move |i| record(i, &mut rng))
}

fn record(i: usize, rng: &mut SplitMix) -> Value {
    let year = 2015 + (i % 11);
    let cve = format!("CVE-{year}-{:05}", 10_000 + i);
    let day = 1 + rng.below(28);
    let month = 1 + rng.below(12);
    let affected: Vec<Value> = (0..1 + rng.below(3))
        .map(|_| {
            // Uniform over the names (see [`PACKAGE_NAMES`]).
            let index = rng.below(PACKAGE_NAMES as u64) as usize;
            let (name, base) = package(index);
            // Above the installed version (affects it) or below (does not).
            let fixed = if rng.below(2) == 0 {
                format!("{base}+deb12u{}", 50 + rng.below(50))
            } else {
                format!("{base}~pre{}", rng.below(9))
            };
            let events = if rng.below(10) == 0 {
                json!([{"introduced": "0"}, {"last_affected": fixed}])
            } else {
                json!([{"introduced": "0"}, {"fixed": fixed}])
            };
            json!({
                "package": {"ecosystem": "Debian:12", "name": name,
                            "purl": format!("pkg:deb/debian/{name}?arch=source")},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                "ecosystem_specific": {"urgency": URGENCIES[rng.below(5) as usize]},
            })
        })
        .collect();
    let mut record = json!({
        "schema_version": "1.6.0",
        "id": format!("DEBIAN-{cve}"),
        "modified": format!("2025-{month:02}-{day:02}T08:{:02}:00Z", rng.below(60)),
        "published": format!("{year}-{month:02}-{day:02}T00:00:00Z"),
        "aliases": [cve],
        "summary": format!("memory safety issue in {}", affected[0]["package"]["name"].as_str().unwrap_or("a package")),
        "details": format!("A flaw was found that allows a remote attacker to cause a denial of service or possibly execute code (synthetic record {i})."),
        "affected": affected,
        "references": [{"type": "ADVISORY", "url": format!("https://security-tracker.debian.org/tracker/{cve}")}],
    });
    if rng.below(2) == 0 {
        record["severity"] = json!([{"type": "CVSS_V3", "score": VECTORS[rng.below(4) as usize]}]);
    }
    record
}

/// Writes `n` generated records as an OSV `all.zip` (one deflated `<id>.json` entry each, as
/// OSV.dev publishes them).
pub fn write_all_zip(path: &std::path::Path, n: usize, seed: u64) -> std::io::Result<()> {
    use std::io::Write;
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for record in generate(n, seed) {
        let id = record["id"].as_str().unwrap_or("record").to_string();
        zip.start_file(format!("{id}.json"), options)
            .map_err(std::io::Error::other)?;
        serde_json::to_writer(&mut zip, &record)?;
        zip.flush()?;
    }
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_names_are_distinct() {
        let records: Vec<Value> = generate(200, 7).collect();
        assert_eq!(records.len(), 200);
        for r in &records {
            let a = crate::import::parse_osv_record(r.to_string().as_bytes()).unwrap();
            assert!(a.id.starts_with("DEBIAN-CVE-") && !a.affected.is_empty());
        }
        assert_eq!(generate(5, 7).collect::<Vec<_>>(), records[..5]);
        let names: std::collections::BTreeSet<String> =
            (0..PACKAGE_NAMES).map(|i| package(i).0).collect();
        assert_eq!(names.len(), PACKAGE_NAMES);
        assert!(records.iter().any(|r| r.get("severity").is_some()));
    }

    #[test]
    fn an_all_zip_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.zip");
        write_all_zip(&path, 300, 3).unwrap();
        let mut sink = crate::import::Collect::default();
        let summary =
            crate::import::import_path(&path, &crate::import::Limits::default(), &mut sink)
                .unwrap();
        assert_eq!((summary.batches, summary.records), (1, 300));
    }
}
