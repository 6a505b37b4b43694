//! The SigV4 parser and verifier (`kiln_auth::sigv4`) on arbitrary requests: whatever arrives,
//! parsing the signature, rebuilding the canonical request and verifying answer an error or a
//! verdict, never a panic. Also: a request with a host that `sign_request` signed verifies.
//!
//! The input is a request as text (the signing test suite's format, which seeds the corpus:
//! `crates/kiln-auth/tests/aws-signing-test-suite`): a request line, `name:value` headers, a
//! blank line, the body.
#![no_main]

use chrono::{TimeZone, Utc};
use kiln_auth::sigv4::{
    canonical_query, canonical_uri, extract, parse_authorization, sign_request, verify,
    Credentials, PathEncoding, Request, Settings, SigningKey,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.splitn(3, ' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();

    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("authorization") {
            let _ = parse_authorization(value);
        }
    }
    let request = Request {
        method,
        raw_path,
        raw_query,
        headers: &headers,
        authority: None,
        body: body.as_bytes(),
        body_follows: false,
    };
    let mut settings = Settings::imagebuilder();
    for (encoding, normalize) in [(PathEncoding::Double, true), (PathEncoding::Single, false)] {
        settings.path_encoding = encoding;
        settings.normalize_path = normalize;
        let _ = canonical_uri(raw_path, &settings);
    }
    let _ = canonical_query(raw_query, &["X-Amz-Signature"]);

    let now = Utc.with_ymd_and_hms(2015, 8, 30, 12, 36, 0).single().unwrap_or_else(Utc::now);
    let key = SigningKey {
        secret_access_key: SECRET,
        session_token: None,
    };
    for settings in [Settings::imagebuilder(), suite_settings()] {
        if let Ok(Some(auth)) = extract(&request) {
            let _ = verify(&request, &auth, &key, now, &settings);
        }
    }

    // What Kiln signs itself (the kiln commands), it must accept.
    let unsigned: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, v)| {
            let lower = n.to_ascii_lowercase();
            lower != "authorization"
                && !lower.starts_with("x-amz-")
                && is_header_name(n)
                && is_header_value(v)
        })
        .cloned()
        .collect();
    // The verifier insists on a signed host, as AWS does; every HTTP/1.1 request has one.
    let mut unsigned = unsigned;
    if !unsigned.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        unsigned.push(("host".to_string(), "example.amazonaws.com".to_string()));
    }
    let bare = Request {
        headers: &unsigned,
        raw_query: "",
        ..request
    };
    let credentials = Credentials {
        access_key_id: "AKIDEXAMPLE".to_string(),
        secret_access_key: SECRET.to_string(),
        session_token: None,
    };
    let settings = Settings::imagebuilder();
    let mut signed_headers = unsigned.clone();
    signed_headers.extend(sign_request(&bare, &credentials, "us-east-1", now, &settings));
    let signed = Request {
        headers: &signed_headers,
        ..bare
    };
    let auth = extract(&signed)
        .unwrap_or_else(|e| panic!("a request sign_request signed does not parse: {e}"))
        .unwrap_or_else(|| panic!("a request sign_request signed carries no signature"));
    if let Err(e) = verify(&signed, &auth, &key, now, &settings) {
        panic!("a request sign_request signed does not verify: {e}");
    }
});

/// What HTTP allows as a header name (RFC 9110 `token`): the only names that reach Kiln.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What hyper passes on as a header value: visible ASCII, spaces and tabs.
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// The signing test suite's service and encoding.
fn suite_settings() -> Settings {
    Settings {
        service: "service".to_string(),
        path_encoding: PathEncoding::Single,
        normalize_path: true,
    }
}
