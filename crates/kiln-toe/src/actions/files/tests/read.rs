//! ListFiles and ReadFile.

use super::*;

#[test]
fn list_files() {
    let f = Fixture::new();
    for name in ["d/a.log", "d/b.txt", "d/sub/c.log", "d/sub/deep/e.log"] {
        f.write(name, "x");
    }
    std::os::unix::fs::symlink("/etc", f.p("d/sub/etc-link")).unwrap();
    let cases: &[(&str, &str)] = &[
        ("- path: /d", "/d/a.log,/d/b.txt"),
        ("- {path: /d/, fileNamePattern: '*.log'}", "/d/a.log"),
        (
            "- {path: d, recursive: true}",
            "/d/a.log,/d/b.txt,/d/sub/c.log,/d/sub/deep/e.log,/d/sub/etc-link",
        ),
        (
            "- {path: /d, recursive: true, fileNamePattern: '*.log'}",
            "/d/a.log,/d/sub/c.log,/d/sub/deep/e.log",
        ),
        ("- {path: /d, fileNamePattern: '*.none'}", ""),
        (
            "- {path: /d, fileNamePattern: '*.log'}\n- {path: /d/sub}",
            "/d/a.log\n/d/sub/c.log,/d/sub/etc-link",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(f.out(ListFiles, src, "files"), *want, "{src}");
    }
    assert_eq!(
        f.fails(ListFiles, "- path: /nope"),
        "inputs[0]: /nope: no such folder"
    );
    assert_eq!(
        f.fails(ListFiles, "- path: /d/a.log"),
        "inputs[0]: /d/a.log: is not a folder"
    );
    assert_eq!(
        f.fails(ListFiles, "- {path: /d, recursive: 2}"),
        "inputs[0]: recursive must be true or false, not `2`"
    );
}

#[test]
fn read_file() {
    let f = Fixture::new();
    f.write("a.txt", "line one\nline two\n");
    f.write("b.txt", "B");
    std::os::unix::fs::symlink("a.txt", f.p("link")).unwrap();
    assert_eq!(
        f.out(ReadFile, "- path: /a.txt", "content"),
        "line one\nline two\n"
    );
    assert_eq!(
        f.out(ReadFile, "- path: /link", "content"),
        "line one\nline two\n"
    );
    assert!(
        f.console.texts().is_empty(),
        "printFileContent defaults to false"
    );
    assert_eq!(
        f.out(
            ReadFile,
            "- {path: /b.txt, printFileContent: true}\n- path: /b.txt",
            "content"
        ),
        "B\nB"
    );
    assert_eq!(f.console.texts(), vec!["B".to_string()]);
    f.ok(
        CreateFile,
        "- {path: /w.txt, content: 'wide ü', encoding: utf-16-BE}",
    );
    assert_eq!(
        f.out(ReadFile, "- {path: /w.txt, encoding: UTF16-be}", "content"),
        "wide ü"
    );
    assert_eq!(
        f.fails(ReadFile, "- {path: /w.txt}"),
        "inputs[0]: /w.txt: the file is not valid UTF-8 text"
    );
    fs::write(f.p("bin"), [0xFF, 0xFE, 0xFD]).unwrap();
    assert_eq!(
        f.fails(ReadFile, "- path: /bin"),
        "inputs[0]: /bin: the file is not valid UTF-8 text"
    );
    assert_eq!(
        f.fails(ReadFile, "- path: /b.txt\n- path: /none"),
        "inputs[1]: /none: no such file"
    );
    assert_eq!(
        f.fails(ReadFile, "- path: /scratch"),
        "inputs[0]: /scratch: is a folder, not a file"
    );
}
