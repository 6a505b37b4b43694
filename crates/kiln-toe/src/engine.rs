//! Running documents (semantics.md 1.1-1.7).
//!
//! [`Engine::run`] validates every document and its parameters first, so a run never stops
//! half-way over something it could have known at the start. Then it runs documents in the
//! order given, the selected phases of each in document order, and the steps of each phase in
//! order:
//!
//! - a step's `if` is evaluated once (also when the step is re-run after a reboot); Skip makes
//!   the step `skipped`, which counts as success; Abort fails it;
//! - an attempt substitutes the step's inputs, runs every loop iteration (a step without a loop
//!   is one iteration) and succeeds when they all do; `timeoutSeconds` is the attempt's
//!   deadline across its iterations; a failed attempt is retried from the first iteration, up
//!   to `maxAttempts`;
//! - after the last attempt `onFailure` decides: Abort stops the run, Continue goes on with the
//!   phase's remaining steps but fails the phase, Ignore marks the step `ignoredFailure` and the
//!   run goes on. A failed phase ends the run: later phases and documents do not run (Kiln's
//!   choice; the docs only say the document fails);
//! - a step that asks for a reboot (action Reboot, exit code 194) makes the engine call
//!   [`Target::reboot`]. When the target comes back in the same process the step is re-run
//!   (exit 194) or counts as done (Reboot). When the target goes down, the engine saves its
//!   state in the state directory and answers [`Outcome::RebootPending`]; [`Engine::resume`]
//!   goes on from that step later. A step may ask for at most [`MAX_REBOOTS_PER_STEP`] reboots.
//!
//! Chaining values (`{{ build.Step.outputs.stdout }}`) live per document. Every line a step
//! prints goes to the [`Observer`] and to `console.log` as it is printed.

use crate::actions::{
    self, ActionConfig, ActionContext, ActionFailure, ActionKind, Console, Outputs, Stream,
};
use crate::condition::{self, StepDecision, TargetHost};
use crate::document::{self, Document, LoopKind, OnFailure, Platform, Step};
use crate::logs::{LogDir, Resolution};
use crate::report::{
    format_time, DocumentReport, ExecutionReport, PhaseReport, Status, StepReport,
};
use crate::target::{Reboot, Target};
use crate::variables::{substitute, substitute_value, LoopField, Reference, Scope, VariableError};
use crate::yaml::Value;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reboots one step may ask for before it fails (a script that always exits 194 would
/// otherwise loop forever).
pub const MAX_REBOOTS_PER_STEP: u32 = 10;

/// ExecuteDocument may nest 3 levels: 4 documents in all.
const MAX_DOCUMENT_DEPTH: usize = 4;

const STATE_FILE: &str = "executionstate.json";

/// The failure message of a step stopped by [`EngineConfig::cancel`].
pub const CANCELLED: &str = "cancelled";

/// Fetches documents that are not files in the target: `arn:...` component ARNs and `s3://`
/// URIs (the build engine provides one; `kiln toe run` has none).
pub trait DocumentLoader: Send + Sync {
    fn load(&self, reference: &str) -> Result<String, String>;
}

/// Settings of the engine that come from its caller.
#[derive(Clone, Default)]
pub struct EngineConfig {
    pub actions: ActionConfig,
    /// Values for `{{ aws:ssm:resolve(name) }}`.
    pub ssm_parameters: HashMap<String, String>,
    pub loader: Option<Arc<dyn DocumentLoader>>,
    /// Set by the caller to stop the run: no further step or attempt starts, and the step
    /// that notices ends Failed with "cancelled". (The caller kills running processes itself.)
    pub cancel: Option<Arc<AtomicBool>>,
    /// Where, inside the target, the engine keeps a run's scratch files (scripts of
    /// ExecuteBash): the recipe's `workingDirectory`. Default `/tmp`.
    pub working_directory: Option<String>,
    /// Where the run's times (reports, log lines, the log folder's name) come from: the
    /// service's clock in a build, so that a build on a test clock reports the times its image
    /// records. Default: the system clock.
    pub clock: Option<Clock>,
}

/// A source of the current time.
pub type Clock = Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

impl EngineConfig {
    fn time(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock
            .as_ref()
            .map_or_else(chrono::Utc::now, |clock| clock())
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    }

    /// The run's scratch directory, as a path inside the target.
    fn scratch_in_target(&self, execution_id: &str) -> String {
        let base = self
            .working_directory
            .as_deref()
            .unwrap_or("/tmp")
            .trim_end_matches('/');
        format!("{base}/kiln-toe/{execution_id}")
    }
}

/// Where a step is, for observers.
#[derive(Debug, Clone, Copy)]
pub struct StepAt<'a> {
    pub document: &'a str,
    pub phase: &'a str,
    pub step: &'a str,
    pub action: ActionKind,
    /// 0 for the documents of the run, 1 inside ExecuteDocument, ...
    pub depth: usize,
}

/// Follows a run as it happens.
pub trait Observer: Send + Sync {
    fn step_started(&self, _at: &StepAt) {}
    fn step_finished(&self, _at: &StepAt, _report: &StepReport, _elapsed: Duration) {}
    fn output(&self, _at: &StepAt, _stream: Stream, _line: &str) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// A document to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDocument {
    /// How the document was named (its path), for reports.
    pub name: String,
    pub text: String,
    /// Parameters for this document only (ExecuteDocument, awstoe's --config).
    pub parameters: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    pub documents: Vec<SourceDocument>,
    /// `None`: every phase. Phases run in document order whatever the order here.
    pub phases: Option<Vec<String>>,
    /// Parameters for every document; names a document does not declare are ignored.
    pub parameters: Vec<(String, String)>,
    /// `None`: a new UUID.
    pub execution_id: Option<String>,
    pub log_directory: PathBuf,
    /// Where the state is saved when the target goes down for a reboot.
    pub state_directory: Option<PathBuf>,
}

#[derive(Debug)]
pub enum Outcome {
    Finished(ExecutionReport),
    /// The target is rebooting; [`Engine::resume`] with the same state directory goes on.
    RebootPending(ExecutionReport),
}

impl Outcome {
    pub fn report(&self) -> &ExecutionReport {
        match self {
            Outcome::Finished(r) | Outcome::RebootPending(r) => r,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{document}: {error}")]
    Document {
        document: String,
        error: document::DocumentError,
    },
    #[error("{document}: {message}")]
    Parameter { document: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    State(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Inputs and outputs of the steps that ran, for chaining.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ChainStore {
    /// "phase.step" -> record.
    steps: BTreeMap<String, ChainRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ChainRecord {
    inputs: serde_json::Value,
    outputs: Outputs,
}

/// What to do with the step under the cursor when a run resumes after a reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum AfterReboot {
    /// Exit code 194: run the step again (its `if` is not evaluated again).
    Rerun,
    /// Action Reboot: the step is done.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    document: usize,
    phase: usize,
    step: usize,
}

/// Everything needed to resume a run after the target rebooted.
#[derive(Debug, Serialize, Deserialize)]
struct SavedRun {
    request: RunRequest,
    log_path: PathBuf,
    report: ExecutionReport,
    cursor: Cursor,
    after: AfterReboot,
    reboots: u32,
    chains: Vec<ChainStore>,
    resolutions: Vec<Resolution>,
}

/// A validated document ready to run.
struct Prepared {
    source: SourceDocument,
    document: Document,
    /// Indexes of the phases to run, in document order.
    phases: Vec<usize>,
    variables: HashMap<String, String>,
}

/// The engine, over a target.
pub struct Engine<'a> {
    target: &'a dyn Target,
    config: &'a EngineConfig,
    observer: &'a dyn Observer,
}

enum StepEnd {
    Finished(StepReport),
    /// The target goes down: the report so far, what to do on resume, reboots so far.
    Reboot(StepReport, AfterReboot, u32),
}

enum Flow {
    Go,
    Stop,
    Reboot(AfterReboot),
}

/// A run in progress (the top-level one, or a nested ExecuteDocument run sharing its logs).
struct Run<'r> {
    log: &'r LogDir,
    execution_id: String,
    resolutions: &'r Mutex<Vec<Resolution>>,
    /// Identities of the documents being run, outermost first (cycle detection).
    ancestry: Vec<String>,
    depth: usize,
}

impl<'a> Engine<'a> {
    pub fn new(
        target: &'a dyn Target,
        config: &'a EngineConfig,
        observer: &'a dyn Observer,
    ) -> Self {
        Engine {
            target,
            config,
            observer,
        }
    }

    /// Validates documents and parameters without running anything.
    /// Now, as the reports write it.
    fn now(&self) -> String {
        format_time(self.config.time())
    }

    pub fn validate(&self, request: &RunRequest) -> Result<(), EngineError> {
        self.prepare(request).map(|_| ())
    }

    /// Runs the documents of `request`.
    pub fn run(&self, request: RunRequest) -> Result<Outcome, EngineError> {
        let prepared = self.prepare(&request)?;
        let started = self.config.time();
        let execution_id = request
            .execution_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let log_path = request
            .log_directory
            .join(LogDir::folder_name(started, &execution_id));
        let log = LogDir::open(log_path.clone(), self.config.clock.clone())
            .map_err(io_error(&log_path))?;
        let texts: Vec<String> = request.documents.iter().map(|d| d.text.clone()).collect();
        log.write_documents(&texts).map_err(io_error(&log_path))?;
        let report = ExecutionReport {
            execution_id: execution_id.clone(),
            status: Status::Pending,
            start_time: self.now(),
            end_time: None,
            failure_message: None,
            log_url: log_path.display().to_string(),
            documents: prepared.iter().map(empty_document_report).collect(),
        };
        let chains = vec![ChainStore::default(); prepared.len()];
        let cursor = Cursor {
            document: 0,
            phase: 0,
            step: 0,
        };
        self.drive(
            request,
            prepared,
            log,
            report,
            chains,
            cursor,
            None,
            Vec::new(),
        )
    }

    /// Resumes the run saved in `state_directory` after a reboot; `None` when there is none.
    pub fn resume(&self, state_directory: &Path) -> Result<Option<Outcome>, EngineError> {
        let path = state_directory.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        let saved: SavedRun = serde_json::from_str(&text)
            .map_err(|e| EngineError::State(format!("{}: {e}", path.display())))?;
        let prepared = self.prepare(&saved.request)?;
        let log = LogDir::open(saved.log_path.clone(), self.config.clock.clone())
            .map_err(io_error(&saved.log_path))?;
        log.application_line(&format!(
            "resuming after a reboot at document {}, phase {}, step {}",
            saved.cursor.document + 1,
            saved.cursor.phase + 1,
            saved.cursor.step + 1
        ));
        let outcome = self.drive(
            saved.request,
            prepared,
            log,
            saved.report,
            saved.chains,
            saved.cursor,
            Some((saved.after, saved.reboots)),
            saved.resolutions,
        )?;
        Ok(Some(outcome))
    }

    fn prepare(&self, request: &RunRequest) -> Result<Vec<Prepared>, EngineError> {
        request
            .documents
            .iter()
            .map(|source| {
                let document = document::parse(&source.text, Platform::Linux).map_err(|error| {
                    EngineError::Document {
                        document: source.name.clone(),
                        error,
                    }
                })?;
                let variables = resolve_parameters(
                    &document,
                    request.parameters.iter().chain(source.parameters.iter()),
                )
                .map_err(|message| EngineError::Parameter {
                    document: source.name.clone(),
                    message,
                })?;
                let phases = document
                    .phases
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| {
                        request
                            .phases
                            .as_ref()
                            .is_none_or(|wanted| wanted.iter().any(|w| w == &p.name))
                    })
                    .map(|(i, _)| i)
                    .collect();
                Ok(Prepared {
                    source: source.clone(),
                    document,
                    phases,
                    variables,
                })
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn drive(
        &self,
        request: RunRequest,
        prepared: Vec<Prepared>,
        log: LogDir,
        mut report: ExecutionReport,
        mut chains: Vec<ChainStore>,
        start: Cursor,
        mut resume: Option<(AfterReboot, u32)>,
        resolutions: Vec<Resolution>,
    ) -> Result<Outcome, EngineError> {
        let resolutions = Mutex::new(resolutions);
        let execution_id = report.execution_id.clone();
        let mut stopped = false;
        for (d, doc) in prepared.iter().enumerate().skip(start.document) {
            let phase_start = if d == start.document { start.phase } else { 0 };
            let step_start = |p: usize| {
                if d == start.document && p == start.phase {
                    start.step
                } else {
                    0
                }
            };
            let doc_report = &mut report.documents[d];
            if doc_report.start_time.is_none() {
                doc_report.start_time = Some(self.now());
            }
            let mut run = Run {
                log: &log,
                execution_id: execution_id.clone(),
                resolutions: &resolutions,
                ancestry: vec![identity_of(&doc.source.name, self.target)],
                depth: 0,
            };
            let flow = self.run_phases(
                &mut run,
                doc,
                doc_report,
                &mut chains[d],
                phase_start,
                &step_start,
                &mut resume,
            );
            match flow {
                Flow::Go => {}
                Flow::Stop => stopped = true,
                Flow::Reboot(after) => {
                    let cursor = find_cursor(&report, d);
                    let reboots = resume.map_or(1, |(_, n)| n);
                    let saved = SavedRun {
                        request: request.clone(),
                        log_path: log.path().to_path_buf(),
                        report: report.clone(),
                        cursor,
                        after,
                        reboots,
                        chains: chains.clone(),
                        resolutions: resolutions.lock().map(|r| r.clone()).unwrap_or_default(),
                    };
                    self.save_state(&request, &saved)?;
                    log.write_report(&report).map_err(io_error(log.path()))?;
                    log.application_line("the target is rebooting; state saved");
                    return Ok(Outcome::RebootPending(report));
                }
            }
            let doc_report = &mut report.documents[d];
            doc_report.end_time = Some(self.now());
            doc_report.status = Status::combine(doc_report.phases.iter().map(|p| p.status));
            if doc_report.status == Status::Failed {
                doc_report.failure_message = first_failure(doc_report);
            }
            if stopped {
                break;
            }
        }
        report.end_time = Some(self.now());
        report.status = Status::combine(report.documents.iter().map(|d| d.status));
        if report.status == Status::Failed {
            report.failure_message = report
                .documents
                .iter()
                .find_map(|d| d.failure_message.clone());
        }
        log.write_report(&report).map_err(io_error(log.path()))?;
        let resolved = resolutions.lock().map(|r| r.clone()).unwrap_or_default();
        log.write_chaining(&resolved)
            .map_err(io_error(log.path()))?;
        if let Some(dir) = &request.state_directory {
            let _ = std::fs::remove_file(dir.join(STATE_FILE));
        }
        if let Ok(scratch) = self
            .target
            .resolve(&self.config.scratch_in_target(&report.execution_id))
        {
            let _ = std::fs::remove_dir_all(scratch);
        }
        Ok(Outcome::Finished(report))
    }

    fn save_state(&self, request: &RunRequest, saved: &SavedRun) -> Result<(), EngineError> {
        let Some(dir) = &request.state_directory else {
            return Err(EngineError::State(
                "the target went down for a reboot, and no state directory was given to resume from".into(),
            ));
        };
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_vec(saved).map_err(|e| EngineError::State(e.to_string()))?;
        std::fs::write(&path, text).map_err(io_error(&path))
    }

    #[allow(clippy::too_many_arguments)]
    fn run_phases(
        &self,
        run: &mut Run,
        doc: &Prepared,
        doc_report: &mut DocumentReport,
        chain: &mut ChainStore,
        phase_start: usize,
        step_start: &dyn Fn(usize) -> usize,
        resume: &mut Option<(AfterReboot, u32)>,
    ) -> Flow {
        let log = run.log;
        for (p, &phase_index) in doc.phases.iter().enumerate().skip(phase_start) {
            let phase = &doc.document.phases[phase_index];
            let phase_report = &mut doc_report.phases[p];
            if phase_report.start_time.is_none() {
                phase_report.start_time = Some(self.now());
            }
            let mut aborted = false;
            for (s, step) in phase.steps.iter().enumerate().skip(step_start(p)) {
                let at = StepAt {
                    document: &doc.source.name,
                    phase: &phase.name,
                    step: &step.name,
                    action: step.action,
                    depth: run.depth,
                };
                if self.config.cancelled() {
                    let r = &mut phase_report.steps[s];
                    r.status = Status::Failed;
                    r.failure_message = Some(CANCELLED.to_string());
                    r.end_time = Some(self.now());
                    aborted = true;
                }
                if aborted {
                    break;
                }
                let resuming = resume.take();
                if let Some((AfterReboot::Done, _)) = resuming {
                    // The Reboot step finished before the target went down.
                    let r = &mut phase_report.steps[s];
                    r.status = Status::Success;
                    r.end_time = Some(self.now());
                    chain.steps.insert(
                        format!("{}.{}", phase.name, step.name),
                        ChainRecord::default(),
                    );
                    continue;
                }
                self.observer.step_started(&at);
                log.console_line(&format!(
                    "==> {}/{} ({})",
                    phase.name,
                    step.name,
                    step.action.name()
                ));
                log.application_line(&format!(
                    "step {}/{} ({}) started",
                    phase.name,
                    step.name,
                    step.action.name()
                ));
                let began = Instant::now();
                let reboots = resuming.map_or(0, |(_, n)| n);
                let end = self.run_step(run, doc, &at, step, chain, resuming.is_some(), reboots);
                let (step_report, reboot) = match end {
                    StepEnd::Finished(r) => (r, None),
                    StepEnd::Reboot(r, after, n) => (r, Some((after, n))),
                };
                log.application_line(&format!(
                    "step {}/{} {}",
                    phase.name,
                    step.name,
                    step_report.status.name()
                ));
                phase_report.steps[s] = step_report;
                if let Some((after, n)) = reboot {
                    *resume = Some((after, n));
                    return Flow::Reboot(after);
                }
                self.observer
                    .step_finished(&at, &phase_report.steps[s], began.elapsed());
                if phase_report.steps[s].status == Status::Failed
                    && step.on_failure == OnFailure::Abort
                {
                    aborted = true;
                }
                if aborted {
                    break;
                }
            }
            let phase_report = &mut doc_report.phases[p];
            phase_report.end_time = Some(self.now());
            phase_report.status = Status::combine(
                phase_report
                    .steps
                    .iter()
                    .map(|s| s.status)
                    .filter(|s| *s != Status::Pending),
            );
            if phase_report.status == Status::Failed {
                phase_report.failure_message = phase_report
                    .steps
                    .iter()
                    .find(|s| s.status == Status::Failed)
                    .map(|s| {
                        format!(
                            "step {} failed: {}",
                            s.name,
                            s.failure_message.clone().unwrap_or_default()
                        )
                    });
                return Flow::Stop;
            }
        }
        Flow::Go
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        run: &Run,
        doc: &Prepared,
        at: &StepAt,
        step: &Step,
        chain: &mut ChainStore,
        resumed: bool,
        mut reboots: u32,
    ) -> StepEnd {
        let mut report = new_step_report(step);
        report.start_time = Some(self.now());
        let key = format!("{}.{}", at.phase, at.step);
        let finish = |mut report: StepReport, status: Status, failure: Option<String>| {
            report.status = status;
            report.failure_message = failure;
            report.end_time = Some(self.now());
            StepEnd::Finished(report)
        };
        // `if`: once, and not again when the step is re-run after a reboot.
        if let (Some(cond), false) = (&step.condition, resumed) {
            let scope = StepScope::new(doc, chain, &self.config.ssm_parameters, None);
            let decision = substitute_value(cond, &scope)
                .map_err(|e| e.to_string())
                .and_then(|(v, _)| {
                    condition::decide(&v, &TargetHost(self.target)).map_err(|e| e.to_string())
                });
            match decision {
                Ok(StepDecision::Execute) => {}
                Ok(StepDecision::Skip) => {
                    chain.steps.insert(key, ChainRecord::default());
                    return finish(report, Status::Skipped, None);
                }
                Ok(StepDecision::Abort) => {
                    let status = failed_status(step);
                    return finish(
                        report,
                        status,
                        Some("the step's if condition chose Abort".into()),
                    );
                }
                Err(e) => {
                    let status = failed_status(step);
                    return finish(report, status, Some(format!("if: {e}")));
                }
            }
        }
        let mut last_failure = String::new();
        let mut attempt = 0;
        while attempt < step.max_attempts {
            if attempt > 0 && self.config.cancelled() {
                last_failure = CANCELLED.to_string();
                break;
            }
            attempt += 1;
            report.attempts = attempt;
            let deadline = (step.timeout_seconds > 0)
                .then(|| Instant::now() + Duration::from_secs(step.timeout_seconds as u64));
            match self.attempt(run, doc, at, step, chain, deadline, &mut report) {
                Ok(outputs) => {
                    report.outputs = serde_json::Value::Object(outputs.clone()).to_string();
                    let inputs = serde_json::from_str(&report.inputs).unwrap_or_default();
                    chain.steps.insert(key, ChainRecord { inputs, outputs });
                    return finish(report, Status::Success, None);
                }
                Err(ActionFailure::Reboot) => {
                    reboots += 1;
                    if reboots > MAX_REBOOTS_PER_STEP {
                        last_failure = format!(
                            "the step asked for a reboot more than {MAX_REBOOTS_PER_STEP} times"
                        );
                        break;
                    }
                    let after = if step.action == ActionKind::Reboot {
                        AfterReboot::Done
                    } else {
                        AfterReboot::Rerun
                    };
                    run.log.application_line(&format!(
                        "step {} asked for a reboot ({reboots})",
                        at.step
                    ));
                    match self.target.reboot() {
                        Reboot::Exit if run.depth == 0 => {
                            return StepEnd::Reboot(report, after, reboots)
                        }
                        Reboot::Exit => {
                            last_failure = "a reboot inside ExecuteDocument cannot be resumed when the target goes down".into();
                            break;
                        }
                        Reboot::Resumed if after == AfterReboot::Done => {
                            report.outputs = "{}".into();
                            chain.steps.insert(key, ChainRecord::default());
                            return finish(report, Status::Success, None);
                        }
                        // Exit code 194: the same step again, without using up an attempt.
                        Reboot::Resumed => attempt -= 1,
                    }
                }
                Err(ActionFailure::TimedOut) => {
                    last_failure = format!(
                        "timed out after {} seconds (attempt {attempt} of {})",
                        step.timeout_seconds, step.max_attempts
                    );
                }
                Err(ActionFailure::Failed(message)) => last_failure = message,
            }
        }
        let status = failed_status(step);
        finish(report, status, Some(last_failure))
    }

    /// One attempt: every iteration of the step's loop (one without a loop).
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        run: &Run,
        doc: &Prepared,
        at: &StepAt,
        step: &Step,
        chain: &ChainStore,
        deadline: Option<Instant>,
        report: &mut StepReport,
    ) -> Result<Outputs, ActionFailure> {
        let iterations = match &step.looping {
            None => vec![None],
            Some(l) => {
                let scope = StepScope::new(doc, chain, &self.config.ssm_parameters, None);
                let values = loop_values(&l.kind, &scope)
                    .map_err(|e| ActionFailure::failed(format!("loop: {e}")))?;
                report.looping = Some(serde_json::json!({
                    "name": l.name,
                    "iterations": values.len(),
                }));
                values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Some((l.name.clone(), i, v)))
                    .collect()
            }
        };
        let mut consolidated: Vec<Outputs> = Vec::new();
        let mut all_inputs = Vec::new();
        for iteration in &iterations {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ActionFailure::TimedOut);
            }
            let loop_var = iteration
                .as_ref()
                .map(|(name, i, v)| (name.as_deref(), *i, v.as_str()));
            let scope = StepScope::new(doc, chain, &self.config.ssm_parameters, loop_var);
            let (inputs, resolved) = substitute_value(&step.inputs, &scope)
                .map_err(|e| ActionFailure::failed(variable_message(&e)))?;
            self.record_resolutions(run, doc, at, step, resolved);
            let json_inputs = yaml_to_json(&inputs);
            all_inputs.push(json_inputs.clone());
            report.inputs = if step.disable_logging {
                "\"(not logged: disableLogging)\"".into()
            } else {
                json_inputs.to_string()
            };
            let result = match step.action {
                ActionKind::Assert => {
                    match condition::evaluate(&inputs, &TargetHost(self.target)) {
                        Ok(true) => Ok(Outputs::new()),
                        Ok(false) => Err(ActionFailure::failed("the assertion is false")),
                        Err(e) => Err(ActionFailure::failed(format!("Assert: {e}"))),
                    }
                }
                ActionKind::ExecuteDocument => self.execute_document(run, at, &inputs, report),
                kind => self.run_action(run, at, step, kind, &inputs, deadline),
            };
            match result {
                Ok(outputs) => consolidated.push(outputs),
                Err(ActionFailure::Failed(m)) if iteration.is_some() => {
                    let index = iteration.as_ref().map_or(0, |(_, i, _)| *i);
                    return Err(ActionFailure::Failed(format!(
                        "loop iteration {index} failed: {m}"
                    )));
                }
                Err(other) => return Err(other),
            }
        }
        if step.looping.is_some() && !step.disable_logging {
            report.inputs = serde_json::Value::Array(all_inputs).to_string();
        }
        Ok(join_outputs(consolidated))
    }

    fn run_action(
        &self,
        run: &Run,
        at: &StepAt,
        step: &Step,
        kind: ActionKind,
        inputs: &Value,
        deadline: Option<Instant>,
    ) -> Result<Outputs, ActionFailure> {
        // One scratch directory per run, inside the target (ExecuteBash writes its script
        // there): creating and removing one per step cost more than the rest of the engine's
        // per-step work on a busy disk (kiln-bench toe). The run removes it when it ends.
        let scratch_in_target = self.config.scratch_in_target(&run.execution_id);
        let scratch = self
            .target
            .resolve(&scratch_in_target)
            .map_err(|e| ActionFailure::failed(format!("scratch directory: {e}")))?;
        std::fs::create_dir_all(&scratch).map_err(|e| {
            ActionFailure::failed(format!("scratch directory {}: {e}", scratch.display()))
        })?;
        let console = StepConsole {
            log: run.log,
            observer: self.observer,
            at: *at,
            silent: step.disable_logging,
        };
        let ctx = ActionContext {
            target: self.target,
            config: &self.config.actions,
            console: &console,
            deadline,
            scratch: &scratch,
            scratch_in_target: &scratch_in_target,
        };
        actions::run(kind, &ctx, inputs)
    }

    fn execute_document(
        &self,
        run: &Run,
        at: &StepAt,
        inputs: &Value,
        report: &mut StepReport,
    ) -> Result<Outputs, ActionFailure> {
        let reference = inputs
            .get("document")
            .and_then(document::scalar_text)
            .ok_or_else(|| ActionFailure::failed("ExecuteDocument: document is required"))?;
        let identity = identity_of(&reference, self.target);
        if run.ancestry.contains(&identity) {
            let mut chain: Vec<&str> = run.ancestry.iter().map(String::as_str).collect();
            chain.push(&identity);
            return Err(ActionFailure::failed(format!(
                "ExecuteDocument: {reference} is already running (cycle: {})",
                chain.join(" -> ")
            )));
        }
        if run.ancestry.len() >= MAX_DOCUMENT_DEPTH {
            return Err(ActionFailure::failed(format!(
                "ExecuteDocument: documents nest at most {} levels deep",
                MAX_DOCUMENT_DEPTH - 1
            )));
        }
        let text = if reference.starts_with("arn:") || reference.starts_with("s3://") {
            match &self.config.loader {
                Some(loader) => loader
                    .load(&reference)
                    .map_err(|e| ActionFailure::failed(format!("ExecuteDocument: {e}")))?,
                None if reference.starts_with("s3://") => {
                    actions::net::fetch_s3_text(&self.config.actions, &reference)
                        .map_err(|e| ActionFailure::failed(format!("ExecuteDocument: {e}")))?
                }
                None => {
                    return Err(ActionFailure::failed(format!(
                        "ExecuteDocument: {reference}: component ARNs are loaded by Kiln's build engine; here give a file path or an s3:// URI"
                    )))
                }
            }
        } else {
            let path = self
                .target
                .resolve(&reference)
                .map_err(|e| ActionFailure::failed(format!("ExecuteDocument: {e}")))?;
            std::fs::read_to_string(&path)
                .map_err(|e| ActionFailure::failed(format!("ExecuteDocument: {reference}: {e}")))?
        };
        let phases = inputs
            .get("phases")
            .and_then(document::scalar_text)
            .map(|p| p.split(',').map(|s| s.trim().to_string()).collect());
        let parameters: Vec<(String, String)> = inputs
            .get("parameters")
            .and_then(Value::as_sequence)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| {
                        Some((
                            i.get("name").and_then(document::scalar_text)?,
                            i.get("value").and_then(document::scalar_text)?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = RunRequest {
            documents: vec![SourceDocument {
                name: reference.clone(),
                text,
                parameters,
            }],
            phases,
            parameters: Vec::new(),
            execution_id: None,
            log_directory: PathBuf::new(),
            state_directory: None,
        };
        let prepared = self
            .prepare(&request)
            .map_err(|e| ActionFailure::failed(format!("ExecuteDocument: {e}")))?;
        let nested_id = uuid::Uuid::new_v4().to_string();
        let mut nested = ExecutionReport {
            execution_id: nested_id.clone(),
            status: Status::Pending,
            start_time: self.now(),
            end_time: None,
            failure_message: None,
            log_url: run.log.path().display().to_string(),
            documents: prepared.iter().map(empty_document_report).collect(),
        };
        let mut ancestry = run.ancestry.clone();
        ancestry.push(identity);
        let mut inner = Run {
            log: run.log,
            execution_id: run.execution_id.clone(),
            resolutions: run.resolutions,
            ancestry,
            depth: at.depth + 1,
        };
        let mut chain = ChainStore::default();
        let mut resume = None;
        let doc = &prepared[0];
        let flow = self.run_phases(
            &mut inner,
            doc,
            &mut nested.documents[0],
            &mut chain,
            0,
            &|_| 0,
            &mut resume,
        );
        let doc_report = &mut nested.documents[0];
        doc_report.end_time = Some(self.now());
        doc_report.start_time.get_or_insert_with(|| self.now());
        doc_report.status = Status::combine(doc_report.phases.iter().map(|p| p.status));
        doc_report.failure_message = (doc_report.status == Status::Failed)
            .then(|| first_failure(doc_report))
            .flatten();
        nested.status = doc_report.status;
        nested.failure_message = doc_report.failure_message.clone();
        nested.end_time = Some(self.now());
        if matches!(flow, Flow::Reboot(_)) {
            nested.status = Status::Failed;
        }
        let counts = nested.counts();
        let mut outputs = Outputs::new();
        outputs.insert("executedStepCount".into(), counts.executed().into());
        outputs.insert("executionId".into(), nested_id.into());
        outputs.insert("failedStepCount".into(), counts.failed.into());
        outputs.insert(
            "failureMessage".into(),
            nested.failure_message.clone().unwrap_or_default().into(),
        );
        outputs.insert("ignoredFailedStepCount".into(), counts.ignored.into());
        outputs.insert("logUrl".into(), nested.log_url.clone().into());
        outputs.insert("status".into(), nested.status.name().into());
        let failed = !nested.status.is_success();
        let message = nested.failure_message.clone();
        report.detailed_output = Some(Box::new(nested));
        if failed {
            return Err(ActionFailure::failed(format!(
                "ExecuteDocument: {reference} failed: {}",
                message.unwrap_or_default()
            )));
        }
        Ok(outputs)
    }

    fn record_resolutions(
        &self,
        run: &Run,
        doc: &Prepared,
        at: &StepAt,
        step: &Step,
        resolved: Vec<(String, String)>,
    ) {
        if resolved.is_empty() {
            return;
        }
        if let Ok(mut list) = run.resolutions.lock() {
            for (expression, value) in resolved {
                let value = if step.disable_logging || expression.starts_with("aws:ssm:") {
                    "(not logged)".to_string()
                } else {
                    value
                };
                list.push(Resolution {
                    document: doc.source.name.clone(),
                    phase: at.phase.to_string(),
                    step: at.step.to_string(),
                    expression,
                    value,
                });
            }
        }
    }
}

/// The first step that is pending in document `d`: where to resume.
fn find_cursor(report: &ExecutionReport, d: usize) -> Cursor {
    let doc = &report.documents[d];
    for (p, phase) in doc.phases.iter().enumerate() {
        for (s, step) in phase.steps.iter().enumerate() {
            if step.status == Status::Pending {
                return Cursor {
                    document: d,
                    phase: p,
                    step: s,
                };
            }
        }
    }
    Cursor {
        document: d,
        phase: doc.phases.len(),
        step: 0,
    }
}

/// How a document reference is recognised in the ExecuteDocument ancestry: a file's resolved
/// path, or the reference itself.
fn identity_of(reference: &str, target: &dyn Target) -> String {
    if reference.starts_with("arn:") || reference.starts_with("s3://") {
        return reference.to_string();
    }
    match target.resolve(reference) {
        Ok(p) => std::fs::canonicalize(&p).unwrap_or(p).display().to_string(),
        Err(_) => reference.to_string(),
    }
}

fn failed_status(step: &Step) -> Status {
    if step.on_failure == OnFailure::Ignore {
        Status::IgnoredFailure
    } else {
        Status::Failed
    }
}

fn first_failure(doc: &DocumentReport) -> Option<String> {
    doc.phases.iter().find_map(|p| {
        p.failure_message
            .as_ref()
            .map(|m| format!("phase {}: {m}", p.name))
    })
}

fn new_step_report(step: &Step) -> StepReport {
    StepReport {
        name: step.name.clone(),
        action: step.action.name().to_string(),
        status: Status::Pending,
        failure_message: None,
        timeout_seconds: step.timeout_seconds,
        on_failure: step.on_failure.name().to_string(),
        max_attempts: step.max_attempts,
        attempts: 0,
        start_time: None,
        end_time: None,
        inputs: "null".into(),
        outputs: "{}".into(),
        looping: None,
        detailed_output: None,
    }
}

fn empty_document_report(doc: &Prepared) -> DocumentReport {
    DocumentReport {
        name: doc
            .document
            .name
            .clone()
            .unwrap_or_else(|| doc.source.name.clone()),
        file_path: doc.source.name.clone(),
        status: Status::Pending,
        start_time: None,
        end_time: None,
        failure_message: None,
        phases: doc
            .phases
            .iter()
            .map(|&i| {
                let phase = &doc.document.phases[i];
                PhaseReport {
                    name: phase.name.clone(),
                    status: Status::Pending,
                    start_time: None,
                    end_time: None,
                    failure_message: None,
                    steps: phase.steps.iter().map(new_step_report).collect(),
                }
            })
            .collect(),
    }
}

/// Parameter values for a document: defaults, then the given values for names it declares.
fn resolve_parameters<'p>(
    doc: &Document,
    given: impl Iterator<Item = &'p (String, String)>,
) -> Result<HashMap<String, String>, String> {
    let mut values: HashMap<String, String> = doc
        .parameters
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.default.clone()?)))
        .collect();
    for (name, value) in given {
        if doc.constants.iter().any(|c| &c.name == name) {
            return Err(format!(
                "{name} is a constant of the document and cannot be set"
            ));
        }
        if let Some(p) = doc.parameters.iter().find(|p| &p.name == name) {
            if let Some(allowed) = &p.allowed_values {
                if !allowed.contains(value) {
                    return Err(format!(
                        "parameter {name}: `{value}` is not one of its allowed values ({})",
                        allowed.join(", ")
                    ));
                }
            }
            values.insert(name.clone(), value.clone());
        }
    }
    let missing: Vec<&str> = doc
        .required_parameters()
        .filter(|p| !values.contains_key(&p.name))
        .map(|p| p.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing required parameter{} {} (give them with --parameters name=value)",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        ));
    }
    for c in &doc.constants {
        values.insert(c.name.clone(), c.value.clone());
    }
    Ok(values)
}

/// The values a loop iterates over, substituted once when the step starts.
fn loop_values(kind: &LoopKind, scope: &dyn Scope) -> Result<Vec<String>, VariableError> {
    Ok(match kind {
        LoopKind::For {
            start,
            end,
            update_by,
        } => {
            let mut values = Vec::new();
            let mut i = *start;
            while (*update_by > 0 && i <= *end) || (*update_by < 0 && i >= *end) {
                values.push(i.to_string());
                i = match i.checked_add(*update_by) {
                    Some(n) => n,
                    None => break,
                };
            }
            values
        }
        LoopKind::ForEach(items) => items
            .iter()
            .map(|item| substitute(item, scope).map(|s| s.text))
            .collect::<Result<_, _>>()?,
        LoopKind::Delimited { list, delimiter } => {
            let text = substitute(list, scope)?.text;
            // Empty pieces (a trailing newline after command output) are not iterations.
            text.split(*delimiter)
                .filter(|piece| !piece.is_empty())
                .map(str::to_string)
                .collect()
        }
    })
}

/// Outputs of the iterations, consolidated per key: text values joined with newlines.
fn join_outputs(parts: Vec<Outputs>) -> Outputs {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut out = Outputs::new();
    for part in parts {
        for (key, value) in part {
            let text = match &value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match out.get_mut(&key) {
                Some(serde_json::Value::String(existing)) => {
                    existing.push('\n');
                    existing.push_str(&text);
                }
                _ => {
                    out.insert(key, serde_json::Value::String(text));
                }
            }
        }
    }
    out
}

fn variable_message(e: &VariableError) -> String {
    match e {
        VariableError::Unknown(expr) if expr.starts_with("aws:ssm:resolve(") => format!(
            "`{{{{ {expr} }}}}`: that SSM parameter is not configured (kiln toe run --ssm-parameter NAME=VALUE)"
        ),
        other => other.to_string(),
    }
}

pub(crate) fn yaml_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => items.iter().map(yaml_to_json).collect(),
        Value::Mapping(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = document::scalar_text(k).unwrap_or_default();
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Value::Tagged(t) => yaml_to_json(&t.value),
    }
}

/// The scope of `{{ ... }}` inside a step.
struct StepScope<'s> {
    variables: &'s HashMap<String, String>,
    chain: &'s ChainStore,
    ssm: &'s HashMap<String, String>,
    /// (loop name, index, value) of the current iteration.
    current: Option<(Option<&'s str>, usize, &'s str)>,
}

impl<'s> StepScope<'s> {
    fn new(
        doc: &'s Prepared,
        chain: &'s ChainStore,
        ssm: &'s HashMap<String, String>,
        current: Option<(Option<&'s str>, usize, &'s str)>,
    ) -> Self {
        StepScope {
            variables: &doc.variables,
            chain,
            ssm,
            current,
        }
    }
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Scope for StepScope<'_> {
    fn lookup(&self, reference: &Reference) -> Option<String> {
        match reference {
            Reference::Variable(name) => self.variables.get(name).cloned(),
            Reference::StepOutput { phase, step, name } => self
                .chain
                .steps
                .get(&format!("{phase}.{step}"))?
                .outputs
                .get(name)
                .map(json_text),
            Reference::StepInput {
                phase,
                step,
                index,
                name,
            } => {
                let inputs = &self.chain.steps.get(&format!("{phase}.{step}"))?.inputs;
                let entry = match (index, inputs) {
                    (Some(i), serde_json::Value::Array(items)) => items.get(*i)?,
                    (None, serde_json::Value::Array(items)) => items.first()?,
                    (None, map) => map,
                    (Some(_), _) => return None,
                };
                entry.get(name).map(json_text)
            }
            Reference::Loop { loop_name, field } => {
                let (current_name, index, value) = self.current?;
                if loop_name.is_some() && loop_name.as_deref() != current_name {
                    return None;
                }
                Some(match field {
                    LoopField::Index => index.to_string(),
                    LoopField::Value => value.to_string(),
                })
            }
            Reference::SsmParameter(arg) => {
                let name = self.variables.get(arg).unwrap_or(arg);
                self.ssm.get(name).cloned()
            }
        }
    }
}

/// The console of one step: lines go to console.log and to the observer as they come.
struct StepConsole<'c> {
    log: &'c LogDir,
    observer: &'c dyn Observer,
    at: StepAt<'c>,
    silent: bool,
}

impl Console for StepConsole<'_> {
    fn line(&self, stream: Stream, text: &str) {
        if self.silent {
            return;
        }
        self.log.console_line(text);
        self.observer.output(&self.at, stream, text);
    }
}
