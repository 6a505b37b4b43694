//! `ADD <url> <dest>`: the download is a one-step component document (`WebDownload`) run by
//! the component engine against the stage's instance, so it goes through the same network
//! policy and destination checks as a component's downloads (no network unless the
//! infrastructure configuration gives the build one). The file then gets Docker's ownership and
//! mode for a remote `ADD`: root (or `--chown`) and 0600 (or `--chmod`).

use super::state::StageState;
use crate::{BuildRequest, Builder};
use kiln_dockerfile::CopySpec;
use kiln_instance::Instance;
use kiln_toe::engine::SourceDocument;
use kiln_toe::target::Target;
use std::os::unix::fs::PermissionsExt;

/// Whether a source of `ADD` is a URL it downloads.
pub(super) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

pub(super) fn add_urls(
    builder: &Builder,
    request: &BuildRequest,
    instance: &Instance,
    state: &StageState,
    spec: &CopySpec,
    line: usize,
) -> Result<(), String> {
    let destination = state.expand(&spec.destination)?;
    let into_dir = destination.ends_with('/') || spec.sources.len() > 1;
    let destination = if destination.starts_with('/') {
        destination
    } else {
        format!(
            "{}/{destination}",
            state.current_dir().trim_end_matches('/')
        )
    };
    let checksum = match &spec.checksum {
        Some(c) => {
            let c = state.expand(c)?;
            let hex = c
                .strip_prefix("sha256:")
                .ok_or_else(|| format!("--checksum={c}: give sha256:<hex digest>"))?;
            Some(hex.to_string())
        }
        None => None,
    };
    let mut entries = Vec::new();
    let mut targets = Vec::new();
    for source in &spec.sources {
        let url = state.expand(source)?;
        let target = if into_dir {
            let name = url
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .rsplit('/')
                .find(|s| !s.is_empty())
                .ok_or_else(|| format!("{url}: the URL has no file name to save it as"))?;
            format!("{}/{name}", destination.trim_end_matches('/'))
        } else {
            destination.clone()
        };
        let mut entry = serde_json::json!({
            "source": url,
            "destination": target,
            "overwrite": true,
        });
        if let Some(hex) = &checksum {
            entry["checksum"] = serde_json::json!(hex);
            entry["algorithm"] = serde_json::json!("SHA256");
        }
        entries.push(entry);
        targets.push(target);
    }
    // JSON is YAML: the engine reads the document as it reads any component.
    let document = serde_json::json!({
        "name": format!("Dockerfile ADD (line {line})"),
        "schemaVersion": 1.0,
        "phases": [{"name": "build", "steps": [{
            "name": "Add", "action": "WebDownload", "inputs": entries,
        }]}],
    });
    builder.run_documents(
        instance,
        request,
        vec![SourceDocument {
            name: format!("Dockerfile line {line}"),
            text: document.to_string(),
            parameters: Vec::new(),
        }],
        &["build"],
        &format!("{}-add-{line}", request.build_id),
        "the download",
    )?;
    let (uid, gid) = match &spec.chown {
        Some(owner) => {
            let user = super::user::resolve(instance, &state.expand(owner)?)?;
            (user.uid, user.gid)
        }
        None => (0, 0),
    };
    let mode = match &spec.chmod {
        Some(m) => u32::from_str_radix(&state.expand(m)?, 8)
            .map_err(|_| format!("--chmod={m}: give an octal mode such as 644"))?,
        None => 0o600,
    };
    let shift = |id: u32| instance.id_base().map_or(id, |base| base + id);
    for target in targets {
        let host = instance
            .resolve_link(&target)
            .map_err(|e| format!("{target}: {e}"))?;
        std::os::unix::fs::lchown(&host, Some(shift(uid)), Some(shift(gid)))
            .map_err(|e| format!("setting the owner of {target}: {e}"))?;
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("setting the mode of {target}: {e}"))?;
    }
    Ok(())
}
