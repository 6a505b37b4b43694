//! Mutations of a valid request, at four levels: the input object (types, sizes, odd strings,
//! missing and unknown members, deep nesting), the body bytes (truncation, garbage, invalid
//! UTF-8, non-objects, duplicate keys, oversized), the request line and headers (methods,
//! paths, percent-encoding, query strings, duplicate and oversized headers), and the SigV4
//! headers (missing, garbage, wrong scope, wrong date, bad signature).
//!
//! Each returns the name of what it did, for the report's distribution.

use super::wire::{encode_component, Request};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Map, Value};

/// Placeholders a mutation leaves in the input, replaced in the body text afterwards: JSON
/// that `serde_json::Value` cannot hold (integers beyond u64, nesting deeper than its
/// recursion limit) or that would be slow to build as a tree.
pub const BIG_INTEGER: &str = "\u{1}big\u{1}";
pub const DEEP_ARRAY: &str = "\u{1}deep\u{1}";

/// Above the server's 1 MiB body limit.
const OVERSIZED: usize = 1024 * 1024 + 4096;

// ---------------------------------------------------------------------------------------------
// The input object

/// A path to one value inside the input: object keys and array indices.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    if out.len() > 200 {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(Step::Key(k.clone()));
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate().take(4) {
                prefix.push(Step::Index(i));
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut cur = value;
    for step in path {
        cur = match (step, cur) {
            (Step::Key(k), Value::Object(map)) => map.get_mut(k)?,
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn odd_string(rng: &mut StdRng) -> String {
    let choices: [&dyn Fn(&mut StdRng) -> String; 16] = [
        &|_| "\u{0}".into(),
        &|_| "a\u{0}b".into(),
        &|_| "\u{202e}gnp.exe".into(),
        &|r| "😀".repeat(r.gen_range(1..300)),
        &|_| "\u{fffd}\u{feff}\u{200b}".into(),
        &|_| "../../../../etc/passwd".into(),
        &|_| "%00%2F%2e%2e".into(),
        &|_| "{{ imagebuilder:parentImage }}".into(),
        &|_| "' OR 1=1 --".into(),
        &|_| " ".into(),
        &|_| "\t\r\n".into(),
        &|_| "\\\"\\".into(),
        &|_| "arn:aws:imagebuilder:us-east-1:123456789012:component/x/1.0.0/1".into(),
        &|_| "arn:aws:imagebuilder:us-east-1:aws:image/../../x/1.0.0".into(),
        &|_| "1.0.0/../../1".into(),
        &|r| {
            (0..r.gen_range(1..40))
                .map(|_| char::from_u32(r.gen_range(0x80..0x2_0000)).unwrap_or('\u{fffd}'))
                .collect()
        },
    ];
    let f = choices[rng.gen_range(0..choices.len())];
    f(rng)
}

fn wrong_type(rng: &mut StdRng) -> Value {
    let choices = [
        json!(0),
        json!(-1),
        json!(1.5),
        json!(true),
        Value::Null,
        json!("string"),
        json!([]),
        json!({}),
        json!([1, "a", null]),
        json!({"a": 1}),
        json!(""),
    ];
    choices[rng.gen_range(0..choices.len())].clone()
}

fn huge_number(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..9) {
        0 => json!(u64::MAX),
        1 => json!(i64::MIN),
        2 => json!(1e308),
        3 => json!(-1e308),
        4 => json!(2_147_483_648_i64),
        5 => json!(-2_147_483_649_i64),
        6 => json!(5e-324),
        7 => json!(-0.0),
        _ => Value::String(BIG_INTEGER.into()),
    }
}

/// Applies one mutation to the input object.
pub fn input(input: &mut Map<String, Value>, rng: &mut StdRng) -> &'static str {
    let mut root = Value::Object(std::mem::take(input));
    let mut all = Vec::new();
    paths(&root, &mut Vec::new(), &mut all);
    let kind = rng.gen_range(0..12);
    let name = match (kind, all.choose(rng).cloned()) {
        (0, Some(p)) => set(&mut root, &p, wrong_type(rng), "wrong-type"),
        (1, Some(p)) => {
            let n = *[256, 1025, 2049, 16_001, 70_000]
                .choose(rng)
                .unwrap_or(&256);
            set(&mut root, &p, Value::String("x".repeat(n)), "long-string")
        }
        (2, Some(p)) => set(&mut root, &p, Value::String(String::new()), "empty-string"),
        (3, Some(p)) => set(&mut root, &p, Value::String(odd_string(rng)), "odd-string"),
        (4, Some(p)) => set(&mut root, &p, huge_number(rng), "huge-number"),
        (5, Some(p)) => {
            // Removing the member: often a required one at the top.
            let (parent, last) = p.split_at(p.len() - 1);
            match (at(&mut root, parent), &last[0]) {
                (Some(Value::Object(map)), Step::Key(k)) => {
                    map.remove(k);
                    "remove-member"
                }
                (Some(Value::Array(items)), Step::Index(i)) if *i < items.len() => {
                    items.remove(*i);
                    "remove-item"
                }
                _ => "none",
            }
        }
        (6, Some(p)) => set(
            &mut root,
            &p,
            Value::String(DEEP_ARRAY.into()),
            "deep-nesting",
        ),
        (7, Some(p)) => {
            let item = at(&mut root, &p).cloned().unwrap_or(Value::Null);
            // Past the body limit is enough: bigger only makes the fuzzer slow.
            let item_size = item.to_string().len().max(1);
            let n = (*[101, 1001, 5000].choose(rng).unwrap_or(&101)).min(OVERSIZED / item_size + 1);
            set(&mut root, &p, Value::Array(vec![item; n]), "big-list")
        }
        (8, Some(p)) => {
            let map: Map<String, Value> = (0..rng.gen_range(50..600))
                .map(|i| (format!("k{i}"), json!(format!("v{i}"))))
                .collect();
            set(&mut root, &p, Value::Object(map), "big-map")
        }
        (9, Some(p)) => set(&mut root, &p, Value::Null, "null"),
        (10, _) => {
            if let Value::Object(map) = &mut root {
                map.insert("fuzzUnknownMember".into(), wrong_type(rng));
            }
            "unknown-member"
        }
        _ => {
            // The whole input empty: every required member missing.
            root = Value::Object(Map::new());
            "empty-input"
        }
    };
    if let Value::Object(map) = root {
        *input = map;
    }
    name
}

fn set(root: &mut Value, path: &[Step], v: Value, name: &'static str) -> &'static str {
    match at(root, path) {
        Some(slot) => {
            *slot = v;
            name
        }
        None => "none",
    }
}

/// Replaces the placeholders of [`input`] in the encoded body.
pub fn expand_placeholders(req: &mut Request, rng: &mut StdRng) {
    let text = String::from_utf8_lossy(&req.body).into_owned();
    let big = serde_json::to_string(BIG_INTEGER).unwrap_or_default();
    let deep = serde_json::to_string(DEEP_ARRAY).unwrap_or_default();
    if !text.contains(&big) && !text.contains(&deep) {
        return;
    }
    let depth = *[40, 129, 1000, 50_000].choose(rng).unwrap_or(&129);
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let replaced = text
        .replace(&big, "123456789012345678901234567890123456789")
        .replace(&deep, &nested);
    // Query members went through percent-encoding: there the placeholder is just odd text.
    req.body = replaced.into_bytes();
}

// ---------------------------------------------------------------------------------------------
// The body bytes

pub fn body(req: &mut Request, rng: &mut StdRng) -> &'static str {
    match rng.gen_range(0..13) {
        0 => {
            let n = rng.gen_range(0..=req.body.len());
            req.body.truncate(n);
            "truncated-body"
        }
        1 => {
            req.body = (0..rng.gen_range(1..300)).map(|_| rng.gen()).collect();
            "garbage-body"
        }
        2 => {
            let bad: &[&[u8]] = &[
                b"\xff",
                b"\xc0\x80",
                b"\xed\xa0\x80",
                b"\xf8\x88\x80\x80\x80",
                b"\xe2\x82",
            ];
            let pos = req
                .body
                .iter()
                .position(|b| *b == b'"')
                .map_or(0, |p| p + 1);
            let pick = bad[rng.gen_range(0..bad.len())];
            req.body.splice(pos..pos, pick.iter().copied());
            "invalid-utf8"
        }
        3 => {
            let text = String::from_utf8_lossy(&req.body).into_owned();
            req.body = text
                .replacen("\":\"", "\":\"\\ud800", 1)
                .replacen("\":\"", "\":\"\\u0000", 1)
                .into_bytes();
            "escaped-surrogate"
        }
        4 => {
            let choices = ["[]", "\"x\"", "1", "null", "true", "[{}]", "{", "}", "{}}"];
            req.body = choices[rng.gen_range(0..choices.len())].as_bytes().to_vec();
            "not-an-object"
        }
        5 => {
            req.body.splice(0..0, b"\xef\xbb\xbf".iter().copied());
            "bom"
        }
        6 => {
            let tails: [&[u8]; 4] = [b"garbage", b"}", b",{}", b"\x00"];
            req.body
                .extend_from_slice(tails[rng.gen_range(0..tails.len())]);
            "trailing-bytes"
        }
        7 => {
            let text = String::from_utf8_lossy(&req.body).into_owned();
            if let Some(key) = first_key(&text) {
                let rest = text.strip_prefix('{').unwrap_or(&text);
                req.body = format!("{{\"{key}\":[{{}}],{rest}").into_bytes();
                "duplicate-key"
            } else {
                "none"
            }
        }
        8 => {
            req.body = b" \n\t\r ".to_vec();
            "whitespace-body"
        }
        9 => {
            req.body = b"{\"a\":\"\x00\x00\"}\x00".to_vec();
            "nul-bytes"
        }
        10 if rng.gen_bool(0.08) => {
            let mut big = b"{\"description\":\"".to_vec();
            big.resize(OVERSIZED, b'x');
            big.extend_from_slice(b"\"}");
            req.body = big;
            if rng.gen_bool(0.5) {
                req.headers
                    .push(("Transfer-Encoding".into(), "chunked".into()));
                "oversized-chunked-body"
            } else {
                "oversized-body"
            }
        }
        11 => {
            req.headers
                .push(("Transfer-Encoding".into(), "chunked".into()));
            "chunked-body"
        }
        _ => {
            req.body.clear();
            "empty-body"
        }
    }
}

fn first_key(text: &str) -> Option<String> {
    let rest = text.strip_prefix("{\"")?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

// ---------------------------------------------------------------------------------------------
// The request line and headers

const METHODS: [&str; 9] = [
    "GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "FUZZ", "get",
];

/// Paths of Kiln's own endpoints (`/kiln/v1/`), which take their input from the query string.
fn extension_path(rng: &mut StdRng, arn: &str) -> String {
    let arn = encode_component(arn);
    let choices = [
        format!(
            "/kiln/v1/logs?imageBuildVersionArn={arn}&offset={}",
            rng.gen::<i64>()
        ),
        format!("/kiln/v1/logs?imageBuildVersionArn={arn}&offset=-1"),
        format!("/kiln/v1/export?imageBuildVersionArn={arn}&format=qcow2"),
        format!("/kiln/v1/export?imageBuildVersionArn={arn}&format=%FF"),
        format!("/kiln/v1/schedule?imagePipelineArn={arn}"),
        format!("/kiln/v1/instances/{arn}"),
        "/kiln/v1/instances/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/kiln/v1/../../etc/passwd".to_string(),
        "/kiln/v1/%2e%2e/%2e%2e/etc/passwd".to_string(),
        "/kiln/v1/".to_string(),
        "/kiln/v1/nothing-here?x=%zz".to_string(),
        "/kiln/v1/logs".to_string(),
    ];
    choices[rng.gen_range(0..choices.len())].clone()
}

pub fn request(req: &mut Request, rng: &mut StdRng, some_arn: &str) -> &'static str {
    let (path, query) = match req.path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (req.path.clone(), None),
    };
    match rng.gen_range(0..5) {
        0 => {
            req.method = METHODS[rng.gen_range(0..METHODS.len())].to_string();
            "wrong-method"
        }
        1 => {
            let arn = encode_component(some_arn);
            let choices = [
                "/NoSuchOperation".to_string(),
                path.to_lowercase(),
                format!("{path}/"),
                format!("/{path}"),
                format!("{path}%2F"),
                "/".to_string(),
                "/tags/".to_string(),
                "/tags/a/b".to_string(),
                "/tags/%".to_string(),
                "/tags/%zz".to_string(),
                "/tags/%C0%80".to_string(),
                "/tags/%FF%FE".to_string(),
                format!("/tags/{}", encode_component(&arn)),
                format!("/tags/{}", "x".repeat(rng.gen_range(100..6000))),
                format!("{path}/.."),
                format!("{path};jsessionid=1"),
                format!("{}{path}", "/.".repeat(50)),
                format!("/{}", "a".repeat(rng.gen_range(1000..12_000))),
                "/%2e%2e/%2e%2e/".to_string(),
                format!("http://127.0.0.1{path}"),
            ];
            let new_path = choices[rng.gen_range(0..choices.len())].clone();
            req.path = match query {
                Some(q) => format!("{new_path}?{q}"),
                None => new_path,
            };
            "odd-path"
        }
        2 => {
            req.path = extension_path(rng, some_arn);
            req.method = if rng.gen_bool(0.8) { "GET" } else { "PUT" }.to_string();
            "extension-path"
        }
        3 => {
            let choices = [
                "".to_string(),
                "&&&".to_string(),
                "=".to_string(),
                "maxResults=abc".to_string(),
                "maxResults=99999999999999999999".to_string(),
                "%".to_string(),
                "%zz=1".to_string(),
                "a=%FF%FE".to_string(),
                "tagKeys".to_string(),
                "tagKeys=a&tagKeys=a&tagKeys=".to_string(),
                format!("x={}", "y".repeat(rng.gen_range(100..8000))),
                "imagePipelineArn=a+b%20c".to_string(),
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDDEFAULT%2F20260101%2Fus-east-1%2Fimagebuilder%2Faws4_request&X-Amz-Signature=00".to_string(),
            ];
            let extra = choices[rng.gen_range(0..choices.len())].clone();
            req.path = match query {
                Some(q) => format!("{path}?{q}&{extra}"),
                None => format!("{path}?{extra}"),
            };
            "odd-query"
        }
        _ => {
            let headers: Vec<(String, String)> = match rng.gen_range(0..10) {
                0 => vec![("Content-Type".into(), "text/plain".into())],
                1 => vec![("Content-Type".into(), "application/x-amz-json-1.1".into())],
                2 => vec![("X-Amz-Target".into(), "ImageBuilder.GetComponent".into())],
                3 => vec![("X-Fuzz".into(), "v".repeat(rng.gen_range(1000..20_000)))],
                4 => (0..rng.gen_range(20..90))
                    .map(|i| (format!("X-Fuzz-{i}"), "v".into()))
                    .collect(),
                5 => vec![("X-Fuzz".into(), "é\u{7f}\u{1}".into())],
                6 => vec![("Content-Encoding".into(), "gzip".into())],
                7 => vec![("Content-Length".into(), "5".into())],
                8 => vec![("Host".into(), "example.invalid".into())],
                _ => vec![("X-Amzn-RequestId".into(), "forged".into())],
            };
            req.headers.extend(headers);
            "odd-headers"
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The SigV4 headers

fn remove_header(req: &mut Request, name: &str) {
    req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
}

fn header_mut<'a>(req: &'a mut Request, name: &str) -> Option<&'a mut String> {
    req.headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Mutates the signed request's `Authorization` and `X-Amz-Date`; re-signing with another
/// scope or time is done by the caller (see `Resign`).
pub fn auth(req: &mut Request, rng: &mut StdRng) -> &'static str {
    req.signed = false;
    match rng.gen_range(0..9) {
        0 => {
            remove_header(req, "authorization");
            remove_header(req, "x-amz-date");
            "auth-missing"
        }
        1 => {
            let choices = [
                String::new(),
                "garbage".into(),
                "AWS4-HMAC-SHA256".into(),
                "Bearer token".into(),
                "AWS4-HMAC-SHA256 Credential=".into(),
                "AWS4-HMAC-SHA256 Credential=AKIDDEFAULT/20260101/us-east-1/imagebuilder/aws4_request, SignedHeaders=host, Signature=zz".into(),
                "AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=;;;, Signature=".into(),
                "AWS4-HMAC-SHA256 Credential=AKIDDEFAULT/20260101/us-east-1/imagebuilder/aws4_request/extra/parts, SignedHeaders=host, Signature=00".into(),
                "AWS4-HMAC-SHA256 Crédential=ÄKID/é/ü/imagebuilder/aws4_request".into(),
                format!("AWS4-HMAC-SHA256 Credential={}", "A".repeat(rng.gen_range(1000..16_000))),
                (0..rng.gen_range(1..300))
                    .map(|_| rng.gen_range(0x20u8..0x7f) as char)
                    .collect(),
            ];
            let v = choices[rng.gen_range(0..choices.len())].clone();
            remove_header(req, "authorization");
            req.headers.push(("Authorization".into(), v));
            "auth-garbage"
        }
        2 => edit_authorization(req, rng, |v, rng| {
            let edits = [
                ("/imagebuilder/", "/s3/"),
                ("/aws4_request", "/aws4_requesx"),
                ("/us-east-1/", "/xx-nowhere-1/"),
                ("/us-east-1/", "//"),
                ("Credential=", "Credential=AKIDUNKNOWN"),
                ("Credential=", "Credential=/"),
                ("AWS4-HMAC-SHA256", "aws4-hmac-sha256"),
                ("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
            ];
            let (from, to) = edits[rng.gen_range(0..edits.len())];
            *v = v.replacen(from, to, 1);
            "auth-wrong-scope"
        }),
        3 => edit_authorization(req, rng, |v, rng| {
            // The credential's date: not the request's date, or not a date.
            let dates = ["20000101", "29991231", "2026-01-01", "99999999", ""];
            let d = dates[rng.gen_range(0..dates.len())];
            if let Some(start) = v.find("Credential=") {
                let rest = &v[start..];
                if let Some(slash) = rest.find('/') {
                    let from = start + slash + 1;
                    if let Some(len) = v[from..].find('/') {
                        v.replace_range(from..from + len, d);
                    }
                }
            }
            "auth-wrong-credential-date"
        }),
        4 => {
            let dates = [
                "",
                "garbage",
                "20000101T000000Z",
                "29991231T235959Z",
                "20261305T256161Z",
                "Sat, 05 Dec 2026 07:00:00 GMT",
            ];
            let d = dates[rng.gen_range(0..dates.len())].to_string();
            match header_mut(req, "x-amz-date") {
                Some(v) => *v = d,
                None => req.headers.push(("X-Amz-Date".into(), d)),
            }
            "auth-wrong-date"
        }
        5 => edit_authorization(req, rng, |v, rng| {
            if let Some(pos) = v.find("Signature=") {
                let sig_start = pos + "Signature=".len();
                match rng.gen_range(0..4) {
                    0 if v.len() > sig_start => {
                        let i = rng.gen_range(sig_start..v.len());
                        let flipped = if &v[i..i + 1] == "0" { "1" } else { "0" };
                        v.replace_range(i..i + 1, flipped);
                    }
                    1 => v.truncate(sig_start + (v.len() - sig_start) / 2),
                    2 => *v = v.to_uppercase(),
                    _ => v.truncate(sig_start),
                }
            }
            "auth-bad-signature"
        }),
        6 => edit_authorization(req, rng, |v, _| {
            if let Some(pos) = v.find("SignedHeaders=") {
                let end = v[pos..].find(',').map_or(v.len(), |e| pos + e);
                v.replace_range(pos..end, "SignedHeaders=host;x-not-sent");
            }
            "auth-signed-header-missing"
        }),
        7 => {
            let first = header_mut(req, "authorization")
                .cloned()
                .unwrap_or_default();
            req.headers.push(("Authorization".into(), first));
            "auth-duplicate"
        }
        _ => edit_authorization(req, rng, |v, _| {
            *v = v.replace(", ", ",");
            "auth-no-spaces"
        }),
    }
}

fn edit_authorization(
    req: &mut Request,
    rng: &mut StdRng,
    f: impl FnOnce(&mut String, &mut StdRng) -> &'static str,
) -> &'static str {
    match header_mut(req, "authorization") {
        Some(v) => f(v, rng),
        None => "none",
    }
}
