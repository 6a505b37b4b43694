//! One small object of an S3-compatible endpoint, read whole into memory: the API server's
//! component and workflow documents given as `uri: s3://bucket/key`.
//!
//! It shares the S3 actions' client (path-style URLs, SigV4 for service `s3`, S3's error codes)
//! but not their policy: the server reads on a caller's behalf while the caller waits, so there
//! is one attempt with a time budget, no proxy and no redirect (only the configured endpoint is
//! ever contacted), a size cap checked on `Content-Length` before the body is read and again
//! while reading it, and the bytes are checked against the checksum S3 sends with them:
//!
//! - `x-amz-checksum-sha256` (asked for with `x-amz-checksum-mode: ENABLED`), unless it is a
//!   multipart upload's composite checksum (`...-N`);
//! - otherwise a single-part `ETag` (32 hex digits), which is the MD5 of the bytes unless the
//!   object is encrypted with SSE-KMS or SSE-C (then it is not, and it is not checked).

use super::s3::{error_code, Client};
use crate::actions::S3Config;
use std::io::Read;
use std::time::Duration;

/// How long connecting may take, within the whole request's budget.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLimits {
    /// Bigger objects are refused.
    pub max_bytes: u64,
    /// The whole request: connecting, the answer and the body.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GetObjectError {
    /// The URL is not `s3://bucket/key`.
    #[error("{0}")]
    BadUri(String),
    /// S3 answered with an error status.
    #[error("S3 answered HTTP {status}{}", describe_code(code, message))]
    Refused {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    #[error("the object is {} bytes; at most {limit} bytes are allowed", size.map_or_else(|| format!("more than {limit}"), |s| s.to_string()))]
    TooLarge { size: Option<u64>, limit: u64 },
    /// The bytes do not match the checksum S3 sent with them.
    #[error(
        "the object's bytes do not match its {header} ({expected}; the bytes read have {actual})"
    )]
    Mismatch {
        header: &'static str,
        expected: String,
        actual: String,
    },
    /// Connecting, sending or reading failed, or the time budget ran out.
    #[error("{0}")]
    Unreachable(String),
}

fn describe_code(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(", {c}: {m}"),
        (Some(c), None) => format!(", {c}"),
        _ => String::new(),
    }
}

/// `(bucket, key)` of `s3://bucket/key`; the key must name an object (not empty, not a folder).
pub fn parse_object_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| format!("`{uri}` is not an S3 URL; use s3://bucket/key"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("`{uri}` names no bucket; use s3://bucket/key"));
    }
    if key.is_empty() || key.ends_with('/') {
        return Err(format!("`{uri}` names no object key; use s3://bucket/key"));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// GETs the object at `uri` (`s3://bucket/key`) from `config`'s endpoint, signed with
/// `config`'s key, and answers its bytes after the size and checksum checks.
pub fn get_object(
    config: &S3Config,
    uri: &str,
    limits: &ObjectLimits,
) -> Result<Vec<u8>, GetObjectError> {
    let (bucket, key) = parse_object_uri(uri).map_err(GetObjectError::BadUri)?;
    let client = Client::new(config);
    let url = client.url(&bucket, &key, &[]);
    let headers = vec![("x-amz-checksum-mode".to_string(), "ENABLED".to_string())];
    let signed = client
        .sign("GET", &url, &headers)
        .map_err(GetObjectError::Unreachable)?;
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(limits.timeout))
        .timeout_connect(Some(CONNECT_TIMEOUT.min(limits.timeout)))
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(None)
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let mut builder = ureq::http::Request::builder().method("GET").uri(&url);
    for (k, v) in headers.iter().chain(&signed) {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder
        .body(())
        .map_err(|e| GetObjectError::Unreachable(format!("GET {url}: {e}")))?;
    let mut response = agent
        .run(request)
        .map_err(|e| GetObjectError::Unreachable(format!("GET {url}: {e}")))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let (code, message) = error_code(&mut response);
        return Err(GetObjectError::Refused {
            status,
            code,
            message,
        });
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let length = header("content-length").and_then(|l| l.trim().parse::<u64>().ok());
    if let Some(size) = length.filter(|&l| l > limits.max_bytes) {
        return Err(GetObjectError::TooLarge {
            size: Some(size),
            limit: limits.max_bytes,
        });
    }
    let expected = Expected::from_headers(&header);
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(limits.max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| GetObjectError::Unreachable(format!("reading GET {url}: {e}")))?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(GetObjectError::TooLarge {
            size: None,
            limit: limits.max_bytes,
        });
    }
    expected.check(&bytes)?;
    Ok(bytes)
}

/// The checksum an answer promises for its bytes.
pub(super) enum Expected {
    Sha256Base64(String),
    Md5Hex(String),
    Nothing,
}

impl Expected {
    pub(super) fn from_headers(header: &dyn Fn(&str) -> Option<String>) -> Expected {
        if let Some(sum) = header("x-amz-checksum-sha256") {
            let composite = sum.contains('-')
                || header("x-amz-checksum-type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("COMPOSITE"));
            if !composite {
                return Expected::Sha256Base64(sum.trim().to_string());
            }
        }
        let encrypted_by_key = header("x-amz-server-side-encryption")
            .is_some_and(|e| e.starts_with("aws:kms"))
            || header("x-amz-server-side-encryption-customer-algorithm").is_some();
        match header("etag") {
            Some(etag) if !encrypted_by_key => {
                let tag = etag.trim().trim_matches('"');
                if tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Expected::Md5Hex(tag.to_ascii_lowercase())
                } else {
                    Expected::Nothing
                }
            }
            _ => Expected::Nothing,
        }
    }

    /// The digest to compute while the bytes stream past, if there is anything to check.
    pub(super) fn algorithm(&self) -> Option<super::Algorithm> {
        match self {
            Expected::Sha256Base64(_) => Some(super::Algorithm::Sha256),
            Expected::Md5Hex(_) => Some(super::Algorithm::Md5),
            Expected::Nothing => None,
        }
    }

    /// Compares the lowercase hex digest of [`Expected::algorithm`] with the promise.
    pub(super) fn check_hex(&self, hex: &str) -> Result<(), GetObjectError> {
        use base64::Engine as _;
        let (header, expected, actual) = match self {
            Expected::Nothing => return Ok(()),
            Expected::Sha256Base64(expected) => {
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect();
                (
                    "x-amz-checksum-sha256",
                    expected,
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                )
            }
            Expected::Md5Hex(expected) => (
                "ETag (the MD5 of a single-part upload)",
                expected,
                hex.to_string(),
            ),
        };
        if *expected == actual {
            return Ok(());
        }
        Err(GetObjectError::Mismatch {
            header,
            expected: expected.clone(),
            actual,
        })
    }

    fn check(&self, bytes: &[u8]) -> Result<(), GetObjectError> {
        let Some(algorithm) = self.algorithm() else {
            return Ok(());
        };
        let mut hasher = algorithm.hasher();
        hasher.update(bytes);
        self.check_hex(&hasher.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_uris_parse() {
        assert_eq!(
            parse_object_uri("s3://b/dir/doc.yaml").unwrap(),
            ("b".to_string(), "dir/doc.yaml".to_string())
        );
        for bad in [
            "http://b/k",
            "s3://",
            "s3:///k",
            "s3://b",
            "s3://b/",
            "s3://b/dir/",
        ] {
            assert!(parse_object_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksums_are_checked() {
        const ABC_SHA: &str = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
        const ABC_MD5: &str = "\"900150983cd24fb0d6963f7d28e17f72\"";
        const ZERO_MD5: &str = "\"00000000000000000000000000000000\"";
        fn check(pairs: &[(&str, &str)]) -> Result<(), GetObjectError> {
            let header = |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            };
            Expected::from_headers(&header).check(b"abc")
        }
        assert!(check(&[("x-amz-checksum-sha256", ABC_SHA)]).is_ok());
        assert!(check(&[("etag", ABC_MD5)]).is_ok());
        assert!(check(&[("etag", "\"0123-2\"")]).is_ok());
        assert!(check(&[("x-amz-checksum-sha256", "AAAA-2"), ("etag", ABC_MD5)]).is_ok());
        let err = check(&[("x-amz-checksum-sha256", "AAAA")]).unwrap_err();
        assert!(err.to_string().contains("x-amz-checksum-sha256"), "{err}");
        assert!(check(&[("etag", ZERO_MD5)]).is_err());
        // SSE-KMS ETags are not MD5s.
        assert!(check(&[
            ("etag", ZERO_MD5),
            ("x-amz-server-side-encryption", "aws:kms")
        ])
        .is_ok());
    }

    #[test]
    fn unreachable_endpoints_fail_fast() {
        // A port that was just free: connecting is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let config = S3Config {
            endpoint: format!("http://127.0.0.1:{port}"),
            region: "us-east-1".into(),
            access_key_id: "a".into(),
            secret_access_key: "s".into(),
            session_token: None,
        };
        let limits = ObjectLimits {
            max_bytes: 10,
            timeout: Duration::from_secs(5),
        };
        let err = get_object(&config, "s3://b/k", &limits).unwrap_err();
        assert!(matches!(err, GetObjectError::Unreachable(_)), "{err:?}");
        assert!(matches!(
            get_object(&config, "s3://b", &limits),
            Err(GetObjectError::BadUri(_))
        ));
    }
}
