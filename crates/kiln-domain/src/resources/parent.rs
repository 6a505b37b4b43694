//! Where a build's parent image comes from.
//!
//! A recipe's `parentImage` is stored as written ([`super::recipe::ParentImage`] only tells
//! Image Builder ARNs apart, which is all the control plane needs). A build has to fetch the
//! image, so [`ParentSource::parse`] reads the forms Kiln can build from:
//!
//! - an Image Builder image ARN (`arn:aws:imagebuilder:<region>:<owner>:image/<name>/<version>`,
//!   `x` filters allowed; owner `aws` names Kiln's managed base images);
//! - `ami-<hex>`: an image Kiln built (each AVAILABLE image gets one);
//! - `oci:<path>[:<tag>]`: an OCI image layout on this machine;
//! - `file://<path>` to a root filesystem archive (`.tar`, `.tar.gz`/`.tgz`, `.tar.zst`);
//! - a registry reference, `host[:port]/repository[:tag|@sha256:...]`; plain HTTP is allowed
//!   only for loopback registries (`127.0.0.1`, `localhost`, `[::1]`).
//!
//! Which of these a caller may name (its own account's images, paths under the operator's
//! import directories, registries on private addresses only when listed) is decided by
//! `kiln_core::parents::ParentRules`, which needs the file system and the operator's settings.
//!
//! Anything else (SSM parameters, Marketplace product ids, `docker.io` short names) is
//! [`ParentSource::Unsupported`], with the reason a build gives when it refuses it.

use crate::arn::{Arn, ResourceKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveCompression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentSource {
    ImageBuilderImage(Arn),
    Ami(String),
    OciLayout {
        path: String,
        tag: Option<String>,
    },
    RootfsArchive {
        path: String,
        compression: ArchiveCompression,
    },
    Registry {
        /// `host[:port]`.
        registry: String,
        repository: String,
        /// A tag, or a digest (`sha256:...`); `latest` when none is given.
        reference: String,
        /// Loopback registries are reached over plain HTTP.
        plain_http: bool,
    },
    Unsupported(String),
}

impl ParentSource {
    pub fn parse(parent: &str) -> ParentSource {
        let parent = parent.trim();
        if parent.starts_with("arn:") {
            return match Arn::parse(parent) {
                Ok(arn) if arn.kind == ResourceKind::Image => ParentSource::ImageBuilderImage(arn),
                Ok(arn) => ParentSource::Unsupported(format!(
                    "{parent} is an Image Builder {} ARN, not an image",
                    arn.kind.label()
                )),
                Err(_) => {
                    ParentSource::Unsupported(format!("{parent} is not an Image Builder image ARN"))
                }
            };
        }
        if let Some(id) = parent.strip_prefix("ami-") {
            if (8..=17).contains(&id.len()) && id.chars().all(|c| c.is_ascii_hexdigit()) {
                return ParentSource::Ami(parent.to_string());
            }
            return ParentSource::Unsupported(format!(
                "{parent} is not an AMI id (ami- and 8 to 17 hexadecimal digits)"
            ));
        }
        if let Some(rest) = parent.strip_prefix("oci:") {
            // `oci:/path:tag`: the tag follows the last colon after the last slash.
            let (path, tag) = match rest.rfind(':') {
                Some(i) if rest[i..].find('/').is_none() => {
                    (&rest[..i], Some(rest[i + 1..].to_string()))
                }
                _ => (rest, None),
            };
            if path.is_empty() || tag.as_deref() == Some("") {
                return ParentSource::Unsupported(format!(
                    "{parent}: an OCI layout is oci:<path>[:<tag>]"
                ));
            }
            return ParentSource::OciLayout {
                path: path.to_string(),
                tag,
            };
        }
        if let Some(path) = parent.strip_prefix("file://") {
            let compression = if path.ends_with(".tar") {
                ArchiveCompression::None
            } else if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
                ArchiveCompression::Gzip
            } else if path.ends_with(".tar.zst") || path.ends_with(".tar.zstd") {
                ArchiveCompression::Zstd
            } else {
                return ParentSource::Unsupported(format!(
                    "{parent}: a root filesystem archive ends in .tar, .tar.gz, .tgz or .tar.zst"
                ));
            };
            if !path.starts_with('/') {
                return ParentSource::Unsupported(format!(
                    "{parent}: give an absolute path (file:///path/rootfs.tar)"
                ));
            }
            return ParentSource::RootfsArchive {
                path: path.to_string(),
                compression,
            };
        }
        parse_registry_reference(parent).unwrap_or_else(|| {
            ParentSource::Unsupported(format!(
                "Kiln cannot build from parent image `{parent}`: use an Image Builder image ARN, an ami- id of an image Kiln built, oci:<path>:<tag>, file:///<rootfs.tar>, or a registry reference host:port/repository:tag"
            ))
        })
    }
}

fn parse_registry_reference(s: &str) -> Option<ParentSource> {
    let (registry, rest) = s.split_once('/')?;
    // A registry host has a dot, a port or is localhost (docker's rule); `library/x` is not one.
    let is_host = registry.contains('.') || registry.contains(':') || registry == "localhost";
    if !is_host || rest.is_empty() || !is_registry_host(registry) {
        return None;
    }
    let (repository, reference) = if let Some((repo, digest)) = rest.split_once('@') {
        (repo, digest.to_string())
    } else {
        match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], rest[i + 1..].to_string()),
            _ => (rest, "latest".to_string()),
        }
    };
    let repo_ok = !repository.is_empty()
        && repository.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        });
    if !repo_ok || reference.is_empty() {
        return None;
    }
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    let plain_http = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    Some(ParentSource::Registry {
        registry: registry.to_string(),
        repository: repository.to_string(),
        reference,
        plain_http,
    })
}

/// `name[:port]` with a DNS-ish name, or `[::1]:port`.
fn is_registry_host(registry: &str) -> bool {
    let (host, port) = match registry.strip_prefix("[::1]") {
        Some(rest) if rest.is_empty() || rest.starts_with(':') => ("[::1]", rest.strip_prefix(':')),
        _ => match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let host_ok = host == "[::1]"
        || (!host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_table() {
        let registry = |registry: &str, repository: &str, reference: &str, plain_http| {
            ParentSource::Registry {
                registry: registry.into(),
                repository: repository.into(),
                reference: reference.into(),
                plain_http,
            }
        };
        let cases: Vec<(&str, ParentSource)> = vec![
            ("ami-0123abcd", ParentSource::Ami("ami-0123abcd".into())),
            (
                "oci:/srv/layouts/base:1.0",
                ParentSource::OciLayout {
                    path: "/srv/layouts/base".into(),
                    tag: Some("1.0".into()),
                },
            ),
            (
                "oci:/srv/layouts/base",
                ParentSource::OciLayout {
                    path: "/srv/layouts/base".into(),
                    tag: None,
                },
            ),
            (
                "file:///tmp/rootfs.tar.zst",
                ParentSource::RootfsArchive {
                    path: "/tmp/rootfs.tar.zst".into(),
                    compression: ArchiveCompression::Zstd,
                },
            ),
            (
                "file:///tmp/rootfs.tgz",
                ParentSource::RootfsArchive {
                    path: "/tmp/rootfs.tgz".into(),
                    compression: ArchiveCompression::Gzip,
                },
            ),
            (
                "127.0.0.1:5000/base/app:1",
                registry("127.0.0.1:5000", "base/app", "1", true),
            ),
            ("[::1]:5000/app:2", registry("[::1]:5000", "app", "2", true)),
            (
                "localhost:5000/app",
                registry("localhost:5000", "app", "latest", true),
            ),
            (
                "registry.example.com/team/app@sha256:abcd",
                registry("registry.example.com", "team/app", "sha256:abcd", false),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ParentSource::parse(input), want, "{input}");
        }
    }

    #[test]
    fn image_arns_and_refusals() {
        let arn = "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x";
        assert!(matches!(
            ParentSource::parse(arn),
            ParentSource::ImageBuilderImage(a) if a.to_string() == arn
        ));
        let refused: &[(&str, &str)] = &[
            (
                "arn:aws:imagebuilder:us-east-1:123456789012:component/c/1.0.0",
                "not an image",
            ),
            ("ami-xyz", "not an AMI id"),
            ("oci:", "oci:<path>"),
            ("file:///tmp/rootfs.zip", ".tar, .tar.gz"),
            ("file://relative.tar", "absolute path"),
            ("ssm:/aws/service/ami", "cannot build from"),
            ("ubuntu:22.04", "cannot build from"),
            ("library/ubuntu", "cannot build from"),
            ("127.0.0.1:5000/Bad/Repo", "cannot build from"),
        ];
        for (input, want) in refused {
            match ParentSource::parse(input) {
                ParentSource::Unsupported(reason) => {
                    assert!(reason.contains(want), "{input}: {reason}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }
}
