//! Document paths for the file actions: resolving them through the target (so nothing leaves
//! its root), the messages for I/O errors, wildcards in the last component, and walks over folder
//! trees that never follow a symbolic link.

use super::check_deadline;
use crate::actions::ActionContext;
use glob::Pattern;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The host path for a document path, every symlink followed inside the root.
pub(super) fn resolve(ctx: &ActionContext, doc: &str) -> Result<PathBuf, String> {
    ctx.target.resolve(doc).map_err(|e| target_error(doc, e))
}

/// The host path for a document path, the last component not followed.
pub(super) fn resolve_link(ctx: &ActionContext, doc: &str) -> Result<PathBuf, String> {
    ctx.target
        .resolve_link(doc)
        .map_err(|e| target_error(doc, e))
}

fn target_error(doc: &str, e: crate::target::TargetError) -> String {
    match e {
        crate::target::TargetError::Io(io) => format!("{doc}: {}", io_message(&io)),
        other => other.to_string(),
    }
}

/// The document path of a host path inside the root. `resolve` answers paths under the
/// canonical root, which may differ from `Target::root` when the root's own path holds a link.
/// The root as the target's own `resolve` answers it: the form its host paths start with
/// (canonical for local targets; `/proc/<pid>/root/...` for a rootless instance, whose root a
/// canonicalize would turn into the wrong, empty directory).
fn resolved_root(ctx: &ActionContext) -> Option<std::path::PathBuf> {
    ctx.target.resolve("/").ok()
}

pub(super) fn doc_of(ctx: &ActionContext, host: &Path) -> String {
    if let Some(root) = resolved_root(ctx) {
        if let Ok(rel) = host.strip_prefix(&root) {
            return format!("/{}", rel.display());
        }
    }
    ctx.target.document_path(host)
}

pub(super) fn is_root(ctx: &ActionContext, host: &Path) -> bool {
    resolved_root(ctx).is_some_and(|root| root == host)
}

pub(super) fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or folder".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

pub(super) fn io_err(doc: &str) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{doc}: {}", io_message(&e))
}

/// Splits a document path into its parent and its last component (trailing `/` ignored).
/// A path without `/` has parent `.` (the target's working directory).
pub(super) fn split_last(path: &str) -> (String, String) {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return ("/".into(), String::new());
    }
    match trimmed.rfind('/') {
        Some(0) => ("/".into(), trimmed[1..].into()),
        Some(i) => (trimmed[..i].into(), trimmed[i + 1..].into()),
        None => (".".into(), trimmed.into()),
    }
}

pub(super) fn join_doc(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

pub(super) fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Fails when a wildcard appears before the last component of `path`.
pub(super) fn wildcard_only_last(field: &str, path: &str) -> Result<(), String> {
    if has_wildcard(&split_last(path).0) {
        return Err(format!(
            "{field} `{path}`: wildcards are accepted only after the last /"
        ));
    }
    Ok(())
}

pub(super) fn pattern(field: &str, text: &str) -> Result<Pattern, String> {
    Pattern::new(text).map_err(|e| format!("{field} `{text}` is not a valid pattern: {}", e.msg))
}

/// The document paths (and names) of the entries of `path`'s parent folder whose names match
/// `path`'s last component, sorted by name. `field` names the input for messages.
pub(super) fn expand(
    ctx: &ActionContext,
    field: &str,
    path: &str,
) -> Result<Vec<(String, String)>, String> {
    wildcard_only_last(field, path)?;
    let (parent, name) = split_last(path);
    let pat = pattern(field, &name)?;
    let dir = resolve(ctx, &parent)?;
    let entries = fs::read_dir(&dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("{parent}: no such folder"),
        _ => format!("{parent}: {}", io_message(&e)),
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&parent))?;
        // Names that are not UTF-8 cannot be written in a document path; skip them.
        let Ok(n) = entry.file_name().into_string() else {
            continue;
        };
        if pat.matches(&n) {
            found.push((join_doc(&parent, &n), n));
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(found)
}

/// Calls `f` on every entry below `dir` (not `dir` itself), parents before children, never
/// following a symbolic link.
pub(super) fn walk(
    ctx: &ActionContext,
    dir: &Path,
    f: &mut dyn FnMut(&Path, &fs::FileType) -> Result<(), String>,
) -> Result<(), String> {
    let doc = doc_of(ctx, dir);
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(io_err(&doc))?
        .collect::<Result<_, _>>()
        .map_err(io_err(&doc))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        check_deadline(ctx)?;
        let path = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| format!("{}: {}", doc_of(ctx, &path), io_message(&e)))?;
        f(&path, &ft)?;
        if ft.is_dir() {
            walk(ctx, &path, f)?;
        }
    }
    Ok(())
}

pub(super) fn create_parent(ctx: &ActionContext, host: &Path) -> Result<(), String> {
    if let Some(parent) = host.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("{}: {}", doc_of(ctx, parent), io_message(&e)))?;
    }
    Ok(())
}
