//! Partition tables and file system signatures of a raw disk, read without the kernel (no loop
//! devices, no mounts): an MBR (with logical partitions in an extended one), a GPT (512-byte or
//! 4 KiB sectors), or none (a file system on the whole disk, as Kiln's own exports are).
//!
//! Everything here reads through a `read_at` function, so it works on a file, an fd, or a byte
//! buffer in the tests. Tables are checked for sense (entries inside the disk, sizes within
//! bounds, no loops in a chain of extended boot records) rather than trusted: a disk comes from
//! a caller. Checksums (GPT's CRCs) are not checked: a wrong table shows when a partition holds
//! no file system.

use std::collections::HashSet;

/// Reads exactly `buf.len()` bytes at a byte offset.
pub(crate) type ReadAt<'a> = &'a dyn Fn(u64, &mut [u8]) -> std::io::Result<()>;

const SECTOR: u64 = 512;
/// The most GPT entries Kiln reads (the usual table has 128).
const MAX_GPT_ENTRIES: u32 = 4096;
/// The most logical partitions in an extended partition's chain.
const MAX_LOGICAL: usize = 256;
const EXTENDED_TYPES: [u8; 3] = [0x05, 0x0f, 0x85];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableKind {
    /// No partition table: the disk is one volume.
    None,
    Mbr,
    Gpt,
}

impl TableKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TableKind::None => "no",
            TableKind::Mbr => "MBR",
            TableKind::Gpt => "GPT",
        }
    }
}

/// One partition: where it is and what its table calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partition {
    /// As Linux numbers them: 1-4 primary MBR partitions, 5 and up logical ones, GPT entries by
    /// their index from 1.
    pub number: u32,
    /// Byte offset on the disk.
    pub start: u64,
    /// Bytes.
    pub size: u64,
    /// The table's type: `0x83`, or a GPT type's name (`Linux filesystem`) or GUID.
    pub type_name: String,
}

/// The volumes of a disk: its partitions, or the whole disk when it has no table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub table: TableKind,
    pub partitions: Vec<Partition>,
}

/// Reads the partition table of a disk of `disk_size` bytes.
pub(crate) fn read_layout(read_at: ReadAt, disk_size: u64) -> Result<Layout, String> {
    if disk_size < 2 * SECTOR {
        return Err(format!(
            "the disk is {disk_size} bytes, too small to hold a file system"
        ));
    }
    let mut mbr = [0u8; SECTOR as usize];
    read_at(0, &mut mbr).map_err(|e| format!("reading the first sector: {e}"))?;
    if let Some(sector) = gpt_sector(read_at, disk_size)? {
        let partitions = read_gpt(read_at, disk_size, sector)?;
        return Ok(Layout {
            table: TableKind::Gpt,
            partitions,
        });
    }
    match mbr_entries(&mbr, disk_size) {
        Some(entries) if !entries.is_empty() => {
            let mut partitions = Vec::new();
            for (number, entry) in entries {
                if EXTENDED_TYPES.contains(&entry.kind) {
                    partitions.extend(read_logical(read_at, disk_size, entry.start)?);
                } else {
                    partitions.push(Partition {
                        number,
                        start: entry.start * SECTOR,
                        size: entry.sectors * SECTOR,
                        type_name: format!("type 0x{:02x}", entry.kind),
                    });
                }
            }
            Ok(Layout {
                table: TableKind::Mbr,
                partitions,
            })
        }
        _ => Ok(Layout {
            table: TableKind::None,
            partitions: vec![Partition {
                number: 0,
                start: 0,
                size: disk_size,
                type_name: String::new(),
            }],
        }),
    }
}

/// One used MBR entry, in sectors.
#[derive(Debug, Clone, Copy)]
struct MbrEntry {
    kind: u8,
    start: u64,
    sectors: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// The used entries of an MBR sector (with their numbers 1-4), or `None` when the sector is no
/// partition table: no `55 AA` signature, or entries that make no sense (the boot sector of a
/// FAT or NTFS volume also ends in `55 AA`, with boot code where entries would be).
fn mbr_entries(sector: &[u8], disk_size: u64) -> Option<Vec<(u32, MbrEntry)>> {
    if sector[510..512] != [0x55, 0xaa] {
        return None;
    }
    let disk_sectors = disk_size / SECTOR;
    let mut out = Vec::new();
    for i in 0..4 {
        let e = &sector[446 + 16 * i..446 + 16 * (i + 1)];
        let (status, kind) = (e[0], e[4]);
        let start = u64::from(u32_at(e, 8));
        let sectors = u64::from(u32_at(e, 12));
        if kind == 0 {
            continue;
        }
        let sane = (status == 0 || status == 0x80)
            && start > 0
            && sectors > 0
            && start
                .checked_add(sectors)
                .is_some_and(|end| end <= disk_sectors);
        if !sane {
            return None;
        }
        out.push((
            i as u32 + 1,
            MbrEntry {
                kind,
                start,
                sectors,
            },
        ));
    }
    Some(out)
}

/// The logical partitions of the extended partition at sector `extended`: a chain of extended
/// boot records, each holding one partition and a link to the next.
fn read_logical(read_at: ReadAt, disk_size: u64, extended: u64) -> Result<Vec<Partition>, String> {
    let disk_sectors = disk_size / SECTOR;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut ebr = extended;
    loop {
        if !seen.insert(ebr) || out.len() >= MAX_LOGICAL {
            return Err(format!(
                "the extended partition at sector {extended} has a chain of boot records that loops or holds over {MAX_LOGICAL} partitions"
            ));
        }
        if ebr >= disk_sectors {
            return Err(format!(
                "an extended boot record at sector {ebr} lies past the end of the disk"
            ));
        }
        let mut sector = [0u8; SECTOR as usize];
        read_at(ebr * SECTOR, &mut sector)
            .map_err(|e| format!("reading the extended boot record at sector {ebr}: {e}"))?;
        if sector[510..512] != [0x55, 0xaa] {
            return Err(format!(
                "the extended boot record at sector {ebr} has no 55 AA signature"
            ));
        }
        let entry = |i: usize| {
            let e = &sector[446 + 16 * i..446 + 16 * (i + 1)];
            (e[4], u64::from(u32_at(e, 8)), u64::from(u32_at(e, 12)))
        };
        let (kind, start, sectors) = entry(0);
        if kind != 0 && sectors > 0 {
            let first = ebr + start;
            if first
                .checked_add(sectors)
                .is_none_or(|end| end > disk_sectors)
            {
                return Err(format!(
                    "logical partition {} lies past the end of the disk",
                    5 + out.len()
                ));
            }
            out.push(Partition {
                number: 5 + out.len() as u32,
                start: first * SECTOR,
                size: sectors * SECTOR,
                type_name: format!("type 0x{kind:02x}, logical"),
            });
        }
        let (next_kind, next_start, _) = entry(1);
        if !EXTENDED_TYPES.contains(&next_kind) || next_start == 0 {
            return Ok(out);
        }
        ebr = extended + next_start;
    }
}

/// The sector size of a GPT disk (512 or 4096, where its header says `EFI PART`), if it is one.
fn gpt_sector(read_at: ReadAt, disk_size: u64) -> Result<Option<u64>, String> {
    for sector in [SECTOR, 4096] {
        if disk_size < 3 * sector {
            continue;
        }
        let mut sig = [0u8; 8];
        read_at(sector, &mut sig).map_err(|e| format!("reading the GPT header: {e}"))?;
        if &sig == b"EFI PART" {
            return Ok(Some(sector));
        }
    }
    Ok(None)
}

fn read_gpt(read_at: ReadAt, disk_size: u64, sector: u64) -> Result<Vec<Partition>, String> {
    let mut header = [0u8; 92];
    read_at(sector, &mut header).map_err(|e| format!("reading the GPT header: {e}"))?;
    let entries_lba = u64_at(&header, 72);
    let count = u32_at(&header, 80);
    let entry_size = u32_at(&header, 84);
    if !(128..=4096).contains(&entry_size) || !entry_size.is_multiple_of(8) {
        return Err(format!(
            "the GPT header gives entries of {entry_size} bytes (128 to 4096 expected)"
        ));
    }
    if count > MAX_GPT_ENTRIES {
        return Err(format!(
            "the GPT header lists {count} entries; Kiln reads at most {MAX_GPT_ENTRIES}"
        ));
    }
    let table_bytes = u64::from(count) * u64::from(entry_size);
    let table_start = entries_lba.saturating_mul(sector);
    if entries_lba < 2 || table_start.saturating_add(table_bytes) > disk_size {
        return Err(format!(
            "the GPT entries (sector {entries_lba}, {count} of {entry_size} bytes) lie outside the disk"
        ));
    }
    let mut table = vec![0u8; table_bytes as usize];
    read_at(table_start, &mut table).map_err(|e| format!("reading the GPT entries: {e}"))?;
    let disk_sectors = disk_size / sector;
    let mut out = Vec::new();
    for (i, e) in table.chunks(entry_size as usize).enumerate() {
        let guid = &e[..16];
        if guid.iter().all(|b| *b == 0) {
            continue;
        }
        let (first, last) = (u64_at(e, 32), u64_at(e, 40));
        let number = i as u32 + 1;
        if first == 0 || first > last || last >= disk_sectors {
            return Err(format!(
                "GPT partition {number} (sectors {first} to {last}) lies outside the disk"
            ));
        }
        out.push(Partition {
            number,
            start: first * sector,
            size: (last - first + 1) * sector,
            type_name: gpt_type_name(guid),
        });
    }
    Ok(out)
}

/// A GUID as written (`0FC63DAF-8483-4772-8E79-3D69D8477DE4`): the first three fields are
/// stored little-endian.
fn guid_text(g: &[u8]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        u32_at(g, 0),
        u16_at(g, 4),
        u16_at(g, 6),
        g[8],
        g[9],
        g[10..16]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}

fn gpt_type_name(guid: &[u8]) -> String {
    let text = guid_text(guid);
    let name = match text.as_str() {
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI System",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved",
        _ => return text,
    };
    name.to_string()
}

/// What a volume holds, from its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filesystem {
    /// ext2, ext3 or ext4: what Kiln imports.
    Ext(&'static str),
    Other(&'static str),
    Unknown,
}

/// How many bytes from a volume's start [`identify`] needs (btrfs's superblock is at 64 KiB).
pub(crate) const SIGNATURE_BYTES: usize = 0x10040 + 8;

/// The file system (or other content) whose signature `head` (the first [`SIGNATURE_BYTES`] of
/// a volume, or fewer for a small one) starts with.
pub(crate) fn identify(head: &[u8]) -> Filesystem {
    let at = |offset: usize, sig: &[u8]| head.get(offset..offset + sig.len()) == Some(sig);
    if head.len() >= 2048 && u16_at(head, 1024 + 0x38) == 0xef53 {
        let sb = &head[1024..2048];
        let compat = u32_at(sb, 0x5c);
        let incompat = u32_at(sb, 0x60);
        // extents, 64bit or flex_bg make ext4; a journal alone, ext3.
        let version = if incompat & (0x40 | 0x80 | 0x200) != 0 {
            "ext4"
        } else if compat & 0x4 != 0 {
            "ext3"
        } else {
            "ext2"
        };
        return Filesystem::Ext(version);
    }
    let others: [(usize, &[u8], &'static str); 11] = [
        (0, b"XFSB", "xfs"),
        (0x10040, b"_BHRfS_M", "btrfs"),
        (0, b"LUKS\xba\xbe", "LUKS (encrypted)"),
        (512, b"LABELONE", "LVM physical volume"),
        (0x8001, b"CD001", "ISO 9660 (installation media)"),
        (4086, b"SWAPSPACE2", "Linux swap"),
        (0, b"hsqs", "squashfs"),
        (3, b"NTFS    ", "NTFS"),
        (3, b"EXFAT   ", "exFAT"),
        (0x52, b"FAT32", "FAT32"),
        (0x36, b"FAT", "FAT"),
    ];
    for (offset, sig, name) in others {
        if at(offset, sig) {
            return Filesystem::Other(name);
        }
    }
    Filesystem::Unknown
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A disk in memory, for the tests of this module and of the import.
    pub(crate) struct MemDisk(pub Vec<u8>);

    impl MemDisk {
        pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            let start = offset as usize;
            match self.0.get(start..start + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    Ok(())
                }
                None => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            }
        }

        fn layout(&self) -> Result<Layout, String> {
            read_layout(&|o, b| self.read_at(o, b), self.0.len() as u64)
        }
    }

    /// Writes an MBR entry `i` (0-3) into the sector at `sector_offset`.
    pub(crate) fn mbr_entry(
        disk: &mut [u8],
        sector_offset: usize,
        i: usize,
        kind: u8,
        start: u32,
        sectors: u32,
    ) {
        let e = sector_offset + 446 + 16 * i;
        disk[e] = 0;
        disk[e + 4] = kind;
        disk[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        disk[e + 12..e + 16].copy_from_slice(&sectors.to_le_bytes());
        disk[sector_offset + 510] = 0x55;
        disk[sector_offset + 511] = 0xaa;
    }

    /// A GPT (512-byte sectors, 128 entries of 128 bytes at sector 2) with the given
    /// `(type GUID bytes, first, last)` entries.
    pub(crate) fn gpt(disk: &mut [u8], entries: &[([u8; 16], u64, u64)]) {
        mbr_entry(disk, 0, 0, 0xee, 1, (disk.len() / 512 - 1) as u32);
        let h = 512;
        disk[h..h + 8].copy_from_slice(b"EFI PART");
        disk[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        disk[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
        disk[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        for (i, (guid, first, last)) in entries.iter().enumerate() {
            let e = 1024 + 128 * i;
            disk[e..e + 16].copy_from_slice(guid);
            disk[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
            disk[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
        }
    }

    /// The Linux filesystem type GUID as GPT stores it.
    pub(crate) const LINUX_FS: [u8; 16] = [
        0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d,
        0xe4,
    ];

    #[test]
    fn a_disk_without_a_table_is_one_volume() {
        let disk = MemDisk(vec![0u8; 1 << 20]);
        let layout = disk.layout().unwrap();
        assert_eq!(layout.table, TableKind::None);
        assert_eq!(layout.partitions.len(), 1);
        assert_eq!(layout.partitions[0].size, 1 << 20);
        assert!(MemDisk(vec![0u8; 600])
            .layout()
            .unwrap_err()
            .contains("too small"));
    }

    #[test]
    fn mbr_primary_and_logical_partitions() {
        let mut d = vec![0u8; 8 << 20];
        mbr_entry(&mut d, 0, 0, 0x83, 2048, 4096);
        // Extended partition from sector 8192; two logical partitions in it.
        mbr_entry(&mut d, 0, 1, 0x05, 8192, 8192);
        mbr_entry(&mut d, 8192 * 512, 0, 0x83, 63, 1000);
        mbr_entry(&mut d, 8192 * 512, 1, 0x05, 2048, 4000);
        mbr_entry(&mut d, (8192 + 2048) * 512, 0, 0x82, 63, 500);
        let layout = MemDisk(d).layout().unwrap();
        assert_eq!(layout.table, TableKind::Mbr);
        let found: Vec<(u32, u64, u64)> = layout
            .partitions
            .iter()
            .map(|p| (p.number, p.start / 512, p.size / 512))
            .collect();
        assert_eq!(
            found,
            [
                (1, 2048, 4096),
                (5, 8192 + 63, 1000),
                (6, 8192 + 2048 + 63, 500)
            ]
        );
        assert_eq!(layout.partitions[2].type_name, "type 0x82, logical");
    }

    #[test]
    fn looping_or_outlying_tables_are_refused() {
        let mut d = vec![0u8; 4 << 20];
        mbr_entry(&mut d, 0, 0, 0x05, 2048, 2048);
        // The extended boot record links to itself.
        mbr_entry(&mut d, 2048 * 512, 0, 0x83, 63, 10);
        mbr_entry(&mut d, 2048 * 512, 1, 0x05, 0, 10);
        d[2048 * 512 + 446 + 16 + 8..2048 * 512 + 446 + 16 + 12]
            .copy_from_slice(&0u32.to_le_bytes());
        // A zero link ends the chain rather than looping.
        assert_eq!(MemDisk(d.clone()).layout().unwrap().partitions.len(), 1);
        let mut d2 = vec![0u8; 4 << 20];
        mbr_entry(&mut d2, 0, 0, 0x05, 2048, 4096);
        mbr_entry(&mut d2, 2048 * 512, 1, 0x05, 1024, 10);
        mbr_entry(&mut d2, 3072 * 512, 1, 0x05, 1024, 10);
        let err = MemDisk(d2).layout().unwrap_err();
        assert!(err.contains("loops"), "{err}");
        // An entry past the end makes the sector no table at all (a volume boot record).
        let mut d3 = vec![0u8; 1 << 20];
        mbr_entry(&mut d3, 0, 0, 0x83, 2048, 1 << 30);
        assert_eq!(MemDisk(d3).layout().unwrap().table, TableKind::None);
    }

    #[test]
    fn gpt_partitions_by_entry_number() {
        let mut d = vec![0u8; 8 << 20];
        gpt(
            &mut d,
            &[
                (LINUX_FS, 2048, 4095),
                ([0; 16], 0, 0),
                (LINUX_FS, 4096, 16000),
            ],
        );
        // An unused entry between keeps the numbers of the others.
        let mut d_sparse = d.clone();
        d_sparse[1024 + 128..1024 + 256].fill(0);
        let layout = MemDisk(d_sparse).layout().unwrap();
        assert_eq!(layout.table, TableKind::Gpt);
        let found: Vec<(u32, u64, u64, &str)> = layout
            .partitions
            .iter()
            .map(|p| (p.number, p.start / 512, p.size / 512, p.type_name.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (1, 2048, 2048, "Linux filesystem"),
                (3, 4096, 11905, "Linux filesystem")
            ]
        );
        gpt(&mut d, &[(LINUX_FS, 2048, 1 << 40)]);
        let err = MemDisk(d).layout().unwrap_err();
        assert!(
            err.contains("GPT partition 1") && err.contains("outside"),
            "{err}"
        );
    }

    #[test]
    fn signatures_name_what_a_volume_holds() {
        let mut ext = vec![0u8; 4096];
        ext[1024 + 0x38] = 0x53;
        ext[1024 + 0x39] = 0xef;
        assert_eq!(identify(&ext), Filesystem::Ext("ext2"));
        ext[1024 + 0x5c] = 0x4;
        assert_eq!(identify(&ext), Filesystem::Ext("ext3"));
        ext[1024 + 0x60] = 0x40;
        assert_eq!(identify(&ext), Filesystem::Ext("ext4"));
        let mut xfs = vec![0u8; 4096];
        xfs[..4].copy_from_slice(b"XFSB");
        assert_eq!(identify(&xfs), Filesystem::Other("xfs"));
        let mut iso = vec![0u8; 0x9000];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(
            identify(&iso),
            Filesystem::Other("ISO 9660 (installation media)")
        );
        assert_eq!(identify(&[0u8; 100]), Filesystem::Unknown);
    }
}
