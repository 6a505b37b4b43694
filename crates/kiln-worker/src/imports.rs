//! Imports (ImportDiskImage, ImportVmImage): the queue entry of an image whose record holds a
//! disk to import ([`ImageImport`]) is imported instead of built.
//!
//! PENDING, then BUILDING while the disk is fetched and copied, then AVAILABLE with its `ami-`
//! id, its OS version and packages (read from the copied tree as enhanced metadata reads a
//! built one), and its store entry `kiln-<build id>` (pushed to the shared registry first,
//! like a built image), so that recipes build on it by ARN or `ami-` id; or FAILED with a
//! reason naming the disk and the cause. CancelImageCreation stops it within a poll (the
//! transfer and the tools check a flag). Steps:
//!
//! 1. The disk: `s3://` objects are downloaded from `--s3-endpoint` into
//!    `<data>/tmp/import-<build id>/` with a key of the image's account ([`crate::s3`]);
//!    `file://` paths are checked against the operator's import directories again (the file
//!    system may have changed since the call) and opened beneath them, never in the data
//!    directory.
//! 2. [`kiln_image::ImageStore::import_disk`] probes, converts and copies it (see there for
//!    what is kept and what is lost).
//! 3. The work directory goes, whatever happened (and at start-up, with `<data>/tmp/`).

use crate::logs::BuildLog;
use crate::run::{discard, end_cancelled, open_log, read_image, store_tag, transition};
use crate::Shared;
use kiln_domain::resources::image::{Image, ImageStatus, Package};
use kiln_domain::resources::import::{DiskSource, ImageImport, ImportKind};
use kiln_image::confined::Confined;
use kiln_image::{DiskInput, ImageRef};
use kiln_toe::actions::net::s3_file::{Transfer, TransferError};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// S3's largest object.
const MAX_DISK_BYTES: u64 = 5 << 40;
/// How often a running import checks whether it was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// What an import made.
struct Imported {
    image: ImageRef,
    found: String,
    os_version: Option<String>,
    packages: Vec<Package>,
}

/// Why an import did not finish.
enum Stop {
    Cancelled,
    Failed(String),
}

pub(crate) fn run(shared: &Arc<Shared>, image: Image) {
    let arn = image.arn.to_string();
    let Some(import) = image.import.clone() else {
        return;
    };
    let uri = import.source.uri();
    let log = match open_log(shared, &image) {
        Ok(log) => log,
        Err(e) => {
            let reason = format!("import failed: creating the build log: {e}");
            transition(shared, &arn, ImageStatus::Failed, Some(reason), |_| {});
            return;
        }
    };
    if !transition(shared, &arn, ImageStatus::Building, None, |_| {}) {
        return;
    }
    log.event(&format!(
        "image {arn}: BUILDING ({} of {uri})",
        import.kind.operation()
    ));
    let cancel = AtomicBool::new(false);
    let work = shared
        .config
        .tmp_dir()
        .join(format!("import-{}", image.build_id));
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let outcome = std::thread::scope(|scope| {
        scope.spawn(|| watch(shared, &arn, &cancel, finished));
        let outcome = import_disk(shared, &image, &import, &work, &log, &cancel);
        drop(done);
        outcome
    });
    let _ = std::fs::remove_dir_all(&work);
    let interrupted = shared.stopping() && cancel.load(Ordering::SeqCst);
    match outcome {
        Ok(imported) if !cancel.load(Ordering::SeqCst) => finish(shared, &image, imported, &log),
        Ok(_) | Err(Stop::Cancelled) => {
            discard(shared, &image);
            end_cancelled(shared, &arn, &log, interrupted);
        }
        Err(Stop::Failed(cause)) => {
            let reason = format!("import failed: the disk {uri}: {cause}");
            log.event(&format!("FAILED: {reason}"));
            discard(shared, &image);
            transition(shared, &arn, ImageStatus::Failed, Some(reason), |_| {});
        }
    }
}

/// Until the import ends: when the image is no longer in progress (cancelled, deleted, taken
/// by a lease keeper) or the worker stops, raise the flag.
fn watch(shared: &Shared, arn: &str, cancel: &AtomicBool, finished: std::sync::mpsc::Receiver<()>) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(CANCEL_POLL) {
        let taken = read_image(shared, arn).is_none_or(|i| !i.status.in_progress());
        if taken || shared.stopping() {
            cancel.store(true, Ordering::SeqCst);
            return;
        }
    }
}

fn import_disk(
    shared: &Shared,
    image: &Image,
    import: &ImageImport,
    work: &Path,
    log: &BuildLog,
    cancel: &AtomicBool,
) -> Result<Imported, Stop> {
    let cancelled = || cancel.load(Ordering::SeqCst);
    let failed = |e: String| Stop::Failed(e);
    let _ = std::fs::remove_dir_all(work);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(work)
        .map_err(|e| failed(format!("creating {}: {e}", work.display())))?;
    let uri = import.source.uri();
    let comment = format!("imported from {uri} ({})", import.kind.operation());
    let tag = store_tag(&image.build_id);
    let imported = match &import.source {
        DiskSource::S3 { bucket, key } => {
            let s3 = crate::s3::config_for(shared, &image.owner).map_err(failed)?;
            let file = work.join("disk");
            log.event(&format!("downloading {uri} from {}", s3.endpoint));
            let size = Transfer::new(&s3)
                .cancel_when(&cancelled)
                .download(bucket, key, &file, MAX_DISK_BYTES)
                .map_err(|e| match e {
                    TransferError::Cancelled => Stop::Cancelled,
                    TransferError::Failed(m) => Stop::Failed(m),
                })?;
            log.event(&format!("downloaded {size} bytes"));
            // The disk tools run as nobody and reopen it (the directory stays closed to them).
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| failed(format!("{}: {e}", file.display())))?;
            shared
                .store
                .import_disk(DiskInput::File(&file), work, &tag, &comment, &cancelled)
        }
        DiskSource::File { path } => {
            let opened = open_allowed(shared, path).map_err(failed)?;
            log.event(&format!("reading {}", opened.real_path.display()));
            shared.store.import_disk(
                DiskInput::Confined(&opened),
                work,
                &tag,
                &comment,
                &cancelled,
            )
        }
    }
    .map_err(|e| match e {
        kiln_image::Error::Cancelled => Stop::Cancelled,
        e => Stop::Failed(e.to_string()),
    })?;
    let found = format!(
        "{} disk image, {} root file system on {}",
        imported.format.name(),
        imported.filesystem,
        imported.location
    );
    log.event(&format!(
        "imported {uri}: {found}; {} entries",
        imported.extracted.entries
    ));
    if !imported.extracted.left_out.is_empty() {
        let left: Vec<String> = imported
            .extracted
            .left_out
            .iter()
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        log.event(&format!("left out: {}", left.join(", ")));
    }
    let metadata = kiln_build::metadata::collect(&imported.root);
    let disk_os = metadata.os.as_ref().map(|os| os.os_version());
    // ImportVmImage says the OS; ImportDiskImage's required osVersion is what AWS takes as
    // given, but the disk's own os-release is the better witness.
    let os_version = match import.kind {
        ImportKind::VmImage => import.os_version.clone().or(disk_os),
        ImportKind::DiskImage => disk_os.or(import.os_version.clone()),
    };
    Ok(Imported {
        image: imported.image,
        found,
        os_version,
        packages: metadata
            .packages
            .into_iter()
            .map(|p| Package {
                name: p.name,
                version: p.version,
            })
            .collect(),
    })
}

/// The `file://` disk at `path`, checked against the operator's import directories again and
/// opened without leaving the one it is in.
fn open_allowed(shared: &Shared, path: &str) -> Result<Confined, String> {
    let rules = &shared.core.parents;
    let allowed = rules.allowed_path(path)?;
    let opened = kiln_image::confined::open_beneath(&allowed.import_dir, &allowed.relative, false)
        .map_err(|e| e.to_string())?;
    if rules.in_data_dir(&opened.real_path) {
        return Err(format!(
            "{path} is inside Kiln's data directory, which no import may read"
        ));
    }
    Ok(opened)
}

/// The imported disk's tree is the image's build: it is distributed as a build's is (the
/// shared registry, its AMI in the build Region), then AVAILABLE.
fn finish(shared: &Shared, image: &Image, imported: Imported, log: &BuildLog) {
    let arn = image.arn.to_string();
    let digest = imported.image.digest.clone();
    let mut current = None;
    let moved = transition(shared, &arn, ImageStatus::Distributing, None, |i| {
        i.os_version = imported.os_version.clone();
        i.packages = imported.packages.clone();
        i.image_digest = Some(digest.clone());
        if let Some(import) = i.import.as_mut() {
            import.found = Some(imported.found.clone());
        }
        current = Some(i.clone());
    });
    match current {
        Some(image) if moved => crate::run::deliver(shared, &image, &imported.image, log),
        _ => {
            discard(shared, image);
            log.event("CANCELLED: the import was stopped");
        }
    }
}
