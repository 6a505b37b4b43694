//! Reading a file of the mirror: over HTTP(S) with one shared agent, or from a `file:/` URL.
//! Everything read is checked by the caller (signature, size, SHA256) before use.

use crate::{io_err, Error, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// How long one file of the mirror may take, from the request to its last byte.
const TIMEOUT: Duration = Duration::from_secs(300);

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(Some(TIMEOUT))
                .build(),
        )
    })
}

/// The local path of a `file:` URL.
fn file_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("file:")?;
    // file:///x, file:/x
    Some(rest.strip_prefix("//").unwrap_or(rest))
}

/// Opens `url` for reading.
fn open(url: &str) -> Result<Box<dyn Read + Send>> {
    if let Some(path) = file_path(url) {
        let f = File::open(path).map_err(|e| Error::Invalid(format!("reading {url}: {e}")))?;
        return Ok(Box::new(f));
    }
    let response = agent()
        .get(url)
        .call()
        .map_err(|e| Error::Invalid(format!("fetching {url}: {e}")))?;
    Ok(Box::new(response.into_body().into_reader()))
}

/// The whole of `url`, refused past `limit` bytes.
pub(crate) fn bytes(url: &str, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    open(url)?
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Invalid(format!("fetching {url}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(Error::Invalid(format!(
            "{url} is larger than the {limit} bytes allowed"
        )));
    }
    Ok(out)
}

/// The SHA256 of `data`, in lower-case hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `data` (read from `url`, known as `what`) against the expected size and SHA256.
pub(crate) fn check(what: &str, url: &str, data: &[u8], size: u64, sha256: &str) -> Result<()> {
    if data.len() as u64 != size {
        return Err(Error::DigestMismatch {
            what: format!("{what} ({url}): size"),
            expected: size.to_string(),
            actual: data.len().to_string(),
        });
    }
    same_sha256(what, url, sha256, &sha256_hex(data))
}

/// `Ok` when the SHA256 `actual` is the `expected` one; the error names `what` and `url`.
fn same_sha256(what: &str, url: &str, expected: &str, actual: &str) -> Result<()> {
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(Error::DigestMismatch {
            what: format!("{what} ({url})"),
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(())
}

/// Streams `url` into `dest`, hashing it on the way; the file must have `size` bytes and the
/// SHA256 `sha256`, or the error names `what` and `url` (and `dest` is removed).
pub(crate) fn to_file(what: &str, url: &str, dest: &Path, size: u64, sha256: &str) -> Result<()> {
    let result = (|| {
        let mut input = open(url)?.take(size + 1);
        let file = File::create(dest).map_err(io_err("creating", dest))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Invalid(format!("fetching {url}: {e}"))),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_err("writing", dest))?;
            total += n as u64;
        }
        out.flush().map_err(io_err("writing", dest))?;
        if total != size {
            return Err(Error::DigestMismatch {
                what: format!("{what} ({url}): size"),
                expected: size.to_string(),
                actual: if total > size {
                    format!("more than {size}")
                } else {
                    total.to_string()
                },
            });
        }
        same_sha256(what, url, sha256, &hex(&hasher.finalize()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}
