//! ImportDiskImage and ImportVmImage: an image from a disk image of an installed Linux system.
//!
//! Both create a PENDING image with `buildType` IMPORT and queue it (`kiln_core::imports`);
//! the build worker then reads the disk, converts it and copies its root file system into the
//! image store, and the image becomes AVAILABLE with an `ami-` id, usable as a recipe's parent
//! by its ARN or that id. Nothing is read here: as on AWS, the call returns at once.
//!
//! Where AWS differs from what Kiln can do (see `kiln_domain::resources::import`): both calls
//! name the disk by URI, `s3://bucket/key` (the server's `--s3-endpoint`, read by the worker
//! with a key of the image's account) or `file:///path` (under an `--import-dir`, checked here
//! and again when it is read), ImportVmImage in `vmImportTaskId`; only Linux is imported;
//! Windows settings (`windowsConfiguration`) and boot settings (`registerImageOptions`) are
//! refused, as Kiln's images do not boot. `executionRole` and `loggingConfiguration` are kept
//! and answered by GetImage; `description` is kept with the import.
//!
//! Refusals are `ClientException`s (the error list of both operations in the model), each
//! naming the member.

use crate::convert::{caller, core_error};
use crate::service::Service;
use kiln_core::imports::{create_import, ImportOrder};
use kiln_core::CoreError;
use kiln_domain::resources::import::{self, DiskSource, ImageImport, ImportKind};
use kiln_domain::version::SemVer;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

fn client(member: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::ClientException, format!("{member}: {message}"))
}

/// The model lists only ClientException for a caller's mistakes in these operations.
fn as_client(e: CoreError) -> ApiError {
    match e {
        CoreError::NotFound { .. } | CoreError::Invalid(_) | CoreError::InvalidVersion(_) => {
            ApiError::new(ErrorKind::ClientException, e.to_string())
        }
        other => core_error(other),
    }
}

/// The disk `uri` names, checked against what this server may read.
fn disk_source(svc: &Service, member: &str, source: DiskSource) -> Result<DiskSource, ApiError> {
    match &source {
        DiskSource::S3 { .. } if svc.documents.s3.is_none() => Err(client(
            member,
            format!(
                "{}: this server has no S3 endpoint configured (kiln serve --s3-endpoint), so it reads no s3:// disks; give file:///path under an --import-dir instead",
                source.uri()
            ),
        )),
        DiskSource::S3 { .. } => Ok(source),
        DiskSource::File { path } => svc
            .core
            .parents
            .allowed_path(path)
            .map(|_| source.clone())
            .map_err(|e| client(member, e)),
    }
}

fn version(text: Option<&str>) -> Result<SemVer, ApiError> {
    SemVer::parse(text.unwrap_or_default()).map_err(|e| client("semanticVersion", e.message))
}

fn log_group(
    kind: ImportKind,
    logging: Option<ImageLoggingConfiguration>,
    has_role: bool,
) -> Result<Option<String>, ApiError> {
    let Some(group) = logging.and_then(|l| l.log_group_name) else {
        return Ok(None);
    };
    import::check_log_group(kind, &group, has_role)
        .map_err(|e| client("loggingConfiguration.logGroupName", e))?;
    // A valid group is still refused: Kiln would store it and write nothing there.
    Err(client(
        "loggingConfiguration",
        "Kiln keeps every import's log itself (kiln logs <image ARN>); it writes to no CloudWatch log group, so leave it out",
    ))
}

pub fn import_disk_image(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ImportDiskImageRequest,
) -> Result<ImportDiskImageResponse, ApiError> {
    let platform = input.platform.unwrap_or_default();
    import::check_platform(&platform).map_err(|e| client("platform", e))?;
    let os_version = input.os_version.unwrap_or_default();
    import::check_os_version(&os_version).map_err(|e| client("osVersion", e))?;
    if input.windows_configuration.is_some() {
        return Err(client(
            "windowsConfiguration",
            format!(
                "Kiln imports no Windows images ({}); leave it out",
                import::WHAT_KILN_IMPORTS
            ),
        ));
    }
    if input.register_image_options.is_some() {
        return Err(client(
            "registerImageOptions",
            "Kiln's images do not boot, so Secure Boot and UEFI data do not apply; leave it out",
        ));
    }
    let uri = input.uri.unwrap_or_default();
    let source = DiskSource::parse(&uri).map_err(|e| client("uri", e))?;
    let source = disk_source(svc, "uri", source)?;
    let log_group = log_group(
        ImportKind::DiskImage,
        input.logging_configuration,
        input.execution_role.is_some(),
    )?;
    let image = create_import(
        tx,
        caller(ctx),
        ImportOrder {
            name: input.name.unwrap_or_default(),
            version: version(input.semantic_version.as_deref())?,
            platform,
            infrastructure_arn: input.infrastructure_configuration_arn,
            import: ImageImport {
                kind: ImportKind::DiskImage,
                source,
                description: input.description,
                os_version: Some(os_version),
                infrastructure: None,
                execution_role: input.execution_role,
                log_group,
                found: None,
            },
            tags: input.tags,
        },
    )
    .map_err(as_client)?;
    Ok(ImportDiskImageResponse {
        client_token: input.client_token,
        image_build_version_arn: Some(image.arn.to_string()),
    })
}

pub fn import_vm_image(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ImportVmImageRequest,
) -> Result<ImportVmImageResponse, ApiError> {
    let name = input.name.unwrap_or_default();
    import::check_image_name(&name).map_err(|e| client("name", e))?;
    let platform = input.platform.as_ref().map_or("", |p| p.as_str());
    import::check_platform(platform).map_err(|e| client("platform", e))?;
    if let Some(os) = &input.os_version {
        import::check_os_version(os).map_err(|e| client("osVersion", e))?;
    }
    let task = input.vm_import_task_id.unwrap_or_default();
    let source = import::vm_import_source(&task).map_err(|e| client("vmImportTaskId", e))?;
    let source = disk_source(svc, "vmImportTaskId", source)?;
    let log_group = log_group(ImportKind::VmImage, input.logging_configuration, false)?;
    let image = create_import(
        tx,
        caller(ctx),
        ImportOrder {
            name,
            version: version(input.semantic_version.as_deref())?,
            platform: platform.to_string(),
            infrastructure_arn: None,
            import: ImageImport {
                kind: ImportKind::VmImage,
                source,
                description: input.description,
                os_version: input.os_version,
                infrastructure: None,
                execution_role: None,
                log_group,
                found: None,
            },
            tags: input.tags,
        },
    )
    .map_err(as_client)?;
    Ok(ImportVmImageResponse {
        request_id: None,
        client_token: input.client_token,
        image_arn: Some(image.arn.to_string()),
    })
}
