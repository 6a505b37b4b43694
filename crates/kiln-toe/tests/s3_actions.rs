//! S3Upload and S3Download against a real S3-compatible server: moto's `moto_server`, started on
//! 127.0.0.1 from the path in `KILN_TEST_MOTO_SERVER` (CI installs it; see the crate's docs).

use kiln_toe::actions::net::s3::Client;
use kiln_toe::actions::{
    run, validate, ActionConfig, ActionContext, ActionFailure, ActionKind, Outputs, S3Config,
};
use kiln_toe::target::LocalTarget;
use kiln_toe::yaml::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "kiln-test";

/// A running `moto_server`, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let program = std::env::var("KILN_TEST_MOTO_SERVER").expect(
            "KILN_TEST_MOTO_SERVER must name the moto_server binary \
             (python3 -m venv /tmp/s3venv && /tmp/s3venv/bin/pip install 'moto[server]==5.2.5'; \
             KILN_TEST_MOTO_SERVER=/tmp/s3venv/bin/moto_server)",
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // After the first three requests (the IAM calls of `Moto::user`), moto checks every
        // request's signature against the IAM user's key.
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{program} did not listen on 127.0.0.1:{port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Creates an IAM user allowed everything and answers an S3 configuration with its key.
    fn user(&self) -> S3Config {
        let iam = |body: &str| -> String {
            ureq::post(&format!("{}/", self.endpoint))
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws4_request, \
                     SignedHeaders=host, Signature=0",
                )
                .header("content-type", "application/x-www-form-urlencoded")
                .send(format!("{body}&Version=2010-05-08"))
                .unwrap_or_else(|e| panic!("IAM {body}: {e}"))
                .body_mut()
                .read_to_string()
                .unwrap()
        };
        let field = |xml: &str, name: &str| -> String {
            let start = xml.find(&format!("<{name}>")).unwrap() + name.len() + 2;
            let end = xml[start..].find('<').unwrap() + start;
            xml[start..end].to_string()
        };
        iam("Action=CreateUser&UserName=kiln");
        let key = iam("Action=CreateAccessKey&UserName=kiln");
        iam(
            "Action=PutUserPolicy&UserName=kiln&PolicyName=all&PolicyDocument=\
             %7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A\
             %22Allow%22%2C%22Action%22%3A%22%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D",
        );
        S3Config {
            endpoint: self.endpoint.clone(),
            region: "us-east-1".into(),
            access_key_id: field(&key, "AccessKeyId"),
            secret_access_key: field(&key, "SecretAccessKey"),
            session_token: None,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Lines = kiln_toe::actions::RecordingConsole;

struct Fixture {
    root: tempfile::TempDir,
    target: LocalTarget,
    config: ActionConfig,
    console: Lines,
}

impl Fixture {
    fn new(s3: Option<S3Config>) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("scratch")).unwrap();
        Fixture {
            target: LocalTarget::chroot(root.path()),
            root,
            config: ActionConfig {
                s3,
                web_retry_base: Duration::from_millis(1),
                ..ActionConfig::default()
            },
            console: Lines::default(),
        }
    }

    fn run(&self, kind: ActionKind, yaml: &str) -> Result<Outputs, ActionFailure> {
        let inputs: Value = kiln_toe::yaml::from_str(yaml).unwrap();
        validate(kind, &inputs).map_err(ActionFailure::Failed)?;
        let scratch = self.root.path().join("scratch");
        let ctx = ActionContext {
            target: &self.target,
            config: &self.config,
            console: &self.console,
            deadline: Some(Instant::now() + Duration::from_secs(120)),
            scratch: &scratch,
            scratch_in_target: "/scratch",
        };
        run(kind, &ctx, &inputs)
    }

    fn ok(&self, kind: ActionKind, yaml: &str) {
        if let Err(e) = self.run(kind, yaml) {
            panic!("{yaml}: {e:?}");
        }
    }

    fn err(&self, kind: ActionKind, yaml: &str) -> String {
        match self.run(kind, yaml) {
            Err(ActionFailure::Failed(m)) => m,
            other => panic!("{yaml}: expected a failure, got {other:?}"),
        }
    }

    fn path(&self, doc: &str) -> PathBuf {
        self.root.path().join(doc.trim_start_matches('/'))
    }

    fn write(&self, doc: &str, content: &str) {
        let path = self.path(doc);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn read(&self, doc: &str) -> String {
        std::fs::read_to_string(self.path(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"))
    }
}

/// Every file under `dir`, as sorted relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn uploads_and_downloads_through_moto() {
    use ActionKind::{S3Download as Down, S3Upload as Up};
    let moto = Moto::start();
    let config = moto.user();
    Client::new(&config).create_bucket(BUCKET).unwrap();
    let f = Fixture::new(Some(config.clone()));
    f.write("/src/hello.txt", "hello");
    f.write("/logs/a.log", "log a");
    f.write("/logs/b.log", "log b");
    f.write("/logs/c.txt", "not a log");
    f.write("/tree/x.txt", "x");
    f.write("/tree/sub/y.txt", "y");
    f.write("/tree/sub/with space+plus&ü.txt", "odd name");

    // A single file to an exact key and under a prefix (with expectedBucketOwner sent).
    f.ok(
        Up,
        "- {source: /src/hello.txt, destination: 's3://kiln-test/single/greeting.txt'}\n\
         - {source: /src/hello.txt, destination: 's3://kiln-test/p/', expectedBucketOwner: '123456789012'}",
    );
    // A wildcard in the last component.
    f.ok(
        Up,
        "- {source: '/logs/*.log', destination: 's3://kiln-test/logs/'}",
    );
    // A folder needs recurse.
    let m = f.err(Up, "- {source: /tree, destination: 's3://kiln-test/tree/'}");
    assert!(m.contains("recurse"), "{m}");
    f.ok(
        Up,
        "- {source: /tree, destination: 's3://kiln-test/tree', recurse: true}",
    );
    let m = f.err(
        Up,
        "- {source: '/logs/*.none', destination: 's3://kiln-test/x/'}",
    );
    assert!(m.contains("matches no files"), "{m}");

    // A single key to a file, and into a folder (trailing `/`, or an existing folder).
    f.ok(
        Down,
        "- {source: 's3://kiln-test/single/greeting.txt', destination: /out/copy.txt}\n\
         - {source: 's3://kiln-test/p/hello.txt', destination: /out/new/}",
    );
    assert_eq!(f.read("/out/copy.txt"), "hello");
    assert_eq!(f.read("/out/new/hello.txt"), "hello");
    f.ok(
        Down,
        "- {source: 's3://kiln-test/p/hello.txt', destination: /out, expectedBucketOwner: '123456789012'}",
    );
    assert_eq!(f.read("/out/hello.txt"), "hello");

    // Only the matching logs were uploaded.
    f.ok(
        Down,
        "- {source: 's3://kiln-test/logs/*', destination: /got-logs}",
    );
    assert_eq!(files_under(&f.path("/got-logs")), ["a.log", "b.log"]);
    assert_eq!(f.read("/got-logs/b.log"), "log b");

    // A prefix, recursively, keeping paths (and odd characters in keys).
    f.ok(
        Down,
        "- {source: 's3://kiln-test/tree/*', destination: /restored/tree}",
    );
    assert_eq!(
        files_under(&f.path("/restored/tree")),
        ["sub/with space+plus&ü.txt", "sub/y.txt", "x.txt"]
    );
    assert_eq!(
        f.read("/restored/tree/sub/with space+plus&ü.txt"),
        "odd name"
    );
    // The whole bucket.
    f.ok(Down, "- {source: 's3://kiln-test/*', destination: /all/}");
    assert_eq!(files_under(&f.path("/all")).len(), 7);
    assert_eq!(f.read("/all/single/greeting.txt"), "hello");

    // overwrite: false.
    let m = f.err(
        Down,
        "- {source: 's3://kiln-test/p/hello.txt', destination: /out/copy.txt, overwrite: false}",
    );
    assert!(
        m.contains("already exists") && m.contains("/out/copy.txt"),
        "{m}"
    );
    let m = f.err(
        Down,
        "- {source: 's3://kiln-test/tree/*', destination: /restored/tree, overwrite: false}",
    );
    assert!(m.contains("already exists"), "{m}");
    // overwrite (default) replaces.
    f.write("/out/copy.txt", "stale");
    f.ok(
        Down,
        "- {source: 's3://kiln-test/single/greeting.txt', destination: /out/copy.txt}",
    );
    assert_eq!(f.read("/out/copy.txt"), "hello");

    // A missing key, an empty prefix, a missing bucket.
    let m = f.err(
        Down,
        "- {source: 's3://kiln-test/nope.txt', destination: /nope}",
    );
    assert!(
        m.contains("s3://kiln-test/nope.txt") && m.contains("404") && m.contains("NoSuchKey"),
        "{m}"
    );
    assert!(!f.path("/nope").exists());
    let m = f.err(
        Down,
        "- {source: 's3://kiln-test/empty/*', destination: /e}",
    );
    assert!(m.contains("no objects"), "{m}");
    let m = f.err(
        Up,
        "- {source: /src/hello.txt, destination: 's3://no-such-bucket/k'}",
    );
    assert!(m.contains("404") && m.contains("NoSuchBucket"), "{m}");

    // The server really checks signatures: a wrong secret or key is refused.
    let wrong = Fixture::new(Some(S3Config {
        secret_access_key: "wrong".into(),
        ..config.clone()
    }));
    wrong.write("/src/hello.txt", "hello");
    let m = wrong.err(
        Down,
        "- {source: 's3://kiln-test/p/hello.txt', destination: /x}",
    );
    assert!(
        m.contains("403") && m.contains("SignatureDoesNotMatch"),
        "{m}"
    );
    let m = wrong.err(
        Up,
        "- {source: /src/hello.txt, destination: 's3://kiln-test/w'}",
    );
    assert!(
        m.contains("403") && m.contains("SignatureDoesNotMatch"),
        "{m}"
    );

    let lines = f.console.texts();
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains("S3Upload: uploaded `/tree/sub/y.txt` to s3://kiln-test/tree/sub/y.txt")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("S3Download: downloaded s3://kiln-test/p/hello.txt")),
        "{lines:?}"
    );
}

#[test]
fn without_an_endpoint_both_modules_fail() {
    let f = Fixture::new(None);
    f.write("/a", "a");
    let m = f.err(
        ActionKind::S3Download,
        "- {source: 's3://b/k', destination: /d}",
    );
    assert_eq!(
        m,
        "S3Download: no S3 endpoint is configured; set one with --s3-endpoint (or KILN_S3_ENDPOINT)"
    );
    let m = f.err(
        ActionKind::S3Upload,
        "- {source: /a, destination: 's3://b/k'}",
    );
    assert!(
        m.starts_with("S3Upload: no S3 endpoint is configured"),
        "{m}"
    );
}
