//! Large objects streamed between files and the S3-compatible endpoint, for the build worker: a
//! disk image imported from `s3://bucket/key` (ImportDiskImage, ImportVmImage) and one exported
//! there (a distribution's `s3ExportConfiguration`).
//!
//! It shares the S3 actions' client (path-style URLs, SigV4 for service `s3`, S3's error codes)
//! and the API's policy for requests made on an account's behalf: only the configured endpoint
//! is contacted (no proxy, no redirect). Nothing holds a whole object in memory:
//!
//! - [`Transfer::download`] streams one GET into a file (through a `.kiln-part` name, renamed
//!   into place once complete), refuses objects over a size cap (on `Content-Length`, and again
//!   while reading), and checks the bytes against `x-amz-checksum-sha256` or a single-part
//!   `ETag` (the MD5) when S3 sends one, computed on the way.
//! - [`Transfer::upload`] sends a file up to the part size with one PUT, and a larger one as a
//!   multipart upload (CreateMultipartUpload, UploadPart from the file's byte range, then
//!   CompleteMultipartUpload), aborting the upload when a part cannot be sent. The part size
//!   grows so that no upload needs more than S3's 10,000 parts.
//!
//! Transport errors and 500/502/503/504 answers are tried [`ATTEMPTS`] times (a download from
//! the start, an upload part by part). Reads and writes that stall for [`IDLE_TIMEOUT`] fail.
//! A cancel check runs between requests and every MiB, so a cancelled build stops its transfer
//! within a chunk. Errors name the object (`s3://bucket/key`), the request and the cause.

use super::s3::{error_code, xml_fields, Client};
use super::s3_object::{Expected, GetObjectError};
use crate::actions::S3Config;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The part size of multipart uploads unless set: a file up to this size goes in one PUT.
pub const DEFAULT_PART_SIZE: u64 = 64 * 1024 * 1024;
/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// How many times one request is tried.
pub const ATTEMPTS: u32 = 3;
/// A read or write that makes no progress for this long fails (and is tried again).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before the first retry; doubled for each further one.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Bytes read between two cancel checks.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// What failed and why, naming the object.
    #[error("{0}")]
    Failed(String),
    /// The cancel check answered true.
    #[error("the transfer was cancelled")]
    Cancelled,
}

/// What [`Transfer::upload`] sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub size: u64,
    /// 1 for a single PUT.
    pub parts: u64,
    pub etag: Option<String>,
}

/// Transfers with one endpoint and key.
pub struct Transfer<'a> {
    client: Client<'a>,
    agent: ureq::Agent,
    part_size: u64,
    cancel: Option<&'a dyn Fn() -> bool>,
}

/// What one request sends.
enum Payload<'p> {
    Empty,
    Bytes(&'p [u8]),
    /// `len` bytes of `file` from `offset`.
    Range {
        file: &'p Path,
        offset: u64,
        len: u64,
    },
}

/// Why one request failed.
enum Attempt {
    /// Transport error or 500/502/503/504.
    Retry(String),
    Stop(TransferError),
}

type Response = ureq::http::Response<ureq::Body>;

impl<'a> Transfer<'a> {
    pub fn new(config: &'a S3Config) -> Transfer<'a> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(IDLE_TIMEOUT))
            .timeout_per_write(Some(IDLE_TIMEOUT))
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(None)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Transfer {
            client: Client::new(config),
            agent,
            part_size: DEFAULT_PART_SIZE,
            cancel: None,
        }
    }

    /// Files larger than `bytes` are uploaded in parts of `bytes` (at least [`MIN_PART_SIZE`]).
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes.max(MIN_PART_SIZE);
        self
    }

    /// Asked between requests and every MiB; `true` stops the transfer with
    /// [`TransferError::Cancelled`].
    pub fn cancel_when(mut self, cancelled: &'a dyn Fn() -> bool) -> Self {
        self.cancel = Some(cancelled);
        self
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c())
    }

    /// GETs `s3://bucket/key` into `dest` (replaced only once complete); answers its size.
    pub fn download(
        &self,
        bucket: &str,
        key: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<u64, TransferError> {
        let object = format!("s3://{bucket}/{key}");
        let url = self.client.url(bucket, key, &[]);
        let part = part_path(dest);
        let headers = [("x-amz-checksum-mode".to_string(), "ENABLED".to_string())];
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            self.pause_before(attempt)?;
            let result = self
                .send("GET", &url, &headers, &Payload::Empty, &object)
                .and_then(|response| self.receive(response, &part, max_bytes, &object));
            match result {
                Ok(size) => {
                    return std::fs::rename(&part, dest).map(|_| size).map_err(|e| {
                        let _ = std::fs::remove_file(&part);
                        TransferError::Failed(format!(
                            "{object}: moving it to {}: {e}",
                            dest.display()
                        ))
                    })
                }
                Err(Attempt::Retry(message)) => last = message,
                Err(Attempt::Stop(e)) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e);
                }
            }
        }
        let _ = std::fs::remove_file(&part);
        Err(TransferError::Failed(format!(
            "{last} (after {ATTEMPTS} attempts)"
        )))
    }

    /// Streams a GET answer into `part`, checking its size and checksum.
    fn receive(
        &self,
        response: Response,
        part: &Path,
        max_bytes: u64,
        object: &str,
    ) -> Result<u64, Attempt> {
        let stop = |m: String| Attempt::Stop(TransferError::Failed(format!("{object}: {m}")));
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let length = header("content-length").and_then(|l| l.trim().parse::<u64>().ok());
        if let Some(size) = length.filter(|&l| l > max_bytes) {
            return Err(stop(format!(
                "the object is {size} bytes; at most {max_bytes} bytes are allowed"
            )));
        }
        let expected = Expected::from_headers(&header);
        let mut hasher = expected.algorithm().map(|a| a.hasher());
        let mut file =
            File::create(part).map_err(|e| stop(format!("creating {}: {e}", part.display())))?;
        let mut body = response.into_body().into_reader();
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            if self.cancelled() {
                return Err(Attempt::Stop(TransferError::Cancelled));
            }
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Attempt::Retry(format!("{object}: reading GET: {e}"))),
            };
            total += n as u64;
            if total > max_bytes {
                return Err(stop(format!(
                    "the object is more than {max_bytes} bytes, the most allowed"
                )));
            }
            file.write_all(&buf[..n])
                .map_err(|e| stop(format!("writing {}: {e}", part.display())))?;
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]);
            }
        }
        if let Some(length) = length.filter(|&l| l != total) {
            return Err(Attempt::Retry(format!(
                "{object}: the answer ended after {total} of its {length} bytes"
            )));
        }
        if let Some(h) = hasher {
            expected
                .check_hex(&h.finish())
                .map_err(|e: GetObjectError| stop(e.to_string()))?;
        }
        file.sync_all()
            .map_err(|e| stop(format!("writing {}: {e}", part.display())))?;
        Ok(total)
    }

    /// PUTs the file `source` as `s3://bucket/key`: one request up to the part size, a
    /// multipart upload above it.
    pub fn upload(
        &self,
        bucket: &str,
        key: &str,
        source: &Path,
    ) -> Result<Uploaded, TransferError> {
        let object = format!("s3://{bucket}/{key}");
        let size = std::fs::metadata(source)
            .map_err(|e| {
                TransferError::Failed(format!("{object}: reading {}: {e}", source.display()))
            })?
            .len();
        let part_size = part_size_for(size, self.part_size);
        if size <= part_size {
            let url = self.client.url(bucket, key, &[]);
            let response = self.call(
                "PUT",
                &url,
                &Payload::Range {
                    file: source,
                    offset: 0,
                    len: size,
                },
                &format!("PUT {object}"),
            )?;
            return Ok(Uploaded {
                size,
                parts: 1,
                etag: etag_of(&response),
            });
        }
        let upload_id = self.create_multipart(bucket, key, &object)?;
        match self.send_parts(bucket, key, source, size, part_size, &upload_id, &object) {
            Ok(uploaded) => Ok(uploaded),
            Err(e) => {
                // Best effort, also after a cancel: an upload left open keeps its parts (and
                // their cost) on S3.
                let url = self.client.url(bucket, key, &[("uploadId", &upload_id)]);
                let what = format!("AbortMultipartUpload {object}");
                match self.send("DELETE", &url, &[], &Payload::Empty, &what) {
                    Ok(_) => Err(e),
                    Err(Attempt::Retry(abort) | Attempt::Stop(TransferError::Failed(abort))) => {
                        Err(TransferError::Failed(format!(
                            "{e} (and aborting the multipart upload {upload_id} failed: {abort})"
                        )))
                    }
                    Err(Attempt::Stop(TransferError::Cancelled)) => Err(e),
                }
            }
        }
    }

    fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        object: &str,
    ) -> Result<String, TransferError> {
        let url = self.client.url(bucket, key, &[("uploads", "")]);
        let what = format!("CreateMultipartUpload {object}");
        let response = self.call("POST", &url, &Payload::Empty, &what)?;
        let body = read_text(response, &what)?;
        xml_fields(&body, &["UploadId"])
            .ok()
            .and_then(|f| f.into_iter().next())
            .map(|(_, id)| id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| TransferError::Failed(format!("{what}: the answer has no UploadId")))
    }

    #[allow(clippy::too_many_arguments)]
    fn send_parts(
        &self,
        bucket: &str,
        key: &str,
        source: &Path,
        size: u64,
        part_size: u64,
        upload_id: &str,
        object: &str,
    ) -> Result<Uploaded, TransferError> {
        let mut etags = Vec::new();
        let mut offset = 0u64;
        while offset < size {
            let number = etags.len() as u64 + 1;
            let len = part_size.min(size - offset);
            let number_text = number.to_string();
            let url = self.client.url(
                bucket,
                key,
                &[("partNumber", &number_text), ("uploadId", upload_id)],
            );
            let what = format!("UploadPart {number} of {object}");
            let response = self.call(
                "PUT",
                &url,
                &Payload::Range {
                    file: source,
                    offset,
                    len,
                },
                &what,
            )?;
            let etag = etag_of(&response)
                .ok_or_else(|| TransferError::Failed(format!("{what}: the answer has no ETag")))?;
            etags.push(etag);
            offset += len;
        }
        let what = format!("CompleteMultipartUpload {object}");
        let url = self.client.url(bucket, key, &[("uploadId", upload_id)]);
        let xml = complete_xml(&etags);
        let response = self.call("POST", &url, &Payload::Bytes(xml.as_bytes()), &what)?;
        // S3 may answer 200 and report the failure in the body.
        let body = read_text(response, &what)?;
        let fields = xml_fields(&body, &["Code", "Message", "ETag"]).unwrap_or_default();
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if let Some(code) = field("Code") {
            return Err(TransferError::Failed(format!(
                "{what}: {code}: {}",
                field("Message").unwrap_or_default()
            )));
        }
        Ok(Uploaded {
            size,
            parts: etags.len() as u64,
            etag: field("ETag"),
        })
    }

    /// Sleeps before attempt number `attempt` (none before the first); stops when cancelled.
    fn pause_before(&self, attempt: u32) -> Result<(), TransferError> {
        if self.cancelled() {
            return Err(TransferError::Cancelled);
        }
        if attempt > 1 {
            std::thread::sleep(RETRY_DELAY.saturating_mul(1 << (attempt - 2).min(8)));
            if self.cancelled() {
                return Err(TransferError::Cancelled);
            }
        }
        Ok(())
    }

    /// One request with retries.
    fn call(
        &self,
        method: &str,
        url: &str,
        payload: &Payload,
        what: &str,
    ) -> Result<Response, TransferError> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            self.pause_before(attempt)?;
            match self.send(method, url, &[], payload, what) {
                Ok(response) => return Ok(response),
                Err(Attempt::Stop(e)) => return Err(e),
                Err(Attempt::Retry(message)) => last = message,
            }
        }
        Err(TransferError::Failed(format!(
            "{last} (after {ATTEMPTS} attempts)"
        )))
    }

    /// One signed request; a 2xx answer is `Ok`.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        payload: &Payload,
        what: &str,
    ) -> Result<Response, Attempt> {
        let stop = |m: String| Attempt::Stop(TransferError::Failed(format!("{what}: {m}")));
        let signed = self.client.sign(method, url, headers).map_err(stop)?;
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers.iter().chain(&signed) {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let result = match payload {
            Payload::Empty => builder
                .header("content-length", "0")
                .body(())
                .map_err(|e| stop(e.to_string()))
                .map(|r| self.agent.run(r))?,
            Payload::Bytes(bytes) => builder
                .header("content-length", bytes.len().to_string())
                .body(*bytes)
                .map_err(|e| stop(e.to_string()))
                .map(|r| self.agent.run(r))?,
            Payload::Range { file, offset, len } => {
                let mut f = File::open(file)
                    .map_err(|e| stop(format!("opening {}: {e}", file.display())))?;
                f.seek(SeekFrom::Start(*offset))
                    .map_err(|e| stop(format!("reading {}: {e}", file.display())))?;
                let mut reader = Cancellable {
                    inner: f.take(*len),
                    cancel: self.cancel,
                    since_check: 0,
                };
                // The length is set, so the body goes as it is (not chunked), as S3 wants.
                let body = ureq::SendBody::from_reader(&mut reader);
                builder
                    .header("content-length", len.to_string())
                    .body(body)
                    .map_err(|e| stop(e.to_string()))
                    .map(|r| self.agent.run(r))?
            }
        };
        let mut response = match result {
            Ok(response) => response,
            Err(_) if self.cancelled() => return Err(Attempt::Stop(TransferError::Cancelled)),
            Err(e) => return Err(Attempt::Retry(format!("{what}: {method} {url}: {e}"))),
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let (code, message) = error_code(&mut response);
        let mut text = format!("{what}: S3 answered HTTP {status}");
        match (code, message) {
            (Some(c), Some(m)) => text.push_str(&format!(", {c}: {m}")),
            (Some(c), None) => text.push_str(&format!(", {c}")),
            _ => {}
        }
        if matches!(status, 500 | 502 | 503 | 504) {
            Err(Attempt::Retry(text))
        } else {
            Err(Attempt::Stop(TransferError::Failed(text)))
        }
    }
}

/// A part size at least `preferred` that needs no more than [`MAX_PARTS`] parts for `size`.
fn part_size_for(size: u64, preferred: u64) -> u64 {
    preferred.max(size.div_ceil(MAX_PARTS)).max(MIN_PART_SIZE)
}

fn complete_xml(etags: &[String]) -> String {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, etag) in etags.iter().enumerate() {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            quick_xml::escape::escape(etag.as_str())
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

fn etag_of(response: &Response) -> Option<String> {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn read_text(response: Response, what: &str) -> Result<String, TransferError> {
    response
        .into_body()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .map_err(|e| TransferError::Failed(format!("{what}: reading the answer: {e}")))
}

/// Where a download to `dest` is written before it is complete.
fn part_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.kiln-part"))
}

/// A reader that fails once the cancel check answers true (asked every [`CHUNK`] bytes), so a
/// cancelled upload stops sending.
struct Cancellable<'c, R> {
    inner: R,
    cancel: Option<&'c dyn Fn() -> bool>,
    since_check: usize,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since_check >= CHUNK {
            self.since_check = 0;
            if self.cancel.is_some_and(|c| c()) {
                return Err(std::io::Error::other("the transfer was cancelled"));
            }
        }
        let n = self.inner.read(buf)?;
        self.since_check += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_s3s_limits() {
        assert_eq!(part_size_for(10, 1), MIN_PART_SIZE);
        assert_eq!(part_size_for(10, DEFAULT_PART_SIZE), DEFAULT_PART_SIZE);
        // 1 TiB in 64 MiB parts would be 16,384 parts.
        let tib = 1u64 << 40;
        let part = part_size_for(tib, DEFAULT_PART_SIZE);
        assert!(tib.div_ceil(part) <= MAX_PARTS, "{part}");
        assert!(part >= DEFAULT_PART_SIZE);
    }

    #[test]
    fn completion_lists_parts_in_order() {
        let xml = complete_xml(&["\"a\"".into(), "\"b\"".into()]);
        assert_eq!(
            xml,
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>&quot;b&quot;</ETag></Part></CompleteMultipartUpload>"
        );
    }

    #[test]
    fn cancelled_readers_stop() {
        let data = vec![7u8; 3 * CHUNK];
        let stop = || true;
        let mut r = Cancellable {
            inner: &data[..],
            cancel: Some(&stop),
            since_check: 0,
        };
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert!(out.len() <= CHUNK + 64 * 1024);
    }
}
