//! `COPY --from=<stage>` and `COPY <<EOF` here-documents.
//!
//! Files are copied by Kiln between two instances' root file systems. Every path on either
//! side is resolved inside its own root (symlinks followed only within it), one entry at a
//! time, and nothing runs in either instance meanwhile (a stage's processes are stopped after
//! each `RUN`, and a finished stage's when it ended), so an image cannot point a copy at the
//! host. Symlinks are copied as symlinks; device nodes, FIFOs and sockets are left out.
//! Copies are owned by root unless `--chown` says otherwise, as Docker does.

use super::state::StageState;
use super::user;
use kiln_dockerfile::CopySpec;
use kiln_instance::Instance;
use kiln_toe::target::Target;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Who copies belong to, and which mode they get.
struct Placement {
    /// Host ids (the instance's ids shifted into its user namespace range, if it has one).
    uid: u32,
    gid: u32,
    mode: Option<u32>,
}

pub(super) fn copy(
    dest: &Instance,
    source: Option<&Instance>,
    state: &StageState,
    spec: &CopySpec,
) -> Result<(), String> {
    let destination = state.expand(&spec.destination)?;
    if destination.is_empty() {
        return Err("the destination is empty".to_string());
    }
    let as_dir = destination.ends_with('/');
    let destination = absolute(&destination, &state.current_dir());
    let (uid, gid) = match &spec.chown {
        Some(owner) => {
            let owner = state.expand(owner)?;
            let user = user::resolve(dest, &owner)?;
            (user.uid, user.gid)
        }
        None => (0, 0),
    };
    let mode = match &spec.chmod {
        Some(mode) => Some(
            u32::from_str_radix(&state.expand(mode)?, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| format!("--chmod={mode}: give an octal mode such as 755"))?,
        ),
        None => None,
    };
    let shift = |id: u32| dest.id_base().map_or(id, |base| base + id);
    let placement = Placement {
        uid: shift(uid),
        gid: shift(gid),
        mode,
    };
    for heredoc in &spec.heredocs {
        let target = if as_dir {
            format!("{}/{}", destination.trim_end_matches('/'), heredoc.name)
        } else {
            destination.clone()
        };
        let path = prepare(dest, &target)?;
        std::fs::write(&path, &heredoc.content).map_err(|e| format!("writing {target}: {e}"))?;
        place(&path, &target, &placement, 0o644)?;
    }
    let Some(from) = source else {
        if spec.sources.is_empty() || !spec.heredocs.is_empty() {
            return Ok(());
        }
        return Err(
            "only COPY --from=<stage> and here-documents can be copied: a container recipe has no build context"
                .to_string(),
        );
    };
    let mut matched = Vec::new();
    for pattern in &spec.sources {
        // Sources are paths from the root of the stage they come from, whatever its WORKDIR.
        let pattern = absolute(&state.expand(pattern)?, "/");
        let found = matches(from, &pattern)?;
        if found.is_empty() {
            return Err(format!(
                "{pattern}: no such file or directory in that stage"
            ));
        }
        matched.extend(found);
    }
    let into_dir = as_dir || matched.len() > 1;
    for inside in matched {
        let host = host_path(from, &inside)?;
        let meta = std::fs::metadata(&host).map_err(|e| format!("{inside}: {e}"))?;
        if meta.is_dir() {
            // A directory's contents are copied, not the directory itself.
            copy_tree(from, &inside, dest, &destination, &placement)?;
        } else {
            let name = inside.rsplit('/').next().unwrap_or_default();
            let existing_dir = dest.resolve(&destination).is_ok_and(|p| p.is_dir());
            let target = if into_dir || existing_dir {
                format!("{}/{name}", destination.trim_end_matches('/'))
            } else {
                destination.clone()
            };
            copy_entry(from, &inside, dest, &target, &placement)?;
        }
    }
    Ok(())
}

/// `path` made absolute against `dir`.
fn absolute(path: &str, dir: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", dir.trim_end_matches('/'))
    }
}

/// The paths inside `from` that `pattern` names: itself, or the entries its last component
/// matches when that has wildcards (`*`, `?`, `[...]`).
fn matches(from: &Instance, pattern: &str) -> Result<Vec<String>, String> {
    let (parent, last) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    if !last.contains(['*', '?', '[']) {
        return Ok(from
            .resolve(pattern)
            .is_ok_and(|p| p.symlink_metadata().is_ok())
            .then(|| pattern.to_string())
            .into_iter()
            .collect());
    }
    let glob = glob::Pattern::new(last).map_err(|e| format!("{pattern}: {e}"))?;
    let parent = if parent.is_empty() { "/" } else { parent };
    let dir = host_path(from, parent)?;
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| glob.matches(name))
        .map(|name| format!("{}/{name}", parent.trim_end_matches('/')))
        .collect();
    found.sort();
    Ok(found)
}

/// The host path of `inside` in `dest`, its parent directories made.
fn prepare(dest: &Instance, inside: &str) -> Result<std::path::PathBuf, String> {
    if let Some((parent, _)) = inside.rsplit_once('/') {
        if !parent.is_empty() {
            let host = host_path(dest, parent)?;
            std::fs::create_dir_all(&host).map_err(|e| format!("creating {parent}: {e}"))?;
        }
    }
    // The last component is not followed: a symlink there is replaced, not written through.
    let host = host_link(dest, inside)?;
    if host
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        std::fs::remove_file(&host).map_err(|e| format!("replacing {inside}: {e}"))?;
    }
    Ok(host)
}

/// Owner and mode of a copy (`default_mode` when the source had none to keep).
fn place(
    host: &Path,
    inside: &str,
    placement: &Placement,
    default_mode: u32,
) -> Result<(), String> {
    std::os::unix::fs::lchown(host, Some(placement.uid), Some(placement.gid))
        .map_err(|e| format!("setting the owner of {inside}: {e}"))?;
    let is_link = host
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        return Ok(());
    }
    let mode = placement
        .mode
        .or_else(|| (default_mode != 0).then_some(default_mode));
    if let Some(mode) = mode {
        std::fs::set_permissions(host, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("setting the mode of {inside}: {e}"))?;
    }
    Ok(())
}

/// Copies one entry (file, symlink or directory tree) from `source` in `from` to `target` in
/// `dest`.
fn copy_entry(
    from: &Instance,
    source: &str,
    dest: &Instance,
    target: &str,
    placement: &Placement,
) -> Result<(), String> {
    let host = host_link(from, source)?;
    let meta = host
        .symlink_metadata()
        .map_err(|e| format!("{source}: {e}"))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return copy_tree(from, source, dest, target, placement);
    }
    if !(kind.is_file() || kind.is_symlink()) {
        return Ok(());
    }
    let out = prepare(dest, target)?;
    if out.is_dir() {
        return Err(format!(
            "{target} is a directory; end the destination with / to copy into it"
        ));
    }
    if kind.is_symlink() {
        let link = std::fs::read_link(&host).map_err(|e| format!("{source}: {e}"))?;
        if out.symlink_metadata().is_ok() {
            std::fs::remove_file(&out).map_err(|e| format!("replacing {target}: {e}"))?;
        }
        std::os::unix::fs::symlink(&link, &out).map_err(|e| format!("{target}: {e}"))?;
        return place(&out, target, placement, 0);
    }
    std::fs::copy(&host, &out).map_err(|e| format!("copying {source} to {target}: {e}"))?;
    place(&out, target, placement, meta.permissions().mode() & 0o7777)
}

/// Copies the contents of directory `source` into directory `target` (made if missing).
fn copy_tree(
    from: &Instance,
    source: &str,
    dest: &Instance,
    target: &str,
    placement: &Placement,
) -> Result<(), String> {
    let host = host_path(from, source)?;
    let meta = std::fs::metadata(&host).map_err(|e| format!("{source}: {e}"))?;
    let out = host_path(dest, target)?;
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {target}: {e}"))?;
    place(&out, target, placement, meta.permissions().mode() & 0o7777)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&host).map_err(|e| format!("{source}: {e}"))? {
        let name = entry.map_err(|e| format!("{source}: {e}"))?.file_name();
        let name = name.into_string().map_err(|name| {
            format!(
                "{source}/{}: Kiln copies only file names that are UTF-8",
                name.to_string_lossy()
            )
        })?;
        names.push(name);
    }
    names.sort();
    for name in names {
        copy_entry(
            from,
            &format!("{}/{name}", source.trim_end_matches('/')),
            dest,
            &format!("{}/{name}", target.trim_end_matches('/')),
            placement,
        )?;
    }
    Ok(())
}

/// The host path of `path` inside `instance`'s root, symlinks followed only within it.
fn host_path(instance: &Instance, path: &str) -> Result<std::path::PathBuf, String> {
    instance.resolve(path).map_err(|e| format!("{path}: {e}"))
}

/// As [`host_path`], without following a symlink in the last component.
fn host_link(instance: &Instance, path: &str) -> Result<std::path::PathBuf, String> {
    instance
        .resolve_link(path)
        .map_err(|e| format!("{path}: {e}"))
}
