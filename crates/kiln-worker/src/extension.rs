//! Kiln's own endpoints (`GET /kiln/v1/...`), answered by the worker that owns the logs, the
//! image store and the instances:
//!
//! - `logs?imageBuildVersionArn=A&offset=N`: the build log from byte N (at most 1 MiB), with
//!   the image's status in `x-kiln-image-status` and the log's size in `x-kiln-log-size`; a
//!   build that ran on another machine of a shared database is read from the database, with
//!   `x-kiln-log-complete: false` while its worker may still append to it;
//! - `export?imageBuildVersionArn=A&format=oci|raw|qcow2|vmdk|vhd`: an AVAILABLE image as a
//!   disk image file, or (oci) a tar of an OCI image layout whose tag is in `x-kiln-oci-tag`
//!   (an image built on another machine is pulled from the shared registry first);
//! - `instances/<id>`: where a kept instance lives, for `kiln instance shell`.
//!
//! Requests are signed like API calls, and each answers only about the caller's own account and
//! region: another account's image or instance does not exist for the caller.

use crate::logs::{log_path, read_from, ARN_FILE};
use crate::run::read_image;
use crate::Shared;
use kiln_core::extension::{is_callers, param, Extension, ExtensionBody, ExtensionResponse};
use kiln_core::Caller;
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_image::DiskFormat;
use std::path::PathBuf;
use std::sync::Arc;

/// Most bytes of log one answer carries.
const MAX_LOG_CHUNK: usize = 1 << 20;

pub struct WorkerExtension {
    pub shared: Arc<Shared>,
}

fn invalid(message: &str) -> ExtensionResponse {
    ExtensionResponse::error(400, "InvalidRequestException", message)
}

fn not_found(message: &str) -> ExtensionResponse {
    ExtensionResponse::error(404, "ResourceNotFoundException", message)
}

fn internal(message: &str) -> ExtensionResponse {
    ExtensionResponse::error(500, "ServiceException", message)
}

impl WorkerExtension {
    fn image(
        &self,
        ctx: &Caller<'_>,
        query: &[(String, String)],
    ) -> Result<Image, ExtensionResponse> {
        let arn = param(query, "imageBuildVersionArn")
            .ok_or_else(|| invalid("imageBuildVersionArn: required"))?;
        Some(arn)
            .filter(|arn| is_callers(ctx, arn, ResourceKind::Image))
            .and_then(|arn| read_image(&self.shared, arn))
            .filter(|i| i.status != ImageStatus::Deleted)
            .ok_or_else(|| not_found(&format!("The image '{arn}' does not exist.")))
    }

    fn logs(&self, ctx: &Caller<'_>, query: &[(String, String)]) -> ExtensionResponse {
        let image = match self.image(ctx, query) {
            Ok(i) => i,
            Err(r) => return r,
        };
        let offset = match param(query, "offset").map(str::parse::<u64>) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return invalid("offset: a number of bytes"),
        };
        let path = log_path(&self.shared.config.logs_dir(), &image.build_id);
        let status = (
            "x-kiln-image-status".to_string(),
            image.status.as_str().to_string(),
        );
        // The build ran on another machine (or has not started): its log is in the database.
        if self.shared.core.store.is_shared() && !path.exists() {
            let build_id = image.build_id.as_str();
            return match self
                .shared
                .core
                .store
                .read(|tx| tx.read_build_log(build_id, offset, MAX_LOG_CHUNK))
                .and_then(|r| r)
            {
                Ok(part) => ExtensionResponse {
                    status: 200,
                    content_type: "text/plain; charset=utf-8",
                    headers: vec![
                        status,
                        ("x-kiln-log-size".to_string(), part.size.to_string()),
                        // The worker writes its last lines after the image's final status.
                        ("x-kiln-log-complete".to_string(), part.complete.to_string()),
                    ],
                    body: ExtensionBody::Bytes(part.data),
                },
                Err(e) => internal(&format!("reading the log of build {build_id}: {e}")),
            };
        }
        match read_from(&path, offset, MAX_LOG_CHUNK) {
            Ok((data, size)) => ExtensionResponse {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                headers: vec![status, ("x-kiln-log-size".to_string(), size.to_string())],
                body: ExtensionBody::Bytes(data),
            },
            Err(e) => internal(&format!("reading {}: {e}", path.display())),
        }
    }

    fn export(&self, ctx: &Caller<'_>, query: &[(String, String)]) -> ExtensionResponse {
        let image = match self.image(ctx, query) {
            Ok(i) => i,
            Err(r) => return r,
        };
        let format = param(query, "format").unwrap_or("oci");
        if image.status != ImageStatus::Available {
            return ExtensionResponse::error(
                409,
                "ResourceInUseException",
                &format!(
                    "the image '{}' is {}; only AVAILABLE images can be exported",
                    image.arn,
                    image.status.as_str()
                ),
            );
        }
        let stored = match crate::registry::local_or_pulled(&self.shared, &image) {
            Ok(s) => s,
            Err(e) => return internal(&e),
        };
        let tmp = self.shared.config.tmp_dir();
        let unique = format!(
            "export-{}-{}",
            image.build_id,
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        if format == "oci" {
            let tag = match (&image.arn.version, image.arn.build) {
                (Some(v), Some(b)) => format!("{v}-{b}"),
                _ => "latest".to_string(),
            };
            let dir = tmp.join(&unique);
            let tar_path = tmp.join(format!("{unique}.tar"));
            let result = self
                .shared
                .store
                .export_oci_layout(&stored, &dir, &tag)
                .map_err(|e| e.to_string())
                .and_then(|_| tar_dir(&dir, &tar_path).map_err(|e| e.to_string()));
            let _ = std::fs::remove_dir_all(&dir);
            return match result {
                Ok(()) => ExtensionResponse {
                    status: 200,
                    content_type: "application/x-tar",
                    headers: vec![("x-kiln-oci-tag".to_string(), tag)],
                    body: ExtensionBody::File {
                        path: tar_path,
                        remove_after: true,
                    },
                },
                Err(e) => {
                    let _ = std::fs::remove_file(&tar_path);
                    internal(&format!("exporting {}: {e}", image.arn))
                }
            };
        }
        if format == "docker-archive" {
            let reference = match (&image.arn.version, image.arn.build) {
                (Some(v), Some(b)) => format!("{}:{v}-{b}", image.arn.name),
                _ => format!("{}:latest", image.arn.name),
            };
            let out = tmp.join(format!("{unique}.tar"));
            let written = self
                .shared
                .store
                .export_docker_archive(&stored, &out, &reference);
            return file_answer(written, out, "application/x-tar", &image.arn);
        }
        let disk = match DiskFormat::parse(format) {
            Ok(d) => d,
            Err(_) => {
                return invalid(&format!(
                    "format: '{format}' is not one of oci, docker-archive, raw, qcow2, vmdk, vhd"
                ))
            }
        };
        let out = tmp.join(format!("{unique}.{}", disk.name()));
        let written = self.shared.store.export_disk(&stored, disk, &out);
        file_answer(written, out, "application/octet-stream", &image.arn)
    }

    fn instance(&self, ctx: &Caller<'_>, id: &str) -> ExtensionResponse {
        let valid = !id.is_empty()
            && !id.starts_with('.')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        let base = self.shared.config.instances_dir();
        let dir = base.join(id);
        if !valid || !dir.join("instance.json").is_file() {
            return not_found(&format!("there is no instance '{id}'"));
        }
        // `<build id>-build` or `-test`: the build's log folder names the image.
        let build_id = id.rsplit_once('-').map_or(id, |(b, _)| b);
        let arn =
            std::fs::read_to_string(self.shared.config.logs_dir().join(build_id).join(ARN_FILE))
                .ok();
        // An instance belongs to the account of the image it builds; one whose image is not
        // known belongs to nobody.
        if !arn
            .as_deref()
            .is_some_and(|a| is_callers(ctx, a.trim(), ResourceKind::Image))
        {
            return not_found(&format!("there is no instance '{id}'"));
        }
        ExtensionResponse::json(
            200,
            &serde_json::json!({
                "id": id,
                "directory": dir.display().to_string(),
                "instancesDirectory": base.display().to_string(),
                "imageBuildVersionArn": arn,
            }),
        )
    }
}

/// Writes the directory `dir` as a tar file (paths relative to it).
fn tar_dir(dir: &std::path::Path, out: &PathBuf) -> std::io::Result<()> {
    let file = std::fs::File::create(out)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    builder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
}

impl Extension for WorkerExtension {
    fn handle(
        &self,
        ctx: &Caller<'_>,
        path: &str,
        query: &[(String, String)],
    ) -> ExtensionResponse {
        match path {
            "logs" => self.logs(ctx, query),
            "export" => self.export(ctx, query),
            _ => match path.strip_prefix("instances/") {
                Some(id) => self.instance(ctx, id),
                None => not_found(&format!(
                    "no endpoint /kiln/v1/{path}; there are logs, export, instances/<id> and schedule"
                )),
            },
        }
    }
}

/// An export written to `out` (removed once sent), or the error that stopped it (`out` removed).
fn file_answer(
    written: Result<(), kiln_image::Error>,
    out: std::path::PathBuf,
    content_type: &'static str,
    arn: &impl std::fmt::Display,
) -> ExtensionResponse {
    match written {
        Ok(()) => ExtensionResponse {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: ExtensionBody::File {
                path: out,
                remove_after: true,
            },
        },
        Err(e) => {
            let _ = std::fs::remove_file(&out);
            internal(&format!("exporting {arn}: {e}"))
        }
    }
}
