//! Network modules: `WebDownload`, `S3Download` and `S3Upload`.
//!
//! - [`web`]: WebDownload over HTTP(S), with its own retries, redirects and checksums.
//! - [`s3`]: S3Download and S3Upload against an S3-compatible endpoint (path-style requests,
//!   SigV4 signatures), configured by [`ActionConfig::s3`](super::ActionConfig).
//! - [`s3_object`]: one small object read into memory with the same client, for the API
//!   server's documents from S3 (size cap, checksum check, one attempt with a time budget).
//! - [`s3_file`]: large objects streamed between files and the endpoint with the same client,
//!   for the build worker's disk image imports and exports (multipart uploads, checked
//!   downloads, cancellable).
//!
//! Every document path goes through the target ([`crate::target::Target::resolve`]); bodies are
//! streamed between the network and files, never held whole in memory. A download is written
//! to a hidden `.NAME.kiln-part` file beside its destination and renamed into place only when it
//! is complete (and its checksum matches), so a failed download leaves the destination as it was.

pub mod address;
pub mod s3;
pub mod s3_file;
pub mod s3_object;
pub mod web;

use super::{ActionContext, ActionFailure, ActionKind, Outputs, Stream};
use crate::yaml::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Reads one object of the configured S3 endpoint as text: a document given as
/// `s3://bucket/key` to `kiln toe run` or to ExecuteDocument. It goes through S3Download into a
/// private temporary folder on this machine, so it behaves (and fails) as that module does.
pub fn fetch_s3_text(config: &super::ActionConfig, uri: &str) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("kiln-toe-document-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("document.yaml");
    let mut entry = crate::yaml::Mapping::new();
    entry.insert("source".into(), uri.into());
    entry.insert("destination".into(), file.display().to_string().into());
    let inputs = Value::Sequence(vec![Value::Mapping(entry)]);
    let result = super::run_on_host(ActionKind::S3Download, config, &inputs, &dir)
        .and_then(|_| std::fs::read_to_string(&file).map_err(|e| format!("{uri}: {e}")));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub fn validate(kind: ActionKind, inputs: &Value) -> Result<(), String> {
    match kind {
        ActionKind::WebDownload => web::validate(inputs),
        ActionKind::S3Download => s3::validate_download(inputs),
        ActionKind::S3Upload => s3::validate_upload(inputs),
        _ => Err(format!("{} is not a network action", kind.name())),
    }
}

pub fn run(
    kind: ActionKind,
    ctx: &ActionContext,
    inputs: &Value,
) -> Result<Outputs, ActionFailure> {
    match kind {
        ActionKind::WebDownload => web::run(ctx, inputs),
        ActionKind::S3Download => s3::run_download(ctx, inputs),
        ActionKind::S3Upload => s3::run_upload(ctx, inputs),
        _ => Err(ActionFailure::failed(format!(
            "{} is not a network action",
            kind.name()
        ))),
    }
}

/// Whether a value still holds a `{{ ... }}` reference (validation leaves such values alone).
fn has_variable(s: &str) -> bool {
    s.contains("{{")
}

fn log(ctx: &ActionContext, text: &str) {
    ctx.console.line(Stream::Stdout, text);
}

/// The hash algorithms of WebDownload's `algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// `MD5`, `SHA1`, `SHA256`, `SHA512` (case-insensitive; `SHA-256` is accepted too).
    fn parse(s: &str) -> Result<Algorithm, String> {
        match s.trim().to_ascii_uppercase().replace('-', "").as_str() {
            "MD5" => Ok(Algorithm::Md5),
            "SHA1" => Ok(Algorithm::Sha1),
            "SHA256" => Ok(Algorithm::Sha256),
            "SHA512" => Ok(Algorithm::Sha512),
            _ => Err(format!(
                "algorithm must be one of MD5, SHA1, SHA256, SHA512, not `{s}`"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    pub(crate) fn hasher(self) -> Hasher {
        use sha2::Digest;
        match self {
            Algorithm::Md5 => Hasher::Md5(md5::Md5::new()),
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

pub(crate) enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Lowercase hex.
    pub(crate) fn finish(self) -> String {
        use sha2::Digest;
        let bytes: Vec<u8> = match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The hex digest of a file, read in chunks.
fn hash_file(path: &Path, algorithm: Algorithm) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

fn same_digest(expected: &str, actual: &str) -> bool {
    expected.trim().eq_ignore_ascii_case(actual)
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` when `keep_slash`),
/// as SigV4 canonical requests do.
pub(crate) fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The time budget of one request: `Err(TimedOut)` when the deadline has passed.
fn remaining(ctx: &ActionContext) -> Result<Option<Duration>, ActionFailure> {
    match ctx.remaining() {
        Some(d) if d.is_zero() => Err(ActionFailure::TimedOut),
        other => Ok(other),
    }
}

fn deadline_passed(ctx: &ActionContext) -> bool {
    ctx.remaining().is_some_and(|d| d.is_zero())
}

/// An HTTP agent for one request: statuses are answers (not errors), bodies are not
/// decompressed (ureq is built without gzip), the whole call ends at the step's deadline, and
/// every connection (redirects too) goes only where the run's [`address::NetworkAccess`]
/// allows.
fn agent(ctx: &ActionContext, insecure: bool) -> Result<ureq::Agent, ActionFailure> {
    let left = remaining(ctx)?;
    let connect = Some(left.map_or(Duration::from_secs(60), |l| l.min(Duration::from_secs(60))));
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(left)
        .timeout_connect(connect)
        .max_redirects(10)
        .user_agent(concat!("kiln-toe/", env!("CARGO_PKG_VERSION")));
    if insecure {
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        );
    }
    let access = ctx.config.network.clone();
    if access == address::NetworkAccess::Unrestricted {
        return Ok(config.build().new_agent());
    }
    // A proxy would connect on the build's behalf to addresses the resolver never sees.
    let config = config.proxy(None).build();
    Ok(ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        address::GuardedResolver { access },
    ))
}

/// Waits before retry number `attempt` (1 for the first retry): `base * 2^(attempt-1)`, cut
/// short by the deadline.
fn backoff(ctx: &ActionContext, attempt: u32) -> Result<(), ActionFailure> {
    let delay = ctx
        .config
        .web_retry_base
        .saturating_mul(1u32 << (attempt - 1).min(16));
    let delay = match ctx.remaining() {
        Some(left) => delay.min(left),
        None => delay,
    };
    std::thread::sleep(delay);
    if deadline_passed(ctx) {
        return Err(ActionFailure::TimedOut);
    }
    Ok(())
}

/// Where a download to `dest` is written before it is complete.
fn part_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.kiln-part"))
}

/// Why streaming a body to a file stopped.
enum StreamError {
    /// Reading from the network failed (worth another attempt).
    Read(std::io::Error),
    /// Writing the file failed.
    Write(std::io::Error),
}

/// Streams `body` into a new file at `path`, hashing it on the way; answers the byte count and
/// the digest.
fn stream_to_file(
    body: &mut dyn Read,
    path: &Path,
    algorithm: Option<Algorithm>,
) -> Result<(u64, Option<String>), StreamError> {
    let mut file = std::fs::File::create(path).map_err(StreamError::Write)?;
    let mut hasher = algorithm.map(Algorithm::hasher);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        file.write_all(&buf[..n]).map_err(StreamError::Write)?;
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..n]);
        }
        total += n as u64;
    }
    file.sync_all().map_err(StreamError::Write)?;
    Ok((total, hasher.map(Hasher::finish)))
}

/// Creates the folders above `host` (a path inside the target root, from `resolve`).
fn create_parent(host: &Path) -> std::io::Result<()> {
    match host.parent() {
        Some(parent) => std::fs::create_dir_all(parent),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding_round_trips() {
        let key = "dir/a b+c/ü&=?.txt";
        let enc = percent_encode(key, true);
        assert_eq!(enc, "dir/a%20b%2Bc/%C3%BC%26%3D%3F.txt");
        assert_eq!(percent_decode(&enc).unwrap(), key);
        assert_eq!(percent_encode("a/b", false), "a%2Fb");
        assert_eq!(percent_decode("100%").unwrap(), "100%");
        assert_eq!(percent_decode("%4").unwrap(), "%4");
    }

    #[test]
    fn algorithms_parse_and_hash() {
        let cases = [
            ("md5", "900150983cd24fb0d6963f7d28e17f72"),
            ("SHA1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                "sha-256",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "SHA512",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ];
        for (name, want) in cases {
            let mut h = Algorithm::parse(name).unwrap().hasher();
            h.update(b"abc");
            assert_eq!(h.finish(), want, "{name}");
        }
        assert!(Algorithm::parse("crc32").unwrap_err().contains("crc32"));
    }
}
