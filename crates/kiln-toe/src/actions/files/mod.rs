//! File system action modules: AppendFile, CopyFile, CopyFolder, CreateFile, CreateFolder,
//! CreateSymlink, DeleteFile, DeleteFolder, ListFiles, MoveFile, MoveFolder, ReadFile,
//! SetFileEncoding, SetFileOwner, SetFolderOwner, SetFilePermissions, SetFolderPermissions.
//!
//! Every module takes a list of entries (as AWSTOE documents them) and works on the entries in
//! order; the first entry that fails stops the step, and the message starts with `inputs[i]:`
//! and names the document path.
//!
//! Every path from the inputs goes through the target ([`crate::target::Target::resolve`], or
//! `resolve_link` where the last component must not be followed), so nothing here can reach
//! outside the target's root. Wildcards (`*`, `?`, `[...]`) are accepted only in the last
//! component: the parent folder is resolved through the target and its names are matched with
//! [`glob::Pattern`] (as Go's `filepath.Match`, a leading `*` also matches dot files). Each match
//! is then resolved through the target again by its document path.
//!
//! Walks over folder trees (recursive ListFiles, SetFolderOwner, SetFolderPermissions,
//! CopyFolder) never follow a symbolic link found inside the tree: a link is listed, copied as a
//! link, or has its own ownership changed (`lchown`); its permissions are left alone (Linux has
//! no `lchmod`, and `chmod` would follow the link, possibly out of the root).
//!
//! Decisions where the AWS documentation is silent are marked "Decision:" where they are made.
//!
//! Layout: this module parses a step's inputs into entries and runs an action over them in order
//! ([`validate`], [`run`]). Each group of actions lives in a module of its own: `create`
//! (AppendFile, CreateFile, CreateFolder, CreateSymlink), `transfer` (Copy/Move File/Folder),
//! `delete`, `read` (ListFiles, ReadFile), `encoding` (the text encodings and
//! SetFileEncoding) and `ownership` (modes, owners and the Set*Owner/Set*Permissions actions).
//! `paths` holds what they all share: resolving document paths through the target,
//! wildcards, walks and I/O messages.

mod create;
mod delete;
mod encoding;
mod ownership;
mod paths;
mod read;
#[cfg(test)]
mod tests;
mod transfer;

use super::inputs::{parse_list, Text};
use super::{ActionContext, ActionFailure, ActionKind, Outputs};
use crate::yaml::Value;
use create::{
    append_file, create_file, create_folder, create_symlink, AppendEntry, CreateFileEntry,
    CreateFolderEntry, SymlinkEntry,
};
use delete::{delete_file, delete_folder, DeleteFileEntry, DeleteFolderEntry};
use encoding::{set_file_encoding, EncodingEntry};
use ownership::{
    set_file_owner, set_file_permissions, set_folder_owner, set_folder_permissions, FileOwnerEntry,
    FilePermissionsEntry, FolderOwnerEntry, FolderPermissionsEntry,
};
use read::{list_files, read_file, ListFilesEntry, ReadFileEntry};
use serde::de::DeserializeOwned;
use transfer::{transfer_file, transfer_folder, TransferEntry};

/// Checks the shape of a file module's inputs: a list of entries with the documented keys.
/// Values are not checked (they may still hold `{{ ... }}`); [`run`] checks them.
pub fn validate(kind: ActionKind, inputs: &Value) -> Result<(), String> {
    use ActionKind::*;
    match kind {
        AppendFile => check::<AppendEntry>(inputs),
        CreateFile => check::<CreateFileEntry>(inputs),
        CreateFolder => check::<CreateFolderEntry>(inputs),
        CreateSymlink => check::<SymlinkEntry>(inputs),
        CopyFile | MoveFile | CopyFolder | MoveFolder => check::<TransferEntry>(inputs),
        DeleteFile => check::<DeleteFileEntry>(inputs),
        DeleteFolder => check::<DeleteFolderEntry>(inputs),
        ListFiles => check::<ListFilesEntry>(inputs),
        ReadFile => check::<ReadFileEntry>(inputs),
        SetFileEncoding => check::<EncodingEntry>(inputs),
        SetFileOwner => check::<FileOwnerEntry>(inputs),
        SetFolderOwner => check::<FolderOwnerEntry>(inputs),
        SetFilePermissions => check::<FilePermissionsEntry>(inputs),
        SetFolderPermissions => check::<FolderPermissionsEntry>(inputs),
        _ => Err(format!("{} is not a file action", kind.name())),
    }
}

/// Runs a file module over its (substituted) inputs.
pub fn run(
    kind: ActionKind,
    ctx: &ActionContext,
    inputs: &Value,
) -> Result<Outputs, ActionFailure> {
    use ActionKind::*;
    match kind {
        AppendFile => each(ctx, inputs, append_file),
        CreateFile => each(ctx, inputs, create_file),
        CreateFolder => each(ctx, inputs, create_folder),
        CreateSymlink => each(ctx, inputs, create_symlink),
        CopyFile => each(ctx, inputs, |c, e| transfer_file(c, e, false)),
        MoveFile => each(ctx, inputs, |c, e| transfer_file(c, e, true)),
        CopyFolder => each(ctx, inputs, |c, e| transfer_folder(c, e, false)),
        MoveFolder => each(ctx, inputs, |c, e| transfer_folder(c, e, true)),
        DeleteFile => each(ctx, inputs, delete_file),
        DeleteFolder => each(ctx, inputs, delete_folder),
        ListFiles => collect(ctx, inputs, "files", list_files),
        ReadFile => collect(ctx, inputs, "content", read_file),
        SetFileEncoding => each(ctx, inputs, set_file_encoding),
        SetFileOwner => each(ctx, inputs, set_file_owner),
        SetFolderOwner => each(ctx, inputs, set_folder_owner),
        SetFilePermissions => each(ctx, inputs, set_file_permissions),
        SetFolderPermissions => each(ctx, inputs, set_folder_permissions),
        _ => Err(ActionFailure::failed(format!(
            "{} is not a file action",
            kind.name()
        ))),
    }
}

fn check<T: DeserializeOwned>(inputs: &Value) -> Result<(), String> {
    parse_list::<T>(inputs).map(|_| ())
}

/// Runs `f` on every entry in order; modules without outputs.
fn each<T: DeserializeOwned>(
    ctx: &ActionContext,
    inputs: &Value,
    f: impl Fn(&ActionContext, &T) -> Result<(), String>,
) -> Result<Outputs, ActionFailure> {
    let entries = parse_list::<T>(inputs).map_err(ActionFailure::Failed)?;
    for (i, entry) in entries.iter().enumerate() {
        check_deadline(ctx).map_err(|m| failure(i, m))?;
        f(ctx, entry).map_err(|m| failure(i, m))?;
    }
    Ok(Outputs::new())
}

/// The message [`check_deadline`] answers; [`failure`] turns it into
/// [`ActionFailure::TimedOut`] wherever it comes from (a long folder walk checks too).
const TIMED_OUT: &str = "the step's timeoutSeconds ran out";

fn check_deadline(ctx: &ActionContext) -> Result<(), String> {
    match ctx.remaining() {
        Some(left) if left.is_zero() => Err(TIMED_OUT.to_string()),
        _ => Ok(()),
    }
}

fn failure(i: usize, message: String) -> ActionFailure {
    if message == TIMED_OUT {
        ActionFailure::TimedOut
    } else {
        ActionFailure::Failed(format!("inputs[{i}]: {message}"))
    }
}

/// Runs `f` on every entry and answers its results under `key`.
///
/// Decision: the documented outputs (`content` of ReadFile, `files` of ListFiles) are single
/// strings, and the docs never show several entries. With several entries the results are
/// joined with a newline, in entry order (ListFiles' own list is comma-joined, so the two
/// separators stay distinguishable). One entry answers its result unchanged.
fn collect<T: DeserializeOwned>(
    ctx: &ActionContext,
    inputs: &Value,
    key: &str,
    f: impl Fn(&ActionContext, &T) -> Result<String, String>,
) -> Result<Outputs, ActionFailure> {
    let entries = parse_list::<T>(inputs).map_err(ActionFailure::Failed)?;
    let mut results = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        check_deadline(ctx).map_err(|m| failure(i, m))?;
        results.push(f(ctx, entry).map_err(|m| failure(i, m))?);
    }
    let mut out = Outputs::new();
    out.insert(
        key.to_string(),
        serde_json::Value::String(results.join("\n")),
    );
    Ok(out)
}

fn optional(value: &Option<Text>) -> Option<&Text> {
    value.as_ref().filter(|t| !t.as_str().trim().is_empty())
}
