//! The vulnerability data in the store: imports, what is loaded, and the data's generation.
//!
//! Every import runs in one write transaction ([`Importer`]), so a failed or interrupted import
//! leaves the previous data as it was, and every server and worker sees all of an import or
//! none of it. Sources come in two kinds (`kiln-vuln` says which): OSV records are incremental
//! (a record replaces the stored one only when its `modified` is newer; a withdrawn record
//! removes it), while the Debian tracker and an Alpine secdb file are snapshots (what the
//! source held and the new file lacks is removed). Each import that changed something moves
//! the generation (a setting), which tells scans evaluated against older data to evaluate
//! again (see [`crate::scans::reevaluate_stale`]).

use crate::error::{CoreError, CoreResult};
use kiln_store::{StoreError, Txn, VulnPackageKey, VulnRecordRow};
use kiln_vuln::advisory::Advisory;
use kiln_vuln::import::Mode as SourceMode;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The setting that holds the data's generation.
pub const GENERATION: &str = "kiln.vulndb.generation";
/// The setting that holds the OSV ecosystems Kiln has data for (a JSON list).
pub const ECOSYSTEMS: &str = "kiln.vulndb.ecosystems";

/// How many records an import writes at once.
const BATCH: usize = 1000;

/// The generation of the data now (0 before any import).
pub fn generation(tx: &mut dyn Txn) -> CoreResult<u64> {
    Ok(tx
        .get_setting(GENERATION)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// The ecosystems some import brought data for (`Debian:12`, `Alpine:v3.20` ...).
pub fn ecosystems(tx: &mut dyn Txn) -> CoreResult<Vec<String>> {
    Ok(tx
        .get_setting(ECOSYSTEMS)?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

/// The advisories of stored rows.
pub fn decode(rows: &[VulnRecordRow]) -> CoreResult<Vec<Advisory>> {
    rows.iter()
        .map(|row| {
            serde_json::from_str(&row.body).map_err(|e| {
                CoreError::Storage(StoreError::Corrupt {
                    arn: format!("vulnerability record {} of {}", row.id, row.source),
                    message: e.to_string(),
                })
            })
        })
        .collect()
}

/// What an import did to one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceChanges {
    pub source: String,
    /// Records new to Kiln.
    pub added: u64,
    /// Records that replaced an older version.
    pub updated: u64,
    /// Records Kiln already had at that `modified` or newer.
    pub unchanged: u64,
    /// Records removed: withdrawn, or gone from a snapshot.
    pub removed: u64,
}

/// One import, inside the caller's write transaction: [`Importer::add`] each advisory, then
/// [`Importer::finish`]. Dropping it unfinished (an error) leaves the transaction to roll back.
pub struct Importer<'t> {
    tx: &'t mut dyn Txn,
    /// Advisories waiting to be written, by source: the newest of each id.
    pending: BTreeMap<String, HashMap<String, Advisory>>,
    pending_count: usize,
    modes: BTreeMap<String, SourceMode>,
    /// The ids each snapshot source had in this import.
    snapshot_ids: BTreeMap<String, BTreeSet<String>>,
    changes: BTreeMap<String, SourceChanges>,
    ecosystems: BTreeSet<String>,
}

impl<'t> Importer<'t> {
    pub fn new(tx: &'t mut dyn Txn) -> Importer<'t> {
        Importer {
            tx,
            pending: BTreeMap::new(),
            pending_count: 0,
            modes: BTreeMap::new(),
            snapshot_ids: BTreeMap::new(),
            changes: BTreeMap::new(),
            ecosystems: BTreeSet::new(),
        }
    }

    /// Says that `source` is part of this import even if it brings no advisory (an empty
    /// snapshot empties the source).
    pub fn declare(&mut self, source: &str, mode: SourceMode) -> CoreResult<()> {
        match self.modes.get(source) {
            Some(m) if *m != mode => Err(CoreError::Invalid(format!(
                "source {source}: its records came both as a snapshot and incrementally"
            ))),
            Some(_) => Ok(()),
            None => {
                self.modes.insert(source.to_string(), mode);
                if mode == SourceMode::Snapshot {
                    self.snapshot_ids.entry(source.to_string()).or_default();
                }
                Ok(())
            }
        }
    }

    /// Takes one advisory of `source`.
    pub fn add(&mut self, source: &str, mode: SourceMode, advisory: Advisory) -> CoreResult<()> {
        self.declare(source, mode)?;
        if mode == SourceMode::Snapshot {
            self.snapshot_ids
                .entry(source.to_string())
                .or_default()
                .insert(advisory.id.clone());
        }
        let by_id = self.pending.entry(source.to_string()).or_default();
        match by_id.get(&advisory.id) {
            Some(held) if held.modified >= advisory.modified => {}
            Some(_) => {
                by_id.insert(advisory.id.clone(), advisory);
            }
            None => {
                by_id.insert(advisory.id.clone(), advisory);
                self.pending_count += 1;
            }
        }
        if self.pending_count >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> CoreResult<()> {
        let pending = std::mem::take(&mut self.pending);
        self.pending_count = 0;
        for (source, by_id) in pending {
            let ids: Vec<String> = by_id.keys().cloned().collect();
            let stored: HashMap<String, i64> =
                self.tx.vuln_modified(&source, &ids)?.into_iter().collect();
            let changes = self
                .changes
                .entry(source.clone())
                .or_insert_with(|| SourceChanges {
                    source: source.clone(),
                    ..SourceChanges::default()
                });
            let mut rows = Vec::new();
            let mut withdrawn = Vec::new();
            for (id, advisory) in by_id {
                let held = stored.get(&id).copied();
                if advisory.withdrawn.is_some() {
                    if held.is_some() {
                        withdrawn.push(id);
                    }
                    continue;
                }
                match held {
                    Some(m) if m >= advisory.modified => {
                        changes.unchanged += 1;
                        continue;
                    }
                    Some(_) => changes.updated += 1,
                    None => changes.added += 1,
                }
                let packages: Vec<VulnPackageKey> = advisory
                    .package_keys()
                    .into_iter()
                    .map(|(ecosystem, name)| VulnPackageKey { ecosystem, name })
                    .collect();
                for key in &packages {
                    self.ecosystems.insert(key.ecosystem.clone());
                }
                let body = serde_json::to_string(&advisory)
                    .map_err(|e| CoreError::Internal(format!("encoding advisory {id}: {e}")))?;
                rows.push(VulnRecordRow {
                    source: source.clone(),
                    id,
                    modified_millis: advisory.modified,
                    packages,
                    body,
                });
            }
            if !withdrawn.is_empty() {
                changes.removed += self.tx.delete_vuln_records(&source, &withdrawn)?;
            }
            if !rows.is_empty() {
                self.tx.put_vuln_records(&rows)?;
            }
        }
        Ok(())
    }

    /// Writes what is left, removes what snapshot sources no longer hold, and moves the
    /// generation when anything changed. Answers the changes by source.
    pub fn finish(mut self) -> CoreResult<Vec<SourceChanges>> {
        self.flush()?;
        for (source, seen) in std::mem::take(&mut self.snapshot_ids) {
            let gone: Vec<String> = self
                .tx
                .vuln_ids(&source)?
                .into_iter()
                .filter(|id| !seen.contains(id))
                .collect();
            if !gone.is_empty() {
                let removed = self.tx.delete_vuln_records(&source, &gone)?;
                self.changes
                    .entry(source.clone())
                    .or_insert_with(|| SourceChanges {
                        source,
                        ..SourceChanges::default()
                    })
                    .removed += removed;
            }
        }
        let changed = self
            .changes
            .values()
            .any(|c| c.added + c.updated + c.removed > 0);
        if changed {
            let next = generation(self.tx)? + 1;
            self.tx.put_setting(GENERATION, &next.to_string())?;
            let mut known: BTreeSet<String> = ecosystems(self.tx)?.into_iter().collect();
            let before = known.len();
            known.extend(std::mem::take(&mut self.ecosystems));
            if known.len() != before {
                let list: Vec<&String> = known.iter().collect();
                self.tx.put_setting(
                    ECOSYSTEMS,
                    &serde_json::to_string(&list)
                        .map_err(|e| CoreError::Internal(e.to_string()))?,
                )?;
            }
            // Other processes re-evaluate their images' scans when they hear of it.
            self.tx.notify_workers()?;
        }
        Ok(self.changes.into_values().collect())
    }
}

/// What `kiln vulndb status` shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub generation: u64,
    pub ecosystems: Vec<String>,
    pub sources: Vec<SourceStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceStatus {
    pub source: String,
    pub records: u64,
    /// The newest `modified` of its records (RFC 3339), if any.
    pub newest_modified: Option<String>,
}

// Closures: the functions name one lifetime for the reference and the trait object, and
// `Store::read` hands a `dyn Txn + 'static`.
/// [`status`] in a read transaction of its own.
#[allow(clippy::redundant_closure)]
pub fn read_status(store: &kiln_store::Store) -> CoreResult<Status> {
    store.read(|tx| status(tx))?
}

/// [`generation`] in a read transaction of its own.
#[allow(clippy::redundant_closure)]
pub fn read_generation(store: &kiln_store::Store) -> CoreResult<u64> {
    store.read(|tx| generation(tx))?
}

pub fn status(tx: &mut dyn Txn) -> CoreResult<Status> {
    let sources = tx
        .vuln_status()?
        .into_iter()
        .map(|s| SourceStatus {
            source: s.source,
            records: s.records,
            newest_modified: s.newest_modified_millis.and_then(|m| {
                chrono::DateTime::from_timestamp_millis(m)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }),
        })
        .collect();
    Ok(Status {
        generation: generation(tx)?,
        ecosystems: ecosystems(tx)?,
        sources,
    })
}

/// One line of an upload (`kiln vulndb import` to a server): a source, and one of its
/// advisories unless the line only declares the source.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct UploadLine {
    pub source: String,
    pub mode: SourceMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory: Option<Advisory>,
}

/// The longest line of an upload Kiln reads (one advisory).
pub const MAX_UPLOAD_LINE: usize = 64 * 1024 * 1024;

/// What an import did: the changes by source, and the generation after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportOutcome {
    pub changes: Vec<SourceChanges>,
    pub generation: u64,
}

/// Imports an upload (JSON lines of [`UploadLine`]) in one write transaction: all of it, or
/// nothing when a line is malformed (the error names the line).
pub fn import_upload(
    store: &kiln_store::Store,
    reader: impl std::io::BufRead,
) -> CoreResult<ImportOutcome> {
    let mut reader = reader;
    store.write(|tx| {
        let mut importer = Importer::new(tx);
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            number += 1;
            let read = read_line(&mut reader, &mut line)
                .map_err(|e| CoreError::Invalid(format!("upload line {number}: {e}")))?;
            if read == 0 {
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed: UploadLine = serde_json::from_slice(&line).map_err(|e| {
                CoreError::Invalid(format!("upload line {number}: not a Kiln import line: {e}"))
            })?;
            match parsed.advisory {
                Some(advisory) => {
                    check_uploaded(&parsed.source, &advisory)
                        .map_err(|e| CoreError::Invalid(format!("upload line {number}: {e}")))?;
                    importer.add(&parsed.source, parsed.mode, advisory)?
                }
                None => importer.declare(&parsed.source, parsed.mode)?,
            }
        }
        let changes = importer.finish()?;
        Ok(ImportOutcome {
            changes,
            generation: generation(tx)?,
        })
    })?
}

/// What an upload's advisory must be: the readers of `kiln-vuln` make only such records, and a
/// client could send anything. The limits are the model's and OSV's orders of magnitude.
fn check_uploaded(source: &str, advisory: &Advisory) -> Result<(), String> {
    let short = |what: &str, text: &str| {
        if text.is_empty() || text.len() > 512 || text.chars().any(char::is_control) {
            Err(format!(
                "{what} must be 1 to 512 printable characters, not {:?}",
                text.chars().take(80).collect::<String>()
            ))
        } else {
            Ok(())
        }
    };
    short("id", &advisory.id)?;
    short("source", source)?;
    if advisory.source != source {
        return Err(format!(
            "advisory {} says it is from {}, its line says {source}",
            advisory.id, advisory.source
        ));
    }
    for affected in &advisory.affected {
        short("affected.package.ecosystem", &affected.ecosystem)?;
        short("affected.package.name", &affected.name)?;
    }
    Ok(())
}

/// Reads one line (without its newline) of at most [`MAX_UPLOAD_LINE`] bytes.
fn read_line(reader: &mut impl std::io::BufRead, line: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let (done, used) = {
            let available = reader.fill_buf()?;
            if available.is_empty() {
                return Ok(total);
            }
            match available.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&available[..i]);
                    (true, i + 1)
                }
                None => {
                    line.extend_from_slice(available);
                    (false, available.len())
                }
            }
        };
        reader.consume(used);
        total += used;
        if line.len() > MAX_UPLOAD_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("longer than {MAX_UPLOAD_LINE} bytes"),
            ));
        }
        if done {
            return Ok(total);
        }
    }
}

/// `GET /kiln/v1/vulndb` (what is loaded: any caller, the data is the same for every account)
/// and `POST /kiln/v1/vulndb/import` (an upload of [`UploadLine`]s: only the accounts the
/// server names with `--vulndb-importer`, since every account's scans read the data).
pub struct VulnDbExtension {
    pub core: std::sync::Arc<crate::Core>,
    pub importers: Vec<String>,
}

impl crate::extension::Extension for VulnDbExtension {
    fn handle(
        &self,
        _caller: &crate::Caller<'_>,
        path: &str,
        _query: &[(String, String)],
    ) -> crate::extension::ExtensionResponse {
        use crate::extension::ExtensionResponse;
        if path.trim_end_matches('/') != "vulndb" {
            return ExtensionResponse::error(
                404,
                "ResourceNotFoundException",
                &format!(
                    "{}{path} does not exist: GET vulndb answers what is loaded",
                    crate::extension::PREFIX
                ),
            );
        }
        match read_status(&self.core.store) {
            Ok(status) => {
                ExtensionResponse::json(200, &serde_json::to_value(status).unwrap_or_default())
            }
            Err(e) => ExtensionResponse::error(500, "ServiceException", &e.to_string()),
        }
    }

    fn accepts_upload(
        &self,
        caller: &crate::Caller<'_>,
        path: &str,
    ) -> Result<(), crate::extension::ExtensionResponse> {
        use crate::extension::ExtensionResponse;
        if path.trim_end_matches('/') != "vulndb/import" {
            return Err(ExtensionResponse::error(
                404,
                "ResourceNotFoundException",
                &format!(
                    "{}{path} takes no uploads: POST vulndb/import does",
                    crate::extension::PREFIX
                ),
            ));
        }
        if !self.importers.iter().any(|a| a == caller.account_id) {
            return Err(ExtensionResponse::error(
                403,
                "AccessDeniedException",
                &format!(
                    "account {} may not import vulnerability data into this server: it takes imports from the accounts its operator names with `kiln serve --vulndb-importer ACCOUNT`{}; or import straight into its data directory with `kiln vulndb import --data-dir`",
                    caller.account_id,
                    if self.importers.is_empty() {
                        " (none are named)".to_string()
                    } else {
                        format!(" ({})", self.importers.join(", "))
                    }
                ),
            ));
        }
        Ok(())
    }

    fn upload(
        &self,
        caller: &crate::Caller<'_>,
        path: &str,
        _query: &[(String, String)],
        body: &std::path::Path,
    ) -> crate::extension::ExtensionResponse {
        use crate::extension::ExtensionResponse;
        // The server asked `accepts_upload` before it read the body; asked again, it is the
        // same answer (a caller whose rights changed meanwhile gets the new one).
        if let Err(refused) = self.accepts_upload(caller, path) {
            return refused;
        }
        let file = match std::fs::File::open(body) {
            Ok(f) => f,
            Err(e) => {
                return ExtensionResponse::error(
                    500,
                    "ServiceException",
                    &format!("reading the upload: {e}"),
                )
            }
        };
        match import_upload(
            &self.core.store,
            std::io::BufReader::with_capacity(1 << 20, file),
        ) {
            Ok(outcome) => {
                self.core.work.notify();
                ExtensionResponse::json(200, &serde_json::to_value(outcome).unwrap_or_default())
            }
            Err(CoreError::Invalid(message)) => ExtensionResponse::error(
                400,
                "InvalidParameterValueException",
                &format!("nothing was imported: {message}"),
            ),
            Err(e) => ExtensionResponse::error(
                500,
                "ServiceException",
                &format!("nothing was imported: {e}"),
            ),
        }
    }
}
