//! The shared image registry (`kiln serve --registry HOST:PORT[/PREFIX]`): where the workers of
//! several machines push every image they build and pull the images they lack, and how `skopeo`
//! is told to reach it (TLS, a CA bundle, an auth file).
//!
//! Plain HTTP is allowed only for a registry whose host is written as a loopback address
//! (`127.0.0.1`, `localhost`, `[::1]`): anything that travels between machines is verified TLS.

use crate::fetch::{check_registry, check_repository};
use crate::{Error, Result};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How the registry is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryTls {
    /// Plain HTTP (loopback registries only).
    PlainHttp,
    /// HTTPS with the certificate verified against the system's CAs and `ca`, a PEM bundle.
    Verified { ca: Option<PathBuf> },
}

/// The parsed `--registry`, `--registry-ca` and `--registry-auth-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRegistry {
    /// `host[:port]`, as skopeo names it.
    pub host_port: String,
    /// Repository path in front of Kiln's own (`team/kiln`), if any.
    pub prefix: Option<String>,
    pub tls: RegistryTls,
    /// A containers auth.json (`skopeo --authfile`).
    pub auth: Option<PathBuf>,
}

/// How one skopeo call reaches a registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryAccess<'a> {
    /// Plain HTTP or unverified TLS allowed.
    pub insecure: bool,
    /// A PEM CA bundle trusted besides the system's.
    pub ca: Option<&'a Path>,
    /// A containers auth.json.
    pub auth: Option<&'a Path>,
}

/// The command-line flags a registry, its CA bundle and its auth file come from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryFlags {
    pub registry: &'static str,
    pub ca: &'static str,
    pub auth: &'static str,
}

impl RegistryFlags {
    /// The shared registry of the machines of one database.
    pub const SHARED: RegistryFlags = RegistryFlags {
        registry: "--registry",
        ca: "--registry-ca",
        auth: "--registry-auth-file",
    };
    /// The registries container images are distributed to.
    pub const ECR: RegistryFlags = RegistryFlags {
        registry: "--ecr-registry",
        ca: "--ecr-registry-ca",
        auth: "--ecr-auth-file",
    };
}

impl SharedRegistry {
    /// Parses `[https://|http://]HOST[:PORT][/PREFIX]` with the CA bundle and auth file that go
    /// with it. Without a scheme a loopback host is plain HTTP and any other TLS.
    pub fn parse(value: &str, ca: Option<&Path>, auth: Option<&Path>) -> Result<SharedRegistry> {
        SharedRegistry::parse_flags(value, ca, auth, RegistryFlags::SHARED)
    }

    /// [`SharedRegistry::parse`], with errors that name `flags`.
    pub fn parse_flags(
        value: &str,
        ca: Option<&Path>,
        auth: Option<&Path>,
        flags: RegistryFlags,
    ) -> Result<SharedRegistry> {
        let bad = |why: String| Error::Invalid(format!("{} `{value}`: {why}", flags.registry));
        let (scheme, rest) = match value.split_once("://") {
            Some((s @ ("http" | "https"), rest)) => (Some(s), rest),
            Some((s, _)) => {
                return Err(bad(format!(
                    "unknown scheme `{s}://`; give https:// or none"
                )))
            }
            None => (None, value),
        };
        let rest = rest.trim_end_matches('/');
        let (host_port, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        check_registry(host_port).map_err(|_| {
            bad(
                "give HOST[:PORT][/PREFIX], e.g. 127.0.0.1:5000 or registry.example.com/kiln"
                    .into(),
            )
        })?;
        if let Some(p) = prefix {
            check_repository(p).map_err(|_| {
                bad(format!(
                    "the prefix `{p}` must be /-separated lower-case letters, digits, . _ and -"
                ))
            })?;
        }
        let loopback = is_loopback_host(host_port);
        let tls = match (scheme, loopback) {
            (Some("http"), false) => {
                return Err(bad(
                    "plain HTTP is allowed only for a loopback registry (127.0.0.1, localhost, [::1]); use TLS (https:// or no scheme)".into(),
                ))
            }
            (Some("http"), true) | (None, true) => RegistryTls::PlainHttp,
            _ => RegistryTls::Verified {
                ca: ca.map(Path::to_path_buf),
            },
        };
        if let Some(ca) = ca {
            if tls == RegistryTls::PlainHttp {
                return Err(bad(format!(
                    "{} {} is for a TLS registry; a loopback registry without a scheme is plain HTTP: write https://{rest}",
                    flags.ca,
                    ca.display()
                )));
            }
            let text = std::fs::read_to_string(ca)
                .map_err(|e| Error::Invalid(format!("{} {}: {e}", flags.ca, ca.display())))?;
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                return Err(Error::Invalid(format!(
                    "{} {}: no PEM certificate in it",
                    flags.ca,
                    ca.display()
                )));
            }
        }
        if let Some(auth) = auth {
            std::fs::metadata(auth)
                .map_err(|e| Error::Invalid(format!("{} {}: {e}", flags.auth, auth.display())))?;
        }
        Ok(SharedRegistry {
            host_port: host_port.to_string(),
            prefix: prefix.map(str::to_string),
            tls,
            auth: auth.map(Path::to_path_buf),
        })
    }

    /// The skopeo options of this registry.
    pub fn access(&self) -> RegistryAccess<'_> {
        let (insecure, ca) = match &self.tls {
            RegistryTls::PlainHttp => (true, None),
            RegistryTls::Verified { ca } => (false, ca.as_deref()),
        };
        RegistryAccess {
            insecure,
            ca,
            auth: self.auth.as_deref(),
        }
    }

    /// `repository` under the prefix.
    pub fn repository(&self, repository: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}/{repository}"),
            None => repository.to_string(),
        }
    }

    /// `host:port/[prefix/]repository:tag`.
    pub fn reference(&self, repository: &str, tag: &str) -> String {
        format!("{}/{}:{tag}", self.host_port, self.repository(repository))
    }

    /// `host:port/[prefix/]repository@digest`.
    pub fn digest_reference(&self, repository: &str, digest: &str) -> String {
        format!(
            "{}/{}@{digest}",
            self.host_port,
            self.repository(repository)
        )
    }
}

/// A host written as a loopback address or `localhost` (names are not resolved: a name that
/// resolves to a loopback address still needs TLS).
fn is_loopback_host(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(h, _)| h),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<SharedRegistry> {
        SharedRegistry::parse(value, None, None)
    }

    #[test]
    fn loopback_is_plain_http_and_anything_else_tls() {
        let r = parse("127.0.0.1:5000").unwrap();
        assert_eq!(r.host_port, "127.0.0.1:5000");
        assert_eq!(r.tls, RegistryTls::PlainHttp);
        assert_eq!(r.prefix, None);
        assert!(r.access().insecure);
        let r = parse("registry.example.com/team/kiln/").unwrap();
        assert_eq!(r.tls, RegistryTls::Verified { ca: None });
        assert_eq!(r.prefix.as_deref(), Some("team/kiln"));
        assert_eq!(
            r.reference("kiln/1/us-east-1/app", "1.0.0-1-ab"),
            "registry.example.com/team/kiln/kiln/1/us-east-1/app:1.0.0-1-ab"
        );
        assert!(!r.access().insecure);
        assert_eq!(parse("[::1]:5000").unwrap().tls, RegistryTls::PlainHttp);
        assert_eq!(parse("localhost:5000").unwrap().tls, RegistryTls::PlainHttp);
        assert_eq!(
            parse("https://127.0.0.1:5000").unwrap().tls,
            RegistryTls::Verified { ca: None }
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for bad in [
            "",
            "http://registry.example.com",
            "http://10.0.0.1:5000",
            "ftp://127.0.0.1",
            "-x:5000",
            "127.0.0.1:5000/Team",
            "127.0.0.1:5000/a//b",
            "a b:5000",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("--registry `"), "{bad}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let err = SharedRegistry::parse("registry.example.com", Some(&ca), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--registry-ca") && err.contains("no PEM"),
            "{err}"
        );
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let err = SharedRegistry::parse("127.0.0.1:5000", Some(&ca), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://127.0.0.1:5000"), "{err}");
        let missing = dir.path().join("auth.json");
        let err = SharedRegistry::parse("127.0.0.1:5000", None, Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--registry-auth-file"), "{err}");
        let err =
            SharedRegistry::parse_flags("http://10.0.0.1:5000", None, None, RegistryFlags::ECR)
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("--ecr-registry `"), "{err}");
        let err =
            SharedRegistry::parse_flags("127.0.0.1:5000", None, Some(&missing), RegistryFlags::ECR)
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("--ecr-auth-file "), "{err}");
    }
}
