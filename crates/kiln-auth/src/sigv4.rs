//! AWS Signature Version 4, checked as AWS checks it.
//!
//! A request is signed in one of two places: the `Authorization` header
//! (`AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/imagebuilder/aws4_request,
//! SignedHeaders=host;x-amz-date, Signature=...`) with the time in `X-Amz-Date`, or the query of a
//! presigned URL (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
//! `X-Amz-SignedHeaders`, `X-Amz-Signature`). [`extract`] finds and parses either;
//! [`verify`] rebuilds the canonical request from the request as it arrived and compares the
//! signature computed with the caller's secret against the one sent, in constant time.
//!
//! The canonical request follows the specification: the URI path normalized (dot segments
//! removed, repeated slashes merged) and percent-encoded, twice for every service but S3
//! ([`PathEncoding::Double`]: the SDKs encode the already-encoded path again); the query pairs
//! decoded, re-encoded and sorted; the signed headers in lower case with their values trimmed
//! and inner whitespace collapsed; the payload hash from `x-amz-content-sha256` when present
//! (`UNSIGNED-PAYLOAD`, or a hash that must match the body), otherwise computed from the body.
//!
//! Messages never contain the signature Kiln expected: they say what was wrong, not how to
//! forge it.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// How far a request's time may be from the server's, either way.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;
/// The longest a presigned URL may be valid (seven days, as AWS allows).
pub const MAX_PRESIGNED_EXPIRES: i64 = 7 * 24 * 3600;
const AMZ_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Why a request's signature was not accepted. Each kind carries the AWS error code a client
/// sees ([`SigV4Error::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No signature at all.
    #[error("Missing Authentication Token")]
    Missing,
    /// A signature that does not parse, or a credential scope that is malformed.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not one of Kiln's.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The session token is missing, wrong, or given for a key that has none.
    #[error("The security token included in the request is invalid.")]
    InvalidToken,
    /// The session token's credentials have expired.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// The signature does not match, or the request's time is outside the allowed window.
    #[error("{0}")]
    Invalid(String),
}

/// "The request signature we calculated does not match ...": the message AWS gives, which does
/// not reveal the expected signature or the canonical request.
pub const MISMATCH_MESSAGE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

impl SigV4Error {
    /// The AWS error code (`X-Amzn-ErrorType`).
    pub fn code(&self) -> &'static str {
        match self {
            SigV4Error::Missing => "MissingAuthenticationTokenException",
            SigV4Error::Incomplete(_) => "IncompleteSignatureException",
            SigV4Error::UnknownKey | SigV4Error::InvalidToken => "UnrecognizedClientException",
            SigV4Error::ExpiredToken => "ExpiredTokenException",
            SigV4Error::Invalid(_) => "InvalidSignatureException",
        }
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> u16 {
        match self {
            SigV4Error::Incomplete(_) => 400,
            _ => 403,
        }
    }
}

fn incomplete(message: impl Into<String>) -> SigV4Error {
    SigV4Error::Incomplete(message.into())
}

/// How the URI path enters the canonical request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEncoding {
    /// The path as sent (already percent-encoded) is encoded again: what every AWS SDK does for
    /// every service but S3, so Kiln verifies with this.
    Double,
    /// The path is decoded, then encoded once (S3, and the signing test suite's vectors).
    Single,
}

/// What a verifier expects of every request.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The service name the credential scope must carry (`imagebuilder`, `ec2`).
    pub service: String,
    pub path_encoding: PathEncoding,
    /// Remove dot segments and merge repeated slashes before encoding (every service but S3).
    pub normalize_path: bool,
}

impl Settings {
    /// What Kiln's API expects: service `imagebuilder`, the SDKs' double encoding, normalized
    /// paths.
    pub fn imagebuilder() -> Settings {
        Settings::for_service("imagebuilder")
    }

    /// What Kiln's EC2 Query endpoint expects: service `ec2`, otherwise as [`Settings::imagebuilder`]
    /// (the aws CLI and the SDKs sign EC2 calls the same way).
    pub fn ec2() -> Settings {
        Settings::for_service("ec2")
    }

    /// What Kiln's IAM endpoint expects (the cross-account distribution role): service `iam`.
    pub fn iam() -> Settings {
        Settings::for_service("iam")
    }

    fn for_service(service: &str) -> Settings {
        Settings {
            service: service.to_string(),
            path_encoding: PathEncoding::Double,
            normalize_path: true,
        }
    }
}

/// A request as it arrived, before anything was decoded.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent, percent-encoding intact.
    pub raw_path: &'a str,
    /// The query string as sent (without `?`); empty when there is none.
    pub raw_query: &'a str,
    /// Every header in arrival order; names in any case.
    pub headers: &'a [(String, String)],
    /// The authority of an HTTP/2 request (`:authority`), which stands in for a missing `host`.
    pub authority: Option<&'a str>,
    pub body: &'a [u8],
    /// The body is not in `body`: it is streamed after the signature is checked, and whoever
    /// reads it checks it against `x-amz-content-sha256`, which must then be a SHA-256 (not
    /// `UNSIGNED-PAYLOAD`). Only for uploads too large to hold before checking.
    pub body_follows: bool,
}

impl Request<'_> {
    /// Every value of header `name` (case-insensitive), in order.
    fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The credential scope: `<access key id>/<yyyymmdd>/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    /// The scope without the access key id, as it appears in the string to sign.
    pub fn string(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Where the signature was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Header,
    /// A presigned URL, valid for this many seconds from its date.
    Query {
        expires_seconds: i64,
    },
}

/// A parsed signature: who claims to sign, what, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub scope: Scope,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Lower-case hex.
    pub signature: String,
    /// `X-Amz-Date` (`20150830T123600Z`).
    pub amz_date: String,
    pub location: Location,
    /// `X-Amz-Security-Token`, for temporary credentials.
    pub security_token: Option<String>,
}

/// Parses a credential scope. Each part is checked for its form here; whether the region and
/// service are the right ones is [`verify`]'s and the caller's business.
pub fn parse_scope(credential: &str) -> Result<Scope, SigV4Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 {
        return Err(incomplete(format!(
            "Credential should have 5 slash-separated parts (<access key id>/<yyyymmdd>/<region>/<service>/aws4_request), not {}",
            parts.len()
        )));
    }
    let (key, date, region, service, terminator) =
        (parts[0], parts[1], parts[2], parts[3], parts[4]);
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(incomplete(
            "Credential should begin with an access key id of letters and digits",
        ));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid date (yyyymmdd), not '{}'",
            printable(date)
        )));
    }
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region, not '{}'",
            printable(region)
        )));
    }
    if service.is_empty()
        || service.len() > 64
        || !service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid service, not '{}'",
            printable(service)
        )));
    }
    if terminator != "aws4_request" {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'",
            printable(terminator)
        )));
    }
    Ok(Scope {
        access_key_id: key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
    })
}

/// Input echoed in messages: at most 64 characters, control characters replaced.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn parse_signed_headers(list: &str) -> Result<Vec<String>, SigV4Error> {
    let names: Vec<String> = list.split(';').map(str::to_string).collect();
    if names.iter().any(|n| {
        n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
    }) {
        return Err(incomplete(
            "SignedHeaders must be a semicolon-separated list of lower-case header names",
        ));
    }
    Ok(names)
}

fn parse_signature(hex: &str) -> Result<String, SigV4Error> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hexadecimal digits"));
    }
    Ok(hex.to_ascii_lowercase())
}

/// Parses an `Authorization` header value. The request's date comes from elsewhere
/// (`X-Amz-Date`), so `amz_date` is left empty; [`extract`] fills it in.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Authorization header requires the algorithm {ALGORITHM}, not '{}'",
            printable(algorithm)
        )));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((name, val)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "Authorization header requires name=value pairs; '{}' is not one",
                printable(part)
            )));
        };
        let slot = match name.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(incomplete(format!(
                    "Authorization header has an unknown part '{}'",
                    printable(other)
                )))
            }
        };
        if slot.replace(val.trim()).is_some() {
            return Err(incomplete(format!(
                "Authorization header has '{}' twice",
                name.trim()
            )));
        }
    }
    let missing: Vec<&str> = [
        ("Credential", credential.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
        ("Signature", signature.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(n, _)| *n)
    .collect();
    if !missing.is_empty() {
        return Err(incomplete(format!(
            "Authorization header requires {} parameter(s). Authorization={}",
            missing.join(", "),
            printable(value)
        )));
    }
    Ok(Authorization {
        scope: parse_scope(credential.unwrap_or_default())?,
        signed_headers: parse_signed_headers(signed_headers.unwrap_or_default())?,
        signature: parse_signature(signature.unwrap_or_default())?,
        amz_date: String::new(),
        location: Location::Header,
        security_token: None,
    })
}

/// The signature of a request, from its `Authorization` header or its presigned query; `None`
/// when it carries neither.
pub fn extract(request: &Request) -> Result<Option<Authorization>, SigV4Error> {
    // Only the values of the parameters asked for are decoded: most requests are not presigned,
    // and their query strings are ARNs.
    let query_value = |name: &str| -> Result<Option<String>, SigV4Error> {
        let mut found = query_values(request.raw_query, name);
        let first = found.next();
        if found.next().is_some() {
            return Err(incomplete(format!("{name} is given twice")));
        }
        first
            .map(|v| String::from_utf8(v).map_err(|_| incomplete(format!("{name} is not UTF-8"))))
            .transpose()
    };
    let mut headers = request.header_values("authorization");
    let header = headers.next();
    if headers.next().is_some() {
        return Err(incomplete("Authorization header is given twice"));
    }
    let presigned = query_value("X-Amz-Signature")?.is_some()
        || query_value("X-Amz-Credential")?.is_some()
        || query_value("X-Amz-Algorithm")?.is_some();
    if header.is_some() && presigned {
        return Err(incomplete(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be supplied",
        ));
    }
    if let Some(value) = header {
        let mut auth = parse_authorization(value)?;
        auth.amz_date = match request.header("x-amz-date") {
            Some(d) => d.trim().to_string(),
            None => match request.header("date") {
                Some(d) => http_date_to_amz(d)?,
                None => {
                    return Err(incomplete(
                        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header",
                    ))
                }
            },
        };
        auth.security_token = request
            .header("x-amz-security-token")
            .map(|t| t.trim().to_string());
        return Ok(Some(auth));
    }
    if !presigned {
        return Ok(None);
    }
    let require = |name: &str| -> Result<String, SigV4Error> {
        query_value(name)?.ok_or_else(|| {
            incomplete(format!(
                "AWS query-string parameters must include '{name}'. Re-examine the query-string parameters."
            ))
        })
    };
    let algorithm = require("X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "X-Amz-Algorithm only supports '{ALGORITHM}', not '{}'",
            printable(&algorithm)
        )));
    }
    let expires = require("X-Amz-Expires")?;
    let expires_seconds: i64 = expires
        .parse()
        .ok()
        .filter(|s| (1..=MAX_PRESIGNED_EXPIRES).contains(s))
        .ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGNED_EXPIRES}, not '{}'",
                printable(&expires)
            ))
        })?;
    Ok(Some(Authorization {
        scope: parse_scope(&require("X-Amz-Credential")?)?,
        signed_headers: parse_signed_headers(&require("X-Amz-SignedHeaders")?)?,
        signature: parse_signature(&require("X-Amz-Signature")?)?,
        amz_date: require("X-Amz-Date")?,
        location: Location::Query { expires_seconds },
        security_token: query_value("X-Amz-Security-Token")?,
    }))
}

/// `Date: Sun, 30 Aug 2015 12:36:00 GMT` as `20150830T123600Z`.
fn http_date_to_amz(value: &str) -> Result<String, SigV4Error> {
    DateTime::parse_from_rfc2822(value.trim())
        .map(|d| d.with_timezone(&Utc).format(AMZ_DATE_FORMAT).to_string())
        .map_err(|_| {
            incomplete(format!(
                "Date header '{}' is not an HTTP date",
                printable(value)
            ))
        })
}

pub fn parse_amz_date(value: &str) -> Result<DateTime<Utc>, SigV4Error> {
    NaiveDateTime::parse_from_str(value, AMZ_DATE_FORMAT)
        .ok()
        .filter(|_| value.len() == 16)
        .map(|d| Utc.from_utc_datetime(&d))
        .ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Date '{}' must be in the ISO 8601 basic format yyyyMMdd'T'HHmmss'Z'",
                printable(value)
            ))
        })
}

/// The secret half of the key the request names, and its session token if it is temporary.
#[derive(Debug, Clone)]
pub struct SigningKey<'a> {
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

/// Checks the request's time, its scope and its signature against `key` (the key that
/// `auth.scope.access_key_id` names). `now` is the server's time.
pub fn verify(
    request: &Request,
    auth: &Authorization,
    key: &SigningKey,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Result<(), SigV4Error> {
    let date = parse_amz_date(&auth.amz_date)?;
    if auth.scope.date != auth.amz_date[..8] {
        return Err(SigV4Error::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
            auth.scope.date,
            &auth.amz_date[..8],
            auth.amz_date
        )));
    }
    if auth.scope.service != settings.service {
        return Err(SigV4Error::Invalid(format!(
            "Credential should be scoped to correct service: '{}'.",
            settings.service
        )));
    }
    check_time(date, &auth.location, now)?;
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    match (key.session_token, auth.security_token.as_deref()) {
        (None, None) => {}
        (Some(expected), Some(given)) if constant_time_eq(expected, given) => {}
        _ => return Err(SigV4Error::InvalidToken),
    }
    let payload_hash = payload_hash(request)?;
    let given = decode_hex(&auth.signature).ok_or_else(|| incomplete("Signature is not hex"))?;
    let matches = |omit_token: bool| -> Result<bool, SigV4Error> {
        let canonical = build_canonical(request, auth, &payload_hash, settings, omit_token)?;
        let mut mac = signing_mac(key.secret_access_key, &auth.scope);
        mac.update(string_to_sign(&auth.amz_date, &auth.scope, &canonical).as_bytes());
        Ok(mac.verify_slice(&given).is_ok())
    };
    // A presigned URL's session token is usually signed with it; some clients (AWS IoT's, the
    // suite's `post-sts-header-after`) add it after signing.
    let token_in_query =
        matches!(auth.location, Location::Query { .. }) && auth.security_token.is_some();
    if !(matches(false)? || (token_in_query && matches(true)?)) {
        return Err(SigV4Error::Invalid(MISMATCH_MESSAGE.to_string()));
    }
    Ok(())
}

fn check_time(
    date: DateTime<Utc>,
    location: &Location,
    now: DateTime<Utc>,
) -> Result<(), SigV4Error> {
    let fmt = |t: DateTime<Utc>| t.format(AMZ_DATE_FORMAT).to_string();
    let skew = chrono::Duration::seconds(MAX_SKEW_SECONDS);
    if date > now + skew {
        return Err(SigV4Error::Invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            fmt(date),
            fmt(now + skew),
            fmt(now)
        )));
    }
    match location {
        Location::Header if date < now - skew => Err(SigV4Error::Invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            fmt(date),
            fmt(now - skew),
            fmt(now)
        ))),
        Location::Query { expires_seconds }
            if date + chrono::Duration::seconds(*expires_seconds) < now =>
        {
            Err(SigV4Error::Invalid(format!(
                "Signature expired: {} is now earlier than {} ({} - {} sec.)",
                fmt(date),
                fmt(now - chrono::Duration::seconds(*expires_seconds)),
                fmt(now),
                expires_seconds
            )))
        }
        _ => Ok(()),
    }
}

/// The payload hash that was signed: `x-amz-content-sha256` when given (`UNSIGNED-PAYLOAD`, or
/// a hash that must match the body), otherwise the body's.
fn payload_hash(request: &Request) -> Result<String, SigV4Error> {
    if request.body_follows {
        return match request.header("x-amz-content-sha256").map(str::trim) {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(h.to_ascii_lowercase())
            }
            _ => Err(SigV4Error::Invalid(
                "an upload must carry the SHA-256 of its body in 'x-amz-content-sha256'"
                    .to_string(),
            )),
        };
    }
    let actual = || hex(&Sha256::digest(request.body));
    match request.header("x-amz-content-sha256").map(str::trim) {
        Some(UNSIGNED_PAYLOAD) => Ok(UNSIGNED_PAYLOAD.to_string()),
        Some(given) if given.eq_ignore_ascii_case(&actual()) => Ok(given.to_string()),
        Some(_) => Err(SigV4Error::Invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
                .to_string(),
        )),
        None => Ok(actual()),
    }
}

/// The canonical request (the test suite's `*-canonical-request.txt`).
pub fn canonical_request(
    request: &Request,
    auth: &Authorization,
    payload_hash: &str,
    settings: &Settings,
) -> Result<String, SigV4Error> {
    build_canonical(request, auth, payload_hash, settings, false)
}

fn build_canonical(
    request: &Request,
    auth: &Authorization,
    payload_hash: &str,
    settings: &Settings,
    omit_token: bool,
) -> Result<String, SigV4Error> {
    let uri = canonical_uri(request.raw_path, settings);
    let presigned = matches!(auth.location, Location::Query { .. });
    let mut omit = Vec::new();
    if presigned {
        omit.push("X-Amz-Signature");
    }
    if omit_token {
        omit.push("X-Amz-Security-Token");
    }
    let query = canonical_query(request.raw_query, &omit);
    let mut headers = String::new();
    for name in &auth.signed_headers {
        let mut values: Vec<String> = request
            .header_values(name)
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() && name == "host" {
            if let Some(authority) = request.authority {
                values.push(authority.trim().to_string());
            }
        }
        if values.is_empty() {
            return Err(incomplete(format!(
                "The header '{}' is listed in SignedHeaders but is not in the request",
                printable(name)
            )));
        }
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values.join(","));
        headers.push('\n');
    }
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        uri,
        query,
        headers,
        auth.signed_headers.join(";"),
        payload_hash
    ))
}

pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.string(),
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The HMAC of the signing key derived from `secret` for `scope`, ready for the string to sign.
fn signing_mac(secret: &str, scope: &Scope) -> HmacSha256 {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [
        scope.date.as_str(),
        scope.region.as_str(),
        scope.service.as_str(),
        "aws4_request",
    ] {
        key = hmac(&key, part.as_bytes());
    }
    HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Signs `string_to_sign`: the hex signature a client computes (for tests and clients).
pub fn sign(secret: &str, scope: &Scope, string_to_sign: &str) -> String {
    let mut mac = signing_mac(secret, scope);
    mac.update(string_to_sign.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// A key to sign with (the client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Signs a request as the SDKs do: every header given (and `host`, `x-amz-date`, and the session
/// token when there is one) is signed, the payload hash is the body's. Answers the headers to
/// add: `x-amz-date`, `x-amz-security-token` when there is a token, and `authorization`.
pub fn sign_request(
    request: &Request,
    credentials: &Credentials,
    region: &str,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Vec<(String, String)> {
    let amz_date = now.format(AMZ_DATE_FORMAT).to_string();
    let mut added = vec![("x-amz-date".to_string(), amz_date.clone())];
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token".to_string(), token.clone()));
    }
    let mut headers: Vec<(String, String)> = request.headers.to_vec();
    headers.extend(added.iter().cloned());
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        if let Some(authority) = request.authority {
            headers.push(("host".to_string(), authority.to_string()));
        }
    }
    let mut signed_headers: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    signed_headers.sort();
    signed_headers.dedup();
    let scope = Scope {
        access_key_id: credentials.access_key_id.clone(),
        date: amz_date[..8].to_string(),
        region: region.to_string(),
        service: settings.service.clone(),
    };
    let auth = Authorization {
        scope: scope.clone(),
        signed_headers,
        signature: String::new(),
        amz_date: amz_date.clone(),
        location: Location::Header,
        security_token: credentials.session_token.clone(),
    };
    let with_added = Request {
        headers: &headers,
        ..*request
    };
    // An upload whose body follows declares its hash in `x-amz-content-sha256` (signed).
    let payload = match request.header("x-amz-content-sha256") {
        Some(declared) if request.body_follows => declared.trim().to_string(),
        _ => hex(&Sha256::digest(request.body)),
    };
    // Every signed header is in `headers`, so building the canonical request cannot fail.
    let canonical =
        build_canonical(&with_added, &auth, &payload, settings, false).unwrap_or_default();
    let signature = sign(
        &credentials.secret_access_key,
        &scope,
        &string_to_sign(&amz_date, &scope, &canonical),
    );
    added.push((
        "authorization".to_string(),
        format!(
            "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={signature}",
            credentials.access_key_id,
            scope.string(),
            auth.signed_headers.join(";")
        ),
    ));
    added
}

/// The canonical URI: normalized (when the settings say so), then percent-encoded.
pub fn canonical_uri(raw_path: &str, settings: &Settings) -> String {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let path: Vec<u8> = match settings.path_encoding {
        PathEncoding::Double => path.as_bytes().to_vec(),
        PathEncoding::Single => percent_encoding::percent_decode_str(path).collect(),
    };
    let path = if settings.normalize_path {
        normalize_path(&path)
    } else {
        path
    };
    let mut out = String::with_capacity(path.len() * 3);
    for &b in &path {
        if b == b'/' || is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Removes `.` and `..` segments and merges repeated slashes; the result starts with `/` and
/// keeps a trailing slash.
fn normalize_path(path: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    let last = parts.last().copied().unwrap_or_default();
    let trailing = last.is_empty() || last == b"." || last == b"..";
    for part in parts {
        match part {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = vec![b'/'];
    out.extend_from_slice(&segments.join(&b'/'));
    if trailing && !segments.is_empty() {
        out.push(b'/');
    }
    out
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn encode_component(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The values of query parameter `name`, percent-decoded as [`decode_query`] decodes them;
/// names are compared decoded, without allocating, and other values are not decoded.
fn query_values<'q>(raw: &'q str, name: &'q str) -> impl Iterator<Item = Vec<u8>> + 'q {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            percent_encoding::percent_decode_str(k)
                .eq(name.bytes())
                .then(|| percent_encoding::percent_decode_str(v).collect())
        })
}

/// Query pairs, percent-decoded (a `+` stays a `+`, as the SDKs send a space as `%20`).
fn decode_query(raw: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_encoding::percent_decode_str(k).collect(),
                percent_encoding::percent_decode_str(v).collect(),
            )
        })
        .collect()
}

/// The canonical query string: every pair decoded, re-encoded and sorted (by name, then
/// value); without the parameters in `omit` (`X-Amz-Signature` of a presigned URL).
pub fn canonical_query(raw: &str, omit: &[&str]) -> String {
    let mut pairs: Vec<(String, String)> = decode_query(raw)
        .into_iter()
        .filter(|(k, _)| !omit.iter().any(|o| k.as_slice() == o.as_bytes()))
        .map(|(k, v)| (encode_component(&k), encode_component(&v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_by_their_decoded_names() {
        let raw = "imagePipelineArn=arn%3Aaws&X%2DAmz%2DAlgorithm=AWS4-HMAC-SHA256&b=%FF+";
        let values = |name| query_values(raw, name).collect::<Vec<_>>();
        assert_eq!(
            values("X-Amz-Algorithm"),
            vec![b"AWS4-HMAC-SHA256".to_vec()]
        );
        assert_eq!(values("imagePipelineArn"), vec![b"arn:aws".to_vec()]);
        assert_eq!(values("b"), vec![b"\xff+".to_vec()]);
        assert!(values("X-Amz-Signature").is_empty());
        assert_eq!(query_values("a=1&&a=2", "a").count(), 2);
        assert_eq!(
            query_values("a", "a").collect::<Vec<_>>(),
            vec![Vec::<u8>::new()]
        );
        // The same pairs decode_query gives, for the names asked.
        for (name, value) in decode_query(raw) {
            let name = String::from_utf8(name).unwrap();
            assert_eq!(query_values(raw, &name).collect::<Vec<_>>(), vec![value]);
        }
    }

    #[test]
    fn scopes_are_parsed_strictly() {
        let s = parse_scope("AKID/20150830/us-east-1/imagebuilder/aws4_request").unwrap();
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.string(), "20150830/us-east-1/imagebuilder/aws4_request");
        for bad in [
            "AKID/20150830/us-east-1:111111111111/imagebuilder/aws4_request",
            "AKID/20150830/us-east-1/imagebuilder/aws4_request/extra",
            "AKID/2015083/us-east-1/imagebuilder/aws4_request",
            "AKID/20150830/US-EAST-1/imagebuilder/aws4_request",
            "AKID/20150830/us-east-1/imagebuilder/aws5_request",
            "AK ID/20150830/us-east-1/imagebuilder/aws4_request",
            "/20150830/us-east-1/imagebuilder/aws4_request",
            "",
        ] {
            let e = parse_scope(bad).unwrap_err();
            assert_eq!(e.code(), "IncompleteSignatureException", "{bad}");
        }
    }

    #[test]
    fn authorization_headers_are_parsed() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        )
        .unwrap();
        assert_eq!(a.scope.access_key_id, "AKIDEXAMPLE");
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        for bad in [
            "",
            "AWS4-HMAC-SHA1 Credential=a/20150830/us-east-1/s/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s/aws4_request, SignedHeaders=Host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s/aws4_request, SignedHeaders=host, Signature=xyz",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s/aws4_request, Credential=AKID/20150830/us-east-1/s/aws4_request, SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            "AWS4-HMAC-SHA256 garbage",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_normalize_like_the_sdks() {
        let n = |p: &str| String::from_utf8(normalize_path(p.as_bytes())).unwrap();
        assert_eq!(n("/"), "/");
        assert_eq!(n(""), "/");
        assert_eq!(n("//example//"), "/example/");
        assert_eq!(n("/example/.."), "/");
        assert_eq!(n("/a/b/../c"), "/a/c");
        assert_eq!(n("/./example"), "/example");
        assert_eq!(n("/a/b/.."), "/a/");
        let double = Settings::imagebuilder();
        assert_eq!(
            canonical_uri("/tags/arn%3Aaws%3Aimagebuilder", &double),
            "/tags/arn%253Aaws%253Aimagebuilder"
        );
    }

    #[test]
    fn error_codes_and_statuses() {
        assert_eq!(SigV4Error::Missing.status(), 403);
        assert_eq!(incomplete("x").status(), 400);
        assert_eq!(SigV4Error::UnknownKey.code(), "UnrecognizedClientException");
        assert!(!MISMATCH_MESSAGE.contains("canonical"));
    }
}
