//! AppendFile, CreateFile, CreateFolder and CreateSymlink.

use super::*;

#[test]
fn create_file_defaults_and_options() {
    let f = Fixture::new();
    f.ok(
        CreateFile,
        "- {path: /new/dir/a.txt, content: hello}\n- path: b.txt",
    );
    assert_eq!(f.read("new/dir/a.txt"), "hello");
    assert_eq!(f.read("b.txt"), "");
    // Default mode: 0666 less the umask, so never more than 0666.
    assert_eq!(f.mode("b.txt") & !0o666, 0);

    f.ok(
        CreateFile,
        "- {path: /b.txt, content: again, permissions: '0640'}",
    );
    assert_eq!(f.read("b.txt"), "again");
    assert_eq!(f.mode("b.txt"), 0o640);
    f.ok(CreateFile, "- {path: /c.txt, permissions: 755}");
    assert_eq!(f.mode("c.txt"), 0o755);

    f.ok(
        CreateFile,
        "- {path: /u16.txt, content: AB, encoding: UTF-16}",
    );
    assert_eq!(fs::read(f.p("u16.txt")).unwrap(), vec![0x41, 0, 0x42, 0]);

    let err = f.fails(
        CreateFile,
        "- {path: /fresh, content: x}\n- {path: /b.txt, content: x, overwrite: false}",
    );
    assert_eq!(
        err,
        "inputs[1]: /b.txt: the file already exists and overwrite is false"
    );
    assert_eq!(f.read("b.txt"), "again");
    assert!(f.exists("fresh"), "entries before the failing one ran");

    let cases: &[(&str, &str)] = &[
        (
            "- {path: /new, content: x}",
            "inputs[0]: /new: is a folder, not a file",
        ),
        (
            "- {path: /d, permissions: abc}",
            "inputs[0]: permissions must be an octal mode such as 0755, not `abc`",
        ),
        (
            "- {path: /d, overwrite: maybe}",
            "inputs[0]: overwrite must be true or false, not `maybe`",
        ),
        ("- {path: /d, encoding: ebcdic}", "not `ebcdic`"),
        (
            "- {path: /d, owner: nobody-here}",
            "inputs[0]: owner `nobody-here`: no such user in the target's /etc/passwd",
        ),
        (
            "- {path: /d, group: nogroup-here}",
            "inputs[0]: group `nogroup-here`: no such group in the target's /etc/group",
        ),
        ("- {path: ''}", "inputs[0]: path ``: the path is empty"),
    ];
    for (src, want) in cases {
        let err = f.fails(CreateFile, src);
        assert!(err.contains(want), "{src}: {err}");
    }
    assert!(!f.exists("d"));
}

#[test]
fn append_file() {
    let f = Fixture::new();
    f.write("a.txt", "one\n");
    f.ok(
        AppendFile,
        "- {path: /a.txt, content: two}\n- {path: a.txt}",
    );
    assert_eq!(f.read("a.txt"), "one\ntwo");
    f.ok(
        CreateFile,
        "- {path: /w.txt, content: A, encoding: utf32-be}",
    );
    f.ok(
        AppendFile,
        "- {path: /w.txt, content: B, encoding: UTF-32-BE}",
    );
    assert_eq!(
        fs::read(f.p("w.txt")).unwrap(),
        vec![0, 0, 0, 0x41, 0, 0, 0, 0x42]
    );
    assert_eq!(
        f.fails(AppendFile, "- {path: /a.txt}\n- {path: /etc/x, content: y}"),
        "inputs[1]: /etc/x: no such file"
    );
    assert!(!f.exists("etc/x"));
    assert_eq!(
        f.fails(AppendFile, "- {path: /scratch}"),
        "inputs[0]: /scratch: is a folder, not a file"
    );
}

#[test]
fn create_folder() {
    let f = Fixture::new();
    f.ok(
        CreateFolder,
        "- {path: /a/b/c/}\n- {path: /p, permissions: '0750'}",
    );
    assert!(f.p("a/b/c").is_dir());
    assert_eq!(f.mode("p"), 0o750);
    f.write("a/b/c/keep", "k");
    // Default overwrite: an existing folder stays, with its contents.
    f.ok(CreateFolder, "- {path: /a/b/c, permissions: 0700}");
    assert_eq!(f.read("a/b/c/keep"), "k");
    assert_eq!(f.mode("a/b/c"), 0o700);
    assert_eq!(
        f.fails(CreateFolder, "- {path: /a/b/c, overwrite: false}"),
        "inputs[0]: /a/b/c: the folder already exists and overwrite is false"
    );
    assert_eq!(
        f.fails(CreateFolder, "- {path: /a/b/c/keep}"),
        "inputs[0]: /a/b/c/keep: exists and is not a folder"
    );
}

#[test]
fn create_symlink() {
    let f = Fixture::new();
    f.write("t.txt", "target");
    f.ok(
        CreateSymlink,
        "- {path: /links/l, target: /t.txt}\n- {path: rel, target: t.txt}",
    );
    assert_eq!(
        fs::read_link(f.p("links/l")).unwrap(),
        PathBuf::from("/t.txt")
    );
    assert_eq!(fs::read_link(f.p("rel")).unwrap(), PathBuf::from("/t.txt"));
    assert_eq!(f.out(ReadFile, "- path: /links/l", "content"), "target");

    f.write("u.txt", "other");
    assert_eq!(
        f.fails(CreateSymlink, "- {path: /links/l, target: /u.txt}"),
        "inputs[0]: /links/l: a link already exists (set force to true to replace it)"
    );
    f.ok(
        CreateSymlink,
        "- {path: /links/l, target: /u.txt, force: true}",
    );
    assert_eq!(
        fs::read_link(f.p("links/l")).unwrap(),
        PathBuf::from("/u.txt")
    );
    assert_eq!(
        f.fails(
            CreateSymlink,
            "- {path: /u.txt, target: /t.txt, force: true}"
        ),
        "inputs[0]: /u.txt: a file or folder that is not a link already exists"
    );
    assert_eq!(
        f.fails(CreateSymlink, "- {path: /l2, target: /missing}"),
        "inputs[0]: /l2: the link target /missing does not exist"
    );
    assert!(!f.exists("l2"));
}
