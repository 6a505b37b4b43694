//! `RUN` in a stage's instance, and the directories `WORKDIR` makes.

use super::state::StageState;
use super::{line_error, step_at, user};
use crate::{BuildError, Builder};
use kiln_dockerfile::{Command, Heredoc, Instruction};
use kiln_instance::sys::Process;
use kiln_instance::Instance;
use kiln_toe::actions::Stream;
use kiln_toe::target::Target;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::Mutex;

/// Lines of a failed command's output quoted in its failure.
const TAIL_LINES: usize = 10;

/// The argument vector of a `RUN`: the exec form as given; the shell form through the stage's
/// `SHELL`, with its here-documents as the shell reads them. A `RUN <<EOF` whose command is the
/// here-document alone runs the document as the script (BuildKit's rule).
fn argv(state: &StageState, command: &Command, heredocs: &[Heredoc]) -> Vec<String> {
    let Command::Shell(text) = command else {
        return state.run_vector(command);
    };
    if heredocs.is_empty() {
        return state.run_vector(command);
    }
    let only_heredoc = heredocs.len() == 1 && {
        let words: String = text.split_whitespace().collect();
        let name = &heredocs[0].name;
        [
            format!("<<{name}"),
            format!("<<-{name}"),
            format!("<<'{name}'"),
            format!("<<\"{name}\""),
            format!("<<-'{name}'"),
            format!("<<-\"{name}\""),
        ]
        .contains(&words)
    };
    let script = if only_heredoc {
        heredocs[0].content.clone()
    } else {
        let mut script = text.clone();
        for h in heredocs {
            script.push('\n');
            script.push_str(&h.content);
            script.push_str(&h.name);
        }
        script
    };
    state.run_vector(&Command::Shell(script))
}

/// Runs a `RUN` instruction; its output goes to the build log, and a failure quotes its end.
pub(super) fn run(
    builder: &Builder,
    instance: &Instance,
    state: &StageState,
    instruction: &Instruction,
    command: &Command,
    heredocs: &[Heredoc],
) -> Result<(), BuildError> {
    let at = |e: String| line_error(instruction.line, &instruction.source, &e);
    let argv = argv(state, command, heredocs);
    let Some((program, args)) = argv.split_first() else {
        return Err(at("RUN needs a command".to_string()));
    };
    let user = user::resolve(instance, &state.user).map_err(at)?;
    let process = Process {
        user: (user.uid != 0 || user.gid != 0 || !user.groups.is_empty())
            .then(|| (user.uid, user.gid, user.groups.clone())),
        working_dir: Some(state.current_dir()),
    };
    let mut cmd = instance.command_as(program, args, process);
    cmd.env_clear()
        .env("HOSTNAME", &instance.plan().hostname)
        .envs(state.run_env(&user.home))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let label = format!("RUN (line {})", instruction.line);
    builder.observer.step_started(&step_at(&label));
    let mut child = cmd
        .spawn()
        .map_err(|e| at(format!("starting {program}: {e}")))?;
    let tail = Mutex::new(VecDeque::new());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let follow = |pipe: Option<Box<dyn Read + Send>>, stream: Stream| {
        let Some(pipe) = pipe else { return };
        for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line).into_owned();
            builder.observer.output(&step_at(&label), stream, &line);
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            follow(
                stdout.map(|p| Box::new(p) as Box<dyn Read + Send>),
                Stream::Stdout,
            )
        });
        follow(
            stderr.map(|p| Box::new(p) as Box<dyn Read + Send>),
            Stream::Stderr,
        );
    });
    let status = child
        .wait()
        .map_err(|e| at(format!("waiting for {program}: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let tail = tail.into_inner().unwrap_or_else(|p| p.into_inner());
    let how = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "a signal".to_string(),
    };
    let mut message = format!("the command ended with {how}");
    if !tail.is_empty() {
        message.push_str("; its last output: ");
        message.push_str(&Vec::from(tail).join(" | "));
    }
    Err(at(message))
}

/// Makes `dir` (absolute, inside the instance) and its missing parents.
pub(super) fn make_directory(instance: &Instance, dir: &str) -> Result<(), String> {
    let path = instance.resolve(dir).map_err(|e| format!("{dir}: {e}"))?;
    std::fs::create_dir_all(&path).map_err(|e| format!("creating {dir}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn heredoc(name: &str, content: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            content: content.into(),
            expand: true,
        }
    }

    #[test]
    fn heredocs_become_the_script_or_follow_the_command() {
        let state = StageState::new(&serde_json::json!({}), &BTreeMap::new(), '\\');
        let alone = argv(
            &state,
            &Command::Shell("<<EOF".into()),
            &[heredoc("EOF", "echo a\necho b\n")],
        );
        assert_eq!(alone, vec!["/bin/sh", "-c", "echo a\necho b\n"]);
        let fed = argv(
            &state,
            &Command::Shell("cat > /x <<EOF".into()),
            &[heredoc("EOF", "hello\n")],
        );
        assert_eq!(fed, vec!["/bin/sh", "-c", "cat > /x <<EOF\nhello\nEOF"]);
        let exec = argv(&state, &Command::Exec(vec!["true".into()]), &[]);
        assert_eq!(exec, vec!["true"]);
    }
}
