//! CopyFile, MoveFile, CopyFolder and MoveFolder.

use super::*;

#[test]
fn copy_file() {
    let f = Fixture::new();
    f.write("src/a.log", "A");
    f.write("src/b.log", "B");
    f.write("src/c.txt", "C");
    f.write("src/.hidden.log", "H");
    fs::create_dir_all(f.p("src/dir.log")).unwrap();
    f.ok(
        CopyFile,
        "- {source: /src/a.log, destination: /dst/renamed.txt}\n- {source: /src/c.txt, destination: /dst/}",
    );
    assert_eq!(f.read("dst/renamed.txt"), "A");
    assert_eq!(f.read("dst/c.txt"), "C");
    assert_eq!(f.read("src/a.log"), "A");
    // An existing folder without a trailing / receives the file under its name.
    f.ok(
        CopyFile,
        "- {source: /src/c.txt, destination: /src/dir.log}",
    );
    assert_eq!(f.read("src/dir.log/c.txt"), "C");

    // Wildcard: matching files (folders skipped, dot files matched) into a folder.
    f.ok(CopyFile, "- {source: '/src/*.log', destination: /logs}");
    assert_eq!(f.read("logs/a.log"), "A");
    assert_eq!(f.read("logs/b.log"), "B");
    assert_eq!(f.read("logs/.hidden.log"), "H");
    assert!(!f.exists("logs/c.txt") && !f.exists("logs/dir.log"));

    // Overwrite by default; not with overwrite: false.
    f.write("src/a.log", "A2");
    f.ok(
        CopyFile,
        "- {source: /src/a.log, destination: /dst/renamed.txt}",
    );
    assert_eq!(f.read("dst/renamed.txt"), "A2");
    assert_eq!(
        f.fails(
            CopyFile,
            "- {source: /src/b.log, destination: /dst/renamed.txt, overwrite: false}"
        ),
        "inputs[0]: /dst/renamed.txt: the file already exists and overwrite is false"
    );
    assert_eq!(f.read("dst/renamed.txt"), "A2");

    let cases: &[(&str, &str)] = &[
        (
            "- {source: /src/nope, destination: /x}",
            "inputs[0]: /src/nope: no such file",
        ),
        (
            "- {source: '/src/*.none', destination: /x/}",
            "inputs[0]: /src/*.none: no file matches",
        ),
        (
            "- {source: '/s*/a.log', destination: /x/}",
            "inputs[0]: source `/s*/a.log`: wildcards are accepted only after the last /",
        ),
        (
            "- {source: '/nodir/*', destination: /x/}",
            "inputs[0]: /nodir: no such folder",
        ),
        (
            "- {source: /src/dir.log, destination: /x}",
            "inputs[0]: /src/dir.log: is a folder, not a file",
        ),
        (
            "- {source: /src/a.log, destination: /src/a.log}",
            "inputs[0]: /src/a.log: source and destination are the same file",
        ),
        (
            "- {source: /src/a.log, destination: /src/, overwrite: true}",
            "same file",
        ),
        (
            "- {source: '/src/[', destination: /x/}",
            "source `[` is not a valid pattern",
        ),
    ];
    for (src, want) in cases {
        let err = f.fails(CopyFile, src);
        assert!(err.contains(want), "{src}: {err}");
    }
    assert_eq!(f.read("src/a.log"), "A2");
}

#[test]
fn move_file() {
    let f = Fixture::new();
    f.write("src/a.log", "A");
    f.write("src/b.log", "B");
    f.write("t.txt", "T");
    std::os::unix::fs::symlink("/t.txt", f.p("src/link")).unwrap();
    f.ok(
        MoveFile,
        "- {source: /src/a.log, destination: /dst/moved}\n- {source: /src/link, destination: /dst/}",
    );
    assert_eq!(f.read("dst/moved"), "A");
    assert!(!f.exists("src/a.log"));
    // The link itself moved; what it points to stayed.
    assert_eq!(
        fs::read_link(f.p("dst/link")).unwrap(),
        PathBuf::from("/t.txt")
    );
    assert_eq!(f.read("t.txt"), "T");

    f.write("src/a.log", "A2");
    f.write("dst/a.log", "old");
    assert_eq!(
        f.fails(
            MoveFile,
            "- {source: '/src/*.log', destination: /dst/, overwrite: false}\n"
        ),
        "inputs[0]: /dst/a.log: the file already exists and overwrite is false"
    );
    // Nothing moved: every match is checked first.
    assert!(f.exists("src/a.log") && f.exists("src/b.log") && !f.exists("dst/b.log"));
    f.ok(MoveFile, "- {source: '/src/*.log', destination: /dst/}");
    assert_eq!(f.read("dst/a.log"), "A2");
    assert_eq!(f.read("dst/b.log"), "B");
    assert!(!f.exists("src/a.log") && !f.exists("src/b.log"));
    assert_eq!(
        f.fails(MoveFile, "- {source: /src/a.log, destination: /x}"),
        "inputs[0]: /src/a.log: no such file"
    );
}

#[test]
fn copy_and_move_folders() {
    let f = Fixture::new();
    f.write("src/tree/a.txt", "A");
    f.write("src/tree/sub/b.txt", "B");
    fs::set_permissions(f.p("src/tree/sub"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("/etc", f.p("src/tree/etc-link")).unwrap();
    f.write("src/other/o.txt", "O");

    f.ok(
        CopyFolder,
        "- {source: /src/tree, destination: /copy/}\n- {source: /src/tree, destination: /named}",
    );
    for base in ["copy/tree", "named"] {
        assert_eq!(f.read(&format!("{base}/a.txt")), "A");
        assert_eq!(f.read(&format!("{base}/sub/b.txt")), "B");
        assert_eq!(f.mode(&format!("{base}/sub")), 0o750);
        // Links are copied as links, never followed.
        assert_eq!(
            fs::read_link(f.p(&format!("{base}/etc-link"))).unwrap(),
            PathBuf::from("/etc")
        );
    }
    assert_eq!(
        f.fails(
            CopyFolder,
            "- {source: /src/tree, destination: /named, overwrite: false}"
        ),
        "inputs[0]: /named: the destination already exists and overwrite is false"
    );
    // overwrite (default): the destination is replaced.
    f.write("named/stale.txt", "S");
    f.ok(CopyFolder, "- {source: /src/tree, destination: /named}");
    assert!(!f.exists("named/stale.txt"));
    assert_eq!(f.read("named/a.txt"), "A");

    // Wildcards copy every matching folder into the destination.
    f.write("src/file-not-folder", "x");
    f.ok(CopyFolder, "- {source: '/src/*', destination: /all}");
    assert_eq!(f.read("all/tree/a.txt"), "A");
    assert_eq!(f.read("all/other/o.txt"), "O");
    assert!(!f.exists("all/file-not-folder"));

    let cases: &[(&str, &str)] = &[
        ("- {source: /src/tree, destination: /src/tree/inner}", "inputs[0]: /src/tree/inner: the destination is the source folder /src/tree or inside it"),
        ("- {source: /src/tree, destination: /src/tree}", "the destination is the source folder"),
        ("- {source: /src/tree, destination: /src}", "inputs[0]: /src: the destination contains the source folder /src/tree"),
        ("- {source: /missing, destination: /x}", "inputs[0]: /missing: no such folder"),
        ("- {source: /src/file-not-folder, destination: /x}", "inputs[0]: /src/file-not-folder: is not a folder"),
        ("- {source: '/src/zz*', destination: /x}", "inputs[0]: /src/zz*: no folder matches"),
        ("- {source: /, destination: /x}", "the target's root folder"),
    ];
    for (src, want) in cases {
        let err = f.fails(CopyFolder, src);
        assert!(err.contains(want), "{src}: {err}");
    }
    assert_eq!(f.read("src/tree/a.txt"), "A");

    f.ok(MoveFolder, "- {source: /src/tree, destination: /moved/}\n- {source: /src/other, destination: /renamed}");
    assert_eq!(f.read("moved/tree/sub/b.txt"), "B");
    assert_eq!(f.read("renamed/o.txt"), "O");
    assert!(!f.exists("src/tree") && !f.exists("src/other"));
    assert_eq!(
        f.fails(
            MoveFolder,
            "- {source: /moved/tree, destination: /renamed, overwrite: false}"
        ),
        "inputs[0]: /renamed: the destination already exists and overwrite is false"
    );
    f.ok(MoveFolder, "- {source: /moved/tree, destination: /renamed}");
    assert!(!f.exists("renamed/o.txt"));
    assert_eq!(f.read("renamed/a.txt"), "A");
}
