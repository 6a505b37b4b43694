//! A file whose pages start going to disk while it is still being written.
//!
//! A snapshot writes its layer blob (hundreds of megabytes for a big change set) and then
//! syncs it before the image is committed: without help, the kernel writes most of those pages
//! only when the final `fsync` asks, so the build waits for the whole blob to reach the disk
//! after the last byte is compressed. [`WritebackFile`] asks the kernel, every [`CHUNK`]
//! bytes, to start writing what came since (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`:
//! it does not wait), so the disk works while compression and hashing go on, and the final
//! `fsync` finds little left. The `fsync` stays: it is what makes the blob durable.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// How much is written between two requests to start the writeback.
const CHUNK: u64 = 8 << 20;

pub(crate) struct WritebackFile {
    file: File,
    written: u64,
    /// Everything before this offset has been handed to the writeback already.
    started: u64,
}

impl WritebackFile {
    pub(crate) fn new(file: File) -> WritebackFile {
        WritebackFile {
            file,
            written: 0,
            started: 0,
        }
    }

    pub(crate) fn into_file(self) -> File {
        self.file
    }

    fn start_writeback(&mut self) {
        let (Ok(offset), Ok(len)) = (
            i64::try_from(self.started),
            i64::try_from(self.written - self.started),
        ) else {
            return;
        };
        // SAFETY: sync_file_range(2) on our own open descriptor. Only advice: an error here
        // (a file system without it) leaves the pages to the final fsync, which reports
        // what really failed.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.started = self.written;
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= CHUNK {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_is_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let mut w = WritebackFile::new(File::create(&path).unwrap());
        let chunk: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
        for _ in 0..7 {
            w.write_all(&chunk).unwrap();
        }
        assert!(w.started > 0 && w.started <= w.written);
        w.into_file().sync_all().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len(), 7 * chunk.len());
        assert!(back.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
    }
}
