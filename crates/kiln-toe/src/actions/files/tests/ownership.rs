//! Modes, owners and the Set*Owner/Set*Permissions actions.

use super::*;

#[test]
fn modes_are_octal_text() {
    let good: &[(&str, u32)] = &[
        ("0755", 0o755),
        ("755", 0o755),
        ("0o644", 0o644),
        ("4755", 0o4755),
        (" 0 ", 0),
    ];
    for (s, want) in good {
        assert_eq!(
            parse_mode("permissions", &Text(s.to_string())),
            Ok(*want),
            "{s}"
        );
    }
    for s in ["", "rwx", "0758", "-1", "77777", "0x1ff"] {
        let err = parse_mode("permissions", &Text(s.into())).unwrap_err();
        assert_eq!(
            err,
            format!("permissions must be an octal mode such as 0755, not `{s}`")
        );
    }
    // However YAML reads an unquoted 0755, its text means 0o755.
    let v: Value = crate::yaml::from_str("- {path: /a, permissions: 0755}").unwrap();
    let e: Vec<FilePermissionsEntry> = parse_list(&v).unwrap();
    assert_eq!(parse_mode("permissions", &e[0].permissions), Ok(0o755));
}

#[test]
fn permissions() {
    let f = Fixture::new();
    f.write("d/a", "a");
    f.write("d/sub/b", "b");
    let outside = f.outside.join("host.txt");
    fs::write(&outside, "host").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
    // A link planted inside the folder that points (on the host) outside the root.
    std::os::unix::fs::symlink(&outside, f.p("d/sub/out-link")).unwrap();

    f.ok(SetFilePermissions, "- {path: /d/a, permissions: '0600'}");
    assert_eq!(f.mode("d/a"), 0o600);
    f.ok(
        SetFolderPermissions,
        "- {path: /d/, permissions: 0750, recursive: false}",
    );
    assert_eq!(f.mode("d"), 0o750);
    assert_eq!(f.mode("d/a"), 0o600);
    f.ok(SetFolderPermissions, "- {path: /d, permissions: 700}");
    for p in ["d", "d/a", "d/sub", "d/sub/b"] {
        assert_eq!(f.mode(p), 0o700, "{p}");
    }
    assert_eq!(
        fs::metadata(&outside).unwrap().mode() & 0o7777,
        0o644,
        "outside untouched"
    );

    let cases: &[(ActionKind, &str, &str)] = &[
        (
            SetFilePermissions,
            "- {path: /d/a, permissions: '999'}",
            "inputs[0]: permissions must be an octal mode such as 0755, not `999`",
        ),
        (
            SetFilePermissions,
            "- {path: /none, permissions: '0644'}",
            "inputs[0]: /none: no such file",
        ),
        (
            SetFilePermissions,
            "- {path: /d, permissions: '0644'}",
            "inputs[0]: /d: is a folder, not a file",
        ),
        (
            SetFolderPermissions,
            "- {path: /d/a, permissions: '0644'}",
            "inputs[0]: /d/a: is not a folder",
        ),
        (
            SetFolderPermissions,
            "- {path: /none, permissions: '0644'}",
            "inputs[0]: /none: no such folder",
        ),
        (
            SetFolderPermissions,
            "- {path: /d, permissions: '0644', recursive: yes}",
            "recursive must be true or false, not `yes`",
        ),
    ];
    for (kind, src, want) in cases {
        let err = f.fails(*kind, src);
        assert!(err.contains(want), "{src}: {err}");
    }
}

#[test]
fn owners_come_from_the_targets_databases() {
    let f = Fixture::new();
    f.write(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\n# comment\nkilnuser:x:4242:4343::/home/kilnuser:/bin/sh\n",
    );
    f.write(
        "etc/group",
        "root:x:0:\nkilngroup:x:4545:kilnuser\nkilnprimary:x:4343:\n",
    );
    f.write("d/a", "a");
    f.write("d/sub/b", "b");
    let outside = f.outside.join("host.txt");
    fs::write(&outside, "host").unwrap();
    std::os::unix::fs::symlink(&outside, f.p("d/sub/out-link")).unwrap();

    // Lookups work without privileges; messages name the input.
    let cases: &[(ActionKind, &str, &str)] = &[
        (
            SetFileOwner,
            "- {path: /d/a, owner: ghost}",
            "inputs[0]: owner `ghost`: no such user in the target's /etc/passwd",
        ),
        (
            SetFileOwner,
            "- {path: /d/a, owner: kilnuser, group: ghosts}",
            "inputs[0]: group `ghosts`: no such group in the target's /etc/group",
        ),
        (
            SetFileOwner,
            "- {path: /none, owner: kilnuser}",
            "inputs[0]: /none: no such file",
        ),
        (
            SetFileOwner,
            "- {path: /d/a, owner: ''}",
            "inputs[0]: owner must not be empty",
        ),
        (
            SetFolderOwner,
            "- {path: /d/a, owner: kilnuser}",
            "inputs[0]: /d/a: is not a folder",
        ),
    ];
    for (kind, src, want) in cases {
        let err = f.fails(*kind, src);
        assert!(err.contains(want), "{src}: {err}");
    }
    // The host's users are not the target's.
    let err = f.fails(SetFileOwner, "- {path: /d/a, owner: daemon}");
    assert!(
        err.contains("no such user in the target's /etc/passwd"),
        "{err}"
    );

    if !running_as_root() {
        eprintln!("not root: skipping chown checks");
        return;
    }
    let ids = |rel: &str| {
        let m = fs::symlink_metadata(f.p(rel)).unwrap();
        (m.uid(), m.gid())
    };
    f.ok(SetFileOwner, "- {path: /d/a, owner: kilnuser}");
    assert_eq!(ids("d/a"), (4242, 4343), "the owner's primary group");
    f.ok(
        SetFileOwner,
        "- {path: /d/a, owner: kilnuser, group: kilngroup}",
    );
    assert_eq!(ids("d/a"), (4242, 4545));
    f.ok(SetFileOwner, "- {path: /d/a, owner: 7, group: 8}");
    assert_eq!(ids("d/a"), (7, 8));

    let outside_ids = {
        let m = fs::metadata(&outside).unwrap();
        (m.uid(), m.gid())
    };
    f.ok(
        SetFolderOwner,
        "- {path: /d, owner: kilnuser, recursive: false}",
    );
    assert_eq!(ids("d"), (4242, 4343));
    assert_eq!(ids("d/sub"), (0, 0));
    f.ok(
        SetFolderOwner,
        "- {path: /d/, owner: kilnuser, group: kilngroup}",
    );
    for p in ["d", "d/a", "d/sub", "d/sub/b", "d/sub/out-link"] {
        assert_eq!(ids(p), (4242, 4545), "{p}");
    }
    let m = fs::metadata(&outside).unwrap();
    assert_eq!((m.uid(), m.gid()), outside_ids, "the link was not followed");

    f.ok(
        CreateFile,
        "- {path: /owned, owner: kilnuser, group: kilngroup, permissions: '0600'}\n- {path: /grouped, group: '4545'}",
    );
    assert_eq!(ids("owned"), (4242, 4545));
    assert_eq!(f.mode("owned"), 0o600);
    assert_eq!(ids("grouped"), (0, 4545));
    f.ok(CreateFolder, "- {path: /od, owner: kilnuser}");
    assert_eq!(ids("od"), (4242, 4343));
}
