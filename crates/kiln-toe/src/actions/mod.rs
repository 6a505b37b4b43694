//! Action modules: the `action:` of a step.
//!
//! Every module has two entry points. `validate` checks a step's `inputs` when the document is
//! validated, before any variable is substituted, so it checks shape (which keys, lists or maps)
//! and leaves values that may still hold `{{ ... }}` alone. `run` gets the substituted inputs and an
//! [`ActionContext`], and answers the step's outputs or an [`ActionFailure`].
//!
//! Scalars in inputs are read through [`inputs::Text`], which accepts any YAML scalar as text
//! (`permissions: 0755`, `overwrite: true` and `overwrite: 'true'` all work) and converts it at run
//! time with a message naming the field when the conversion fails.
//!
//! The engine handles `Assert` and `ExecuteDocument` itself (they evaluate conditions and nest
//! documents); every other module lives in a submodule here.

pub mod exec;
pub mod files;
pub mod inputs;
pub mod net;
pub mod system;

use crate::target::Target;
use crate::yaml::Value;
use std::path::Path;
use std::time::Instant;

/// Outputs of a step: `stdout`, `content`, `files`, `destination`, ...
pub type Outputs = serde_json::Map<String, serde_json::Value>;

/// Why a step's attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFailure {
    /// The attempt failed; the message says why (exit code, missing file, ...).
    Failed(String),
    /// The attempt ran past its `timeoutSeconds`.
    TimedOut,
    /// The module asked for a reboot (action Reboot, or exit code 194): the engine reboots the
    /// target and runs the same step again.
    Reboot,
}

impl ActionFailure {
    pub fn failed(message: impl Into<String>) -> Self {
        ActionFailure::Failed(message.into())
    }
}

/// Which output stream a line of console output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives a step's console output as it happens (streamed to `console.log` and to whoever
/// follows the run).
pub trait Console: Send + Sync {
    fn line(&self, stream: Stream, text: &str);
}

/// A console that drops every line.
pub struct NullConsole;

impl Console for NullConsole {
    fn line(&self, _stream: Stream, _text: &str) {}
}

/// A console that keeps every line, for tests and for callers that read a step's output after
/// it ran.
#[derive(Default)]
pub struct RecordingConsole {
    lines: std::sync::Mutex<Vec<(Stream, String)>>,
}

impl Console for RecordingConsole {
    fn line(&self, stream: Stream, text: &str) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push((stream, text.to_string()));
        }
    }
}

impl RecordingConsole {
    /// Every line so far, with its stream.
    pub fn lines(&self) -> Vec<(Stream, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The text of every line so far.
    pub fn texts(&self) -> Vec<String> {
        self.lines().into_iter().map(|(_, t)| t).collect()
    }

    /// Whether `text` was printed on `stream`.
    pub fn has(&self, stream: Stream, text: &str) -> bool {
        self.lines().iter().any(|(s, t)| *s == stream && t == text)
    }
}

/// S3-compatible storage for S3Download and S3Upload (and the API's documents from S3).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Base URL, e.g. `http://127.0.0.1:9000`. Requests use path-style addressing.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Sent as `x-amz-security-token` when the key is a temporary one.
    pub session_token: Option<String>,
}

// By hand, so that no log line or error can ever print the secret or the token.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Settings that come from the caller, not from the document.
#[derive(Debug, Clone)]
pub struct ActionConfig {
    /// `None`: S3Download/S3Upload fail with a message saying no endpoint is configured.
    pub s3: Option<S3Config>,
    /// First WebDownload retry delay; doubles each attempt (5 attempts in all).
    pub web_retry_base: std::time::Duration,
    /// Where WebDownload and the S3 actions may connect (builds restrict it; `kiln toe run`
    /// does not).
    pub network: net::address::NetworkAccess,
}

impl Default for ActionConfig {
    fn default() -> Self {
        ActionConfig {
            s3: None,
            web_retry_base: std::time::Duration::from_secs(1),
            network: net::address::NetworkAccess::Unrestricted,
        }
    }
}

/// What a module gets to do its work.
pub struct ActionContext<'a> {
    pub target: &'a dyn Target,
    pub config: &'a ActionConfig,
    pub console: &'a dyn Console,
    /// When the attempt's `timeoutSeconds` runs out (`None`: -1, no limit).
    pub deadline: Option<Instant>,
    /// A host directory private to this step attempt, for scripts and temporary files. It is
    /// inside the target's root, so commands in the target see it as
    /// [`ActionContext::scratch_in_target`].
    pub scratch: &'a Path,
    pub scratch_in_target: &'a str,
}

impl ActionContext<'_> {
    /// Time left before the deadline; `None` when there is no limit.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// Every action keyword AWSTOE knows (CDK's ComponentAction enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    AppendFile,
    Assert,
    CopyFile,
    CopyFolder,
    CreateFile,
    CreateFolder,
    CreateSymlink,
    DeleteFile,
    DeleteFolder,
    ExecuteBash,
    ExecuteBinary,
    ExecuteDocument,
    ExecutePowerShell,
    InstallMSI,
    ListFiles,
    MoveFile,
    MoveFolder,
    ReadFile,
    Reboot,
    SetFileEncoding,
    SetFileOwner,
    SetFolderOwner,
    SetFilePermissions,
    SetFolderPermissions,
    SetRegistry,
    S3Download,
    S3Upload,
    UninstallMSI,
    UpdateOS,
    WebDownload,
}

impl ActionKind {
    pub const ALL: [ActionKind; 30] = [
        ActionKind::AppendFile,
        ActionKind::Assert,
        ActionKind::CopyFile,
        ActionKind::CopyFolder,
        ActionKind::CreateFile,
        ActionKind::CreateFolder,
        ActionKind::CreateSymlink,
        ActionKind::DeleteFile,
        ActionKind::DeleteFolder,
        ActionKind::ExecuteBash,
        ActionKind::ExecuteBinary,
        ActionKind::ExecuteDocument,
        ActionKind::ExecutePowerShell,
        ActionKind::InstallMSI,
        ActionKind::ListFiles,
        ActionKind::MoveFile,
        ActionKind::MoveFolder,
        ActionKind::ReadFile,
        ActionKind::Reboot,
        ActionKind::SetFileEncoding,
        ActionKind::SetFileOwner,
        ActionKind::SetFolderOwner,
        ActionKind::SetFilePermissions,
        ActionKind::SetFolderPermissions,
        ActionKind::SetRegistry,
        ActionKind::S3Download,
        ActionKind::S3Upload,
        ActionKind::UninstallMSI,
        ActionKind::UpdateOS,
        ActionKind::WebDownload,
    ];

    pub fn name(self) -> &'static str {
        use ActionKind::*;
        match self {
            AppendFile => "AppendFile",
            Assert => "Assert",
            CopyFile => "CopyFile",
            CopyFolder => "CopyFolder",
            CreateFile => "CreateFile",
            CreateFolder => "CreateFolder",
            CreateSymlink => "CreateSymlink",
            DeleteFile => "DeleteFile",
            DeleteFolder => "DeleteFolder",
            ExecuteBash => "ExecuteBash",
            ExecuteBinary => "ExecuteBinary",
            ExecuteDocument => "ExecuteDocument",
            ExecutePowerShell => "ExecutePowerShell",
            InstallMSI => "InstallMSI",
            ListFiles => "ListFiles",
            MoveFile => "MoveFile",
            MoveFolder => "MoveFolder",
            ReadFile => "ReadFile",
            Reboot => "Reboot",
            SetFileEncoding => "SetFileEncoding",
            SetFileOwner => "SetFileOwner",
            SetFolderOwner => "SetFolderOwner",
            SetFilePermissions => "SetFilePermissions",
            SetFolderPermissions => "SetFolderPermissions",
            SetRegistry => "SetRegistry",
            S3Download => "S3Download",
            S3Upload => "S3Upload",
            UninstallMSI => "UninstallMSI",
            UpdateOS => "UpdateOS",
            WebDownload => "WebDownload",
        }
    }

    /// The keyword as written in a document (exact, case-sensitive, as AWSTOE).
    pub fn parse(name: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Modules that exist only on Windows; a Linux document using one is invalid.
    pub fn windows_only(self) -> bool {
        matches!(
            self,
            ActionKind::ExecutePowerShell
                | ActionKind::InstallMSI
                | ActionKind::UninstallMSI
                | ActionKind::SetRegistry
        )
    }
}

/// Checks a step's inputs for `kind` at validation time. The message is about the inputs
/// (the caller adds phase, step and line).
pub fn validate(kind: ActionKind, inputs: &Value) -> Result<(), String> {
    use ActionKind::*;
    match kind {
        ExecuteBash | ExecuteBinary => exec::validate(kind, inputs),
        WebDownload | S3Download | S3Upload => net::validate(kind, inputs),
        UpdateOS | Reboot => system::validate(kind, inputs),
        // The engine validates these two: they need the condition parser and the document
        // loader.
        Assert | ExecuteDocument => Ok(()),
        ExecutePowerShell | InstallMSI | UninstallMSI | SetRegistry => {
            Err(format!("action {} is not supported on Linux", kind.name()))
        }
        _ => files::validate(kind, inputs),
    }
}

/// Runs a module on this machine outside any document (`kiln toe`'s log upload, documents
/// fetched from S3): the local host as target, no console, no deadline, `scratch` as the
/// scratch directory; a failure comes back as its message.
pub fn run_on_host(
    kind: ActionKind,
    config: &ActionConfig,
    inputs: &Value,
    scratch: &Path,
) -> Result<Outputs, String> {
    let target = crate::target::LocalTarget::host();
    let ctx = ActionContext {
        target: &target,
        config,
        console: &NullConsole,
        deadline: None,
        scratch,
        scratch_in_target: &scratch.display().to_string(),
    };
    run(kind, &ctx, inputs).map_err(|f| match f {
        ActionFailure::Failed(m) => m,
        ActionFailure::TimedOut => format!("{} timed out", kind.name()),
        ActionFailure::Reboot => format!("{} asked for a reboot", kind.name()),
    })
}

/// Runs one attempt of a module (not Assert or ExecuteDocument, which the engine runs).
pub fn run(
    kind: ActionKind,
    ctx: &ActionContext,
    inputs: &Value,
) -> Result<Outputs, ActionFailure> {
    use ActionKind::*;
    match kind {
        ExecuteBash | ExecuteBinary => exec::run(kind, ctx, inputs),
        WebDownload | S3Download | S3Upload => net::run(kind, ctx, inputs),
        UpdateOS | Reboot => system::run(kind, ctx, inputs),
        Assert | ExecuteDocument => Err(ActionFailure::failed(format!(
            "{} is run by the engine",
            kind.name()
        ))),
        ExecutePowerShell | InstallMSI | UninstallMSI | SetRegistry => Err(ActionFailure::failed(
            format!("action {} is not supported on Linux", kind.name()),
        )),
        _ => files::run(kind, ctx, inputs),
    }
}
