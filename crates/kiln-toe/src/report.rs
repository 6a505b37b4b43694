//! What a run reports: the records behind `detailedoutput.json`.
//!
//! The shape follows awstoe's (semantics.md 1.8): an execution with its documents, each with
//! its phases, each with its steps; every level has a status, start and end times and a failure
//! message. A step's `inputs` and `outputs` are JSON text, as awstoe writes them, and an
//! ExecuteDocument step carries the nested execution in `detailedOutput`.
//!
//! Statuses are written in camelCase: `success`, `failed`, `skipped` (an `if` chose to skip),
//! `ignoredFailure` (a step that failed with onFailure Ignore), `successWithIgnoredFailure`
//! (a phase, document or execution that succeeded with ignored failures), and `pending` for
//! parts that never ran because an earlier failure stopped the run.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Pending,
    Success,
    Failed,
    Skipped,
    IgnoredFailure,
    SuccessWithIgnoredFailure,
}

impl Status {
    /// Whether a run that ended in this status counts as a success.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Status::Success | Status::Skipped | Status::SuccessWithIgnoredFailure
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::IgnoredFailure => "ignoredFailure",
            Status::SuccessWithIgnoredFailure => "successWithIgnoredFailure",
        }
    }

    /// The status of a group (phase, document, execution) from its parts' statuses.
    pub fn combine(parts: impl IntoIterator<Item = Status>) -> Status {
        let mut ignored = false;
        for s in parts {
            match s {
                Status::Failed => return Status::Failed,
                Status::IgnoredFailure | Status::SuccessWithIgnoredFailure => ignored = true,
                _ => {}
            }
        }
        if ignored {
            Status::SuccessWithIgnoredFailure
        } else {
            Status::Success
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionReport {
    pub execution_id: String,
    pub status: Status,
    pub start_time: String,
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    pub log_url: String,
    pub documents: Vec<DocumentReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReport {
    pub name: String,
    pub file_path: String,
    pub status: Status,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    pub phases: Vec<PhaseReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    pub name: String,
    pub status: Status,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    pub name: String,
    pub action: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    pub timeout_seconds: i64,
    pub on_failure: String,
    pub max_attempts: u32,
    /// Attempts made (retries included; a reboot re-run is not an attempt).
    pub attempts: u32,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    /// Substituted inputs, as JSON text.
    pub inputs: String,
    /// Outputs, as JSON text.
    pub outputs: String,
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    pub looping: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detailed_output: Option<Box<ExecutionReport>>,
}

impl ExecutionReport {
    /// Counts over every step of every document (nested documents excluded).
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for step in self
            .documents
            .iter()
            .flat_map(|d| &d.phases)
            .flat_map(|p| &p.steps)
        {
            match step.status {
                Status::Success | Status::SuccessWithIgnoredFailure => c.succeeded += 1,
                Status::Failed => c.failed += 1,
                Status::IgnoredFailure => c.ignored += 1,
                Status::Skipped => c.skipped += 1,
                Status::Pending => c.not_run += 1,
            }
        }
        c
    }
}

/// How many steps ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: usize,
    pub failed: usize,
    pub ignored: usize,
    pub skipped: usize,
    pub not_run: usize,
}

impl Counts {
    pub fn executed(&self) -> usize {
        self.succeeded + self.failed + self.ignored
    }
}

/// A time as awstoe writes times (RFC 3339, UTC, milliseconds).
pub fn format_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_table() {
        use Status::*;
        let cases: &[(&[Status], Status)] = &[
            (&[], Success),
            (&[Success, Skipped], Success),
            (&[Success, IgnoredFailure], SuccessWithIgnoredFailure),
            (&[IgnoredFailure, Failed], Failed),
            (
                &[SuccessWithIgnoredFailure, Success],
                SuccessWithIgnoredFailure,
            ),
        ];
        for (parts, want) in cases {
            assert_eq!(Status::combine(parts.iter().copied()), *want, "{parts:?}");
        }
        assert_eq!(
            serde_json::to_string(&SuccessWithIgnoredFailure).unwrap(),
            "\"successWithIgnoredFailure\""
        );
    }
}
