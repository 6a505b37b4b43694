//! Word expansion, beyond BuildKit's data files (`tests/buildkit.rs`): the cases of BuildKit's
//! `TestProcessWithMatches` and `TestProcessWithMatchesPlatform` (same inputs, same results),
//! then the escape character, word splitting and here-document bodies.

use kiln_dockerfile::expand::{expand, expand_heredoc, expand_words};

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// (input, variables, expected result or `None` for an error).
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

const FOO_BAR: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];

const PROCESS_WITH_MATCHES: &[Case] = &[
    ("x", &[("DUMMY", "dummy")], Some("x")),
    ("x ${UNUSED}", &[("DUMMY", "dummy")], Some("x ")),
    ("x ${FOO}", &[("FOO", "y")], Some("x y")),
    (
        "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
        FOO_BAR,
        Some("xxx  ccc"),
    ),
    (
        "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
        FOO_BAR,
        Some("xxx bbb ccc"),
    ),
    ("${FOO:-}", FOO_BAR, Some("xxx")),
    ("${FOO:-}", &[], Some("")),
    (
        "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
        FOO_BAR,
        Some("aaa bbb "),
    ),
    (
        "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
        FOO_BAR,
        Some("aaa  "),
    ),
    ("${FOO?aaa}", FOO_BAR, Some("xxx")),
    ("${BAR?bbb}", FOO_BAR, Some("")),
    ("${BAZ?ccc}", FOO_BAR, None),
    ("${FOO:?aaa}", FOO_BAR, Some("xxx")),
    ("${BAR:?bbb}", FOO_BAR, None),
    ("${BAZ:?ccc}", FOO_BAR, None),
    ("${BAZ:?}", FOO_BAR, None),
    ("${FOO=aaa}", FOO_BAR, None),
    ("${FOO=:aaa}", FOO_BAR, None),
    ("${FOO=}", &[], None),
    (
        "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
        &[("FOO", "()[]{}^$.*?|\\x")],
        Some("x"),
    ),
    ("${FOO%%\\**}", &[("FOO", "xx**")], Some("xx")),
    ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y")),
    ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy")),
    ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], Some("xyy")),
    ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy")),
    ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy")),
    ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy")),
    ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy")),
    ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y")),
    (
        "${ABC:-.}${FOO%x}${ABC:-.}",
        &[("FOO", "xxyy")],
        Some(".xxyy."),
    ),
    ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], Some("a")),
    ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy")),
    (
        "${FOO%%$BAR}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("xxyy"),
    ),
    ("${FOO:#}", &[], None),
    ("${FOO:##}", &[], None),
    ("${FOO:%}", &[], None),
    ("${FOO:%%}", &[], None),
    (
        "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
        &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
        Some("/foo.*/*.txt - /foo..*.txt"),
    ),
    (
        "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
        &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
        Some("/tmp/bar.txt - /bar.txt"),
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "/a/foo/b/c.txt"),
            ("NEEDLE", "/?/"),
            ("REPLACEMENT", "/"),
        ],
        Some("/foo/b/c.txt - /foo/c.txt"),
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "http://google.de"),
            ("NEEDLE", "http://"),
            ("REPLACEMENT", "https://"),
        ],
        Some("https://google.de"),
    ),
    (
        "${FOO//\\//\\/}",
        &[("FOO", "/tmp/foo.txt")],
        Some("\\/tmp\\/foo.txt"),
    ),
    (
        "${FOO/$BAR/ww}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("wwxxyy"),
    ),
    ("${FOO//ww}", &[("FOO", "xxyy")], None),
    ("${FOO//}", &[("FOO", "xxyy")], None),
    ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy")),
    ("${FOO///}", &[], Some("")),
];

#[test]
fn buildkit_process_with_matches() {
    let mut failures = Vec::new();
    for (input, vars, expected) in PROCESS_WITH_MATCHES {
        let got = expand(input, '\\', &lookup(vars));
        let ok = match (expected, &got) {
            (None, Err(_)) => true,
            (Some(e), Ok(g)) => e == g,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{input:?} with {vars:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn buildkit_process_with_matches_platform() {
    const RELEASE: &str =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("VERSION", "v1.2.3"),
                ("TARGETOS", "linux"),
                ("TARGETARCH", "arm"),
                ("TARGETVARIANT", "v7"),
            ],
            "something-v1.2.3.linux-arm-v7.tar.gz",
        ),
        (
            &[
                ("VERSION", "v1.2.3"),
                ("TARGETOS", "linux"),
                ("TARGETARCH", "arm64"),
                ("TARGETVARIANT", ""),
            ],
            "something-v1.2.3.linux-arm64.tar.gz",
        ),
        (
            &[
                ("VERSION", "v1.2.3"),
                ("TARGETOS", "linux"),
                ("TARGETARCH", "arm64"),
            ],
            "something-v1.2.3.linux-arm64.tar.gz",
        ),
    ];
    for (vars, expected) in cases {
        assert_eq!(expand(RELEASE, '\\', &lookup(vars)).unwrap(), *expected);
    }
}

#[test]
fn error_messages() {
    let none = lookup(&[]);
    let cases = [
        (
            "'abc",
            "unexpected end of statement while looking for matching single-quote",
        ),
        (
            "\"abc",
            "unexpected end of statement while looking for matching double-quote",
        ),
        ("${abc", "syntax error: missing '}'"),
        ("${}", "syntax error: bad substitution"),
        ("${a:=b}", "unsupported modifier (:=) in substitution"),
        ("${a!}", "unsupported modifier (!) in substitution"),
        (
            "${a#\\x}",
            "invalid pattern (\\x) in substitution: invalid escape '\\x'",
        ),
        ("${a/b", "syntax error: missing '/' in ${}"),
        (
            "${NAME:?set NAME to the release}",
            "NAME: set NAME to the release",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(
            expand(input, '\\', &none),
            Err(message.to_string()),
            "{input}"
        );
    }
}

#[test]
fn backtick_escape_character() {
    let vars = lookup(&[("DIR", "C:\\app")]);
    // With `# escape=``, a backslash is an ordinary character (Windows paths).
    assert_eq!(
        expand("C:\\Users\\$DIR", '`', &vars).unwrap(),
        "C:\\Users\\C:\\app"
    );
    assert_eq!(expand("`$DIR", '`', &vars).unwrap(), "$DIR");
    assert_eq!(expand("\"a``b\"", '`', &vars).unwrap(), "a`b");
}

#[test]
fn words() {
    let vars = lookup(&[("PORTS", "80  443/udp"), ("EMPTY", "")]);
    assert_eq!(
        expand_words("$PORTS 8080", '\\', &vars).unwrap(),
        vec!["80", "443/udp", "8080"]
    );
    assert_eq!(
        expand_words("\"$PORTS\"", '\\', &vars).unwrap(),
        vec!["80  443/udp"]
    );
    assert_eq!(
        expand_words("a\\ b 'c d'", '\\', &vars).unwrap(),
        vec!["a b", "c d"]
    );
    assert!(expand_words("$EMPTY \"\"", '\\', &vars).unwrap().is_empty());
    assert!(expand_words("'open", '\\', &vars).is_err());
}

#[test]
fn heredoc_bodies() {
    let vars = lookup(&[("USER", "kiln")]);
    assert_eq!(
        expand_heredoc(
            "Welcome \"$USER\" (${USER:-nobody})\n\\$HOME stays\n",
            &vars
        )
        .unwrap(),
        "Welcome \"kiln\" (kiln)\n$HOME stays\n"
    );
    assert_eq!(
        expand_heredoc("it's $USER's\n", &vars).unwrap(),
        "it's kiln's\n"
    );
}
