//! Document paths: splitting and joining them, and no action reaching outside the target's root
//! whatever path it is given.

use super::*;

#[test]
fn paths_split_at_the_last_separator() {
    let cases: &[(&str, &str, &str)] = &[
        ("/a/b/c*", "/a/b", "c*"),
        ("/a/b/", "/a", "b"),
        ("/x", "/", "x"),
        ("x", ".", "x"),
        ("d/x", "d", "x"),
        ("/", "/", ""),
    ];
    for (path, parent, name) in cases {
        assert_eq!(
            split_last(path),
            (parent.to_string(), name.to_string()),
            "{path}"
        );
    }
    assert_eq!(join_doc("/", "a"), "/a");
    assert_eq!(join_doc("/d/", "a"), "/d/a");
    assert_eq!(join_doc("/d", "a"), "/d/a");
}

#[test]
fn paths_never_leave_the_root() {
    let f = Fixture::new();
    let host_passwd = fs::read("/etc/passwd").ok();
    std::os::unix::fs::symlink("/etc", f.p("etc-link")).unwrap();
    fs::create_dir_all(f.p("etc")).unwrap();

    f.ok(
        CreateFile,
        "- {path: ../../etc/passwd, content: 'inside:x:1:1::/:/bin/sh'}",
    );
    assert_eq!(f.read("etc/passwd"), "inside:x:1:1::/:/bin/sh");
    assert_eq!(
        fs::read("/etc/passwd").ok(),
        host_passwd,
        "the host's file is untouched"
    );

    f.ok(
        CreateFile,
        "- {path: /etc-link/kiln-escape-test, content: x}",
    );
    assert_eq!(f.read("etc/kiln-escape-test"), "x");
    assert!(!Path::new("/etc/kiln-escape-test").exists());

    assert_eq!(
        f.out(ListFiles, "- path: /etc-link", "files"),
        "/etc/kiln-escape-test,/etc/passwd"
    );
    f.ok(
        CopyFile,
        "- {source: /etc-link/passwd, destination: /../../copied}",
    );
    assert_eq!(f.read("copied"), "inside:x:1:1::/:/bin/sh");
    f.ok(DeleteFile, "- path: /etc-link/kiln-escape-test");
    assert!(!f.exists("etc/kiln-escape-test"));
    f.ok(DeleteFile, "- path: '/etc-link/pass*'");
    assert!(!f.exists("etc/passwd"));
    assert_eq!(fs::read("/etc/passwd").ok(), host_passwd);

    // A link holding a host path is read inside the root, where that path does not exist.
    let outside = f.outside.join("secret.txt");
    fs::write(&outside, "secret").unwrap();
    std::os::unix::fs::symlink(&outside, f.p("planted")).unwrap();
    assert_eq!(
        f.fails(ReadFile, "- path: /planted"),
        "inputs[0]: /planted: no such file"
    );
    assert_eq!(
        f.fails(AppendFile, "- {path: /planted, content: x}"),
        "inputs[0]: /planted: no such file"
    );
    f.ok(CreateFile, "- {path: /planted, content: mine}");
    assert_eq!(fs::read_to_string(&outside).unwrap(), "secret");
    assert_eq!(f.read(&format!("{}", outside.display())), "mine");
    // DeleteFolder does not follow a link in the last component (nothing outside is hit).
    assert_eq!(
        f.fails(DeleteFolder, "- {path: /etc-link, force: true}"),
        "inputs[0]: /etc-link: is not a folder"
    );
    assert!(f.exists("etc-link") && Path::new("/etc").is_dir());
    f.ok(DeleteFolder, "- {path: /etc-link/, force: true}");
    assert!(!f.exists("etc") && f.exists("etc-link") && Path::new("/etc/passwd").exists());
    fs::create_dir_all(f.p("etc2")).unwrap();
    f.ok(DeleteFolder, "- {path: /../../etc-link/../etc2}");
    assert!(!f.exists("etc2") && Path::new("/etc").is_dir());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn created_paths_stay_inside_the_root(
        parts in proptest::collection::vec(
            proptest::sample::select(vec!["..", ".", "outside", "up", "etc-link", "x", ""]),
            1..8,
        ),
        absolute in proptest::bool::ANY,
    ) {
        let f = Fixture::new();
        std::os::unix::fs::symlink("../..", f.p("up")).unwrap();
        std::os::unix::fs::symlink("/", f.p("etc-link")).unwrap();
        let mut path = parts.join("/");
        if absolute {
            path.insert(0, '/');
        }
        path.push_str("/new");
        for kind in [CreateFolder, CreateFile, CreateSymlink] {
            let entry = if kind == CreateSymlink {
                format!("- {{path: '{path}-link', target: '/scratch'}}")
            } else {
                format!("- path: '{path}-{}'", kind.name())
            };
            let _ = f.run(kind, &entry);
        }
        let escaped: Vec<_> = fs::read_dir(&f.outside).unwrap().collect();
        proptest::prop_assert!(escaped.is_empty(), "{path}: {escaped:?}");
        let base = f.root.parent().unwrap();
        let names: Vec<_> = fs::read_dir(base).unwrap().map(|e| e.unwrap().file_name()).collect();
        proptest::prop_assert_eq!(names.len(), 2, "{}: {:?}", path, names);
    }
}
