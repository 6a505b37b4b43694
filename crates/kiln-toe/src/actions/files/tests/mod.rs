//! Tests of the file actions, each run against a fresh root folder through a chroot-like
//! local target (`Fixture`). One module per group of actions, as in the code; the checks of
//! the dispatch itself (input shapes, deadlines) are here.

mod create;
mod delete;
mod encoding;
mod ownership;
mod paths;
mod read;
mod transfer;

use super::encoding::Encoding;
use super::ownership::parse_mode;
use super::paths::{join_doc, split_last};
use super::*;
use crate::actions::ActionConfig;
use crate::actions::{ActionContext, ActionFailure, Outputs};
use crate::target::LocalTarget;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use ActionKind::*;

type Lines = crate::actions::RecordingConsole;

struct Fixture {
    _dir: tempfile::TempDir,
    /// Canonical, so it compares with what `resolve` answers.
    root: PathBuf,
    /// Outside the root (for escape checks).
    outside: PathBuf,
    target: LocalTarget,
    config: ActionConfig,
    console: Lines,
    scratch: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir_all(root.join("scratch")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        Fixture {
            target: LocalTarget::chroot(&root),
            scratch: root.join("scratch"),
            root,
            outside,
            config: ActionConfig::default(),
            console: Lines::default(),
            _dir: dir,
        }
    }

    fn run(&self, kind: ActionKind, yaml: &str) -> Result<Outputs, ActionFailure> {
        let inputs: Value = crate::yaml::from_str(yaml).unwrap();
        validate(kind, &inputs).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        let ctx = ActionContext {
            target: &self.target,
            config: &self.config,
            console: &self.console,
            deadline: None,
            scratch: &self.scratch,
            scratch_in_target: "/scratch",
        };
        run(kind, &ctx, &inputs)
    }

    fn ok(&self, kind: ActionKind, yaml: &str) -> Outputs {
        self.run(kind, yaml)
            .unwrap_or_else(|e| panic!("{} {yaml}: {e:?}", kind.name()))
    }

    /// The failure message, which must exist.
    fn fails(&self, kind: ActionKind, yaml: &str) -> String {
        match self.run(kind, yaml) {
            Err(ActionFailure::Failed(m)) => m,
            other => panic!("{} {yaml}: expected a failure, got {other:?}", kind.name()),
        }
    }

    fn out(&self, kind: ActionKind, yaml: &str, key: &str) -> String {
        let out = self.ok(kind, yaml);
        out.get(key).and_then(|v| v.as_str()).unwrap().to_string()
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.p(rel)).unwrap()
    }

    fn mode(&self, rel: &str) -> u32 {
        fs::symlink_metadata(self.p(rel)).unwrap().mode() & 0o7777
    }

    fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.p(rel)).is_ok()
    }
}

fn running_as_root() -> bool {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid() == 0
}

#[test]
fn validate_accepts_documented_shapes() {
    let cases: &[(ActionKind, &str)] = &[
        (AppendFile, "- {path: ./Sample.txt, content: x, encoding: UTF-32}\n- {path: /a}"),
        (CopyFile, "- {source: /a/Sample*, destination: /b/, overwrite: false}"),
        (CopyFolder, "- {source: /a, destination: /b}"),
        (
            CreateFile,
            "- {path: a, content: x, encoding: UTF-16, owner: u, group: g, permissions: 0777, overwrite: false}\n- {path: b, permissions: 755}",
        ),
        (CreateFolder, "- {path: /a/, owner: u, group: g, permissions: '0777', overwrite: true}"),
        (CreateSymlink, "- {path: /l, target: /t, force: true}"),
        (DeleteFile, "- {path: /a/*log}"),
        (DeleteFolder, "- {path: /a/, force: true}"),
        (ListFiles, "- {path: /a/, fileNamePattern: '*log', recursive: true}"),
        (MoveFile, "- {source: /a, destination: /b}"),
        (MoveFolder, "- {source: /a, destination: /b/, overwrite: '{{ Over }}'}"),
        (ReadFile, "- {path: /a, encoding: UTF-32, printFileContent: true}"),
        (SetFileEncoding, "- {path: /a, encoding: UTF-16}"),
        (SetFileOwner, "- {path: /a, owner: u, group: g}"),
        (SetFolderOwner, "- {path: /a/, owner: u, recursive: false}"),
        (SetFilePermissions, "- {path: /a, permissions: 766}"),
        (SetFolderPermissions, "- {path: /a/, permissions: 0777, recursive: false}"),
        (DeleteFile, "[]"),
    ];
    for (kind, src) in cases {
        let v: Value = crate::yaml::from_str(src).unwrap();
        assert_eq!(validate(*kind, &v), Ok(()), "{} {src}", kind.name());
    }
}

#[test]
fn validate_rejects_wrong_shapes() {
    let cases: &[(ActionKind, &str, &str)] = &[
        (
            CreateFile,
            "{path: /a}",
            "inputs must be a list, found a mapping",
        ),
        (
            CreateFile,
            "- {content: x}",
            "inputs[0]: missing field `path`",
        ),
        (
            CreateFile,
            "- {path: /a, mode: 1}",
            "inputs[0]: unknown field `mode`",
        ),
        (
            CopyFile,
            "- {source: /a}",
            "inputs[0]: missing field `destination`",
        ),
        (CreateSymlink, "- {path: /a}", "missing field `target`"),
        (SetFileOwner, "- {path: /a}", "missing field `owner`"),
        (
            SetFileOwner,
            "- {path: /a, owner: u, recursive: true}",
            "unknown field `recursive`",
        ),
        (
            SetFilePermissions,
            "- {path: /a}",
            "missing field `permissions`",
        ),
        (
            SetFilePermissions,
            "- {path: /a, permissions: 1, recursive: true}",
            "unknown field `recursive`",
        ),
        (
            ListFiles,
            "- {path: /a, pattern: x}",
            "unknown field `pattern`",
        ),
        (
            ReadFile,
            "- {path: [a]}",
            "expected a single value, found a list",
        ),
        (
            DeleteFile,
            "- {path: /a}\n- {}",
            "inputs[1]: missing field `path`",
        ),
        (
            DeleteFile,
            "- {path: /a}\n- {path: /b, recursive: true}",
            "inputs[1]: unknown field `recursive`",
        ),
        (DeleteFile, "/a", "inputs must be a list, found a string"),
        (ExecuteBash, "[]", "ExecuteBash is not a file action"),
    ];
    for (kind, src, want) in cases {
        let v: Value = crate::yaml::from_str(src).unwrap();
        let err = validate(*kind, &v).unwrap_err();
        assert!(err.contains(want), "{} {src}: {err}", kind.name());
    }
}

#[test]
fn a_passed_deadline_times_out() {
    let f = Fixture::new();
    let inputs: Value = crate::yaml::from_str("- path: /x").unwrap();
    let ctx = ActionContext {
        target: &f.target,
        config: &f.config,
        console: &f.console,
        deadline: Some(std::time::Instant::now()),
        scratch: &f.scratch,
        scratch_in_target: "/scratch",
    };
    assert_eq!(run(CreateFile, &ctx, &inputs), Err(ActionFailure::TimedOut));
    assert_eq!(run(ListFiles, &ctx, &inputs), Err(ActionFailure::TimedOut));
    assert!(!f.exists("x"));
}
