//! The subcommands that talk to a running server (`kiln logs`, `kiln image export`,
//! `kiln instance shell`): flags, exit codes and error paths. A tiny fake of the server's
//! `/kiln/v1/` endpoints on 127.0.0.1 stands in for the build worker; one test uses a real
//! `kiln serve`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// What the fake answers: status, headers, body.
type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// A fake server on 127.0.0.1 answering every request with `answer(path_and_query)`; it
/// records the request targets it saw.
struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn start(answer: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let answer = answer.clone();
                let recorded = recorded.clone();
                std::thread::spawn(move || serve_one(stream, &*answer, &recorded));
            }
        });
        Fake { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_one(stream: TcpStream, answer: &dyn Fn(&str) -> Reply, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
    }
    seen.lock().unwrap().push(target.clone());
    let (status, headers, body) = answer(&target);
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = &stream;
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&body);
    let _ = out.flush();
}

fn kiln(args: &[&str], endpoint: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_ENDPOINT", endpoint)
        // The CLI signs its requests with the aws CLI's credentials (the fake server here does
        // not check them).
        .env("AWS_ACCESS_KEY_ID", "AKIDCLITESTS00000")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env("RUST_LOG", "warn")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("running kiln")
}

/// `kiln image export ARN --format FORMAT -o OUT` against `endpoint`.
fn export(endpoint: &str, format: &str, out: &std::path::Path) -> Output {
    let out = out.to_str().expect("a UTF-8 path");
    kiln(
        &["image", "export", ARN, "--format", format, "-o", out],
        endpoint,
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

const ARN: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1";

fn query_value(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// A log served in 4-byte chunks; the status turns final after `polls_until_final` requests.
fn log_server(log: &'static str, final_status: &'static str, polls_until_final: usize) -> Fake {
    let count = Arc::new(Mutex::new(0usize));
    Fake::start(move |target| {
        if !target.starts_with("/kiln/v1/logs?") {
            return (404, vec![], br#"{"message":"no such endpoint"}"#.to_vec());
        }
        let mut n = count.lock().unwrap();
        *n += 1;
        let offset: usize = query_value(target, "offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        // The log grows as the build runs: half of it is there at first.
        let visible = if *n >= polls_until_final {
            log.len()
        } else {
            log.len() / 2
        };
        let status = if *n >= polls_until_final {
            final_status
        } else {
            "BUILDING"
        };
        let end = visible.min(offset + 4);
        let chunk = log.as_bytes()[offset.min(end)..end].to_vec();
        (
            200,
            vec![
                ("content-type".into(), "text/plain".into()),
                ("x-kiln-image-status".into(), status.into()),
                ("x-kiln-log-size".into(), visible.to_string()),
            ],
            chunk,
        )
    })
}

#[test]
fn logs_without_a_server_says_where_it_looked() {
    let endpoint = closed_endpoint();
    let out = kiln(&["logs", ARN], &endpoint);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach Kiln at {endpoint}")),
        "{err}"
    );
    // --endpoint wins over KILN_ENDPOINT.
    let other = closed_endpoint();
    let out = kiln(&["logs", "--endpoint", &other, ARN], &endpoint);
    assert!(text(&out.stderr).contains(&format!("cannot reach Kiln at {other}")));
}

#[test]
fn logs_of_an_unknown_image_prints_the_servers_message() {
    let fake = Fake::start(|_| {
        (
            404,
            vec![("content-type".into(), "application/json".into())],
            br#"{"message":"The image 'x' does not exist."}"#.to_vec(),
        )
    });
    let out = kiln(&["logs", ARN], &fake.url);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr).trim(),
        "kiln logs: The image 'x' does not exist."
    );
    let seen = fake.seen();
    assert_eq!(
        seen,
        vec!["/kiln/v1/logs?imageBuildVersionArn=arn%3Aaws%3Aimagebuilder%3Aus-east-1%3A123456789012%3Aimage%2Fweb%2F1.0.0%2F1&offset=0"]
    );
}

#[test]
fn logs_of_a_real_server_answers_an_error_for_an_unknown_image() {
    let server = common::Server::start();
    let out = kiln(&["logs", ARN], &server.url());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.starts_with("kiln logs: "), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
}

#[test]
fn logs_prints_everything_there_is_and_exits_0_without_follow() {
    let fake = log_server("line one\nline two\n", "FAILED", 1000);
    let out = kiln(&["logs", ARN], &fake.url);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "line one\n");
}

#[test]
fn logs_follow_prints_until_the_build_ends_available() {
    let fake = log_server("line one\nline two\nthe end\n", "AVAILABLE", 8);
    let out = kiln(&["logs", "--follow", ARN], &fake.url);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "line one\nline two\nthe end\n");
}

#[test]
fn logs_follow_exits_1_when_the_build_failed() {
    let fake = log_server("step failed\n", "FAILED", 5);
    let out = kiln(&["logs", "-f", ARN], &fake.url);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(text(&out.stdout), "step failed\n");
    assert!(text(&out.stderr).contains("FAILED"));
}

/// A log another machine's worker is still writing to the database: the build has ended
/// (AVAILABLE from the first answer), but its last lines arrive, and the log is complete, only
/// after a few polls.
#[test]
fn logs_follow_reads_a_finished_build_until_its_log_is_complete() {
    const LOG: &str = "line one\nAVAILABLE\n";
    let count = Arc::new(Mutex::new(0usize));
    let fake = Fake::start(move |target| {
        let mut n = count.lock().unwrap();
        *n += 1;
        let offset: usize = query_value(target, "offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        let complete = *n >= 4;
        let visible = if complete { LOG.len() } else { 9 };
        (
            200,
            vec![
                ("x-kiln-image-status".into(), "AVAILABLE".into()),
                ("x-kiln-log-size".into(), visible.to_string()),
                ("x-kiln-log-complete".into(), complete.to_string()),
            ],
            LOG.as_bytes()[offset.min(visible)..visible].to_vec(),
        )
    });
    let out = kiln(&["logs", "--follow", ARN], &fake.url);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), LOG);
}

#[test]
fn bad_flags_exit_2() {
    let endpoint = closed_endpoint();
    for args in [
        vec!["logs"],
        vec!["image", "export", ARN, "--format", "iso", "-o", "x"],
        vec!["image", "export", ARN, "--format", "raw"],
        vec!["instance", "shell"],
    ] {
        let out = kiln(&args, &endpoint);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    let out = kiln(&["logs", "--endpoint", "localhost:7070", ARN], &endpoint);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("http://"));
}

#[test]
fn export_streams_a_disk_image_to_the_output_file() {
    let image: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let served = image.clone();
    let fake = Fake::start(move |_| {
        (
            200,
            vec![("content-type".into(), "application/octet-stream".into())],
            served.clone(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    let out = export(&fake.url, "qcow2", &path);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(std::fs::read(&path).unwrap() == image);
    assert!(!dir.path().join("disk.qcow2.partial").exists());
    assert!(text(&out.stdout).contains("3000000 bytes"));
    assert!(fake.seen()[0].ends_with("&format=qcow2"));
}

#[test]
fn export_oci_unpacks_the_layout_into_a_directory() {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("oci-layout", &br#"{"imageLayoutVersion":"1.0.0"}"#[..]),
        ("index.json", &br#"{"schemaVersion":2,"manifests":[]}"#[..]),
        ("blobs/sha256/abc", &b"blob"[..]),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    }
    let tarball = builder.into_inner().unwrap();
    let fake = Fake::start(move |_| {
        (
            200,
            vec![
                ("content-type".into(), "application/x-tar".into()),
                ("x-kiln-oci-tag".into(), "1.0.0-1".into()),
            ],
            tarball.clone(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let out = export(&fake.url, "oci", &layout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(layout.join("oci-layout").is_file());
    assert_eq!(
        std::fs::read(layout.join("blobs/sha256/abc")).unwrap(),
        b"blob"
    );
    assert!(text(&out.stdout).contains(&format!("oci:{}:1.0.0-1", layout.display())));

    // A second export into the now full directory is refused before anything is asked.
    let before = fake.seen().len();
    let out = export(&fake.url, "oci", &layout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not an empty directory"));
    assert_eq!(fake.seen().len(), before);
}

#[test]
fn a_failed_export_leaves_no_file() {
    let fake = Fake::start(|_| {
        (
            409,
            vec![],
            br#"{"message":"the image is BUILDING; only AVAILABLE images can be exported"}"#
                .to_vec(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    let out = export(&fake.url, "raw", &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("only AVAILABLE images"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn instance_shell_of_an_unknown_instance_prints_the_message() {
    let fake = Fake::start(|_| {
        (
            404,
            vec![],
            br#"{"message":"there is no instance 'b-1-build'"}"#.to_vec(),
        )
    });
    let out = kiln(&["instance", "shell", "b-1-build", "--", "true"], &fake.url);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "kiln instance: there is no instance 'b-1-build'"
    );
    assert_eq!(fake.seen(), vec!["/kiln/v1/instances/b-1-build"]);
}

#[test]
fn instance_shell_needs_a_real_instance() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap().to_string();
    let fake = Fake::start(move |_| {
        let body = serde_json::json!({
            "id": "b-1-build",
            "directory": format!("{base}/b-1-build"),
            "instancesDirectory": base,
            "imageBuildVersionArn": null,
        });
        (200, vec![], body.to_string().into_bytes())
    });
    let out = kiln(&["instance", "shell", "b-1-build"], &fake.url);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    // The directory does not exist: attach refuses it (or, on a machine that can isolate
    // nothing, the preflight says why).
    assert!(
        err.contains("does not exist") || err.contains("cannot"),
        "{err}"
    );
}
