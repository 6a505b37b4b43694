//! The actions that answer something: ListFiles (the `files` output) and ReadFile (`content`).

use super::encoding::{decode_file, Encoding};
use super::optional;
use super::paths::{doc_of, io_err, pattern, resolve, walk};
use crate::actions::inputs::{flag_or, Text};
use crate::actions::{ActionContext, Stream};
use serde::Deserialize;
use std::fs;
use std::io;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ListFilesEntry {
    path: Text,
    file_name_pattern: Option<Text>,
    recursive: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ReadFileEntry {
    path: Text,
    encoding: Option<Text>,
    print_file_content: Option<Text>,
}

/// ListFiles: the files (every entry that is not a folder, links included and not followed)
/// in a folder, or below it with `recursive: true`, whose names match `fileNamePattern`.
/// The answer is their absolute document paths, sorted, joined with `,` (as the docs' output
/// example). Decision: a pattern matches the file name only, never the folder part.
pub(super) fn list_files(ctx: &ActionContext, e: &ListFilesEntry) -> Result<String, String> {
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
pub(super) fn read_file(ctx: &ActionContext, e: &ReadFileEntry) -> Result<String, String> {
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
