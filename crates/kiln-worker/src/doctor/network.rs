//! The checks of what the operator configured elsewhere: the database, the shared registry,
//! the Debian mirror and the S3 endpoint. Each contacts only the address it was given.

use super::{Check, Config, Status};
use kiln_image::{RegistryTls, SharedRegistry};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// The database: PostgreSQL is logged in to and asked `SELECT 1` (the store is not opened, so
/// nothing is migrated); SQLite needs a data directory it can write.
pub(super) fn database(config: &Config) -> Check {
    let Some(url) = &config.database else {
        return sqlite(&config.data_dir);
    };
    let shown = kiln_store::postgres::redact(url);
    let answered = (|| -> Result<(), String> {
        let mut pg: postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        pg.connect_timeout(config.timeout);
        let mut client = pg.connect(postgres::NoTls).map_err(|e| error_chain(&e))?;
        client
            .simple_query("SELECT 1")
            .map_err(|e| error_chain(&e))?;
        Ok(())
    })();
    match answered {
        Ok(()) => Check::ok("database", format!("PostgreSQL {shown} answers")),
        Err(e) => Check::gap(
            "database",
            Status::Failed,
            format!("PostgreSQL {shown} does not answer: {e}"),
            "start the database or correct --database (user, password, host, port, name)",
        )
        .affecting(&["the API", "builds"])
        .blocking(),
    }
}

/// An error and its sources, on one line (the postgres crate's top level says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn sqlite(data_dir: &Path) -> Check {
    let dir = super::system::nearest_existing(data_dir);
    if writable(dir) {
        Check::ok(
            "database",
            format!("SQLite in {}", data_dir.join("kiln.db").display()),
        )
    } else {
        Check::gap(
            "database",
            Status::Failed,
            format!("{} is not writable for kiln (SQLite)", dir.display()),
            "give kiln's user the data directory, or choose another --data-dir",
        )
        .affecting(&["the API", "builds"])
        .blocking()
    }
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated path; access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The shared registry: every build pushes there, so builds need it.
pub(super) fn registry(registry: &SharedRegistry, timeout: Duration) -> Check {
    let default_port = match registry.tls {
        RegistryTls::PlainHttp => 80,
        _ => 443,
    };
    let Some((host, port)) = split_host_port(&registry.host_port, default_port) else {
        return Check::gap(
            "registry",
            Status::Failed,
            format!("cannot tell the host of --registry {}", registry.host_port),
            "correct --registry",
        )
        .blocking();
    };
    match reach(&host, port, timeout) {
        Ok(()) => Check::ok(
            "registry",
            format!("{} accepts connections", registry.host_port),
        ),
        Err(e) => Check::gap(
            "registry",
            Status::Failed,
            format!("{} is unreachable: {e}", registry.host_port),
            "start the registry or correct --registry; every build pushes its image there",
        )
        .affecting(&["builds", "the shared registry (--registry)"])
        .blocking(),
    }
}

/// The Debian mirror the managed Debian base is made from; not contacted when it is the
/// default (the operator configured no address).
pub(super) fn debian_mirror(mirror: Option<&str>, timeout: Duration) -> Check {
    let Some(mirror) = mirror else {
        return Check::ok(
            "debian-mirror",
            format!(
                "the default {} (not contacted: name one with --debian-mirror to have it checked)",
                kiln_image::DEFAULT_DEBIAN_MIRROR
            ),
        );
    };
    endpoint(
        "debian-mirror",
        mirror,
        timeout,
        &["managed Debian base (debian-12-minimal-x86)"],
        "check the network to it, or choose a reachable mirror with --debian-mirror",
    )
}

/// The S3 endpoint of documents, disk imports and exports.
pub(super) fn s3_endpoint(url: &str, timeout: Duration) -> Check {
    endpoint(
        "s3-endpoint",
        url,
        timeout,
        &[
            "S3 documents (uri: s3://)",
            "disk imports from s3://",
            "disk exports to S3",
        ],
        "start the S3 service or correct --s3-endpoint",
    )
}

/// An HTTP(S) URL whose host must accept a TCP connection; not a blocker of builds.
fn endpoint(
    name: &str,
    url: &str,
    timeout: Duration,
    features: &[&'static str],
    remedy: &str,
) -> Check {
    let Some((host, port)) = url_host_port(url) else {
        return Check::gap(
            name,
            Status::Failed,
            format!("{url} is not an http:// or https:// URL"),
            remedy,
        )
        .affecting(features);
    };
    match reach(&host, port, timeout) {
        Ok(()) => Check::ok(name, format!("{url} accepts connections")),
        Err(e) => Check::gap(
            name,
            Status::Failed,
            format!("{url} is unreachable: {e}"),
            remedy,
        )
        .affecting(features),
    }
}

/// The host and port of `http(s)://[user@]host[:port][/path]`.
pub(super) fn url_host_port(url: &str) -> Option<(String, u16)> {
    let (default_port, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (80, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (443, rest)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    split_host_port(authority, default_port)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
pub(super) fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority.to_string(), default_port)),
    }
}

/// A TCP connection to `host:port` within `timeout` (per address).
fn reach(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let addresses: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} has no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{address}: {e}"),
        }
    }
    Err(last)
}
