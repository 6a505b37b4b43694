//! Parity with BuildKit on its own test data (see `tests/data/buildkit/README.md`): the parser
//! test files, compared in BuildKit's AST dump format, and the shell lexer's `envVarTest` and
//! `wordsTest`.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_dockerfile::expand::{expand, expand_words};
use kiln_dockerfile::{parse, ArgDecl, Command, CopySpec, Dockerfile, Instruction, Kind};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/buildkit")
        .join(path)
}

/// Go's `strconv.Quote`.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// BuildKit's `Node.Dump` of one instruction: `name ["--flags"] "arg" ...`.
fn sexp(name: &str, flags: &[String], args: &[String]) -> String {
    let mut out = name.to_string();
    if !flags.is_empty() {
        let quoted: Vec<String> = flags.iter().map(|f| quote(f)).collect();
        out.push_str(&format!(" [{}]", quoted.join(" ")));
    }
    for arg in args {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

fn command_args(command: &Command) -> Vec<String> {
    match command {
        Command::Shell(s) => vec![s.clone()],
        Command::Exec(v) => v.clone(),
    }
}

fn arg_words(args: &[ArgDecl]) -> Vec<String> {
    args.iter()
        .map(|a| match &a.default {
            Some(d) => format!("{}={d}", a.name),
            None => a.name.clone(),
        })
        .collect()
}

fn pairs(instruction: &Instruction, pairs: &[(String, String)]) -> Vec<String> {
    // BuildKit dumps the legacy `ENV name value` with an empty separator, `name=value` with "=".
    let rest = instruction
        .source
        .split_once(char::is_whitespace)
        .map_or("", |(_, r)| r.trim_start());
    let first = rest.split(char::is_whitespace).next().unwrap_or("");
    let separator = if first.contains('=') { "=" } else { "" };
    pairs
        .iter()
        .flat_map(|(k, v)| [k.clone(), v.clone(), separator.to_string()])
        .collect()
}

fn copy_sexp(name: &str, spec: &CopySpec) -> String {
    let mut flags = Vec::new();
    for (flag, value) in [
        ("from", &spec.from),
        ("chown", &spec.chown),
        ("chmod", &spec.chmod),
    ] {
        if let Some(value) = value {
            flags.push(format!("--{flag}={value}"));
        }
    }
    let mut args = spec.sources.clone();
    args.push(spec.destination.clone());
    sexp(name, &flags, &args)
}

fn instruction_sexp(instruction: &Instruction) -> String {
    match &instruction.kind {
        Kind::Run { command, flags, .. } => {
            let flags: Vec<String> = flags.iter().map(|(k, v)| format!("--{k}={v}")).collect();
            sexp("run", &flags, &command_args(command))
        }
        Kind::Env(p) => sexp("env", &[], &pairs(instruction, p)),
        Kind::Label(p) => sexp("label", &[], &pairs(instruction, p)),
        Kind::Arg(args) => sexp("arg", &[], &arg_words(args)),
        Kind::Workdir(s) => sexp("workdir", &[], std::slice::from_ref(s)),
        Kind::User(s) => sexp("user", &[], std::slice::from_ref(s)),
        Kind::StopSignal(s) => sexp("stopsignal", &[], std::slice::from_ref(s)),
        Kind::Maintainer(s) => sexp("maintainer", &[], std::slice::from_ref(s)),
        Kind::Expose(v) => sexp("expose", &[], v),
        Kind::Volume(v) => sexp("volume", &[], v),
        Kind::Cmd(c) => sexp("cmd", &[], &command_args(c)),
        Kind::Entrypoint(c) => sexp("entrypoint", &[], &command_args(c)),
        Kind::Shell(v) => sexp("shell", &[], v),
        Kind::Healthcheck(None) => sexp("healthcheck", &[], &["NONE".to_string()]),
        Kind::Healthcheck(Some(h)) => {
            let mut args = vec!["CMD".to_string()];
            args.extend(h.test[1..].iter().cloned());
            sexp("healthcheck", &[], &args)
        }
        Kind::Onbuild(trigger) => {
            let inner = parse(&format!("FROM scratch\n{trigger}")).expect("trigger parses");
            let sub = &inner.stages[0].instructions[0];
            format!("onbuild ({})", instruction_sexp(sub))
        }
        Kind::Copy(spec) => copy_sexp("copy", spec),
        Kind::Add(spec) => copy_sexp("add", spec),
        Kind::Environments | Kind::Components => unreachable!("not in a plain Dockerfile"),
    }
}

fn dump(d: &Dockerfile) -> String {
    let mut lines = Vec::new();
    if !d.global_args.is_empty() {
        lines.push(sexp("arg", &[], &arg_words(&d.global_args)));
    }
    for stage in &d.stages {
        let flags: Vec<String> = stage
            .platform
            .iter()
            .map(|p| format!("--platform={p}"))
            .collect();
        let mut args = vec![stage.from.clone()];
        if let Some(name) = &stage.name {
            args.push("AS".to_string());
            args.push(name.clone());
        }
        lines.push(sexp("from", &flags, &args));
        for instruction in &stage.instructions {
            lines.push(instruction_sexp(instruction));
        }
    }
    lines.iter().map(|l| format!("({l})\n")).collect::<String>()
}

/// Test files Kiln reads differently from BuildKit's parser layer, on purpose.
enum Expect {
    /// No FROM in the file (BuildKit's parser layer does not need one): Kiln parses it after a
    /// `FROM scratch` line.
    AddFrom,
    /// Kiln refuses it, as BuildKit's instruction layer does later; the message must contain
    /// this.
    Error(&'static str),
}

fn special(name: &str) -> Option<Expect> {
    Some(match name {
        "json"
        | "jeztah-invalid-json-json-inside-string"
        | "jeztah-invalid-json-json-inside-string-double"
        | "jeztah-invalid-json-single-quotes"
        | "jeztah-invalid-json-unterminated-bracket"
        | "jeztah-invalid-json-unterminated-string" => Expect::AddFrom,
        // `COPY --user=me`: BuildKit's instruction layer says "unknown flag: --user".
        "flags" => Expect::Error("line 3: unknown flag --user for COPY"),
        // A bare `HEALTHCHECK`: "HEALTHCHECK requires at least one argument".
        "health" => Expect::Error("line 4: HEALTHCHECK needs NONE or CMD"),
        "negative-empty_dockerfile" => Expect::Error("line 1: the Dockerfile has no instructions"),
        "negative-env_no_value" => Expect::Error("line 3: ENV PATH has no value"),
        "negative-only_comments" => Expect::Error("line 3: the Dockerfile has no instructions"),
        "negative-shykes-nested-json" => {
            Expect::Error("line 1: CMD: a JSON array must hold only strings")
        }
        _ => return None,
    })
}

#[test]
fn buildkit_parser_test_files() {
    let mut names: Vec<String> = fs::read_dir(data("parser"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 35, "{names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let text = fs::read_to_string(data(&format!("parser/{name}/Dockerfile"))).unwrap();
        let result = fs::read_to_string(data(&format!("parser/{name}/result"))).ok();
        match special(name) {
            Some(Expect::Error(message)) => match parse(&text) {
                Ok(d) => failures.push(format!("{name}: expected an error, got {d:?}")),
                Err(e) if e.to_string().contains(message) => {}
                Err(e) => failures.push(format!("{name}: expected '{message}', got '{e}'")),
            },
            other => {
                let (text, expected) = match other {
                    Some(Expect::AddFrom) => (
                        format!("FROM scratch\n{text}"),
                        format!("(from \"scratch\")\n{}", result.clone().unwrap()),
                    ),
                    _ => (text, result.clone().unwrap()),
                };
                match parse(&text) {
                    Ok(d) => {
                        let got = dump(&d);
                        if got != expected {
                            failures
                                .push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
                        }
                    }
                    Err(e) => failures.push(format!("{name}: {e}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn buildkit_env_var_test() {
    let env = |name: &str| -> Option<String> {
        match name {
            "PWD" => Some("/home".into()),
            "SHELL" => Some("bash".into()),
            "KOREAN" => Some("한국어".into()),
            "NULL" => Some(String::new()),
            _ => None,
        }
    };
    let text = fs::read_to_string(data("envVarTest")).unwrap();
    let mut count = 0;
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "line {}", index + 1);
        let (platform, source, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform == "W" {
            continue; // Windows: variable names are case-insensitive there.
        }
        count += 1;
        let got = expand(source, '\\', &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(value), expected) => value == expected,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {source:?} expected {expected:?}, got {got:?}",
                index + 1
            ));
        }
    }
    assert!(count > 200, "{count}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn buildkit_words_test() {
    let text = fs::read_to_string(data("wordsTest")).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut count = 0;
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            let assignment = assignment.trim_start_matches(' ');
            let (k, v) = assignment.split_once('=').unwrap_or((assignment, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 2, "line {}", index + 1);
        let test = parts[0].trim();
        let expected: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
        let lookup = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        count += 1;
        let got = expand_words(test, '\\', &lookup).unwrap_or_else(|_| vec!["error".to_string()]);
        if got != expected {
            failures.push(format!(
                "line {}: {test:?} expected {expected:?}, got {got:?}",
                index + 1
            ));
        }
    }
    assert!(count > 20, "{count}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
