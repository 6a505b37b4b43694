//! The official SigV4 test suite (tests/aws-signing-test-suite/v4), run through Kiln's verifier.
//!
//! For every case with a `context.json`, both signed forms (header and presigned query) must
//! verify with the suite's credentials at the suite's time, the canonical request Kiln rebuilds
//! must be the suite's, and the same request must be refused once anything signed changes: the
//! signature, the secret, a signed header, the body (when the body is signed), or the clock.

use chrono::{DateTime, Utc};
use kiln_auth::sigv4::{
    canonical_request, canonical_uri, extract, sign_request, verify, Credentials, PathEncoding,
    Request, Settings, SigV4Error, SigningKey,
};
use std::path::{Path, PathBuf};

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws-signing-test-suite/v4")
}

/// A request file: `METHOD target [HTTP/1.1]`, header lines (continuation lines start with
/// whitespace), an empty line, the body.
struct Parsed {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_request(text: &str) -> Parsed {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b.as_bytes().to_vec()),
        None => (text.trim_end_matches('\n'), Vec::new()),
    };
    let mut lines = head.lines();
    let first = lines.next().expect("a request line");
    let mut parts = first.splitn(2, ' ');
    let method = parts.next().unwrap().to_string();
    let target = parts.next().unwrap();
    let target = target.strip_suffix(" HTTP/1.1").unwrap_or(target);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = headers.last_mut().expect("a continuation follows a header");
            last.1.push('\n');
            last.1.push_str(line);
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    Parsed {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    }
}

impl Parsed {
    fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            raw_path: &self.path,
            raw_query: &self.query,
            headers: &self.headers,
            authority: None,
            body: &self.body,
            body_follows: false,
        }
    }
}

struct Context {
    secret: String,
    token: Option<String>,
    normalize: bool,
    service: String,
    sign_body: bool,
    /// The session token was added after signing: it is not part of the canonical request.
    omit_session_token: bool,
    now: DateTime<Utc>,
}

fn context(dir: &Path) -> Option<Context> {
    let text = std::fs::read_to_string(dir.join("context.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Some(Context {
        secret: v["credentials"]["secret_access_key"]
            .as_str()
            .unwrap()
            .to_string(),
        token: v["credentials"]["token"].as_str().map(str::to_string),
        normalize: v["normalize"].as_bool().unwrap(),
        service: v["service"].as_str().unwrap().to_string(),
        sign_body: v["sign_body"].as_bool().unwrap_or(false),
        omit_session_token: v["omit_session_token"].as_bool().unwrap_or(false),
        now: v["timestamp"].as_str().unwrap().parse().unwrap(),
    })
}

fn settings(ctx: &Context) -> Settings {
    Settings {
        service: ctx.service.clone(),
        path_encoding: PathEncoding::Single,
        normalize_path: ctx.normalize,
    }
}

fn check(
    parsed: &Parsed,
    ctx: &Context,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<(), SigV4Error> {
    let request = parsed.request();
    let auth = extract(&request)?.expect("the request is signed");
    let key = SigningKey {
        secret_access_key: secret,
        session_token: ctx.token.as_deref(),
    };
    verify(&request, &auth, &key, now, &settings(ctx)).map(|_| ())
}

#[test]
fn every_signed_request_of_the_suite_verifies() {
    let mut cases = 0;
    for entry in std::fs::read_dir(suite()).unwrap() {
        let dir = entry.unwrap().path();
        let Some(ctx) = context(&dir) else { continue };
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for form in ["header", "query"] {
            let text = std::fs::read_to_string(dir.join(format!("{form}-signed-request.txt")))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let parsed = parse_request(&text);
            let request = parsed.request();
            check(&parsed, &ctx, &ctx.secret, ctx.now)
                .unwrap_or_else(|e| panic!("{name} ({form}): {e:?}"));

            // Kiln rebuilds exactly the suite's canonical request.
            let expected =
                std::fs::read_to_string(dir.join(format!("{form}-canonical-request.txt"))).unwrap();
            let auth = extract(&request).unwrap().unwrap();
            let payload = expected.rsplit('\n').next().unwrap();
            let mut unsigned_token_removed = parse_request(&text);
            if ctx.omit_session_token {
                unsigned_token_removed.query = unsigned_token_removed
                    .query
                    .split('&')
                    .filter(|p| !p.starts_with("X-Amz-Security-Token="))
                    .collect::<Vec<_>>()
                    .join("&");
            }
            assert_eq!(
                canonical_request(
                    &unsigned_token_removed.request(),
                    &auth,
                    payload,
                    &settings(&ctx)
                )
                .unwrap(),
                expected,
                "{name} ({form})"
            );

            // A wrong secret, a changed signature or a clock far away are refused.
            let wrong = check(&parsed, &ctx, "not-the-secret", ctx.now).unwrap_err();
            assert_eq!(wrong.code(), "InvalidSignatureException", "{name}");
            assert!(!wrong.to_string().contains(&auth.signature));
            let late = ctx.now + chrono::Duration::hours(2);
            assert_eq!(
                check(&parsed, &ctx, &ctx.secret, late).unwrap_err().code(),
                "InvalidSignatureException",
                "{name} ({form}) two hours later"
            );
            let early = ctx.now - chrono::Duration::minutes(16);
            assert!(
                check(&parsed, &ctx, &ctx.secret, early).is_err(),
                "{name} ({form}) before it was signed"
            );
            let flipped = flip_signature(&text, &auth.signature);
            assert_eq!(
                check(&parse_request(&flipped), &ctx, &ctx.secret, ctx.now)
                    .unwrap_err()
                    .code(),
                "InvalidSignatureException",
                "{name} ({form}) with a changed signature"
            );

            // A change to a signed header is refused.
            let mut changed = parse_request(&text);
            let signed_my_header = auth.signed_headers.iter().any(|h| h == "my-header1");
            if signed_my_header {
                for (n, v) in &mut changed.headers {
                    if n.eq_ignore_ascii_case("my-header1") {
                        v.push('x');
                    }
                }
                assert!(
                    check(&changed, &ctx, &ctx.secret, ctx.now).is_err(),
                    "{name}"
                );
            }
            // A changed body is refused when the body was signed.
            if ctx.sign_body || !parsed.body.is_empty() {
                let mut tampered = parse_request(&text);
                tampered.body.push(b'!');
                assert!(
                    check(&tampered, &ctx, &ctx.secret, ctx.now).is_err(),
                    "{name} ({form}) with a changed body"
                );
            }
        }
        cases += 1;
    }
    assert!(cases >= 35, "only {cases} cases found");
}

fn flip_signature(text: &str, signature: &str) -> String {
    let first = signature.chars().next().unwrap();
    let replacement = if first == '0' { '1' } else { '0' };
    let mut flipped = signature.to_string();
    flipped.replace_range(0..1, &replacement.to_string());
    text.replace(signature, &flipped)
}

#[test]
fn the_double_encoded_cases_match() {
    // `double-url-encode`: what every SDK does for a path that holds an ARN, like Kiln's tag
    // operations (`/tags/arn%3Aaws%3A...`).
    let dir = suite().join("double-url-encode");
    let text = std::fs::read_to_string(dir.join("header-signed-request.txt")).unwrap();
    let parsed = parse_request(&text);
    let request = parsed.request();
    let auth = extract(&request).unwrap().unwrap();
    let settings = Settings {
        service: "lambda".to_string(),
        path_encoding: PathEncoding::Double,
        normalize_path: true,
    };
    let expected = std::fs::read_to_string(dir.join("header-canonical-request.txt")).unwrap();
    let payload = expected.rsplit('\n').next().unwrap();
    assert_eq!(
        canonical_request(&request, &auth, payload, &settings).unwrap(),
        expected
    );
    let key = SigningKey {
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
    };
    let now: DateTime<Utc> = "2021-05-11T15:40:45Z".parse().unwrap();
    verify(&request, &auth, &key, now, &settings).unwrap();

    // `double-encode-path`: only its canonical path is usable (its signature was made with a
    // key the suite does not publish).
    assert_eq!(
        canonical_uri("/test/@connections/JBDvjfGEIAMCERw%3D", &settings),
        "/test/%40connections/JBDvjfGEIAMCERw%253D"
    );
}

#[test]
fn a_session_token_is_required_exactly_when_the_key_has_one() {
    let dir = suite().join("get-vanilla-with-session-token");
    let ctx = context(&dir).unwrap();
    let text = std::fs::read_to_string(dir.join("header-signed-request.txt")).unwrap();
    let parsed = parse_request(&text);
    check(&parsed, &ctx, &ctx.secret, ctx.now).unwrap();
    let other_token = Context {
        token: Some("another".to_string()),
        ..context(&dir).unwrap()
    };
    assert_eq!(
        check(&parsed, &other_token, &ctx.secret, ctx.now)
            .unwrap_err()
            .code(),
        "UnrecognizedClientException"
    );
    let no_token = Context {
        token: None,
        ..context(&dir).unwrap()
    };
    assert_eq!(
        check(&parsed, &no_token, &ctx.secret, ctx.now)
            .unwrap_err()
            .code(),
        "UnrecognizedClientException"
    );
}

#[test]
fn kilns_signer_produces_the_suites_signatures() {
    let mut compared = 0;
    for entry in std::fs::read_dir(suite()).unwrap() {
        let dir = entry.unwrap().path();
        let Some(ctx) = context(&dir) else { continue };
        // The signer signs every header it is given and the body's hash, without a session
        // token: the cases signed that way.
        if ctx.sign_body || ctx.token.is_some() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = parse_request(&std::fs::read_to_string(dir.join("request.txt")).unwrap());
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".to_string(),
            secret_access_key: ctx.secret.clone(),
            session_token: None,
        };
        let added = sign_request(
            &parsed.request(),
            &credentials,
            "us-east-1",
            ctx.now,
            &settings(&ctx),
        );
        let authorization = &added.iter().find(|(n, _)| n == "authorization").unwrap().1;
        let signed =
            parse_request(&std::fs::read_to_string(dir.join("header-signed-request.txt")).unwrap());
        let expected = signed
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim())
            .unwrap();
        assert_eq!(authorization, expected, "{name}");
        compared += 1;
    }
    assert!(compared >= 25, "only {compared} cases compared");
}
