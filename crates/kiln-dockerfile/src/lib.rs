//! Dockerfiles, as container recipes use them. No IO: the build engine (`kiln-build`) executes
//! what this crate parses, and the API (`kiln-api`) validates templates with it at
//! CreateContainerRecipe.
//!
//! - [`template`]: Image Builder's template variables (`{{{ imagebuilder:parentImage }}}`,
//!   `{{{ imagebuilder:environments }}}`, `{{{ imagebuilder:components }}}`).
//! - [`parse`](mod@parse): the Dockerfile syntax (parser directives, line continuations, comments,
//!   here-documents, JSON and shell forms, flags) into [`Dockerfile`]: stages of [`Instruction`]s,
//!   words kept as written.
//! - [`expand`]: the builder's variable substitution and quote removal (`$VAR`, `${VAR}`,
//!   `${VAR:-word}`, `${VAR:+word}`, ...), applied at build time with the stage's ENV and ARG.
//! - [`bases`]: what each stage starts from (the parent image, an earlier stage, `scratch`).
//! - [`validate`]: what a container recipe cannot do (a build context), and references that do
//!   not resolve, refused before anything runs.

pub mod bases;
pub mod expand;
pub mod parse;
pub mod template;
pub mod validate;

pub use parse::parse;

/// A parsed Dockerfile: the `ARG`s before the first `FROM`, then its stages in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless a `# escape=` directive says otherwise).
    pub escape: char,
    pub global_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// 1-based line of the `FROM`.
    pub line: usize,
    /// The image as written (variables not yet expanded: global ARGs apply).
    pub from: String,
    /// `AS name`, lower-cased as Docker compares it.
    pub name: Option<String>,
    /// `--platform=...`, as written.
    pub platform: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// One instruction, with where it came from (for error messages and the build log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The instruction as written (continuations joined, here-document bodies left out), for
    /// messages such as "RUN apt-get install -y nginx (line 4) failed".
    pub source: String,
    pub kind: Kind,
}

/// An `ARG name` or `ARG name=default` (the default as written, expanded at build time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// The shell form (`RUN echo $HOME`: run with the stage's `SHELL`) or the exec form
/// (`RUN ["echo", "hi"]`: the argument vector as given, no shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// A here-document attached to an instruction (`RUN <<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, without quotes or `-`.
    pub name: String,
    /// The body, every line ending in `\n`; leading tabs removed for `<<-`.
    pub content: String,
    /// `<<EOF` (variables expanded by the shell that runs it) vs `<<'EOF'` / `<<"EOF"`.
    pub expand: bool,
}

/// `HEALTHCHECK [OPTIONS] CMD ...`; durations in nanoseconds as Docker stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["CMD", ...]` for the exec form, `["CMD-SHELL", "..."]` for the shell form.
    pub test: Vec<String>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub start_period: Option<u64>,
    pub start_interval: Option<u64>,
    pub retries: Option<u64>,
}

/// What an instruction does. Words are as written (quotes and variables still in them) where
/// the builder expands them at build time ([`expand`]); commands are never expanded by the
/// builder (their shell does that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Run {
        /// The command as written after the flags. With here-documents it still holds the
        /// `<<EOF` words: `RUN <<EOF` alone is `Shell("<<EOF")`, meaning the body is the
        /// script (see [`parse`](mod@parse)).
        command: Command,
        /// The bodies of the `<<EOF` words, in order.
        heredocs: Vec<Heredoc>,
        /// `--mount=...`, `--network=...`, `--security=...`, `--device=...`, as written
        /// (name, value; quotes removed as BuildKit does).
        flags: Vec<(String, String)>,
    },
    /// `ENV a=b c=d` or the legacy `ENV a b`: (name, value as written).
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Workdir(String),
    User(String),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    StopSignal(String),
    /// `None` for `HEALTHCHECK NONE`.
    Healthcheck(Option<Healthcheck>),
    /// The trigger instruction as written.
    Onbuild(String),
    Maintainer(String),
    Copy(CopySpec),
    Add(CopySpec),
    /// `{{{ imagebuilder:environments }}}` (from [`template`] only).
    Environments,
    /// `{{{ imagebuilder:components }}}` (from [`template`] only): the recipe's components run
    /// here.
    Components,
}

/// `COPY`/`ADD` sources and destination (as written) and their flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// `--from=stage-or-image`.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `ADD --checksum=...`.
    pub checksum: Option<String>,
    /// Other flags (`COPY --parents`, `--exclude`; `ADD --keep-git-dir`, `--unpack`,
    /// `--exclude`), refused by [`validate`]; booleans as `true`/`false`.
    pub other_flags: Vec<(String, String)>,
    /// The sources as written, here-document words (`<<EOF`) excluded: those are in
    /// [`CopySpec::heredocs`].
    pub sources: Vec<String>,
    pub destination: String,
    /// `COPY <<EOF /dest` here-documents (files created from the Dockerfile itself).
    pub heredocs: Vec<Heredoc>,
}

/// A Dockerfile that cannot be read or cannot be built, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct Error {
    pub line: usize,
    pub message: String,
}

impl Error {
    pub fn new(line: usize, message: impl Into<String>) -> Error {
        Error {
            line,
            message: message.into(),
        }
    }
}
