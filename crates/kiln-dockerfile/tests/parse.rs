//! The parser on data files: `tests/data/parse/<name>.Dockerfile` parsed and dumped must equal
//! `<name>.expected` (run with `KILN_BLESS=1` to rewrite the expectations, then review them),
//! and every case of `tests/data/parse-errors.txt` must fail with exactly its message.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_dockerfile::{parse, Dockerfile};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A readable dump: the stages, and each instruction's line, source and kind.
fn dump(d: &Dockerfile) -> String {
    let mut out = format!("escape {:?}\n", d.escape);
    for arg in &d.global_args {
        out.push_str(&format!("global {arg:?}\n"));
    }
    for stage in &d.stages {
        out.push_str(&format!(
            "stage at line {}: from {:?} name {:?} platform {:?}\n",
            stage.line, stage.from, stage.name, stage.platform
        ));
        for i in &stage.instructions {
            out.push_str(&format!("  {}: {:?}\n    {:?}\n", i.line, i.source, i.kind));
        }
    }
    out
}

#[test]
fn parse_data_files() {
    let dir = data_dir().join("parse");
    let bless = std::env::var_os("KILN_BLESS").is_some();
    let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    entries.sort();
    assert!(entries.len() >= 10);
    let mut failures = Vec::new();
    for path in entries {
        let text = fs::read_to_string(&path).unwrap();
        let got = match parse(&text) {
            Ok(d) => dump(&d),
            Err(e) => format!("error: {e}\n"),
        };
        let expected_path = path.with_extension("expected");
        if bless {
            fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The cases of a `### name` / text / `~~~ expected` file.
pub fn cases(text: &str) -> Vec<(String, String, String)> {
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
    cases
}

#[test]
fn parse_errors() {
    let text = fs::read_to_string(data_dir().join("parse-errors.txt")).unwrap();
    let cases = cases(&text);
    assert!(cases.len() >= 50, "{}", cases.len());
    let mut failures = Vec::new();
    for (name, dockerfile, expected) in cases {
        match parse(&dockerfile) {
            Ok(d) => failures.push(format!(
                "{name}: parsed, expected '{expected}':\n{}",
                dump(&d)
            )),
            Err(e) if e.to_string() == expected => {}
            Err(e) => failures.push(format!("{name}:\n  expected {expected}\n  got      {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
