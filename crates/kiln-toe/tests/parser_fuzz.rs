//! Property tests of the document parser and validator: whatever the input, `document::parse`
//! answers (never panics), and an error is a non-empty list of problems, each with a message
//! that says something and, inside a phase, the line it is on.
//!
//! (a) arbitrary bytes, arbitrary UTF-8 and YAML-token soup; (b) every truncation of every
//! corpus component document; (c) structured documents from a small grammar of plausible keys
//! and values, serialized by `kiln_toe::yaml`; (d) `Engine::validate` on the same documents.

use kiln_toe::actions::ActionKind;
use kiln_toe::document::{parse, DocumentError, Platform};
use kiln_toe::engine::{Engine, EngineConfig, Quiet, RunRequest, SourceDocument};
use kiln_toe::target::LocalTarget;
use kiln_toe::yaml::{Mapping, Value};
use proptest::prelude::*;
use std::path::PathBuf;

/// Checks the shape of an error; returns the problems inside a phase that carry no line.
fn check_error(e: &DocumentError, input: &str) -> Vec<String> {
    assert!(
        !e.problems.is_empty(),
        "an error without problems for {input:?}"
    );
    assert!(
        !e.to_string().trim().is_empty(),
        "an empty error message for {input:?}"
    );
    let mut lineless = Vec::new();
    for p in &e.problems {
        assert!(
            !p.message.trim().is_empty(),
            "a problem without a message ({p:?}) for {input:?}"
        );
        assert!(!p.to_string().trim().is_empty());
        if p.phase.is_some() && p.line.is_none() {
            lineless.push(p.to_string());
        }
    }
    lineless
}

fn parse_any(text: &str) -> Vec<String> {
    let mut lineless = Vec::new();
    for platform in [Platform::Linux, Platform::Windows] {
        if let Err(e) = parse(text, platform) {
            lineless.extend(check_error(&e, text));
        }
    }
    lineless
}

/// Cases per property: `KILN_FUZZ_CASES` when set (for a longer hunt), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("KILN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// (a) arbitrary input

/// Pieces of YAML syntax and of component documents, to build inputs that get past the YAML
/// parser more often than random bytes do.
const TOKENS: &[&str] = &[
    "\n",
    "\n  ",
    "\n    ",
    "\n      ",
    "  ",
    " ",
    "- ",
    "-",
    ": ",
    ":",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "|",
    ">",
    "|-",
    "&a ",
    "*a",
    "!!str ",
    "!!int ",
    "!tag ",
    "#",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "? ",
    "<<: ",
    "\t",
    "\\",
    "\r\n",
    "~",
    "null",
    "true",
    "0x1F",
    "1e9",
    "-1",
    "1.0",
    "9999999999999999999999",
    "schemaVersion",
    "phases",
    "steps",
    "name",
    "action",
    "inputs",
    "loop",
    "if",
    "onFailure",
    "timeoutSeconds",
    "maxAttempts",
    "parameters",
    "constants",
    "build",
    "validate",
    "test",
    "ExecuteBash",
    "CreateFile",
    "commands",
    "forEach",
    "for",
    "start",
    "end",
    "updateBy",
    "list",
    "delimiter",
    "{{ ",
    " }}",
    "{{ loop.value }}",
    "{{ build.S.outputs.stdout }}",
    "{{ Par }}",
    "type",
    "string",
    "value",
    "default",
    "é",
    "😀",
    "\u{0}",
    "\u{feff}",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..80).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        parse_any(&text);
    }

    #[test]
    fn arbitrary_utf8_never_panics(text in any::<String>()) {
        parse_any(&text);
    }

    #[test]
    fn yaml_token_soup_never_panics(text in token_soup()) {
        parse_any(&text);
    }
}

// ---------------------------------------------------------------------------------------------
// (b) truncated corpus documents

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

/// Every component document of the corpus (all platforms): (file, text, platform).
fn corpus_components() -> Vec<(String, String, Platform)> {
    let sources = std::fs::read_to_string(corpus().join("SOURCES.tsv")).expect("SOURCES.tsv");
    sources
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols.len() >= 7 && cols[5] == "component").then(|| {
                let text = std::fs::read_to_string(corpus().join(cols[0])).expect(cols[0]);
                let platform = match cols[6] {
                    "Windows" => Platform::Windows,
                    "macOS" | "MacOS" => Platform::MacOs,
                    _ => Platform::Linux,
                };
                (cols[0].to_string(), text, platform)
            })
        })
        .collect()
}

/// Bytes of prefixes parsed per document: the whole test must stay fast in debug builds.
const BUDGET_PER_DOCUMENT: usize = 150_000;

/// Where to cut `text`: every char boundary of a short document; of a long one, the first 64
/// boundaries, then an even sample of line ends (with and without the newline) and of all
/// boundaries, as many as [`BUDGET_PER_DOCUMENT`] allows.
fn cut_points(text: &str) -> Vec<usize> {
    let boundaries: Vec<usize> = (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect();
    let average = (text.len() / 2).max(1);
    let affordable = (BUDGET_PER_DOCUMENT / average).max(128);
    if boundaries.len() <= affordable {
        return boundaries;
    }
    let mut cuts: Vec<usize> = boundaries.iter().copied().take(64).collect();
    let line_ends: Vec<usize> = text
        .match_indices('\n')
        .flat_map(|(i, _)| [i, i + 1])
        .collect();
    let sample = |all: &[usize], n: usize| -> Vec<usize> {
        let step = all.len().div_ceil(n.max(1)).max(1);
        all.iter().copied().step_by(step).collect()
    };
    cuts.extend(sample(&line_ends, affordable / 2));
    cuts.extend(sample(&boundaries, affordable / 2));
    cuts.push(text.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

#[test]
fn every_truncation_of_a_corpus_document_answers() {
    let started = std::time::Instant::now();
    let docs = corpus_components();
    assert!(
        docs.len() >= 67,
        "corpus component documents: {}",
        docs.len()
    );
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let chunks: Vec<&[(String, String, Platform)]> =
        docs.chunks(docs.len().div_ceil(threads)).collect();
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                scope.spawn(move || {
                    let mut parses = 0;
                    let mut lineless = Vec::new();
                    for (file, text, platform) in chunk.iter() {
                        for cut in cut_points(text) {
                            let prefix = &text[..cut];
                            let answer = std::panic::catch_unwind(|| parse(prefix, *platform));
                            match answer {
                                Ok(Ok(_)) => {}
                                Ok(Err(e)) => {
                                    for p in check_error(&e, prefix) {
                                        lineless.push(format!("{file} cut at byte {cut}: {p}"));
                                    }
                                }
                                Err(_) => {
                                    panic!("parse panicked on {file} cut at byte {cut}: {prefix:?}")
                                }
                            }
                            parses += 1;
                        }
                    }
                    (parses, lineless)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let parses: usize = results.iter().map(|r| r.0).sum();
    let mut lineless: Vec<String> = results.into_iter().flat_map(|r| r.1).collect();
    eprintln!(
        "{} documents, {parses} truncations, {:?}",
        docs.len(),
        started.elapsed()
    );
    lineless.sort();
    lineless.dedup();
    assert!(
        lineless.is_empty(),
        "{} problems inside a phase without a line, e.g.:\n{}",
        lineless.len(),
        lineless
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// (c) structured documents

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Number(i.into())),
        (-5i64..20).prop_map(|i| Value::Number(i.into())),
        any::<f64>().prop_map(|f| Value::Number(f.into())),
        prop::sample::select(vec![
            "",
            "x",
            "1.0",
            "build",
            "echo hi",
            "{{ Par }}",
            "{{ Missing }}",
            "{{ loop.value }}",
            "{{ loop.index }}",
            "{{ build.S.outputs.stdout }}",
            "{{ nope.S.outputs.stdout }}",
            "{{ build.S.inputs[0].path }}",
            "{{",
            "}}",
            "{{}}",
            "a,b,c",
            "/tmp/x",
            "Abort",
            "multi\nline\n",
            "é😀",
            "{{ aws:ssm:resolve(Par) }}",
        ])
        .prop_map(s),
        "[a-zA-Z0-9_{} .:-]{0,12}".prop_map(Value::String),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|kv| { Value::Mapping(kv.into_iter().collect::<Mapping>()) }),
        ]
    })
}

/// Keys: the real ones of every level, near misses and noise.
fn key() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "schemaVersion",
            "phases",
            "steps",
            "name",
            "action",
            "inputs",
            "loop",
            "if",
            "onFailure",
            "timeoutSeconds",
            "maxAttempts",
            "parameters",
            "constants",
            "description",
            "disableLogging",
            "commands",
            "path",
            "content",
            "type",
            "value",
            "default",
            "allowedValues",
            "forEach",
            "for",
            "start",
            "end",
            "updateBy",
            "list",
            "delimiter",
            "and",
            "or",
            "not",
            "stringEquals",
            "numberEquals",
            "binaryExists",
            "onfailure",
            "Phases",
            "step",
            "",
        ])
        .prop_map(s),
        scalar(),
    ]
}

/// A value of a given kind, or (sometimes) anything at all.
fn or_any<S: Strategy<Value = Value> + 'static>(good: S) -> BoxedStrategy<Value> {
    prop_oneof![12 => good.boxed(), 1 => any_value().boxed()].boxed()
}

/// A mapping holding some of `entries` (each present or not) and maybe a stray key.
fn mapping(entries: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    mapping_with(entries, 4)
}

/// [`mapping`] where each entry is present `present` times out of `present + 1`.
fn mapping_with(
    entries: Vec<(&'static str, BoxedStrategy<Value>)>,
    present: u32,
) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(Value, Value)>>> = entries
        .into_iter()
        .map(|(k, v)| {
            prop_oneof![1 => Just(None), present => v.prop_map(move |v| Some((s(k), v)))].boxed()
        })
        .collect();
    (parts, prop::option::weighted(0.05, (key(), any_value())))
        .prop_map(|(parts, extra)| {
            let mut m: Mapping = parts.into_iter().flatten().collect();
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Mapping(m)
        })
        .boxed()
}

fn action_name() -> impl Strategy<Value = Value> {
    let mut names: Vec<&'static str> = ActionKind::ALL.iter().map(|a| a.name()).collect();
    names.extend(["FakeAction", "executebash", "Execute Bash", ""]);
    prop::sample::select(names).prop_map(s)
}

fn inputs() -> BoxedStrategy<Value> {
    let commands = prop::collection::vec(scalar(), 0..3).prop_map(|c| {
        let mut m = Mapping::new();
        m.insert(s("commands"), Value::Sequence(c));
        Value::Mapping(m)
    });
    let file_entries = prop::collection::vec(
        mapping(vec![
            ("path", scalar().boxed()),
            ("content", scalar().boxed()),
            ("source", scalar().boxed()),
            ("destination", scalar().boxed()),
            ("permissions", scalar().boxed()),
            ("recursive", scalar().boxed()),
        ]),
        0..3,
    )
    .prop_map(Value::Sequence);
    or_any(prop_oneof![commands, file_entries])
}

/// An integer in `range`, or anything at all.
fn int(range: std::ops::Range<i64>) -> BoxedStrategy<Value> {
    or_any(range.prop_map(|i| Value::Number(i.into())))
}

fn looping() -> BoxedStrategy<Value> {
    let for_loop = mapping(vec![
        ("start", int(-3i64..5)),
        ("end", int(-3i64..5)),
        ("updateBy", int(-2i64..3)),
    ]);
    let for_each_list = prop::collection::vec(scalar(), 0..4).prop_map(Value::Sequence);
    let for_each_delimited = mapping(vec![
        ("list", scalar().boxed()),
        (
            "delimiter",
            prop::sample::select(vec![",", ",", ";", "", ",,", "\n", "x"])
                .prop_map(s)
                .boxed(),
        ),
    ]);
    let name = prop::option::of(prop::sample::select(vec![
        "L", "my-loop", "bad name", "loop",
    ]));
    let body = prop_oneof![
        for_loop.prop_map(|v| ("for", v)),
        for_each_list.prop_map(|v| ("forEach", v)),
        for_each_delimited.prop_map(|v| ("forEach", v)),
    ];
    or_any((name, body).prop_map(|(name, (k, v))| {
        let mut m = Mapping::new();
        if let Some(n) = name {
            m.insert(s("name"), s(n));
        }
        m.insert(s(k), v);
        Value::Mapping(m)
    }))
}

/// A condition: mostly one operator with its value (and `value` where it takes one).
fn condition() -> BoxedStrategy<Value> {
    let leaf = (
        prop::sample::select(vec![
            "stringEquals",
            "numberEquals",
            "numberLessThan",
            "stringGreaterThan",
            "binaryExists",
            "fileExists",
            "bogusOperator",
        ]),
        scalar(),
        prop::option::weighted(0.8, scalar()),
    )
        .prop_map(|(op, operand, value)| {
            let mut m = Mapping::new();
            m.insert(s(op), operand);
            if let Some(v) = value {
                m.insert(s("value"), v);
            }
            Value::Mapping(m)
        });
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec!["and", "or"]),
                prop::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(op, v)| {
                    let mut m = Mapping::new();
                    m.insert(s(op), Value::Sequence(v));
                    Value::Mapping(m)
                }),
            inner.prop_map(|v| {
                let mut m = Mapping::new();
                m.insert(s("not"), v);
                Value::Mapping(m)
            }),
        ]
    })
    .boxed()
}

fn step_name() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(vec!["S", "S", "Step-1", "step_2", "bad name", "", "loop"])
            .prop_map(s),
        1 => scalar(),
    ]
    .boxed()
}

/// Inputs shaped for `action` most of the time.
fn inputs_for(action: &Value) -> BoxedStrategy<Value> {
    let entries = |keys: &'static [&'static str]| -> BoxedStrategy<Value> {
        prop::collection::vec(
            mapping(keys.iter().map(|k| (*k, scalar().boxed())).collect()),
            1..3,
        )
        .prop_map(Value::Sequence)
        .boxed()
    };
    let shaped: BoxedStrategy<Value> = match action.as_str().unwrap_or("") {
        "ExecuteBash" => prop::collection::vec(scalar(), 0..3)
            .prop_map(|c| {
                let mut m = Mapping::new();
                m.insert(s("commands"), Value::Sequence(c));
                Value::Mapping(m)
            })
            .boxed(),
        "CreateFile" | "AppendFile" => entries(&["path", "content"]),
        "CreateFolder" | "DeleteFile" | "DeleteFolder" | "ReadFile" => entries(&["path"]),
        "CopyFile" | "MoveFile" | "CopyFolder" | "MoveFolder" => {
            entries(&["source", "destination"])
        }
        "SetFilePermissions" | "SetFolderPermissions" => entries(&["path", "permissions"]),
        "WebDownload" | "S3Download" => entries(&["source", "destination"]),
        "Assert" => condition(),
        "Reboot" | "UpdateOS" => Just(Value::Null).boxed(),
        _ => inputs(),
    };
    or_any(shaped)
}

fn step() -> BoxedStrategy<Value> {
    let shaped = or_any(action_name()).prop_flat_map(|action| {
        mapping(vec![
            ("name", step_name()),
            ("action", Just(action.clone()).boxed()),
            ("inputs", inputs_for(&action)),
            ("loop", looping()),
            ("if", or_any(condition())),
            (
                "onFailure",
                or_any(
                    prop::sample::select(vec!["Abort", "Continue", "Ignore", "abort", "Retry"])
                        .prop_map(s),
                ),
            ),
            ("timeoutSeconds", int(-2i64..100_000)),
            ("maxAttempts", int(-1i64..20)),
            (
                "disableLogging",
                or_any(any::<bool>().prop_map(Value::Bool)),
            ),
        ])
    });
    or_any(shaped)
}

fn phase() -> BoxedStrategy<Value> {
    or_any(mapping(vec![
        (
            "name",
            or_any(
                prop::sample::select(vec![
                    "build",
                    "validate",
                    "test",
                    "container-host-test",
                    "deploy",
                ])
                .prop_map(s),
            ),
        ),
        (
            "steps",
            or_any(prop::collection::vec(step(), 1..4).prop_map(Value::Sequence)),
        ),
    ]))
}

fn declarations(value_key: &'static str) -> BoxedStrategy<Value> {
    let one = (
        prop::sample::select(vec!["Par", "Qux", "Par", "Qux", "Missing", "bad name", ""]),
        mapping(vec![
            (
                "type",
                prop::sample::select(vec!["string", "string", "int"])
                    .prop_map(s)
                    .boxed(),
            ),
            (value_key, scalar().boxed()),
            ("description", scalar().boxed()),
        ]),
    )
        .prop_map(|(name, body)| {
            let mut m = Mapping::new();
            m.insert(s(name), body);
            Value::Mapping(m)
        });
    or_any(prop::collection::vec(one, 0..3).prop_map(Value::Sequence))
}

fn document() -> BoxedStrategy<Value> {
    mapping_with(
        vec![
            (
                "schemaVersion",
                or_any(prop_oneof![
                    Just(Value::Number(kiln_toe::yaml::Number::from(1.0))),
                    Just(s("1.0")),
                    Just(Value::Number(2.into())),
                ]),
            ),
            ("name", scalar().boxed()),
            ("description", scalar().boxed()),
            ("parameters", declarations("default")),
            ("constants", declarations("value")),
            (
                "phases",
                or_any(prop::collection::vec(phase(), 1..3).prop_map(Value::Sequence)),
            ),
        ],
        9,
    )
}

/// A valid document: a few of the phases, each with steps of harmless actions, with or
/// without loops, conditions and the other step settings.
fn valid_document() -> BoxedStrategy<Value> {
    let action = prop_oneof![
        prop::collection::vec(
            prop::sample::select(vec!["echo hi", "echo {{ Par }}", "echo {{ Qux }}", "true"]),
            1..3
        )
        .prop_map(|c| {
            let mut m = Mapping::new();
            m.insert(
                s("commands"),
                Value::Sequence(c.into_iter().map(s).collect()),
            );
            ("ExecuteBash", Value::Mapping(m))
        }),
        Just(("CreateFile", yaml("[{path: /tmp/f, content: x}]"))),
        Just(("CreateFolder", yaml("[{path: /tmp/d}]"))),
        Just(("Assert", yaml("{stringEquals: a, value: a}"))),
    ];
    let looping = prop::option::of(prop::sample::select(vec![
        "{for: {start: 0, end: 2, updateBy: 1}}",
        "{name: L1, forEach: [a, b]}",
        "{forEach: {list: 'a,b', delimiter: ','}}",
    ]));
    let condition = prop::option::of(prop::sample::select(vec![
        "{stringEquals: a, value: a}",
        "{not: {binaryExists: nosuchbinary}}",
        "{and: [{numberEquals: 1, value: 1}, {stringEquals: '{{ Par }}', value: x}]}",
    ]));
    let step = (
        action,
        looping,
        condition,
        prop::option::of(prop::sample::select(vec!["Abort", "Continue", "Ignore"])),
        prop::option::of(1i64..1000),
        prop::option::of(1i64..5),
    )
        .prop_map(
            |((action, inputs), looping, condition, on_failure, timeout, attempts)| {
                let mut m = Mapping::new();
                m.insert(s("action"), s(action));
                m.insert(s("inputs"), inputs);
                if let Some(l) = looping {
                    m.insert(s("loop"), yaml(l));
                }
                if let Some(c) = condition {
                    m.insert(s("if"), yaml(c));
                }
                if let Some(o) = on_failure {
                    m.insert(s("onFailure"), s(o));
                }
                if let Some(t) = timeout {
                    m.insert(s("timeoutSeconds"), Value::Number(t.into()));
                }
                if let Some(a) = attempts {
                    m.insert(s("maxAttempts"), Value::Number(a.into()));
                }
                m
            },
        );
    let steps = prop::collection::vec(step, 1..4).prop_map(|steps| {
        Value::Sequence(
            steps
                .into_iter()
                .enumerate()
                .map(|(i, mut m)| {
                    m.insert(s("name"), s(&format!("Step{i}")));
                    Value::Mapping(m)
                })
                .collect(),
        )
    });
    let phases = prop::collection::vec(
        (
            prop::sample::select(vec!["build", "validate", "test"]),
            steps,
        ),
        1..4,
    )
    .prop_map(|phases| {
        let mut seen = std::collections::HashSet::new();
        Value::Sequence(
            phases
                .into_iter()
                .filter(|(name, _)| seen.insert(*name))
                .map(|(name, steps)| {
                    let mut m = Mapping::new();
                    m.insert(s("name"), s(name));
                    m.insert(s("steps"), steps);
                    Value::Mapping(m)
                })
                .collect(),
        )
    });
    phases
        .prop_map(|phases| {
            let mut doc = yaml(
                "{schemaVersion: 1.0, name: doc, parameters: [{Par: {type: string, default: x}}], \
                 constants: [{Qux: {type: string, value: y}}]}",
            );
            doc.as_mapping_mut().unwrap().insert(s("phases"), phases);
            doc
        })
        .boxed()
}

fn yaml(text: &str) -> Value {
    kiln_toe::yaml::from_str(text).unwrap()
}

/// One random change somewhere in a document: a node replaced, a key removed or added.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    RemoveKey(usize),
    AddKey(Value, Value),
}

fn mutation() -> impl Strategy<Value = (usize, Mutation)> {
    (
        any::<usize>(),
        prop_oneof![
            any_value().prop_map(Mutation::Replace),
            any::<usize>().prop_map(Mutation::RemoveKey),
            (key(), any_value()).prop_map(|(k, v)| Mutation::AddKey(k, v)),
        ],
    )
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Sequence(items) => items.iter().map(count_nodes).sum(),
        Value::Mapping(m) => m.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Applies `m` to the node numbered `*at` in preorder; true once applied.
fn apply(v: &mut Value, at: &mut usize, m: &Mutation) -> bool {
    if *at == 0 {
        match m {
            Mutation::Replace(new) => *v = new.clone(),
            Mutation::RemoveKey(i) => {
                if let Value::Mapping(map) = v {
                    if !map.is_empty() {
                        let k = map.keys().nth(i % map.len()).cloned().unwrap();
                        map.remove(&k);
                    }
                }
            }
            Mutation::AddKey(k, new) => {
                if let Value::Mapping(map) = v {
                    map.insert(k.clone(), new.clone());
                } else {
                    *v = new.clone();
                }
            }
        }
        return true;
    }
    *at -= 1;
    match v {
        Value::Sequence(items) => items.iter_mut().any(|c| apply(c, at, m)),
        Value::Mapping(map) => map.values_mut().any(|c| apply(c, at, m)),
        _ => false,
    }
}

/// A valid document with up to two random changes.
fn mutated_document() -> BoxedStrategy<Value> {
    (valid_document(), prop::collection::vec(mutation(), 0..3))
        .prop_map(|(mut doc, mutations)| {
            for (at, m) in mutations {
                let mut at = at % count_nodes(&doc);
                apply(&mut doc, &mut at, &m);
            }
            doc
        })
        .boxed()
}

/// Grammar-built documents (mostly broken somewhere) and mutated valid ones, half and half.
fn any_document() -> BoxedStrategy<Value> {
    prop_oneof![document(), mutated_document()].boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn structured_documents_answer_with_lines_inside_phases(doc in any_document()) {
        let text = kiln_toe::yaml::to_string(&doc).expect("serialize");
        let lineless = parse_any(&text);
        prop_assert!(
            lineless.is_empty(),
            "problems inside a phase without a line: {lineless:?}\n--- document ---\n{text}"
        );
    }

    /// JSON is YAML too (flow style, on one line or pretty-printed); documents whose keys are
    /// all strings and numbers all finite can be written as JSON.
    #[test]
    fn structured_documents_as_json_answer_with_lines_inside_phases(
        doc in any_document(),
        pretty in any::<bool>(),
    ) {
        let json = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) };
        if let Ok(text) = json {
            let lineless = parse_any(&text);
            prop_assert!(
                lineless.is_empty(),
                "problems inside a phase without a line: {lineless:?}\n--- document ---\n{text}"
            );
        }
    }

    #[test]
    fn engine_validate_never_panics(
        doc in any_document(),
        params in prop::collection::vec(
            (prop::sample::select(vec!["Par", "Qux", "Missing", ""]), "[a-z{} ]{0,6}"),
            0..3,
        ),
    ) {
        let text = kiln_toe::yaml::to_string(&doc).expect("serialize");
        let target = LocalTarget::host();
        let config = EngineConfig::default();
        let parameters: Vec<(String, String)> =
            params.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let request = RunRequest {
            documents: vec![SourceDocument {
                name: "fuzz.yaml".into(),
                text,
                parameters: parameters.clone(),
            }],
            phases: None,
            parameters,
            execution_id: None,
            log_directory: std::env::temp_dir().join("kiln-parser-fuzz-unused"),
            state_directory: None,
        };
        let answer = Engine::new(&target, &config, &Quiet).validate(&request);
        if let Err(e) = answer {
            prop_assert!(!e.to_string().trim().is_empty());
        }
    }
}

/// The generator reaches the rules inside phases (and sometimes makes a valid document), so
/// the properties above test something.
#[test]
fn structured_generator_reaches_inside_phases() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = any_document();
    let (mut ok, mut phase_problems, mut other) = (0, 0, 0);
    let mut messages = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..1000 {
        let doc = strategy.new_tree(&mut runner).unwrap().current();
        let text = kiln_toe::yaml::to_string(&doc).unwrap();
        match parse(&text, Platform::Linux) {
            Ok(_) => ok += 1,
            Err(e) if e.problems.iter().any(|p| p.phase.is_some()) => {
                phase_problems += 1;
                for p in e.problems.iter().filter(|p| p.phase.is_some()) {
                    let key: String = p.message.chars().take(40).collect();
                    *messages.entry(key).or_default() += 1;
                }
            }
            Err(e) => {
                other += 1;
                for p in &e.problems {
                    let key: String = p.message.chars().take(40).collect();
                    *messages.entry(format!("(top) {key}")).or_default() += 1;
                }
            }
        }
    }
    eprintln!("ok {ok}, with problems in a phase {phase_problems}, other errors {other}");
    eprintln!("distinct in-phase messages: {}", messages.len());
    for (m, n) in &messages {
        eprintln!("{n:>5} {m}");
    }
    assert!(
        phase_problems >= 100,
        "too few documents with problems inside a phase"
    );
    assert!(ok >= 50, "too few valid documents: {ok}");
}

/// A UTF-8 byte order mark before the first key (what Windows editors and PowerShell 5's
/// `Out-File -Encoding utf8` write) is not part of the document: YAML 1.2 allows it at the start
/// of a stream and AWSTOE reads such files. The libyaml-derived parser misreads it when the mapping has more
/// than one key ("deserializing from YAML containing more than one document is not supported").
#[test]
fn a_leading_byte_order_mark_is_accepted() {
    let doc = "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        \
               action: ExecuteBash\n        inputs: {commands: [echo hi]}\n";
    assert!(parse(doc, Platform::Linux).is_ok());
    let with_bom = format!("\u{feff}{doc}");
    if let Err(e) = parse(&with_bom, Platform::Linux) {
        panic!("a document with a byte order mark is rejected: {e}");
    }
}

/// A tab after `key:` is separation white space (YAML 1.2 s-separate-in-line); the YAML crate
/// reads it, but yaml-rust2 0.13, which `lines.rs` uses to find lines, refuses it ("':' must be
/// followed by a valid YAML whitespace"), so the line index is empty and every problem of the
/// document loses its line.
#[test]
fn a_tab_after_a_colon_keeps_lines() {
    for text in [
        "schemaVersion:\t1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: Bogus\n",
        "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name:\tS\n        action: Bogus\n",
    ] {
        let e = parse(text, Platform::Linux).expect_err("unknown action");
        assert!(
            e.problems.iter().all(|p| p.line == Some(6)),
            "{text:?}: {:?}",
            e.problems
        );
    }
}
