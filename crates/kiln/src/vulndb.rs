//! `kiln vulndb`: the vulnerability data image scans match against.
//!
//! `import PATH...` reads OSV records (JSON files, directories, `all.zip` files, an osv-scanner
//! offline cache), the Debian security tracker's JSON and Alpine secdb files (`kiln_vuln`
//! reads them, with its limits on hostile input), and loads them in one transaction: straight
//! into a data directory or database (`--data-dir`, `--database`), or through a running
//! server (`POST /kiln/v1/vulndb/import`, as JSON lines of `kiln_core::vulndb::UploadLine`;
//! the server reads every line again and takes imports only from the accounts it names with
//! `--vulndb-importer`). `status` shows what is loaded.

use crate::client::{Client, EndpointArgs};
use anyhow::{anyhow, Context, Result};
use kiln_core::vulndb::{self, ImportOutcome, Importer, UploadLine};
use kiln_vuln::advisory::Advisory;
use kiln_vuln::import::{Batch, ImportError, Limits, Mode as SourceMode, Sink};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum VulndbCommand {
    /// Load OSV, Debian security tracker and Alpine secdb files (all of them, or nothing).
    Import(ImportArgs),
    /// Show what is loaded: sources, record counts, newest `modified`, ecosystems.
    Status(StatusArgs),
}

/// Where the data goes: a data directory or database, else a running server.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// Write straight into this data directory's database (SQLite), not through a server.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write straight into this PostgreSQL database (`postgres://...`), not through a server.
    #[arg(long, env = "KILN_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Files or directories: OSV `.json` records or `all.zip` files (a directory is read
    /// recursively, so an osv-scanner offline cache works), the Debian tracker's JSON
    /// (https://security-tracker.debian.org/tracker/data/json), Alpine secdb JSON files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub target: Target,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(command: VulndbCommand) -> i32 {
    let result = match command {
        VulndbCommand::Import(args) => import(&args),
        VulndbCommand::Status(args) => status(&args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln vulndb: {e:#}");
            1
        }
    }
}

/// The store of `--data-dir`/`--database`, if one is named.
fn direct_store(target: &Target) -> Result<Option<kiln_core::Core>> {
    let database = target
        .database
        .as_deref()
        .map(kiln_store::Database::parse)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--database")?;
    if target.data_dir.is_none() && database.is_none() {
        return Ok(None);
    }
    let data_dir = target
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("kiln-vulndb-unused"));
    if database.is_none() && !data_dir.join("kiln.db").exists() {
        anyhow::bail!(
            "{} holds no Kiln database (kiln.db): start `kiln serve --data-dir {}` once first",
            data_dir.display(),
            data_dir.display()
        );
    }
    let core = kiln_core::Core::open_database(
        &data_dir,
        database.as_ref(),
        kiln_store::sqlite::Sync::Normal,
    )
    .map_err(|e| anyhow!("opening the database: {e}"))?;
    Ok(Some(core))
}

/// What is done with each batch (no advisory: the batch begins) and advisory the readers find.
type OnRecord<'a> = dyn FnMut(&str, SourceMode, Option<Advisory>) -> Result<(), String> + 'a;

/// Hands every batch and advisory the readers find to `on`.
struct Feed<'a> {
    on: &'a mut OnRecord<'a>,
}

impl Sink for Feed<'_> {
    fn begin(&mut self, batch: &Batch) -> Result<(), ImportError> {
        (self.on)(&batch.source, batch.mode, None).map_err(|e| ImportError::new(&batch.path, e))
    }
    fn advisory(&mut self, batch: &Batch, advisory: Advisory) -> Result<(), ImportError> {
        (self.on)(&batch.source, batch.mode, Some(advisory))
            .map_err(|e| ImportError::new(&batch.path, e))
    }
    fn end(&mut self, _: &Batch) -> Result<(), ImportError> {
        Ok(())
    }
}

fn read_all<'a>(paths: &[PathBuf], on: &'a mut OnRecord<'a>) -> Result<()> {
    let mut feed = Feed { on };
    for path in paths {
        let summary = kiln_vuln::import::import_path(path, &Limits::default(), &mut feed)
            .map_err(|e| anyhow!("{e}"))?;
        for skipped in &summary.skipped {
            eprintln!(
                "skipped {} (neither a .json nor a .zip file, or a symlink)",
                skipped.display()
            );
        }
    }
    Ok(())
}

fn import(args: &ImportArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let outcome = match direct_store(&args.target)? {
        Some(core) => {
            let mut records = 0u64;
            let outcome = core.store.write(|tx| {
                let mut importer = Importer::new(tx);
                let mut failure: Option<String> = None;
                let read = read_all(&args.paths, &mut |source, mode, advisory| {
                    let added = match advisory {
                        Some(a) => {
                            records += 1;
                            importer.add(source, mode, a)
                        }
                        None => importer.declare(source, mode),
                    };
                    added.map_err(|e| {
                        let message = e.to_string();
                        failure = Some(message.clone());
                        message
                    })
                });
                read?;
                if let Some(message) = failure {
                    anyhow::bail!(message);
                }
                let changes = importer.finish().map_err(|e| anyhow!("{e}"))?;
                Ok(ImportOutcome {
                    changes,
                    generation: vulndb::generation(tx).map_err(|e| anyhow!("{e}"))?,
                })
            });
            let outcome = outcome.map_err(|e| anyhow!("{e}"))??;
            eprintln!(
                "{records} records read in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            outcome
        }
        None => {
            let client = Client::new(&args.target.endpoint)?;
            let spool =
                tempfile::NamedTempFile::new().context("a temporary file for the upload")?;
            let mut out = std::io::BufWriter::new(spool.as_file());
            let mut records = 0u64;
            read_all(&args.paths, &mut |source, mode, advisory| {
                if advisory.is_some() {
                    records += 1;
                }
                let line = UploadLine {
                    source: source.to_string(),
                    mode,
                    advisory,
                };
                serde_json::to_writer(&mut out, &line)
                    .map_err(|e| e.to_string())
                    .and_then(|()| out.write_all(b"\n").map_err(|e| e.to_string()))
            })?;
            out.flush().context("writing the upload")?;
            drop(out);
            eprintln!(
                "{records} records read in {:.1} s; sending them to {}",
                started.elapsed().as_secs_f64(),
                client.endpoint()
            );
            let answer = client.upload(&["vulndb", "import"], &[], spool.path())?;
            serde_json::from_value(answer).context("the server's answer")?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
        return Ok(());
    }
    println!(
        "{:<34} {:>9} {:>9} {:>10} {:>9}",
        "SOURCE", "ADDED", "UPDATED", "UNCHANGED", "REMOVED"
    );
    for c in &outcome.changes {
        println!(
            "{:<34} {:>9} {:>9} {:>10} {:>9}",
            c.source, c.added, c.updated, c.unchanged, c.removed
        );
    }
    println!(
        "imported in {:.1} s; data generation {}",
        started.elapsed().as_secs_f64(),
        outcome.generation
    );
    Ok(())
}

fn status(args: &StatusArgs) -> Result<()> {
    let status: vulndb::Status = match direct_store(&args.target)? {
        Some(core) => vulndb::read_status(&core.store).map_err(|e| anyhow!("{e}"))?,
        None => {
            let client = Client::new(&args.target.endpoint)?;
            let body = client.get(&["vulndb"], &[])?.bytes(client.endpoint())?;
            serde_json::from_slice(&body).context("the server's answer is not a status")?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
        return Ok(());
    }
    if status.sources.is_empty() {
        println!("no vulnerability data is loaded: import some with `kiln vulndb import PATH...`");
        return Ok(());
    }
    println!("{:<34} {:>9}  NEWEST MODIFIED", "SOURCE", "RECORDS");
    for s in &status.sources {
        println!(
            "{:<34} {:>9}  {}",
            s.source,
            s.records,
            s.newest_modified.as_deref().unwrap_or("-")
        );
    }
    println!("ecosystems: {}", status.ecosystems.join(", "));
    println!("data generation: {}", status.generation);
    Ok(())
}
