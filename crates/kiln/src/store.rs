//! `kiln store usage`: where the image store's bytes go.
//!
//! An operator command over a data directory (`--data-dir DIR`, like `kiln vulndb import`):
//! it reads the store's files (`DIR/images`) directly, without the index lock and without
//! changing anything, so it runs beside a server. Each tag is shown with the Image Builder
//! image it belongs to: tags are `kiln-<build id>` and the build id is derived from the image's
//! ARN, so the ARNs come from the database — when this process can open it (a SQLite database
//! is held by the running server: then tags are shown alone, and a note says why; with
//! `--database postgres://...` it always can). There is no HTTP endpoint: the report spans
//! every account's images, so it is for whoever can read the data directory, not for callers.

use anyhow::{anyhow, Context, Result};
use kiln_domain::arn::ResourceKind;
use kiln_image::{ImageStore, StoreUsage};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Bytes per image (unique and shared), bytes on disk, and what a gc would free now.
    Usage(UsageArgs),
}

#[derive(clap::Args, Debug)]
pub struct UsageArgs {
    /// The data directory of the server (`kiln serve --data-dir`); its image store is `images/`.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The PostgreSQL database of the server, to name each tag's image (`postgres://...`).
    #[arg(long, env = "KILN_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(command: StoreCommand) -> i32 {
    let result = match command {
        StoreCommand::Usage(args) => usage(&args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln store: {e:#}");
            1
        }
    }
}

/// Image ARNs by store tag (`kiln-<build id>`), from the database.
fn image_arns(data_dir: &Path, database: Option<&str>) -> Result<HashMap<String, String>> {
    let database = database
        .map(kiln_store::Database::parse)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--database")?;
    if database.is_none() && !data_dir.join("kiln.db").exists() {
        anyhow::bail!("{} holds no Kiln database (kiln.db)", data_dir.display());
    }
    let core = kiln_core::Core::open_database(
        data_dir,
        database.as_ref(),
        kiln_store::sqlite::Sync::Normal,
    )
    .map_err(|e| anyhow!("{e}"))?;
    let rows = core
        .store
        .read(|tx| {
            let mut out = HashMap::new();
            let mut after: Option<String> = None;
            loop {
                let rows = tx.rows_of_kind(ResourceKind::Image, after.as_deref(), 1000)?;
                after = rows.last().map(|r| r.arn.clone());
                for row in &rows {
                    let tag = format!("kiln-{}", kiln_core::images::build_id_of(&row.arn));
                    out.insert(tag, row.arn.clone());
                }
                if rows.len() < 1000 {
                    return Ok::<_, kiln_store::StoreError>(out);
                }
            }
        })
        .map_err(|e| anyhow!("{e}"))?
        .map_err(|e| anyhow!("{e}"))?;
    Ok(rows)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn usage(args: &UsageArgs) -> Result<()> {
    let root = args.data_dir.join("images");
    if !root.join("index.json").exists() {
        anyhow::bail!(
            "{} holds no image store (images/index.json)",
            args.data_dir.display()
        );
    }
    let store = ImageStore::open(&root).map_err(|e| anyhow!("opening the image store: {e}"))?;
    let usage: StoreUsage = store
        .usage()
        .map_err(|e| anyhow!("reading the image store: {e}"))?;
    let (arns, database_note) = match image_arns(&args.data_dir, args.database.as_deref()) {
        Ok(arns) => (arns, None),
        Err(e) => (
            HashMap::new(),
            Some(format!(
                "images are shown by store tag: the database cannot be read ({e:#})"
            )),
        ),
    };
    if args.json {
        let images: Vec<serde_json::Value> = usage
            .images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "tag": i.tag,
                    "imageArn": arns.get(&i.tag),
                    "digest": i.digest,
                    "bytes": i.bytes,
                    "uniqueBytes": i.unique_bytes,
                    "sharedBytes": i.shared_bytes,
                })
            })
            .collect();
        let out = serde_json::json!({
            "images": images,
            "totalBytes": usage.total_bytes,
            "blobBytes": usage.blob_bytes,
            "unpackedBytes": usage.unpacked_bytes,
            "temporaryBytes": usage.temporary_bytes,
            "pinnedBytes": usage.pinned_bytes,
            "reclaimableBytes": usage.reclaimable_bytes,
            "note": database_note,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{:<12} {:>12} {:>12}  IMAGE", "BYTES", "UNIQUE", "SHARED");
    for i in &usage.images {
        let name = match arns.get(&i.tag) {
            Some(arn) => format!("{arn} ({})", i.tag),
            None => i.tag.clone(),
        };
        println!(
            "{:<12} {:>12} {:>12}  {name}",
            human(i.bytes),
            human(i.unique_bytes),
            human(i.shared_bytes)
        );
    }
    println!();
    println!(
        "on disk:           {} ({} bytes: blobs {}, unpacked layers {}, temporary {})",
        human(usage.total_bytes),
        usage.total_bytes,
        human(usage.blob_bytes),
        human(usage.unpacked_bytes),
        human(usage.temporary_bytes)
    );
    println!(
        "pinned by work:    {} (running builds, imports, exports)",
        human(usage.pinned_bytes)
    );
    println!(
        "a gc frees now:    {} ({} bytes)",
        human(usage.reclaimable_bytes),
        usage.reclaimable_bytes
    );
    if let Some(note) = database_note {
        println!("note: {note}");
    }
    Ok(())
}
