//! Owners and permissions: octal modes, owner and group names looked up in the target's own
//! `/etc/passwd` and `/etc/group`, and the SetFileOwner, SetFolderOwner, SetFilePermissions and
//! SetFolderPermissions actions. CreateFile and CreateFolder use the same helpers.

use super::optional;
use super::paths::{doc_of, io_err, io_message, resolve, walk};
use crate::actions::inputs::{flag_or, Text};
use crate::actions::ActionContext;
use serde::Deserialize;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileOwnerEntry {
    path: Text,
    owner: Text,
    group: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FolderOwnerEntry {
    path: Text,
    owner: Text,
    group: Option<Text>,
    recursive: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FilePermissionsEntry {
    path: Text,
    pub(super) permissions: Text,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FolderPermissionsEntry {
    path: Text,
    permissions: Text,
    recursive: Option<Text>,
}

/// An octal mode such as `0755`, `755` or `0o755` (at most `7777`).
///
/// Note: YAML may read an unquoted `permissions: 0755` as the number 755 (the YAML crate
/// follows YAML 1.2, where a leading zero does not mean octal); its text is read as octal
/// either way.
pub(super) fn parse_mode(field: &str, text: &Text) -> Result<u32, String> {
    let s = text.as_str().trim();
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let bad = || {
        format!(
            "{field} must be an octal mode such as 0755, not `{}`",
            text.as_str()
        )
    };
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(bad());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if mode > 0o7777 {
        return Err(bad());
    }
    Ok(mode)
}

/// Lines of a colon-separated database of the target (`/etc/passwd`, `/etc/group`), read
/// through the target. A missing file reads as empty.
fn read_db(ctx: &ActionContext, doc: &str) -> Result<Vec<Vec<String>>, String> {
    let host = resolve(ctx, doc)?;
    let text = match fs::read(&host) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{doc}: {}", io_message(&e))),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect())
}

/// The uid and gid to give: `owner` and `group` are names (looked up in the target's
/// `/etc/passwd` and `/etc/group`, never the host's) or numeric ids.
///
/// Decision (docs: "if the group name is not provided, the module assigns the group owner of
/// the file to the group that the user belongs to"): without `group`, the owner's primary group
/// from the target's `/etc/passwd`; a numeric owner that is not in `/etc/passwd` leaves the group
/// unchanged. A `group` without `owner` (CreateFile, CreateFolder) changes the group only.
pub(super) fn owner_ids(
    ctx: &ActionContext,
    owner: Option<&Text>,
    group: Option<&Text>,
) -> Result<(Option<u32>, Option<u32>), String> {
    let mut uid = None;
    let mut gid = None;
    if let Some(owner) = owner {
        let name = owner.as_str().trim();
        let passwd = read_db(ctx, "/etc/passwd")?;
        let by_name = |n: &str| passwd.iter().find(|f| f.first().is_some_and(|x| x == n));
        let entry = match name.parse::<u32>() {
            Ok(id) => {
                uid = Some(id);
                passwd
                    .iter()
                    .find(|f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(id))
            }
            Err(_) => {
                let entry = by_name(name).ok_or_else(|| {
                    format!("owner `{name}`: no such user in the target's /etc/passwd")
                })?;
                uid = Some(entry.get(2).and_then(|x| x.parse().ok()).ok_or_else(|| {
                    format!("owner `{name}`: the target's /etc/passwd has no valid uid for it")
                })?);
                Some(entry)
            }
        };
        gid = entry.and_then(|f| f.get(3)).and_then(|x| x.parse().ok());
    }
    if let Some(group) = group {
        let name = group.as_str().trim();
        gid = Some(match name.parse::<u32>() {
            Ok(id) => id,
            Err(_) => {
                let groups = read_db(ctx, "/etc/group")?;
                groups
                    .iter()
                    .find(|f| f.first().is_some_and(|x| x == name))
                    .and_then(|f| f.get(2))
                    .and_then(|x| x.parse().ok())
                    .ok_or_else(|| {
                        format!("group `{name}`: no such group in the target's /etc/group")
                    })?
            }
        });
    }
    Ok((uid, gid))
}

pub(super) fn chown(
    ctx: &ActionContext,
    host: &Path,
    ids: (Option<u32>, Option<u32>),
) -> Result<(), String> {
    if ids == (None, None) {
        return Ok(());
    }
    std::os::unix::fs::chown(host, ids.0, ids.1).map_err(|e| {
        format!(
            "{}: cannot change the owner: {}",
            doc_of(ctx, host),
            io_message(&e)
        )
    })
}

pub(super) fn chmod(ctx: &ActionContext, host: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(host, fs::Permissions::from_mode(mode)).map_err(|e| {
        format!(
            "{}: cannot change the permissions: {}",
            doc_of(ctx, host),
            io_message(&e)
        )
    })
}

/// Decision: SetFile* on a folder and SetFolder* on a file fail, naming the other module.
fn existing(ctx: &ActionContext, doc: &str, folder: bool) -> Result<PathBuf, String> {
    let host = resolve(ctx, doc)?;
    match fs::metadata(&host) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(format!(
            "{doc}: no such {}",
            if folder { "folder" } else { "file" }
        )),
        Err(err) => Err(io_err(doc)(err)),
        Ok(m) if folder && !m.is_dir() => Err(format!("{doc}: is not a folder")),
        Ok(m) if !folder && m.is_dir() => Err(format!("{doc}: is a folder, not a file")),
        Ok(_) => Ok(host),
    }
}

fn required_owner(owner: &Text) -> Result<&Text, String> {
    if owner.as_str().trim().is_empty() {
        Err("owner must not be empty".into())
    } else {
        Ok(owner)
    }
}

/// SetFileOwner: follows a link (changes the file it points to, inside the root).
pub(super) fn set_file_owner(ctx: &ActionContext, e: &FileOwnerEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let ids = owner_ids(ctx, Some(required_owner(&e.owner)?), optional(&e.group))?;
    let host = existing(ctx, doc, false)?;
    chown(ctx, &host, ids)
}

/// SetFolderOwner: recursive by default; links inside the folder get their own owner changed
/// (`lchown`) and are not followed.
pub(super) fn set_folder_owner(ctx: &ActionContext, e: &FolderOwnerEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let recursive = flag_or(&e.recursive, "recursive", true)?;
    let ids = owner_ids(ctx, Some(required_owner(&e.owner)?), optional(&e.group))?;
    let host = existing(ctx, doc, true)?;
    chown(ctx, &host, ids)?;
    if recursive {
        walk(ctx, &host, &mut |path, ft| {
            if ft.is_symlink() {
                std::os::unix::fs::lchown(path, ids.0, ids.1).map_err(|e| {
                    format!(
                        "{}: cannot change the owner: {}",
                        doc_of(ctx, path),
                        io_message(&e)
                    )
                })
            } else {
                chown(ctx, path, ids)
            }
        })?;
    }
    Ok(())
}

/// SetFilePermissions: `permissions` is required (there is no `recursive`).
pub(super) fn set_file_permissions(
    ctx: &ActionContext,
    e: &FilePermissionsEntry,
) -> Result<(), String> {
    let doc = e.path.as_str();
    let mode = parse_mode("permissions", &e.permissions)?;
    let host = existing(ctx, doc, false)?;
    chmod(ctx, &host, mode)
}

/// SetFolderPermissions: recursive by default; every file and folder below gets the same mode
/// (as `chmod -R`); links inside are skipped (chmod would follow them).
pub(super) fn set_folder_permissions(
    ctx: &ActionContext,
    e: &FolderPermissionsEntry,
) -> Result<(), String> {
    let doc = e.path.as_str();
    let mode = parse_mode("permissions", &e.permissions)?;
    let recursive = flag_or(&e.recursive, "recursive", true)?;
    let host = existing(ctx, doc, true)?;
    // Children first would be needed if the new mode removed our own access; as root (the only
    // way AWSTOE runs) access does not depend on the mode, so parents go first.
    chmod(ctx, &host, mode)?;
    if recursive {
        walk(ctx, &host, &mut |path, ft| {
            if ft.is_symlink() {
                Ok(())
            } else {
                chmod(ctx, path, mode)
            }
        })?;
    }
    Ok(())
}
