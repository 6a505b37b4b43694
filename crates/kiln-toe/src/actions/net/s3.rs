//! S3Download and S3Upload against an S3-compatible endpoint.
//!
//! Requests are path-style (`{endpoint}/{bucket}/{key}`), signed with SigV4 (service `s3`,
//! `UNSIGNED-PAYLOAD`), and sent with ureq; each key's path segments are percent-encoded as
//! SigV4 wants. Transport errors and 500/502/503/504 answers are tried [`ATTEMPTS`] times with
//! the WebDownload backoff; errors name the bucket and key, the HTTP status and S3's error code.
//!
//! Decisions where AWSTOE's documentation leaves room:
//! - S3Download `s3://bucket/prefix/*` (or `s3://bucket/*`) downloads every object under the
//!   prefix into the destination folder, keeping the key's path below the prefix. More than
//!   [`MAX_OBJECTS`] objects, or none, is an error; keys ending with `/` (folder markers) are
//!   skipped; a key with a `.` or `..` segment below the prefix is an error.
//! - S3Download creates missing destination folders (with their parents), as WebDownload does.
//! - S3Download of a single key: a destination that ends with `/` or is an existing folder gets
//!   the key's last segment as file name; any other destination is the file itself.
//! - `overwrite: false` is checked for every file of an entry before anything is downloaded.
//! - S3Upload: a destination ending with `/` is a prefix (file names, or paths below a folder,
//!   are appended); a destination without it is the key for a single file, and the prefix (a `/`
//!   added) for a folder or a wildcard. `*` in the source's last component matches any run of
//!   characters, dot files included (as Go's `filepath.Glob`); matching no file is an error.
//!   Folders matched by a wildcard are uploaded when `recurse` is true and skipped otherwise; a
//!   folder source without `recurse: true` is an error. Symlinks are followed inside the target
//!   root; a symlink to a folder found while recursing is skipped (no loops).
//! - Both modules have no outputs.

use super::{
    agent, backoff, create_parent, deadline_passed, has_variable, log, part_path, percent_encode,
    stream_to_file, StreamError,
};
use crate::actions::inputs::{flag_or, parse_list, Text};
use crate::actions::{ActionContext, ActionFailure, ActionKind, Outputs, S3Config};
use crate::yaml::Value;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The most objects one `prefix/*` download may fetch.
pub const MAX_OBJECTS: usize = 1000;
/// How many times one S3 request is tried.
pub const ATTEMPTS: u32 = 3;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DownloadEntry {
    source: Text,
    destination: Text,
    expected_bucket_owner: Option<Text>,
    overwrite: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UploadEntry {
    source: Text,
    destination: Text,
    recurse: Option<Text>,
    expected_bucket_owner: Option<Text>,
}

pub(super) fn validate_download(inputs: &Value) -> Result<(), String> {
    let entries: Vec<DownloadEntry> = parse_list(inputs)?;
    if entries.is_empty() {
        return Err("inputs must list at least one download".into());
    }
    for (i, e) in entries.iter().enumerate() {
        check_download(e).map_err(|m| format!("inputs[{i}]: {m}"))?;
    }
    Ok(())
}

fn check_download(e: &DownloadEntry) -> Result<(), String> {
    let source = e.source.as_str().trim();
    if !has_variable(source) {
        // Only the form is checked here; a missing key is found when the step runs (sample
        // documents carry placeholders such as `s3://<PATH_TO_INSTALLER>`).
        let url = S3Url::parse(source, "source")?;
        url.wildcard_prefix()?;
    }
    if e.destination.as_str().trim().is_empty() {
        return Err("destination is empty".into());
    }
    check_flag(&e.overwrite, "overwrite")
}

pub(super) fn validate_upload(inputs: &Value) -> Result<(), String> {
    let entries: Vec<UploadEntry> = parse_list(inputs)?;
    if entries.is_empty() {
        return Err("inputs must list at least one upload".into());
    }
    for (i, e) in entries.iter().enumerate() {
        check_upload(e).map_err(|m| format!("inputs[{i}]: {m}"))?;
    }
    Ok(())
}

fn check_upload(e: &UploadEntry) -> Result<(), String> {
    let source = e.source.as_str().trim();
    if source.is_empty() {
        return Err("source is empty".into());
    }
    if !has_variable(source) {
        let (parent, last) = split_last(source);
        if parent.contains('*') {
            return Err(format!(
                "source `{source}`: a wildcard `*` is only allowed in the last path component"
            ));
        }
        if last.is_empty() && source != "/" {
            return Err(format!(
                "source `{source}` ends with `/`; name the folder without it"
            ));
        }
    }
    let destination = e.destination.as_str().trim();
    if !has_variable(destination) {
        S3Url::parse(destination, "destination")?;
    }
    check_flag(&e.recurse, "recurse")
}

fn check_flag(value: &Option<Text>, field: &str) -> Result<(), String> {
    match value {
        Some(v) if !has_variable(v.as_str()) => v.flag(field).map(|_| ()),
        _ => Ok(()),
    }
}

/// `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct S3Url {
    bucket: String,
    key: String,
}

impl S3Url {
    fn parse(url: &str, field: &str) -> Result<S3Url, String> {
        let rest = url
            .strip_prefix("s3://")
            .or_else(|| url.strip_prefix("S3://"))
            .ok_or_else(|| format!("{field} must be an s3://bucket/key URL, not `{url}`"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{field} `{url}` names no bucket"));
        }
        Ok(S3Url {
            bucket: bucket.into(),
            key: key.into(),
        })
    }

    /// `Some(prefix)` for `prefix/*` or `*`; an error for a `*` anywhere else.
    fn wildcard_prefix(&self) -> Result<Option<&str>, String> {
        if !self.key.contains('*') {
            return Ok(None);
        }
        match self.key.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') && (prefix.is_empty() || prefix.ends_with('/')) => {
                Ok(Some(prefix))
            }
            _ => Err(format!(
                "`{self}`: a wildcard is only allowed as `s3://bucket/prefix/*` (every object under the prefix)"
            )),
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// `("/a/b", "c")` for `/a/b/c`; `("", "c")` for `c`.
fn split_last(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((parent, last)) => (if parent.is_empty() { "/" } else { parent }, last),
        None => ("", path),
    }
}

fn join_doc(folder: &str, rel: &str) -> String {
    if folder.is_empty() {
        return rel.to_string();
    }
    format!("{}/{rel}", folder.trim_end_matches('/'))
}

fn no_endpoint(kind: ActionKind) -> ActionFailure {
    ActionFailure::failed(format!(
        "{}: no S3 endpoint is configured; set one with --s3-endpoint (or KILN_S3_ENDPOINT)",
        kind.name()
    ))
}

/// Reads and checks every entry before anything is transferred, then runs `each` on them with
/// a client of the configured endpoint.
fn run_entries<E: serde::de::DeserializeOwned>(
    ctx: &ActionContext,
    inputs: &Value,
    kind: ActionKind,
    check: impl Fn(&E) -> Result<(), String>,
    each: impl Fn(&ActionContext, &Client, &E) -> Result<(), ActionFailure>,
) -> Result<Outputs, ActionFailure> {
    let fail = |m: String| ActionFailure::failed(format!("{}: {m}", kind.name()));
    let entries: Vec<E> = parse_list(inputs).map_err(fail)?;
    for (i, e) in entries.iter().enumerate() {
        check(e).map_err(|m| fail(format!("inputs[{i}]: {m}")))?;
    }
    let config = ctx.config.s3.as_ref().ok_or_else(|| no_endpoint(kind))?;
    let client = Client::new(config);
    for e in &entries {
        each(ctx, &client, e)?;
    }
    Ok(Outputs::new())
}

pub(super) fn run_download(ctx: &ActionContext, inputs: &Value) -> Result<Outputs, ActionFailure> {
    // Validation lets `s3://bucket` through (samples hold placeholders there); a run needs a key.
    let check = |e: &DownloadEntry| {
        check_download(e)?;
        let source = e.source.as_str().trim();
        match S3Url::parse(source, "source") {
            Ok(url) if url.key.is_empty() => Err(format!("source `{source}` names no key")),
            _ => Ok(()),
        }
    };
    run_entries(ctx, inputs, ActionKind::S3Download, check, download_entry)
}

fn download_entry(
    ctx: &ActionContext,
    client: &Client,
    e: &DownloadEntry,
) -> Result<(), ActionFailure> {
    let fail = |m: String| ActionFailure::failed(format!("S3Download: {m}"));
    let source = S3Url::parse(e.source.as_str().trim(), "source").map_err(fail)?;
    let destination = e.destination.as_str().trim();
    let overwrite = flag_or(&e.overwrite, "overwrite", true).map_err(fail)?;
    let owner = e
        .expected_bucket_owner
        .as_ref()
        .map(|o| o.as_str().trim().to_string());
    let owner = owner.as_deref().filter(|o| !o.is_empty());
    // (key, document path) of every file to fetch.
    let mut plan: Vec<(String, String)> = Vec::new();
    match source.wildcard_prefix().map_err(fail)? {
        Some(prefix) => {
            let keys = client.list(ctx, &source.bucket, prefix, owner)?;
            for key in keys {
                if key.ends_with('/') {
                    continue;
                }
                let rel = &key[prefix.len()..];
                if rel
                    .split('/')
                    .any(|s| s.is_empty() || s == "." || s == "..")
                {
                    return Err(fail(format!(
                        "s3://{}/{key}: the key's path below `{prefix}` has an empty, `.` or `..` segment",
                        source.bucket
                    )));
                }
                plan.push((key.clone(), join_doc(destination, rel)));
            }
            if plan.is_empty() {
                return Err(fail(format!("no objects found under `{source}`")));
            }
        }
        None => {
            let name = source.key.rsplit('/').next().unwrap_or("");
            if name.is_empty() {
                return Err(fail(format!(
                    "`{source}` names a folder; download its objects with `{source}*`"
                )));
            }
            let into_folder = destination.ends_with('/')
                || ctx.target.resolve(destination).is_ok_and(|p| p.is_dir());
            let doc = if into_folder {
                join_doc(destination, name)
            } else {
                destination.to_string()
            };
            plan.push((source.key.clone(), doc));
        }
    }
    let mut resolved = Vec::with_capacity(plan.len());
    for (key, doc) in plan {
        let host = ctx
            .target
            .resolve(&doc)
            .map_err(|err| fail(format!("destination {err}")))?;
        if host.is_dir() {
            return Err(fail(format!("destination `{doc}` is a folder")));
        }
        if !overwrite && host.exists() {
            return Err(fail(format!(
                "destination `{doc}` already exists and overwrite is false"
            )));
        }
        resolved.push((key, doc, host));
    }
    for (key, doc, host) in resolved {
        create_parent(&host)
            .map_err(|err| fail(format!("creating the folder of `{doc}`: {err}")))?;
        let bytes = client.get_to_file(ctx, &source.bucket, &key, owner, &host)?;
        log(
            ctx,
            &format!(
                "S3Download: downloaded s3://{}/{key} to `{doc}` ({bytes} bytes)",
                source.bucket
            ),
        );
    }
    Ok(())
}

pub(super) fn run_upload(ctx: &ActionContext, inputs: &Value) -> Result<Outputs, ActionFailure> {
    run_entries(
        ctx,
        inputs,
        ActionKind::S3Upload,
        check_upload,
        upload_entry,
    )
}

fn upload_entry(
    ctx: &ActionContext,
    client: &Client,
    e: &UploadEntry,
) -> Result<(), ActionFailure> {
    let fail = |m: String| ActionFailure::failed(format!("S3Upload: {m}"));
    let source = e.source.as_str().trim();
    let destination = S3Url::parse(e.destination.as_str().trim(), "destination").map_err(fail)?;
    let recurse = flag_or(&e.recurse, "recurse", false).map_err(fail)?;
    let owner = e
        .expected_bucket_owner
        .as_ref()
        .map(|o| o.as_str().trim().to_string());
    let owner = owner.as_deref().filter(|o| !o.is_empty());
    let prefix = if destination.key.is_empty() || destination.key.ends_with('/') {
        destination.key.clone()
    } else {
        format!("{}/", destination.key)
    };
    // (host path, document path, key) of every file to send.
    let mut files: Vec<(PathBuf, String, String)> = Vec::new();
    let (parent, last) = split_last(source);
    if last.contains('*') {
        let parent_doc = if parent.is_empty() { "." } else { parent };
        let dir = ctx
            .target
            .resolve(parent_doc)
            .map_err(|err| fail(format!("source {err}")))?;
        let mut names = list_names(&dir).map_err(|err| {
            fail(format!(
                "reading folder `{parent_doc}` for `{source}`: {err}"
            ))
        })?;
        names.retain(|n| wildcard_match(last, n));
        for name in names {
            let doc = join_doc(parent, &name);
            let host = ctx
                .target
                .resolve(&doc)
                .map_err(|err| fail(format!("source {err}")))?;
            if host.is_dir() {
                if recurse {
                    walk(ctx, &host, &format!("{prefix}{name}/"), &mut files)?;
                } else {
                    log(
                        ctx,
                        &format!("S3Upload: skipping folder `{doc}` (recurse is false)"),
                    );
                }
            } else if host.is_file() {
                files.push((host, doc, format!("{prefix}{name}")));
            }
        }
        if files.is_empty() {
            return Err(fail(format!("`{source}` matches no files")));
        }
    } else {
        let host = ctx
            .target
            .resolve(source)
            .map_err(|err| fail(format!("source {err}")))?;
        if host.is_dir() {
            if !recurse {
                return Err(fail(format!(
                    "source `{source}` is a folder; set recurse: true to upload its files"
                )));
            }
            walk(ctx, &host, &prefix, &mut files)?;
        } else if host.is_file() {
            let key = if destination.key.is_empty() || destination.key.ends_with('/') {
                format!("{}{last}", destination.key)
            } else {
                destination.key.clone()
            };
            files.push((host, source.to_string(), key));
        } else {
            return Err(fail(format!("source `{source}` does not exist")));
        }
    }
    for (host, doc, key) in files {
        let bytes = client.put_file(ctx, &destination.bucket, &key, owner, &host, &doc)?;
        log(
            ctx,
            &format!(
                "S3Upload: uploaded `{doc}` to s3://{}/{key} ({bytes} bytes)",
                destination.bucket
            ),
        );
    }
    Ok(())
}

/// The entry names of a folder, sorted; non-UTF-8 names are an error.
fn list_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        match name.into_string() {
            Ok(n) => names.push(n),
            Err(n) => {
                return Err(std::io::Error::other(format!(
                    "file name {n:?} is not UTF-8"
                )))
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Adds every file under `dir` (a host folder inside the root) with key `prefix` + its path
/// below `dir`.
fn walk(
    ctx: &ActionContext,
    dir: &Path,
    prefix: &str,
    files: &mut Vec<(PathBuf, String, String)>,
) -> Result<(), ActionFailure> {
    let fail = |m: String| ActionFailure::failed(format!("S3Upload: {m}"));
    let doc_dir = ctx.target.document_path(dir);
    let names =
        list_names(dir).map_err(|err| fail(format!("reading folder `{doc_dir}`: {err}")))?;
    for name in names {
        let entry = dir.join(&name);
        let doc = join_doc(&doc_dir, &name);
        let meta = std::fs::symlink_metadata(&entry)
            .map_err(|err| fail(format!("reading `{doc}`: {err}")))?;
        if meta.file_type().is_symlink() {
            let host = ctx
                .target
                .resolve(&doc)
                .map_err(|err| fail(format!("source {err}")))?;
            if host.is_file() {
                files.push((host, doc, format!("{prefix}{name}")));
            } else {
                log(
                    ctx,
                    &format!("S3Upload: skipping `{doc}` (a link to a folder or nothing)"),
                );
            }
        } else if meta.is_dir() {
            walk(ctx, &entry, &format!("{prefix}{name}/"), files)?;
        } else if meta.is_file() {
            files.push((entry, doc, format!("{prefix}{name}")));
        }
    }
    Ok(())
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts
        .split_first()
        .expect("split answers one part at least");
    let Some(mut tail) = name.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return tail.is_empty();
    };
    for part in middle {
        match tail.find(part) {
            Some(at) => tail = &tail[at + part.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

/// A path-style, SigV4-signing S3 client over ureq.
pub struct Client<'a> {
    config: &'a S3Config,
}

/// What one S3 request sends.
enum Payload<'p> {
    Empty,
    File(&'p Path),
}

/// Why one S3 request failed.
enum RequestError {
    /// Transport error or 500/502/503/504: worth another attempt.
    Retry(String),
    Stop(ActionFailure),
}

impl<'a> Client<'a> {
    pub fn new(config: &'a S3Config) -> Self {
        Client { config }
    }

    /// `{endpoint}/{bucket}/{key}` with each key segment percent-encoded, and `query` (already
    /// in SigV4 order: sorted by name).
    pub(super) fn url(&self, bucket: &str, key: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!(
            "{}/{}",
            self.config.endpoint.trim_end_matches('/'),
            percent_encode(bucket, false)
        );
        if !key.is_empty() {
            url.push('/');
            url.push_str(&percent_encode(key, true));
        }
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&percent_encode(name, false));
            url.push('=');
            url.push_str(&percent_encode(value, false));
        }
        url
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-content-sha256`) for a request
    /// with `headers` (which are signed too).
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        use aws_sigv4::http_request::{
            sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
            SigningSettings, UriPathNormalizationMode,
        };
        let identity = aws_credential_types::Credentials::new(
            &self.config.access_key_id,
            &self.config.secret_access_key,
            self.config.session_token.clone(),
            None,
            "kiln",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let region = if self.config.region.is_empty() {
            "us-east-1"
        } else {
            &self.config.region
        };
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("s3")
            .time(std::time::SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| format!("signing: {e}"))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| format!("signing {method} {url}: {e}"))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| format!("signing {method} {url}: {e}"))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Sends one signed request, with retries; answers the response when its status is one of
    /// `ok`, else an error naming `what`, the status and S3's error code.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        ctx: Option<&ActionContext>,
        kind: &str,
        method: &str,
        url: &str,
        owner: Option<&str>,
        payload: Payload,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, ActionFailure> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                if let Some(ctx) = ctx {
                    log(
                        ctx,
                        &format!("{kind}: attempt {attempt} of {ATTEMPTS} for {what} ({last})"),
                    );
                    backoff(ctx, attempt - 1)?;
                }
            }
            match self.send(ctx, kind, method, url, owner, &payload, what) {
                Ok(response) => return Ok(response),
                Err(RequestError::Stop(failure)) => return Err(failure),
                Err(RequestError::Retry(message)) => {
                    if ctx.is_some_and(deadline_passed) {
                        return Err(ActionFailure::TimedOut);
                    }
                    last = message;
                }
            }
        }
        Err(ActionFailure::failed(format!(
            "{kind}: {what}: {last} (after {ATTEMPTS} attempts)"
        )))
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        ctx: Option<&ActionContext>,
        kind: &str,
        method: &str,
        url: &str,
        owner: Option<&str>,
        payload: &Payload,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, RequestError> {
        let stop = |m: String| RequestError::Stop(ActionFailure::failed(format!("{kind}: {m}")));
        let mut headers = Vec::new();
        if let Some(owner) = owner {
            headers.push(("x-amz-expected-bucket-owner".to_string(), owner.to_string()));
        }
        let signed = self.sign(method, url, &headers).map_err(stop)?;
        let agent = match ctx {
            Some(ctx) => agent(ctx, false).map_err(RequestError::Stop)?,
            None => ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs(60)))
                .build()
                .new_agent(),
        };
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers.iter().chain(&signed) {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let result = match payload {
            Payload::Empty => {
                let request = builder
                    .header("content-length", "0")
                    .body(())
                    .map_err(|e| stop(format!("{what}: {e}")))?;
                agent.run(request)
            }
            Payload::File(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| stop(format!("{what}: opening `{}`: {e}", path.display())))?;
                let request = builder
                    .body(file)
                    .map_err(|e| stop(format!("{what}: {e}")))?;
                agent.run(request)
            }
        };
        let mut response = result.map_err(|e| match super::address::refusal(&e) {
            Some(why) => stop(format!("{what}: {method} {url}: {why}")),
            None => RequestError::Retry(format!("{method} {url}: {e}")),
        })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let message = format!("{what}: {}", describe_error(&mut response));
        if matches!(status, 500 | 502 | 503 | 504) {
            Err(RequestError::Retry(message))
        } else {
            Err(stop(message))
        }
    }

    /// Creates a bucket (for tests and tools; the actions never create buckets).
    pub fn create_bucket(&self, bucket: &str) -> Result<(), String> {
        let url = self.url(bucket, "", &[]);
        self.request(
            None,
            "CreateBucket",
            "PUT",
            &url,
            None,
            Payload::Empty,
            &format!("s3://{bucket}"),
        )
        .map(|_| ())
        .map_err(|f| match f {
            ActionFailure::Failed(m) => m,
            other => format!("{other:?}"),
        })
    }

    /// Every key under `prefix` (ListObjectsV2, following continuation tokens).
    fn list(
        &self,
        ctx: &ActionContext,
        bucket: &str,
        prefix: &str,
        owner: Option<&str>,
    ) -> Result<Vec<String>, ActionFailure> {
        let what = format!("listing s3://{bucket}/{prefix}");
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            query.push(("list-type", "2"));
            query.push(("prefix", prefix));
            let url = self.url(bucket, "", &query);
            let mut response = self.request(
                Some(ctx),
                "S3Download",
                "GET",
                &url,
                owner,
                Payload::Empty,
                &what,
            )?;
            let body = response
                .body_mut()
                .with_config()
                .limit(16 * 1024 * 1024)
                .read_to_string()
                .map_err(|e| ActionFailure::failed(format!("S3Download: {what}: {e}")))?;
            let page = parse_list_page(&body)
                .map_err(|e| ActionFailure::failed(format!("S3Download: {what}: {e}")))?;
            keys.extend(page.keys);
            if keys.len() > MAX_OBJECTS {
                return Err(ActionFailure::failed(format!(
                    "S3Download: more than {MAX_OBJECTS} objects under s3://{bucket}/{prefix}; \
                     download at most {MAX_OBJECTS} with one prefix"
                )));
            }
            match page.next {
                Some(next) if page.truncated => token = Some(next),
                _ => return Ok(keys),
            }
        }
    }

    /// GET an object into `host` (through a `.kiln-part` file); answers the byte count.
    fn get_to_file(
        &self,
        ctx: &ActionContext,
        bucket: &str,
        key: &str,
        owner: Option<&str>,
        host: &Path,
    ) -> Result<u64, ActionFailure> {
        let what = format!("s3://{bucket}/{key}");
        let url = self.url(bucket, key, &[]);
        let part = part_path(host);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                log(
                    ctx,
                    &format!("S3Download: attempt {attempt} of {ATTEMPTS} for {what} ({last})"),
                );
                backoff(ctx, attempt - 1)?;
            }
            let response = self.request(
                Some(ctx),
                "S3Download",
                "GET",
                &url,
                owner,
                Payload::Empty,
                &what,
            )?;
            let mut body = response.into_body().into_reader();
            match stream_to_file(&mut body, &part, None) {
                Ok((bytes, _)) => {
                    return std::fs::rename(&part, host).map(|_| bytes).map_err(|e| {
                        let _ = std::fs::remove_file(&part);
                        ActionFailure::failed(format!(
                            "S3Download: moving {what} into `{}`: {e}",
                            ctx.target.document_path(host)
                        ))
                    });
                }
                Err(StreamError::Read(e)) => {
                    let _ = std::fs::remove_file(&part);
                    if deadline_passed(ctx) {
                        return Err(ActionFailure::TimedOut);
                    }
                    last = format!("reading {what}: {e}");
                }
                Err(StreamError::Write(e)) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(ActionFailure::failed(format!(
                        "S3Download: writing `{}`: {e}",
                        ctx.target.document_path(host)
                    )));
                }
            }
        }
        Err(ActionFailure::failed(format!(
            "S3Download: {what}: {last} (after {ATTEMPTS} attempts)"
        )))
    }

    /// PUT a file as an object; answers the byte count.
    fn put_file(
        &self,
        ctx: &ActionContext,
        bucket: &str,
        key: &str,
        owner: Option<&str>,
        host: &Path,
        doc: &str,
    ) -> Result<u64, ActionFailure> {
        let what = format!("uploading `{doc}` to s3://{bucket}/{key}");
        let url = self.url(bucket, key, &[]);
        let bytes = std::fs::metadata(host)
            .map_err(|e| ActionFailure::failed(format!("S3Upload: {what}: {e}")))?
            .len();
        self.request(
            Some(ctx),
            "S3Upload",
            "PUT",
            &url,
            owner,
            Payload::File(host),
            &what,
        )?;
        Ok(bytes)
    }
}

/// `HTTP 404 Not Found, NoSuchKey: The specified key does not exist.`
fn describe_error(response: &mut ureq::http::Response<ureq::Body>) -> String {
    let (code, message) = error_code(response);
    let status = response.status();
    let mut text = format!("HTTP {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        text.push(' ');
        text.push_str(reason);
    }
    match (code, message) {
        (Some(code), Some(message)) => text.push_str(&format!(", {code}: {message}")),
        (Some(code), None) => text.push_str(&format!(", {code}")),
        _ => {}
    }
    text
}

/// S3's error `Code` and `Message` from an error answer's XML body, when it has them.
pub(super) fn error_code(
    response: &mut ureq::http::Response<ureq::Body>,
) -> (Option<String>, Option<String>) {
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    let fields = xml_fields(&body, &["Code", "Message"]).unwrap_or_default();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    (field("Code"), field("Message"))
}

/// One page of ListObjectsV2.
#[derive(Debug, Default, PartialEq)]
struct ListPage {
    keys: Vec<String>,
    truncated: bool,
    next: Option<String>,
}

fn parse_list_page(xml: &str) -> Result<ListPage, String> {
    let fields = xml_fields(xml, &["Key", "IsTruncated", "NextContinuationToken"])?;
    let mut page = ListPage::default();
    for (name, value) in fields {
        match name.as_str() {
            "Key" => page.keys.push(value),
            "IsTruncated" => page.truncated = value.trim() == "true",
            _ => page.next = Some(value),
        }
    }
    Ok(page)
}

/// The text of every element named one of `names` (local names, any depth), in document order,
/// with entity and character references resolved.
pub(super) fn xml_fields(xml: &str, names: &[&str]) -> Result<Vec<(String, String)>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    // The element being collected and its raw (still escaped) text.
    let mut current: Option<(String, String)> = None;
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("reading the XML answer: {e}"))?
        {
            Event::Start(e) => {
                let local = e.local_name();
                let name: &str = local.as_ref();
                let name = name.to_string();
                current = names
                    .contains(&name.as_str())
                    .then(|| (name, String::new()));
            }
            Event::Text(t) => {
                if let Some((_, raw)) = current.as_mut() {
                    raw.push_str(&t.into_inner());
                }
            }
            Event::CData(t) => {
                if let Some((_, raw)) = current.as_mut() {
                    raw.push_str(&quick_xml::escape::escape(t.into_inner().as_ref()));
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, raw)) = current.as_mut() {
                    raw.push('&');
                    raw.push_str(&r.into_inner());
                    raw.push(';');
                }
            }
            Event::End(_) => {
                if let Some((name, raw)) = current.take() {
                    let text = quick_xml::escape::unescape(&raw)
                        .map_err(|e| format!("reading the XML answer: {e}"))?;
                    out.push((name, text.into_owned()));
                }
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse() {
        let u = S3Url::parse("s3://b/dir/file.txt", "source").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("b", "dir/file.txt"));
        assert_eq!(u.wildcard_prefix().unwrap(), None);
        let u = S3Url::parse("s3://b/dir/*", "source").unwrap();
        assert_eq!(u.wildcard_prefix().unwrap(), Some("dir/"));
        let u = S3Url::parse("s3://b/*", "source").unwrap();
        assert_eq!(u.wildcard_prefix().unwrap(), Some(""));
        assert!(S3Url::parse("s3://b/di*", "source")
            .unwrap()
            .wildcard_prefix()
            .is_err());
        assert!(S3Url::parse("s3:///k", "source")
            .unwrap_err()
            .contains("no bucket"));
        assert!(S3Url::parse("http://b/k", "source")
            .unwrap_err()
            .contains("source must be"));
    }

    #[test]
    fn wildcards_match() {
        let cases = [
            ("*", "a.log", true),
            ("*", ".hidden", true),
            ("*.log", "a.log", true),
            ("*.log", "a.log.1", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("x", "x", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(wildcard_match(pattern, name), want, "{pattern} {name}");
        }
    }

    #[test]
    fn list_pages_and_errors_parse() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount>
  <IsTruncated>true</IsTruncated><NextContinuationToken>tok&amp;1</NextContinuationToken>
  <Contents><Key>p/a &amp; b.txt</Key><Size>1</Size></Contents>
  <Contents><Key><![CDATA[p/c<d]]></Key><Size>2</Size></Contents>
</ListBucketResult>"#;
        let page = parse_list_page(xml).unwrap();
        assert_eq!(page.keys, ["p/a & b.txt", "p/c<d"]);
        assert!(page.truncated);
        assert_eq!(page.next.as_deref(), Some("tok&1"));
        let err = "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        let fields = xml_fields(err, &["Code", "Message"]).unwrap();
        assert_eq!(fields[0], ("Code".into(), "NoSuchKey".into()));
    }

    #[test]
    fn urls_encode_each_segment() {
        let config = S3Config {
            endpoint: "http://127.0.0.1:9000/".into(),
            region: "us-east-1".into(),
            access_key_id: "a".into(),
            secret_access_key: "s".into(),
            session_token: None,
        };
        let c = Client::new(&config);
        assert_eq!(
            c.url("b", "d ir/x+y=1.txt", &[]),
            "http://127.0.0.1:9000/b/d%20ir/x%2By%3D1.txt"
        );
        assert_eq!(
            c.url("b", "", &[("list-type", "2"), ("prefix", "a/b c")]),
            "http://127.0.0.1:9000/b?list-type=2&prefix=a%2Fb%20c"
        );
        let headers = c.sign("GET", "http://127.0.0.1:9000/b/k", &[]).unwrap();
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"authorization"), "{names:?}");
        assert!(headers.contains(&("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into())));
    }

    #[test]
    fn validation_checks_shape_and_leaves_variables() {
        let cases: &[(ActionKind, &str, &str)] = &[
            (
                ActionKind::S3Download,
                "- {source: /x, destination: /d}",
                "inputs[0]: source must be an s3://",
            ),
            (
                ActionKind::S3Download,
                "- {source: 's3://b/a*b', destination: /d}",
                "wildcard",
            ),
            (
                ActionKind::S3Download,
                "- {source: 's3://b/k'}",
                "missing field `destination`",
            ),
            (
                ActionKind::S3Download,
                "- {source: 's3://b/k', destination: /d, overwrite: x}",
                "overwrite must be",
            ),
            (
                ActionKind::S3Upload,
                "- {source: /x, destination: /d}",
                "inputs[0]: destination must be an s3://",
            ),
            (
                ActionKind::S3Upload,
                "- {source: '/a*/x', destination: 's3://b/'}",
                "last path component",
            ),
            (
                ActionKind::S3Upload,
                "- {source: /x, destination: 's3://b/', recurse: 2}",
                "recurse must be",
            ),
            (
                ActionKind::S3Upload,
                "- {source: /x, destination: 's3://b/', bogus: 2}",
                "unknown field `bogus`",
            ),
        ];
        for (kind, src, want) in cases {
            let v: Value = crate::yaml::from_str(src).unwrap();
            let m = crate::actions::validate(*kind, &v).unwrap_err();
            assert!(m.contains(want), "{src}: {m}");
        }
        for (kind, src) in [
            (ActionKind::S3Download, "- {source: '{{ S }}', destination: '{{ D }}', overwrite: '{{ O }}', expectedBucketOwner: '1'}"),
            (ActionKind::S3Upload, "- {source: '{{ S }}/*', destination: '{{ D }}', recurse: '{{ R }}'}"),
        ] {
            let v: Value = crate::yaml::from_str(src).unwrap();
            crate::actions::validate(kind, &v).unwrap();
        }
    }
}
