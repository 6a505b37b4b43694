//! The log directory of a run, laid out like awstoe's (semantics.md 1.8):
//! `<log-directory>/TOE_<YYYY-MM-DD_HH-MM-SS>_UTC-0_<executionId>/` holding
//!
//! - `document.yaml` (or `document-1.yaml`, `document-2.yaml`, ... for several documents): the
//!   input documents as given;
//! - `console.log`: every line a step printed, under a header line per step, written and
//!   flushed as it arrives so that `tail -f` follows a running step;
//! - `application.log`: one timestamped line per step transition;
//! - `detailedoutput.json`: the [`ExecutionReport`], rewritten after every step so that it is
//!   current while the run goes on;
//! - `chaining.json`: every `{{ ... }}` expression resolved, with its phase, step and value.

use crate::report::ExecutionReport;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One resolved chaining or variable expression (`chaining.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolution {
    pub document: String,
    pub phase: String,
    pub step: String,
    pub expression: String,
    pub value: String,
}

/// An open log directory.
pub struct LogDir {
    path: PathBuf,
    console: Mutex<File>,
    application: Mutex<File>,
    clock: Option<crate::engine::Clock>,
}

impl LogDir {
    /// The folder name for a run that started at `started` (UTC).
    pub fn folder_name(started: chrono::DateTime<chrono::Utc>, execution_id: &str) -> String {
        format!(
            "TOE_{}_UTC-0_{execution_id}",
            started.format("%Y-%m-%d_%H-%M-%S")
        )
    }

    /// Creates (or, when resuming, reopens for appending) the run's folder.
    /// Lines are stamped with `clock`'s time (the system clock's when `None`).
    pub fn open(path: PathBuf, clock: Option<crate::engine::Clock>) -> io::Result<LogDir> {
        std::fs::create_dir_all(&path)?;
        let append = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path.join(name))
        };
        Ok(LogDir {
            console: Mutex::new(append("console.log")?),
            application: Mutex::new(append("application.log")?),
            path,
            clock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write_documents(&self, texts: &[String]) -> io::Result<()> {
        if texts.len() == 1 {
            return std::fs::write(self.path.join("document.yaml"), &texts[0]);
        }
        for (i, text) in texts.iter().enumerate() {
            std::fs::write(self.path.join(format!("document-{}.yaml", i + 1)), text)?;
        }
        Ok(())
    }

    /// Appends a line to console.log. Errors writing logs never fail a step: they are reported
    /// once in application.log's place, stderr.
    pub fn console_line(&self, line: &str) {
        if let Ok(mut f) = self.console.lock() {
            // One write per line: `writeln!` on a file makes a system call per piece.
            let mut text = String::with_capacity(line.len() + 1);
            text.push_str(line);
            text.push('\n');
            let _ = f.write_all(text.as_bytes());
        }
    }

    pub fn application_line(&self, line: &str) {
        if let Ok(mut f) = self.application.lock() {
            let now = self
                .clock
                .as_ref()
                .map_or_else(chrono::Utc::now, |clock| clock());
            let text = format!("{} {line}\n", crate::report::format_time(now));
            let _ = f.write_all(text.as_bytes());
        }
    }

    /// Writes `detailedoutput.json` atomically (a reader never sees half a file).
    pub fn write_report(&self, report: &ExecutionReport) -> io::Result<()> {
        self.write_json("detailedoutput.json", report)
    }

    pub fn write_chaining(&self, resolutions: &[Resolution]) -> io::Result<()> {
        self.write_json("chaining.json", &resolutions)
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> io::Result<()> {
        let tmp = self.path.join(format!(".{name}.tmp"));
        let text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.path.join(name))
    }
}
