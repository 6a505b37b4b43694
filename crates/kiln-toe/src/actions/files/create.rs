//! The actions that make things: AppendFile, CreateFile, CreateFolder and CreateSymlink.

use super::encoding::Encoding;
use super::optional;
use super::ownership::{chmod, chown, owner_ids, parse_mode};
use super::paths::{create_parent, io_err, join_doc, resolve, resolve_link};
use crate::actions::inputs::{flag_or, Text};
use crate::actions::ActionContext;
use serde::Deserialize;
use std::fs;
use std::io::{self, Write};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AppendEntry {
    path: Text,
    content: Option<Text>,
    encoding: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateFileEntry {
    path: Text,
    content: Option<Text>,
    encoding: Option<Text>,
    owner: Option<Text>,
    group: Option<Text>,
    permissions: Option<Text>,
    overwrite: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateFolderEntry {
    path: Text,
    owner: Option<Text>,
    group: Option<Text>,
    permissions: Option<Text>,
    overwrite: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SymlinkEntry {
    path: Text,
    target: Text,
    force: Option<Text>,
}

/// AppendFile: the file must exist; `content` (default empty) is encoded and appended.
/// Decision: no byte order mark is written.
pub(super) fn append_file(ctx: &ActionContext, e: &AppendEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let encoding = Encoding::parse(e.encoding.as_ref())?;
    let host = resolve(ctx, doc)?;
    match fs::metadata(&host) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("{doc}: no such file"))
        }
        Err(err) => return Err(io_err(doc)(err)),
        Ok(m) if m.is_dir() => return Err(format!("{doc}: is a folder, not a file")),
        Ok(_) => {}
    }
    let content = e.content.as_ref().map(Text::as_str).unwrap_or("");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&host)
        .map_err(io_err(doc))?;
    file.write_all(&encoding.encode(content))
        .map_err(io_err(doc))
}

/// CreateFile: parents are created; an existing file is truncated unless `overwrite: false`.
/// Decisions: without `permissions` a new file gets 0666 less the umask and an existing file
/// keeps its mode; with it, the mode is set exactly. No byte order mark is written.
pub(super) fn create_file(ctx: &ActionContext, e: &CreateFileEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let encoding = Encoding::parse(e.encoding.as_ref())?;
    let overwrite = flag_or(&e.overwrite, "overwrite", true)?;
    let mode = optional(&e.permissions)
        .map(|p| parse_mode("permissions", p))
        .transpose()?;
    let ids = owner_ids(ctx, optional(&e.owner), optional(&e.group))?;
    let host = resolve(ctx, doc)?;
    match fs::symlink_metadata(&host) {
        Ok(m) if m.is_dir() => return Err(format!("{doc}: is a folder, not a file")),
        Ok(_) if !overwrite => {
            return Err(format!(
                "{doc}: the file already exists and overwrite is false"
            ))
        }
        _ => {}
    }
    create_parent(ctx, &host)?;
    let content = e.content.as_ref().map(Text::as_str).unwrap_or("");
    fs::write(&host, encoding.encode(content)).map_err(io_err(doc))?;
    if let Some(mode) = mode {
        chmod(ctx, &host, mode)?;
    }
    chown(ctx, &host, ids)
}

/// CreateFolder: recursive (`mkdir -p`).
/// Decision: the docs say an existing folder is "overwritten" by default; this keeps it and its
/// contents (deleting them would be surprising and destructive) and applies owner, group and
/// permissions to it. With `overwrite: false` an existing folder is a failure.
pub(super) fn create_folder(ctx: &ActionContext, e: &CreateFolderEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let overwrite = flag_or(&e.overwrite, "overwrite", true)?;
    let mode = optional(&e.permissions)
        .map(|p| parse_mode("permissions", p))
        .transpose()?;
    let ids = owner_ids(ctx, optional(&e.owner), optional(&e.group))?;
    let host = resolve(ctx, doc)?;
    match fs::symlink_metadata(&host) {
        Ok(m) if !m.is_dir() => return Err(format!("{doc}: exists and is not a folder")),
        Ok(_) if !overwrite => {
            return Err(format!(
                "{doc}: the folder already exists and overwrite is false"
            ))
        }
        Ok(_) => {}
        Err(_) => fs::create_dir_all(&host).map_err(io_err(doc))?,
    }
    if let Some(mode) = mode {
        chmod(ctx, &host, mode)?;
    }
    chown(ctx, &host, ids)
}

/// CreateSymlink: `target` must exist (resolved inside the root); parents of `path` are
/// created; an existing link is replaced only with `force: true`; an existing non-link is
/// always a failure.
/// Decision: the link stores `target` as an absolute document path (a relative `target` is
/// taken from the target's working directory, where its existence was checked), so the link
/// means the same inside the target as what was checked.
pub(super) fn create_symlink(ctx: &ActionContext, e: &SymlinkEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let target_doc = e.target.as_str();
    let force = flag_or(&e.force, "force", false)?;
    if target_doc.is_empty() {
        return Err(format!("{doc}: target is empty"));
    }
    let target_host = resolve(ctx, target_doc)?;
    if fs::symlink_metadata(&target_host).is_err() {
        return Err(format!(
            "{doc}: the link target {target_doc} does not exist"
        ));
    }
    let stored = if target_doc.starts_with('/') {
        target_doc.to_string()
    } else {
        join_doc(&ctx.target.working_dir(), target_doc)
    };
    let host = resolve_link(ctx, doc)?;
    match fs::symlink_metadata(&host) {
        Ok(m) if m.file_type().is_symlink() => {
            if !force {
                return Err(format!(
                    "{doc}: a link already exists (set force to true to replace it)"
                ));
            }
            fs::remove_file(&host).map_err(io_err(doc))?;
        }
        Ok(_) => {
            return Err(format!(
                "{doc}: a file or folder that is not a link already exists"
            ))
        }
        Err(_) => {}
    }
    create_parent(ctx, &host)?;
    std::os::unix::fs::symlink(&stored, &host).map_err(io_err(doc))
}
