//! Reading what `debugfs` (e2fsprogs) prints, for the commands the import sends it: `ls -p <N>`
//! (a directory's entries, machine-readable) and `stat <N>` (an inode's times and device
//! numbers). Every command names an inode by number (`<N>`), never by a path, so no name from
//! the disk is ever part of a command.
//!
//! Reading commands from standard input (`debugfs -f -`), debugfs echoes each one as
//! `debugfs: <command>` on standard output before its answer, which is what ties answers to
//! commands here. `ls -p` prints one `/<inode>/<mode>/<uid>/<gid>/<name>/<size>/` record per
//! entry (`<size>` empty for directories); a name holds any byte but `/` and NUL, newlines
//! included, so records are read field by field, not line by line.

use std::collections::HashMap;

/// One directory entry of `ls -p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub ino: u32,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub name: Vec<u8>,
}

/// What `stat` says of an inode that the listing does not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Seconds since the epoch.
    pub mtime: Option<i64>,
    /// Major and minor numbers of a character or block device.
    pub device: Option<(u32, u32)>,
}

/// A byte cursor over debugfs's output.
struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &[u8] {
        &self.text[self.at..]
    }

    /// The bytes up to (not including) `stop`, which is consumed.
    fn until(&mut self, stop: u8) -> Option<&[u8]> {
        let start = self.at;
        let len = self.text[start..].iter().position(|b| *b == stop)?;
        self.at = start + len + 1;
        Some(&self.text[start..start + len])
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.text.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    fn skip_line(&mut self) {
        match self.text[self.at..].iter().position(|b| *b == b'\n') {
            Some(n) => self.at += n + 1,
            None => self.at = self.text.len(),
        }
    }
}

fn number<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The inode of a `debugfs: <command> <N>` echo line starting at the cursor, if it is one.
fn echoed(cursor: &mut Cursor, command: &str) -> Option<u32> {
    let prefix = format!("debugfs: {command} <");
    if !cursor.rest().starts_with(prefix.as_bytes()) {
        return None;
    }
    cursor.at += prefix.len();
    let ino = cursor.until(b'>').and_then(number);
    cursor.skip_line();
    ino
}

/// The entries of every directory listed, by the directory's inode, `.` and `..` included.
pub(crate) fn parse_listings(out: &[u8]) -> Result<HashMap<u32, Vec<Entry>>, String> {
    let mut cursor = Cursor { text: out, at: 0 };
    let mut listings: HashMap<u32, Vec<Entry>> = HashMap::new();
    let mut current: Option<u32> = None;
    while cursor.at < out.len() {
        if let Some(ino) = echoed(&mut cursor, "ls -p") {
            listings.entry(ino).or_default();
            current = Some(ino);
            continue;
        }
        match cursor.rest()[0] {
            b'\n' => cursor.at += 1,
            b'/' => {
                let dir = current.ok_or("debugfs printed an entry before any listing")?;
                let at = cursor.at;
                let entry = parse_record(&mut cursor).ok_or_else(|| {
                    let shown = String::from_utf8_lossy(&out[at..out.len().min(at + 80)]);
                    format!("unreadable debugfs listing entry: {shown:?}")
                })?;
                listings.entry(dir).or_default().push(entry);
            }
            _ => {
                let at = cursor.at;
                cursor.skip_line();
                let line = String::from_utf8_lossy(&out[at..cursor.at]);
                return Err(format!("unexpected debugfs output: {:?}", line.trim_end()));
            }
        }
    }
    Ok(listings)
}

/// `/<ino>/<mode>/<uid>/<gid>/<name>/<size>/\n`, the size empty for directories.
fn parse_record(c: &mut Cursor) -> Option<Entry> {
    c.expect(b'/')?;
    let ino = number(c.until(b'/')?)?;
    let mode = u32::from_str_radix(std::str::from_utf8(c.until(b'/')?).ok()?, 8).ok()?;
    // Printed with %d: ids above 2^31 come out negative.
    let uid = number::<i64>(c.until(b'/')?)? as u32;
    let gid = number::<i64>(c.until(b'/')?)? as u32;
    let name = c.until(b'/')?.to_vec();
    let size = c.until(b'/')?;
    if !size.iter().all(u8::is_ascii_digit) {
        return None;
    }
    c.expect(b'\n')?;
    Some(Entry {
        ino,
        mode,
        uid,
        gid,
        name,
    })
}

/// The mtime and device numbers of every inode `stat` was asked about.
pub(crate) fn parse_stats(out: &[u8]) -> HashMap<u32, Stat> {
    let mut cursor = Cursor { text: out, at: 0 };
    let mut stats: HashMap<u32, Stat> = HashMap::new();
    let mut current: Option<u32> = None;
    while cursor.at < out.len() {
        if let Some(ino) = echoed(&mut cursor, "stat") {
            stats.entry(ino).or_default();
            current = Some(ino);
            continue;
        }
        let start = cursor.at;
        cursor.skip_line();
        let Some(ino) = current else { continue };
        let line = String::from_utf8_lossy(&out[start..cursor.at]);
        let stat = stats.entry(ino).or_default();
        let line = line.trim();
        // The first mtime line is the inode's (extended attributes come later).
        if let Some(rest) = line.strip_prefix("mtime: 0x") {
            if stat.mtime.is_none() {
                stat.mtime = parse_time(rest);
            }
        }
        // Printed last, after anything an extended attribute could hold.
        if let Some(at) = line.find("Device major/minor number: ") {
            let rest = &line[at + "Device major/minor number: ".len()..];
            let numbers = rest.split_whitespace().next().unwrap_or_default();
            if let Some((major, minor)) = numbers.split_once(':') {
                if let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) {
                    stat.device = Some((major, minor));
                }
            }
        }
    }
    stats
}

/// `6b1469d3:00000000 -- Sat Dec ...` (seconds, then the extra field whose low two bits extend
/// the seconds past 2038) or `6b1469d3 -- ...` for small inodes.
fn parse_time(text: &str) -> Option<i64> {
    let value = text.split_whitespace().next()?;
    let (seconds, extra) = match value.split_once(':') {
        Some((s, e)) => (s, Some(e)),
        None => (value, None),
    };
    let seconds = i64::from(u32::from_str_radix(seconds, 16).ok()? as i32);
    let epoch = extra
        .and_then(|e| u32::from_str_radix(e, 16).ok())
        .map_or(0, |e| i64::from(e & 3));
    Some(seconds + (epoch << 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_keep_odd_names_whole() {
        let out = b"debugfs: ls -p <2>\n/2/040755/0/0/.//\n/2/040755/0/0/..//\n\
            /12/040755/0/0/bin//\n/17/010644/0/0/fifo/0/\n/20/100644/1000/-2/we ird\"na\nme/3/\n\n\
            debugfs: ls -p <12>\n/12/040755/0/0/.//\n/2/040755/0/0/..//\n\
            /14/104755/5/6/su/35664/\n/21/100644/0/0/debugfs: ls -p <99>\n/1/\n\n";
        let listings = parse_listings(out).unwrap();
        let root = &listings[&2];
        assert_eq!(root.len(), 5);
        assert_eq!(root[2].name, b"bin");
        assert_eq!(root[3].mode, 0o010644);
        assert_eq!(root[4].name, b"we ird\"na\nme");
        assert_eq!((root[4].uid, root[4].gid), (1000, u32::MAX - 1));
        let bin = &listings[&12];
        assert_eq!(bin[2].mode, 0o104755);
        assert_eq!(bin[3].name, b"debugfs: ls -p <99>\n");
        assert!(!listings.contains_key(&99), "a name is not an echo");
    }

    #[test]
    fn broken_listings_are_errors() {
        for bad in [
            &b"/2/040755/0/0/x//\n"[..],
            b"debugfs: ls -p <2>\n/2/0407x5/0/0/x//\n",
            b"debugfs: ls -p <2>\n/2/040755/0/0/a/b/5/\n",
            b"debugfs: ls -p <2>\nsomething else\n",
        ] {
            assert!(
                parse_listings(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stats_give_mtimes_and_device_numbers() {
        let out =
            b"debugfs: stat <12>\nInode: 12   Type: directory    Mode:  0755   Flags: 0x80000\n\
            \x20ctime: 0x6b1469d3:00000000 -- Sat Dec  5 19:45:23 2026\n\
            \x20mtime: 0x6b1469d2:00000001 -- Sat Dec  5 19:45:22 2026\n\
            debugfs: stat <19>\nInode: 19   Type: character special    Mode:  0644\n\
            \x20mtime: 0x00000010 -- Thu Jan  1 00:00:16 1970\n\
            Device major/minor number: 01:03 (hex 01:03)\n\
            debugfs: stat <30>\n(New-style) Device major/minor number: 259:65536 (hex 103:10000)\n";
        let stats = parse_stats(out);
        assert_eq!(stats[&12].mtime, Some(0x6b1469d2 + (1 << 32)));
        assert_eq!(stats[&12].device, None);
        assert_eq!(
            stats[&19],
            Stat {
                mtime: Some(16),
                device: Some((1, 3))
            }
        );
        assert_eq!(stats[&30].device, Some((259, 65536)));
        assert_eq!(parse_time("ffffffff -- x"), Some(-1));
    }
}
