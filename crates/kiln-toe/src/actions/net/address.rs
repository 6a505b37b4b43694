//! Which destinations a connection opened by Kiln for a caller may reach.
//!
//! Kiln runs as root on the host, next to its own API, the S3 endpoint it may be configured
//! with, a cloud metadata service and whatever else listens on loopback or the private networks.
//! A build must not reach those through Kiln (server-side request forgery): WebDownload, the S3
//! actions and parent images from registries connect from the Kiln process, not from the build
//! instance. [`is_internal`] says which addresses are "the host or its networks";
//! [`NetworkAccess`] is what a run may reach, checked on the addresses a name resolves to, for
//! every connection (so also after redirects), by [`GuardedResolver`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Loopback, unspecified (which connects to the host), private (RFC 1918), shared (RFC 6598,
/// carrier-grade NAT), link-local (169.254/16: cloud metadata services) and broadcast IPv4
/// addresses; loopback, unspecified, unique-local (fc00::/7), link-local and site-local IPv6
/// addresses, and IPv4 addresses mapped or translated into IPv6.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || v6.is_multicast()
        }
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_unspecified()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_broadcast()
        || v4.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

/// The IPv4 address inside `::ffff:a.b.c.d` (mapped), `::a.b.c.d` (compatible) and
/// `64:ff9b::a.b.c.d` (NAT64), which reach that IPv4 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, _, _] if !v6.is_loopback() && !v6.is_unspecified() => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

/// Names that always mean this machine, whatever DNS says (RFC 6761).
pub fn is_local_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// `host` without the brackets of an IPv6 literal, as an address if it is one.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// `host[:port]` split; the port defaults to `default_port`. `[::1]:5000` keeps its brackets.
pub fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((format!("[{inside}]"), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

/// What the network actions of one run may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkAccess {
    /// Anything: `kiln toe run` on the operator's own machine.
    #[default]
    Unrestricted,
    /// Nothing: a build whose instance has no network (no subnet in its infrastructure
    /// configuration) cannot download either.
    Off {
        /// Why, for the failure message.
        reason: String,
    },
    /// Public addresses, plus the `host:port` destinations listed here (the configured S3
    /// endpoint, registries the operator listed), compared as written.
    Public { allowed: Vec<String> },
}

impl NetworkAccess {
    /// Whether a connection to `host:port` may be opened, given the addresses `host` resolves
    /// to; the error says why not.
    pub fn check(&self, host: &str, port: u16, addrs: &[SocketAddr]) -> Result<(), String> {
        match self {
            NetworkAccess::Unrestricted => Ok(()),
            NetworkAccess::Off { reason } => {
                Err(format!("{host}:{port} cannot be reached: {reason}"))
            }
            NetworkAccess::Public { allowed } => {
                let wanted = format!("{host}:{port}").to_ascii_lowercase();
                if allowed.iter().any(|a| a.to_ascii_lowercase() == wanted) {
                    return Ok(());
                }
                if is_local_name(host) {
                    return Err(format!(
                        "{host}:{port} is this machine; builds may not reach the host"
                    ));
                }
                match addrs.iter().find(|a| is_internal(a.ip())) {
                    Some(a) => Err(format!(
                        "{host}:{port} resolves to {}, a loopback, private or link-local address; builds may not reach the host or its networks",
                        a.ip()
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

/// ureq's resolver, with every answer checked against a [`NetworkAccess`]. ureq asks it for
/// each connection, redirects included, and connects only to the addresses it returns, so a
/// name cannot pass the check with one address and connect to another.
#[derive(Debug)]
pub struct GuardedResolver {
    pub access: NetworkAccess,
}

impl ureq::unversioned::resolver::Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let default = ureq::unversioned::resolver::DefaultResolver::default();
        if let NetworkAccess::Off { .. } = self.access {
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().unwrap_or(0);
            let why = self.access.check(host, port, &[]).err().unwrap_or_default();
            return Err(refused(why));
        }
        let addrs = default.resolve(uri, config, timeout)?;
        let host = uri.host().unwrap_or_default();
        let port = uri
            .port_u16()
            .or_else(|| match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            })
            .unwrap_or(0);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let shown = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        self.access.check(&shown, port, &addrs).map_err(refused)?;
        Ok(addrs)
    }
}

/// The error a refused destination gives: `PermissionDenied`, which callers do not retry.
fn refused(message: String) -> ureq::Error {
    ureq::Error::Io(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        message,
    ))
}

/// The refusal inside an error from an agent built on [`GuardedResolver`], if it is one.
pub fn refusal(e: &ureq::Error) -> Option<String> {
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            Some(io.to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        let internal = [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ];
        for a in internal {
            assert!(is_internal(a.parse().unwrap()), "{a} is internal");
        }
        let public = [
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "151.101.2.132",
            "2a04:4e42::644",
            "::ffff:8.8.8.8",
        ];
        for a in public {
            assert!(!is_internal(a.parse().unwrap()), "{a} is public");
        }
    }

    #[test]
    fn names_and_ports() {
        assert!(is_local_name("localhost"));
        assert!(is_local_name("LOCALHOST."));
        assert!(is_local_name("registry.localhost"));
        assert!(!is_local_name("localhost.example.com"));
        assert_eq!(literal_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal_ip("10.0.0.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(literal_ip("example.com"), None);
        assert_eq!(
            split_host_port("[::1]:5000", 443),
            Some(("[::1]".into(), 5000))
        );
        assert_eq!(
            split_host_port("quay.io", 443),
            Some(("quay.io".into(), 443))
        );
        assert_eq!(split_host_port("h:x", 443), None);
    }

    #[test]
    fn access_checks_resolved_addresses() {
        let loopback: Vec<SocketAddr> = vec!["127.0.0.1:8080".parse().unwrap()];
        let public: Vec<SocketAddr> = vec!["93.184.215.14:443".parse().unwrap()];
        let mixed: Vec<SocketAddr> = vec![public[0], "10.0.0.1:443".parse().unwrap()];
        let open = NetworkAccess::Unrestricted;
        assert!(open.check("127.0.0.1", 8080, &loopback).is_ok());
        let public_only = NetworkAccess::Public {
            allowed: vec!["127.0.0.1:9000".into()],
        };
        assert!(public_only.check("example.com", 443, &public).is_ok());
        let err = public_only
            .check("sneaky.example", 8080, &loopback)
            .unwrap_err();
        assert!(err.contains("resolves to 127.0.0.1"), "{err}");
        assert!(public_only.check("both.example", 443, &mixed).is_err());
        assert!(public_only.check("localhost", 443, &public).is_err());
        assert!(public_only
            .check("127.0.0.1", 9000, &["127.0.0.1:9000".parse().unwrap()])
            .is_ok());
        let off = NetworkAccess::Off {
            reason: "no network".into(),
        };
        assert!(off.check("example.com", 443, &public).is_err());
    }
}
