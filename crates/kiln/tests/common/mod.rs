//! The harness shared by the integration tests: a real `kiln serve` process on a loopback port
//! with its own temporary data directory, SDK clients bound to it, and a minimal hand-written
//! HTTP/1.1 client for the protocol-level checks the SDK cannot express.
//!
//! Each test starts its own server, so tests are independent and run in parallel. The server is
//! asked for port 0 and announces the port it got on stdout; that line is also the signal that
//! it is ready. Its log (stderr) goes to a file next to the data directory, and is shown when
//! the server fails to start.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

pub mod registry;
pub mod worker;

use aws_sdk_imagebuilder::config::retry::RetryConfig;
use aws_sdk_imagebuilder::config::timeout::TimeoutConfig;
use aws_sdk_imagebuilder::config::{Credentials, Region};
use aws_sdk_imagebuilder::error::ProvideErrorMetadata;
use aws_sdk_imagebuilder::Client;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Access key of the default account.
pub const DEFAULT_KEY: &str = "AKIDDEFAULTACCOUNT";
pub const DEFAULT_ACCOUNT: &str = "123456789012";
/// The secret of every key the harness writes into the server's credentials file.
pub const SECRET: &str = "kiln-test-secret";
pub const REGION: &str = "us-east-1";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const READY_PREFIX: &str = "kiln listening on http://";

/// A running `kiln serve`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// Owns the temporary directory; removed on drop, after the child is gone.
    root: tempfile::TempDir,
    accounts: String,
    keep_credentials: bool,
    /// More `kiln serve` flags.
    extra_args: Vec<String>,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with_accounts("")
    }

    /// Starts a server whose credentials file has [`DEFAULT_KEY`] for [`DEFAULT_ACCOUNT`] and a
    /// key for each `KEY=ACCOUNT` of `accounts` (comma-separated), all with [`SECRET`].
    pub fn start_with_accounts(accounts: &str) -> Server {
        Server::start_with_args(accounts, &[])
    }

    /// Starts a server with the `--accounts` map `accounts` and more flags.
    pub fn start_with_args(accounts: &str, extra_args: &[&str]) -> Server {
        let root = tempfile::tempdir().expect("creating a temporary directory");
        let mut server = Server {
            child: None,
            root,
            accounts: accounts.to_string(),
            keep_credentials: false,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        server.spawn();
        server
    }

    /// Starts a server (with its own data directory) on a shared PostgreSQL database.
    pub fn start_on_database(url: &str) -> Server {
        Server::start_with_args("", &["--database", url])
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.root.path().join("credentials")
    }

    /// The credentials file: one profile per key.
    fn write_credentials(&self) {
        let mut text = String::new();
        let pairs = std::iter::once(format!("{DEFAULT_KEY}={DEFAULT_ACCOUNT}")).chain(
            self.accounts
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(str::to_string),
        );
        for (i, pair) in pairs.enumerate() {
            let (key, account) = pair.split_once('=').expect("KEY=ACCOUNT");
            text.push_str(&format!(
                "[key-{i}]\naws_access_key_id = {key}\naws_secret_access_key = {SECRET}\naws_account_id = {account}\n\n"
            ));
        }
        std::fs::write(self.credentials_path(), text).expect("writing the credentials file");
    }

    fn spawn(&mut self) {
        if !self.keep_credentials {
            self.write_credentials();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the server log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--credentials")
            .arg(self.credentials_path())
            .args(&self.extra_args)
            // The environment must not change what the flags say.
            .env_remove("KILN_LISTEN")
            .env_remove("KILN_DATA_DIR")
            .env_remove("KILN_ACCOUNTS")
            .env_remove("KILN_CREDENTIALS")
            .env_remove("KILN_REGIONS")
            .env_remove("KILN_DEFAULT_ACCOUNT")
            .env_remove("KILN_DEFAULT_REGION")
            .env_remove("KILN_SYNC")
            .env_remove("KILN_DATABASE")
            .env_remove("KILN_RATE_LIMIT")
            .env_remove("KILN_RATE_BURST")
            .env_remove("KILN_QUOTAS")
            .env_remove("KILN_REGISTRY")
            .env_remove("KILN_ECR_REGISTRY")
            .env_remove("KILN_ECR_REGISTRY_CA")
            .env_remove("KILN_ECR_AUTH_FILE")
            .env_remove("KILN_BUILD_CONCURRENCY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawning kiln serve");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        match wait_for_port(stdout) {
            Some(port) => self.addr = SocketAddr::from(([127, 0, 0, 1], port)),
            None => {
                self.kill();
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                panic!(
                    "kiln serve did not announce its port within {READY_TIMEOUT:?}; log:\n{log}"
                );
            }
        }
    }

    /// `kill -9`: the process gets no chance to flush or finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a new one on the same data directory (on a new port).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server and starts it again on the same data directory with other flags.
    pub fn restart_with_args(&mut self, extra_args: &[&str]) {
        self.kill();
        self.extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        self.spawn();
    }

    /// [`Server::restart`] without rewriting the credentials file (a test changed it).
    pub fn restart_keeping_credentials(&mut self) {
        self.kill();
        self.keep_credentials = true;
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for the default account in us-east-1.
    pub fn client(&self) -> Client {
        self.client_as(DEFAULT_KEY, REGION)
    }

    /// A client signing with `access_key` in `region`: the server takes the account from the
    /// key and the region from the SigV4 credential scope.
    pub fn client_as(&self, access_key: &str, region: &str) -> Client {
        self.client_with(access_key, SECRET, None, region, RetryConfig::disabled())
    }

    /// Like [`Server::client_as`], with the SDK's retries configured by `retry`.
    pub fn client_with_retries(
        &self,
        access_key: &str,
        region: &str,
        retry: RetryConfig,
    ) -> Client {
        self.client_with(access_key, SECRET, None, region, retry)
    }

    /// A client signing with any key, secret and session token, with retries as `retry` says.
    pub fn client_with(
        &self,
        access_key: &str,
        secret: &str,
        session_token: Option<&str>,
        region: &str,
        retry: RetryConfig,
    ) -> Client {
        let http = aws_smithy_http_client::Builder::new().build_http();
        let config = aws_sdk_imagebuilder::Config::builder()
            .behavior_version_latest()
            .http_client(http)
            .endpoint_url(self.url())
            .region(Region::new(region.to_string()))
            .credentials_provider(Credentials::new(
                access_key,
                secret,
                session_token.map(str::to_string),
                None,
                "kiln-tests",
            ))
            .retry_config(retry)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .build();
        Client::from_conf(config)
    }

    /// Sends one raw HTTP/1.1 request and reads the whole response.
    pub fn raw(&self, method: &str, path: &str, body: &[u8]) -> RawResponse {
        raw_request(self.addr, method, path, &[], body)
    }

    /// One EC2 Query call (`Action=...&...`, form-encoded) as the default key, signed for `ec2`.
    pub fn ec2(&self, form: &str) -> RawResponse {
        const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
        let signature = sign_for(
            &kiln_auth::sigv4::Settings::ec2(),
            FORM,
            self.addr,
            "POST",
            "/",
            form.as_bytes(),
            DEFAULT_KEY,
            SECRET,
            chrono::Utc::now(),
        );
        let mut headers: Vec<(&str, &str)> = signature
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        headers.push(("content-type", FORM));
        raw_request_unsigned(self.addr, "POST", "/", &headers, form.as_bytes())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a process's stdout until a line starting with `prefix` and answers the rest of that
/// line, on a thread so that a process that never prints it cannot hang the test. The thread
/// keeps draining stdout afterwards so that the process never blocks on a full pipe.
pub fn wait_for_line(
    stdout: std::process::ChildStdout,
    prefix: &'static str,
    timeout: Duration,
) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut announced = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !announced {
                if let Some(rest) = line.trim().strip_prefix(prefix) {
                    let _ = tx.send(rest.to_string());
                    announced = true;
                }
            }
        }
    });
    rx.recv_timeout(timeout).ok()
}

fn wait_for_port(stdout: std::process::ChildStdout) -> Option<u16> {
    wait_for_line(stdout, READY_PREFIX, READY_TIMEOUT)
        .and_then(|rest| rest.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()))
}

/// The AWS error code of an SDK error (`ResourceNotFoundException`, ...), or a description of
/// an error that has none (a connection failure).
pub fn error_code<E, R>(result: &Result<R, aws_sdk_imagebuilder::error::SdkError<E>>) -> String
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match result {
        Ok(r) => format!("no error: {r:?}"),
        Err(e) => match e.code() {
            Some(code) => code.to_string(),
            None => format!("{e:?}"),
        },
    }
}

/// The error message of an SDK error ("" when there is none).
pub fn error_message<E, R>(result: &Result<R, aws_sdk_imagebuilder::error::SdkError<E>>) -> String
where
    E: ProvideErrorMetadata,
{
    match result {
        Ok(_) => String::new(),
        Err(e) => e.message().unwrap_or_default().to_string(),
    }
}

/// A new infrastructure configuration with only the required members; returns its ARN.
pub async fn create_infra(client: &Client, name: &str) -> String {
    client
        .create_infrastructure_configuration()
        .name(name)
        .instance_profile_name("kiln-test-profile")
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating infrastructure configuration {name}: {e:?}"))
        .infrastructure_configuration_arn
        .expect("the create response carries the ARN")
}

/// Every infrastructure configuration ARN the client sees, following nextToken to the end.
pub async fn list_all_infra(client: &Client) -> Vec<String> {
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_infrastructure_configurations()
            .max_results(100)
            .set_next_token(token.take())
            .send()
            .await
            .unwrap_or_else(|e| panic!("listing infrastructure configurations: {e:?}"));
        arns.extend(
            page.infrastructure_configuration_summary_list()
                .iter()
                .filter_map(|s| s.arn().map(str::to_string)),
        );
        match page.next_token {
            Some(next) => token = Some(next),
            None => return arns,
        }
    }
}

/// A response read off the wire by [`raw_request`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// [`raw_request_unsigned`], signed with [`DEFAULT_KEY`] in us-east-1 (over `host`,
/// `content-type` and the body) as an SDK would sign it.
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let signature = sign(
        addr,
        method,
        path,
        body,
        DEFAULT_KEY,
        SECRET,
        chrono::Utc::now(),
    );
    let mut headers: Vec<(&str, &str)> = signature
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers.extend_from_slice(extra_headers);
    raw_request_unsigned(addr, method, path, &headers, body)
}

/// The SigV4 headers (`x-amz-date`, `authorization`) for a raw request with `key` and `secret`,
/// signed at `when`.
pub fn sign(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    key: &str,
    secret: &str,
    when: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, String)> {
    sign_for(
        &kiln_auth::sigv4::Settings::imagebuilder(),
        "application/json",
        addr,
        method,
        path,
        body,
        key,
        secret,
        when,
    )
}

/// [`sign`] for a service (`settings`) and content type of its own.
#[allow(clippy::too_many_arguments)]
pub fn sign_for(
    settings: &kiln_auth::sigv4::Settings,
    content_type: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    key: &str,
    secret: &str,
    when: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, String)> {
    let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
    let headers = vec![
        ("host".to_string(), addr.to_string()),
        ("content-type".to_string(), content_type.to_string()),
    ];
    let request = kiln_auth::sigv4::Request {
        method,
        raw_path,
        raw_query,
        headers: &headers,
        authority: None,
        body,
        body_follows: false,
    };
    kiln_auth::sigv4::sign_request(
        &request,
        &kiln_auth::sigv4::Credentials {
            access_key_id: key.to_string(),
            secret_access_key: secret.to_string(),
            session_token: None,
        },
        REGION,
        when,
        settings,
    )
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), written by hand so that
/// tests can send what no SDK would: wrong methods, broken JSON, oversized bodies, no or bad
/// signatures. The body is written from a second thread because the server may answer (and stop
/// reading) before it has all of it; a failed write is then expected and ignored, the response
/// is what counts.
pub fn raw_request_unsigned(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let stream = TcpStream::connect(addr).expect("connecting to kiln");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("setting the read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("setting the write timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    // JSON unless the caller says otherwise.
    if !extra_headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("Content-Type: application/json\r\n");
    }
    let chunked = extra_headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if !chunked {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = stream.try_clone().expect("cloning the stream");
    let payload = if chunked { chunk(body) } else { body.to_vec() };
    let sender = std::thread::spawn(move || {
        let _ = writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(&payload))
            .and_then(|_| writer.flush());
    });
    let response = read_response(stream);
    let _ = sender.join();
    response
}

/// Chunked transfer encoding in 64 KiB chunks: the server sees no Content-Length and must
/// enforce its size limit while streaming.
fn chunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1024);
    for piece in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn read_response(stream: TcpStream) -> RawResponse {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .expect("reading the status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("malformed status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("reading a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).expect("reading the body");
        }
        None => {
            let _ = reader.read_to_end(&mut body);
        }
    }
    RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// CreateImage of `recipe` on `infra`, tests off; answers the image's ARN.
pub async fn create_image(client: &Client, recipe: &str, infra: &str) -> String {
    client
        .create_image()
        .image_recipe_arn(recipe)
        .infrastructure_configuration_arn(infra)
        .image_tests_configuration(
            aws_sdk_imagebuilder::types::ImageTestsConfiguration::builder()
                .image_tests_enabled(false)
                .build(),
        )
        .send()
        .await
        .expect("CreateImage")
        .image_build_version_arn
        .expect("an image ARN")
}

/// The managed busybox base image.
pub const BUSYBOX: &str = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x";

/// A recipe on `parent` with one component, named `{name}-component`, whose build phase runs
/// `script` (one command a line).
pub async fn bash_recipe(client: &Client, name: &str, parent: &str, script: &[&str]) -> String {
    let mut data = String::from(
        "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Run\n        action: ExecuteBash\n        inputs:\n          commands:\n",
    );
    for line in script {
        data.push_str(&format!("            - {}\n", serde_json::json!(line)));
    }
    let component = client
        .create_component()
        .name(format!("{name}-component"))
        .semantic_version("1.0.0")
        .platform(aws_sdk_imagebuilder::types::Platform::Linux)
        .data(data)
        .send()
        .await
        .expect("CreateComponent")
        .component_build_version_arn
        .expect("a component ARN");
    client
        .create_image_recipe()
        .name(name)
        .semantic_version("1.0.0")
        .parent_image(parent)
        .components(
            aws_sdk_imagebuilder::types::ComponentConfiguration::builder()
                .component_arn(component)
                .build()
                .expect("a component configuration"),
        )
        .send()
        .await
        .expect("CreateImageRecipe")
        .image_recipe_arn
        .expect("a recipe ARN")
}

/// The image once its build ended (5 minutes at most).
pub async fn wait_final(client: &Client, arn: &str) -> aws_sdk_imagebuilder::types::Image {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let image = client
            .get_image()
            .image_build_version_arn(arn)
            .send()
            .await
            .expect("GetImage")
            .image
            .expect("an image");
        let status = image
            .state()
            .and_then(|s| s.status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        if !matches!(
            status.as_str(),
            "PENDING" | "CREATING" | "BUILDING" | "TESTING" | "DISTRIBUTING" | "INTEGRATING"
        ) {
            return image;
        }
        assert!(Instant::now() < deadline, "{arn} still {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn status_and_reason(image: &aws_sdk_imagebuilder::types::Image) -> (String, String) {
    let state = image.state().expect("a state");
    (
        state
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        state.reason().unwrap_or_default().to_string(),
    )
}
