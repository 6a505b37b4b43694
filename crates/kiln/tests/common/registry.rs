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
