//! `kiln image export`: an AVAILABLE image out of the server's store, through
//! `GET /kiln/v1/export`: a disk image file (raw, qcow2, vmdk, vhd), or an OCI image layout
//! directory (`skopeo inspect oci:PATH:TAG`, `umoci`, `podman load`).
//!
//! The answer is streamed to `PATH.partial` and renamed to `PATH` once complete, so `PATH`
//! never holds half an image. Exit codes: 0 written, 1 failed, 2 bad flags.

use crate::client::{Client, EndpointArgs};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Write an AVAILABLE image as an OCI image layout directory, a docker archive or a disk
    /// image file.
    Export(ExportArgs),
    /// Print an image's vulnerability scan findings as a table (ListImageScanFindings).
    Findings(crate::findings::FindingsArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// An OCI image layout directory.
    Oci,
    /// A `docker save` archive (`docker load` / `podman load` read it).
    DockerArchive,
    /// A raw ext4 disk image.
    Raw,
    Qcow2,
    Vmdk,
    Vhd,
}

impl ExportFormat {
    fn name(self) -> &'static str {
        match self {
            ExportFormat::Oci => "oci",
            ExportFormat::DockerArchive => "docker-archive",
            ExportFormat::Raw => "raw",
            ExportFormat::Qcow2 => "qcow2",
            ExportFormat::Vmdk => "vmdk",
            ExportFormat::Vhd => "vhd",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The image build version ARN.
    pub image_build_version_arn: String,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Where to write: a directory for `oci` (created; must not exist or be empty), a file
    /// otherwise (replaced).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

/// Runs a `kiln image` command and answers the process exit code.
pub fn main(command: ImageCommand) -> i32 {
    let result = match command {
        ImageCommand::Export(args) => export(&args),
        ImageCommand::Findings(args) => crate::findings::print(&args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln image: {e:#}");
            1
        }
    }
}

/// `PATH.partial`, beside `PATH`.
fn partial_path(path: &Path) -> Result<PathBuf> {
    let Some(name) = path.file_name() else {
        bail!("-o {}: names no file", path.display());
    };
    let mut partial = OsString::from(name);
    partial.push(".partial");
    Ok(path.with_file_name(partial))
}

/// Removes a partial output when dropped, unless disarmed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

fn dir_is_empty(path: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .next()
        .is_none())
}

/// Bytes of the files below `dir`.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

fn export(args: &ExportArgs) -> Result<()> {
    let client = Client::new(&args.endpoint)?;
    let output = &args.output;
    let partial = partial_path(output)?;
    let oci = args.format == ExportFormat::Oci;
    // Refuse before the server spends minutes on an export that could not be written.
    if oci {
        if output.exists() && !(output.is_dir() && dir_is_empty(output)?) {
            bail!(
                "{} exists and is not an empty directory: an OCI layout needs a directory of its own",
                output.display()
            );
        }
    } else if output.is_dir() {
        bail!(
            "{} is a directory: a {} export is a file",
            output.display(),
            args.format.name()
        );
    }
    if partial.is_dir() {
        std::fs::remove_dir_all(&partial)
    } else {
        std::fs::remove_file(&partial)
    }
    .or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(e),
    })
    .with_context(|| format!("removing the leftover {}", partial.display()))?;

    let answer = client.get(
        &["export"],
        &[
            ("imageBuildVersionArn", &args.image_build_version_arn),
            ("format", args.format.name()),
        ],
    )?;
    let tag = answer.header("x-kiln-oci-tag").map(str::to_string);
    let mut reader = answer.body.into_reader();
    let mut guard = Partial(Some(partial.clone()));
    let endpoint = client.endpoint().to_string();
    let size = if oci {
        std::fs::create_dir(&partial).with_context(|| format!("creating {}", partial.display()))?;
        let mut archive = tar::Archive::new(&mut reader);
        archive.set_preserve_permissions(false);
        archive.set_overwrite(true);
        archive.unpack(&partial).with_context(|| {
            format!(
                "unpacking the OCI layout from Kiln at {endpoint} into {}",
                partial.display()
            )
        })?;
        if !partial.join("oci-layout").is_file() {
            bail!("the export from Kiln at {endpoint} holds no oci-layout file");
        }
        if output.is_dir() {
            // Checked empty above.
            std::fs::remove_dir(output)
                .with_context(|| format!("replacing the empty directory {}", output.display()))?;
        }
        tree_size(&partial)
    } else {
        let mut file = std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        let n = std::io::copy(&mut reader, &mut file).with_context(|| {
            format!(
                "writing the export from Kiln at {endpoint} to {}",
                partial.display()
            )
        })?;
        file.sync_all()
            .with_context(|| format!("writing {}", partial.display()))?;
        n
    };
    std::fs::rename(&partial, output)
        .with_context(|| format!("renaming {} to {}", partial.display(), output.display()))?;
    guard.0 = None;
    match (oci, tag) {
        (true, Some(tag)) => println!(
            "wrote the OCI image layout {} ({size} bytes); tag {tag}: skopeo inspect oci:{}:{tag}",
            output.display(),
            output.display()
        ),
        (true, None) => println!(
            "wrote the OCI image layout {} ({size} bytes)",
            output.display()
        ),
        (false, _) => println!(
            "wrote {} ({size} bytes, {})",
            output.display(),
            args.format.name()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_paths_sit_beside_the_output() {
        assert_eq!(
            partial_path(Path::new("/tmp/out/disk.qcow2")).unwrap(),
            PathBuf::from("/tmp/out/disk.qcow2.partial")
        );
        assert_eq!(
            partial_path(Path::new("layout")).unwrap(),
            PathBuf::from("layout.partial")
        );
        assert!(partial_path(Path::new("/")).is_err());
        assert!(partial_path(Path::new("..")).is_err());
    }
}
