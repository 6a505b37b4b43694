//! `kiln toe`: validate and run component documents on this machine, like AWS's awstoe.
//!
//! Exit codes (awstoe documents none, so these are Kiln's): `validate` exits 0 when every
//! document is valid and 1 when one is not; `run` exits 0 when the run succeeded (ignored
//! failures included), 1 when it failed, 2 for bad flags, unreadable or invalid documents and
//! missing parameters (nothing ran), and 194 when a step asked for a reboot under
//! `--reboot exit`: the state is saved in `--state-directory`, and running
//! `kiln toe run --state-directory DIR` again (after rebooting) resumes at that step.

use anyhow::{bail, Context, Result};
use kiln_toe::actions::{S3Config, Stream};
use kiln_toe::document::{self, Platform};
use kiln_toe::engine::{
    Engine, EngineConfig, EngineError, Observer, Outcome, RunRequest, SourceDocument, StepAt,
};
use kiln_toe::report::{ExecutionReport, Status, StepReport};
use kiln_toe::target::{LocalTarget, Reboot};
use kiln_toe::variables::parse_parameter_overrides;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Exit code when the target goes down for a reboot (the Linux reboot code of AWSTOE).
pub const EXIT_REBOOT: i32 = 194;

#[derive(clap::Subcommand)]
pub enum ToeCommand {
    /// Check component documents (syntax, schema, actions and their inputs) for Linux.
    Validate(ValidateArgs),
    /// Run component documents on this machine (or in a root directory with --root).
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Comma-separated document paths.
    #[arg(short = 'd', long, value_delimiter = ',', required = true)]
    documents: Vec<PathBuf>,
    /// Accepted for awstoe compatibility; Kiln always reports every problem.
    #[arg(short = 't', long)]
    trace: bool,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Comma-separated documents: file paths or s3:// URIs of the --s3-endpoint (exactly one of
    /// --documents and --config).
    #[arg(short = 'd', long, value_delimiter = ',')]
    documents: Vec<PathBuf>,
    /// awstoe's run configuration JSON (documents, parameters, phases, executionId,
    /// logDirectory, stateDirectory).
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// Phases to run, comma-separated; they run in document order whatever the order here.
    #[arg(short = 'p', long, value_delimiter = ',')]
    phases: Vec<String>,
    /// Parameter values, `name1=value1,name2=value2`; names a document does not declare are
    /// ignored.
    #[arg(long)]
    parameters: Option<String>,
    /// Execution id (default: a new UUID).
    #[arg(short = 'i', long)]
    execution_id: Option<String>,
    /// Where the TOE_<time>_<id> log folder is made (default: the current directory).
    #[arg(short = 'l', long)]
    log_directory: Option<PathBuf>,
    /// Where the run's state is saved across a reboot; a run finding state here resumes it.
    #[arg(short = 's', long)]
    state_directory: Option<PathBuf>,
    /// What a reboot (action Reboot, exit code 194) does: `continue` re-runs the step at once
    /// without rebooting this machine; `exit` saves state and exits with 194.
    #[arg(long, value_enum, default_value = "continue")]
    reboot: RebootMode,
    /// Run inside this directory as a root filesystem (commands under chroot) instead of on
    /// this machine.
    #[arg(long)]
    root: Option<PathBuf>,
    /// S3-compatible endpoint for S3Download/S3Upload, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "KILN_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    #[arg(long, env = "KILN_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "kiln")]
    s3_access_key_id: String,
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        default_value = "kiln",
        hide_env_values = true
    )]
    s3_secret_access_key: String,
    /// A value for `{{ aws:ssm:resolve(NAME) }}`, `NAME=VALUE`; repeatable.
    #[arg(long = "ssm-parameter")]
    ssm_parameters: Vec<String>,
    /// Upload the log folder to this bucket of the --s3-endpoint when the run ends.
    #[arg(short = 'b', long)]
    log_s3_bucket_name: Option<String>,
    /// Key prefix for the uploaded log folder.
    #[arg(short = 'k', long, default_value = "")]
    log_s3_key_prefix: String,
    /// Expected owner of the log bucket (sent as x-amz-expected-bucket-owner).
    #[arg(long)]
    log_s3_bucket_owner: Option<String>,
    /// CloudWatch Logs is not available to kiln toe: these are refused unless
    /// --cw-ignore-failures is given, as awstoe does when it cannot reach CloudWatch.
    #[arg(long)]
    cw_log_group: Option<String>,
    #[arg(long)]
    cw_log_stream: Option<String>,
    #[arg(long)]
    cw_log_region: Option<String>,
    #[arg(long)]
    cw_ignore_failures: bool,
    /// Accepted for awstoe compatibility (documents are local files here).
    #[arg(long)]
    document_s3_bucket_owner: Option<String>,
    /// Don't print the steps' output, only progress lines and the summary.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Accepted for awstoe compatibility.
    #[arg(short = 't', long)]
    trace: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RebootMode {
    Continue,
    Exit,
}

/// Runs a `kiln toe` command and answers the process exit code.
pub fn main(command: ToeCommand) -> i32 {
    let result = match command {
        ToeCommand::Validate(args) => validate(args),
        ToeCommand::Run(args) => run(*args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln toe: {e:#}");
            2
        }
    }
}

fn validate(args: ValidateArgs) -> Result<i32> {
    let _ = args.trace;
    let mut invalid = 0;
    for path in &args.documents {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        match document::parse(&text, Platform::Linux) {
            Ok(_) => println!("{}: valid", path.display()),
            Err(e) => {
                invalid += 1;
                for problem in &e.problems {
                    println!("{}: {problem}", path.display());
                }
            }
        }
    }
    Ok(if invalid == 0 { 0 } else { 1 })
}

/// awstoe's `--config` file.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RunConfig {
    #[serde(default)]
    documents: Vec<ConfigDocument>,
    #[serde(default)]
    parameters: Vec<NameValue>,
    #[serde(default)]
    phases: Option<String>,
    execution_id: Option<String>,
    log_directory: Option<PathBuf>,
    state_directory: Option<PathBuf>,
    #[serde(default)]
    trace: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigDocument {
    path: PathBuf,
    #[serde(default)]
    parameters: Vec<NameValue>,
}

#[derive(serde::Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

fn read_document(
    config: &EngineConfig,
    path: &Path,
    parameters: Vec<(String, String)>,
) -> Result<SourceDocument> {
    let shown = path.display().to_string();
    if shown.starts_with("arn:") {
        bail!("{shown}: component ARNs are loaded by Kiln's build engine; give a file or an s3:// URI");
    }
    let text = if shown.starts_with("s3://") {
        kiln_toe::actions::net::fetch_s3_text(&config.actions, &shown)
            .map_err(|e| anyhow::anyhow!("cannot read {shown}: {e}"))?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?
    };
    Ok(SourceDocument {
        name: shown,
        text,
        parameters,
    })
}

fn build_request(args: &RunArgs, engine: &EngineConfig) -> Result<RunRequest> {
    let config: RunConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid run configuration", path.display()))?
        }
        None => RunConfig::default(),
    };
    let _ = (args.trace, config.trace);
    let documents = match (args.documents.is_empty(), config.documents.is_empty()) {
        (false, true) => args
            .documents
            .iter()
            .map(|p| read_document(engine, p, Vec::new()))
            .collect::<Result<Vec<_>>>()?,
        (true, false) => config
            .documents
            .iter()
            .map(|d| {
                let params = d
                    .parameters
                    .iter()
                    .map(|nv| (nv.name.clone(), nv.value.clone()))
                    .collect();
                read_document(engine, &d.path, params)
            })
            .collect::<Result<Vec<_>>>()?,
        (false, false) => bail!("give documents either with --documents or in --config, not both"),
        (true, true) => bail!("give the documents to run with --documents (or --config)"),
    };
    let parameters = match (&args.parameters, config.parameters.is_empty()) {
        (Some(_), false) => {
            bail!("give parameters either with --parameters or in --config, not both")
        }
        (Some(p), true) => parse_parameter_overrides(p).map_err(anyhow::Error::msg)?,
        (None, _) => config
            .parameters
            .iter()
            .map(|nv| (nv.name.clone(), nv.value.clone()))
            .collect(),
    };
    let phases = if !args.phases.is_empty() {
        Some(args.phases.clone())
    } else {
        config
            .phases
            .map(|p| p.split(',').map(|s| s.trim().to_string()).collect())
    };
    let log_directory = match args.log_directory.clone().or(config.log_directory) {
        Some(d) => d,
        None => std::env::current_dir().context("the current directory")?,
    };
    Ok(RunRequest {
        documents,
        phases,
        parameters,
        execution_id: args.execution_id.clone().or(config.execution_id),
        log_directory,
        state_directory: args.state_directory.clone().or(config.state_directory),
    })
}

fn engine_config(args: &RunArgs) -> Result<EngineConfig> {
    let mut ssm = HashMap::new();
    for pair in &args.ssm_parameters {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--ssm-parameter {pair}: expected NAME=VALUE");
        };
        ssm.insert(name.to_string(), value.to_string());
    }
    let mut config = EngineConfig {
        ssm_parameters: ssm,
        ..EngineConfig::default()
    };
    config.actions.s3 = args.s3_endpoint.as_ref().map(|endpoint| S3Config {
        endpoint: endpoint.trim_end_matches('/').to_string(),
        region: args.s3_region.clone(),
        access_key_id: args.s3_access_key_id.clone(),
        secret_access_key: args.s3_secret_access_key.clone(),
        session_token: None,
    });
    Ok(config)
}

fn run(args: RunArgs) -> Result<i32> {
    let config = engine_config(&args)?;
    let _ = &args.document_s3_bucket_owner;
    let cloudwatch = [&args.cw_log_group, &args.cw_log_stream, &args.cw_log_region]
        .iter()
        .any(|f| f.is_some());
    if cloudwatch {
        if !args.cw_ignore_failures {
            bail!("kiln toe cannot send logs to CloudWatch Logs; drop the --cw-* flags, or add --cw-ignore-failures to run without them");
        }
        eprintln!("kiln toe: CloudWatch Logs is not available; logs stay in the log folder (--cw-ignore-failures)");
    }
    if args.log_s3_bucket_name.is_some() && config.actions.s3.is_none() {
        bail!("--log-s3-bucket-name needs an S3 endpoint (--s3-endpoint or KILN_S3_ENDPOINT)");
    }
    let reboot = match args.reboot {
        RebootMode::Continue => Reboot::Resumed,
        RebootMode::Exit => Reboot::Exit,
    };
    if reboot == Reboot::Exit && args.state_directory.is_none() {
        bail!("--reboot exit needs --state-directory, where the run is saved to resume");
    }
    let target = match &args.root {
        Some(root) => {
            if !root.is_dir() {
                bail!("--root {}: not a directory", root.display());
            }
            LocalTarget::chroot(root)
        }
        None => LocalTarget::host(),
    }
    .with_reboot(reboot);
    let progress = Progress {
        quiet: args.quiet,
        started: Instant::now(),
    };
    let engine = Engine::new(&target, &config, &progress);
    let resumed = match &args.state_directory {
        Some(dir) => engine.resume(dir),
        None => Ok(None),
    };
    let outcome = match resumed {
        Ok(Some(outcome)) => outcome,
        Ok(None) => {
            let request = build_request(&args, &config)?;
            match engine.run(request) {
                Ok(o) => o,
                Err(e) => return Ok(report_engine_error(&e)),
            }
        }
        Err(e) => return Ok(report_engine_error(&e)),
    };
    let uploaded = match &args.log_s3_bucket_name {
        Some(bucket) => upload_logs(&config, &args, bucket, outcome.report()),
        None => Ok(()),
    };
    if let Err(e) = &uploaded {
        eprintln!("kiln toe: uploading the logs failed: {e}");
    }
    let code = match outcome {
        Outcome::Finished(report) => {
            print_summary(&report, progress.started.elapsed());
            if report.status.is_success() {
                0
            } else {
                1
            }
        }
        Outcome::RebootPending(report) => {
            println!(
                "Execution {} is waiting for a reboot; state saved. Reboot, then run `kiln toe run --state-directory {}` to resume.",
                report.execution_id,
                args.state_directory
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            EXIT_REBOOT
        }
    };
    Ok(if code == 0 && uploaded.is_err() {
        1
    } else {
        code
    })
}

/// Uploads the run's log folder with the S3Upload module, to
/// `s3://BUCKET/PREFIX/TOE_.../`.
fn upload_logs(
    config: &EngineConfig,
    args: &RunArgs,
    bucket: &str,
    report: &ExecutionReport,
) -> std::result::Result<(), String> {
    use kiln_toe::actions::{self, ActionKind};
    let folder = Path::new(&report.log_url);
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let prefix = args.log_s3_key_prefix.trim_matches('/');
    let key = if prefix.is_empty() {
        format!("{name}/")
    } else {
        format!("{prefix}/{name}/")
    };
    let mut entry = kiln_toe::yaml::Mapping::new();
    entry.insert("source".into(), report.log_url.clone().into());
    entry.insert("destination".into(), format!("s3://{bucket}/{key}").into());
    entry.insert("recurse".into(), true.into());
    if let Some(owner) = &args.log_s3_bucket_owner {
        entry.insert("expectedBucketOwner".into(), owner.clone().into());
    }
    let inputs = kiln_toe::yaml::Value::Sequence(vec![kiln_toe::yaml::Value::Mapping(entry)]);
    actions::run_on_host(
        ActionKind::S3Upload,
        &config.actions,
        &inputs,
        &std::env::temp_dir(),
    )
    .map(|_| println!("Logs uploaded to s3://{bucket}/{key}"))
}

fn report_engine_error(e: &EngineError) -> i32 {
    match e {
        EngineError::Document { document, error } => {
            for problem in &error.problems {
                eprintln!("{document}: {problem}");
            }
        }
        other => eprintln!("kiln toe: {other}"),
    }
    2
}

/// Prints one line per step as it ends, and the steps' output as it comes.
struct Progress {
    quiet: bool,
    started: Instant,
}

impl Observer for Progress {
    fn step_started(&self, at: &StepAt) {
        if !self.quiet {
            println!(
                "{}▶ {}/{} ({})",
                indent(at.depth),
                at.phase,
                at.step,
                at.action.name()
            );
        }
    }

    fn output(&self, at: &StepAt, _stream: Stream, line: &str) {
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}  │ {line}", indent(at.depth));
        }
    }

    fn step_finished(&self, at: &StepAt, report: &StepReport, elapsed: Duration) {
        let mark = match report.status {
            Status::Success | Status::SuccessWithIgnoredFailure => "✓",
            Status::Skipped => "↷",
            Status::IgnoredFailure => "!",
            _ => "✗",
        };
        let mut line = format!(
            "{}{mark} {}/{} {} {} in {}",
            indent(at.depth),
            at.phase,
            at.step,
            at.action.name(),
            report.status.name(),
            human(elapsed)
        );
        if let Some(m) = &report.failure_message {
            line.push_str(&format!(": {m}"));
        }
        if report.attempts > 1 {
            line.push_str(&format!(
                " (attempt {} of {})",
                report.attempts, report.max_attempts
            ));
        }
        println!("{line}");
    }
}

fn indent(depth: usize) -> String {
    "    ".repeat(depth)
}

fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn print_summary(report: &ExecutionReport, elapsed: Duration) {
    let c = report.counts();
    println!(
        "Execution {}: {} in {}: {} succeeded, {} failed, {} ignored, {} skipped{}",
        report.execution_id,
        report.status.name(),
        human(elapsed),
        c.succeeded,
        c.failed,
        c.ignored,
        c.skipped,
        if c.not_run > 0 {
            format!(", {} not run", c.not_run)
        } else {
            String::new()
        }
    );
    if let Some(m) = &report.failure_message {
        println!("Failure: {m}");
    }
    println!("Logs: {}", report.log_url);
}
