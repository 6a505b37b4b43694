//! DeleteFile and DeleteFolder.

use super::paths::{
    expand, has_wildcard, io_err, is_root, resolve, resolve_link, split_last, wildcard_only_last,
};
use crate::actions::inputs::{flag_or, Text};
use crate::actions::ActionContext;
use serde::Deserialize;
use std::fs;
use std::io;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DeleteFileEntry {
    path: Text,
    /// Not in the AWS docs, but AWS's own sample documents write it (the Image Builder
    /// samples' InSpec component deletes a folder with `DeleteFile` and `force: true`), so it is
    /// accepted.
    force: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DeleteFolderEntry {
    path: Text,
    force: Option<Text>,
}

/// DeleteFile: removes a file (a link itself, never what it points to).
/// Decisions: a missing file named without a wildcard fails; a wildcard matching nothing
/// succeeds (nothing to delete). Without `force`, folders are never removed (a named folder
/// fails, matching folders are skipped). With the undocumented `force: true` (see
/// [`DeleteFileEntry`]) it acts as `rm -rf`: a missing file is not an error, and folders, named
/// or matched, are removed with their contents (never the target's root).
pub(super) fn delete_file(ctx: &ActionContext, e: &DeleteFileEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let force = flag_or(&e.force, "force", false)?;
    wildcard_only_last("path", doc)?;
    let (_, name) = split_last(doc);
    let remove = |m: &str, host: &Path, meta: &fs::Metadata| -> Result<(), String> {
        if !meta.is_dir() {
            fs::remove_file(host).map_err(io_err(m))
        } else if is_root(ctx, host) {
            Err(format!("{m}: refusing to delete the target's root folder"))
        } else {
            fs::remove_dir_all(host).map_err(io_err(m))
        }
    };
    if has_wildcard(&name) {
        for (m, _) in expand(ctx, "path", doc)? {
            let host = resolve_link(ctx, &m)?;
            match fs::symlink_metadata(&host) {
                Ok(meta) if force || !meta.is_dir() => remove(&m, &host, &meta)?,
                _ => {}
            }
        }
        return Ok(());
    }
    let host = resolve_link(ctx, doc)?;
    match fs::symlink_metadata(&host) {
        Err(err) if err.kind() == io::ErrorKind::NotFound && force => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(format!("{doc}: no such file")),
        Err(err) => Err(io_err(doc)(err)),
        Ok(m) if m.is_dir() && !force => Err(format!(
            "{doc}: is a folder (use DeleteFolder, or force: true)"
        )),
        Ok(m) => remove(doc, &host, &m),
    }
}

/// DeleteFolder: a non-empty folder needs `force: true`.
/// Decisions: a missing folder fails; the target's root is never removed. A link in the last
/// component is not a folder and is not followed, unless the path ends in `/` (as POSIX path
/// resolution, `link/` names the folder the link points to, inside the root).
pub(super) fn delete_folder(ctx: &ActionContext, e: &DeleteFolderEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let force = flag_or(&e.force, "force", false)?;
    let host = if doc.ends_with('/') {
        resolve(ctx, doc)?
    } else {
        resolve_link(ctx, doc)?
    };
    match fs::symlink_metadata(&host) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("{doc}: no such folder"))
        }
        Err(err) => return Err(io_err(doc)(err)),
        Ok(m) if !m.is_dir() => return Err(format!("{doc}: is not a folder")),
        Ok(_) => {}
    }
    if is_root(ctx, &host) {
        return Err(format!(
            "{doc}: refusing to delete the target's root folder"
        ));
    }
    if force {
        return fs::remove_dir_all(&host).map_err(io_err(doc));
    }
    let empty = fs::read_dir(&host).map_err(io_err(doc))?.next().is_none();
    if !empty {
        return Err(format!(
            "{doc}: the folder is not empty (set force to true to delete it with its contents)"
        ));
    }
    fs::remove_dir(&host).map_err(io_err(doc))
}
