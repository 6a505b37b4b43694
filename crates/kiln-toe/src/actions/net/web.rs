//! WebDownload: downloads files over HTTP(S).
//!
//! Each entry is tried up to [`ATTEMPTS`] times (independent of the step's `maxAttempts`), with
//! an exponential backoff that starts at [`ActionConfig::web_retry_base`](crate::actions::ActionConfig)
//! and doubles. Transport errors and every final status but 200 are retried; a checksum
//! mismatch, an existing destination with `overwrite: false` or a local file error are not.
//! Redirects are followed (10 at most). The output `destination` lists the downloaded files'
//! document paths, one a line.

use super::{
    agent, backoff, create_parent, deadline_passed, has_variable, hash_file, log, part_path,
    percent_decode, same_digest, stream_to_file, Algorithm, StreamError,
};
use crate::actions::inputs::{flag_or, parse_list, Text};
use crate::actions::{ActionContext, ActionFailure, Outputs};
use crate::yaml::Value;
use serde::Deserialize;
use std::path::Path;

/// How many times one download is tried.
pub const ATTEMPTS: u32 = 5;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    source: Text,
    destination: Text,
    overwrite: Option<Text>,
    checksum: Option<Text>,
    algorithm: Option<Text>,
    ignore_certificate_errors: Option<Text>,
}

pub(super) fn validate(inputs: &Value) -> Result<(), String> {
    let entries: Vec<Entry> = parse_list(inputs)?;
    if entries.is_empty() {
        return Err("inputs must list at least one download".into());
    }
    for (i, e) in entries.iter().enumerate() {
        check(e).map_err(|m| format!("inputs[{i}]: {m}"))?;
    }
    Ok(())
}

/// Shape checks; values holding `{{ ... }}` are left for run time.
fn check(e: &Entry) -> Result<(), String> {
    let source = e.source.as_str().trim();
    if !has_variable(source) {
        http_url(source)?;
    }
    if e.destination.as_str().trim().is_empty() {
        return Err("destination is empty".into());
    }
    match (&e.checksum, &e.algorithm) {
        (Some(_), None) => return Err("checksum needs an algorithm".into()),
        (None, Some(_)) => return Err("algorithm needs a checksum".into()),
        (Some(c), Some(a)) => {
            if !has_variable(a.as_str()) {
                Algorithm::parse(a.as_str())?;
            }
            if c.as_str().trim().is_empty() {
                return Err("checksum is empty".into());
            }
        }
        (None, None) => {}
    }
    for (value, field) in [
        (&e.overwrite, "overwrite"),
        (&e.ignore_certificate_errors, "ignoreCertificateErrors"),
    ] {
        if let Some(v) = value {
            if !has_variable(v.as_str()) {
                v.flag(field)?;
            }
        }
    }
    Ok(())
}

/// Checks that `url` is http(s) and answers the part after `scheme://`.
fn http_url(url: &str) -> Result<&str, String> {
    let lower = url.to_ascii_lowercase();
    for scheme in ["http://", "https://"] {
        if lower.starts_with(scheme) && url.len() > scheme.len() {
            return Ok(&url[scheme.len()..]);
        }
    }
    Err(format!(
        "source must be an http:// or https:// URL, not `{url}`"
    ))
}

/// The file name a URL names: its last path segment, percent-decoded.
fn url_file_name(url: &str) -> Result<String, String> {
    let rest = http_url(url)?;
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let last = path.rsplit('/').next().unwrap_or("");
    let name = percent_decode(last).unwrap_or_default();
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(format!(
            "cannot take a file name from `{url}`; give the destination as a file path"
        ));
    }
    Ok(name)
}

pub(super) fn run(ctx: &ActionContext, inputs: &Value) -> Result<Outputs, ActionFailure> {
    let fail = |m: String| ActionFailure::failed(format!("WebDownload: {m}"));
    let entries: Vec<Entry> = parse_list(inputs).map_err(fail)?;
    let mut done = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        check(e).map_err(|m| fail(format!("inputs[{i}]: {m}")))?;
        done.push(download(ctx, e)?);
    }
    let mut out = Outputs::new();
    out.insert("destination".into(), done.join("\n").into());
    Ok(out)
}

/// Downloads one entry; answers the destination's document path.
fn download(ctx: &ActionContext, e: &Entry) -> Result<String, ActionFailure> {
    let fail = |m: String| ActionFailure::failed(format!("WebDownload: {m}"));
    let url = e.source.as_str().trim();
    let overwrite = flag_or(&e.overwrite, "overwrite", true).map_err(fail)?;
    let insecure = flag_or(
        &e.ignore_certificate_errors,
        "ignoreCertificateErrors",
        false,
    )
    .map_err(fail)?;
    let expected = match (&e.checksum, &e.algorithm) {
        (Some(c), Some(a)) => Some((
            c.as_str().trim().to_string(),
            Algorithm::parse(a.as_str()).map_err(fail)?,
        )),
        _ => None,
    };
    let destination = e.destination.as_str().trim();
    let doc = if destination.ends_with('/') {
        format!("{destination}{}", url_file_name(url).map_err(fail)?)
    } else {
        destination.to_string()
    };
    let host = ctx
        .target
        .resolve(&doc)
        .map_err(|err| fail(format!("destination {err}")))?;
    if host.is_dir() {
        return Err(fail(format!(
            "destination `{doc}` is a folder; end it with `/` to download into it"
        )));
    }
    if host.exists() {
        if !overwrite {
            return Err(fail(format!(
                "destination `{doc}` already exists and overwrite is false"
            )));
        }
        if let Some((checksum, algorithm)) = &expected {
            if hash_file(&host, *algorithm).is_ok_and(|h| same_digest(checksum, &h)) {
                log(
                    ctx,
                    &format!(
                        "WebDownload: `{doc}` already has {} {checksum}; not downloading {url}",
                        algorithm.name()
                    ),
                );
                return Ok(doc);
            }
        }
    }
    create_parent(&host).map_err(|err| fail(format!("creating the folder of `{doc}`: {err}")))?;
    let part = part_path(&host);
    let result = fetch_with_retries(
        ctx,
        url,
        insecure,
        &part,
        expected.as_ref().map(|(_, a)| *a),
    );
    let (bytes, digest) = match result {
        Ok(ok) => ok,
        Err(failure) => {
            let _ = std::fs::remove_file(&part);
            return Err(failure);
        }
    };
    if let (Some((checksum, algorithm)), Some(digest)) = (&expected, &digest) {
        if !same_digest(checksum, digest) {
            let _ = std::fs::remove_file(&part);
            return Err(fail(format!(
                "{} checksum of {url} is {digest}, expected {checksum}; the download was removed",
                algorithm.name()
            )));
        }
    }
    std::fs::rename(&part, &host).map_err(|err| {
        let _ = std::fs::remove_file(&part);
        fail(format!("moving the download into `{doc}`: {err}"))
    })?;
    log(
        ctx,
        &format!("WebDownload: downloaded {url} to `{doc}` ({bytes} bytes)"),
    );
    Ok(doc)
}

/// Why one attempt failed.
enum AttemptError {
    /// Worth another attempt (transport error, status other than 200).
    Retry(String),
    /// Not (a local file error, the deadline).
    Stop(ActionFailure),
}

fn fetch_with_retries(
    ctx: &ActionContext,
    url: &str,
    insecure: bool,
    part: &Path,
    algorithm: Option<Algorithm>,
) -> Result<(u64, Option<String>), ActionFailure> {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            log(
                ctx,
                &format!("WebDownload: attempt {attempt} of {ATTEMPTS} for {url} ({last})"),
            );
            backoff(ctx, attempt - 1)?;
        }
        match fetch(ctx, url, insecure, part, algorithm) {
            Ok(done) => return Ok(done),
            Err(AttemptError::Stop(failure)) => return Err(failure),
            Err(AttemptError::Retry(message)) => {
                if deadline_passed(ctx) {
                    return Err(ActionFailure::TimedOut);
                }
                last = message;
            }
        }
    }
    Err(ActionFailure::failed(format!(
        "WebDownload: downloading {url} failed after {ATTEMPTS} attempts: {last}"
    )))
}

fn fetch(
    ctx: &ActionContext,
    url: &str,
    insecure: bool,
    part: &Path,
    algorithm: Option<Algorithm>,
) -> Result<(u64, Option<String>), AttemptError> {
    let agent = agent(ctx, insecure).map_err(AttemptError::Stop)?;
    let response = agent
        .get(url)
        .call()
        .map_err(|e| match super::address::refusal(&e) {
            // Asking again changes nothing.
            Some(why) => AttemptError::Stop(ActionFailure::failed(format!(
                "WebDownload: GET {url}: {why}"
            ))),
            None => AttemptError::Retry(format!("GET {url}: {e}")),
        })?;
    let status = response.status();
    if status.as_u16() != 200 {
        return Err(AttemptError::Retry(format!(
            "GET {url} answered HTTP {}{}",
            status.as_u16(),
            status
                .canonical_reason()
                .map_or(String::new(), |r| format!(" {r}"))
        )));
    }
    let mut body = response.into_body().into_reader();
    stream_to_file(&mut body, part, algorithm).map_err(|e| match e {
        StreamError::Read(e) => AttemptError::Retry(format!("reading {url}: {e}")),
        StreamError::Write(e) => AttemptError::Stop(ActionFailure::failed(format!(
            "WebDownload: writing `{}`: {e}",
            part.display()
        ))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::net::address::NetworkAccess;
    use crate::actions::{run as run_action, ActionConfig, ActionKind};
    use crate::target::LocalTarget;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// What the test server answers: status, extra headers, body.
    type Reply = (u16, Vec<(String, String)>, Vec<u8>);
    type Handler = dyn Fn(&str, usize) -> Reply + Send + Sync;

    /// A tiny HTTP/1.1 server on 127.0.0.1 that answers every request with `handler(path, n)`
    /// (`n` counts requests from 1) and closes the connection.
    struct Server {
        base: String,
        hits: Arc<AtomicUsize>,
    }

    impl Server {
        fn start(handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let hits = Arc::new(AtomicUsize::new(0));
            let counter = hits.clone();
            let handler: Arc<Handler> = Arc::new(handler);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let handler = handler.clone();
                    std::thread::spawn(move || serve(stream, n, &*handler));
                }
            });
            Server { base, hits }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    fn serve(stream: TcpStream, n: usize, handler: &Handler) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let (status, headers, body) = handler(&path, n);
        let mut out = stream;
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(&body);
    }

    fn ok(body: &[u8]) -> Reply {
        (200, vec![], body.to_vec())
    }

    type Lines = crate::actions::RecordingConsole;

    struct Fixture {
        root: tempfile::TempDir,
        config: ActionConfig,
        console: Lines,
        target: LocalTarget,
    }

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            std::fs::create_dir(root.path().join("scratch")).unwrap();
            let target = LocalTarget::chroot(root.path());
            Fixture {
                root,
                config: ActionConfig {
                    s3: None,
                    web_retry_base: Duration::from_millis(1),
                    ..ActionConfig::default()
                },
                console: Lines::default(),
                target,
            }
        }

        fn run(&self, yaml: &str) -> Result<Outputs, ActionFailure> {
            self.run_until(yaml, None)
        }

        fn run_until(
            &self,
            yaml: &str,
            deadline: Option<std::time::Instant>,
        ) -> Result<Outputs, ActionFailure> {
            let inputs: Value = crate::yaml::from_str(yaml).unwrap();
            crate::actions::validate(ActionKind::WebDownload, &inputs)
                .map_err(ActionFailure::Failed)?;
            let scratch = self.root.path().join("scratch");
            let ctx = ActionContext {
                target: &self.target,
                config: &self.config,
                console: &self.console,
                deadline,
                scratch: &scratch,
                scratch_in_target: "/scratch",
            };
            run_action(ActionKind::WebDownload, &ctx, &inputs)
        }

        fn read(&self, doc: &str) -> Vec<u8> {
            std::fs::read(self.root.path().join(doc.trim_start_matches('/'))).unwrap()
        }

        fn path(&self, doc: &str) -> std::path::PathBuf {
            self.root.path().join(doc.trim_start_matches('/'))
        }
    }

    fn err(r: Result<Outputs, ActionFailure>) -> String {
        match r {
            Err(ActionFailure::Failed(m)) => m,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn downloads_to_a_file_and_into_a_folder() {
        let server = Server::start(|path, _| ok(format!("body of {path}").as_bytes()));
        let f = Fixture::new();
        let out = f
            .run(&format!(
                "- {{source: '{}', destination: /opt/a/b/file.txt}}\n\
                 - {{source: '{}', destination: /dl/}}",
                server.url("/x/first.bin"),
                server.url("/dir/second%20file.tar.gz?v=1"),
            ))
            .unwrap();
        assert_eq!(
            out["destination"],
            "/opt/a/b/file.txt\n/dl/second file.tar.gz"
        );
        assert_eq!(f.read("/opt/a/b/file.txt"), b"body of /x/first.bin");
        assert_eq!(
            f.read("/dl/second file.tar.gz"),
            b"body of /dir/second%20file.tar.gz?v=1"
        );
        assert_eq!(server.hits(), 2);
        let lines = f.console.texts();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("downloaded") && lines[0].contains("/opt/a/b/file.txt"));
        // No partial files are left behind.
        assert_eq!(std::fs::read_dir(f.path("/dl")).unwrap().count(), 1);
    }

    #[test]
    fn follows_redirects() {
        let server = Server::start(|path, _| {
            if path == "/old" {
                (302, vec![("Location".into(), "/new".into())], vec![])
            } else {
                ok(b"moved here")
            }
        });
        let f = Fixture::new();
        f.run(&format!(
            "- {{source: '{}', destination: /f}}",
            server.url("/old")
        ))
        .unwrap();
        assert_eq!(f.read("/f"), b"moved here");
        assert_eq!(server.hits(), 2);
    }

    fn host_port(server: &Server) -> String {
        server
            .url("")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    }

    #[test]
    fn a_build_cannot_reach_loopback_even_through_a_redirect() {
        let inner = Server::start(|_, _| ok(b"the host's secret"));
        let to_inner = inner.url("/secret");
        let outer =
            Server::start(move |_, _| (302, vec![("Location".into(), to_inner.clone())], vec![]));
        let mut f = Fixture::new();
        f.config.network = NetworkAccess::Public { allowed: vec![] };
        let why = err(f.run(&format!(
            "- {{source: '{}', destination: /f}}",
            inner.url("/secret")
        )));
        assert!(
            why.contains("127.0.0.1") && why.contains("may not reach the host"),
            "{why}"
        );
        assert_eq!(
            inner.hits(),
            0,
            "refused before connecting, and not retried"
        );

        // The first hop is listed (as the S3 endpoint would be), the redirect's target is not.
        f.config.network = NetworkAccess::Public {
            allowed: vec![host_port(&outer)],
        };
        let why = err(f.run(&format!(
            "- {{source: '{}', destination: /f}}",
            outer.url("/x")
        )));
        assert!(why.contains("may not reach the host"), "{why}");
        assert_eq!(outer.hits(), 1, "not retried");
        assert_eq!(inner.hits(), 0);
        assert!(!f.path("/f").exists());

        f.config.network = NetworkAccess::Public {
            allowed: vec![host_port(&outer), host_port(&inner)],
        };
        f.run(&format!(
            "- {{source: '{}', destination: /f}}",
            outer.url("/x")
        ))
        .unwrap();
        assert_eq!(f.read("/f"), b"the host's secret");
    }

    #[test]
    fn a_build_without_network_cannot_download() {
        let server = Server::start(|_, _| ok(b"x"));
        let mut f = Fixture::new();
        f.config.network = NetworkAccess::Off {
            reason: "the build instance has no network".into(),
        };
        let why = err(f.run(&format!(
            "- {{source: '{}', destination: /f}}",
            server.url("/x")
        )));
        assert!(why.contains("has no network"), "{why}");
        assert_eq!(server.hits(), 0);
    }

    #[test]
    fn a_missing_file_fails_after_five_attempts() {
        let server = Server::start(|_, _| (404, vec![], b"nope".to_vec()));
        let f = Fixture::new();
        let url = server.url("/missing.txt");
        let m = err(f.run(&format!("- {{source: '{url}', destination: /f}}")));
        assert!(
            m.contains("404") && m.contains(&url) && m.contains("5 attempts"),
            "{m}"
        );
        assert_eq!(server.hits(), 5);
        assert!(!f.path("/f").exists());
        assert!(!f.path("/.f.kiln-part").exists());
    }

    #[test]
    fn a_server_error_is_retried() {
        let server = Server::start(|_, n| {
            if n == 1 {
                (500, vec![], b"busy".to_vec())
            } else {
                ok(b"second time")
            }
        });
        let f = Fixture::new();
        f.run(&format!(
            "- {{source: '{}', destination: /f}}",
            server.url("/f")
        ))
        .unwrap();
        assert_eq!(f.read("/f"), b"second time");
        assert_eq!(server.hits(), 2);
    }

    const ABC: [(&str, &str); 4] = [
        ("MD5", "900150983cd24fb0d6963f7d28e17f72"),
        ("SHA1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (
            "SHA256",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            "SHA512",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
    ];

    #[test]
    fn checksums_are_checked() {
        let server = Server::start(|_, _| ok(b"abc"));
        let url = server.url("/abc");
        for (algorithm, sum) in ABC {
            let f = Fixture::new();
            f.run(&format!(
                "- {{source: '{url}', destination: /ok, algorithm: {algorithm}, checksum: '{}'}}",
                sum.to_uppercase()
            ))
            .unwrap();
            assert_eq!(f.read("/ok"), b"abc");
            let bad = format!("{}0", &sum[..sum.len() - 1]);
            let m = err(f.run(&format!(
                "- {{source: '{url}', destination: /bad, algorithm: {algorithm}, checksum: {bad}}}"
            )));
            assert!(m.contains("checksum") && m.contains(&bad), "{m}");
            assert!(!f.path("/bad").exists(), "{algorithm}");
            assert!(!f.path("/.bad.kiln-part").exists(), "{algorithm}");
        }
    }

    #[test]
    fn overwrite_false_refuses_an_existing_file() {
        let server = Server::start(|_, _| ok(b"new"));
        let f = Fixture::new();
        std::fs::write(f.path("/f"), b"old").unwrap();
        let url = server.url("/f");
        let m = err(f.run(&format!(
            "- {{source: '{url}', destination: /f, overwrite: false}}"
        )));
        assert!(m.contains("already exists"), "{m}");
        assert_eq!(f.read("/f"), b"old");
        assert_eq!(server.hits(), 0);
        f.run(&format!("- {{source: '{url}', destination: /f}}"))
            .unwrap();
        assert_eq!(f.read("/f"), b"new");
    }

    #[test]
    fn an_existing_file_with_the_right_hash_is_kept() {
        let server = Server::start(|_, _| ok(b"abc"));
        let f = Fixture::new();
        std::fs::write(f.path("/f"), b"abc").unwrap();
        let url = server.url("/f");
        let (algorithm, sum) = ABC[2];
        let out = f
            .run(&format!(
                "- {{source: '{url}', destination: /f, algorithm: {algorithm}, checksum: {sum}}}"
            ))
            .unwrap();
        assert_eq!(out["destination"], "/f");
        assert_eq!(server.hits(), 0);
        // A file with another hash is downloaded again.
        std::fs::write(f.path("/f"), b"stale").unwrap();
        f.run(&format!(
            "- {{source: '{url}', destination: /f, algorithm: {algorithm}, checksum: {sum}}}"
        ))
        .unwrap();
        assert_eq!(server.hits(), 1);
        assert_eq!(f.read("/f"), b"abc");
    }

    #[test]
    fn paths_stay_inside_the_target_root() {
        let server = Server::start(|_, _| ok(b"confined"));
        let f = Fixture::new();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), f.path("/escape")).unwrap();
        let url = server.url("/f");
        f.run(&format!(
            "- {{source: '{url}', destination: ../../../../tmp/x/f}}\n\
             - {{source: '{url}', destination: /escape/g}}"
        ))
        .unwrap();
        assert_eq!(f.read("/tmp/x/f"), b"confined");
        // The absolute link is read again inside the root.
        let inside = outside.path().strip_prefix("/").unwrap().join("g");
        assert_eq!(
            std::fs::read(f.root.path().join(inside)).unwrap(),
            b"confined"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_slow_server_runs_into_the_deadline() {
        let server = Server::start(|_, _| {
            std::thread::sleep(Duration::from_secs(3));
            ok(b"late")
        });
        let f = Fixture::new();
        let start = std::time::Instant::now();
        let deadline = start + Duration::from_millis(300);
        let r = f.run_until(
            &format!("- {{source: '{}', destination: /f}}", server.url("/f")),
            Some(deadline),
        );
        assert_eq!(r, Err(ActionFailure::TimedOut));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(!f.path("/f").exists());
        assert!(!f.path("/.f.kiln-part").exists());
    }

    #[test]
    fn validation_checks_shape_and_leaves_variables() {
        let cases: &[(&str, &str)] = &[
            (
                "{source: http://h/f, destination: /f}",
                "inputs must be a list",
            ),
            ("- {destination: /f}", "inputs[0]: missing field `source`"),
            (
                "- {source: ftp://h/f, destination: /f}",
                "inputs[0]: source must be an http",
            ),
            (
                "- {source: http://h/f, destination: /f, checksum: ab}",
                "inputs[0]: checksum needs an algorithm",
            ),
            (
                "- {source: http://h/f, destination: /f, algorithm: MD5}",
                "algorithm needs a checksum",
            ),
            (
                "- {source: http://h/f, destination: /f, algorithm: CRC, checksum: ab}",
                "algorithm must be one of",
            ),
            (
                "- {source: http://h/f, destination: /f, overwrite: maybe}",
                "overwrite must be true or false",
            ),
            (
                "- {source: http://h/f, destination: /f, bogus: 1}",
                "unknown field `bogus`",
            ),
        ];
        for (src, want) in cases {
            let v: Value = crate::yaml::from_str(src).unwrap();
            let m = crate::actions::validate(ActionKind::WebDownload, &v).unwrap_err();
            assert!(m.contains(want), "{src}: {m}");
        }
        let v: Value = crate::yaml::from_str(
            "- {source: '{{ Url }}', destination: '{{ D }}', overwrite: '{{ O }}', \
             algorithm: '{{ A }}', checksum: '{{ C }}', ignoreCertificateErrors: true}",
        )
        .unwrap();
        crate::actions::validate(ActionKind::WebDownload, &v).unwrap();
    }

    #[test]
    fn a_url_without_a_file_name_needs_a_file_destination() {
        let f = Fixture::new();
        let m = err(f.run("- {source: 'http://127.0.0.1:9/', destination: /dl/}"));
        assert!(m.contains("cannot take a file name"), "{m}");
        assert_eq!(url_file_name("https://h/a/b.txt?x=/y#z").unwrap(), "b.txt");
    }
}
