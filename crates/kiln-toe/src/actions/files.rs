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
//! Decisions where the AWS documentation is silent are marked "Decision:" below.

use super::inputs::{flag_or, parse_list, Text};
use super::{ActionContext, ActionFailure, ActionKind, Outputs, Stream};
use crate::yaml::Value;
use glob::Pattern;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AppendEntry {
    path: Text,
    content: Option<Text>,
    encoding: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateFileEntry {
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
struct CreateFolderEntry {
    path: Text,
    owner: Option<Text>,
    group: Option<Text>,
    permissions: Option<Text>,
    overwrite: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SymlinkEntry {
    path: Text,
    target: Text,
    force: Option<Text>,
}

/// CopyFile, MoveFile, CopyFolder, MoveFolder.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TransferEntry {
    source: Text,
    destination: Text,
    overwrite: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteFileEntry {
    path: Text,
    /// Not in the AWS docs, but AWS's own sample documents write it (the Image Builder
    /// samples' InSpec component deletes a folder with `DeleteFile` and `force: true`), so it is
    /// accepted.
    force: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteFolderEntry {
    path: Text,
    force: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListFilesEntry {
    path: Text,
    file_name_pattern: Option<Text>,
    recursive: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadFileEntry {
    path: Text,
    encoding: Option<Text>,
    print_file_content: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EncodingEntry {
    path: Text,
    encoding: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileOwnerEntry {
    path: Text,
    owner: Text,
    group: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FolderOwnerEntry {
    path: Text,
    owner: Text,
    group: Option<Text>,
    recursive: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FilePermissionsEntry {
    path: Text,
    permissions: Text,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FolderPermissionsEntry {
    path: Text,
    permissions: Text,
    recursive: Option<Text>,
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// The host path for a document path, every symlink followed inside the root.
fn resolve(ctx: &ActionContext, doc: &str) -> Result<PathBuf, String> {
    ctx.target.resolve(doc).map_err(|e| target_error(doc, e))
}

/// The host path for a document path, the last component not followed.
fn resolve_link(ctx: &ActionContext, doc: &str) -> Result<PathBuf, String> {
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

fn doc_of(ctx: &ActionContext, host: &Path) -> String {
    if let Some(root) = resolved_root(ctx) {
        if let Ok(rel) = host.strip_prefix(&root) {
            return format!("/{}", rel.display());
        }
    }
    ctx.target.document_path(host)
}

fn is_root(ctx: &ActionContext, host: &Path) -> bool {
    resolved_root(ctx).is_some_and(|root| root == host)
}

fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or folder".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn io_err(doc: &str) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{doc}: {}", io_message(&e))
}

/// Splits a document path into its parent and its last component (trailing `/` ignored).
/// A path without `/` has parent `.` (the target's working directory).
fn split_last(path: &str) -> (String, String) {
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

fn join_doc(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Fails when a wildcard appears before the last component of `path`.
fn wildcard_only_last(field: &str, path: &str) -> Result<(), String> {
    if has_wildcard(&split_last(path).0) {
        return Err(format!(
            "{field} `{path}`: wildcards are accepted only after the last /"
        ));
    }
    Ok(())
}

fn pattern(field: &str, text: &str) -> Result<Pattern, String> {
    Pattern::new(text).map_err(|e| format!("{field} `{text}` is not a valid pattern: {}", e.msg))
}

/// The document paths (and names) of the entries of `path`'s parent folder whose names match
/// `path`'s last component, sorted by name. `field` names the input for messages.
fn expand(ctx: &ActionContext, field: &str, path: &str) -> Result<Vec<(String, String)>, String> {
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
fn walk(
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

fn create_parent(ctx: &ActionContext, host: &Path) -> Result<(), String> {
    if let Some(parent) = host.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("{}: {}", doc_of(ctx, parent), io_message(&e)))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Encodings
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
}

impl Encoding {
    #[cfg(test)]
    const ALL: [Encoding; 5] = [
        Encoding::Utf8,
        Encoding::Utf16Le,
        Encoding::Utf16Be,
        Encoding::Utf32Le,
        Encoding::Utf32Be,
    ];

    /// `utf8` when absent or empty; names are case-insensitive, UTF-16/32 without an endianness
    /// are little-endian (as the docs say).
    fn parse(value: Option<&Text>) -> Result<Encoding, String> {
        let Some(text) = value else {
            return Ok(Encoding::Utf8);
        };
        match text.as_str().trim().to_ascii_lowercase().as_str() {
            "" | "utf8" | "utf-8" => Ok(Encoding::Utf8),
            "utf16" | "utf-16" | "utf16-le" | "utf-16-le" => Ok(Encoding::Utf16Le),
            "utf16-be" | "utf-16-be" => Ok(Encoding::Utf16Be),
            "utf32" | "utf-32" | "utf32-le" | "utf-32-le" => Ok(Encoding::Utf32Le),
            "utf32-be" | "utf-32-be" => Ok(Encoding::Utf32Be),
            _ => Err(format!(
                "encoding must be one of utf8, utf16, utf16-LE, utf16-BE, utf32, utf32-LE, \
                 utf32-BE (or with a dash after utf), not `{}`",
                text.as_str()
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf16Le => "UTF-16LE",
            Encoding::Utf16Be => "UTF-16BE",
            Encoding::Utf32Le => "UTF-32LE",
            Encoding::Utf32Be => "UTF-32BE",
        }
    }

    fn bom(self) -> &'static [u8] {
        match self {
            Encoding::Utf8 => &[0xEF, 0xBB, 0xBF],
            Encoding::Utf16Le => &[0xFF, 0xFE],
            Encoding::Utf16Be => &[0xFE, 0xFF],
            Encoding::Utf32Le => &[0xFF, 0xFE, 0x00, 0x00],
            Encoding::Utf32Be => &[0x00, 0x00, 0xFE, 0xFF],
        }
    }

    fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Encoding::Utf8 => text.as_bytes().to_vec(),
            Encoding::Utf16Le => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            Encoding::Utf16Be => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
            Encoding::Utf32Le => text
                .chars()
                .flat_map(|c| (c as u32).to_le_bytes())
                .collect(),
            Encoding::Utf32Be => text
                .chars()
                .flat_map(|c| (c as u32).to_be_bytes())
                .collect(),
        }
    }

    /// Decodes `bytes`, dropping a leading byte order mark of this encoding.
    fn decode(self, bytes: &[u8]) -> Option<String> {
        let bytes = bytes.strip_prefix(self.bom()).unwrap_or(bytes);
        match self {
            Encoding::Utf8 => String::from_utf8(bytes.to_vec()).ok(),
            Encoding::Utf16Le | Encoding::Utf16Be => {
                if !bytes.len().is_multiple_of(2) {
                    return None;
                }
                let units = bytes.chunks_exact(2).map(|c| {
                    let pair = [c[0], c[1]];
                    if self == Encoding::Utf16Le {
                        u16::from_le_bytes(pair)
                    } else {
                        u16::from_be_bytes(pair)
                    }
                });
                char::decode_utf16(units)
                    .collect::<Result<String, _>>()
                    .ok()
            }
            Encoding::Utf32Le | Encoding::Utf32Be => {
                if !bytes.len().is_multiple_of(4) {
                    return None;
                }
                bytes
                    .chunks_exact(4)
                    .map(|c| {
                        let quad = [c[0], c[1], c[2], c[3]];
                        let n = if self == Encoding::Utf32Le {
                            u32::from_le_bytes(quad)
                        } else {
                            u32::from_be_bytes(quad)
                        };
                        char::from_u32(n)
                    })
                    .collect()
            }
        }
    }

    /// The encoding a file's byte order mark names; UTF-32 marks are checked before UTF-16
    /// ones (`FF FE 00 00` starts with `FF FE`).
    fn sniff(bytes: &[u8]) -> Option<Encoding> {
        [
            Encoding::Utf32Le,
            Encoding::Utf32Be,
            Encoding::Utf8,
            Encoding::Utf16Le,
            Encoding::Utf16Be,
        ]
        .into_iter()
        .find(|e| bytes.starts_with(e.bom()))
    }
}

fn decode_file(doc: &str, bytes: &[u8], encoding: Encoding) -> Result<String, String> {
    encoding
        .decode(bytes)
        .ok_or_else(|| format!("{doc}: the file is not valid {} text", encoding.name()))
}

// ---------------------------------------------------------------------------------------------
// Permissions and owners
// ---------------------------------------------------------------------------------------------

/// An octal mode such as `0755`, `755` or `0o755` (at most `7777`).
///
/// Note: YAML may read an unquoted `permissions: 0755` as the number 755 (the YAML crate
/// follows YAML 1.2, where a leading zero does not mean octal); its text is read as octal
/// either way.
fn parse_mode(field: &str, text: &Text) -> Result<u32, String> {
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

fn optional(value: &Option<Text>) -> Option<&Text> {
    value.as_ref().filter(|t| !t.as_str().trim().is_empty())
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
fn owner_ids(
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

fn chown(ctx: &ActionContext, host: &Path, ids: (Option<u32>, Option<u32>)) -> Result<(), String> {
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

fn chmod(ctx: &ActionContext, host: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(host, fs::Permissions::from_mode(mode)).map_err(|e| {
        format!(
            "{}: cannot change the permissions: {}",
            doc_of(ctx, host),
            io_message(&e)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Modules
// ---------------------------------------------------------------------------------------------

/// AppendFile: the file must exist; `content` (default empty) is encoded and appended.
/// Decision: no byte order mark is written.
fn append_file(ctx: &ActionContext, e: &AppendEntry) -> Result<(), String> {
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
fn create_file(ctx: &ActionContext, e: &CreateFileEntry) -> Result<(), String> {
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
fn create_folder(ctx: &ActionContext, e: &CreateFolderEntry) -> Result<(), String> {
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
fn create_symlink(ctx: &ActionContext, e: &SymlinkEntry) -> Result<(), String> {
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
fn transfer_file(ctx: &ActionContext, e: &TransferEntry, moving: bool) -> Result<(), String> {
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
fn transfer_folder(ctx: &ActionContext, e: &TransferEntry, moving: bool) -> Result<(), String> {
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

/// DeleteFile: removes a file (a link itself, never what it points to).
/// Decisions: a missing file named without a wildcard fails; a wildcard matching nothing
/// succeeds (nothing to delete). Without `force`, folders are never removed (a named folder
/// fails, matching folders are skipped). With the undocumented `force: true` (see
/// [`DeleteFileEntry`]) it acts as `rm -rf`: a missing file is not an error, and folders, named
/// or matched, are removed with their contents (never the target's root).
fn delete_file(ctx: &ActionContext, e: &DeleteFileEntry) -> Result<(), String> {
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
fn delete_folder(ctx: &ActionContext, e: &DeleteFolderEntry) -> Result<(), String> {
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

/// ListFiles: the files (every entry that is not a folder, links included and not followed)
/// in a folder, or below it with `recursive: true`, whose names match `fileNamePattern`.
/// The answer is their absolute document paths, sorted, joined with `,` (as the docs' output
/// example). Decision: a pattern matches the file name only, never the folder part.
fn list_files(ctx: &ActionContext, e: &ListFilesEntry) -> Result<String, String> {
    let doc = e.path.as_str();
    let recursive = flag_or(&e.recursive, "recursive", false)?;
    let pat = optional(&e.file_name_pattern)
        .map(|p| pattern("fileNamePattern", p.as_str()))
        .transpose()?;
    let host = resolve(ctx, doc)?;
    match fs::metadata(&host) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("{doc}: no such folder"))
        }
        Err(err) => return Err(io_err(doc)(err)),
        Ok(m) if !m.is_dir() => return Err(format!("{doc}: is not a folder")),
        Ok(_) => {}
    }
    let mut files = Vec::new();
    let mut visit = |path: &Path, ft: &fs::FileType| {
        if ft.is_dir() {
            return Ok(());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if pat.as_ref().is_none_or(|p| p.matches(&name)) {
            files.push(doc_of(ctx, path));
        }
        Ok(())
    };
    if recursive {
        walk(ctx, &host, &mut visit)?;
    } else {
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(&host)
            .map_err(io_err(doc))?
            .collect::<Result<_, _>>()
            .map_err(io_err(doc))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let ft = entry.file_type().map_err(io_err(doc))?;
            visit(&entry.path(), &ft)?;
        }
    }
    files.sort();
    Ok(files.join(","))
}

/// ReadFile: follows links (inside the root); text only (bytes that are not valid text in the
/// encoding fail). A leading byte order mark of the encoding is dropped. With
/// `printFileContent: true` each line goes to the console.
fn read_file(ctx: &ActionContext, e: &ReadFileEntry) -> Result<String, String> {
    let doc = e.path.as_str();
    let encoding = Encoding::parse(e.encoding.as_ref())?;
    let print = flag_or(&e.print_file_content, "printFileContent", false)?;
    let host = resolve(ctx, doc)?;
    match fs::metadata(&host) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("{doc}: no such file"))
        }
        Err(err) => return Err(io_err(doc)(err)),
        Ok(m) if m.is_dir() => return Err(format!("{doc}: is a folder, not a file")),
        Ok(_) => {}
    }
    let bytes = fs::read(&host).map_err(io_err(doc))?;
    let content = decode_file(doc, &bytes, encoding)?;
    if print {
        for line in content.lines() {
            ctx.console.line(Stream::Stdout, line);
        }
    }
    Ok(content)
}

/// SetFileEncoding: re-encodes the file's text.
/// Decisions: the current encoding is the one a byte order mark names, else UTF-8 (the docs
/// speak of converting from UTF-8). UTF-16 and UTF-32 results start with a byte order mark, so
/// the file says its own encoding and a later SetFileEncoding can convert it back; UTF-8 is
/// written without one. Mode and owner are kept (the file is rewritten in place).
fn set_file_encoding(ctx: &ActionContext, e: &EncodingEntry) -> Result<(), String> {
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
    let bytes = fs::read(&host).map_err(io_err(doc))?;
    let current = Encoding::sniff(&bytes).unwrap_or(Encoding::Utf8);
    let text = decode_file(doc, &bytes, current)?;
    let mut out = Vec::new();
    if encoding != Encoding::Utf8 {
        out.extend_from_slice(encoding.bom());
    }
    out.extend(encoding.encode(&text));
    fs::write(&host, out).map_err(io_err(doc))
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
fn set_file_owner(ctx: &ActionContext, e: &FileOwnerEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let ids = owner_ids(ctx, Some(required_owner(&e.owner)?), optional(&e.group))?;
    let host = existing(ctx, doc, false)?;
    chown(ctx, &host, ids)
}

/// SetFolderOwner: recursive by default; links inside the folder get their own owner changed
/// (`lchown`) and are not followed.
fn set_folder_owner(ctx: &ActionContext, e: &FolderOwnerEntry) -> Result<(), String> {
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
fn set_file_permissions(ctx: &ActionContext, e: &FilePermissionsEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let mode = parse_mode("permissions", &e.permissions)?;
    let host = existing(ctx, doc, false)?;
    chmod(ctx, &host, mode)
}

/// SetFolderPermissions: recursive by default; every file and folder below gets the same mode
/// (as `chmod -R`); links inside are skipped (chmod would follow them).
fn set_folder_permissions(ctx: &ActionContext, e: &FolderPermissionsEntry) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::ActionConfig;
    use crate::target::LocalTarget;
    use std::os::unix::fs::MetadataExt;
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
    fn encodings_parse_and_round_trip() {
        let names: &[(&str, Encoding)] = &[
            ("utf8", Encoding::Utf8),
            ("UTF-8", Encoding::Utf8),
            ("utf16", Encoding::Utf16Le),
            ("UTF-16", Encoding::Utf16Le),
            ("utf16-LE", Encoding::Utf16Le),
            ("utf-16-le", Encoding::Utf16Le),
            ("utf16-BE", Encoding::Utf16Be),
            ("Utf-16-Be", Encoding::Utf16Be),
            ("utf32", Encoding::Utf32Le),
            ("utf-32", Encoding::Utf32Le),
            ("utf32-LE", Encoding::Utf32Le),
            ("utf-32-LE", Encoding::Utf32Le),
            ("utf32-BE", Encoding::Utf32Be),
            ("UTF-32-BE", Encoding::Utf32Be),
        ];
        for (name, want) in names {
            assert_eq!(
                Encoding::parse(Some(&Text(name.to_string()))),
                Ok(*want),
                "{name}"
            );
        }
        assert_eq!(Encoding::parse(None), Ok(Encoding::Utf8));
        let err = Encoding::parse(Some(&Text("latin1".into()))).unwrap_err();
        assert!(
            err.starts_with("encoding must be one of") && err.ends_with("not `latin1`"),
            "{err}"
        );

        let text = "héllo 𝄞 wörld\n";
        for enc in Encoding::ALL {
            let bytes = enc.encode(text);
            assert_eq!(enc.decode(&bytes).as_deref(), Some(text), "{enc:?}");
            let mut with_bom = enc.bom().to_vec();
            with_bom.extend(&bytes);
            assert_eq!(enc.decode(&with_bom).as_deref(), Some(text), "{enc:?} bom");
            assert_eq!(Encoding::sniff(&with_bom), Some(enc), "{enc:?} sniff");
        }
        assert_eq!(Encoding::Utf16Le.encode("A"), vec![0x41, 0]);
        assert_eq!(Encoding::Utf16Be.encode("A"), vec![0, 0x41]);
        assert_eq!(Encoding::Utf32Le.encode("A"), vec![0x41, 0, 0, 0]);
        assert_eq!(Encoding::Utf32Be.encode("A"), vec![0, 0, 0, 0x41]);
        assert_eq!(Encoding::Utf16Le.decode(&[0x41]), None);
        assert_eq!(Encoding::Utf32Le.decode(&[0, 0xD8, 0, 0]), None);
        assert_eq!(Encoding::Utf8.decode(&[0xFF]), None);
    }

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
    fn create_file_defaults_and_options() {
        let f = Fixture::new();
        f.ok(
            CreateFile,
            "- {path: /new/dir/a.txt, content: hello}\n- path: b.txt",
        );
        assert_eq!(f.read("new/dir/a.txt"), "hello");
        assert_eq!(f.read("b.txt"), "");
        // Default mode: 0666 less the umask, so never more than 0666.
        assert_eq!(f.mode("b.txt") & !0o666, 0);

        f.ok(
            CreateFile,
            "- {path: /b.txt, content: again, permissions: '0640'}",
        );
        assert_eq!(f.read("b.txt"), "again");
        assert_eq!(f.mode("b.txt"), 0o640);
        f.ok(CreateFile, "- {path: /c.txt, permissions: 755}");
        assert_eq!(f.mode("c.txt"), 0o755);

        f.ok(
            CreateFile,
            "- {path: /u16.txt, content: AB, encoding: UTF-16}",
        );
        assert_eq!(fs::read(f.p("u16.txt")).unwrap(), vec![0x41, 0, 0x42, 0]);

        let err = f.fails(
            CreateFile,
            "- {path: /fresh, content: x}\n- {path: /b.txt, content: x, overwrite: false}",
        );
        assert_eq!(
            err,
            "inputs[1]: /b.txt: the file already exists and overwrite is false"
        );
        assert_eq!(f.read("b.txt"), "again");
        assert!(f.exists("fresh"), "entries before the failing one ran");

        let cases: &[(&str, &str)] = &[
            (
                "- {path: /new, content: x}",
                "inputs[0]: /new: is a folder, not a file",
            ),
            (
                "- {path: /d, permissions: abc}",
                "inputs[0]: permissions must be an octal mode such as 0755, not `abc`",
            ),
            (
                "- {path: /d, overwrite: maybe}",
                "inputs[0]: overwrite must be true or false, not `maybe`",
            ),
            ("- {path: /d, encoding: ebcdic}", "not `ebcdic`"),
            (
                "- {path: /d, owner: nobody-here}",
                "inputs[0]: owner `nobody-here`: no such user in the target's /etc/passwd",
            ),
            (
                "- {path: /d, group: nogroup-here}",
                "inputs[0]: group `nogroup-here`: no such group in the target's /etc/group",
            ),
            ("- {path: ''}", "inputs[0]: path ``: the path is empty"),
        ];
        for (src, want) in cases {
            let err = f.fails(CreateFile, src);
            assert!(err.contains(want), "{src}: {err}");
        }
        assert!(!f.exists("d"));
    }

    #[test]
    fn append_file() {
        let f = Fixture::new();
        f.write("a.txt", "one\n");
        f.ok(
            AppendFile,
            "- {path: /a.txt, content: two}\n- {path: a.txt}",
        );
        assert_eq!(f.read("a.txt"), "one\ntwo");
        f.ok(
            CreateFile,
            "- {path: /w.txt, content: A, encoding: utf32-be}",
        );
        f.ok(
            AppendFile,
            "- {path: /w.txt, content: B, encoding: UTF-32-BE}",
        );
        assert_eq!(
            fs::read(f.p("w.txt")).unwrap(),
            vec![0, 0, 0, 0x41, 0, 0, 0, 0x42]
        );
        assert_eq!(
            f.fails(AppendFile, "- {path: /a.txt}\n- {path: /etc/x, content: y}"),
            "inputs[1]: /etc/x: no such file"
        );
        assert!(!f.exists("etc/x"));
        assert_eq!(
            f.fails(AppendFile, "- {path: /scratch}"),
            "inputs[0]: /scratch: is a folder, not a file"
        );
    }

    #[test]
    fn create_folder() {
        let f = Fixture::new();
        f.ok(
            CreateFolder,
            "- {path: /a/b/c/}\n- {path: /p, permissions: '0750'}",
        );
        assert!(f.p("a/b/c").is_dir());
        assert_eq!(f.mode("p"), 0o750);
        f.write("a/b/c/keep", "k");
        // Default overwrite: an existing folder stays, with its contents.
        f.ok(CreateFolder, "- {path: /a/b/c, permissions: 0700}");
        assert_eq!(f.read("a/b/c/keep"), "k");
        assert_eq!(f.mode("a/b/c"), 0o700);
        assert_eq!(
            f.fails(CreateFolder, "- {path: /a/b/c, overwrite: false}"),
            "inputs[0]: /a/b/c: the folder already exists and overwrite is false"
        );
        assert_eq!(
            f.fails(CreateFolder, "- {path: /a/b/c/keep}"),
            "inputs[0]: /a/b/c/keep: exists and is not a folder"
        );
    }

    #[test]
    fn create_symlink() {
        let f = Fixture::new();
        f.write("t.txt", "target");
        f.ok(
            CreateSymlink,
            "- {path: /links/l, target: /t.txt}\n- {path: rel, target: t.txt}",
        );
        assert_eq!(
            fs::read_link(f.p("links/l")).unwrap(),
            PathBuf::from("/t.txt")
        );
        assert_eq!(fs::read_link(f.p("rel")).unwrap(), PathBuf::from("/t.txt"));
        assert_eq!(f.out(ReadFile, "- path: /links/l", "content"), "target");

        f.write("u.txt", "other");
        assert_eq!(
            f.fails(CreateSymlink, "- {path: /links/l, target: /u.txt}"),
            "inputs[0]: /links/l: a link already exists (set force to true to replace it)"
        );
        f.ok(
            CreateSymlink,
            "- {path: /links/l, target: /u.txt, force: true}",
        );
        assert_eq!(
            fs::read_link(f.p("links/l")).unwrap(),
            PathBuf::from("/u.txt")
        );
        assert_eq!(
            f.fails(
                CreateSymlink,
                "- {path: /u.txt, target: /t.txt, force: true}"
            ),
            "inputs[0]: /u.txt: a file or folder that is not a link already exists"
        );
        assert_eq!(
            f.fails(CreateSymlink, "- {path: /l2, target: /missing}"),
            "inputs[0]: /l2: the link target /missing does not exist"
        );
        assert!(!f.exists("l2"));
    }

    #[test]
    fn copy_file() {
        let f = Fixture::new();
        f.write("src/a.log", "A");
        f.write("src/b.log", "B");
        f.write("src/c.txt", "C");
        f.write("src/.hidden.log", "H");
        fs::create_dir_all(f.p("src/dir.log")).unwrap();
        f.ok(
            CopyFile,
            "- {source: /src/a.log, destination: /dst/renamed.txt}\n- {source: /src/c.txt, destination: /dst/}",
        );
        assert_eq!(f.read("dst/renamed.txt"), "A");
        assert_eq!(f.read("dst/c.txt"), "C");
        assert_eq!(f.read("src/a.log"), "A");
        // An existing folder without a trailing / receives the file under its name.
        f.ok(
            CopyFile,
            "- {source: /src/c.txt, destination: /src/dir.log}",
        );
        assert_eq!(f.read("src/dir.log/c.txt"), "C");

        // Wildcard: matching files (folders skipped, dot files matched) into a folder.
        f.ok(CopyFile, "- {source: '/src/*.log', destination: /logs}");
        assert_eq!(f.read("logs/a.log"), "A");
        assert_eq!(f.read("logs/b.log"), "B");
        assert_eq!(f.read("logs/.hidden.log"), "H");
        assert!(!f.exists("logs/c.txt") && !f.exists("logs/dir.log"));

        // Overwrite by default; not with overwrite: false.
        f.write("src/a.log", "A2");
        f.ok(
            CopyFile,
            "- {source: /src/a.log, destination: /dst/renamed.txt}",
        );
        assert_eq!(f.read("dst/renamed.txt"), "A2");
        assert_eq!(
            f.fails(
                CopyFile,
                "- {source: /src/b.log, destination: /dst/renamed.txt, overwrite: false}"
            ),
            "inputs[0]: /dst/renamed.txt: the file already exists and overwrite is false"
        );
        assert_eq!(f.read("dst/renamed.txt"), "A2");

        let cases: &[(&str, &str)] = &[
            (
                "- {source: /src/nope, destination: /x}",
                "inputs[0]: /src/nope: no such file",
            ),
            (
                "- {source: '/src/*.none', destination: /x/}",
                "inputs[0]: /src/*.none: no file matches",
            ),
            (
                "- {source: '/s*/a.log', destination: /x/}",
                "inputs[0]: source `/s*/a.log`: wildcards are accepted only after the last /",
            ),
            (
                "- {source: '/nodir/*', destination: /x/}",
                "inputs[0]: /nodir: no such folder",
            ),
            (
                "- {source: /src/dir.log, destination: /x}",
                "inputs[0]: /src/dir.log: is a folder, not a file",
            ),
            (
                "- {source: /src/a.log, destination: /src/a.log}",
                "inputs[0]: /src/a.log: source and destination are the same file",
            ),
            (
                "- {source: /src/a.log, destination: /src/, overwrite: true}",
                "same file",
            ),
            (
                "- {source: '/src/[', destination: /x/}",
                "source `[` is not a valid pattern",
            ),
        ];
        for (src, want) in cases {
            let err = f.fails(CopyFile, src);
            assert!(err.contains(want), "{src}: {err}");
        }
        assert_eq!(f.read("src/a.log"), "A2");
    }

    #[test]
    fn move_file() {
        let f = Fixture::new();
        f.write("src/a.log", "A");
        f.write("src/b.log", "B");
        f.write("t.txt", "T");
        std::os::unix::fs::symlink("/t.txt", f.p("src/link")).unwrap();
        f.ok(
            MoveFile,
            "- {source: /src/a.log, destination: /dst/moved}\n- {source: /src/link, destination: /dst/}",
        );
        assert_eq!(f.read("dst/moved"), "A");
        assert!(!f.exists("src/a.log"));
        // The link itself moved; what it points to stayed.
        assert_eq!(
            fs::read_link(f.p("dst/link")).unwrap(),
            PathBuf::from("/t.txt")
        );
        assert_eq!(f.read("t.txt"), "T");

        f.write("src/a.log", "A2");
        f.write("dst/a.log", "old");
        assert_eq!(
            f.fails(
                MoveFile,
                "- {source: '/src/*.log', destination: /dst/, overwrite: false}\n"
            ),
            "inputs[0]: /dst/a.log: the file already exists and overwrite is false"
        );
        // Nothing moved: every match is checked first.
        assert!(f.exists("src/a.log") && f.exists("src/b.log") && !f.exists("dst/b.log"));
        f.ok(MoveFile, "- {source: '/src/*.log', destination: /dst/}");
        assert_eq!(f.read("dst/a.log"), "A2");
        assert_eq!(f.read("dst/b.log"), "B");
        assert!(!f.exists("src/a.log") && !f.exists("src/b.log"));
        assert_eq!(
            f.fails(MoveFile, "- {source: /src/a.log, destination: /x}"),
            "inputs[0]: /src/a.log: no such file"
        );
    }

    #[test]
    fn copy_and_move_folders() {
        let f = Fixture::new();
        f.write("src/tree/a.txt", "A");
        f.write("src/tree/sub/b.txt", "B");
        fs::set_permissions(f.p("src/tree/sub"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("/etc", f.p("src/tree/etc-link")).unwrap();
        f.write("src/other/o.txt", "O");

        f.ok(
            CopyFolder,
            "- {source: /src/tree, destination: /copy/}\n- {source: /src/tree, destination: /named}",
        );
        for base in ["copy/tree", "named"] {
            assert_eq!(f.read(&format!("{base}/a.txt")), "A");
            assert_eq!(f.read(&format!("{base}/sub/b.txt")), "B");
            assert_eq!(f.mode(&format!("{base}/sub")), 0o750);
            // Links are copied as links, never followed.
            assert_eq!(
                fs::read_link(f.p(&format!("{base}/etc-link"))).unwrap(),
                PathBuf::from("/etc")
            );
        }
        assert_eq!(
            f.fails(
                CopyFolder,
                "- {source: /src/tree, destination: /named, overwrite: false}"
            ),
            "inputs[0]: /named: the destination already exists and overwrite is false"
        );
        // overwrite (default): the destination is replaced.
        f.write("named/stale.txt", "S");
        f.ok(CopyFolder, "- {source: /src/tree, destination: /named}");
        assert!(!f.exists("named/stale.txt"));
        assert_eq!(f.read("named/a.txt"), "A");

        // Wildcards copy every matching folder into the destination.
        f.write("src/file-not-folder", "x");
        f.ok(CopyFolder, "- {source: '/src/*', destination: /all}");
        assert_eq!(f.read("all/tree/a.txt"), "A");
        assert_eq!(f.read("all/other/o.txt"), "O");
        assert!(!f.exists("all/file-not-folder"));

        let cases: &[(&str, &str)] = &[
            ("- {source: /src/tree, destination: /src/tree/inner}", "inputs[0]: /src/tree/inner: the destination is the source folder /src/tree or inside it"),
            ("- {source: /src/tree, destination: /src/tree}", "the destination is the source folder"),
            ("- {source: /src/tree, destination: /src}", "inputs[0]: /src: the destination contains the source folder /src/tree"),
            ("- {source: /missing, destination: /x}", "inputs[0]: /missing: no such folder"),
            ("- {source: /src/file-not-folder, destination: /x}", "inputs[0]: /src/file-not-folder: is not a folder"),
            ("- {source: '/src/zz*', destination: /x}", "inputs[0]: /src/zz*: no folder matches"),
            ("- {source: /, destination: /x}", "the target's root folder"),
        ];
        for (src, want) in cases {
            let err = f.fails(CopyFolder, src);
            assert!(err.contains(want), "{src}: {err}");
        }
        assert_eq!(f.read("src/tree/a.txt"), "A");

        f.ok(MoveFolder, "- {source: /src/tree, destination: /moved/}\n- {source: /src/other, destination: /renamed}");
        assert_eq!(f.read("moved/tree/sub/b.txt"), "B");
        assert_eq!(f.read("renamed/o.txt"), "O");
        assert!(!f.exists("src/tree") && !f.exists("src/other"));
        assert_eq!(
            f.fails(
                MoveFolder,
                "- {source: /moved/tree, destination: /renamed, overwrite: false}"
            ),
            "inputs[0]: /renamed: the destination already exists and overwrite is false"
        );
        f.ok(MoveFolder, "- {source: /moved/tree, destination: /renamed}");
        assert!(!f.exists("renamed/o.txt"));
        assert_eq!(f.read("renamed/a.txt"), "A");
    }

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

    #[test]
    fn list_files() {
        let f = Fixture::new();
        for name in ["d/a.log", "d/b.txt", "d/sub/c.log", "d/sub/deep/e.log"] {
            f.write(name, "x");
        }
        std::os::unix::fs::symlink("/etc", f.p("d/sub/etc-link")).unwrap();
        let cases: &[(&str, &str)] = &[
            ("- path: /d", "/d/a.log,/d/b.txt"),
            ("- {path: /d/, fileNamePattern: '*.log'}", "/d/a.log"),
            (
                "- {path: d, recursive: true}",
                "/d/a.log,/d/b.txt,/d/sub/c.log,/d/sub/deep/e.log,/d/sub/etc-link",
            ),
            (
                "- {path: /d, recursive: true, fileNamePattern: '*.log'}",
                "/d/a.log,/d/sub/c.log,/d/sub/deep/e.log",
            ),
            ("- {path: /d, fileNamePattern: '*.none'}", ""),
            (
                "- {path: /d, fileNamePattern: '*.log'}\n- {path: /d/sub}",
                "/d/a.log\n/d/sub/c.log,/d/sub/etc-link",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(f.out(ListFiles, src, "files"), *want, "{src}");
        }
        assert_eq!(
            f.fails(ListFiles, "- path: /nope"),
            "inputs[0]: /nope: no such folder"
        );
        assert_eq!(
            f.fails(ListFiles, "- path: /d/a.log"),
            "inputs[0]: /d/a.log: is not a folder"
        );
        assert_eq!(
            f.fails(ListFiles, "- {path: /d, recursive: 2}"),
            "inputs[0]: recursive must be true or false, not `2`"
        );
    }

    #[test]
    fn read_file() {
        let f = Fixture::new();
        f.write("a.txt", "line one\nline two\n");
        f.write("b.txt", "B");
        std::os::unix::fs::symlink("a.txt", f.p("link")).unwrap();
        assert_eq!(
            f.out(ReadFile, "- path: /a.txt", "content"),
            "line one\nline two\n"
        );
        assert_eq!(
            f.out(ReadFile, "- path: /link", "content"),
            "line one\nline two\n"
        );
        assert!(
            f.console.texts().is_empty(),
            "printFileContent defaults to false"
        );
        assert_eq!(
            f.out(
                ReadFile,
                "- {path: /b.txt, printFileContent: true}\n- path: /b.txt",
                "content"
            ),
            "B\nB"
        );
        assert_eq!(f.console.texts(), vec!["B".to_string()]);
        f.ok(
            CreateFile,
            "- {path: /w.txt, content: 'wide ü', encoding: utf-16-BE}",
        );
        assert_eq!(
            f.out(ReadFile, "- {path: /w.txt, encoding: UTF16-be}", "content"),
            "wide ü"
        );
        assert_eq!(
            f.fails(ReadFile, "- {path: /w.txt}"),
            "inputs[0]: /w.txt: the file is not valid UTF-8 text"
        );
        fs::write(f.p("bin"), [0xFF, 0xFE, 0xFD]).unwrap();
        assert_eq!(
            f.fails(ReadFile, "- path: /bin"),
            "inputs[0]: /bin: the file is not valid UTF-8 text"
        );
        assert_eq!(
            f.fails(ReadFile, "- path: /b.txt\n- path: /none"),
            "inputs[1]: /none: no such file"
        );
        assert_eq!(
            f.fails(ReadFile, "- path: /scratch"),
            "inputs[0]: /scratch: is a folder, not a file"
        );
    }

    #[test]
    fn set_file_encoding_round_trips() {
        let f = Fixture::new();
        let text = "Grüße, 世界 𝄞\n";
        for name in [
            "utf8",
            "utf16",
            "utf-16-BE",
            "UTF32",
            "utf32-be",
            "utf-16-le",
            "utf-32-LE",
        ] {
            f.write("t.txt", text);
            f.ok(
                SetFileEncoding,
                &format!("- {{path: /t.txt, encoding: {name}}}"),
            );
            let enc = Encoding::parse(Some(&Text(name.into()))).unwrap();
            let mut want = if enc == Encoding::Utf8 {
                Vec::new()
            } else {
                enc.bom().to_vec()
            };
            want.extend(enc.encode(text));
            assert_eq!(fs::read(f.p("t.txt")).unwrap(), want, "{name}");
            assert_eq!(
                f.out(
                    ReadFile,
                    &format!("- {{path: /t.txt, encoding: {name}}}"),
                    "content"
                ),
                text,
                "{name}"
            );
            // And back to UTF-8: the byte order mark says where from.
            f.ok(SetFileEncoding, "- path: /t.txt");
            assert_eq!(f.read("t.txt"), text, "{name} back");
        }
        fs::set_permissions(f.p("t.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        f.ok(SetFileEncoding, "- {path: /t.txt, encoding: utf16}");
        assert_eq!(f.mode("t.txt"), 0o600, "the mode is kept");
        assert_eq!(
            f.fails(SetFileEncoding, "- path: /none"),
            "inputs[0]: /none: no such file"
        );
        fs::write(f.p("bin"), [0xC3]).unwrap();
        assert_eq!(
            f.fails(SetFileEncoding, "- {path: /bin, encoding: utf16}"),
            "inputs[0]: /bin: the file is not valid UTF-8 text"
        );
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
        fn any_text_round_trips_through_every_encoding(text in "\\PC*") {
            for enc in Encoding::ALL {
                proptest::prop_assert_eq!(enc.decode(&enc.encode(&text)), Some(text.clone()));
            }
        }

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
}
