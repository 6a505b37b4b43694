//! DeleteFile and DeleteFolder.

use super::*;

#[test]
fn delete_file() {
    let f = Fixture::new();
    for name in ["a.log", "b.log", "keep.txt"] {
        f.write(&format!("d/{name}"), name);
    }
    fs::create_dir_all(f.p("d/sub.log")).unwrap();
    f.write("target.txt", "T");
    std::os::unix::fs::symlink("/target.txt", f.p("d/link")).unwrap();
    f.ok(
        DeleteFile,
        "- {path: '/d/*.log'}\n- {path: /d/link}\n- {path: '/d/*.none'}",
    );
    assert!(!f.exists("d/a.log") && !f.exists("d/b.log") && !f.exists("d/link"));
    assert!(f.exists("d/keep.txt") && f.exists("d/sub.log") && f.exists("target.txt"));
    f.ok(DeleteFile, "- path: d/keep.txt");
    assert!(!f.exists("d/keep.txt"));
    assert_eq!(
        f.fails(DeleteFile, "- path: /d/keep.txt"),
        "inputs[0]: /d/keep.txt: no such file"
    );
    assert_eq!(
        f.fails(DeleteFile, "- path: /d/sub.log"),
        "inputs[0]: /d/sub.log: is a folder (use DeleteFolder, or force: true)"
    );
    // force (as AWS's InSpec sample writes it): rm -rf.
    f.write("d/sub.log/inner", "i");
    f.write("e/x.tmp", "x");
    fs::create_dir_all(f.p("e/y.tmp/z")).unwrap();
    f.ok(
        DeleteFile,
        "- {path: '/d/sub.log/', force: true}\n- {path: /d/none, force: true}\n- {path: '/e/*.tmp', force: true}",
    );
    assert!(!f.exists("d/sub.log") && !f.exists("e/x.tmp") && !f.exists("e/y.tmp"));
    assert!(f.exists("d") && f.exists("e"));
    let err = f.fails(DeleteFile, "- {path: /.., force: true}");
    assert!(
        err.contains("refusing to delete the target's root folder"),
        "{err}"
    );
}

#[test]
fn delete_folder() {
    let f = Fixture::new();
    fs::create_dir_all(f.p("empty")).unwrap();
    f.write("full/sub/x", "x");
    f.ok(DeleteFolder, "- path: /empty/");
    assert!(!f.exists("empty"));
    assert_eq!(
        f.fails(DeleteFolder, "- path: /full"),
        "inputs[0]: /full: the folder is not empty (set force to true to delete it with its contents)"
    );
    f.ok(DeleteFolder, "- {path: /full, force: true}");
    assert!(!f.exists("full"));
    let cases: &[(&str, &str)] = &[
        ("- path: /full", "inputs[0]: /full: no such folder"),
        (
            "- {path: /, force: true}",
            "inputs[0]: /: refusing to delete the target's root folder",
        ),
        (
            "- {path: /.., force: true}",
            "refusing to delete the target's root folder",
        ),
    ];
    f.write("file", "f");
    for (src, want) in cases {
        let err = f.fails(DeleteFolder, src);
        assert!(err.contains(want), "{src}: {err}");
    }
    assert_eq!(
        f.fails(DeleteFolder, "- path: /file"),
        "inputs[0]: /file: is not a folder"
    );
    assert!(f.root.is_dir());
}
