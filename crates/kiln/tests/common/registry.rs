//! A `docker-registry` on 127.0.0.1 for the tests of images pushed to and pulled from
//! registries (the shared registry, and the registries container images are distributed to).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why this machine cannot run these tests, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        return Some("builds need root".into());
    }
    for program in ["docker-registry", "skopeo"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{program} is not installed"));
        }
    }
    None
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// TLS (certificate, key) and htpasswd file of a registry, when it is to have them.
#[derive(Default)]
pub struct RegistryOptions {
    pub tls: Option<(PathBuf, PathBuf)>,
    pub htpasswd: Option<PathBuf>,
    /// Keep the registry's request log (see [`Registry::requests`]).
    pub request_log: bool,
}

/// A `docker-registry` on 127.0.0.1 (deletes enabled), killed when dropped.
pub struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Registry {
    pub fn start(options: &RegistryOptions) -> Registry {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let level = if options.request_log { "info" } else { "error" };
        let mut config = format!(
            "version: 0.1\nlog: {{level: {level}}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n",
            dir.path().join("storage").display()
        );
        match &options.tls {
            Some((cert, key)) => config.push_str(&format!(
                "http: {{addr: 127.0.0.1:{port}, tls: {{certificate: {}, key: {}}}}}\n",
                cert.display(),
                key.display()
            )),
            None => config.push_str(&format!("http: {{addr: 127.0.0.1:{port}}}\n")),
        }
        if let Some(htpasswd) = &options.htpasswd {
            config.push_str(&format!(
                "auth: {{htpasswd: {{realm: kiln-tests, path: {}}}}}\n",
                htpasswd.display()
            ));
        }
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).expect("writing the registry's configuration");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(match options.request_log {
                true => std::fs::File::create(dir.path().join("registry.log"))
                    .expect("creating the registry's log")
                    .into(),
                false => Stdio::null(),
            })
            .spawn()
            .expect("starting docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            _dir: dir,
            port,
        }
    }

    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The requests the registry answered so far, `METHOD URI` (with `request_log`).
    pub fn requests(&self) -> Vec<String> {
        let log =
            std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("response completed"))
            .filter_map(|l| {
                let field = |name: &str| {
                    let start = l.find(&format!("{name}="))? + name.len() + 1;
                    let rest = &l[start..];
                    let value = match rest.strip_prefix('"') {
                        Some(quoted) => quoted.split('"').next()?,
                        None => rest.split_whitespace().next()?,
                    };
                    Some(value.to_string())
                };
                Some(format!(
                    "{} {}",
                    field("http.request.method")?,
                    field("http.request.uri")?
                ))
            })
            .collect()
    }

    /// A GET on the plain-HTTP registry API.
    pub fn get(&self, path: &str) -> super::RawResponse {
        super::raw_request_unsigned(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            "GET",
            path,
            &[],
            b"",
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a setup command of the test; panics with its error output if it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("running a setup command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A self-signed certificate for 127.0.0.1 (an IP SAN), an htpasswd file with a bcrypt entry
/// (perl's crypt, libxcrypt's `$2b$`) and the containers auth.json that signs in with it; and
/// one that signs in with the wrong password.
pub struct TlsAuth {
    dir: tempfile::TempDir,
}

impl TlsAuth {
    pub fn make() -> TlsAuth {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let p = |name: &str| dir.path().join(name);
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(p("key.pem"))
            .arg("-out")
            .arg(p("cert.pem")));
        let hash = run(Command::new("perl").args([
            "-e",
            r#"print crypt($ARGV[0], '$2b$05$' . $ARGV[1])"#,
            "kiln-secret",
            "kilnregistrytestsalt00",
        ]));
        let hash = String::from_utf8(hash).expect("a bcrypt hash");
        assert!(
            hash.starts_with("$2b$05$"),
            "perl's crypt made no bcrypt hash: {hash}"
        );
        std::fs::write(p("htpasswd"), format!("kiln:{hash}\n")).expect("writing htpasswd");
        TlsAuth { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A containers auth.json for `host_port` with `password`.
    pub fn auth_file(&self, name: &str, host_port: &str, password: &str) -> PathBuf {
        let auth = base64(format!("kiln:{password}").as_bytes());
        let path = self.path(name);
        std::fs::write(
            &path,
            serde_json::json!({"auths": {host_port: {"auth": auth}}}).to_string(),
        )
        .expect("writing an auth file");
        path
    }
}

/// Standard base64 with padding (the auth.json `auth` field).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
