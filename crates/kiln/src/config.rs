//! `--config FILE` for `kiln serve` and `kiln worker`: a TOML file whose keys are the long flag
//! names (`data-dir = "/var/lib/kiln"`, `build-concurrency = 2`, lists as arrays, switches as
//! booleans).
//!
//! The file's values become the default values of the matching arguments of the clap command,
//! which is then parsed as usual: clap already lets the environment beat a default and the
//! command line beat the environment, so the precedence is config < environment < command line,
//! and every value goes through the same parser as on the command line. Each value is also
//! checked on its own first, so that a bad one is reported with its key and file. An unknown
//! key, a value of the wrong shape, or a key of a flag the subcommand lacks is an error: nothing
//! in the file is silently ignored. No file is read unless `--config` (or `KILN_CONFIG`) names
//! one.
//!
//! `--log-level` is added here too, next to `--config`, because both are about how the process
//! runs rather than what it serves.

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The argument id (and long name) of the config file's path.
pub const CONFIG: &str = "config";
/// The argument id (and long name) of the log filter.
pub const LOG_LEVEL: &str = "log-level";
/// The subcommands that take `--config` and `--log-level`.
pub const CONFIGURED: [&str; 2] = ["serve", "worker"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: unknown key '{key}': `kiln {command}` has no --{key} flag")]
    UnknownKey {
        path: PathBuf,
        key: String,
        command: String,
    },
    #[error("{path}: key '{key}': {message}")]
    Value {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// What the command line asks for, with the config file applied.
pub struct Invocation {
    pub cli: crate::Cli,
    /// The log filter of `kiln serve`/`kiln worker` (see `log_level`); `None` for the others.
    pub log_level: Option<String>,
}

/// The whole command line interface: the derived one, with `--config` and `--log-level` on the
/// subcommands that run as services. The man pages and completions are made from this too.
pub fn command() -> Command {
    let mut cmd = <crate::Cli as clap::CommandFactory>::command();
    for name in CONFIGURED {
        cmd = cmd.mut_subcommand(name, |sub| sub.arg(config_arg()).arg(log_level_arg()));
    }
    cmd
}

fn config_arg() -> Arg {
    Arg::new(CONFIG)
        .long(CONFIG)
        .env("KILN_CONFIG")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help(
            "A TOML file of settings: each key a long flag name (data-dir = \"/var/lib/kiln\"), \
             lists as arrays, switches as booleans. The environment overrides it, and the \
             command line overrides both. Nothing is read without it.",
        )
}

fn log_level_arg() -> Arg {
    Arg::new(LOG_LEVEL)
        .long(LOG_LEVEL)
        .env("KILN_LOG")
        .value_name("FILTER")
        .default_value("info")
        .value_parser(crate::logging::parse_filter)
        .help(
            "What is logged (to stderr, the journal under systemd): a tracing EnvFilter \
             directive, `info` or `warn,kiln_worker=debug`. RUST_LOG, when set, stands in for \
             KILN_LOG.",
        )
}

/// Parses `args` (the program name first) with the config file applied; clap's own errors,
/// `--help` and `--version` print and exit as usual.
pub fn parse(args: Vec<OsString>) -> Result<Invocation, ConfigError> {
    match try_parse(args) {
        Ok(invocation) => Ok(invocation),
        Err(Failure::Config(e)) => Err(e),
        Err(Failure::Cli(e)) => e.exit(),
    }
}

/// Why a command line with its config file does not parse.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}", .0.to_string().trim_end())]
    Cli(#[from] clap::Error),
}

/// [`parse`] without exiting: what a running server uses to read its configuration again (on
/// SIGHUP), where a file that no longer parses must not end the process.
pub fn try_parse(args: Vec<OsString>) -> Result<Invocation, Failure> {
    let mut cmd = command();
    // The subcommand and the keys its file set.
    let mut configured = None;
    if let Some((name, path)) = config_path(&cmd, &args) {
        let table = load(&path)?;
        let sub = cmd
            .find_subcommand(&name)
            .cloned()
            .unwrap_or_else(|| Command::new(name.clone()));
        let sub = apply(sub, &table, &path)?;
        cmd = cmd.mut_subcommand(&name, |_| sub);
        configured = Some((name, table.keys().cloned().collect::<Vec<_>>()));
    }
    let matches = match cmd.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(e) => match relax_requires(&cmd, &e, configured.as_ref()) {
            Some(relaxed) => relaxed.try_get_matches_from(&args)?,
            None => return Err(e.into()),
        },
    };
    let log_level = matches.subcommand().and_then(|(_, sub)| log_level(sub));
    let cli = crate::Cli::from_arg_matches(&matches)?;
    Ok(Invocation { cli, log_level })
}

/// The subcommand and the config file it names, from a first, lenient parse (a value that only
/// the file supplies may be missing yet). `None` when no file is given, or when the command
/// line does not parse even leniently: the real parse then reports why.
fn config_path(cmd: &Command, args: &[OsString]) -> Option<(String, PathBuf)> {
    let matches = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()?;
    let (name, sub) = matches.subcommand()?;
    let path = sub.try_get_one::<PathBuf>(CONFIG).ok().flatten()?;
    Some((name.to_string(), path.clone()))
}

/// clap counts a default value as absent for `requires`: `--tls-cert` on the command line with
/// `tls-key` in the file would be refused. When every argument clap finds missing has a value
/// from the file, the requirements are met, and the subcommand is parsed again without
/// `requires`. (clap reports every missing argument in one error, so none is overlooked.)
fn relax_requires(
    cmd: &Command,
    error: &clap::Error,
    configured: Option<&(String, Vec<String>)>,
) -> Option<Command> {
    let (name, keys) = configured?;
    if error.kind() != clap::error::ErrorKind::MissingRequiredArgument {
        return None;
    }
    let Some(clap::error::ContextValue::Strings(missing)) =
        error.get(clap::error::ContextKind::InvalidArg)
    else {
        return None;
    };
    let all_in_file = missing.iter().all(|shown| {
        let flag = shown.split_whitespace().next().unwrap_or_default();
        keys.iter()
            .any(|key| flag.strip_prefix("--") == Some(key.as_str()))
    });
    if !all_in_file {
        return None;
    }
    let relaxed = cmd
        .find_subcommand(name)?
        .clone()
        .mut_args(|a| a.requires(clap::builder::Resettable::Reset));
    Some(cmd.clone().mut_subcommand(name, |_| relaxed))
}

/// `--log-level`, unless RUST_LOG is set and the level came from neither the command line nor
/// KILN_LOG: then RUST_LOG, as before there was a flag.
fn log_level(sub: &ArgMatches) -> Option<String> {
    let level = sub.try_get_one::<String>(LOG_LEVEL).ok().flatten()?;
    let explicit = matches!(
        sub.value_source(LOG_LEVEL),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    match std::env::var("RUST_LOG") {
        Ok(rust_log) if !explicit && !rust_log.trim().is_empty() => Some(rust_log),
        _ => Some(level.clone()),
    }
}

fn load(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// `sub` with the file's values as its arguments' defaults.
fn apply(mut sub: Command, table: &toml::Table, path: &Path) -> Result<Command, ConfigError> {
    for (key, value) in table {
        let value_error = |message: String| ConfigError::Value {
            path: path.to_path_buf(),
            key: key.clone(),
            message,
        };
        let arg = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && !a.is_hide_set())
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
                command: sub.get_name().to_string(),
            })?;
        if key == CONFIG {
            return Err(value_error(
                "a config file cannot name another one".to_string(),
            ));
        }
        let values = values_of(arg, value).map_err(value_error)?;
        check(arg, &values).map_err(value_error)?;
        let id = arg.get_id().clone();
        sub = sub.mut_arg(id, |a| a.default_values(values));
    }
    Ok(sub)
}

/// The TOML value as the argument's values: a boolean for a switch, an array for a list, a
/// string or number otherwise.
fn values_of(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    match (arg.get_action(), value) {
        (ArgAction::SetTrue | ArgAction::SetFalse, toml::Value::Boolean(b)) => {
            Ok(vec![b.to_string()])
        }
        (ArgAction::SetTrue | ArgAction::SetFalse, other) => Err(format!(
            "a switch takes true or false, not {}",
            other.type_str()
        )),
        (ArgAction::Append, toml::Value::Array(items)) => items.iter().map(scalar).collect(),
        (ArgAction::Append, other) => Err(format!(
            "a list (repeatable flag) takes an array, like [\"a\", \"b\"], not {}",
            other.type_str()
        )),
        (ArgAction::Set, value) => Ok(vec![scalar(value)?]),
        (action, _) => Err(format!("flags of kind {action:?} cannot be set in a file")),
    }
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => Err(format!(
            "expected a string or a number, not {}",
            other.type_str()
        )),
    }
}

/// Each value through the argument's own parser, alone, so that a bad one is reported with its
/// key and file (clap's message would only name the flag).
fn check(arg: &Arg, values: &[String]) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Ok(());
    }
    let probe = Command::new("kiln")
        .no_binary_name(true)
        .color(clap::ColorChoice::Never)
        .arg(
            arg.clone()
                .env(None)
                .requires(clap::builder::Resettable::Reset)
                .default_values(Vec::<String>::new()),
        );
    let long = arg.get_long().unwrap_or_default();
    let args: Vec<String> = values.iter().map(|v| format!("--{long}={v}")).collect();
    probe.try_get_matches_from(args).map(|_| ()).map_err(|e| {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        first.trim_start_matches("error: ").to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve() -> Command {
        command()
            .find_subcommand("serve")
            .cloned()
            .expect("kiln serve")
    }

    /// Every flag of `kiln serve` can be set in the environment (the unit and containers set
    /// them there), so each must have an env var.
    #[test]
    fn every_serve_flag_has_an_env_var() {
        let missing: Vec<String> = serve()
            .get_arguments()
            .filter(|a| a.get_long().is_some() && a.get_env().is_none())
            .map(|a| format!("--{}", a.get_long().unwrap_or_default()))
            .collect();
        assert!(
            missing.is_empty(),
            "kiln serve flags without an env var: {missing:?}"
        );
    }

    fn parsed(file: &str, args: &[&str]) -> Result<crate::Cli, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kiln.toml");
        std::fs::write(&path, file).expect("write");
        let mut argv: Vec<OsString> = vec!["kiln".into(), "serve".into()];
        argv.push("--config".into());
        argv.push(path.into());
        argv.extend(args.iter().map(OsString::from));
        parse(argv).map(|i| i.cli)
    }

    fn serve_args(cli: crate::Cli) -> crate::ServeArgs {
        match cli.command {
            crate::Command::Serve(args) => *args,
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn the_file_sets_values_and_the_command_line_overrides_them() {
        let cli = parsed(
            "data-dir = \"/srv/kiln\"\nbuild-concurrency = 3\nrate-limit = 2.5\n\
             quota = [\"components=5\", \"workflows=7\"]\ninstance-host-access = true\n\
             listen = \"127.0.0.1:9999\"\n",
            &["--listen", "127.0.0.1:1234"],
        )
        .map_err(|e| e.to_string())
        .expect("parses");
        let args = serve_args(cli);
        assert_eq!(args.worker.data_dir, PathBuf::from("/srv/kiln"));
        assert_eq!(args.worker.build_concurrency, Some(3));
        assert_eq!(args.rate_limit, 2.5);
        assert_eq!(args.quotas, ["components=5", "workflows=7"]);
        assert!(args.worker.instance_host_access);
        assert_eq!(args.listen.port(), 1234);
    }

    #[test]
    fn a_pair_split_between_the_file_and_the_command_line_is_complete() {
        let cli = parsed("tls-key = \"/k.pem\"\n", &["--tls-cert", "/c.pem"])
            .map_err(|e| e.to_string())
            .expect("parses");
        let args = serve_args(cli);
        assert_eq!(args.tls_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(args.tls_cert, Some(PathBuf::from("/c.pem")));
    }

    fn error(file: &str) -> String {
        match parsed(file, &[]) {
            Ok(_) => panic!("{file:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn mistakes_name_the_key_and_the_file() {
        let unknown = error("data-dri = \"/x\"\n");
        assert!(unknown.contains("unknown key 'data-dri'"), "{unknown}");
        assert!(unknown.contains("kiln.toml"), "{unknown}");
        let number = error("build-concurrency = \"many\"\n");
        assert!(number.contains("key 'build-concurrency'"), "{number}");
        assert!(number.contains("many"), "{number}");
        let switch = error("insecure-no-auth = \"yes\"\n");
        assert!(switch.contains("true or false"), "{switch}");
        let list = error("quota = \"components=5\"\n");
        assert!(list.contains("array"), "{list}");
        let scalar = error("listen = [\"127.0.0.1:1\"]\n");
        assert!(scalar.contains("key 'listen'"), "{scalar}");
        let level = error("log-level = \"info,=bad=\"\n");
        assert!(level.contains("key 'log-level'"), "{level}");
        let syntax = error("data-dir = \n");
        assert!(syntax.contains("not valid TOML"), "{syntax}");
    }

    #[test]
    fn a_worker_file_may_not_name_serve_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("worker.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\n").expect("write");
        let argv: Vec<OsString> = vec![
            "kiln".into(),
            "worker".into(),
            "--config".into(),
            path.into(),
        ];
        let Err(e) = parse(argv) else {
            panic!("accepted")
        };
        assert!(
            e.to_string().contains("`kiln worker` has no --listen"),
            "{e}"
        );
    }
}
