//! `validate` on the cases of `tests/data/validate.txt`.

use std::fs;
use std::path::Path;

use kiln_dockerfile::{parse, validate::validate};

#[test]
fn validate_cases() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/validate.txt");
    let text = fs::read_to_string(path).unwrap();
    let mut cases = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("### ") {
            current = Some((name.trim().to_string(), String::new()));
        } else if let Some(expected) = line.strip_prefix("~~~ ") {
            let (name, body) = current.take().expect("~~~ after ###");
            cases.push((name, body, expected.trim_end().to_string()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
        }
    }
    assert!(cases.len() >= 25, "{}", cases.len());
    let mut failures = Vec::new();
    for (name, dockerfile, expected) in cases {
        let dockerfile = match parse(&dockerfile) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: does not parse: {e}"));
                continue;
            }
        };
        let got = match validate(&dockerfile) {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        if got != expected {
            failures.push(format!("{name}:\n  expected {expected}\n  got      {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
