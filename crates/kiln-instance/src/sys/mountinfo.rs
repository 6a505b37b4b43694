//! Reading `/proc/self/mountinfo`: which mount points lie at or below a directory, in the order
//! to unmount them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Mount points at or below `dir` in a mountinfo text, last mounted first.
pub fn parse_mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(field))))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.reverse();
    found
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_is_parsed_and_filtered() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /var/kiln/i-1/merged rw - overlay overlay rw,lowerdir=/l
41 40 0:36 / /var/kiln/i-1/merged/dev rw,nosuid - tmpfs tmpfs rw
42 22 0:37 / /var/kiln/i-10/merged rw - overlay overlay rw
43 40 0:38 / /var/kiln/i-1/merged/my\\040dir rw - tmpfs tmpfs rw
";
        let got = parse_mounts_under(text, Path::new("/var/kiln/i-1"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/var/kiln/i-1/merged/my dir"),
                PathBuf::from("/var/kiln/i-1/merged/dev"),
                PathBuf::from("/var/kiln/i-1/merged"),
            ]
        );
    }
}
