//! ExecuteBash and ExecuteBinary, and [`run_command`], the process runner every module that
//! starts a program in the target uses.
//!
//! # ExecuteBash
//!
//! Inputs: `commands` (required), a list of strings, each of which may hold several lines. The
//! commands are joined with newlines into `script.sh` in the attempt's scratch directory and run
//! as `bash <scratch_in_target>/script.sh` inside the target. The script's exit status is the
//! step's result, as AWSTOE documents it ("the result of running the shell file is the exit code
//! of the step"). No `set -e` is added: AWS does not document one, so a script's status is that
//! of its last command (or of an explicit `exit`), as for any plain bash script. Documents that
//! want to stop at the first failure write `set -e` themselves.
//!
//! # ExecuteBinary
//!
//! Inputs: `path` (required) and `arguments` (optional list of strings). The program runs with
//! the arguments as given, without a shell. A `path` holding a `/` must name an existing file in
//! the target; a bare name is looked up on the target's `PATH`.
//!
//! # Both
//!
//! - Output `stdout`: everything the command wrote to standard output, with the trailing line
//!   breaks removed (so `echo 2.1.1` gives `2.1.1`, which is what `stringEquals` comparisons on
//!   `{{ step.outputs.stdout }}` expect). Inner line breaks are kept.
//! - Exit status 0 succeeds; 194 asks for a reboot ([`ActionFailure::Reboot`]: the engine reboots
//!   and runs the same step again); any other status fails with a message that holds the status
//!   and the last lines of standard error. A command killed by signal N reports status 128 + N.
//! - Every line of stdout and stderr goes to the console as soon as it is written.
//! - See [`run_command`] for timeouts, process groups and the environment.

use super::inputs::{describe, Text};
use super::{ActionContext, ActionFailure, ActionKind, Outputs, Stream};
use crate::yaml::Value;
use serde::Deserialize;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The exit status with which a command asks for a reboot (Linux, as SSM and AWSTOE).
pub const REBOOT_EXIT_CODE: i32 = 194;

/// How long to keep reading after the main process exited, for output that is still in the
/// pipes. A process it left running in the background that keeps stdout or stderr open (a daemon
/// started with `cmd &`) does not hold the step up longer than this; its later output is read
/// and dropped, so it never blocks on a full pipe or dies of SIGPIPE.
pub const EXIT_GRACE: Duration = Duration::from_millis(100);

/// After a timeout killed the process group, how long to wait for the processes to be reaped and
/// the pipes to close before answering anyway (a process that left the group with `setsid` may
/// still hold them).
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// How many lines of standard error a failure message quotes.
const STDERR_TAIL_LINES: usize = 5;
/// Longest stderr line kept in the tail, in characters.
const STDERR_TAIL_WIDTH: usize = 300;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit status; 128 + N when a signal N killed it.
    pub status: i32,
    /// All of standard output, as written (lossy UTF-8), line breaks included.
    pub stdout: String,
    /// The last few lines of standard error, joined with `\n` (empty when there were none).
    pub stderr_tail: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BashInputs {
    commands: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BinaryInputs {
    path: Text,
    #[serde(default)]
    arguments: Option<Value>,
}

pub fn validate(kind: ActionKind, inputs: &Value) -> Result<(), String> {
    match kind {
        ActionKind::ExecuteBash => bash_inputs(inputs).map(|_| ()),
        ActionKind::ExecuteBinary => binary_inputs(inputs).map(|_| ()),
        _ => Err(format!("{} is not an exec action", kind.name())),
    }
}

pub fn run(
    kind: ActionKind,
    ctx: &ActionContext,
    inputs: &Value,
) -> Result<Outputs, ActionFailure> {
    match kind {
        ActionKind::ExecuteBash => run_bash(ctx, inputs),
        ActionKind::ExecuteBinary => run_binary(ctx, inputs),
        _ => Err(ActionFailure::failed(format!(
            "{} is not an exec action",
            kind.name()
        ))),
    }
}

fn bash_inputs(inputs: &Value) -> Result<Vec<String>, String> {
    require_mapping(inputs, "`commands`")?;
    let parsed: BashInputs = super::inputs::parse(inputs)?;
    string_list(&parsed.commands, "commands")
}

fn binary_inputs(inputs: &Value) -> Result<(String, Vec<String>), String> {
    require_mapping(inputs, "`path` and `arguments`")?;
    let parsed: BinaryInputs = super::inputs::parse(inputs)?;
    let arguments = match &parsed.arguments {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => string_list(v, "arguments")?,
    };
    Ok((parsed.path.0, arguments))
}

fn require_mapping(inputs: &Value, keys: &str) -> Result<(), String> {
    if inputs.is_mapping() {
        Ok(())
    } else {
        Err(format!(
            "inputs must be a mapping with {keys}, found {}",
            describe(inputs)
        ))
    }
}

/// Reads a list of scalars as strings; the message names `field` (and the entry).
pub(crate) fn string_list(value: &Value, field: &str) -> Result<Vec<String>, String> {
    let Value::Sequence(items) = value else {
        return Err(format!(
            "{field} must be a list of strings, found {}",
            describe(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Ok(String::new()),
            other => Err(format!(
                "{field} must be a list of strings ({field}[{i}] is {})",
                describe(other)
            )),
        })
        .collect()
}

fn run_bash(ctx: &ActionContext, inputs: &Value) -> Result<Outputs, ActionFailure> {
    let commands =
        bash_inputs(inputs).map_err(|m| ActionFailure::failed(format!("ExecuteBash: {m}")))?;
    let mut script = commands.join("\n");
    script.push('\n');
    let host_path = ctx.scratch.join("script.sh");
    std::fs::write(&host_path, script).map_err(|e| {
        ActionFailure::failed(format!(
            "ExecuteBash: cannot write the script {}: {e}",
            host_path.display()
        ))
    })?;
    let in_target = format!("{}/script.sh", ctx.scratch_in_target.trim_end_matches('/'));
    let cmd = ctx.target.command("bash", &[in_target]);
    let out = run_command(ctx, cmd).map_err(|f| prefix("ExecuteBash", f))?;
    finish("ExecuteBash", out)
}

fn run_binary(ctx: &ActionContext, inputs: &Value) -> Result<Outputs, ActionFailure> {
    let (path, arguments) =
        binary_inputs(inputs).map_err(|m| ActionFailure::failed(format!("ExecuteBinary: {m}")))?;
    if path.trim().is_empty() {
        return Err(ActionFailure::failed("ExecuteBinary: path is empty"));
    }
    if path.contains('/') {
        let exists = ctx.target.resolve(&path).is_ok_and(|p| p.is_file());
        if !exists {
            return Err(ActionFailure::failed(format!(
                "ExecuteBinary: `{path}` does not exist in the target or is not a file"
            )));
        }
    }
    let cmd = ctx.target.command(&path, &arguments);
    let out = run_command(ctx, cmd).map_err(|f| prefix("ExecuteBinary", f))?;
    finish("ExecuteBinary", out)
}

fn prefix(action: &str, failure: ActionFailure) -> ActionFailure {
    match failure {
        ActionFailure::Failed(m) => ActionFailure::Failed(format!("{action}: {m}")),
        other => other,
    }
}

/// Turns a command's status into the step's result: 0 gives `stdout`, 194 a reboot, anything
/// else a failure quoting the end of stderr.
fn finish(action: &str, out: CommandOutput) -> Result<Outputs, ActionFailure> {
    match out.status {
        0 => {
            let mut outputs = Outputs::new();
            outputs.insert("stdout".into(), trim_output(&out.stdout).into());
            Ok(outputs)
        }
        REBOOT_EXIT_CODE => Err(ActionFailure::Reboot),
        _ => Err(ActionFailure::Failed(exit_message(action, &out))),
    }
}

/// `stdout` without its trailing line breaks.
pub fn trim_output(stdout: &str) -> &str {
    stdout.trim_end_matches(['\n', '\r'])
}

/// "`action`: exit status N", followed by the last stderr lines when there are any.
pub fn exit_message(action: &str, out: &CommandOutput) -> String {
    let mut msg = format!("{action}: exit status {}", out.status);
    if !out.stderr_tail.is_empty() {
        msg.push_str("; stderr ends with: ");
        msg.push_str(&out.stderr_tail.replace('\n', " | "));
    }
    msg
}

enum Event {
    Line(Stream, Vec<u8>),
    Eof,
    Exited(std::io::Result<ExitStatus>),
}

/// Runs `cmd` (built by [`crate::target::Target::command`]) to completion.
///
/// - stdin is `/dev/null`; stdout and stderr are piped, and each line is handed to
///   `ctx.console` as soon as it arrives (reader threads feed a channel that this thread drains,
///   so the console is only called from the caller's thread). Standard output is also kept for
///   [`CommandOutput::stdout`].
/// - The environment is inherited; `HOME` is set to `/root` and `PATH` to the usual system
///   directories when they are unset (AWSTOE runs as root).
/// - The command leads a new process group. When `ctx.deadline` passes before it exits, the
///   whole group gets SIGKILL (grandchildren included) and the answer is
///   [`ActionFailure::TimedOut`]. Nothing polls: without a deadline the thread blocks on the
///   channel, with one it waits on the channel until the deadline.
/// - When the main process exits, output still in the pipes is read for at most
///   [`EXIT_GRACE`]; a background process that inherited the pipes is left running.
/// - A program that cannot be started is `Failed("cannot start `program`: ...")`.
pub fn run_command(ctx: &ActionContext, mut cmd: Command) -> Result<CommandOutput, ActionFailure> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    set_default_env(&mut cmd);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|e| ActionFailure::failed(format!("cannot start `{program}`: {e}")))?;
    let pgid = child.id() as libc::pid_t;

    let (tx, rx) = mpsc::channel();
    let mut open_streams = 0;
    if let Some(out) = child.stdout.take() {
        open_streams += usize::from(spawn_reader(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        open_streams += usize::from(spawn_reader(err, Stream::Stderr, tx.clone()));
    }
    let spawned_waiter = std::thread::Builder::new()
        .name("kiln-toe-wait".into())
        .spawn(move || {
            let status = child.wait();
            let _ = tx.send(Event::Exited(status));
        });
    if let Err(e) = spawned_waiter {
        kill_group(pgid);
        return Err(ActionFailure::failed(format!(
            "cannot wait for `{program}`: {e}"
        )));
    }

    let mut stdout = Vec::new();
    let mut stderr_tail: VecDeque<String> = VecDeque::new();
    let mut status: Option<std::io::Result<ExitStatus>> = None;
    let mut timed_out = false;
    let mut limit = ctx.deadline;
    loop {
        if open_streams == 0 && status.is_some() {
            break;
        }
        // Checked before every receive, so a command that floods its pipes cannot outrun its
        // deadline (the channel would never be empty long enough for a receive to time out).
        if limit.is_some_and(|at| Instant::now() >= at) {
            if status.is_none() && !timed_out {
                kill_group(pgid);
                timed_out = true;
                limit = Some(Instant::now() + KILL_GRACE);
                continue;
            }
            break;
        }
        let event = match limit {
            None => rx.recv().ok(),
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(e) => Some(e),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
        };
        // Every sender is gone: both streams ended and the process was reaped.
        let Some(event) = event else { break };
        match event {
            Event::Line(stream, bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let line = text.trim_end_matches(['\n', '\r']);
                ctx.console.line(stream, line);
                match stream {
                    Stream::Stdout => stdout.extend_from_slice(&bytes),
                    Stream::Stderr => {
                        if !line.trim().is_empty() {
                            if stderr_tail.len() == STDERR_TAIL_LINES {
                                stderr_tail.pop_front();
                            }
                            stderr_tail.push_back(line.chars().take(STDERR_TAIL_WIDTH).collect());
                        }
                    }
                }
            }
            Event::Eof => open_streams -= 1,
            Event::Exited(s) => {
                status = Some(s);
                if !timed_out {
                    limit = Some(Instant::now() + EXIT_GRACE);
                }
            }
        }
    }

    if timed_out {
        return Err(ActionFailure::TimedOut);
    }
    let status = match status {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            return Err(ActionFailure::failed(format!(
                "waiting for `{program}`: {e}"
            )))
        }
        None => return Err(ActionFailure::failed(format!("lost track of `{program}`"))),
    };
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(CommandOutput {
        status: code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr_tail: Vec::from(stderr_tail).join("\n"),
    })
}

fn set_default_env(cmd: &mut Command) {
    let set_by_cmd = |name: &str| cmd.get_envs().any(|(k, v)| k == name && v.is_some());
    let home = std::env::var_os("HOME").is_none_or(|h| h.is_empty()) && !set_by_cmd("HOME");
    let path = std::env::var_os("PATH").is_none_or(|p| p.is_empty()) && !set_by_cmd("PATH");
    if home {
        cmd.env("HOME", "/root");
    }
    if path {
        cmd.env("PATH", DEFAULT_PATH);
    }
}

fn kill_group(pgid: libc::pid_t) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Reads `pipe` line by line into `tx`. Once the receiver is gone (the step answered), it keeps
/// reading and dropping, so a background process writing to the pipe neither blocks nor gets
/// SIGPIPE.
fn spawn_reader(pipe: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<Event>) -> bool {
    let body = move || {
        let mut reader = BufReader::with_capacity(64 * 1024, pipe);
        let mut receiver_alive = true;
        loop {
            let mut buf = Vec::new();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if receiver_alive && tx.send(Event::Line(stream, buf)).is_err() {
                        receiver_alive = false;
                    }
                }
            }
        }
        let _ = tx.send(Event::Eof);
    };
    // When no thread can be started, the closure and the pipe are dropped (the writer gets
    // EPIPE) and the stream counts as ended.
    std::thread::Builder::new()
        .name("kiln-toe-read".into())
        .spawn(body)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::ActionConfig;
    use crate::target::LocalTarget;
    use std::sync::atomic::{AtomicBool, Ordering};

    type Collect = crate::actions::RecordingConsole;

    struct Fixture {
        target: LocalTarget,
        config: ActionConfig,
        console: Collect,
        dir: tempfile::TempDir,
        in_target: String,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let in_target = dir.path().display().to_string();
            Fixture {
                target: LocalTarget::host(),
                config: ActionConfig::default(),
                console: Collect::default(),
                dir,
                in_target,
            }
        }

        fn ctx(&self, timeout: Option<Duration>) -> ActionContext<'_> {
            ActionContext {
                target: &self.target,
                config: &self.config,
                console: &self.console,
                deadline: timeout.map(|t| Instant::now() + t),
                scratch: self.dir.path(),
                scratch_in_target: &self.in_target,
            }
        }

        fn bash(
            &self,
            timeout: Option<Duration>,
            commands: &[&str],
        ) -> Result<Outputs, ActionFailure> {
            let inputs = bash_yaml(commands);
            run(ActionKind::ExecuteBash, &self.ctx(timeout), &inputs)
        }
    }

    fn bash_yaml(commands: &[&str]) -> Value {
        let mut map = crate::yaml::Mapping::new();
        map.insert(
            "commands".into(),
            Value::Sequence(
                commands
                    .iter()
                    .map(|c| Value::String(c.to_string()))
                    .collect(),
            ),
        );
        Value::Mapping(map)
    }

    fn stdout_of(r: Result<Outputs, ActionFailure>) -> String {
        r.unwrap()["stdout"].as_str().unwrap().to_string()
    }

    fn yaml(src: &str) -> Value {
        crate::yaml::from_str(src).unwrap()
    }

    #[test]
    fn validation_checks_shape() {
        let ok: &[(ActionKind, &str)] = &[
            (
                ActionKind::ExecuteBash,
                "{commands: [echo hi, '{{ x }}', 42]}",
            ),
            (ActionKind::ExecuteBash, "{commands: []}"),
            (ActionKind::ExecuteBinary, "{path: /bin/echo}"),
            (
                ActionKind::ExecuteBinary,
                "{path: '{{ p }}', arguments: [a, 1, true]}",
            ),
        ];
        for (kind, src) in ok {
            assert_eq!(validate(*kind, &yaml(src)), Ok(()), "{src}");
        }
        let bad: &[(ActionKind, &str, &str)] = &[
            (ActionKind::ExecuteBash, "{}", "missing field `commands`"),
            (
                ActionKind::ExecuteBash,
                "{commands: echo hi}",
                "commands must be a list of strings, found a string",
            ),
            (
                ActionKind::ExecuteBash,
                "{commands: [a, [b]]}",
                "commands must be a list of strings (commands[1] is a list)",
            ),
            (
                ActionKind::ExecuteBash,
                "{commands: [a], shell: sh}",
                "unknown field `shell`",
            ),
            (
                ActionKind::ExecuteBash,
                "[echo hi]",
                "inputs must be a mapping with `commands`, found a list",
            ),
            (
                ActionKind::ExecuteBinary,
                "{arguments: [a]}",
                "missing field `path`",
            ),
            (
                ActionKind::ExecuteBinary,
                "{path: /x, arguments: a}",
                "arguments must be a list of strings, found a string",
            ),
            (
                ActionKind::ExecuteBinary,
                "{path: /x, args: [a]}",
                "unknown field `args`",
            ),
        ];
        for (kind, src, want) in bad {
            let err = validate(*kind, &yaml(src)).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
        }
    }

    #[test]
    fn bash_output_and_multiline_commands() {
        let f = Fixture::new();
        let out = f.bash(
            None,
            &[
                "echo one",
                "for i in 2 3; do\n  echo $i\ndone",
                "printf 'last\\n\\n'",
            ],
        );
        assert_eq!(stdout_of(out), "one\n2\n3\nlast");
        assert!(f.console.has(Stream::Stdout, "one"));
        assert!(f.console.has(Stream::Stdout, "3"));
        // No output at all.
        assert_eq!(stdout_of(f.bash(None, &["true"])), "");
        // HOME and PATH are there.
        assert_ne!(stdout_of(f.bash(None, &["echo \"$HOME:$PATH\""])), ":");
        // stdin is /dev/null: `cat` does not wait.
        assert_eq!(
            stdout_of(f.bash(Some(Duration::from_secs(10)), &["cat; echo eof"])),
            "eof"
        );
    }

    #[test]
    fn exit_codes() {
        let f = Fixture::new();
        assert!(f.bash(None, &["exit 0"]).is_ok());
        // No `set -e`: the status is the last command's.
        assert_eq!(stdout_of(f.bash(None, &["false", "echo after"])), "after");
        assert_eq!(
            f.bash(
                None,
                &[
                    "echo doing",
                    "echo 'first problem' >&2",
                    "echo 'bad thing' >&2",
                    "exit 1"
                ]
            ),
            Err(ActionFailure::Failed(
                "ExecuteBash: exit status 1; stderr ends with: first problem | bad thing".into()
            ))
        );
        assert!(f.console.has(Stream::Stderr, "bad thing"));
        assert!(!f.console.has(Stream::Stdout, "bad thing"));
        assert_eq!(
            f.bash(None, &["exit 3"]),
            Err(ActionFailure::Failed("ExecuteBash: exit status 3".into()))
        );
        assert_eq!(f.bash(None, &["exit 194"]), Err(ActionFailure::Reboot));
        // Killed by a signal: 128 + N.
        assert_eq!(
            f.bash(None, &["kill -TERM $$"]),
            Err(ActionFailure::Failed("ExecuteBash: exit status 143".into()))
        );
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let f = Fixture::new();
        let err = f
            .bash(
                None,
                &["for i in $(seq 1 20); do echo e$i >&2; done", "exit 2"],
            )
            .unwrap_err();
        assert_eq!(
            err,
            ActionFailure::Failed(
                "ExecuteBash: exit status 2; stderr ends with: e16 | e17 | e18 | e19 | e20".into()
            )
        );
    }

    #[test]
    fn output_is_streamed_live() {
        let f = Fixture::new();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                let r = f.bash(
                    None,
                    &["echo early", "echo warn >&2", "sleep 1", "echo late"],
                );
                done.store(true, Ordering::SeqCst);
                r
            });
            let start = Instant::now();
            while !(f.console.has(Stream::Stdout, "early") && f.console.has(Stream::Stderr, "warn"))
            {
                assert!(start.elapsed() < Duration::from_secs(5), "no live output");
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(
                !done.load(Ordering::SeqCst),
                "the line only arrived at the end"
            );
            assert!(!f.console.has(Stream::Stdout, "late"));
            assert_eq!(stdout_of(handle.join().unwrap()), "early\nlate");
        });
    }

    fn dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    fn wait_dead(pid: i32) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if dead(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn timeout_kills_the_process_tree() {
        let f = Fixture::new();
        let pidfile = f.dir.path().join("child.pid");
        let start = Instant::now();
        let r = f.bash(
            Some(Duration::from_millis(300)),
            &[
                &format!("sleep 30 & echo $! > {}", pidfile.display()),
                "echo started",
                "sleep 30",
            ],
        );
        let took = start.elapsed();
        assert_eq!(r, Err(ActionFailure::TimedOut));
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        assert!(f.console.has(Stream::Stdout, "started"));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(wait_dead(pid), "the background child {pid} survived");
    }

    #[test]
    fn a_flood_of_output_does_not_outrun_the_deadline() {
        let f = Fixture::new();
        let start = Instant::now();
        let r = f.bash(
            Some(Duration::from_millis(300)),
            &["yes flood | head -c 2000000000"],
        );
        assert_eq!(r, Err(ActionFailure::TimedOut));
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn background_grandchild_does_not_hang_the_step() {
        let f = Fixture::new();
        let pidfile = f.dir.path().join("daemon.pid");
        let start = Instant::now();
        let r = f.bash(
            None,
            &[
                &format!("sleep 30 & echo $! > {}", pidfile.display()),
                "echo done",
            ],
        );
        let took = start.elapsed();
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Left running (a started service must survive its step).
        assert!(!dead(pid));
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        assert_eq!(stdout_of(r), "done");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn fast_steps_are_cheap() {
        let f = Fixture::new();
        // Warm up, then a trivial step should cost little more than bash itself.
        f.bash(None, &["true"]).unwrap();
        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(
                stdout_of(f.bash(Some(Duration::from_secs(10)), &["echo hi"])),
                "hi"
            );
        }
        let each = start.elapsed() / 10;
        assert!(each < Duration::from_millis(100), "{each:?} per step");
    }

    #[test]
    fn binary_runs_with_arguments_without_a_shell() {
        let f = Fixture::new();
        let inputs = yaml("{path: echo, arguments: ['a  b', '$HOME', 3]}");
        assert_eq!(
            stdout_of(run(ActionKind::ExecuteBinary, &f.ctx(None), &inputs)),
            "a  b $HOME 3"
        );
        let inputs = yaml("{path: /bin/sh, arguments: [-c, 'exit 194']}");
        assert_eq!(
            run(ActionKind::ExecuteBinary, &f.ctx(None), &inputs),
            Err(ActionFailure::Reboot)
        );
        let inputs = yaml("{path: /bin/sh, arguments: [-c, 'echo nope >&2; exit 4']}");
        assert_eq!(
            run(ActionKind::ExecuteBinary, &f.ctx(None), &inputs),
            Err(ActionFailure::Failed(
                "ExecuteBinary: exit status 4; stderr ends with: nope".into()
            ))
        );
        let inputs = yaml("{path: /bin/sh, arguments: [-c, 'sleep 30']}");
        assert_eq!(
            run(
                ActionKind::ExecuteBinary,
                &f.ctx(Some(Duration::from_millis(200))),
                &inputs
            ),
            Err(ActionFailure::TimedOut)
        );
    }

    #[test]
    fn missing_binary_is_a_clear_failure() {
        let f = Fixture::new();
        let inputs = yaml("{path: /nonexistent/kiln-tool}");
        assert_eq!(
            run(ActionKind::ExecuteBinary, &f.ctx(None), &inputs),
            Err(ActionFailure::Failed(
                "ExecuteBinary: `/nonexistent/kiln-tool` does not exist in the target or is not a file".into()
            ))
        );
        let inputs = yaml("{path: kiln-no-such-tool}");
        let Err(ActionFailure::Failed(msg)) = run(ActionKind::ExecuteBinary, &f.ctx(None), &inputs)
        else {
            panic!("expected a failure");
        };
        assert!(
            msg.starts_with("ExecuteBinary: cannot start `kiln-no-such-tool`: No such file"),
            "{msg}"
        );
    }
}
