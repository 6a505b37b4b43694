//! CopyFile, MoveFile, CopyFolder and MoveFolder: one entry copies or moves a path (or every
//! match of a wildcard) to a destination; a move renames when it can and copies then deletes
//! when the destination is on another file system.

use super::paths::{
    create_parent, doc_of, expand, has_wildcard, io_err, io_message, is_root, join_doc, resolve,
    resolve_link, split_last, walk, wildcard_only_last,
};
use crate::actions::inputs::{flag_or, Text};
use crate::actions::ActionContext;
use serde::Deserialize;
use std::fs;
use std::io;
use std::path::Path;

/// CopyFile, MoveFile, CopyFolder, MoveFolder.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct TransferEntry {
    source: Text,
    destination: Text,
    overwrite: Option<Text>,
}

/// Renames, or copies and removes when the rename crosses file systems.
fn rename_or_copy(ctx: &ActionContext, from: &Path, to: &Path) -> Result<(), String> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let meta = fs::symlink_metadata(from).map_err(io_err(&doc_of(ctx, from)))?;
            if meta.is_dir() {
                copy_tree(ctx, from, to)?;
                fs::remove_dir_all(from).map_err(io_err(&doc_of(ctx, from)))
            } else {
                copy_entry(ctx, from, to, &meta.file_type())?;
                fs::remove_file(from).map_err(io_err(&doc_of(ctx, from)))
            }
        }
        Err(e) => Err(format!(
            "{} -> {}: {}",
            doc_of(ctx, from),
            doc_of(ctx, to),
            io_message(&e)
        )),
    }
}

/// Copies one non-folder entry (a file's content and mode, or a link as a link).
fn copy_entry(
    ctx: &ActionContext,
    from: &Path,
    to: &Path,
    ft: &fs::FileType,
) -> Result<(), String> {
    if ft.is_symlink() {
        let link = fs::read_link(from).map_err(io_err(&doc_of(ctx, from)))?;
        if fs::symlink_metadata(to).is_ok() {
            fs::remove_file(to).map_err(io_err(&doc_of(ctx, to)))?;
        }
        std::os::unix::fs::symlink(link, to).map_err(io_err(&doc_of(ctx, to)))
    } else if ft.is_file() {
        fs::copy(from, to).map(|_| ()).map_err(|e| {
            format!(
                "{} -> {}: {}",
                doc_of(ctx, from),
                doc_of(ctx, to),
                io_message(&e)
            )
        })
    } else {
        // Decision: devices, FIFOs and sockets are not copied; the step fails rather than
        // silently leaving them out.
        Err(format!(
            "{}: is not a regular file, folder or link",
            doc_of(ctx, from)
        ))
    }
}

/// Copies folder `from` to a new folder `to` (which must not exist), links copied as links.
fn copy_tree(ctx: &ActionContext, from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir(to).map_err(io_err(&doc_of(ctx, to)))?;
    walk(ctx, from, &mut |path, ft| {
        let Ok(rel) = path.strip_prefix(from) else {
            return Ok(());
        };
        let dest = to.join(rel);
        if ft.is_dir() {
            fs::create_dir(&dest).map_err(io_err(&doc_of(ctx, &dest)))?;
            copy_mode(path, &dest);
            Ok(())
        } else {
            copy_entry(ctx, path, &dest, ft)
        }
    })?;
    copy_mode(from, to);
    Ok(())
}

fn copy_mode(from: &Path, to: &Path) {
    // Best effort, as `cp -r` without `-p` also keeps the mode bits.
    if let Ok(m) = fs::metadata(from) {
        let _ = fs::set_permissions(to, m.permissions());
    }
}

/// CopyFile and MoveFile.
///
/// The source's last component may hold a wildcard; then every matching file is copied and
/// the destination is a folder (Decision: even without a trailing `/`, as the docs' Windows
/// example writes it). Without a wildcard, a destination ending in `/` (or naming an existing
/// folder, as `cp` does) receives the file under the source's name; otherwise it is the new
/// file's path. Destination folders are created.
///
/// Decisions: CopyFile follows a source link (copies the file it points to); MoveFile moves
/// the link itself. A wildcard matching nothing fails ("the source files do not exist").
/// Copying a file onto itself fails (it would truncate it).
pub(super) fn transfer_file(
    ctx: &ActionContext,
    e: &TransferEntry,
    moving: bool,
) -> Result<(), String> {
    let src = e.source.as_str();
    let dst = e.destination.as_str();
    let overwrite = flag_or(&e.overwrite, "overwrite", true)?;
    wildcard_only_last("source", src)?;
    let (_, name) = split_last(src);
    let wildcard = has_wildcard(&name);
    let sources = if wildcard {
        let mut files = Vec::new();
        for (doc, n) in expand(ctx, "source", src)? {
            let host = if moving {
                resolve_link(ctx, &doc)?
            } else {
                resolve(ctx, &doc)?
            };
            if fs::symlink_metadata(&host).is_ok_and(|m| !m.is_dir()) {
                files.push((doc, n, host));
            }
        }
        if files.is_empty() {
            return Err(format!("{src}: no file matches"));
        }
        files
    } else {
        let host = if moving {
            resolve_link(ctx, src)?
        } else {
            resolve(ctx, src)?
        };
        vec![(src.to_string(), name, host)]
    };
    let into_folder = wildcard
        || dst.ends_with('/')
        || resolve(ctx, dst).is_ok_and(|h| fs::metadata(h).is_ok_and(|m| m.is_dir()));
    let mut plan = Vec::with_capacity(sources.len());
    for (doc, n, src_host) in sources {
        let meta = fs::symlink_metadata(&src_host).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => format!("{doc}: no such file"),
            _ => io_err(&doc)(err),
        })?;
        if meta.is_dir() {
            return Err(format!("{doc}: is a folder, not a file"));
        }
        let dest_doc = if into_folder {
            join_doc(dst, &n)
        } else {
            dst.to_string()
        };
        let dst_host = if moving {
            resolve_link(ctx, &dest_doc)?
        } else {
            resolve(ctx, &dest_doc)?
        };
        if dst_host == src_host {
            return Err(format!("{doc}: source and destination are the same file"));
        }
        if let Ok(m) = fs::symlink_metadata(&dst_host) {
            if m.is_dir() {
                return Err(format!("{dest_doc}: is a folder"));
            }
            if !overwrite {
                return Err(format!(
                    "{dest_doc}: the file already exists and overwrite is false"
                ));
            }
        }
        plan.push((src_host, dst_host, meta.file_type()));
    }
    // Every source and destination is checked before anything is copied or moved.
    for (src_host, dst_host, ft) in plan {
        create_parent(ctx, &dst_host)?;
        if moving {
            rename_or_copy(ctx, &src_host, &dst_host)?;
        } else {
            copy_entry(ctx, &src_host, &dst_host, &ft)?;
        }
    }
    Ok(())
}

/// CopyFolder and MoveFolder.
///
/// The source's last component may hold a wildcard (then every matching folder is copied into
/// the destination folder). A destination ending in `/` receives the folder under the source's
/// name; otherwise the destination is the new folder's path. Missing parents are created.
///
/// Decision: an existing destination is replaced (removed, then copied or moved) when
/// `overwrite` is true, as the docs say "replaced"; a failure when false. A destination that is
/// the source, inside it, or containing it fails (replacing it would destroy the source).
/// The source is followed if it is a link (its folder is copied or moved).
pub(super) fn transfer_folder(
    ctx: &ActionContext,
    e: &TransferEntry,
    moving: bool,
) -> Result<(), String> {
    let src = e.source.as_str();
    let dst = e.destination.as_str();
    let overwrite = flag_or(&e.overwrite, "overwrite", true)?;
    wildcard_only_last("source", src)?;
    let (_, name) = split_last(src);
    let wildcard = has_wildcard(&name);
    let sources = if wildcard {
        let mut folders = Vec::new();
        for (doc, n) in expand(ctx, "source", src)? {
            let host = resolve(ctx, &doc)?;
            if fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()) {
                folders.push((doc, n, host));
            }
        }
        if folders.is_empty() {
            return Err(format!("{src}: no folder matches"));
        }
        folders
    } else {
        vec![(src.to_string(), name, resolve(ctx, src)?)]
    };
    let into_folder = wildcard || dst.ends_with('/');
    let mut plan = Vec::with_capacity(sources.len());
    for (doc, n, src_host) in sources {
        match fs::symlink_metadata(&src_host) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(format!("{doc}: no such folder"))
            }
            Err(err) => return Err(io_err(&doc)(err)),
            Ok(m) if !m.is_dir() => return Err(format!("{doc}: is not a folder")),
            Ok(_) => {}
        }
        if is_root(ctx, &src_host) {
            return Err(format!(
                "{doc}: cannot copy or move the target's root folder"
            ));
        }
        let dest_doc = if into_folder {
            join_doc(dst, &n)
        } else {
            dst.to_string()
        };
        let dst_host = resolve_link(ctx, &dest_doc)?;
        if dst_host.starts_with(&src_host) {
            return Err(format!(
                "{dest_doc}: the destination is the source folder {doc} or inside it"
            ));
        }
        if src_host.starts_with(&dst_host) {
            return Err(format!(
                "{dest_doc}: the destination contains the source folder {doc}"
            ));
        }
        if fs::symlink_metadata(&dst_host).is_ok() && !overwrite {
            return Err(format!(
                "{dest_doc}: the destination already exists and overwrite is false"
            ));
        }
        plan.push((dest_doc, src_host, dst_host));
    }
    // Every source and destination is checked before anything is removed, copied or moved.
    for (dest_doc, src_host, dst_host) in plan {
        if let Ok(m) = fs::symlink_metadata(&dst_host) {
            if m.is_dir() {
                fs::remove_dir_all(&dst_host).map_err(io_err(&dest_doc))?;
            } else {
                fs::remove_file(&dst_host).map_err(io_err(&dest_doc))?;
            }
        }
        create_parent(ctx, &dst_host)?;
        if moving {
            rename_or_copy(ctx, &src_host, &dst_host)?;
        } else {
            copy_tree(ctx, &src_host, &dst_host)?;
        }
    }
    Ok(())
}
